"""The ``corecrm`` command line.

Plugins add commands through the ``crm_cli_commands`` hook. They are looked
up per invocation (never added to these module-level groups), so a disabled
plugin's commands simply do not exist and two CRMs in one process do not see
each other's commands.
"""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path
from typing import Any

import click

from corecrm.clitools import CliState, echo_json, echo_table, fail, json_option, pass_crm, state
from corecrm.errors import CrmError


class OverlayGroup(click.Group):
    """A group whose commands are the core's plus those plugins add to it."""

    def _plugin_commands(self, ctx: click.Context) -> dict[str, click.Command]:
        obj = _root_state(ctx)
        try:
            table = plugin_command_table(obj)
        except CrmError as exc:
            fail(str(exc))
        key = None if self.name == "corecrm" else self.name
        return table.get(key, {})

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(self._plugin_commands(ctx)))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        cmd = super().get_command(ctx, cmd_name)
        if cmd is not None:
            return cmd
        return self._plugin_commands(ctx).get(cmd_name)


def _root_state(ctx: click.Context) -> CliState:
    """The invocation's state. Click resolves subcommands before running the
    root callback, so the state is built here from the root's parsed options."""
    root = ctx.find_root()
    if not isinstance(root.obj, CliState):
        p = root.params
        root.obj = CliState(p.get("config"), p.get("workspace"), p.get("database"))
        root.call_on_close(root.obj.close)
    return root.obj


def plugin_command_table(obj: CliState) -> dict[str | None, dict[str, click.Command]]:
    """``{group: {name: command}}`` from the enabled plugins; a name clash fails."""
    cached = getattr(obj, "_commands", None)
    if cached is not None:
        return cached
    table: dict[str | None, dict[str, click.Command]] = {}
    for rec in obj.plugins.collect("crm_cli_commands"):
        group = rec.group
        name = rec.command.name
        core_group = _CORE_GROUPS.get(group) if group else None
        if group is None and name in main.commands:
            raise CrmError(f"plugin {rec.plugin}: command {name!r} clashes with a core command")
        if core_group is not None and name in core_group.commands:
            raise CrmError(f"plugin {rec.plugin}: command '{group} {name}' clashes with a core command")
        if group is not None and core_group is None and group in main.commands:
            raise CrmError(f"plugin {rec.plugin}: {group!r} is a core command, not a group")
        slot = table.setdefault(group, {})
        if name in slot:
            raise CrmError(f"plugin {rec.plugin}: command {(group + ' ') if group else ''}{name!r} is already provided by another plugin")
        slot[name] = rec.command
        if group is not None and core_group is None:
            top = table.setdefault(None, {})
            if group not in top:
                top[group] = OverlayGroup(name=group, help=rec.help or f"Commands of plugin {rec.plugin}.")
    obj._commands = table  # type: ignore[attr-defined]
    return table


class RootGroup(OverlayGroup):
    """The ``corecrm`` group: any :class:`CrmError` a command lets escape becomes a one-line error."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except CrmError as exc:
            fail(str(exc))


@click.group(cls=RootGroup, name="corecrm")
@click.option("--config", "config", type=click.Path(dir_okay=False), envvar="CORECRM_CONFIG", help="Path to corecrm.toml (default: ./corecrm.toml).")
@click.option("--workspace", "-w", envvar="CORECRM_WORKSPACE", help="Workspace (tenant) to act on (default: default).")
@click.option("--database", envvar="CORECRM_DATABASE", help="Database URL, overriding the configuration.")
@click.version_option(package_name="corecrm")
@click.pass_context
def main(ctx: click.Context, config: str | None, workspace: str | None, database: str | None) -> None:
    """corecrm: a small CRM core whose behaviour lives in plugins."""
    _root_state(ctx)


# --------------------------------------------------------------------------- init / demo


@main.command()
@click.option("--dir", "directory", type=click.Path(file_okay=False), default=".", help="Where to write corecrm.toml and the database.")
@click.option("--force", is_flag=True, help="Overwrite an existing corecrm.toml.")
def init(directory: str, force: bool) -> None:
    """Write a commented corecrm.toml and create the database."""
    from corecrm.app import Crm
    from corecrm.config import Config
    from corecrm.configfile import write_config

    target = Path(directory)
    target.mkdir(parents=True, exist_ok=True)
    path = target / "corecrm.toml"
    if path.exists() and not force:
        fail(f"{path} exists (use --force to overwrite)")
    write_config(path)
    crm = Crm(Config.load(path))
    crm.init_db()
    click.echo(f"wrote {path}")
    click.echo(f"created {crm.database_url}")


@main.command()
@click.option("--dir", "directory", type=click.Path(file_okay=False), default=None, help="Where to build the demo CRM (default: a temporary directory).")
@click.option("--json", "as_json", is_flag=True, help="Print the demo's results as JSON.")
def demo(directory: str | None, as_json: bool) -> None:
    """Build a CRM from realistic sample data, run it end to end and show the results."""
    from corecrm.demo.run import run_demo

    run_demo(directory, as_json=as_json)


# --------------------------------------------------------------------------- capture


@main.command()
@click.argument("paths", nargs=-1, required=True)
@click.option("--format", "fmt", help="Capture format to use instead of detecting it.")
@click.option("--source", help="Source for leads that do not name one.")
@json_option
@pass_crm
def capture(crm: Any, paths: tuple[str, ...], fmt: str | None, source: str | None, as_json: bool) -> None:
    """Capture raw payloads (files, or - for standard input) and print the resulting leads."""
    from corecrm.records import RawCapture

    results = []
    failed = False
    for p in paths:
        if p == "-":
            data = sys.stdin.buffer.read()
            raw = RawCapture(payload=data, origin="stdin", format=fmt, meta={"source": source} if source else {})
            strict = False  # standard input cannot be read twice: store it, quarantine on failure
        else:
            path = Path(p)
            try:
                data = path.read_bytes()
            except OSError as exc:
                fail(f"{p}: {exc.strerror}")
            raw = RawCapture(payload=data, origin=path.name, format=fmt, meta={"source": source} if source else {})
            strict = True
        try:
            res = crm.capture([raw], strict=strict)[0]
        except CrmError as exc:
            fail(str(exc))
        results.append(res)
        if res.status in ("quarantined", "rejected"):
            failed = True
    if as_json:
        echo_json([{"capture_id": r.capture_id, "origin": r.origin, "status": r.status, "lead_ids": r.lead_ids, "reason": r.reason, "format": r.format} for r in results])
    else:
        for r in results:
            ids = ", ".join(str(i) for i in r.lead_ids) or "-"
            why = f" ({r.reason})" if r.reason else ""
            click.echo(f"{r.origin}: capture {r.capture_id} {r.status}{why}; leads: {ids}")
    if failed:
        sys.exit(1)


@main.group(cls=OverlayGroup)
def sources() -> None:
    """Pollable capture sources (mailboxes, feeds) that plugins declare."""


@sources.command("list")
@json_option
@pass_crm
def sources_list(crm: Any, as_json: bool) -> None:
    """List the capture sources of the workspace."""
    srcs = crm.capture_sources()
    if as_json:
        echo_json([{"name": s.name, "kind": s.kind, "plugin": s.plugin, "description": s.description} for s in srcs.values()])
        return
    echo_table(["name", "kind", "plugin", "description"], [[s.name, s.kind, s.plugin, s.description] for s in srcs.values()], max_width=70)


@sources.command("poll")
@click.argument("names", nargs=-1)
@pass_crm
def sources_poll(crm: Any, names: tuple[str, ...]) -> None:
    """Poll every source (or the named ones) once and capture what is new."""
    srcs = crm.capture_sources()
    unknown = [n for n in names if n not in srcs]
    if unknown:
        fail(f"unknown source {unknown[0]!r} (known: {', '.join(srcs) or 'none'})")
    for name in names or list(srcs):
        n = srcs[name].poll(crm, crm.workspace)
        click.echo(f"{name}: {n} new captures")


# --------------------------------------------------------------------------- leads


@main.group(cls=OverlayGroup)
def leads() -> None:
    """List, show and work on leads."""


@leads.command("list")
@click.option("--stage", help="Only leads in this lifecycle stage.")
@click.option("--owner", help="Only leads owned by this rep.")
@click.option("--team", help="Only leads of this team.")
@click.option("--limit", type=int, default=None)
@click.option("--order", type=click.Choice(["id", "score"]), default="id")
@json_option
@pass_crm
def leads_list(crm: Any, stage: str | None, owner: str | None, team: str | None, limit: int | None, order: str, as_json: bool) -> None:
    """List leads of the workspace."""
    from corecrm.lifecycle import parse_stage
    from corecrm.rows import lead_to_json

    try:
        if stage:
            parse_stage(stage)
        rows = crm.leads(stage=stage, owner=owner, team=team, limit=limit, order=order)
    except CrmError as exc:
        fail(str(exc))
    if as_json:
        echo_json([lead_to_json(ld) for ld in rows])
        return
    echo_table(
        ["id", "stage", "name", "email", "company", "country", "source", "score", "grade", "owner", "team"],
        [[ld.id, ld.stage.value, ld.full_name, ld.email, ld.company, ld.country, ld.source, ld.score, ld.grade, ld.owner, ld.team] for ld in rows],
    )


@leads.command("show")
@click.argument("lead_id", type=int)
@json_option
@pass_crm
def leads_show(crm: Any, lead_id: int, as_json: bool) -> None:
    """Show one lead with its history."""
    from corecrm.explain import render_lead
    from corecrm.rows import lead_to_json

    try:
        lead = crm.lead(lead_id)
        events = crm.history(lead_id)
    except CrmError as exc:
        fail(str(exc))
    if as_json:
        echo_json(lead_to_json(lead, events))
    else:
        click.echo(render_lead(crm, lead, events))


@leads.command("move")
@click.argument("lead_id", type=int)
@click.argument("stage")
@click.option("--reason", default="", help="Why (kept in the history).")
@pass_crm
def leads_move(crm: Any, lead_id: int, stage: str, reason: str) -> None:
    """Move a lead to another lifecycle stage (validated)."""
    try:
        lead = crm.move_stage(lead_id, stage, reason=reason)
    except CrmError as exc:
        fail(str(exc))
    click.echo(f"lead {lead_id}: {lead.stage.value}")


@leads.command("convert")
@click.argument("lead_id", type=int)
@click.option("--deal", is_flag=True, help="Also open a deal.")
@click.option("--amount", type=float, help="Deal amount.")
@click.option("--pipeline", help="Deal pipeline (default: the first configured).")
@click.option("--external-id", help="Customer id in another system.")
@pass_crm
def leads_convert(crm: Any, lead_id: int, deal: bool, amount: float | None, pipeline: str | None, external_id: str | None) -> None:
    """Make a lead a customer (idempotent: a retry returns the same customer)."""
    try:
        customer_id, deal_id = crm.convert(lead_id, deal=deal or amount is not None, amount=amount, pipeline=pipeline, external_id=external_id)
    except CrmError as exc:
        fail(str(exc))
    click.echo(f"lead {lead_id}: customer {customer_id}" + (f", deal {deal_id}" if deal_id else ""))


@leads.command("log")
@click.argument("lead_id", type=int)
@click.option("--type", "type_", required=True, help="call, email, meeting, note, task, sms or chat.")
@click.option("--note", help="What happened or what to do.")
@click.option("--owner", help="Rep (default: the lead's owner).")
@click.option("--due", "due", help="Due date/time for a task (ISO 8601).")
@click.option("--deal", "deal_id", type=int, help="Log against this deal of the lead.")
@pass_crm
def leads_log(crm: Any, lead_id: int, type_: str, note: str | None, owner: str | None, due: str | None, deal_id: int | None) -> None:
    """Log an activity against a lead (the first contact stamps the time to first contact)."""
    try:
        due_at = _parse_when(due, "--due") if due else None
        act = crm.log_activity(lead_id, type_, note=note, owner=owner, due_at=due_at, deal_id=deal_id)
    except CrmError as exc:
        fail(str(exc))
    click.echo(f"activity {act} logged on lead {lead_id}")


@main.command()
@click.argument("lead_id", type=int)
@pass_crm
def explain(crm: Any, lead_id: int) -> None:
    """Explain a lead: its history with the reason for every score, route, merge and stage change."""
    from corecrm.explain import render_explain

    try:
        lead = crm.lead(lead_id)
        events = crm.history(lead_id)
    except CrmError as exc:
        fail(str(exc))
    click.echo(render_explain(lead, events))


# --------------------------------------------------------------------------- tasks and deals


@main.group(cls=OverlayGroup)
def tasks() -> None:
    """Tasks and activities of reps."""


@tasks.command("list")
@click.option("--owner", help="Only this rep's tasks.")
@click.option("--all", "show_all", is_flag=True, help="Include done tasks.")
@json_option
@pass_crm
def tasks_list(crm: Any, owner: str | None, show_all: bool, as_json: bool) -> None:
    """List open tasks, soonest due first."""
    rows = crm.activities(owner=owner, open_only=not show_all, types=["task"])
    if as_json:
        echo_json(rows)
        return
    echo_table(["id", "lead", "deal", "owner", "due", "done", "note"], [[r["id"], r["lead_id"], r["deal_id"], r["owner"], r["due_at"], "yes" if r["done"] else "", r["note"]] for r in rows])


@tasks.command("done")
@click.argument("activity_id", type=int)
@pass_crm
def tasks_done(crm: Any, activity_id: int) -> None:
    """Mark a task done."""
    try:
        crm.complete_task(activity_id)
    except CrmError as exc:
        fail(str(exc))
    click.echo(f"task {activity_id} done")


@main.group(cls=OverlayGroup)
def deals() -> None:
    """Deals in pipelines."""


@deals.command("create")
@click.argument("lead_id", type=int)
@click.option("--pipeline")
@click.option("--amount", type=float)
@click.option("--name")
@click.option("--stage")
@click.option("--close", "expected_close", help="Expected close date (YYYY-MM-DD).")
@pass_crm
def deals_create(crm: Any, lead_id: int, pipeline: str | None, amount: float | None, name: str | None, stage: str | None, expected_close: str | None) -> None:
    """Open a deal for a lead."""
    try:
        close = _parse_date(expected_close, "--close") if expected_close else None
        deal_id = crm.create_deal(lead_id, pipeline=pipeline, amount=amount, name=name, stage=stage, expected_close=close)
    except CrmError as exc:
        fail(str(exc))
    click.echo(f"deal {deal_id} opened for lead {lead_id}")


@deals.command("move")
@click.argument("deal_id", type=int)
@click.argument("stage")
@click.option("--reason", help="Why (required when the deal is lost).")
@pass_crm
def deals_move(crm: Any, deal_id: int, stage: str, reason: str | None) -> None:
    """Move a deal to a stage of its pipeline (won/lost close it)."""
    try:
        d = crm.move_deal(deal_id, stage, reason=reason)
    except CrmError as exc:
        fail(str(exc))
    click.echo(f"deal {deal_id}: {d['stage']} ({d['status']})")


@deals.command("show")
@click.argument("deal_id", type=int)
@json_option
@pass_crm
def deals_show(crm: Any, deal_id: int, as_json: bool) -> None:
    """Show a deal with its stage's playbook and the activities logged."""
    try:
        d = crm.deal(deal_id)
    except CrmError as exc:
        fail(str(exc))
    acts = crm.activities(deal_id=deal_id)
    done_types = {a["type"] for a in acts}
    d["playbook_status"] = [{"activity": p, "done": p in done_types} for p in d["playbook"]]
    d["activities"] = acts
    if as_json:
        echo_json(d)
        return
    click.echo(f"deal {d['id']}: {d['name']}  pipeline {d['pipeline']}  stage {d['stage']} ({d['status']})  amount {d['amount']}  p={d['probability']}")
    for p in d["playbook_status"]:
        click.echo(f"  playbook: [{'x' if p['done'] else ' '}] {p['activity']}")
    for a in acts:
        click.echo(f"  {a['at']:%Y-%m-%d %H:%M} {a['type']}: {a['note'] or ''}")


@deals.command("list")
@click.option("--status", type=click.Choice(["open", "won", "lost"]))
@click.option("--pipeline")
@json_option
@pass_crm
def deals_list(crm: Any, status: str | None, pipeline: str | None, as_json: bool) -> None:
    """List deals."""
    rows = crm.deals(status=status, pipeline=pipeline)
    if as_json:
        echo_json(rows)
        return
    echo_table(["id", "lead", "pipeline", "stage", "status", "amount", "name"], [[r["id"], r["lead_id"], r["pipeline"], r["stage"], r["status"], r["amount"], r["name"]] for r in rows])


# --------------------------------------------------------------------------- plugins and config


@main.group(cls=OverlayGroup)
def plugins() -> None:
    """Installed plugins."""


@plugins.command("list")
@json_option
def plugins_list(as_json: bool) -> None:
    """List installed plugins: version, distribution, enabled, bundled, hooks."""
    try:
        infos = state().plugins.list()
    except CrmError as exc:
        fail(str(exc))
    if as_json:
        echo_json([i.to_json() for i in infos])
        return
    echo_table(
        ["name", "version", "distribution", "enabled", "kind", "hooks"],
        [[i.name, i.version, i.distribution, "yes" if i.loaded else ("error" if i.error else "no"), "bundled" if i.bundled else "third-party", ", ".join(h.removeprefix("crm_") for h in i.hooks)] for i in infos],
        max_width=90,
    )
    for i in infos:
        if i.error:
            click.echo(f"warning: plugin {i.name} failed to import: {i.error}", err=True)


@plugins.command("enable")
@click.argument("name")
def plugins_enable(name: str) -> None:
    """Enable a plugin in corecrm.toml (comments are kept)."""
    _toggle_plugin(name, True)


@plugins.command("disable")
@click.argument("name")
def plugins_disable(name: str) -> None:
    """Disable a plugin in corecrm.toml (comments are kept); it will not even be imported."""
    _toggle_plugin(name, False)


def _toggle_plugin(name: str, enable: bool) -> None:
    from importlib.metadata import entry_points

    from corecrm.config import CONFIG_NAME, find_config
    from corecrm.plugins import ENTRY_POINT_GROUP
    from corecrm.configfile import toggle_plugin

    st = state()
    installed = {ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)}
    if name not in installed:
        fail(f"unknown plugin {name!r} (installed: {', '.join(sorted(installed))})")
    try:
        path = find_config(st.config_path) or Path.cwd() / CONFIG_NAME
        changed = toggle_plugin(path, name, enable)
    except CrmError as exc:
        fail(str(exc))
    verb = "enabled" if enable else "disabled"
    click.echo(f"{name} {verb} in {path}" if changed else f"{name} already {verb} in {path}")


@main.group(cls=OverlayGroup)
def config() -> None:
    """The configuration."""


@config.command("check")
def config_check() -> None:
    """Validate corecrm.toml and every plugin's settings; print warnings; exit 1 on error."""
    import warnings

    st = state()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            cfg = st.config
            pm = st.plugins
            checks: list[str] = []
            for ws in dict.fromkeys([cfg.default_workspace, *cfg.workspaces()]):
                for name in pm.loaded_names():
                    pm.settings(name, ws)
                for plugin, found in pm.each("crm_config_warnings", workspace=ws):
                    checks.extend(f"{plugin} (workspace {ws}): {w}" for w in found)
        except CrmError as exc:
            fail(str(exc))
        except Exception as exc:
            from corecrm.plugins import HookCallError

            if not isinstance(exc, HookCallError):
                raise
            # a plugin's cross-key check (e.g. a rule naming an unknown team) raises ConfigError
            fail(str(exc.error) if isinstance(exc.error, CrmError) else str(exc))
    for w in caught:
        click.echo(f"warning: {w.message}", err=True)
    for c in checks:
        click.echo(f"warning: {c}", err=True)
    click.echo(f"{cfg.where}: ok ({len(pm.loaded_names())} plugins enabled)")


# --------------------------------------------------------------------------- retry / quarantine / db


@main.command()
@click.option("--id", "ids", type=int, multiple=True, help="Only these quarantine entries.")
@click.option("--accept-review", is_flag=True, help="Also release leads held for review by screening (screening is skipped for them).")
@json_option
@pass_crm
def retry(crm: Any, ids: tuple[int, ...], accept_review: bool, as_json: bool) -> None:
    """Process quarantined captures and leads again, after a plugin was fixed or disabled."""
    try:
        done = crm.retry(ids=list(ids) or None, accept_review=accept_review)
    except CrmError as exc:
        fail(str(exc))
    if as_json:
        echo_json(done)
    else:
        click.echo(f"resolved {done['resolved']}, still quarantined {done['still_quarantined']}")
    if done["still_quarantined"]:
        sys.exit(1)


@main.group(cls=OverlayGroup)
def quarantine() -> None:
    """Captures and leads held back by errors or for review."""


@quarantine.command("list")
@json_option
@pass_crm
def quarantine_list(crm: Any, as_json: bool) -> None:
    """List what is quarantined, with the step, the plugin and the error."""
    rows = crm.quarantined()
    if as_json:
        echo_json(rows)
        return
    echo_table(["id", "capture", "item", "status", "step", "plugin", "error"], [[r["id"], r["capture_id"], r["item_index"], r["status"], r["step"], r["plugin"], r["error"]] for r in rows], max_width=70)


@main.group(cls=OverlayGroup)
def db() -> None:
    """The database schema."""


@db.command("upgrade")
def db_upgrade() -> None:
    """Bring the database schema to this version of corecrm (keeps all data)."""
    from corecrm.app import Crm

    st = state()
    try:
        crm = Crm(st.config, database=st.database, workspace=st.workspace, plugins=st.plugins)
        before, after = crm.init_db()
    except CrmError as exc:
        fail(str(exc))
    click.echo(f"{crm.database_url}: {before or 'empty'} -> {after}")


# --------------------------------------------------------------------------- reports


class ReportGroup(OverlayGroup):
    """``report`` subcommands are built from the reports plugins register."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(_reports(ctx)))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        cmd = super().get_command(ctx, cmd_name)
        if cmd is not None:
            return cmd
        rep = _reports(ctx).get(cmd_name.replace("-", "_"))
        return _report_command(rep) if rep is not None else None


@main.group(cls=ReportGroup, invoke_without_command=True)
@click.option("--list", "show_list", is_flag=True, help="List the reports installed plugins provide.")
@click.pass_context
def report(ctx: click.Context, show_list: bool) -> None:
    """Reports that plugins provide: corecrm report NAME [--json|--csv] [--chart PATH]."""
    if ctx.invoked_subcommand is not None:
        return
    reports = _reports(ctx)
    if not show_list and not reports:
        click.echo("no report is installed")
        return
    if not show_list:
        click.echo(ctx.get_help())
        return
    echo_table(["name", "plugin", "title"], [[r.name, r.plugin, r.title] for r in reports.values()], max_width=80)


def _reports(ctx: click.Context) -> dict[str, Any]:
    st = _root_state(ctx)
    try:
        return st.plugins.collect_named("crm_reports", workspace=st.workspace or st.config.default_workspace, what="report")
    except CrmError as exc:
        fail(str(exc))
        raise




def _report_command(rep: Any) -> click.Command:
    from corecrm.reports import run_report_command

    params: list[click.Parameter] = [
        click.Option(["--from", "date_from"], help="Start of the period (YYYY-MM-DD)."),
        click.Option(["--to", "date_to"], help="End of the period (YYYY-MM-DD, inclusive)."),
        click.Option(["--by"], multiple=True, help="Break down by this dimension (repeatable)."),
        click.Option(["--json", "as_json"], is_flag=True, help="Print JSON."),
        click.Option(["--csv", "as_csv"], is_flag=True, help="Print CSV (formula-safe)."),
        click.Option(["--chart"], type=click.Path(dir_okay=False), help="Write a chart (SVG or PNG) to this path."),
        *list(rep.params),
    ]

    def callback(**kwargs: Any) -> None:
        run_report_command(state().crm, rep, kwargs)

    return click.Command(rep.name, params=params, callback=callback, help=f"{rep.title} (plugin {rep.plugin}). {rep.description}")


# --------------------------------------------------------------------------- helpers


def _parse_when(text: str, option: str) -> dt.datetime:
    try:
        value = dt.datetime.fromisoformat(text)
    except ValueError:
        raise CrmError(f"{option}: not an ISO 8601 date/time: {text!r}") from None
    return value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)


def _parse_date(text: str, option: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise CrmError(f"{option}: not a date (YYYY-MM-DD): {text!r}") from None


_CORE_GROUPS: dict[str, click.Group] = {
    "sources": sources,
    "leads": leads,
    "tasks": tasks,
    "deals": deals,
    "plugins": plugins,
    "config": config,
    "quarantine": quarantine,
    "db": db,
    "report": report,
}


if __name__ == "__main__":  # pragma: no cover
    main()

