"""The plugin's settings: declared for the core (``crm_plugin_settings``) and parsed once per workspace."""

from __future__ import annotations

import datetime as dt
from typing import Any, Mapping

import attrs

from corecrm.errors import ConfigError
from corecrm.records import Setting
from corecrm.settings import thaw

from corecrm_plugins.nurture_sequences.spec import Sequence, parse_duration, parse_sequences

PLUGIN = "nurture_sequences"


def _validate_sequences(value: Any, key: str) -> None:
    from corecrm_plugins.nurture_sequences.templates import check_sequences

    check_sequences(parse_sequences(value, key), key)


def _validate_secret(value: Any, key: str) -> None:
    # An { env = "VAR" } reference never reaches here: the core resolves it when the plugin reads its settings.
    raise ConfigError('write the secret as { env = "VAR" } so it never sits in the file', key=key)


def _validate_duration(value: Any, key: str) -> None:
    parse_duration(value, key)


def _validate_channels(value: Any, key: str) -> None:
    for i, v in enumerate(value):
        if not isinstance(v, str) or not v:
            raise ConfigError(f"expected a channel name, got {v!r}", key=f"{key}[{i}]")


def _validate_url(value: Any, key: str) -> None:
    if isinstance(value, str) and "{token}" not in value:
        raise ConfigError("must contain {token} where the signed token goes", key=key)


def _validate_tz(value: Any, key: str) -> None:
    if value:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ConfigError(f"unknown time zone {value!r} (use an IANA name such as Europe/Paris)", key=key) from None


#: The double opt-in message unless ``confirm_subject`` / ``confirm_text`` / ``confirm_html`` say otherwise.
DEFAULT_CONFIRM_SUBJECT = "Please confirm your e-mail address"
DEFAULT_CONFIRM_TEXT = """Hello{% if lead.first_name %} {{ lead.first_name }}{% endif %},

please confirm that you want to receive our {{ purpose }} e-mails at {{ address }} by opening this link:

{{ confirm_url }}

If you did not ask for this, ignore this message: nothing more will be sent to you.
"""


def _validate_confirm_template(value: Any, key: str) -> None:
    from corecrm_plugins.nurture_sequences.templates import check_confirmation_part

    if value is None:
        return
    if not isinstance(value, str) or (not value.strip() and not key.endswith("html")):
        raise ConfigError(f"expected a template (a non-empty string), got {value!r}", key=key)
    check_confirmation_part(value, key)


def declared_settings() -> list[Setting]:
    return [
        Setting("sequences", "dict", {}, "Nurture sequences: [plugins.nurture_sequences.sequences.<name>] with steps and enrol rules.", validate=_validate_sequences),
        Setting("secret", "any", None, 'Key that signs unsubscribe and confirmation tokens; write it as { env = "VAR" }.', validate=_validate_secret),
        Setting("unsubscribe_url", "str", None, "Public unsubscribe link; {token} is replaced by the signed token.", validate=_validate_url),
        Setting("confirm_url", "str", None, "Public double opt-in confirmation link; {token} is replaced by the signed token.", validate=_validate_url),
        Setting("unsubscribe_mailto", "str", None, "Mailbox for List-Unsubscribe mailto: requests (optional)."),
        Setting("require_consent", "list", ["email"], "Channels that need an opted-in consent for the sequence's purpose.", validate=_validate_channels),
        Setting("double_opt_in", "list", [], "Channels whose opt-in stays pending until confirmed through a signed link.", validate=_validate_channels),
        Setting("batch_size", "int", 500, "Due steps claimed per transaction."),
        Setting("max_attempts", "int", 5, "Send attempts before a step ends as failed."),
        Setting("retry_backoff", "any", "5m", "First retry delay; doubled after each failed attempt.", validate=_validate_duration),
        Setting("lease", "any", "10m", "How long a claimed step is reserved for the worker that claimed it.", validate=_validate_duration),
        Setting("on_failure", "str", "continue", "After a step failed for good: go on with the next step, or exit the sequence.", choices=("continue", "exit")),
        Setting("default_timezone", "str", None, "Time zone for 'at' steps when the lead has none (default UTC).", validate=_validate_tz),
        Setting("watch_interval", "any", "30s", "Pause between rounds of `nurture run --watch`.", validate=_validate_duration),
        Setting("confirm_subject", "str", DEFAULT_CONFIRM_SUBJECT, "Subject of the double opt-in confirmation e-mail (a template).", validate=_validate_confirm_template),
        Setting("confirm_text", "str", DEFAULT_CONFIRM_TEXT, "Text of the confirmation e-mail (a template that must use {{ confirm_url }}).", validate=_validate_confirm_template),
        Setting("confirm_html", "str", None, "Optional HTML part of the confirmation e-mail (a template).", validate=_validate_confirm_template),
        Setting("confirm_valid_for", "any", "14d", "How long a confirmation link works (0: no expiry).", validate=_validate_duration),
        Setting("confirm_send", "str", "immediately", "Send the confirmation when the pending opt-in is recorded, or only from `nurture run`.",
                choices=("immediately", "scheduler")),
    ]


@attrs.define(slots=True, frozen=True)
class NurtureSettings:
    sequences: Mapping[str, Sequence]
    secret: str | None
    unsubscribe_url: str | None
    confirm_url: str | None
    unsubscribe_mailto: str | None
    require_consent: frozenset[str]
    double_opt_in: frozenset[str]
    batch_size: int
    max_attempts: int
    retry_backoff: dt.timedelta
    lease: dt.timedelta
    on_failure: str
    default_timezone: str | None
    watch_interval: dt.timedelta
    confirm_subject: str = DEFAULT_CONFIRM_SUBJECT
    confirm_text: str = DEFAULT_CONFIRM_TEXT
    confirm_html: str | None = None
    confirm_valid_for: dt.timedelta = dt.timedelta(days=14)
    confirm_send: str = "immediately"

    @classmethod
    def from_settings(cls, s: Mapping[str, Any]) -> NurtureSettings:
        key = f"plugins.{PLUGIN}"
        secret = s.get("secret")
        if secret is not None and not isinstance(secret, str):
            raise ConfigError('expected a string or { env = "VAR" }', key=f"{key}.secret")
        return cls(
            sequences=parse_sequences(thaw(s.get("sequences") or {}), f"{key}.sequences"),
            secret=secret,
            unsubscribe_url=s.get("unsubscribe_url"),
            confirm_url=s.get("confirm_url"),
            unsubscribe_mailto=s.get("unsubscribe_mailto"),
            require_consent=frozenset(s.get("require_consent") or ()),
            double_opt_in=frozenset(s.get("double_opt_in") or ()),
            batch_size=max(1, int(s.get("batch_size") or 500)),
            max_attempts=max(1, int(s.get("max_attempts") or 5)),
            retry_backoff=parse_duration(s.get("retry_backoff", "5m"), f"{key}.retry_backoff"),
            lease=parse_duration(s.get("lease", "10m"), f"{key}.lease"),
            on_failure=s.get("on_failure") or "continue",
            default_timezone=s.get("default_timezone"),
            watch_interval=parse_duration(s.get("watch_interval", "30s"), f"{key}.watch_interval"),
            confirm_subject=s.get("confirm_subject") or DEFAULT_CONFIRM_SUBJECT,
            confirm_text=s.get("confirm_text") or DEFAULT_CONFIRM_TEXT,
            confirm_html=s.get("confirm_html") or None,
            confirm_valid_for=parse_duration(s.get("confirm_valid_for", "14d"), f"{key}.confirm_valid_for"),
            confirm_send=s.get("confirm_send") or "immediately",
        )

    def require_secret(self) -> str:
        if not self.secret:
            raise ConfigError('no signing secret: set secret = { env = "VAR" }', key=f"plugins.{PLUGIN}.secret")
        return self.secret


def config_warnings(s: Mapping[str, Any]) -> list[str]:
    """Valid but questionable settings, for ``corecrm config check``."""
    key = f"plugins.{PLUGIN}"
    out: list[str] = []
    seqs = parse_sequences(thaw(s.get("sequences") or {}), f"{key}.sequences")
    email_steps = [f"{key}.sequences.{n}.steps[{st.index}]" for n, q in seqs.items() for st in q.steps if st.channel == "email"]
    if email_steps and (not s.get("secret") or not s.get("unsubscribe_url")):
        out.append(f"{key}.unsubscribe_url: e-mail steps ({email_steps[0]}…) need secret and unsubscribe_url: without an unsubscribe link they fail")
    if "email" in (s.get("double_opt_in") or []) and not s.get("confirm_url"):
        out.append(f"{key}.confirm_url: double opt-in is on for email but there is no confirmation link to send")
    for name, q in seqs.items():
        if not q.rules:
            out.append(f"{key}.sequences.{name}.enrol: no enrolment rule: leads enter only by hand (nurture enrol) or through another plugin")
    return out
