"""Reports ``clv`` and ``rfm`` for ``corecrm report NAME [--json|--csv]``.

Reports read; they do not write. ``report clv`` shows the predictions stored by
the last ``corecrm clv predict`` (or, before any model is fitted, historic CLV);
``report rfm`` scores RFM as of ``--to`` (default: today) without storing it
(``corecrm clv rfm`` stores scores for other plugins).
"""

from __future__ import annotations

from typing import Any, Mapping

import click

PLUGIN = "clv"


def _clv_report(crm: Any, workspace: str, params: Mapping[str, Any]) -> Any:
    import sqlalchemy as sa

    from corecrm.records import ReportTable
    from corecrm.storage import schema

    from corecrm_plugins.clv import rfm, service, store

    top = int(params.get("top") or 0)
    store.ensure_tables(crm.engine)
    v, r, c = store.clv_values, store.clv_rfm, schema.customers
    with crm.engine.connect() as conn:
        q = (
            sa.select(c.c.external_id, v.c.customer_id, v.c.clv, v.c.expected_purchases, v.c.p_alive, v.c.expected_spend,
                      v.c.historic_clv, r.c.segment, v.c.model_version, v.c.horizon, v.c.unit, v.c.until)
            .select_from(
                v.outerjoin(r, sa.and_(r.c.workspace == v.c.workspace, r.c.customer_id == v.c.customer_id))
                .outerjoin(c, sa.and_(c.c.workspace == v.c.workspace, c.c.id == v.c.customer_id))
            )
            .where(v.c.workspace == workspace)
            .order_by(sa.func.coalesce(v.c.clv, v.c.historic_clv).desc(), v.c.customer_id)
        )
        rows = conn.execute(q).all()
    if not rows:
        settings = crm.settings(PLUGIN, workspace)
        hist = service.historic(crm.engine, workspace, now=crm.now(), until=params.get("date_to"), margin=float(settings["margin"]))
        hist.sort(key=lambda h: (-h["historic_clv"], h["customer_id"]))
        view = rfm.pareto_view([h["historic_clv"] for h in hist])
        shown = hist[:top] if top else hist
        return ReportTable(
            title=f"Historic CLV (margin to date), {len(hist)} customers",
            columns=["customer_id", "purchases", "revenue", "historic_clv"],
            rows=[[h["customer_id"], h["purchases"], h["revenue"], h["historic_clv"]] for h in shown],
            notes=["no predictions stored: run `corecrm clv fit` and `corecrm clv predict` for predictive CLV",
                   _pareto_note(view, "historic CLV")],
            data={"kind": "historic", "pareto": view},
        )
    clvs = [row.clv for row in rows if row.clv is not None]
    first = rows[0]
    view = rfm.pareto_view(clvs) if clvs else None
    shown = rows[:top] if top else rows
    notes = [f"model {first.model_version}, horizon {first.horizon:g} {first.unit}s, data up to {first.until}"]
    if view:
        notes.append(_pareto_note(view, "predicted CLV"))
    if not clvs:
        notes.append("no Gamma-Gamma model fitted: CLV needs `corecrm clv fit --model gg` then `clv predict`")
    return ReportTable(
        title=f"Customer lifetime value, {len(rows)} customers",
        columns=["customer_id", "clv", "expected_purchases", "p_alive", "expected_spend", "historic_clv", "segment"],
        rows=[[row.external_id or str(row.customer_id), row.clv, row.expected_purchases, row.p_alive, row.expected_spend,
               row.historic_clv, row.segment] for row in shown],
        notes=notes,
        data={"kind": "predicted", "model_version": first.model_version, "horizon": first.horizon, "unit": first.unit,
              "total_clv": float(sum(clvs)) if clvs else None, "pareto": view},
    )


def _pareto_note(view: Mapping[str, Any], what: str) -> str:
    if not view.get("top_share_of_value"):
        return f"no positive {what} to rank"
    return (f"the top 20% of customers ({view['top_customers']}) hold {view['top_share_of_value']:.1%} of {what}; "
            f"80% of it takes {view['customers_for_value_share']} customers ({view['fraction_for_value_share']:.1%}); Gini {view['gini']:.3f}")


def _rfm_report(crm: Any, workspace: str, params: Mapping[str, Any]) -> Any:
    from corecrm.records import ReportTable

    from corecrm_plugins.clv import service

    settings = crm.settings(PLUGIN, workspace)
    out = service.rfm(crm.engine, workspace, now=crm.now(), as_of=params.get("date_to"), segments=list(settings["segments"]),
                      store_results=False)
    detail = bool(params.get("customers"))
    p = out["pareto"]
    notes = [_pareto_note(p, "revenue"),
             "scores are rank-then-quintile (ties by ascending customer id): R from days since the last purchase (recent = 5), "
             "F from purchase days, M from total spend"]
    if detail:
        return ReportTable(
            title=f"RFM scores as of {out['as_of']}, {out['n_customers']} customers",
            columns=["customer_id", "recency_days", "frequency", "monetary", "r", "f", "m", "code", "segment"],
            rows=[[c["customer_id"], c["recency_days"], c["frequency"], c["monetary"], c["r"], c["f"], c["m"], c["code"], c["segment"]]
                  for c in out["customers"]],
            notes=notes,
            data={"as_of": out["as_of"], "segments": out["segments"], "pareto": p},
        )
    return ReportTable(
        title=f"RFM segments as of {out['as_of']}, {out['n_customers']} customers",
        columns=["segment", "customers", "share", "revenue", "mean_spend"],
        rows=[[s["segment"], s["customers"], round(s["share"], 4), round(s["revenue"], 2), round(s["mean_spend"], 2)] for s in out["segments"]],
        notes=notes,
        data={"as_of": out["as_of"], "pareto": p, "mean_spend_by_m": out["mean_spend_by_m"]},
    )


def reports() -> list[Any]:
    from corecrm.records import Report

    return [
        Report(
            "clv", "Customer lifetime value", _clv_report,
            description="Stored CLV predictions per customer (historic CLV before a model is fitted) and the 80/20 view.",
            params=[click.Option(["--top"], type=int, default=0, help="Only the N most valuable customers (0: all).")],
        ),
        Report(
            "rfm", "RFM segments", _rfm_report,
            description="RFM quintile segments as of --to (default today) and the 80/20 view of revenue.",
            params=[click.Option(["--customers"], is_flag=True, help="One row per customer instead of per segment.")],
        ),
    ]
