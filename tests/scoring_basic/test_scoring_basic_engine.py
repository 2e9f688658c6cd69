"""The rule engine on plain Lead objects: every operator, decay, caps, grades, thresholds."""

from __future__ import annotations

import datetime as dt

import pytest
from sb_helpers import NOW, ctx, ev, lead

import corecrm_plugins.scoring_basic as sb
from corecrm.lifecycle import Stage
from corecrm_plugins.scoring_basic.engine import Engine
from corecrm_plugins.scoring_basic.rules import compile_ruleset, validate_rules


def make(rules, **settings):
    settings["rules"] = validate_rules(rules, "plugins.scoring_basic.rules")
    return Engine(compile_ruleset(settings))


def fires(rule, the_lead, events=(), now=NOW):
    rule = {"name": "r", "points": 10, **rule}
    eng = make([rule])
    return [h.rule for h in eng.hits(the_lead, list(events), now)] == ["r"]


# --------------------------------------------------------------------------- fit operators


@pytest.mark.parametrize(
    "rule, yes, no",
    [
        ({"op": "equals", "field": "title", "value": "CTO"}, lead(title=" cto "), lead(title="CTO assistant")),
        ({"op": "equals", "field": "title", "value": "CTO", "case_sensitive": True}, lead(title="CTO"), lead(title="cto")),
        ({"op": "equals", "field": "attributes.employees", "value": 500}, lead(attributes={"employees": "500"}), lead(attributes={"employees": 50})),
        ({"op": "equals", "field": "attributes.trade_in", "value": True}, lead(attributes={"trade_in": True}), lead(attributes={"trade_in": 1})),
        ({"op": "in", "field": "attributes.industry", "values": ["SaaS", "Fintech"]}, lead(attributes={"industry": "saas"}), lead(attributes={"industry": "retail"})),
        ({"op": "in", "field": "attributes.seats", "values": [5, 10]}, lead(attributes={"seats": "10"}), lead(attributes={"seats": 7})),
        ({"op": "contains", "field": "title", "value": "head of"}, lead(title="Head of Growth"), lead(title="Growth lead")),
        ({"op": "contains", "field": "interests", "value": "pricing"}, lead(interests=["Pricing", "api"]), lead(interests=["api"])),
        ({"op": "contains", "field": "note", "value": "test drive"}, lead(note="Can I book a TEST DRIVE on Monday?"), lead(note=None)),
        ({"op": "regex", "field": "title", "pattern": r"(?i)\b(cto|cio|vp)\b"}, lead(title="VP Engineering"), lead(title="Developer")),
        ({"op": "regex", "field": "phone", "pattern": r"^\+49"}, lead(phone="+49 30 1234"), lead(phone="+33 1 23")),
        ({"op": "exists", "field": "phone"}, lead(phone="+1 555"), lead(phone="  ")),
        ({"op": "exists", "field": "attributes.vehicle.model"}, lead(attributes={"vehicle": {"model": "Golf"}}), lead(attributes={"vehicle": {}})),
        ({"op": "missing", "field": "company"}, lead(company=None), lead(company="Acme")),
        ({"op": "missing", "field": "interests"}, lead(interests=[]), lead(interests=["x"])),
        ({"op": "range", "field": "attributes.employees", "min": 50, "max": 500}, lead(attributes={"employees": "50"}), lead(attributes={"employees": 501})),
        ({"op": "range", "field": "attributes.employees", "min": 1000}, lead(attributes={"employees": "1,200"}), lead(attributes={"employees": "many"})),
        ({"op": "range", "field": "attributes.budget", "max": 20000}, lead(attributes={"budget": 19999.5}), lead(attributes={})),
        ({"op": "date_range", "field": "created_at", "within_days": 7}, lead(created_at=NOW - dt.timedelta(days=3)), lead(created_at=NOW - dt.timedelta(days=8))),
        ({"op": "date_range", "field": "created_at", "older_than_days": 30}, lead(created_at=NOW - dt.timedelta(days=31)), lead(created_at=NOW - dt.timedelta(days=29))),
        (
            {"op": "date_range", "field": "attributes.purchase_date", "after": dt.date(2026, 1, 1), "before": "2026-07-01"},
            lead(attributes={"purchase_date": "2026-03-15"}),
            lead(attributes={"purchase_date": "2026-07-01"}),
        ),
        ({"op": "email_domain", "value": "company"}, lead(email="ann@acme.io"), lead(email="ann@gmail.com")),
        ({"op": "email_domain", "value": "free"}, lead(email="ann@GMail.com"), lead(email="ann@acme.io")),
        ({"op": "email_domain", "values": ["acme.io"]}, lead(email="bob@eu.acme.io"), lead(email="bob@notacme.io")),
        ({"op": "email_domain", "value": "free"}, lead(email="x@gmail.com"), lead(email="not-an-address")),
        ({"op": "country", "values": ["DACH", "FR"]}, lead(country="at"), lead(country="US")),
        ({"op": "country", "values": ["FR"]}, lead(country="FR"), lead(country=None)),
        ({"op": "region", "values": ["GB-ENG", "US"]}, lead(region="us-ca"), lead(region="GB-SCT")),
        ({"op": "region", "values": ["GB-ENG"]}, lead(region="GB-ENG"), lead(region=None)),
        ({"op": "interest", "values": ["pricing", "demo"]}, lead(interests=["Demo"]), lead(interests=["blog"])),
        ({"op": "interest", "values": ["pricing", "demo"], "match": "all"}, lead(interests=["demo", "pricing", "x"]), lead(interests=["demo"])),
        ({"op": "source", "values": ["web_form", "partner-*"]}, lead(source="Partner-Autoscout"), lead(source="cold_list")),
        ({"op": "campaign", "values": ["spring-2026"]}, lead(campaign="SPRING-2026"), lead(campaign=None)),
        ({"op": "equals", "field": "country", "value": "US", "negate": True}, lead(country="DE"), lead(country="us")),
        ({"op": "equals", "field": "stage", "value": "mql"}, lead(stage=Stage.MQL), lead(stage=Stage.LEAD)),
    ],
)
def test_fit_operator(rule, yes, no):
    assert fires(rule, yes), f"{rule} should fire on {yes}"
    assert not fires(rule, no), f"{rule} should not fire on {no}"


def test_every_operator_is_covered_by_a_test():
    from corecrm_plugins.scoring_basic.rules import ALL_OPS

    import inspect

    src = inspect.getsource(test_fit_operator) + inspect.getsource(__import__(__name__))
    for op in ALL_OPS:
        assert f'"op": "{op}"' in src or f'"{op}"' in src, op


def test_reasons_say_what_matched():
    eng = make([
        {"name": "exec", "op": "regex", "field": "title", "pattern": "(?i)vp", "points": 20, "group": "fit"},
        {"name": "dach", "op": "country", "values": ["DACH"], "points": 5},
    ])
    hits = eng.hits(lead(title="VP Sales", country="DE"), [], NOW)
    assert [(h.rule, h.units, h.group) for h in hits] == [("exec", 20, "fit"), ("dach", 5, None)]
    assert "VP" in hits[0].reason and "DE" in hits[1].reason


# --------------------------------------------------------------------------- engagement


def test_engagement_per_event_points_and_filters():
    eng = make([
        {"name": "opens", "event": "email_opened", "points": 2},
        {"name": "pricing", "op": "event", "event": "page_visited", "where": {"url": "*/pricing*"}, "points": 5},
        {"name": "demo", "op": "event", "event": ["demo_booked", "meeting_booked"], "points": 30},
    ])
    events = [
        ev("email_opened", 1),
        ev("email_opened", 2),
        ev("email_opened", 400),
        ev("page_visited", 1, url="https://x.io/pricing?plan=pro"),
        ev("page_visited", 1, url="https://x.io/blog"),
        ev("meeting_booked", 3),
        ev("link_clicked", 1),
    ]
    hits = {h.rule: h for h in eng.hits(lead(id=1), events, NOW)}
    assert hits["opens"].units == 6 and "3 × email_opened" in hits["opens"].reason
    assert hits["pricing"].units == 5
    assert hits["demo"].units == 30


def test_half_life_decay():
    eng = make([{"name": "opens", "event": "email_opened", "points": 10, "half_life_days": 14}], precision=2)
    (hit,) = eng.hits(lead(), [ev("email_opened", 0), ev("email_opened", 14), ev("email_opened", 28)], NOW)
    assert hit.units == 1750  # 10 + 5 + 2.5, in hundredths
    assert "half-life 14" in hit.reason
    (old,) = eng.hits(lead(), [ev("email_opened", 70)], NOW)
    assert old.units == 31  # 10 / 2**5 = 0.3125 -> 0.31
    # Whole points: an event decayed below half a point no longer counts.
    eng0 = make([{"name": "opens", "event": "email_opened", "points": 10, "half_life_days": 14}])
    assert eng0.hits(lead(), [ev("email_opened", 140)], NOW) == []


def test_within_days_and_max_events_keep_the_recent_ones():
    eng = make([{"name": "visits", "event": "page_visited", "points": 3, "within_days": 30, "max_events": 2}])
    (hit,) = eng.hits(lead(), [ev("page_visited", d) for d in (40, 1, 2, 3)], NOW)
    assert hit.units == 6 and hit.reason.startswith("2 ×")


def test_future_events_do_not_grow():
    eng = make([{"name": "opens", "event": "email_opened", "points": 4, "half_life_days": 7}])
    (hit,) = eng.hits(lead(), [ev("email_opened", -3)], NOW)
    assert hit.units == 4


# --------------------------------------------------------------------------- caps


def test_group_cap_is_an_explicit_contribution():
    eng = make(
        [
            {"name": "opens", "event": "email_opened", "points": 5, "group": "email"},
            {"name": "clicks", "event": "link_clicked", "points": 10, "group": "email"},
            {"name": "exec", "op": "exists", "field": "title", "points": 10},
        ],
        groups={"email": {"max": 20}},
    )
    hits = eng.hits(lead(title="CEO"), [ev("email_opened", 1)] * 3 + [ev("link_clicked", 1)] * 2, NOW)
    by = {h.rule: h for h in hits}
    assert by["cap:email"].units == -15 and "capped at 20 (uncapped 35)" in by["cap:email"].reason
    assert sum(h.units for h in hits) == 30


def test_group_floor_and_total_cap_and_floor():
    eng = make(
        [
            {"name": "free", "op": "email_domain", "value": "free", "points": -30, "group": "penalties"},
            {"name": "junk", "op": "missing", "field": "company", "points": -30, "group": "penalties"},
        ],
        groups={"penalties": {"min": -40}},
        min_score=-10,
    )
    hits = eng.hits(lead(email="a@gmail.com"), [], NOW)
    assert [(h.rule, h.units) for h in hits] == [("free", -30), ("junk", -30), ("cap:penalties", 20), ("cap:total", 30)]
    assert sum(h.units for h in hits) == -10
    eng = make([{"name": "big", "op": "exists", "field": "email", "points": 150}], max_score=100)
    score, hits = eng.score(lead(email="a@b.io"), [], NOW)
    assert score == 100 and hits[-1].rule == "cap:total" and hits[-1].units == -50


def test_no_cap_when_within_limits():
    eng = make([{"name": "a", "op": "exists", "field": "email", "points": 5, "group": "g"}], groups={"g": {"max": 10}}, max_score=100)
    assert [h.rule for h in eng.hits(lead(email="a@b.io"), [], NOW)] == ["a"]


# --------------------------------------------------------------------------- grades and stages


def test_grades_by_threshold():
    eng = make([], grades={"A": 80, "B": 50, "C": 20, "D": 0})
    assert [eng.grade(s)[0] for s in (95, 80, 79.5, 50, 20, 0, -15)] == ["A", "A", "B", "B", "C", "D", "D"]
    assert eng.grade(None) == (None, "")
    assert make([]).grade(50) == (None, "")


def test_qualification_thresholds_and_floor():
    eng = make([], qualification={"mql": 50, "sql": 80, "nurture_below": 20})
    assert eng.stage(Stage.LEAD, 55)[0] == Stage.MQL
    assert eng.stage(Stage.LEAD, 85)[0] == Stage.SQL
    assert eng.stage(Stage.MQL, 85)[0] == Stage.SQL
    assert eng.stage(Stage.MQL, 60)[0] is None
    assert eng.stage(Stage.SQL, 60)[0] is None  # never backwards along the main line
    assert eng.stage(Stage.MQL, 10)[0] == Stage.NURTURING
    assert eng.stage(Stage.SQL, 19.9)[0] == Stage.NURTURING
    assert eng.stage(Stage.NURTURING, 30)[0] is None  # between floor and mql: stays nurturing
    assert eng.stage(Stage.NURTURING, 50)[0] == Stage.MQL
    assert eng.stage(Stage.LEAD, 5)[0] is None  # only qualified leads fall back
    assert eng.stage(Stage.OPPORTUNITY, 5)[0] is None and eng.stage(Stage.CUSTOMER, 99)[0] is None
    assert eng.stage(Stage.DISQUALIFIED, 99)[0] is None
    assert "threshold 50" in eng.stage(Stage.LEAD, 55)[1]


# --------------------------------------------------------------------------- hooks on a batch


def test_score_hook_returns_contributions_with_ruleset_and_plugin():
    settings = {"rules": validate_rules([{"name": "exec", "op": "contains", "field": "title", "value": "chief", "points": 25}], "k")}
    out = sb.crm_score_leads([lead(title="Chief of staff"), lead(title="Intern")], ctx(), settings)
    assert [(c.index, c.rule, c.points, c.plugin) for c in out] == [(0, "exec", 25.0, "scoring_basic"), (1, "no_rule_matched", 0.0, "scoring_basic")]
    assert out[0].ruleset == out[1].ruleset and out[0].ruleset.startswith("sb1-")
    assert sb.crm_score_leads([lead()], ctx(), {"rules": []}) is None


def test_score_hook_reads_history_through_ctx():
    settings = {"rules": validate_rules([{"name": "opens", "event": "email_opened", "points": 3}], "k")}
    c = ctx({7: [ev("email_opened", 1), ev("email_opened", 2)]})
    out = sb.crm_score_leads([lead(id=7), lead()], c, settings)
    assert [(c.index, c.rule, c.points) for c in out] == [(0, "opens", 6.0), (1, "no_rule_matched", 0.0)]


def test_qualify_hook():
    settings = {"grades": {"A": 50, "B": 0}, "qualification": {"mql": 50}, "rules": []}
    out = sb.crm_qualify_leads([lead(), lead(stage=Stage.MQL), lead()], [60.0, 10.0, None], ctx(), settings)
    assert [(q.index, q.grade, q.stage) for q in out] == [(0, "A", "mql"), (1, "B", None)]
    assert "threshold 50" in out[0].reason


def test_ruleset_version_changes_with_any_rule_edit():
    from corecrm_plugins.scoring_basic.rules import ruleset_version

    base = {"rules": [{"name": "a", "op": "exists", "field": "email", "points": 5}], "grades": {"A": 10}}
    v1 = ruleset_version(base)
    assert v1 == ruleset_version({"grades": {"A": 10}, "rules": [{"points": 5, "field": "email", "op": "exists", "name": "a"}]})
    assert v1 != ruleset_version({**base, "grades": {"A": 11}})
    assert v1 != ruleset_version({**base, "rules": [{"name": "a", "op": "exists", "field": "email", "points": 6}]})
