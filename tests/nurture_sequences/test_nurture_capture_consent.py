"""Consent that arrives on captured leads (``crm_leads_captured``): recorded once, in UTC.

Observers can be notified again for the same leads (a retry, a re-delivered
event); the ledger must not grow, and a late repeat must not re-open consent
withdrawn since. Times with an offset are stored as the same instant in UTC
(SQLite drops the offset of a stored time, so one written as it came read
back shifted).
"""

from __future__ import annotations

import datetime as dt
import json

import sqlalchemy as sa

from corecrm.models import Event
from corecrm.records import RawCapture

from nurture_testkit import T0, backend_url, nurture_crm, nurture_settings, smtp  # noqa: F401

from corecrm_plugins.nurture_sequences import consent
from corecrm_plugins.nurture_sequences.actions import runtime, set_consent
from corecrm_plugins.nurture_sequences.tables import consent as consent_table

UTC = dt.timezone.utc


def ledger_rows(crm) -> int:
    c = consent_table.c
    with crm.engine.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(consent_table).where(c.workspace == crm.workspace)).scalar_one()


def ledger(crm, lead_id):
    with crm.engine.connect() as conn:
        return consent.consent_for_lead(conn, crm.workspace, lead_id)


def capture(crm, docs):
    (res,) = crm.capture([RawCapture(payload=json.dumps(docs).encode(), origin="form.json")])
    return res.lead_ids


def refire(crm, lead_ids):
    events = [Event(type="captured", at=crm.clock, lead_id=i) for i in lead_ids]
    crm.plugins.notify("crm_leads_captured", workspace=crm.workspace, events=events, ctx=crm.hook_ctx("intake"))


DOCS = [
    # No "at": the consent was given when the lead was captured.
    {"first_name": "Ada", "email": "Ada@Example.org", "source": "web",
     "consent": {"email": True, "source": "form", "proof": {"form": "trial", "ip": "192.0.2.7"}}},
    # An "at" with an offset, two purposes, and a channel with no address.
    {"first_name": "Bob", "email": "bob@example.org", "source": "ads",
     "consent": {"email": {"marketing": True, "newsletter": False}, "postal": True, "at": "2026-03-02T10:00:00+02:00"}},
    {"first_name": "Cy", "email": "cy@example.org", "source": "partner"},  # no consent at all
]  # fmt: skip


def test_refiring_the_captured_hook_adds_no_ledger_row(nurture_crm):
    crm = nurture_crm(nurture_settings(sequences={}))
    ada, bob, cy = capture(crm, DOCS)
    # ada email/marketing; bob email/marketing, email/newsletter. Bob's postal opt-in is not
    # recorded: he gave no postal address, and an opt-in without one would cover any address.
    assert ledger_rows(crm) == 3
    # The same observer notified again, later (a retry), then once more the next day.
    crm.clock = T0 + dt.timedelta(minutes=7)
    refire(crm, [ada, bob, cy])
    assert ledger_rows(crm) == 3
    crm.clock = T0 + dt.timedelta(days=1)
    refire(crm, [bob, ada])
    assert ledger_rows(crm) == 3
    (a,) = ledger(crm, ada)
    assert (a["status"], a["source"], a["at"]) == ("opted_in", "form", T0.isoformat())  # the capture's time, not the retry's


def test_a_repeated_capture_notification_does_not_undo_a_later_opt_out(nurture_crm):
    crm = nurture_crm(nurture_settings(sequences={}))
    ada, _bob, _cy = capture(crm, DOCS)
    crm.clock = T0 + dt.timedelta(hours=2)
    set_consent(runtime(crm), ada, "email", "marketing", False, now=crm.clock, source="unsubscribe_link")
    assert ledger_rows(crm) == 4
    crm.clock = T0 + dt.timedelta(hours=3)
    refire(crm, [ada])
    assert ledger_rows(crm) == 4
    assert [r["status"] for r in ledger(crm, ada)] == ["opted_in", "opted_out"]
    with crm.engine.connect() as conn:
        st = consent.states(conn, crm.workspace, [ada], "email", "marketing")[ada]
    assert (st.status, st.source) == ("opted_out", "unsubscribe_link")


def test_a_capture_time_with_an_offset_reads_back_in_utc(nurture_crm):
    crm = nurture_crm(nurture_settings(sequences={}))
    _ada, bob, _cy = capture(crm, DOCS)
    rows = ledger(crm, bob)
    assert [(r["channel"], r["purpose"], r["at"]) for r in rows] == [
        ("email", "marketing", "2026-03-02T08:00:00+00:00"),
        ("email", "newsletter", "2026-03-02T08:00:00+00:00"),
    ]
    with crm.engine.connect() as conn:
        st = consent.states(conn, crm.workspace, [bob], "email", "newsletter")[bob]
    assert st.at == dt.datetime(2026, 3, 2, 8, 0, tzinfo=UTC) and st.status == "opted_out"
    # And the stored instant is what a repeat compares with: still no new row.
    refire(crm, [bob])
    assert ledger_rows(crm) == 3


def test_every_ledger_write_stores_utc(nurture_crm):
    """``record`` (and so the command line's ``--now``, unsubscribe links, bounces) normalises ``at`` and ``recorded_at``."""
    crm = nurture_crm(nurture_settings(sequences={}))
    ada, bob = crm.add_leads([{"first_name": "Ada", "email": "ada@example.org"}, {"first_name": "Bob", "email": "bob@example.org"}])
    paris = dt.timezone(dt.timedelta(hours=1))
    at = dt.datetime(2026, 3, 2, 10, 30, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    with crm.engine.begin() as conn:
        consent.record(conn, crm.workspace, [consent.ConsentEntry(ada, "email", "marketing", "opted_in", at, "import", "ada@example.org")],
                       recorded_at=dt.datetime(2026, 3, 2, 10, 0, tzinfo=paris))  # fmt: skip
    set_consent(runtime(crm), bob, "email", "marketing", False, now=at, source="cli")
    (a,) = ledger(crm, ada)
    assert (a["at"], a["recorded_at"]) == ("2026-03-02T08:30:00+00:00", "2026-03-02T09:00:00+00:00")
    (b,) = ledger(crm, bob)
    assert (b["at"], b["recorded_at"]) == ("2026-03-02T08:30:00+00:00", "2026-03-02T08:30:00+00:00")
    with crm.engine.begin() as conn:
        consent.suppress_address(conn, crm.workspace, "ADA@example.org", channel="email", purposes=["marketing"], source="bounce",
                                 proof={}, at=at)  # fmt: skip
    assert ledger(crm, ada)[-1]["at"] == "2026-03-02T08:30:00+00:00"
    # A naive time is taken as UTC.
    assert consent.ConsentEntry(ada, "email", "marketing", "opted_in", dt.datetime(2026, 3, 2, 7, 0), "import").at == dt.datetime(2026, 3, 2, 7, 0, tzinfo=UTC)
