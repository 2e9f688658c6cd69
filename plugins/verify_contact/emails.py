"""E-mail syntax, normalisation, disposable/role detection and domain typos.

email-validator costs ~70 µs a call. Most addresses in a lead file have one
plain shape (``local@label.label.tld`` in ASCII), for which the library's
answer is known in advance: the address is valid and its normal form is the
local part unchanged plus the domain in lower case. :func:`check_email`
answers those with one regular expression and hands everything else (IDN,
quoted local parts, special-use domains, odd lengths) to the library, so the
answer is always the library's. ``tests/verify_contact`` checks the two paths
agree on generated addresses.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import NamedTuple

from rapidfuzz.distance import DamerauLevenshtein

#: Characters email-validator accepts unquoted in a local part (RFC 5322 atext), ASCII only.
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_FAST = re.compile(
    rf"(?P<local>{_ATEXT}+(?:\.{_ATEXT}+)*)@(?P<domain>(?:{_LABEL}\.)+[A-Za-z]{{2,63}})"
)


class EmailCheck(NamedTuple):
    """The outcome of checking one address: ``normalized`` or ``error`` is set."""

    normalized: str | None
    error: str | None
    domain: str | None
    local: str | None


def _special_use() -> frozenset[str]:
    from email_validator import SPECIAL_USE_DOMAIN_NAMES

    names = frozenset(SPECIAL_USE_DOMAIN_NAMES)
    if any("." in n for n in names):  # a future version with dotted names: keep the fast path exact
        raise RuntimeError("email-validator special-use names are no longer single labels")
    return names


_SPECIAL: frozenset[str] | None = None


def fast_check(value: str) -> EmailCheck | None:
    """The library's answer for the plain common shape, or ``None`` when only the library can tell."""
    global _SPECIAL
    m = _FAST.fullmatch(value)
    if m is None:
        return None
    local, domain = m.group("local"), m.group("domain").lower()
    if len(local) > 64 or len(domain) > 253 or len(value) > 254 or "--" in domain:
        return None  # length limits and IDNA ("xn--") labels: let the library decide
    if _SPECIAL is None:
        _SPECIAL = _special_use()
    # Every special-use name email-validator refuses is a single label (test, local, onion…),
    # and the shape above always has a dot: the last label decides.
    if domain.rsplit(".", 1)[1] in _SPECIAL:
        return None
    return EmailCheck(f"{local}@{domain}", None, domain, local)


def library_check(value: str) -> EmailCheck:
    """email-validator, offline (no DNS)."""
    from email_validator import EmailNotValidError, validate_email

    try:
        r = validate_email(value, check_deliverability=False)
    except EmailNotValidError as exc:
        return EmailCheck(None, str(exc), None, None)
    return EmailCheck(r.normalized, None, r.domain, r.local_part)


@lru_cache(maxsize=65536)
def check_email(value: str) -> EmailCheck:
    """Check an address as typed (surrounding white space is ignored); cached per distinct value."""
    value = value.strip()
    return fast_check(value) or library_check(value)


# --------------------------------------------------------------------------- disposable / role / typos

#: Local parts that name a function rather than a person (RFC 2142 and common practice).
ROLE_LOCAL_PARTS: frozenset[str] = frozenset(
    """abuse admin administrator billing contact enquiries enquiry hello help hostmaster info inquiries
    inquiry jobs list mail mailer-daemon marketing media news newsletter no-reply noc noreply office
    postmaster press privacy recruitment root sales security support team webmaster www""".split()
)

#: Popular mailbox providers a typo is most likely aimed at.
POPULAR_DOMAINS: tuple[str, ...] = (
    "gmail.com", "googlemail.com", "yahoo.com", "yahoo.co.uk", "yahoo.fr", "hotmail.com", "hotmail.co.uk",
    "hotmail.fr", "outlook.com", "live.com", "msn.com", "icloud.com", "me.com", "mac.com", "aol.com",
    "protonmail.com", "proton.me", "gmx.de", "gmx.net", "web.de", "t-online.de", "orange.fr", "free.fr",
    "laposte.net", "libero.it", "mail.ru", "yandex.ru", "qq.com", "163.com", "comcast.net",
    "verizon.net", "att.net", "sbcglobal.net", "btinternet.com", "sky.com", "virginmedia.com",
)
_POPULAR = frozenset(POPULAR_DOMAINS)

#: Known misspellings seen in sign-up forms, mapped to what was meant (checked before the distance rule).
KNOWN_TYPOS: dict[str, str] = {
    "gmial.com": "gmail.com", "gmai.com": "gmail.com", "gamil.com": "gmail.com", "gnail.com": "gmail.com",
    "gmail.co": "gmail.com", "gmail.con": "gmail.com", "gmail.cm": "gmail.com", "gmaill.com": "gmail.com",
    "gmaiil.com": "gmail.com", "gmal.com": "gmail.com", "gmail.om": "gmail.com", "gmail.cmo": "gmail.com",
    "yahooo.com": "yahoo.com", "yaho.com": "yahoo.com", "yahoo.co": "yahoo.com", "yhoo.com": "yahoo.com",
    "hotmial.com": "hotmail.com", "hotmai.com": "hotmail.com", "hotmal.com": "hotmail.com",
    "hotmail.co": "hotmail.com", "homail.com": "hotmail.com", "hotmil.com": "hotmail.com",
    "outlok.com": "outlook.com", "outllook.com": "outlook.com", "outlook.co": "outlook.com",
    "iclod.com": "icloud.com", "icloud.co": "icloud.com", "icoud.com": "icloud.com",
}
#: Common top-level-domain slips (``.con`` for ``.com``), applied to any domain.
TLD_TYPOS: dict[str, str] = {"con": "com", "cmo": "com", "ocm": "com", "comm": "com", "om": "com", "cm": "com", "nte": "net", "ogr": "org"}


@lru_cache(maxsize=65536)
def suggest_domain(domain: str) -> str | None:
    """The domain the person probably meant, or ``None`` if it looks intended."""
    domain = domain.lower()
    if domain in _POPULAR:
        return None
    if domain in KNOWN_TYPOS:
        return KNOWN_TYPOS[domain]
    best, best_d = None, 3
    for cand in POPULAR_DOMAINS:
        if abs(len(cand) - len(domain)) > 1:
            continue
        d = DamerauLevenshtein.distance(domain, cand, score_cutoff=1)
        if d <= 1 and d < best_d:
            best, best_d = cand, d
    if best is not None:
        return best
    head, _, tld = domain.rpartition(".")
    if head and tld in TLD_TYPOS:
        return f"{head}.{TLD_TYPOS[tld]}"
    return None


@lru_cache(maxsize=1)
def bundled_disposable_domains() -> frozenset[str]:
    """The disposable-email-domains list (MIT), shipped in its wheel: no network."""
    from disposable_email_domains import blocklist

    return frozenset(blocklist)


@lru_cache(maxsize=65536)
def is_disposable(domain: str, extra: frozenset[str] = frozenset(), allow: frozenset[str] = frozenset()) -> bool:
    """True for a throw-away mailbox domain (or a parent of it), unless allow-listed."""
    domain = domain.lower()
    if domain in allow:
        return False
    listed = bundled_disposable_domains()
    parts = domain.split(".")
    for i in range(len(parts) - 1):
        suffix = ".".join(parts[i:])
        if suffix in allow:
            return False
        if suffix in listed or suffix in extra:
            return True
    return False


def is_role(local: str, extra: frozenset[str] = frozenset()) -> bool:
    base = local.lower().split("+", 1)[0]
    return base in ROLE_LOCAL_PARTS or base in extra
