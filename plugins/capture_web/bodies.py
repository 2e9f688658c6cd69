"""Decoding HTTP bodies into flat field dicts, and a small tolerant ADF reader.

One function per content type, chosen by :func:`decode`. Each returns
``(fields, already_mapped)``: form and JSON posts give the sender's input
names (mapped to lead fields by the form definition afterwards); an ADF/XML
post already gives lead field names, because ADF has one fixed structure.

The ADF reader is this plugin's own (it does not import ``capture_email``):
it cuts everything before the first ``<adf`` (real senders emit the spec's
malformed ``<?ADF VERSION "1.0"?>`` prolog), parses with defusedxml (no
entity expansion, no external DTDs) and keeps unknown elements as
attributes rather than rejecting the lead.
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import parse_qsl

from corecrm.errors import CaptureError

#: Content types accepted on ``POST /capture/{form}``.
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")
JSON_TYPES = ("application/json",)
XML_TYPES = ("application/xml", "text/xml", "application/x-adf+xml", "application/adf+xml")


def media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def is_xml(content_type: str | None) -> bool:
    mt = media_type(content_type)
    return mt in XML_TYPES or mt.endswith("+xml")


def decode(body: bytes, content_type: str | None) -> tuple[dict[str, Any], bool]:
    """Decode a body by its Content-Type. Raises :class:`CaptureError` with a one-line reason."""
    mt = media_type(content_type)
    if mt == "application/x-www-form-urlencoded":
        return decode_urlencoded(body), False
    if mt == "multipart/form-data":
        return decode_multipart(body, content_type or ""), False
    if mt in JSON_TYPES or mt.endswith("+json"):
        return decode_json(body), False
    if is_xml(content_type):
        return read_adf(body), True
    raise CaptureError(f"unsupported Content-Type {mt or '(none)'!r} (use form, multipart, JSON or ADF/XML)")


def _collect(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:  # repeated inputs (checkbox groups) become lists
            prev = out[k]
            out[k] = prev + [v] if isinstance(prev, list) else [prev, v]
        else:
            out[k] = v
    return out


def decode_urlencoded(body: bytes) -> dict[str, Any]:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CaptureError(f"form body is not UTF-8 (byte {exc.start})") from None
    return _collect(parse_qsl(text, keep_blank_values=True))


def decode_multipart(body: bytes, content_type: str) -> dict[str, Any]:
    """Parse ``multipart/form-data`` with python-multipart; file parts are kept by name and size only."""
    from python_multipart import MultipartParser
    from python_multipart.multipart import parse_options_header

    _, params = parse_options_header(content_type)
    boundary = params.get(b"boundary")
    if not boundary:
        raise CaptureError("multipart body without a boundary in its Content-Type")
    pairs: list[tuple[str, str]] = []
    state: dict[str, Any] = {}

    def on_part_begin() -> None:
        state.update(headers={}, data=bytearray(), header_field=b"", header_value=b"")

    def on_header_field(data: bytes, start: int, end: int) -> None:
        state["header_field"] += data[start:end]

    def on_header_value(data: bytes, start: int, end: int) -> None:
        state["header_value"] += data[start:end]

    def on_header_end() -> None:
        state["headers"][state["header_field"].lower()] = state["header_value"]
        state["header_field"], state["header_value"] = b"", b""

    def on_part_data(data: bytes, start: int, end: int) -> None:
        state["data"] += data[start:end]

    def on_part_end() -> None:
        disp, opts = parse_options_header(state["headers"].get(b"content-disposition", b""))
        name = opts.get(b"name", b"").decode("utf-8", "replace")
        if not name:
            return
        if b"filename" in opts:
            pairs.append((name, f"(file {opts[b'filename'].decode('utf-8', 'replace')!r}, {len(state['data'])} bytes)"))
            return
        try:
            pairs.append((name, bytes(state["data"]).decode("utf-8")))
        except UnicodeDecodeError:
            raise CaptureError(f"multipart field {name!r} is not UTF-8") from None

    parser = MultipartParser(
        boundary,
        {
            "on_part_begin": on_part_begin,
            "on_header_field": on_header_field,
            "on_header_value": on_header_value,
            "on_header_end": on_header_end,
            "on_part_data": on_part_data,
            "on_part_end": on_part_end,
        },
    )
    try:
        parser.write(body)
        parser.finalize()
    except CaptureError:
        raise
    except Exception as exc:
        raise CaptureError(f"malformed multipart body: {exc}") from None
    return _collect(pairs)


def decode_json(body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise CaptureError(f"invalid JSON body: {exc}") from None
    if not isinstance(data, dict):
        raise CaptureError(f"JSON body must be an object of field names to values, got {type(data).__name__}")
    return data


# --------------------------------------------------------------------------- ADF


def _text(el: Any) -> str | None:
    if el is None:
        return None
    t = "".join(el.itertext()).strip()
    return t or None


def _local(tag: Any) -> str:
    return tag.rsplit("}", 1)[-1].lower() if isinstance(tag, str) else ""


def _child(el: Any, name: str) -> Any:
    if el is None:
        return None
    for c in el:
        if _local(c.tag) == name:
            return c
    return None


def _children(el: Any, name: str) -> list[Any]:
    return [c for c in el if _local(c.tag) == name] if el is not None else []


def read_adf(body: bytes) -> dict[str, Any]:
    """Read the first ``<prospect>`` of an ADF document into lead fields.

    Returns lead field names (``first_name``, ``email``, ``attributes.vehicle``…).
    Raises :class:`CaptureError` when there is no ``<adf>`` element or no prospect.
    """
    from defusedxml import ElementTree as DET

    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else str(body)
    m = re.search(r"<adf[\s>]", text, re.IGNORECASE)
    if not m:
        raise CaptureError("XML body has no <adf> element (only ADF is accepted as XML)")
    doc = text[m.start():]
    end = re.search(r"</adf\s*>", doc, re.IGNORECASE)
    if end:
        doc = doc[: end.end()]
    try:
        root = DET.fromstring(doc)
    except Exception as exc:
        raise CaptureError(f"malformed ADF XML: {exc}") from None
    prospect = _child(root, "prospect")
    if prospect is None:
        raise CaptureError("ADF document has no <prospect>")
    out: dict[str, Any] = {}
    customer = _child(prospect, "customer")
    contact = _child(customer, "contact")
    if contact is not None:
        names = {(n.get("part") or "full").lower(): _text(n) for n in _children(contact, "name")}
        first, last = names.get("first"), names.get("last") or names.get("surname")
        full = names.get("full")
        if full and not (first or last):
            parts = full.rsplit(" ", 1)
            first, last = (parts[0], parts[1]) if len(parts) == 2 else (None, parts[0])
        if first:
            out["first_name"] = first
        if last:
            out["last_name"] = last
        email = _text(_child(contact, "email"))
        if email:
            out["email"] = email
        phones = _children(contact, "phone")
        phones.sort(key=lambda p: {"cellphone": 0, "voice": 1}.get((p.get("type") or "voice").lower(), 2))
        for p in phones:
            if (p.get("type") or "voice").lower() != "fax" and _text(p):
                out["phone"] = _text(p)
                break
        address = _child(contact, "address")
        if address is not None:
            for tag, field in (("city", "city"), ("postalcode", "postal_code"), ("country", "country"), ("regioncode", "region")):
                v = _text(_child(address, tag))
                if v:
                    out[field] = v
            streets = [_text(s) for s in _children(address, "street") if _text(s)]
            if streets:
                out["attributes.street"] = ", ".join(s for s in streets if s)
    comments = _text(_child(customer, "comments"))
    if comments:
        out["note"] = comments
    vehicles = []
    for v in _children(prospect, "vehicle"):
        item: dict[str, Any] = {k: val for k, val in v.attrib.items()}
        for c in v:
            t = _text(c)
            if t is not None:
                item[_local(c.tag)] = t
        vehicles.append(item)
    if vehicles:
        out["attributes.vehicles"] = vehicles
        interest = vehicles[0].get("interest")
        if interest:
            out["interests"] = [interest]
    vendor = _child(prospect, "vendor")
    vname = _text(_child(vendor, "vendorname")) or _text(_child(_child(vendor, "contact"), "name"))
    if vname:
        out["attributes.vendor"] = vname
    provider = _child(prospect, "provider")
    pname = _text(_child(provider, "name"))
    if pname:
        out["attributes.provider"] = pname
        out["source"] = pname
    rd = _text(_child(prospect, "requestdate"))
    if rd:
        out["attributes.requestdate"] = rd
    ids = [{"source": i.get("source"), "sequence": i.get("sequence"), "value": _text(i)} for i in _children(prospect, "id")]
    if ids:
        out["attributes.adf_ids"] = ids
    known = {"requestdate", "vehicle", "customer", "vendor", "provider", "id"}
    extra = {_local(c.tag): _text(c) for c in prospect if _local(c.tag) not in known}
    if extra:
        out["attributes.adf_extra"] = extra
    if not any(k in out for k in ("email", "phone", "last_name", "first_name")):
        raise CaptureError("ADF prospect has no customer contact (name, email or phone)")
    return out


def lead_to_adf(lead: dict[str, Any], *, vendor: str | None = None, provider: str = "corecrm") -> bytes:
    """Write a lead as an ADF 1.0 document (for partners that take ADF)."""
    from xml.sax.saxutils import escape, quoteattr

    def el(tag: str, value: Any, attrs: str = "") -> str:
        return f"<{tag}{attrs}>{escape(str(value))}</{tag}>" if value not in (None, "") else ""

    attrs_ = lead.get("attributes") or {}
    vehicles = attrs_.get("vehicles") or []
    vxml = ""
    for v in vehicles:
        va = "".join(f" {k}={quoteattr(str(v[k]))}" for k in ("interest", "status") if v.get(k))
        vxml += "<vehicle" + va + ">" + "".join(el(k, v.get(k)) for k in ("year", "make", "model", "vin", "stock", "trim")) + "</vehicle>"
    if not vxml:
        vxml = "<vehicle><year></year><make></make><model></model></vehicle>"
    addr = "".join(el(t, lead.get(f)) for t, f in (("city", "city"), ("regioncode", "region"), ("postalcode", "postal_code"), ("country", "country")))
    contact = (
        el("name", lead.get("first_name"), ' part="first"')
        + el("name", lead.get("last_name"), ' part="last"')
        + el("email", lead.get("email"))
        + el("phone", lead.get("phone"), ' type="voice"')
        + (f"<address>{addr}</address>" if addr else "")
    )
    created = lead.get("created_at") or ""
    full = ' part="full"'
    doc = (
        '<?xml version="1.0" encoding="UTF-8"?>\n<?adf version="1.0"?>\n<adf><prospect status="new">'
        + (f'<id sequence="1" source="corecrm">{escape(str(lead.get("id")))}</id>' if lead.get("id") is not None else "")
        + el("requestdate", created)
        + vxml
        + f"<customer><contact>{contact}</contact>{el('comments', lead.get('note'))}</customer>"
        + "<vendor><contact>" + (el("name", vendor, full) or '<name part="full"></name>') + "</contact></vendor>"
        + "<provider>" + el("name", provider, full) + "</provider>"
        + "</prospect></adf>\n"
    )
    return doc.encode("utf-8")
