"""Helpers for CLI commands, the core's and plugins' alike.

A plugin command gets the CRM with :func:`pass_crm`::

    import click
    from corecrm.clitools import pass_crm, echo_json

    @click.command("claim")
    @pass_crm
    def claim(crm):
        ...
"""

from __future__ import annotations

import functools
import json
import sys
from typing import TYPE_CHECKING, Any, Callable, Sequence, TypeVar

import click

if TYPE_CHECKING:
    from corecrm.app import Crm
    from corecrm.config import Config
    from corecrm.plugins import PluginManager

F = TypeVar("F", bound=Callable[..., Any])


class CliState:
    """Per-invocation state: what the root options said, and the lazily opened CRM."""

    def __init__(self, config: str | None, workspace: str | None, database: str | None) -> None:
        self.config_path = config
        self.workspace = workspace
        self.database = database
        self._config: Config | None = None
        self._plugins: PluginManager | None = None
        self._crm: Crm | None = None

    @property
    def config(self) -> Config:
        if self._config is None:
            from corecrm.config import Config

            self._config = Config.load(self.config_path)
        return self._config

    @property
    def plugins(self) -> PluginManager:
        if self._plugins is None:
            from corecrm.plugins import PluginManager

            self._plugins = PluginManager(self.config).load()
        return self._plugins

    @property
    def crm(self) -> Crm:
        if self._crm is None:
            from corecrm.app import Crm

            crm = Crm(self.config, database=self.database, workspace=self.workspace, plugins=self.plugins)
            crm.ensure_schema()
            self._crm = crm
        return self._crm

    def close(self) -> None:
        if self._crm is not None:
            self._crm.close()


def state() -> CliState:
    ctx = click.get_current_context()
    obj = ctx.find_object(CliState)
    if obj is None:  # a plugin command invoked on its own (tests)
        obj = CliState(None, None, None)
        ctx.obj = obj
    return obj


def pass_crm(f: F) -> F:
    """Decorator: call the command with the opened :class:`~corecrm.app.Crm` as first argument."""

    @functools.wraps(f)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return f(state().crm, *args, **kwargs)

    return wrapper  # type: ignore[return-value]


def json_option(f: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")(f)


def echo_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, default=_default, ensure_ascii=False))


def _default(value: Any) -> Any:
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    if hasattr(value, "value"):
        return value.value
    return str(value)


def format_table(columns: Sequence[str], rows: Sequence[Sequence[Any]], *, max_width: int = 48) -> str:
    """A plain aligned text table (no colours, safe to pipe)."""

    def cell(v: Any) -> str:
        if v is None:
            return ""
        if isinstance(v, float):
            return f"{v:,.2f}" if abs(v) >= 1000 else f"{v:.4g}" if abs(v) < 1 and v != 0 else f"{v:.2f}"
        s = str(v).replace("\n", " ")
        return s if len(s) <= max_width else s[: max_width - 1] + "…"

    texts = [[cell(v) for v in row] for row in rows]
    widths = [len(c) for c in columns]
    for row in texts:
        for i, t in enumerate(row):
            widths[i] = max(widths[i], len(t))
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths)).rstrip(), "  ".join("-" * w for w in widths)]
    for row in texts:
        lines.append("  ".join(t.rjust(w) if _numeric(t) else t.ljust(w) for t, w in zip(row, widths)).rstrip())
    return "\n".join(lines)


def _numeric(text: str) -> bool:
    return bool(text) and text.replace(",", "").replace(".", "", 1).replace("-", "", 1).replace("%", "").isdigit()


def echo_table(columns: Sequence[str], rows: Sequence[Sequence[Any]], **kw: Any) -> None:
    click.echo(format_table(columns, rows, **kw))


def fail(message: str, code: int = 1) -> None:
    """Print a one-line error and exit non-zero."""
    click.echo(f"error: {message}", err=True)
    sys.exit(code)
