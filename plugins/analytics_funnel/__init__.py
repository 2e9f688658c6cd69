"""analytics_funnel: funnel, attribution, campaign economics, forecast, retention and speed-to-lead reports.

Each report is a :class:`corecrm.records.Report` registered through
``crm_reports``; ``corecrm report NAME`` runs it and ``--chart PATH`` writes
its SVG. The report modules are imported only when a report runs, so the
plugin costs ``corecrm --help`` nothing.

The plugin owns one table, ``analytics_campaign_costs`` (declared through
``crm_db_schema``), filled by ``corecrm campaigns cost add|import``.
"""

from __future__ import annotations

import importlib
from typing import Any, Callable, Iterable, Mapping

from corecrm.hooks import hookimpl
from corecrm.records import CliCommand, Report, ReportTable, Setting

#: name → (module, title, description)
REPORTS: dict[str, tuple[str, str, str]] = {
    "funnel": ("funnel", "Lead funnel", "leads reaching each lifecycle stage, conversion rates and median days in stage; --by source|campaign|team|owner|workspace|month (cohort)"),
    "attribution": ("attribution", "Revenue attribution", "won revenue credited to campaigns or sources: first/last touch, linear, time decay, position based; --by campaign|source"),
    "campaign_economics": ("economics", "Campaign economics", "cost per lead, per qualified lead, per customer and return on spend; --by campaign|source"),
    "forecast": ("forecast", "Weighted pipeline forecast", "open deal amount × stage probability by expected close month, won vs forecast; --by pipeline|team|owner"),
    "retention": ("retention", "Retention and churn", "raw, sales- and profit-adjusted retention and churn per period from transactions; customers at risk"),
    "speed_to_lead": ("speed", "Speed to lead", "hours from capture to assignment and to first contact, percentiles; --by source|team|owner"),
}


def _module(name: str) -> Any:
    return importlib.import_module(f"corecrm_plugins.analytics_funnel.{name}")


def _lazy_run(module: str) -> Callable[..., ReportTable]:
    def run(crm: Any, workspace: Any, params: Mapping[str, Any] | None = None) -> ReportTable:
        return _module(module).run(crm, workspace, params or {})

    run.__name__ = f"run_{module}"
    return run


def _lazy_chart(module: str) -> Callable[..., Any]:
    def chart(table: ReportTable, path: Any) -> Any:
        return _module(module).chart(table, path)

    chart.__name__ = f"chart_{module}"
    return chart


def _params(name: str) -> list[Any]:
    import click

    if name == "attribution":
        return [click.Option(["--half-life", "half_life"], type=float, default=None, help="time-decay half-life in days (default: setting half_life_days, 7)")]
    if name == "campaign_economics":
        return [click.Option(["--model", "model"], type=click.Choice(["first_touch", "last_touch", "linear", "time_decay", "position_based"]), default=None,
                             help="attribution model for revenue (default: setting economics_model)")]
    if name == "retention":
        return [click.Option(["--every", "every"], type=click.Choice(["month", "quarter", "year"]), default=None, help="period length (default: quarter)")]
    if name == "forecast":
        return [click.Option(["--history", "history"], type=int, default=None, help="past months shown with won vs forecast (default 6)")]
    return []


@hookimpl
def crm_reports(settings: Mapping[str, Any]) -> Iterable[Report]:
    return [
        Report(name=name, title=title, description=desc, run=_lazy_run(module), chart=_lazy_chart(module), params=_params(name))
        for name, (module, title, desc) in REPORTS.items()
    ]


@hookimpl
def crm_plugin_settings() -> Iterable[Setting]:
    from corecrm_plugins.analytics_funnel.settings import declared

    return declared()


@hookimpl
def crm_db_schema() -> Iterable[Any]:
    from corecrm_plugins.analytics_funnel.tables import metadata

    return [metadata]


@hookimpl
def crm_cli_commands() -> Iterable[CliCommand]:
    from corecrm_plugins.analytics_funnel.costs import campaigns_group

    return [CliCommand(command=campaigns_group(), group="campaigns", help="Campaigns: what they cost (campaign_economics report).")]
