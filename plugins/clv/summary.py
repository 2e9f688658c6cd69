"""The per-customer summary the models are fitted on (BTYD conventions).

Transactions are first collapsed to one purchase *day* per customer (same-day
amounts summed). For customer purchase days ``t1 < … < tn`` up to and including
the end of the calibration period ``τ``:

* ``frequency`` x = n - 1, the number of **repeat** purchase days;
* ``recency`` t_x = tn - t1, the customer's age at the last purchase (0 when x = 0);
* ``T`` = τ - t1, the customer's age at τ;
* ``monetary`` m_x = the mean amount of the repeat purchase days (0 when x = 0).

Times are in ``unit`` (``day`` = 1, ``week`` = 7, ``month`` = 365.25/12 days).
The summary is built from per-customer aggregates (first day, last day,
number of days, total, first-day amount) that the database computes in SQL
(:mod:`corecrm_plugins.clv.store`); :func:`from_transactions` builds the same
aggregates in numpy for files and benchmarks.
"""

from __future__ import annotations

import datetime as dt
from typing import Sequence

import attrs
import numpy as np

from corecrm_plugins.clv.errors import ClvError

#: Days per time unit.
UNIT_DAYS: dict[str, float] = {"day": 1.0, "week": 7.0, "month": 365.25 / 12.0}
_EPOCH = dt.date(1970, 1, 1)


def day_number(value: dt.date | str) -> int:
    """Days since 1970-01-01 for a date (or an ISO ``YYYY-MM-DD`` string, as SQLite returns it)."""
    if isinstance(value, str):
        value = dt.date.fromisoformat(value[:10])
    if isinstance(value, dt.datetime):
        value = value.date()
    return (value - _EPOCH).days


def unit_days(unit: str) -> float:
    try:
        return UNIT_DAYS[unit]
    except KeyError:
        raise ClvError(f"unknown time unit {unit!r} (valid: {', '.join(UNIT_DAYS)})") from None


@attrs.define(slots=True, eq=False)
class Aggregates:
    """One row per customer: what SQL returns (days are day numbers)."""

    customer_id: np.ndarray  #: internal ids (int)
    first_day: np.ndarray
    last_day: np.ndarray
    n_days: np.ndarray
    total: np.ndarray
    first_amount: np.ndarray
    margin: np.ndarray  #: Σ (amount - cost), with ``margin`` × amount where cost is unknown
    external_id: np.ndarray | None = None  #: ids as imported (object array), when known

    def __len__(self) -> int:
        return int(self.customer_id.size)


@attrs.define(slots=True, eq=False)
class Summary:
    """Frequency / recency / T / monetary value per customer, in ``unit``."""

    customer_id: np.ndarray
    frequency: np.ndarray
    recency: np.ndarray
    T: np.ndarray
    monetary: np.ndarray
    total: np.ndarray
    historic_margin: np.ndarray
    n_days: np.ndarray
    last_day: np.ndarray
    until: dt.date
    unit: str
    external_id: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.customer_id.size)

    def rows(self) -> list[tuple]:
        ext = self.external_id if self.external_id is not None else self.customer_id
        return list(zip(ext.tolist(), self.frequency.tolist(), self.recency.tolist(), self.T.tolist(), self.monetary.tolist()))


def summarise(agg: Aggregates, until: dt.date, unit: str = "week") -> Summary:
    """Turn per-customer aggregates into the BTYD summary (see the module docstring)."""
    per = unit_days(unit)
    if len(agg) == 0:
        raise ClvError(f"no transactions on or before {until.isoformat()}: nothing to summarise")
    end = day_number(until)
    n = agg.n_days.astype(np.int64)
    if np.any(n < 1):
        raise ClvError("internal: a customer with no purchase day in the summary")
    late = np.flatnonzero(agg.last_day > end)
    if late.size:
        raise ClvError(f"customer {_name(agg, late[0])}: a purchase after the end of the period {until.isoformat()}")
    x = (n - 1).astype(float)
    recency = (agg.last_day - agg.first_day) / per
    T = (end - agg.first_day) / per
    with np.errstate(invalid="ignore", divide="ignore"):
        monetary = np.where(x > 0, (agg.total - agg.first_amount) / np.maximum(x, 1.0), 0.0)
    return Summary(
        customer_id=agg.customer_id,
        frequency=x,
        recency=recency.astype(float),
        T=T.astype(float),
        monetary=monetary.astype(float),
        total=agg.total.astype(float),
        historic_margin=agg.margin.astype(float),
        n_days=n,
        last_day=agg.last_day,
        until=until,
        unit=unit,
        external_id=agg.external_id,
    )


def _name(agg: Aggregates, i: int) -> str:
    if agg.external_id is not None:
        return str(agg.external_id[i])
    return str(agg.customer_id[i])


def aggregates_from_transactions(
    customer: Sequence, day: Sequence[int], amount: Sequence[float], *, until: dt.date | None = None, cost: Sequence[float] | None = None, margin: float = 1.0
) -> Aggregates:
    """Per-customer aggregates from transaction arrays (numpy; for files and the benchmark floor).

    ``customer`` may hold any sortable ids; ``day`` is day numbers. Transactions
    after ``until`` are ignored (they belong to a holdout period).
    """
    cust = np.asarray(customer)
    day = np.asarray(day, dtype=np.int64)
    amount = np.asarray(amount, dtype=float)
    c = np.full(amount.shape, np.nan) if cost is None else np.asarray(cost, dtype=float)
    if until is not None:
        keep = day <= day_number(until)
        cust, day, amount, c = cust[keep], day[keep], amount[keep], c[keep]
    if cust.size == 0:
        empty = np.array([], dtype=np.int64)
        return Aggregates(empty, empty, empty, empty, np.array([]), np.array([]), np.array([]), np.array([], dtype=object))
    uc, cidx = np.unique(cust, return_inverse=True)
    order = np.lexsort((day, cidx))
    cidx, day, amount, c = cidx[order], day[order], amount[order], c[order]
    marg = np.where(np.isnan(c), amount * margin, amount - c)
    # one row per (customer, day)
    new_day = np.ones(cidx.size, dtype=bool)
    new_day[1:] = (cidx[1:] != cidx[:-1]) | (day[1:] != day[:-1])
    starts = np.flatnonzero(new_day)
    d_c, d_day = cidx[starts], day[starts]
    d_amt = np.add.reduceat(amount, starts)
    d_marg = np.add.reduceat(marg, starts)
    new_c = np.ones(d_c.size, dtype=bool)
    new_c[1:] = d_c[1:] != d_c[:-1]
    cs = np.flatnonzero(new_c)
    ends = np.append(cs[1:], d_c.size) - 1
    return Aggregates(
        customer_id=np.arange(uc.size),
        first_day=d_day[cs],
        last_day=d_day[ends],
        n_days=np.diff(np.append(cs, d_c.size)),
        total=np.add.reduceat(d_amt, cs),
        first_amount=d_amt[cs],
        margin=np.add.reduceat(d_marg, cs),
        external_id=uc,
    )


def holdout_counts(
    customer: Sequence, day: Sequence[int], *, after: dt.date, until: dt.date
) -> tuple[np.ndarray, np.ndarray]:
    """Distinct purchase days per customer in ``(after, until]``: ``(customer ids, counts)``."""
    cust = np.asarray(customer)
    day = np.asarray(day, dtype=np.int64)
    keep = (day > day_number(after)) & (day <= day_number(until))
    pairs = np.unique(np.stack([np.unique(cust[keep], return_inverse=True)[1], day[keep]]), axis=1) if keep.any() else np.zeros((2, 0), int)
    ids = np.unique(cust[keep])
    counts = np.bincount(pairs[0], minlength=ids.size) if pairs.size else np.zeros(0, int)
    return ids, counts
