"""RFM quintile scores, named segments, and the 80/20 (Pareto) view.

Scores (1..5 per dimension) are *rank-then-quintile*: customers are ranked by
the value, ties broken by ascending customer id (deterministic, the same on
every run and database), and the ranks 1..N are cut at the 20/40/60/80 %
quantiles of 1..N, as ``pandas.qcut(x.rank(method="first"), 5)`` does. Every
score therefore has (almost) exactly N/5 customers, even when most customers
share a value (on CDNOW 52 % bought on one day only).

* R = days from the last purchase to the end date; fewer days score higher.
* F = number of distinct purchase days.
* M = total spend.

Segments are rules over the scores, first match wins (configurable in TOML
under ``[[plugins.clv.segments]]``; see :data:`DEFAULT_SEGMENTS`).
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np

from corecrm_plugins.clv.segments import DEFAULT_SEGMENTS, OTHER, validate_segments

__all__ = ["DEFAULT_SEGMENTS", "OTHER", "assign_segments", "pareto_view", "quintile_scores", "rfm_scores", "validate_segments"]

def quintile_scores(values: np.ndarray, ids: np.ndarray, *, reverse: bool = False) -> np.ndarray:
    """Scores 1..5: rank ``values`` (ties by ascending ``ids``), cut the ranks into quintiles.

    ``reverse=True`` gives 5 to the smallest values (recency in days).
    """
    values = np.asarray(values, dtype=float)
    n = values.size
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    order = np.lexsort((np.asarray(ids), -values if reverse else values))
    rank = np.empty(n, dtype=float)
    rank[order] = np.arange(1, n + 1)
    edges = 1.0 + (n - 1) * np.array([0.2, 0.4, 0.6, 0.8])
    return np.searchsorted(edges, rank, side="left").astype(np.int64) + 1


def rfm_scores(days_since_last: np.ndarray, n_days: np.ndarray, total: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return (
        quintile_scores(days_since_last, ids, reverse=True),
        quintile_scores(n_days, ids),
        quintile_scores(total, ids),
    )


def assign_segments(r: np.ndarray, f: np.ndarray, m: np.ndarray, rules: Sequence[Mapping[str, Any]]) -> np.ndarray:
    """Segment name per customer: the first rule whose ranges all contain the scores."""
    out = np.full(r.size, OTHER, dtype=object)
    free = np.ones(r.size, dtype=bool)
    for rule in rules:
        sel = free.copy()
        for dim, arr in (("r", r), ("f", f), ("m", m)):
            if dim in rule:
                lo, hi = rule[dim]
                sel &= (arr >= lo) & (arr <= hi)
        out[sel] = rule["name"]
        free &= ~sel
    return out


def pareto_view(values: np.ndarray, *, top_share: float = 0.2, value_share: float = 0.8) -> dict[str, Any]:
    """Share of value held by the top ``top_share`` of customers, customers needed for ``value_share`` of value, Gini."""
    v = np.sort(np.asarray(values, dtype=float))[::-1]
    n = v.size
    total = float(v.sum())
    if n == 0 or total <= 0:
        return {"customers": n, "total": total, "top_customers": 0, "top_share_of_value": None,
                "customers_for_value_share": None, "fraction_for_value_share": None, "gini": None}
    k = math.ceil(top_share * n - 1e-9)
    cum = np.cumsum(v)
    need = int(np.searchsorted(cum, value_share * total - 1e-9, side="left")) + 1
    asc = v[::-1]
    gini = float(1.0 - 2.0 * np.sum(np.cumsum(asc) - asc / 2.0) / (n * total))
    return {
        "customers": n,
        "total": total,
        "top_fraction": top_share,
        "top_customers": k,
        "top_share_of_value": float(cum[k - 1] / total) if k else 0.0,
        "value_share": value_share,
        "customers_for_value_share": need,
        "fraction_for_value_share": need / n,
        "gini": gini,
    }
