"""The lead lifecycle and its valid transitions.

prospect → lead → marketing-qualified → sales-qualified → opportunity → customer,
with ``nurturing`` (not ready yet, kept in the loop) and ``disqualified`` beside
the main line. Deals have their own pipelines (configured in TOML, see
``corecrm.pipelines``); this module is only about the person.
"""

from __future__ import annotations

import enum

from corecrm.errors import TransitionError


class Stage(str, enum.Enum):
    PROSPECT = "prospect"
    LEAD = "lead"
    MQL = "mql"  #: marketing-qualified
    SQL = "sql"  #: sales-qualified
    OPPORTUNITY = "opportunity"
    CUSTOMER = "customer"
    NURTURING = "nurturing"
    DISQUALIFIED = "disqualified"

    def __str__(self) -> str:  # click and f-strings print the value
        return self.value


#: The order of the main line, used by funnels and "is this a step forward?".
MAIN_LINE: tuple[Stage, ...] = (
    Stage.PROSPECT,
    Stage.LEAD,
    Stage.MQL,
    Stage.SQL,
    Stage.OPPORTUNITY,
    Stage.CUSTOMER,
)

_OPEN = {Stage.PROSPECT, Stage.LEAD, Stage.MQL, Stage.SQL, Stage.OPPORTUNITY, Stage.NURTURING}

#: Allowed moves. Skipping forward along the main line is allowed (a hot lead
#: may go straight to sales-qualified); moving backwards goes through nurturing.
TRANSITIONS: dict[Stage, frozenset[Stage]] = {
    Stage.PROSPECT: frozenset({Stage.LEAD, Stage.MQL, Stage.SQL, Stage.NURTURING, Stage.DISQUALIFIED}),
    Stage.LEAD: frozenset({Stage.MQL, Stage.SQL, Stage.OPPORTUNITY, Stage.CUSTOMER, Stage.NURTURING, Stage.DISQUALIFIED}),
    Stage.MQL: frozenset({Stage.SQL, Stage.OPPORTUNITY, Stage.CUSTOMER, Stage.NURTURING, Stage.DISQUALIFIED}),
    Stage.SQL: frozenset({Stage.OPPORTUNITY, Stage.CUSTOMER, Stage.NURTURING, Stage.DISQUALIFIED}),
    Stage.OPPORTUNITY: frozenset({Stage.CUSTOMER, Stage.NURTURING, Stage.DISQUALIFIED}),
    Stage.NURTURING: frozenset({Stage.LEAD, Stage.MQL, Stage.SQL, Stage.OPPORTUNITY, Stage.CUSTOMER, Stage.DISQUALIFIED}),
    Stage.DISQUALIFIED: frozenset({Stage.LEAD, Stage.NURTURING}),
    Stage.CUSTOMER: frozenset(),
}


def parse_stage(value: str | Stage) -> Stage:
    """Turn user input into a Stage, with an error listing the valid names."""
    if isinstance(value, Stage):
        return value
    try:
        return Stage(str(value).strip().lower())
    except ValueError:
        valid = ", ".join(s.value for s in Stage)
        raise TransitionError(f"unknown stage {value!r} (valid: {valid})") from None


def can_move(current: Stage, target: Stage) -> bool:
    return target in TRANSITIONS[current]


def check_transition(current: Stage | str, target: Stage | str, *, lead_id: int | None = None) -> Stage:
    """Validate a move and return the target stage, or raise :class:`TransitionError`."""
    cur, tgt = parse_stage(current), parse_stage(target)
    if cur == tgt:
        return tgt
    if not can_move(cur, tgt):
        who = f"lead {lead_id}: " if lead_id is not None else ""
        allowed = ", ".join(sorted(s.value for s in TRANSITIONS[cur])) or "none (final stage)"
        raise TransitionError(f"{who}cannot move from {cur.value} to {tgt.value} (allowed from {cur.value}: {allowed})")
    return tgt


def is_open(stage: Stage) -> bool:
    return stage in _OPEN


def rank(stage: Stage) -> int:
    """Position on the main line (-1 for nurturing/disqualified)."""
    try:
        return MAIN_LINE.index(stage)
    except ValueError:
        return -1
