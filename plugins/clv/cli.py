"""``corecrm clv fit|predict|rfm|historic`` and ``corecrm transactions import FILE``."""

from __future__ import annotations

import datetime as dt
from typing import Any

import click

from corecrm.clitools import echo_json, echo_table, json_option, pass_crm
from corecrm.errors import CrmError

PLUGIN = "clv"


def _date(text: str | None, option: str) -> dt.date | None:
    if text is None:
        return None
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise CrmError(f"{option}: not a date (YYYY-MM-DD): {text!r}") from None


@click.command("fit")
@click.option("--model", "model", type=click.Choice(["bgnbd", "pareto", "gg"]), default="bgnbd", show_default=True,
              help="BG/NBD or Pareto/NBD (purchases) or Gamma-Gamma (spend).")
@click.option("--until", help="End of the calibration period, inclusive (YYYY-MM-DD; default: today).")
@click.option("--unit", type=click.Choice(["day", "week", "month"]), default=None, help="Time unit (default: [plugins.clv] unit, week).")
@click.option("--holdout-end", help="Also compare predictions with actual purchases from --until to this date.")
@json_option
@pass_crm
def fit_cmd(crm: Any, model: str, until: str | None, unit: str | None, holdout_end: str | None, as_json: bool) -> None:
    """Fit a model by maximum likelihood on the per-customer summary and store it."""
    from corecrm_plugins.clv import service

    settings = crm.settings(PLUGIN)
    out = service.fit(
        crm.engine, crm.workspace, model, now=crm.now(), until=_date(until, "--until"), unit=unit or settings["unit"],
        settings=settings, holdout_end=_date(holdout_end, "--holdout-end"),
    )
    if as_json:
        echo_json(out)
        return
    click.echo(f"{out['model']} (version {out['version']}) fitted on {out['n_customers']} customers "
               f"({out['n_rows']} distinct rows) up to {out['until']}, time in {out['unit']}s")
    echo_table(["parameter", "value"], [[k, f"{v:.6f}"] for k, v in out["params"].items()])
    click.echo(f"log-likelihood: {out['log_likelihood']:.4f}")
    for w in out["warnings"]:
        click.echo(f"warning: {w}")
    if "holdout" in out:
        h = out["holdout"]
        click.echo(f"holdout to {h['holdout_end']}: predicted {h['predicted_total']:.1f} repeat purchases, actual {h['actual_total']:.0f}")
        echo_table(["frequency", "customers", "actual", "predicted"],
                   [[g["frequency"], g["customers"], g["actual"], g["predicted"]] for g in h["by_frequency"]])


@click.command("predict")
@click.option("--horizon", type=float, default=None, help="Horizon in the model's time unit (default: [plugins.clv] horizon).")
@click.option("--model", type=click.Choice(["bgnbd", "pareto"]), default=None, help="Purchase model (default: [plugins.clv] model, bgnbd).")
@click.option("--until", help="Summarise purchases up to this date (default: the model's calibration end).")
@click.option("--discount-rate", type=float, default=None, help="Monthly discount rate (default: [plugins.clv] discount_rate).")
@click.option("--margin", type=float, default=None, help="Share of revenue that is margin (default: [plugins.clv] margin).")
@click.option("--top", type=int, default=20, show_default=True, help="Rows in the table output (JSON has every customer).")
@json_option
@pass_crm
def predict_cmd(crm: Any, horizon: float | None, model: str | None, until: str | None, discount_rate: float | None,
                margin: float | None, top: int, as_json: bool) -> None:
    """Predict purchases, P(alive), spend and CLV per customer; store them with the model version."""
    from corecrm_plugins.clv import service

    settings = crm.settings(PLUGIN)
    out = service.predict(
        crm.engine, crm.workspace, now=crm.now(), horizon=float(horizon if horizon is not None else settings["horizon"]),
        model=model or settings["model"], until=_date(until, "--until"), settings=settings, discount_rate=discount_rate, margin=margin,
    )
    if as_json:
        echo_json(out)
        return
    click.echo(f"{out['n_customers']} customers, model {out['model_version']}, horizon {out['horizon']:g} {out['unit']}s, "
               f"monthly discount {out['discount_rate']:g}, margin {out['margin']:g}; stored")
    rows = sorted(out["customers"], key=lambda c: -(c["clv"] if c["clv"] is not None else c["expected_purchases"]))[:top]
    echo_table(["customer_id", "expected_purchases", "p_alive", "expected_spend", "clv"],
               [[c["customer_id"], c["expected_purchases"], c["p_alive"], c["expected_spend"], c["clv"]] for c in rows])


@click.command("rfm")
@click.option("--as-of", help="Score as of this date (default: today).")
@json_option
@pass_crm
def rfm_cmd(crm: Any, as_of: str | None, as_json: bool) -> None:
    """Compute RFM quintile scores and segments; store them per customer."""
    from corecrm_plugins.clv import service

    settings = crm.settings(PLUGIN)
    out = service.rfm(crm.engine, crm.workspace, now=crm.now(), as_of=_date(as_of, "--as-of"), segments=list(settings["segments"]))
    if as_json:
        echo_json(out)
        return
    click.echo(f"{out['n_customers']} customers scored as of {out['as_of']}; stored")
    echo_table(["segment", "customers", "share", "revenue", "mean_spend"],
               [[s["segment"], s["customers"], s["share"], s["revenue"], s["mean_spend"]] for s in out["segments"]])


@click.command("historic")
@click.option("--until", help="Count purchases up to this date (default: today).")
@click.option("--top", type=int, default=20, show_default=True)
@json_option
@pass_crm
def historic_cmd(crm: Any, until: str | None, top: int, as_json: bool) -> None:
    """Historic CLV: the margin each customer has brought so far (no model needed)."""
    from corecrm_plugins.clv import service

    settings = crm.settings(PLUGIN)
    rows = service.historic(crm.engine, crm.workspace, now=crm.now(), until=_date(until, "--until"), margin=float(settings["margin"]))
    if as_json:
        echo_json({"customers": rows})
        return
    rows.sort(key=lambda r: -r["historic_clv"])
    echo_table(["customer_id", "purchases", "revenue", "historic_clv"], [[r["customer_id"], r["purchases"], r["revenue"], r["historic_clv"]] for r in rows[:top]])


@click.command("import")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--strict", is_flag=True, help="Write nothing if any row is rejected.")
@click.option("--force", is_flag=True, help="Import a file that was already imported (duplicates its purchases).")
@json_option
@pass_crm
def import_cmd(crm: Any, file: str, strict: bool, force: bool, as_json: bool) -> None:
    """Import transactions from a CSV: customer_id, date, amount[, cost]. Rejected rows are listed."""
    from corecrm_plugins.clv import importer, store

    store.ensure_tables(crm.engine)
    res = importer.import_transactions(crm.engine, crm.workspace, file, now=crm.now(), strict=strict, force=force)
    if as_json:
        echo_json(res.to_json())
    else:
        for r in res.rejected:
            click.echo(f"rejected: {r.format(res.origin)}", err=True)
        verb = "imported" if res.written else "nothing imported (--strict)"
        click.echo(f"{res.origin}: {verb}: {res.imported} of {res.rows} rows, {res.customers_created} new customers, {len(res.rejected)} rejected")
    if strict and res.rejected:
        raise SystemExit(1)


def commands() -> list[Any]:
    from corecrm.records import CliCommand

    clv_help = "Customer lifetime value: BG/NBD, Pareto/NBD, Gamma-Gamma; RFM segments (plugin clv)."
    tx_help = "Customer transactions (purchases) for CLV and RFM (plugin clv)."
    return [
        CliCommand(fit_cmd, group="clv", help=clv_help),
        CliCommand(predict_cmd, group="clv", help=clv_help),
        CliCommand(rfm_cmd, group="clv", help=clv_help),
        CliCommand(historic_cmd, group="clv", help=clv_help),
        CliCommand(import_cmd, group="transactions", help=tx_help),
    ]
