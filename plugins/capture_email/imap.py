"""Polling an IMAP mailbox: every message captured exactly once, none lost.

The order of operations is what makes it safe:

1. ``UID SEARCH`` for messages not yet marked (keyword ``$CorecrmCaptured``,
   or ``UNSEEN`` on servers that do not keep custom keywords);
2. ``UID FETCH BODY.PEEK[]`` (peek: fetching does not set ``\\Seen``);
3. ``crm.capture(...)``: the raw messages are committed before they are
   processed, with their content hash;
4. only then the messages are marked (``\\Seen $CorecrmCaptured``) and moved
   to the processed or rejected folder, if configured.

A crash between 3 and 4 leaves the messages unmarked: the next poll fetches
them again, and the core recognises the same bytes by their content hash
(and this plugin a re-sent copy by its Message-ID), so no duplicate lead is
made. Setting ``CORECRM_CAPTURE_EMAIL_FAULT=after_commit`` makes the poller
exit right after step 3, which is how the tests prove it.

Uses the stdlib :mod:`imaplib` (PSF licence): no dependency, and it is what
the Dovecot integration tests drive.
"""

from __future__ import annotations

import imaplib
import logging
import os
import re
import select
import socket
import time
from typing import Any, Callable, Mapping

import attrs

from corecrm.errors import ConfigError, CrmError

from corecrm_plugins.capture_email.feed import Message, capture_messages

log = logging.getLogger("corecrm.plugins.capture_email.imap")

KEYWORD = "$CorecrmCaptured"
#: Fault injection for the crash-safety test: exit right after the capture commit.
FAULT_ENV = "CORECRM_CAPTURE_EMAIL_FAULT"
FAULT_EXIT_CODE = 75
_UID = re.compile(rb"\bUID (\d+)")


def _quote(mailbox: str) -> str:
    return '"' + mailbox.replace("\\", "\\\\").replace('"', '\\"') + '"'


@attrs.define(slots=True)
class PollResult:
    source: str
    fetched: int = 0
    stored: int = 0  #: new captures (not duplicates of earlier ones)
    statuses: dict[str, int] = attrs.field(factory=dict)
    lead_ids: list[int] = attrs.field(factory=list)

    def to_json(self) -> dict[str, Any]:
        return attrs.asdict(self)


class ImapSource:
    """One ``[plugins.capture_email.sources.<name>]`` IMAP account."""

    def __init__(self, name: str, conf: Mapping[str, Any]) -> None:
        self.name = name
        self.conf = dict(conf)
        self.key = f"plugins.capture_email.sources.{name}"
        self.host: str = conf["host"]
        self.tls: bool = bool(conf.get("tls", True))
        self.starttls: bool = bool(conf.get("starttls", False))
        self.port: int = int(conf.get("port") or (993 if self.tls else 143))
        self.user: str = conf["user"]
        self.folder: str = conf.get("folder") or "INBOX"
        self.processed_folder: str | None = conf.get("processed_folder") or None
        self.rejected_folder: str | None = conf.get("rejected_folder") or None
        self.batch_size: int = int(conf.get("batch_size") or 50)
        self.timeout: int = int(conf.get("timeout") or 60)
        self.poll_interval: float = float(conf.get("poll_interval") or 60)
        self.idle: bool = bool(conf.get("idle", True))

    # ------------------------------------------------------------------ connection
    def password(self) -> str:
        pw = self.conf.get("password")
        if isinstance(pw, str):
            return pw  # resolved by the core from { env = "VAR" }
        var = self.conf.get("password_env")
        if var:
            if var not in os.environ:
                raise ConfigError(f"environment variable {var} is not set", key=f"{self.key}.password_env")
            return os.environ[var]
        raise ConfigError('no password: set password = { env = "VAR" } or password_env', key=f"{self.key}.password")

    def connect(self) -> imaplib.IMAP4:
        try:
            if self.tls:
                conn: imaplib.IMAP4 = imaplib.IMAP4_SSL(self.host, self.port, timeout=self.timeout)
            else:
                conn = imaplib.IMAP4(self.host, self.port, timeout=self.timeout)
                if self.starttls:
                    conn.starttls()
            conn.login(self.user, self.password())
        except (OSError, imaplib.IMAP4.error) as exc:
            raise CrmError(f"mail source {self.name}: cannot log in to {self.host}:{self.port} as {self.user}: {exc}") from None
        # Servers announce MOVE, UIDPLUS… only after login; imaplib keeps the
        # greeting's list, so ask again.
        try:
            typ, data = conn.capability()
            if typ == "OK" and data and isinstance(data[-1], bytes):
                conn.capabilities = tuple(data[-1].decode("ascii", "replace").upper().split())
        except (OSError, imaplib.IMAP4.error):
            pass
        return conn

    def _select(self, conn: imaplib.IMAP4) -> tuple[str, bool]:
        typ, data = conn.select(_quote(self.folder))
        if typ != "OK":
            raise CrmError(f"mail source {self.name}: cannot open folder {self.folder!r}: {data[0]!r}")
        validity = (conn.response("UIDVALIDITY")[1] or [b"0"])[0]
        uidvalidity = validity.decode() if isinstance(validity, bytes) else str(validity)
        perm = b" ".join(x for x in (conn.response("PERMANENTFLAGS")[1] or []) if isinstance(x, bytes))
        keywords = b"\\*" in perm or KEYWORD.encode() in perm
        return uidvalidity, keywords

    # ------------------------------------------------------------------ polling
    def poll(self, crm: Any, workspace: str) -> PollResult:
        """Fetch what is new, capture it, then mark it. Returns what happened."""
        result = PollResult(self.name)
        conn = self.connect()
        try:
            uidvalidity, keywords = self._select(conn)
            criteria = f"UNDELETED UNKEYWORD {KEYWORD}" if keywords else "UNDELETED UNSEEN"
            typ, data = conn.uid("SEARCH", None, criteria)
            if typ != "OK":
                raise CrmError(f"mail source {self.name}: SEARCH failed: {data!r}")
            uids = [u.decode() for u in (data[0] or b"").split()]
            for start in range(0, len(uids), self.batch_size):
                self._poll_batch(conn, crm, workspace, uids[start : start + self.batch_size], uidvalidity, keywords, result)
        finally:
            try:
                conn.logout()
            except Exception:
                pass
        return result

    def _fetch(self, conn: imaplib.IMAP4, uids: list[str]) -> dict[str, bytes]:
        typ, data = conn.uid("FETCH", ",".join(uids), "(UID BODY.PEEK[])")
        if typ != "OK":
            raise CrmError(f"mail source {self.name}: FETCH failed: {data!r}")
        out: dict[str, bytes] = {}
        for item in data:
            if isinstance(item, tuple) and len(item) >= 2:
                m = _UID.search(item[0])
                if m:
                    out[m.group(1).decode()] = item[1]
        return out

    def _poll_batch(
        self, conn: imaplib.IMAP4, crm: Any, ws: str, uids: list[str], uidvalidity: str, keywords: bool, result: PollResult
    ) -> None:
        bodies = self._fetch(conn, uids)
        msgs = [
            Message(
                bodies[u],
                f"imap:{self.name}/{uidvalidity}:{u}",
                {"imap": {"source": self.name, "folder": self.folder, "uid": int(u), "uidvalidity": uidvalidity}},
                u,
            )
            for u in uids
            if u in bodies
        ]
        result.fetched += len(msgs)
        results = capture_messages(crm, msgs, workspace=ws, origin_kind=f"imap:{self.name}")
        # The captures are committed. A crash from here on only means the
        # messages are fetched again next time, and recognised.
        if os.environ.get(FAULT_ENV) == "after_commit":
            os._exit(FAULT_EXIT_CODE)
        done: list[str] = []
        rejected: list[str] = []
        for msg, res in zip(msgs, results):
            result.statuses[res.status] = result.statuses.get(res.status, 0) + 1
            if not res.duplicate:
                result.stored += 1
            result.lead_ids.extend(i for i in res.lead_ids if i not in result.lead_ids)
            (done if res.status in ("processed", "duplicate") else rejected).append(msg.key)
        flags = f"(\\Seen {KEYWORD})" if keywords else "(\\Seen)"
        if done or rejected:
            conn.uid("STORE", ",".join(done + rejected), "+FLAGS.SILENT", flags)
        self._move(conn, done, self.processed_folder)
        self._move(conn, rejected, self.rejected_folder)

    def _move(self, conn: imaplib.IMAP4, uids: list[str], folder: str | None) -> None:
        if not uids or not folder or folder == self.folder:
            return
        conn.create(_quote(folder))  # fails harmlessly when it exists
        uidset = ",".join(uids)
        caps = {c.upper() for c in (conn.capabilities or ())}
        if "MOVE" in caps:
            typ, data = conn.uid("MOVE", uidset, _quote(folder))
            if typ == "OK":
                return
        typ, data = conn.uid("COPY", uidset, _quote(folder))
        if typ != "OK":
            log.warning("mail source %s: cannot copy to %s: %r (messages stay marked in %s)", self.name, folder, data, self.folder)
            return
        conn.uid("STORE", uidset, "+FLAGS.SILENT", "(\\Deleted)")
        if "UIDPLUS" in caps:
            conn.uid("EXPUNGE", uidset)
        else:
            conn.expunge()

    # ------------------------------------------------------------------ watching
    def wait_for_mail(self, timeout: float) -> str:
        """Block until the server announces new mail (IDLE) or ``timeout`` passes; say which."""
        if not self.idle:
            time.sleep(timeout)
            return "interval"
        conn = self.connect()
        try:
            self._select(conn)
            if "IDLE" not in {c.upper() for c in (conn.capabilities or ())}:
                time.sleep(timeout)
                return "interval (server has no IDLE)"
            return "new mail (IDLE)" if _idle(conn, timeout) else "timeout (IDLE)"
        finally:
            try:
                conn.logout()
            except Exception:
                pass

    def watch(self, crm: Any, workspace: str, *, interval: float | None = None, rounds: int | None = None, on_result: Callable[[PollResult], None] | None = None) -> None:
        """Poll, then wait for new mail (IDLE, or sleeping ``interval``), forever or for ``rounds`` polls."""
        n = 0
        while rounds is None or n < rounds:
            res = self.poll(crm, workspace)
            if on_result is not None:
                on_result(res)
            n += 1
            if rounds is not None and n >= rounds:
                break
            self.wait_for_mail(interval or self.poll_interval)


def _idle(conn: imaplib.IMAP4, timeout: float) -> bool:
    """RFC 2177 IDLE with the stdlib client: wait for an untagged EXISTS/RECENT, then DONE.

    Returns True when the server announced new mail, False on timeout.
    """
    tag = conn._new_tag()  # type: ignore[attr-defined]
    conn.send(tag + b" IDLE\r\n")
    line = conn.readline()
    if not line.startswith(b"+"):
        return False  # the server refused IDLE; the caller polls again
    sock = conn.socket()
    deadline = time.monotonic() + timeout
    woken = False
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            ready, _, _ = select.select([sock], [], [], min(left, 29 * 60))
            if not ready:
                continue
            line = conn.readline()
            if not line:
                break
            if b"EXISTS" in line or b"RECENT" in line:
                woken = True
                break
    except (OSError, socket.timeout):
        return woken
    conn.send(b"DONE\r\n")
    while True:
        line = conn.readline()
        if not line or line.startswith(tag):
            break
    return woken
