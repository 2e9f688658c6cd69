"""Attribution of won revenue to campaigns and sources, five models side by side.

A conversion is a won deal (closed in the period, with an amount). Its
touchpoints are the lead's capture (at ``leads.created_at`` with the lead's
own source and campaign) plus every event of a touch type (``form_submitted``,
``email_clicked``, ``page_visited``… see the ``touch_types`` setting) before
the deal was won, within ``lookback_days``; the event's ``detail.campaign`` /
``detail.source`` say where it came from.

Models (the credits of one conversion always sum to its amount):

* first touch / last touch: all of it to the first / last touch;
* linear: equal shares;
* time decay: weight ``2^(−Δt/h)`` with Δt the days from the touch to the sale
  and ``h`` the half-life (default 7 days);
* position based: 40 % first, 40 % last, 20 % shared by the middle touches;
  with two touches 50/50, with one touch 100 %.

The touchpoints of all won deals come back from one ordered query and are
streamed deal by deal; nothing is loaded per lead.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from itertools import groupby
from typing import Any, Iterable, Mapping, Sequence

import sqlalchemy as sa

from corecrm.records import ReportTable
from corecrm_plugins.analytics_funnel import common as c
from corecrm_plugins.analytics_funnel import svg
from corecrm_plugins.analytics_funnel.settings import MODELS

DIMENSIONS = ("campaign", "source")
MODEL_TITLES = {
    "first_touch": "first touch",
    "last_touch": "last touch",
    "linear": "linear",
    "time_decay": "time decay",
    "position_based": "position based",
}


# --------------------------------------------------------------------------- the models


def weights(model: str, touch_times: Sequence[dt.datetime], conversion_at: dt.datetime, *, half_life_days: float = 7.0,
            position_weights: Sequence[float] = (0.4, 0.2, 0.4)) -> list[float]:
    """Shares (summing to 1) of each touch, touches in time order, for one conversion."""
    n = len(touch_times)
    if n == 0:
        return []
    if model == "first_touch":
        return [1.0] + [0.0] * (n - 1)
    if model == "last_touch":
        return [0.0] * (n - 1) + [1.0]
    if model == "linear":
        return [1.0 / n] * n
    if model == "time_decay":
        if half_life_days <= 0:
            raise ValueError("half_life_days must be positive")
        raw = [2.0 ** (-max(0.0, (conversion_at - t).total_seconds() / 86400.0) / half_life_days) for t in touch_times]
        total = sum(raw)
        return [w / total for w in raw]
    if model == "position_based":
        first, middle, last = position_weights
        if n == 1:
            return [1.0]
        if n == 2:
            return [0.5, 0.5]  # Google Analytics' convention: the middle share is split between the two ends
        return [first] + [middle / (n - 2)] * (n - 2) + [last]
    raise ValueError(f"unknown attribution model {model!r} (valid: {', '.join(MODELS)})")


def attribute(amount: float, touches: Sequence[tuple[dt.datetime, str]], conversion_at: dt.datetime, **kw: Any) -> dict[str, dict[str, float]]:
    """``{model: {key: credit}}`` for one conversion of ``amount`` with touches ``(time, key)``."""
    touches = sorted(touches, key=lambda t: t[0])
    times = [t for t, _ in touches]
    out: dict[str, dict[str, float]] = {}
    for model in MODELS:
        credit: dict[str, float] = defaultdict(float)
        for (_, key), w in zip(touches, weights(model, times, conversion_at, **kw)):
            credit[key] += amount * w
        out[model] = dict(credit)
    return out


# --------------------------------------------------------------------------- the data


def conversions_sql(conn: sa.Connection, ws_in: str, start: Any, end: Any) -> str:
    """Won deals in the period with the lead they came from (directly or through the customer)."""
    where = [f"d.workspace IN ({ws_in})", "d.status = 'won'"]
    if start is not None:
        where.append("d.closed_at >= :start")
    if end is not None:
        where.append("d.closed_at < :end")
    return f"""
        SELECT d.id AS deal_id, d.amount AS amount, d.closed_at AS closed_at,
               COALESCE(d.lead_id, cu.lead_id) AS lead_id
        FROM deals d LEFT JOIN customers cu ON cu.id = d.customer_id AND cu.workspace = d.workspace
        WHERE {' AND '.join(where)}
    """


def touch_rows(conn: sa.Connection, workspaces: Sequence[str], start: Any, end: Any, touch_types: Sequence[str], lookback_days: int) -> Iterable[tuple]:
    """Rows ``(deal_id, amount, closed_at, lead_id, kind, at, campaign, source)`` ordered by deal and time.

    ``kind`` is ``capture`` for the lead's own capture, ``event`` for a touch
    event, ``none`` for a won deal without a known lead.
    """
    ws_in, binds = c.in_list("ws", workspaces)
    types_in, tbinds = c.in_list("tt", list(touch_types) or ["-"])
    binds.update(tbinds)
    binds.update(start=c.bind_ts(conn, start), end=c.bind_ts(conn, end))
    camp, src = c.json_text(conn, "e.detail", "campaign"), c.json_text(conn, "e.detail", "source")
    if c.is_pg(conn):
        window = f"e.at >= w.closed_at - interval '{int(lookback_days)} days'"
    else:
        window = f"julianday(e.at) >= julianday(w.closed_at) - {int(lookback_days)}"
    sql = f"""
    WITH won AS ({conversions_sql(conn, ws_in, start, end)})
    SELECT w.deal_id, w.amount, w.closed_at, w.lead_id, 'capture' AS kind, l.created_at AS at, l.campaign, l.source
    FROM won w JOIN leads l ON l.id = w.lead_id AND l.workspace IN ({ws_in})
    UNION ALL
    SELECT w.deal_id, w.amount, w.closed_at, w.lead_id, 'event', e.at, {camp}, {src}
    FROM won w JOIN events e ON e.lead_id = w.lead_id
    WHERE e.workspace IN ({ws_in}) AND e.type IN ({types_in}) AND e.at <= w.closed_at AND {window}
    UNION ALL
    SELECT w.deal_id, w.amount, w.closed_at, w.lead_id, 'none', w.closed_at, NULL, NULL
    FROM won w WHERE w.lead_id IS NULL OR NOT EXISTS (SELECT 1 FROM leads l2 WHERE l2.id = w.lead_id AND l2.workspace IN ({ws_in}))
    ORDER BY 1, 6
    """
    return conn.execute(sa.text(sql), binds)


def compute(crm: Any, workspace: str | Sequence[str], params: Mapping[str, Any] | None, by: str = "campaign") -> dict[str, Any]:
    """Credits per model and key, with counts for the notes. Shared with campaign economics."""
    settings = c.plugin_settings(crm, workspace)
    workspaces = c.workspaces_of(workspace)
    start, end = c.report_period(params)
    half_life = float(c.param(params, "half_life", "half-life", default=settings["half_life_days"]))
    if half_life <= 0:
        raise c.ReportError(f"--half-life: expected a positive number of days, got {half_life!r}")
    pos = tuple(settings["position_weights"])
    credits: dict[str, dict[str, float]] = {m: defaultdict(float) for m in MODELS}
    deals = no_amount = no_lead = 0
    revenue = 0.0
    touches_total = 0
    with crm.engine.connect() as conn:
        rows = touch_rows(conn, workspaces, start, end, settings["touch_types"], int(settings["lookback_days"]))
        for deal_id, group in groupby(rows, key=lambda r: r[0]):
            group = list(group)
            amount = group[0][1]
            if amount is None:
                no_amount += 1
                continue
            deals += 1
            amount = float(amount)
            revenue += amount
            closed_at = c.to_datetime(group[0][2])
            if group[0][4] == "none":
                no_lead += 1
                for m in MODELS:
                    credits[m]["(unattributed)"] += amount
                continue
            touches = []
            for r in group:
                key = r[6] if by == "campaign" else r[7]
                touches.append((c.to_datetime(r[5]), c.label(key)))
            touches_total += len(touches)
            for model, per in attribute(amount, touches, closed_at, half_life_days=half_life, position_weights=pos).items():
                for key, v in per.items():
                    credits[model][key] += v
    return {
        "credits": {m: dict(v) for m, v in credits.items()},
        "deals": deals,
        "revenue": revenue,
        "no_amount": no_amount,
        "no_lead": no_lead,
        "touches": touches_total,
        "half_life_days": half_life,
        "start": start,
        "end": end,
        "position_weights": list(pos),
    }


def run(crm: Any, workspace: str | Sequence[str], params: Mapping[str, Any] | None = None) -> ReportTable:
    params = params or {}
    by = c.group_by(params, DIMENSIONS, default="campaign") or "campaign"
    res = compute(crm, workspace, params, by)
    keys = sorted({k for per in res["credits"].values() for k in per}, key=lambda k: (-res["credits"]["linear"].get(k, 0.0), k))
    rows = [[k] + [round(res["credits"][m].get(k, 0.0), 2) for m in MODELS] for k in keys]
    if rows:
        rows.append(["(total)"] + [round(sum(res["credits"][m].values()), 2) for m in MODELS])
    notes = [
        f"won deals closed from {c.period_label(res['start'], res['end'])}: {res['deals']} worth {c.money_text(res['revenue'])}; "
        f"time-decay half-life {res['half_life_days']:g} days; position based {'/'.join(f'{100 * w:g}' for w in res['position_weights'])}"
    ]
    if res["deals"] == 0 and res["no_amount"] == 0:
        notes.append("no won deals in this period: nothing to attribute")
    if res["no_amount"]:
        notes.append(f"{res['no_amount']} won deal(s) without an amount were left out")
    if res["no_lead"]:
        notes.append(f"{res['no_lead']} won deal(s) have no lead to take touchpoints from: shown as (unattributed)")
    return ReportTable(
        title=f"Attribution of won revenue by {by}",
        columns=[by] + [MODEL_TITLES[m] for m in MODELS],
        rows=rows,
        notes=notes,
        data={
            "by": by,
            "models": list(MODELS),
            "credits": res["credits"],
            "deals": res["deals"],
            "revenue": res["revenue"],
            "deals_without_amount": res["no_amount"],
            "deals_without_lead": res["no_lead"],
            "half_life_days": res["half_life_days"],
        },
    )


def chart(table: ReportTable, path: Any) -> Any:
    """Grouped bars: one group per campaign (or source), one bar per model."""
    credits = table.data.get("credits", {})
    keys = [r[0] for r in table.rows if r[0] != "(total)"][:12]
    series = {MODEL_TITLES[m]: [credits.get(m, {}).get(k, 0.0) for k in keys] for m in MODELS}
    return svg.bar_chart(path, table.title, keys, series, ylabel="attributed revenue", empty_note="no won revenue in this period")
