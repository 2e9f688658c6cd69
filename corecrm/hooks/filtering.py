"""Filtering hooks: verify, screen, match and enrich a batch of leads.

These are *decision* hooks. Each takes the whole batch (a single web-form lead
is a batch of one) because per-row hook dispatch costs more than parsing and
inserting a row together. The core calls each implementation separately: if
one raises, the core narrows the failure down to the lead(s) that cause it,
quarantines those with the error, the plugin's name and the step, and carries
on with the rest of the batch.

Implementations must not modify the leads they are given: they return records
and the core applies them, recording each change with the plugin's name.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

from corecrm.hooks import hookspec

if TYPE_CHECKING:
    from corecrm.context import HookContext
    from corecrm.models import Lead
    from corecrm.records import FieldUpdate, Finding, MatchCandidate, ScreenVerdict


class FilteringSpecs:
    """Namespace for the hooks that clean leads before they are scored."""

    @hookspec
    def crm_verify_leads(
        self, leads: Sequence[Lead], ctx: HookContext, settings: Mapping[str, Any]
    ) -> Iterable[FieldUpdate | Finding] | None:
        """Verify and normalise contact data (phone to E.164, country to ISO…).

        :param leads: the batch; records refer to a lead by its position (``index``).
        :param ctx: the workspace, clock and CRM the batch belongs to.
        :param settings: this plugin's settings for ``ctx.workspace``.
        :returns: :class:`~corecrm.records.FieldUpdate` records (applied, the
            original value kept in the lead's history) and
            :class:`~corecrm.records.Finding` records (stored on the lead with
            their severity), or ``None``.

        Combination: all collected, applied in plugin call order; a later
        plugin sees the values earlier plugins set.

        .. versionadded:: 0.1
        """

    @hookspec
    def crm_screen_leads(
        self, leads: Sequence[Lead], ctx: HookContext, settings: Mapping[str, Any]
    ) -> Iterable[ScreenVerdict] | None:
        """Screen for fraud and junk.

        :returns: :class:`~corecrm.records.ScreenVerdict` records; leads with no
            verdict are accepted.

        Combination: all collected; per lead the strictest verdict wins
        (reject > review > accept). ``review`` quarantines the lead for a
        human (``corecrm retry --accept`` releases it); ``reject`` stores the
        capture with the reasons and creates no lead.

        .. versionadded:: 0.1
        """

    @hookspec
    def crm_match_leads(
        self, leads: Sequence[Lead], ctx: HookContext, settings: Mapping[str, Any]
    ) -> Iterable[MatchCandidate] | None:
        """Find stored leads that these leads duplicate.

        :returns: :class:`~corecrm.records.MatchCandidate` records.

        Combination: all collected; per lead the candidate with the highest
        score decides. ``merge`` folds the new lead into the stored one
        (empty fields filled, interests united, per-field provenance kept,
        consent never carried over); ``flag`` stores the lead and records the
        possible duplicate. Implementations should look candidates up for the
        whole batch at once, never one query per lead.

        .. versionadded:: 0.1
        """

    @hookspec
    def crm_enrich_leads(
        self, leads: Sequence[Lead], ctx: HookContext, settings: Mapping[str, Any]
    ) -> Iterable[FieldUpdate | Finding] | None:
        """Add data from elsewhere (company size, geo-IP, a CRM look-up).

        :returns: :class:`~corecrm.records.FieldUpdate` and
            :class:`~corecrm.records.Finding` records, as for ``crm_verify_leads``.

        Combination: all collected, applied in plugin call order.

        .. versionadded:: 0.1
        """
