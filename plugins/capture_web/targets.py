"""Delivery targets: what ``[plugins.capture_web.targets.<name>]`` may say, checked deeply.

Kept apart from the sending code so that validating the configuration at
start-up imports no HTTP or SMTP client.
"""

from __future__ import annotations

from typing import Any, Mapping

import attrs

from corecrm.errors import ConfigError

KINDS = ("webhook", "adf", "form", "email")
#: Event types a target may subscribe to (the observer hooks this plugin implements).
EVENT_TYPES = ("captured", "stage_changed", "assigned", "converted", "deal_closed", "quarantined")


@attrs.define(slots=True, frozen=True)
class Target:
    name: str
    kind: str
    url: str | None = None
    secret: str | None = None
    events: tuple[str, ...] = ()
    partner: bool = False
    max_attempts: int = 6
    backoff_seconds: float = 30.0
    timeout: float = 10.0
    fields: dict[str, str] = attrs.field(factory=dict)  #: form kind: lead field -> posted name
    email_to: tuple[str, ...] = ()
    email_from: str = "corecrm@localhost"
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 25
    email_format: str = "adf"  #: adf | json


_TARGET_KEYS = {f.name for f in attrs.fields(Target)} - {"name"}


def parse_targets(value: Any, key: str) -> dict[str, Target]:
    """Check ``targets``; every error names the key path."""
    if not isinstance(value, Mapping):
        raise ConfigError("expected a table of delivery targets", key=key)
    out: dict[str, Target] = {}
    for name, body in value.items():
        tkey = f"{key}.{name}"
        if not isinstance(body, Mapping):
            raise ConfigError("expected a table", key=tkey)
        for k in body:
            if k not in _TARGET_KEYS:
                raise ConfigError(f"unknown key (valid: {', '.join(sorted(_TARGET_KEYS))})", key=f"{tkey}.{k}")
        kind = body.get("kind")
        if kind not in KINDS:
            raise ConfigError(f"expected one of {', '.join(KINDS)}, got {kind!r}", key=f"{tkey}.kind")
        url = body.get("url")
        if kind != "email":
            if not isinstance(url, str) or not url.startswith(("http://", "https://")):
                raise ConfigError(f"expected an http(s) URL, got {url!r}", key=f"{tkey}.url")
        secret = body.get("secret")
        if kind == "webhook" and not (isinstance(secret, str) and secret) and not (isinstance(secret, dict) and "env" in secret):
            raise ConfigError("a webhook needs a signing secret (write { env = \"VAR\" } to keep it out of the file)", key=f"{tkey}.secret")
        events = body.get("events", [])
        if not isinstance(events, list):
            raise ConfigError("expected a list of event types", key=f"{tkey}.events")
        for i, e in enumerate(events):
            if e not in EVENT_TYPES:
                raise ConfigError(f"expected one of {', '.join(EVENT_TYPES)}, got {e!r}", key=f"{tkey}.events[{i}]")
        partner = body.get("partner", False)
        if not isinstance(partner, bool):
            raise ConfigError(f"expected true or false, got {partner!r}", key=f"{tkey}.partner")
        if not events and not partner:
            raise ConfigError("a target needs events to subscribe to, or partner = true", key=f"{tkey}.events")
        for k, lo in (("max_attempts", 1), ("smtp_port", 1)):
            v = body.get(k)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < lo):
                raise ConfigError(f"expected an integer >= {lo}, got {v!r}", key=f"{tkey}.{k}")
        for k in ("backoff_seconds", "timeout"):
            v = body.get(k)
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or v <= 0):
                raise ConfigError(f"expected a positive number, got {v!r}", key=f"{tkey}.{k}")
        to = body.get("email_to", [])
        if isinstance(to, str):
            to = [to]
        if kind == "email" and (not isinstance(to, list) or not to or not all(isinstance(a, str) and "@" in a for a in to)):
            raise ConfigError("an email target needs email_to (an address or a list of them)", key=f"{tkey}.email_to")
        fields = body.get("fields", {})
        if not isinstance(fields, Mapping) or not all(isinstance(v, str) for v in fields.values()):
            raise ConfigError("expected a table of lead field = posted name", key=f"{tkey}.fields")
        ef = body.get("email_format", "adf")
        if ef not in ("adf", "json"):
            raise ConfigError(f"expected 'adf' or 'json', got {ef!r}", key=f"{tkey}.email_format")
        out[name] = Target(
            name=name,
            kind=kind,
            url=url,
            secret=secret if isinstance(secret, str) else None,
            events=tuple(events),
            partner=partner,
            max_attempts=body.get("max_attempts", 6),
            backoff_seconds=float(body.get("backoff_seconds", 30.0)),
            timeout=float(body.get("timeout", 10.0)),
            fields=dict(fields),
            email_to=tuple(to),
            email_from=body.get("email_from", "corecrm@localhost"),
            smtp_host=body.get("smtp_host", "127.0.0.1"),
            smtp_port=body.get("smtp_port", 25),
            email_format=ef,
        )
    return out


def validate_targets(value: Any, key: str) -> None:
    parse_targets(value, key)
