"""routing_geo: territory rules, fair and availability-aware assignment, push and pull, SLAs.

"A lead from the UK interested in shoes goes to the UK fashion team" — and
fast. Ordered territory rules (country, ISO 3166-2 region with parents,
postal prefixes/patterns/ranges, interests, source, score/grade, language,
any attribute) pick a team or a queue; a strategy (round robin, weighted,
least loaded, sticky) picks a member who is active, not away, inside working
hours and under capacity; when nobody is, the lead waits in the team queue.
Every assignment explains itself (rule, candidates, why each was skipped,
the strategy's choice).

Modules: ``geo`` (countries, subdivisions, postal keys), ``model`` (members,
teams, queues), ``rules`` (matching and shadowing), ``router`` (selection),
``store`` (tables and batch queries), ``ops`` (claim, sweep, simulate,
report), ``cli`` (commands), ``config`` (settings).
"""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

from corecrm.hooks import hookimpl

if TYPE_CHECKING:
    import sqlalchemy

    from corecrm.context import HookContext
    from corecrm.models import Event, Lead
    from corecrm.records import Assignment, CliCommand, Report, Setting

PLUGIN = "routing_geo"
_STASH = "routing_geo.assigned"

#: Compiled routing per (settings object, overlay rows); settings objects are cached by the core per workspace.
_compiled: dict[tuple[int, str], Any] = {}
_schema_ready: "weakref.WeakSet[Any]" = weakref.WeakSet()


def routing_for(crm: Any, workspace: str, settings: Mapping[str, Any], conn: Any = None) -> Any:
    """The compiled rules and directory for a workspace (TOML plus the database overlay)."""
    import json

    from corecrm_plugins.routing_geo import config, store

    overlay: list[tuple[str, str, dict[str, Any]]] = []
    if conn is not None:
        overlay = store.load_overlay(conn, workspace)
    elif crm is not None:
        engine = crm.engine
        ensure_schema(engine)
        with engine.connect() as c:
            overlay = store.load_overlay(c, workspace)
    key = (id(settings), json.dumps(overlay, sort_keys=True, default=str))
    hit = _compiled.get(key)
    if hit is not None and hit[0] is settings:
        return hit[1]
    routing = config.compile_settings(settings, overlay)
    if len(_compiled) > 64:
        _compiled.clear()
    _compiled[key] = (settings, routing)
    return routing


def ensure_schema(engine: Any) -> None:
    if engine in _schema_ready:
        return
    from corecrm_plugins.routing_geo import store

    store.ensure_schema(engine)
    _schema_ready.add(engine)


@hookimpl
def crm_plugin_settings() -> Iterable[Setting]:
    from corecrm_plugins.routing_geo import config

    return config.settings()


@hookimpl
def crm_db_schema() -> Iterable[sqlalchemy.MetaData]:
    from corecrm_plugins.routing_geo import store

    return [store.metadata]


@hookimpl
def crm_route_leads(leads: Sequence[Lead], ctx: HookContext, settings: Mapping[str, Any]) -> Iterable[Assignment]:
    """Match territory rules and pick members for the whole batch at once."""
    from corecrm_plugins.routing_geo import ops, store
    from corecrm_plugins.routing_geo.router import Snapshot

    crm = ctx.crm
    if crm is None:  # routing without a database (library use): no state, no sticky owners
        routing = routing_for(None, ctx.workspace, settings)
        snap = Snapshot()
    else:
        ensure_schema(crm.engine)
        with crm.engine.connect() as conn:
            routing = routing_for(crm, ctx.workspace, settings, conn)
            snap = store.load_snapshot(conn, ctx.workspace, routing.directory, leads, ctx.now)
            conn.rollback()
    if not routing.rules and not routing.directory.teams:
        return []  # nothing configured: this plugin leaves routing to others
    out = ops.make_router(routing).route(leads, ctx.now, snap)
    if not ctx.dry_run:
        stash = ctx.extra.setdefault(_STASH, [])
        for a in out:
            stash.append((leads[a.index], a.rule, a.explanation.get("sla_minutes")))
    return out


@hookimpl
def crm_leads_assigned(events: Sequence[Event], ctx: HookContext, settings: Mapping[str, Any]) -> None:
    """Committed assignments advance the rotation and start SLA clocks (claims and sweeps record their own)."""
    mine = [e for e in events if e.plugin == PLUGIN and e.lead_id is not None and (e.detail or {}).get("via") not in ("claim", "sweep")]
    if not mine or ctx.crm is None:
        return
    from corecrm_plugins.routing_geo import store

    # the route hook stashed (lead object, rule, sla minutes); persisting gave the objects their ids
    by_id = {lead.id: (rule, sla) for lead, rule, sla in ctx.extra.pop(_STASH, []) if lead.id is not None}
    engine = ctx.crm.engine
    ensure_schema(engine)
    with engine.begin() as conn:
        routing = routing_for(ctx.crm, ctx.workspace, settings, conn)
        items = []
        for e in mine:
            team = (e.detail or {}).get("team")
            rule, sla = by_id.get(e.lead_id, (None, routing.sla_for(None, team)))
            items.append({"lead_id": e.lead_id, "owner": e.detail.get("owner"), "team": team, "rule": rule, "at": e.at, "sla_minutes": sla})
        store.record_assignments(conn, ctx.workspace, routing.directory, items)


@hookimpl
def crm_config_warnings(settings: Mapping[str, Any], workspace: str) -> Iterable[str]:
    """Shadowed rules are warnings; cross references (unknown team, team without members) are errors."""
    from corecrm_plugins.routing_geo import config

    routing = config.compile_settings(settings)  # raises ConfigError naming the key path
    return [f"{key}: {message}" for key, message in routing.warnings]


@hookimpl
def crm_cli_commands() -> Iterable[CliCommand]:
    from corecrm_plugins.routing_geo import cli

    return cli.commands()


@hookimpl
def crm_reports(settings: Mapping[str, Any]) -> Iterable[Report]:
    from corecrm_plugins.routing_geo import cli

    return [cli.routing_report()]
