"""capture_email: leads from e-mail.

Registers two capture formats (``email`` for one RFC 5322 message, ``adf``
for a bare ADF/XML document), one capture source per configured IMAP
account, the ``corecrm mail`` commands (``poll``, ``import``, ``sources``),
a table of seen Message-IDs, and a screen that keeps the CRM's own mail and
(when configured) mail from existing customers from becoming leads.

This module only holds the hook implementations; the parsing modules are
imported when a hook is called, so ``corecrm --help`` stays fast.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping, Sequence

from corecrm.hooks import hookimpl

PLUGIN = "capture_email"


@hookimpl
def crm_plugin_settings() -> Iterable[Any]:
    from corecrm_plugins.capture_email.config import declared_settings

    return declared_settings()


@hookimpl
def crm_capture_formats(settings: Mapping[str, Any]) -> Iterable[Any]:
    from corecrm_plugins.capture_email.config import EmailSettings
    from corecrm_plugins.capture_email.formats import make_adf_format, make_email_format

    cfg = EmailSettings.from_settings(settings)
    return [make_email_format(cfg), make_adf_format(cfg)]


@hookimpl
def crm_capture_sources(settings: Mapping[str, Any]) -> Iterable[Any]:
    from corecrm.records import CaptureSource

    from corecrm_plugins.capture_email.imap import ImapSource

    out = []
    for name, conf in sorted((settings.get("sources") or {}).items()):
        src = ImapSource(name, conf)

        def poll(crm: Any, workspace: str, _src: ImapSource = src) -> int:
            return _src.poll(crm, workspace).stored

        out.append(CaptureSource(name=name, kind="imap", poll=poll, description=f"IMAP {src.user}@{src.host}:{src.port} folder {src.folder}"))
    return out


@hookimpl
def crm_cli_commands() -> Iterable[Any]:
    from corecrm.records import CliCommand

    from corecrm_plugins.capture_email import cli

    help_text = "Capture leads from mailboxes (IMAP, mbox, Maildir)."
    return [
        CliCommand(cli.poll_command, group="mail", help=help_text),
        CliCommand(cli.import_command, group="mail", help=help_text),
        CliCommand(cli.sources_command, group="mail", help=help_text),
    ]


@hookimpl
def crm_db_schema() -> Iterable[Any]:
    from corecrm_plugins.capture_email.store import metadata

    return [metadata]


@hookimpl
def crm_screen_leads(leads: Sequence[Any], ctx: Any, settings: Mapping[str, Any]) -> Iterable[Any]:
    from corecrm_plugins.capture_email.screen import screen

    return screen(leads, ctx, settings)
