"""The Maple Children's Clinic pack's own tests: how a pack's authors test it with secondopinion.testing.

Run from the repository root:  python -m pytest examples/packs/maple-clinic -q
"""

from __future__ import annotations

from pathlib import Path

from hypothesis import given

import secondopinion
from secondopinion.case import Case
from secondopinion.rulebook import Rulebook
from secondopinion.testing import (
    assert_advice_sound,
    assert_consistent,
    assert_examples_pass,
    cases,
)

PACK = Path(__file__).with_name("maple-clinic.yaml")
BOOK = Rulebook.load(PACK)  # the shipped rules plus this pack
ADVISOR = secondopinion.Advisor(BOOK)


def test_every_example_behaves_as_declared() -> None:
    assert_examples_pass(ADVISOR)


def test_the_rule_base_with_the_pack_verifies_without_errors() -> None:
    # Dead or masked rules, conflicts, cycles, broken coverage promises (the pack
    # promises that every child facing surgery hears about the board), ...
    assert_consistent(ADVISOR)


@given(cases(rulebook=BOOK))
def test_advice_stays_sound_with_the_pack(case: Case) -> None:
    # No incompatible kinds together, sources and guidance ids cited, stable, round-trips.
    assert_advice_sound(ADVISOR, case)


@given(cases(rulebook=BOOK))
def test_the_board_is_offered_exactly_when_a_child_faces_surgery(case: Case) -> None:
    facing_surgery = (
        case.patient.age_group.value == "child"
        and case.treatment.kind.value == "surgery"
        and case.treatment.started.value != "yes"
    )
    board = ADVISOR.advise(case).by_kind("consult_specialties")
    offered = board is not None and "MAPLE1" in board.guidance
    assert offered == facing_surgery
