"""Scoring hooks: points and qualification, every point accounted for."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

from corecrm.hooks import hookspec

if TYPE_CHECKING:
    from corecrm.context import HookContext
    from corecrm.models import Lead
    from corecrm.records import Qualification, ScoreContribution


class ScoringSpecs:
    """Namespace for the hooks that score and qualify leads."""

    @hookspec
    def crm_score_leads(
        self, leads: Sequence[Lead], ctx: HookContext, settings: Mapping[str, Any]
    ) -> Iterable[ScoreContribution] | None:
        """Give points to leads.

        Called at intake and by ``corecrm score recompute`` (``ctx.mode`` says
        which). A lead's score is the exact sum of the contributions every
        scoring plugin returned for it; the contributions are stored with the
        score, each with its rule, reason and plugin name.

        :param leads: the batch; stored leads carry ``id`` and their history is
            available through ``ctx.events_for(lead)``.
        :returns: :class:`~corecrm.records.ScoreContribution` records, or ``None``.

        Combination: all collected and summed per lead. A plugin that returns
        nothing for a lead leaves its score untouched (``None`` when no plugin
        scored it).

        .. versionadded:: 0.1
        """

    @hookspec
    def crm_qualify_leads(
        self,
        leads: Sequence[Lead],
        scores: Sequence[float | None],
        ctx: HookContext,
        settings: Mapping[str, Any],
    ) -> Iterable[Qualification] | None:
        """Grade leads and move them between lead, qualified and nurturing stages.

        :param scores: the new score of each lead (same positions as ``leads``).
        :returns: :class:`~corecrm.records.Qualification` records, or ``None``.

        Combination: all collected; per lead the last grade and the last stage
        in plugin call order win. Stage moves go through the validated
        lifecycle; an invalid move is recorded as refused, not applied.

        .. versionadded:: 0.1
        """
