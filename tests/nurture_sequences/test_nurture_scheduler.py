"""The scheduler against a real SMTP server on loopback, with a controllable clock."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa

from corecrm.errors import CrmError

from nurture_testkit import T0, backend_url, consent_in, enrol, nurture_crm, run, smtp  # noqa: F401

from corecrm_plugins.nurture_sequences.tables import enrolments, messages

DAY = dt.timedelta(days=1)


def _enrolment(crm, lead_id):
    e = enrolments.c
    with crm.engine.connect() as conn:
        return conn.execute(sa.select(enrolments).where(e.workspace == crm.workspace, e.lead_id == lead_id)).mappings().one()


def _messages(crm, lead_id=None):
    m = messages.c
    q = sa.select(messages).where(m.workspace == crm.workspace).order_by(m.id)
    if lead_id is not None:
        q = q.where(m.lead_id == lead_id)
    with crm.engine.connect() as conn:
        return [dict(r) for r in conn.execute(q).mappings().all()]


def test_three_step_sequence_sends_each_step_at_its_time(nurture_crm, smtp):
    crm = nurture_crm()
    (lead,) = crm.add_leads([{"first_name": "<b>Zoé</b>", "email": "zoe@example.org", "timezone": "Europe/Paris", "company": "Acme"}])
    consent_in(crm, [lead])
    enrol(crm, [lead])

    stats = run(crm, T0)
    assert stats.sent == 1
    (first,) = smtp.to("zoe@example.org")
    assert first["Subject"] == "Welcome <b>Zoé</b>"  # the plain-text parts are not HTML-escaped
    html = first.get_body(("html",)).get_content()
    assert "&lt;b&gt;Zoé&lt;/b&gt;" in html and "<b>Zoé</b>" not in html  # lead fields escaped in HTML
    assert "Hi <b>Zoé</b>" in first.get_body(("plain",)).get_content()
    key = first["X-Corecrm-Idempotency-Key"]
    assert key == f"nurture-{crm.workspace}-{lead}-trial-0"
    assert key.replace("-", "_") in first["Message-ID"].replace("-", "_")
    assert first["List-Unsubscribe"].startswith("<https://crm.example.com/u/")
    assert first["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"

    # Nothing more until step 2 is due (two days after step 1's scheduled time).
    assert run(crm, T0 + DAY).sent == 0
    assert run(crm, T0 + 2 * DAY - dt.timedelta(minutes=1)).sent == 0
    assert run(crm, T0 + 2 * DAY).sent == 1
    assert smtp.to("zoe@example.org")[-1]["Subject"] == "Tips for Acme"
    assert "Step 2 of 3" in smtp.to("zoe@example.org")[-1].get_content()

    # Step 3: 3 days later, at the next 09:00 in the lead's time zone (Paris = UTC+1 in March before DST).
    due3 = dt.datetime(2026, 3, 7, 8, 0, tzinfo=dt.timezone.utc)
    assert _enrolment(crm, lead)["step"] == 2
    assert run(crm, due3 - dt.timedelta(seconds=1)).sent == 0
    stats = run(crm, due3)
    assert stats.sent == 1 and stats.completed == 1
    assert [m["Subject"] for m in smtp.to("zoe@example.org")] == ["Welcome <b>Zoé</b>", "Tips for Acme", "Your trial ends soon"]
    assert _enrolment(crm, lead)["status"] == "completed"
    # Running again later sends nothing.
    assert run(crm, due3 + 30 * DAY).sent == 0
    sent_events = crm.events_of(lead, "email_sent")
    assert [e["detail"]["step"] for e in sent_events] == ["welcome", "tips", "last_call"]
    assert all(e["plugin"] == "nurture_sequences" and e["detail"]["idempotency_key"] for e in sent_events)
    assert [m["status"] for m in _messages(crm, lead)] == ["sent", "sent", "sent"]


def test_lead_that_qualifies_after_step_one_exits(nurture_crm, smtp):
    crm = nurture_crm()
    a, b = crm.add_leads([{"first_name": "A", "email": "a@example.org"}, {"first_name": "B", "email": "b@example.org"}])
    consent_in(crm, [a, b])
    enrol(crm, [a, b])
    assert run(crm, T0).sent == 2
    crm.clock = T0 + DAY
    crm.move_stage(a, "mql")  # the observer ends the enrolment at once
    assert _enrolment(crm, a)["status"] == "exited" and _enrolment(crm, a)["exit_reason"] == "qualified"
    crm.set_stage_silently(b, "sql")  # even a missed event: the send-time check catches it
    stats = run(crm, T0 + 10 * DAY)
    assert stats.sent == 0 and stats.exited == 1
    assert _enrolment(crm, b)["exit_reason"] == "qualified"
    assert len(smtp.to("a@example.org")) == 1 and len(smtp.to("b@example.org")) == 1
    assert crm.events_of(b, "nurture_exited")[0]["detail"]["reason"] == "qualified"


def test_replied_lead_exits(nurture_crm, smtp):
    from corecrm.storage import schema

    crm = nurture_crm()
    (a,) = crm.add_leads([{"first_name": "A", "email": "a@example.org"}])
    consent_in(crm, [a])
    enrol(crm, [a])
    run(crm, T0)
    with crm.engine.begin() as conn:
        conn.execute(schema.events.insert().values(workspace=crm.workspace, lead_id=a, type="email_replied", at=T0 + DAY, plugin="mail", detail={}))
    stats = run(crm, T0 + 3 * DAY)
    assert stats.sent == 0 and _enrolment(crm, a)["exit_reason"] == "replied"


def test_unsubscribed_lead_receives_nothing_more(nurture_crm, smtp):
    from corecrm_plugins.nurture_sequences import consent
    from corecrm_plugins.nurture_sequences.actions import runtime, unsubscribe

    crm = nurture_crm()
    (a,) = crm.add_leads([{"first_name": "A", "email": "a@example.org"}])
    consent_in(crm, [a])
    enrol(crm, [a])
    run(crm, T0)
    (msg,) = smtp.to("a@example.org")
    token = msg["List-Unsubscribe"].split("/u/")[1].split(">")[0]
    res = unsubscribe(runtime(crm), token, now=T0 + dt.timedelta(hours=1))
    assert res == {"lead_id": a, "channel": "email", "purpose": "marketing", "address": "a@example.org", "exited": ["trial"], "changed": True}
    again = unsubscribe(runtime(crm), token, now=T0 + dt.timedelta(hours=2))  # a second click: nothing more is written
    assert again == {**res, "exited": [], "changed": False}
    assert run(crm, T0 + 30 * DAY).sent == 0
    assert len(smtp.to("a@example.org")) == 1
    with crm.engine.connect() as conn:
        ledger = consent.consent_for_lead(conn, crm.workspace, a)
    assert [r["status"] for r in ledger] == ["opted_in", "opted_out"]
    assert ledger[-1]["source"] == "unsubscribe_link" and ledger[-1]["proof"]["token"]
    # A lead that opted out by another route (no observer involved) exits at the next send.
    (b,) = crm.add_leads([{"first_name": "B", "email": "b@example.org"}])
    consent_in(crm, [b])
    enrol(crm, [b])
    with crm.engine.begin() as conn:
        consent.record(conn, crm.workspace, [consent.ConsentEntry(b, "email", "marketing", "opted_out", crm.clock, "phone", "b@example.org")], recorded_at=crm.clock)
    assert run(crm).sent == 0 and _enrolment(crm, b)["exit_reason"] == "unsubscribed"


def test_lead_without_consent_is_never_emailed(nurture_crm, smtp):
    from corecrm_plugins.nurture_sequences.actions import confirm, runtime, set_consent

    crm = nurture_crm()
    none, other, pending = crm.add_leads([
        {"first_name": "N", "email": "none@example.org"},
        {"first_name": "O", "email": "other@example.org"},
        {"first_name": "P", "email": "pending@example.org"},
    ])  # fmt: skip
    consent_in(crm, [other], address="someone-else@example.org")  # consent for another address does not count
    enrol(crm, [none, other, pending])
    stats = run(crm, T0)
    for d in (1, 2, 5, 9):
        stats.add(run(crm, T0 + d * DAY))
    assert stats.sent == 0 and stats.skipped == 9
    assert smtp.parsed() == []
    reasons = {e["detail"]["reason"] for e in crm.events_of(none, "nurture_step_skipped")}
    assert reasons == {"no email consent for marketing: no consent recorded"}
    assert "another address" in crm.events_of(other, "nurture_step_skipped")[0]["detail"]["reason"]

    # Double opt-in: the opt-in stays pending (and nothing is sent) until the signed link is followed.
    crm2 = nurture_crm({**__import__("nurture_testkit").nurture_settings(), "double_opt_in": ["email"]})
    (p,) = crm2.add_leads([{"first_name": "P", "email": "p@example.org"}])
    rt = runtime(crm2)
    res = set_consent(rt, p, "email", "marketing", True, now=T0, source="form", proof={"form": "trial"})
    assert res["status"] == "pending" and res["confirm_token"]
    enrol(crm2, [p])
    assert run(crm2, T0).sent == 0
    crm2.clock = T0 + dt.timedelta(hours=1)
    confirm(rt, res["confirm_token"], now=crm2.clock)
    confirm(rt, res["confirm_token"], now=crm2.clock)  # following the link twice is harmless
    enrol(crm2, [p])  # already enrolled: no-op
    assert run(crm2).sent == 1  # step 1 waited while pending (test_nurture_double_opt_in_wait.py): it goes now
    assert crm2.events_of(p, "email_sent")[0]["detail"]["step"] == "welcome"
    # A confirmation link followed after the person opted out changes nothing.
    (q,) = crm2.add_leads([{"first_name": "Q", "email": "q@example.org"}])
    req = set_consent(rt, q, "email", "marketing", True, now=crm2.clock, source="form")
    set_consent(rt, q, "email", "marketing", False, now=crm2.clock, source="phone")
    with pytest.raises(CrmError, match="opted out"):
        confirm(rt, req["confirm_token"], now=crm2.clock)


def test_retry_with_backoff_then_failed_with_reason(nurture_crm, smtp):
    crm = nurture_crm()
    a, b = crm.add_leads([{"first_name": "A", "email": "busy@example.org"}, {"first_name": "B", "email": "gone@example.org"}])
    consent_in(crm, [a, b])
    enrol(crm, [a, b])
    smtp.refuse["busy@example.org"] = "451 4.3.0 try again later"
    smtp.refuse["gone@example.org"] = "550 5.1.1 no such user"
    s1 = run(crm, T0)
    assert s1.retried == 1 and s1.failed == 1  # 5xx: failed at once; 4xx: retried
    assert _enrolment(crm, a)["due_at"].replace(tzinfo=dt.timezone.utc) == T0 + dt.timedelta(minutes=5)
    s2 = run(crm, T0 + dt.timedelta(minutes=5))
    assert s2.retried == 1
    assert _enrolment(crm, a)["due_at"].replace(tzinfo=dt.timezone.utc) == T0 + dt.timedelta(minutes=15)  # backoff doubled
    s3 = run(crm, T0 + dt.timedelta(minutes=15))
    assert s3.failed == 1  # max_attempts = 3
    (ma, mb) = _messages(crm, a)[0], _messages(crm, b)[0]
    assert ma["status"] == "failed" and "451" in ma["error"] and "gave up after 3 attempts" in ma["error"] and ma["attempts"] == 3
    assert mb["status"] == "failed" and "550" in mb["error"]
    assert crm.events_of(a, "nurture_send_failed")[0]["detail"]["error"] == ma["error"]
    assert len(crm.events_of(a, "nurture_send_retry")) == 2
    assert smtp.parsed() == []
    # The bounced address is suppressed: an opt-out recorded with source "bounce".
    from corecrm_plugins.nurture_sequences import consent

    with crm.engine.connect() as conn:
        assert consent.consent_for_lead(conn, crm.workspace, b)[-1]["source"] == "bounce"
    # The sequence goes on for the retried lead once the server accepts again (on_failure = continue).
    smtp.refuse.clear()
    assert run(crm, T0 + 2 * DAY).sent == 1
    assert _enrolment(crm, b)["status"] == "exited"  # the bounce opted it out, so step 2 exits


def test_crash_between_send_and_record_never_sends_twice(nurture_crm, smtp):
    from corecrm_plugins.nurture_sequences import scheduler
    from corecrm_plugins.nurture_sequences.actions import runtime

    crm = nurture_crm()
    (a,) = crm.add_leads([{"first_name": "A", "email": "a@example.org"}])
    consent_in(crm, [a])
    enrol(crm, [a])
    rt = runtime(crm)
    stats = scheduler.RunStats()
    n, batch = scheduler._claim(rt, T0, stats)
    assert n == 1 and len(batch) == 1
    scheduler._send(rt, batch, T0)  # the message leaves... and the worker dies before recording it
    assert len(smtp.parsed()) == 1
    assert _messages(crm, a)[0]["status"] == "sending"
    # Another worker, before the lease expires: nothing to claim.
    assert run(crm, T0 + dt.timedelta(minutes=5)).claimed == 0
    # After the lease: it finds the key already stored and does not send again.
    stats = run(crm, T0 + dt.timedelta(minutes=11))
    assert stats.uncertain == 1 and stats.sent == 0
    assert len(smtp.parsed()) == 1
    assert _messages(crm, a)[0]["status"] == "uncertain"
    assert run(crm, T0 + 2 * DAY).sent == 1  # the sequence goes on with step 2
    assert [m["X-Corecrm-Idempotency-Key"] for m in smtp.parsed()] == [f"nurture-{crm.workspace}-{a}-trial-0", f"nurture-{crm.workspace}-{a}-trial-1"]


def test_frequency_cap_defers_without_losing_the_step(nurture_crm, smtp):
    from nurture_testkit import nurture_settings, three_step_sequence

    seqs = {"trial": three_step_sequence(), "news": three_step_sequence()}
    crm = nurture_crm(nurture_settings(sequences=seqs), {"frequency_cap": 1, "frequency_window": "1d"})
    (a,) = crm.add_leads([{"first_name": "A", "email": "a@example.org"}])
    consent_in(crm, [a])
    enrol(crm, [a], "trial")
    enrol(crm, [a], "news")
    s = run(crm, T0)
    assert s.sent == 1 and s.deferred == 1
    assert len(smtp.parsed()) == 1
    s = run(crm, T0 + DAY)
    assert s.sent == 1
    assert sorted(m["X-Corecrm-Sequence"] for m in smtp.parsed()) == ["news/welcome", "trial/welcome"]


def test_owner_task_channel_creates_a_task(nurture_crm, smtp):
    from corecrm.storage import schema
    from nurture_testkit import nurture_settings

    seq = {"steps": [{"name": "call", "channel": "owner_task", "subject": "Call {{ lead.first_name }}", "text": "Ask about {{ lead.company }}"}]}
    crm = nurture_crm(nurture_settings(sequences={"dealer": seq}))
    (a,) = crm.add_leads([{"first_name": "A", "email": "a@example.org", "owner": "sam", "company": "Acme"}])
    enrol(crm, [a], "dealer")
    assert run(crm, T0).sent == 1  # owner_task needs no consent (require_consent = ["email"])
    with crm.engine.connect() as conn:
        (task,) = conn.execute(sa.select(schema.activities).where(schema.activities.c.workspace == crm.workspace)).mappings().all()
    assert task["type"] == "task" and task["owner"] == "sam" and task["note"] == "Call A\n\nAsk about Acme"
    assert crm.events_of(a, "message_sent")[0]["detail"]["channel"] == "owner_task"


@pytest.mark.parametrize("url", ["https://crm.example.com/u/{token}", "https://crm.example.com/u?t={token}&from=mail"])
def test_mailto_unsubscribe_carries_the_signed_token_for_any_url_shape(nurture_crm, smtp, url):
    import re
    from urllib.parse import unquote

    from nurture_testkit import nurture_settings

    from corecrm_plugins.nurture_sequences.actions import runtime, unsubscribe

    crm = nurture_crm(nurture_settings(unsubscribe_url=url, unsubscribe_mailto="unsubscribe@shop.example"))
    (a,) = crm.add_leads([{"first_name": "A", "email": "a@example.org"}])
    consent_in(crm, [a])
    enrol(crm, [a])
    assert run(crm, T0).sent == 1
    (msg,) = smtp.to("a@example.org")
    link, mailto = re.fullmatch(r"<([^>]*)>, <([^>]*)>", msg["List-Unsubscribe"]).groups()
    prefix, _, suffix = url.partition("{token}")
    assert link.startswith(prefix) and link.endswith(suffix)
    url_token = link[len(prefix) : len(link) - len(suffix)]
    assert mailto.startswith("mailto:unsubscribe@shop.example?subject=")
    subject = unquote(mailto.split("?subject=", 1)[1])
    assert subject == f"unsubscribe {url_token}"
    # It is the signed token itself: the mailbox handler can act on it.
    res = unsubscribe(runtime(crm), subject.split(" ", 1)[1], now=T0 + dt.timedelta(hours=1), source="unsubscribe_mailto")
    assert res["lead_id"] == a and res["changed"] is True and res["exited"] == ["trial"]
