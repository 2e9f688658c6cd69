"""``corecrm score diff --rules NEW.toml``: what a ruleset change would do, before it is applied.

A dry run. Every stored lead is scored twice with the same clock, the same
history and the same other plugins: once with the rules in force, once with
the candidate rules. Comparing the two (rather than the candidate against
the stored score) isolates the effect of the rule change from time decay
since the last recompute; how many stored scores are stale anyway is
reported on the side. Nothing is written: the connection is rolled back.
"""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path
from typing import Any, Mapping

import attrs

from corecrm.context import HookContext
from corecrm.errors import ConfigError

from .recompute import NAME, events_loader, read_lead_batch, score_batch
from .rules import validate_ruleset

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


def load_rules_file(path: str | Path, workspace: str) -> dict[str, Any]:
    """Read candidate rules: a whole ``corecrm.toml``, or just the plugin's table.

    Accepted shapes: ``[plugins.scoring_basic]`` (plus an optional
    ``[workspaces.W.plugins.scoring_basic]`` override, merged key by key as the
    core does), or the plugin's keys at the top level (``[[rules]]``…).
    Errors name the file and the key path.
    """
    p = Path(path)
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror}", path=str(p)) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"invalid TOML: {exc}", path=str(p)) from None
    if "plugins" in data or "workspaces" in data:
        base = data.get("plugins", {}).get(NAME, {})
        over = data.get("workspaces", {}).get(workspace, {}).get("plugins", {}).get(NAME, {})
        prefix = f"plugins.{NAME}"
        table = dict(base)
        try:
            validate_ruleset(base, prefix)
            validate_ruleset(over, f"workspaces.{workspace}.plugins.{NAME}")
        except ConfigError as exc:
            raise ConfigError(str(exc), path=str(p)) from None
        table.update(over)
    else:
        table = dict(data)
        try:
            validate_ruleset(table, "")
        except ConfigError as exc:
            raise ConfigError(str(exc), path=str(p)) from None
    return table


def effective_override(current: Mapping[str, Any], candidate: Mapping[str, Any]) -> dict[str, Any]:
    """The candidate keys over the settings in force (keys not in the file stay as they are)."""
    merged = {k: v for k, v in current.items()}
    merged.update(candidate)
    return merged


@attrs.define(slots=True)
class DiffExample:
    lead_id: int
    name: str
    score: float | None
    new_score: float | None
    grade: str | None
    new_grade: str | None
    stage: str
    new_stage: str
    changed_rules: list[str]

    def to_json(self) -> dict[str, Any]:
        return attrs.asdict(self)


@attrs.define(slots=True)
class DiffResult:
    workspace: str
    ruleset: str | None
    new_ruleset: str | None
    leads: int = 0
    score_changed: int = 0
    score_up: int = 0
    score_down: int = 0
    grade_changed: int = 0
    stage_changed: int = 0
    stale_stored: int = 0  #: stored scores that differ from the current rules now (decay, edits not recomputed)
    grade_moves: dict[str, int] = attrs.field(factory=dict)  #: "B->A": count
    stage_moves: dict[str, int] = attrs.field(factory=dict)
    examples: list[DiffExample] = attrs.field(factory=list)

    def to_json(self) -> dict[str, Any]:
        d = attrs.asdict(self)
        d["examples"] = [e.to_json() for e in self.examples]
        return d


def _rule_points(detail: Mapping[str, Any] | None) -> dict[str, float]:
    out: dict[str, float] = {}
    for c in (detail or {}).get("contributions", []):
        key = c["rule"] if c.get("plugin") == NAME else f"{c.get('plugin')}:{c['rule']}"
        out[key] = out.get(key, 0.0) + c["points"]
    return out


def diff(
    crm: Any,
    workspace: str,
    candidate: Mapping[str, Any],
    *,
    batch_size: int = 20000,
    examples: int = 10,
    now: dt.datetime | None = None,
) -> DiffResult:
    """Score every stored lead with the rules in force and with ``candidate``; count what would change."""
    from . import engine_for

    now = now or crm.now()
    current = dict(crm.plugins.settings(NAME, workspace))
    new = effective_override(current, candidate)
    res = DiffResult(
        workspace,
        engine_for(current).rs.version if current.get("rules") else None,
        engine_for(new).rs.version if new.get("rules") else None,
    )
    picked: dict[str, list[DiffExample]] = {"stage": [], "grade": [], "score": []}
    with crm.engine.connect() as conn:
        after = 0
        try:
            while True:
                leads, _stored = read_lead_batch(conn, workspace, after, batch_size)
                if not leads:
                    break
                after = leads[-1].id
                ids = [lead.id for lead in leads]
                loader = events_loader(conn, workspace, ids[0], ids[-1])
                ctx = HookContext(crm=crm, workspace=workspace, now=now, mode="simulate", events_loader=loader, extra={"batch_ids": ids})
                before = score_batch(crm, workspace, leads, ctx, override=current)
                after_ = score_batch(crm, workspace, leads, ctx, override=new)
                for lead, o, n in zip(leads, before, after_):
                    res.leads += 1
                    if o.score is not None and lead.score != o.score:
                        res.stale_stored += 1
                    kinds = []
                    if o.score != n.score:
                        res.score_changed += 1
                        if (n.score or 0) > (o.score or 0):
                            res.score_up += 1
                        else:
                            res.score_down += 1
                        kinds.append("score")
                    if o.grade != n.grade:
                        res.grade_changed += 1
                        key = f"{o.grade or '-'}->{n.grade or '-'}"
                        res.grade_moves[key] = res.grade_moves.get(key, 0) + 1
                        kinds.append("grade")
                    if o.stage != n.stage:
                        res.stage_changed += 1
                        key = f"{o.stage.value}->{n.stage.value}"
                        res.stage_moves[key] = res.stage_moves.get(key, 0) + 1
                        kinds.append("stage")
                    if not kinds or len(picked[kinds[-1]]) >= examples:
                        continue
                    rp_old, rp_new = _rule_points(o.detail), _rule_points(n.detail)
                    changed = sorted(r for r in set(rp_old) | set(rp_new) if rp_old.get(r) != rp_new.get(r))
                    # Filed under the most telling change: stage, then grade, then score.
                    picked[kinds[-1]].append(
                        DiffExample(
                            lead.id,
                            lead.full_name or lead.email or lead.company or "",
                            o.score,
                            n.score,
                            o.grade,
                            n.grade,
                            o.stage.value,
                            n.stage.value,
                            changed,
                        )
                    )
        finally:
            conn.rollback()  # a dry run: nothing is ever committed
    res.examples = (picked["stage"] + picked["grade"] + picked["score"])[:examples]
    res.grade_moves = dict(sorted(res.grade_moves.items(), key=lambda kv: -kv[1]))
    res.stage_moves = dict(sorted(res.stage_moves.items(), key=lambda kv: -kv[1]))
    return res

