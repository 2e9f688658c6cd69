"""Campaign costs: ``corecrm campaigns cost add|import|list``.

A cost is an amount spent on a campaign (and optionally a source) over a
period of days, both ends included. Entering the same campaign, source and
period again replaces the amount, so re-importing a spreadsheet never counts
a cost twice. An import is checked completely before anything is written: the
first bad row stops it with ``FILE: row N: FIELD: problem`` and the table is
left as it was.
"""

from __future__ import annotations

import csv
import datetime as dt
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import attrs
import click
import sqlalchemy as sa

from corecrm.errors import CrmError
from corecrm_plugins.analytics_funnel import common as c
from corecrm_plugins.analytics_funnel.tables import campaign_costs

COLUMNS = {
    "campaign": ("campaign",),
    "amount": ("amount", "cost"),
    "period_start": ("period_start", "from", "start"),
    "period_end": ("period_end", "to", "end"),
    "source": ("source",),
    "note": ("note",),
}
REQUIRED = ("campaign", "amount", "period_start", "period_end")


class CostError(CrmError):
    """A cost entry or import row that cannot be stored; names file, row and field."""


@attrs.define(slots=True)
class Cost:
    campaign: str
    amount: float
    period_start: dt.date
    period_end: dt.date
    source: str | None = None
    note: str | None = None


def parse_cost(values: Mapping[str, Any], where: str) -> Cost:
    """Check one entry; ``where`` prefixes every error (``costs.csv: row 3``)."""
    campaign = str(values.get("campaign") or "").strip()
    if not campaign:
        raise CostError(f"{where}: campaign: missing")
    raw_amount = str(values.get("amount") or "").strip().replace(",", "")
    try:
        amount = float(raw_amount)
    except ValueError:
        raise CostError(f"{where}: amount: not a number: {values.get('amount')!r}") from None
    if not (amount >= 0) or amount == float("inf"):
        raise CostError(f"{where}: amount: must be zero or more, got {raw_amount}")
    dates = {}
    for key in ("period_start", "period_end"):
        v = values.get(key)
        if isinstance(v, dt.date):
            dates[key] = v
            continue
        try:
            dates[key] = dt.date.fromisoformat(str(v or "").strip())
        except ValueError:
            raise CostError(f"{where}: {key}: not a date (YYYY-MM-DD): {v!r}") from None
    if dates["period_end"] < dates["period_start"]:
        raise CostError(f"{where}: period_end: {dates['period_end']} is before period_start {dates['period_start']}")
    source = str(values.get("source") or "").strip() or None
    note = str(values.get("note") or "").strip() or None
    return Cost(campaign, amount, dates["period_start"], dates["period_end"], source, note)


def read_csv(path: Path) -> list[Cost]:
    """Every row of a cost CSV, checked; the first problem raises naming file, row and field."""
    try:
        fh = path.open(newline="", encoding="utf-8-sig")
    except OSError as exc:
        raise CostError(f"{path}: cannot read: {exc.strerror}") from None
    with fh:
        reader = csv.DictReader(fh)
        header = [h.strip().lower() for h in (reader.fieldnames or [])]
        mapping: dict[str, str] = {}
        for key, names in COLUMNS.items():
            for raw, norm in zip(reader.fieldnames or [], header):
                if norm in names:
                    mapping[key] = raw
                    break
        missing = [k for k in REQUIRED if k not in mapping]
        if missing:
            raise CostError(f"{path}: row 1: missing column(s) {', '.join(missing)} (have: {', '.join(header) or 'none'})")
        out = []
        try:
            for i, row in enumerate(reader, start=2):
                out.append(parse_cost({k: row.get(col) for k, col in mapping.items()}, f"{path}: row {i}"))
        except UnicodeDecodeError:
            raise CostError(f"{path}: not UTF-8 text") from None
    return out


def store(crm: Any, workspace: str, costs: Sequence[Cost]) -> tuple[int, int]:
    """Insert costs in one transaction, replacing entries for the same campaign, source and period."""
    replaced = 0
    now = c.now_of(crm)
    t = campaign_costs
    with crm.engine.begin() as conn:
        for cost in costs:
            res = conn.execute(
                t.delete().where(
                    t.c.workspace == workspace,
                    t.c.campaign == cost.campaign,
                    (t.c.source == cost.source) if cost.source is not None else t.c.source.is_(None),
                    t.c.period_start == cost.period_start,
                    t.c.period_end == cost.period_end,
                )
            )
            replaced += res.rowcount or 0
        if costs:
            conn.execute(
                t.insert(),
                [
                    {"workspace": workspace, "campaign": x.campaign, "source": x.source, "period_start": x.period_start,
                     "period_end": x.period_end, "amount": x.amount, "note": x.note, "created_at": now}
                    for x in costs
                ],
            )
    return len(costs), replaced


def costs_in_period(conn: sa.Connection, workspaces: Sequence[str], start: dt.datetime | None, end: dt.datetime | None,
                    by: str) -> dict[Any, float]:
    """Cost per campaign (or source) over ``[start, end)``, each entry pro-rated by the days it shares with it."""
    t = campaign_costs
    q = sa.select(t.c.campaign, t.c.source, t.c.period_start, t.c.period_end, t.c.amount).where(t.c.workspace.in_(list(workspaces)))
    first = start.date() if start else None
    last = (end - dt.timedelta(microseconds=1)).date() if end else None
    if first:
        q = q.where(t.c.period_end >= first)
    if last:
        q = q.where(t.c.period_start <= last)
    out: dict[Any, float] = {}
    for campaign, source, ps, pe, amount in conn.execute(q):
        ps, pe = c.to_date(ps), c.to_date(pe)
        lo = max(ps, first) if first else ps
        hi = min(pe, last) if last else pe
        days = (pe - ps).days + 1
        share = max(0, (hi - lo).days + 1) / days
        key = campaign if by == "campaign" else source
        out[key] = out.get(key, 0.0) + float(amount) * share
    return out


# --------------------------------------------------------------------------- CLI


def campaigns_group() -> click.Group:
    from corecrm.clitools import echo_json, echo_table, json_option, pass_crm

    @click.group("cost", help="What campaigns cost (for the campaign_economics report).")
    def cost() -> None:
        pass

    @cost.command("add")
    @click.argument("campaign")
    @click.argument("amount")
    @click.option("--from", "date_from", required=True, help="First day the cost covers (YYYY-MM-DD).")
    @click.option("--to", "date_to", required=True, help="Last day the cost covers (YYYY-MM-DD, inclusive).")
    @click.option("--source", default=None, help="The source (channel) the money went to.")
    @click.option("--note", default=None)
    @pass_crm
    def add(crm: Any, campaign: str, amount: str, date_from: str, date_to: str, source: str | None, note: str | None) -> None:
        """Record what CAMPAIGN cost over a period (entering it again replaces it)."""
        entry = parse_cost({"campaign": campaign, "amount": amount, "period_start": date_from, "period_end": date_to, "source": source, "note": note}, "campaigns cost add")
        _, replaced = store(crm, crm.workspace, [entry])
        click.echo(f"{'replaced' if replaced else 'added'}: {entry.campaign} {entry.amount:,.2f} from {entry.period_start} to {entry.period_end}")

    @cost.command("import")
    @click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
    @pass_crm
    def import_(crm: Any, path: Path) -> None:
        """Import costs from a CSV with columns campaign, amount, period_start, period_end[, source, note]."""
        entries = read_csv(path)
        n, replaced = store(crm, crm.workspace, entries)
        click.echo(f"{path}: {n} cost(s) imported ({replaced} replaced)")

    @cost.command("list")
    @click.option("--campaign", default=None)
    @json_option
    @pass_crm
    def list_(crm: Any, campaign: str | None, as_json: bool) -> None:
        """Show the recorded costs."""
        t = campaign_costs
        q = sa.select(t.c.campaign, t.c.source, t.c.period_start, t.c.period_end, t.c.amount, t.c.note).where(t.c.workspace == crm.workspace)
        if campaign:
            q = q.where(t.c.campaign == campaign)
        with crm.engine.connect() as conn:
            rows = [list(r) for r in conn.execute(q.order_by(t.c.period_start, t.c.campaign))]
        cols = ["campaign", "source", "from", "to", "amount", "note"]
        if as_json:
            echo_json([dict(zip(cols, r)) for r in rows])
        else:
            echo_table(cols, rows)

    return cost


def iter_costs(rows: Iterable[Mapping[str, Any]]) -> list[Cost]:
    return [parse_cost(r, f"row {i}") for i, r in enumerate(rows, start=1)]
