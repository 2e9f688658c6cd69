"""Member selection: fairness, weights, capacity, availability and sticky ownership (no database)."""

from __future__ import annotations

import collections
import datetime as dt

from hypothesis import given, settings
from hypothesis import strategies as st
from routing_geo_helpers import NOW, compile_, lead, team_settings

from corecrm_plugins.routing_geo.ops import make_router
from corecrm_plugins.routing_geo.router import Snapshot, advance


def counts(assignments):
    return collections.Counter(a.owner for a in assignments)


def test_round_robin_is_fair_over_1000_leads_in_one_batch():
    router = make_router(compile_(team_settings(7)))
    out = router.route([lead(country="GB") for _ in range(1000)], NOW, Snapshot())
    c = counts(out)
    assert len(c) == 7 and sum(c.values()) == 1000
    assert max(c.values()) - min(c.values()) <= 1


def test_round_robin_is_fair_over_1000_single_lead_batches_with_stored_state():
    routing = compile_(team_settings(6))
    router = make_router(routing)
    passes, clocks = {}, {}
    c = collections.Counter()
    for i in range(1000):
        snap = Snapshot(passes=dict(passes), clocks=dict(clocks))
        [a] = router.route([lead(origin_key=f"k{i}")], NOW + dt.timedelta(minutes=i), snap)
        advance(passes, clocks, "t", a.owner, 1.0)  # what the committed-assignment observer stores
        c[a.owner] += 1
        assert max(c.values()) - min(c.get(f"m{j:03d}", 0) for j in range(6)) <= 1
    assert sum(c.values()) == 1000


def test_ties_never_favour_the_oldest_member():
    """With everybody tied (a new team), the first lead does not always go to the first-listed member."""
    firsts = collections.Counter()
    for k in range(60):
        s = team_settings(4)
        s["teams"][0]["name"] = f"team{k}"
        s["rules"][0]["team"] = f"team{k}"
        [a] = make_router(compile_(s)).route([lead(origin_key=f"x{k}")], NOW, Snapshot())
        firsts[a.owner] += 1
    assert len(firsts) == 4  # every member got a first lead at some point
    assert firsts["m000"] < 30


def test_a_new_member_joins_the_rotation_without_being_flooded_or_starved():
    routing = compile_(team_settings(3))
    router = make_router(routing)
    snap = Snapshot()
    router.route([lead() for _ in range(300)], NOW, snap)  # 100 each
    s = team_settings(4)
    router2 = make_router(compile_(s))
    out = router2.route([lead() for _ in range(40)], NOW, snap)
    c = counts(out)
    # the newcomer joins at the team clock: next in line once, then in turn (not 300 leads to catch up)
    assert 10 <= c["m003"] <= 11
    assert all(9 <= c[m] <= 11 for m in ("m000", "m001", "m002"))


def test_weights_give_proportional_shares():
    router = make_router(compile_(team_settings(3, strategy="weighted", weights=[3, 2, 1])))
    c = counts(router.route([lead() for _ in range(600)], NOW, Snapshot()))
    assert abs(c["m000"] - 300) <= 1 and abs(c["m001"] - 200) <= 1 and abs(c["m002"] - 100) <= 1


def test_capacity_max_open_is_respected_and_the_rest_wait_in_the_team_queue():
    s = team_settings(3, max_open=5)
    router = make_router(compile_(s))
    snap = Snapshot(open_load={"m000": 5, "m001": 3})
    out = router.route([lead() for _ in range(10)], NOW, snap)
    c = counts(out)
    assert c["m000"] == 0 and c["m001"] == 2 and c["m002"] == 5
    waiting = [a for a in out if a.owner is None]
    assert len(waiting) == 3
    assert all(a.team == "t" and a.queue == "t" for a in waiting)
    assert "at capacity (5/5 open leads)" in waiting[0].reason
    skipped = {c["member"]: c.get("skipped") for c in waiting[0].explanation["candidates"]}
    assert skipped == {"m000": "at capacity (5/5 open leads)", "m001": "at capacity (5/5 open leads)", "m002": "at capacity (5/5 open leads)"}


def test_daily_new_lead_limit():
    router = make_router(compile_(team_settings(2, max_new_per_day=3)))
    out = router.route([lead() for _ in range(8)], NOW, Snapshot(new_today={"m000": 2}))
    c = counts(out)
    assert c["m000"] == 1 and c["m001"] == 3 and c[None] == 4
    assert "daily limit reached" in out[-1].reason


def test_away_periods_and_inactive_members_are_skipped():
    s = team_settings(3)
    s["members"][0]["away"] = [{"from": "2026-11-20", "to": "2026-11-27", "note": "holiday"}]
    s["members"][1]["active"] = False
    out = make_router(compile_(s)).route([lead() for _ in range(5)], NOW, Snapshot())
    assert {a.owner for a in out} == {"m002"}
    cand = {c["member"]: c.get("skipped") for c in out[0].explanation["candidates"]}
    assert cand["m000"].startswith("away until 2026-11-28") and "holiday" in cand["m000"]
    assert cand["m001"] == "inactive"
    # after the holiday (the 'to' day is inclusive) the member is back
    back = make_router(compile_(s)).route([lead() for _ in range(4)], dt.datetime(2026, 11, 28, 9, tzinfo=dt.timezone.utc), Snapshot())
    assert counts(back)["m000"] == 2


def test_working_hours_in_the_members_time_zone():
    s = team_settings(2)
    s["respect_working_hours"] = True
    s["members"][0].update(timezone="Europe/London", hours=["mon-fri 09:00-17:30"])
    s["members"][1].update(timezone="America/New_York", hours=["mon-fri 09:00-17:30"])
    router = make_router(compile_(s))
    # 10:00 UTC Monday = 10:00 London, 05:00 New York
    out = router.route([lead() for _ in range(3)], NOW, Snapshot())
    assert {a.owner for a in out} == {"m000"}
    why = {c["member"]: c.get("skipped") for c in out[0].explanation["candidates"]}["m001"]
    assert why == "outside working hours (Mon 05:00 America/New_York; hours mon-fri 09:00-17:30)"
    # 23:00 UTC (18:00 in New York): both closed, the lead waits in the team queue
    [late] = router.route([lead()], NOW.replace(hour=23), Snapshot())
    assert late.owner is None and late.queue == "t"
    # when hours are not respected (configurable), both are candidates
    s["respect_working_hours"] = False
    assert {a.owner for a in make_router(compile_(s)).route([lead() for _ in range(4)], NOW, Snapshot())} == {"m000", "m001"}


def test_sticky_ownership_goes_to_the_existing_owner_when_available():
    s = team_settings(3, strategy="sticky")
    router = make_router(compile_(s))
    snap = Snapshot(sticky={0: ("m002", "open lead 17 with the same e-mail is owned by m002"),
                            1: ("m001", "customer 4 is owned by m001")})
    out = router.route([lead(email="a@x.org"), lead(customer_id=4), lead()], NOW, snap)
    assert out[0].owner == "m002" and "sticky: open lead 17" in out[0].reason
    assert out[1].owner == "m001"
    assert out[2].owner is not None  # no history: round robin
    # an away sticky owner falls back to the rotation, and the explanation says so
    s["members"][2]["away"] = [{"from": "2026-11-01", "to": "2026-12-01"}]
    [a] = make_router(compile_(s)).route([lead(email="a@x.org")], NOW, Snapshot(sticky={0: ("m002", "open lead 17")}))
    assert a.owner in {"m000", "m001"}
    assert "m002 is away until" in a.explanation["sticky"]


def test_least_loaded_picks_the_member_with_fewest_open_leads():
    router = make_router(compile_(team_settings(3, strategy="least_loaded")))
    out = router.route([lead() for _ in range(6)], NOW, Snapshot(open_load={"m000": 4, "m001": 1, "m002": 0}))
    c = counts(out)
    assert c == {"m002": 3, "m001": 2, "m000": 1} or c == {"m002": 3, "m001": 3}


def test_language_matching_prefers_speakers():
    s = team_settings(3)
    s["teams"][0]["match_language"] = True
    s["members"][1]["languages"] = ["fr"]
    out = make_router(compile_(s)).route([lead(language="fr-FR") for _ in range(3)] + [lead(language="de")], NOW, Snapshot())
    assert [a.owner for a in out[:3]] == ["m001"] * 3
    assert out[3].explanation["language"] == "no member speaks de; language ignored"


def test_owned_leads_are_left_alone():
    out = make_router(compile_(team_settings(2))).route([lead(owner="someone"), lead()], NOW, Snapshot())
    assert [a.index for a in out] == [1]


@settings(max_examples=40, deadline=None)
@given(n_members=st.integers(1, 12), batches=st.lists(st.integers(1, 60), min_size=1, max_size=8))
def test_round_robin_counts_never_differ_by_more_than_one(n_members, batches):
    routing = compile_(team_settings(n_members))
    router = make_router(routing)
    passes, clocks = {}, {}
    c = collections.Counter()
    for size in batches:
        snap = Snapshot(passes=dict(passes), clocks=dict(clocks))
        for a in router.route([lead() for _ in range(size)], NOW, snap):
            advance(passes, clocks, "t", a.owner, 1.0)
            c[a.owner] += 1
    full = [c.get(f"m{j:03d}", 0) for j in range(n_members)]
    assert max(full) - min(full) <= 1


@settings(max_examples=30, deadline=None)
@given(weights=st.lists(st.integers(1, 5), min_size=2, max_size=6), rounds=st.integers(1, 5))
def test_weighted_shares_are_exact_over_whole_cycles(weights, rounds):
    router = make_router(compile_(team_settings(len(weights), strategy="weighted", weights=weights)))

    out = router.route([lead() for _ in range(sum(weights) * rounds)], NOW, Snapshot())
    c = counts(out)
    for j, w in enumerate(weights):
        assert abs(c[f"m{j:03d}"] - w * rounds) <= 1
