"""Normalisers shared by blocking keys and comparators.

Each turns one raw field value into the comparable form (or ``""`` when there
is nothing to compare); all are pure and cached per distinct value, because a
lead file repeats surnames, domains and companies far more than it repeats
whole records.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

_NON_ALNUM = re.compile(r"[^a-z0-9]+")
_NON_DIGIT = re.compile(r"[^0-9]+")

#: Mailbox providers whose addresses ignore dots and ``+tags`` in the local part (dots: Gmail only).
_DOTLESS = frozenset({"gmail.com", "googlemail.com"})
_PLUS_TAGS = frozenset(
    {"gmail.com", "googlemail.com", "outlook.com", "hotmail.com", "live.com", "icloud.com", "me.com",
     "fastmail.com", "protonmail.com", "proton.me", "yahoo.com"}
)
#: Free mail providers: "same domain" says nothing about being the same person there.
FREE_MAIL = frozenset(
    {"gmail.com", "googlemail.com", "yahoo.com", "yahoo.co.uk", "yahoo.fr", "hotmail.com", "hotmail.co.uk",
     "hotmail.fr", "outlook.com", "live.com", "msn.com", "icloud.com", "me.com", "mac.com", "aol.com",
     "protonmail.com", "proton.me", "gmx.de", "gmx.net", "web.de", "t-online.de", "orange.fr", "free.fr",
     "laposte.net", "libero.it", "mail.ru", "yandex.ru", "qq.com", "163.com", "comcast.net", "verizon.net",
     "att.net", "sbcglobal.net", "btinternet.com", "sky.com", "virginmedia.com", "fastmail.com", "zoho.com"}
)
#: Legal-form words dropped from company names (``Acme Ltd.`` ≡ ``ACME Limited``).
LEGAL_FORMS = frozenset(
    """inc incorporated corp corporation co company llc llp lp ltd limited plc gmbh ag kg sa sas sarl sl
    srl spa bv nv ab as oy pty pte kk the group holding holdings""".split()
)


@lru_cache(maxsize=262144)
def fold(value: str) -> str:
    """Lower case ASCII letters and digits, single spaces: ``"  Zoë  O'Brien "`` → ``"zoe o brien"``."""
    text = unicodedata.normalize("NFKD", value).encode("ascii", "ignore").decode("ascii").lower()
    return _NON_ALNUM.sub(" ", text).strip()


@lru_cache(maxsize=262144)
def email_key(value: str) -> str:
    """The mailbox an address delivers to: lower case; ``+tags`` and Gmail dots dropped for known providers."""
    value = value.strip().lower()
    if "@" not in value:
        return ""
    local, _, domain = value.rpartition("@")
    if domain == "googlemail.com":
        domain = "gmail.com"
    if domain in _PLUS_TAGS:
        local = local.split("+", 1)[0]
    if domain in _DOTLESS:
        local = local.replace(".", "")
    return f"{local}@{domain}" if local and domain else ""


def email_domain(value: str) -> str:
    value = value.strip().lower()
    return value.rpartition("@")[2] if "@" in value else ""


def business_domain(value: str) -> str:
    """The e-mail domain unless it is a free mail provider (``""`` then)."""
    d = email_domain(value)
    return "" if d in FREE_MAIL else d


@lru_cache(maxsize=262144)
def phone_key(value: str) -> str:
    """Digits only, with the ``+`` kept when there is one (verified phones are E.164 already)."""
    digits = _NON_DIGIT.sub("", value)
    if not digits:
        return ""
    return ("+" + digits) if value.strip().startswith("+") else digits


@lru_cache(maxsize=262144)
def company_key(value: str) -> str:
    words = [w for w in fold(value.replace("&", " and ")).split() if w not in LEGAL_FORMS]
    return " ".join(words)


@lru_cache(maxsize=262144)
def metaphone(value: str) -> str:
    """Metaphone of the folded name (all words), e.g. ``Smyth`` and ``Smith`` → ``SM0``."""
    import jellyfish

    f = fold(value).replace(" ", "")
    return jellyfish.metaphone(f) if f else ""


@lru_cache(maxsize=262144)
def postal(value: str) -> str:
    return _NON_ALNUM.sub("", value.lower()).upper()


def initial(value: str) -> str:
    f = fold(value)
    return f[:1]


def digits(value: str) -> str:
    return _NON_DIGIT.sub("", value)
