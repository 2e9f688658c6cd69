"""Form definitions: what ``[plugins.capture_web.forms.<form>]`` may say, checked deeply.

A form maps the names a web page or a lead vendor posts to lead fields, says
which of them are required, and carries the defaults (source, campaign,
workspace) and the browser behaviour (redirect, CORS origins, consent box).
Every error names the exact key path, e.g.
``plugins.capture_web.forms.contact.fields.mail: unknown lead field 'e_mail'``.
"""

from __future__ import annotations

import re
from typing import Any, Mapping

import attrs

from corecrm.errors import ConfigError
from corecrm.models import CONTACT_FIELDS

#: Lead fields a form may fill. ``attributes.<key>`` is allowed too (industry data).
FORM_TARGETS: frozenset[str] = frozenset(CONTACT_FIELDS + ("note", "interests", "language", "timezone", "source", "campaign"))

#: Input names the plugin itself uses in the generated HTML; a form may not map them.
RESERVED_INPUTS: frozenset[str] = frozenset({"_cw_token", "_cw_consent", "_cw_hp"})

_INPUT_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_.\-]{0,63}$")

#: Default labels of the generated HTML form.
DEFAULT_LABELS: dict[str, str] = {
    "first_name": "First name",
    "last_name": "Last name",
    "email": "Email",
    "phone": "Phone",
    "company": "Company",
    "title": "Job title",
    "country": "Country",
    "region": "Region",
    "city": "City",
    "postal_code": "Postal code",
    "note": "Message",
    "interests": "Interests",
}

DEFAULT_FIELDS: dict[str, str] = {
    "first_name": "first_name",
    "last_name": "last_name",
    "email": "email",
    "phone": "phone",
    "company": "company",
    "note": "note",
}


@attrs.define(slots=True, frozen=True)
class Consent:
    """The consent checkbox: what the person agrees to, for which channel and purpose."""

    text: str
    channel: str = "email"
    purpose: str = "marketing"
    required: bool = False


@attrs.define(slots=True, frozen=True)
class FormDef:
    """One capture form, as configured."""

    name: str
    title: str
    fields: dict[str, str]  #: input name -> lead field (``attributes.x`` allowed), in display order
    labels: dict[str, str]
    required: tuple[str, ...]  #: input names
    workspace: str | None = None
    source: str | None = None
    campaign: str | None = None
    redirect: str | None = None
    cors_origins: tuple[str, ...] = ()
    require_key: bool = False
    consent: Consent | None = None
    min_fill_seconds: float | None = None  #: None: the plugin-wide default
    accept_adf: bool = True
    submit_label: str = "Send"

    def label(self, name: str) -> str:
        return self.labels.get(name) or DEFAULT_LABELS.get(self.fields[name]) or name.replace("_", " ").capitalize()

    def input_for(self, lead_field: str) -> str:
        """The input name that feeds a lead field (to name it in a 422), or the field itself."""
        for name, target in self.fields.items():
            if target == lead_field:
                return name
        return lead_field

    def snapshot(self) -> dict[str, Any]:
        """What the capture keeps with the raw body, so a later re-parse maps it the same way."""
        return {
            "form": self.name,
            "fields": dict(self.fields),
            "source": self.source,
            "campaign": self.campaign,
        }


_FORM_KEYS = {
    "title",
    "fields",
    "labels",
    "required",
    "workspace",
    "source",
    "campaign",
    "redirect",
    "cors_origins",
    "require_key",
    "consent",
    "min_fill_seconds",
    "accept_adf",
    "submit_label",
}


def _str(value: Any, key: str, *, allow_none: bool = True) -> str | None:
    if value is None and allow_none:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"expected a non-empty string, got {value!r}", key=key)
    return value


def _check_target(target: Any, key: str) -> str:
    if not isinstance(target, str):
        raise ConfigError(f"expected a lead field name, got {target!r}", key=key)
    if target.startswith("attributes.") and len(target) > len("attributes."):
        return target
    if target not in FORM_TARGETS:
        raise ConfigError(
            f"unknown lead field {target!r} (valid: {', '.join(sorted(FORM_TARGETS))}, or attributes.<key>)", key=key
        )
    return target


def parse_form(name: str, body: Any, key: str) -> FormDef:
    """Check one form table; raise :class:`ConfigError` naming the deepest bad key."""
    if not re.match(r"^[a-z][a-z0-9_\-]{0,63}$", name):
        raise ConfigError("form names are lower-case letters, digits, '-' and '_'", key=key)
    if not isinstance(body, Mapping):
        raise ConfigError("expected a table", key=key)
    for k in body:
        if k not in _FORM_KEYS:
            raise ConfigError(f"unknown key (valid: {', '.join(sorted(_FORM_KEYS))})", key=f"{key}.{k}")
    raw_fields = body.get("fields", DEFAULT_FIELDS)
    if not isinstance(raw_fields, Mapping) or not raw_fields:
        raise ConfigError("expected a table of input name = lead field", key=f"{key}.fields")
    fields: dict[str, str] = {}
    for inp, target in raw_fields.items():
        fkey = f"{key}.fields.{inp}"
        if inp in RESERVED_INPUTS:
            raise ConfigError("reserved input name (the generated form uses it)", key=fkey)
        if not _INPUT_RE.match(inp):
            raise ConfigError("input names are letters, digits, '_', '-' and '.', starting with a letter", key=fkey)
        fields[inp] = _check_target(target, fkey)
    labels = body.get("labels", {})
    if not isinstance(labels, Mapping) or not all(isinstance(v, str) for v in labels.values()):
        raise ConfigError("expected a table of input name = label text", key=f"{key}.labels")
    for inp in labels:
        if inp not in fields:
            raise ConfigError(f"label for an input the form does not have (inputs: {', '.join(fields)})", key=f"{key}.labels.{inp}")
    required = body.get("required", [])
    if not isinstance(required, list):
        raise ConfigError("expected a list of input names", key=f"{key}.required")
    for i, inp in enumerate(required):
        if inp not in fields:
            raise ConfigError(f"required input {inp!r} is not in fields (inputs: {', '.join(fields)})", key=f"{key}.required[{i}]")
    origins = body.get("cors_origins", [])
    if not isinstance(origins, list):
        raise ConfigError("expected a list of origins", key=f"{key}.cors_origins")
    for i, o in enumerate(origins):
        if not isinstance(o, str) or not (o == "*" or re.match(r"^https?://[^/\s]+$", o)):
            raise ConfigError(f"expected an origin like 'https://www.example.com' (no path), got {o!r}", key=f"{key}.cors_origins[{i}]")
    redirect = _str(body.get("redirect"), f"{key}.redirect")
    if redirect is not None and not re.match(r"^(https?://|/)", redirect):
        raise ConfigError(f"expected an http(s) URL or a path, got {redirect!r}", key=f"{key}.redirect")
    consent = None
    raw_consent = body.get("consent")
    if raw_consent is not None:
        ckey = f"{key}.consent"
        if not isinstance(raw_consent, Mapping):
            raise ConfigError("expected a table with text, channel, purpose, required", key=ckey)
        for k in raw_consent:
            if k not in ("text", "channel", "purpose", "required"):
                raise ConfigError("unknown key (valid: channel, purpose, required, text)", key=f"{ckey}.{k}")
        req = raw_consent.get("required", False)
        if not isinstance(req, bool):
            raise ConfigError(f"expected true or false, got {req!r}", key=f"{ckey}.required")
        consent = Consent(
            text=_str(raw_consent.get("text"), f"{ckey}.text", allow_none=False) or "",
            channel=_str(raw_consent.get("channel", "email"), f"{ckey}.channel") or "email",
            purpose=_str(raw_consent.get("purpose", "marketing"), f"{ckey}.purpose") or "marketing",
            required=req,
        )
    mfs = body.get("min_fill_seconds")
    if mfs is not None and (isinstance(mfs, bool) or not isinstance(mfs, (int, float)) or mfs < 0):
        raise ConfigError(f"expected a number of seconds >= 0, got {mfs!r}", key=f"{key}.min_fill_seconds")
    for flag in ("require_key", "accept_adf"):
        if flag in body and not isinstance(body[flag], bool):
            raise ConfigError(f"expected true or false, got {body[flag]!r}", key=f"{key}.{flag}")
    return FormDef(
        name=name,
        title=_str(body.get("title"), f"{key}.title") or name.replace("_", " ").replace("-", " ").capitalize(),
        fields=fields,
        labels=dict(labels),
        required=tuple(required),
        workspace=_str(body.get("workspace"), f"{key}.workspace"),
        source=_str(body.get("source"), f"{key}.source"),
        campaign=_str(body.get("campaign"), f"{key}.campaign"),
        redirect=redirect,
        cors_origins=tuple(origins),
        require_key=body.get("require_key", False),
        consent=consent,
        min_fill_seconds=float(mfs) if mfs is not None else None,
        accept_adf=body.get("accept_adf", True),
        submit_label=_str(body.get("submit_label"), f"{key}.submit_label") or "Send",
    )


def parse_forms(value: Any, key: str) -> dict[str, FormDef]:
    if not isinstance(value, Mapping):
        raise ConfigError("expected a table of forms", key=key)
    return {name: parse_form(name, body, f"{key}.{name}") for name, body in value.items()}


def validate_forms(value: Any, key: str) -> None:
    """``Setting.validate`` for ``forms``: checks everything, keeps the raw table."""
    parse_forms(value, key)
