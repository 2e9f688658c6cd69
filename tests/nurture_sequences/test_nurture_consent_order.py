"""The current consent is the statement made last (``at``), not the row recorded last.

An import of historical opt-ins or a delayed webhook records statements late;
they must not override what the person said since. Ties on ``at`` go to the
statement recorded later.
"""

from __future__ import annotations

import datetime as dt

import pytest

from nurture_testkit import T0, backend_url, enrol, nurture_crm, nurture_settings, run, smtp  # noqa: F401

from corecrm_plugins.nurture_sequences import consent
from corecrm_plugins.nurture_sequences.tables import enrolments

HOUR = dt.timedelta(hours=1)
DAY = dt.timedelta(days=1)


def say(crm, lead_id, status, at, *, source="form", purpose="marketing", address=None, recorded_at=None):
    """Append one e-mail statement made at ``at`` and recorded at ``recorded_at`` (default: the clock)."""
    from corecrm_plugins.nurture_sequences.store import load_leads

    with crm.engine.begin() as conn:
        address = address or load_leads(conn, crm.workspace, [lead_id])[lead_id].email
        consent.record(conn, crm.workspace, [consent.ConsentEntry(lead_id, "email", purpose, status, at, source, address)],
                       recorded_at=recorded_at or crm.clock)  # fmt: skip


def state(crm, lead_id, purpose="marketing"):
    with crm.engine.connect() as conn:
        return consent.states(conn, crm.workspace, [lead_id], "email", purpose).get(lead_id)


def exit_reason(crm, lead_id):
    import sqlalchemy as sa

    e = enrolments.c
    with crm.engine.connect() as conn:
        return conn.execute(sa.select(e.status, e.exit_reason).where(e.workspace == crm.workspace, e.lead_id == lead_id)).one()


def test_an_older_opt_in_recorded_after_a_newer_opt_out_leaves_the_lead_opted_out(nurture_crm, smtp):
    crm = nurture_crm()
    (a,) = crm.add_leads([{"first_name": "A", "email": "a@example.org"}])
    say(crm, a, "opted_out", T0 - HOUR, source="phone")
    # A historical import arrives later: the person opted in a month ago.
    crm.clock = T0
    assert consent.record_consents(crm, crm.workspace, [{"lead_id": a, "channel": "email", "purpose": "marketing", "status": "opted_in",
                                                         "at": (T0 - 30 * DAY).isoformat(), "source": "import"}]) == 1  # fmt: skip
    with crm.engine.connect() as conn:
        assert [r["status"] for r in consent.consent_for_lead(conn, crm.workspace, a)] == ["opted_out", "opted_in"]  # recorded in that order
    st = state(crm, a)
    assert (st.status, st.source, st.at) == ("opted_out", "phone", T0 - HOUR)
    assert consent.allows(st, "a@example.org")[0] is False

    enrol(crm, [a])
    stats = run(crm, T0)
    assert stats.sent == 0 and stats.exited == 1
    assert smtp.parsed() == []
    assert tuple(exit_reason(crm, a)) == ("exited", "unsubscribed")


def test_an_older_opt_out_recorded_after_a_newer_opt_in_does_not_override_it(nurture_crm, smtp):
    crm = nurture_crm()
    (a,) = crm.add_leads([{"first_name": "A", "email": "a@example.org"}])
    say(crm, a, "opted_in", T0 - HOUR, source="form")
    say(crm, a, "opted_out", T0 - 2 * DAY, source="webhook", recorded_at=T0)  # a delayed webhook about an old opt-out
    st = state(crm, a)
    assert (st.status, st.source) == ("opted_in", "form")
    enrol(crm, [a])
    assert run(crm, T0).sent == 1
    assert [m["Subject"] for m in smtp.to("a@example.org")] == ["Welcome A"]


@pytest.mark.parametrize("first, then", [("opted_in", "opted_out"), ("opted_out", "opted_in")])
def test_statements_made_at_the_same_instant_the_later_recorded_wins(nurture_crm, smtp, first, then):
    crm = nurture_crm()
    (a,) = crm.add_leads([{"first_name": "A", "email": "a@example.org"}])
    say(crm, a, first, T0 - HOUR, source="import")
    say(crm, a, then, T0 - HOUR, source="crm")  # same `at`, recorded later (a higher id)
    assert state(crm, a).status == then
    enrol(crm, [a])
    sent = run(crm, T0).sent
    assert sent == (1 if then == "opted_in" else 0)
    assert len(smtp.to("a@example.org")) == sent


def test_states_for_many_leads_pick_each_leads_last_statement(nurture_crm):
    crm = nurture_crm()
    ids = crm.add_leads([{"first_name": f"L{i}", "email": f"l{i}@example.org"} for i in range(4)])
    for n, lead in enumerate(ids):
        # Recorded newest first: the row recorded last is always the oldest statement.
        say(crm, lead, "opted_in" if n % 2 else "opted_out", T0 - HOUR)
        say(crm, lead, "opted_out" if n % 2 else "opted_in", T0 - 2 * HOUR)
        say(crm, lead, "pending", T0 - 3 * HOUR)
    with crm.engine.connect() as conn:
        got = consent.states(conn, crm.workspace, ids, "email", "marketing")
    assert {lead: got[lead].status for lead in ids} == {lead: "opted_in" if n % 2 else "opted_out" for n, lead in enumerate(ids)}
    assert all(got[lead].at == T0 - HOUR for lead in ids)


def test_a_confirmation_link_cannot_undo_an_opt_out_made_after_an_imported_opt_in(nurture_crm, smtp):
    from corecrm_plugins.nurture_sequences.actions import ConfirmRefused, confirm, runtime, set_consent

    crm = nurture_crm(nurture_settings(double_opt_in=["email"], confirm_url="https://crm.example.com/c/{token}", confirm_send="scheduler"))
    (a,) = crm.add_leads([{"first_name": "A", "email": "a@example.org"}])
    rt = runtime(crm)
    req = set_consent(rt, a, "email", "marketing", True, now=T0, source="form")
    set_consent(rt, a, "email", "marketing", False, now=T0 + HOUR, source="phone")
    say(crm, a, "opted_in", T0 - DAY, source="import", recorded_at=T0 + 2 * HOUR)  # an old opt-in, imported last
    with pytest.raises(ConfirmRefused, match="opted out"):
        confirm(rt, req["confirm_token"], now=T0 + 3 * HOUR)
    assert state(crm, a).status == "opted_out"


def test_no_confirmation_is_sent_for_a_pending_statement_older_than_an_opt_out(nurture_crm, smtp):
    crm = nurture_crm(nurture_settings(double_opt_in=["email"], confirm_url="https://crm.example.com/c/{token}"))
    a, b = crm.add_leads([{"first_name": "A", "email": "a@example.org"}, {"first_name": "B", "email": "b@example.org"}])
    say(crm, a, "opted_out", T0 - HOUR, source="phone")
    # A late delivery of a form opt-in made before the opt-out (kept pending: double opt-in).
    entries = [{"lead_id": lid, "channel": "email", "purpose": "marketing", "status": "opted_in", "at": (T0 - DAY).isoformat(), "source": "web_form"}
               for lid in (a, b)]  # fmt: skip
    assert consent.record_consents(crm, crm.workspace, entries) == 2
    assert state(crm, a).status == "opted_out" and state(crm, b).status == "pending"
    run(crm, T0)  # the sweep queues for statements recorded some other way: still not for A
    assert smtp.to("a@example.org") == []
    assert len(smtp.to("b@example.org")) == 1  # B's pending statement is current: B is asked


def test_report_counts_the_lead_whose_last_statement_is_an_opt_out(nurture_crm, smtp):
    from corecrm_plugins.nurture_sequences.report import run_report

    crm = nurture_crm()
    a, b = crm.add_leads([{"first_name": "A", "email": "a@example.org"}, {"first_name": "B", "email": "b@example.org"}])
    enrol(crm, [a, b])
    # B opted in after enrolment; an older opt-out (also after enrolment) arrives later: B is not unsubscribed.
    say(crm, b, "opted_in", T0 + 3 * HOUR, recorded_at=T0 + 3 * HOUR)
    say(crm, b, "opted_out", T0 + 2 * HOUR, source="webhook", recorded_at=T0 + 4 * HOUR)
    assert run_report(crm.engine, crm.workspace).data["sequences"]["trial"]["unsubscribed"] == 0
    # A opted out after enrolment; an older opt-in is imported afterwards: A is.
    say(crm, a, "opted_out", T0 + HOUR, recorded_at=T0 + HOUR)
    say(crm, a, "opted_in", T0 - DAY, source="import", recorded_at=T0 + 5 * HOUR)
    assert run_report(crm.engine, crm.workspace).data["sequences"]["trial"]["unsubscribed"] == 1
