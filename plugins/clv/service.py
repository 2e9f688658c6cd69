"""What the commands, reports and hooks do, on an engine and a workspace.

Kept apart from click and from the ``Crm`` object so every operation is
testable on a bare engine, and the CLI stays a thin layer.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Mapping

import sqlalchemy as sa

from corecrm_plugins.clv import store
from corecrm_plugins.clv.errors import ClvError

MODEL_CHOICES = ("bgnbd", "pareto", "gg")


def _summary(conn, workspace: str, until: dt.date, unit: str, today: dt.date, margin: float, with_margin: bool = True):
    from corecrm_plugins.clv import summary

    info = store.check_transactions(conn, workspace, today)
    if until < info["first"]:
        raise ClvError(f"--until {until.isoformat()} is before the first transaction ({info['first'].isoformat()})")
    agg = store.fetch_aggregates(conn, workspace, until, margin=margin, with_margin=with_margin)
    return summary.summarise(agg, until, unit), info


def fit(
    engine: sa.engine.Engine,
    workspace: str,
    model: str,
    *,
    now: dt.datetime,
    until: dt.date | None = None,
    unit: str = "week",
    settings: Mapping[str, Any] | None = None,
    holdout_end: dt.date | None = None,
) -> dict[str, Any]:
    """Fit one model on the summary up to ``until`` (default: today); store it; return the JSON result."""
    from corecrm_plugins.clv import models, value

    settings = settings or {}
    if model not in MODEL_CHOICES:
        raise ClvError(f"unknown model {model!r} (valid: {', '.join(MODEL_CHOICES)})")
    today = now.date()
    until = until or today
    if until > today:
        raise ClvError(f"--until {until.isoformat()} is in the future (today is {today.isoformat()})")
    store.ensure_tables(engine)
    with engine.connect() as conn:
        s, info = _summary(conn, workspace, until, unit, today, float(settings.get("margin", 1.0)), with_margin=False)
        holdout_counts = None
        if holdout_end is not None:
            if holdout_end <= until:
                raise ClvError(f"--holdout-end {holdout_end.isoformat()} must be after --until {until.isoformat()}")
            holdout_counts = store.fetch_holdout_counts(conn, workspace, until, holdout_end)
    if model == "gg":
        res = models.fit_gg(s.frequency, s.monetary, unit=unit, corr_warning=float(settings.get("gg_correlation_warning", 0.3)))
    else:
        res = models.FITTERS[model](s.frequency, s.recency, s.T, unit=unit)
    out = res.to_json()
    out["until"] = until.isoformat()
    if holdout_counts is not None and model != "gg":
        import numpy as np

        from corecrm_plugins.clv.summary import UNIT_DAYS

        actual = np.array([holdout_counts.get(int(c), 0) for c in s.customer_id], dtype=float)
        length = (holdout_end - until).days / UNIT_DAYS[unit]
        rep = value.holdout_report(s, model, res.params, actual, length)
        rep.pop("predicted")
        rep["holdout_end"] = holdout_end.isoformat()
        out["holdout"] = rep
    with engine.begin() as conn:
        detail = {k: out[k] for k in ("n_rows", "iterations", "warnings")}
        if "holdout" in out:
            detail["holdout"] = out["holdout"]
        out["version"] = store.save_model(conn, workspace, res, until, now, detail)
    return out


def predict(
    engine: sa.engine.Engine,
    workspace: str,
    *,
    now: dt.datetime,
    horizon: float,
    model: str | None = None,
    until: dt.date | None = None,
    settings: Mapping[str, Any] | None = None,
    discount_rate: float | None = None,
    margin: float | None = None,
) -> dict[str, Any]:
    """Predict with the latest fitted purchase model (and Gamma-Gamma if fitted); store per customer."""
    import numpy as np

    from corecrm_plugins.clv import value

    settings = settings or {}
    store.ensure_tables(engine)
    d = float(settings.get("discount_rate", 0.01) if discount_rate is None else discount_rate)
    mg = float(settings.get("margin", 1.0) if margin is None else margin)
    with engine.connect() as conn:
        wanted = [model] if model else ["bgnbd", "pareto"]
        purchase = store.latest_model(conn, workspace, wanted)
        if purchase is None:
            raise ClvError(f"no fitted {' or '.join(wanted)} model in workspace {workspace!r}; run `corecrm clv fit --model bgnbd` first")
        gg = store.latest_model(conn, workspace, ["gg"])
        unit = purchase["unit"]
        if gg is not None and gg["unit"] != unit:
            gg = None
        until = until or purchase["until"]
        s, _info = _summary(conn, workspace, until, unit, now.date(), mg)
    version = f"{purchase['model']}@{purchase['version']}" + (f"+gg@{gg['version']}" if gg else "")
    pred = value.predict(
        s, purchase["model"], purchase["params"], horizon=horizon, gg_params=gg["params"] if gg else None, discount_rate=d, margin=mg
    )
    historic = np.maximum(s.historic_margin, 0.0)
    customers = []
    rows = []
    for i in range(len(s)):
        spend = None if pred.expected_spend is None else float(pred.expected_spend[i])
        clv = None if pred.clv is None else float(pred.clv[i])
        customers.append(
            {
                "customer_id": str(s.external_id[i]),
                "frequency": float(s.frequency[i]),
                "recency": float(s.recency[i]),
                "T": float(s.T[i]),
                "monetary_value": float(s.monetary[i]),
                "expected_purchases": float(pred.expected_purchases[i]),
                "p_alive": float(pred.p_alive[i]),
                "expected_spend": spend,
                "clv": clv,
                "historic_clv": float(historic[i]),
            }
        )
    with engine.begin() as conn:
        stamp = store.ts(now, conn)
        u = store.date_value(until, conn)
        for i, c in enumerate(customers):
            rows.append(
                (workspace, int(s.customer_id[i]), version, u, unit, float(horizon), c["frequency"], c["recency"], c["T"],
                 c["monetary_value"], c["expected_purchases"], c["p_alive"], c["expected_spend"], c["clv"], c["historic_clv"], stamp)
            )
        store.replace_rows(conn, store.clv_values, workspace, [col.name for col in store.clv_values.columns], rows)
    return {
        "model_version": version,
        "model": purchase["model"],
        "params": purchase["params"],
        "gg_params": gg["params"] if gg else None,
        "until": until.isoformat(),
        "unit": unit,
        "horizon": float(horizon),
        "discount_rate": d,
        "margin": mg,
        "n_customers": len(customers),
        "customers": customers,
    }


def historic(engine: sa.engine.Engine, workspace: str, *, now: dt.datetime, until: dt.date | None = None, margin: float = 1.0) -> list[dict[str, Any]]:
    """Historic CLV: the margin each customer brought to date (amount - cost, or amount x margin)."""
    with engine.connect() as conn:
        s, _ = _summary(conn, workspace, until or now.date(), "week", now.date(), margin)
    return [
        {"customer_id": str(e), "purchases": int(n), "revenue": float(t), "historic_clv": float(h)}
        for e, n, t, h in zip(s.external_id, s.n_days, s.total, s.historic_margin)
    ]


def rfm(
    engine: sa.engine.Engine,
    workspace: str,
    *,
    now: dt.datetime,
    as_of: dt.date | None = None,
    segments: list[dict[str, Any]] | None = None,
    store_results: bool = True,
) -> dict[str, Any]:
    """RFM quintiles and segments as of a date (default: today); the 80/20 view; stored per customer."""
    import numpy as np

    from corecrm_plugins.clv import rfm as rfm_mod
    from corecrm_plugins.clv.summary import day_number

    store.ensure_tables(engine)
    as_of = as_of or now.date()
    with engine.connect() as conn:
        s, _ = _summary(conn, workspace, as_of, "day", now.date(), 1.0, with_margin=False)
    days_since = day_number(as_of) - s.last_day
    r, f, m = rfm_mod.rfm_scores(days_since, s.n_days, s.total, s.customer_id)
    seg = rfm_mod.assign_segments(r, f, m, segments if segments is not None else rfm_mod.DEFAULT_SEGMENTS)
    code = 100 * r + 10 * f + m
    if store_results:
        with engine.begin() as conn:
            stamp = store.ts(now, conn)
            d = store.date_value(as_of, conn)
            rows = [
                (workspace, int(c), d, int(ds), int(n), float(t), int(a), int(b), int(cc), int(k), str(sg), stamp)
                for c, ds, n, t, a, b, cc, k, sg in zip(s.customer_id, days_since, s.n_days, s.total, r, f, m, code, seg)
            ]
            store.replace_rows(conn, store.clv_rfm, workspace, [col.name for col in store.clv_rfm.columns], rows)
    names, counts = np.unique(seg.astype(str), return_counts=True)
    by_segment = []
    for name, cnt in sorted(zip(names, counts), key=lambda t: (-t[1], t[0])):
        sel = seg == name
        by_segment.append(
            {"segment": str(name), "customers": int(cnt), "share": float(cnt / len(s)), "revenue": float(s.total[sel].sum()),
             "mean_spend": float(s.total[sel].mean())}
        )
    return {
        "as_of": as_of.isoformat(),
        "n_customers": len(s),
        "customers": [
            {"customer_id": str(e), "recency_days": int(ds), "frequency": int(n), "monetary": float(t), "r": int(a), "f": int(b),
             "m": int(cc), "code": int(k), "segment": str(sg)}
            for e, ds, n, t, a, b, cc, k, sg in zip(s.external_id, days_since, s.n_days, s.total, r, f, m, code, seg)
        ],
        "segments": by_segment,
        "mean_spend_by_m": [float(s.total[m == k].mean()) if np.any(m == k) else None for k in range(1, 6)],
        "pareto": rfm_mod.pareto_view(s.total),
    }
