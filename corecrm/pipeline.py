"""The intake pipeline: verify → screen → match → enrich → score → qualify → route → persist.

One code path serves a single web-form lead and a million-row import: the
decision hooks always receive a batch. Each plugin's implementation is called
once per batch. If it raises, the core calls it again lead by lead to find the
lead(s) that make it fail, quarantines those with the error, the plugin's name
and the step, keeps what the plugin returned for the others, and goes on.

Everything a step changes is recorded in the lead's intake history (stored
with the lead in one bulk insert); stage changes, merges and assignments that
analytics and observers need are also written as ``events`` rows.
"""

from __future__ import annotations

import datetime as dt
import logging
import operator
import traceback
from typing import TYPE_CHECKING, Any, Iterable, Sequence

import attrs
import sqlalchemy as sa

from corecrm.context import HookContext, Mode
from corecrm.errors import TransitionError
from corecrm.lifecycle import check_transition
from corecrm.models import WRITABLE_FIELDS, Event, Lead
from corecrm.records import Assignment, FieldUpdate, Finding, MatchCandidate, Qualification, ScoreContribution, ScreenVerdict
from corecrm.rows import lead_to_document
from corecrm.storage import schema
from corecrm.storage.db import allocate_ids, bulk_insert, driver, dumps, insert_sql, is_postgres, param_mark, ts

if TYPE_CHECKING:
    from corecrm.app import Crm

log = logging.getLogger("corecrm.pipeline")

#: The decision steps in order: (step name, hook name).
STEPS: tuple[tuple[str, str], ...] = (
    ("verify", "crm_verify_leads"),
    ("screen", "crm_screen_leads"),
    ("match", "crm_match_leads"),
    ("enrich", "crm_enrich_leads"),
    ("score", "crm_score_leads"),
    ("qualify", "crm_qualify_leads"),
    ("route", "crm_route_leads"),
)

_VERDICT_RANK = {"accept": 0, "review": 1, "reject": 2}

#: Lead attributes stored as they are, fetched in one ``attrgetter`` call per lead.
PLAIN_COLUMNS: tuple[str, ...] = (
    "first_name", "last_name", "email", "phone", "company", "title", "country", "region", "city", "postal_code",
    "source", "campaign", "language", "timezone", "score", "grade", "owner", "team", "capture_id", "origin_key",
)  # fmt: skip
_plain = operator.attrgetter(*PLAIN_COLUMNS)

#: Columns of ``leads`` written by the bulk insert, in binding order.
INSERT_COLUMNS: tuple[str, ...] = (
    "id", "workspace", "stage", "status", *PLAIN_COLUMNS, "email_norm",
    "interests", "attributes", "consent", "score_detail", "intake", "created_at", "updated_at", "assigned_at",
)  # fmt: skip

EVENT_COLUMNS: tuple[str, ...] = ("workspace", "lead_id", "deal_id", "type", "at", "plugin", "detail")
NOTE_COLUMNS: tuple[str, ...] = ("workspace", "lead_id", "type", "note", "done", "at")


@attrs.define(slots=True, eq=False)
class Item:
    """A lead travelling through the pipeline with its bookkeeping."""

    lead: Lead
    capture_id: int | None
    item_index: int | None
    history: list[dict[str, Any]] = attrs.field(factory=list)
    stage_events: list[tuple[str, str, str, str | None]] = attrs.field(factory=list)  # from, to, reason, plugin
    merge_into: int | None = None  #: stored lead id
    merge_into_item: Item | None = None  #: earlier lead of the same batch
    contributions: list[ScoreContribution] = attrs.field(factory=list)
    assigned_by: str | None = None
    #: (explanation, its JSON) shared by every lead with the same contributions (see _finish_scores)
    explained: tuple[dict[str, Any], str | None] | None = None
    out: str | None = None  #: None while alive; "quarantined" | "rejected" | "review"
    error: tuple[str, str | None, str] | None = None  #: step, plugin, error


@attrs.define(slots=True)
class BatchResult:
    """What happened to a batch. ``lead_ids`` holds new and merged-into leads in input order."""

    created: list[int] = attrs.field(factory=list)
    merged: list[int] = attrs.field(factory=list)
    quarantined: list[int] = attrs.field(factory=list)  #: quarantine ids
    rejected: int = 0
    existing: int = 0  #: already stored (same origin key): nothing done
    lead_ids: list[int | None] = attrs.field(factory=list)


class Pipeline:
    """Runs the decision steps for one workspace and persists the outcome."""

    def __init__(self, crm: Crm, workspace: str, *, mode: Mode = "intake", now: dt.datetime | None = None) -> None:
        self.crm = crm
        self.workspace = workspace
        self.mode = mode
        self.now = now or crm.now()
        self._now_iso = self.now.isoformat()
        self.ctx = HookContext(crm=crm, workspace=workspace, now=self.now, mode=mode, events_loader=crm.load_events)
        #: contributions -> (score, explanation, its JSON, history entries); see _finish_scores
        self._score_memo: dict[Any, tuple[float, dict[str, Any], str | None, list[dict[str, Any]]]] = {}
        self._assign_memo: dict[tuple[Any, ...], dict[str, Any]] = {}

    # ------------------------------------------------------------------ decision steps
    def decide(self, items: list[Item], *, skip: Iterable[str] = ()) -> None:
        """Run every decision step over the live items, in place."""
        skipped = set(skip)
        impls_of = self.crm.plugins.impls
        any_stored = any(it.lead.id is not None for it in items)
        for step, hook in STEPS:
            if step in skipped:
                continue
            impls = impls_of(hook, self.workspace)
            if not impls:
                continue
            live = [it for it in items if it.out is None and it.merge_into is None and it.merge_into_item is None]
            if not live:
                return
            # Stored leads in the batch (re-scoring, retry): ctx.events_for loads their history in one query.
            self.ctx.extra["batch_ids"] = [it.lead.id for it in live if it.lead.id is not None] if any_stored else []
            for plugin, impl in impls:
                live = [it for it in live if it.out is None]
                if not live:
                    break
                results = self._call(step, hook, plugin, impl, live)
                self._apply(step, plugin, live, results)
            if step == "score":
                self._finish_scores([it for it in live if it.out is None])

    def _kwargs(self, hook: str, leads: list[Lead]) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"leads": leads, "ctx": self.ctx}
        if hook == "crm_qualify_leads":
            kwargs["scores"] = [lead.score for lead in leads]
        return kwargs

    def _call(self, step: str, hook: str, plugin: str, impl: Any, live: list[Item]) -> list[tuple[int, Any]]:
        """Call one implementation on the batch; on failure, isolate the failing leads.

        Returns ``(position in live, record)`` pairs.
        """
        leads = [it.lead for it in live]
        try:
            result = self.crm.plugins.call_impl(plugin, impl, self._kwargs(hook, leads), self.workspace)
            out = []
            append = out.append
            for rec in _as_list(result):  # stamp each record with its plugin (records all have the field)
                if not rec.plugin:
                    rec.plugin = plugin
                append((rec.index, rec))
            return out
        except Exception as batch_exc:
            if len(live) == 1:
                self._quarantine(live[0], step, plugin, batch_exc)
                return []
            log.info("plugin %s failed in %s on a batch of %d; isolating: %s", plugin, hook, len(live), batch_exc)
        out: list[tuple[int, Any]] = []
        for pos, it in enumerate(live):
            try:
                result = self.crm.plugins.call_impl(plugin, impl, self._kwargs(hook, [it.lead]), self.workspace)
            except Exception as exc:
                self._quarantine(it, step, plugin, exc)
                continue
            for rec in _as_list(result):
                rec.index = pos
                out.append((pos, _stamp(rec, plugin)))
        return out

    def _quarantine(self, it: Item, step: str, plugin: str | None, exc: BaseException | str) -> None:
        msg = exc if isinstance(exc, str) else f"{type(exc).__name__}: {exc}"
        if not isinstance(exc, str):
            log.debug("quarantined at %s by %s:\n%s", step, plugin, "".join(traceback.format_exception(exc)))
        it.out = "quarantined"
        it.error = (step, plugin, msg)

    def _hist(self, it: Item, type_: str, plugin: str | None, detail: dict[str, Any]) -> None:
        # No "at": an intake step happens when the lead is stored (its created_at);
        # leaving the time out saves a sixth of every stored row.
        it.history.append({"type": type_, "plugin": plugin, "detail": detail})

    def _apply(self, step: str, plugin: str, live: list[Item], results: list[tuple[int, Any]]) -> None:
        n = len(live)
        if step in ("verify", "enrich"):
            for pos, rec in results:
                if not 0 <= pos < n:
                    continue
                it = live[pos]
                if isinstance(rec, FieldUpdate):
                    self._set_field(it, rec, step)
                elif isinstance(rec, Finding):
                    self._hist(it, "finding", plugin, {"code": rec.code, "message": rec.message, "severity": rec.severity, "field": rec.field, "suggestion": rec.suggestion, "step": step})
        elif step == "screen":
            worst: dict[int, ScreenVerdict] = {}
            for pos, rec in results:
                if isinstance(rec, ScreenVerdict) and 0 <= pos < n:
                    prev = worst.get(pos)
                    if prev is None or _VERDICT_RANK[rec.verdict] > _VERDICT_RANK[prev.verdict]:
                        worst[pos] = rec
            for pos, rec in worst.items():
                it = live[pos]
                self._hist(it, "screened", plugin, {"verdict": rec.verdict, "reasons": rec.reasons})
                if rec.verdict == "review":
                    it.out, it.error = "review", ("screen", plugin, "review: " + "; ".join(rec.reasons))
                elif rec.verdict == "reject":
                    it.out, it.error = "rejected", ("screen", plugin, "rejected: " + "; ".join(rec.reasons))
        elif step == "match":
            best: dict[int, MatchCandidate] = {}
            for pos, rec in results:
                if isinstance(rec, MatchCandidate) and 0 <= pos < n:
                    if rec.action == "flag":
                        self._hist(live[pos], "possible_duplicate", plugin, {"lead_id": rec.lead_id, "batch_index": rec.batch_index, "score": rec.score, "rule": rec.rule, "reasons": rec.reasons})
                        continue
                    prev = best.get(pos)
                    if prev is None or rec.score > prev.score:
                        best[pos] = rec
            for pos, rec in best.items():
                it = live[pos]
                if rec.lead_id is not None:
                    it.merge_into = rec.lead_id
                elif rec.batch_index is not None and 0 <= rec.batch_index < n and rec.batch_index != pos:
                    it.merge_into_item = live[rec.batch_index]
                else:
                    continue
                self._hist(it, "matched", plugin, {"lead_id": rec.lead_id, "score": rec.score, "rule": rec.rule, "reasons": rec.reasons})
        elif step == "score":
            for pos, rec in results:
                if isinstance(rec, ScoreContribution) and 0 <= pos < n:
                    live[pos].contributions.append(rec)
        elif step == "qualify":
            for pos, rec in results:
                if isinstance(rec, Qualification) and 0 <= pos < n:
                    self._qualify(live[pos], rec)
        elif step == "route":
            chosen: dict[int, Assignment] = {}
            for pos, rec in results:
                if isinstance(rec, Assignment) and 0 <= pos < n:
                    if pos in chosen:
                        self._hist(live[pos], "route_alternative", plugin, _assignment_detail(rec))
                    else:
                        chosen[pos] = rec
            for pos, rec in chosen.items():
                it = live[pos]
                if it.lead.owner == rec.owner and it.lead.team == rec.team and it.lead.assigned_at is not None:
                    continue  # already there (sticky, recompute)
                it.lead.owner = rec.owner
                it.lead.team = rec.team or it.lead.team
                it.lead.assigned_at = self.now if (rec.owner or rec.team or rec.queue) else None
                it.history.append(self._assigned_entry(plugin, rec))
                it.assigned_by = plugin

    def _assigned_entry(self, plugin: str, rec: Assignment) -> dict[str, Any]:
        """The history entry of an assignment; identical ones (a team's round robin, a queue) are built once per batch."""
        if rec.explanation:  # candidates and skips: particular to this lead
            return {"type": "assigned", "plugin": plugin, "detail": _assignment_detail(rec)}
        key = (plugin, rec.owner, rec.team, rec.queue, rec.rule, rec.reason)
        entry = self._assign_memo.get(key)
        if entry is None:
            entry = self._assign_memo[key] = {"type": "assigned", "plugin": plugin, "detail": _assignment_detail(rec)}
        return entry

    def _set_field(self, it: Item, rec: FieldUpdate, step: str) -> None:
        field = rec.field
        lead = it.lead
        if field.startswith("attributes."):
            key = field.split(".", 1)[1]
            old = lead.attributes.get(key)
            lead.attributes[key] = rec.value
        elif field in WRITABLE_FIELDS:
            old = getattr(lead, field)
            setattr(lead, field, rec.value)
        else:
            self._hist(it, "finding", rec.plugin, {"code": "invalid_field_update", "message": f"field {field!r} cannot be set by plugins", "severity": "error", "field": field, "step": step})
            return
        if old != rec.value:
            self._hist(it, "field_updated", rec.plugin, {"field": field, "old": old, "new": rec.value, "reason": rec.reason, "step": step})

    def _finish_scores(self, live: list[Item]) -> None:
        """Sum contributions exactly; keep them with the score, and a per-plugin subtotal in the history.

        Rule-based scoring gives many leads the very same contributions, so each
        distinct set is summed and explained once per batch and shared: the
        explanation dict, its JSON text and the ``scored`` history entries.
        """
        memo = self._score_memo
        for it in live:
            contribs = it.contributions
            if not contribs:
                continue
            try:
                if len(contribs) == 1:
                    c = contribs[0]
                    key: Any = (c.rule, c.points, c.reason, c.group, c.ruleset, c.plugin)
                else:
                    key = tuple([(c.rule, c.points, c.reason, c.group, c.ruleset, c.plugin) for c in contribs])
                done = memo.get(key)
            except TypeError:  # an unhashable value in a contribution
                key, done = None, None
            if done is None:
                done = self._explain_score(contribs)
                if key is not None:
                    memo[key] = done
            total, detail, encoded, entries = done
            it.lead.score = total
            it.lead.score_detail = detail
            it.explained = (detail, encoded)
            it.history.extend(entries)

    def _explain_score(self, contribs: list[ScoreContribution]) -> tuple[float, dict[str, Any], str | None, list[dict[str, Any]]]:
        rows = []
        subtotal: dict[str, float] = {}
        rulesets: dict[str, str] = {}
        total = 0.0
        for c in contribs:
            total += c.points
            subtotal[c.plugin] = subtotal.get(c.plugin, 0.0) + c.points
            rows.append({"rule": c.rule, "points": c.points, "reason": c.reason, "group": c.group, "plugin": c.plugin})
            if c.ruleset:
                rulesets[c.plugin] = c.ruleset
        total = _clean_number(total)
        detail = {"score": total, "rulesets": rulesets, "contributions": rows}
        entries = [
            {"type": "scored", "plugin": plugin, "detail": {"points": _clean_number(points), "ruleset": rulesets.get(plugin)}}
            for plugin, points in subtotal.items()
        ]
        return total, detail, dumps(detail), entries

    def _qualify(self, it: Item, rec: Qualification) -> None:
        lead = it.lead
        if rec.grade is not None and rec.grade != lead.grade:
            self._hist(it, "graded", rec.plugin, {"grade": rec.grade, "previous": lead.grade, "reason": rec.reason})
            lead.grade = rec.grade
        if rec.stage is not None:
            try:
                target = check_transition(lead.stage, rec.stage, lead_id=lead.id)
            except TransitionError as exc:
                self._hist(it, "stage_refused", rec.plugin, {"to": rec.stage, "reason": rec.reason, "error": str(exc)})
                return
            if target != lead.stage:
                it.stage_events.append((lead.stage.value, target.value, rec.reason, rec.plugin))
                lead.stage = target

    # ------------------------------------------------------------------ persistence
    def persist(self, conn: sa.Connection, items: list[Item], *, known_new: bool = False) -> BatchResult:
        """Write the outcome of a decided batch in the caller's transaction.

        ``known_new`` skips the origin-key look-up when the caller knows none
        of these leads can be stored yet (they come from captures stored just now).
        """
        res = BatchResult()
        ws = self.workspace
        now = self.now
        alive = [it for it in items if it.out is None and it.merge_into is None and it.merge_into_item is None and it.lead.id is None]
        # Idempotency: a lead whose origin key is already stored is not inserted again.
        keys = [] if known_new else [it.lead.origin_key for it in alive if it.lead.origin_key]
        stored = _stored_origin_keys(conn, ws, keys)
        seen: set[str] = set()
        new: list[Item] = []
        for it in alive:
            key = it.lead.origin_key
            if key and (key in stored or key in seen):
                it.lead.id = stored.get(key)
                it.out = "existing"
                res.existing += 1
                continue
            if key:
                seen.add(key)
            new.append(it)
        # A single lead on SQLite (a web form, an e-mail) takes its id from the
        # insert itself: one statement fewer on the latency path.
        single = len(new) == 1 and not is_postgres(conn)
        ids: list[Any] = [None] if single else allocate_ids(conn, schema.leads, len(new))
        rows = []
        t = ts(now, conn)
        plain = _plain
        for it, lead_id in zip(new, ids):
            lead = it.lead
            lead.id = lead_id
            lead.workspace = ws
            lead.created_at = lead.updated_at = now
            if it.capture_id is not None:
                lead.capture_id = it.capture_id
            email = lead.email
            rows.append(
                (lead_id, ws, lead.stage.value, lead.status)
                + plain(lead)
                + (email.strip().lower() if email else None, dumps(lead.interests) if lead.interests else None,
                   dumps(lead.attributes) if lead.attributes else None, dumps(lead.consent) if lead.consent else None,
                   _score_json(it), dumps(it.history) if it.history else None,
                   t, t, t if lead.assigned_at is now else ts(lead.assigned_at, conn))
            )  # fmt: skip
        if single:
            ids[0] = new[0].lead.id = driver(conn).execute(insert_sql(schema.leads, INSERT_COLUMNS, conn), rows[0]).lastrowid
        else:
            bulk_insert(conn, schema.leads, INSERT_COLUMNS, rows)
        events: list[tuple[Any, ...]] = []
        for it in new:
            if it.stage_events:
                self._event_rows(t, it, events)
        # The free text that came with a capture (an e-mail body, a form's
        # message) is kept as the lead's first note: one executemany per batch.
        notes = [(ws, it.lead.id, "note", it.lead.note, True, t) for it in new if it.lead.note]
        if notes:
            bulk_insert(conn, schema.activities, NOTE_COLUMNS, notes)
        res.created = ids
        # Merges into stored leads and into earlier leads of this batch.
        for it in items:
            if it.out is None and (it.merge_into is not None or it.merge_into_item is not None):
                target = it.merge_into if it.merge_into is not None else (it.merge_into_item.lead.id if it.merge_into_item else None)
                if target is None:
                    # The earlier lead of this batch it duplicates was quarantined or
                    # rejected: hold this one too rather than drop it; retry decides again.
                    self._quarantine(it, "match", _last_plugin(it.history, "matched"), "the lead it duplicates in the same batch was not stored; retry after that one")
                    continue
                if self.crm.merge_into(conn, target, it.lead, workspace=ws, plugin=_last_plugin(it.history, "matched"), history=self._timed(it.history), now=now):
                    it.lead.id = target
                    res.merged.append(target)
                else:
                    self._quarantine(it, "match", None, f"merge target lead {target} does not exist")
        # Quarantine and rejects.
        q_rows = []
        for it in items:
            if it.out in ("quarantined", "review", "rejected"):
                step, plugin, error = it.error or ("?", None, "?")
                status = {"quarantined": "open", "review": "review", "rejected": "rejected"}[it.out]
                q_rows.append({
                    "workspace": ws, "capture_id": it.capture_id, "item_index": it.item_index,
                    "lead": {**lead_to_document(it.lead), "origin_key": it.lead.origin_key, "history": self._timed(it.history)},
                    "step": step, "plugin": plugin, "error": error[:4000], "status": status, "created_at": now,
                })  # fmt: skip
                if it.out == "rejected":
                    res.rejected += 1
        if q_rows:
            q_ids = conn.execute(schema.quarantine.insert().returning(schema.quarantine.c.id), q_rows).scalars().all()
            res.quarantined.extend(q_ids)
        if events:
            bulk_insert(conn, schema.events, EVENT_COLUMNS, events)
        res.lead_ids = [it.lead.id if it.out in (None, "existing") else None for it in items]
        return res

    def _timed(self, history: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """History entries with their time, for where it leaves the lead row (a quarantined lead, a merge)."""
        return [h if "at" in h else {**h, "at": self._now_iso} for h in history]

    def _event_rows(self, t: Any, it: Item, events: list[tuple[Any, ...]]) -> None:
        """``events`` rows for a lead being inserted: its intake stage changes (funnels need them as rows).

        Everything else the intake did (including the assignment, whose time is
        ``leads.assigned_at``) is in the lead's intake history.
        """
        for frm, to, reason, plugin in it.stage_events:
            events.append((self.workspace, it.lead.id, None, "stage_changed", t, plugin, dumps({"from": frm, "to": to, "reason": reason})))

    def observe(self, items: list[Item], res: BatchResult) -> None:
        """Tell observers what was committed (failures are logged, never raised)."""
        ws = self.workspace
        pm = self.crm.plugins
        wanted = {h for h in ("crm_leads_captured", "crm_stage_changed", "crm_leads_assigned", "crm_leads_quarantined") if pm.impls(h, ws)}
        if not wanted:
            return  # nobody listens: build no events
        created = set(res.created)
        captured = [Event("captured", self.now, None, {"capture_id": it.capture_id, "source": it.lead.source}, lead_id=it.lead.id) for it in items if it.lead.id in created and it.out is None]
        staged = [
            Event("stage_changed", self.now, p, {"from": f, "to": t, "reason": r}, lead_id=it.lead.id)
            for it in items if it.out is None and it.lead.id is not None
            for f, t, r, p in it.stage_events
        ]  # fmt: skip
        assigned = [
            Event("assigned", self.now, it.assigned_by, {"owner": it.lead.owner, "team": it.lead.team}, lead_id=it.lead.id)
            for it in items if it.out is None and it.lead.id is not None and it.assigned_by
        ]  # fmt: skip
        quarantined = [Event("quarantined", self.now, (it.error or (None, None, None))[1], {"step": (it.error or ("",))[0], "error": (it.error or ("", "", ""))[2], "capture_id": it.capture_id}) for it in items if it.out in ("quarantined", "review")]
        if captured:
            pm.notify("crm_leads_captured", workspace=ws, events=captured, ctx=self.ctx)
        if staged:
            pm.notify("crm_stage_changed", workspace=ws, events=staged, ctx=self.ctx)
        if assigned:
            pm.notify("crm_leads_assigned", workspace=ws, events=assigned, ctx=self.ctx)
        if quarantined:
            pm.notify("crm_leads_quarantined", workspace=ws, events=quarantined, ctx=self.ctx)


def _as_list(result: Any) -> list[Any]:
    if result is None:
        return []
    if isinstance(result, list):
        return result
    return list(result)


def _stamp(rec: Any, plugin: str) -> Any:
    if not getattr(rec, "plugin", None):
        rec.plugin = plugin
    return rec


def _score_json(it: Item) -> str | None:
    """The lead's explanation as JSON: encoded once per batch when it is the shared one (a later hook left it alone)."""
    detail = it.lead.score_detail
    if it.explained is not None and it.explained[0] is detail:
        return it.explained[1]
    return dumps(detail)


def _assignment_detail(rec: Assignment) -> dict[str, Any]:
    """The assignment as stored in the history (empty parts left out: one row per lead adds up)."""
    d = {"owner": rec.owner, "team": rec.team, "queue": rec.queue, "rule": rec.rule, "reason": rec.reason, "explanation": rec.explanation}
    return {k: v for k, v in d.items() if v}


def _last_plugin(history: list[dict[str, Any]], type_: str) -> str | None:
    for h in reversed(history):
        if h["type"] == type_:
            return h["plugin"]
    return None


def _clean_number(x: float) -> float:
    """Sums of float points: drop binary noise (0.1+0.2) so totals print as typed."""
    r = round(x, 9)
    return float(int(r)) if r == int(r) else r


def _stored_origin_keys(conn: sa.Connection, ws: str, keys: Sequence[str]) -> dict[str, int]:
    """Which origin keys are already stored (driver-level SQL: this runs for every batch)."""
    stored: dict[str, int] = {}
    mark = param_mark(conn)
    dbapi = driver(conn)
    for chunk in _chunks(keys, 500):
        sql = f"SELECT origin_key, id FROM leads WHERE workspace = {mark} AND origin_key IN ({', '.join(mark for _ in chunk)})"
        stored.update(dbapi.execute(sql, (ws, *chunk)).fetchall())
    return stored


def _chunks(seq: Sequence[Any], n: int) -> Iterable[Sequence[Any]]:
    for i in range(0, len(seq), n):
        yield seq[i : i + n]


def make_items(leads: Sequence[Lead], capture_id: int | None, start: int = 0) -> list[Item]:
    return [Item(lead, capture_id, start + i) for i, lead in enumerate(leads)]

