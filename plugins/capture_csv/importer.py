"""The import job: stream a file in batches through the intake pipeline.

* Every row gets an origin key (file hash + line number): running the same
  file again imports nothing twice, and an interrupted import resumes where
  its last committed batch ended (``csv_imports.last_line``), losing nothing.
* Bad rows never stop the import: each goes to the rejects report with its
  original line number, the column, an error code, a message and the row
  itself (formula-neutralised, like every CSV corecrm writes).
* ``--skip-existing`` / ``--update`` look existing leads up by e-mail, one query
  per batch; otherwise matching is left to the de-duplication plugins.
"""

from __future__ import annotations

import csv

import hashlib
import json
import re
from pathlib import Path
from typing import IO, Any, Callable, Sequence

import attrs
import sqlalchemy as sa

from corecrm.models import Lead
from corecrm.reports import csv_safe
from corecrm.storage import schema
from corecrm_plugins.capture_csv.mapping import ColumnMap, map_columns
from corecrm_plugins.capture_csv.reading import Table, read_table

metadata = sa.MetaData()
imports = sa.Table(
    "csv_imports",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("workspace", sa.String(64), nullable=False),
    sa.Column("file_hash", sa.String(64), nullable=False),
    sa.Column("file_name", sa.Text),
    sa.Column("capture_id", sa.Integer),
    sa.Column("status", sa.String(16), nullable=False),  #: running | done
    sa.Column("last_line", sa.Integer, nullable=False, default=0),
    sa.Column("counts", sa.JSON),
    sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("finished_at", sa.DateTime(timezone=True)),
    sa.UniqueConstraint("workspace", "file_hash", name="uq_csv_imports_workspace_hash"),
)

_EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_LIST_SPLIT = re.compile(r"[;,|]")


@attrs.define(slots=True)
class Reject:
    line: int
    column: str
    code: str
    message: str
    row: str


@attrs.define
class ImportSummary:
    file: str
    rows: int = 0
    imported: int = 0
    updated: int = 0
    merged: int = 0
    rejected: int = 0
    skipped_existing: int = 0
    already_imported: int = 0
    quarantined: int = 0
    resumed_from_line: int | None = None
    dry_run: bool = False
    encoding: str | None = None
    delimiter: str | None = None
    mapping: list[dict[str, Any]] = attrs.field(factory=list)
    rejects_path: str | None = None


def file_hash(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


class RejectsWriter:
    """Writes the rejects report lazily (no file unless a row is rejected)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._fh: IO[str] | None = None
        self._w: Any = None
        self.count = 0

    def add(self, r: Reject) -> None:
        self.count += 1
        if self.path is None:
            return
        if self._w is None:
            self._fh = self.path.open("w", newline="", encoding="utf-8")
            self._w = csv.writer(self._fh)
            self._w.writerow(["line", "column", "code", "message", "row"])
        self._w.writerow([r.line, csv_safe(r.column), r.code, csv_safe(r.message), csv_safe(r.row)])

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()


def row_to_lead(line: int, values: Sequence[str], raw: str, columns: list[ColumnMap], width: int) -> Lead | Reject:
    """Build a lead from one row, or say why the row is rejected."""
    if len(values) > width and any(v.strip() for v in values[width:]):
        return Reject(line, "", "too_many_fields", f"{len(values)} fields, the header has {width}", raw)
    if len(values) < width:
        return Reject(line, columns[len(values)].header if len(values) < len(columns) else "", "missing_fields", f"{len(values)} fields, the header has {width}", raw)
    lead = Lead()
    full_name = None
    for cm in columns:
        if cm.target is None:
            continue
        value = values[cm.index].strip()
        if not value:
            continue
        t = cm.target
        if t.startswith("attributes."):
            lead.attributes[t[11:]] = value
        elif t == "full_name":
            full_name = value
        elif t == "interests":
            lead.interests = [p.strip() for p in _LIST_SPLIT.split(value) if p.strip()]
        elif t == "email":
            if not _EMAIL_RE.match(value):
                return Reject(line, cm.header, "invalid_email", f"not an e-mail address: {value!r}", raw)
            lead.email = value
        elif t == "country":
            lead.country = value.upper() if len(value) == 2 else value
        else:
            setattr(lead, t, value)
    if full_name and not (lead.first_name or lead.last_name):
        parts = full_name.split()
        lead.first_name, lead.last_name = (" ".join(parts[:-1]) or None, parts[-1]) if len(parts) > 1 else (None, parts[0])
    if not (lead.email or lead.phone or lead.last_name or lead.first_name or lead.company):
        return Reject(line, "", "no_contact", "no e-mail, phone, name or company", raw)
    return lead


def save_mapping(config_path: Path, name: str, columns: list[ColumnMap]) -> None:
    import tomlkit

    doc = tomlkit.parse(config_path.read_text(encoding="utf-8")) if config_path.exists() else tomlkit.document()
    plugins = doc.setdefault("plugins", tomlkit.table())
    mine = plugins.setdefault("capture_csv", tomlkit.table())
    maps = mine.setdefault("mappings", tomlkit.table())
    table = tomlkit.table()
    for cm in columns:
        table[cm.header] = cm.target or "-"
    maps[name] = table
    config_path.write_text(tomlkit.dumps(doc), encoding="utf-8")


def run_import(
    crm: Any,
    path: Path,
    *,
    settings: Any,
    maps: dict[str, str] | None = None,
    encoding: str | None = None,
    delimiter: str | None = None,
    sheet: str | None = None,
    dry_run: bool = False,
    existing: str = "pipeline",  #: pipeline | update | skip
    rejects_path: Path | None = None,
    unmapped: str | None = None,
    batch_size: int | None = None,
    progress: Callable[[int], None] | None = None,
    on_mapping: Callable[[list[ColumnMap]], None] | None = None,
) -> ImportSummary:
    ws = crm.workspace
    table: Table = read_table(path, encoding=encoding, delimiter=delimiter, sheet=sheet)
    columns = map_columns(
        table.header, explicit=maps, extra_synonyms=settings["synonyms"], unmapped=unmapped or settings["unmapped"], cutoff=settings["fuzzy_cutoff"]
    )
    if on_mapping:
        on_mapping(columns)
    summary = ImportSummary(file=str(path), dry_run=dry_run, encoding=table.encoding, delimiter=table.delimiter)
    summary.mapping = [{"column": c.header, "field": c.target, "how": c.how, "score": c.score} for c in columns]
    width = len(table.header)
    digest = file_hash(path)
    rejects = RejectsWriter(rejects_path)
    summary.rejects_path = str(rejects_path) if rejects_path else None
    size = batch_size or settings["batch_size"]
    import_id, start_after, was_done = (None, 0, False) if dry_run else _begin(crm, ws, path, digest)
    if start_after and not was_done:
        summary.resumed_from_line = start_after + 1
    batch: list[Lead] = []
    last_line = start_after
    try:
        for line, values, raw in table.rows():
            summary.rows += 1
            if line <= start_after:
                summary.already_imported += 1
                continue
            got = row_to_lead(line, values, raw, columns, width)
            if isinstance(got, Reject):
                rejects.add(got)
                summary.rejected += 1
            else:
                got.origin_key = f"csv:{digest[:40]}:{line}"
                if not got.source and settings["default_source"]:
                    got.source = settings["default_source"]
                batch.append(got)
            last_line = line
            if len(batch) >= size:
                _flush(crm, batch, summary, existing, dry_run, import_id, last_line)
                if progress:
                    progress(len(batch))
                batch = []
        if batch or not dry_run:
            _flush(crm, batch, summary, existing, dry_run, import_id, last_line)
            if progress:
                progress(len(batch))
    finally:
        rejects.close()
    if not dry_run and import_id is not None:
        with crm.engine.begin() as conn:
            conn.execute(imports.update().where(imports.c.id == import_id).values(status="done", finished_at=crm.now(), last_line=last_line, counts=attrs.asdict(summary, filter=lambda a, v: a.name != "mapping")))
    return summary


def _begin(crm: Any, ws: str, path: Path, digest: str) -> tuple[int, int, bool]:
    """Find or start this file's import; return (import id, last committed line, finished before)."""
    with crm.engine.connect() as conn:
        row = conn.execute(sa.select(imports).where(imports.c.workspace == ws, imports.c.file_hash == digest)).mappings().first()
    if row is not None:
        if row["status"] == "done":
            with crm.engine.begin() as conn:
                conn.execute(imports.update().where(imports.c.id == row["id"]).values(status="running"))
        return row["id"], row["last_line"], row["status"] == "done"
    manifest = {"file": path.name, "sha256": digest, "size": path.stat().st_size}
    # The file itself stays with the admin; the capture records what was imported and when.
    cid = crm.store_raw_capture(json.dumps(manifest).encode(), origin=f"import:{path.name}", format="csv_import", status="processed", content_hash=f"import:{digest}", meta=manifest)
    with crm.engine.begin() as conn:
        return conn.execute(
            imports.insert().returning(imports.c.id),
            {"workspace": ws, "file_hash": digest, "file_name": path.name, "capture_id": cid, "status": "running", "last_line": 0, "started_at": crm.now()},
        ).scalar_one(), 0, False


def _existing_by_email(crm: Any, emails: set[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    lt = schema.leads
    keys = list(emails)
    with crm.engine.connect() as conn:
        for i in range(0, len(keys), 500):
            chunk = keys[i : i + 500]
            for em, lid in conn.execute(sa.select(lt.c.email_norm, lt.c.id).where(lt.c.workspace == crm.workspace, lt.c.email_norm.in_(chunk), lt.c.status != "merged")):
                out.setdefault(em, lid)
    return out


_UPDATABLE = ("first_name", "last_name", "phone", "company", "title", "country", "region", "city", "postal_code", "source", "campaign", "language")


def _flush(crm: Any, batch: list[Lead], summary: ImportSummary, existing: str, dry_run: bool, import_id: int | None, last_line: int) -> None:
    if dry_run:
        summary.imported += len(batch)
        return
    todo = batch
    if existing in ("update", "skip") and batch:
        found = _existing_by_email(crm, {ld.email.strip().lower() for ld in batch if ld.email})
        todo = []
        updates = []
        for ld in batch:
            lid = found.get((ld.email or "").strip().lower())
            if lid is None:
                todo.append(ld)
            elif existing == "skip":
                summary.skipped_existing += 1
            else:
                updates.append((lid, ld))
        if updates:
            update_leads(crm, updates)
            summary.updated += len(updates)
    if todo:
        res = crm.intake(todo)
        summary.imported += len(res.created)
        summary.merged += len(res.merged)
        summary.quarantined += len(res.quarantined)
        summary.rejected += res.rejected
        summary.already_imported += res.existing
    if import_id is not None:
        with crm.engine.begin() as conn:
            conn.execute(imports.update().where(imports.c.id == import_id).values(last_line=last_line))




def update_leads(crm: Any, updates: list[tuple[int, Lead]]) -> None:
    """``--update``: overwrite stored leads' fields with the file's non-empty values; one event each."""
    from corecrm.models import Event

    lt = schema.leads
    now = crm.now()
    with crm.engine.begin() as conn:
        current = {}
        ids = [lid for lid, _ in updates]
        for i in range(0, len(ids), 500):
            for row in conn.execute(sa.select(lt).where(lt.c.workspace == crm.workspace, lt.c.id.in_(ids[i : i + 500]))).mappings():
                current[row["id"]] = row
        events = []
        for lid, ld in updates:
            old = current.get(lid)
            if old is None:
                continue
            changes = {f: getattr(ld, f) for f in _UPDATABLE if getattr(ld, f) not in (None, "") and getattr(ld, f) != old[f]}
            if ld.attributes:
                merged = {**(old["attributes"] or {}), **ld.attributes}
                if merged != (old["attributes"] or {}):
                    changes["attributes"] = merged
            if not changes:
                continue
            conn.execute(lt.update().where(lt.c.id == lid).values(**changes, updated_at=now))
            events.append(Event("updated", now, "capture_csv", {"fields": {f: {"old": old[f], "new": v} for f, v in changes.items() if f != "attributes"}, "origin_key": ld.origin_key}, lead_id=lid))
        crm.add_events(conn, events)
