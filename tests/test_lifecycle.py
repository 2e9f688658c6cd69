"""Lifecycle transitions."""

from __future__ import annotations

import pytest

from corecrm.errors import TransitionError
from corecrm.lifecycle import TRANSITIONS, Stage, check_transition


@pytest.mark.parametrize("frm, to", [("prospect", "lead"), ("lead", "mql"), ("mql", "sql"), ("sql", "opportunity"), ("opportunity", "customer"), ("lead", "nurturing"), ("nurturing", "mql"), ("disqualified", "lead")])
def test_valid_moves(frm, to):
    assert check_transition(frm, to) == Stage(to)


@pytest.mark.parametrize("frm, to", [("customer", "lead"), ("opportunity", "mql"), ("sql", "lead"), ("disqualified", "customer"), ("prospect", "customer")])
def test_invalid_moves_are_clear_errors(frm, to):
    with pytest.raises(TransitionError) as exc:
        check_transition(frm, to, lead_id=7)
    msg = str(exc.value)
    assert msg.startswith("lead 7: cannot move from") and f"from {frm} to {to}" in msg and "allowed from" in msg


def test_unknown_stage():
    with pytest.raises(TransitionError, match="unknown stage 'won'"):
        check_transition("lead", "won")


def test_every_stage_has_rules_and_customer_is_final():
    assert set(TRANSITIONS) == set(Stage)
    assert TRANSITIONS[Stage.CUSTOMER] == frozenset()
