"""The domain model: leads, customers, deals, transactions, activities and events.

Models are mutable ``attrs`` classes with slots on purpose. The intake pipeline
moves a million leads through several plugins; frozen models rebuilt with
``evolve`` at every step cost ~4 µs each (see ``docs/architecture.md``), so
plugins never mutate leads directly: they return typed records
(``corecrm.records``) and the core applies them, which is also what lets every
change be attributed to the plugin that made it.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import attrs

from corecrm.lifecycle import Stage

#: Contact fields a lead carries, in the order ``leads show --json`` prints them.
CONTACT_FIELDS: tuple[str, ...] = (
    "first_name",
    "last_name",
    "email",
    "phone",
    "company",
    "title",
    "country",
    "region",
    "city",
    "postal_code",
)

#: Fields a capture or a plugin may set on a lead through a ``FieldUpdate``.
WRITABLE_FIELDS: frozenset[str] = frozenset(
    CONTACT_FIELDS + ("source", "campaign", "interests", "attributes", "consent", "language", "timezone")
)


def utcnow() -> dt.datetime:
    """Current time, timezone-aware UTC (the only kind of time stored)."""
    return dt.datetime.now(dt.timezone.utc)


@attrs.define(slots=True, eq=False)
class Lead:
    """A person who may become a customer.

    A lead read from a capture and not yet stored has ``id is None``; the same
    class carries stored leads through ``score recompute`` and friends, so
    decision hooks see one shape whatever the path.
    """

    first_name: str | None = None
    last_name: str | None = None
    email: str | None = None
    phone: str | None = None
    company: str | None = None
    title: str | None = None
    country: str | None = None  #: ISO 3166-1 alpha-2, upper case
    region: str | None = None  #: ISO 3166-2, e.g. ``GB-ENG``
    city: str | None = None
    postal_code: str | None = None
    source: str | None = None
    campaign: str | None = None
    language: str | None = None
    timezone: str | None = None
    interests: list[str] = attrs.field(factory=list)
    attributes: dict[str, Any] = attrs.field(factory=dict)
    consent: dict[str, Any] = attrs.field(factory=dict)
    note: str | None = None  #: free text that came with the capture (kept as the first note)

    id: int | None = None
    workspace: str = "default"
    stage: Stage = Stage.LEAD
    status: str = "open"  #: open | merged | disqualified | converted
    score: float | None = None
    grade: str | None = None
    owner: str | None = None
    team: str | None = None
    capture_id: int | None = None
    origin_key: str | None = None  #: idempotency key: capture hash + item index
    created_at: dt.datetime | None = None
    updated_at: dt.datetime | None = None
    assigned_at: dt.datetime | None = None
    first_contact_at: dt.datetime | None = None
    customer_id: int | None = None
    merged_into: int | None = None
    #: The stored score explanation: ``{"ruleset": ..., "contributions": [...]}``.
    score_detail: dict[str, Any] | None = None

    @property
    def full_name(self) -> str:
        return " ".join(p for p in (self.first_name, self.last_name) if p)

    @property
    def email_domain(self) -> str | None:
        if self.email and "@" in self.email:
            return self.email.rsplit("@", 1)[1].lower()
        return None

    def get(self, field: str, default: Any = None) -> Any:
        """Read a field, or ``attributes.<key>`` / ``attributes.<a>.<b>`` for industry data."""
        if field.startswith("attributes."):
            value: Any = self.attributes
            for part in field.split(".")[1:]:
                if not isinstance(value, dict) or part not in value:
                    return default
                value = value[part]
            return value
        value = getattr(self, field, default)
        if isinstance(value, Stage):
            return value.value
        return value


@attrs.define(slots=True, eq=False)
class Event:
    """One entry of a lead's append-only history."""

    type: str
    at: dt.datetime
    plugin: str | None = None
    detail: dict[str, Any] = attrs.field(factory=dict)
    lead_id: int | None = None
    id: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {"type": self.type, "at": self.at.isoformat(), "plugin": self.plugin, "detail": self.detail}


@attrs.define(slots=True, eq=False)
class Customer:
    id: int | None
    workspace: str
    name: str | None = None
    email: str | None = None
    lead_id: int | None = None
    external_id: str | None = None
    created_at: dt.datetime | None = None


@attrs.define(slots=True, eq=False)
class Deal:
    id: int | None
    workspace: str
    pipeline: str
    stage: str
    lead_id: int | None = None
    customer_id: int | None = None
    name: str | None = None
    amount: float | None = None
    owner: str | None = None
    status: str = "open"  #: open | won | lost
    lost_reason: str | None = None
    expected_close: dt.date | None = None
    created_at: dt.datetime | None = None
    closed_at: dt.datetime | None = None


@attrs.define(slots=True, eq=False)
class Transaction:
    """A purchase, for customer-value analytics."""

    customer_id: int
    at: dt.date
    amount: float
    cost: float | None = None
    workspace: str = "default"
    id: int | None = None


@attrs.define(slots=True, eq=False)
class Activity:
    """Something a rep did or must do: call, email, meeting, note or task."""

    type: str
    workspace: str = "default"
    lead_id: int | None = None
    deal_id: int | None = None
    note: str | None = None
    owner: str | None = None
    due_at: dt.datetime | None = None
    done: bool = False
    at: dt.datetime | None = None
    id: int | None = None


ACTIVITY_TYPES: frozenset[str] = frozenset({"call", "email", "meeting", "note", "task", "sms", "chat"})
#: Activity types that count as contacting the lead (they stamp ``first_contact_at``).
CONTACT_ACTIVITY_TYPES: frozenset[str] = frozenset({"call", "email", "meeting", "sms", "chat"})
