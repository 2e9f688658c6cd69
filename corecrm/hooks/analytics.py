"""Analytics hooks: reports and customer value."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

from corecrm.hooks import hookspec

if TYPE_CHECKING:
    from corecrm.context import HookContext
    from corecrm.records import CustomerValue, Report


class AnalyticsSpecs:
    """Namespace for the hooks that analyse the funnel and customer value."""

    @hookspec
    def crm_reports(self, settings: Mapping[str, Any]) -> Iterable[Report]:
        """Register reports for ``corecrm report NAME`` and ``report --list``.

        :returns: :class:`~corecrm.records.Report` records.

        Combination: all collected; a report name provided by two plugins is a
        conflict and fails start-up.

        .. versionadded:: 0.1
        """

    @hookspec
    def crm_customer_values(
        self, customer_ids: Sequence[int], ctx: HookContext, settings: Mapping[str, Any]
    ) -> Iterable[CustomerValue] | None:
        """Estimate customers' value (e.g. predicted CLV) for other plugins to use.

        :param customer_ids: the customers asked about.
        :returns: :class:`~corecrm.records.CustomerValue` records, or ``None``.

        Combination: all collected; an observer-style hook: a plugin that
        raises is logged with its name and the others' values are returned.

        .. versionadded:: 0.1
        """
