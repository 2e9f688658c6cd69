"""``consent.record_consents``: consent other plugins collected (the web form's box) into the ledger.

The end-to-end path (form post → ledger → e-mail sent) is in
``tests/capture_web/test_capture_web_consent_ledger.py``; these pin down the function's contract.
"""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from nurture_testkit import T0, backend_url, nurture_crm, nurture_settings, smtp  # noqa: F401

from corecrm.storage import schema
from corecrm_plugins.nurture_sequences import consent
from corecrm_plugins.nurture_sequences.tables import consent as consent_table


def entry(lead_id: int, **over):
    e = {"lead_id": lead_id, "channel": "email", "purpose": "marketing", "status": "granted", "at": "2026-03-02T07:55:00+00:00",
         "source": "web_form:contact", "proof": {"form": "contact", "ip": "192.0.2.7"}}  # fmt: skip
    e.update(over)
    return e


def ledger(crm, lead_id):
    with crm.engine.connect() as conn:
        return consent.consent_for_lead(conn, crm.workspace, lead_id)


def test_entries_become_ledger_rows_for_the_leads_own_address(nurture_crm):
    crm = nurture_crm()
    ada, bob = crm.add_leads([{"first_name": "Ada", "email": "Ada@Example.org"}, {"first_name": "Bob", "email": "bob@example.org", "phone": "+33 1 23"}])
    n = consent.record_consents(crm, crm.workspace, [
        entry(ada),
        entry(bob, status="opted_out", at="2026-03-02T08:55:00+01:00", source="web_form:prefs", proof=None),
        entry(bob, channel="sms", purpose="service", status="opted_in", at="2026-03-02T07:00:00"),  # no offset: UTC
    ])  # fmt: skip
    assert n == 3
    (a,) = ledger(crm, ada)
    assert (a["channel"], a["purpose"], a["status"], a["address"], a["source"]) == ("email", "marketing", "opted_in", "ada@example.org", "web_form:contact")
    assert a["proof"] == {"form": "contact", "ip": "192.0.2.7"}
    assert a["at"] == "2026-03-02T07:55:00+00:00" and a["recorded_at"] == T0.isoformat()
    b_email, b_sms = ledger(crm, bob)
    assert (b_email["status"], b_email["address"], b_email["at"]) == ("opted_out", "bob@example.org", "2026-03-02T07:55:00+00:00")
    assert (b_sms["channel"], b_sms["purpose"], b_sms["address"], b_sms["at"]) == ("sms", "service", "+33 1 23", "2026-03-02T07:00:00+00:00")


def test_the_same_statement_twice_is_one_row(nurture_crm):
    crm = nurture_crm()
    (ada,) = crm.add_leads([{"first_name": "Ada", "email": "ada@example.org"}])
    assert consent.record_consents(crm, crm.workspace, [entry(ada), entry(ada)]) == 1
    assert consent.record_consents(crm, crm.workspace, [entry(ada, at="2026-03-02T08:55:00+01:00")]) == 0  # same instant, other offset
    assert len(ledger(crm, ada)) == 1
    # A later statement from the same form is a new row.
    assert consent.record_consents(crm, crm.workspace, [entry(ada, at="2026-03-09T07:55:00+00:00")]) == 1
    assert len(ledger(crm, ada)) == 2


def test_double_opt_in_keeps_a_form_opt_in_pending(nurture_crm):
    crm = nurture_crm(nurture_settings(double_opt_in=["email"]))
    (ada,) = crm.add_leads([{"first_name": "Ada", "email": "ada@example.org"}])
    consent.record_consents(crm, crm.workspace, [entry(ada)])
    assert [r["status"] for r in ledger(crm, ada)] == ["pending"]


def test_no_opt_in_without_an_address_but_an_opt_out_is_always_kept(nurture_crm):
    crm = nurture_crm()
    (nomail,) = crm.add_leads([{"first_name": "Nomail", "phone": "+33 1 23"}])
    assert consent.record_consents(crm, crm.workspace, [entry(nomail)]) == 0  # would cover any address added later
    assert consent.record_consents(crm, crm.workspace, [entry(nomail, status="opted_out")]) == 1
    assert [(r["status"], r["address"]) for r in ledger(crm, nomail)] == [("opted_out", None)]


@pytest.mark.parametrize(
    "bad, field, words",
    [
        ({"lead_id": "7"}, "entries[1].lead_id", "expected a lead id"),
        ({"lead_id": True}, "entries[1].lead_id", "expected a lead id"),
        ({"channel": ""}, "entries[1].channel", "non-empty string"),
        ({"purpose": None}, "entries[1].purpose", "non-empty string"),
        ({"status": "yes"}, "entries[1].status", "opted_in, opted_out, pending, granted"),
        ({"at": "yesterday"}, "entries[1].at", "ISO 8601"),
        ({"at": None}, "entries[1].at", "ISO 8601"),
        ({"source": "x" * 65}, "entries[1].source", "longer than 64"),
        ({"proof": ["ip"]}, "entries[1].proof", "mapping"),
        ({"lead_id": 999_999}, "entries[1].lead_id", "no lead 999999 in workspace"),
    ],
)
def test_a_bad_entry_is_named_and_nothing_is_written(nurture_crm, bad, field, words):
    crm = nurture_crm()
    (ada,) = crm.add_leads([{"first_name": "Ada", "email": "ada@example.org"}])
    with pytest.raises(consent.ConsentEntryError) as err:
        consent.record_consents(crm, crm.workspace, [entry(ada), {**entry(ada), **bad}])
    assert err.value.field == field and str(err.value).startswith(f"{field}: ") and words in str(err.value)
    assert ledger(crm, ada) == []  # the good entry before it was not written either


def test_not_a_mapping_and_no_entries(nurture_crm):
    crm = nurture_crm()
    with pytest.raises(consent.ConsentEntryError, match=r"^entries\[0\]: expected a mapping"):
        consent.record_consents(crm, crm.workspace, [("lead", 1)])
    assert consent.record_consents(crm, crm.workspace, []) == 0


def test_consent_stays_on_the_lead_it_was_given_for(nurture_crm):
    """Recorded for a lead that was merged since, the consent is that lead's, never the survivor's."""
    crm = nurture_crm()
    keep, gone = crm.add_leads([{"first_name": "Keep", "email": "keep@example.org"}, {"first_name": "Gone", "email": "gone@example.org"}])
    with crm.engine.begin() as conn:
        conn.execute(schema.leads.update().where(schema.leads.c.id == gone).values(status="merged", merged_into=keep))
    assert consent.record_consents(crm, crm.workspace, [entry(gone)]) == 1
    assert ledger(crm, keep) == [] and [r["address"] for r in ledger(crm, gone)] == ["gone@example.org"]


def test_concurrent_deliveries_of_one_capture_append_once(nurture_crm):
    """Several workers hand over the same statement at the same moment: one row (the leads are locked, or SQLite's single writer)."""
    import threading

    crm = nurture_crm()
    ids = crm.add_leads([{"first_name": f"L{i}", "email": f"l{i}@example.org"} for i in range(20)])
    batch = [entry(i) for i in ids]
    start = threading.Barrier(6)
    added: list[int] = []

    def deliver() -> None:
        start.wait(10)
        added.append(consent.record_consents(crm, crm.workspace, batch))

    threads = [threading.Thread(target=deliver) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(added) == [0] * 5 + [20]
    with crm.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(consent_table).where(consent_table.c.workspace == crm.workspace)).scalar_one() == 20


def test_intake_does_not_read_a_statement_record_from_the_lead_again():
    """A web-form record on the lead is handed over by capture_web; reading it at intake too would record it twice
    (and read any boolean key in it, here ``required``, as a purpose)."""
    from types import SimpleNamespace

    from corecrm_plugins.nurture_sequences.config import NurtureSettings
    from corecrm_plugins.nurture_sequences.enrolment import consent_from_capture

    record = {"status": "granted", "purpose": "marketing", "at": "2026-03-02T07:55:00+00:00", "source": "web_form:contact", "required": True}
    lead = SimpleNamespace(email="ada@example.org", phone="+44 20 7946 0000", source="website", capture_id=1, consent={"email": record, "sms": True})
    cfg = NurtureSettings.from_settings({**nurture_settings(), "secret": None})
    assert [(e.channel, e.purpose, e.status) for e in consent_from_capture({1: lead}, cfg, T0)] == [("sms", "marketing", "opted_in")]


def test_intake_records_no_opt_in_for_a_channel_the_lead_has_no_address_on():
    """An opt-in without an address would allow sends to any address the lead gets later; an opt-out is kept."""
    from types import SimpleNamespace

    from corecrm_plugins.nurture_sequences.config import NurtureSettings
    from corecrm_plugins.nurture_sequences.enrolment import consent_from_capture

    lead = SimpleNamespace(email=None, phone=None, source="website", capture_id=1, created_at=T0, consent={"email": True, "sms": False, "postal": True})
    cfg = NurtureSettings.from_settings({**nurture_settings(), "secret": None})
    assert [(e.channel, e.status, e.address) for e in consent_from_capture({1: lead}, cfg, T0)] == [("sms", "opted_out", None)]
