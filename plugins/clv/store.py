"""The plugin's tables and its SQL: per-customer aggregates, fitted models, stored results.

Every query filters on ``workspace``. The per-customer summary is computed by
the database (two GROUP BYs: transactions → purchase days → customers), so a
million customers cost one pass over ``transactions`` and one row per customer
to Python, never one row per transaction.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Iterable, Sequence

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from corecrm.storage import db, schema

from corecrm_plugins.clv.errors import ClvError

metadata = sa.MetaData()

#: One row per fit (``corecrm clv fit``); ``version`` counts fits per workspace.
clv_models = sa.Table(
    "clv_models",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("workspace", sa.String(64), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("model", sa.String(16), nullable=False),  #: bgnbd | pareto | gg
    sa.Column("params", sa.JSON, nullable=False),
    sa.Column("log_likelihood", sa.Float, nullable=False),
    sa.Column("n_customers", sa.Integer, nullable=False),
    sa.Column("unit", sa.String(8), nullable=False),
    sa.Column("until", sa.Date, nullable=False),  #: end of the calibration period (inclusive)
    sa.Column("fitted_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("detail", sa.JSON),  #: warnings, distinct rows, iterations, holdout report
    sa.UniqueConstraint("workspace", "version", name="uq_clv_models_workspace_version"),
)

#: The latest prediction per customer, with the model versions that produced it.
clv_values = sa.Table(
    "clv_values",
    metadata,
    sa.Column("workspace", sa.String(64), primary_key=True),
    sa.Column("customer_id", sa.Integer, primary_key=True),
    sa.Column("model_version", sa.String(64), nullable=False),  #: e.g. "bgnbd@3+gg@4"
    sa.Column("until", sa.Date, nullable=False),
    sa.Column("unit", sa.String(8), nullable=False),
    sa.Column("horizon", sa.Float, nullable=False),
    sa.Column("frequency", sa.Float, nullable=False),
    sa.Column("recency", sa.Float, nullable=False),
    sa.Column("t", sa.Float, nullable=False),
    sa.Column("monetary", sa.Float, nullable=False),
    sa.Column("expected_purchases", sa.Float, nullable=False),
    sa.Column("p_alive", sa.Float, nullable=False),
    sa.Column("expected_spend", sa.Float),
    sa.Column("clv", sa.Float),
    sa.Column("historic_clv", sa.Float, nullable=False),
    sa.Column("computed_at", sa.DateTime(timezone=True), nullable=False),
)

#: The latest RFM scores and segment per customer.
clv_rfm = sa.Table(
    "clv_rfm",
    metadata,
    sa.Column("workspace", sa.String(64), primary_key=True),
    sa.Column("customer_id", sa.Integer, primary_key=True),
    sa.Column("as_of", sa.Date, nullable=False),
    sa.Column("recency_days", sa.Integer, nullable=False),
    sa.Column("n_days", sa.Integer, nullable=False),
    sa.Column("total", sa.Float, nullable=False),
    sa.Column("r", sa.Integer, nullable=False),
    sa.Column("f", sa.Integer, nullable=False),
    sa.Column("m", sa.Integer, nullable=False),
    sa.Column("code", sa.Integer, nullable=False),
    sa.Column("segment", sa.String(64), nullable=False),
    sa.Column("computed_at", sa.DateTime(timezone=True), nullable=False),
)

#: Files already imported (content hash), so a re-import creates no duplicates.
clv_imports = sa.Table(
    "clv_imports",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("workspace", sa.String(64), nullable=False),
    sa.Column("content_hash", sa.String(64), nullable=False),
    sa.Column("origin", sa.Text),
    sa.Column("rows", sa.Integer, nullable=False),
    sa.Column("rejected", sa.Integer, nullable=False),
    sa.Column("imported_at", sa.DateTime(timezone=True), nullable=False),
    sa.UniqueConstraint("workspace", "content_hash", name="uq_clv_imports_workspace_hash"),
)


def ensure_tables(engine: sa.engine.Engine) -> None:
    """Create the plugin's tables if missing (``corecrm init`` does it through ``crm_db_schema``)."""
    metadata.create_all(engine, checkfirst=True)


# --------------------------------------------------------------------------- reading transactions


def _day_expr(conn: Connection, col: str) -> str:
    """SQL for 'days since 1970-01-01' of a DATE expression, per dialect."""
    if db.is_postgres(conn):
        return f"({col} - DATE '1970-01-01')"
    return f"CAST(julianday({col}) - 2440587.5 AS INTEGER)"


def _date_param(conn: Connection, value: dt.date) -> Any:
    return value if db.is_postgres(conn) else value.isoformat()


def check_transactions(conn: Connection, workspace: str, today: dt.date) -> dict[str, Any]:
    """Refuse data no model can use: negative amounts or costs, dates in the future, an empty table.

    Returns the date range and count of the workspace's transactions.
    """
    t = schema.transactions
    row = conn.execute(
        sa.select(sa.func.count(), sa.func.min(t.c.at), sa.func.max(t.c.at)).where(t.c.workspace == workspace)
    ).one()
    if row[0] == 0:
        raise ClvError(f"workspace {workspace!r} has no transactions; import some with `corecrm transactions import FILE`")
    bad = conn.execute(
        sa.select(t.c.id, t.c.customer_id, t.c.amount, t.c.cost)
        .where(t.c.workspace == workspace, sa.or_(t.c.amount < 0, t.c.cost < 0))
        .order_by(t.c.id)
        .limit(1)
    ).first()
    if bad is not None:
        field, val = ("amount", bad.amount) if bad.amount < 0 else ("cost", bad.cost)
        raise ClvError(f"transaction {bad.id} (customer {bad.customer_id}): negative {field} {val}; refunds must be netted before CLV")
    future = conn.execute(
        sa.select(t.c.id, t.c.at).where(t.c.workspace == workspace, t.c.at > _date_param(conn, today)).order_by(t.c.at).limit(1)
    ).first()
    if future is not None:
        raise ClvError(f"transaction {future.id} is dated {future.at} which is after today ({today.isoformat()})")
    first, last = row[1], row[2]
    if isinstance(first, str):
        first, last = dt.date.fromisoformat(first[:10]), dt.date.fromisoformat(last[:10])
    return {"transactions": int(row[0]), "first": first, "last": last}


def fetch_aggregates(conn: Connection, workspace: str, until: dt.date, *, margin: float = 1.0, with_margin: bool = True):
    """Per-customer aggregates of the transactions on or before ``until`` (see :class:`summary.Aggregates`).

    ``with_margin=False`` leaves the historic margin at 0 and never reads
    ``cost``, so the query is answered from the (workspace, customer_id, at,
    amount) index alone: fits do not need it.
    """
    import numpy as np

    from corecrm_plugins.clv.summary import Aggregates

    # Two GROUP BYs: purchase days per customer, then one row per customer.
    # The first day's amount rides along in MIN(date || '|' || amount): ISO
    # dates sort as text, so the minimum is the first day's key. This avoids
    # a window or a self-join (each ~1.5x the cost of the whole query).
    if db.is_postgres(conn):
        key = "CAST(at AS TEXT) || '|' || CAST(amt AS TEXT)"
    else:
        key = "at || '|' || printf('%.17g', amt)"
    marg = "SUM(CASE WHEN cost IS NULL THEN amount * :margin ELSE amount - cost END)" if with_margin else "0"
    sql = f"""
        WITH d AS (
            SELECT customer_id, at, SUM(amount) AS amt,
                   {marg} AS marg
            FROM transactions
            WHERE workspace = :ws AND at <= :until
            GROUP BY customer_id, at
        ), f AS (
            SELECT customer_id, MIN(at) AS first_at, MAX(at) AS last_at, COUNT(*) AS n, SUM(amt) AS total,
                   MIN({key}) AS first_key, SUM(marg) AS margin
            FROM d GROUP BY customer_id
        )
        SELECT f.customer_id, c.external_id, {_day_expr(conn, 'f.first_at')} AS first_day,
               {_day_expr(conn, 'f.last_at')} AS last_day, f.n, f.total, f.first_key, f.margin
        FROM f
        LEFT JOIN customers c ON c.id = f.customer_id AND c.workspace = :ws
        ORDER BY f.customer_id
    """
    rows = conn.execute(sa.text(sql), {"ws": workspace, "until": _date_param(conn, until), "margin": margin}).all()
    n = len(rows)
    if n == 0:
        return Aggregates(*(np.zeros(0, dtype=np.int64) for _ in range(4)), np.zeros(0), np.zeros(0), np.zeros(0), np.zeros(0, dtype=object))
    cols = list(zip(*rows))
    ext = np.array([e if e is not None else str(c) for c, e in zip(cols[0], cols[1])], dtype=object)
    return Aggregates(
        customer_id=np.fromiter(cols[0], dtype=np.int64, count=n),
        first_day=np.fromiter(cols[2], dtype=np.int64, count=n),
        last_day=np.fromiter(cols[3], dtype=np.int64, count=n),
        n_days=np.fromiter(cols[4], dtype=np.int64, count=n),
        total=np.fromiter(cols[5], dtype=float, count=n),
        first_amount=np.fromiter((float(k.rpartition("|")[2]) for k in cols[6]), dtype=float, count=n),
        margin=np.fromiter(cols[7], dtype=float, count=n),
        external_id=ext,
    )


def fetch_holdout_counts(conn: Connection, workspace: str, after: dt.date, until: dt.date) -> dict[int, int]:
    """Distinct purchase days per customer in ``(after, until]``."""
    rows = conn.execute(
        sa.text(
            "SELECT customer_id, COUNT(DISTINCT at) FROM transactions "
            "WHERE workspace = :ws AND at > :after AND at <= :until GROUP BY customer_id"
        ),
        {"ws": workspace, "after": _date_param(conn, after), "until": _date_param(conn, until)},
    ).all()
    return {int(c): int(n) for c, n in rows}


# --------------------------------------------------------------------------- models


def save_model(conn: Connection, workspace: str, fit: Any, until: dt.date, now: dt.datetime, detail: dict[str, Any]) -> int:
    """Store a fit; returns its version (1, 2, … per workspace)."""
    m = clv_models
    version = conn.execute(sa.select(sa.func.coalesce(sa.func.max(m.c.version), 0)).where(m.c.workspace == workspace)).scalar_one() + 1
    conn.execute(
        m.insert().values(
            workspace=workspace,
            version=version,
            model=fit.model,
            params=fit.params,
            log_likelihood=fit.log_likelihood,
            n_customers=fit.n_customers,
            unit=fit.unit,
            until=until,
            fitted_at=now,
            detail=detail,
        )
    )
    return int(version)


def latest_model(conn: Connection, workspace: str, models: Sequence[str]) -> dict[str, Any] | None:
    m = clv_models
    row = (
        conn.execute(sa.select(m).where(m.c.workspace == workspace, m.c.model.in_(list(models))).order_by(m.c.version.desc()).limit(1))
        .mappings()
        .first()
    )
    if row is None:
        return None
    out = dict(row)
    if isinstance(out["until"], str):
        out["until"] = dt.date.fromisoformat(out["until"])
    return out


# --------------------------------------------------------------------------- results


def replace_rows(conn: Connection, table: sa.Table, workspace: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> int:
    """Replace a workspace's rows of a per-customer table in one transaction (delete + bulk insert)."""
    rows = list(rows)
    conn.execute(table.delete().where(table.c.workspace == workspace))
    db.bulk_insert(conn, table, columns, rows)
    return len(rows)


def values_for(conn: Connection, workspace: str, customer_ids: Sequence[int]) -> list[dict[str, Any]]:
    """Stored CLV and segment for some customers (one query per 500 ids)."""
    v, r = clv_values, clv_rfm
    out: list[dict[str, Any]] = []
    ids = [int(c) for c in customer_ids]
    for i in range(0, len(ids), 500):
        chunk = ids[i : i + 500]
        j = sa.outerjoin(v, r, sa.and_(r.c.workspace == v.c.workspace, r.c.customer_id == v.c.customer_id))
        q = (
            sa.select(v.c.customer_id, v.c.clv, v.c.historic_clv, v.c.p_alive, v.c.expected_purchases, v.c.expected_spend,
                      v.c.model_version, v.c.horizon, v.c.unit, r.c.segment, r.c.code)
            .select_from(j)
            .where(v.c.workspace == workspace, v.c.customer_id.in_(chunk))
        )
        out.extend(dict(row) for row in conn.execute(q).mappings())
        seen = {row["customer_id"] for row in out}
        # customers with an RFM segment but no prediction yet (e.g. no model fitted)
        q2 = sa.select(r.c.customer_id, r.c.segment, r.c.code).where(r.c.workspace == workspace, r.c.customer_id.in_(chunk))
        for row in conn.execute(q2).mappings():
            if row["customer_id"] not in seen:
                out.append({"customer_id": row["customer_id"], "segment": row["segment"], "code": row["code"], "clv": None})
    return out


def historic_for(conn: Connection, workspace: str, customer_ids: Sequence[int], *, margin: float = 1.0) -> dict[int, float]:
    """Historic CLV (margin to date, never negative) for some customers, from ``transactions``."""
    t = schema.transactions
    marg = sa.func.sum(sa.case((t.c.cost.is_(None), t.c.amount * margin), else_=t.c.amount - t.c.cost))
    out: dict[int, float] = {}
    ids = [int(c) for c in customer_ids]
    for i in range(0, len(ids), 500):
        q = sa.select(t.c.customer_id, marg).where(t.c.workspace == workspace, t.c.customer_id.in_(ids[i : i + 500])).group_by(t.c.customer_id)
        out.update({int(c): max(float(v or 0.0), 0.0) for c, v in conn.execute(q)})
    return out


def ts(value: dt.datetime, conn: Connection) -> Any:
    return db.ts(value, conn)


def date_value(value: dt.date, conn: Connection) -> Any:
    """A DATE for a raw bulk row: ISO text on SQLite (what SQLAlchemy stores), the object on PostgreSQL."""
    return _date_param(conn, value)
