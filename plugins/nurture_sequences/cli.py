"""``corecrm nurture …`` commands."""

from __future__ import annotations

import datetime as dt
import json
import time
from typing import Any, Callable

import click

from corecrm.records import CliCommand


def _now(value: str | None, crm: Any) -> dt.datetime:
    if value:
        try:
            t = dt.datetime.fromisoformat(value)
        except ValueError:
            raise click.BadParameter(f"expected an ISO date-time such as 2026-03-01T09:00:00+00:00, got {value!r}", param_hint="--now") from None
        return t if t.tzinfo else t.replace(tzinfo=dt.timezone.utc)
    now = getattr(crm, "now", None)
    return now() if callable(now) else dt.datetime.now(dt.timezone.utc)


def _crm(ctx: click.Context) -> Any:
    """The CRM the core's CLI opened for this invocation (``--config``, ``--workspace``, ``--database``)."""
    from corecrm.clitools import state

    return state().crm


def _ws(ctx: click.Context, crm: Any) -> str:
    return crm.ws(None)


def _echo_json(data: Any) -> None:
    from corecrm.clitools import echo_json

    echo_json(data)


@click.command("run")
@click.option("--now", "now_s", metavar="ISO", help="Act as if it were this time (tests, catching up).")
@click.option("--watch", is_flag=True, help="Keep running: a round every watch_interval (Ctrl-C stops).")
@click.option("--json", "as_json", is_flag=True, help="Print the counts as JSON.")
@click.pass_context
def run_cmd(ctx: click.Context, now_s: str | None, watch: bool, as_json: bool) -> None:
    """Send every nurture step that is due, exactly once (safe with several workers)."""
    from corecrm_plugins.nurture_sequences.actions import runtime
    from corecrm_plugins.nurture_sequences.enrolment import enrol_by_date
    from corecrm_plugins.nurture_sequences.scheduler import run_once

    crm = _crm(ctx)
    rt = runtime(crm, _ws(ctx, crm))
    fixed = _now(now_s, crm) if now_s else None
    clock: Callable[[], dt.datetime] = (lambda: fixed) if fixed else (lambda: _now(None, crm))  # type: ignore[assignment,return-value]
    while True:
        t = clock()
        enrolled = enrol_by_date(crm, rt.engine, rt.workspace, rt.cfg, t)
        stats = run_once(rt, clock)
        out = {"at": t.isoformat(), "date_enrolled": enrolled, **stats.to_json()}
        if as_json:
            click.echo(json.dumps(out))
        else:
            click.echo(" ".join(f"{k}={v}" for k, v in out.items()))
        if not watch:
            break
        try:
            time.sleep(rt.cfg.watch_interval.total_seconds())
        except KeyboardInterrupt:
            click.echo("stopped", err=True)
            break
        if fixed:  # a fixed clock moves on by the interval, so --watch --now replays a schedule
            fixed = fixed + rt.cfg.watch_interval


@click.command("preview")
@click.argument("sequence")
@click.argument("step")
@click.option("--lead", "lead_id", type=int, required=True, help="Lead to render the step for.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def preview_cmd(ctx: click.Context, sequence: str, step: str, lead_id: int, as_json: bool) -> None:
    """Show a step rendered for a lead (STEP is its name or number); nothing is sent."""
    from corecrm_plugins.nurture_sequences.actions import preview, runtime

    crm = _crm(ctx)
    msg = preview(runtime(crm, _ws(ctx, crm)), sequence, step, lead_id)
    if as_json:
        _echo_json({k: v for k, v in msg.items() if k != "due_at"})
        return
    click.echo(f"To: {msg['to_name'] + ' ' if msg['to_name'] else ''}<{msg['to']}>")
    click.echo(f"Subject: {msg['subject']}")
    for k, v in msg["headers"].items():
        click.echo(f"{k}: {v}")
    if msg["unsubscribe_url"]:
        click.echo(f"List-Unsubscribe: <{msg['unsubscribe_url']}>")
    click.echo("\n--- text ---")
    click.echo(msg["text"])
    if msg["html"]:
        click.echo("--- html ---")
        click.echo(msg["html"])


@click.command("unsubscribe")
@click.argument("token")
@click.option("--now", "now_s", metavar="ISO")
@click.pass_context
def unsubscribe_cmd(ctx: click.Context, token: str, now_s: str | None) -> None:
    """Record the opt-out a signed unsubscribe TOKEN asks for (takes effect at once)."""
    from corecrm_plugins.nurture_sequences.actions import runtime, unsubscribe

    crm = _crm(ctx)
    res = unsubscribe(runtime(crm, _ws(ctx, crm)), token, now=_now(now_s, crm))
    if not res.get("changed", True):
        click.echo(f"lead {res['lead_id']} was already unsubscribed from {res['channel']}/{res['purpose']}; nothing changed")
        return
    click.echo(f"lead {res['lead_id']} unsubscribed from {res['channel']}/{res['purpose']}" + (f"; left {', '.join(res['exited'])}" if res["exited"] else ""))


@click.command("confirm")
@click.argument("token")
@click.option("--now", "now_s", metavar="ISO")
@click.pass_context
def confirm_cmd(ctx: click.Context, token: str, now_s: str | None) -> None:
    """Confirm a double opt-in with its signed TOKEN."""
    from corecrm_plugins.nurture_sequences.actions import confirm, runtime

    crm = _crm(ctx)
    res = confirm(runtime(crm, _ws(ctx, crm)), token, now=_now(now_s, crm))
    if not res.get("changed", True):
        click.echo(f"lead {res['lead_id']} had already confirmed {res['channel']}/{res['purpose']} for {res['address']}; nothing changed")
        return
    click.echo(f"lead {res['lead_id']} confirmed {res['channel']}/{res['purpose']} for {res['address']}")


@click.command("consent")
@click.argument("lead_id", type=int)
@click.option("--opt-in", "opt_in", metavar="CHANNEL[:PURPOSE]", help="Record consent given.")
@click.option("--opt-out", "opt_out", metavar="CHANNEL[:PURPOSE]", help="Record consent withdrawn.")
@click.option("--source", default="cli", show_default=True, help="Where the consent came from (form, email, import, phone…).")
@click.option("--proof", metavar="JSON", help='Proof as JSON, e.g. \'{"form": "trial", "ip": "192.0.2.1"}\'.')
@click.option("--now", "now_s", metavar="ISO")
@click.pass_context
def consent_cmd(ctx: click.Context, lead_id: int, opt_in: str | None, opt_out: str | None, source: str, proof: str | None, now_s: str | None) -> None:
    """Show a lead's consent ledger, or append to it."""
    from corecrm_plugins.nurture_sequences import consent
    from corecrm_plugins.nurture_sequences.actions import runtime, set_consent

    crm = _crm(ctx)
    rt = runtime(crm, _ws(ctx, crm))
    if opt_in and opt_out:
        raise click.UsageError("give --opt-in or --opt-out, not both")
    if opt_in or opt_out:
        chan, _, purpose = (opt_in or opt_out or "").partition(":")
        try:
            proof_d = json.loads(proof) if proof else {}
        except ValueError as exc:
            raise click.BadParameter(f"not JSON: {exc}", param_hint="--proof") from None
        _echo_json(set_consent(rt, lead_id, chan, purpose or "marketing", bool(opt_in), now=_now(now_s, crm), source=source, proof=proof_d))
        return
    with rt.engine.connect() as conn:
        _echo_json(consent.consent_for_lead(conn, rt.workspace, lead_id))


@click.command("enrol")
@click.argument("lead_ids", type=int, nargs=-1, required=True)
@click.option("--sequence", required=True)
@click.option("--now", "now_s", metavar="ISO")
@click.pass_context
def enrol_cmd(ctx: click.Context, lead_ids: tuple[int, ...], sequence: str, now_s: str | None) -> None:
    """Enrol leads in a sequence by hand."""
    from corecrm_plugins.nurture_sequences.actions import runtime
    from corecrm_plugins.nurture_sequences.store import enrol

    crm = _crm(ctx)
    rt = runtime(crm, _ws(ctx, crm))
    if sequence not in rt.cfg.sequences:
        raise click.BadParameter(f"unknown sequence {sequence!r} (configured: {', '.join(sorted(rt.cfg.sequences)) or 'none'})", param_hint="--sequence")
    with rt.engine.begin() as conn:
        new = enrol(conn, rt.workspace, rt.cfg, [(i, sequence, "enrolled by hand", "cli") for i in lead_ids], now=_now(now_s, crm))
    click.echo(f"enrolled {len(new)} lead(s) in {sequence} ({len(lead_ids) - len(new)} already enrolled or not open)")


@click.command("suppress")
@click.argument("address")
@click.option("--reason", default="bounce", show_default=True, help="bounce, complaint, manual…")
@click.option("--now", "now_s", metavar="ISO")
@click.pass_context
def suppress_cmd(ctx: click.Context, address: str, reason: str, now_s: str | None) -> None:
    """Stop all e-mail to ADDRESS (a bounce or a complaint): opts out every lead using it."""
    from corecrm_plugins.nurture_sequences import consent
    from corecrm_plugins.nurture_sequences.actions import runtime
    from corecrm_plugins.nurture_sequences.store import exit_enrolments

    crm = _crm(ctx)
    rt = runtime(crm, _ws(ctx, crm))
    now = _now(now_s, crm)
    purposes = sorted({s.purpose for s in rt.cfg.sequences.values()} | {"marketing"})
    with rt.engine.begin() as conn:
        ids = consent.suppress_address(conn, rt.workspace, address, channel="email", purposes=purposes, source=reason, proof={"address": address}, at=now)
        exit_enrolments(conn, rt.workspace, rt.cfg, ids, "unsubscribed", now=now, detail=f"address suppressed ({reason})")
    click.echo(f"suppressed {address}: {len(ids)} lead(s)")


def commands() -> list[CliCommand]:
    help_text = "Nurture sequences: run the scheduler, preview steps, consent and unsubscribe."
    return [CliCommand(c, group="nurture", help=help_text) for c in (run_cmd, preview_cmd, unsubscribe_cmd, confirm_cmd, consent_cmd, enrol_cmd, suppress_cmd)]
