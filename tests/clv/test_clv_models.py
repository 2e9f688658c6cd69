"""The math engine against the published CDNOW results (no database needed).

Published values: Fader, Hardie & Lee (2005) for BG/NBD and Pareto/NBD, Fader &
Hardie's Gamma-Gamma note for spend; 2,357 customers, calibration period ending
1997-09-30 inclusive (39 weeks), time in weeks, summary computed here from the
raw transaction file.
"""

from __future__ import annotations

import datetime as dt
import math
from decimal import ROUND_HALF_UP, Decimal

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clv_testdata import cdnow_transactions  # noqa: F401  (fixtures)

from corecrm_plugins.clv import models, summary, value
from corecrm_plugins.clv.errors import ClvError, ConvergenceError

CAL_END = dt.date(1997, 9, 30)


@pytest.fixture(scope="module")
def cal(cdnow_transactions):
    ids = np.array([t[0] for t in cdnow_transactions])
    days = np.array([summary.day_number(t[1]) for t in cdnow_transactions])
    amounts = np.array([t[2] for t in cdnow_transactions])
    agg = summary.aggregates_from_transactions(ids, days, amounts, until=CAL_END)
    return summary.summarise(agg, CAL_END, "week"), (ids, days, amounts)


def _half_up(v: float) -> Decimal:
    return Decimal(repr(round(float(v), 9))).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


def test_summary_matches_shipped_file_exactly(cal):
    from clv_testdata import read_summary_with_transactions

    s, _ = cal
    shipped = read_summary_with_transactions()
    assert len(s) == len(shipped) == 2357
    mine = {
        int(c): (int(x), _half_up(r), _half_up(t), _half_up(m))
        for c, x, r, t, m in zip(s.external_id, s.frequency, s.recency, s.T, s.monetary)
    }
    for row in shipped:
        expected = (int(row["x"]), Decimal(row["t_x"]), Decimal(row["T"]), Decimal(row["zbar"]))
        assert mine[int(row["ID"])] == expected, row["ID"]
    assert int(s.frequency.sum()) == 2457
    assert (s.frequency > 0).sum() == 946
    # 35.0786 is the mean of the rounded zbar column; the exact mean of the repeat spend is 35.0778
    assert s.monetary[s.frequency > 0].mean() == pytest.approx(35.0778, abs=1e-4)


def test_bgnbd_matches_published(cal):
    s, _ = cal
    fit = models.fit_bgnbd(s.frequency, s.recency, s.T)
    assert [round(v, 3) for v in fit.as_tuple()] == [0.243, 4.414, 0.793, 2.426]
    assert round(fit.log_likelihood, 1) == -9582.4
    # the exact MLE (BTYD / CLVTools) to 5 significant digits
    assert fit.as_tuple() == pytest.approx((0.2425945, 4.4136019, 0.7929199, 2.4258881), rel=2e-5)
    assert fit.n_customers == 2357 and fit.n_rows < 2357


def test_pareto_matches_published(cal):
    s, _ = cal
    fit = models.fit_pareto(s.frequency, s.recency, s.T)
    assert [round(v, 3) for v in fit.as_tuple()] == [0.553, 10.578, 0.606, 11.669]
    assert round(fit.log_likelihood, 1) == -9595.0


def test_gamma_gamma_matches_published(cal):
    s, _ = cal
    fit = models.fit_gg(s.frequency, s.monetary)
    assert fit.n_customers == 946
    assert [round(v, 2) for v in fit.as_tuple()] == [6.25, 3.74, 15.44]
    assert fit.log_likelihood == pytest.approx(-4055.9177, abs=1e-3)
    assert not fit.warnings  # corr(x, m_x) is small on CDNOW


@pytest.mark.parametrize(
    "name,theta",
    [("bgnbd", (0.3, 4.0, 0.8, 2.4)), ("pareto", (0.55, 10.0, 0.6, 11.0)), ("pareto", (0.5, 12.0, 0.7, 3.0)), ("gg", (6.0, 3.7, 15.0))],
)
def test_analytic_gradient_matches_finite_differences(cal, name, theta):
    s, _ = cal
    data = (s.frequency[s.frequency > 0], s.monetary[s.frequency > 0]) if name == "gg" else (s.frequency, s.recency, s.T)
    fn = {"bgnbd": models.bgnbd_loglik, "pareto": models.pareto_loglik, "gg": models.gg_loglik}[name]
    _, g = fn(theta, *data, grad=True)
    analytic = g.sum(axis=1)
    for i in range(len(theta)):
        h = 1e-6 * theta[i]
        up, down = list(theta), list(theta)
        up[i] += h
        down[i] -= h
        numeric = (models.total_loglik(name, up, *data) - models.total_loglik(name, down, *data)) / (2 * h)
        assert analytic[i] == pytest.approx(numeric, rel=1e-4, abs=1e-3)


def test_pareto_quadrature_matches_hypergeometric_form(cal):
    """The integral form equals Hardie's A0 with 2F1 (note 009) in both branches α<β and α≥β."""
    from scipy import special

    s, _ = cal
    x, tx, T = s.frequency[:300], s.recency[:300], s.T[:300]
    for r, alpha, s_, beta in [(0.553, 10.578, 0.606, 11.669), (0.5, 14.0, 0.8, 6.0)]:
        ab = r + s_ + x
        if alpha >= beta:
            big, other = alpha, s_ + 1
        else:
            big, other = beta, r + x
        z1, z2 = abs(alpha - beta) / (big + tx), abs(alpha - beta) / (big + T)
        a0 = special.hyp2f1(ab, other, ab + 1, z1) / (big + tx) ** ab - special.hyp2f1(ab, other, ab + 1, z2) / (big + T) ** ab
        lik = special.gamma(r + x) * alpha**r * beta**s_ / special.gamma(r) * (
            1 / ((alpha + T) ** (r + x) * (beta + T) ** s_) + s_ / ab * a0
        )
        mine = models.pareto_loglik((r, alpha, s_, beta), x, tx, T)
        assert np.exp(mine) == pytest.approx(lik, rel=1e-9)


def test_weighted_fit_on_collapsed_rows_equals_fit_on_repeated_rows(cal):
    s, _ = cal
    rep = np.tile(np.arange(len(s)), 3)
    once = models.fit_bgnbd(s.frequency, s.recency, s.T)
    thrice = models.fit_bgnbd(s.frequency[rep], s.recency[rep], s.T[rep])
    assert thrice.as_tuple() == pytest.approx(once.as_tuple(), rel=1e-5)  # the optimiser's tolerance
    assert thrice.log_likelihood == pytest.approx(3 * once.log_likelihood)
    assert thrice.n_rows == once.n_rows


def test_predictions_on_cdnow(cal):
    s, _ = cal
    bg = models.fit_bgnbd(s.frequency, s.recency, s.T)
    gg = models.fit_gg(s.frequency, s.monetary)
    p = value.predict(s, "bgnbd", bg.params, horizon=39, gg_params=gg.params, discount_rate=0.01, margin=1.0)
    # 1,882 repeat purchase days were actually made in weeks 40-78
    assert 1550 < p.expected_purchases.sum() < 1750
    assert np.all((p.p_alive > 0) & (p.p_alive <= 1))
    assert np.all(p.p_alive[s.frequency == 0] == 1.0)
    assert np.all(p.clv >= 0)
    assert np.all(p.expected_spend > 0)
    # a pure formula check: E[M] for x=0 is the population mean pγ/(q-1)
    pp, q, g = gg.as_tuple()
    assert p.expected_spend[s.frequency == 0][0] == pytest.approx(pp * g / (q - 1))
    # discounting lowers value, margin scales it
    p0 = value.predict(s, "bgnbd", bg.params, horizon=39, gg_params=gg.params, discount_rate=0.0, margin=0.5)
    assert np.all(p0.clv * 2 >= p.clv - 1e-9)
    pa = models.fit_pareto(s.frequency, s.recency, s.T)
    pp_ = value.predict(s, "pareto", pa.params, horizon=39)
    assert 1550 < pp_.expected_purchases.sum() < 1750


def test_holdout_report_on_cdnow(cal):
    s, (ids, days, _amounts) = cal
    hold_ids, counts = summary.holdout_counts(ids, days, after=CAL_END, until=dt.date(1998, 6, 30))
    actual = np.zeros(len(s))
    pos = {int(c): i for i, c in enumerate(s.external_id)}
    for c, n in zip(hold_ids, counts):
        actual[pos[int(c)]] = n
    # counted independently: distinct (customer, day) pairs after the calibration end
    assert actual.sum() == len({(i, d) for i, d in zip(ids, days) if d > summary.day_number(CAL_END)}) == 1882
    bg = models.fit_bgnbd(s.frequency, s.recency, s.T)
    rep = value.holdout_report(s, "bgnbd", bg.params, actual, 39.0)
    assert rep["actual_total"] == 1882
    assert rep["predicted_total"] == pytest.approx(rep["predicted"].sum())
    assert 0.8 < rep["predicted_total"] / rep["actual_total"] < 1.0
    assert [g["customers"] for g in rep["by_frequency"]][:2] == [1411, 439]


def test_a_close_to_one_is_not_nan():
    x, tx, T = np.array([0.0, 2.0, 5.0]), np.array([0.0, 10.0, 30.0]), np.array([38.0, 38.0, 38.0])
    out = models.bgnbd_expected_purchases((0.25, 4.4, 1.0, 2.4), x, tx, T, 39.0)
    near = models.bgnbd_expected_purchases((0.25, 4.4, 1.001, 2.4), x, tx, T, 39.0)
    assert np.all(np.isfinite(out))
    assert out == pytest.approx(near, rel=1e-2)


# --------------------------------------------------------------------------- bad data


def test_empty_summary_is_refused():
    with pytest.raises(ClvError, match="empty"):
        models.fit_bgnbd([], [], [])


def test_no_repeat_buyers_is_refused():
    with pytest.raises(ClvError, match="no customer has a repeat purchase"):
        models.fit_bgnbd([0, 0, 0], [0, 0, 0], [5, 6, 7])
    with pytest.raises(ClvError, match="repeat buyer"):
        models.fit_gg([0, 0, 0], [0, 0, 0])


def test_single_customer_is_refused():
    with pytest.raises(ClvError, match="single customer"):
        models.fit_pareto([3], [10], [20])


def test_recency_after_t_names_the_row():
    with pytest.raises(ClvError, match=r"row 1: recency 9.0 is after T 8.0"):
        models.fit_bgnbd([1, 2], [1, 9], [5, 8])


def test_non_positive_spend_is_refused_with_the_row():
    with pytest.raises(ClvError, match="row 1: repeat buyer with mean repeat spend -3"):
        models.fit_gg([1, 2, 3], [10.0, -3.0, 4.0])


def test_fit_that_does_not_converge_is_reported():
    # every customer bought on every day of a long history: the drop-out
    # probability runs to zero and a parameter to its bound.
    x = np.array([50.0, 60.0, 70.0, 80.0])
    with pytest.raises(ConvergenceError, match="did not converge"):
        models.fit_bgnbd(x, x, x)


def test_gamma_gamma_with_q_below_one_is_refused_not_negative():
    with pytest.raises(ClvError, match="q = 0.5"):
        models.gg_expected_spend((6.0, 0.5, 15.0), [1.0], [20.0])


def test_correlated_spend_and_frequency_warns():
    rng = np.random.default_rng(1)
    x = rng.integers(1, 20, size=500).astype(float)
    m = rng.gamma(6.0, 1.0 + x)  # mean spend grows with frequency
    with pytest.warns(UserWarning, match="correlated"):
        fit = models.fit_gg(x, m)
    assert fit.warnings


def test_bad_horizon_and_rates_are_refused(cal):
    s, _ = cal
    with pytest.raises(ClvError, match="horizon"):
        value.predict(s, "bgnbd", {"r": 0.24, "alpha": 4.4, "a": 0.79, "b": 2.4}, horizon=0)
    with pytest.raises(ClvError, match="margin"):
        value.predict(s, "bgnbd", {"r": 0.24, "alpha": 4.4, "a": 0.79, "b": 2.4}, horizon=4, gg_params={"p": 6, "q": 3, "gamma": 15}, margin=2)


# --------------------------------------------------------------------------- properties


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 6), st.integers(0, 400), st.floats(0.01, 500, allow_nan=False)),
        min_size=1,
        max_size=40,
    ),
    st.sampled_from(["day", "week", "month"]),
)
def test_summary_invariants(txs, unit):
    ids = np.array([t[0] for t in txs])
    days = np.array([t[1] for t in txs])
    amounts = np.array([t[2] for t in txs])
    until = summary._EPOCH + dt.timedelta(days=400)
    s = summary.summarise(summary.aggregates_from_transactions(ids, days, amounts, until=until), until, unit)
    assert np.all(s.recency <= s.T + 1e-12)
    assert np.all((s.frequency == 0) == (s.recency == 0))
    assert np.all(s.monetary[s.frequency == 0] == 0)
    for c, x, total in zip(s.external_id, s.frequency, s.total):
        mine = [(d, a) for i, d, a in zip(ids, days, amounts) if i == c]
        assert x == len({d for d, _ in mine}) - 1
        assert math.isclose(total, sum(a for _, a in mine), rel_tol=1e-9)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 5), min_size=1, max_size=200), st.randoms(use_true_random=False))
def test_quintile_scores_are_balanced_and_deterministic(values, rnd):
    from corecrm_plugins.clv import rfm

    ids = np.arange(len(values))
    scores = rfm.quintile_scores(np.array(values, dtype=float), ids)
    n = len(values)
    sizes = np.bincount(scores, minlength=6)[1:]
    assert sizes.sum() == n and sizes.max() - sizes.min() <= 1 + (n < 5) * 1
    # same input in another row order gives each customer the same score
    perm = list(range(n))
    rnd.shuffle(perm)
    again = rfm.quintile_scores(np.array(values, dtype=float)[perm], ids[perm])
    assert (again == scores[perm]).all()
    # a higher value never gets a lower score
    order = np.lexsort((ids, values))
    assert np.all(np.diff(scores[order]) >= 0)
