"""Merging two stored leads by hand, and undoing a merge.

A merge folds lead B into lead A: A's empty fields are filled from B (or,
for the fields named in ``take``, replaced by B's), interests are united and
B's extra attributes added. Consent is never carried: consent is one
person's statement, and a wrong merge must not make someone "opted in". B is
kept, marked ``merged`` with ``merged_into = A``, so nothing is lost.

Every changed field is recorded in a ``merged`` event on A with its previous
value and the lead it came from (per-field provenance); ``unmerge`` reads
that event back and restores what has not been changed since.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Sequence

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from corecrm.errors import CrmError, NotFound
from corecrm.models import CONTACT_FIELDS
from corecrm.storage import schema

from corecrm_plugins.dedup import store

#: Fields a merge may fill (contact data and where the lead came from).
MERGE_FIELDS: tuple[str, ...] = CONTACT_FIELDS + ("source", "campaign", "language", "timezone")
PLUGIN = "dedup"


def _blank(v: Any) -> bool:
    return v is None or (isinstance(v, str) and not v.strip())


def _email_norm(email: str | None) -> str | None:
    return email.strip().lower() if email else None


def plan_merge(a: Any, b: Any, take: Sequence[str] = ()) -> dict[str, Any]:
    """What merging lead ``b`` into ``a`` changes on ``a`` (no writes): the ``merged`` event's detail."""
    fields: dict[str, dict[str, Any]] = {}
    for f in MERGE_FIELDS:
        va, vb = getattr(a, f), getattr(b, f)
        if _blank(vb):
            continue
        if _blank(va) or (f in take and va != vb):
            fields[f] = {"previous": va, "value": vb, "from_lead": b.id}
    interests_added = [x for x in (b.interests or []) if x not in (a.interests or [])]
    attributes_added = {k: v for k, v in (b.attributes or {}).items() if k not in (a.attributes or {})}
    return {
        "from_lead": b.id,
        "fields": fields,
        "interests_added": interests_added,
        "attributes_added": attributes_added,
        "consent": "not carried over: the surviving lead keeps its own consent" if b.consent else None,
    }


def merge_leads(conn: Connection, workspace: str, survivor_id: int, merged_id: int, now: dt.datetime, *,
                take: Sequence[str] = (), reason: str = "merged by hand", matcher: Any = None) -> dict[str, Any]:
    """Fold stored lead ``merged_id`` into stored lead ``survivor_id``; returns the ``merged`` event detail."""
    if survivor_id == merged_id:
        raise CrmError(f"lead {survivor_id}: cannot merge a lead into itself")
    leads = store.load_leads(conn, workspace, [survivor_id, merged_id], matchable_only=False)
    for lid in (survivor_id, merged_id):
        if lid not in leads:
            raise NotFound(f"lead {lid} not found in workspace {workspace!r}")
        if leads[lid].status == "merged":
            raise CrmError(f"lead {lid} was already merged into lead {leads[lid].merged_into}; unmerge it first")
    a, b = leads[survivor_id], leads[merged_id]
    detail = plan_merge(a, b, take)
    detail["reason"] = reason
    values: dict[str, Any] = {f: c["value"] for f, c in detail["fields"].items()}
    if "email" in values:
        values["email_norm"] = _email_norm(values["email"])
    if detail["interests_added"]:
        values["interests"] = list(a.interests or []) + detail["interests_added"]
    if detail["attributes_added"]:
        values["attributes"] = {**(a.attributes or {}), **detail["attributes_added"]}
    t = schema.leads
    conn.execute(sa.update(t).where(t.c.workspace == workspace, t.c.id == survivor_id).values(updated_at=now, **values))
    conn.execute(sa.update(t).where(t.c.workspace == workspace, t.c.id == merged_id).values(status="merged", merged_into=survivor_id, updated_at=now))
    store.add_events(conn, workspace, [
        {"lead_id": survivor_id, "type": "merged", "detail": detail},
        {"lead_id": merged_id, "type": "merged_into", "detail": {"into_lead": survivor_id, "reason": reason}},
    ], now, PLUGIN)
    if matcher is not None:
        for f, v in values.items():
            if f in MERGE_FIELDS:
                setattr(a, f, v)
        store.index_leads(conn, workspace, [(survivor_id, matcher.keys(a))])
        store.index_leads(conn, workspace, [(merged_id, [])])
    return detail


def _merge_events(conn: Connection, workspace: str, survivor_id: int) -> list[tuple[int, dict[str, Any]]]:
    """``(event id, detail)`` of the survivor's merges not undone yet, oldest first."""
    e = schema.events
    rows = conn.execute(
        sa.select(e.c.id, e.c.type, e.c.detail)
        .where(e.c.workspace == workspace, e.c.lead_id == survivor_id, e.c.type.in_(("merged", "unmerged")))
        .order_by(e.c.id)
    ).all()
    active: dict[int, tuple[int, dict[str, Any]]] = {}
    for eid, typ, detail in rows:
        detail = store._decode(detail) or {}
        src = detail.get("from_lead")
        if typ == "merged" and src is not None:
            active[src] = (eid, detail)
        elif typ == "unmerged":
            active.pop(src, None)
    return sorted(active.values(), key=lambda x: x[0])


def unmerge(conn: Connection, workspace: str, lead_id: int, now: dt.datetime, *, matcher: Any = None) -> dict[str, Any]:
    """Undo the merge of ``lead_id`` (the merged-away lead, or a survivor with exactly one merge)."""
    leads = store.load_leads(conn, workspace, [lead_id], matchable_only=False)
    if lead_id not in leads:
        raise NotFound(f"lead {lead_id} not found in workspace {workspace!r}")
    lead = leads[lead_id]
    if lead.status == "merged" and lead.merged_into is not None:
        survivor_id, merged_id = lead.merged_into, lead_id
        found = [d for _, d in _merge_events(conn, workspace, survivor_id) if d.get("from_lead") == merged_id]
        if not found:
            raise CrmError(f"lead {lead_id}: no merged event on lead {survivor_id} records this merge")
        detail = found[-1]
    else:
        merges = _merge_events(conn, workspace, lead_id)
        if not merges:
            raise CrmError(f"lead {lead_id} has no merge to undo")
        if len(merges) > 1:
            froms = ", ".join(str(d["from_lead"]) for _, d in merges)
            raise CrmError(f"lead {lead_id} absorbed several leads ({froms}): name the one to unmerge")
        survivor_id, detail = lead_id, merges[0][1]
        merged_id = detail["from_lead"]
    cur = store.load_leads(conn, workspace, [survivor_id, merged_id], matchable_only=False)
    a = cur[survivor_id]
    restored, kept = [], []
    values: dict[str, Any] = {}
    for f, change in (detail.get("fields") or {}).items():
        if getattr(a, f) == change.get("value"):
            values[f] = change.get("previous")
            restored.append(f)
        else:
            kept.append(f)  # changed since the merge: the newer value stays
    if "email" in values:
        values["email_norm"] = _email_norm(values["email"])
    added = detail.get("interests_added") or []
    if added:
        values["interests"] = [x for x in (a.interests or []) if x not in added]
    attrs_added = detail.get("attributes_added") or {}
    if attrs_added:
        values["attributes"] = {k: v for k, v in (a.attributes or {}).items() if not (k in attrs_added and attrs_added[k] == v)}
    t = schema.leads
    conn.execute(sa.update(t).where(t.c.workspace == workspace, t.c.id == survivor_id).values(updated_at=now, **values))
    if merged_id in cur:
        conn.execute(sa.update(t).where(t.c.workspace == workspace, t.c.id == merged_id).values(status="open", merged_into=None, updated_at=now))
    out = {"from_lead": merged_id, "restored": restored, "kept": kept}
    store.add_events(conn, workspace, [
        {"lead_id": survivor_id, "type": "unmerged", "detail": out},
        {"lead_id": merged_id, "type": "unmerged", "detail": {"from_lead": merged_id, "survivor": survivor_id}},
    ], now, PLUGIN)
    if matcher is not None:
        fresh = store.load_leads(conn, workspace, [survivor_id, merged_id])
        store.index_leads(conn, workspace, [(i, matcher.keys(l)) for i, l in fresh.items()])
    return out
