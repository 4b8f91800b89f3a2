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


def test_insured_the_call_is_plain() -> None:
    insurance = secondopinion.advise(_with(insurance={"insured": "yes"})).by_kind("check_insurance")
    assert insurance is not None
    assert insurance.title == "Call your insurer before you book"


def test_uninsured_gets_no_insurer_anywhere() -> None:
    case = _with(insurance={"insured": "no"}, patient={"finds_asking_hard": "yes"})
    advice = secondopinion.advise(case)
    said = [t for r in advice.recommendations for t in recommendation_texts(r) if "insur" in t.casefold()]
    assert said == []


def test_the_doctor_is_quoted_only_when_the_case_says_the_doctor_called_it_an_emergency() -> None:
    stated = secondopinion.advise(_with(treatment={"kind": "surgery", "urgency": "emergency"})).by_kind("get_care_now")
    no_time = secondopinion.advise(_with(treatment={"kind": "surgery", "days_to_decide": 0})).by_kind("get_care_now")
    both = secondopinion.advise(_with(treatment={"urgency": "emergency", "days_to_decide": 1})).by_kind("get_care_now")
    assert stated is not None and no_time is not None and both is not None
    assert "Your doctor says" in stated.detail
    assert "doctor says" not in no_time.detail
    assert [d.rule_id for d in both.derivation] == ["GET-CARE-NOW"]


def test_no_treatment_recorded_no_text_speaks_of_your_treatment() -> None:
    advice = secondopinion.advise({"diagnosis": {"seriousness": "serious", "rare": "yes"}})
    said = [t for r in advice.recommendations for t in recommendation_texts(r)]
    assert advice.by_kind("act_quickly") is not None
    assert not [t for t in said if "your treatment" in t.casefold() or "this treatment" in t.casefold()]
