"""Nurture sequences: keep not-yet-ready leads in the loop, only with their consent.

Sequences of timed steps (e-mail, a task for the owner, or any channel a
plugin provides), enrolment rules on intake and lifecycle events, a consent
ledger with double opt-in and signed unsubscribe links, and a scheduler that
sends each step exactly once even with several workers.

This module only wires hooks; the work lives in the sibling modules, imported
when a hook runs so that ``corecrm --help`` stays fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

from corecrm.hooks import hookimpl

if TYPE_CHECKING:
    import sqlalchemy

    from corecrm.context import HookContext
    from corecrm.models import Event, Lead
    from corecrm.records import CliCommand, Enrolment, MessageChannel, Report, Setting


def _cfg(settings: Mapping[str, Any]) -> Any:
    from corecrm_plugins.nurture_sequences.config import NurtureSettings

    return NurtureSettings.from_settings(settings)


@hookimpl
def crm_plugin_settings() -> Iterable[Setting]:
    from corecrm_plugins.nurture_sequences.config import declared_settings

    return declared_settings()


@hookimpl
def crm_db_schema() -> Iterable[sqlalchemy.MetaData]:
    from corecrm_plugins.nurture_sequences.tables import metadata

    return [metadata]


@hookimpl
def crm_message_channels(settings: Mapping[str, Any]) -> Iterable[MessageChannel]:
    from corecrm_plugins.nurture_sequences.channels import owner_task_channel

    return [owner_task_channel()]


@hookimpl
def crm_enrol_leads(leads: Sequence[Lead], ctx: HookContext, settings: Mapping[str, Any]) -> Iterable[Enrolment] | None:
    from corecrm_plugins.nurture_sequences.enrolment import rule_enrolments

    cfg = _cfg(settings)
    if not cfg.sequences:
        return None
    trigger = (ctx.extra or {}).get("nurture_trigger", "intake" if ctx.mode in ("intake", "retry") else ctx.mode)
    return rule_enrolments(cfg, leads, trigger, to_stage=(ctx.extra or {}).get("to_stage"), now=ctx.now)


@hookimpl
def crm_leads_captured(events: Sequence[Event], ctx: HookContext, settings: Mapping[str, Any]) -> None:
    from corecrm_plugins.nurture_sequences.enrolment import on_captured

    ids = [e.lead_id for e in events if e.lead_id is not None]
    if ids and ctx.mode != "simulate":
        on_captured(ctx.crm, ctx.workspace, _cfg(settings), ids, ctx)


@hookimpl
def crm_stage_changed(events: Sequence[Event], ctx: HookContext, settings: Mapping[str, Any]) -> None:
    from corecrm_plugins.nurture_sequences.enrolment import on_stage_changed

    changes = [(e.lead_id, (e.detail or {}).get("to")) for e in events if e.lead_id is not None]
    if changes and ctx.mode != "simulate":
        on_stage_changed(ctx.crm, ctx.workspace, _cfg(settings), changes, ctx)


@hookimpl
def crm_lead_converted(events: Sequence[Event], ctx: HookContext, settings: Mapping[str, Any]) -> None:
    from corecrm_plugins.nurture_sequences.enrolment import on_converted

    ids = [e.lead_id for e in events if e.lead_id is not None]
    if ids and ctx.mode != "simulate":
        on_converted(ctx.crm, ctx.workspace, _cfg(settings), ids, ctx)


@hookimpl
def crm_reports(settings: Mapping[str, Any]) -> Iterable[Report]:
    from corecrm_plugins.nurture_sequences.report import nurture_report

    return [nurture_report()]


@hookimpl
def crm_cli_commands() -> Iterable[CliCommand]:
    from corecrm_plugins.nurture_sequences.cli import commands

    return commands()


@hookimpl
def crm_config_warnings(settings: Mapping[str, Any], workspace: str) -> Iterable[str] | None:
    from corecrm_plugins.nurture_sequences.config import config_warnings

    return config_warnings(settings)
