"""From decoded fields to a lead: the ``web_form`` capture format.

The HTTP layer stores the body exactly as it arrived, with a snapshot of the
form's field map in the capture's ``meta``; this format turns it into a lead.
Because the map travels with the capture, ``corecrm retry`` re-parses an old
capture the way it was mapped when it arrived, even if the form changed since.
"""

from __future__ import annotations

from typing import Any, Mapping

from corecrm.models import Lead
from corecrm.records import CaptureFormat, ParsedCapture, RawCapture

from corecrm_plugins.capture_web import bodies
from corecrm_plugins.capture_web.forms import RESERVED_INPUTS

FORMAT_NAME = "web_form"
#: ``meta`` key that marks a capture as coming from this plugin.
META_KEY = "capture_web"


def _clean(value: Any) -> Any:
    if isinstance(value, str):
        value = value.strip()
        return value or None
    if isinstance(value, list):
        items = [_clean(v) for v in value]
        return [v for v in items if v not in (None, "")] or None
    return value


def map_fields(fields: Mapping[str, Any], field_map: Mapping[str, str], *, mapped: bool) -> dict[str, Any]:
    """Input names -> lead fields. Inputs the form does not map are kept under ``attributes.form``."""
    out: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    for name, value in fields.items():
        if name in RESERVED_INPUTS:
            continue
        value = _clean(value)
        if value is None:
            continue
        target = name if mapped else field_map.get(name)
        if target is None:
            extra[name] = value
            continue
        out[target] = value
    if extra:
        out["attributes.form"] = extra
    return out


def missing_required(lead_fields: Mapping[str, Any], required: list[str] | tuple[str, ...], field_map: Mapping[str, str], *, mapped: bool) -> str | None:
    """The first required input that is empty, by input name (or lead field name for ADF)."""
    for inp in required:
        target = field_map.get(inp, inp)
        if lead_fields.get(target) in (None, "", []):
            return target if mapped else inp
    return None


def build_lead(lead_fields: Mapping[str, Any], *, source: str | None, campaign: str | None, consent: Mapping[str, Any] | None) -> Lead:
    lead = Lead()
    attributes: dict[str, Any] = {}
    for field, value in lead_fields.items():
        if field.startswith("attributes."):
            attributes[field[len("attributes."):]] = value
        elif field == "interests":
            lead.interests = [str(v) for v in (value if isinstance(value, list) else [p.strip() for p in str(value).split(",")]) if str(v).strip()]
        else:
            setattr(lead, field, ", ".join(map(str, value)) if isinstance(value, list) else str(value))
    lead.attributes = attributes
    if lead.source is None:
        lead.source = source
    if lead.campaign is None:
        lead.campaign = campaign
    if consent:
        lead.consent = {consent["channel"]: dict(consent)}
    return lead


def sniff(raw: RawCapture) -> int:
    if isinstance(raw.meta, dict) and META_KEY in raw.meta:
        return 100
    return 0


def parse(raw: RawCapture) -> ParsedCapture:
    """Parse a stored web capture. Bot hits (honeypot, too-fast fill) are skipped with the reason."""
    meta = raw.meta.get(META_KEY) or {}
    bot = meta.get("bot")
    if bot:
        return ParsedCapture(leads=[], skipped=f"bot: {bot}", meta={"form": meta.get("form")})
    fields, mapped = bodies.decode(raw.payload, raw.content_type)
    lead_fields = map_fields(fields, meta.get("fields") or {}, mapped=mapped)
    lead = build_lead(lead_fields, source=meta.get("source"), campaign=meta.get("campaign"), consent=meta.get("consent"))
    return ParsedCapture(leads=[lead], meta={"form": meta.get("form")})


def capture_format() -> CaptureFormat:
    return CaptureFormat(
        name=FORMAT_NAME,
        sniff=sniff,
        parse=parse,
        description="HTTP posts to /capture/{form} (form, multipart, JSON, ADF/XML), mapped by the form's field map",
    )
