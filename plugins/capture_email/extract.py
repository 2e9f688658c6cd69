"""One e-mail message to a :class:`~corecrm.records.ParsedCapture`.

The order of decisions, each one explained in the capture's ``meta``:

1. too large → an error (the core quarantines the stored capture);
2. bounce / auto-reply / the CRM's own mail / a profile that ignores the
   sender → ``skipped`` with the reason;
3. ADF XML in an attachment or the body → one lead per prospect;
4. otherwise every profile whose matchers fit is tried in order, and the one
   that extracts the most of its required fields wins (ties: the first);
   without a matching profile the built-in label map is used;
5. with no lead structure at all the message still becomes a lead from its
   sender (display name, address, body kept as the first note).

When the sender is a form mailer (``wordpress@``, ``noreply@``…) the
lead's address comes from the body or Reply-To, never from From.
"""

from __future__ import annotations

import re
from typing import Any

from corecrm.errors import CaptureError
from corecrm.models import Lead
from corecrm.records import ParsedCapture

from corecrm_plugins.capture_email.adf import AdfError, find_adf, parse_adf
from corecrm_plugins.capture_email.classify import skip_reason
from corecrm_plugins.capture_email.config import EmailSettings, Profile
from corecrm_plugins.capture_email.fields import apply_pairs, find_email, key_values, norm_label, split_name
from corecrm_plugins.capture_email.htmltext import table_pairs
from corecrm_plugins.capture_email.message import MailView, read_message

_IDENTITY = ("name", "first_name", "last_name", "email", "phone", "company")


class EmailParseError(CaptureError):
    """The message cannot be turned into leads; the capture is quarantined with this message."""


def is_form_mailer(addr: str, cfg: EmailSettings) -> bool:
    return bool(addr) and any(p.search(addr) for p in cfg.form_mailers)


def profile_matches(profile: Profile, view: MailView) -> bool:
    """All of a profile's matchers must fit; a profile without matchers fits every message."""
    if profile.match_from is not None:
        sender = f"{view.from_name} <{view.from_addr}>"
        if not (profile.match_from.search(view.from_addr or "") or profile.match_from.search(sender)):
            return False
    if profile.match_to is not None and not any(profile.match_to.search(a) for a in view.to_addrs):
        return False
    if profile.match_subject is not None and not profile.match_subject.search(view.subject or ""):
        return False
    return True


def extract_fields(profile: Profile, view: MailView) -> dict[str, Any]:
    """Lead fields a profile's extractor finds in a message (``{}`` for ``sender``/``adf``)."""
    ext = profile.extractor
    if ext in ("sender", "adf"):
        return {}
    if ext == "regex":
        hay = f"Subject: {view.subject}\n{view.text}"
        found: list[tuple[str, str]] = []
        for target, rx in profile.patterns.items():
            m = rx.search(hay)
            if m and m.group(1) and m.group(1).strip():
                found.append((target, m.group(1).strip()))
        # The "labels" here are the target names themselves.
        return apply_pairs(found, {norm_label(t): t for t in profile.patterns})
    pairs: list[tuple[str, str]] = []
    if ext in ("html_table", "auto") and view.html_rows:
        pairs.extend(table_pairs(view.html_rows))
    if ext in ("keyvalue", "auto"):
        pairs.extend(key_values(view.text, profile.labels))
    return apply_pairs(pairs, profile.labels)


def required_score(profile: Profile, fields: dict[str, Any]) -> int:
    score = 0
    for req in profile.required:
        if req == "name":
            ok = bool(fields.get("name") or fields.get("first_name") or fields.get("last_name") or fields.get("from_name"))
        elif req == "email":
            ok = bool(fields.get("email") or fields.get("from_email"))
        elif req.startswith("attributes."):
            ok = req.split(".", 1)[1] in fields.get("form", {})
        else:
            ok = bool(fields.get(req))
        score += ok
    return score


def _describe_view(view: MailView) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "message_id": view.message_id,
        "subject": view.subject,
        "from": view.from_addr or None,
    }
    if view.date is not None:
        meta["date"] = view.date.isoformat()
    elif view.date_raw:
        meta["date_invalid"] = view.date_raw[:100]
    if view.attachments:
        meta["attachments"] = [a.describe() for a in view.attachments]
    if view.defects:
        meta["defects"] = view.defects[:20]
    return meta


def parse_email(payload: bytes, cfg: EmailSettings, *, extra_own: frozenset[str] = frozenset()) -> ParsedCapture:
    """Turn one raw message into leads, or a skip with its reason. Raises :class:`EmailParseError`."""
    if len(payload) > cfg.max_message_bytes:
        raise EmailParseError(f"message is {len(payload)} bytes, over max_message_bytes ({cfg.max_message_bytes}); not read")
    view = read_message(payload, max_attachment_bytes=cfg.max_attachment_bytes)
    meta = _describe_view(view)
    if not view.msg.keys():
        raise EmailParseError("not an e-mail message: no header lines")
    reason = skip_reason(view, cfg.own_addresses | extra_own)
    if reason:
        return ParsedCapture(skipped=reason, meta=meta)
    matching = [p for p in cfg.profiles if profile_matches(p, view)]
    for p in matching:
        if p.ignore:
            meta["profile"] = p.name
            return ParsedCapture(skipped=f"ignored sender: profile {p.name!r} ignores {view.from_addr or 'this sender'}", meta=meta)

    # ADF, from an attachment first (the body is often a human summary of it), then the body.
    adf_profiles = [p for p in matching if p.extractor in ("adf", "auto")]
    if adf_profiles or not matching:
        doc = None
        where = None
        for att in view.attachments:
            if att.data is not None:
                doc = find_adf(att.data)
                if doc is not None:
                    where = f"attachment {att.filename or att.content_type}"
                    break
        if doc is None:
            for label, body in (("body", view.text), ("html body", view.html or "")):
                doc = find_adf(body)
                if doc is not None:
                    where = label
                    break
        if doc is not None:
            prof = adf_profiles[0] if adf_profiles else cfg.builtin_profile
            try:
                leads = parse_adf(doc, source=prof.source or "adf", campaign=prof.campaign)
            except AdfError as exc:
                raise EmailParseError(f"ADF in {where}: {exc}") from None
            meta.update(profile=prof.name, extractor="adf", adf_in=where)
            for lead in leads:
                lead.attributes["email"] = _mail_attrs(view)
                lead.attributes["profile"] = prof.name
            return ParsedCapture(leads=leads, meta=meta)

    candidates = matching or [cfg.builtin_profile]
    best: tuple[int, Profile, dict[str, Any]] | None = None
    tried = []
    for p in candidates:
        fields = extract_fields(p, view)
        score = required_score(p, fields)
        tried.append({"profile": p.name, "required_found": score, "required": len(p.required)})
        if best is None or score > best[0]:
            best = (score, p, fields)
    assert best is not None
    _score, profile, fields = best
    meta["profile"] = profile.name
    if len(tried) > 1:
        meta["profiles_tried"] = tried
    lead = build_lead(view, profile, fields, cfg)
    if lead is None:
        raise EmailParseError("no sender address and no lead fields in the message")
    meta["extractor"] = "sender" if lead.attributes.get("from_sender") else profile.extractor
    return ParsedCapture(leads=[lead], meta=meta)


def _mail_attrs(view: MailView) -> dict[str, Any]:
    out: dict[str, Any] = {"subject": view.subject, "from": view.from_addr or None}
    if view.message_id:
        out["message_id"] = view.message_id
    if view.date is not None:
        out["date"] = view.date.isoformat()
    return out


def build_lead(view: MailView, profile: Profile, fields: dict[str, Any], cfg: EmailSettings) -> Lead | None:
    """A lead from extracted fields, completed from the message's sender when the body lacks it."""
    structured = any(fields.get(k) for k in _IDENTITY) or bool(fields.get("from_email"))
    mailer = is_form_mailer(view.from_addr, cfg)
    reply_ok = bool(view.reply_addr) and not is_form_mailer(view.reply_addr, cfg)
    attrs: dict[str, Any] = {"email": _mail_attrs(view)}

    email = fields.get("email") or fields.get("from_email")
    display = fields.get("from_name") or ""
    if not email:
        if reply_ok:
            email, display = view.reply_addr, display or view.reply_name
        elif mailer:
            body_addr = find_email(view.text)
            if body_addr and body_addr.lower() != view.from_addr.lower():
                email = body_addr
        elif not structured or profile.name == "builtin":
            email, display = view.from_addr or None, display or view.from_name
    first, last = fields.get("first_name"), fields.get("last_name")
    if not (first or last):
        name = fields.get("name") or display
        if not name and not structured and not mailer:
            name = view.from_name
        if name:
            first, last = split_name(name)
    if not structured:
        attrs["from_sender"] = True
    note = fields.get("note")
    if not structured:
        body = view.text.strip()
        note = body[: cfg.max_note_chars] if body else None
    if note and len(note) > cfg.max_note_chars:
        note = note[: cfg.max_note_chars]
    phone = fields.get("phone")
    if not (email or phone or first or last):
        return None
    country = (fields.get("country") or "").strip()
    region = (fields.get("region") or "").strip()
    postal = (fields.get("postal_code") or "").strip()
    if country and not (len(country) == 2 and country.isalpha()):
        attrs["country_text"] = country
        country = ""
    if region and len(region) > 8:
        attrs["region_text"] = region
        region = ""
    if len(postal) > 16:
        attrs["postal_code_text"] = postal
        postal = ""
    for key in ("street", "website", "subject"):
        if fields.get(key):
            attrs[key] = fields[key]
    if fields.get("form"):
        attrs["form"] = fields["form"]
    attrs["profile"] = profile.name
    return Lead(
        first_name=first or None,
        last_name=last or None,
        email=email or None,
        phone=phone or None,
        company=fields.get("company") or None,
        title=fields.get("title") or None,
        country=country.upper() or None,
        region=region.upper() or None,
        city=fields.get("city") or None,
        postal_code=postal or None,
        source=profile.source or fields.get("source") or cfg.default_source,
        campaign=profile.campaign or fields.get("campaign") or None,
        interests=list(fields.get("interest") or []),
        attributes=attrs,
        note=note or None,
    )


_HEADER_START = re.compile(rb"^(?:From [^\r\n]*\r?\n)?(?:[!-9;-~]{1,76}:[^\r\n]*\r?\n(?:[ \t][^\r\n]*\r?\n)*){2,}", re.S)
_MAIL_HEADERS = re.compile(rb"^(from|to|subject|date|message-id|received|return-path|mime-version|delivered-to|reply-to):", re.I | re.M)


def sniff_email(payload: bytes, content_type: str | None, origin: str) -> int:
    """Confidence (0-100) that a payload is one RFC 5322 message."""
    head = payload[:8192].lstrip(b"\r\n")
    ct = (content_type or "").lower()
    if ct.startswith("message/rfc822") or origin.lower().endswith(".eml"):
        return 95
    if not _HEADER_START.match(head):
        return 0
    block = head.split(b"\n\n", 1)[0].split(b"\r\n\r\n", 1)[0]
    hits = len({m.group(1).lower() for m in _MAIL_HEADERS.finditer(block)})
    if hits >= 2:
        return 85
    return 40 if hits == 1 else 0
