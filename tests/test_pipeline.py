"""The intake pipeline on SQLite and PostgreSQL: capture, decisions, quarantine, retry, idempotency."""

from __future__ import annotations

import sqlalchemy as sa
from conftest import json_capture
from crmtest_plugins import DomainScorer, EmailMatcher, ExplodingScorer, Normaliser, Recorder, RoundRobinRouter, Screener

from corecrm.storage import schema


def _count(crm, table) -> int:
    with crm.engine.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()


def test_capture_stores_raw_then_lead_and_recapture_is_idempotent(make_crm, db_url):
    crm = make_crm(database=db_url)
    docs = [{"first_name": "Ann", "last_name": "Lee", "email": "ann@acme.test", "source": "web", "vehicle": "VW Golf"}, {"email": "bob@acme.test"}]
    [res] = crm.capture([json_capture(docs)])
    assert res.status == "processed" and len(res.lead_ids) == 2
    lead = crm.lead(res.lead_ids[0])
    assert (lead.first_name, lead.email, lead.attributes) == ("Ann", "ann@acme.test", {"vehicle": "VW Golf"})
    [again] = crm.capture([json_capture(docs)])
    assert again.duplicate and again.lead_ids == res.lead_ids
    assert _count(crm, schema.leads) == 2 and _count(crm, schema.captures) == 1
    with crm.engine.connect() as conn:
        payload = conn.execute(sa.select(schema.captures.c.payload)).scalar_one()
    assert b"ann@acme.test" in payload


def test_hook_crm_score_leads_raising_quarantines_only_that_lead_and_retry_completes(make_crm, db_url):
    boom = ExplodingScorer()
    crm = make_crm(database=db_url, plugins={"exploder": boom, "router": RoundRobinRouter()})
    docs = [{"email": "a@x.test"}, {"email": "boom@x.test"}, {"email": "c@x.test"}]
    [res] = crm.capture([json_capture(docs)])
    assert res.status == "quarantined"
    assert len(res.lead_ids) == 2  # the other two are stored...
    for lid in res.lead_ids:
        lead = crm.lead(lid)
        assert lead.owner in ("alice", "bob") and lead.score == 1  # ...and scored and routed
    [q] = crm.quarantined()
    assert (q["step"], q["plugin"]) == ("score", "exploder") and "cannot score boom@x.test" in q["error"]
    assert q["lead"]["email"] == "boom@x.test"
    assert crm.retry() == {"resolved": 0, "still_quarantined": 1, "skipped": 0}
    boom.armed = False  # the plugin is fixed
    assert crm.retry() == {"resolved": 1, "still_quarantined": 0, "skipped": 0}
    assert crm.quarantined() == []
    assert _count(crm, schema.leads) == 3
    stored = crm.leads()
    assert {ld.email for ld in stored} == {"a@x.test", "boom@x.test", "c@x.test"}
    assert all(ld.owner for ld in stored)
    # A second retry has nothing to do and creates nothing.
    assert crm.retry()["resolved"] == 0 and _count(crm, schema.leads) == 3


def test_unparseable_capture_is_quarantined_and_retried_after_fix(make_crm, db_url):
    crm = make_crm(database=db_url)
    from corecrm.records import RawCapture

    [res] = crm.capture([RawCapture(payload=b'{"email": ', origin="stdin")])
    assert res.status == "quarantined" and res.lead_ids == []
    [q] = crm.quarantined()
    assert q["step"] == "parse" and q["plugin"] == "capture_json" and q["lead"] is None
    assert _count(crm, schema.leads) == 0


def test_hook_crm_verify_leads_updates_keep_the_original(make_crm, db_url):
    crm = make_crm(database=db_url, plugins={"normaliser": Normaliser()})
    [res] = crm.capture([json_capture({"email": "Ann@ACME.test", "first_name": "Ann"})])
    lead = crm.lead(res.lead_ids[0])
    assert lead.email == "ann@acme.test"
    hist = crm.history(lead.id)
    upd = next(e for e in hist if e.type == "field_updated")
    assert upd.plugin == "normaliser" and upd.detail["old"] == "Ann@ACME.test" and upd.detail["new"] == "ann@acme.test"
    finding = next(e for e in hist if e.type == "finding")
    assert finding.detail["code"] == "no_last_name" and finding.plugin == "normaliser"


def test_hook_crm_screen_leads_reject_and_review(make_crm, db_url):
    crm = make_crm(database=db_url, plugins={"screener": Screener()})
    [res] = crm.capture([json_capture([{"email": "x@spam.test"}, {"email": "y@review.test"}, {"email": "z@ok.test"}])])
    assert len(res.lead_ids) == 1
    q = {r["status"]: r for r in crm.quarantined(status=("open", "review", "rejected"))}
    assert set(q) == {"review", "rejected"}
    assert q["rejected"]["plugin"] == "screener" and "known spam domain" in q["rejected"]["error"]
    assert crm.retry()["resolved"] == 0  # review needs a human
    assert crm.retry(accept_review=True)["resolved"] == 1
    assert {ld.email for ld in crm.leads()} == {"z@ok.test", "y@review.test"}


def test_hook_crm_match_leads_merges_into_stored_and_within_batch(make_crm, db_url):
    crm = make_crm(database=db_url, plugins={"matcher": EmailMatcher()})
    [first] = crm.capture([json_capture({"email": "ann@acme.test", "first_name": "Ann", "interests": ["shoes"], "consent": {"email": "yes"}})])
    [second] = crm.capture([json_capture([{"email": "ANN@acme.test", "phone": "+44 20 7946 0000", "interests": ["bags"], "consent": {"sms": "yes"}}, {"email": "cat@acme.test"}, {"email": "cat@acme.test", "company": "Cat Co"}])])
    ann = crm.lead(first.lead_ids[0])
    assert ann.phone == "+44 20 7946 0000" and ann.interests == ["shoes", "bags"]
    assert ann.consent == {"email": "yes"}  # consent never carried across records
    merged = [e for e in crm.history(ann.id) if e.type == "merged"]
    assert merged and merged[0].plugin == "matcher" and merged[0].detail["consent_not_carried"] == {"sms": "yes"}
    cats = [ld for ld in crm.leads() if ld.email == "cat@acme.test"]
    assert len(cats) == 1 and cats[0].company == "Cat Co"
    assert _count(crm, schema.leads) == 2


def test_hook_crm_qualify_leads_and_scores_explained(make_crm, db_url):
    crm = make_crm({"plugins": {"enabled": ["capture_json"], "scorer": {"mql_at": 15}}}, database=db_url, plugins={"scorer": DomainScorer(), "router": RoundRobinRouter()})
    [res] = crm.capture([json_capture([{"email": "ann@acme.test", "interests": ["shoes"]}, {"email": "bob@gmail.com"}])])
    ann, bob = (crm.lead(i) for i in res.lead_ids)
    assert ann.score == 15 and ann.grade == "A" and ann.stage.value == "mql"
    assert sum(c["points"] for c in ann.score_detail["contributions"]) == ann.score
    assert {c["plugin"] for c in ann.score_detail["contributions"]} == {"scorer"}
    assert bob.score is None and bob.stage.value == "lead"
    stage_rows = [e for e in crm.history(ann.id) if e.type == "stage_changed"]
    assert stage_rows[0].detail == {"from": "lead", "to": "mql", "reason": "score 15.0"} and stage_rows[0].plugin == "scorer"


def test_hook_crm_route_leads_records_explanation(make_crm, db_url):
    crm = make_crm(database=db_url, plugins={"router": RoundRobinRouter(["alice", "bob", "carol"])})
    [res] = crm.capture([json_capture([{"email": f"l{i}@x.test"} for i in range(6)])])
    owners = [crm.lead(i).owner for i in res.lead_ids]
    assert owners == ["alice", "bob", "carol", "alice", "bob", "carol"]
    ev = [e for e in crm.history(res.lead_ids[0]) if e.type == "assigned"]
    assert ev[0].plugin == "router" and ev[0].detail["rule"] == "everyone"
    assert ev[0].detail["explanation"]["strategy"] == "round_robin"
    assert crm.lead(res.lead_ids[0]).assigned_at is not None


def test_observers_are_isolated_and_told_after_commit(make_crm, db_url):
    good, bad = Recorder(), Recorder(fail=True)
    crm = make_crm(database=db_url, plugins={"bad_observer": bad, "good_observer": good, "router": RoundRobinRouter()})
    [res] = crm.capture([json_capture([{"email": "a@x.test"}, {"email": "b@x.test"}])])
    assert len(res.lead_ids) == 2  # the failing observer changed nothing
    kinds = {name for name, _ in good.calls}
    assert {"captured", "assigned"} <= kinds
    captured = next(evs for name, evs in good.calls if name == "captured")
    assert sorted(e.lead_id for e in captured) == sorted(res.lead_ids)


def test_hook_crm_leads_captured(make_crm):
    rec = Recorder()
    crm = make_crm(plugins={"rec": rec})
    [res] = crm.capture([json_capture({"email": "a@x.test", "source": "web"})])
    [(name, events)] = [c for c in rec.calls if c[0] == "captured"]
    assert events[0].lead_id == res.lead_ids[0] and events[0].detail["source"] == "web"


def test_hook_crm_leads_assigned(make_crm):
    rec = Recorder()
    crm = make_crm(plugins={"rec": rec, "router": RoundRobinRouter(["zoe"])})
    crm.capture([json_capture({"email": "a@x.test"})])
    [(_, events)] = [c for c in rec.calls if c[0] == "assigned"]
    assert events[0].detail["owner"] == "zoe" and events[0].plugin == "router"


def test_hook_crm_stage_changed(make_crm):
    rec = Recorder()
    crm = make_crm(plugins={"rec": rec})
    [res] = crm.capture([json_capture({"email": "a@x.test"})])
    crm.move_stage(res.lead_ids[0], "nurturing", reason="not ready")
    [(_, events)] = [c for c in rec.calls if c[0] == "stage_changed"]
    assert events[0].detail == {"from": "lead", "to": "nurturing", "reason": "not ready"}


def test_hook_crm_leads_quarantined(make_crm):
    rec = Recorder()
    crm = make_crm(plugins={"rec": rec, "exploder": ExplodingScorer()})
    crm.capture([json_capture({"email": "boom@x.test"})])
    [(_, events)] = [c for c in rec.calls if c[0] == "quarantined"]
    assert events[0].plugin == "exploder" and events[0].detail["step"] == "score"


def test_hook_crm_enrich_leads(make_crm):
    from corecrm.hooks import hookimpl
    from corecrm.records import FieldUpdate

    class Enricher:
        @hookimpl
        def crm_enrich_leads(self, leads):
            return [FieldUpdate(i, "attributes.company_size", 250, "from the company register") for i, ld in enumerate(leads) if ld.company]

    crm = make_crm(plugins={"enricher": Enricher()})
    [res] = crm.capture([json_capture([{"email": "a@x.test", "company": "Acme"}, {"email": "b@x.test"}])])
    a, b = (crm.lead(i) for i in res.lead_ids)
    assert a.attributes == {"company_size": 250} and b.attributes == {}
    upd = next(e for e in crm.history(a.id) if e.type == "field_updated")
    assert upd.plugin == "enricher" and upd.detail["field"] == "attributes.company_size"


def test_hook_crm_enrol_leads_spec_is_callable(make_crm):
    from corecrm.hooks import hookimpl
    from corecrm.records import Enrolment

    class Enroller:
        @hookimpl
        def crm_enrol_leads(self, leads):
            return [Enrolment(i, "welcome", "new lead") for i in range(len(leads))]

    crm = make_crm(plugins={"enroller": Enroller()})
    [res] = crm.capture([json_capture({"email": "a@x.test"})])
    lead = crm.lead(res.lead_ids[0])
    out = crm.plugins.collect("crm_enrol_leads", workspace="default", leads=[lead], ctx=None)
    assert [(e.sequence, e.plugin) for e in out] == [("welcome", "enroller")]


def test_large_batch_goes_through_in_bulk(make_crm, db_url):
    crm = make_crm(database=db_url, plugins={"scorer": DomainScorer(), "router": RoundRobinRouter()})
    from corecrm.models import Lead

    leads = [Lead(email=f"p{i}@acme.test", interests=["x"], origin_key=f"bulk:{i}") for i in range(12000)]
    res = crm.intake(leads)
    assert len(res.created) == 12000 and _count(crm, schema.leads) == 12000
    again = crm.intake([Lead(email=f"p{i}@acme.test", origin_key=f"bulk:{i}") for i in range(12000)])
    assert again.created == [] and again.existing == 12000
    assert {ld.score for ld in crm.leads(limit=50)} == {15}


def test_duplicate_of_a_quarantined_lead_in_the_same_batch_is_held_not_dropped(make_crm):
    boom = ExplodingScorer()
    crm = make_crm(plugins={"matcher": EmailMatcher(), "exploder": boom})
    [res] = crm.capture([json_capture([{"email": "boom@x.test", "first_name": "A"}, {"email": "boom@x.test", "company": "B Co"}, {"email": "ok@x.test"}])])
    assert [crm.lead(i).email for i in res.lead_ids] == ["ok@x.test"]
    held = crm.quarantined()
    assert sorted(q["step"] for q in held) == ["match", "score"]
    boom.armed = False
    assert crm.retry()["resolved"] == 2
    booms = [ld for ld in crm.leads() if ld.email == "boom@x.test"]
    assert len(booms) == 1 and booms[0].company == "B Co" and booms[0].first_name == "A"
