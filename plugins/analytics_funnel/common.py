"""Shared pieces of the reports: parameters, periods, dialect shims, safe maths.

Every report reads the same parameters (``from``, ``to``, ``by``) through
:func:`report_period` and :func:`group_by`, so a bad value gives the same
one-line error whichever report it was given to.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Any, Iterable, Mapping, Sequence

from sqlalchemy.engine import Connection

from corecrm.errors import CrmError

UTC = dt.timezone.utc
#: Label for rows whose grouping value is empty.
NONE_LABEL = "(none)"


class ReportError(CrmError):
    """A report parameter that cannot be used; the message names the parameter."""


# --------------------------------------------------------------------------- parameters


def param(params: Mapping[str, Any] | None, *names: str, default: Any = None) -> Any:
    """The first of ``names`` present (and not None) in ``params``.

    click turns ``--from`` into ``from`` (or ``from_`` when the core renames
    keywords); both spellings are accepted.
    """
    if not params:
        return default
    for name in names:
        for key in (name, name + "_", name.replace("-", "_")):
            if key in params and params[key] is not None and params[key] != ():
                return params[key]
    return default


def parse_when(value: Any, name: str, *, end: bool = False) -> dt.datetime | None:
    """A ``--from``/``--to`` value as an aware UTC datetime.

    A date (``2026-03-01``) or a month (``2026-03``) means the whole day or
    month: as ``--from`` its first instant, as ``--to`` (``end=True``) the
    instant after it, so ``--to`` is inclusive like the core's option says.
    A full timestamp is taken as it is (and is exclusive as an end).
    """
    if value is None or value == "":
        return None
    if isinstance(value, dt.datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    if isinstance(value, dt.date):
        start = dt.datetime(value.year, value.month, value.day, tzinfo=UTC)
        return start + dt.timedelta(days=1) if end else start
    text = str(value).strip()
    try:
        if len(text) == 7 and text[4] == "-":  # 2026-03: the whole month
            first = dt.date(int(text[:4]), int(text[5:]), 1)
            day = add_months(first, 1) if end else first
            return dt.datetime(day.year, day.month, day.day, tzinfo=UTC)
        if len(text) == 10:
            return parse_when(dt.date.fromisoformat(text), name, end=end)
        parsed = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ReportError(f"--{name}: expected a date like 2026-03-01 (or 2026-03), got {text!r}") from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def report_period(params: Mapping[str, Any] | None) -> tuple[dt.datetime | None, dt.datetime | None]:
    """``[from, to)`` from ``--from``/``--to`` (the core passes ``date_from``/``date_to``); either end may be open."""
    start = parse_when(param(params, "date_from", "from", "since"), "from")
    end = parse_when(param(params, "date_to", "to", "until"), "to", end=True)
    if start is not None and end is not None and end <= start:
        raise ReportError(f"--to ({(end - dt.timedelta(microseconds=1)).date()}) is before --from ({start.date()})")
    return start, end


def group_by(params: Mapping[str, Any] | None, allowed: Sequence[str], default: str | None = None) -> str | None:
    """The ``--by`` dimension, checked against what the report supports."""
    raw = param(params, "by", default=default)
    if isinstance(raw, (list, tuple)):
        if len(raw) > 1:
            raise ReportError(f"--by: this report breaks down by one dimension at a time, got {', '.join(map(str, raw))}")
        raw = raw[0] if raw else default
    if raw in (None, "", "none", "all"):
        return None
    by = str(raw).strip().lower()
    if by not in allowed:
        raise ReportError(f"--by: unknown dimension {raw!r} (valid: {', '.join(allowed)})")
    return by


def workspaces_of(workspace: str | Sequence[str]) -> list[str]:
    """A report runs for one workspace, or for an explicit list of them (``--by workspace``)."""
    if isinstance(workspace, str):
        return [workspace]
    out = [str(w) for w in workspace]
    if not out:
        raise ReportError("no workspace given")
    return out


def period_label(start: dt.datetime | None, end: dt.datetime | None) -> str:
    a = start.date().isoformat() if start else "the beginning"
    b = (end - dt.timedelta(microseconds=1)).date().isoformat() if end else "now"
    return f"{a} to {b}"


# --------------------------------------------------------------------------- dialect shims


def is_pg(conn: Connection) -> bool:
    return conn.dialect.name == "postgresql"


def bind_ts(conn: Connection, value: dt.datetime | None) -> Any:
    """A timestamp parameter: SQLite stores naive UTC text, PostgreSQL takes the object."""
    if value is None:
        return None
    value = value.astimezone(UTC) if value.tzinfo else value
    if is_pg(conn):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    return value.strftime("%Y-%m-%d %H:%M:%S.%f")


def bind_date(conn: Connection, value: dt.date | dt.datetime | None) -> Any:
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        value = value.astimezone(UTC).date() if value.tzinfo else value.date()
    return value if is_pg(conn) else value.isoformat()


def days_between(conn: Connection, later: str, earlier: str) -> str:
    """SQL for ``later - earlier`` in (fractional) days."""
    if is_pg(conn):
        return f"(EXTRACT(EPOCH FROM ({later}) - ({earlier})) / 86400.0)"
    return f"(julianday({later}) - julianday({earlier}))"


def month_of_date(conn: Connection, column: str) -> str:
    if is_pg(conn):
        return f"to_char({column}, 'YYYY-MM')"
    return f"substr({column}, 1, 7)"


def month_of_ts(conn: Connection, column: str) -> str:
    if is_pg(conn):
        return f"to_char(({column}) AT TIME ZONE 'UTC', 'YYYY-MM')"
    return f"substr({column}, 1, 7)"


def floor_sql(conn: Connection, expr: str) -> str:
    """SQL ``floor`` of a non-negative number (SQLite's CAST truncates; PostgreSQL's rounds)."""
    if is_pg(conn):
        return f"FLOOR({expr})"
    return f"CAST({expr} AS INTEGER)"


def percentile_filter(conn: Connection, rn: str, n: str, ps: Sequence[float]) -> str:
    """A WHERE clause keeping only the ranked rows :func:`percentile` needs for each ``p``."""
    conds = []
    for p in ps:
        lo = floor_sql(conn, f"(({n}) - 1) * {float(p)!r}")
        conds.append(f"{rn} = {lo} OR {rn} = {lo} + 1")
    return " OR ".join(f"({x})" for x in conds) or "1 = 0"


def interpolate(ranked: Mapping[int, float], n: int, p: float) -> float | None:
    """:func:`percentile` from the rows :func:`percentile_filter` kept (``{rank: value}``)."""
    if n <= 0:
        return None
    h = (n - 1) * p
    lo = math.floor(h)
    hi = min(lo + 1, n - 1)
    return ranked[lo] + (h - lo) * (ranked[hi] - ranked[lo])


def json_text(conn: Connection, column: str, key: str) -> str:
    """SQL for the text value of ``column ->> key`` (events.detail is JSON)."""
    if is_pg(conn):
        return f"(({column})::jsonb ->> '{key}')"
    return f"json_extract({column}, '$.{key}')"


def in_list(name: str, values: Sequence[Any]) -> tuple[str, dict[str, Any]]:
    """``:name_0, :name_1…`` placeholders and their bind values for an IN list."""
    binds = {f"{name}_{i}": v for i, v in enumerate(values)}
    return ", ".join(f":{k}" for k in binds), binds


def to_datetime(value: Any) -> dt.datetime | None:
    """A timestamp read back from either database, as aware UTC."""
    if value is None:
        return None
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    if isinstance(value, dt.datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    if isinstance(value, dt.date):
        return dt.datetime(value.year, value.month, value.day, tzinfo=UTC)
    raise TypeError(f"not a timestamp: {value!r}")


def to_date(value: Any) -> dt.date | None:
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    return dt.date.fromisoformat(str(value)[:10])


# --------------------------------------------------------------------------- maths


def ratio(num: float | int | None, den: float | int | None) -> float | None:
    """``num / den``, or None when the denominator is missing or zero (never a ZeroDivisionError)."""
    if num is None or den is None or den == 0:
        return None
    return num / den


def percentile(sorted_values: Sequence[float], p: float) -> float | None:
    """Linear interpolation between closest ranks (numpy's default), on sorted values."""
    n = len(sorted_values)
    if n == 0:
        return None
    h = (n - 1) * p
    lo = math.floor(h)
    hi = min(lo + 1, n - 1)
    return sorted_values[lo] + (h - lo) * (sorted_values[hi] - sorted_values[lo])


def percentile_ranks(n: int, ps: Iterable[float]) -> set[int]:
    """0-based ranks :func:`percentile` needs for ``n`` values (so SQL can return only those rows)."""
    out: set[int] = set()
    for p in ps:
        h = (n - 1) * p
        lo = math.floor(h)
        out.add(lo)
        out.add(min(lo + 1, n - 1))
    return out


# Table cells stay numbers (None when there is no value) so --json and --csv
# get machine-readable values; the core's table printer formats them.


def fmt_money(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def fmt_pct(value: float | None) -> float | None:
    """A rate as a fraction (0.25 = 25 %), rounded to 4 places."""
    return None if value is None else round(value, 4)


def fmt_num(value: float | None, digits: int = 1) -> float | None:
    return None if value is None else round(value, digits)


def money_text(value: float | None) -> str:
    """Money in a note: ``1,234.50`` (``-`` when unknown)."""
    return "-" if value is None else f"{value:,.2f}"


def label(value: Any) -> str:
    return NONE_LABEL if value is None or value == "" else str(value)


def month_range(start: dt.date, end_exclusive: dt.date) -> list[str]:
    """``YYYY-MM`` of every month overlapping ``[start, end)``."""
    out = []
    y, m = start.year, start.month
    while dt.date(y, m, 1) < end_exclusive:
        out.append(f"{y:04d}-{m:02d}")
        y, m = (y + 1, 1) if m == 12 else (y, m + 1)
    return out


def add_months(d: dt.date, n: int) -> dt.date:
    y, m = divmod(d.month - 1 + n, 12)
    return dt.date(d.year + y, m + 1, 1)


# --------------------------------------------------------------------------- crm access

PLUGIN_NAME = "analytics_funnel"


def plugin_settings(crm: Any, workspace: str | Sequence[str]) -> Mapping[str, Any]:
    """This plugin's settings for the workspace (defaults when it runs outside a plugin manager)."""
    from corecrm_plugins.analytics_funnel.settings import DEFAULTS

    ws = workspace if isinstance(workspace, str) else (list(workspace) or [None])[0]
    plugins = getattr(crm, "plugins", None)
    merged = dict(DEFAULTS)
    if plugins is not None and plugins.is_loaded(PLUGIN_NAME):
        merged.update(plugins.settings(PLUGIN_NAME, ws))
    return merged


def now_of(crm: Any) -> dt.datetime:
    clock = getattr(crm, "now", None)
    value = clock() if callable(clock) else None
    return to_datetime(value) if value is not None else dt.datetime.now(UTC)
