"""The SMTP sender behind the ``email`` channel.

``EmailChannel.send(messages, ctx)`` takes the nurture scheduler's batch and
returns one outcome per message: a dict (``message_id``, ``smtp_response``)
when the server accepted it, or an :class:`EmailSendError` saying whether a
retry makes sense (``permanent``), whether the address should be suppressed
(a 5xx refusal of the recipient: ``suppress``), or when to try again
(``retry_after``, for the frequency cap). One SMTP connection serves the
whole batch.
"""

from __future__ import annotations

import datetime as dt
import re
import threading
import time
from email.utils import formataddr, formatdate
from typing import Any, Mapping, Sequence
from urllib.parse import quote

import sqlalchemy as sa
from sqlalchemy import Column, DateTime, Index, Integer, MetaData, String, Table, Text

from corecrm.errors import ConfigError
from corecrm.records import Setting

PLUGIN = "channel_email"

metadata = MetaData()

#: One row per message the server accepted: the per-recipient frequency cap counts these.
email_log = Table(
    "email_log",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("workspace", String(64), nullable=False),
    Column("recipient", Text, nullable=False),
    Column("sent_at", DateTime(timezone=True), nullable=False),
    Column("message_id", Text),
    Column("idempotency_key", String(160)),
    Index("ix_email_log_recipient", "workspace", "recipient", "sent_at"),
)


class EmailSendError(Exception):
    """Why one message was not sent, and what the scheduler should do about it."""

    def __init__(self, message: str, *, permanent: bool = False, suppress: bool = False, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.permanent = permanent
        self.suppress = suppress
        self.retry_after = retry_after


def _password(value: Any, key: str) -> None:
    if isinstance(value, str) and value:
        raise ConfigError('write the password as { env = "VAR" } so it never sits in the file', key=key)


def _window(value: Any, key: str) -> None:
    from corecrm_plugins.nurture_sequences.spec import parse_duration

    parse_duration(value, key)


def _address(value: Any, key: str) -> None:
    if value is not None and (not isinstance(value, str) or "@" not in value):
        raise ConfigError(f"expected an e-mail address, got {value!r}", key=key)


def declared_settings() -> list[Setting]:
    return [
        Setting("host", "str", "127.0.0.1", "SMTP server host."),
        Setting("port", "int", 25, "SMTP server port (587 for STARTTLS, 465 for TLS)."),
        Setting("security", "str", "none", "none, starttls or tls (implicit TLS).", choices=("none", "starttls", "tls")),
        Setting("username", "str", None, "SMTP login (no authentication when empty)."),
        Setting("password", "any", None, 'SMTP password as { env = "VAR" }.', validate=_password),
        Setting("verify_tls", "bool", True, "Check the server's certificate."),
        Setting("ca_file", "str", None, "CA bundle to verify the server with (e.g. a private CA)."),
        Setting("from_address", "str", None, "Sender address.", required=False, validate=_address),
        Setting("from_name", "str", None, "Sender display name."),
        Setting("reply_to", "str", None, "Reply-To address (replies can then be captured).", validate=_address),
        Setting("timeout", "float", 30.0, "Seconds to wait for the server."),
        Setting("rate_limit", "float", 0.0, "Messages per second this worker sends at most (0: no limit)."),
        Setting("frequency_cap", "int", 0, "Messages one recipient may get per frequency_window (0: no cap)."),
        Setting("frequency_window", "any", "7d", "Window of the per-recipient frequency cap.", validate=_window),
        Setting("require_unsubscribe", "bool", True, "Refuse to send a message without an unsubscribe link."),
    ]


class _RateLimiter:
    """A token bucket shared by the threads of one process."""

    def __init__(self, per_second: float) -> None:
        self.interval = 1.0 / per_second if per_second > 0 else 0.0
        self.next = 0.0
        self.lock = threading.Lock()

    def wait(self) -> None:
        if not self.interval:
            return
        with self.lock:
            now = time.monotonic()
            if self.next > now:
                time.sleep(self.next - now)
                now = self.next
            self.next = now + self.interval


_SAFE = re.compile(r"[^A-Za-z0-9._-]")
#: CRLF line ends on the wire (smtplib sends bytes as they are); long headers such as
#: List-Unsubscribe stay on one line up to the RFC 5322 limit.
_WIRE = __import__("email.policy", fromlist=["compat32"]).compat32.clone(linesep="\r\n", max_line_length=998)


class EmailChannel:
    def __init__(self, settings: Mapping[str, Any]) -> None:
        from corecrm_plugins.nurture_sequences.spec import parse_duration

        self.host = settings.get("host") or "127.0.0.1"
        self.port = int(settings.get("port") or 25)
        self.security = settings.get("security") or "none"
        self.username = settings.get("username")
        self.password = settings.get("password")
        self.verify_tls = bool(settings.get("verify_tls", True))
        self.ca_file = settings.get("ca_file")
        self.from_address = settings.get("from_address")
        self.from_name = settings.get("from_name")
        self.reply_to = settings.get("reply_to")
        self.timeout = float(settings.get("timeout") or 30.0)
        self.limiter = _RateLimiter(float(settings.get("rate_limit") or 0.0))
        self.cap = int(settings.get("frequency_cap") or 0)
        self.window = parse_duration(settings.get("frequency_window", "7d"), f"plugins.{PLUGIN}.frequency_window")
        self.require_unsubscribe = bool(settings.get("require_unsubscribe", True))

    # ------------------------------------------------------------------ building
    def build(self, m: Mapping[str, Any]) -> Any:
        """The MIME message: text part, optional HTML alternative, unsubscribe and idempotency headers.

        Built with the ``compat32`` MIME classes: the modern ``EmailMessage``
        header registry costs several milliseconds per message, more than the
        SMTP round trips themselves (measured by ``bench/bench_nurture.py``).
        """
        from email.header import Header
        from email.mime.multipart import MIMEMultipart
        from email.mime.text import MIMEText

        if not self.from_address:
            raise EmailSendError(f"no sender: set plugins.{PLUGIN}.from_address", permanent=True)
        text = MIMEText(m.get("text") or "", "plain", "utf-8")
        if m.get("html"):
            msg: Any = MIMEMultipart("alternative")
            msg.attach(text)
            msg.attach(MIMEText(m["html"], "html", "utf-8"))
        else:
            msg = text
        msg["From"] = _addr(self.from_name, self.from_address)
        msg["To"] = _addr(m.get("to_name"), m["to"])
        msg["Subject"] = Header(m.get("subject") or "", "utf-8") if not (m.get("subject") or "").isascii() else (m.get("subject") or "")
        msg["Date"] = formatdate(localtime=False)
        domain = self.from_address.rsplit("@", 1)[-1]
        key = m.get("idempotency_key")
        if key:
            msg["Message-ID"] = f"<{_SAFE.sub('_', key)}@{domain}>"
        if self.reply_to:
            msg["Reply-To"] = self.reply_to
        for k, v in (m.get("headers") or {}).items():
            msg[k] = v
        unsub = []
        url = m.get("unsubscribe_url") or ""
        if url:
            unsub.append(f"<{url}>")
        if m.get("unsubscribe_mailto"):
            # The signed token as the sender made it: the URL may carry it anywhere (a path, a query string).
            token = m.get("unsubscribe_token") or ""
            subject = f"unsubscribe {token}" if token else "unsubscribe"
            unsub.append(f"<mailto:{m['unsubscribe_mailto']}?subject={quote(subject)}>")
        if unsub:
            msg["List-Unsubscribe"] = ", ".join(unsub)
            if url.startswith(("https://", "http://")):
                msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
        elif self.require_unsubscribe and not m.get("transactional"):
            # A transactional message (a double opt-in confirmation) goes to someone not subscribed yet: it has nothing to unsubscribe from.
            raise EmailSendError(
                "no unsubscribe link: set plugins.nurture_sequences.secret and unsubscribe_url (or channel_email.require_unsubscribe = false)",
                permanent=True,
            )
        if any(c in str(v) for v in msg.values() for c in "\r\n"):
            raise EmailSendError("a header contains a line break", permanent=True)
        return msg

    # ------------------------------------------------------------------ SMTP
    def _tls_context(self) -> Any:
        import ssl

        ctx = ssl.create_default_context(cafile=self.ca_file)
        if not self.verify_tls:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        return ctx

    def connect(self) -> Any:
        import smtplib

        if self.security == "tls":
            conn = smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout, context=self._tls_context())
        else:
            conn = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
            if self.security == "starttls":
                conn.ehlo()
                conn.starttls(context=self._tls_context())
        conn.ehlo()
        if self.username:
            if not self.password:
                raise EmailSendError(f"plugins.{PLUGIN}.username is set but no password", permanent=True)
            conn.login(self.username, self.password)
        return conn

    def _frequency_deferrals(self, messages: Sequence[Mapping[str, Any]], ctx: Mapping[str, Any]) -> dict[int, float]:
        """Messages over the cap: index -> seconds until the recipient's window has room."""
        if not self.cap or ctx.get("engine") is None:
            return {}
        now: dt.datetime = ctx["now"]
        since = now - self.window
        recipients = sorted({(m.get("to") or "").lower() for m in messages if m.get("to")})
        history: dict[str, list[dt.datetime]] = {}
        from corecrm.storage.db import as_utc

        c = email_log.c
        with ctx["engine"].connect() as conn:
            for i in range(0, len(recipients), 900):
                for rcpt, at in conn.execute(
                    sa.select(c.recipient, c.sent_at).where(c.workspace == ctx["workspace"], c.recipient.in_(recipients[i : i + 900]), c.sent_at > since)
                ).all():
                    history.setdefault(rcpt, []).append(as_utc(at))  # type: ignore[arg-type]
        out = {}
        for i, m in enumerate(messages):
            rcpt = (m.get("to") or "").lower()
            times = history.setdefault(rcpt, [])
            times.sort()
            if len(times) >= self.cap:
                wait = (times[-self.cap] + self.window - now).total_seconds()
                out[i] = max(wait, 1.0)
            else:
                times.append(now)
        return out

    def send(self, messages: Sequence[Mapping[str, Any]], ctx: Mapping[str, Any] | None = None) -> list[Any]:
        import smtplib

        ctx = ctx or {}
        outcomes: list[Any] = [None] * len(messages)
        deferred = self._frequency_deferrals(messages, ctx)
        for i, wait in deferred.items():
            outcomes[i] = EmailSendError(f"frequency cap: {self.cap} per {self.window} reached for {messages[i].get('to')}", retry_after=wait)
        built: list[tuple[int, Any]] = []
        for i, m in enumerate(messages):
            if i in deferred:
                continue
            try:
                built.append((i, self.build(m)))
            except EmailSendError as exc:
                outcomes[i] = exc
            except (ValueError, TypeError) as exc:  # a header the email package refuses
                outcomes[i] = EmailSendError(f"cannot build the message: {exc}", permanent=True)
        conn = None
        logged = []
        try:
            for i, msg in built:
                self.limiter.wait()
                try:
                    if conn is None:
                        conn = self.connect()
                    refused = conn.sendmail(self.from_address, [messages[i]["to"]], msg.as_bytes(policy=_WIRE))
                    if refused:
                        code, text = next(iter(refused.values()))
                        outcomes[i] = EmailSendError(f"recipient refused: {code} {text!r}", permanent=code >= 500, suppress=code >= 500)
                        continue
                    outcomes[i] = {"message_id": msg["Message-ID"], "to": messages[i]["to"]}
                    logged.append((messages[i]["to"].lower(), msg["Message-ID"], messages[i].get("idempotency_key")))
                except smtplib.SMTPRecipientsRefused as exc:
                    code, text = next(iter(exc.recipients.values()))
                    outcomes[i] = EmailSendError(f"recipient refused: {code} {text!r}", permanent=code >= 500, suppress=code >= 500)
                except smtplib.SMTPResponseException as exc:
                    outcomes[i] = EmailSendError(f"SMTP {exc.smtp_code}: {exc.smtp_error!r}", permanent=exc.smtp_code >= 500 and exc.smtp_code != 535)
                    if isinstance(exc, smtplib.SMTPAuthenticationError):
                        raise
                    conn = _reset(conn)
                except EmailSendError as exc:
                    outcomes[i] = exc
                    if exc.permanent:
                        raise
                except (OSError, smtplib.SMTPException) as exc:
                    outcomes[i] = EmailSendError(f"{type(exc).__name__}: {exc}")
                    conn = _close(conn)
        except (smtplib.SMTPException, EmailSendError) as exc:
            err = exc if isinstance(exc, EmailSendError) else EmailSendError(f"{type(exc).__name__}: {exc}")
            outcomes = [err if o is None else o for o in outcomes]
        finally:
            _close(conn)
            if logged and ctx.get("engine") is not None:
                with ctx["engine"].begin() as db:
                    db.execute(
                        email_log.insert(),
                        [{"workspace": ctx["workspace"], "recipient": r, "sent_at": ctx["now"], "message_id": mid, "idempotency_key": key} for r, mid, key in logged],
                    )
        return outcomes


def _addr(name: str | None, address: str) -> str:
    """``Name <address>``, the name RFC 2047-encoded when it is not ASCII."""
    if not name:
        return address
    if name.isascii():
        return formataddr((name, address))
    from email.header import Header

    return f"{Header(name, 'utf-8').encode()} <{address}>"


def _reset(conn: Any) -> Any:
    try:
        if conn is not None:
            conn.rset()
        return conn
    except Exception:
        return _close(conn)


def _close(conn: Any) -> None:
    if conn is None:
        return None
    try:
        conn.quit()
    except Exception:
        try:
            conn.close()
        except Exception:
            pass
    return None
