"""What the CLI runs: claiming, the SLA sweep, simulation and the routing report.

Each operation is one function over an engine, a workspace and the compiled
:class:`~corecrm_plugins.routing_geo.config.Routing`, so tests and other
programs can call them without the command line. Writes happen in one
transaction each; on SQLite the core opens it with ``BEGIN IMMEDIATE`` (the
single writer), on PostgreSQL the queue is read with ``FOR UPDATE SKIP LOCKED``.
"""

from __future__ import annotations

import copy
import datetime as dt
from typing import Any, Sequence

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from corecrm.errors import CrmError, NotFound
from corecrm.models import Lead
from corecrm.records import ReportTable
from corecrm.storage import schema as core
from corecrm.storage.db import as_utc
from corecrm_plugins.routing_geo import store
from corecrm_plugins.routing_geo.config import PLUGIN, Routing
from corecrm_plugins.routing_geo.model import Directory
from corecrm_plugins.routing_geo.router import Router, availability, capacity

L = core.leads


def make_router(routing: Routing) -> Router:
    return Router(
        routing.ruleset,
        routing.directory,
        respect_working_hours=bool(routing.settings.get("respect_working_hours", True)),
        sticky_scope=str(routing.settings.get("sticky_scope", "team")),
    )


# --------------------------------------------------------------------------- claim


def claimable_teams(routing: Routing, member: str, team: str | None = None) -> list[str]:
    d = routing.directory
    if member not in d.members:
        raise NotFound(f"unknown member {member!r} (known: {', '.join(sorted(d.members)) or 'none'})")
    mine = [t.name for t in d.teams.values() if member in t.members or (t.is_queue and not t.members)]
    default = routing.ruleset.default_queue
    if default not in d.teams:
        mine.append(default)  # anyone may work the unrouted queue
    if team is not None:
        if team not in d.teams and team != default:
            raise NotFound(f"unknown team or queue {team!r}")
        if team not in mine:
            raise CrmError(f"{member} is not a member of {team!r} and cannot claim from it")
        return [team]
    return mine


def claim(engine: Engine, workspace: str, routing: Routing, member: str, *, team: str | None = None,
          now: dt.datetime, plugin: str = PLUGIN) -> dict[str, Any] | None:
    """Take the best waiting lead for ``member`` atomically; ``None`` when the queue is empty.

    Two reps claiming at once never get the same lead: PostgreSQL skips rows
    another transaction has locked (``FOR UPDATE SKIP LOCKED``); SQLite runs
    the whole claim as the single writer (``BEGIN IMMEDIATE``).
    """
    d = routing.directory
    teams = claimable_teams(routing, member, team)
    m = d.members[member]
    why = availability(m, now, respect_hours=False)  # a rep who claims is at work by definition
    if why:
        raise CrmError(f"{member} cannot claim: {why}")
    order = (L.c.score.desc().nulls_last(), L.c.id) if routing.settings.get("claim_order") == "score" else (L.c.id,)
    with engine.begin() as conn:
        only = Directory(members={member: m}, teams={})
        snap = store.load_snapshot(conn, workspace, only, [], now, rotation_state=False)
        full = capacity(m, snap, {})
        if full:
            raise CrmError(f"{member} cannot claim: {full}")
        pick = (
            sa.select(L.c.id)
            .where(L.c.workspace == workspace, L.c.owner.is_(None), L.c.team.is_not(None), L.c.status == "open", L.c.team.in_(teams))
            .order_by(*order)
            .limit(1)
            .with_for_update(skip_locked=True)
            .scalar_subquery()
        )
        row = conn.execute(
            sa.update(L)
            .where(L.c.id == pick, L.c.owner.is_(None))
            .values(owner=member, assigned_at=now, updated_at=now)
            .returning(L.c.id, L.c.team, L.c.created_at)
        ).first()
        if row is None:
            return None
        lead_id, lead_team, created = row
        waited = (now - as_utc(created)).total_seconds() / 60 if created is not None else None
        detail = {
            "owner": member, "team": lead_team, "queue": lead_team, "rule": None, "via": "claim",
            "reason": f"claimed by {member} from queue {lead_team}",
            "explanation": {"claimed_from": teams, "order": routing.settings.get("claim_order", "oldest"),
                            "waited_minutes": round(waited, 2) if waited is not None else None},
        }
        store.insert_events(conn, workspace, [{"lead_id": lead_id, "type": "assigned", "at": now, "plugin": plugin, "detail": detail}])
        # a claim restarts the lead's first-contact clock with its new owner; it does not move
        # the push rotation (pull is self-service), so claims never contend on rotation rows
        store.restart_sla(conn, workspace, [{"lead_id": lead_id, "owner": member, "team": lead_team, "rule": None,
                                             "at": now, "sla_minutes": routing.sla_for(None, lead_team)}])
    return {"lead_id": lead_id, "team": lead_team, "owner": member, "waited_minutes": detail["explanation"]["waited_minutes"]}


# --------------------------------------------------------------------------- sweep


def _load_leads(conn: Connection, workspace: str, ids: Sequence[int], *, lock: bool) -> dict[int, Lead]:
    out: dict[int, Lead] = {}
    for chunk in store._chunks(sorted(ids)):
        q = sa.select(L).where(L.c.workspace == workspace, L.c.id.in_(chunk))
        if lock:
            q = q.with_for_update(skip_locked=True)
        for row in conn.execute(q).mappings():
            out[row["id"]] = store.row_to_lead(row)
    return out


def sweep(engine: Engine, workspace: str, routing: Routing, *, now: dt.datetime, plugin: str = PLUGIN) -> dict[str, Any]:
    """Act on lapsed first-contact SLAs and hand waiting leads to members who became available.

    Breaches are recorded as ``sla_breached`` events; the team's ``on_breach``
    decides what else happens: ``reassign`` (another member of the team, or
    back to the queue for pull teams), ``escalate`` (to ``escalate_to``) or
    ``record`` (nothing else). Leads that waited in a push team's queue
    because nobody was available are assigned when someone is.
    """
    d = routing.directory
    router = make_router(routing)
    summary: dict[str, Any] = {"breached": 0, "reassigned": 0, "escalated": 0, "recorded": 0, "requeued": 0,
                               "assigned_from_queue": 0, "fulfilled": 0, "actions": []}
    S = store.sla
    with engine.begin() as conn:
        due = conn.execute(
            sa.select(S.c.lead_id, S.c.team, S.c.owner, S.c.rule, S.c.sla_minutes, S.c.started_at, S.c.due_at)
            .where(S.c.workspace == workspace, S.c.breached_at.is_(None), S.c.due_at <= now)
            .order_by(S.c.due_at, S.c.lead_id)
        ).all()
        push_teams = [t.name for t in d.teams.values() if t.mode == "push" and not t.is_queue]
        waiting_ids: list[int] = []
        for chunk in store._chunks(push_teams):
            waiting_ids += [r[0] for r in conn.execute(
                sa.select(L.c.id).where(L.c.workspace == workspace, L.c.owner.is_(None), L.c.team.is_not(None),
                                        L.c.status == "open", L.c.team.in_(chunk)).order_by(L.c.id))]
        leads = _load_leads(conn, workspace, [r.lead_id for r in due] + waiting_ids, lock=True)
        ordered = list(leads.values())
        snap = store.load_snapshot(conn, workspace, d, ordered, now)
        index_of = {lead.id: i for i, lead in enumerate(ordered)}
        from corecrm_plugins.routing_geo.router import _Availability

        avail = _Availability(d.members, now, router.respect_hours)
        batch_new: dict[str, int] = {}
        updates: list[dict[str, Any]] = []
        events: list[dict[str, Any]] = []
        records: list[dict[str, Any]] = []
        fulfilled: list[int] = []
        breached_ids: list[int] = []
        handled: set[int] = set()

        def move(lead: Lead, owner: str | None, team: str | None, reason: str, expl: dict[str, Any], *, keep_clock: bool = False) -> None:
            updates.append({"b_id": lead.id, "b_owner": owner, "b_team": team, "b_at": now if owner else lead.assigned_at})
            events.append({"lead_id": lead.id, "type": "assigned", "at": now, "plugin": plugin,
                           "detail": {"owner": owner, "team": team, "queue": None if owner else team, "rule": expl.get("rule"),
                                      "reason": reason, "explanation": expl, "via": "sweep"}})
            records.append({"lead_id": lead.id, "owner": owner, "team": team, "rule": expl.get("rule"), "at": now,
                            "sla_minutes": None if keep_clock else routing.sla_for(expl.get("rule"), team), "keep_clock": keep_clock})
            lead.owner, lead.team = owner, team

        for r in due:
            lead = leads.get(r.lead_id)
            if lead is None or lead.first_contact_at is not None or lead.status != "open":
                fulfilled.append(r.lead_id)
                continue
            handled.add(lead.id)
            breached_ids.append(lead.id)
            t = d.teams.get(lead.team) if lead.team else None
            action = t.on_breach if t is not None else "record"
            started = as_utc(r.started_at)
            detail: dict[str, Any] = {
                "owner": lead.owner, "team": lead.team, "rule": r.rule, "sla_minutes": r.sla_minutes,
                "started_at": started.isoformat() if started else None, "due_at": as_utc(r.due_at).isoformat(),
                "waited_minutes": round((now - started).total_seconds() / 60, 2) if started else None,
            }
            outcome = "recorded"
            if action == "reassign" and t is not None:
                if t.mode == "push" and not t.is_queue:
                    owner, sel = router.select(t, lead, index_of[lead.id], now, snap, exclude=[lead.owner] if lead.owner else (),
                                               avail=avail, batch_new=batch_new)
                    if owner:
                        move(lead, owner, t.name, f"SLA of {r.sla_minutes:g} min lapsed with {lead.owner or 'the queue'}; reassigned: {sel['choice']}",
                             {"rule": r.rule, **sel})
                        outcome = "reassigned"
                    elif t.escalate_to:
                        action = "escalate"
                    else:
                        detail["note"] = f"nobody else available ({sel['summary']})"
                elif lead.owner:
                    move(lead, None, t.name, f"SLA of {r.sla_minutes:g} min lapsed with {lead.owner}; back in queue {t.name}", {"rule": r.rule})
                    outcome = "requeued"
                elif t.escalate_to:
                    action = "escalate"
            if action == "escalate" and t is not None and t.escalate_to:
                target = t.escalate_to
                if target == lead.owner or (target == lead.team and lead.owner is None and (target not in d.teams or d.teams[target].mode == "pull")):
                    detail["note"] = f"already escalated to {target}"
                elif target in d.members:
                    move(lead, target, lead.team, f"SLA of {r.sla_minutes:g} min lapsed; escalated to {target}", {"rule": r.rule, "escalated_to": target})
                    outcome = "escalated"
                else:
                    et = d.teams[target]
                    owner = None
                    sel: dict[str, Any] = {}
                    if et.mode == "push" and not et.is_queue:
                        owner, sel = router.select(et, lead, index_of[lead.id], now, snap, avail=avail, batch_new=batch_new)
                    why = sel.get("choice") if owner else f"waits in {target}"
                    move(lead, owner, target, f"SLA of {r.sla_minutes:g} min lapsed; escalated to {target}: {why}", {"rule": r.rule, "escalated_to": target, **sel})
                    outcome = "escalated"
            detail["action"] = outcome
            detail["new_owner"] = lead.owner
            detail["new_team"] = lead.team
            summary[outcome] += 1
            summary["breached"] += 1
            summary["actions"].append({"lead_id": lead.id, "action": outcome, "owner": detail["owner"], "new_owner": lead.owner, "team": lead.team})
            events.append({"lead_id": lead.id, "type": "sla_breached", "at": now, "plugin": plugin, "detail": detail})

        for lid in waiting_ids:
            lead = leads.get(lid)
            if lead is None or lid in handled or lead.owner is not None:
                continue
            t = d.teams.get(lead.team) if lead.team else None
            if t is None:
                continue
            owner, sel = router.select(t, lead, index_of[lid], now, snap, avail=avail, batch_new=batch_new)
            if owner:
                move(lead, owner, t.name, f"waited in queue {t.name}; {sel['choice']}", {"rule": None, **sel}, keep_clock=True)
                summary["assigned_from_queue"] += 1
                summary["actions"].append({"lead_id": lid, "action": "assigned_from_queue", "owner": None, "new_owner": owner, "team": t.name})

        if breached_ids:
            for chunk in store._chunks(breached_ids):
                conn.execute(S.update().where(S.c.workspace == workspace, S.c.lead_id.in_(chunk)).values(breached_at=now))
        if fulfilled:
            for chunk in store._chunks(fulfilled):
                conn.execute(S.delete().where(S.c.workspace == workspace, S.c.lead_id.in_(chunk)))
        summary["fulfilled"] = len(fulfilled)
        if updates:
            conn.execute(
                L.update().where(L.c.workspace == workspace, L.c.id == sa.bindparam("b_id"))
                .values(owner=sa.bindparam("b_owner"), team=sa.bindparam("b_team"), assigned_at=sa.bindparam("b_at"), updated_at=now),
                updates,
            )
        store.insert_events(conn, workspace, events)
        fresh = [x for x in records if not x["keep_clock"]]
        kept = [x for x in records if x["keep_clock"]]
        store.record_assignments(conn, workspace, d, fresh)
        if kept:
            store.record_rotation_only(conn, workspace, d, kept)
    summary["events"] = events
    return summary


# --------------------------------------------------------------------------- simulate


def simulate(engine: Engine, workspace: str, current: Routing, new: Routing, *, now: dt.datetime,
             sample: int | None = None) -> dict[str, Any]:
    """Route stored open leads under the current and the new rules; write nothing."""
    with engine.connect() as conn:
        q = sa.select(L).where(L.c.workspace == workspace, L.c.status == "open").order_by(L.c.id.desc())
        if sample:
            q = q.limit(sample)
        leads = [store.row_to_lead(r) for r in conn.execute(q).mappings()]
        leads.reverse()
        fresh = [copy.copy(x) for x in leads]
        for x in fresh:
            x.owner = None
        snap_cur = store.load_snapshot(conn, workspace, current.directory, fresh, now)
        snap_new = store.load_snapshot(conn, workspace, new.directory, fresh, now)
        conn.rollback()
    a_cur = {a.index: a for a in make_router(current).route(fresh, now, snap_cur, skip_owned=False)}
    a_new = {a.index: a for a in make_router(new).route(fresh, now, snap_new, skip_owned=False)}
    changes = []
    before: dict[str, int] = {}
    after: dict[str, int] = {}
    for i, lead in enumerate(leads):
        c, n = a_cur[i], a_new[i]
        ct, nt = c.team or c.queue, n.team or n.queue
        before[ct] = before.get(ct, 0) + 1  # type: ignore[index]
        after[nt] = after.get(nt, 0) + 1  # type: ignore[index]
        if (ct, c.rule) != (nt, n.rule):
            changes.append({"lead_id": lead.id, "country": lead.country, "region": lead.region, "postal_code": lead.postal_code,
                            "stored": {"team": lead.team, "owner": lead.owner},
                            "current": {"rule": c.rule, "target": ct, "owner": c.owner},
                            "new": {"rule": n.rule, "target": nt, "owner": n.owner, "reason": n.reason}})
    targets = sorted(set(before) | set(after))
    moved = sum(1 for c in changes if c["current"]["target"] != c["new"]["target"])
    return {"leads": len(leads), "changed": len(changes), "moved": moved, "changes": changes,
            "by_target": [{"target": t, "current": before.get(t, 0), "new": after.get(t, 0)} for t in targets],
            "warnings": [m for _, m in new.warnings]}


# --------------------------------------------------------------------------- report


def _pct(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    pos = (len(s) - 1) * q
    lo = int(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def report(engine: Engine, workspace: str, *, since: dt.datetime | None = None, until: dt.datetime | None = None,
           by: str = "member") -> ReportTable:
    """Time to assign and to first contact (minutes; p50/p90), SLA breaches and load per member (or team)."""
    with engine.connect() as conn:
        q = sa.select(L.c.owner, L.c.team, L.c.created_at, L.c.assigned_at, L.c.first_contact_at).where(L.c.workspace == workspace)
        if since is not None:
            q = q.where(L.c.created_at >= since)
        if until is not None:
            q = q.where(L.c.created_at < until)
        rows = conn.execute(q).all()
        dim = L.c.team if by == "team" else L.c.owner
        open_load = {k or "(no team)": n for k, n in conn.execute(
            sa.select(dim, sa.func.count()).where(L.c.workspace == workspace, L.c.status == "open", L.c.owner.is_not(None)).group_by(dim)
        ).all()}
        queued = dict(conn.execute(
            sa.select(L.c.team, sa.func.count()).where(L.c.workspace == workspace, L.c.status == "open", L.c.owner.is_(None), L.c.team.is_not(None)).group_by(L.c.team)
        ).all())
        E = core.events
        eq = sa.select(E.c.detail).where(E.c.workspace == workspace, E.c.type == "sla_breached")
        if since is not None:
            eq = eq.where(E.c.at >= since)
        if until is not None:
            eq = eq.where(E.c.at < until)
        breaches = [d if isinstance(d, dict) else __import__("json").loads(d) for (d,) in conn.execute(eq)]
    per: dict[str, dict[str, list[float]]] = {}
    tta_all: list[float] = []
    ttc_all: list[float] = []
    for owner, team, created, assigned, contact in rows:
        created, assigned, contact = as_utc(created), as_utc(assigned), as_utc(contact)
        if owner is None or created is None:
            continue
        p = per.setdefault(team or "(no team)" if by == "team" else owner, {"tta": [], "ttc": []})
        if assigned is not None:
            v = max((assigned - created).total_seconds() / 60, 0.0)
            p["tta"].append(v)
            tta_all.append(v)
        if contact is not None:
            v = max((contact - created).total_seconds() / 60, 0.0)
            p["ttc"].append(v)
            ttc_all.append(v)
    breach_by: dict[str, int] = {}
    for b in breaches:
        key = (b.get("team") or "(no team)") if by == "team" else (b.get("owner") or f"(queue {b.get('team')})")
        breach_by[key] = breach_by.get(key, 0) + 1

    def r(x: float | None) -> float | None:
        return None if x is None else round(x, 1)

    out_rows = []
    for member in sorted(set(per) | set(open_load) | set(breach_by)):
        p = per.get(member, {"tta": [], "ttc": []})
        out_rows.append([member, len(p["tta"]), open_load.get(member, 0), r(_pct(p["tta"], .5)), r(_pct(p["tta"], .9)),
                         r(_pct(p["ttc"], .5)), r(_pct(p["ttc"], .9)), breach_by.get(member, 0)])
    out_rows.append(["ALL", len(tta_all), sum(open_load.values()), r(_pct(tta_all, .5)), r(_pct(tta_all, .9)),
                     r(_pct(ttc_all, .5)), r(_pct(ttc_all, .9)), len(breaches)])
    notes = [f"{n} lead(s) waiting in queue {t}" for t, n in sorted(queued.items())]
    if not rows:
        notes.append("no leads in this period")
    return ReportTable(
        title="Routing: speed to lead and load per member (minutes)",
        columns=[by, "assigned", "open", "tta_p50", "tta_p90", "ttfc_p50", "ttfc_p90", "sla_breaches"],
        rows=out_rows,
        notes=notes,
        data={"time_to_assign": {"p50": r(_pct(tta_all, .5)), "p90": r(_pct(tta_all, .9)), "p99": r(_pct(tta_all, .99)), "n": len(tta_all)},
              "time_to_first_contact": {"p50": r(_pct(ttc_all, .5)), "p90": r(_pct(ttc_all, .9)), "p99": r(_pct(ttc_all, .99)), "n": len(ttc_all)},
              "breaches": len(breaches), "queued": queued},
    )
