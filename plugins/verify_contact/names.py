"""Splitting a full name typed into one box, and title-casing names typed in one case.

Only names typed entirely in lower or upper case are re-cased: ``DeAndre`` or
``McKenzie`` as typed are the person's own spelling and are left alone.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import NamedTuple

#: Salutations dropped from the front of a full name.
SALUTATIONS = frozenset("mr mrs ms miss mx dr prof sir madam mme mlle herr frau".split())
#: Surname particles kept in lower case inside a name (``Ludwig van Beethoven``).
PARTICLES = frozenset("van von der den de del della di da du la le dos das ter ten bin ibn al".split())
_WORD = re.compile(r"[^\s\-']+|[\s\-']")


def _cap(word: str) -> str:
    lw = word.lower()
    if lw.startswith("mc") and len(lw) > 2:
        return "Mc" + lw[2].upper() + lw[3:]
    return lw[:1].upper() + lw[1:]


@lru_cache(maxsize=65536)
def title_case(name: str) -> str:
    """``"MARY-JANE O'NEIL"`` → ``"Mary-Jane O'Neil"``; ``"ludwig van beethoven"`` → ``"Ludwig van Beethoven"``."""
    if not (name.islower() or name.isupper()):
        return name
    tokens = _WORD.findall(name)
    words = [n for n, t in enumerate(tokens) if not (t in ("-", "'") or t.isspace())]
    out = list(tokens)
    for n in words:
        tok = tokens[n]
        # A particle stays lower case when a surname follows it ("van Beethoven", "de la Vega").
        out[n] = tok.lower() if tok.lower() in PARTICLES and n != words[-1] else _cap(tok)
    return "".join(out)


class SplitName(NamedTuple):
    first: str | None
    last: str | None
    salutation: str | None


@lru_cache(maxsize=65536)
def split_full_name(full: str) -> SplitName:
    """``"Doe, Jane"`` → (Jane, Doe); ``"Dr. Jane van der Berg"`` → (Jane, van der Berg, Dr)."""
    text = " ".join(full.split())
    if "," in text:
        last, _, first = text.partition(",")
        return SplitName(first.strip() or None, last.strip() or None, None)
    words = text.split(" ")
    salutation = None
    if len(words) > 1 and words[0].rstrip(".").lower() in SALUTATIONS:
        salutation = words[0].rstrip(".")
        words = words[1:]
    if len(words) == 1:
        return SplitName(words[0], None, salutation)
    # The surname starts at the first particle after the first word, else it is the last word.
    start = len(words) - 1
    for i in range(1, len(words) - 1):
        if words[i].lower() in PARTICLES:
            start = i
            break
    return SplitName(" ".join(words[:start]), " ".join(words[start:]), salutation)
