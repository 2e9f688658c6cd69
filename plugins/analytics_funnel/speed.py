"""Speed to lead: hours from capture to assignment and to first contact.

Percentiles (default 50th, 90th, 95th; setting ``percentiles``) are computed in
SQL with window functions: the database ranks the delays and returns only the
two rows around each percentile, which Python interpolates linearly (numpy's
default method). Leads captured in ``[from, to)``; a lead never assigned or
never contacted counts in "not yet", not in the percentiles.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Mapping, Sequence

import sqlalchemy as sa

from corecrm.records import ReportTable
from corecrm_plugins.analytics_funnel import common as c
from corecrm_plugins.analytics_funnel import svg

DIMENSIONS = ("source", "team", "owner", "campaign", "workspace")
METRICS = ("assignment", "first_contact")
TOTAL = "(total)"


def delays(conn: sa.Connection, workspaces: Sequence[str], by: str | None, start: Any, end: Any, ps: Sequence[float]) -> tuple[dict, dict]:
    """``({(group, metric): {rank: hours}}, {group: (leads, assigned, contacted)})``."""
    ws_in, binds = c.in_list("ws", workspaces)
    binds.update(start=c.bind_ts(conn, start), end=c.bind_ts(conn, end))
    where = [f"l.workspace IN ({ws_in})", "l.merged_into IS NULL"]
    if start is not None:
        where.append("l.created_at >= :start")
    if end is not None:
        where.append("l.created_at < :end")
    grp = f"l.{by}" if by else f"'{TOTAL}'"
    h_assign = f"{c.days_between(conn, 'l.assigned_at', 'l.created_at')} * 24.0"
    h_contact = f"{c.days_between(conn, 'l.first_contact_at', 'l.created_at')} * 24.0"
    total_branch = ""
    if by:
        total_branch = f"""
        UNION ALL SELECT '{TOTAL}', 'assignment', h_assign FROM cohort WHERE h_assign IS NOT NULL
        UNION ALL SELECT '{TOTAL}', 'first_contact', h_contact FROM cohort WHERE h_contact IS NOT NULL"""
    sql = f"""
    WITH cohort AS (
        SELECT {grp} AS grp, {h_assign} AS h_assign, {h_contact} AS h_contact FROM leads l WHERE {' AND '.join(where)}
    ),
    m AS (
        SELECT grp, 'assignment' AS metric, h_assign AS v FROM cohort WHERE h_assign IS NOT NULL
        UNION ALL SELECT grp, 'first_contact', h_contact FROM cohort WHERE h_contact IS NOT NULL{total_branch}
    ),
    r AS (
        SELECT grp, metric, v, ROW_NUMBER() OVER (PARTITION BY grp, metric ORDER BY v) - 1 AS rn,
               COUNT(*) OVER (PARTITION BY grp, metric) AS n
        FROM m
    )
    SELECT grp, metric, rn, n, v FROM r WHERE {c.percentile_filter(conn, 'rn', 'n', ps)}
    """
    ranked: dict[tuple[Any, str], dict[int, float]] = defaultdict(dict)
    sizes: dict[tuple[Any, str], int] = {}
    for g, metric, rn, n, v in conn.execute(sa.text(sql), binds):
        ranked[(g, metric)][int(rn)] = float(v)
        sizes[(g, metric)] = int(n)
    count_sql = f"""
    SELECT {grp} AS grp, COUNT(*), COUNT(l.assigned_at), COUNT(l.first_contact_at) FROM leads l
    WHERE {' AND '.join(where)} GROUP BY 1
    """
    counts = {g: (int(a), int(b), int(d)) for g, a, b, d in conn.execute(sa.text(count_sql), binds)}
    if by and counts:
        counts[TOTAL] = tuple(sum(v[i] for v in counts.values()) for i in range(3))  # type: ignore[assignment]
    return {k: (sizes[k], v) for k, v in ranked.items()}, counts


def run(crm: Any, workspace: str | Sequence[str], params: Mapping[str, Any] | None = None) -> ReportTable:
    params = params or {}
    settings = c.plugin_settings(crm, workspace)
    workspaces = c.workspaces_of(workspace)
    start, end = c.report_period(params)
    by = c.group_by(params, DIMENSIONS)
    ps = [float(p) for p in settings["percentiles"]]
    with crm.engine.connect() as conn:
        ranked, counts = delays(conn, workspaces, by, start, end, ps)
    groups: dict[str, Any] = {}
    order = sorted((g for g in counts if g != TOTAL), key=lambda g: (g is None, str(g)))
    if TOTAL in counts:
        order.append(TOTAL)
    rows = []
    for g in order:
        leads, assigned, contacted = counts[g]
        entry: dict[str, Any] = {"leads": leads, "assigned": assigned, "contacted": contacted}
        for metric in METRICS:
            n, vals = ranked.get((g, metric), (0, {}))
            entry[metric] = {f"p{round(100 * p):d}": c.interpolate(vals, n, p) for p in ps}
        groups[c.label(g)] = entry
        rows.append(
            [c.label(g), leads, c.fmt_pct(c.ratio(assigned, leads))]
            + [c.fmt_num(entry["assignment"][f"p{round(100 * p):d}"]) for p in ps]
            + [c.fmt_pct(c.ratio(contacted, leads))]
            + [c.fmt_num(entry["first_contact"][f"p{round(100 * p):d}"]) for p in ps]
        )
    notes = [f"leads captured from {c.period_label(start, end)}; hours from capture; percentiles over the leads that got there"]
    if not counts:
        notes.append("no leads were captured in this period" if (start or end) else "no leads in this workspace yet")
    else:
        if not any(v[1] for v in counts.values()):
            notes.append("no lead of this period has been assigned yet")
        if not any(v[2] for v in counts.values()):
            notes.append("no lead of this period has a first contact yet")
    pcols = [f"p{round(100 * p):d}" for p in ps]
    return ReportTable(
        title=f"Speed to lead by {by}" if by else "Speed to lead",
        columns=[by or "group", "leads", "assigned rate"] + [f"assign h {p}" for p in pcols] + ["contacted rate"] + [f"contact h {p}" for p in pcols],
        rows=rows,
        notes=notes,
        data={"by": by, "percentiles": ps, "groups": groups, "unit": "hours"},
    )


def chart(table: ReportTable, path: Any) -> Any:
    """Bars per group: the median hours to assignment and to first contact."""
    groups = table.data.get("groups", {})
    names = [g for g in groups if g != TOTAL] or list(groups)
    key = "p50" if any("p50" in g.get("assignment", {}) for g in groups.values()) else None
    def pick(g: dict, metric: str) -> float | None:
        vals = g[metric]
        return vals.get(key) if key else next(iter(vals.values()), None)
    series = {
        "to assignment": [pick(groups[n], "assignment") for n in names],
        "to first contact": [pick(groups[n], "first_contact") for n in names],
    }
    return svg.bar_chart(path, f"{table.title}: median hours", names, series, ylabel="median hours from capture", empty_note="no leads in this period")
