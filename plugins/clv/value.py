"""Per-customer predictions and customer lifetime value from fitted models.

CLV over a horizon of ``H`` time units is the discounted sum of monthly cash
flows (the lifetimes / pymc-marketing definition)::

    CLV = margin · E[M] · Σ_{i=1..n} (E[X(t_i)] - E[X(t_{i-1})]) / (1 + d)^i

with ``t_i = min(i·f, H)``, ``f`` the number of time units per month
(week: 365.25/12/7 ≈ 4.348, day: 30.44, month: 1), ``n = ceil(H / f)`` and
``d`` the *monthly* discount rate. ``E[X(t)]`` is the model's conditional
expectation of repeat purchases, ``E[M]`` the Gamma-Gamma expected spend.

Everything is computed on distinct ``(x, t_x, T)`` rows and spread back to the
customers, so a million customers cost a few thousand model evaluations.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import attrs
import numpy as np

from corecrm_plugins.clv import models
from corecrm_plugins.clv.errors import ClvError
from corecrm_plugins.clv.summary import UNIT_DAYS, Summary

_DAYS_PER_MONTH = 365.25 / 12.0


@attrs.define(slots=True, eq=False)
class Predictions:
    """Arrays aligned with the summary's customers."""

    expected_purchases: np.ndarray
    p_alive: np.ndarray
    expected_spend: np.ndarray | None
    clv: np.ndarray | None
    horizon: float
    unit: str


def units_per_month(unit: str) -> float:
    return _DAYS_PER_MONTH / UNIT_DAYS[unit]


def predict(
    summary: Summary,
    model: str,
    params: Mapping[str, float],
    *,
    horizon: float,
    gg_params: Mapping[str, float] | None = None,
    discount_rate: float = 0.01,
    margin: float = 1.0,
) -> Predictions:
    """Expected purchases over ``horizon``, P(alive), expected spend and CLV per customer."""
    if horizon <= 0 or not math.isfinite(horizon):
        raise ClvError(f"horizon must be a positive number of {summary.unit}s, got {horizon!r}")
    if discount_rate < 0:
        raise ClvError(f"discount rate must be >= 0, got {discount_rate!r}")
    if not 0 <= margin <= 1:
        raise ClvError(f"margin must be between 0 and 1, got {margin!r}")
    theta = tuple(params[n] for n in models.PARAM_NAMES[model])
    (ux, ut, uT), _w, inv = models.collapse(summary.frequency, summary.recency, summary.T)
    exp_u = models.expected_purchases(model, theta, ux, ut, uT, horizon)
    alive_u = models.p_alive(model, theta, ux, ut, uT)
    spend = clv = None
    if gg_params is not None:
        g = tuple(gg_params[n] for n in models.PARAM_NAMES["gg"])
        spend = models.gg_expected_spend(g, summary.frequency, summary.monetary)
        f = units_per_month(summary.unit)
        steps = max(1, math.ceil(horizon / f - 1e-9))
        disc_u = np.zeros_like(ux)
        prev = np.zeros_like(ux)
        for i in range(1, steps + 1):
            t = min(i * f, horizon)
            cur = models.expected_purchases(model, theta, ux, ut, uT, t)
            disc_u += (cur - prev) / (1.0 + discount_rate) ** i
            prev = cur
        clv = margin * spend * disc_u[inv]
        if np.any(clv < 0) or not np.all(np.isfinite(clv)):
            raise ClvError("CLV came out negative or infinite; the fitted models are not usable for value (check the Gamma-Gamma fit)")
    return Predictions(exp_u[inv], alive_u[inv], spend, clv, float(horizon), summary.unit)


def holdout_report(
    summary: Summary, model: str, params: Mapping[str, float], actual: np.ndarray, holdout_length: float
) -> dict[str, Any]:
    """Predicted vs actual repeat purchases in the holdout, overall and by calibration frequency (0..7+).

    This is FHL 2005's Figure 4 table: customers grouped by how many repeat
    purchases they made in the calibration period.
    """
    pred = predict(summary, model, params, horizon=holdout_length).expected_purchases
    actual = np.asarray(actual, dtype=float)
    x = summary.frequency
    groups = []
    for k in range(8):
        sel = x == k if k < 7 else x >= 7
        n = int(sel.sum())
        groups.append(
            {
                "frequency": f"{k}+" if k == 7 else str(k),
                "customers": n,
                "actual": float(actual[sel].mean()) if n else None,
                "predicted": float(pred[sel].mean()) if n else None,
            }
        )
    return {
        "model": model,
        "holdout_length": holdout_length,
        "unit": summary.unit,
        "customers": int(x.size),
        "actual_total": float(actual.sum()),
        "predicted_total": float(pred.sum()),
        "mean_absolute_error": float(np.abs(pred - actual).mean()),
        "correlation": float(np.corrcoef(pred, actual)[0, 1]) if x.size > 1 and np.ptp(actual) > 0 else None,
        "by_frequency": groups,
        "predicted": pred,
    }
