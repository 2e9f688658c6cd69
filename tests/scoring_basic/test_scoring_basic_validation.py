"""Bad rulesets fail with the exact key path; overrides per workspace; the exact-sum invariant."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings as hsettings, strategies as st
from sb_helpers import NOW, ctx, ev, lead

import corecrm_plugins.scoring_basic as sb
from corecrm.config import Config
from corecrm.errors import ConfigError
from corecrm.plugins import PluginManager
from corecrm_plugins.scoring_basic.engine import Engine
from corecrm_plugins.scoring_basic.rules import compile_ruleset, validate_rules


def manager(data):
    pm = PluginManager(Config.from_dict(data)).load(entry_points=False)
    pm.register(sb, "scoring_basic", bundled=True)
    return pm


GOOD = {"name": "exec", "op": "regex", "field": "title", "pattern": "(?i)vp", "points": 10}


@pytest.mark.parametrize(
    "bad, key, words",
    [
        ({**GOOD, "op": "matches"}, "rules[3].op", "unknown operator 'matches'"),
        ({**GOOD, "pattern": "(unclosed"}, "rules[3].pattern", "invalid regular expression"),
        ({**GOOD, "points": "ten"}, "rules[3].points", "expected a number"),
        ({k: v for k, v in GOOD.items() if k != "points"}, "rules[3].points", "missing"),
        ({k: v for k, v in GOOD.items() if k != "name"}, "rules[3].name", "missing"),
        ({**GOOD, "field": "salary"}, "rules[3].field", "unknown lead field"),
        ({**GOOD, "colour": "red"}, "rules[3].colour", "unknown key"),
        ({"name": "r", "op": "range", "field": "attributes.x", "points": 1}, "rules[3].min", "needs min, max"),
        ({"name": "r", "op": "range", "field": "attributes.x", "min": 10, "max": 1, "points": 1}, "rules[3].max", "below min"),
        ({"name": "r", "op": "in", "field": "title", "values": "CTO", "points": 1}, "rules[3].values", "non-empty list"),
        ({"name": "r", "op": "country", "values": ["Germany"], "points": 1}, "rules[3].values[0]", "ISO 3166-1"),
        ({"name": "r", "op": "region", "values": ["GB-ENG", "England"], "points": 1}, "rules[3].values[1]", "ISO 3166-2"),
        ({"name": "r", "op": "email_domain", "value": "corporate", "points": 1}, "rules[3].value", '"free" or "company"'),
        ({"name": "r", "op": "date_range", "field": "created_at", "after": "yesterday", "points": 1}, "rules[3].after", "expected a date"),
        ({"name": "r", "op": "interest", "values": ["a"], "match": "most", "points": 1}, "rules[3].match", '"any" or "all"'),
        ({"name": "r", "event": "email_opened", "half_life_days": 0, "points": 1}, "rules[3].half_life_days", "> 0"),
        ({"name": "r", "event": "email_opened", "max_events": 1.5, "points": 1}, "rules[3].max_events", "whole number"),
        ({"name": "r", "event": "email_opened", "where": {"url": {"x": 1}}, "points": 1}, "rules[3].where.url", "expected a string"),
        ({"name": "r", "op": "equals", "field": "title", "value": "x", "points": 1, "negate": "yes"}, "rules[3].negate", "true or false"),
        ({**GOOD, "name": "a"}, "rules[3].name", "duplicate rule name 'a'"),
        ({**GOOD, "name": "cap:email"}, "rules[3].name", "not starting with 'cap:'"),
        ("exec", "rules[3]", "expected a table"),
    ],
)
def test_bad_rule_names_the_key_path(bad, key, words):
    rules = [
        {"name": "a", "op": "exists", "field": "email", "points": 1},
        {"name": "b", "op": "missing", "field": "phone", "points": -1},
        {"name": "c", "event": "email_opened", "points": 1},
        bad,
    ]
    with pytest.raises(ConfigError) as exc:
        manager({"plugins": {"scoring_basic": {"rules": rules}}})
    assert exc.value.key == f"plugins.scoring_basic.{key}"
    assert words in str(exc.value)
    assert f": plugins.scoring_basic.{key}: " in str(exc.value)  # after the file name


@pytest.mark.parametrize(
    "table, key, words",
    [
        ({"groups": {"email": {"max": "20"}}}, "groups.email.max", "expected a number"),
        ({"groups": {"email": {"cap": 20}}}, "groups.email.cap", "unknown key"),
        ({"grades": {"A": "high"}}, "grades.A", "expected a number"),
        ({"qualification": {"mql": 50, "sql": 40}}, "qualification.sql", "below the mql threshold"),
        ({"qualification": {"mql": 50, "nurture_below": 60}}, "qualification.nurture_below", "above the qualification threshold"),
        ({"qualification": {"mql": 50, "hot": 90}}, "qualification.hot", "unknown key"),
        ({"free_mail_domains": ["gmail"]}, "free_mail_domains[0]", "domain"),
        ({"precision": 9}, "precision", "0 to 6"),
    ],
)
def test_bad_tables_name_the_key_path(table, key, words):
    with pytest.raises(ConfigError) as exc:
        manager({"plugins": {"scoring_basic": table}})
    assert exc.value.key == f"plugins.scoring_basic.{key}" and words in str(exc.value)


def test_bad_workspace_override_names_the_workspace_key():
    with pytest.raises(ConfigError) as exc:
        manager({"workspaces": {"dealer": {"plugins": {"scoring_basic": {"rules": [{"name": "x", "op": "nope", "points": 1}]}}}}})
    assert exc.value.key == "workspaces.dealer.plugins.scoring_basic.rules[0].op"


def test_per_workspace_override_replaces_keys_and_keeps_the_rest():
    base_rules = [{"name": "exec", "op": "regex", "field": "title", "pattern": "(?i)cto", "points": 30}]
    dealer_rules = [{"name": "trade_in", "op": "equals", "field": "attributes.trade_in", "value": True, "points": 20}]
    pm = manager(
        {
            "plugins": {"scoring_basic": {"rules": base_rules, "grades": {"A": 25, "B": 0}}},
            "workspaces": {"dealer": {"plugins": {"scoring_basic": {"rules": dealer_rules}}}, "saas": {"plugins": {}}},
        }
    )
    saas, dealer = pm.settings("scoring_basic", "saas"), pm.settings("scoring_basic", "dealer")
    leads = [lead(title="CTO", attributes={"trade_in": True})]
    out_saas = sb.crm_score_leads(leads, ctx(), saas)
    out_dealer = sb.crm_score_leads(leads, ctx(), dealer)
    assert [c.rule for c in out_saas] == ["exec"] and [c.rule for c in out_dealer] == ["trade_in"]
    assert out_saas[0].ruleset != out_dealer[0].ruleset
    # grades come from [plugins.scoring_basic] in both
    assert sb.crm_qualify_leads(leads, [20.0], ctx(), dealer)[0].grade == "B"


def test_two_scoring_plugins_each_stamped_with_its_name():
    class Intent:
        """A second scorer, registered in-process like a third-party plugin."""

        @sb.hookimpl
        def crm_score_leads(self, leads, ctx):
            return [sb.ScoreContribution(i, "intent_signal", 7.0, "bought intent data") for i, _ in enumerate(leads)]

    pm = manager({"plugins": {"scoring_basic": {"rules": [GOOD]}}})
    pm.register(Intent(), "intent_scorer")
    leads = [lead(title="VP Sales"), lead(title="Intern")]
    contributions = [c for _name, recs in pm.each("crm_score_leads", workspace="default", leads=leads, ctx=ctx()) for c in recs]
    per_lead = {}
    for c in contributions:
        per_lead.setdefault(c.index, []).append((c.plugin, c.rule, c.points))
    assert sorted(per_lead[0]) == [("intent_scorer", "intent_signal", 7.0), ("scoring_basic", "exec", 10.0)]
    assert sum(p for _, _, p in per_lead[0]) == 17.0
    assert sorted(per_lead[1]) == [("intent_scorer", "intent_signal", 7.0), ("scoring_basic", "no_rule_matched", 0.0)]


# --------------------------------------------------------------------------- the exact-sum invariant

_fields = st.sampled_from(["title", "company", "email", "country", "attributes.employees", "source"])
_points = st.one_of(st.integers(-50, 50), st.floats(-50, 50, allow_nan=False).map(lambda x: round(x, 3)))
_rule = st.one_of(
    st.builds(lambda f, p, g: {"op": "exists", "field": f, "points": p, **({"group": g} if g else {})}, _fields, _points, st.sampled_from([None, "fit", "email"])),
    st.builds(lambda f, p: {"op": "missing", "field": f, "points": p}, _fields, _points),
    st.builds(lambda lo, p: {"op": "range", "field": "attributes.employees", "min": lo, "points": p}, st.integers(0, 1000), _points),
    st.builds(
        lambda t, p, h, g: {"event": t, "points": p, **({"half_life_days": h} if h else {}), **({"group": g} if g else {})},
        st.sampled_from(["email_opened", "link_clicked", "page_visited"]),
        _points,
        st.one_of(st.none(), st.floats(0.5, 60)),
        st.sampled_from([None, "email"]),
    ),
)
_lead = st.builds(
    lambda title, company, email, country, emp, source: lead(
        id=1, title=title, company=company, email=email, country=country, source=source, attributes={"employees": emp} if emp is not None else {}
    ),
    st.one_of(st.none(), st.text(max_size=5)),
    st.one_of(st.none(), st.text(max_size=5)),
    st.one_of(st.none(), st.sampled_from(["a@gmail.com", "b@acme.io"])),
    st.one_of(st.none(), st.sampled_from(["DE", "US"])),
    st.one_of(st.none(), st.integers(0, 2000)),
    st.one_of(st.none(), st.sampled_from(["web", "partner"])),
)
_events = st.lists(
    st.builds(lambda t, d: ev(t, d), st.sampled_from(["email_opened", "link_clicked", "page_visited", "form_submitted"]), st.floats(0, 400)),
    max_size=12,
)
_cap = st.one_of(st.none(), st.integers(-100, 100))


@hsettings(max_examples=300, deadline=None)
@given(
    rules=st.lists(_rule, max_size=8),
    the_lead=_lead,
    events=_events,
    precision=st.integers(0, 3),
    group_max=_cap,
    group_min=_cap,
    max_score=_cap,
    min_score=_cap,
)
def test_contributions_sum_exactly_to_the_score(rules, the_lead, events, precision, group_max, group_min, max_score, min_score):
    rules = [{"name": f"r{i}", **r} for i, r in enumerate(rules)]
    groups = {}
    if group_max is not None or group_min is not None:
        body = {}
        if group_min is not None:
            body["min"] = group_min
        if group_max is not None:
            body["max"] = max(group_max, group_min if group_min is not None else group_max)
        groups = {"email": body, "fit": body}
    settings = {"rules": validate_rules(rules, "k"), "groups": groups, "precision": precision}
    if max_score is not None:
        settings["max_score"] = max_score
    if min_score is not None:
        settings["min_score"] = min(min_score, max_score) if max_score is not None else min_score
    eng = Engine(compile_ruleset(settings))
    score, hits = eng.score(the_lead, events, NOW)
    # exact in the engine's units
    assert sum(h.units for h in hits) * 1 == round(score * eng.scale)
    # and as the floats that go into the records and the database
    records = sb.crm_score_leads([the_lead], ctx({1: events}), settings) or []
    points = [c.points for c in records]
    if not rules:
        assert records == []  # an empty ruleset leaves scoring to other plugins
        return
    if precision == 0:
        assert sum(points) == score  # whole points: bit for bit, whatever the order
        assert math.fsum(points) == score
    else:
        assert round(math.fsum(points), precision) == score
    # caps hold
    if "max_score" in settings:
        assert score <= settings["max_score"]
    if "min_score" in settings:
        assert score >= settings["min_score"]
    for g, body in groups.items():
        in_group = sum(h.units for h in hits if h.group == g) / eng.scale
        if any(h.group == g for h in hits if not h.rule.startswith("cap:")):
            if "max" in body and "cap:total" not in {h.rule for h in hits}:
                assert in_group <= body["max"] + 1e-9
    # every contribution names its reason and ruleset
    assert all(c.reason and c.ruleset == eng.rs.version for c in records)


def test_config_warnings_for_unreachable_grades_and_idle_rules():
    settings = {
        "rules": [
            {"name": "a", "op": "exists", "field": "email", "points": 30, "group": "fit"},
            {"name": "b", "op": "exists", "field": "phone", "points": 30, "group": "fit"},
            {"name": "z", "op": "exists", "field": "title", "points": 0},
        ],
        "groups": {"fit": {"max": 40}, "email": {"max": 10}},
        "grades": {"A": 50, "B": 20},
        "qualification": {"mql": 30, "sql": 45},
    }
    out = sb.crm_config_warnings(settings, "acme")
    assert "plugins.scoring_basic (workspace acme).rules[2].points: rule 'z' gives 0 points and never changes a score" in out
    assert any(w.endswith("groups.email: no rule is in this group, its caps never apply") for w in out)
    assert any("grades.A: minimum 50 is above the highest reachable score 40" in w for w in out)
    assert any("qualification.sql: threshold 45 is above the highest reachable score 40" in w for w in out)
    assert not any("grades.B" in w or "qualification.mql" in w for w in out)
    # engagement rules can repeat: no ceiling unless max_score says so
    settings["rules"].append({"name": "opens", "event": "email_opened", "points": 5})
    assert not any("reachable" in w for w in sb.crm_config_warnings(settings, "acme"))
    assert sb.crm_config_warnings({"rules": [], "grades": {}}, "acme") is None
