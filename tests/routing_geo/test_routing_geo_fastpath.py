"""The batch fast path gives exactly the assignments and explanations of the straightforward router.

``routing_geo_reference`` is the router as first written (one lead at a time, every
explanation built from scratch). Random configurations and a few thousand random leads,
routed in batches through one snapshot, must come out identical: owner, team, queue, rule,
reason, the whole explanation, and the rotation state left behind.
"""

from __future__ import annotations

import datetime as dt
import random

import attrs
import pytest
import routing_geo_reference as reference
from routing_geo_helpers import NOW, compile_

from corecrm.models import Lead
from corecrm_plugins.routing_geo.ops import make_router
from corecrm_plugins.routing_geo.router import Snapshot

COUNTRIES = ["GB", "DE", "FR", "US", "ES", "CH"]
INTERESTS = ["shoes", "coats", "bags", "watches"]


def random_settings(rnd: random.Random) -> dict:
    tzs = ["Europe/London", "Europe/Berlin", "America/New_York", "Asia/Tokyo", "UTC"]
    hours = [["mon-fri 09:00-17:30"], ["mon-sun 00:00-24:00"], ["mon-fri 12:00-20:00", "sat 10:00-14:00"], []]
    members = []
    for i in range(24):
        m = {"id": f"m{i:02d}", "weight": rnd.choice([1, 1, 2, 3]), "timezone": rnd.choice(tzs),
             "languages": rnd.sample(["en", "de", "fr", "es"], rnd.randint(0, 2))}
        h = rnd.choice(hours)
        if h:
            m["hours"] = h
        if rnd.random() < 0.5:
            m["max_open"] = rnd.randint(3, 40)
        if rnd.random() < 0.4:
            m["max_new_per_day"] = rnd.randint(2, 30)
        if rnd.random() < 0.1:
            m["active"] = False
        if rnd.random() < 0.1:
            m["away"] = [{"from": "2026-11-20", "to": "2026-11-25", "note": "holiday"}]
        members.append(m)
    ids = [m["id"] for m in members]
    teams = []
    for t in range(6):
        team = {"name": f"t{t}", "members": rnd.sample(ids, rnd.randint(1, 6)),
                "strategy": rnd.choice(["round_robin", "weighted", "least_loaded", "sticky"])}
        if rnd.random() < 0.3:
            team["match_language"] = True
        if rnd.random() < 0.3:
            team["sticky"] = True
        if rnd.random() < 0.5:
            team["sla_minutes"] = rnd.choice([10, 30, 60])
        if t == 5:
            team["mode"] = "pull"
        teams.append(team)
    rules = [
        {"name": "london", "country": ["GB"], "postal_prefix": ["SW", "EC"], "team": "t0", "sla_minutes": 5},
        {"name": "bavaria", "region": ["DE-BY"], "team": "t1", "strategy": "least_loaded"},
        {"name": "us-east", "country": ["US"], "postal_range": ["00000-29999"], "team": "t2"},
        {"name": "fr-paris", "country": ["FR"], "postal_pattern": ["^75"], "team": "t5"},
        {"name": "hot", "min_score": 70, "team": "t3", "strategy": "weighted"},
        {"name": "grade-a", "grade": ["A"], "not_country": ["CH"], "team": "t4"},
        {"name": "web-de", "country": ["DE", "AT"], "source": ["web"], "language": ["de"], "team": "t1"},
        {"name": "shoes", "interests": ["shoes", "bags"], "team": "t2"},
        {"name": "coats-watches", "interests_all": ["coats", "watches"], "team": "t3"},
        {"name": "swiss", "country": ["CH"], "queue": "unrouted"},
        {"name": "europe", "country": ["GB", "DE", "FR", "ES"], "team": "t4"},
    ]
    rnd.shuffle(rules)
    return {"members": members, "teams": teams, "rules": rules, "respect_working_hours": rnd.random() < 0.8,
            "default_queue": "unrouted", "sticky_scope": rnd.choice(["team", "any"])}


def random_leads(rnd: random.Random, n: int) -> list[Lead]:
    out = []
    for i in range(n):
        interests = rnd.sample(INTERESTS, rnd.randint(0, 2))
        out.append(Lead(
            country=rnd.choice(COUNTRIES + ["United Kingdom", "Deutschland", "England", "XX", None]),
            region=rnd.choice([None, None, "BY", "Bayern", "DE-BY", "GB-ENG", "Kent"]),
            postal_code=rnd.choice([None, "SW1A 1AA", "ec2a-4bx", "10001", "80331", "75001", "94105"]),
            interests=interests or rnd.choice([None, []]),
            source=rnd.choice([None, "web", "Web", "event"]),
            language=rnd.choice([None, "de", "de-AT", "en_GB", "fr"]),
            score=rnd.choice([None, 10, 69.5, 70, 95]),
            grade=rnd.choice([None, "A", "b"]),
            owner=rnd.choice([None] * 19 + ["somebody"]),
            origin_key=rnd.choice([f"o{i}", None]),
        ))
    return out


def snapshot(rnd: random.Random, routing, cls) -> object:
    mids = list(routing.directory.members)
    return cls(open_load={m: rnd.randint(0, 30) for m in mids}, new_today={m: rnd.randint(0, 20) for m in mids},
               sticky={i: (rnd.choice(mids + ["gone"]), "open lead already owned") for i in range(0, 1000, 7)})


def fields(a) -> tuple:
    return (a.index, a.owner, a.team, a.queue, a.rule, a.reason, a.explanation)


@pytest.mark.parametrize("seed", range(6))
def test_fast_path_matches_the_straightforward_router_on_random_leads(seed):
    rnd = random.Random(seed)
    routing = compile_(random_settings(rnd))
    fast = make_router(routing)
    slow = reference.Router(routing.ruleset, routing.directory, respect_working_hours=fast.respect_hours,
                            sticky_scope=fast.sticky_scope)
    leads = random_leads(rnd, 3000)
    state = random.Random(seed + 100)
    fast_snap = snapshot(state, routing, Snapshot)
    state = random.Random(seed + 100)
    slow_snap = snapshot(state, routing, reference.Snapshot)
    owners = set()
    for k, size in enumerate([1, 7, 500, 1000, 1, 1491]):
        start = sum([1, 7, 500, 1000, 1, 1491][:k])
        batch = leads[start:start + size]
        now = NOW + dt.timedelta(hours=5 * k)  # crosses working hours
        got = fast.route(batch, now, fast_snap)
        want = slow.route(batch, now, slow_snap)
        assert [fields(a) for a in got] == [fields(a) for a in want]
        owners |= {a.owner for a in got}
    assert attrs.asdict(fast_snap) == attrs.asdict(slow_snap)
    assert len(owners) > 3  # the configuration really assigns


def test_fast_path_matches_with_where_conditions_and_odd_values():
    """``where`` rules turn the decision cache off; numbers and booleans in fields never share a cached decision."""
    rnd = random.Random(42)
    s = random_settings(rnd)
    s["rules"].insert(0, {"name": "vip", "where": [{"field": "attributes.tier", "op": "eq", "value": "vip"}], "team": "t0"})
    routing = compile_(s)
    fast = make_router(routing)
    slow = reference.Router(routing.ruleset, routing.directory, respect_working_hours=fast.respect_hours,
                            sticky_scope=fast.sticky_scope)
    leads = random_leads(rnd, 1500)
    for i, lead in enumerate(leads):
        lead.attributes = {"tier": rnd.choice(["vip", "std"])}
        if i % 5 == 0:
            lead.score = rnd.choice([1, 1.0, True, 70, 70.0])
    got = fast.route(leads, NOW, Snapshot())
    want = slow.route(leads, NOW, reference.Snapshot())
    assert [fields(a) for a in got] == [fields(a) for a in want]

    routing = compile_(random_settings(random.Random(43)))  # no where: cached decisions
    fast = make_router(routing)
    slow = reference.Router(routing.ruleset, routing.directory, respect_working_hours=fast.respect_hours,
                            sticky_scope=fast.sticky_scope)
    odd = [Lead(country="GB", score=v, interests=["shoes"]) for v in [1, 1.0, True, 70, 70.0, True, 1]]
    odd += [Lead(country="GB", interests=[1]), Lead(country="GB", interests=[True]), Lead(country="GB", interests=["1"])]
    got = fast.route(odd, NOW, Snapshot())
    want = slow.route(odd, NOW, reference.Snapshot())
    assert [fields(a) for a in got] == [fields(a) for a in want]
