"""Territory rules: matching on normalised data, validation errors and shadowing."""

from __future__ import annotations

import warnings

import pytest
from routing_geo_helpers import NOW, compile_, lead, retailer_settings

from corecrm.errors import ConfigError
from corecrm_plugins.routing_geo import config, geo
from corecrm_plugins.routing_geo.ops import make_router
from corecrm_plugins.routing_geo.router import Snapshot


def route(settings, *leads):
    return make_router(compile_(settings)).route(list(leads), NOW, Snapshot())


def test_uk_lead_interested_in_shoes_goes_to_the_uk_fashion_team():
    [a] = route(retailer_settings(), lead(country="UK", interests=["Shoes"]))
    assert a.team == "uk_fashion" and a.rule == "uk-shoes"
    assert a.owner in {"alice", "bob", "carol"}
    assert a.explanation["rule"]["name"] == "uk-shoes"
    assert a.explanation["chosen"] == a.owner
    assert {c["member"] for c in a.explanation["candidates"]} == {"alice", "bob", "carol"}
    # the earlier rule that did not match says why
    assert a.explanation["earlier_rules"][0]["rule"] == "london-central"


@pytest.mark.parametrize("text", ["UK", "uk", "United Kingdom", "Great Britain", "England", "GBR", "gb", "Scotland"])
def test_country_aliases_resolve_to_gb(text):
    assert geo.country_code(text) == "GB"
    [a] = route(retailer_settings(), lead(country=text, interests=["boots"]))
    assert a.team == "uk_fashion"


def test_unknown_country_text_is_not_a_country():
    assert geo.country_code("Untied Kingdom") is None
    [a] = route(retailer_settings(), lead(country="Untied Kingdom", interests=["shoes"]))
    assert a.queue == "unrouted" and a.rule is None


def test_region_rule_matches_children_of_a_parent_subdivision():
    s = retailer_settings()
    s["rules"].insert(0, {"name": "scotland", "region": ["GB-SCT"], "team": "uk_fashion"})
    s["rules"].insert(0, {"name": "england-north", "region": "GB-ENG", "interests": ["coats"], "team": "dach"})
    [a, b, c, d] = route(
        s,
        lead(country="GB", region="GB-KHL", interests=["coats"]),  # Kingston upon Hull, child of GB-ENG
        lead(country="GB", region="KHL", interests=["coats"]),  # code without the country prefix
        lead(country="GB", region="Glasgow City"),  # a name, child of GB-SCT
        lead(country="GB", region="GB-CRF", interests=["coats"]),  # Cardiff, in Wales: no match
    )
    assert (a.rule, b.rule, c.rule) == ("england-north", "england-north", "scotland")
    assert d.rule is None
    assert geo.region_ancestors("FR-75C") >= {"FR-75C", "FR-IDF"}


def test_postal_prefixes_patterns_and_ranges():
    s = retailer_settings()
    s["rules"].append({"name": "us-west", "country": "US", "postal_range": ["90000-96199"], "team": "dach"})
    s["rules"].append({"name": "nl-pattern", "country": "NL", "postal_pattern": r"^10\d\d", "team": "france"})
    out = route(
        s,
        lead(country="GB", postal_code="sw1a 1aa"),
        lead(country="GB", postal_code="EC1A 1BB"),
        lead(country="GB", postal_code="SE1 7PB"),  # not central
        lead(country="US", postal_code="94105-1234"),
        lead(country="US", postal_code="10001"),
        lead(country="NL", postal_code="1012 AB"),
    )
    assert [a.rule for a in out] == ["london-central", "london-central", None, "us-west", None, "nl-pattern"]


def test_default_queue_when_nothing_matches():
    [a] = route(retailer_settings(), lead(country="JP"))
    assert (a.owner, a.team, a.queue, a.rule) == (None, "unrouted", "unrouted", None)
    assert "no rule matched" in a.reason


def test_source_score_grade_language_and_any_attribute():
    s = retailer_settings()
    s["rules"] = [
        {"name": "vip", "min_score": 80, "grade": ["A"], "team": "london_flagship"},
        {"name": "partner", "source": ["Partner-Portal"], "team": "dach"},
        {"name": "fr-speakers", "language": ["fr"], "team": "france"},
        {"name": "audi", "where": [{"field": "attributes.vehicle.make", "op": "in", "value": ["Audi", "VW"]},
                                    {"field": "company", "op": "exists"}], "team": "dach"},
    ]
    out = route(
        s,
        lead(score=90, grade="a"),
        lead(score=90, grade="B", source="partner-portal"),
        lead(language="fr-CA"),
        lead(attributes={"vehicle": {"make": "audi"}}, company="ACME"),
        lead(attributes={"vehicle": {"make": "audi"}}),
    )
    assert [a.rule for a in out] == ["vip", "partner", "fr-speakers", "audi", None]


def test_unknown_country_code_is_a_config_error_naming_the_key():
    s = retailer_settings()
    s["rules"][1]["country"] = ["GB", "XX"]
    with pytest.raises(ConfigError, match=r"plugins\.routing_geo\.rules\[1\]\.country\[1\]: unknown country 'XX'"):
        compile_(s)


def test_team_with_no_members_is_a_config_error():
    s = retailer_settings()
    s["teams"].append({"name": "empty"})
    with pytest.raises(ConfigError, match=r"teams\[4\]\.members: team 'empty' has no members"):
        compile_(s)


@pytest.mark.parametrize(
    "mutate, match",
    [
        (lambda s: s["rules"][0].update(team="nope"), r"rules\[0\]\.team: unknown team 'nope'"),
        (lambda s: s["rules"][0].update(region=["GB-XYZ"]), r"rules\[0\]\.region\[0\]: unknown ISO 3166-2"),
        (lambda s: s["rules"][0].update(postal_pattern=["("]), r"rules\[0\]\.postal_pattern\[0\]: invalid regular expression"),
        (lambda s: s["rules"][0].update(colour="red"), r"rules\[0\]\.colour: unknown rule key"),
        (lambda s: s["members"][0].update(timezone="Mars/Base"), r"members\[0\]\.timezone: unknown time zone"),
        (lambda s: s["members"][0].update(hours=["mon-fri 9-5"]), r"members\[0\]\.hours\[0\]: expected 'mon-fri 09:00-17:30'"),
        (lambda s: s["teams"][0].update(members=["alice", "zed"]), r"teams\[0\]\.members\[1\]: unknown member 'zed'"),
        (lambda s: s["teams"][0].update(strategy="random"), r"teams\[0\]\.strategy: unknown strategy"),
        (lambda s: s["teams"][0].update(on_breach="escalate"), r"teams\[0\]\.escalate_to: on_breach = 'escalate' needs escalate_to"),
    ],
)
def test_bad_settings_name_the_key_path(mutate, match):
    s = retailer_settings()
    mutate(s)
    with pytest.raises(ConfigError, match=match):
        compile_(s)


def test_shadowed_rules_are_warnings():
    s = retailer_settings()
    s["rules"].append({"name": "uk-boots-london", "country": "GB", "postal_prefix": ["EC1"], "interests": ["boots"], "team": "uk_fashion"})
    s["rules"].append({"name": "germany", "country": "DE", "team": "dach"})
    s["rules"].append({"name": "bavaria", "region": ["DE-BY"], "team": "dach"})
    s["rules"].append({"name": "paris", "region": ["FR-75C"], "team": "france"})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        routing = config.check(s, where="corecrm.toml")
    messages = [str(w.message) for w in caught]
    assert any("rules[4]" in m and "'uk-boots-london' is shadowed by earlier rule 'london-central'" in m for m in messages)
    assert any("rules[5]" in m and "'germany' is shadowed by earlier rule 'dach'" in m for m in messages)
    assert any("rules[6]" in m and "'bavaria'" in m for m in messages)
    assert any("rules[7]" in m and "'paris' is shadowed by earlier rule 'france'" in m for m in messages)
    assert len(routing.warnings) == 4
    # the original rule set has no shadowed rule
    assert compile_(retailer_settings()).warnings == []


def test_rules_that_only_overlap_are_not_reported_as_shadowed():
    s = retailer_settings()
    s["rules"] = [
        {"name": "gb-shoes", "country": "GB", "interests": ["shoes"], "team": "uk_fashion"},
        {"name": "gb-all", "country": "GB", "team": "london_flagship"},
        {"name": "eu", "country": ["DE", "FR"], "team": "dach"},
        {"name": "de", "country": "DE", "min_score": 50, "team": "dach"},
    ]
    routing = compile_(s)
    assert [k for k, _ in routing.warnings] == ["plugins.routing_geo.rules[3]"]


def test_disabled_rules_are_skipped():
    s = retailer_settings()
    s["rules"][1]["enabled"] = False
    [a] = route(s, lead(country="GB", interests=["shoes"]))
    assert a.rule is None


def test_the_car_dealer_example_from_the_docs():
    import datetime as dt
    import tomllib

    from routing_geo_helpers import DATA

    s = tomllib.loads((DATA / "dealers.toml").read_text())["plugins"]["routing_geo"]
    routing = compile_(s)
    assert routing.warnings == []
    # Tuesday 2026-11-24 17:30 UTC = 09:30 in Los Angeles, 10:30 in Phoenix
    now = dt.datetime(2026, 11, 24, 17, 30, tzinfo=dt.timezone.utc)
    out = make_router(routing).route([
        lead(country="US", postal_code="90210", attributes={"vehicle": {"make": "Audi"}}),
        lead(country="US", region="CA", attributes={"vehicle": {"make": "VW"}}, language="es"),
        lead(country="US", region="US-AZ"),
        lead(country="US", attributes={"vehicle": {"make": "Audi", "status": "used"}}),
        lead(country="US", attributes={"vehicle": {"fleet": True}}),
        lead(country="US", postal_code="10001", attributes={"vehicle": {"make": "Audi"}}),
    ], now, Snapshot())
    assert [(a.rule, a.team) for a in out] == [
        ("la-audi", "la_audi"), ("la-vw", "la_vw"), ("arizona", "phoenix"), ("used", "used_cars"), ("fleet", "bdc"), (None, "bdc"),
    ]
    assert out[0].owner in {"sam", "lee"} and out[2].owner == "kim"
    assert out[1].owner in {"ana", "sam"}
    assert out[3].owner is None and out[2].explanation["sla_minutes"] == 20.0


def test_subdivision_hierarchy_read_from_the_bundled_json_matches_pycountry():
    import pycountry

    assert geo._subdivision_parents() == {s.code: s.parent_code for s in pycountry.subdivisions}
    assert geo.region_code("Bayern", "DE") == "DE-BY" and geo.region_code("by", "DE") == "DE-BY"
