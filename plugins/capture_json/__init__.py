"""Bundled plugin ``capture_json``: leads from JSON and NDJSON documents.

Accepts one lead object, a list of them, or newline-delimited JSON (one object
per line), with field names as in ``corecrm leads show --json``; keys that are
not lead fields go to ``attributes``. Scripts, tests and integrations use it to
capture without email or HTTP::

    echo '{"email": "ann@example.com", "first_name": "Ann", "source": "web"}' | corecrm capture -
"""

from __future__ import annotations

import json
from typing import Any, Iterable, Mapping

from corecrm.errors import CaptureError
from corecrm.hooks import hookimpl
from corecrm.records import CaptureFormat, ParsedCapture, RawCapture, Setting
from corecrm.rows import lead_from_document

_JSON_TYPES = ("application/json", "application/x-ndjson", "application/ndjson", "application/jsonl")
_SUFFIXES = (".json", ".ndjson", ".jsonl")


def sniff(raw: RawCapture) -> int:
    """90 for a JSON media type or suffix, 60 when the payload looks like JSON, else 0."""
    if raw.content_type and raw.content_type.split(";")[0].strip().lower() in _JSON_TYPES:
        return 90
    if raw.origin.lower().endswith(_SUFFIXES):
        return 90
    head = raw.payload[:64].lstrip(b"\xef\xbb\xbf \t\r\n")
    return 60 if head[:1] in (b"{", b"[") else 0


def _documents(text: str, origin: str) -> list[tuple[str, Any]]:
    stripped = text.strip()
    if not stripped:
        raise CaptureError(f"{origin}: empty document")
    try:
        doc = json.loads(stripped)
    except json.JSONDecodeError as first_error:
        # Not one JSON value: try NDJSON, naming the line that fails.
        out = []
        for lineno, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                out.append((f"line {lineno}", json.loads(line)))
            except json.JSONDecodeError as exc:
                if lineno == 1 and len(out) == 0:
                    raise CaptureError(f"{origin}: invalid JSON at line {first_error.lineno} column {first_error.colno}: {first_error.msg}") from None
                raise CaptureError(f"{origin}: line {lineno}: invalid JSON: {exc.msg}") from None
        return out
    if isinstance(doc, list):
        return [(f"item {i}", d) for i, d in enumerate(doc)]
    return [("document", doc)]


def parse(raw: RawCapture, settings: Mapping[str, Any] | None = None) -> ParsedCapture:
    origin = raw.origin or "capture"
    try:
        text = raw.payload.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise CaptureError(f"{origin}: not UTF-8 (byte {exc.start})") from None
    leads = []
    for where, doc in _documents(text, origin):
        if not isinstance(doc, dict):
            raise CaptureError(f"{origin}: {where}: expected a JSON object, got {type(doc).__name__}")
        try:
            lead = lead_from_document(doc)
        except ValueError as exc:
            raise CaptureError(f"{origin}: {where}: {exc}") from None
        if settings and not lead.source and settings.get("default_source"):
            lead.source = settings["default_source"]
        leads.append(lead)
    return ParsedCapture(leads=leads)


@hookimpl
def crm_plugin_settings() -> Iterable[Setting]:
    return [Setting("default_source", "str", None, "source given to leads that do not name one")]


@hookimpl
def crm_capture_formats(settings: Mapping[str, Any]) -> Iterable[CaptureFormat]:
    return [
        CaptureFormat(
            name="json",
            sniff=sniff,
            parse=lambda raw: parse(raw, settings),
            description="JSON or NDJSON lead documents (fields as in `leads show --json`)",
        )
    ]
