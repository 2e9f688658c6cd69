"""Commands: ``corecrm serve``, ``corecrm web keys …``, ``corecrm web forms``, ``corecrm deliveries …``."""

from __future__ import annotations

import datetime as dt
import logging
import secrets
import threading
import time
from typing import Any

import click

from corecrm.records import CliCommand

log = logging.getLogger("corecrm.capture_web.cli")

PLUGIN = "capture_web"


def _crm() -> Any:
    from corecrm.clitools import state

    return state().crm


def _forms(crm: Any) -> dict[str, Any]:
    from corecrm_plugins.capture_web.forms import parse_forms

    return parse_forms(crm.settings(PLUGIN).get("forms") or {}, f"plugins.{PLUGIN}.forms")


def _targets(crm: Any, workspace: str) -> dict[str, Any]:
    from corecrm_plugins.capture_web.deliveries import parse_targets

    return parse_targets(crm.settings(PLUGIN, workspace).get("targets") or {}, f"plugins.{PLUGIN}.targets")


def _parse_now(value: str | None, crm: Any) -> dt.datetime:
    if not value:
        return crm.now()
    try:
        t = dt.datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"expected an ISO 8601 time, got {value!r}", param_hint="--now") from None
    return t if t.tzinfo else t.replace(tzinfo=dt.timezone.utc)


def server_settings(crm: Any) -> Any:
    from corecrm_plugins.capture_web.server import ServerSettings

    s = crm.settings(PLUGIN)
    secret = s.get("secret") or ""
    if not secret:
        log.warning("plugins.capture_web.secret is not set: form tokens are signed with a random key and forms served before a restart must be reloaded")
    return ServerSettings(
        forms=_forms(crm),
        max_body_bytes=int(s.get("max_body_bytes", 65536)),
        rate_per_ip=int(s.get("rate_per_ip", 60)),
        rate_per_key=int(s.get("rate_per_key", 600)),
        min_fill_seconds=float(s.get("min_fill_seconds", 3.0)),
        secret=(secret or secrets.token_hex(32)).encode(),
        trust_forwarded=bool(s.get("trust_forwarded", False)),
    )


def build_app(crm: Any, *, recover: bool = True) -> Any:
    """The ASGI app for a CRM (also what tests and the benchmark serve)."""
    from corecrm_plugins.capture_web.backend import CrmBackend, recover_pending
    from corecrm_plugins.capture_web.server import create_app

    backend = CrmBackend(crm)
    settings = server_settings(crm)
    if recover:
        for ws in sorted({f.workspace or crm.workspace for f in settings.forms.values()} | {crm.workspace}):
            n = recover_pending(backend, ws)
            if n:
                click.echo(f"processed {n} web capture(s) left unprocessed by the last run ({ws})", err=True)
    return create_app(backend, settings)


def delivery_workspaces(crm: Any) -> list[str]:
    return sorted({crm.workspace} | set(crm.config.workspaces()))


class DeliveryLoop:
    """Sends due deliveries every ``interval`` seconds in a thread of ``corecrm serve``."""

    def __init__(self, crm: Any, interval: float) -> None:
        self.crm, self.interval = crm, interval
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._run, name="capture_web-deliveries", daemon=True)

    def _run(self) -> None:
        from corecrm_plugins.capture_web import deliveries

        while not self.stop_event.wait(self.interval):
            for ws in delivery_workspaces(self.crm):
                try:
                    deliveries.run(self.crm.engine, _targets(self.crm, ws), self.crm.now(), workspace=ws)
                except Exception:
                    log.exception("delivery run failed (rows stay queued)")


@click.command("serve")
@click.option("--host", default=None, help="Address to listen on (default: plugins.capture_web.host, 127.0.0.1).")
@click.option("--port", type=int, default=None, help="Port (default: plugins.capture_web.port, 8000).")
@click.option("--deliveries/--no-deliveries", "run_deliveries", default=True, help="Also send due deliveries every deliver_every seconds.")
def serve(host: str | None, port: int | None, run_deliveries: bool) -> None:
    """Serve the capture endpoints: POST /capture/FORM, GET /forms/FORM, GET /health."""
    import uvicorn

    crm = _crm()
    s = crm.settings(PLUGIN)
    app = build_app(crm)
    loop = None
    every = float(s.get("deliver_every", 5.0))
    if run_deliveries and every > 0:
        loop = DeliveryLoop(crm, every)
        loop.thread.start()
    try:
        uvicorn.run(app, host=host or s.get("host", "127.0.0.1"), port=port if port is not None else int(s.get("port", 8000)), log_level="info", lifespan="off")
    finally:
        if loop is not None:
            loop.stop_event.set()


# --------------------------------------------------------------------------- web keys / forms


@click.group("keys")
def keys_group() -> None:
    """Per-form API keys for server-to-server posts (stored hashed)."""


def _check_form(crm: Any, form: str) -> Any:
    forms = _forms(crm)
    if form not in forms:
        raise click.ClickException(f"no form named {form!r} in plugins.capture_web.forms (forms: {', '.join(forms) or 'none'})")
    return forms[form]


@keys_group.command("create")
@click.argument("form")
def keys_create(form: str) -> None:
    """Create an API key for FORM (printed once; only its hash is stored)."""
    from corecrm_plugins.capture_web import keys

    crm = _crm()
    f = _check_form(crm, form)
    key_id, key = keys.create(crm.engine, f.workspace or crm.workspace, form, crm.now())
    click.echo(f"key {key_id} for form {form} (shown once, store it now):")
    click.echo(key)


@keys_group.command("rotate")
@click.argument("form")
def keys_rotate(form: str) -> None:
    """Create a new key for FORM and revoke its older keys, in one transaction."""
    from corecrm_plugins.capture_web import keys

    crm = _crm()
    f = _check_form(crm, form)
    key_id, key = keys.create(crm.engine, f.workspace or crm.workspace, form, crm.now(), revoke_others=True)
    click.echo(f"key {key_id} for form {form}; older keys of {form} are revoked (shown once, store it now):")
    click.echo(key)


@keys_group.command("revoke")
@click.argument("key_id")
@click.option("--form", help="Form the key belongs to (to find its workspace).")
def keys_revoke(key_id: str, form: str | None) -> None:
    """Revoke one key by its id."""
    from corecrm_plugins.capture_web import keys

    crm = _crm()
    ws = (_check_form(crm, form).workspace if form else None) or crm.workspace
    if not keys.revoke(crm.engine, ws, key_id, crm.now()):
        raise click.ClickException(f"no live key {key_id!r} in workspace {ws}")
    click.echo(f"revoked {key_id}")


@keys_group.command("list")
@click.option("--form", help="Only this form's keys.")
def keys_list(form: str | None) -> None:
    """List keys (ids and dates; the keys themselves are never stored)."""
    from corecrm.clitools import echo_table
    from corecrm_plugins.capture_web import keys

    crm = _crm()
    workspaces = sorted({f.workspace or crm.workspace for f in _forms(crm).values()} | {crm.workspace})
    rows = []
    for ws in workspaces:
        for k in keys.list_keys(crm.engine, ws, form):
            rows.append([k.key_id, k.form, k.workspace, k.created_at, k.revoked_at or "", "revoked" if k.revoked_at else "live"])
    echo_table(["key_id", "form", "workspace", "created_at", "revoked_at", "status"], rows)


@click.command("forms")
def forms_cmd() -> None:
    """List the configured capture forms."""
    from corecrm.clitools import echo_table

    crm = _crm()
    rows = [[f.name, f.workspace or crm.workspace, ", ".join(f.required), "yes" if f.require_key else "no", f.source or "", f.campaign or ""] for f in _forms(crm).values()]
    echo_table(["form", "workspace", "required", "key", "source", "campaign"], rows)


# --------------------------------------------------------------------------- deliveries


@click.command("list")
@click.option("--status", type=click.Choice(["pending", "sending", "delivered", "failed"]), help="Only rows with this status.")
@click.option("--limit", type=int, default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def deliveries_list(status: str | None, limit: int, as_json: bool) -> None:
    """Show queued, delivered and failed deliveries (newest first)."""
    from corecrm.clitools import echo_json, echo_table
    from corecrm_plugins.capture_web import deliveries, tables

    crm = _crm()
    tables.ensure(crm.engine)
    rows = deliveries.list_rows(crm.engine, crm.workspace, status, limit)
    cols = ["id", "target", "kind", "event_type", "lead_id", "status", "attempts", "next_attempt_at", "last_error"]
    if as_json:
        echo_json([{c: r[c] for c in cols + ["idempotency_key", "created_at", "delivered_at"]} for r in rows])
        return
    echo_table(cols, [[r[c] for c in cols] for r in rows])


@click.command("run")
@click.option("--now", "now_", help="Clock for this run (ISO 8601): what is due by then is sent.")
@click.option("--watch", is_flag=True, help="Keep running, sending every --every seconds.")
@click.option("--every", type=float, default=5.0, show_default=True)
def deliveries_run(now_: str | None, watch: bool, every: float) -> None:
    """Send the deliveries that are due, with retries and backoff."""
    from corecrm_plugins.capture_web import deliveries, tables

    crm = _crm()
    tables.ensure(crm.engine)
    while True:
        for ws in delivery_workspaces(crm):
            res = deliveries.run(crm.engine, _targets(crm, ws), _parse_now(now_, crm), workspace=ws)
            if res.delivered or res.retried or res.failed or not watch:
                click.echo(f"{ws}: {res}")
        if not watch:
            return
        time.sleep(every)


@click.command("retry")
@click.argument("delivery_id", type=int)
def deliveries_retry(delivery_id: int) -> None:
    """Queue a failed delivery again (after the receiver is fixed)."""
    from corecrm_plugins.capture_web import deliveries, tables

    crm = _crm()
    tables.ensure(crm.engine)
    if not deliveries.requeue(crm.engine, crm.workspace, delivery_id, crm.now()):
        raise click.ClickException(f"no failed delivery {delivery_id} in workspace {crm.workspace}")
    click.echo(f"delivery {delivery_id} queued again")


def commands() -> list[CliCommand]:
    return [
        CliCommand(serve),
        CliCommand(keys_group, group="web", help="Web capture: forms and API keys (plugin capture_web)."),
        CliCommand(forms_cmd, group="web"),
        CliCommand(deliveries_list, group="deliveries", help="Outbound deliveries to partners and webhooks (plugin capture_web)."),
        CliCommand(deliveries_run, group="deliveries"),
        CliCommand(deliveries_retry, group="deliveries"),
    ]
