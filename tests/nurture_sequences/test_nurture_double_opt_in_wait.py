"""A step due while the lead's double opt-in is pending waits for the confirmation instead of being lost.

Real SMTP on loopback, controllable clock. The step stays due and is re-checked
by every run; once confirmed it is sent; once the confirmation link has
expired, or the pending statement was replaced by an opt-out, it is skipped
with the reason.
"""

from __future__ import annotations

import datetime as dt
import re

import sqlalchemy as sa

from corecrm.storage.db import as_utc

from nurture_testkit import T0, backend_url, enrol, nurture_crm, nurture_settings, smtp, three_step_sequence  # noqa: F401

from corecrm_plugins.nurture_sequences import consent
from corecrm_plugins.nurture_sequences.tables import enrolments, messages

HOUR = dt.timedelta(hours=1)
DAY = dt.timedelta(days=1)
CONFIRM_URL = "https://crm.example.com/c/{token}"


def run(crm, at=None):
    """One scheduler round at ``at`` (default: the clock); bounded, so a step re-claimed forever fails instead of hanging."""
    from corecrm_plugins.nurture_sequences.actions import runtime
    from corecrm_plugins.nurture_sequences.scheduler import run_once

    if at is not None:
        crm.clock = at
    return run_once(runtime(crm), crm.clock, max_batches=100)


def doi_crm(nurture_crm, **over):
    return nurture_crm(nurture_settings(double_opt_in=["email"], confirm_url=CONFIRM_URL, **over))


def enrolment(crm, lead_id):
    e = enrolments.c
    with crm.engine.connect() as conn:
        return conn.execute(sa.select(enrolments).where(e.workspace == crm.workspace, e.lead_id == lead_id)).mappings().one()


def step_messages(crm, lead_id):
    m = messages.c
    with crm.engine.connect() as conn:
        return [dict(r) for r in conn.execute(sa.select(messages).where(m.workspace == crm.workspace, m.lead_id == lead_id).order_by(m.id)).mappings().all()]


def ask(crm, lead_id, *, at=None):
    """The person ticks the box: a pending opt-in (its confirmation e-mail is sent unless confirm_send = "scheduler")."""
    from corecrm_plugins.nurture_sequences.actions import runtime, set_consent

    return set_consent(runtime(crm), lead_id, "email", "marketing", True, now=at or crm.clock, source="form")


def subjects(smtp, address):
    return [str(m["Subject"]) for m in smtp.to(address)]


def test_a_step_due_while_pending_waits_and_is_sent_once_confirmed(nurture_crm, smtp):
    from corecrm_plugins.nurture_sequences.actions import confirm, runtime

    crm = doi_crm(nurture_crm)
    (p,) = crm.add_leads([{"first_name": "Pia", "email": "pia@example.org"}])
    ask(crm, p)
    enrol(crm, [p])
    assert subjects(smtp, "pia@example.org") == ["Please confirm your e-mail address"]

    stats = run(crm, T0)
    assert (stats.sent, stats.skipped, stats.waiting) == (0, 0, 1)
    again = run(crm, T0 + 30 * dt.timedelta(minutes=1))  # a later run re-checks it
    assert (again.sent, again.skipped, again.waiting) == (0, 0, 1)
    row = enrolment(crm, p)
    assert (row["status"], row["step"]) == ("active", 0)
    assert as_utc(row["due_at"]) <= T0 and row["lease_until"] is None  # still due, not leased
    assert step_messages(crm, p) == [] and crm.events_of(p, "nurture_step_skipped") == []
    assert subjects(smtp, "pia@example.org") == ["Please confirm your e-mail address"]

    # Pia follows the link in the confirmation e-mail.
    (mail,) = smtp.to("pia@example.org")
    token = re.search(r"https://crm\.example\.com/c/(\S+)", mail.get_body(("plain",)).get_content()).group(1)
    crm.clock = T0 + HOUR
    assert confirm(runtime(crm), token, now=crm.clock)["changed"] is True
    stats = run(crm)
    assert (stats.sent, stats.waiting) == (1, 0)
    assert subjects(smtp, "pia@example.org") == ["Please confirm your e-mail address", "Welcome Pia"]
    # The rest of the sequence follows its schedule (step 2 two days after step 1 was due).
    assert run(crm, T0 + 2 * DAY).sent == 1
    assert subjects(smtp, "pia@example.org")[-1] == "Tips for you"
    assert [m["status"] for m in step_messages(crm, p)] == ["sent", "sent"]


def test_a_pending_opt_in_past_its_confirmation_expiry_is_skipped_with_the_reason(nurture_crm, smtp):
    crm = doi_crm(nurture_crm, confirm_valid_for="2d")
    (p,) = crm.add_leads([{"first_name": "Pia", "email": "pia@example.org"}])
    ask(crm, p)
    enrol(crm, [p])
    assert run(crm, T0).waiting == 1
    assert run(crm, T0 + 2 * DAY - dt.timedelta(minutes=1)).waiting == 1  # the link still works
    stats = run(crm, T0 + 2 * DAY + dt.timedelta(minutes=1))
    assert (stats.sent, stats.waiting, stats.skipped) == (0, 0, 1)
    (skipped,) = crm.events_of(p, "nurture_step_skipped")
    assert skipped["detail"]["step"] == "welcome"
    reason = skipped["detail"]["reason"]
    assert reason.startswith("no email consent for marketing: double opt-in not confirmed in time")
    assert "expired 2026-03-04T08:00:00+00:00" in reason
    assert [(m["step_name"], m["status"], m["error"]) for m in step_messages(crm, p)] == [("welcome", "skipped", reason)]
    assert enrolment(crm, p)["step"] == 1  # the sequence goes on
    assert subjects(smtp, "pia@example.org") == ["Please confirm your e-mail address"]


def test_expiry_counts_from_when_the_confirmation_email_went_out(nurture_crm, smtp):
    crm = doi_crm(nurture_crm, confirm_valid_for="2d", confirm_send="scheduler")
    (p,) = crm.add_leads([{"first_name": "Pia", "email": "pia@example.org"}])
    ask(crm, p)
    enrol(crm, [p])
    crm.clock = T0 + DAY  # the first run, a day later, sends the confirmation: its link works until T0 + 3 days
    assert run(crm).confirmations_sent == 1
    assert run(crm, T0 + 3 * DAY - dt.timedelta(minutes=1)).waiting == 1
    assert run(crm, T0 + 3 * DAY + dt.timedelta(minutes=1)).skipped == 1


def test_a_pending_opt_in_replaced_by_an_opt_out_is_skipped_as_before(nurture_crm, smtp):
    crm = nurture_crm(nurture_settings(double_opt_in=["email"], confirm_url=CONFIRM_URL,
                                       sequences={"trial": three_step_sequence(exit_on=["qualified"])}))  # fmt: skip
    (p,) = crm.add_leads([{"first_name": "Pia", "email": "pia@example.org"}])
    ask(crm, p)
    enrol(crm, [p])
    assert run(crm, T0).waiting == 1
    with crm.engine.begin() as conn:  # withdrawn by another route (no observer ends the enrolment)
        consent.record(conn, crm.workspace, [consent.ConsentEntry(p, "email", "marketing", "opted_out", T0 + HOUR, "phone", "pia@example.org")],
                       recorded_at=T0 + HOUR)  # fmt: skip
    stats = run(crm, T0 + HOUR)
    assert (stats.sent, stats.waiting, stats.skipped) == (0, 0, 1)
    assert crm.events_of(p, "nurture_step_skipped")[0]["detail"]["reason"].startswith("no email consent for marketing: opted out (phone")


def test_waiting_steps_do_not_hold_up_the_others_and_a_run_ends(nurture_crm, smtp):
    from corecrm_plugins.nurture_sequences.actions import runtime
    from corecrm_plugins.nurture_sequences.scheduler import run_once

    crm = doi_crm(nurture_crm, batch_size=2)
    leads = crm.add_leads([{"first_name": f"P{i}", "email": f"p{i}@example.org"} for i in range(5)] + [{"first_name": "Ok", "email": "ok@example.org"}])
    for lead in leads[:5]:
        ask(crm, lead)
    crm.clock = T0 + HOUR
    with crm.engine.begin() as conn:
        consent.record(conn, crm.workspace, [consent.ConsentEntry(leads[5], "email", "marketing", "opted_in", T0, "double_opt_in", "ok@example.org")],
                       recorded_at=T0)  # fmt: skip
    enrol(crm, leads)
    stats = run_once(runtime(crm), crm.clock, max_batches=50)
    assert (stats.claimed, stats.waiting, stats.sent) == (6, 5, 1)  # each claimed once in the round
    assert subjects(smtp, "ok@example.org") == ["Welcome Ok"]
    assert run_once(runtime(crm), crm.clock + HOUR, max_batches=50).waiting == 5  # and again next round
