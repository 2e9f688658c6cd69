"""The capture formats this plugin registers: ``email`` and ``adf``.

``email`` reads one RFC 5322 message (a ``.eml`` file, standard input piped
by an MTA, or a message fetched from IMAP, an mbox or a Maildir). ``adf``
reads a bare ADF/XML document. Both are pure functions of the payload and
the plugin's settings, so ``corecrm retry`` parses a stored capture the same
way again.
"""

from __future__ import annotations

import re
from typing import Any

from corecrm.records import CaptureFormat, ParsedCapture, RawCapture

from corecrm_plugins.capture_email.config import EmailSettings

_MBOX_SEP = re.compile(rb"^From \S+", re.M)


def _mbox_count(payload: bytes) -> int:
    if not payload.startswith(b"From "):
        return 0
    return len(_MBOX_SEP.findall(payload))


def _source_from_capture(parsed: ParsedCapture, meta: dict[str, Any]) -> None:
    """``corecrm capture --source X`` wins over the defaults, not over a matching profile's source."""
    src = meta.get("source")
    if not src:
        return
    for lead in parsed.leads:
        if lead.attributes.get("profile") in (None, "builtin"):
            lead.source = src


def make_email_format(cfg: EmailSettings) -> CaptureFormat:
    from corecrm_plugins.capture_email import extract

    def sniff(raw: RawCapture) -> int:
        return extract.sniff_email(raw.payload, raw.content_type, raw.origin or "")

    def parse(raw: RawCapture) -> ParsedCapture:
        n = _mbox_count(raw.payload)
        if n > 1:
            raise extract.EmailParseError(
                f"this is an mbox file with {n} messages; capture it with `corecrm mail import PATH` (one capture per message)"
            )
        meta: dict[str, Any] = raw.meta or {}
        dup = meta.get("duplicate_of")
        if dup:
            return ParsedCapture(skipped=f"duplicate: Message-ID {dup.get('message_id')} was already captured (capture {dup.get('capture_id')})", meta={"message_id": dup.get("message_id")})
        own = frozenset(a.lower() for a in meta.get("own_addresses") or ())
        parsed = extract.parse_email(raw.payload, cfg, extra_own=own)
        _source_from_capture(parsed, meta)
        return parsed

    return CaptureFormat(
        name="email",
        sniff=sniff,
        parse=parse,
        description="one e-mail message (.eml, stdin, IMAP, mbox/Maildir message): key-value, HTML-table or ADF lead bodies, or the sender",
    )


def make_adf_format(cfg: EmailSettings) -> CaptureFormat:
    from corecrm_plugins.capture_email import adf

    source = "adf"
    campaign = None
    for p in cfg.profiles:
        if p.extractor == "adf" and not p.has_matcher:
            source, campaign = p.source or source, p.campaign
            break

    def sniff(raw: RawCapture) -> int:
        head = raw.payload[:4096].lstrip(b"\xef\xbb\xbf \t\r\n")
        if not head.startswith(b"<") or not adf.looks_like_adf(head):
            return 0
        ct = (raw.content_type or "").lower()
        return 95 if ("adf" in ct or (raw.origin or "").lower().endswith((".adf", ".adf.xml"))) else 90

    def parse(raw: RawCapture) -> ParsedCapture:
        leads = adf.parse_adf(raw.payload, source=source, campaign=campaign)
        parsed = ParsedCapture(leads=leads, meta={"prospects": len(leads)})
        _source_from_capture(parsed, raw.meta or {})
        return parsed

    return CaptureFormat(name="adf", sniff=sniff, parse=parse, description="an ADF (Auto-lead Data Format) XML document, prolog quirks tolerated")
