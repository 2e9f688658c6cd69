"""Feeding messages from a mailbox (IMAP, mbox, Maildir) to ``crm.capture``.

Every message becomes its own :class:`~corecrm.records.RawCapture`, so one
bad message is quarantined alone and the others go on. A batch of messages
goes to the core in one ``crm.capture`` call (one transaction to store the
raw payloads, one pipeline run), then the Message-IDs are recorded in the
plugin's table so a copy with different bytes is recognised next time.
"""

from __future__ import annotations

import email.parser
import email.policy
import hashlib
import mailbox
import os
from pathlib import Path
from typing import Any, Iterator, Sequence

import attrs

from corecrm.errors import CrmError
from corecrm.records import RawCapture

from corecrm_plugins.capture_email import store

_HEADERS = email.parser.BytesHeaderParser(policy=email.policy.compat32)


@attrs.define(slots=True)
class Message:
    """A message read from a mailbox, before it is captured."""

    payload: bytes
    origin: str  #: e.g. ``imap:sales/1700000000:42``, ``mbox:leads.mbox#3``
    meta: dict[str, Any] = attrs.field(factory=dict)
    key: Any = None  #: the mailbox's own key for it (IMAP UID, Maildir key)


def message_id_of(payload: bytes) -> str | None:
    try:
        head = payload.split(b"\n\n", 1)[0].split(b"\r\n\r\n", 1)[0]
        value = _HEADERS.parsebytes(head + b"\n\n").get("message-id")
        return store.norm_message_id(str(value)) if value is not None else None
    except Exception:
        return None


def capture_messages(crm: Any, messages: Sequence[Message], *, workspace: str, origin_kind: str) -> list[Any]:
    """Capture each message as its own raw capture; returns the core's results in order."""
    if not messages:
        return []
    ws = workspace
    own = list(crm.config.own_addresses)
    mids = [message_id_of(m.payload) for m in messages]
    with crm.engine.connect() as conn:
        seen = store.known(conn, ws, [m for m in mids if m])
    raws: list[RawCapture] = []
    first_in_batch: dict[str, int] = {}
    hashes = [hashlib.sha256(m.payload).hexdigest() for m in messages]
    for i, (msg, mid) in enumerate(zip(messages, mids)):
        meta = dict(msg.meta)
        if own:
            meta["own_addresses"] = own
        if mid:
            meta["message_id"] = mid
            prev = seen.get(mid)
            if prev is not None and prev["content_hash"] != hashes[i]:
                meta["duplicate_of"] = {"message_id": mid, "capture_id": prev["capture_id"]}
            elif prev is None and mid in first_in_batch and hashes[first_in_batch[mid]] != hashes[i]:
                meta["duplicate_of"] = {"message_id": mid, "capture_id": None}
            first_in_batch.setdefault(mid, i)
        raws.append(RawCapture(payload=msg.payload, origin=msg.origin, content_type="message/rfc822", meta=meta, format="email", content_hash=hashes[i]))
    results = crm.capture(raws, workspace=ws)
    rows = []
    for raw, res, mid in zip(raws, results, mids):
        if mid and mid not in seen and not raw.meta.get("duplicate_of") and not res.duplicate:
            rows.append({"message_id": mid, "content_hash": raw.content_hash, "capture_id": res.capture_id, "origin": origin_kind, "status": res.status})
            seen[mid] = {"capture_id": res.capture_id, "content_hash": raw.content_hash}
    if rows:
        with crm.engine.begin() as conn:
            store.record(conn, ws, rows, crm.now())
    return results


# --------------------------------------------------------------------------- mbox / Maildir


def is_maildir(path: Path) -> bool:
    return path.is_dir() and all((path / sub).is_dir() for sub in ("cur", "new", "tmp"))


def iter_mailbox(path: Path) -> Iterator[Message]:
    """Messages of an mbox file or a Maildir folder, in mailbox order, as raw bytes."""
    if is_maildir(path):
        md = mailbox.Maildir(str(path), factory=None, create=False)
        for key in sorted(md.keys()):
            try:
                data = md.get_bytes(key)
            except (KeyError, OSError):
                continue  # removed while we read: another reader took it
            yield Message(data, f"maildir:{path.name}/{key}", {"maildir": {"folder": path.name, "key": key}}, key)
        return
    if path.is_dir():
        raise CrmError(f"{path}: a directory that is not a Maildir (needs cur/, new/ and tmp/)")
    if not path.exists():
        raise CrmError(f"{path}: no such file")
    with open(path, "rb") as fh:
        start = fh.read(5)
    if start != b"From ":
        raise CrmError(f"{path}: not an mbox file (it must start with a 'From ' line); capture a single message with `corecrm capture`")
    mb = mailbox.mbox(str(path), factory=None, create=False)
    try:
        for i, key in enumerate(mb.keys()):
            data = mb.get_bytes(key)
            yield Message(data, f"mbox:{path.name}#{i + 1}", {"mbox": {"file": path.name, "index": i + 1}}, key)
    finally:
        mb.close()


def import_mailbox(crm: Any, path: str | os.PathLike[str], *, workspace: str, batch_size: int = 200) -> list[Any]:
    """Capture every message of an mbox file or Maildir folder; re-importing creates nothing new."""
    p = Path(path)
    kind = "maildir" if is_maildir(p) else "mbox"
    results: list[Any] = []
    batch: list[Message] = []
    for msg in iter_mailbox(p):
        batch.append(msg)
        if len(batch) >= batch_size:
            results.extend(capture_messages(crm, batch, workspace=workspace, origin_kind=f"{kind}:{p.name}"))
            batch = []
    results.extend(capture_messages(crm, batch, workspace=workspace, origin_kind=f"{kind}:{p.name}"))
    return results
