"""Set-based rescoring of stored leads: ``corecrm score recompute`` and the dry run behind ``score diff``.

Leads are read in big id-ordered batches (keyset pagination, one query per
batch), their history in one range query per batch, every scoring plugin is
called once per batch through the plugin manager (so a second scorer's
contributions are kept, each stamped with its plugin), and the results are
written back with one ``executemany`` UPDATE and one bulk event insert per
batch. Only leads whose score, explanation, grade or stage changed are
written; a ``scored`` event is recorded only when the score itself changed.

Each batch is its own transaction: a run interrupted half-way leaves whole
batches rescored and the rest untouched, and running it again finishes the
job (rescoring is idempotent).
"""

from __future__ import annotations

import datetime as dt
import gc
import hashlib
import json
import time
from typing import Any, Callable, Iterator, Mapping, Sequence

import attrs
import sqlalchemy as sa

from corecrm.context import HookContext
from corecrm.lifecycle import Stage, can_move
from corecrm.models import CONTACT_FIELDS, Event, Lead
from corecrm.records import Qualification, ScoreContribution
from corecrm.storage.db import as_utc, bulk_insert, dumps, is_postgres, ts

NAME = "scoring_basic"

#: Lead columns read for scoring (everything a rule or another scorer may look at; not the intake log).
LEAD_READ_COLUMNS: tuple[str, ...] = (
    "id",
    "workspace",
    "stage",
    "status",
    *CONTACT_FIELDS,
    "source",
    "campaign",
    "language",
    "timezone",
    "interests",
    "attributes",
    "consent",
    "score",
    "grade",
    "score_detail",
    "owner",
    "team",
    "capture_id",
    "origin_key",
    "created_at",
    "updated_at",
    "assigned_at",
    "first_contact_at",
    "customer_id",
    "merged_into",
)
_JSON_COLS = ("interests", "attributes", "consent")
_TIME_COLS = ("created_at", "updated_at", "assigned_at", "first_contact_at")
#: Scorers' own output is not engagement: keep re-scores from feeding on themselves.
SKIP_EVENT_TYPES: tuple[str, ...] = ("scored", "graded")

EVENT_COLUMNS = ("workspace", "lead_id", "type", "at", "plugin", "detail")


@attrs.define(slots=True)
class Outcome:
    """What rescoring one lead produced."""

    lead: Lead
    score: float | None
    detail: dict[str, Any] | None
    grade: str | None
    stage: Stage
    #: Stage moves applied in plugin call order: ``(from, to, reason, plugin)``.
    moves: list[tuple[Stage, Stage, str, str]] = attrs.field(factory=list)
    stored_detail: str | None = None  #: the stored explanation, as JSON text
    refused: list[str] = attrs.field(factory=list)  #: stage moves the lifecycle refused, with why


@attrs.define(slots=True)
class RecomputeStats:
    workspace: str
    leads: int = 0
    rescored: int = 0
    score_changed: int = 0
    grade_changed: int = 0
    stage_changed: int = 0
    rows_written: int = 0
    events_written: int = 0
    refused: int = 0
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return attrs.asdict(self)


# --------------------------------------------------------------------------- reading


def _loads(value: Any) -> Any:
    if isinstance(value, (str, bytes)):
        return json.loads(value)
    return value


_EMPTY_JSON = {None: None, "[]": [], "{}": {}, "null": None}
_STAGES = {s.value: s for s in Stage}


def _json_value(v: Any) -> Any:
    if v is None or not isinstance(v, (str, bytes)):
        return v
    if v in _EMPTY_JSON:
        return type(_EMPTY_JSON[v])() if _EMPTY_JSON[v] is not None else None
    return json.loads(v)


def _time_value(v: Any) -> Any:
    if v is None:
        return None
    if isinstance(v, str):
        v = dt.datetime.fromisoformat(v)
    return v.replace(tzinfo=dt.timezone.utc) if v.tzinfo is None else v.astimezone(dt.timezone.utc)


def _lead_from_row(row: Sequence[Any]) -> Lead:
    d = dict(zip(LEAD_READ_COLUMNS, row))
    d["score_detail"] = None
    for k in _JSON_COLS:
        d[k] = _json_value(d[k])
    for k in _TIME_COLS:
        d[k] = _time_value(d[k])
    d["interests"] = d["interests"] or []
    d["attributes"] = d["attributes"] or {}
    d["consent"] = d["consent"] or {}
    d["stage"] = _STAGES[d["stage"]]
    return Lead(**d)


_READ_SQL = sa.text(
    "SELECT "
    + ", ".join("CAST(score_detail AS TEXT)" if c == "score_detail" else c for c in LEAD_READ_COLUMNS)
    + " FROM leads WHERE workspace = :ws AND id > :after AND status <> 'merged' ORDER BY id LIMIT :n"
)
_DETAIL_POS = LEAD_READ_COLUMNS.index("score_detail")


def read_lead_batch(conn: sa.Connection, workspace: str, after: int, batch_size: int) -> tuple[list[Lead], list[str | None]]:
    """The next ``batch_size`` stored leads of a workspace with id > ``after`` (merged ones skipped).

    The stored explanations come back as JSON text beside the leads, not
    decoded: decoding them is the most expensive part of reading a lead, and
    an unchanged lead is recognised by the digest in the text alone. (Leads
    therefore carry ``score_detail = None`` during a recompute.)
    """
    rows = conn.execute(_READ_SQL, {"ws": workspace, "after": after, "n": batch_size}).all()
    return [_lead_from_row(r) for r in rows], [r[_DETAIL_POS] for r in rows]


def iter_lead_batches(conn: sa.Connection, workspace: str, batch_size: int) -> Iterator[list[Lead]]:
    """Stored leads of a workspace (not merged ones), in id order, ``batch_size`` at a time."""
    after = 0
    while True:
        batch, _details = read_lead_batch(conn, workspace, after, batch_size)
        if not batch:
            return
        yield batch
        after = batch[-1].id


def events_loader(conn: sa.Connection, workspace: str, lo: int, hi: int) -> Callable[[list[int]], dict[int, list[Event]]]:
    """Load the history of every lead with lo <= id <= hi in one range query (index on workspace, lead_id)."""
    cache: dict[int, list[Event]] | None = None

    def load(ids: list[int]) -> dict[int, list[Event]]:
        nonlocal cache
        if cache is None:
            skip = ", ".join(f"'{t}'" for t in SKIP_EVENT_TYPES)
            rows = conn.execute(
                sa.text(
                    "SELECT id, lead_id, type, at, plugin, detail FROM events "
                    f"WHERE workspace = :ws AND lead_id BETWEEN :lo AND :hi AND type NOT IN ({skip})"
                ),
                {"ws": workspace, "lo": lo, "hi": hi},
            ).all()
            cache = {}
            for eid, lead_id, typ, at, plugin, detail in rows:
                cache.setdefault(lead_id, []).append(
                    Event(type=typ, at=as_utc(at), plugin=plugin, detail=_loads(detail) or {}, lead_id=lead_id, id=eid)
                )
        # Every asked-for id gets an entry, so a lead without history is not reloaded.
        return {i: cache.get(i, []) for i in ids}

    return load


# --------------------------------------------------------------------------- scoring a batch


def contribution_json(c: ScoreContribution) -> dict[str, Any]:
    return {"rule": c.rule, "points": c.points, "reason": c.reason, "group": c.group, "plugin": c.plugin}


def clean_number(x: float) -> float:
    """The core's rounding of a sum of float points (drops binary noise such as 0.1 + 0.2)."""
    r = round(x, 9)
    return float(int(r)) if r == int(r) else r


def score_detail(recs: Sequence[ScoreContribution]) -> tuple[float, dict[str, Any]]:
    """The score and the stored explanation, in the same shape intake stores (``leads.score_detail``)."""
    total = 0.0
    by_plugin: dict[str, list[dict[str, Any]]] = {}
    rulesets: dict[str, str] = {}
    for c in recs:
        total += c.points
        by_plugin.setdefault(c.plugin, []).append(contribution_json(c))
        if c.ruleset:
            rulesets[c.plugin] = c.ruleset
    total = clean_number(total)
    contributions = [row for rows in by_plugin.values() for row in rows]
    return total, {"score": total, "rulesets": rulesets, "contributions": contributions, "digest": digest(total, rulesets, contributions)}


def digest(total: float, rulesets: Mapping[str, str], contributions: Sequence[Mapping[str, Any]]) -> str:
    """A short, stable fingerprint of an explanation: recompute skips leads whose stored digest matches."""
    canon = repr((total, sorted(rulesets.items()), [(c["plugin"], c["rule"], c["points"], c["reason"], c["group"]) for c in contributions]))
    return hashlib.blake2b(canon.encode("utf-8"), digest_size=8).hexdigest()


def same_detail(raw: str | None, new: Mapping[str, Any] | None) -> bool:
    """Is the stored explanation (JSON text) the one just computed? Without decoding it when it has a digest."""
    if raw is None or new is None:
        return raw is None and new is None
    d = new.get("digest")
    if d is not None and '"digest":' in raw:
        # JSON escapes quotes inside strings, so this exact text can only be the digest key itself.
        return f'"digest":"{d}"' in raw
    old = json.loads(raw)  # an explanation written before digests (e.g. at intake)
    return {k: v for k, v in old.items() if k != "digest"} == {k: v for k, v in new.items() if k != "digest"}


def score_batch(
    crm: Any,
    workspace: str,
    leads: list[Lead],
    ctx: HookContext,
    *,
    override: Mapping[str, Any] | None = None,
    stored_details: Sequence[str | None] | None = None,
) -> list[Outcome]:
    """Call every scorer and qualifier on a batch, the way intake does; return per-lead outcomes.

    ``override`` replaces this plugin's settings (``score diff --rules``);
    every other plugin gets its own settings for the workspace.
    """
    pm = crm.plugins
    per_lead: list[list[ScoreContribution]] = [[] for _ in leads]
    for name, impl in pm.impls("crm_score_leads", workspace):
        if override is not None and name == NAME:
            from . import crm_score_leads

            result = crm_score_leads(leads=leads, ctx=ctx, settings=override)
        else:
            result = pm.call_impl(name, impl, {"leads": leads, "ctx": ctx}, workspace)
        for rec in result or ():
            if not rec.plugin:
                rec.plugin = name
            if not 0 <= rec.index < len(leads):
                from corecrm.errors import PluginError

                raise PluginError(f"crm_score_leads returned index {rec.index} for a batch of {len(leads)}", plugin=name)
            per_lead[rec.index].append(rec)
    scores: list[float | None] = []
    details: list[dict[str, Any] | None] = []
    for recs in per_lead:
        if not recs:
            scores.append(None)
            details.append(None)
            continue
        score, detail = score_detail(recs)
        scores.append(score)
        details.append(detail)

    grades: list[str | None] = [lead.grade for lead in leads]
    wanted: list[list[Qualification]] = [[] for _ in leads]
    for name, impl in pm.impls("crm_qualify_leads", workspace):
        if override is not None and name == NAME:
            from . import crm_qualify_leads

            result = crm_qualify_leads(leads=leads, scores=scores, ctx=ctx, settings=override)
        else:
            result = pm.call_impl(name, impl, {"leads": leads, "scores": scores, "ctx": ctx}, workspace)
        for q in result or ():
            if not q.plugin:
                q.plugin = name
            if q.grade is not None:
                grades[q.index] = q.grade
            if q.stage is not None:
                wanted[q.index].append(q)

    out = []
    for i, lead in enumerate(leads):
        o = Outcome(lead, scores[i], details[i], grades[i] if scores[i] is not None else lead.grade, lead.stage)
        if stored_details is not None:
            o.stored_detail = stored_details[i]
        # As at intake: each requested move is validated from the stage the previous one left.
        for q in wanted[i]:
            target = Stage(q.stage)
            if target == o.stage:
                continue
            if target == Stage.CUSTOMER:
                o.refused.append(f"{q.plugin}: a lead becomes a customer by conversion (leads convert), not by qualification")
            elif not can_move(o.stage, target):
                o.refused.append(f"{q.plugin}: cannot move from {o.stage.value} to {target.value}")
            else:
                o.moves.append((o.stage, target, q.reason, q.plugin))
                o.stage = target
        out.append(o)
    return out


# --------------------------------------------------------------------------- writing


def _executemany(conn: sa.Connection, sql_qmark: str, rows: list[tuple[Any, ...]]) -> None:
    """One driver-level executemany (the fast path on both SQLite and psycopg)."""
    if not rows:
        return
    raw = conn.connection.driver_connection
    if is_postgres(conn):
        with raw.cursor() as cur:
            cur.executemany(sql_qmark.replace("?", "%s"), rows)
        return
    cur = raw.cursor()
    try:
        cur.executemany(sql_qmark, rows)
    finally:
        cur.close()


def _points_by_rule(detail: Mapping[str, Any] | None) -> dict[tuple[str, str], float]:
    out: dict[tuple[str, str], float] = {}
    for c in (detail or {}).get("contributions") or ():
        key = (c.get("plugin") or "", c.get("rule") or "")
        out[key] = out.get(key, 0.0) + (c.get("points") or 0.0)
    return out


def rule_changes(old: Mapping[str, Any] | None, new: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """What changed between two explanations: each rule whose points differ, with before and after."""
    before, after = _points_by_rule(old), _points_by_rule(new)
    return [
        {"plugin": plugin, "rule": rule, "from": before.get((plugin, rule)), "to": after.get((plugin, rule))}
        for plugin, rule in sorted(set(before) | set(after))
        if before.get((plugin, rule)) != after.get((plugin, rule))
    ]


def write_outcomes(conn: sa.Connection, workspace: str, outcomes: Sequence[Outcome], now: dt.datetime, stats: RecomputeStats) -> list[Event]:
    """Write changed rows (one executemany) and their events (one bulk insert); return the stage events."""
    updates: list[tuple[Any, ...]] = []
    events: list[tuple[Any, ...]] = []
    stage_events: list[Event] = []
    now_db = ts(now, conn)
    for o in outcomes:
        lead = o.lead
        stats.refused += len(o.refused)
        if o.score is None:
            continue
        stats.rescored += 1
        score_changed = lead.score is None or o.score != lead.score
        grade_changed = o.grade != lead.grade
        stage_changed = o.stage != lead.stage
        if not (score_changed or grade_changed or stage_changed) and same_detail(o.stored_detail, o.detail):
            continue
        # A stage move sets the status as `leads move` does: disqualified, or open again.
        status = ("disqualified" if o.stage == Stage.DISQUALIFIED else "open") if stage_changed else lead.status
        updates.append((o.score, o.grade, dumps(o.detail), o.stage.value, status, now_db, lead.id, workspace))
        if score_changed:
            stats.score_changed += 1
            d = o.detail or {}
            rulesets = d.get("rulesets") or {}
            # One version when this plugin is the only versioned scorer, else "plugin=version;…".
            label = rulesets[NAME] if set(rulesets) == {NAME} else ";".join(f"{p}={v}" for p, v in sorted(rulesets.items())) or None
            detail = {
                "score": o.score,
                "previous": lead.score,
                "contributions": d.get("contributions", []),
                "ruleset": label,
                "rulesets": rulesets,
                "changes": rule_changes(json.loads(o.stored_detail) if o.stored_detail else None, d),
            }
            events.append((workspace, lead.id, "scored", now_db, NAME, dumps(detail)))
        if grade_changed:
            stats.grade_changed += 1
            events.append((workspace, lead.id, "graded", now_db, NAME, dumps({"grade": o.grade, "previous": lead.grade})))
        if stage_changed:
            stats.stage_changed += 1
        for frm, to, reason, plugin in o.moves:
            detail = {"from": frm.value, "to": to.value, "reason": reason}
            events.append((workspace, lead.id, "stage_changed", now_db, plugin, dumps(detail)))
            stage_events.append(Event(type="stage_changed", at=now, plugin=plugin, detail=detail, lead_id=lead.id))
    _executemany(
        conn,
        "UPDATE leads SET score = ?, grade = ?, score_detail = ?, stage = ?, status = ?, updated_at = ? WHERE id = ? AND workspace = ?",
        updates,
    )
    if events:
        from corecrm.storage.schema import events as events_table

        bulk_insert(conn, events_table, EVENT_COLUMNS, events)
    stats.rows_written += len(updates)
    stats.events_written += len(events)
    return stage_events


# --------------------------------------------------------------------------- the command


def workspaces_with_leads(engine: sa.Engine) -> list[str]:
    with engine.connect() as conn:
        return [r[0] for r in conn.execute(sa.text("SELECT DISTINCT workspace FROM leads ORDER BY workspace"))]


def recompute(
    crm: Any,
    workspace: str,
    *,
    batch_size: int = 20000,
    now: dt.datetime | None = None,
    progress: Callable[[RecomputeStats], None] | None = None,
) -> RecomputeStats:
    """Rescore every stored lead of ``workspace`` with the current rules and write what changed."""
    t0 = time.perf_counter()
    now = now or crm.now()
    stats = RecomputeStats(workspace)
    # Batches allocate millions of short-lived acyclic objects; the cyclic GC
    # would rescan them over and over (~20% of the run). It is switched off
    # for the loop and restored after.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        _recompute_loop(crm, workspace, batch_size, now, stats, progress)
    finally:
        if gc_was_enabled:
            gc.enable()
    stats.seconds = time.perf_counter() - t0
    return stats


def _recompute_loop(
    crm: Any, workspace: str, batch_size: int, now: dt.datetime, stats: RecomputeStats, progress: Callable[[RecomputeStats], None] | None
) -> None:
    # One connection, one transaction per batch: read, score, write, commit.
    # (On SQLite every transaction takes the write lock up front, so a
    # separate reading connection would deadlock against the writer.)
    with crm.engine.connect() as conn:
        after = 0
        while True:
            leads, stored = read_lead_batch(conn, workspace, after, batch_size)
            if not leads:
                conn.rollback()
                break
            after = leads[-1].id
            stats.leads += len(leads)
            ids = [lead.id for lead in leads]
            ctx = HookContext(
                crm=crm,
                workspace=workspace,
                now=now,
                mode="recompute",
                events_loader=events_loader(conn, workspace, ids[0], ids[-1]),
                extra={"batch_ids": ids},
            )
            try:
                outcomes = score_batch(crm, workspace, leads, ctx, stored_details=stored)
                stage_events = write_outcomes(conn, workspace, outcomes, now, stats)
            except BaseException:
                conn.rollback()
                raise
            conn.commit()
            if stage_events:
                # Observers hear about committed stage moves, as after intake.
                crm.plugins.notify("crm_stage_changed", workspace=workspace, events=stage_events, ctx=ctx)
            if progress is not None:
                progress(stats)
