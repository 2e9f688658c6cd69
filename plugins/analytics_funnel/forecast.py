"""Weighted pipeline forecast: open deal amount × stage probability by expected close month.

Stage probabilities come from the deal pipelines in ``corecrm.toml``
(``crm.config.pipelines()``). For each month of the window the report shows:

* ``open``: the open deals now expected to close that month, their amount and
  the weighted amount (Salesforce's "expected revenue" = amount × probability);
  months already past hold the overdue deals (a stale close date inflates a
  forecast: the notes say how much is overdue);
* ``won``: the amount of the deals won that month;
* ``forecast at start``: for months that have begun, what the weighted
  forecast said on the first day of the month, rebuilt from the deals'
  ``deal_stage_changed`` history (stage on that day × today's amount, deals
  created before and not closed by then, expected to close that month), so
  won can be read against the forecast that was made for it.

Closed deals never count twice: a won deal is in ``won``, never in ``open``.
Deals without an amount or in a stage without a probability are left out of
the sums and counted in the notes.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from typing import Any, Mapping, Sequence

import sqlalchemy as sa

from corecrm.records import ReportTable
from corecrm_plugins.analytics_funnel import common as c
from corecrm_plugins.analytics_funnel import svg

DIMENSIONS = ("pipeline", "team", "owner", "workspace")
ALL = "all"


def _grp(by: str | None) -> str:
    if by is None:
        return f"'{ALL}'"
    if by == "team":
        return "l.team"
    return f"d.{by}"


def _probabilities(crm: Any) -> dict[tuple[str, str], float]:
    out = {}
    for name, pipe in crm.config.pipelines().items():
        for st in pipe.stages:
            out[(name, st.name)] = st.probability
    return out


def run(crm: Any, workspace: str | Sequence[str], params: Mapping[str, Any] | None = None) -> ReportTable:
    params = params or {}
    workspaces = c.workspaces_of(workspace)
    by = c.group_by(params, DIMENSIONS)
    start, end = c.report_period(params)
    today = c.now_of(crm).date()
    this_month = dt.date(today.year, today.month, 1)
    history = int(c.param(params, "history", default=6))
    if history < 0:
        raise c.ReportError(f"--history: expected a number of months >= 0, got {history}")
    w_start = dt.date(start.year, start.month, 1) if start else c.add_months(this_month, -history)
    w_end = (end.date() if end else c.add_months(this_month, 13))  # exclusive
    months = c.month_range(w_start, w_end)
    probs = _probabilities(crm)

    ws_in, binds = c.in_list("ws", workspaces)
    grp = _grp(by)
    lead_join = "LEFT JOIN leads l ON l.id = d.lead_id AND l.workspace = d.workspace"
    open_cells: dict[tuple[str, Any], dict[str, float]] = defaultdict(lambda: {"deals": 0, "amount": 0.0, "weighted": 0.0})
    won_cells: dict[tuple[str, Any], dict[str, float]] = defaultdict(lambda: {"deals": 0, "amount": 0.0})
    at_start: dict[tuple[str, Any], float] = defaultdict(float)
    no_amount = no_prob = outside = undated = 0
    undated_amount = outside_amount = overdue_weighted = 0.0
    unknown_stages: set[str] = set()
    no_history = [0]

    with crm.engine.connect() as conn:
        binds.update(ws_start=c.bind_date(conn, w_start), ws_end=c.bind_date(conn, w_end))
        binds.update(ts_start=c.bind_ts(conn, dt.datetime.combine(w_start, dt.time(), c.UTC)), ts_end=c.bind_ts(conn, dt.datetime.combine(w_end, dt.time(), c.UTC)))
        month_exp = c.month_of_date(conn, "d.expected_close")
        open_sql = f"""
        SELECT {month_exp} AS m, d.pipeline, d.stage, {grp} AS grp, COUNT(*) AS n, SUM(d.amount) AS amount, COUNT(d.amount) AS with_amount
        FROM deals d {lead_join}
        WHERE d.workspace IN ({ws_in}) AND d.status = 'open'
        GROUP BY 1, 2, 3, 4
        """
        for m, pipeline, stage, g, n, amount, with_amount in conn.execute(sa.text(open_sql), binds):
            n, with_amount = int(n), int(with_amount)
            no_amount += n - with_amount
            p = probs.get((pipeline, stage))
            if p is None:
                no_prob += n
                unknown_stages.add(f"{pipeline}/{stage}")
                continue
            amount = float(amount or 0.0)
            if m is None:
                undated += with_amount
                undated_amount += amount
                continue
            if m not in months:
                outside += with_amount
                outside_amount += amount * p
                continue
            cell = open_cells[(m, g)]
            cell["deals"] += with_amount
            cell["amount"] += amount
            cell["weighted"] += amount * p
            if m < f"{this_month:%Y-%m}":
                overdue_weighted += amount * p

        month_closed = c.month_of_ts(conn, "d.closed_at")
        won_sql = f"""
        SELECT {month_closed} AS m, {grp} AS grp, COUNT(d.amount), SUM(d.amount)
        FROM deals d {lead_join}
        WHERE d.workspace IN ({ws_in}) AND d.status = 'won' AND d.closed_at >= :ts_start AND d.closed_at < :ts_end
        GROUP BY 1, 2
        """
        for m, g, n, amount in conn.execute(sa.text(won_sql), binds):
            won_cells[(m, g)] = {"deals": int(n), "amount": float(amount or 0.0)}

        # forecast as it stood on the first day of each month that has begun
        past_end = min(w_end, c.add_months(this_month, 1))
        if w_start < past_end:
            binds.update(p_end=c.bind_date(conn, past_end))
            to_stage = c.json_text(conn, "e.detail", "to")
            from_stage = c.json_text(conn, "e.detail", "from")
            hist_sql = f"""
            WITH cand AS (
                SELECT d.id, d.pipeline, d.stage, d.amount, d.expected_close, d.created_at, d.closed_at, {grp} AS grp
                FROM deals d {lead_join}
                WHERE d.workspace IN ({ws_in}) AND d.expected_close >= :ws_start AND d.expected_close < :p_end AND d.amount IS NOT NULL
            )
            SELECT cand.id, cand.pipeline, cand.stage, cand.amount, cand.expected_close, cand.created_at, cand.closed_at, cand.grp,
                   e.at, {to_stage}, {from_stage}
            FROM cand LEFT JOIN events e ON e.deal_id = cand.id AND e.workspace IN ({ws_in}) AND e.type = 'deal_stage_changed'
            ORDER BY cand.id, e.at
            """
            closing = {name: {st.name for st in pipe.stages if st.closed} for name, pipe in crm.config.pipelines().items()}
            current: dict[str, Any] = {}
            moves: list[tuple[dt.datetime, str, str]] = []

            def settle() -> None:
                if not current:
                    return
                exp = c.to_date(current["expected_close"])
                m0 = dt.datetime(exp.year, exp.month, 1, tzinfo=c.UTC)
                created, closed = c.to_datetime(current["created_at"]), c.to_datetime(current["closed_at"])
                if created >= m0 or (closed is not None and closed < m0):
                    return
                stage = current["stage"]
                if not moves and stage in closing.get(current["pipeline"], ()):
                    no_history[0] += 1  # closed, and we cannot tell which stage it was in on that day
                    return
                if moves:
                    before = [to for at, to, _ in moves if at < m0]
                    if before:
                        stage = before[-1]
                    else:  # moved only later: on that day it was in the stage its first move left
                        stage = moves[0][2] or stage
                p = probs.get((current["pipeline"], stage))
                if p is not None:
                    at_start[(f"{exp:%Y-%m}", current["grp"])] += float(current["amount"]) * p

            for row in conn.execute(sa.text(hist_sql), binds):
                deal_id = row[0]
                if current.get("id") != deal_id:
                    settle()
                    current = {"id": deal_id, "pipeline": row[1], "stage": row[2], "amount": row[3], "expected_close": row[4],
                               "created_at": row[5], "closed_at": row[6], "grp": row[7]}
                    moves = []
                if row[8] is not None:
                    moves.append((c.to_datetime(row[8]), row[9], row[10]))
            settle()

    groups = sorted({g for (_, g) in list(open_cells) + list(won_cells) + list(at_start)}, key=lambda g: (g is None, str(g)))
    rows: list[list[Any]] = []
    series: list[dict[str, Any]] = []
    this_m = f"{this_month:%Y-%m}"
    for m in months:
        for g in groups or [ALL]:
            o = open_cells.get((m, g), {"deals": 0, "amount": 0.0, "weighted": 0.0})
            w = won_cells.get((m, g), {"deals": 0, "amount": 0.0})
            begun = m <= this_m
            fc = at_start.get((m, g), 0.0) if begun else None
            entry = {
                "month": m,
                "group": c.label(g),
                "open_deals": o["deals"],
                "open_amount": o["amount"],
                "weighted": o["weighted"],
                "won_deals": w["deals"],
                "won": w["amount"],
                "forecast_at_start": fc,
                "won_vs_forecast": c.ratio(w["amount"], fc) if begun else None,
            }
            series.append(entry)
            if not (o["deals"] or w["deals"] or fc):
                continue
            rows.append([m, c.label(g), o["deals"], round(o["amount"], 2), round(o["weighted"], 2), round(w["amount"], 2),
                         c.fmt_money(fc), c.fmt_pct(entry["won_vs_forecast"])])
    total_weighted = sum(e["weighted"] for e in series)
    notes = [f"months {months[0] if months else '-'} to {months[-1] if months else '-'}; today {today.isoformat()}; "
             f"weighted open pipeline {c.money_text(total_weighted)}"]
    if not rows:
        notes.append("no open or won deals in this window")
    if overdue_weighted:
        notes.append(f"{c.money_text(overdue_weighted)} of the weighted pipeline is overdue (expected close already past): update those close dates")
    if no_amount:
        notes.append(f"{no_amount} open deal(s) without an amount are left out")
    if no_prob:
        notes.append(f"{no_prob} open deal(s) in a stage with no probability in the pipelines config ({', '.join(sorted(unknown_stages))}) are left out")
    if undated:
        notes.append(f"{undated} open deal(s) without an expected close date ({c.money_text(undated_amount)}) are left out")
    if no_history[0]:
        notes.append(f"{no_history[0]} closed deal(s) without deal_stage_changed history are left out of the forecast at start")
    if outside:
        notes.append(f"{outside} open deal(s) expected to close outside the window ({c.money_text(outside_amount)} weighted) are left out")
    return ReportTable(
        title=f"Weighted pipeline forecast by {by}" if by else "Weighted pipeline forecast",
        columns=["month", by or "group", "open deals", "open amount", "weighted", "won", "forecast at start", "won vs forecast"],
        rows=rows,
        notes=notes,
        data={"by": by, "months": months, "cells": series, "weighted_total": total_weighted, "today": today.isoformat(),
              "deals_without_amount": no_amount, "deals_without_probability": no_prob},
    )


def chart(table: ReportTable, path: Any) -> Any:
    """Bars per month: weighted open pipeline, won, and the forecast made at the start of the month."""
    months = table.data.get("months", [])
    agg: dict[str, dict[str, float]] = defaultdict(lambda: {"weighted": 0.0, "won": 0.0, "fc": 0.0})
    for e in table.data.get("cells", []):
        a = agg[e["month"]]
        a["weighted"] += e["weighted"]
        a["won"] += e["won"]
        a["fc"] += e["forecast_at_start"] or 0.0
    series = {
        "weighted open": [agg[m]["weighted"] for m in months],
        "won": [agg[m]["won"] for m in months],
        "forecast at start": [agg[m]["fc"] for m in months],
    }
    return svg.bar_chart(path, table.title, months, series, ylabel="amount", empty_note="no open or won deals in this window")
