"""From ``Label: value`` text and label/value pairs to lead fields.

Web-form mailers write ``Name: Jane Doe`` / ``E-mail: …`` lines (or the same
as an HTML table), in the site's language. A label is normalised (case,
accents kept, punctuation and spacing folded) and looked up in a label map:
the built-in one below, in several languages, overlaid by the admin's
``labels`` setting and by a profile's own ``fields``. Labels nobody knows are
kept under ``attributes["form"]`` so nothing the sender wrote is lost.
"""

from __future__ import annotations

import re
from typing import Any, Iterable, Mapping

from corecrm.models import CONTACT_FIELDS

#: Lead fields (and pseudo-fields) a label may map to.
TARGETS: frozenset[str] = frozenset(
    {
        "name",
        *CONTACT_FIELDS,
        "street",
        "interest",
        "note",
        "source",
        "campaign",
        "website",
        "subject",
        "from",
        "ignore",
    }
)

_BUILTIN: dict[str, tuple[str, ...]] = {
    "name": (
        "name", "full name", "fullname", "your name", "contact name", "contact", "customer name", "client name",
        "nom", "nom complet", "votre nom", "ihr name", "vor und nachname", "vor- und nachname", "nombre",
        "nombre completo", "tu nombre", "su nombre", "nome", "nome completo", "naam", "navn", "namn", "imię i nazwisko",
    ),
    "first_name": ("first name", "firstname", "given name", "forename", "vorname", "prénom", "prenom", "nombre de pila", "voornaam", "fornavn", "förnamn"),
    "last_name": (
        "last name", "lastname", "surname", "family name", "nachname", "familienname", "nom de famille",
        "apellido", "apellidos", "cognome", "achternaam", "efternavn", "efternamn",
    ),
    "email": (
        "email", "e-mail", "e mail", "mail", "email address", "e-mail address", "your email", "your e-mail",
        "e-mail-adresse", "e-mail adresse", "emailadresse", "adresse e-mail", "adresse email", "courriel", "adresse électronique",
        "correo", "correo electrónico", "correo electronico", "email de contacto", "posta elettronica", "indirizzo email",
        "e-mailadres", "reply to", "reply-to",
    ),
    "phone": (
        "phone", "telephone", "tel", "tel.", "phone number", "telephone number", "mobile", "mobile phone", "cell", "cell phone",
        "cellphone", "your phone", "telefon", "telefonnummer", "rufnummer", "handy", "mobil", "mobilnummer", "téléphone",
        "telephone portable", "portable", "numéro de téléphone", "teléfono", "telefono", "móvil", "movil", "celular",
        "cellulare", "telefoon", "telefoonnummer", "mobiel", "telefone", "telemóvel", "telemovel",
    ),
    "company": (
        "company", "company name", "organisation", "organization", "business", "business name", "firm", "firma",
        "unternehmen", "société", "societe", "entreprise", "empresa", "azienda", "ditta", "bedrijf", "bedrijfsnaam",
    ),
    "title": ("job title", "title", "position", "role", "job", "poste", "fonction", "cargo", "puesto", "berufsbezeichnung", "funktion", "ruolo", "functie"),
    "country": ("country", "land", "pays", "país", "pais", "paese", "nazione", "staat"),
    "region": ("state", "region", "province", "county", "state/province", "bundesland", "région", "provincia", "estado", "regione"),
    "city": ("city", "town", "stadt", "ort", "wohnort", "ville", "ciudad", "città", "citta", "plaats", "woonplaats"),
    "postal_code": (
        "zip", "zip code", "zipcode", "postal code", "postcode", "post code", "plz", "postleitzahl", "code postal",
        "código postal", "codigo postal", "cap", "postcode", "cp",
    ),
    "street": ("address", "street", "street address", "adresse", "anschrift", "straße", "strasse", "rue", "dirección", "direccion", "indirizzo", "adres"),
    "interest": (
        "interested in", "interest", "interests", "product", "products", "service", "services", "i am interested in",
        "interessiert an", "interesse", "intéressé par", "interesse pour", "produit", "interesado en", "producto",
        "interessato a", "prodotto", "vehicle", "model",
    ),
    "note": (
        "message", "message body", "your message", "comments", "comment", "enquiry", "inquiry", "question", "questions",
        "details", "request", "nachricht", "ihre nachricht", "mitteilung", "kommentar", "anfrage", "commentaires",
        "commentaire", "votre message", "demande", "mensaje", "comentarios", "consulta", "messaggio", "commenti",
        "richiesta", "bericht", "opmerkingen", "vraag",
    ),
    "subject": ("subject", "betreff", "objet", "asunto", "oggetto", "onderwerp"),
    "website": ("website", "web site", "url", "site", "site web", "webseite", "homepage", "sitio web", "sito web"),
    "from": ("from", "von", "de", "da", "van"),
    "source": ("lead source", "source", "quelle"),
    "ignore": ("content-type", "content-transfer-encoding", "content-disposition", "mime-version", "message-id", "x-mailer"),
    "campaign": ("campaign", "utm campaign", "utm_campaign", "kampagne", "campagne", "campaña"),
}

_PUNCT = re.compile(r"[\s_*•·\-–—.:;#\"'\[\](){}]+")


def norm_label(label: str) -> str:
    """Case-folded label with punctuation and runs of spaces folded to one space."""
    return _PUNCT.sub(" ", label.casefold()).strip()


BUILTIN_LABELS: dict[str, str] = {norm_label(label): target for target, labels in _BUILTIN.items() for label in labels}

_KV_LINE = re.compile(r"^[ \t>*•\-]*(?P<label>[^\W\d_][^:\n]{0,59}?)[ \t]*[:：](?P<space>[ \t]*)(?P<value>.*)$")
_EMAIL = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+")
_SIGNATURE = re.compile(r"^(--\s*|__+|—+)$")
_HONORIFICS = frozenset(
    {"mr", "mrs", "ms", "miss", "mx", "dr", "prof", "sir", "madam", "m", "mme", "mlle", "herr", "frau", "sr", "sra", "srta", "sig", "sig.ra", "dhr", "mevr"}
)


def find_email(text: str) -> str | None:
    """The first e-mail address in a piece of text, if any."""
    m = _EMAIL.search(text or "")
    return m.group(0) if m else None


def key_values(text: str, known: Mapping[str, str]) -> list[tuple[str, str]]:
    """``(label, value)`` pairs from ``Label: value`` lines.

    A known label with nothing after the colon (``Message Body:``) takes the
    following lines as its value, up to the next known label, a blank line
    after some text for short fields, or a signature separator. Unknown labels
    count only when they look like a form label (up to six words, and the
    value is on the same line), so prose with a colon in it stays prose.
    """
    pairs: list[tuple[str, str]] = []
    lines = (text or "").splitlines()
    i = 0
    n = len(lines)
    while i < n:
        m = _KV_LINE.match(lines[i])
        if not m:
            i += 1
            continue
        label, value = m.group("label").strip(), m.group("value").strip()
        norm = norm_label(label)
        if value.startswith("//") or not norm:
            i += 1
            continue
        target = known.get(norm)
        if target is None and (len(norm.split()) > 6 or not value or not m.group("space")):
            i += 1
            continue
        i += 1
        if not value and target is not None:
            block: list[str] = []
            while i < n:
                line = lines[i]
                if _SIGNATURE.match(line.strip()):
                    break
                nxt = _KV_LINE.match(line)
                if nxt and known.get(norm_label(nxt.group("label"))) is not None and nxt.group("value").strip():
                    break
                if not line.strip() and block and target != "note":
                    break
                block.append(line.rstrip())
                i += 1
            value = "\n".join(block).strip()
        if value:
            pairs.append((label, value))
    return pairs


def split_name(full: str) -> tuple[str | None, str | None]:
    """``(first, last)`` from a display or form name, without honorifics.

    ``"Mr. John Right"`` → ``("John", "Right")``; ``"Right, John"`` →
    ``("John", "Right")``; a single word is a first name.
    """
    full = re.sub(r"\s+", " ", (full or "").replace('"', "").strip())
    if not full or "@" in full:
        return None, None
    if "," in full:
        last, _, first = full.partition(",")
        first, last = first.strip(), last.strip()
        if first and last and " " not in last:
            return first, last
        full = f"{first} {last}".strip()
    words = full.split(" ")
    while len(words) > 1 and words[0].casefold().rstrip(".") in _HONORIFICS:
        words = words[1:]
    if len(words) == 1:
        return words[0], None
    return " ".join(words[:-1]), words[-1]


def apply_pairs(pairs: Iterable[tuple[str, str]], labels: Mapping[str, str]) -> dict[str, Any]:
    """Map label/value pairs through a label map into a dict of lead fields.

    Returns keys among :data:`TARGETS` (``interest`` as a list) plus ``form``:
    a dict of the labels no map knew, so they can go to ``attributes``.
    """
    out: dict[str, Any] = {}
    form: dict[str, str] = {}
    for label, value in pairs:
        value = value.strip()
        if not value:
            continue
        norm = norm_label(label)
        target = labels.get(norm)
        if target is None:
            form.setdefault(label.strip()[:60], value[:2000])
            continue
        if target == "ignore":
            continue
        if target.startswith("attributes."):
            form.setdefault(target.split(".", 1)[1], value[:2000])
            continue
        if target == "interest":
            out.setdefault("interest", [])
            for part in re.split(r"[,;\n]", value):
                if part.strip() and part.strip() not in out["interest"]:
                    out["interest"].append(part.strip()[:200])
            continue
        if target == "note":
            out["note"] = f"{out['note']}\n\n{value}" if out.get("note") else value
            continue
        if target == "email":
            found = find_email(value)
            if found and "email" not in out:
                out["email"] = found
            continue
        if target == "from":
            found = find_email(value)
            if found and "from_email" not in out:
                out["from_email"] = found
                display = value.replace(found, "").strip(" <>\"'")
                if display and "from_name" not in out:
                    out["from_name"] = display
            continue
        out.setdefault(target, value[:500])
    if form:
        out["form"] = form
    return out
