"""Retention and churn from transactions, period over period.

The window ``[from, to)`` is cut into periods (``--every month|quarter|year``,
default quarter). For each period B and the one before it, A:

* customers at start = customers with a transaction in A;
* retained = those of them with a transaction in B too (customers new in B are
  not counted: CRR = (E − N) / S);
* raw retention = retained / at start; churn = 1 − raw retention;
* sales-adjusted retention = A-sales of the retained / A-sales of everyone
  active in A (the numerator uses A's sales; ``sales_next`` gives B-sales of the
  retained over the same base, the other convention);
* profit-adjusted retention = the same with profit (amount − cost); left out
  when no transaction of the period has a cost.

Customers at risk come from the ``crm_customer_values`` hook (the clv plugin
answers it): a customer whose ``detail["p_alive"]`` is below the
``at_risk_p_alive`` setting, or whose ``detail["at_risk"]`` is true. Without
such a plugin the report says so and lists nobody.

All aggregation is one SQL statement: per customer and period, then the
period joined to the next one.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Mapping, Sequence

import sqlalchemy as sa

from corecrm.records import ReportTable
from corecrm_plugins.analytics_funnel import common as c
from corecrm_plugins.analytics_funnel import svg

MONTHS_PER = {"month": 1, "quarter": 3, "year": 12}
AT_RISK_SHOWN = 20


def _month_index(conn: sa.Connection, col: str) -> str:
    if c.is_pg(conn):
        return f"(CAST(EXTRACT(YEAR FROM {col}) AS INTEGER) * 12 + CAST(EXTRACT(MONTH FROM {col}) AS INTEGER) - 1)"
    return f"(CAST(substr({col}, 1, 4) AS INTEGER) * 12 + CAST(substr({col}, 6, 2) AS INTEGER) - 1)"


def _align(d: dt.date, k: int) -> dt.date:
    mi = d.year * 12 + d.month - 1
    mi -= mi % k
    return dt.date(mi // 12, mi % 12 + 1, 1)


def _period_name(start: dt.date, every: str) -> str:
    if every == "month":
        return f"{start:%Y-%m}"
    if every == "quarter":
        return f"{start.year}-Q{(start.month - 1) // 3 + 1}"
    return f"{start.year}"


def period_rows(conn: sa.Connection, workspaces: Sequence[str], w_start: dt.date, w_end: dt.date, k: int) -> dict[int, tuple]:
    """``{period index A: (at start, sales A, profit A, costed A, retained, retained sales A, retained profit A, retained sales B)}``."""
    ws_in, binds = c.in_list("ws", workspaces)
    binds.update(start=c.bind_date(conn, w_start), end=c.bind_date(conn, w_end))
    base = w_start.year * 12 + w_start.month - 1
    p = f"(({_month_index(conn, 't.at')} - {base}) / {k})"
    sql = f"""
    WITH cp AS (
        SELECT t.customer_id AS cid, {p} AS p, SUM(t.amount) AS s, SUM(t.amount - COALESCE(t.cost, 0)) AS pr, COUNT(t.cost) AS nc
        FROM transactions t
        WHERE t.workspace IN ({ws_in}) AND t.at >= :start AND t.at < :end
        GROUP BY t.customer_id, {p}
    )
    SELECT a.p, COUNT(*), SUM(a.s), SUM(a.pr), SUM(a.nc),
           COUNT(b.cid),
           SUM(CASE WHEN b.cid IS NOT NULL THEN a.s END),
           SUM(CASE WHEN b.cid IS NOT NULL THEN a.pr END),
           SUM(b.s)
    FROM cp a LEFT JOIN cp b ON b.cid = a.cid AND b.p = a.p + 1
    GROUP BY a.p
    """
    return {int(r[0]): tuple(r[1:]) for r in conn.execute(sa.text(sql), binds)}


def active_customers(conn: sa.Connection, workspaces: Sequence[str], start: dt.date, end: dt.date) -> list[int]:
    ws_in, binds = c.in_list("ws", workspaces)
    binds.update(start=c.bind_date(conn, start), end=c.bind_date(conn, end))
    sql = f"SELECT DISTINCT customer_id FROM transactions WHERE workspace IN ({ws_in}) AND at >= :start AND at < :end ORDER BY customer_id"
    return [int(r[0]) for r in conn.execute(sa.text(sql), binds)]


def _value_plugins(crm: Any, workspace: str) -> bool:
    plugins = getattr(crm, "plugins", None)
    return bool(plugins is not None and plugins.impls("crm_customer_values", workspace))


def customer_values(crm: Any, workspace: str, customer_ids: list[int]) -> tuple[list[Any], list[str]]:
    """Values other plugins (e.g. clv) give these customers, and which plugins answered."""
    plugins = getattr(crm, "plugins", None)
    if plugins is None or not customer_ids or not plugins.impls("crm_customer_values", workspace):
        return [], []
    from corecrm.context import HookContext

    ctx = HookContext(crm=crm, workspace=workspace, now=c.now_of(crm), mode="simulate")
    values: list[Any] = []
    answered: list[str] = []
    for name, result in plugins.each("crm_customer_values", workspace=workspace, observer=True, customer_ids=customer_ids, ctx=ctx):
        values.extend(result)
        answered.append(name)
    return values, answered


def run(crm: Any, workspace: str | Sequence[str], params: Mapping[str, Any] | None = None) -> ReportTable:
    params = params or {}
    settings = c.plugin_settings(crm, workspace)
    workspaces = c.workspaces_of(workspace)
    every = str(c.param(params, "every", default="quarter")).lower()
    if every not in MONTHS_PER:
        raise c.ReportError(f"--every: expected month, quarter or year, got {every!r}")
    k = MONTHS_PER[every]
    start, end = c.report_period(params)
    today = c.now_of(crm).date()
    w_end = _align(end.date(), k) if end else _align(today, k)  # default: complete periods only
    if end and end.date() != w_end:
        w_end = c.add_months(w_end, k)  # a partial last period is kept whole
    w_start = _align(start.date(), k) if start else c.add_months(w_end, -5 * k)
    n_periods = max(0, ((w_end.year * 12 + w_end.month) - (w_start.year * 12 + w_start.month)) // k)
    starts = [c.add_months(w_start, i * k) for i in range(n_periods)]
    names = [_period_name(s, every) for s in starts]

    with crm.engine.connect() as conn:
        agg = period_rows(conn, workspaces, w_start, w_end, k) if n_periods else {}
        # the customers to ask a customer-value plugin about (only when one is enabled: a second pass over transactions)
        ids = active_customers(conn, workspaces, w_start, w_end) if n_periods and agg and _value_plugins(crm, workspaces[0]) else []

    periods = []
    rows = []
    no_cost = False
    for i in range(1, n_periods):
        a = agg.get(i - 1)
        active_b = agg.get(i, (0,))[0]
        if a is None:
            entry = {"period": names[i], "previous": names[i - 1], "customers_at_start": 0, "retained": 0, "new_or_returning": active_b,
                     "raw_retention": None, "churn_rate": None, "sales_adjusted": None, "sales_next": None, "profit_adjusted": None}
        else:
            n_a, sales_a, profit_a, costed, ret, ret_sales, ret_profit, ret_sales_b = a
            has_cost = bool(costed)
            no_cost = no_cost or not has_cost
            raw = c.ratio(ret, n_a)
            entry = {
                "period": names[i], "previous": names[i - 1], "customers_at_start": int(n_a), "retained": int(ret),
                "new_or_returning": int(active_b) - int(ret),
                "raw_retention": raw, "churn_rate": None if raw is None else 1 - raw,
                "sales_adjusted": c.ratio(ret_sales or 0.0, sales_a),
                "sales_next": c.ratio(ret_sales_b or 0.0, sales_a),
                "profit_adjusted": c.ratio(ret_profit or 0.0, profit_a) if has_cost else None,
            }
        periods.append(entry)
        rows.append([entry["period"], entry["customers_at_start"], entry["retained"], entry["new_or_returning"], c.fmt_pct(entry["raw_retention"]),
                     c.fmt_pct(entry["churn_rate"]), c.fmt_pct(entry["sales_adjusted"]), c.fmt_pct(entry["profit_adjusted"])])

    notes = [f"{every}ly periods from {w_start.isoformat()} to {(w_end - dt.timedelta(days=1)).isoformat()}; a period is compared with the one before it"]
    if n_periods < 2:
        notes.append("the window holds fewer than two periods: widen --from/--to")
    if not agg:
        notes.append("no transactions in this window")
    elif all(e["customers_at_start"] == 0 for e in periods):
        notes.append("no customer was active in any period before another: no retention rate")
    if no_cost and agg:
        notes.append("transactions without cost: profit-adjusted retention is shown only for periods with costs")

    ws0 = workspaces[0]
    values, answered = customer_values(crm, ws0, ids)
    threshold = float(settings["at_risk_p_alive"])
    at_risk = []
    for v in values:
        p_alive = v.detail.get("p_alive") if isinstance(v.detail, dict) else None
        flagged = bool(v.detail.get("at_risk")) if isinstance(v.detail, dict) else False
        if flagged or (isinstance(p_alive, (int, float)) and p_alive < threshold):
            at_risk.append({"customer_id": v.customer_id, "value": v.value, "kind": v.kind, "p_alive": p_alive, "plugin": v.plugin})
    at_risk.sort(key=lambda r: (-(r["value"] or 0.0), r["customer_id"]))
    if answered:
        notes.append(f"customers at risk (P(alive) < {threshold:g}, from {', '.join(answered)}): {len(at_risk)} worth "
                     f"{c.money_text(sum(r['value'] or 0.0 for r in at_risk))}")
    elif agg and not _value_plugins(crm, ws0):
        notes.append("customers at risk need a customer-value plugin (e.g. clv); none is enabled")
    return ReportTable(
        title=f"Retention and churn ({every}ly)",
        columns=["period", "customers at start", "retained", "new or returning", "retention rate", "churn rate", "sales-adjusted", "profit-adjusted"],
        rows=rows,
        notes=notes,
        data={"every": every, "periods": periods, "at_risk": at_risk[:AT_RISK_SHOWN], "at_risk_count": len(at_risk), "value_plugins": answered},
    )


def chart(table: ReportTable, path: Any) -> Any:
    """The retention curve: raw, sales- and profit-adjusted retention per period."""
    periods = table.data.get("periods", [])
    xs = [p["period"] for p in periods]
    series = {
        "raw retention": [p["raw_retention"] for p in periods],
        "sales-adjusted": [p["sales_adjusted"] for p in periods],
        "profit-adjusted": [p["profit_adjusted"] for p in periods],
    }
    return svg.line_chart(path, table.title, xs, series, ylabel="retention", percent=True, ymax=1.0, empty_note="no retention data in this window")
