"""Normalising geography: countries, ISO 3166-2 subdivisions and postal codes.

Countries resolve through a small alias table first (the names people type
that ISO does not list: "UK", "England", "Great Britain"), then pycountry's
lookup (alpha-2, alpha-3, numeric, name, official name). Results are cached:
a batch of leads from a handful of countries costs a handful of lookups.

Subdivisions know their ancestors (``GB-KHL`` → ``GB-ENG``; ``FR-75C`` →
``FR-IDF``) so a rule naming a parent matches leads in its children.
"""

from __future__ import annotations

import functools
import re

#: Free-text names that pycountry does not resolve (or resolves ambiguously), mapped to alpha-2.
COUNTRY_ALIASES: dict[str, str] = {
    "uk": "GB",
    "u.k.": "GB",
    "great britain": "GB",
    "britain": "GB",
    "england": "GB",
    "scotland": "GB",
    "wales": "GB",
    "northern ireland": "GB",
    "united kingdom": "GB",
    "usa": "US",
    "u.s.": "US",
    "u.s.a.": "US",
    "america": "US",
    "united states": "US",
    "united states of america": "US",
    "holland": "NL",
    "the netherlands": "NL",
    "deutschland": "DE",
    "allemagne": "DE",
    "españa": "ES",
    "espana": "ES",
    "italia": "IT",
    "schweiz": "CH",
    "suisse": "CH",
    "svizzera": "CH",
    "österreich": "AT",
    "osterreich": "AT",
    "polska": "PL",
    "brasil": "BR",
    "south korea": "KR",
    "korea": "KR",
    "russia": "RU",
    "czech republic": "CZ",
    "czechia": "CZ",
    "ivory coast": "CI",
    "vietnam": "VN",
    "turkey": "TR",
    "uae": "AE",
}

#: Subdivisions implied by a country alias ("England" is GB *and* GB-ENG).
ALIAS_REGIONS: dict[str, str] = {
    "england": "GB-ENG",
    "scotland": "GB-SCT",
    "wales": "GB-WLS",
    "northern ireland": "GB-NIR",
}


def _key(text: str) -> str:
    return " ".join(text.strip().lower().split())


@functools.lru_cache(maxsize=4096)
def country_code(value: str | None, extra_aliases: tuple[tuple[str, str], ...] = ()) -> str | None:
    """ISO 3166-1 alpha-2 for a code or a name, or ``None`` when it is not a country."""
    if value is None:
        return None
    key = _key(str(value))
    if not key:
        return None
    for alias, code in extra_aliases:
        if alias == key:
            return code
    if key in COUNTRY_ALIASES:
        return COUNTRY_ALIASES[key]
    import pycountry

    if len(key) == 2 and key.isalpha():
        c = pycountry.countries.get(alpha_2=key.upper())
        return c.alpha_2 if c else None
    try:
        return pycountry.countries.lookup(key).alpha_2
    except LookupError:
        return None


@functools.lru_cache(maxsize=1)
def _subdivisions() -> tuple[tuple[str, str, str | None], ...]:
    """``(code, name, parent code)`` for every ISO 3166-2 subdivision.

    Read straight from pycountry's bundled JSON: building pycountry's 5,000
    subdivision objects and indexes costs a few hundred milliseconds, which
    every command that validates region rules would otherwise pay at start-up.
    """
    import json
    import os

    import pycountry

    path = os.path.join(getattr(pycountry, "DATABASE_DIR", ""), "iso3166-2.json")
    try:
        with open(path, encoding="utf-8") as fh:
            raw = json.load(fh)["3166-2"]
    except (OSError, KeyError, ValueError):  # a pycountry with another layout: use its API
        return tuple((s.code, s.name, s.parent_code) for s in pycountry.subdivisions)
    out = []
    for item in raw:
        code = item["code"]
        parent = item.get("parent")
        if parent and "-" not in parent:
            parent = f"{code.split('-', 1)[0]}-{parent}"
        out.append((code, item["name"], parent))
    return tuple(out)


@functools.lru_cache(maxsize=1)
def _subdivision_parents() -> dict[str, str | None]:
    return {code: parent for code, _name, parent in _subdivisions()}


@functools.lru_cache(maxsize=512)
def _subdivision_names(country: str) -> dict[str, str]:
    out: dict[str, str] = {}
    prefix = f"{country}-"
    for code, name, _parent in _subdivisions():
        if code.startswith(prefix):
            out[_key(name)] = code
            out[code.split("-", 1)[1].lower()] = code
    return out


def is_subdivision(code: str) -> bool:
    return code.upper() in _subdivision_parents()


@functools.lru_cache(maxsize=8192)
def region_code(value: str | None, country: str | None = None) -> str | None:
    """ISO 3166-2 code for ``GB-KHL``, ``KHL`` (with the country) or a name ("Bayern" needs the country)."""
    if not value:
        return None
    text = str(value).strip()
    up = text.upper()
    parents = _subdivision_parents()
    if up in parents:
        return up
    if country:
        if f"{country}-{up}" in parents:
            return f"{country}-{up}"
        hit = _subdivision_names(country).get(_key(text))
        if hit:
            return hit
    alias = ALIAS_REGIONS.get(_key(text))
    return alias


@functools.lru_cache(maxsize=8192)
def region_ancestors(code: str) -> frozenset[str]:
    """The code itself and every parent up the ISO 3166-2 hierarchy."""
    parents = _subdivision_parents()
    out = []
    seen = set()
    cur: str | None = code
    while cur and cur not in seen:
        seen.add(cur)
        out.append(cur)
        cur = parents.get(cur)
    return frozenset(out)


_POSTAL_JUNK = re.compile(r"[\s\-]")


def postal_key(value: str | None) -> str | None:
    """Upper case without spaces or dashes: ``sw1a 1aa`` → ``SW1A1AA``."""
    if value is None:
        return None
    key = _POSTAL_JUNK.sub("", str(value)).upper()
    return key or None


def country_from_alias_region(value: str | None) -> str | None:
    """``England`` as a country also says the region is ``GB-ENG``."""
    if not value:
        return None
    return ALIAS_REGIONS.get(_key(str(value)))
