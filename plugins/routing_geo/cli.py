"""Command line: ``leads claim``, ``routing sweep|simulate|check|members|teams|member|team`` and ``report routing``."""

from __future__ import annotations

import datetime as dt
import json
import sys
import time
from pathlib import Path
from typing import Any, Mapping

import click

from corecrm.errors import ConfigError, CrmError
from corecrm.records import CliCommand, Report

PLUGIN = "routing_geo"


def _parse_now(value: str | None, crm: Any) -> dt.datetime:
    if not value:
        return crm.now()
    try:
        out = dt.datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"expected an ISO 8601 time such as 2026-11-23T09:30:00Z, got {value!r}", param_hint="--now") from None
    return out if out.tzinfo else out.replace(tzinfo=dt.timezone.utc)


def _routing(crm: Any, workspace: str | None = None) -> tuple[Any, str]:
    from corecrm_plugins.routing_geo import ensure_schema, routing_for

    if not crm.plugins.is_loaded(PLUGIN):
        raise CrmError(f"plugin {PLUGIN} is not enabled")
    ws = crm.ws(workspace)
    ensure_schema(crm.engine)
    return routing_for(crm, ws, crm.plugins.settings(PLUGIN, ws)), ws


def _notify(crm: Any, ws: str, now: dt.datetime, events: list[dict[str, Any]]) -> None:
    """Tell other plugins about assignments the sweep or a claim made (after commit)."""
    from corecrm.context import HookContext
    from corecrm.models import Event

    assigned = [Event("assigned", e["at"], e["plugin"], e["detail"], lead_id=e["lead_id"]) for e in events if e["type"] == "assigned"]
    if assigned:
        ctx = HookContext(crm=crm, workspace=ws, now=now, mode="event")
        crm.plugins.notify("crm_leads_assigned", workspace=ws, events=assigned, ctx=ctx)


def _pass_crm(f: Any) -> Any:
    """Like ``corecrm.clitools.pass_crm``, resolved when the command runs (keeps ``--help`` light)."""
    import functools

    @functools.wraps(f)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from corecrm.clitools import state

        return f(state().crm, *args, **kwargs)

    return wrapper


# --------------------------------------------------------------------------- leads claim


@click.command("claim")
@click.option("--as", "member", required=True, help="The member claiming (their id).")
@click.option("--team", default=None, help="Claim only from this team or queue.")
@click.option("--now", "now_text", default=None, help="Clock for this claim (ISO 8601; tests and replays).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@_pass_crm
def claim_cmd(crm: Any, member: str, team: str | None, now_text: str | None, as_json: bool) -> None:
    """Take the best waiting lead from your teams' queues (atomic: nobody else gets it)."""
    from corecrm_plugins.routing_geo import ops

    routing, ws = _routing(crm)
    now = _parse_now(now_text, crm)
    got = ops.claim(crm.engine, ws, routing, member, team=team, now=now)
    if got is None:
        if as_json:
            click.echo(json.dumps(None))
        else:
            click.echo(f"nothing to claim for {member} ({', '.join(ops.claimable_teams(routing, member, team))})")
        sys.exit(3)
    _notify(crm, ws, now, [{"type": "assigned", "at": now, "plugin": PLUGIN, "lead_id": got["lead_id"],
                            "detail": {"owner": member, "team": got["team"], "via": "claim"}}])
    if as_json:
        click.echo(json.dumps(got))
    else:
        click.echo(f"lead {got['lead_id']} claimed by {member} from {got['team']} (waited {got['waited_minutes']} min)")


# --------------------------------------------------------------------------- routing group


@click.command("sweep")
@click.option("--now", "now_text", default=None, help="Clock for this pass (ISO 8601).")
@click.option("--watch", is_flag=True, help="Keep sweeping every sweep_interval seconds.")
@click.option("--interval", type=int, default=None, help="Seconds between passes with --watch.")
@click.option("--json", "as_json", is_flag=True)
@_pass_crm
def sweep_cmd(crm: Any, now_text: str | None, watch: bool, interval: int | None, as_json: bool) -> None:
    """Reassign or escalate leads whose first-contact SLA lapsed; assign queued leads to members now available."""
    from corecrm_plugins.routing_geo import ops

    while True:
        routing, ws = _routing(crm)
        now = _parse_now(now_text, crm)
        res = ops.sweep(crm.engine, ws, routing, now=now)
        _notify(crm, ws, now, res.pop("events"))
        if as_json:
            click.echo(json.dumps(res, default=str))
        else:
            click.echo(
                f"{now.isoformat()}: {res['breached']} SLA breach(es): {res['reassigned']} reassigned, {res['escalated']} escalated, "
                f"{res['requeued']} back in queue, {res['recorded']} recorded; {res['assigned_from_queue']} assigned from queues; "
                f"{res['fulfilled']} met their SLA"
            )
            for a in res["actions"]:
                click.echo(f"  lead {a['lead_id']}: {a['action']} {a['owner'] or '-'} → {a['new_owner'] or '(queue)'} [{a['team']}]")
        if not watch:
            return
        time.sleep(interval or int(routing.settings.get("sweep_interval", 60)))
        now_text = None


def _load_rules_file(path: str, base: Mapping[str, Any], crm: Any) -> Any:
    from corecrm.config import tomllib
    from corecrm.settings import check_value
    from corecrm_plugins.routing_geo import config

    p = Path(path)
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError("no such file", path=str(p)) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"invalid TOML: {exc}", path=str(p)) from None
    prefix = ""
    if "plugins" in data:
        data = data.get("plugins", {}).get(PLUGIN, {})
        prefix = f"plugins.{PLUGIN}."
    decls = {d.key: d for d in config.settings()}
    table: dict[str, Any] = {}
    try:
        for key, value in data.items():
            if key not in decls:
                raise ConfigError(f"unknown setting (known: {', '.join(sorted(decls))})", key=f"{prefix}{key}")
            table[key] = check_value(decls[key], value, f"{prefix}{key}", str(p))
        merged = {**dict(base), **table}
        return config.check(merged, None, where=str(p), prefix=prefix.rstrip("."))
    except ConfigError as exc:
        if exc.path:
            raise
        full = str(exc)
        message = full[len(exc.key) + 2:] if exc.key and full.startswith(f"{exc.key}: ") else full
        raise ConfigError(message, path=str(p), key=exc.key) from None


@click.command("simulate")
@click.option("--rules", "rules_path", required=True, type=click.Path(dir_okay=False), help="TOML with new rules (and optionally teams, queues, members).")
@click.option("--sample", type=int, default=None, help="Only the N most recent open leads.")
@click.option("--now", "now_text", default=None)
@click.option("--show", type=int, default=20, help="How many changed leads to list.")
@click.option("--json", "as_json", is_flag=True)
@_pass_crm
def simulate_cmd(crm: Any, rules_path: str, sample: int | None, now_text: str | None, show: int, as_json: bool) -> None:
    """Show how stored leads would be routed under new rules. Changes nothing."""
    from corecrm.clitools import format_table
    from corecrm_plugins.routing_geo import ops, store

    current, ws = _routing(crm)
    new = _load_rules_file(rules_path, current.settings, crm)
    with crm.engine.connect() as conn:
        overlay = store.load_overlay(conn, ws)
    if overlay:
        from corecrm_plugins.routing_geo import config

        new = config.compile_settings(new.settings, overlay)
    res = ops.simulate(crm.engine, ws, current, new, now=_parse_now(now_text, crm), sample=sample)
    if as_json:
        click.echo(json.dumps(res, default=str, indent=2))
        return
    click.echo(f"{res['leads']} stored open lead(s) routed under both rule sets: {res['changed']} would match another rule, "
               f"{res['moved']} would go to another team or queue. Nothing was changed.")
    click.echo(format_table(["target", "current rules", "new rules"], [[b["target"], b["current"], b["new"]] for b in res["by_target"]]))
    if res["changes"]:
        click.echo("")
        rows = [[c["lead_id"], c["country"], c["postal_code"], f"{c['current']['rule'] or '-'} → {c['current']['target']}",
                 f"{c['new']['rule'] or '-'} → {c['new']['target']}"] for c in res["changes"][:show]]
        click.echo(format_table(["lead", "country", "postal", "current", "new"], rows))
    for w in res["warnings"]:
        click.echo(f"warning: {w}")


@click.command("check")
@_pass_crm
def check_cmd(crm: Any) -> None:
    """Validate rules, teams and members (with the database overlay); list shadowed rules."""
    import warnings

    from corecrm_plugins.routing_geo import config, store

    ws = crm.workspace
    from corecrm_plugins.routing_geo import ensure_schema

    ensure_schema(crm.engine)
    with crm.engine.connect() as conn:
        overlay = store.load_overlay(conn, ws)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        routing = config.check(crm.plugins.settings(PLUGIN, ws), overlay, where=crm.config.where)
    for w in caught:
        click.echo(f"warning: {w.message}")
    d = routing.directory
    click.echo(f"ok: {len(routing.rules)} rule(s), {sum(1 for t in d.teams.values() if not t.is_queue)} team(s), "
               f"{sum(1 for t in d.teams.values() if t.is_queue)} queue(s), {len(d.members)} member(s); default queue {routing.ruleset.default_queue}")


@click.command("members")
@click.option("--now", "now_text", default=None)
@click.option("--json", "as_json", is_flag=True)
@_pass_crm
def members_cmd(crm: Any, now_text: str | None, as_json: bool) -> None:
    """List members with their teams, load and availability right now."""
    from corecrm.clitools import format_table
    from corecrm_plugins.routing_geo import store
    from corecrm_plugins.routing_geo.router import availability, capacity

    routing, ws = _routing(crm)
    now = _parse_now(now_text, crm)
    d = routing.directory
    with crm.engine.connect() as conn:
        snap = store.load_snapshot(conn, ws, d, [], now)
    rows = []
    for mid, m in sorted(d.members.items()):
        why = availability(m, now, bool(routing.settings.get("respect_working_hours", True))) or capacity(m, snap, {})
        rows.append([mid, m.name, ", ".join(d.teams_of(mid)), m.weight, snap.open_load.get(mid, 0), m.max_open,
                     snap.new_today.get(mid, 0), m.max_new_per_day, m.timezone, why or "available"])
    cols = ["member", "name", "teams", "weight", "open", "max_open", "new_today", "max_new", "timezone", "status"]
    if as_json:
        click.echo(json.dumps([dict(zip(cols, r)) for r in rows], default=str, indent=2))
    else:
        click.echo(format_table(cols, rows))


@click.command("teams")
@click.option("--json", "as_json", is_flag=True)
@_pass_crm
def teams_cmd(crm: Any, as_json: bool) -> None:
    """List teams and queues."""
    from corecrm.clitools import format_table

    routing, _ws = _routing(crm)
    rows = [[t.name, "queue" if t.is_queue else "team", t.mode, t.strategy, ", ".join(t.members), t.sla_minutes, t.on_breach, t.escalate_to]
            for t in routing.directory.teams.values()]
    cols = ["name", "kind", "mode", "strategy", "members", "sla_minutes", "on_breach", "escalate_to"]
    if as_json:
        click.echo(json.dumps([dict(zip(cols, r)) for r in rows], default=str, indent=2))
    else:
        click.echo(format_table(cols, rows))


def _set_entry(crm: Any, kind: str, name: str, changes: Mapping[str, Any], *, create: bool) -> None:
    """Write a directory row (merged with what is stored) after validating the whole result."""
    from corecrm_plugins.routing_geo import config, store

    _routing(crm)
    ws = crm.workspace
    with crm.engine.begin() as conn:
        current = store.get_directory_entry(conn, ws, kind, name)
        routing = config.compile_settings(crm.plugins.settings(PLUGIN, ws), store.load_overlay(conn, ws))
        exists = (name in routing.directory.members) if kind == "member" else (name in routing.directory.teams)
        if create and exists:
            raise CrmError(f"{kind} {name!r} already exists (use `corecrm routing {kind} set`)")
        if not create and not exists:
            raise CrmError(f"unknown {kind} {name!r} (add it with `corecrm routing {kind} add`)")
        data = {**(current or {}), **{k: v for k, v in changes.items() if v is not None}}
        overlay = [o for o in store.load_overlay(conn, ws) if (o[0], o[1]) != (kind, name)] + [(kind, name, data)]
        config.compile_settings(crm.plugins.settings(PLUGIN, ws), overlay)  # validates; raises naming the key
        store.save_directory_entry(conn, ws, kind, name, data, crm.now())


@click.group("member")
def member_group() -> None:
    """Add or change members in the database (overlaid on the TOML)."""


def _member_options(f: Any) -> Any:
    for opt in reversed([
        click.option("--name"), click.option("--email"), click.option("--weight", type=float),
        click.option("--max-open", type=int), click.option("--max-new-per-day", type=int),
        click.option("--timezone"), click.option("--hours", multiple=True, help="e.g. 'mon-fri 09:00-17:30' (repeatable)"),
        click.option("--language", "languages", multiple=True), click.option("--active/--inactive", default=None),
        click.option("--team", "teams", multiple=True, help="Add the member to this team (repeatable)."),
    ]):
        f = opt(f)
    return f


def _member_changes(kw: Mapping[str, Any]) -> dict[str, Any]:
    out = {k: kw[k] for k in ("name", "email", "weight", "max_open", "max_new_per_day", "timezone", "active") if kw.get(k) is not None}
    if kw.get("hours"):
        out["hours"] = list(kw["hours"])
    if kw.get("languages"):
        out["languages"] = list(kw["languages"])
    return out


def _add_to_teams(crm: Any, member: str, teams: tuple[str, ...]) -> None:
    routing, _ = _routing(crm)
    for t in teams:
        team = routing.directory.teams.get(t)
        if team is None:
            raise CrmError(f"unknown team {t!r}")
        if member not in team.members:
            _set_entry(crm, "queue" if team.is_queue else "team", t, {"members": [*team.members, member]}, create=False)
            routing, _ = _routing(crm)


@member_group.command("add")
@click.argument("member_id")
@_member_options
@_pass_crm
def member_add(crm: Any, member_id: str, **kw: Any) -> None:
    """Add a member (``--team`` puts them in teams)."""
    _set_entry(crm, "member", member_id, _member_changes(kw), create=True)
    _add_to_teams(crm, member_id, kw.get("teams") or ())
    click.echo(f"member {member_id} added")


@member_group.command("set")
@click.argument("member_id")
@_member_options
@_pass_crm
def member_set(crm: Any, member_id: str, **kw: Any) -> None:
    """Change a member (TOML members too: the database value wins)."""
    _set_entry(crm, "member", member_id, _member_changes(kw), create=False)
    _add_to_teams(crm, member_id, kw.get("teams") or ())
    click.echo(f"member {member_id} updated")


@member_group.command("away")
@click.argument("member_id")
@click.option("--from", "start", required=True, help="First day away (YYYY-MM-DD) or a time.")
@click.option("--to", "end", required=True, help="Last day away (inclusive) or a time.")
@click.option("--note", default="")
@_pass_crm
def member_away(crm: Any, member_id: str, start: str, end: str, note: str) -> None:
    """Record an away period (vacation); leads skip the member meanwhile."""
    routing, ws = _routing(crm)
    if member_id not in routing.directory.members:
        raise CrmError(f"unknown member {member_id!r}")
    from corecrm_plugins.routing_geo import store

    with crm.engine.connect() as conn:
        current = store.get_directory_entry(conn, ws, "member", member_id) or {}
    away = list(current.get("away") or routing.raw_members.get(member_id, {}).get("away") or [])
    away.append({"from": start, "to": end, **({"note": note} if note else {})})
    _set_entry(crm, "member", member_id, {"away": [{k: str(v) for k, v in a.items()} for a in away]}, create=False)
    click.echo(f"member {member_id} away from {start} to {end}")


@member_group.command("remove")
@click.argument("member_id")
@_pass_crm
def member_remove(crm: Any, member_id: str) -> None:
    """Remove a member added from the command line (TOML members: set --inactive instead)."""
    from corecrm_plugins.routing_geo import store

    routing, ws = _routing(crm)
    if member_id in routing.raw_members:
        raise CrmError(f"{member_id} is defined in {crm.config.where}; use `corecrm routing member set {member_id} --inactive`")
    with crm.engine.begin() as conn:
        if not store.delete_directory_entry(conn, ws, "member", member_id):
            raise CrmError(f"unknown member {member_id!r}")
    click.echo(f"member {member_id} removed")


@click.group("team")
def team_group() -> None:
    """Add or change teams and queues in the database (overlaid on the TOML)."""


def _team_options(f: Any) -> Any:
    for opt in reversed([
        click.option("--member", "members", multiple=True, help="Member id (repeatable; replaces the list)."),
        click.option("--strategy", type=click.Choice(["round_robin", "weighted", "least_loaded", "sticky"])),
        click.option("--mode", type=click.Choice(["push", "pull"])), click.option("--sla-minutes", type=float),
        click.option("--on-breach", type=click.Choice(["reassign", "escalate", "record"])), click.option("--escalate-to"),
        click.option("--queue", "is_queue", is_flag=True, help="A pull queue rather than a team."),
    ]):
        f = opt(f)
    return f


def _team_changes(kw: Mapping[str, Any]) -> dict[str, Any]:
    out = {k: kw[k] for k in ("strategy", "mode", "sla_minutes", "on_breach", "escalate_to") if kw.get(k) is not None}
    if kw.get("members"):
        out["members"] = list(kw["members"])
    return out


@team_group.command("add")
@click.argument("name")
@_team_options
@_pass_crm
def team_add(crm: Any, name: str, is_queue: bool, **kw: Any) -> None:
    """Add a team (or a queue with --queue)."""
    _set_entry(crm, "queue" if is_queue else "team", name, _team_changes(kw), create=True)
    click.echo(f"{'queue' if is_queue else 'team'} {name} added")


@team_group.command("set")
@click.argument("name")
@_team_options
@_pass_crm
def team_set(crm: Any, name: str, is_queue: bool, **kw: Any) -> None:
    """Change a team or queue."""
    routing, _ = _routing(crm)
    t = routing.directory.teams.get(name)
    kind = "queue" if (t.is_queue if t else is_queue) else "team"
    _set_entry(crm, kind, name, _team_changes(kw), create=False)
    click.echo(f"{kind} {name} updated")


@click.group("routing")
def routing_group() -> None:
    """Territory routing: sweep SLAs, simulate rule changes, manage teams and members."""


for _c in (sweep_cmd, simulate_cmd, check_cmd, members_cmd, teams_cmd, member_group, team_group):
    routing_group.add_command(_c)


def commands() -> list[CliCommand]:
    return [
        CliCommand(claim_cmd, group="leads"),
        CliCommand(routing_group, group=None),
    ]


# --------------------------------------------------------------------------- report


def _run_report(crm: Any, workspace: str | None, params: Mapping[str, Any] | None = None) -> Any:
    """``corecrm report routing [--from D] [--to D] [--by team]``."""
    from corecrm_plugins.routing_geo import ensure_schema, ops

    params = dict(params or {})
    ensure_schema(crm.engine)

    def day(v: Any, *, end: bool) -> dt.datetime | None:
        if v in (None, ""):
            return None
        d = v if isinstance(v, dt.date) else dt.date.fromisoformat(str(v))
        if isinstance(d, dt.datetime):
            d = d.date()
        if end:
            d = d + dt.timedelta(days=1)  # --to is inclusive
        return dt.datetime(d.year, d.month, d.day, tzinfo=dt.timezone.utc)

    by = [b for b in params.get("by") or []]
    for b in by:
        if b not in ("member", "team"):
            raise CrmError(f"report routing: --by {b!r} is not supported (member, team)")
    return ops.report(crm.engine, crm.ws(workspace), since=day(params.get("date_from"), end=False),
                      until=day(params.get("date_to"), end=True), by=by[0] if by else "member")


def routing_report() -> Report:
    return Report(
        name="routing",
        title="Routing: speed to lead, SLA breaches, load per member",
        run=_run_report,
        description="Time-to-assign and time-to-first-contact percentiles (minutes), SLA breaches and open leads per member (--by team).",
    )
