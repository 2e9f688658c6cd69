"""Matching column headers to lead fields.

In order: an explicit ``--map COL=FIELD`` or saved mapping; the normalised
header equal to a field or a synonym (``E-mail``, ``mail``, ``email address`` →
email; ``surname`` → last_name, in several languages); then fuzzy matching
(rapidfuzz) above a cutoff. What stays unmapped goes to ``attributes`` (named
after the header) or is dropped, as chosen.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Mapping, Sequence

import attrs

from corecrm.errors import CaptureError

#: Lead fields an import column can fill.
FIELDS = ("first_name", "last_name", "full_name", "email", "phone", "company", "title", "country", "region", "city",
          "postal_code", "source", "campaign", "language", "timezone", "interests", "note")  # fmt: skip

SYNONYMS: dict[str, tuple[str, ...]] = {
    "first_name": ("first", "firstname", "given name", "givenname", "forename", "prenom", "prénom", "vorname", "nombre", "nome", "voornaam"),
    "last_name": ("last", "lastname", "surname", "family name", "familyname", "nom", "nom de famille", "nachname", "apellido", "apellidos", "cognome", "achternaam"),
    "full_name": ("name", "full name", "fullname", "contact", "contact name", "nom complet", "naam"),
    "email": ("e-mail", "e mail", "mail", "email address", "e-mail address", "emailaddress", "courriel", "correo", "correo electronico", "e-mail-adresse", "posta elettronica"),
    "phone": ("telephone", "tel", "tel.", "phone number", "mobile", "cell", "cellphone", "telefon", "téléphone", "telefono", "telefoon", "handy"),
    "company": ("organisation", "organization", "company name", "firm", "business", "account", "société", "societe", "entreprise", "firma", "unternehmen", "empresa", "azienda", "bedrijf"),
    "title": ("job title", "jobtitle", "position", "role", "poste", "fonction", "funktion", "cargo", "ruolo"),
    "country": ("country code", "nation", "pays", "land", "país", "pais", "paese"),
    "region": ("state", "province", "county", "state/province", "région", "bundesland", "provincia", "regione"),
    "city": ("town", "locality", "ville", "stadt", "ort", "ciudad", "città", "citta", "plaats"),
    "postal_code": ("zip", "zip code", "zipcode", "postcode", "post code", "postal", "code postal", "plz", "postleitzahl", "código postal", "codigo postal", "cap"),
    "source": ("lead source", "leadsource", "origin", "channel", "quelle", "fuente"),
    "campaign": ("utm campaign", "utm_campaign", "campaign name", "kampagne", "campagne", "campaña"),
    "language": ("lang", "locale", "langue", "sprache", "idioma"),
    "interests": ("interest", "interested in", "tags", "products", "product interest"),
    "note": ("notes", "comment", "comments", "message", "remarks", "bemerkung", "notiz", "commentaire", "nota", "opmerking"),
}


def normalise(header: str) -> str:
    text = unicodedata.normalize("NFKC", header).strip().lower()
    text = re.sub(r"[_\-./]+", " ", text)
    return re.sub(r"\s+", " ", text).strip()


_LOOKUP: dict[str, str] = {}
for _field, _names in SYNONYMS.items():
    _LOOKUP[normalise(_field)] = _field
    for _n in _names:
        _LOOKUP[normalise(_n)] = _field
for _field in FIELDS:
    _LOOKUP.setdefault(normalise(_field), _field)


@attrs.define(slots=True)
class ColumnMap:
    """How each column of a file is used: ``target`` is a field, ``attributes.<key>`` or None (dropped)."""

    header: str
    index: int
    target: str | None
    how: str  #: explicit | exact | synonym | fuzzy | attribute | dropped | duplicate
    score: float | None = None


def unique_headers(header: Sequence[str]) -> list[str]:
    """Empty headers become ``column_N``; a repeated header gets ``_2``, ``_3``…"""
    out: list[str] = []
    seen: dict[str, int] = {}
    for i, h in enumerate(header):
        name = h.strip() or f"column_{i + 1}"
        if name.lower() in seen:
            seen[name.lower()] += 1
            name = f"{name}_{seen[name.lower()]}"
        else:
            seen[name.lower()] = 1
        out.append(name)
    return out


def _attribute_key(header: str) -> str:
    key = re.sub(r"[^0-9a-z]+", "_", normalise(header)).strip("_")
    return key or "column"


def map_columns(
    header: Sequence[str],
    *,
    explicit: Mapping[str, str] | None = None,
    extra_synonyms: Mapping[str, Sequence[str]] | None = None,
    unmapped: str = "attributes",
    cutoff: float = 86.0,
) -> list[ColumnMap]:
    """Decide where every column goes. A field is filled by one column only (the first match)."""
    explicit = dict(explicit or {})
    names = unique_headers(header)
    norm_explicit = {normalise(k): v for k, v in explicit.items()}
    for col, target in explicit.items():
        if target != "-" and target not in FIELDS and not target.startswith("attributes."):
            raise CaptureError(f"--map {col}={target}: unknown field {target!r} (fields: {', '.join(FIELDS)}, attributes.<key>, or - to drop)")
        if normalise(col) not in {normalise(n) for n in names}:
            raise CaptureError(f"--map {col}={target}: the file has no column {col!r} (columns: {', '.join(names)})")
    lookup = dict(_LOOKUP)
    for field, syns in (extra_synonyms or {}).items():
        for s in syns:
            lookup[normalise(s)] = field
    taken: set[str] = set()
    out: list[ColumnMap] = []
    for i, name in enumerate(names):
        n = normalise(name)
        if n in norm_explicit:
            target = norm_explicit[n]
            if target == "-":
                out.append(ColumnMap(name, i, None, "dropped"))
            else:
                out.append(ColumnMap(name, i, target, "explicit"))
                taken.add(target)
            continue
        out.append(ColumnMap(name, i, None, "pending"))
    for cm in out:
        if cm.how != "pending":
            continue
        n = normalise(cm.header)
        field = lookup.get(n)
        if field and field not in taken:
            cm.target, cm.how = field, "exact" if n == normalise(field) else "synonym"
            taken.add(field)
    pending = [cm for cm in out if cm.how == "pending"]
    if pending:
        from rapidfuzz import fuzz, process, utils

        choices = [k for k, f in lookup.items() if f not in taken]
        for cm in pending:
            if not choices:
                break
            hit = process.extractOne(normalise(cm.header), choices, scorer=fuzz.ratio, processor=utils.default_process, score_cutoff=cutoff)
            if hit is not None and lookup[hit[0]] not in taken:
                cm.target, cm.how, cm.score = lookup[hit[0]], "fuzzy", round(hit[1], 1)
                taken.add(cm.target)
                choices = [k for k in choices if lookup[k] not in taken]
    for cm in out:
        if cm.how == "pending":
            if unmapped == "drop":
                cm.how = "dropped"
            else:
                cm.target, cm.how = f"attributes.{_attribute_key(cm.header)}", "attribute"
    return out
