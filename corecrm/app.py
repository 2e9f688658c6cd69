"""``Crm``: one CRM instance — configuration, plugins, database and the operations on them.

There is no global state: tests and embedding applications create as many
instances as they like, each with its own plugin manager.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import gc
import hashlib
import os
import threading
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import attrs
import sqlalchemy as sa

from corecrm import operations
from corecrm.config import Config
from corecrm.errors import CaptureError, CrmError, NotFound
from corecrm.lifecycle import Stage
from corecrm.models import Event, Lead, utcnow
from corecrm.pipeline import BatchResult, Item, Pipeline, make_items
from corecrm.plugins import PluginManager
from corecrm.records import CaptureFormat, ParsedCapture, RawCapture
from corecrm.rows import lead_from_document, lead_from_row
from corecrm.storage import schema
from corecrm.storage.checkpoint import BackgroundCheckpointer
from corecrm.storage.db import as_utc, driver, dumps, make_engine, param_mark, ts, upgrade

#: Leads per batch on the bulk paths: large enough that per-batch costs vanish,
#: small enough that a batch's objects stay in cache and commits stay short.
BATCH_SIZE = 5000


@attrs.define(slots=True)
class CaptureResult:
    """The outcome of capturing one raw payload."""

    capture_id: int
    origin: str
    status: str  #: processed | skipped | quarantined | rejected | duplicate
    lead_ids: list[int] = attrs.field(factory=list)
    reason: str | None = None
    format: str | None = None
    duplicate: bool = False


class Crm(operations.Operations):
    """A CRM instance. Open one with :meth:`Crm.open`."""

    def __init__(
        self,
        config: Config,
        *,
        database: str | None = None,
        workspace: str | None = None,
        clock: Callable[[], dt.datetime] | None = None,
        plugins: PluginManager | None = None,
        load_plugins: bool = True,
    ) -> None:
        self.config = config
        self.workspace = workspace or os.environ.get("CORECRM_WORKSPACE") or config.default_workspace
        self.database_url = database or os.environ.get("CORECRM_DATABASE") or config.database_url
        self._clock = clock
        self.plugins = plugins or PluginManager(config)
        if plugins is None and load_plugins:
            self.plugins.load()
        self._engine: sa.Engine | None = None
        self._formats: dict[str, dict[str, CaptureFormat]] = {}
        self._write_lock = threading.Lock()
        self._write_conn: sa.Connection | None = None
        self._write_owner: int | None = None
        self._write_pid = 0
        self._checkpointer: BackgroundCheckpointer | None = None

    @classmethod
    def open(
        cls,
        config: str | os.PathLike[str] | Config | None = None,
        *,
        database: str | None = None,
        workspace: str | None = None,
        clock: Callable[[], dt.datetime] | None = None,
        create: bool = True,
    ) -> Crm:
        """Load the configuration and plugins; create or upgrade the database when asked."""
        cfg = config if isinstance(config, Config) else Config.load(config)
        crm = cls(cfg, database=database, workspace=workspace, clock=clock)
        if create:
            crm.ensure_schema()
        return crm

    # ------------------------------------------------------------------ basics
    def now(self) -> dt.datetime:
        if self._clock is not None:
            return self._clock()
        env = os.environ.get("CORECRM_NOW")
        if env:
            value = dt.datetime.fromisoformat(env)
            return value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)
        return utcnow()

    @property
    def engine(self) -> sa.Engine:
        if self._engine is None:
            url = self.database_url
            if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
                Path(url[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
            self._engine = make_engine(url)
        return self._engine

    def close(self) -> None:
        with self._write_lock:
            if self._write_conn is not None:
                self._write_conn.close()
                self._write_conn = None
            if self._checkpointer is not None:
                self._checkpointer.close()
                self._checkpointer = None
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None

    @contextlib.contextmanager
    def write(self) -> Iterator[sa.Connection]:
        """A write transaction for the hot paths: every capture and every intake batch.

        On a SQLite file one connection is kept for them, behind a lock (SQLite
        lets one writer in at a time anyway), and the transaction is begun and
        committed on the driver: a pooled checkout per transaction, and
        SQLAlchemy's begin/commit bookkeeping, each cost as much as the
        single-lead transaction itself. SQLAlchemy statements inside still join
        the transaction (their autobegin finds it open) and are committed with it.
        Elsewhere (PostgreSQL, in-memory SQLite) this is ``engine.begin()``.
        Not re-entrant: a hot path never nests.
        """
        engine = self.engine
        if engine.dialect.name != "sqlite" or not isinstance(engine.pool, sa.pool.QueuePool):
            with engine.begin() as conn:
                yield conn
            return
        if self._write_owner == threading.get_ident():
            raise RuntimeError("Crm.write() is not re-entrant: this thread is already in a write transaction")
        with self._write_lock:
            self._write_owner = threading.get_ident()
            try:
                conn = self._write_conn
                if conn is not None and self._write_pid != os.getpid():
                    # A forked child must not share its parent's SQLite connection.
                    conn = self._write_conn = self._checkpointer = None
                    engine.dispose(close=False)
                if conn is None or conn.closed or conn.invalidated:
                    conn = self._write_conn = engine.connect()
                    self._write_pid = os.getpid()
                    # Its WAL checkpoints run on a background thread (see storage/checkpoint.py).
                    driver(conn).execute("PRAGMA wal_autocheckpoint=0")
                    if self._checkpointer is None:
                        self._checkpointer = BackgroundCheckpointer(str(engine.url.database))
                dbapi = driver(conn)
                dbapi.execute("BEGIN IMMEDIATE")
                try:
                    yield conn
                except BaseException:
                    if conn.in_transaction():
                        conn.rollback()
                    elif dbapi.in_transaction:
                        dbapi.rollback()
                    raise
                if conn.in_transaction():
                    conn.commit()
                else:
                    dbapi.commit()
                self._checkpointer.poke()  # type: ignore[union-attr]
            finally:
                self._write_owner = None

    def __enter__(self) -> Crm:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def ws(self, workspace: str | None) -> str:
        return workspace or self.workspace

    def init_db(self) -> tuple[str | None, str]:
        """Create or upgrade the core schema and create plugins' missing tables."""
        extra = self.plugins.collect("crm_db_schema")
        return upgrade(self.engine, extra)

    def ensure_schema(self) -> None:
        """Create a new database; refuse one whose schema is older than this code.

        An older database is never upgraded behind the admin's back: the error
        says to run ``corecrm db upgrade``. Plugins' missing tables are created.
        """
        from corecrm.migrations import HEAD

        with self.engine.connect() as conn:
            insp = sa.inspect(conn)
            if not insp.has_table("alembic_version"):
                if insp.has_table("leads"):
                    raise CrmError(f"{self.database_url}: the database has no schema version; it was not created by corecrm")
                conn.rollback()
                self.init_db()
                return
            rev = conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()
        if rev != HEAD:
            raise CrmError(f"{self.database_url}: database schema is at revision {rev}, this corecrm needs {HEAD}: run `corecrm db upgrade`")
        extra = self.plugins.collect("crm_db_schema")
        if extra:
            with self.engine.begin() as conn:
                for md in extra:
                    md.create_all(conn, checkfirst=True)

    def settings(self, plugin: str, workspace: str | None = None) -> Any:
        return self.plugins.settings(plugin, self.ws(workspace))

    # ------------------------------------------------------------------ capture
    def capture_formats(self, workspace: str | None = None) -> dict[str, CaptureFormat]:
        ws = self.ws(workspace)
        if ws not in self._formats:
            self._formats[ws] = self.plugins.collect_named("crm_capture_formats", workspace=ws, what="capture format")
        return self._formats[ws]

    def capture_sources(self, workspace: str | None = None) -> dict[str, Any]:
        """Pollable sources the enabled plugins declare (``crm_capture_sources``)."""
        return self.plugins.collect_named("crm_capture_sources", workspace=self.ws(workspace), what="capture source")

    def import_formats(self, workspace: str | None = None) -> dict[str, Any]:
        return self.plugins.collect_named("crm_import_formats", workspace=self.ws(workspace), what="import format")

    def import_format_for(self, path: str | os.PathLike[str], workspace: str | None = None) -> Any:
        """The import format for a file, by its extension; a clear error when none fits."""
        name = str(path).lower()
        formats = self.import_formats(workspace)
        for fmt in formats.values():
            if any(name.endswith(ext.lower()) for ext in fmt.extensions):
                return fmt
        known = ", ".join(sorted({e for f in formats.values() for e in f.extensions})) or "none installed"
        raise CaptureError(f"{path}: no import format for this file type (known: {known})")

    def customer_values(self, customer_ids: Sequence[int], *, workspace: str | None = None) -> list[Any]:
        """Customer values from every plugin that estimates them (observer-style: failures are logged)."""
        from corecrm.context import HookContext

        ws = self.ws(workspace)
        ctx = HookContext(crm=self, workspace=ws, now=self.now(), mode="event", events_loader=self.load_events)
        out: list[Any] = []
        for _plugin, recs in self.plugins.each("crm_customer_values", workspace=ws, observer=True, customer_ids=list(customer_ids), ctx=ctx):
            out.extend(recs)
        return out

    def choose_format(self, raw: RawCapture, workspace: str | None = None) -> CaptureFormat:
        formats = self.capture_formats(workspace)
        if raw.format:
            fmt = formats.get(raw.format)
            if fmt is None:
                raise CaptureError(f"{raw.origin or 'capture'}: unknown capture format {raw.format!r} (installed: {', '.join(formats) or 'none'})")
            return fmt
        best: tuple[int, str] | None = None
        for name, fmt in formats.items():
            try:
                conf = int(fmt.sniff(raw) or 0)
            except Exception:
                conf = 0
            if conf > 0 and (best is None or conf > best[0] or (conf == best[0] and name < best[1])):
                best = (conf, name)
        if best is None:
            raise CaptureError(f"{raw.origin or 'capture'}: no capture format accepts this payload (installed: {', '.join(formats) or 'none'})")
        return formats[best[1]]

    def capture(
        self,
        raws: RawCapture | Iterable[RawCapture],
        *,
        workspace: str | None = None,
        strict: bool = False,
    ) -> list[CaptureResult]:
        """Store raw payloads, then parse and run them through the pipeline.

        Each raw capture is committed before it is processed, with its content
        hash: capturing the same payload again returns the earlier result and
        creates nothing. A parser or plugin that raises quarantines the capture
        (or just the failing lead) with the error and the plugin's name.

        ``strict=True`` (the CLI's file captures) instead refuses a payload no
        format can parse: nothing is written and :class:`CaptureError` names it.
        """
        ws = self.ws(workspace)
        batch = [raws] if isinstance(raws, RawCapture) else list(raws)
        results: list[CaptureResult] = []
        if strict:
            for raw in batch:  # parse first: an unreadable file leaves the database as it was
                fmt = self.choose_format(raw, ws)
                try:
                    fmt.parse(raw)
                except Exception as exc:
                    raise CaptureError(f"{raw.origin or 'capture'}: {fmt.name} (plugin {fmt.plugin}) cannot parse it: {exc}") from None
        stored = self._store_captures(batch, ws)
        pending: list[tuple[RawCapture, CaptureResult]] = []
        for raw, (cid, status, fresh) in zip(batch, stored):
            raw.id = cid
            if not fresh and status != "new":
                results.append(CaptureResult(cid, raw.origin, "duplicate", self._capture_lead_ids(cid, ws), duplicate=True))
                continue
            res = CaptureResult(cid, raw.origin, "processed")
            results.append(res)
            pending.append((raw, res))
        if pending:
            fresh = {cid for cid, _status, is_new in stored if is_new}
            self._process_captures(pending, ws, all_fresh=all(raw.id in fresh for raw, _ in pending))
        return results

    def store_captures(self, raws: RawCapture | Iterable[RawCapture], *, workspace: str | None = None) -> list[CaptureResult]:
        """Commit raw payloads without processing them; :meth:`process_captures` runs them later.

        For servers that answer with the capture id as soon as the payload is
        safe, and run the pipeline after the response. One result per payload:
        status ``new`` (to be processed: stored now, or stored earlier and not
        processed yet, then with ``duplicate=True``) or ``duplicate`` (same
        content already processed).
        """
        ws = self.ws(workspace)
        batch = [raws] if isinstance(raws, RawCapture) else list(raws)
        out: list[CaptureResult] = []
        for raw, (cid, status, fresh) in zip(batch, self._store_captures(batch, ws)):
            raw.id = cid
            if not fresh and status != "new":
                out.append(CaptureResult(cid, raw.origin, "duplicate", self._capture_lead_ids(cid, ws), duplicate=True))
            else:
                out.append(CaptureResult(cid, raw.origin, "new", duplicate=not fresh))
        return out

    def process_captures(self, raws: RawCapture | Iterable[RawCapture], *, workspace: str | None = None) -> list[CaptureResult]:
        """Parse stored raw captures (``raw.id`` set by :meth:`store_captures`) and run them through the pipeline."""
        ws = self.ws(workspace)
        batch = [raws] if isinstance(raws, RawCapture) else list(raws)
        pending = [(raw, CaptureResult(raw.id, raw.origin, "processed")) for raw in batch]  # type: ignore[arg-type]
        if pending:
            self._process_captures(pending, ws)
        return [res for _, res in pending]

    def store_raw_capture(
        self,
        payload: bytes,
        *,
        origin: str,
        format: str | None = None,
        status: str = "processed",
        content_hash: str | None = None,
        meta: dict[str, Any] | None = None,
        workspace: str | None = None,
    ) -> int:
        """Record a raw capture that another path processes (an import's manifest, say); idempotent by hash."""
        ws = self.ws(workspace)
        digest = content_hash or hashlib.sha256(payload).hexdigest()
        with self.engine.begin() as conn:
            cid = conn.execute(
                _dialect_insert(conn)(schema.captures)
                .values(workspace=ws, content_hash=digest, origin=origin, format=format, payload=payload, meta=meta, status=status, received_at=self.now())
                .on_conflict_do_nothing(index_elements=["workspace", "content_hash"])
                .returning(schema.captures.c.id)
            ).scalar()
            if cid is None:
                cid = conn.execute(sa.select(schema.captures.c.id).where(schema.captures.c.workspace == ws, schema.captures.c.content_hash == digest)).scalar_one()
        return cid

    def _store_captures(self, batch: Sequence[RawCapture], ws: str) -> list[tuple[int, str, bool]]:
        """Commit raw payloads (one transaction); return (id, status, newly stored) per payload."""
        now = self.now()
        out: list[tuple[int, str, bool]] = []
        with self.write() as conn:
            mark = param_mark(conn)
            insert_sql = (
                "INSERT INTO captures (workspace, content_hash, origin, content_type, format, payload, meta, status, received_at) "
                f"VALUES ({', '.join([mark] * 9)}) ON CONFLICT (workspace, content_hash) DO NOTHING RETURNING id"
            )
            select_sql = f"SELECT id, status FROM captures WHERE workspace = {mark} AND content_hash = {mark}"
            received = ts(now, conn)
            dbapi = driver(conn)
            for raw in batch:
                digest = raw.content_hash or hashlib.sha256(raw.payload).hexdigest()
                raw.content_hash = digest
                # Driver-level statements: this is the latency path of every web
                # form and e-mail. Insert unless the same payload is already stored.
                row = dbapi.execute(
                    insert_sql, (ws, digest, raw.origin, raw.content_type, raw.format, raw.payload, dumps(raw.meta or None), "new", received)
                ).fetchone()
                if row is not None:
                    out.append((row[0], "new", True))
                    continue
                row = dbapi.execute(select_sql, (ws, digest)).fetchone()
                out.append((row[0], row[1], False))
        return out

    def _process_captures(self, pending: list[tuple[RawCapture, CaptureResult]], ws: str, *, all_fresh: bool = False) -> None:
        """Parse and run captures through the pipeline.

        ``all_fresh``: every capture was stored just now, so none of its leads
        can exist yet and the origin-key look-up is skipped.
        """
        pipe = Pipeline(self, ws)
        items: list[Item] = []
        owners: list[CaptureResult] = []
        statuses: dict[int, tuple[str, str | None, str | None]] = {}
        failed: list[tuple[RawCapture, str, str | None, str]] = []
        for raw, res in pending:
            try:
                fmt = self.choose_format(raw, ws)
            except CaptureError as exc:
                failed.append((raw, "parse", None, str(exc)))
                res.status, res.reason = "quarantined", str(exc)
                continue
            res.format = fmt.name
            try:
                parsed = fmt.parse(raw)
                if not isinstance(parsed, ParsedCapture):
                    raise TypeError(f"parse() returned {type(parsed).__name__}, expected ParsedCapture")
            except Exception as exc:
                msg = f"{type(exc).__name__}: {exc}"
                failed.append((raw, "parse", fmt.plugin, msg))
                res.status, res.reason = "quarantined", f"{fmt.plugin}: {msg}"
                continue
            if parsed.skipped or not parsed.leads:
                reason = parsed.skipped or "no lead in this payload"
                statuses[raw.id] = ("skipped", reason, fmt.name)  # type: ignore[index]
                res.status, res.reason = "skipped", reason
                continue
            statuses[raw.id] = ("processed", None, fmt.name)  # type: ignore[index]
            for i, lead in enumerate(parsed.leads):
                lead.workspace = ws
                lead.capture_id = raw.id
                lead.origin_key = lead.origin_key or f"{raw.content_hash[:40]}:{i}"  # type: ignore[index]
                if not lead.source and raw.meta.get("source"):
                    lead.source = raw.meta["source"]
                items.append(Item(lead, raw.id, i))
                owners.append(res)
        pipe.decide(items)
        now = pipe.now
        with self.write() as conn:
            batch_res = pipe.persist(conn, items, known_new=all_fresh)
            for raw, step, plugin, msg in failed:
                conn.execute(
                    schema.quarantine.insert(),
                    {"workspace": ws, "capture_id": raw.id, "item_index": None, "lead": None, "step": step, "plugin": plugin, "error": msg[:4000], "status": "open", "created_at": now},
                )
                conn.execute(schema.captures.update().where(schema.captures.c.id == raw.id).values(status="quarantined", reason=msg[:4000], processed_at=now))
            if statuses:
                mark = param_mark(conn)
                sql = f"UPDATE captures SET status = {mark}, reason = {mark}, format = {mark}, processed_at = {mark} WHERE id = {mark}"
                stamp = ts(now, conn)
                cur = driver(conn).cursor()
                try:
                    cur.executemany(sql, [(status, reason, fmt_name, stamp, cid) for cid, (status, reason, fmt_name) in statuses.items()])
                finally:
                    cur.close()
        for it, res, lead_id in zip(items, owners, batch_res.lead_ids):
            if lead_id is not None and lead_id not in res.lead_ids:
                res.lead_ids.append(lead_id)
            elif it.out in ("quarantined", "review") and res.status == "processed":
                res.status, res.reason = "quarantined", f"{it.error[1] or 'core'} at {it.error[0]}: {it.error[2]}" if it.error else None
            elif it.out == "rejected" and res.status == "processed" and not res.lead_ids:
                res.status, res.reason = "rejected", it.error[2] if it.error else None
        pipe.observe(items, batch_res)

    def _capture_lead_ids(self, capture_id: int, ws: str) -> list[int]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(schema.leads.c.id, schema.leads.c.merged_into).where(
                    schema.leads.c.workspace == ws, schema.leads.c.capture_id == capture_id
                ).order_by(schema.leads.c.id)
            ).all()
        return [r.id for r in rows]

    def intake(
        self,
        leads: Sequence[Lead],
        *,
        workspace: str | None = None,
        capture_id: int | None = None,
        mode: str = "intake",
    ) -> BatchResult:
        """Run already-parsed leads through the pipeline in batches (importers use this).

        Leads should carry an ``origin_key`` (e.g. file hash + row number) so
        that running the same input again inserts nothing twice.
        """
        ws = self.ws(workspace)
        total = BatchResult()
        with _gc_paused():
            self._intake_batches(leads, ws, capture_id, mode, total)
        return total

    def _intake_batches(self, leads: Sequence[Lead], ws: str, capture_id: int | None, mode: str, total: BatchResult) -> None:
        for start in range(0, len(leads), BATCH_SIZE):
            chunk = leads[start : start + BATCH_SIZE]
            for lead in chunk:
                lead.workspace = ws
            pipe = Pipeline(self, ws, mode=mode)  # type: ignore[arg-type]
            items = make_items(chunk, capture_id, start)
            pipe.decide(items)
            with self.write() as conn:
                res = pipe.persist(conn, items)
            pipe.observe(items, res)
            total.created += res.created
            total.merged += res.merged
            total.quarantined += res.quarantined
            total.rejected += res.rejected
            total.existing += res.existing
            total.lead_ids += res.lead_ids

    # ------------------------------------------------------------------ retry
    def retry(self, *, workspace: str | None = None, ids: Sequence[int] | None = None, accept_review: bool = False) -> dict[str, int]:
        """Process quarantined captures and leads again (after a plugin was fixed or disabled).

        Leads held for review by screening are only released with ``accept_review``
        (screening is then skipped for them).
        """
        ws = self.ws(workspace)
        q = schema.quarantine
        statuses = ["open"] + (["review"] if accept_review else [])
        stmt = sa.select(q).where(q.c.workspace == ws, q.c.status.in_(statuses)).order_by(q.c.id)
        if ids:
            stmt = stmt.where(q.c.id.in_(list(ids)))
        with self.engine.connect() as conn:
            rows = conn.execute(stmt).mappings().all()
        done = {"resolved": 0, "still_quarantined": 0, "skipped": 0}
        for row in rows:
            outcome = self._retry_one(row, ws)
            done[outcome] += 1
        return done

    def _retry_one(self, row: Any, ws: str) -> str:
        q = schema.quarantine
        now = self.now()
        if row["lead"] is None:
            # The whole capture failed to parse: parse it again.
            with self.engine.connect() as conn:
                cap = conn.execute(sa.select(schema.captures).where(schema.captures.c.id == row["capture_id"])).mappings().one()
            raw = RawCapture(payload=cap["payload"], origin=cap["origin"] or "", content_type=cap["content_type"], meta=dict(cap["meta"] or {}), id=cap["id"], content_hash=cap["content_hash"])
            res = CaptureResult(cap["id"], raw.origin, "processed")
            with self.engine.begin() as conn:
                conn.execute(q.update().where(q.c.id == row["id"]).values(status="retrying"))
            self._process_captures([(raw, res)], ws)
            ok = res.status in ("processed", "skipped")
            with self.engine.begin() as conn:
                if ok:
                    conn.execute(q.update().where(q.c.id == row["id"]).values(status="resolved", resolved_at=now, lead_id=res.lead_ids[0] if res.lead_ids else None))
                else:  # _process_captures wrote a fresh quarantine row; retire the old one
                    conn.execute(q.update().where(q.c.id == row["id"]).values(status="superseded", resolved_at=now))
            return "resolved" if ok else "still_quarantined"
        doc = dict(row["lead"])
        origin_key = doc.pop("origin_key", None)
        history = doc.pop("history", None) or []
        lead = lead_from_document(doc)
        lead.origin_key = origin_key
        lead.capture_id = row["capture_id"]
        lead.workspace = ws
        pipe = Pipeline(self, ws, mode="retry")
        it = Item(lead, row["capture_id"], row["item_index"])
        # Keep the field changes already applied to the stored document (re-running
        # verify would not see the original values again); every step runs again
        # and re-records its findings, so the old ones would only be duplicates.
        it.history = [h for h in history if h.get("type") == "field_updated"]
        skip = ("screen",) if row["status"] == "review" else ()
        pipe.decide([it], skip=skip)
        if it.out is not None:
            with self.engine.begin() as conn:
                step, plugin, err = it.error or ("?", None, "?")
                conn.execute(q.update().where(q.c.id == row["id"]).values(step=step, plugin=plugin, error=err[:4000]))
            return "still_quarantined"
        with self.engine.begin() as conn:
            res = pipe.persist(conn, [it])
            conn.execute(q.update().where(q.c.id == row["id"]).values(status="resolved", resolved_at=now, lead_id=it.lead.id))
            self._refresh_capture_status(conn, row["capture_id"], ws)
        pipe.observe([it], res)
        return "resolved"

    def _refresh_capture_status(self, conn: sa.Connection, capture_id: int, ws: str) -> None:
        q = schema.quarantine
        open_left = conn.execute(
            sa.select(sa.func.count()).select_from(q).where(q.c.workspace == ws, q.c.capture_id == capture_id, q.c.status.in_(["open", "review"]))
        ).scalar_one()
        if not open_left:
            conn.execute(schema.captures.update().where(schema.captures.c.id == capture_id).values(status="processed", reason=None))

    # ------------------------------------------------------------------ reads
    def lead(self, lead_id: int, *, workspace: str | None = None) -> Lead:
        ws = self.ws(workspace)
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(schema.leads).where(schema.leads.c.workspace == ws, schema.leads.c.id == lead_id)).mappings().first()
        if row is None:
            raise NotFound(f"lead {lead_id} not found in workspace {ws!r}")
        return lead_from_row(row)

    def leads(
        self,
        *,
        workspace: str | None = None,
        stage: str | None = None,
        owner: str | None = None,
        team: str | None = None,
        status: str | None = None,
        limit: int | None = None,
        order: str = "id",
    ) -> list[Lead]:
        ws = self.ws(workspace)
        t = schema.leads
        stmt = sa.select(t).where(t.c.workspace == ws)
        if stage:
            stmt = stmt.where(t.c.stage == Stage(stage).value)
        if owner:
            stmt = stmt.where(t.c.owner == owner)
        if team:
            stmt = stmt.where(t.c.team == team)
        if status:
            stmt = stmt.where(t.c.status == status)
        if order == "score":
            stmt = stmt.order_by(t.c.score.desc().nulls_last(), t.c.id)
        else:
            stmt = stmt.order_by(t.c.id)
        if limit:
            stmt = stmt.limit(limit)
        with self.engine.connect() as conn:
            return [lead_from_row(r) for r in conn.execute(stmt).mappings()]

    def load_events(self, lead_ids: list[int], *, workspace: str | None = None) -> dict[int, list[Event]]:
        """Stored ``events`` rows of several leads in one query, oldest first."""
        ws = self.ws(workspace)
        out: dict[int, list[Event]] = {i: [] for i in lead_ids}
        e = schema.events
        with self.engine.connect() as conn:
            for start in range(0, len(lead_ids), 500):
                chunk = lead_ids[start : start + 500]
                rows = conn.execute(sa.select(e).where(e.c.workspace == ws, e.c.lead_id.in_(chunk)).order_by(e.c.at, e.c.id)).mappings()
                for r in rows:
                    out[r["lead_id"]].append(Event(r["type"], as_utc(r["at"]), r["plugin"], dict(r["detail"] or {}), lead_id=r["lead_id"], id=r["id"]))
        return out

    def history(self, lead_id: int, *, workspace: str | None = None) -> list[Event]:
        """The lead's whole history: captured, intake steps, then stored events, in time order."""
        ws = self.ws(workspace)
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(schema.leads.c.created_at, schema.leads.c.capture_id, schema.leads.c.source, schema.leads.c.intake, schema.leads.c.origin_key).where(
                    schema.leads.c.workspace == ws, schema.leads.c.id == lead_id
                )
            ).first()
            if row is None:
                raise NotFound(f"lead {lead_id} not found in workspace {ws!r}")
            fmt = None
            if row.capture_id is not None:
                fmt = conn.execute(sa.select(schema.captures.c.format, schema.captures.c.origin).where(schema.captures.c.id == row.capture_id)).first()
        created = as_utc(row.created_at)
        events = [Event("captured", created, fmt.format if fmt else None, {"capture_id": row.capture_id, "source": row.source, "origin": fmt.origin if fmt else None}, lead_id=lead_id)]
        for h in row.intake or []:
            # Intake steps are stored without their time when it is the lead's created_at.
            at = as_utc(dt.datetime.fromisoformat(h["at"])) if h.get("at") else created
            events.append(Event(h["type"], at, h.get("plugin"), h.get("detail") or {}, lead_id=lead_id))
        events.extend(self.load_events([lead_id], workspace=ws)[lead_id])
        return events

    def quarantined(self, *, workspace: str | None = None, status: Sequence[str] = ("open", "review")) -> list[dict[str, Any]]:
        ws = self.ws(workspace)
        q = schema.quarantine
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(q).where(q.c.workspace == ws, q.c.status.in_(list(status))).order_by(q.c.id)).mappings().all()
        return [dict(r) for r in rows]



@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector on bulk paths.

    A batch allocates hundreds of thousands of small objects that reference
    counting frees anyway; the collector's generation-0 passes over them cost
    a third of the pipeline's time (measured with bench/bench_intake.py).
    """
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def _dialect_insert(conn: sa.Connection) -> Any:
    """``INSERT … ON CONFLICT`` for the connection's dialect (SQLite and PostgreSQL share the API)."""
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert
