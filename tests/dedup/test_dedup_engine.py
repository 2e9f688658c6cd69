"""dedup engine on Lead objects: keys, comparators, rules, blocking, settings validation."""

from __future__ import annotations

import pytest

from corecrm.errors import ConfigError
from corecrm.models import Lead
from corecrm_plugins.dedup import crm_plugin_settings
from corecrm_plugins.dedup import normalise as nz
from corecrm_plugins.dedup.engine import Matcher, candidate_pairs, match_records
from corecrm_plugins.dedup.rules import config_from_settings, validate_keys, validate_rules

DEFAULTS = {s.key: s.default for s in crm_plugin_settings()}


@pytest.fixture(scope="module")
def matcher():
    return Matcher(config_from_settings(DEFAULTS))


def test_normalisers():
    assert nz.email_key(" J.O.Hn+news@GoogleMail.com ") == "john@gmail.com"
    assert nz.email_key("j.ohn+x@acme.com") == "j.ohn+x@acme.com"  # only known providers ignore tags
    assert nz.company_key("ACME Widgets, Ltd.") == nz.company_key("Acme Widgets Limited") == "acme widgets"
    assert nz.metaphone("Smith") == nz.metaphone("Smyth")
    assert nz.phone_key("+44 20 7946 0958") == "+442079460958"
    assert nz.business_domain("ann@gmail.com") == "" and nz.business_domain("ann@acme.com") == "acme.com"


def test_default_blocking_keys(matcher):
    lead = Lead(first_name="Ann", last_name="Smith", email="Ann@Acme.com", phone="+442079460958", company="Acme Ltd", country="GB", postal_code="SW1A 1AA")
    assert matcher.keys(lead) == [
        "email:ann@acme.com", "phone:+442079460958", "domain_initial:acme.com|a",
        f"surname_postal:{nz.metaphone('Smith')}|SW1", "company_country:acme|GB",
    ]  # fmt: skip
    assert matcher.keys(Lead(first_name="Ann", email="ann@gmail.com")) == ["email:ann@gmail.com"]  # free mail: no domain key


def _cmp(matcher, a, b):
    return matcher.compare(matcher.prepare(a), matcher.prepare(b))


def test_rules_merge_flag_and_reasons(matcher):
    ann = Lead(first_name="Ann", last_name="Lee", email="ann.lee@acme.com", phone="+442079460958", company="Acme")
    same_mail = _cmp(matcher, ann, Lead(first_name="Anne", last_name="Lee", email="Ann.Lee@ACME.com"))
    assert (same_mail.rule, same_mail.action) == ("name_email", "merge") and same_mail.score >= 0.9
    assert any(r.startswith("email email") for r in same_mail.reasons)
    shared = _cmp(matcher, ann, Lead(first_name="Bob", last_name="Lee", email="ann.lee@acme.com"))
    assert (shared.rule, shared.action) == ("same_email", "flag")
    swapped = _cmp(matcher, ann, Lead(first_name="Lee", last_name="Ann", phone="+44 20 7946 0958"))
    assert swapped.rule == "name_phone" and "first and last name transposed" in swapped.reasons
    company = _cmp(matcher, ann, Lead(first_name="Ann", last_name="Lee", company="ACME Limited"))
    assert (company.rule, company.action) == ("name_company", "flag")
    assert _cmp(matcher, ann, Lead(first_name="Ann", last_name="Lee")) is None  # blank fields never match
    assert _cmp(matcher, ann, Lead(first_name="Zoe", last_name="Park", company="Acme")) is None


def test_street_rule_needs_street_and_one_of_city_postal_phone(matcher):
    a = Lead(first_name="Jo", last_name="March", city="Concord", attributes={"street": "12 Orchard House Lane"})
    b = Lead(first_name="Jo", last_name="March", city="Concord", attributes={"street": "9 Elm Road"})
    assert _cmp(matcher, a, b) is None  # same name and city, another street
    b.attributes["street"] = "12 Orchard House Ln"  # similarity 0.90
    o = _cmp(matcher, a, b)
    assert (o.rule, o.action) == ("name_street", "merge")
    b.city = None
    assert _cmp(matcher, a, b) is None


def test_blocking_unions_keys_and_skips_oversized_blocks():
    keys = [["e:a", "p:1"], ["e:a"], ["p:1"], ["x:big"], ["x:big"], ["x:big"]]
    stats = candidate_pairs(keys, max_block_size=2)
    assert stats.pairs == {(0, 1), (0, 2)} and stats.skipped_blocks == 1


def test_match_records_finds_pairs_within_a_set(matcher):
    leads = [Lead(first_name="Ann", last_name="Lee", email="ann@acme.com"), Lead(first_name="Zed", last_name="Ray", email="z@ray.com"),
             Lead(first_name="ANN", last_name="LEE", email="ANN@acme.com")]  # fmt: skip
    found, stats = match_records(matcher, leads)
    assert [(i, j, o.action) for i, j, o in found] == [(0, 2, "merge")]


@pytest.mark.parametrize(
    "validator,value,key",
    [(validate_rules, [{"name": "r", "fields": [{"field": "emial", "compare": "email"}]}], "plugins.dedup.rules[0].fields[0].field"),
     (validate_rules, [{"name": "r", "fields": [{"field": "email", "compare": "soundex"}]}], "plugins.dedup.rules[0].fields[0].compare"),
     (validate_rules, [{"name": "r", "fields": [{"field": "email", "min": 1.5}]}], "plugins.dedup.rules[0].fields[0].min"),
     (validate_rules, [{"name": "r", "require": 3, "fields": [{"field": "email"}]}], "plugins.dedup.rules[0].require"),
     (validate_rules, [{"name": "r", "merge_at": "high", "fields": [{"field": "email"}]}], "plugins.dedup.rules[0].merge_at"),
     (validate_rules, [{"name": "r", "fields": [{"field": "email"}]}, {"name": "r", "fields": [{"field": "phone"}]}], "plugins.dedup.rules[1].name"),
     (validate_keys, ["email", "phonetic"], "plugins.dedup.blocking_keys[1]"),
     (validate_keys, [{"name": "k", "parts": ["soundex(last_name)"]}], "plugins.dedup.blocking_keys[0].parts[0]")],
)  # fmt: skip
def test_rule_errors_name_the_key_path(validator, value, key):
    top = key.split("[")[0]
    with pytest.raises(ConfigError) as err:
        validator(value, top)
    assert str(err.value).startswith(key + ":")
