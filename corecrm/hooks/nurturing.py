"""Nurturing hooks: channels to reach leads and enrolment in sequences."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

from corecrm.hooks import hookspec

if TYPE_CHECKING:
    from corecrm.context import HookContext
    from corecrm.models import Lead
    from corecrm.records import Enrolment, MessageChannel


class NurturingSpecs:
    """Namespace for the hooks that keep not-yet-ready leads in the loop."""

    @hookspec
    def crm_message_channels(self, settings: Mapping[str, Any]) -> Iterable[MessageChannel]:
        """Register ways to reach a lead (email, SMS, a task for the owner).

        :returns: :class:`~corecrm.records.MessageChannel` records.

        Combination: all collected; names must be unique across plugins.

        .. versionadded:: 0.1
        """

    @hookspec
    def crm_enrol_leads(
        self, leads: Sequence[Lead], ctx: HookContext, settings: Mapping[str, Any]
    ) -> Iterable[Enrolment] | None:
        """Decide which leads enter which nurture sequence.

        Called at the end of intake (after routing) and on lifecycle events.

        :returns: :class:`~corecrm.records.Enrolment` records, or ``None``.

        Combination: all collected; a lead may enter several sequences.

        .. versionadded:: 0.1
        """
