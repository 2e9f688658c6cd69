"""Buy-till-you-die models fitted by maximum likelihood: BG/NBD, Pareto/NBD, Gamma-Gamma.

Each model has a log-likelihood *and its analytic gradient* per summary row,
so the fit runs a bounded truncated-Newton optimiser (scipy's TNC) on log-parameters (positivity for free, bounded so a
runaway parameter is reported instead of returned). Rows are weighted: a
million customers collapse to a few thousand distinct ``(x, t_x, T)`` rows
(:func:`collapse`), and each distinct row is evaluated once.

The log-likelihoods are the papers' (summed, in the caller's time unit), so the
value printed for CDNOW in weeks is the published one (BG/NBD -9582.4,
Pareto/NBD -9595.0); see ``docs/plugins/clv.md`` for the formulas.

* BG/NBD: Fader, Hardie & Lee (2005), "Counting your customers the easy way",
  Marketing Science 24(2), eq. (6) and (10).
* Pareto/NBD: Schmittlein, Morrison & Colombo (1987); the likelihood is written
  as ``Γ(r+x)α^r β^s/Γ(r) · [(α+T)^-(r+x) (β+T)^-s + s ∫_{t_x}^T (α+τ)^-(r+x) (β+τ)^-(s+1) dτ]``
  (the integral is what Hardie's note 009 writes with a Gauss hypergeometric
  function). It is evaluated by Gauss-Legendre quadrature, which is smooth in
  the parameters, so the gradient is exact for the quadrature and no ``2F1``
  branch (α ≥ β or α < β) or overflow can bite.
* Gamma-Gamma: Fader & Hardie, "The Gamma-Gamma model of monetary value" (2013),
  fitted on repeat buyers (x > 0, m_x > 0) only.

numpy/scipy are imported here, never at plugin import time.
"""

from __future__ import annotations

import math
import warnings
from typing import Any, Callable, Sequence

import attrs
import numpy as np
from scipy import optimize, special

from corecrm_plugins.clv.errors import ClvError, ConvergenceError

#: Names of the parameters as the papers print them, per model.
PARAM_NAMES: dict[str, tuple[str, ...]] = {
    "bgnbd": ("r", "alpha", "a", "b"),
    "pareto": ("r", "alpha", "s", "beta"),
    "gg": ("p", "q", "gamma"),
}

#: log-parameter bounds: [1e-6, 1e6]; a fit that ends on a bound did not converge.
_LOG_BOUND = math.log(1e6)
#: Gauss-Legendre nodes for the Pareto/NBD integral.
_GL_NODES = 64
#: Largest gradient (of the mean log-likelihood wrt log-parameters) accepted at the optimum.
_GRAD_TOL = 1e-5


@attrs.define(slots=True)
class FitResult:
    """A fitted model: parameters named as in the papers, the summed log-likelihood and how it got there."""

    model: str
    params: dict[str, float]
    log_likelihood: float
    n_customers: int
    n_rows: int  #: distinct summary rows the likelihood was evaluated on
    iterations: int
    unit: str = "week"
    warnings: list[str] = attrs.field(factory=list)

    def as_tuple(self) -> tuple[float, ...]:
        return tuple(self.params[n] for n in PARAM_NAMES[self.model])

    def to_json(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "params": dict(self.params),
            "log_likelihood": self.log_likelihood,
            "n_customers": self.n_customers,
            "n_rows": self.n_rows,
            "iterations": self.iterations,
            "unit": self.unit,
            "warnings": list(self.warnings),
        }


# --------------------------------------------------------------------------- data preparation


def collapse(*columns: np.ndarray) -> tuple[tuple[np.ndarray, ...], np.ndarray, np.ndarray]:
    """Distinct rows of the given columns, their counts, and the inverse index.

    ``rows[i][inverse]`` gives back the original column ``i``: predictions are
    computed per distinct row and spread back to customers. Each column is
    factorised on its own (one 1-D sort each) and the codes are combined into
    one integer key, which is ~30x faster than ``np.unique(axis=0)`` on a
    million rows.
    """
    cols = [np.asarray(c, dtype=float) for c in columns]
    key = np.zeros(cols[0].shape, dtype=np.int64)
    span = 1
    for c in cols:
        top = float(c.max()) if c.size else 0.0
        if c.size and top < 1e6 and float(c.min()) >= 0 and np.array_equal(c, np.floor(c)):
            size, code = int(top) + 1, c.astype(np.int64)  # small whole numbers (frequency): no sort
        else:
            u, code = np.unique(c, return_inverse=True)
            size, code = int(u.size), code.reshape(-1)
        key = key * np.int64(size) + code
        span *= size
    if span <= 50_000_000:
        # counting instead of a third sort: O(n + span)
        counts_all = np.bincount(key, minlength=span)
        present = np.flatnonzero(counts_all)
        lookup = np.zeros(span, dtype=np.int64)
        lookup[present] = np.arange(present.size)
        inverse = lookup[key]
        counts = counts_all[present]
        first = np.zeros(present.size, dtype=np.int64)
        first[inverse[::-1]] = np.arange(key.size - 1, -1, -1)  # first occurrence of each distinct row
    else:
        _ukey, first, inverse, counts = np.unique(key, return_index=True, return_inverse=True, return_counts=True)
    rows = tuple(c[first] for c in cols)
    return rows, counts.astype(float), inverse.reshape(-1)


def check_rfm_arrays(x: np.ndarray, t_x: np.ndarray, T: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validate summary arrays; raise :class:`ClvError` naming the first bad customer row."""
    x = np.asarray(x, dtype=float)
    t_x = np.asarray(t_x, dtype=float)
    T = np.asarray(T, dtype=float)
    if not (x.shape == t_x.shape == T.shape) or x.ndim != 1:
        raise ClvError("frequency, recency and T must be 1-D arrays of the same length")
    if x.size == 0:
        raise ClvError("no customers to fit: the summary is empty")
    for name, arr in (("frequency", x), ("recency", t_x), ("T", T)):
        bad = np.flatnonzero(~np.isfinite(arr) | (arr < 0))
        if bad.size:
            raise ClvError(f"row {bad[0]}: {name} must be a finite number >= 0, got {float(arr[bad[0]])!r}")
    bad = np.flatnonzero(x != np.round(x))
    if bad.size:
        raise ClvError(f"row {bad[0]}: frequency must be a whole number of repeat purchases, got {float(x[bad[0]])!r}")
    bad = np.flatnonzero(t_x > T + 1e-9)
    if bad.size:
        raise ClvError(f"row {bad[0]}: recency {float(t_x[bad[0]])!r} is after T {float(T[bad[0]])!r}")
    bad = np.flatnonzero((x == 0) & (t_x != 0))
    if bad.size:
        raise ClvError(f"row {bad[0]}: recency must be 0 for a customer without repeat purchases")
    return x, t_x, T


# --------------------------------------------------------------------------- BG/NBD


class _Levels:
    """A column as its distinct values and an index: functions of it are computed once per value."""

    __slots__ = ("values", "index")

    def __init__(self, column: np.ndarray) -> None:
        self.values, index = np.unique(np.asarray(column, dtype=float), return_inverse=True)
        self.index = index.reshape(-1)

    def apply(self, fn: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
        return fn(self.values)[self.index]


def _levels(cache: dict[str, Any] | None, name: str, column: np.ndarray) -> _Levels:
    if cache is None:
        return _Levels(column)
    lv = cache.get(name)
    if lv is None:
        lv = cache[name] = _Levels(column)
    return lv


def bgnbd_loglik(theta: Sequence[float], x: np.ndarray, t_x: np.ndarray, T: np.ndarray, grad: bool = False, cache: dict[str, Any] | None = None):
    """Per-row BG/NBD log-likelihood (FHL 2005 eq. 6) and, if asked, its gradient wrt (r, α, a, b).

    Special functions are evaluated once per distinct x, logs once per distinct
    T and t_x (``cache`` keeps that factorisation across the optimiser's calls).
    """
    r, alpha, a, b = theta
    X, TX, TT = _levels(cache, "x", x), _levels(cache, "t_x", t_x), _levels(cache, "T", T)
    rx = r + x
    A1 = X.apply(lambda v: special.gammaln(r + v)) - special.gammaln(r) + r * math.log(alpha)
    A2 = X.apply(lambda v: special.gammaln(a + b) + special.gammaln(b + v) - special.gammaln(b) - special.gammaln(a + b + v))
    log_aT = TT.apply(lambda v: np.log(alpha + v))
    log_atx = TX.apply(lambda v: np.log(alpha + v))
    A3 = -rx * log_aT
    repeat = x > 0
    # masked for x = 0 (lifetimes' max(x, 1) trick): b + x - 1 may be <= 0 there
    log_bx1 = X.apply(lambda v: np.log(b + np.maximum(v, 1.0) - 1.0))
    A4 = np.where(repeat, math.log(a) - log_bx1 - rx * log_atx, -np.inf)
    mix = np.logaddexp(A3, A4)
    ll = A1 + A2 + mix
    if not grad:
        return ll
    pi = np.exp(A4 - mix)  # weight of the "dropped out after the last purchase" term
    p3 = 1.0 - pi
    g = np.empty((4, x.size))
    g[0] = X.apply(lambda v: special.digamma(r + v)) - special.digamma(r) + math.log(alpha) - p3 * log_aT - pi * log_atx
    g[1] = r / alpha - p3 * rx * TT.apply(lambda v: 1.0 / (alpha + v)) - pi * rx * TX.apply(lambda v: 1.0 / (alpha + v))
    dg_ab = X.apply(lambda v: special.digamma(a + b) - special.digamma(a + b + v))
    g[2] = dg_ab + pi / a
    g[3] = dg_ab + X.apply(lambda v: special.digamma(b + v) - special.digamma(b)) - pi * X.apply(lambda v: 1.0 / (b + np.maximum(v, 1.0) - 1.0))
    return ll, g


def bgnbd_p_alive(params: Sequence[float], x, t_x, T) -> np.ndarray:
    """P(alive | x, t_x, T) (FHL 2005 note 021); 1 for x = 0, a known BG/NBD property."""
    r, alpha, a, b = params
    x, t_x, T = (np.asarray(v, dtype=float) for v in (x, t_x, T))
    bx1 = b + np.maximum(x, 1.0) - 1.0
    log_ratio = math.log(a) - np.log(bx1) + (r + x) * (np.log(alpha + T) - np.log(alpha + t_x))
    return np.where(x > 0, special.expit(-log_ratio), 1.0)


def _bgnbd_expected(params: Sequence[float], x, t_x, T, t) -> np.ndarray:
    r, alpha, a, b = params
    if abs(a - 1.0) < 1e-6:
        # The closed form is 0/0 at a = 1; the function is smooth there, so
        # interpolate between two points either side.
        lo = _bgnbd_expected((r, alpha, 1.0 - 1e-4, b), x, t_x, T, t)
        hi = _bgnbd_expected((r, alpha, 1.0 + 1e-4, b), x, t_x, T, t)
        return (lo + hi) / 2.0
    rx = r + x
    z = t / (alpha + T + t)
    hyp = special.hyp2f1(rx, b + x, a + b + x - 1.0, z)
    bracket = 1.0 - np.exp(rx * (np.log(alpha + T) - np.log(alpha + T + t))) * hyp
    num = (a + b + x - 1.0) / (a - 1.0) * bracket
    return num * bgnbd_p_alive(params, x, t_x, T)


def bgnbd_expected_purchases(params: Sequence[float], x, t_x, T, t: float) -> np.ndarray:
    """E[Y(t) | x, t_x, T]: expected repeat purchases in the next ``t`` units (FHL 2005 eq. 10)."""
    x, t_x, T = (np.asarray(v, dtype=float) for v in (x, t_x, T))
    if t <= 0:
        return np.zeros_like(x)
    out = _bgnbd_expected(params, x, t_x, T, float(t))
    if not np.all(np.isfinite(out)):
        raise ClvError("BG/NBD expected purchases overflowed (2F1 did not converge) for some customers; use a shorter horizon or the pareto model")
    return np.maximum(out, 0.0)


def bgnbd_unconditional(params: Sequence[float], t) -> np.ndarray:
    """E[X(t)] for a new customer (FHL 2005 eq. 9): the cumulative purchases curve."""
    r, alpha, a, b = params
    t = np.asarray(t, dtype=float)
    z = t / (alpha + t)
    hyp = special.hyp2f1(r, b, a + b - 1.0, z)
    return (a + b - 1.0) / (a - 1.0) * (1.0 - (alpha / (alpha + t)) ** r * hyp)


# --------------------------------------------------------------------------- Pareto/NBD

_GL_U, _GL_W = np.polynomial.legendre.leggauss(_GL_NODES)


def _pareto_integral_terms(r, alpha, s, beta, x, t_x, T):
    """log of the Gauss-Legendre terms of ∫_{t_x}^T (α+τ)^-(r+x) (β+τ)^-(s+1) dτ, shape (rows, nodes)."""
    half = (T - t_x) / 2.0
    tau = t_x[:, None] + half[:, None] * (_GL_U[None, :] + 1.0)
    with np.errstate(divide="ignore"):
        logw = np.log(half)[:, None] + np.log(_GL_W)[None, :]
    la = np.log(alpha + tau)
    lb = np.log(beta + tau)
    terms = logw - (r + x)[:, None] * la - (s + 1.0) * lb
    return terms, tau, la, lb


def pareto_loglik(theta: Sequence[float], x: np.ndarray, t_x: np.ndarray, T: np.ndarray, grad: bool = False, cache: dict[str, Any] | None = None):
    """Per-row Pareto/NBD log-likelihood and, if asked, its gradient wrt (r, α, s, β)."""
    r, alpha, s, beta = theta
    rx = r + x
    C = special.gammaln(rx) - special.gammaln(r) + r * math.log(alpha) + s * math.log(beta)
    B1 = -rx * np.log(alpha + T) - s * np.log(beta + T)
    terms, tau, la, lb = _pareto_integral_terms(r, alpha, s, beta, x, t_x, T)
    logI = special.logsumexp(terms, axis=1)  # -inf when t_x == T
    B2 = math.log(s) + logI
    mix = np.logaddexp(B1, B2)
    ll = C + mix
    if not grad:
        return ll
    pi = np.exp(B2 - mix)
    p1 = 1.0 - pi
    with np.errstate(invalid="ignore"):
        q = np.exp(terms - logI[:, None])  # quadrature weights of the integral's own terms
    q = np.where(np.isfinite(q), q, 0.0)
    g = np.empty((4, x.size))
    g[0] = special.digamma(rx) - special.digamma(r) + math.log(alpha) + p1 * (-np.log(alpha + T)) + pi * (-(q * la).sum(axis=1))
    g[1] = r / alpha + p1 * (-rx / (alpha + T)) + pi * (-(q * (rx[:, None] / (alpha + tau))).sum(axis=1))
    g[2] = math.log(beta) + p1 * (-np.log(beta + T)) + pi * (1.0 / s - (q * lb).sum(axis=1))
    g[3] = s / beta + p1 * (-s / (beta + T)) + pi * (-(q * ((s + 1.0) / (beta + tau))).sum(axis=1))
    return ll, g


def pareto_p_alive(params: Sequence[float], x, t_x, T) -> np.ndarray:
    """P(alive | x, t_x, T) for the Pareto/NBD model."""
    r, alpha, s, beta = params
    x, t_x, T = (np.asarray(v, dtype=float) for v in (x, t_x, T))
    B1 = -(r + x) * np.log(alpha + T) - s * np.log(beta + T)
    terms, *_ = _pareto_integral_terms(r, alpha, s, beta, x, t_x, T)
    B2 = math.log(s) + special.logsumexp(terms, axis=1)
    return np.exp(B1 - np.logaddexp(B1, B2))


def pareto_expected_purchases(params: Sequence[float], x, t_x, T, t: float) -> np.ndarray:
    """E[Y(t) | x, t_x, T] for the Pareto/NBD model (Schmittlein et al. 1987, eq. 22)."""
    r, alpha, s, beta = params
    x, t_x, T = (np.asarray(v, dtype=float) for v in (x, t_x, T))
    if t <= 0:
        return np.zeros_like(x)
    rate = (r + x) / (alpha + T)
    if abs(s - 1.0) < 1e-9:
        life = (beta + T) * np.log((beta + T + t) / (beta + T))
    else:
        life = (beta + T) / (s - 1.0) * (1.0 - ((beta + T) / (beta + T + t)) ** (s - 1.0))
    return rate * life * pareto_p_alive(params, x, t_x, T)


# --------------------------------------------------------------------------- Gamma-Gamma


def gg_loglik(theta: Sequence[float], x: np.ndarray, m: np.ndarray, grad: bool = False, cache: dict[str, Any] | None = None):
    """Per-row Gamma-Gamma log-likelihood of the mean spend m_x over x repeat purchases."""
    p, q, gamma = theta
    X = _levels(cache, "x", x)
    if cache is not None and "log_m" in cache:
        log_m, log_x = cache["log_m"], cache["log_x"]
    else:
        log_m, log_x = np.log(m), np.log(x)
        if cache is not None:
            cache["log_m"], cache["log_x"] = log_m, log_x
    px = p * x
    lgm = np.log(gamma + m * x)
    ll = (
        X.apply(lambda v: special.gammaln(p * v + q) - special.gammaln(p * v))
        - special.gammaln(q)
        + q * math.log(gamma)
        + (px - 1.0) * log_m
        + px * log_x
        - (px + q) * lgm
    )
    if not grad:
        return ll
    dpq = X.apply(lambda v: special.digamma(p * v + q))
    g = np.empty((3, x.size))
    g[0] = x * (dpq - X.apply(lambda v: special.digamma(p * v)) + log_m + log_x - lgm)
    g[1] = dpq - special.digamma(q) + math.log(gamma) - lgm
    g[2] = q / gamma - (px + q) / (gamma + m * x)
    return ll, g


def gg_expected_spend(params: Sequence[float], x, m) -> np.ndarray:
    """E[M | x, m_x] = (γ + m_x x) p / (p x + q - 1); the population mean pγ/(q-1) for x = 0."""
    p, q, gamma = params
    if q <= 1.0:
        raise ClvError(f"Gamma-Gamma q = {q:.4g} <= 1: the expected spend is undefined (it would be negative); refit with more repeat buyers")
    x = np.asarray(x, dtype=float)
    m = np.where(x > 0, np.asarray(m, dtype=float), 0.0)
    return (gamma + m * x) * p / (p * x + q - 1.0)


# --------------------------------------------------------------------------- fitting


def _maximise(
    name: str,
    loglik: Callable[..., Any],
    data: tuple[np.ndarray, ...],
    weights: np.ndarray,
    starts: list[Sequence[float]],
) -> tuple[np.ndarray, float, int]:
    """Maximise Σ w·ℓ over log-parameters with a bounded Newton method (TNC) from each start; return the best."""
    n = float(weights.sum())
    cache: dict[str, Any] = {}

    def objective(log_theta: np.ndarray) -> tuple[float, np.ndarray]:
        theta = np.exp(log_theta)
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            ll, g = loglik(theta, *data, grad=True, cache=cache)
        # plain reductions, not `@`: BLAS threads on a (k x n) product cost more than they save here
        total = float(np.sum(weights * ll))
        if not math.isfinite(total):
            return 1e300, np.zeros_like(log_theta)
        grad = np.sum(g * weights, axis=1) * theta  # chain rule to log-parameters
        return -total / n, -grad / n

    bounds = [(-_LOG_BOUND, _LOG_BOUND)] * len(starts[0])
    best = None
    last_message = "no start point"
    for x0 in starts:
        res = optimize.minimize(
            objective,
            np.log(np.asarray(x0, dtype=float)),
            jac=True,
            # TNC, not L-BFGS-B: same optimum, but scipy's L-BFGS-B calls BLAS on
            # 4x4 matrices, and a threaded BLAS on a busy machine made each of its
            # iterations cost milliseconds (20x the likelihood itself).
            method="TNC",
            bounds=bounds,
            options={"maxfun": 3000, "ftol": 1e-15, "gtol": 1e-10, "xtol": 1e-12},
        )
        last_message = str(res.message)
        if not np.all(np.isfinite(res.x)) or res.fun >= 1e299:
            continue
        if best is None or res.fun < best.fun:
            best = res
        if _converged(res):
            break  # further starts only when this one failed
    if best is None:
        raise ConvergenceError(f"{name}: the likelihood could not be evaluated from any start point ({last_message})")
    grad_norm = float(np.max(np.abs(best.jac)))
    if np.any(np.abs(best.x) >= _LOG_BOUND - 1e-6):
        names = ", ".join(PARAM_NAMES[name])
        raise ConvergenceError(
            f"{name}: the fit did not converge: a parameter ({names} = "
            f"{', '.join(f'{v:.3g}' for v in np.exp(best.x))}) ran to its bound; the data do not identify this model"
        )
    if grad_norm > _GRAD_TOL:
        raise ConvergenceError(f"{name}: the fit did not converge (largest gradient {grad_norm:.2g}: {best.message})")
    theta = np.exp(best.x)
    return theta, -best.fun * n, int(best.nit)


def _converged(res: Any) -> bool:
    return bool(np.all(np.abs(res.x) < _LOG_BOUND - 1e-6) and np.max(np.abs(res.jac)) <= _GRAD_TOL)


def fit_bgnbd(frequency, recency, T, *, unit: str = "week") -> FitResult:
    """Fit BG/NBD by maximum likelihood on collapsed rows."""
    x, t_x, T = check_rfm_arrays(frequency, recency, T)
    _require_repeaters("bgnbd", x)
    (ux, ut, uT), w, _ = collapse(x, t_x, T)
    scale = max(float(np.average(uT, weights=w)), 1e-6)
    starts = [(1.0, scale, 1.0, 1.0), (0.1, scale / 10.0, 0.5, 2.0), (2.0, scale * 4.0, 2.0, 5.0)]
    theta, ll, nit = _maximise("bgnbd", bgnbd_loglik, (ux, ut, uT), w, starts)
    res = FitResult("bgnbd", dict(zip(PARAM_NAMES["bgnbd"], map(float, theta))), ll, int(x.size), int(ux.size), nit, unit)
    if theta[2] <= 1.0:
        res.warnings.append(
            f"a = {theta[2]:.3f} <= 1: expected purchases over an unlimited horizon diverge; CLV is only given for finite horizons"
        )
    return res


def fit_pareto(frequency, recency, T, *, unit: str = "week") -> FitResult:
    """Fit Pareto/NBD by maximum likelihood on collapsed rows (several starts: β is weakly identified)."""
    x, t_x, T = check_rfm_arrays(frequency, recency, T)
    _require_repeaters("pareto", x)
    (ux, ut, uT), w, _ = collapse(x, t_x, T)
    scale = max(float(np.average(uT, weights=w)), 1e-6)
    starts = [(1.0, scale, 1.0, scale), (0.5, scale / 4.0, 0.5, scale / 4.0), (2.0, scale * 2.0, 2.0, scale * 2.0)]
    theta, ll, nit = _maximise("pareto", pareto_loglik, (ux, ut, uT), w, starts)
    return FitResult("pareto", dict(zip(PARAM_NAMES["pareto"], map(float, theta))), ll, int(x.size), int(ux.size), nit, unit)


def fit_gg(frequency, monetary, *, unit: str = "week", corr_warning: float = 0.3) -> FitResult:
    """Fit Gamma-Gamma on the repeat buyers (x > 0); warn when spend and frequency are correlated."""
    x = np.asarray(frequency, dtype=float)
    m = np.asarray(monetary, dtype=float)
    if x.shape != m.shape:
        raise ClvError("frequency and monetary value must have the same length")
    if x.size == 0:
        raise ClvError("no customers to fit: the summary is empty")
    bad = np.flatnonzero(~np.isfinite(m))
    if bad.size:
        raise ClvError(f"row {bad[0]}: monetary value must be a finite number")
    bad = np.flatnonzero((x > 0) & (m <= 0))
    if bad.size:
        raise ClvError(
            f"row {bad[0]}: repeat buyer with mean repeat spend {float(m[bad[0]])!r}: Gamma-Gamma needs spend > 0 "
            "(remove refunds and zero-value orders)"
        )
    keep = x > 0
    xr, mr = x[keep], m[keep]
    if xr.size < 3:
        raise ClvError(f"gg: {xr.size} repeat buyer(s): Gamma-Gamma needs customers with repeat purchases to fit on")
    if np.ptp(mr) == 0:
        raise ClvError("gg: every repeat buyer has the same mean spend; spend has no variation to model")
    warn: list[str] = []
    corr = float(np.corrcoef(xr, mr)[0, 1]) if xr.size > 2 and np.ptp(xr) > 0 else 0.0
    if abs(corr) > corr_warning:
        msg = (
            f"spend and frequency are correlated (Pearson r = {corr:.2f} over {xr.size} repeat buyers): "
            "Gamma-Gamma assumes they are independent, so its spend predictions are biased"
        )
        warn.append(msg)
        warnings.warn(msg, stacklevel=2)
    (ux, um), w, _ = collapse(xr, mr)
    mean_m = float(np.average(um, weights=w))
    starts = [(1.0, 2.0, mean_m), (5.0, 3.0, mean_m / 2.0), (0.5, 5.0, mean_m * 4.0)]
    theta, ll, nit = _maximise("gg", gg_loglik, (ux, um), w, starts)
    res = FitResult("gg", dict(zip(PARAM_NAMES["gg"], map(float, theta))), ll, int(xr.size), int(ux.size), nit, unit, warn)
    if theta[1] <= 1.0:
        raise ClvError(
            f"gg: fitted q = {theta[1]:.3f} <= 1, so the population mean spend pγ/(q-1) is negative or infinite; "
            "the spend data do not fit Gamma-Gamma (check for outliers)"
        )
    return res


def _require_repeaters(name: str, x: np.ndarray) -> None:
    if not np.any(x > 0):
        raise ClvError(f"{name}: no customer has a repeat purchase, so the purchase rate cannot be estimated")
    if x.size < 2:
        raise ClvError(f"{name}: a single customer cannot identify a population model")


FITTERS: dict[str, Callable[..., FitResult]] = {"bgnbd": fit_bgnbd, "pareto": fit_pareto}


def total_loglik(model: str, params: Sequence[float], *data: np.ndarray) -> float:
    """The summed log-likelihood at given parameters (for checking published values)."""
    fn = {"bgnbd": bgnbd_loglik, "pareto": pareto_loglik, "gg": gg_loglik}[model]
    return float(np.sum(fn(tuple(params), *(np.asarray(d, dtype=float) for d in data))))


def expected_purchases(model: str, params: Sequence[float], x, t_x, T, t: float) -> np.ndarray:
    fn = bgnbd_expected_purchases if model == "bgnbd" else pareto_expected_purchases
    return fn(params, x, t_x, T, t)


def p_alive(model: str, params: Sequence[float], x, t_x, T) -> np.ndarray:
    fn = bgnbd_p_alive if model == "bgnbd" else pareto_p_alive
    return fn(params, x, t_x, T)
