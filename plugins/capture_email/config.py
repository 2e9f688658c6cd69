"""The plugin's settings: declarations, deep validation and the compiled form.

Each validator raises :class:`corecrm.errors.ConfigError` naming the exact key
path (``plugins.capture_email.profiles[2].match_from``) so a typo in a regex
or a field name is a one-line error at start-up, not a silent miss at 3 a.m.
"""

from __future__ import annotations

import re
from typing import Any, Mapping

import attrs

from corecrm.errors import ConfigError
from corecrm.records import Setting

from corecrm_plugins.capture_email.fields import BUILTIN_LABELS, TARGETS, norm_label

EXTRACTORS = ("auto", "keyvalue", "html_table", "adf", "regex", "sender")
#: Senders that are a web form's mailer, not the person: the lead is in Reply-To or the body.
DEFAULT_FORM_MAILERS = (
    r"^(wordpress|noreply|no-reply|no_reply|donotreply|do-not-reply|do_not_reply|mailer|webmaster|www-data|apache|nginx|forms?|webforms?|notifications?|notify|system|admin|info-noreply)@",
)
_PROFILE_KEYS = {
    "name", "match_from", "match_to", "match_subject", "extractor", "fields", "patterns", "required", "source", "campaign", "ignore",
}
_SOURCE_KEYS = {
    "kind", "host", "port", "tls", "starttls", "user", "password", "password_env", "folder", "processed_folder", "rejected_folder",
    "batch_size", "timeout", "poll_interval", "idle",
}


def _err(key: str, msg: str) -> ConfigError:
    return ConfigError(msg, key=key)


def _regex(value: Any, key: str) -> re.Pattern[str]:
    if not isinstance(value, str):
        raise _err(key, f"expected a regular expression string, got {type(value).__name__}")
    try:
        return re.compile(value, re.IGNORECASE)
    except re.error as exc:
        raise _err(key, f"invalid regular expression {value!r}: {exc}") from None


def _target(value: Any, key: str) -> str:
    if not isinstance(value, str) or not (value in TARGETS or (value.startswith("attributes.") and len(value) > 11)):
        raise _err(key, f"unknown field {value!r} (valid: {', '.join(sorted(TARGETS))}, or attributes.<key>)")
    return value


def validate_labels(value: Any, key: str) -> Any:
    if not isinstance(value, dict):
        raise _err(key, "expected a table of label = field")
    for label, target in value.items():
        _target(target, f"{key}.{label}")
    return value


def validate_profiles(value: Any, key: str) -> Any:
    if not isinstance(value, list):
        raise _err(key, "expected a list of profile tables ([[plugins.capture_email.profiles]])")
    names: set[str] = set()
    for i, prof in enumerate(value):
        pk = f"{key}[{i}]"
        if not isinstance(prof, dict):
            raise _err(pk, "expected a table")
        unknown = sorted(set(prof) - _PROFILE_KEYS)
        if unknown:
            raise _err(f"{pk}.{unknown[0]}", f"unknown key (valid: {', '.join(sorted(_PROFILE_KEYS))})")
        name = prof.get("name")
        if not isinstance(name, str) or not name:
            raise _err(f"{pk}.name", "expected a profile name")
        if name in names:
            raise _err(f"{pk}.name", f"duplicate profile {name!r}")
        if name == "builtin":
            raise _err(f"{pk}.name", "'builtin' is the name of the built-in profile; choose another")
        names.add(name)
        for mk in ("match_from", "match_to", "match_subject"):
            if mk in prof:
                _regex(prof[mk], f"{pk}.{mk}")
        ext = prof.get("extractor", "auto")
        if ext not in EXTRACTORS:
            raise _err(f"{pk}.extractor", f"expected one of {', '.join(EXTRACTORS)}, got {ext!r}")
        fields = prof.get("fields", {})
        if not isinstance(fields, dict):
            raise _err(f"{pk}.fields", "expected a table of label = field")
        for label, target in fields.items():
            _target(target, f"{pk}.fields.{label}")
        patterns = prof.get("patterns", {})
        if not isinstance(patterns, dict):
            raise _err(f"{pk}.patterns", "expected a table of field = regular expression")
        for target, rx in patterns.items():
            _target(target, f"{pk}.patterns.{target}")
            if _regex(rx, f"{pk}.patterns.{target}").groups < 1:
                raise _err(f"{pk}.patterns.{target}", "the regular expression needs one capturing group (the value)")
        if ext == "regex" and not patterns:
            raise _err(f"{pk}.patterns", "extractor 'regex' needs patterns")
        req = prof.get("required", ["name", "email", "phone"])
        if not isinstance(req, list) or not all(isinstance(r, str) for r in req):
            raise _err(f"{pk}.required", "expected a list of field names")
        for j, r in enumerate(req):
            _target(r, f"{pk}.required[{j}]")
        for sk in ("source", "campaign"):
            if sk in prof and not isinstance(prof[sk], str):
                raise _err(f"{pk}.{sk}", "expected a string")
        if "ignore" in prof and not isinstance(prof["ignore"], bool):
            raise _err(f"{pk}.ignore", "expected true or false")
    return value


def validate_sources(value: Any, key: str) -> Any:
    if not isinstance(value, dict):
        raise _err(key, "expected a table of mail sources ([plugins.capture_email.sources.<name>])")
    for name, src in value.items():
        sk = f"{key}.{name}"
        if not re.fullmatch(r"[a-z][a-z0-9_]*", name):
            raise _err(sk, "source names use lower-case letters, digits and underscores")
        if not isinstance(src, dict):
            raise _err(sk, "expected a table")
        unknown = sorted(set(src) - _SOURCE_KEYS)
        if unknown:
            raise _err(f"{sk}.{unknown[0]}", f"unknown key (valid: {', '.join(sorted(_SOURCE_KEYS))})")
        kind = src.get("kind", "imap")
        if kind != "imap":
            raise _err(f"{sk}.kind", f"expected 'imap' (mbox files and Maildir folders are read by `corecrm mail import`), got {kind!r}")
        for req in ("host", "user"):
            if not isinstance(src.get(req), str) or not src.get(req):
                raise _err(f"{sk}.{req}", "required for an IMAP source")
        pw = src.get("password")
        if pw is not None and not (isinstance(pw, dict) and set(pw) == {"env"}):
            raise _err(f"{sk}.password", 'write the password as { env = "VARIABLE" } (or use password_env): secrets do not belong in the TOML file')
        if "password_env" in src and not isinstance(src["password_env"], str):
            raise _err(f"{sk}.password_env", "expected the name of an environment variable")
        if pw is None and "password_env" not in src:
            raise _err(f"{sk}.password", 'an IMAP source needs password = { env = "VARIABLE" } or password_env')
        for ik in ("port", "batch_size", "timeout"):
            if ik in src and (isinstance(src[ik], bool) or not isinstance(src[ik], int) or src[ik] <= 0):
                raise _err(f"{sk}.{ik}", f"expected a positive integer, got {src[ik]!r}")
        if "poll_interval" in src and (isinstance(src["poll_interval"], bool) or not isinstance(src["poll_interval"], (int, float)) or src["poll_interval"] <= 0):
            raise _err(f"{sk}.poll_interval", "expected a positive number of seconds")
        for bk in ("tls", "starttls", "idle"):
            if bk in src and not isinstance(src[bk], bool):
                raise _err(f"{sk}.{bk}", "expected true or false")
        for fk in ("folder", "processed_folder", "rejected_folder"):
            if fk in src and not isinstance(src[fk], str):
                raise _err(f"{sk}.{fk}", "expected a string")
    return value


def _positive(value: Any, key: str) -> Any:
    if value <= 0:
        raise _err(key, f"expected a positive number, got {value!r}")
    return value


def _addresses(value: Any, key: str) -> Any:
    for i, a in enumerate(value):
        if not isinstance(a, str) or "@" not in a:
            raise _err(f"{key}[{i}]", f"expected an e-mail address, got {a!r}")
    return value


def _regex_list(value: Any, key: str) -> Any:
    for i, rx in enumerate(value):
        _regex(rx, f"{key}[{i}]")
    return value


def declared_settings() -> list[Setting]:
    return [
        Setting("default_source", "str", "email", "lead source for leads from e-mail when no profile sets one"),
        Setting("labels", "dict", {}, "extra body labels: label = lead field (merged over the built-in multilingual map)", validate=validate_labels),
        Setting("profiles", "list", [], "per-sender profiles, tried in order (match_from/match_to/match_subject, extractor, fields, source, campaign, ignore)", validate=validate_profiles),
        Setting("form_mailers", "list", list(DEFAULT_FORM_MAILERS), "regexes of sender addresses that are form mailers (the lead is in Reply-To or the body)", validate=_regex_list),
        Setting("own_addresses", "list", [], "the CRM's own addresses: mail from them is skipped (besides [crm] own_addresses)", validate=_addresses),
        Setting("existing_customers", "str", "lead", "mail from an existing customer: 'lead' (a new lead) or 'attach' (an activity on the customer's lead, no new lead)", choices=("lead", "attach")),
        Setting("max_message_bytes", "int", 25_000_000, "larger messages are quarantined unread", validate=_positive),
        Setting("max_attachment_bytes", "int", 5_000_000, "larger attachments are not read (noted in the capture)", validate=_positive),
        Setting("max_note_chars", "int", 20_000, "a plain e-mail's body kept as the lead's first note is cut here", validate=_positive),
        Setting("sources", "dict", {}, "IMAP sources for `corecrm mail poll`, one table per name", validate=validate_sources),
    ]


@attrs.define(slots=True, eq=False)
class Profile:
    name: str
    match_from: re.Pattern[str] | None = None
    match_to: re.Pattern[str] | None = None
    match_subject: re.Pattern[str] | None = None
    extractor: str = "auto"
    labels: dict[str, str] = attrs.field(factory=dict)
    patterns: dict[str, re.Pattern[str]] = attrs.field(factory=dict)
    required: tuple[str, ...] = ("name", "email", "phone")
    source: str | None = None
    campaign: str | None = None
    ignore: bool = False

    @property
    def has_matcher(self) -> bool:
        return bool(self.match_from or self.match_to or self.match_subject)


@attrs.define(slots=True, eq=False)
class EmailSettings:
    """Settings compiled once per workspace: regexes compiled, label maps merged."""

    default_source: str = "email"
    labels: dict[str, str] = attrs.field(factory=lambda: dict(BUILTIN_LABELS))
    profiles: list[Profile] = attrs.field(factory=list)
    form_mailers: list[re.Pattern[str]] = attrs.field(factory=lambda: [re.compile(p, re.I) for p in DEFAULT_FORM_MAILERS])
    own_addresses: frozenset[str] = frozenset()
    existing_customers: str = "lead"
    max_message_bytes: int = 25_000_000
    max_attachment_bytes: int = 5_000_000
    max_note_chars: int = 20_000

    @property
    def builtin_profile(self) -> Profile:
        """What is used when no configured profile matches: the merged label map, every extractor."""
        prof = Profile(name="builtin", labels=self.labels)
        return prof

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any] | None) -> EmailSettings:
        s = dict(settings or {})
        labels = dict(BUILTIN_LABELS)
        labels.update({norm_label(k): v for k, v in (s.get("labels") or {}).items()})
        profiles = []
        for p in s.get("profiles") or []:
            plabels = dict(labels)
            plabels.update({norm_label(k): v for k, v in (p.get("fields") or {}).items()})
            profiles.append(
                Profile(
                    name=p["name"],
                    match_from=re.compile(p["match_from"], re.I) if p.get("match_from") else None,
                    match_to=re.compile(p["match_to"], re.I) if p.get("match_to") else None,
                    match_subject=re.compile(p["match_subject"], re.I) if p.get("match_subject") else None,
                    extractor=p.get("extractor", "auto"),
                    labels=plabels,
                    patterns={k: re.compile(v, re.I | re.M) for k, v in (p.get("patterns") or {}).items()},
                    required=tuple(p.get("required", ("name", "email", "phone"))),
                    source=p.get("source"),
                    campaign=p.get("campaign"),
                    ignore=bool(p.get("ignore", False)),
                )
            )
        return cls(
            default_source=s.get("default_source") or "email",
            labels=labels,
            profiles=profiles,
            form_mailers=[re.compile(p, re.I) for p in (s.get("form_mailers") or DEFAULT_FORM_MAILERS)],
            own_addresses=frozenset(a.lower() for a in s.get("own_addresses") or ()),
            existing_customers=s.get("existing_customers") or "lead",
            max_message_bytes=int(s.get("max_message_bytes") or 25_000_000),
            max_attachment_bytes=int(s.get("max_attachment_bytes") or 5_000_000),
            max_note_chars=int(s.get("max_note_chars") or 20_000),
        )
