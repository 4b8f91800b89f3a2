"""Advice must not take for granted what the case does not say.

Most checks of this kind are scenarios (``tests/scenarios/90-unstated-facts.yaml``,
``no_text``); these are the ones a forbidden phrase cannot express, because the
right wording holds the wrong one inside it ("If you have health insurance, call
your insurer before you book").
"""

from __future__ import annotations

from typing import Any

import secondopinion
from secondopinion.scenarios import recommendation_texts

SERIOUS: dict[str, Any] = {"diagnosis": {"seriousness": "serious"}, "treatment": {"kind": "surgery"}}


def _with(**parts: Any) -> dict[str, Any]:
    return {**SERIOUS, **parts}


def test_insurance_not_stated_the_call_is_worded_for_someone_who_may_have_none() -> None:
    insurance = secondopinion.advise(SERIOUS).by_kind("check_insurance")
    assert insurance is not None
    assert insurance.title.startswith("If you have health insurance")
    assert insurance.detail.startswith("If you are insured")


def test_uninsured_gets_no_insurer_anywhere() -> None:
    case = _with(insurance={"insured": "no"}, patient={"finds_asking_hard": "yes"})
    advice = secondopinion.advise(case)
    said = [t for r in advice.recommendations for t in recommendation_texts(r) if "insur" in t.casefold()]
    assert said == []


def test_an_emergency_by_the_days_alone_does_not_quote_the_doctor() -> None:
    for treatment in ({"kind": "surgery", "urgency": "emergency"}, {"kind": "surgery", "days_to_decide": 0}):
        care = secondopinion.advise(_with(treatment=treatment)).by_kind("get_care_now")
        assert care is not None
        assert "doctor says" not in care.detail


def test_no_treatment_recorded_no_text_speaks_of_your_treatment() -> None:
    advice = secondopinion.advise({"diagnosis": {"seriousness": "serious", "rare": "yes"}})
    said = [t for r in advice.recommendations for t in recommendation_texts(r)]
    assert advice.by_kind("act_quickly") is not None
    assert not [t for t in said if "your treatment" in t.casefold() or "this treatment" in t.casefold()]
