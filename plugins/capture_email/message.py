"""Reading one RFC 5322 message defensively into a :class:`MailView`.

Everything here copes with what real mail servers deliver: broken MIME,
wrong or missing charsets, undecodable headers, impossible dates, huge or
binary attachments. Nothing is rendered or executed; HTML is only walked as
text (:mod:`corecrm_plugins.capture_email.htmltext`). The stdlib parser with
``policy=default`` never raises on bad input (it records *defects*); the
header accessors of that policy can, so every header read goes through
:func:`header` with a raw fallback.
"""

from __future__ import annotations

import codecs
import datetime as dt
import email
import email.header
import email.policy
import email.utils
from email.message import EmailMessage
from typing import Any

import attrs

from corecrm_plugins.capture_email.htmltext import html_text_and_rows

#: Attachment types we read (for ADF or a text lead). Everything else is noted, not read.
_READABLE_TYPES = frozenset({"text/plain", "text/xml", "application/xml", "application/x-adf+xml", "application/adf+xml", "text/html"})
_READABLE_EXT = (".xml", ".adf", ".txt")
_BINARY_EXT = (".zip", ".gz", ".tgz", ".7z", ".rar", ".exe", ".dll", ".bat", ".cmd", ".js", ".vbs", ".scr", ".jar", ".msi", ".iso", ".docm", ".xlsm")


@attrs.define(slots=True, eq=False)
class Attachment:
    filename: str | None
    content_type: str
    size: int
    data: bytes | None  #: None when not read (too large, binary)
    note: str = ""

    def describe(self) -> dict[str, Any]:
        d: dict[str, Any] = {"filename": self.filename, "type": self.content_type, "size": self.size, "read": self.data is not None}
        if self.note:
            d["note"] = self.note
        return d


@attrs.define(slots=True, eq=False)
class MailView:
    """What the lead extractors need from a message, already decoded."""

    msg: EmailMessage
    subject: str = ""
    from_name: str = ""
    from_addr: str = ""
    reply_name: str = ""
    reply_addr: str = ""
    to_addrs: list[str] = attrs.field(factory=list)
    message_id: str | None = None
    date: dt.datetime | None = None
    date_raw: str | None = None
    text: str = ""  #: the plain body, or the HTML body as text
    html: str | None = None  #: the raw HTML body
    html_rows: list[list[str]] = attrs.field(factory=list)  #: its table rows (cell texts)
    attachments: list[Attachment] = attrs.field(factory=list)
    defects: list[str] = attrs.field(factory=list)

    raw_headers: dict[str, str] = attrs.field(factory=dict)

    def header(self, name: str) -> str:
        """A header's text (encoded words decoded), or ``""``."""
        return decode_header_text(self.raw_headers.get(name.lower(), ""))


def header(msg: Any, name: str) -> str:
    """A header as text, decoded leniently from its raw value (never raises)."""
    for key, raw in msg.raw_items():
        if key.lower() == name.lower():
            return decode_header_text(str(raw))
    return ""


def _raw_headers(msg: Any) -> dict[str, str]:
    """First raw value of each header, by lower-case name, unfolded.

    Reading raw values once is much cheaper than asking the policy to build a
    header object per lookup, and it never raises on a malformed header.
    """
    out: dict[str, str] = {}
    for key, raw in msg.raw_items():
        k = key.lower()
        if k not in out:
            out[k] = " ".join(str(raw).split())
    return out


def decode_header_text(raw: str) -> str:
    """RFC 2047 encoded words decoded with a charset fallback; plain text returned as is."""
    if any("\udc80" <= ch <= "\udcff" for ch in raw):
        # 8-bit bytes in a header (not allowed, but common): the parser kept
        # them as surrogate escapes; decode them as UTF-8, else Windows-1252.
        raw = decode_bytes(raw.encode("ascii", "surrogateescape"), None)
    if "=?" not in raw:
        return raw
    try:
        parts = email.header.decode_header(raw)
        out = []
        for text, charset in parts:
            if isinstance(text, bytes):
                out.append(decode_bytes(text, charset))
            else:
                out.append(text)
        return "".join(out)
    except Exception:
        return raw


def decode_bytes(data: bytes, charset: str | None) -> str:
    """Bytes to text: the declared charset if it exists and fits, else UTF-8, else Windows-1252/Latin-1."""
    tried = []
    if charset:
        cs = charset.strip().strip('"').lower()
        try:
            codecs.lookup(cs)
            tried.append(cs)
        except (LookupError, ValueError):  # unknown name, or junk such as a NUL in it
            pass
    for cs in tried + ["utf-8", "cp1252"]:
        try:
            return data.decode(cs)
        except (UnicodeDecodeError, LookupError, ValueError):
            continue
    return data.decode("latin-1")


def _address(value: str) -> tuple[str, str]:
    """(display name, address) of the first address in a raw header value."""
    try:
        pairs = email.utils.getaddresses([value])
    except Exception:
        return "", ""
    for name, addr in pairs:
        if addr and "@" in addr:
            return decode_header_text(name).strip(), addr.strip()
    return "", ""


def _addresses(value: str) -> list[str]:
    try:
        return [a.strip().lower() for _n, a in email.utils.getaddresses([value]) if a and "@" in a]
    except Exception:
        return []


def _payload_bytes(part: Any) -> bytes:
    try:
        data = part.get_payload(decode=True)
    except Exception:
        data = None
    if isinstance(data, bytes):
        return data
    raw = part.get_payload()
    if isinstance(raw, str):
        return raw.encode("utf-8", "surrogateescape")
    return b""


def _part_text(part: Any, data: bytes) -> str:
    try:
        charset = part.get_content_charset()
    except Exception:
        charset = None
    return decode_bytes(data, charset)


def _leaves(msg: Any, depth: int = 0) -> Any:
    """Leaf parts in order, not descending into attached messages (``message/*``)."""
    if depth > 20:
        return
    try:
        if msg.get_content_maintype() == "message":
            yield msg
            return
        is_multi = msg.is_multipart()
    except Exception:
        is_multi = False
    if is_multi:
        payload = msg.get_payload()
        if isinstance(payload, list):
            for sub in payload:
                yield from _leaves(sub, depth + 1)
        return
    yield msg


def read_message(payload: bytes, *, max_attachment_bytes: int) -> MailView:
    """Parse a raw message into a :class:`MailView` (never raises on malformed MIME)."""
    msg = email.message_from_bytes(payload, policy=email.policy.default)
    view = MailView(msg=msg)  # type: ignore[arg-type]
    raw = view.raw_headers = _raw_headers(msg)
    view.subject = " ".join(view.header("subject").split())[:500]
    view.from_name, view.from_addr = _address(raw.get("from", ""))
    view.reply_name, view.reply_addr = _address(raw.get("reply-to", ""))
    view.to_addrs = _addresses(raw.get("to", "")) + _addresses(raw.get("cc", "")) + _addresses(raw.get("delivered-to", ""))
    mid = raw.get("message-id", "").strip()
    view.message_id = mid[:300] or None
    view.date_raw = raw.get("date") or None
    if view.date_raw:
        try:
            view.date = email.utils.parsedate_to_datetime(view.date_raw)
        except Exception:
            view.date = None  # impossible dates (hour 27…) are kept only as text
    view.defects = sorted({type(d).__name__ for d in getattr(msg, "defects", [])})

    plain: str | None = None
    html: str | None = None
    for part in _leaves(msg):
        try:
            ctype = part.get_content_type()
        except Exception:
            ctype = "application/octet-stream"
        for d in getattr(part, "defects", []):
            name = type(d).__name__
            if name not in view.defects:
                view.defects.append(name)
        try:
            disp = part.get_content_disposition()
        except Exception:
            disp = None
        try:
            filename = part.get_filename()
        except Exception:
            filename = None
        data = _payload_bytes(part)
        is_body = disp != "attachment" and not filename and ctype in ("text/plain", "text/html")
        if is_body and ctype == "text/plain" and plain is None and len(data) <= max_attachment_bytes * 4:
            plain = _part_text(part, data)
            continue
        if is_body and ctype == "text/html" and html is None and len(data) <= max_attachment_bytes * 4:
            html = _part_text(part, data)
            continue
        if ctype.startswith("multipart/"):
            # A multipart whose boundary never appears: the parser leaves its
            # body as one string. Read it as plain text rather than lose it.
            if plain is None and data.strip():
                plain = decode_bytes(data, None)
            continue
        view.attachments.append(_attachment(ctype, filename, data, max_attachment_bytes))
    view.html = html
    html_text = ""
    if html is not None:
        html_text, view.html_rows = html_text_and_rows(html)
    if plain is not None and plain.strip():
        view.text = plain
    elif html is not None:
        view.text = html_text
    else:
        view.text = plain or ""
    view.text = view.text.replace("\r\n", "\n").replace("\r", "\n")
    return view


def _attachment(ctype: str, filename: str | None, data: bytes, limit: int) -> Attachment:
    size = len(data)
    name = (filename or "").lower()
    if size > limit:
        return Attachment(filename, ctype, size, None, f"not read: larger than max_attachment_bytes ({limit})")
    if name.endswith(_BINARY_EXT) or ctype in ("application/zip", "application/x-zip-compressed", "application/octet-stream", "application/x-msdownload"):
        if not name.endswith(_READABLE_EXT):
            return Attachment(filename, ctype, size, None, "not read: archive or binary attachment")
    if ctype in _READABLE_TYPES or name.endswith(_READABLE_EXT) or ctype.startswith("message/"):
        if ctype.startswith("message/"):
            return Attachment(filename, ctype, size, None, "attached message, not read")
        return Attachment(filename, ctype, size, data)
    return Attachment(filename, ctype, size, None, "not read: not a lead format")
