"""The nurture e-mails' signed links served over HTTP, end to end: the real capture server on loopback,
the intake pipeline, nurture_sequences' ledger and confirmation outbox, and channel_email sending to a
real SMTP server on loopback. Links are followed as a recipient would: taken from the received e-mail."""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "nurture_sequences"))
from cw_helpers import FORMS, lead_rows, serve, wait_processed, web_config, web_crm  # noqa: E402,F401 (fixtures)
from nurture_testkit import SECRET_VAR, email_settings, nurture_settings, smtp, three_step_sequence  # noqa: E402,F401 (fixtures)

PUBLIC = "https://crm.example.com"  # what the e-mails link to; the test maps it onto the loopback server


@pytest.fixture
def links_crm(make_crm, smtp, monkeypatch):
    """``links_crm(double_opt_in=True, **nurture_over)``: capture_web + nurture (every capture enrolled in ``trial``) + channel_email."""
    monkeypatch.setenv(SECRET_VAR, "test-secret-not-for-production")

    def factory(*, double_opt_in: bool = True, **over: Any) -> Any:
        cfg = web_config(FORMS)
        cfg["plugins"]["enabled"] = ["capture_json", "capture_web", "nurture_sequences", "channel_email"]
        cfg["plugins"]["nurture_sequences"] = nurture_settings(
            sequences={"trial": three_step_sequence(enrol=[{"on": "intake"}])},
            unsubscribe_url=f"{PUBLIC}/unsubscribe/{{token}}",
            confirm_url=f"{PUBLIC}/confirm/{{token}}",
            double_opt_in=["email"] if double_opt_in else [],
            **over,
        )
        cfg["plugins"]["channel_email"] = email_settings(smtp.port)
        return make_crm(cfg)

    return factory


def ledger(crm: Any) -> list[dict[str, Any]]:
    from corecrm_plugins.nurture_sequences.tables import consent

    with crm.engine.connect() as conn:
        return [dict(r) for r in conn.execute(sa.select(consent).order_by(consent.c.id)).mappings()]


def confirmation_rows(crm: Any) -> list[dict[str, Any]]:
    from corecrm_plugins.nurture_sequences.tables import confirmations

    with crm.engine.connect() as conn:
        return [dict(r) for r in conn.execute(sa.select(confirmations).order_by(confirmations.c.id)).mappings()]


def run_scheduler(crm: Any) -> Any:
    from corecrm_plugins.nurture_sequences.actions import runtime
    from corecrm_plugins.nurture_sequences.scheduler import run_once

    return run_once(runtime(crm), crm.now())


def events(crm: Any, lead_id: int, type_: str) -> list[Any]:
    return [e for e in crm.history(lead_id) if e.type == type_]


def local(srv: Any, url: str) -> str:
    """The public link mapped onto the loopback server (as a reverse proxy would)."""
    assert url.startswith(PUBLIC + "/"), url
    return srv.url + urlsplit(url).path


def text_of(msg: Any) -> str:
    return msg.get_body(("plain",)).get_content()


def link_in(msg: Any, kind: str) -> str:
    words = [w for w in text_of(msg).split() if w.startswith(f"{PUBLIC}/{kind}/")]
    assert len(words) == 1, text_of(msg)
    return words[0]


def capture_with_consent(srv: Any, crm: Any, email: str = "Ada@Example.com") -> dict[str, Any]:
    r = httpx.post(f"{srv.url}/capture/contact", data={"first_name": "Ada", "last_name": "Lovelace", "email": email, "_cw_consent": "yes"}, timeout=20)
    assert r.status_code == 201, r.text
    wait_processed(crm)
    return lead_rows(crm)[-1]


def test_double_opt_in_from_the_web_form_to_the_first_sequence_email(links_crm, serve, smtp):
    crm = links_crm()
    srv = serve(crm)
    ada = capture_with_consent(srv, crm)
    assert [(r["status"], r["address"]) for r in ledger(crm)] == [("pending", "ada@example.com")]

    # The confirmation went out when the pending opt-in was recorded; no sequence e-mail yet.
    (conf,) = smtp.parsed()
    assert "Ada@Example.com" in str(conf["To"]) and conf["Subject"] == "Please confirm your e-mail address"
    assert conf["X-Corecrm-Message"] == "double-opt-in" and "List-Unsubscribe" not in conf
    (row,) = confirmation_rows(crm)
    assert (row["status"], row["lead_id"], row["consent_id"], row["attempts"]) == ("sent", ada["id"], ledger(crm)[0]["id"], 1)
    assert len(events(crm, ada["id"], "confirmation_sent")) == 1
    url = local(srv, link_in(conf, "confirm"))

    # GET shows a page with a button and changes nothing (a link scanner may fetch it).
    page = httpx.get(url)
    assert page.status_code == 200 and '<form method="post"' in page.text and "Confirm" in page.text
    assert "a***@example.com" in page.text and "ada@example.com" not in page.text.lower()
    assert page.headers["cache-control"] == "no-store" and page.headers["referrer-policy"] == "no-referrer"
    assert [r["status"] for r in ledger(crm)] == ["pending"]

    done = httpx.post(url)
    assert done.status_code == 200 and "confirmed" in done.text
    rows = ledger(crm)
    assert [(r["status"], r["source"]) for r in rows] == [("pending", "web_form:contact"), ("opted_in", "double_opt_in")]
    assert rows[1]["address"] == "ada@example.com" and rows[1]["proof"]["token"]
    # Clicking again (and the page again) is harmless: no row, no event.
    assert httpx.post(url).status_code == 200 and httpx.get(url).status_code == 200
    assert len(ledger(crm)) == 2 and len(events(crm, ada["id"], "consent_confirmed")) == 1

    stats = run_scheduler(crm)
    assert stats.sent == 1 and stats.confirmations_sent == 0
    conf_again, welcome = smtp.parsed()
    assert welcome["Subject"] == "Welcome Ada" and welcome["List-Unsubscribe"].startswith(f"<{PUBLIC}/unsubscribe/")
    assert len(confirmation_rows(crm)) == 1  # the sweep in `nurture run` found nothing more to confirm


def test_unsubscribe_link_from_a_received_email(links_crm, serve, smtp, clock):
    crm = links_crm(double_opt_in=False)
    srv = serve(crm)
    ada = capture_with_consent(srv, crm, "ada@example.com")
    assert run_scheduler(crm).sent == 1
    (welcome,) = smtp.parsed()
    url = local(srv, link_in(welcome, "unsubscribe"))
    assert welcome["List-Unsubscribe"] == f"<{link_in(welcome, 'unsubscribe')}>"

    page = httpx.get(url)
    assert page.status_code == 200 and '<form method="post"' in page.text and "Unsubscribe" in page.text
    assert [r["status"] for r in ledger(crm)] == ["opted_in"] and events(crm, ada["id"], "unsubscribed") == []

    done = httpx.post(url, headers={"Accept": "text/html"})
    assert done.status_code == 200 and "You are unsubscribed" in done.text
    rows = ledger(crm)
    assert [(r["status"], r["source"]) for r in rows] == [("opted_in", "web_form:contact"), ("opted_out", "unsubscribe_link")]
    with crm.engine.connect() as conn:
        from corecrm_plugins.nurture_sequences.tables import enrolments

        (enr,) = conn.execute(sa.select(enrolments.c.status, enrolments.c.exit_reason)).all()
    assert tuple(enr) == ("exited", "unsubscribed")
    assert httpx.post(url).status_code == 200  # a second click
    assert len(ledger(crm)) == 2 and len(events(crm, ada["id"], "unsubscribed")) == 1

    clock.advance(days=10)
    assert run_scheduler(crm).sent == 0
    assert len(smtp.parsed()) == 1


def test_one_click_unsubscribe_rfc_8058(links_crm, serve, smtp):
    crm = links_crm(double_opt_in=False)
    srv = serve(crm)
    capture_with_consent(srv, crm, "ada@example.com")
    run_scheduler(crm)
    (welcome,) = smtp.parsed()
    assert welcome["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    target = local(srv, welcome["List-Unsubscribe"].strip("<>"))
    # What a mailbox provider sends: a POST with this exact form body, no cookies, no page.
    r = httpx.post(target, data={"List-Unsubscribe": "One-Click"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    assert [(r["status"], r["source"]) for r in ledger(crm)] == [("opted_in", "web_form:contact"), ("opted_out", "list_unsubscribe")]
    r = httpx.post(target, files={"List-Unsubscribe": (None, "One-Click")})  # multipart/form-data, as some providers send it
    assert r.status_code == 200 and len(ledger(crm)) == 2


def tamper(token: str) -> list[str]:
    """The same token altered: its payload swapped for another lead's, its signature changed, cut short."""
    import base64
    import json

    body, sig = token.split(".")
    data = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    other = base64.urlsafe_b64encode(json.dumps({**data, "l": data["l"] + 1}, separators=(",", ":"), sort_keys=True).encode()).rstrip(b"=").decode()
    flipped = sig[:-2] + ("AA" if not sig.endswith("AA") else "BB")
    return [f"{other}.{sig}", f"{body}.{flipped}", token[:-5], "not-a-token", f"{body}"]


def test_tampered_or_expired_tokens_get_a_400_page_and_change_nothing(links_crm, serve, smtp, clock):
    crm = links_crm(confirm_valid_for="2d")
    srv = serve(crm)
    capture_with_consent(srv, crm, "ada@example.com")
    capture_with_consent(srv, crm, "bob@example.com")
    (conf, _bob) = smtp.parsed()
    confirm_url = link_in(conf, "confirm")
    token = confirm_url.rsplit("/", 1)[1]
    before = ledger(crm)
    for bad in tamper(token):
        for method in ("GET", "POST"):
            r = httpx.request(method, f"{srv.url}/confirm/{bad}")
            assert r.status_code == 400, (bad, method, r.text)
            assert "This link is not valid" in r.text and "signature" not in r.text and "workspace" not in r.text
        r = httpx.post(f"{srv.url}/unsubscribe/{bad}", data={"List-Unsubscribe": "One-Click"})
        assert r.status_code == 400
    # A confirmation token is not an unsubscribe token, nor the other way round.
    assert httpx.post(f"{srv.url}/unsubscribe/{token}").status_code == 400
    # Expired: the confirmation link works for confirm_valid_for.
    clock.advance(days=3)
    assert httpx.get(local(srv, confirm_url)).status_code == 400
    assert httpx.post(local(srv, confirm_url)).status_code == 400
    assert ledger(crm) == before


def test_the_confirmation_is_sent_once_per_pending_statement(links_crm, serve, smtp, clock):
    from corecrm_plugins.capture_web.consent import forward_to_ledger
    from corecrm_plugins.nurture_sequences import confirmations
    from corecrm_plugins.nurture_sequences.actions import runtime
    from corecrm.context import HookContext
    from corecrm.models import Event

    crm = links_crm()
    srv = serve(crm)
    ada = capture_with_consent(srv, crm, "ada@example.com")
    assert len(smtp.parsed()) == 1
    # The capture observer delivered again, `nurture run` swept twice: nothing more is sent.
    ctx = HookContext(crm=crm, workspace=crm.workspace, now=crm.now(), mode="intake")
    crm.plugins.notify("crm_leads_captured", workspace=crm.workspace, events=[Event(type="captured", at=crm.now(), lead_id=ada["id"])], ctx=ctx)
    forward_to_ledger([Event(type="captured", at=crm.now(), lead_id=ada["id"])], ctx)
    assert run_scheduler(crm).confirmations_sent == 0
    clock.advance(hours=1)
    assert run_scheduler(crm).confirmations_sent == 0
    assert len(smtp.parsed()) == 1 and len(confirmation_rows(crm)) == 1

    # A worker that died after claiming (row left 'sending'): never sent again, marked uncertain.
    rt = runtime(crm)
    with crm.engine.begin() as conn:
        from corecrm_plugins.nurture_sequences import consent

        consent.record(conn, crm.workspace, [consent.ConsentEntry(ada["id"], "email", "news", "pending", crm.now(), "cli", "ada@example.com")],
                       recorded_at=crm.now())  # fmt: skip
        assert confirmations.queue(conn, crm.workspace, ["email"], now=crm.now(), lead_ids=[ada["id"]]) == 1
        conn.execute(confirmations.confirmations.update().where(confirmations.confirmations.c.purpose == "news").values(
            status="sending", attempts=1, lease_until=crm.now() + dt.timedelta(minutes=1)))  # fmt: skip
    clock.advance(hours=1)
    stats = confirmations.send_due(rt, crm.now())
    assert (stats.sent, stats.uncertain) == (0, 1)
    assert [r["status"] for r in confirmation_rows(crm)] == ["sent", "uncertain"]
    assert len(smtp.parsed()) == 1


def test_confirm_send_scheduler_waits_for_nurture_run_and_retries_a_failed_send(links_crm, serve, smtp, clock):
    crm = links_crm(confirm_send="scheduler")
    srv = serve(crm)
    capture_with_consent(srv, crm, "ada@example.com")
    assert smtp.parsed() == [] and [r["status"] for r in confirmation_rows(crm)] == ["queued"]
    smtp.refuse["ada@example.com"] = "451 4.3.0 try again later"
    stats = run_scheduler(crm)
    assert stats.confirmations_retried == 1 and confirmation_rows(crm)[0]["status"] == "retry"
    del smtp.refuse["ada@example.com"]
    assert run_scheduler(crm).confirmations_sent == 0  # not due yet (retry_backoff)
    clock.advance(minutes=6)
    assert run_scheduler(crm).confirmations_sent == 1
    (conf,) = smtp.parsed()
    assert httpx.post(local(srv, link_in(conf, "confirm"))).status_code == 200
    assert [r["status"] for r in ledger(crm)] == ["pending", "opted_in"]


def test_a_confirmation_link_after_an_unsubscribe_changes_nothing(links_crm, serve, smtp):
    from corecrm_plugins.nurture_sequences.actions import runtime, set_consent

    crm = links_crm()
    srv = serve(crm)
    ada = capture_with_consent(srv, crm, "ada@example.com")
    (conf,) = smtp.parsed()
    set_consent(runtime(crm), ada["id"], "email", "marketing", False, now=crm.now(), source="phone")
    r = httpx.post(local(srv, link_in(conf, "confirm")))
    assert r.status_code == 409 and "Nothing changed" in r.text
    assert [r["status"] for r in ledger(crm)] == ["pending", "opted_out"]


def test_without_nurture_the_link_routes_do_not_exist(web_crm, serve):
    srv = serve(web_crm())
    assert httpx.get(f"{srv.url}/unsubscribe/abc.def").status_code == 404
    assert httpx.post(f"{srv.url}/confirm/abc.def").status_code == 404
