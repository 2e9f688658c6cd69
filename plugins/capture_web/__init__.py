"""capture_web: lead capture over HTTP and delivery of leads and events to other systems.

* ``corecrm serve``: a Starlette app under uvicorn with ``POST /capture/{form}``
  (form, multipart, JSON, ADF/XML), ``GET /forms/{form}`` (an accessible HTML
  form that needs no JavaScript) and ``GET /health``.
* the ``web_form`` capture format, so HTTP captures go through the same
  intake path as email and import.
* outbound deliveries: a queue filled by lifecycle observers and by routing to
  ``partner:<target>``, sent as signed JSON webhooks, ADF/XML, form posts or
  email, with retries (``corecrm deliveries list|run|retry``).

This module only declares hooks; the server, the HTTP client code and the
XML parser are imported when a command needs them, so ``corecrm --help``
stays fast. See ``docs/plugins/capture_web.md``.
"""

from __future__ import annotations

import logging
from typing import Any, Iterable, Mapping, Sequence

from corecrm.hooks import hookimpl
from corecrm.records import CaptureFormat, CliCommand, Setting

log = logging.getLogger("corecrm.capture_web")

NAME = "capture_web"


def _positive_int(value: Any, key: str) -> None:
    from corecrm.errors import ConfigError

    if value < 0:
        raise ConfigError(f"expected a number >= 0, got {value!r}", key=key)


@hookimpl
def crm_plugin_settings() -> Iterable[Setting]:
    from corecrm_plugins.capture_web.targets import validate_targets
    from corecrm_plugins.capture_web.forms import validate_forms

    return [
        Setting("forms", "dict", {}, "capture forms: [plugins.capture_web.forms.<form>] (fields, required, source, campaign, workspace, redirect, cors_origins, require_key, consent)", validate=validate_forms),
        Setting("targets", "dict", {}, "delivery targets: [plugins.capture_web.targets.<name>] (kind webhook|adf|form|email, url, secret, events, partner)", validate=validate_targets),
        Setting("host", "str", "127.0.0.1", "address `corecrm serve` listens on"),
        Setting("port", "int", 8000, "port `corecrm serve` listens on", validate=_positive_int),
        Setting("max_body_bytes", "int", 65536, "largest request body accepted (413 above)", validate=_positive_int),
        Setting("rate_per_ip", "int", 60, "captures per minute per client IP and form (429 above; 0: no limit)", validate=_positive_int),
        Setting("rate_per_key", "int", 600, "captures per minute per API key (429 above; 0: no limit)", validate=_positive_int),
        Setting("min_fill_seconds", "float", 3.0, "a generated form posted sooner than this after it was served is recorded as a bot", validate=_positive_int),
        Setting("secret", "str", "", "secret for form tokens (write { env = \"VAR\" }); empty: a random one per server start"),
        Setting("trust_forwarded", "bool", False, "take the client IP from X-Forwarded-For (only behind your own proxy)"),
        Setting("deliver_every", "float", 5.0, "`corecrm serve` sends due deliveries every N seconds (0: only `corecrm deliveries run`)", validate=_positive_int),
    ]


@hookimpl
def crm_capture_formats(settings: Mapping[str, Any]) -> Iterable[CaptureFormat]:
    from corecrm_plugins.capture_web.mapping import capture_format

    return [capture_format()]


@hookimpl
def crm_db_schema() -> Iterable[Any]:
    from corecrm_plugins.capture_web.tables import metadata

    return [metadata]


@hookimpl
def crm_cli_commands() -> Iterable[CliCommand]:
    from corecrm_plugins.capture_web import cli

    return cli.commands()


# --------------------------------------------------------------------------- observers -> delivery queue


def _queue(event_type: str, events: Sequence[Any], ctx: Any, settings: Mapping[str, Any]) -> None:
    targets_raw = settings.get("targets") or {}
    if not targets_raw or not events or getattr(ctx, "dry_run", False):
        return
    from corecrm_plugins.capture_web import deliveries, tables

    targets = deliveries.parse_targets(targets_raw, f"plugins.{NAME}.targets")
    crm = ctx.crm
    tables.ensure(crm.engine)
    leads = deliveries.load_leads(crm.engine, ctx.workspace, [getattr(e, "lead_id", None) for e in events])
    items = deliveries.plan(targets, event_type, events, leads, ctx.workspace)
    if items:
        deliveries.enqueue(crm.engine, ctx.workspace, items, ctx.now)


@hookimpl
def crm_leads_captured(events: Sequence[Any], ctx: Any, settings: Mapping[str, Any]) -> None:
    from corecrm_plugins.capture_web import consent

    try:
        consent.forward_to_ledger(events, ctx)
    finally:  # a ledger failure (logged by the core with this plugin's name) must not stop the deliveries
        _queue("captured", events, ctx, settings)


@hookimpl
def crm_stage_changed(events: Sequence[Any], ctx: Any, settings: Mapping[str, Any]) -> None:
    _queue("stage_changed", events, ctx, settings)


@hookimpl
def crm_leads_assigned(events: Sequence[Any], ctx: Any, settings: Mapping[str, Any]) -> None:
    _queue("assigned", events, ctx, settings)


@hookimpl
def crm_lead_converted(events: Sequence[Any], ctx: Any, settings: Mapping[str, Any]) -> None:
    _queue("converted", events, ctx, settings)


@hookimpl
def crm_deal_closed(events: Sequence[Any], ctx: Any, settings: Mapping[str, Any]) -> None:
    _queue("deal_closed", events, ctx, settings)


@hookimpl
def crm_leads_quarantined(events: Sequence[Any], ctx: Any, settings: Mapping[str, Any]) -> None:
    _queue("quarantined", events, ctx, settings)
