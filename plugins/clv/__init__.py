"""Bundled plugin ``clv``: customer lifetime value, RFM segments and the 80/20 view.

Hooks: ``crm_plugin_settings`` (``[plugins.clv]``), ``crm_db_schema`` (the
plugin's tables), ``crm_cli_commands`` (``corecrm clv fit|predict|rfm|historic``
and ``corecrm transactions import``), ``crm_reports`` (``clv``, ``rfm``) and
``crm_customer_values`` (stored CLV and segment, for scoring and routing).

Modules, one job each: :mod:`.summary` (per-customer BTYD summary),
:mod:`.models` (BG/NBD, Pareto/NBD, Gamma-Gamma likelihoods and fits),
:mod:`.value` (predictions and CLV), :mod:`.rfm` (quintiles, segments,
Pareto), :mod:`.store` (tables and SQL), :mod:`.importer` (CSV import),
:mod:`.service` (the operations), :mod:`.cli` and :mod:`.reports`.

Nothing heavy is imported here: numpy, scipy and SQLAlchemy tables load when
a command, report or hook actually runs, so ``corecrm --help`` stays fast.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping, Sequence

from corecrm.hooks import hookimpl


def _float_in(lo: float, hi: float, *, hi_open: bool = False):
    from corecrm.errors import ConfigError

    def check(value: Any, key: str) -> float:
        v = float(value)
        if not (lo <= v < hi if hi_open else lo <= v <= hi):
            raise ConfigError(f"expected a number in [{lo}, {hi}{')' if hi_open else ']'}, got {value!r}", key=key)
        return v

    return check


def _positive(value: Any, key: str) -> float:
    from corecrm.errors import ConfigError

    if float(value) <= 0:
        raise ConfigError(f"expected a number > 0, got {value!r}", key=key)
    return float(value)


def _segments(value: Any, key: str) -> list[dict[str, Any]]:
    from corecrm_plugins.clv.segments import validate_segments

    return validate_segments(value, key)


@hookimpl
def crm_plugin_settings() -> Iterable[Any]:
    from corecrm.records import Setting

    from corecrm_plugins.clv.segments import DEFAULT_SEGMENTS

    return [
        Setting("model", "str", "bgnbd", "Purchase model `clv predict` uses by default.", choices=("bgnbd", "pareto")),
        Setting("unit", "str", "week", "Time unit of the summary and of horizons.", choices=("day", "week", "month")),
        Setting("horizon", "float", 52.0, "Default prediction horizon, in `unit`s.", validate=_positive),
        Setting("discount_rate", "float", 0.01, "Monthly discount rate for CLV.", validate=_float_in(0.0, 1.0, hi_open=True)),
        Setting("margin", "float", 1.0, "Share of revenue that is margin (CLV and historic CLV when a transaction has no cost).",
                validate=_float_in(0.0, 1.0)),
        Setting("gg_correlation_warning", "float", 0.3, "Warn when |corr(frequency, spend)| of repeat buyers exceeds this.",
                validate=_float_in(0.0, 1.0)),
        Setting("segments", "list", [dict(s) for s in DEFAULT_SEGMENTS],
                "RFM segment rules, first match wins: [{name, r = [lo, hi], f = ..., m = ...}].", validate=_segments),
    ]


@hookimpl
def crm_db_schema() -> Iterable[Any]:
    from corecrm_plugins.clv.store import metadata

    return [metadata]


@hookimpl
def crm_cli_commands() -> Iterable[Any]:
    from corecrm_plugins.clv.cli import commands

    return commands()


@hookimpl
def crm_reports(settings: Mapping[str, Any]) -> Iterable[Any]:
    from corecrm_plugins.clv.reports import reports

    return reports()


@hookimpl
def crm_customer_values(customer_ids: Sequence[int], ctx: Any, settings: Mapping[str, Any]) -> Iterable[Any] | None:
    """Stored predictions (CLV with its model version) and RFM segments; nothing is computed here."""
    from corecrm.records import CustomerValue

    from corecrm_plugins.clv import store

    if not customer_ids:
        return []
    store.ensure_tables(ctx.crm.engine)
    with ctx.crm.engine.connect() as conn:
        rows = store.values_for(conn, ctx.workspace, customer_ids)
        have = {int(r["customer_id"]) for r in rows if r.get("clv") is not None or r.get("historic_clv") is not None}
        rest = [int(c) for c in customer_ids if int(c) not in have]
        # no stored prediction: historic CLV (margin to date) straight from the transactions
        historic = store.historic_for(conn, ctx.workspace, rest, margin=float(settings.get("margin", 1.0))) if rest else {}
    for r in rows:
        if r.get("clv") is None and r.get("historic_clv") is None and int(r["customer_id"]) in historic:
            r["historic_clv"] = historic.pop(int(r["customer_id"]))
    rows.extend({"customer_id": c, "clv": None, "historic_clv": h} for c, h in historic.items())
    out = []
    for r in rows:
        detail = {k: v for k, v in r.items() if k not in ("customer_id", "clv") and v is not None}
        if r.get("clv") is not None:
            out.append(CustomerValue(int(r["customer_id"]), float(r["clv"]), "clv", detail))
        elif r.get("historic_clv") is not None:
            out.append(CustomerValue(int(r["customer_id"]), float(r["historic_clv"]), "historic_clv", detail))
        else:
            # no prediction stored yet: the RFM code (e.g. 555) with the segment in detail
            out.append(CustomerValue(int(r["customer_id"]), float(r["code"]), "rfm", detail))
    return out
