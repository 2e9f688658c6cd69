"""``corecrm dedup scan``, ``corecrm leads merge A B`` and ``corecrm leads unmerge ID``."""

from __future__ import annotations

from typing import Any

import click

from corecrm.clitools import echo_json, echo_table, json_option, pass_crm


def _plugin_settings(crm: Any) -> Any:
    return crm.plugins.settings("dedup", crm.workspace)


def _ws(crm: Any) -> str:
    return crm.ws(None)


@click.command("scan")
@click.option("--apply", "apply_", is_flag=True, help="Merge the pairs a rule says to merge and record possible_duplicate events for the rest.")
@click.option("--limit", type=int, default=50, show_default=True, help="Pairs to print (all are applied).")
@json_option
@pass_crm
def scan_command(crm: Any, apply_: bool, limit: int, as_json: bool) -> None:
    """Find duplicates among the stored leads (set-based: keys rebuilt in bulk, pairs by a self-join)."""
    from corecrm_plugins.dedup.scan import scan

    report = scan(crm, _ws(crm), _plugin_settings(crm), apply=apply_)
    if as_json:
        echo_json(report)
        return
    pairs = report["pairs"]
    click.echo(
        f"{report['leads']} leads, {report['keys']} keys, {report['candidate_pairs']} candidate pairs compared, "
        f"{len(pairs)} duplicates ({report['merge']} to merge, {report['flag']} to flag)"
        + (f"; {report['oversized_blocks']} keys shared by more than {report['max_block_size']} leads skipped" if report["oversized_blocks"] else "")
    )
    if pairs:
        echo_table(["lead", "duplicate", "rule", "score", "action", "why"],
                   [[p["lead_id"], p["duplicate_id"], p["rule"], p["score"], p["action"], "; ".join(p["reasons"])] for p in pairs[:limit]])
    if apply_:
        click.echo(f"applied: {report['merged']} merged, {report['flagged']} flagged, {report['skipped']} skipped (already merged in this run)")


@click.command("merge")
@click.argument("survivor", type=int)
@click.argument("duplicate", type=int)
@click.option("--take", "take", multiple=True, metavar="FIELD", help="Take DUPLICATE's value for FIELD even when SURVIVOR has one (repeatable).")
@click.option("--reason", default="merged by hand", show_default=True)
@json_option
@pass_crm
def merge_command(crm: Any, survivor: int, duplicate: int, take: tuple[str, ...], reason: str, as_json: bool) -> None:
    """Merge lead DUPLICATE into lead SURVIVOR (empty fields filled; consent never carried over)."""
    from corecrm.errors import CrmError

    from corecrm_plugins.dedup import merge
    from corecrm_plugins.dedup.match import matcher_for

    bad = [f for f in take if f not in merge.MERGE_FIELDS]
    if bad:
        raise CrmError(f"--take {bad[0]}: not a mergeable field (use one of {', '.join(merge.MERGE_FIELDS)})")
    with crm.engine.begin() as conn:
        detail = merge.merge_leads(conn, _ws(crm), survivor, duplicate, crm.now(), take=take, reason=reason, matcher=matcher_for(_plugin_settings(crm)))
    if as_json:
        echo_json(detail)
        return
    click.echo(f"lead {duplicate} merged into lead {survivor}")
    for f, c in detail["fields"].items():
        click.echo(f"  {f}: {c['previous']!r} -> {c['value']!r} (from lead {duplicate})")
    if detail["interests_added"]:
        click.echo(f"  interests added: {', '.join(map(str, detail['interests_added']))}")
    if detail["consent"]:
        click.echo(f"  consent: {detail['consent']}")


@click.command("unmerge")
@click.argument("lead_id", type=int)
@json_option
@pass_crm
def unmerge_command(crm: Any, lead_id: int, as_json: bool) -> None:
    """Undo a merge: LEAD_ID is the merged-away lead (or a survivor of exactly one merge)."""
    from corecrm_plugins.dedup import merge
    from corecrm_plugins.dedup.match import matcher_for

    with crm.engine.begin() as conn:
        out = merge.unmerge(conn, _ws(crm), lead_id, crm.now(), matcher=matcher_for(_plugin_settings(crm)))
    if as_json:
        echo_json(out)
        return
    click.echo(f"lead {out['from_lead']} split off again; restored: {', '.join(out['restored']) or 'nothing'}"
               + (f"; kept (changed since the merge): {', '.join(out['kept'])}" if out["kept"] else ""))

