"""Recompute, dry-run diff and the calibration report against a real database (SQLite; PostgreSQL when configured)."""

from __future__ import annotations

import datetime as dt
import textwrap

import pytest
import sqlalchemy as sa
from sb_helpers import NOW, config, detail_of, insert_events, insert_leads, table_dump

import corecrm_plugins.scoring_basic as sb
from corecrm.errors import ConfigError
from corecrm.records import ScoreContribution
from corecrm.storage import schema
from corecrm_plugins.scoring_basic.diff import diff, load_rules_file
from corecrm_plugins.scoring_basic.recompute import recompute
from corecrm_plugins.scoring_basic.report import auc, run as run_report

RULES = [
    {"name": "exec", "op": "regex", "field": "title", "pattern": "(?i)\\b(cto|ceo|vp)\\b", "points": 30, "group": "fit"},
    {"name": "company_mail", "op": "email_domain", "value": "company", "points": 10, "group": "fit"},
    {"name": "free_mail", "op": "email_domain", "value": "free", "points": -10},
    {"name": "opens", "event": "email_opened", "points": 5, "group": "engagement", "half_life_days": 30},
    {"name": "demo", "event": "demo_booked", "points": 40, "group": "engagement"},
]
SETTINGS = {
    "rules": RULES,
    "groups": {"engagement": {"max": 50}},
    "grades": {"A": 60, "B": 30, "C": 0},
    "qualification": {"mql": 30, "sql": 60, "nurture_below": 10},
}


@pytest.fixture
def crm(make_crm, db_url, clock):
    clock.now = NOW
    return make_crm(config(SETTINGS), database=db_url)


def _seed(crm):
    ids = insert_leads(
        crm.engine,
        [
            {"title": "CTO", "email": "ann@acme.io", "first_name": "Ann"},  # 40 fit
            {"title": "Intern", "email": "bob@gmail.com", "first_name": "Bob"},  # -10
            {"title": "VP Sales", "email": "cy@corp.example", "stage": "mql"},  # 40 + engagement
            {"title": "Analyst", "email": "di@corp.example", "stage": "sql", "score": 70, "grade": "A"},  # 10: falls back
            {"title": "CEO", "email": "old@merged.example", "status": "merged"},
            {"title": "CEO", "email": "other@ws.example", "workspace": "other"},
        ],
    )
    insert_events(
        crm.engine,
        [(ids[2], "email_opened", 0, {}), (ids[2], "email_opened", 30, {}), (ids[2], "demo_booked", 1, {}), (ids[2], "email_opened", 1, {}, "other")],
    )
    return ids


def _lead_rows(crm, ids):
    with crm.engine.connect() as conn:
        rows = conn.execute(sa.select(schema.leads.c.id, schema.leads.c.score, schema.leads.c.grade, schema.leads.c.stage, schema.leads.c.score_detail).where(schema.leads.c.id.in_(ids))).all()
    return {r.id: r for r in rows}


def _events(crm, typ=None):
    q = sa.select(schema.events).order_by(schema.events.c.id)
    if typ:
        q = q.where(schema.events.c.type == typ)
    with crm.engine.connect() as conn:
        return conn.execute(q).all()


def test_recompute_writes_scores_explanations_grades_stages_and_events(crm):
    ids = _seed(crm)
    stats = recompute(crm, "default", batch_size=2)  # several batches
    assert stats.leads == 4 and stats.rescored == 4
    rows = _lead_rows(crm, ids)
    ann, bob, cy, di = (rows[i] for i in ids[:4])
    assert (ann.score, ann.grade, ann.stage) == (40, "B", "mql")
    assert (bob.score, bob.grade, bob.stage) == (-10, "C", "lead")
    # cy: 40 fit + opens (5 + 2.5 -> 8 whole points) + demo 40 = 48 -> capped at 50? 8 + 40 = 48 < 50: no cap
    assert (cy.score, cy.grade, cy.stage) == (88, "A", "sql")
    assert (di.score, di.grade, di.stage) == (10, "C", "sql")  # 10 is not below the floor of 10
    detail = detail_of(cy.score_detail)
    assert detail["rulesets"]["scoring_basic"].startswith("sb1-") and detail["score"] == 88
    assert sum(c["points"] for c in detail["contributions"]) == cy.score
    assert {c["rule"] for c in detail["contributions"]} == {"exec", "company_mail", "opens", "demo"}
    assert all(c["plugin"] == "scoring_basic" and c["reason"] for c in detail["contributions"])
    # merged leads and other workspaces are untouched
    assert rows[ids[4]].score is None and rows[ids[5]].score is None
    scored = _events(crm, "scored")
    assert len(scored) == 4 and {e.lead_id for e in scored} == set(ids[:4])
    ev = next(e for e in scored if e.lead_id == ids[3])
    d = detail_of(ev.detail)
    assert d["score"] == 10 and d["previous"] == 70 and d["ruleset"] == detail["rulesets"]["scoring_basic"] and d["contributions"]
    assert d["changes"] == [{"plugin": "scoring_basic", "rule": "company_mail", "from": None, "to": 10.0}]
    stage = [e for e in _events(crm, "stage_changed")]
    assert sorted((e.lead_id, detail_of(e.detail)["to"]) for e in stage) == sorted([(ids[0], "mql"), (ids[2], "sql")])
    assert all(e.workspace == "default" for e in _events(crm) if e.type in ("scored", "graded", "stage_changed"))
    graded = _events(crm, "graded")
    assert len(graded) == 4

    # A second run with the same rules and clock changes nothing and writes nothing.
    before = table_dump(crm.engine)
    again = recompute(crm, "default")
    assert (again.score_changed, again.rows_written, again.events_written) == (0, 0, 0)
    assert table_dump(crm.engine) == before


def test_recompute_records_scored_events_only_for_changed_scores(crm, clock):
    ids = _seed(crm)
    recompute(crm, "default")
    n_scored = len(_events(crm, "scored"))
    # Falling back below the floor later: decay makes cy's opens fade, nothing else moves.
    clock.now = NOW + dt.timedelta(days=400)
    stats = recompute(crm, "default")
    assert stats.score_changed == 1  # only cy's engagement decayed
    assert len(_events(crm, "scored")) == n_scored + 1
    assert _lead_rows(crm, [ids[2]])[ids[2]].score == 80  # 40 fit + 40 demo (no decay on demo)


def test_recompute_nurtures_when_score_falls_below_floor(make_crm, db_url, clock):
    clock.now = NOW
    settings = {**SETTINGS, "rules": [{"name": "opens", "event": "email_opened", "points": 40, "half_life_days": 7}]}
    crm = make_crm(config(settings), database=db_url)
    (lid,) = insert_leads(crm.engine, [{"email": "a@b.example"}])
    insert_events(crm.engine, [(lid, "email_opened", 0, {})])
    recompute(crm, "default")
    assert _lead_rows(crm, [lid])[lid].stage == "mql"
    clock.now = NOW + dt.timedelta(days=30)  # 40 / 2**(30/7) = 2 < 10
    recompute(crm, "default")
    row = _lead_rows(crm, [lid])[lid]
    assert (row.score, row.stage) == (2, "nurturing")
    moves = [detail_of(e.detail) for e in _events(crm, "stage_changed")]
    assert [(m["from"], m["to"]) for m in moves] == [("lead", "mql"), ("mql", "nurturing")]
    assert "below the nurturing floor 10" in moves[1]["reason"]


def test_second_scoring_plugin_contributions_are_kept_with_its_name(make_crm, db_url, clock):
    class Intent:
        @sb.hookimpl
        def crm_score_leads(self, leads, ctx):
            return [ScoreContribution(i, "intent_surge", 15.0, f"intent data ({ctx.mode})") for i, lead in enumerate(leads) if lead.company]

    clock.now = NOW
    crm = make_crm(config(SETTINGS), plugins={"intent_scorer": Intent()}, database=db_url)
    a, b = insert_leads(crm.engine, [{"title": "CTO", "email": "a@acme.io", "company": "Acme"}, {"title": "Intern", "email": "b@gmail.com"}])
    recompute(crm, "default")
    rows = _lead_rows(crm, [a, b])
    da = detail_of(rows[a].score_detail)
    assert rows[a].score == 55 and rows[a].grade == "B"
    assert sorted((c["plugin"], c["rule"], c["points"]) for c in da["contributions"]) == [
        ("intent_scorer", "intent_surge", 15.0),
        ("scoring_basic", "company_mail", 10.0),
        ("scoring_basic", "exec", 30.0),
    ]
    assert rows[b].score == -10


def test_diff_is_a_dry_run_that_counts_changes(crm, tmp_path):
    ids = _seed(crm)
    recompute(crm, "default")
    new = tmp_path / "new.toml"
    new.write_text(
        textwrap.dedent(
            """
            [plugins.scoring_basic]
            grades = { A = 45, B = 30, C = 0 }

            [[plugins.scoring_basic.rules]]
            name = "exec"
            op = "regex"
            field = "title"
            pattern = "(?i)\\\\b(cto|ceo|vp)\\\\b"
            points = 30

            [[plugins.scoring_basic.rules]]
            name = "company_mail"
            op = "email_domain"
            value = "company"
            points = 20
            """
        )
    )
    before = table_dump(crm.engine)
    res = diff(crm, "default", load_rules_file(new, "default"), examples=5)
    assert table_dump(crm.engine) == before  # nothing written
    assert res.leads == 4 and res.ruleset != res.new_ruleset
    # ann 40 -> 50 (B -> A), bob -10 -> 0, cy 88 -> 50 (A stays A, sql stays), di 10 -> 20 (C stays; sql stays)
    assert res.score_changed == 4 and res.score_up == 3 and res.score_down == 1
    assert res.grade_moves == {"B->A": 1}
    assert res.stage_changed == 0 and res.stage_moves == {}
    ex = {e.lead_id: e for e in res.examples}
    assert ex[ids[0]].new_grade == "A" and "company_mail" in ex[ids[0]].changed_rules
    assert res.examples[0].lead_id == ids[0]  # grade changes shown before mere score changes


def test_diff_reports_qualification_changes(crm, tmp_path):
    _seed(crm)
    recompute(crm, "default")
    new = tmp_path / "rules.toml"
    new.write_text('qualification = { mql = 20, sql = 35, nurture_below = 5 }\n')
    res = diff(crm, "default", load_rules_file(new, "default"))
    # the current run left ann at mql with 40: with sql = 35 she would become sales-qualified
    assert res.stage_moves == {"mql->sql": 1} and res.stage_changed == 1
    assert res.examples[0].new_stage == "sql"


def test_diff_rejects_a_bad_rules_file_naming_file_and_key(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[[rules]]\nname = "x"\nop = "near"\npoints = 1\n')
    with pytest.raises(ConfigError) as exc:
        load_rules_file(bad, "default")
    assert str(exc.value).startswith(f"{bad}: rules[0].op: unknown operator 'near'")
    bad.write_text('[plugins.scoring_basic]\nrules = [{ name = "x", op = "regex", field = "title", pattern = "(", points = 1 }]\n')
    with pytest.raises(ConfigError, match=r"plugins\.scoring_basic\.rules\[0\]\.pattern: invalid regular expression"):
        load_rules_file(bad, "default")
    bad.write_text("rules = [\n")
    with pytest.raises(ConfigError, match="invalid TOML"):
        load_rules_file(bad, "default")


def test_workspace_overrides_in_recompute(make_crm, db_url, clock):
    clock.now = NOW
    dealer = {"rules": [{"name": "trade_in", "op": "equals", "field": "attributes.trade_in", "value": True, "points": 35}]}
    crm = make_crm(config(SETTINGS, workspaces={"dealer": dealer}), database=db_url)
    a, b = insert_leads(
        crm.engine,
        [{"title": "CTO", "email": "a@acme.io", "attributes": {"trade_in": True}}, {"title": "CTO", "email": "a@acme.io", "attributes": {"trade_in": True}, "workspace": "dealer"}],
    )
    recompute(crm, "default")
    recompute(crm, "dealer")
    rows = _lead_rows(crm, [a, b])
    assert (rows[a].score, rows[a].grade) == (40, "B")
    assert (rows[b].score, rows[b].grade, rows[b].stage) == (35, "B", "mql")


def test_calibration_report(crm):
    ids = insert_leads(
        crm.engine,
        [
            {"score": 90, "grade": "A", "customer_id": 1},
            {"score": 75, "grade": "A"},
            {"score": 70, "grade": "A"},
            {"score": 40, "grade": "B"},
            {"score": 35, "grade": "B"},
            {"score": 5, "grade": "C"},
            {"score": 50, "grade": "B"},  # open deal: outcome unknown
            {"score": 60, "grade": "A"},  # no deal: unknown
            {"score": 99, "grade": "A", "workspace": "other", "customer_id": 2},
        ],
    )
    deal = {"workspace": "default", "pipeline": "sales", "created_at": NOW}
    with crm.engine.begin() as conn:
        for lid, status in [(ids[1], "won"), (ids[2], "lost"), (ids[3], "won"), (ids[3], "lost"), (ids[4], "lost"), (ids[5], "lost"), (ids[6], "open")]:
            conn.execute(sa.insert(schema.deals).values(lead_id=lid, stage=status if status != "open" else "new", status=status, **deal))
    table = run_report(crm, "default", {"band_width": 25})
    data = table.data
    assert (data["known_outcomes"], data["won"], data["lost"]) == (6, 3, 3)
    grades = {g["grade"]: g for g in data["by_grade"]}
    assert (grades["A"]["won"], grades["A"]["lost"]) == (2, 1) and (grades["C"]["won"], grades["C"]["lost"]) == (0, 1)
    bands = {b["band"]: (b["won"], b["lost"]) for b in data["by_band"]}
    assert bands == {"75 to 100": (2, 0), "50 to 75": (0, 1), "25 to 50": (1, 1), "0 to 25": (0, 1)}
    # wins 90, 75, 40 vs losses 70, 35, 5: 8 of 9 pairs ordered right
    assert data["auc"] == pytest.approx(8 / 9)
    assert table.rows[0][:2] == ["grade", "A"] and any("ROC AUC" in n for n in table.notes)
    empty = run_report(crm, "nobody", {})
    assert empty.rows == [] and "no scored lead" in empty.notes[0]


def test_auc_edge_cases():
    assert auc([]) is None and auc([(1.0, 3, 0)]) is None
    assert auc([(1.0, 1, 1)]) == 0.5
    assert auc([(2.0, 1, 0), (1.0, 0, 1)]) == 1.0


def test_recompute_applies_other_qualifiers_through_the_lifecycle(make_crm, db_url, clock):
    from corecrm.records import Qualification

    class Gatekeeper:
        """Disqualifies competitors; asks (wrongly) to make big accounts customers. Called last, so its stage wins."""

        @sb.hookimpl(trylast=True)
        def crm_qualify_leads(self, leads, scores):
            out = []
            for i, lead in enumerate(leads):
                if lead.company == "Rival":
                    out.append(Qualification(i, stage="disqualified", reason="competitor"))
                elif lead.company == "Big":
                    out.append(Qualification(i, stage="customer", reason="big account"))
            return out

    clock.now = NOW
    crm = make_crm(config(SETTINGS), plugins={"gatekeeper": Gatekeeper()}, database=db_url)
    rival, big = insert_leads(crm.engine, [{"title": "CTO", "email": "a@rival.example", "company": "Rival"}, {"title": "CEO", "email": "b@big.example", "company": "Big"}])
    stats = recompute(crm, "default")
    assert stats.refused == 1
    with crm.engine.connect() as conn:
        rows = {r.id: r for r in conn.execute(sa.select(schema.leads.c.id, schema.leads.c.stage, schema.leads.c.status))}
    assert (rows[rival].stage, rows[rival].status) == ("disqualified", "disqualified")
    assert (rows[big].stage, rows[big].status) == ("mql", "open")  # scoring_basic's move stands; the customer move is refused
    moves = [(e.lead_id, e.plugin, detail_of(e.detail)["to"]) for e in _events(crm, "stage_changed")]
    assert moves == [(rival, "scoring_basic", "mql"), (rival, "gatekeeper", "disqualified"), (big, "scoring_basic", "mql")]


def test_unchanged_explanations_are_recognised_by_digest_or_content():
    from corecrm.storage.db import dumps
    from corecrm_plugins.scoring_basic.recompute import same_detail, score_detail

    recs = [ScoreContribution(0, "exec", 30.0, 'title matches "CTO"', "fit", "sb1-x", "scoring_basic")]
    score, new = score_detail(recs)
    assert score == 30 and new["digest"]
    assert same_detail(dumps(new), new)
    intake_shape = {k: v for k, v in new.items() if k != "digest"}  # as intake stores it
    assert same_detail(dumps(intake_shape), new)
    other = score_detail([ScoreContribution(0, "exec", 30.0, "another reason", "fit", "sb1-x", "scoring_basic")])[1]
    assert not same_detail(dumps(new), other) and not same_detail(dumps(intake_shape), other)
    assert not same_detail(None, new) and same_detail(None, None)
    # a reason quoting a digest cannot fake a match: JSON escapes its quotes
    sneaky = score_detail([ScoreContribution(0, "exec", 30.0, f'"digest":"{other["digest"]}"', "fit", "sb1-x", "scoring_basic")])[1]
    assert not same_detail(dumps(sneaky), other)
