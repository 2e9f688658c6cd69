"""Phone numbers to E.164 with the lead's country as the default region (phonenumbers).

A parse + validity check + format costs ~100 µs. Lead files repeat numbers
(switchboards, re-submissions) and the answer depends only on the text and the
default region, so answers are cached per distinct ``(text, region)``.
Blank values never reach the library.
"""

from __future__ import annotations

from functools import lru_cache
from typing import NamedTuple


class PhoneCheck(NamedTuple):
    """``e164`` is set for a valid number; ``error`` says why not otherwise."""

    e164: str | None
    error: str | None
    region: str | None  #: the country the number belongs to (``GB``), when known


@lru_cache(maxsize=131072)
def check_phone(value: str, default_region: str | None) -> PhoneCheck:
    import phonenumbers as pn

    text = value.strip()
    try:
        num = pn.parse(text, default_region or None)
    except pn.NumberParseException as exc:
        return PhoneCheck(None, _parse_error(exc, default_region), None)
    region = pn.region_code_for_number(num)
    if not pn.is_valid_number(num):
        if not pn.is_possible_number(num):
            return PhoneCheck(None, "not a possible number (wrong length)", region)
        return PhoneCheck(None, "not a valid number for its country", region)
    return PhoneCheck(pn.format_number(num, pn.PhoneNumberFormat.E164), None, region)


def _parse_error(exc: Exception, region: str | None) -> str:
    msg = str(exc).split(") ", 1)[-1]
    if "Missing or invalid default region" in msg:
        return "no country code and no country on the lead to read it with"
    return msg.rstrip(".").lower() or "cannot be read as a phone number"


@lru_cache(maxsize=4096)
def region_of_e164(e164: str) -> str | None:
    """The ISO country a stored E.164 number belongs to (``+1 416…`` → ``CA``)."""
    import phonenumbers as pn

    try:
        return pn.region_code_for_number(pn.parse(e164, None))
    except pn.NumberParseException:
        return None
