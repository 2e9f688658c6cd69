"""The verification pass over a batch: :class:`FieldUpdate` for every change, :class:`Finding` for every doubt.

Nothing here mutates a lead. Every normalisation is a ``FieldUpdate`` (the
core keeps the value the lead typed in the lead's history) and everything
the plugin is unsure of is a ``Finding`` with a severity, so a typo in a
domain is *flagged with a suggestion*, never silently corrected, unless
``fix_domain_typos`` is on, and then the original is still in the history.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from corecrm.models import Lead
from corecrm.records import FieldUpdate, Finding

from corecrm_plugins.verify_contact import emails, geo, names, phones


class Options:
    """Settings turned into the shapes the hot loop wants (sets, not lists), built once per batch."""

    __slots__ = (
        "aliases", "allow", "disposable", "fix_typos", "fuzzy_cutoff", "phone_region", "roles", "split", "title_case",
    )

    def __init__(self, settings: Mapping[str, Any]) -> None:
        self.phone_region = (settings.get("phone_default_region") or "").upper() or None
        self.fix_typos = bool(settings.get("fix_domain_typos", False))
        self.disposable = frozenset(d.lower() for d in settings.get("disposable_domains", ()))
        self.allow = frozenset(d.lower() for d in settings.get("allow_domains", ()))
        self.roles = frozenset(r.lower() for r in settings.get("role_local_parts", ()))
        self.split = bool(settings.get("split_names", True))
        self.title_case = bool(settings.get("title_case_names", True))
        self.fuzzy_cutoff = float(settings.get("country_fuzzy_cutoff", 90.0))
        self.aliases = {geo.fold(k): v.upper() for k, v in dict(settings.get("country_aliases", {})).items()}


def resolve_country(value: str, opts: Options) -> geo.CountryMatch:
    if opts.aliases:
        key = geo.fold(value)
        if key in opts.aliases:
            return geo.CountryMatch(opts.aliases[key], "alias")
    return geo.normalise_country(value, opts.fuzzy_cutoff)


def verify_batch(leads: Sequence[Lead], settings: Mapping[str, Any]) -> list[FieldUpdate | Finding]:
    opts = Options(settings)
    out: list[FieldUpdate | Finding] = []
    for i, lead in enumerate(leads):
        _verify_names(i, lead, opts, out)
        country = _verify_country(i, lead, opts, out)
        _verify_region(i, lead, country, out)
        _verify_postal(i, lead, country, out)
        _verify_email(i, lead, opts, out)
        _verify_phone(i, lead, country, opts, out)
    return out


def _verify_names(i: int, lead: Lead, opts: Options, out: list) -> None:
    first, last = lead.first_name, lead.last_name
    why = {"first_name": [], "last_name": []}
    # Split only what reads as a name: every word has a letter ("Ada <3" is left alone).
    if opts.split and first and not last and (" " in first.strip() or "," in first) and all(
        any(ch.isalpha() for ch in word) for word in first.replace(",", " ").split()
    ):
        parts = names.split_full_name(first)
        if parts.last:
            first, last = parts.first, parts.last
            why["first_name"].append(f"full name {lead.first_name!r} split into first and last name")
            why["last_name"].append(f"full name {lead.first_name!r} split into first and last name")
            if parts.salutation:
                out.append(Finding(i, "name_salutation", f"salutation {parts.salutation!r} dropped from the name", "info", "first_name", parts.salutation))
    for field, typed, value in (("first_name", lead.first_name, first), ("last_name", lead.last_name, last)):
        if not value:
            continue
        final = value.strip()
        if opts.title_case:
            cased = names.title_case(final)
            if cased != final:
                why[field].append(f"{final!r} was typed in one case; title-cased")
                final = cased
        if final != typed:
            out.append(FieldUpdate(i, field, final, reason="; ".join(why[field]) or "white space trimmed"))


def _verify_country(i: int, lead: Lead, opts: Options, out: list) -> str | None:
    if not lead.country:
        return None
    match = resolve_country(lead.country, opts)
    if match.code is None:
        out.append(Finding(i, "country_unknown", f"country {lead.country!r} is not an ISO 3166 country or a known alias", "warning", "country"))
        return None
    if match.code != lead.country:
        sev = "warning" if match.how == "fuzzy" else "info"
        if match.how == "fuzzy":
            out.append(Finding(i, "country_fuzzy", f"country {lead.country!r} read as {match.code} (closest name)", sev, "country", match.code))
        out.append(FieldUpdate(i, "country", match.code, reason=f"country {lead.country!r} normalised to ISO alpha-2 ({match.how})"))
    return match.code


def _verify_region(i: int, lead: Lead, country: str | None, out: list) -> None:
    if not lead.region:
        return
    code = geo.normalise_region(lead.region, country)
    if code is None:
        where = f" in {country}" if country else " (no country to look it up in)"
        out.append(Finding(i, "region_unknown", f"region {lead.region!r} is not an ISO 3166-2 subdivision{where}", "info", "region"))
    elif code != lead.region:
        out.append(FieldUpdate(i, "region", code, reason=f"region {lead.region!r} normalised to ISO 3166-2"))


def _verify_postal(i: int, lead: Lead, country: str | None, out: list) -> None:
    if not lead.postal_code or not country:
        return
    check = geo.check_postal_code(lead.postal_code, country)
    if check.valid is False:
        out.append(Finding(i, "postal_code_invalid", f"postal code {lead.postal_code!r} does not match the format used in {country}", "warning", "postal_code"))
    elif check.normalized != lead.postal_code:
        out.append(FieldUpdate(i, "postal_code", check.normalized, reason=f"postal code {lead.postal_code!r} upper-cased and spaced"))


def _verify_email(i: int, lead: Lead, opts: Options, out: list) -> None:
    raw = lead.email
    if not raw or not raw.strip():
        return
    check = emails.check_email(raw)
    if check.error is not None:
        out.append(Finding(i, "email_invalid", f"e-mail {raw!r}: {check.error}", "error", "email"))
        return
    assert check.domain is not None and check.local is not None and check.normalized is not None
    value = check.normalized
    suggestion = emails.suggest_domain(check.domain)
    if suggestion is not None:
        fixed = f"{check.local}@{suggestion}"
        out.append(Finding(i, "email_domain_typo", f"e-mail domain {check.domain!r} looks like a typo for {suggestion!r}", "warning", "email", fixed))
        if opts.fix_typos:
            value = fixed
    if value != raw:
        why = f"domain typo corrected to {suggestion!r}" if value != check.normalized else "normalised (white space, domain case)"
        out.append(FieldUpdate(i, "email", value, reason=f"e-mail {raw!r} {why}"))
    if emails.is_disposable(check.domain, opts.disposable, opts.allow):
        out.append(Finding(i, "email_disposable", f"{check.domain} is a disposable mailbox provider", "warning", "email"))
    if emails.is_role(check.local, opts.roles):
        out.append(Finding(i, "email_role", f"{check.local}@ is a role address, not a person", "info", "email"))


def _verify_phone(i: int, lead: Lead, country: str | None, opts: Options, out: list) -> None:
    raw = lead.phone
    if not raw or not raw.strip():
        return
    region = country or opts.phone_region
    check = phones.check_phone(raw, region)
    if check.e164 is None:
        out.append(Finding(i, "phone_invalid", f"phone {raw!r}: {check.error}", "warning", "phone"))
        return
    if check.e164 != raw:
        out.append(FieldUpdate(i, "phone", check.e164, reason=f"phone {raw!r} formatted as E.164" + (f" (read as a {region} number)" if region and not raw.strip().startswith("+") else "")))
    if country and check.region and check.region != country:
        out.append(Finding(i, "phone_country_mismatch", f"phone {check.e164} is a {check.region} number but the lead's country is {country}", "warning", "phone", check.region))
