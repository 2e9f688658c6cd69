"""``corecrm transactions import FILE``: a CSV of purchases into ``transactions``.

Columns (header names, case-insensitive; other columns are ignored):

* customer id: ``customer_id`` (or ``customer``, ``customer_external_id``, ``id``)
  — the customer's *external* id; unknown ids create customers;
* date: ``date`` (or ``at``, ``purchased_at``) as ``YYYY-MM-DD`` or ``YYYYMMDD``
  (a time part after ``T`` or a space is dropped);
* ``amount``: a number >= 0;
* ``cost`` (optional): a number >= 0, used for historic margin.

Every row is checked before anything is written. Rejected rows are reported
as ``FILE:ROW: field: reason``; the good rows are written in one transaction
(or, with ``strict``, nothing is written when any row is bad). The file's
content hash is recorded, so importing the same file twice is refused
instead of doubling every purchase.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import math
from pathlib import Path
from typing import Any

import attrs
import sqlalchemy as sa

from corecrm.storage import db, schema

from corecrm_plugins.clv import store
from corecrm_plugins.clv.errors import ClvError

CUSTOMER_COLUMNS = ("customer_id", "customer", "customer_external_id", "id")
DATE_COLUMNS = ("date", "at", "purchased_at")


@attrs.define(slots=True)
class Rejected:
    row: int  #: 1-based line number in the file (the header is line 1)
    field: str
    reason: str

    def format(self, origin: str) -> str:
        return f"{origin}:{self.row}: {self.field}: {self.reason}"


@attrs.define(slots=True)
class ImportResult:
    origin: str
    rows: int = 0
    imported: int = 0
    customers_created: int = 0
    rejected: list[Rejected] = attrs.field(factory=list)
    written: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "file": self.origin,
            "rows": self.rows,
            "imported": self.imported,
            "customers_created": self.customers_created,
            "rejected": [{"row": r.row, "field": r.field, "reason": r.reason} for r in self.rejected],
        }


def parse_date(text: str) -> dt.date:
    t = text.strip()
    if "T" in t:
        t = t.split("T", 1)[0]
    if " " in t:
        t = t.split(" ", 1)[0]
    if len(t) == 8 and t.isdigit():
        return dt.date(int(t[:4]), int(t[4:6]), int(t[6:]))
    return dt.date.fromisoformat(t)


def _number(text: str, field: str) -> float:
    try:
        v = float(text.strip())
    except ValueError:
        raise ValueError(f"not a number: {text!r}") from None
    if not math.isfinite(v):
        raise ValueError(f"not a finite number: {text!r}")
    if v < 0:
        raise ValueError(f"negative {field} {text.strip()} (refunds must be netted before import)")
    return v


def read_rows(data: bytes, origin: str, today: dt.date) -> tuple[list[tuple[str, dt.date, float, float | None]], list[Rejected], int]:
    """Parse and check every row; return (good rows, rejected rows, number of data rows)."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ClvError(f"{origin}: not UTF-8 text (byte {exc.start})") from None
    reader = csv.reader(io.StringIO(text, newline=""))
    header = next(reader, None)
    if header is None:
        raise ClvError(f"{origin}: the file is empty (expected a header: customer_id,date,amount[,cost])")
    names = [h.strip().lower() for h in header]

    def find(options: tuple[str, ...], what: str, required: bool = True) -> int | None:
        for o in options:
            if o in names:
                return names.index(o)
        if required:
            raise ClvError(f"{origin}:1: header: no {what} column (expected one of: {', '.join(options)}; found: {', '.join(names)})")
        return None

    ci = find(CUSTOMER_COLUMNS, "customer id")
    di = find(DATE_COLUMNS, "date")
    ai = find(("amount",), "amount")
    ki = find(("cost",), "cost", required=False)
    good: list[tuple[str, dt.date, float, float | None]] = []
    bad: list[Rejected] = []
    n = 0
    for lineno, rec in enumerate(reader, start=2):
        if not rec or all(not c.strip() for c in rec):
            continue
        n += 1
        if len(rec) < len(names):
            rec = rec + [""] * (len(names) - len(rec))
        cust = rec[ci].strip()
        if not cust:
            bad.append(Rejected(lineno, names[ci], "missing customer id"))
            continue
        try:
            day = parse_date(rec[di])
        except ValueError:
            bad.append(Rejected(lineno, names[di], f"not a date (YYYY-MM-DD or YYYYMMDD): {rec[di]!r}"))
            continue
        if day > today:
            bad.append(Rejected(lineno, names[di], f"{day.isoformat()} is in the future (today is {today.isoformat()})"))
            continue
        try:
            amount = _number(rec[ai], "amount")
        except ValueError as exc:
            bad.append(Rejected(lineno, "amount", str(exc)))
            continue
        cost = None
        if ki is not None and rec[ki].strip():
            try:
                cost = _number(rec[ki], "cost")
            except ValueError as exc:
                bad.append(Rejected(lineno, "cost", str(exc)))
                continue
        good.append((cust, day, amount, cost))
    return good, bad, n


def import_transactions(
    engine: sa.engine.Engine,
    workspace: str,
    path: str | Path,
    *,
    now: dt.datetime,
    strict: bool = False,
    force: bool = False,
) -> ImportResult:
    """Import a CSV of transactions (see the module docstring)."""
    path = Path(path)
    origin = str(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ClvError(f"{origin}: cannot read: {exc.strerror}") from None
    good, bad, n = read_rows(data, origin, now.date())
    result = ImportResult(origin=origin, rows=n, rejected=bad)
    if n == 0:
        raise ClvError(f"{origin}: no data rows after the header")
    if strict and bad:
        return result
    digest = hashlib.sha256(data).hexdigest()
    store.ensure_tables(engine)
    with engine.begin() as conn:
        imp = store.clv_imports
        prev = conn.execute(
            sa.select(imp.c.imported_at).where(imp.c.workspace == workspace, imp.c.content_hash == digest)
        ).first()
        if prev is not None and not force:
            raise ClvError(f"{origin}: this file was already imported into workspace {workspace!r} on {prev[0]}; use --force to import it again")
        cust = schema.customers
        wanted = sorted({g[0] for g in good})
        known: dict[str, int] = {}
        for i in range(0, len(wanted), 500):
            chunk = wanted[i : i + 500]
            for cid, ext in conn.execute(
                sa.select(cust.c.id, cust.c.external_id).where(cust.c.workspace == workspace, cust.c.external_id.in_(chunk))
            ):
                known[ext] = cid
        missing = [w for w in dict.fromkeys(g[0] for g in good) if w not in known]
        if missing:
            ids = db.allocate_ids(conn, cust, len(missing))
            stamp = db.ts(now, conn)
            db.bulk_insert(conn, cust, ("id", "workspace", "external_id", "created_at"), [(i, workspace, e, stamp) for i, e in zip(ids, missing)])
            db.fix_sequence(conn, cust)
            known.update(zip(missing, ids))
        rows = [(workspace, known[c], store.date_value(d, conn), a, k) for c, d, a, k in good]
        db.bulk_insert(conn, schema.transactions, ("workspace", "customer_id", "at", "amount", "cost"), rows)
        conn.execute(
            imp.insert().values(workspace=workspace, content_hash=digest if prev is None else f"{digest[:48]}+{now.timestamp():.0f}"[:64],
                                origin=origin, rows=len(rows), rejected=len(bad), imported_at=now)
        )
    result.imported = len(good)
    result.customers_created = len(missing)
    result.written = True
    return result
