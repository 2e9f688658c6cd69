"""What a decision or observer hook knows about the call it is part of."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any, Callable, Literal

import attrs

if TYPE_CHECKING:
    from corecrm.app import Crm
    from corecrm.models import Event, Lead

#: Why a batch is being processed.
Mode = Literal["intake", "retry", "recompute", "simulate", "event"]


@attrs.define(slots=True, eq=False)
class HookContext:
    """Passed to batch hooks as ``ctx``.

    :ivar crm: the CRM instance (database, config, plugin manager).
    :ivar workspace: the tenant every lead of the batch belongs to.
    :ivar now: the clock for this batch (tests and ``--now`` control it).
    :ivar mode: ``intake``, ``retry``, ``recompute``, ``simulate`` (nothing
        will be written) or ``event``.
    """

    crm: Crm
    workspace: str
    now: dt.datetime
    mode: Mode = "intake"
    #: Loads stored events for leads (batched by the core; ``{lead_id: [Event]}``).
    _events_loader: Callable[[list[int]], dict[int, list[Event]]] | None = None
    _events_cache: dict[int, list[Event]] | None = None
    extra: dict[str, Any] = attrs.field(factory=dict)

    @property
    def dry_run(self) -> bool:
        return self.mode == "simulate"

    def events_for(self, lead: Lead) -> list[Event]:
        """The stored history of a lead (empty for a lead not stored yet).

        The first call loads the history of every stored lead in the batch in
        one query, so scorers that look at engagement do no per-lead queries.
        """
        if lead.id is None or self._events_loader is None:
            return []
        if self._events_cache is None or lead.id not in self._events_cache:
            ids = self.extra.get("batch_ids") or [lead.id]
            self._events_cache = self._events_loader(list(ids))
        return self._events_cache.get(lead.id, [])
