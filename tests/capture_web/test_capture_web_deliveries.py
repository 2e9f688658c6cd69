"""Outbound deliveries to real receivers on loopback: signed webhooks, retries, partners, ADF, form posts, email."""

from __future__ import annotations

import http.server
import json
import threading
import urllib.parse
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from corecrm.hooks import hookimpl
from corecrm.records import Assignment
from corecrm_plugins.capture_web import bodies, deliveries, signing, tables
from cw_helpers import serve, wait_processed, web_crm  # noqa: F401 (fixtures)

SECRET = "whsec-test-1234"


class Receiver:
    """An HTTP server that records what it gets; answers 500 to the first ``fail`` requests."""

    def __init__(self, fail: int = 0) -> None:
        self.fail = fail
        self.requests: list[dict[str, Any]] = []
        self.accepted: list[dict[str, Any]] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                req = {"headers": {k.lower(): v for k, v in self.headers.items()}, "body": body, "path": self.path}
                outer.requests.append(req)
                if len(outer.requests) <= outer.fail:
                    self.send_response(500)
                    self.end_headers()
                    self.wfile.write(b"temporarily broken")
                    return
                outer.accepted.append(req)
                self.send_response(204)
                self.end_headers()

            def log_message(self, *a: Any) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def receiver():
    made: list[Receiver] = []

    def factory(fail: int = 0) -> Receiver:
        r = Receiver(fail)
        made.append(r)
        return r

    yield factory
    for r in made:
        r.close()


def post_leads(crm, serve, n: int) -> None:
    srv = serve(crm)
    for i in range(n):
        r = httpx.post(f"{srv.url}/capture/contact", json={"last_name": f"Lead{i}", "email": f"l{i}@example.com"})
        assert r.status_code == 201, r.text
    wait_processed(crm)


def targets_of(crm) -> dict[str, deliveries.Target]:
    return deliveries.parse_targets(crm.settings("capture_web").get("targets"), "targets")


def rows(crm) -> list[dict[str, Any]]:
    with crm.engine.connect() as conn:
        return [dict(r) for r in conn.execute(sa.select(tables.deliveries).order_by(tables.deliveries.c.id)).mappings()]


def test_webhook_gets_each_delivery_once_with_a_valid_signature(web_crm, serve, receiver, db_url):
    hook = receiver()
    crm = web_crm(targets={"crm2": {"kind": "webhook", "url": hook.url, "secret": SECRET, "events": ["captured"]}}, database=db_url)
    post_leads(crm, serve, 3)
    assert [r["status"] for r in rows(crm)] == ["pending"] * 3
    res = deliveries.run(crm.engine, targets_of(crm), crm.now())
    assert (res.delivered, res.retried, res.failed) == (3, 0, 0)
    assert str(deliveries.run(crm.engine, targets_of(crm), crm.now())) == "0 delivered, 0 to retry, 0 failed"
    assert len(hook.requests) == 3
    keys_seen = set()
    for req in hook.requests:
        h = req["headers"]
        signing.verify(SECRET, req["body"], h["x-corecrm-timestamp"], h["x-corecrm-signature"])
        with pytest.raises(signing.SignatureError):
            signing.verify(SECRET, req["body"] + b" ", h["x-corecrm-timestamp"], h["x-corecrm-signature"])
        with pytest.raises(signing.SignatureError):  # a replay ten minutes later is refused
            signing.verify(SECRET, req["body"], h["x-corecrm-timestamp"], h["x-corecrm-signature"], now=int(h["x-corecrm-timestamp"]) + 600)
        doc = json.loads(req["body"])
        assert doc["event"] == "captured" and doc["lead"]["email"].endswith("@example.com")
        assert h["x-corecrm-delivery"] == doc["delivery"]
        keys_seen.add(doc["delivery"])
    assert len(keys_seen) == 3
    assert all(r["status"] == "delivered" and r["attempts"] == 1 for r in rows(crm))


def test_the_same_event_seen_twice_is_queued_once(web_crm, serve, receiver):
    hook = receiver()
    crm = web_crm(targets={"crm2": {"kind": "webhook", "url": hook.url, "secret": SECRET, "events": ["captured"]}})
    post_leads(crm, serve, 1)
    (row,) = rows(crm)
    payload = json.loads(row["payload"])
    import corecrm_plugins.capture_web as plugin
    from corecrm.context import HookContext
    from corecrm.models import Event
    import datetime as dt

    ev = Event("captured", dt.datetime.fromisoformat(payload["occurred_at"]), None, payload["detail"], lead_id=row["lead_id"])
    ctx = HookContext(crm=crm, workspace="default", now=crm.now(), mode="event")
    plugin.crm_leads_captured([ev], ctx, crm.settings("capture_web"))
    assert len(rows(crm)) == 1


def test_receiver_failing_twice_gets_it_on_the_third_try(web_crm, serve, receiver, clock):
    hook = receiver(fail=2)
    crm = web_crm(targets={"crm2": {"kind": "webhook", "url": hook.url, "secret": SECRET, "events": ["captured"], "backoff_seconds": 60}})
    post_leads(crm, serve, 1)
    t = targets_of(crm)
    assert deliveries.run(crm.engine, t, clock()).retried == 1
    (row,) = rows(crm)
    assert row["attempts"] == 1 and "HTTP 500" in row["last_error"]
    assert row["next_attempt_at"].replace(tzinfo=None) == (clock() + __import__("datetime").timedelta(seconds=60)).replace(tzinfo=None)
    assert deliveries.run(crm.engine, t, clock()).retried == 0  # not due yet: nothing sent
    assert len(hook.requests) == 1
    assert deliveries.run(crm.engine, t, clock.advance(seconds=60)).retried == 1
    assert deliveries.run(crm.engine, t, clock.advance(seconds=60)).retried == 0  # backoff doubled to 120 s
    assert deliveries.run(crm.engine, t, clock.advance(seconds=60)).delivered == 1
    assert len(hook.requests) == 3 and len(hook.accepted) == 1
    assert len({r["headers"]["x-corecrm-delivery"] for r in hook.requests}) == 1  # one key for every try
    (row,) = rows(crm)
    assert row["status"] == "delivered" and row["attempts"] == 3 and row["last_error"] is None


def test_gives_up_after_max_attempts_and_can_be_requeued(web_crm, serve, receiver, clock):
    hook = receiver(fail=100)
    crm = web_crm(targets={"crm2": {"kind": "webhook", "url": hook.url, "secret": SECRET, "events": ["captured"], "max_attempts": 2, "backoff_seconds": 1}})
    post_leads(crm, serve, 1)
    t = targets_of(crm)
    deliveries.run(crm.engine, t, clock())
    assert deliveries.run(crm.engine, t, clock.advance(seconds=5)).failed == 1
    (row,) = rows(crm)
    assert row["status"] == "failed" and "HTTP 500" in row["last_error"]
    assert deliveries.run(crm.engine, t, clock.advance(days=1)).delivered == 0
    hook.fail = 0
    assert deliveries.requeue(crm.engine, "default", row["id"], clock())
    assert deliveries.run(crm.engine, t, clock()).delivered == 1


def test_an_expired_lease_is_sent_again_with_the_same_key(web_crm, serve, receiver, clock):
    """A worker that died mid-send: the row is claimable again after its lease, same delivery key."""
    hook = receiver()
    crm = web_crm(targets={"crm2": {"kind": "webhook", "url": hook.url, "secret": SECRET, "events": ["captured"]}})
    post_leads(crm, serve, 1)
    claimed = deliveries.claim(crm.engine, "default", clock(), 10, lease=120)
    assert len(claimed) == 1
    assert deliveries.claim(crm.engine, "default", clock(), 10, lease=120) == []  # leased: nobody else takes it
    assert deliveries.run(crm.engine, targets_of(crm), clock.advance(seconds=121)).delivered == 1
    assert hook.requests[0]["headers"]["x-corecrm-delivery"] == claimed[0]["idempotency_key"]


class PartnerRouter:
    @hookimpl
    def crm_route_leads(self, leads, ctx):
        return [Assignment(i, owner="partner:acme" if l.company == "Cars Inc" else "alice", rule="partner-test", reason="test") for i, l in enumerate(leads)]


def test_routing_to_a_partner_delivers_adf(web_crm, serve, receiver):
    acme = receiver()
    crm = web_crm(targets={"acme": {"kind": "adf", "url": acme.url, "partner": True}}, plugins={"router": PartnerRouter()})
    srv = serve(crm)
    httpx.post(f"{srv.url}/capture/contact", json={"first_name": "Car", "last_name": "Buyer", "email": "cb@example.com", "company": "Cars Inc"})
    httpx.post(f"{srv.url}/capture/contact", json={"first_name": "Not", "last_name": "Partner", "email": "np@example.com", "company": "Other"})
    wait_processed(crm)
    (row,) = rows(crm)
    assert row["target"] == "acme" and row["event_type"] == "assigned"
    assert deliveries.run(crm.engine, targets_of(crm), crm.now()).delivered == 1
    (req,) = acme.requests
    assert req["headers"]["content-type"] == "application/xml"
    lead = bodies.read_adf(req["body"])  # what we send, our own reader reads back
    assert (lead["first_name"], lead["last_name"], lead["email"]) == ("Car", "Buyer", "cb@example.com")


def test_form_post_target(web_crm, serve, receiver):
    rx = receiver()
    crm = web_crm(targets={"legacy": {"kind": "form", "url": rx.url, "events": ["captured"], "fields": {"email": "EmailAddress", "last_name": "Surname"}}})
    post_leads(crm, serve, 1)
    assert deliveries.run(crm.engine, targets_of(crm), crm.now()).delivered == 1
    form = dict(urllib.parse.parse_qsl(rx.requests[0]["body"].decode()))
    assert form["EmailAddress"] == "l0@example.com" and form["Surname"] == "Lead0" and form["delivery"].startswith("legacy:captured:")


def test_email_target(web_crm, serve):
    from aiosmtpd.controller import Controller

    got: list[Any] = []

    class Handler:
        async def handle_DATA(self, server, session, envelope):  # noqa: N802
            got.append(envelope)
            return "250 OK"

    import socket

    with socket.socket() as s:  # a free loopback port for the SMTP server
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctl = Controller(Handler(), hostname="127.0.0.1", port=port)
    ctl.start()
    try:
        crm = web_crm(targets={"dealer": {"kind": "email", "email_to": ["leads@dealer.example"], "smtp_port": port, "events": ["captured"]}})
        post_leads(crm, serve, 1)
        assert deliveries.run(crm.engine, targets_of(crm), crm.now()).delivered == 1
    finally:
        ctl.stop()
    (env,) = got
    assert env.rcpt_tos == ["leads@dealer.example"]
    import email
    import email.policy

    msg = email.message_from_bytes(env.content, policy=email.policy.default)
    assert msg["X-Corecrm-Delivery"].startswith("dealer:captured:")
    assert bodies.read_adf(msg.get_content().encode())["email"] == "l0@example.com"


def test_target_config_errors_name_the_key():
    from corecrm.errors import ConfigError

    with pytest.raises(ConfigError, match=r"targets\.x\.kind"):
        deliveries.parse_targets({"x": {"kind": "fax"}}, "targets")
    with pytest.raises(ConfigError, match=r"targets\.x\.secret"):
        deliveries.parse_targets({"x": {"kind": "webhook", "url": "http://127.0.0.1/h", "events": ["captured"]}}, "targets")
    with pytest.raises(ConfigError, match=r"targets\.x\.events\[1\]"):
        deliveries.parse_targets({"x": {"kind": "form", "url": "http://127.0.0.1/h", "events": ["captured", "born"]}}, "targets")
    with pytest.raises(ConfigError, match=r"targets\.x\.email_to"):
        deliveries.parse_targets({"x": {"kind": "email", "events": ["captured"]}}, "targets")


def test_serve_delivery_loop_sends_what_is_due(web_crm, serve, receiver):
    """The loop `corecrm serve` runs beside the HTTP server drains the queue by itself."""
    import time

    from corecrm_plugins.capture_web.cli import DeliveryLoop

    hook = receiver()
    crm = web_crm(targets={"crm2": {"kind": "webhook", "url": hook.url, "secret": SECRET, "events": ["captured"]}})
    post_leads(crm, serve, 2)
    loop = DeliveryLoop(crm, 0.05)
    loop.thread.start()
    try:
        deadline = time.time() + 20
        while len(hook.accepted) < 2 and time.time() < deadline:
            time.sleep(0.05)
    finally:
        loop.stop_event.set()
        loop.thread.join(timeout=10)
    assert len(hook.accepted) == 2
    assert [r["status"] for r in rows(crm)] == ["delivered", "delivered"]
