"""``corecrm score recompute`` and ``corecrm score diff``."""

from __future__ import annotations

from typing import Any

import click

from corecrm.clitools import echo_json, pass_crm, state
from corecrm.records import CliCommand

from .recompute import NAME


def _explicit_workspace(option: str | None) -> str | None:
    """``score … --workspace W``, else the root ``corecrm --workspace W`` if one was given."""
    return option or state().workspace


def _workspaces(crm: Any, workspace: str | None) -> list[str]:
    if workspace:
        return [workspace]
    from .recompute import workspaces_with_leads

    return workspaces_with_leads(crm.engine) or [crm.config.default_workspace]


@click.command("recompute")
@click.option("--workspace", "-w", "workspace", default=None, help="Only this workspace (default: every workspace with leads).")
@click.option("--batch-size", default=20000, show_default=True, type=click.IntRange(100, 1_000_000), help="Leads per read/write batch.")
@click.option("--json", "as_json", is_flag=True, help="Print the counts as JSON.")
@pass_crm
def recompute_cmd(crm: Any, workspace: str | None, batch_size: int, as_json: bool) -> None:
    """Rescore every stored lead with the current rules (set-based; writes only what changed)."""
    from .recompute import recompute

    results = []
    for ws in _workspaces(crm, _explicit_workspace(workspace)):
        stats = recompute(crm, ws, batch_size=batch_size)
        results.append(stats)
        if not as_json:
            rate = stats.leads / stats.seconds if stats.seconds else 0.0
            click.echo(
                f"{ws}: {stats.leads} leads rescored in {stats.seconds:.1f} s ({rate:,.0f} leads/s): "
                f"{stats.score_changed} scores changed, {stats.grade_changed} grades changed, "
                f"{stats.stage_changed} stage moves, {stats.rows_written} rows and {stats.events_written} events written"
                + (f", {stats.refused} stage moves refused" if stats.refused else "")
            )
    if as_json:
        echo_json([s.to_json() for s in results])


@click.command("diff")
@click.option("--rules", "rules_path", required=True, type=click.Path(exists=True, dir_okay=False), help="TOML file with the candidate rules.")
@click.option("--workspace", "-w", "workspace", default=None, help="Workspace to compare in (default: corecrm --workspace, else the default workspace).")
@click.option("--examples", default=10, show_default=True, type=click.IntRange(0, 1000), help="How many changed leads to show.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@pass_crm
def diff_cmd(crm: Any, rules_path: str, workspace: str | None, examples: int, as_json: bool) -> None:
    """Dry run: how many leads would change score, grade or stage with NEW rules. Nothing is written."""
    from .diff import diff, load_rules_file

    ws = _explicit_workspace(workspace) or crm.workspace
    candidate = load_rules_file(rules_path, ws)
    res = diff(crm, ws, candidate, examples=examples)
    if as_json:
        echo_json(res.to_json())
        return
    click.echo(f"workspace {ws}: ruleset {res.ruleset or '(none)'} -> {res.new_ruleset or '(none)'}  (dry run: nothing written)")
    click.echo(f"  {res.leads} leads compared")
    click.echo(f"  score would change for {res.score_changed} ({res.score_up} up, {res.score_down} down)")
    click.echo(f"  grade would change for {res.grade_changed}" + (": " + ", ".join(f"{k} {v}" for k, v in res.grade_moves.items()) if res.grade_moves else ""))
    click.echo(f"  qualification would change for {res.stage_changed}" + (": " + ", ".join(f"{k} {v}" for k, v in res.stage_moves.items()) if res.stage_moves else ""))
    if res.stale_stored:
        click.echo(f"  note: {res.stale_stored} stored scores already differ from the current rules (decay or edits not yet recomputed)")
    if res.examples:
        click.echo("  examples:")
        for e in res.examples:
            what = f"score {_n(e.score)} -> {_n(e.new_score)}"
            if e.grade != e.new_grade:
                what += f", grade {e.grade or '-'} -> {e.new_grade or '-'}"
            if e.stage != e.new_stage:
                what += f", stage {e.stage} -> {e.new_stage}"
            rules = ", ".join(e.changed_rules[:6]) + (" …" if len(e.changed_rules) > 6 else "")
            click.echo(f"    lead {e.lead_id} {e.name}: {what} (rules: {rules})")
    click.echo("apply: put the rules in corecrm.toml, then run `corecrm score recompute`")


def _n(x: float | None) -> str:
    return "-" if x is None else f"{x:g}"


def commands() -> list[CliCommand]:
    help_ = "Lead scoring: recompute scores after a rules change, or preview a change."
    return [CliCommand(recompute_cmd, group="score", help=help_, plugin=NAME), CliCommand(diff_cmd, group="score", help=help_, plugin=NAME)]
