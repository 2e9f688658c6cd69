"""Outbound delivery: a queue in the database, filled by lifecycle observers, drained with retries.

Targets are configured under ``[plugins.capture_web.targets.<name>]``. A
target receives the events it subscribes to (``events = ["captured",
"assigned", ...]``) and, when ``partner = true``, every lead that routing
assigns to ``partner:<name>`` (owner, team or queue).

Exactly-once, as far as a network allows:

* queueing is idempotent: each row has ``idempotency_key`` =
  target + event type + lead + a digest of the event, unique per workspace,
  inserted with "on conflict do nothing". An event seen twice is queued once.
* claiming takes a lease (``status = sending``, ``lease_until``) in one
  transaction (``FOR UPDATE SKIP LOCKED`` on PostgreSQL; SQLite's write
  lock serialises workers), so two workers never send the same row.
* a worker that dies mid-send leaves a lease that expires; the row is sent
  again with the *same* ``X-Corecrm-Delivery`` key (webhooks) or Message-ID
  (email), so the receiver can drop the repeat.
* failures are retried with exponential backoff
  (``backoff_seconds * 2**(attempt-1)``) until ``max_attempts``, then the
  row is ``failed`` with the last error, visible in ``corecrm deliveries list``
  and re-queued by ``corecrm deliveries retry ID``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import smtplib
import urllib.error
import urllib.parse
import urllib.request
from email.message import EmailMessage
from typing import Any, Iterable, Mapping, Sequence

import attrs
import sqlalchemy as sa

from corecrm_plugins.capture_web import bodies, signing, tables
from corecrm_plugins.capture_web.targets import EVENT_TYPES, KINDS, Target, parse_targets, validate_targets

log = logging.getLogger("corecrm.capture_web.deliveries")

PARTNER_PREFIX = "partner:"


# --------------------------------------------------------------------------- queueing


def _jsonable(value: Any) -> Any:
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    if hasattr(value, "value") and not isinstance(value, (str, bytes)):
        return value.value  # enums (Stage)
    return str(value)


def event_digest(event_type: str, lead_id: int | None, at: dt.datetime | str | None, detail: Mapping[str, Any] | None, event_id: int | None = None) -> str:
    if event_id is not None:
        return f"e{event_id}"
    raw = json.dumps([event_type, lead_id, at.isoformat() if isinstance(at, dt.datetime) else at, detail or {}], sort_keys=True, default=_jsonable)
    return hashlib.sha256(raw.encode()).hexdigest()[:20]


@attrs.define(slots=True)
class QueuedItem:
    target: Target
    event_type: str
    lead_id: int | None
    payload: dict[str, Any]
    key: str


def plan(
    targets: Mapping[str, Target],
    event_type: str,
    events: Sequence[Any],
    leads: Mapping[int, Mapping[str, Any]],
    workspace: str,
) -> list[QueuedItem]:
    """Which deliveries a batch of events produces (pure: no I/O)."""
    out: list[QueuedItem] = []
    for ev in events:
        lead_id = getattr(ev, "lead_id", None)
        detail = dict(getattr(ev, "detail", None) or {})
        at = getattr(ev, "at", None)
        digest = event_digest(event_type, lead_id, at, detail, getattr(ev, "id", None))
        wanted: list[Target] = [t for t in targets.values() if event_type in t.events]
        if event_type == "assigned":
            named = {str(detail.get(k)) for k in ("owner", "team", "queue") if detail.get(k)}
            for t in targets.values():
                if t.partner and f"{PARTNER_PREFIX}{t.name}" in named and t not in wanted:
                    wanted.append(t)
        for t in wanted:
            payload = {
                "event": event_type,
                "delivery": f"{t.name}:{event_type}:{lead_id}:{digest}",
                "workspace": workspace,
                "occurred_at": at.isoformat() if isinstance(at, dt.datetime) else at,
                "plugin": getattr(ev, "plugin", None),
                "detail": detail,
                "lead": dict(leads.get(lead_id, {})) if lead_id is not None else None,
            }
            out.append(QueuedItem(t, event_type, lead_id, payload, payload["delivery"]))
    return out


def enqueue(engine: sa.Engine, workspace: str, items: Iterable[QueuedItem], now: dt.datetime) -> int:
    """Insert queue rows, ignoring those whose idempotency key is already queued. Returns rows added."""
    rows = [
        {
            "workspace": workspace,
            "idempotency_key": it.key,
            "target": it.target.name,
            "kind": it.target.kind,
            "event_type": it.event_type,
            "lead_id": it.lead_id,
            "payload": json.dumps(it.payload, default=_jsonable, sort_keys=True),
            "status": "pending",
            "attempts": 0,
            "next_attempt_at": now,
            "created_at": now,
        }
        for it in items
    ]
    if not rows:
        return 0
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as pg_insert

            stmt = pg_insert(tables.deliveries).on_conflict_do_nothing(constraint="uq_capture_web_deliveries_key")
        else:
            from sqlalchemy.dialects.sqlite import insert as sqlite_insert

            stmt = sqlite_insert(tables.deliveries).on_conflict_do_nothing()
        # RETURNING counts the rows really added (executemany rowcounts differ by driver).
        res = conn.execute(stmt.returning(tables.deliveries.c.id), rows)
        return len(res.all())


def load_leads(engine: sa.Engine, workspace: str, ids: Iterable[int]) -> dict[int, dict[str, Any]]:
    """Snapshot stored leads in one query (the payload is frozen when the delivery is queued)."""
    from corecrm.storage import schema

    ids = sorted({i for i in ids if i is not None})
    if not ids:
        return {}
    cols = [c for c in schema.leads.c if c.name not in ("intake", "email_norm", "score_detail")]
    with engine.connect() as conn:
        rows = conn.execute(sa.select(*cols).where(schema.leads.c.workspace == workspace, schema.leads.c.id.in_(ids))).mappings().all()
    return {r["id"]: {k: v for k, v in r.items()} for r in rows}


# --------------------------------------------------------------------------- sending


class DeliveryFailed(Exception):
    pass


def _post(url: str, body: bytes, headers: Mapping[str, str], timeout: float) -> None:
    req = urllib.request.Request(url, data=body, method="POST", headers=dict(headers))
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            resp.read()
    except urllib.error.HTTPError as exc:
        text = exc.read()[:200].decode("utf-8", "replace")
        raise DeliveryFailed(f"HTTP {exc.code} from {url}: {text}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise DeliveryFailed(f"{url}: {getattr(exc, 'reason', exc)}") from None


def send(target: Target, payload: Mapping[str, Any], key: str) -> None:
    """Deliver one payload to one target; raise :class:`DeliveryFailed` with a one-line reason."""
    lead = payload.get("lead") or {}
    common = {"User-Agent": "corecrm-capture_web", signing.DELIVERY_HEADER: key, signing.EVENT_HEADER: str(payload.get("event"))}
    if target.kind == "webhook":
        body = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=_jsonable).encode()
        hdrs = {**common, "Content-Type": "application/json", **signing.headers(target.secret or "", body)}
        _post(target.url or "", body, hdrs, target.timeout)
    elif target.kind == "adf":
        _post(target.url or "", bodies.lead_to_adf(lead), {**common, "Content-Type": "application/xml"}, target.timeout)
    elif target.kind == "form":
        names = target.fields or {k: k for k in ("first_name", "last_name", "email", "phone", "company", "title", "country", "region", "city", "postal_code", "source", "campaign", "note")}
        data = {posted: lead.get(field) for field, posted in names.items() if lead.get(field) not in (None, "")}
        data["delivery"] = key
        body = urllib.parse.urlencode(data).encode()
        _post(target.url or "", body, {**common, "Content-Type": "application/x-www-form-urlencoded"}, target.timeout)
    elif target.kind == "email":
        msg = EmailMessage()
        msg["From"] = target.email_from
        msg["To"] = ", ".join(target.email_to)
        name = " ".join(str(lead.get(k)) for k in ("first_name", "last_name") if lead.get(k)) or f"lead {lead.get('id')}"
        msg["Subject"] = f"[corecrm] {payload.get('event')}: {name}"
        msg["Message-ID"] = f"<{hashlib.sha256(key.encode()).hexdigest()[:32]}@corecrm.capture_web>"
        msg[signing.DELIVERY_HEADER] = key
        if target.email_format == "adf":
            msg.set_content(bodies.lead_to_adf(lead).decode("utf-8"))
        else:
            msg.set_content(json.dumps(payload, indent=2, sort_keys=True, default=_jsonable))
        try:
            with smtplib.SMTP(target.smtp_host, target.smtp_port, timeout=target.timeout) as smtp:
                smtp.send_message(msg)
        except (smtplib.SMTPException, OSError) as exc:
            raise DeliveryFailed(f"smtp {target.smtp_host}:{target.smtp_port}: {exc}") from None
    else:  # pragma: no cover - parse_targets rejects it
        raise DeliveryFailed(f"unknown kind {target.kind!r}")


@attrs.define(slots=True)
class RunResult:
    delivered: int = 0
    retried: int = 0
    failed: int = 0

    def __str__(self) -> str:
        return f"{self.delivered} delivered, {self.retried} to retry, {self.failed} failed"


def claim(engine: sa.Engine, workspace: str | None, now: dt.datetime, limit: int, lease: float) -> list[Mapping[str, Any]]:
    d = tables.deliveries
    due = sa.or_(
        sa.and_(d.c.status == "pending", d.c.next_attempt_at <= now),
        sa.and_(d.c.status == "sending", d.c.lease_until < now),
    )
    with engine.begin() as conn:
        q = sa.select(d.c.id).where(due).order_by(d.c.next_attempt_at, d.c.id).limit(limit)
        if workspace is not None:
            q = q.where(d.c.workspace == workspace)
        if conn.dialect.name == "postgresql":
            q = q.with_for_update(skip_locked=True)
        ids = [r[0] for r in conn.execute(q)]
        if not ids:
            return []
        conn.execute(sa.update(d).where(d.c.id.in_(ids)).values(status="sending", lease_until=now + dt.timedelta(seconds=lease)))
        return list(conn.execute(sa.select(d).where(d.c.id.in_(ids)).order_by(d.c.id)).mappings().all())


def run(
    engine: sa.Engine,
    targets: Mapping[str, Target],
    now: dt.datetime,
    *,
    workspace: str | None = None,
    limit: int = 100,
    lease: float = 120.0,
) -> RunResult:
    """Send what is due once. Returns the counts; never raises for a failed delivery."""
    d = tables.deliveries
    result = RunResult()
    for row in claim(engine, workspace, now, limit, lease):
        target = targets.get(row["target"])
        attempts = row["attempts"] + 1
        error: str | None = None
        if target is None:
            error = f"target {row['target']!r} is no longer configured"
        else:
            try:
                send(target, json.loads(row["payload"]), row["idempotency_key"])
            except DeliveryFailed as exc:
                error = str(exc)
            except Exception as exc:  # a bug in a sender must not lose the row
                error = f"{type(exc).__name__}: {exc}"
        max_attempts = target.max_attempts if target else attempts
        backoff = target.backoff_seconds if target else 0
        with engine.begin() as conn:
            where = sa.and_(d.c.id == row["id"], d.c.status == "sending")
            if error is None:
                conn.execute(sa.update(d).where(where).values(status="delivered", attempts=attempts, delivered_at=now, lease_until=None, last_error=None))
                result.delivered += 1
            elif attempts >= max_attempts:
                conn.execute(sa.update(d).where(where).values(status="failed", attempts=attempts, lease_until=None, last_error=error))
                result.failed += 1
                log.warning("delivery %s to %s failed for good after %d attempts: %s", row["id"], row["target"], attempts, error)
            else:
                nxt = now + dt.timedelta(seconds=backoff * 2 ** (attempts - 1))
                conn.execute(sa.update(d).where(where).values(status="pending", attempts=attempts, next_attempt_at=nxt, lease_until=None, last_error=error))
                result.retried += 1
    return result


def list_rows(engine: sa.Engine, workspace: str, status: str | None = None, limit: int = 50) -> list[Mapping[str, Any]]:
    d = tables.deliveries
    q = sa.select(d).where(d.c.workspace == workspace).order_by(d.c.id.desc()).limit(limit)
    if status:
        q = q.where(d.c.status == status)
    with engine.connect() as conn:
        return list(conn.execute(q).mappings().all())


def requeue(engine: sa.Engine, workspace: str, delivery_id: int, now: dt.datetime) -> bool:
    """Put a failed delivery back in the queue (``deliveries retry``)."""
    d = tables.deliveries
    with engine.begin() as conn:
        res = conn.execute(
            sa.update(d)
            .where(d.c.workspace == workspace, d.c.id == delivery_id, d.c.status == "failed")
            .values(status="pending", next_attempt_at=now, attempts=0)
        )
    return res.rowcount > 0


__all__ = [
    "EVENT_TYPES",
    "KINDS",
    "PARTNER_PREFIX",
    "Target",
    "claim",
    "enqueue",
    "list_rows",
    "load_leads",
    "parse_targets",
    "plan",
    "requeue",
    "run",
    "send",
    "validate_targets",
]
