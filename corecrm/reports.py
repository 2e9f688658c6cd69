"""Running a plugin's report from the CLI: table, JSON, CSV and chart output.

Every CSV corecrm writes goes through :func:`csv_safe`, which neutralises
values a spreadsheet would run as a formula (``=``, ``+``, ``-``, ``@``).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from typing import TYPE_CHECKING, Any, Mapping

import click

from corecrm.clitools import echo_json, echo_table
from corecrm.errors import CrmError

if TYPE_CHECKING:
    from corecrm.app import Crm
    from corecrm.records import Report, ReportTable

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_safe(value: Any) -> Any:
    """Prefix text that a spreadsheet would evaluate with a quote (OWASP CSV injection)."""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        # A negative number stays a number.
        try:
            float(value)
            return value
        except ValueError:
            return "'" + value
    return value


def write_csv(fh: Any, columns: list[str], rows: list[list[Any]]) -> None:
    w = csv.writer(fh)
    w.writerow([csv_safe(c) for c in columns])
    for row in rows:
        w.writerow([csv_safe(v) for v in row])


def _date(text: str | None, option: str) -> dt.date | None:
    if not text:
        return None
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise CrmError(f"{option}: not a date (YYYY-MM-DD): {text!r}") from None


def run_report_command(crm: Crm, rep: Report, options: Mapping[str, Any]) -> None:
    params = dict(options)
    as_json = params.pop("as_json", False)
    as_csv = params.pop("as_csv", False)
    chart = params.pop("chart", None)
    params["date_from"] = _date(params.get("date_from"), "--from")
    params["date_to"] = _date(params.get("date_to"), "--to")
    params["by"] = list(params.get("by") or [])
    if params["date_from"] and params["date_to"] and params["date_from"] > params["date_to"]:
        raise CrmError("--from is after --to")
    table: ReportTable = rep.run(crm, crm.workspace, params)
    if chart:
        if rep.chart is None:
            raise CrmError(f"report {rep.name} has no chart")
        rep.chart(table, chart)
    if as_json:
        echo_json({"report": rep.name, "title": table.title, "workspace": crm.workspace, "columns": table.columns, "rows": table.rows, "notes": table.notes, **table.data})
    elif as_csv:
        buf = io.StringIO()
        write_csv(buf, table.columns, table.rows)
        click.echo(buf.getvalue(), nl=False)
    else:
        click.echo(table.title)
        echo_table(table.columns, table.rows)
        for note in table.notes:
            click.echo(f"note: {note}")
    if chart:
        click.echo(f"chart written to {chart}", err=True)
