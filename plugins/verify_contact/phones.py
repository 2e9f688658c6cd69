"""Phone numbers to E.164 with the lead's country as the default region (phonenumbers).

The library costs ~100 µs for parse + validity + format. Two things make the
batch path cheaper while giving the library's answers:

* **Canonical text.** A number typed with digits and the usual separators
  (spaces, dashes, dots, brackets, slashes) and at most a leading ``+`` is
  read by the library from its digits alone, so it is reduced to ``+digits``
  / ``digits`` first: ``020 7946 0958`` and ``020-7946-0958`` share one cache
  entry, and the library's Unicode digit normalisation has less to do.
* **Validity from compiled metadata.** ``is_valid_number`` walks up to ten
  number-type patterns per candidate region (25 regions share +1), one
  regex call each. Here each region's type patterns are compiled once into
  a single alternation per number length, which is true exactly when one of
  the library's type patterns matches (its ``_number_type_helper`` is not
  ``UNKNOWN``). Non-geographic numbers (+800…) go to the library.

``tests/verify_contact`` compares this path with the plain library calls on
every example number phonenumbers ships and on generated input.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any, NamedTuple

_SIMPLE = re.compile(r"\+?\(?[0-9][0-9 ().\-/]*")
_NON_DIGIT = re.compile(r"[^0-9]")

#: The number-type descriptions ``_number_type_helper`` consults after the general one.
_TYPE_DESCS = (
    "premium_rate", "toll_free", "shared_cost", "voip", "personal_number", "pager", "uan", "voicemail",
    "fixed_line", "mobile",
)


class PhoneCheck(NamedTuple):
    """``e164`` is set for a valid number; ``error`` says why not otherwise."""

    e164: str | None
    error: str | None
    region: str | None  #: the country the number belongs to (``GB``), when known


def canonical(value: str) -> str:
    """``"+44 (20) 7946-0958"`` → ``"+442079460958"``; other shapes are returned stripped, as typed."""
    text = value.strip()
    if _SIMPLE.fullmatch(text):
        digits = _NON_DIGIT.sub("", text)
        if len(digits) >= 3:  # fewer digits: the separators decide whether the library sees a number at all
            return ("+" + digits) if text.startswith("+") else digits
    return text


def check_phone(value: str, default_region: str | None) -> PhoneCheck:
    return _check(canonical(value), default_region or None)


@lru_cache(maxsize=131072)
def _check(text: str, region: str | None) -> PhoneCheck:
    import phonenumbers as pn

    try:
        num = pn.parse(text, region)
    except pn.NumberParseException as exc:
        return PhoneCheck(None, _parse_error(exc), None)
    valid, number_region = validity(num)
    if not valid:
        if not pn.is_possible_number(num):
            return PhoneCheck(None, "not a possible number (wrong length)", number_region)
        return PhoneCheck(None, "not a valid number for its country", number_region)
    return PhoneCheck(pn.format_number(num, pn.PhoneNumberFormat.E164), None, number_region)


def library_check(value: str, default_region: str | None) -> PhoneCheck:
    """The same answer from the library's public calls only (the reference the fast path is tested against)."""
    import phonenumbers as pn

    try:
        num = pn.parse(value.strip(), default_region or None)
    except pn.NumberParseException as exc:
        return PhoneCheck(None, _parse_error(exc), None)
    region = pn.region_code_for_number(num)
    if not pn.is_valid_number(num):
        if not pn.is_possible_number(num):
            return PhoneCheck(None, "not a possible number (wrong length)", region)
        return PhoneCheck(None, "not a valid number for its country", region)
    return PhoneCheck(pn.format_number(num, pn.PhoneNumberFormat.E164), None, region)


def _parse_error(exc: Exception) -> str:
    msg = str(exc).split(") ", 1)[-1]
    if "Missing or invalid default region" in msg:
        return "no country code and no country on the lead to read it with"
    return msg.rstrip(".").lower() or "cannot be read as a phone number"


# --------------------------------------------------------------------------- compiled validity


class _Region:
    __slots__ = ("general", "general_lengths", "leading", "by_length", "types")

    def __init__(self, md: Any) -> None:
        g = md.general_desc
        pat = g.national_number_pattern if g is not None else None
        self.general = re.compile(pat) if pat else None
        self.general_lengths = frozenset(g.possible_length) if g is not None else frozenset()
        self.leading = re.compile(md.leading_digits) if md.leading_digits else None
        types = []
        for name in _TYPE_DESCS:
            d = getattr(md, name, None)
            if d is None or not d.national_number_pattern:
                continue
            types.append((frozenset(d.possible_length), d.national_number_pattern))
        self.types = types
        self.by_length: dict[int, re.Pattern[str] | None] = {}

    def known_type(self, nsn: str) -> bool:
        """``_number_type_helper(nsn, metadata) != UNKNOWN``, in one or two regex calls."""
        n = len(nsn)
        if self.general is None or (self.general_lengths and n not in self.general_lengths):
            return False
        if self.general.fullmatch(nsn) is None:
            return False
        combined = self.by_length.get(n, False)
        if combined is False:
            pats = [p for lengths, p in self.types if not lengths or n in lengths]
            combined = re.compile("|".join(f"(?:{p})" for p in pats)) if pats else None
            self.by_length[n] = combined
        return combined is not None and combined.fullmatch(nsn) is not None


@lru_cache(maxsize=512)
def _region(code: str) -> _Region | None:
    from phonenumbers.phonemetadata import PhoneMetadata

    md = PhoneMetadata.metadata_for_region(code, None)
    return _Region(md) if md is not None else None


def validity(num: Any) -> tuple[bool, str | None]:
    """``(is_valid_number(num), region_code_for_number(num))`` as the library computes them."""
    import phonenumbers as pn
    from phonenumbers.phonenumberutil import COUNTRY_CODE_TO_REGION_CODE

    regions = COUNTRY_CODE_TO_REGION_CODE.get(num.country_code)
    if regions is None:
        return False, None
    if "001" in regions:  # non-geographic entities: the library's own path
        return pn.is_valid_number(num), pn.region_code_for_number(num)
    nsn = pn.national_significant_number(num)
    if len(regions) == 1:
        code = regions[0]
        reg = _region(code)
        return (reg is not None and reg.known_type(nsn)), code
    for code in regions:
        reg = _region(code.upper())
        if reg is None:
            continue
        if reg.leading is not None:
            if reg.leading.match(nsn):
                return reg.known_type(nsn), code
        elif reg.known_type(nsn):
            return True, code
    return False, None


@lru_cache(maxsize=4096)
def region_of_e164(e164: str) -> str | None:
    """The ISO country a stored E.164 number belongs to (``+1 416…`` → ``CA``)."""
    import phonenumbers as pn

    try:
        return validity(pn.parse(e164, None))[1]
    except pn.NumberParseException:
        return None
