"""Distribution hooks: who gets the lead."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

from corecrm.hooks import hookspec

if TYPE_CHECKING:
    from corecrm.context import HookContext
    from corecrm.models import Lead
    from corecrm.records import Assignment


class DistributionSpecs:
    """Namespace for the hooks that route leads to owners, teams and queues."""

    @hookspec
    def crm_route_leads(
        self, leads: Sequence[Lead], ctx: HookContext, settings: Mapping[str, Any]
    ) -> Iterable[Assignment] | None:
        """Assign leads to an owner (push) or a team queue (pull).

        Called after scoring, so ``lead.score`` and ``lead.grade`` are set.
        Leads that already have an owner are passed too; a router decides
        whether to keep it (sticky ownership).

        :returns: :class:`~corecrm.records.Assignment` records, or ``None``.

        Combination: all collected; per lead the first assignment in plugin
        call order wins and the others are kept in the history as
        alternatives. Mark a fallback router ``trylast``.

        .. versionadded:: 0.1
        """
