"""``corecrm mail …``: poll IMAP sources, import mbox files and Maildir folders."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from corecrm.errors import CrmError

PLUGIN = "capture_email"


def _crm_and_sources(source: str | None) -> tuple[Any, str, dict[str, Any]]:
    from corecrm.clitools import state

    st = state()
    crm = st.crm
    ws = crm.ws(None)
    sources = dict(crm.settings(PLUGIN, ws).get("sources") or {})
    if source is not None:
        if source not in sources:
            known = ", ".join(sorted(sources)) or "none configured"
            raise CrmError(f"unknown mail source {source!r} (plugins.capture_email.sources: {known})")
        sources = {source: sources[source]}
    return crm, ws, sources


def _summary(res: Any) -> str:
    parts = ", ".join(f"{n} {s}" for s, n in sorted(res.statuses.items())) or "nothing new"
    return f"mail source {res.source}: fetched {res.fetched}, {res.stored} new captures ({parts}); leads: {', '.join(map(str, res.lead_ids)) or '-'}"


@click.command("poll")
@click.option("--source", help="Poll only this source (a [plugins.capture_email.sources.<name>] table).")
@click.option("--watch", is_flag=True, help="Keep polling: wait for new mail with IDLE (or poll_interval) between polls.")
@click.option("--interval", type=float, default=None, help="Seconds between polls in --watch mode (default: the source's poll_interval).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per poll.")
def poll_command(source: str | None, watch: bool, interval: float | None, as_json: bool) -> None:
    """Capture new mail from the configured IMAP sources, each message exactly once."""
    from corecrm_plugins.capture_email.imap import ImapSource

    crm, ws, sources = _crm_and_sources(source)
    if not sources:
        raise CrmError("no mail sources configured (add [plugins.capture_email.sources.<name>] to corecrm.toml)")

    def show(res: Any) -> None:
        click.echo(json.dumps(res.to_json()) if as_json else _summary(res))
        sys.stdout.flush()

    imaps = [ImapSource(name, conf) for name, conf in sorted(sources.items())]
    if not watch:
        for src in imaps:
            show(src.poll(crm, ws))
        return
    if len(imaps) == 1:
        try:
            imaps[0].watch(crm, ws, interval=interval, on_result=show)
        except KeyboardInterrupt:
            pass
        return
    import time

    try:
        while True:  # several sources: poll them in turn (IDLE watches one mailbox)
            for src in imaps:
                show(src.poll(crm, ws))
            time.sleep(interval or min(s.poll_interval for s in imaps))
    except KeyboardInterrupt:
        pass


@click.command("import")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("--json", "as_json", is_flag=True, help="Print the capture results as JSON.")
def import_command(paths: tuple[str, ...], as_json: bool) -> None:
    """Capture every message of mbox files or Maildir folders (one capture per message)."""
    from corecrm.clitools import state

    from corecrm_plugins.capture_email.feed import import_mailbox

    crm = state().crm
    ws = crm.ws(None)
    out = []
    for p in paths:
        results = import_mailbox(crm, p, workspace=ws)
        counts: dict[str, int] = {}
        for r in results:
            counts[r.status] = counts.get(r.status, 0) + 1
        leads = sorted({i for r in results for i in r.lead_ids})
        out.append({"path": p, "messages": len(results), "statuses": counts, "lead_ids": leads, "captures": [
            {"capture_id": r.capture_id, "origin": r.origin, "status": r.status, "reason": r.reason, "lead_ids": r.lead_ids} for r in results
        ]})
    if as_json:
        click.echo(json.dumps(out, indent=2, ensure_ascii=False))
        return
    for item in out:
        parts = ", ".join(f"{n} {s}" for s, n in sorted(item["statuses"].items())) or "no messages"
        click.echo(f"{item['path']}: {item['messages']} messages ({parts}); leads: {', '.join(map(str, item['lead_ids'])) or '-'}")
        for c in item["captures"]:
            if c["status"] not in ("processed", "duplicate"):
                click.echo(f"  {c['origin']}: capture {c['capture_id']} {c['status']}: {c['reason']}")


@click.command("sources")
def sources_command() -> None:
    """List the configured mail sources (passwords are never shown)."""
    _crm, _ws, sources = _crm_and_sources(None)
    if not sources:
        click.echo("no mail sources configured")
    for name, conf in sorted(sources.items()):
        tls = "tls" if conf.get("tls", True) else ("starttls" if conf.get("starttls") else "plain")
        click.echo(
            f"{name}: imap {conf['user']}@{conf['host']}:{conf.get('port') or (993 if conf.get('tls', True) else 143)} ({tls}) "
            f"folder {conf.get('folder') or 'INBOX'} → processed: {conf.get('processed_folder') or '(flag only)'}, rejected: {conf.get('rejected_folder') or '(flag only)'}"
        )
