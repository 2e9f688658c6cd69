"""ADF (Auto-lead Data Format) XML to leads.

ADF 1.0 is the car dealers' lead format: ``adf > prospect+``, each with a
``requestdate``, one or more ``vehicle``\\ s, a ``customer`` contact, the
``vendor`` (dealer) and an optional ``provider`` (the lead marketplace).

Real senders do not write well-formed XML prologs: the specification's own
example starts ``<?ADF VERSION "1.0"?>`` then ``<?XML VERSION “1.0”?>`` (curly
quotes, and an upper-case ``xml`` PI target, which XML reserves). So we cut
everything before the first ``<adf`` and after the last ``</adf>`` and parse
what is left with :mod:`defusedxml` (no entity expansion, no external
entities, no network). The DTD is not loadable, so the structure is checked
in code. Elements this module does not know are kept under
``attributes["adf_extra"]`` instead of rejecting the lead.
"""

from __future__ import annotations

import re
from typing import Any

from corecrm.models import Lead

from corecrm_plugins.capture_email.fields import split_name

_START = re.compile(rb"<\s*adf[\s>/]", re.IGNORECASE)
_END = re.compile(rb"</\s*adf\s*>", re.IGNORECASE)
_VEHICLE_KEYS = (
    "year", "make", "model", "vin", "stock", "trim", "doors", "bodystyle", "transmission", "odometer", "price",
    "pricecomments", "comments", "imagetag", "colorcombination", "option", "finance",
)


class AdfError(ValueError):
    """The payload holds ADF that cannot be read (the message names what is wrong)."""


def find_adf(data: bytes | str) -> bytes | None:
    """The ``<adf>…</adf>`` document inside a payload (body, attachment, HTML), or None."""
    raw = data.encode("utf-8", "surrogateescape") if isinstance(data, str) else data
    start = _START.search(raw)
    if start is None:
        return None
    ends = list(_END.finditer(raw, start.start()))
    end = ends[-1].end() if ends else len(raw)
    return raw[start.start() : end]


def looks_like_adf(data: bytes) -> bool:
    return _START.search(data[:4096]) is not None


def _local(tag: Any) -> str:
    if not isinstance(tag, str):
        return ""
    return tag.rsplit("}", 1)[-1].lower()


def _text(el: Any) -> str:
    """All text of an element (CDATA included), whitespace folded."""
    return re.sub(r"\s+", " ", "".join(el.itertext())).strip()


def _children(el: Any, name: str) -> list[Any]:
    return [c for c in el if _local(c.tag) == name]


def _child(el: Any, name: str) -> Any:
    for c in el:
        if _local(c.tag) == name:
            return c
    return None


def _generic(el: Any) -> Any:
    """An unknown element as plain data: its text, or a dict of its children/attributes."""
    kids = list(el)
    attrs = {k.lower(): v for k, v in el.attrib.items()}
    if not kids:
        text = _text(el)
        if attrs:
            return {**attrs, "value": text} if text else attrs
        return text
    out: dict[str, Any] = dict(attrs)
    for c in kids:
        key = _local(c.tag)
        val = _generic(c)
        if key in out:
            if not isinstance(out[key], list) or key not in out.get("_lists", ()):
                out[key] = [out[key]]
                out.setdefault("_lists", []).append(key)
            out[key].append(val)
        else:
            out[key] = val
    out.pop("_lists", None)
    return out


def _contact(el: Any) -> dict[str, Any]:
    """A ``contact`` element: names by part, e-mails, phones by type, address."""
    out: dict[str, Any] = {"names": {}, "emails": [], "phones": []}
    extra: dict[str, Any] = {}
    for c in el:
        tag = _local(c.tag)
        if tag == "name":
            part = (c.get("part") or "full").lower()
            out["names"].setdefault(part, _text(c))
        elif tag == "email":
            if _text(c):
                out["emails"].append(_text(c))
        elif tag == "phone":
            if _text(c):
                out["phones"].append({"number": _text(c), "type": (c.get("type") or "voice").lower(), "time": c.get("time")})
        elif tag == "address":
            addr: dict[str, Any] = {"street": []}
            for a in c:
                atag = _local(a.tag)
                if atag == "street":
                    if _text(a):
                        addr["street"].append(_text(a))
                elif _text(a):
                    addr[atag] = _text(a)
            out["address"] = addr
        elif tag:
            extra[tag] = _generic(c)
    if extra:
        out["extra"] = extra
    return out


def _ids(el: Any) -> list[dict[str, str]]:
    return [{"source": i.get("source") or "", "sequence": i.get("sequence") or "", "value": _text(i)} for i in _children(el, "id")]


def _vehicle(el: Any) -> dict[str, Any]:
    veh: dict[str, Any] = {k.lower(): v for k, v in el.attrib.items()}
    extra: dict[str, Any] = {}
    for c in el:
        tag = _local(c.tag)
        if tag == "id":
            veh.setdefault("ids", []).append({"source": c.get("source") or "", "value": _text(c)})
        elif tag in ("option", "colorcombination"):
            veh.setdefault(tag + "s", []).append(_generic(c))
        elif tag in _VEHICLE_KEYS:
            val = _generic(c)
            veh[tag] = val
        elif tag:
            extra[tag] = _generic(c)
    if extra:
        veh["extra"] = extra
    return veh


def _party(el: Any) -> dict[str, Any]:
    """A ``vendor`` or ``provider``: name, contact, ids and the rest as plain data."""
    out: dict[str, Any] = {}
    for c in el:
        tag = _local(c.tag)
        if tag == "contact":
            contact = _contact(c)
            names = contact["names"]
            out["contact"] = names.get("full") or " ".join(v for k, v in names.items() if k in ("first", "last")) or None
            if contact["emails"]:
                out["contact_email"] = contact["emails"][0]
            if contact["phones"]:
                out["contact_phone"] = contact["phones"][0]["number"]
        elif tag == "id":
            out.setdefault("ids", []).append({"source": c.get("source") or "", "value": _text(c)})
        elif tag in ("vendorname", "name"):
            out["name"] = _text(c)
        elif tag == "email":
            out.setdefault("emails", []).append(_text(c))
        elif tag:
            out[tag] = _generic(c)
    if not out.get("name") and out.get("contact"):
        out["name"] = out["contact"]
    return out


def _pick_phone(phones: list[dict[str, Any]]) -> str | None:
    for kind in ("cellphone", "voice", "pager"):
        for p in phones:
            if p["type"] == kind:
                return p["number"]
    return phones[0]["number"] if phones else None


def parse_adf(data: bytes | str, *, source: str | None = "adf", campaign: str | None = None) -> list[Lead]:
    """Every prospect of an ADF document as a :class:`Lead`.

    Raises :class:`AdfError` when there is no ``<adf>`` element, the XML is
    malformed, it declares entities, or no prospect has a customer contact.
    """
    from defusedxml import DefusedXmlException
    from defusedxml.ElementTree import ParseError, fromstring

    doc = find_adf(data)
    if doc is None:
        raise AdfError("no <adf> element found")
    try:
        root = fromstring(doc, forbid_dtd=True)
    except DefusedXmlException as exc:
        raise AdfError(f"ADF XML refused: {type(exc).__name__}") from None
    except ParseError as exc:
        raise AdfError(f"malformed ADF XML: {exc}") from None
    if _local(root.tag) != "adf":
        raise AdfError(f"root element is <{_local(root.tag)}>, not <adf>")
    prospects = _children(root, "prospect")
    if not prospects:
        raise AdfError("ADF document has no <prospect>")
    leads: list[Lead] = []
    problems: list[str] = []
    for pos, prospect in enumerate(prospects):
        lead = _prospect_lead(prospect, source=source, campaign=campaign)
        if lead is None:
            problems.append(f"prospect {pos + 1} has no customer contact")
            continue
        leads.append(lead)
    if not leads:
        raise AdfError("; ".join(problems))
    return leads


def _prospect_lead(prospect: Any, *, source: str | None, campaign: str | None) -> Lead | None:
    customer = _child(prospect, "customer")
    contact_el = _child(customer, "contact") if customer is not None else None
    if contact_el is None:
        return None
    contact = _contact(contact_el)
    names = contact["names"]
    first = names.get("first")
    last = names.get("last") or names.get("surname")
    if not (first or last) and names.get("full"):
        first, last = split_name(names["full"])
    if not (first or last or contact["emails"] or contact["phones"]):
        return None
    attrs: dict[str, Any] = {"format": "adf"}
    status = prospect.get("status")
    if status:
        attrs["adf_status"] = status.lower()
    ids = _ids(prospect)
    if ids:
        attrs["prospect_ids"] = ids
    extra: dict[str, Any] = {}
    vehicles: list[dict[str, Any]] = []
    for c in prospect:
        tag = _local(c.tag)
        if tag == "requestdate":
            attrs["requestdate"] = _text(c)
        elif tag == "vehicle":
            vehicles.append(_vehicle(c))
        elif tag in ("vendor", "provider"):
            attrs[tag] = _party(c)
        elif tag in ("customer", "id"):
            continue
        elif tag:
            extra[tag] = _generic(c)
    if vehicles:
        attrs["vehicle"] = vehicles[0]
        if len(vehicles) > 1:
            attrs["vehicles"] = vehicles
    if len(contact["emails"]) > 1:
        attrs["emails"] = contact["emails"]
    if contact["phones"]:
        attrs["phones"] = contact["phones"]
    if contact.get("extra"):
        extra["contact"] = contact["extra"]
    note = None
    if customer is not None:
        for c in customer:
            tag = _local(c.tag)
            if tag == "comments":
                note = _text(c) or None
            elif tag == "timeframe":
                attrs["timeframe"] = _generic(c)
            elif tag in ("contact", "id"):
                continue
            elif tag:
                extra.setdefault("customer", {})[tag] = _generic(c)
    if extra:
        attrs["adf_extra"] = extra
    addr = contact.get("address") or {}
    if addr.get("street"):
        attrs["street"] = addr["street"]
    country = (addr.get("country") or "").strip().upper()
    region_code = (addr.get("regioncode") or "").strip().upper()
    region = None
    if len(country) == 2 and country.isalpha() and re.fullmatch(r"[A-Z0-9]{1,3}", region_code or "-"):
        region = f"{country}-{region_code}"
    elif region_code:
        attrs["regioncode"] = region_code
    interests = []
    for v in vehicles:
        label = " ".join(str(v.get(k)) for k in ("year", "make", "model") if isinstance(v.get(k), str) and v.get(k))
        if label:
            interests.append(label[:200])
    return Lead(
        first_name=first or None,
        last_name=last or None,
        email=contact["emails"][0] if contact["emails"] else None,
        phone=_pick_phone(contact["phones"]),
        city=addr.get("city") or None,
        postal_code=(addr.get("postalcode") or "")[:16] or None,
        country=country if len(country) == 2 and country.isalpha() else None,
        region=region,
        source=source,
        campaign=campaign,
        interests=interests,
        attributes=attrs,
        note=note,
    )
