"""Lifecycle event hooks: observers told what happened, after it is committed.

Observers are isolated: one that raises is logged with its plugin name and
the others still run; nothing is rolled back. Each hook receives a batch of
:class:`~corecrm.models.Event` records (``lead_id``, ``type``, ``at``,
``plugin``, ``detail``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping, Sequence

from corecrm.hooks import hookspec

if TYPE_CHECKING:
    from corecrm.context import HookContext
    from corecrm.models import Event


class EventSpecs:
    """Namespace for the observer hooks on lifecycle events."""

    @hookspec
    def crm_leads_captured(self, events: Sequence[Event], ctx: HookContext, settings: Mapping[str, Any]) -> None:
        """New leads were stored (one ``captured`` event per lead).

        Combination: every implementation is called; return values are ignored.

        .. versionadded:: 0.1
        """

    @hookspec
    def crm_stage_changed(self, events: Sequence[Event], ctx: HookContext, settings: Mapping[str, Any]) -> None:
        """Leads moved between lifecycle stages; ``detail`` has ``from``, ``to`` and ``reason``.

        Combination: every implementation is called; return values are ignored.

        .. versionadded:: 0.1
        """

    @hookspec
    def crm_leads_assigned(self, events: Sequence[Event], ctx: HookContext, settings: Mapping[str, Any]) -> None:
        """Leads were assigned to an owner or queued for a team; ``detail`` has ``owner``, ``team``, ``rule``.

        Combination: every implementation is called; return values are ignored.

        .. versionadded:: 0.1
        """

    @hookspec
    def crm_lead_converted(self, events: Sequence[Event], ctx: HookContext, settings: Mapping[str, Any]) -> None:
        """Leads became customers; ``detail`` has ``customer_id`` and ``deal_id``.

        Combination: every implementation is called; return values are ignored.

        .. versionadded:: 0.1
        """

    @hookspec
    def crm_deal_closed(self, events: Sequence[Event], ctx: HookContext, settings: Mapping[str, Any]) -> None:
        """Deals were won or lost; ``detail`` has ``deal_id``, ``status``, ``amount`` and ``reason``.

        Combination: every implementation is called; return values are ignored.

        .. versionadded:: 0.1
        """

    @hookspec
    def crm_leads_quarantined(self, events: Sequence[Event], ctx: HookContext, settings: Mapping[str, Any]) -> None:
        """Captures or leads were quarantined; ``detail`` has ``step``, ``plugin`` and ``error``.

        Combination: every implementation is called; return values are ignored.

        .. versionadded:: 0.1
        """
