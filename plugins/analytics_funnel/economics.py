"""Campaign economics: cost per lead, per qualified lead, per customer, and return on spend.

Per campaign (or source), for leads captured in ``[from, to)``:

* cost: the campaign costs entered with ``corecrm campaigns cost``, each
  pro-rated by the days it shares with the period;
* leads, qualified leads (reached the ``qualified_stage`` setting, default
  ``mql``, or beyond) and customers (reached ``customer``), from the same SQL
  the funnel uses;
* revenue: won revenue of deals closed in the period, attributed with the
  ``economics_model`` setting (or ``--model``; default linear);
* return on spend = (revenue − cost) / cost, ROAS = revenue / cost;
* predicted value: when a plugin answers ``crm_customer_values`` (e.g. clv),
  the sum of its values for the customers these leads became, and the return
  on spend computed from it.

A campaign without cost shows no cost ratios (never a division by zero).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Mapping, Sequence

import sqlalchemy as sa

from corecrm.lifecycle import MAIN_LINE, Stage
from corecrm.records import ReportTable
from corecrm_plugins.analytics_funnel import attribution, common as c, costs, funnel, svg
from corecrm_plugins.analytics_funnel.retention import customer_values
from corecrm_plugins.analytics_funnel.settings import MODELS

DIMENSIONS = ("campaign", "source")


def lead_customers(conn: sa.Connection, workspaces: Sequence[str], by: str, start: Any, end: Any) -> dict[int, Any]:
    """``{customer id: campaign or source}`` for the customers the period's leads became."""
    ws_in, binds = c.in_list("ws", workspaces)
    binds.update(start=c.bind_ts(conn, start), end=c.bind_ts(conn, end))
    where = [f"l.workspace IN ({ws_in})", "l.merged_into IS NULL"]
    if start is not None:
        where.append("l.created_at >= :start")
    if end is not None:
        where.append("l.created_at < :end")
    sql = f"""
    SELECT COALESCE(l.customer_id, cu.id), l.{by}
    FROM leads l LEFT JOIN customers cu ON cu.lead_id = l.id AND cu.workspace = l.workspace
    WHERE {' AND '.join(where)} AND COALESCE(l.customer_id, cu.id) IS NOT NULL
    """
    return {int(cid): key for cid, key in conn.execute(sa.text(sql), binds)}


def run(crm: Any, workspace: str | Sequence[str], params: Mapping[str, Any] | None = None) -> ReportTable:
    params = params or {}
    settings = c.plugin_settings(crm, workspace)
    workspaces = c.workspaces_of(workspace)
    by = c.group_by(params, DIMENSIONS, default="campaign") or "campaign"
    model = str(c.param(params, "model", default=settings["economics_model"]))
    if model not in MODELS:
        raise c.ReportError(f"--model: expected one of {', '.join(MODELS)}, got {model!r}")
    start, end = c.report_period(params)
    order = [s.value for s in MAIN_LINE]
    q_rank = order.index(settings["qualified_stage"])
    cust_rank = order.index(Stage.CUSTOMER.value)

    with crm.engine.connect() as conn:
        counts = funnel.reached_counts(conn, workspaces, by, start, end)
        spend = costs.costs_in_period(conn, workspaces, start, end, by)
        customers = lead_customers(conn, workspaces, by, start, end)
    attr = attribution.compute(crm, workspace, params, by)
    revenue = attr["credits"][model]

    values, answered = customer_values(crm, workspaces[0], sorted(customers))
    predicted: dict[Any, float] = defaultdict(float)
    for v in values:
        if v.customer_id in customers:
            predicted[customers[v.customer_id]] += float(v.value or 0.0)

    keys = {c.label(k) for k in counts} | {c.label(k) for k in spend} | set(revenue)
    raw_spend = {c.label(k): v for k, v in spend.items()}
    raw_counts = {c.label(k): v for k, v in counts.items()}
    raw_pred = {c.label(k): v for k, v in predicted.items()}
    groups: dict[str, Any] = {}
    for key in sorted(keys, key=lambda k: (-raw_spend.get(k, 0.0), k)):
        per = raw_counts.get(key, {})
        leads = sum(per.values())
        qualified = sum(n for r, n in per.items() if r >= q_rank)
        won_customers = sum(n for r, n in per.items() if r >= cust_rank)
        cost = raw_spend.get(key)
        rev = revenue.get(key, 0.0)
        pv = raw_pred.get(key) if answered else None
        groups[key] = {
            "cost": cost,
            "leads": leads,
            "qualified": qualified,
            "customers": won_customers,
            "revenue": rev,
            "cost_per_lead": c.ratio(cost, leads),
            "cost_per_qualified": c.ratio(cost, qualified),
            "cost_per_customer": c.ratio(cost, won_customers),
            "return_on_spend": None if not cost else (rev - cost) / cost,
            "roas": c.ratio(rev, cost),
            "predicted_value": pv,
            "predicted_return_on_spend": None if (not cost or pv is None) else (pv - cost) / cost,
        }
    rows = []
    for key, g in groups.items():
        rows.append([key, c.fmt_money(g["cost"]), g["leads"], g["qualified"], g["customers"], c.fmt_money(g["cost_per_lead"]),
                     c.fmt_money(g["cost_per_qualified"]), c.fmt_money(g["cost_per_customer"]), c.fmt_money(g["revenue"]),
                     c.fmt_pct(g["return_on_spend"])] + ([c.fmt_money(g["predicted_value"]), c.fmt_pct(g["predicted_return_on_spend"])] if answered else []))
    notes = [f"leads captured and deals won from {c.period_label(start, end)}; revenue attributed {attribution.MODEL_TITLES[model]}; "
             f"qualified = reached {settings['qualified_stage']}; costs pro-rated by the days they share with the period"]
    if not groups:
        notes.append("no leads, costs or won revenue in this period")
    elif not spend:
        notes.append("no campaign costs recorded for this period: add them with `corecrm campaigns cost add|import`")
    if attr["no_amount"]:
        notes.append(f"{attr['no_amount']} won deal(s) without an amount were left out of revenue")
    if answered:
        notes.append(f"predicted value from {', '.join(answered)} (crm_customer_values) for the customers these leads became")
    columns = [by, "cost", "leads", "qualified", "customers", "cost/lead", "cost/qualified", "cost/customer", "revenue", "return on spend"]
    if answered:
        columns += ["predicted value", "predicted return"]
    return ReportTable(
        title=f"Campaign economics by {by}",
        columns=columns,
        rows=rows,
        notes=notes,
        data={"by": by, "model": model, "groups": groups, "value_plugins": answered},
    )


def chart(table: ReportTable, path: Any) -> Any:
    """Bars per campaign: cost against attributed revenue (and predicted value when known)."""
    groups = table.data.get("groups", {})
    keys = list(groups)[:12]
    series = {"cost": [groups[k]["cost"] or 0.0 for k in keys], "revenue": [groups[k]["revenue"] for k in keys]}
    if table.data.get("value_plugins"):
        series["predicted value"] = [groups[k]["predicted_value"] or 0.0 for k in keys]
    return svg.bar_chart(path, table.title, keys, series, ylabel="amount", empty_note="no costs or revenue in this period")
