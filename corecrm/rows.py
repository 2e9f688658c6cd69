"""Converting between ``Lead`` objects, database rows and JSON documents."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any, Mapping

from corecrm.lifecycle import Stage
from corecrm.models import CONTACT_FIELDS, Event, Lead
from corecrm.storage.db import as_utc

#: Fields a JSON lead document may carry (as in ``leads show --json``).
DOCUMENT_FIELDS: frozenset[str] = frozenset(
    CONTACT_FIELDS + ("source", "campaign", "language", "timezone", "interests", "attributes", "consent", "note")
)

_LIST_FIELDS = {"interests"}
_DICT_FIELDS = {"attributes", "consent"}


def _json(value: Any) -> Any:
    if isinstance(value, str):
        return json.loads(value)
    return value


def lead_from_row(row: Mapping[str, Any]) -> Lead:
    """Build a Lead from a ``leads`` row (a SQLAlchemy mapping)."""
    return Lead(
        id=row["id"],
        workspace=row["workspace"],
        stage=Stage(row["stage"]),
        status=row["status"],
        first_name=row["first_name"],
        last_name=row["last_name"],
        email=row["email"],
        phone=row["phone"],
        company=row["company"],
        title=row["title"],
        country=row["country"],
        region=row["region"],
        city=row["city"],
        postal_code=row["postal_code"],
        source=row["source"],
        campaign=row["campaign"],
        language=row["language"],
        timezone=row["timezone"],
        interests=list(_json(row["interests"]) or []),
        attributes=dict(_json(row["attributes"]) or {}),
        consent=dict(_json(row["consent"]) or {}),
        score=row["score"],
        grade=row["grade"],
        score_detail=_json(row["score_detail"]),
        owner=row["owner"],
        team=row["team"],
        capture_id=row["capture_id"],
        origin_key=row["origin_key"],
        created_at=as_utc(row["created_at"]),
        updated_at=as_utc(row["updated_at"]),
        assigned_at=as_utc(row["assigned_at"]),
        first_contact_at=as_utc(row["first_contact_at"]),
        customer_id=row["customer_id"],
        merged_into=row["merged_into"],
    )


def lead_from_document(doc: Mapping[str, Any], *, where: str = "") -> Lead:
    """Build a new Lead from a JSON document; unknown keys go to ``attributes``.

    Raises ``ValueError`` naming the field when a value has the wrong shape.
    """
    lead = Lead()
    prefix = f"{where}: " if where else ""
    for key, value in doc.items():
        if key in ("id", "workspace", "stage", "score", "grade", "owner", "team", "status", "created_at", "events"):
            continue  # server-side fields are never taken from a capture
        if key in DOCUMENT_FIELDS:
            if value is None:
                continue
            if key in _LIST_FIELDS:
                if isinstance(value, str):
                    value = [v.strip() for v in value.split(",") if v.strip()]
                if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                    raise ValueError(f"{prefix}field {key!r}: expected a list of strings")
                value = list(value)
            elif key in _DICT_FIELDS:
                if not isinstance(value, dict):
                    raise ValueError(f"{prefix}field {key!r}: expected an object")
                value = dict(value)
            elif not isinstance(value, (str, int, float)) or isinstance(value, bool):
                raise ValueError(f"{prefix}field {key!r}: expected text, got {type(value).__name__}")
            else:
                value = str(value).strip() or None
            setattr(lead, key, value)
        else:
            lead.attributes[key] = value
    if lead.country:
        lead.country = lead.country.upper() if len(lead.country) == 2 else lead.country
    return lead


def lead_to_document(lead: Lead) -> dict[str, Any]:
    """A lead as JSON for captures and exports (no history)."""
    doc: dict[str, Any] = {}
    for key in sorted(DOCUMENT_FIELDS):
        value = getattr(lead, key)
        if value not in (None, [], {}):
            doc[key] = value
    return doc


def lead_to_json(lead: Lead, events: list[Event] | None = None) -> dict[str, Any]:
    """The ``leads show --json`` shape."""
    out: dict[str, Any] = {
        "id": lead.id,
        "workspace": lead.workspace,
        "stage": lead.stage.value,
        "status": lead.status,
    }
    for f in CONTACT_FIELDS:
        out[f] = getattr(lead, f)
    out.update(
        source=lead.source,
        campaign=lead.campaign,
        language=lead.language,
        timezone=lead.timezone,
        interests=lead.interests,
        attributes=lead.attributes,
        consent=lead.consent,
        score=lead.score,
        grade=lead.grade,
        score_detail=lead.score_detail,
        owner=lead.owner,
        team=lead.team,
        customer_id=lead.customer_id,
        merged_into=lead.merged_into,
        capture_id=lead.capture_id,
        created_at=_iso(lead.created_at),
        updated_at=_iso(lead.updated_at),
        assigned_at=_iso(lead.assigned_at),
        first_contact_at=_iso(lead.first_contact_at),
    )
    if events is not None:
        out["events"] = [e.to_json() for e in events]
    return out


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value else None
