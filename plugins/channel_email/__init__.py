"""E-mail channel: sends nurture messages over SMTP.

STARTTLS or implicit TLS and authentication from settings (the password is
an ``{ env = "VAR" }`` reference, never text in the file), a sending rate
limit, a per-recipient frequency cap, and the ``List-Unsubscribe`` /
``List-Unsubscribe-Post`` headers on every message (a message marked
``transactional``, such as a double opt-in confirmation, may go without). The
``mailto:`` unsubscribe subject carries the message's ``unsubscribe_token``
(the signed token, whatever the shape of ``unsubscribe_url``). The lead-step
idempotency key travels in ``Message-ID`` and ``X-Corecrm-Idempotency-Key``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterable, Mapping

from corecrm.hooks import hookimpl

if TYPE_CHECKING:
    import sqlalchemy

    from corecrm.records import MessageChannel, Setting


@hookimpl
def crm_plugin_settings() -> Iterable[Setting]:
    from corecrm_plugins.channel_email.smtp import declared_settings

    return declared_settings()


@hookimpl
def crm_db_schema() -> Iterable[sqlalchemy.MetaData]:
    from corecrm_plugins.channel_email.smtp import metadata

    return [metadata]


@hookimpl
def crm_message_channels(settings: Mapping[str, Any]) -> Iterable[MessageChannel]:
    from corecrm.records import MessageChannel

    from corecrm_plugins.channel_email.smtp import EmailChannel

    channel = EmailChannel(settings)
    return [MessageChannel(name="email", send=channel.send, description=f"SMTP via {channel.host}:{channel.port} ({channel.security})")]
