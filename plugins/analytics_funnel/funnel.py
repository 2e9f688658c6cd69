"""Funnel report: how many leads captured in a period reached each lifecycle stage.

Computed in SQL from ``leads`` and the ``stage_changed`` events: one query
counts, per group, the leads by the furthest main-line stage they ever
reached; a second one takes the median time spent in each stage with window
functions. Python only turns the few result rows into rates.

Definitions (see ``docs/plugins/analytics_funnel.md``):

* the cohort is the leads *captured* in ``[from, to)`` (merged leads left out),
  followed up to now;
* a lead "reached" a stage if it ever was in that stage or any later one on
  the main line (a hot lead that skipped ``mql`` still passed it);
* step rate = reached(k) / reached(k−1); overall = reached(k) / reached(first);
* time in stage = from entering a stage to the next stage change, for stays
  that have ended; the median is taken per stage (and group).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Mapping, Sequence

import sqlalchemy as sa

from corecrm.lifecycle import MAIN_LINE
from corecrm.records import ReportTable
from corecrm_plugins.analytics_funnel import common as c
from corecrm_plugins.analytics_funnel import svg

DIMENSIONS = ("source", "campaign", "team", "owner", "workspace", "month")
ALL = "all"


def _group_sql(conn: sa.Connection, by: str | None) -> str:
    if by is None:
        return "'all'"
    if by == "month":
        return c.month_of_ts(conn, "l.created_at")
    return f"l.{by}"


def _rank_case(column: str) -> str:
    whens = " ".join(f"WHEN '{s.value}' THEN {i}" for i, s in enumerate(MAIN_LINE))
    return f"(CASE {column} {whens} END)"


def _cohort_sql(conn: sa.Connection, by: str | None, ws_in: str, start: Any, end: Any) -> str:
    where = [f"l.workspace IN ({ws_in})", "l.merged_into IS NULL"]
    if start is not None:
        where.append("l.created_at >= :start")
    if end is not None:
        where.append("l.created_at < :end")
    return f"SELECT l.id AS id, {_group_sql(conn, by)} AS grp, l.stage AS stage FROM leads l WHERE {' AND '.join(where)}"


def reached_counts(conn: sa.Connection, workspaces: Sequence[str], by: str | None, start: Any, end: Any) -> dict[Any, dict[int, int]]:
    """``{group: {furthest rank: leads}}``; rank -1 = never on the main line.

    One pass over the cohort's leads joined to their ``stage_changed`` events
    (the ``(workspace, lead_id)`` index), grouped by lead: the furthest stage
    is the higher of the events' furthest ``to`` and the current stage.
    """
    ws_in, binds = c.in_list("ws", workspaces)
    binds.update(start=c.bind_ts(conn, start), end=c.bind_ts(conn, end))
    to_stage = c.json_text(conn, "e.detail", "to")
    where = [f"l.workspace IN ({ws_in})", "l.merged_into IS NULL"]
    if start is not None:
        where.append("l.created_at >= :start")
    if end is not None:
        where.append("l.created_at < :end")
    grp = _group_sql(conn, by)
    sql = f"""
    WITH per_lead AS (
        SELECT l.id AS id, {grp} AS grp, COALESCE({_rank_case('l.stage')}, -1) AS now_rank,
               COALESCE(MAX({_rank_case(to_stage)}), -1) AS event_rank
        FROM leads l LEFT JOIN events e ON e.workspace = l.workspace AND e.lead_id = l.id AND e.type = 'stage_changed'
        WHERE {' AND '.join(where)}
        GROUP BY l.id, l.stage{f", {grp}" if by else ""}
    )
    SELECT grp, CASE WHEN event_rank > now_rank THEN event_rank ELSE now_rank END AS top, COUNT(*) AS n
    FROM per_lead
    GROUP BY 1, 2
    """
    out: dict[Any, dict[int, int]] = defaultdict(dict)
    for grp_value, top, n in conn.execute(sa.text(sql), binds):
        out[grp_value][int(top)] = int(n)
    return dict(out)


TOTAL = "(total)"


def median_days_in_stage(conn: sa.Connection, workspaces: Sequence[str], by: str | None, start: Any, end: Any) -> dict[tuple[Any, str], float]:
    """``{(group, stage): median days}`` over completed stays of the cohort's leads.

    With a grouping, the medians of all groups together come back in the same
    statement under the group ``(total)``.
    """
    ws_in, binds = c.in_list("ws", workspaces)
    binds.update(start=c.bind_ts(conn, start), end=c.bind_ts(conn, end))
    to_stage = c.json_text(conn, "e.detail", "to")
    sql = f"""
    WITH cohort AS ({_cohort_sql(conn, by, ws_in, start, end)}),
    spans AS (
        SELECT ch.grp AS grp, {to_stage} AS stage, e.at AS at,
               LEAD(e.at) OVER (PARTITION BY e.lead_id ORDER BY e.at, e.id) AS next_at
        FROM events e JOIN cohort ch ON ch.id = e.lead_id
        WHERE e.workspace IN ({ws_in}) AND e.type = 'stage_changed'
    ),
    stays0 AS (
        SELECT grp, stage, {c.days_between(conn, 'next_at', 'at')} AS days FROM spans WHERE next_at IS NOT NULL
    ),
    stays AS (
        SELECT grp, stage, days FROM stays0{f" UNION ALL SELECT '{TOTAL}', stage, days FROM stays0" if by else ""}
    ),
    ranked AS (
        SELECT grp, stage, days,
               ROW_NUMBER() OVER (PARTITION BY grp, stage ORDER BY days) - 1 AS rn,
               COUNT(*) OVER (PARTITION BY grp, stage) AS n
        FROM stays
    )
    SELECT grp, stage, AVG(days) FROM ranked
    WHERE rn = (n - 1) / 2 OR rn = n / 2
    GROUP BY grp, stage
    """
    return {(grp, stage): float(days) for grp, stage, days in conn.execute(sa.text(sql), binds)}


def run(crm: Any, workspace: str | Sequence[str], params: Mapping[str, Any] | None = None) -> ReportTable:
    params = params or {}
    settings = c.plugin_settings(crm, workspace)
    workspaces = c.workspaces_of(workspace)
    start, end = c.report_period(params)
    by = c.group_by(params, DIMENSIONS)
    stages = list(settings["funnel_stages"])
    order = [s.value for s in MAIN_LINE]
    ranks = [order.index(s) for s in stages]

    with crm.engine.connect() as conn:
        counts = reached_counts(conn, workspaces, by, start, end)
        medians = median_days_in_stage(conn, workspaces, by, start, end)
    total_key = ALL if by is None else TOTAL
    overall_medians = {(ALL, s): d for (g, s), d in medians.items() if g == total_key}

    def stage_rows(top_counts: Mapping[int, int], med: Mapping[str, float]) -> tuple[int, list[dict[str, Any]]]:
        captured = sum(top_counts.values())
        reached = [sum(n for r, n in top_counts.items() if r >= rank) for rank in ranks]
        out = []
        for i, stage in enumerate(stages):
            out.append(
                {
                    "stage": stage,
                    "reached": reached[i],
                    "step_rate": c.ratio(reached[i], reached[i - 1]) if i else c.ratio(reached[0], captured),
                    "overall_rate": c.ratio(reached[i], reached[0]),
                    "median_days": med.get(stage),
                }
            )
        return captured, out

    groups: dict[str, Any] = {}
    for grp in sorted(counts, key=lambda g: (g is None, str(g))):
        med = {s: d for (g, s), d in medians.items() if g == grp}
        captured, rows = stage_rows(counts[grp], med)
        groups[c.label(grp)] = {"captured": captured, "stages": rows}
    total_counts: dict[int, int] = defaultdict(int)
    for per in counts.values():
        for r, n in per.items():
            total_counts[r] += n
    total_captured, total_rows = stage_rows(total_counts, {s: d for (_, s), d in overall_medians.items()})

    notes = [f"leads captured from {c.period_label(start, end)}, followed to today; a lead that skipped a stage counts as having passed it"]
    if total_captured == 0:
        notes.append("no leads were captured in this period" if (start or end) else "no leads in this workspace yet")
    table_rows: list[list[Any]] = []
    for name, g in groups.items():
        for r in g["stages"]:
            table_rows.append([name, r["stage"], r["reached"], c.fmt_pct(r["step_rate"]), c.fmt_pct(r["overall_rate"]), c.fmt_num(r["median_days"])])
    if by is not None and groups:
        for r in total_rows:
            table_rows.append(["(total)", r["stage"], r["reached"], c.fmt_pct(r["step_rate"]), c.fmt_pct(r["overall_rate"]), c.fmt_num(r["median_days"])])
    return ReportTable(
        title=f"Funnel by {by}" if by else "Funnel",
        columns=[by or "group", "stage", "leads", "step rate", "overall rate", "median days in stage"],
        rows=table_rows,
        notes=notes,
        data={
            "by": by,
            "from": start.isoformat() if start else None,
            "to": end.isoformat() if end else None,
            "stages": stages,
            "groups": groups,
            "total": {"captured": total_captured, "stages": total_rows},
        },
    )


def chart(table: ReportTable, path: Any) -> Any:
    """The funnel of all groups together; with ``--by``, also one bar per group of the overall rate."""
    total = table.data.get("total", {"stages": []})
    stages = [r["stage"] for r in total["stages"]]
    counts = [r["reached"] for r in total["stages"]]
    return svg.funnel_chart(path, table.title, stages, counts)
