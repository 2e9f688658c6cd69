"""verify_contact through the intake pipeline: stored values, kept originals, findings, verdicts, settings errors."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from conftest import json_capture

from corecrm.errors import ConfigError
from corecrm.storage import schema

ENABLED = {"plugins": {"enabled": ["capture_json", "verify_contact"]}}


def _cfg(**settings):
    return {"plugins": {"enabled": ["capture_json", "verify_contact"], "verify_contact": settings}}


def test_capture_stores_normalised_values_and_keeps_what_was_typed(make_crm, db_url):
    crm = make_crm(ENABLED, database=db_url)
    [res] = crm.capture([json_capture([{"first_name": "JANE DOE", "email": " Jane.Doe@GAMIL.com", "phone": "020 7946 0958",
                                        "country": "uk", "region": "england", "postal_code": "sw1a 1aa"}])])  # fmt: skip
    lead = crm.lead(res.lead_ids[0])
    assert (lead.first_name, lead.last_name, lead.email, lead.phone) == ("Jane", "Doe", "Jane.Doe@gamil.com", "+442079460958")
    assert (lead.country, lead.region, lead.postal_code) == ("GB", "GB-ENG", "SW1A 1AA")
    history = crm.history(lead.id)
    changed = {e.detail["field"]: e.detail for e in history if e.type == "field_updated"}
    assert changed["phone"]["old"] == "020 7946 0958" and changed["phone"]["new"] == "+442079460958"
    assert changed["first_name"]["old"] == "JANE DOE" and changed["email"]["old"].strip() == "Jane.Doe@GAMIL.com"
    assert all(e.plugin == "verify_contact" for e in history if e.type == "field_updated")
    found = {e.detail["code"]: e.detail for e in history if e.type == "finding"}
    assert found["email_domain_typo"]["suggestion"] == "Jane.Doe@gmail.com" and found["email_domain_typo"]["severity"] == "warning"


def test_screening_rejects_honeypots_and_holds_disposable_addresses_for_review(make_crm, db_url):
    crm = make_crm(ENABLED, database=db_url)
    [res] = crm.capture([json_capture([{"email": "ann@acme.com"}, {"email": "bot@acme.com", "honeypot": "x"}, {"email": "x@mailinator.com"}])])
    assert len(res.lead_ids) == 1 and crm.lead(res.lead_ids[0]).email == "ann@acme.com"
    with crm.engine.connect() as conn:
        rows = conn.execute(sa.select(schema.quarantine.c.status, schema.quarantine.c.plugin, schema.quarantine.c.error).order_by(schema.quarantine.c.id)).all()
    assert [(r.status, r.plugin) for r in rows] == [("rejected", "verify_contact"), ("review", "verify_contact")]
    assert "honeypot" in rows[0].error and "disposable_email" in rows[1].error
    assert crm.retry(accept_review=True)["resolved"] == 1  # a human accepts the held lead


def test_burst_counts_stored_leads_from_the_same_sender(make_crm, clock):
    crm = make_crm(_cfg(burst_limit=2, burst_window_minutes=10))
    first = crm.capture([json_capture([{"email": "a@acme.com", "ip": "203.0.113.9"}, {"email": "b@acme.com", "ip": "203.0.113.9"}], origin="f1")])
    assert len(first[0].lead_ids) == 2
    clock.advance(minutes=1)
    [second] = crm.capture([json_capture([{"email": "c@acme.com", "ip": "203.0.113.9"}], origin="f2")])
    assert second.lead_ids == [] or second.lead_ids == [None]
    [q] = crm.quarantined()
    assert q["status"] == "review" and "lead number 3 from attributes.ip=203.0.113.9" in q["error"]
    clock.advance(minutes=30)
    [third] = crm.capture([json_capture([{"email": "d@acme.com", "ip": "203.0.113.9"}], origin="f3")])
    assert len([i for i in third.lead_ids if i]) == 1  # the window has passed


@pytest.mark.parametrize(
    "settings,key",
    [({"screen_actions": {"disposable_email": "drop"}}, "plugins.verify_contact.screen_actions.disposable_email"),
     ({"screen_actions": {"typo": "review"}}, "plugins.verify_contact.screen_actions.typo"),
     ({"honeypot_fields": ["attributes.hp", "nickname"]}, "plugins.verify_contact.honeypot_fields[1]"),
     ({"phone_default_region": "Britain"}, "plugins.verify_contact.phone_default_region"),
     ({"country_aliases": {"Ruritania": "RUR"}}, "plugins.verify_contact.country_aliases.Ruritania")],
)  # fmt: skip
def test_bad_settings_name_the_key_path(make_crm, settings, key):
    with pytest.raises(ConfigError) as err:
        make_crm(_cfg(**settings))
    assert key in str(err.value)
