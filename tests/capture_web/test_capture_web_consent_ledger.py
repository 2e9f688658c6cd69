"""The web form's consent box, end to end with the real plugins: the real server on loopback,
the intake pipeline, nurture_sequences' ledger (``consent.record_consents``), the scheduler
and the e-mail channel sending to a real SMTP server on loopback."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "nurture_sequences"))
from cw_helpers import FORMS, lead_rows, serve, wait_processed, web_config  # noqa: E402,F401 (fixtures)
from nurture_testkit import SECRET_VAR, email_settings, nurture_settings, smtp, three_step_sequence  # noqa: E402,F401 (fixtures)

from corecrm.context import HookContext  # noqa: E402
from corecrm.models import Event  # noqa: E402


@pytest.fixture
def nurture_web_crm(make_crm, smtp, monkeypatch):
    """``nurture_web_crm(forms=..., plugins=[...], targets=..., workspaces=...)``: capture_web, nurture_sequences
    enrolling every captured lead in ``trial``, channel_email to the loopback SMTP server."""
    monkeypatch.setenv(SECRET_VAR, "test-secret-not-for-production")

    def factory(*, forms: dict[str, Any] | None = None, plugins: tuple[str, ...] = (), targets: dict[str, Any] | None = None,
                workspaces: dict[str, Any] | None = None) -> Any:  # fmt: skip
        cfg = web_config(forms if forms is not None else FORMS, targets)
        cfg["plugins"]["enabled"] = ["capture_json", "capture_web", *plugins, "nurture_sequences", "channel_email"]
        cfg["plugins"]["nurture_sequences"] = nurture_settings(sequences={"trial": three_step_sequence(enrol=[{"on": "intake"}])})
        cfg["plugins"]["channel_email"] = email_settings(smtp.port)
        if workspaces:
            cfg["workspaces"] = workspaces
        return make_crm(cfg)

    return factory


@pytest.fixture
def crm(nurture_web_crm):
    return nurture_web_crm()


def ledger(crm: Any) -> list[dict[str, Any]]:
    from corecrm_plugins.nurture_sequences.tables import consent

    c = consent.c
    with crm.engine.connect() as conn:
        return [dict(r) for r in conn.execute(sa.select(consent).where(c.workspace == crm.workspace).order_by(c.id)).mappings()]


def ledger_all(crm: Any) -> list[dict[str, Any]]:
    from corecrm_plugins.nurture_sequences.tables import consent

    with crm.engine.connect() as conn:
        return [dict(r) for r in conn.execute(sa.select(consent).order_by(consent.c.id)).mappings()]


def run_scheduler(crm: Any) -> Any:
    from corecrm_plugins.nurture_sequences.actions import runtime
    from corecrm_plugins.nurture_sequences.scheduler import run_once

    return run_once(runtime(crm), crm.now())


def intake_ctx(crm: Any) -> HookContext:
    return HookContext(crm=crm, workspace=crm.workspace, now=crm.now(), mode="intake")


def post(srv: Any, **fields: str) -> httpx.Response:
    r = httpx.post(f"{srv.url}/capture/contact", data=fields, timeout=20)
    assert r.status_code in (200, 201), r.text
    return r


def test_ticked_box_opts_the_lead_in_and_the_nurture_email_goes_out(crm, serve, smtp):
    srv = serve(crm)
    post(srv, first_name="Ada", last_name="Lovelace", email="Ada@Example.com", _cw_consent="yes")
    post(srv, first_name="Bob", last_name="Nobox", email="bob@example.com")
    wait_processed(crm)
    ada, bob = lead_rows(crm)

    (row,) = ledger(crm)  # one row: Ada's; Bob did not tick the box
    assert (row["lead_id"], row["channel"], row["purpose"], row["status"], row["address"]) == (ada["id"], "email", "marketing", "opted_in", "ada@example.com")
    assert row["source"] == "web_form:contact"
    assert row["proof"]["form"] == "contact" and row["proof"]["ip"] == "127.0.0.1"
    assert row["proof"]["text"] == "Send me product news by email" and row["proof"]["capture_id"] == ada["capture_id"]
    assert row["at"].replace(tzinfo=None) == crm.now().replace(tzinfo=None)  # when the form was received, from the ISO text

    stats = run_scheduler(crm)
    assert stats.sent == 1 and stats.skipped == 1
    (msg,) = smtp.parsed()
    assert "Ada@Example.com" in str(msg["To"]) and msg["Subject"] == "Welcome Ada"
    assert smtp.to("bob@example.com") == []
    ev = {e.type: e for e in crm.history(bob["id"])}
    assert "no email consent for marketing: no consent recorded" in ev["nurture_step_skipped"].detail["reason"]
    assert "email_sent" in {e.type for e in crm.history(ada["id"])}


def test_same_form_posted_twice_and_redelivered_is_one_ledger_row(crm, serve):
    srv = serve(crm)
    form = {"first_name": "Ada", "last_name": "Lovelace", "email": "ada@example.com", "_cw_consent": "yes"}
    r1 = post(srv, **form)
    r2 = post(srv, **form)
    assert r2.json() == {"capture_id": r1.json()["capture_id"], "status": "duplicate"}
    # Same person, same rendered form (one token), posted twice with a different body (a double click
    # after editing a field): the token makes it one capture.
    page = httpx.get(f"{srv.url}/forms/contact").text
    token = page.split('name="_cw_token" value="', 1)[1].split('"', 1)[0]
    post(srv, **{**form, "email": "grace@example.com", "last_name": "Hopper", "_cw_token": token})
    post(srv, **{**form, "email": "grace@example.com", "last_name": "Hopper", "company": "Navy", "_cw_token": token})
    wait_processed(crm)
    leads = lead_rows(crm)
    assert len(leads) == 2
    assert sorted(r["address"] for r in ledger(crm)) == ["ada@example.com", "grace@example.com"]

    # The observer delivered again (a retry after a crash, a replayed event): nothing is appended.
    events = [Event(type="captured", at=crm.now(), lead_id=lead["id"]) for lead in leads]
    crm.plugins.notify("crm_leads_captured", workspace=crm.workspace, events=events, ctx=intake_ctx(crm))
    assert len(ledger(crm)) == 2


def test_redelivery_after_an_unsubscribe_does_not_opt_the_lead_in_again(crm, serve):
    from corecrm_plugins.capture_web.consent import forward_to_ledger
    from corecrm_plugins.nurture_sequences import consent
    from corecrm_plugins.nurture_sequences.actions import runtime, set_consent

    srv = serve(crm)
    post(srv, first_name="Ada", last_name="Lovelace", email="ada@example.com", _cw_consent="yes")
    wait_processed(crm)
    (ada,) = lead_rows(crm)
    set_consent(runtime(crm), ada["id"], "email", "marketing", False, now=crm.now(), source="cli")
    assert forward_to_ledger([Event(type="captured", at=crm.now(), lead_id=ada["id"])], intake_ctx(crm)) == 1  # handed over…
    assert [r["status"] for r in ledger(crm)] == ["opted_in", "opted_out"]  # …but already in the ledger
    with crm.engine.connect() as conn:
        assert consent.states(conn, crm.workspace, [ada["id"]], "email", "marketing")[ada["id"]].status == "opted_out"


def test_a_returning_person_merged_into_their_lead_brings_no_consent_across(nurture_web_crm, serve):
    """Consent is never carried across a merge: the ticked box of a capture merged into a stored lead is not recorded for it."""
    crm = nurture_web_crm(plugins=("dedup",))
    srv = serve(crm)
    post(srv, first_name="Ada", last_name="Lovelace", email="ada@example.com")
    wait_processed(crm)
    post(srv, first_name="Ada", last_name="Lovelace", email="ada@example.com", company="Analytical", _cw_consent="yes")
    wait_processed(crm)
    (ada,) = lead_rows(crm)
    assert not ada["consent"]
    assert ledger(crm) == []
    (merged,) = [e for e in crm.history(ada["id"]) if e.type == "merged"]
    assert merged.detail["consent_not_carried"]["email"]["source"] == "web_form:contact"  # kept as a record, not as consent


def test_without_the_box_on_the_form_nothing_reaches_the_ledger(nurture_web_crm, serve):
    crm = nurture_web_crm(forms={"contact": {k: v for k, v in FORMS["contact"].items() if k != "consent"}})
    srv = serve(crm)
    post(srv, last_name="Lovelace", email="ada@example.com", _cw_consent="yes")  # a box the form does not have
    wait_processed(crm)
    assert len(lead_rows(crm)) == 1 and ledger(crm) == []


def web_capture(email: str) -> Any:
    """A web-form capture with the box ticked, as the server stores it (processed in-process, no HTTP)."""
    import json

    from corecrm.records import RawCapture
    from corecrm_plugins.capture_web import mapping

    consent = {"channel": "email", "purpose": "marketing", "status": "granted", "at": "2026-03-02T08:59:00+00:00", "source": "web_form:contact",
               "text": "Send me product news by email", "proof": {"ip": "192.0.2.7", "user_agent": "test", "form": "contact"}}  # fmt: skip
    meta = {mapping.META_KEY: {"form": "contact", "fields": FORMS["contact"]["fields"], "consent": consent}}
    body = json.dumps({"last_name": "Lovelace", "email": email}).encode()
    return RawCapture(payload=body, origin="http:contact", content_type="application/json", meta=meta, format=mapping.FORMAT_NAME)


def test_not_handed_over_where_nurture_is_disabled_for_the_workspace(nurture_web_crm):
    crm = nurture_web_crm(workspaces={"quiet": {"plugins": {"disabled": ["nurture_sequences"]}}})
    crm.capture([web_capture("ada@example.com")])
    crm.capture([web_capture("grace@example.com")], workspace="quiet")
    assert [(r["workspace"], r["address"]) for r in ledger_all(crm)] == [("default", "ada@example.com")]


def test_a_failing_ledger_does_not_stop_the_deliveries(nurture_web_crm, monkeypatch, caplog):
    from corecrm_plugins.capture_web import tables
    from corecrm_plugins.nurture_sequences import consent

    def broken(crm, workspace, entries):
        raise consent.ConsentEntryError("entries[0].at", "broken on purpose")

    monkeypatch.setattr(consent, "record_consents", broken)
    crm = nurture_web_crm(targets={"crm2": {"kind": "webhook", "url": "http://127.0.0.1:9/", "secret": "s", "events": ["captured"]}})
    crm.capture([web_capture("ada@example.com")])
    assert "entries[0].at: broken on purpose" in caplog.text
    with crm.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(tables.deliveries)).scalar_one() == 1
    assert ledger(crm) == []
