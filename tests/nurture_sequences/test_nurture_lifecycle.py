"""Enrolment rules on intake and lifecycle events, consent from captures, merges, preview, report, tokens."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa

from corecrm.models import Event

from nurture_testkit import T0, backend_url, consent_in, enrol, nurture_crm, nurture_settings, run, smtp, three_step_sequence  # noqa: F401

from corecrm_plugins.nurture_sequences.tables import enrolments

DAY = dt.timedelta(days=1)


def _enrolled(crm):
    e = enrolments.c
    with crm.engine.connect() as conn:
        return sorted((r.lead_id, r.sequence, r.status) for r in conn.execute(sa.select(e.lead_id, e.sequence, e.status).where(e.workspace == crm.workspace)))


def _rules_cfg():
    trial = three_step_sequence(enrol=[{"on": "intake", "match": {"interests": "trial", "source": ["web", "ads"]}}])
    winback = three_step_sequence(purpose="marketing", enrol=[{"on": "stage_changed", "to": ["nurturing"]}])
    renewal = three_step_sequence(purpose="service", exit_on=["unsubscribed"],
                                  enrol=[{"on": "date", "date_field": "attributes.renewal_date", "days_before": 30}])  # fmt: skip
    onboarding = three_step_sequence(purpose="service", exit_on=["unsubscribed"], enrol=[{"on": "converted"}])
    return nurture_settings(sequences={"trial": trial, "winback": winback, "renewal": renewal, "onboarding": onboarding})


def test_intake_rules_enrol_and_capture_consent_is_recorded(nurture_crm, smtp):
    """End to end through the core's intake: capture → pipeline → crm_leads_captured → rules."""
    import json

    from corecrm.records import RawCapture

    from corecrm_plugins.nurture_sequences import consent

    crm = nurture_crm(_rules_cfg())
    docs = [
        {"first_name": "A", "email": "A@Example.org", "source": "web", "interests": ["trial", "pricing"],
         "consent": {"email": True, "source": "form", "proof": {"form": "trial", "ip": "192.0.2.7"}}},
        {"first_name": "B", "email": "b@example.org", "source": "partner", "interests": ["trial"]},
        {"first_name": "C", "email": "c@example.org", "source": "ads", "interests": ["trial"], "consent": {"email": {"marketing": False}}},
    ]  # fmt: skip
    (res,) = crm.capture([RawCapture(payload=json.dumps(docs).encode(), origin="form.json")])
    a, b, c = res.lead_ids
    assert _enrolled(crm) == [(a, "trial", "active"), (c, "trial", "active")]
    with crm.engine.connect() as conn:
        la = consent.consent_for_lead(conn, crm.workspace, a)
        lc = consent.consent_for_lead(conn, crm.workspace, c)
    assert [(r["channel"], r["purpose"], r["status"], r["address"], r["source"]) for r in la] == [("email", "marketing", "opted_in", "a@example.org", "form")]
    assert la[0]["proof"]["ip"] == "192.0.2.7"
    assert lc[0]["status"] == "opted_out"
    ev = crm.events_of(a, "nurture_enrolled")[0]
    assert ev["detail"]["sequence"] == "trial" and "trial.enrol[0]" in ev["detail"]["reason"] and ev["detail"]["by"] == "nurture_sequences"
    assert any(e.type == "nurture_enrolled" for e in crm.history(a))
    # The same observer called again (a retry): no second enrolment, no second ledger row.
    events = [Event(type="captured", at=T0, lead_id=i) for i in (a, b, c)]
    crm.plugins.notify("crm_leads_captured", workspace=crm.workspace, events=events, ctx=crm.hook_ctx("intake"))
    assert len(_enrolled(crm)) == 2
    with crm.engine.connect() as conn:
        assert [len(consent.consent_for_lead(conn, crm.workspace, i)) for i in (a, b, c)] == [1, 0, 1]
    stats = run(crm, T0)
    assert stats.sent == 1 and stats.exited == 1  # c opted out: exits, a gets its e-mail
    assert [m["To"] for m in smtp.parsed()] == ["A <A@Example.org>"]


def test_stage_change_and_conversion_rules(nurture_crm, smtp):
    crm = nurture_crm(_rules_cfg())
    a, b = crm.add_leads([{"first_name": "A", "email": "a@example.org", "stage": "mql"}, {"first_name": "B", "email": "b@example.org", "stage": "mql"}])
    crm.move_stage(a, "nurturing")
    assert _enrolled(crm) == [(a, "winback", "active")]
    crm.convert(a)  # converted: leaves winback; the converted rule enrols it in onboarding
    assert _enrolled(crm) == [(a, "onboarding", "active"), (a, "winback", "exited")]
    assert crm.events_of(a, "nurture_exited")[0]["detail"]["reason"] == "converted"
    crm.move_stage(b, "disqualified")
    assert {x[0] for x in _enrolled(crm)} == {a}  # nothing for b

    from corecrm_plugins.nurture_sequences.report import run_report

    consent_in(crm, [a], purpose="service")
    run(crm, T0)
    table = run_report(crm.engine, crm.workspace)
    rows = {r[0]: dict(zip(table.columns, r)) for r in table.rows}
    assert rows["winback"]["exited"] == 1 and rows["winback"]["exited_by_reason"] == "converted=1"
    assert rows["onboarding"]["sent"] == 1 and rows["onboarding"]["active"] == 1
    assert rows["winback"]["converted"] == 1 and rows["winback"]["conversion_rate"] == 1.0
    assert run_report(crm.engine, crm.workspace, T0.date(), T0.date()).rows == table.rows  # all enrolled on T0
    later = run_report(crm.engine, crm.workspace, (T0 + DAY).date(), None)
    assert later.rows == [] and "in this period" in later.notes[0]


def test_date_rule_enrols_a_customer_before_renewal(nurture_crm, smtp):
    from corecrm_plugins.nurture_sequences.actions import runtime
    from corecrm_plugins.nurture_sequences.enrolment import enrol_by_date

    crm = nurture_crm(_rules_cfg())
    soon, later, past = crm.add_leads([
        {"first_name": "S", "email": "s@example.org", "attributes": {"renewal_date": "2026-03-20"}},
        {"first_name": "L", "email": "l@example.org", "attributes": {"renewal_date": "2026-06-01"}},
        {"first_name": "P", "email": "p@example.org", "attributes": {"renewal_date": "2026-01-01"}},
    ])  # fmt: skip
    rt = runtime(crm)
    assert enrol_by_date(crm, crm.engine, crm.workspace, rt.cfg, T0) == 1
    assert enrol_by_date(crm, crm.engine, crm.workspace, rt.cfg, T0) == 0
    assert _enrolled(crm) == [(soon, "renewal", "active")]


def test_merge_never_moves_consent(nurture_crm, smtp):
    from corecrm.storage import schema

    from corecrm_plugins.nurture_sequences import consent

    crm = nurture_crm()
    keep, gone = crm.add_leads([{"first_name": "K", "email": "k@example.org"}, {"first_name": "G", "email": "g@example.org"}])
    consent_in(crm, [gone])  # only the merged-away person consented
    enrol(crm, [keep, gone])
    with crm.engine.begin() as conn:
        # A dedup plugin merges `gone` into `keep` and (wrongly) copies the address across.
        conn.execute(schema.leads.update().where(schema.leads.c.id == gone).values(status="merged", merged_into=keep))
        conn.execute(schema.leads.update().where(schema.leads.c.id == keep).values(email="g@example.org", email_norm="g@example.org"))
        assert consent.on_leads_merged(conn, crm.workspace, gone, keep, at=T0) == 1
        assert consent.consent_for_lead(conn, crm.workspace, keep) == []
        assert len(consent.consent_for_lead(conn, crm.workspace, gone)) == 1
    stats = run(crm, T0 + 10 * DAY)
    assert stats.sent == 0 and smtp.parsed() == []
    assert "no consent recorded" in crm.events_of(keep, "nurture_step_skipped")[0]["detail"]["reason"]
    assert consent.MERGE_EXCLUDED_FIELDS == ("consent",)


def test_preview_renders_like_the_scheduler_without_sending(nurture_crm, smtp):
    from corecrm.errors import CrmError

    from corecrm_plugins.nurture_sequences.actions import preview, runtime

    crm = nurture_crm()
    (a,) = crm.add_leads([{"first_name": "<i>Ann</i>", "email": "ann@example.org", "company": "Acme"}])
    rt = runtime(crm)
    msg = preview(rt, "trial", "1", a)
    assert msg["subject"] == "Welcome <i>Ann</i>" and "&lt;i&gt;Ann&lt;/i&gt;" in msg["html"]
    assert msg["unsubscribe_url"].startswith("https://crm.example.com/u/") and msg["headers"]["X-Corecrm-Idempotency-Key"].endswith("-trial-0")
    assert preview(rt, "trial", "tips", a)["subject"] == "Tips for Acme"
    with pytest.raises(CrmError, match="unknown step '9'"):
        preview(rt, "trial", "9", a)
    with pytest.raises(CrmError, match="unknown sequence"):
        preview(rt, "nope", "1", a)
    assert smtp.parsed() == [] and crm.events_of(a) == []


def test_tokens_are_signed_and_bound_to_the_workspace(nurture_crm, smtp):
    from corecrm_plugins.nurture_sequences import tokens
    from corecrm_plugins.nurture_sequences.actions import runtime, unsubscribe

    crm = nurture_crm()
    rt = runtime(crm)
    tok = tokens.sign(rt.cfg.secret, "unsubscribe", w=crm.workspace, l=1, c="email", p="marketing", a="x@example.org")
    body, sig = tok.split(".")
    forged = tokens.sign("another-secret", "unsubscribe", w=crm.workspace, l=2, c="email", p="marketing", a="y@example.org")
    for bad in (forged, body + "." + sig[::-1], "garbage", body[:-2] + "." + sig):
        with pytest.raises(tokens.TokenError):
            unsubscribe(rt, bad, now=T0)
    other_ws = tokens.sign(rt.cfg.secret, "unsubscribe", w="elsewhere", l=1, c="email", p="marketing", a=None)
    with pytest.raises(tokens.TokenError, match="workspace"):
        unsubscribe(rt, other_ws, now=T0)
    confirm_tok = tokens.sign(rt.cfg.secret, "confirm", w=crm.workspace, l=1, c="email", p="marketing", a=None)
    with pytest.raises(tokens.TokenError, match="not a unsubscribe token"):
        unsubscribe(rt, confirm_tok, now=T0)


def test_the_car_dealer_example_from_the_guide(backend_url, smtp):
    """The guide's second example, run as written: double opt-in holds e-mail back, the call task still comes."""
    import json
    import re
    import tomllib
    from pathlib import Path

    from corecrm.records import RawCapture

    from nurture_testkit import HarnessCrm, email_settings

    from corecrm_plugins.nurture_sequences.actions import confirm, runtime, set_consent

    doc = (Path(__file__).resolve().parents[2] / "docs" / "plugins" / "nurture.md").read_text(encoding="utf-8")
    block = next(b for b in re.findall(r"```toml\n(.*?)```", doc, re.S) if "test_drive_follow_up" in b)
    plugins = tomllib.loads(block)["plugins"]
    plugins["nurture_sequences"]["secret"] = {"env": "CORECRM_TEST_NURTURE_SECRET"}
    plugins["channel_email"] = email_settings(smtp.port)
    crm = HarnessCrm(backend_url, plugins)
    try:
        doc_lead = {"first_name": "Jonas", "last_name": "Weber", "email": "jonas@example.de", "source": "web",
                    "attributes": {"test_drive": True, "model": "ID.4"}}  # fmt: skip
        (res,) = crm.capture([RawCapture(payload=json.dumps([doc_lead]).encode(), origin="web-form.json")])
        (lead,) = res.lead_ids
        with crm.engine.begin() as conn:  # what a routing plugin would have done
            from corecrm.storage import schema

            conn.execute(schema.leads.update().where(schema.leads.c.id == lead).values(owner="sam"))
        rt = runtime(crm)
        pending = set_consent(rt, lead, "email", "service", True, now=T0, source="web-form", proof={"form": "test-drive"})
        assert pending["status"] == "pending" and pending["confirm_url"].startswith("https://dealer.example/confirm/")

        st = run(crm, T0 + dt.timedelta(hours=2))
        assert (st.sent, st.skipped, st.waiting) == (0, 0, 1)  # thank_you waits: not confirmed yet
        confirm(rt, pending["confirm_token"], now=T0 + dt.timedelta(hours=3))
        assert run(crm, T0 + dt.timedelta(hours=3)).sent == 1  # thank_you, once confirmed
        # thank_you was due at 11:00 Berlin; a day later is 11:00, so the next 10:00 is the day after.
        call_due = dt.datetime(2026, 3, 4, 9, 0, tzinfo=dt.timezone.utc)
        assert run(crm, call_due - dt.timedelta(minutes=1)).sent == 0
        st = run(crm, call_due)
        assert st.sent == 1, [e["detail"]["reason"] for e in crm.events_of(lead, "nurture_step_skipped")]
        (task,) = crm.activities(lead_id=lead)
        assert task["owner"] == "sam" and task["note"].startswith("Call Jonas Weber about the ID.4")

        offer_due = dt.datetime(2026, 3, 10, 16, 0, tzinfo=dt.timezone.utc)  # six days later, 17:00 Berlin
        assert run(crm, offer_due).sent == 1
        confirmation, thanks, mail = smtp.parsed()  # the double opt-in message went out when the opt-in was recorded
        assert thanks["Subject"] == "Thank you for driving the ID.4"
        assert confirmation["Subject"] == "Please confirm your e-mail address" and "List-Unsubscribe" not in confirmation
        assert "https://dealer.example/confirm/" in confirmation.get_body(("plain",)).get_content()
        assert mail["Subject"] == "Your ID.4: this month's offer" and mail["List-Unsubscribe"].startswith("<https://dealer.example/unsubscribe/")
    finally:
        crm.close()
