"""Issue 11: the advice at the edges a patient advocate's review found wrong, one test per finding.

Each test names the finding it guards; each failed on the rule base before the calibration.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

import secondopinion
from secondopinion import Advice, Priority
from secondopinion.recommendations import SetDeadline


def _advise(case: dict[str, Any]) -> Advice:
    return secondopinion.advise(case)


def _texts(advice: Advice) -> str:
    parts: list[str] = []
    for rec in advice.recommendations:
        parts += [rec.title, rec.detail]
        for field in type(rec).specific_fields():
            value = getattr(rec, field.name)
            if isinstance(value, tuple):
                parts += [str(v) for v in value]
    return "\n".join(parts)


# ---------------------------------------------------------------- 1. emergencies


@pytest.mark.parametrize(
    "treatment",
    [
        {"urgency": "emergency"},
        {"days_to_decide": 0},
        {"days_to_decide": 1},
        {"urgency": "emergency", "kind": "surgery"},
    ],
)
def test_an_emergency_gets_one_critical_card_first_and_a_short_list(treatment: dict[str, Any]) -> None:
    advice = _advise({"diagnosis": {"seriousness": "life_threatening"}, "treatment": {"kind": "surgery", **treatment}})
    first = advice.recommendations[0]
    assert first.kind == "get_care_now" and first.priority is Priority.CRITICAL
    assert "emergency" in first.title.lower()
    assert [r.kind for r in advice.recommendations].count("get_care_now") == 1
    assert len(advice.recommendations) <= 4
    kinds = set(advice.kinds)
    assert not kinds & {"seek_second_opinion", "set_deadline", "act_quickly", "check_credentials", "prepare_questions"}
    assert "before you agree to it" not in _texts(advice)


def test_an_emergency_with_conflicting_opinions_still_leads_with_care() -> None:
    case = {
        "treatment": {"urgency": "emergency"},
        "opinions": [{"treatment": "surgery"}, {"treatment": "medication"}],
    }
    advice = _advise(case)
    assert advice.recommendations[0].kind == "get_care_now"
    assert "resolve_conflict" not in advice.kinds and "get_another_opinion" not in advice.kinds


_EMERGENCY_CARDS = {
    "get_care_now": {"GET-CARE-NOW"},
    "gather_records": {"EMERGENCY-RECORDS-LATER"},
    "check_answers": {"CHECK-ANSWERS-URGENCY-DAYS"},
}
"""What an emergency may get, and from which rules: care now, the records later, and a check of the
answers that make it an emergency. No card sends the patient to doctors, insurers or records first."""


def _every_rule_example_as_an_emergency() -> list[Any]:
    params = []
    for rule in secondopinion.Rulebook.load().active:
        for n, example in enumerate(rule.fires):
            for label, how in (("urgency", {"urgency": "emergency"}), ("today", {"days_to_decide": 0})):
                case = {k: (dict(v) if isinstance(v, dict) else v) for k, v in example.case.items()}
                case["treatment"] = {**case.get("treatment", {}), **how}
                params.append(pytest.param(case, id=f"{rule.id}-{n}-{label}"))
    return params


@pytest.mark.parametrize("case", _every_rule_example_as_an_emergency())
def test_every_rule_is_quiet_in_an_emergency(case: dict[str, Any]) -> None:
    # Each rule's own firing example, made an emergency: only the emergency cards may remain.
    # NOT-INDEPENDENT-*, INSURER-REMOTE-*, HANDLE-OBJECTION, TRUSTED-TEAM-*, CHILD-SYMPTOM-LOG,
    # ASK-LESS-INVASIVE-MINOR, RECORDS-REFUSED and most CHECK-ANSWERS-* fired in an emergency.
    advice = _advise(case)
    assert advice.kinds[0] == "get_care_now"
    assert len(advice.recommendations) <= 4
    allowed = _EMERGENCY_CARDS
    loud = {r.kind: r.rule_ids for r in advice.recommendations if not set(r.rule_ids) <= allowed.get(r.kind, set())}
    assert loud == {}


@pytest.mark.parametrize("days", range(2, 120))
def test_every_deadline_leaves_time_after_the_opinion(days: int) -> None:
    advice = _advise(
        {"diagnosis": {"seriousness": "serious"}, "treatment": {"kind": "surgery", "days_to_decide": days}}
    )
    deadline = advice.by_kind("set_deadline")
    assert isinstance(deadline, SetDeadline)
    assert deadline.get_opinion_within_days is not None
    assert 1 <= deadline.get_opinion_within_days < days


def test_no_opinion_deadline_when_there_is_no_time() -> None:
    assert SetDeadline(title="t", detail="d", decide_within_days=1).get_opinion_within_days is None
    assert SetDeadline(title="t", detail="d", decide_within_days=0).get_opinion_within_days is None


def test_an_urgent_case_without_a_date_asks_for_it_first() -> None:
    advice = _advise({"diagnosis": {"seriousness": "serious"}, "treatment": {"urgency": "urgent"}})
    first = advice.recommendations[0]
    assert first.kind == "set_deadline" and first.priority is Priority.CRITICAL
    assert isinstance(first, SetDeadline) and first.ask_doctor_how_long


def test_a_few_days_to_decide_gives_a_short_list() -> None:
    case = {
        "diagnosis": {"seriousness": "serious", "cancer": "yes"},
        "treatment": {"kind": "surgery", "days_to_decide": 5},
    }
    advice = _advise(case)
    assert advice.recommendations[0].kind == "set_deadline"
    assert len(advice.recommendations) <= 10
    assert "check_credentials" not in advice.kinds and "act_quickly" not in advice.kinds


@pytest.mark.parametrize(
    ("case", "priority"),
    [
        # a minor diagnosis with only a preference: the date matters, a critical first card does not fit
        (
            {
                "diagnosis": {"seriousness": "minor"},
                "treatment": {"kind": "other", "risk": "low", "days_to_decide": 3},
                "patient": {"wants_all_options": "yes"},
            },
            Priority.MEDIUM,
        ),
        (
            {
                "diagnosis": {"seriousness": "minor"},
                "treatment": {"kind": "medication", "risk": "low", "urgency": "urgent"},
                "doctor": {"trust": "low"},
            },
            Priority.MEDIUM,
        ),
        # a pressing reason keeps it critical, minor or not; so does a preference outside a minor diagnosis
        (
            {
                "diagnosis": {"seriousness": "minor"},
                "treatment": {"kind": "surgery", "risk": "high", "days_to_decide": 3},
            },
            Priority.CRITICAL,
        ),
        (
            {"diagnosis": {"seriousness": "minor", "certainty": "unclear"}, "treatment": {"urgency": "urgent"}},
            Priority.CRITICAL,
        ),
        (
            {
                "diagnosis": {"seriousness": "moderate"},
                "treatment": {"days_to_decide": 3},
                "patient": {"wants_all_options": "yes"},
            },
            Priority.CRITICAL,
        ),
    ],
    ids=[
        "minor-options-3-days",
        "minor-low-trust-urgent",
        "minor-risky-surgery",
        "minor-unclear-urgent",
        "moderate-options",
    ],
)
def test_a_short_deadline_is_in_proportion(case: dict[str, Any], priority: Priority) -> None:
    deadline = _advise(case).by_kind("set_deadline")
    assert deadline is not None and deadline.priority is priority


# ---------------------------------------------------------------- 2. comparing diagnoses


def _two(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    return {"diagnosis": {"spine": "yes"}, "opinions": [a, b]}


def test_differently_worded_diagnoses_are_not_a_conflict() -> None:
    advice = _advise(
        _two(
            {"diagnosis": "L4-L5 disc herniation", "treatment": "surgery"},
            {"diagnosis": "herniated disc L4/5", "treatment": "surgery"},
        )
    )
    assert "clarify_diagnoses" in advice.kinds
    assert not set(advice.kinds) & {"resolve_conflict", "get_another_opinion", "ask_doctors_to_confer"}


def test_the_same_code_worded_differently_is_agreement() -> None:
    code = {"diagnosis_code": "M51.26", "diagnosis_code_system": "icd10cm", "treatment": "surgery"}
    advice = _advise(_two({"diagnosis": "L4-L5 disc herniation", **code}, {"diagnosis": "herniated disc L4/5", **code}))
    assert "proceed_with_confidence" in advice.kinds
    assert "clarify_diagnoses" not in advice.kinds


def test_different_codes_in_one_system_are_a_conflict() -> None:
    advice = _advise(
        _two(
            {"diagnosis_code": "C83.30", "diagnosis_code_system": "icd10cm", "treatment": "chemotherapy"},
            {"diagnosis_code": "C91.10", "diagnosis_code_system": "icd10cm", "treatment": "chemotherapy"},
        )
    )
    assert {"resolve_conflict", "get_another_opinion"} <= set(advice.kinds)


@pytest.mark.parametrize(("said", "kind"), [("different", "resolve_conflict"), ("same", "proceed_with_confidence")])
def test_the_patient_can_say_how_the_diagnoses_compare(said: str, kind: str) -> None:
    advice = _advise(
        _two(
            {"diagnosis": "L4-L5 disc herniation", "treatment": "surgery"},
            {"diagnosis": "herniated disc L4/5", "treatment": "surgery", "diagnosis_vs_first": said},
        )
    )
    assert kind in advice.kinds
    assert "clarify_diagnoses" not in advice.kinds


def test_a_code_without_its_system_is_not_compared() -> None:
    advice = _advise(
        _two(
            {"diagnosis_code": "C83.30", "treatment": "chemotherapy"},
            {"diagnosis_code": "C91.10", "treatment": "chemotherapy"},
        )
    )
    assert "resolve_conflict" not in advice.kinds and "proceed_with_confidence" not in advice.kinds


def test_codes_from_two_systems_are_checked_with_the_doctors() -> None:
    advice = _advise(
        _two(
            {"diagnosis_code": "M51.26", "diagnosis_code_system": "icd10cm", "treatment": "surgery"},
            {"diagnosis_code": "202708005", "diagnosis_code_system": "snomed", "treatment": "surgery"},
        )
    )
    assert "clarify_diagnoses" in advice.kinds and "resolve_conflict" not in advice.kinds


@pytest.mark.parametrize(
    ("first", "second", "conflict"),
    [
        ("none", "wait_and_see", False),  # one family: no treatment now
        ("wait_and_see", "none", False),
        ("medication", "other", False),  # "other" cannot be compared
        ("other", "surgery", False),
        ("other", "other", False),
        ("unknown", "surgery", False),
        ("none", "surgery", True),
        ("surgery", "wait_and_see", True),
        ("medication", "chemotherapy", True),
        ("chemotherapy", "radiation", True),
        ("surgery", "medication", True),
    ],
)
def test_only_treatments_that_can_be_compared_and_differ_conflict(first: str, second: str, conflict: bool) -> None:
    advice = _advise({"opinions": [{"diagnosis": "knee arthritis", "treatment": t} for t in (first, second)]})
    assert ("resolve_conflict" in advice.kinds) is conflict
    assert ("get_another_opinion" in advice.kinds) is conflict


@pytest.mark.parametrize(("first", "second"), [("other", "other"), ("none", "wait_and_see"), ("medication", "other")])
def test_plans_that_cannot_be_compared_are_no_agreement_either(first: str, second: str) -> None:
    # Two plans both called "other" (physiotherapy, an injection) may differ; no treatment and a
    # watch-and-wait plan are close but not the same plan to go ahead with.
    advice = _advise({"opinions": [{"diagnosis": "knee arthritis", "treatment": t} for t in (first, second)]})
    assert "proceed_with_confidence" not in advice.kinds


@pytest.mark.parametrize(
    ("later", "clarify"),
    [
        ({"diagnosis": "cluster headache", "diagnosis_vs_first": "same"}, True),  # "same" is about opinion 0
        ({"diagnosis": "cluster headache", "diagnosis_vs_first": "different"}, True),
        ({"diagnosis_code": "G44.009", "diagnosis_code_system": "snomed", "diagnosis_vs_first": "same"}, True),
        ({"diagnosis": "migraine", "diagnosis_vs_first": "same"}, False),  # the same words as opinion 1
    ],
)
def test_the_patients_word_about_the_first_doctor_does_not_settle_a_later_pair(
    later: dict[str, Any], clarify: bool
) -> None:
    # Opinion 2's diagnosis_vs_first compares it with opinion 0 (here unlabelled); it hid a wording
    # difference between opinions 1 and 2.
    code = {"diagnosis_code": "G43.909", "diagnosis_code_system": "icd10cm"}
    opinions = [
        {"treatment": "medication"},
        {"diagnosis": "migraine", "treatment": "medication", **code},
        {"treatment": "medication", **later},
    ]
    if "diagnosis_code" not in later:
        del opinions[1]["diagnosis_code"], opinions[1]["diagnosis_code_system"]
    advice = _advise({"opinions": opinions})
    assert ("clarify_diagnoses" in advice.kinds) is clarify


def test_two_opinions_said_to_match_the_first_match_each_other() -> None:
    same = {"diagnosis_vs_first": "same", "treatment": "medication"}
    opinions = [
        {"diagnosis": "atrial fibrillation", "treatment": "medication"},
        {"diagnosis": "afib", **same},
        {"diagnosis": "AF", **same},
    ]
    advice = _advise({"opinions": opinions})
    assert "clarify_diagnoses" not in advice.kinds and "proceed_with_confidence" in advice.kinds


# ---------------------------------------------------------------- 3. three or more opinions


def _split() -> dict[str, Any]:
    return {
        "diagnosis": {"seriousness": "serious", "cancer": "yes"},
        "treatment": {"kind": "surgery"},
        "opinions": [
            {"specialty": "surgeon", "diagnosis": "prostate cancer", "treatment": "surgery"},
            {"specialty": "radiation_oncologist", "diagnosis": "prostate cancer", "treatment": "radiation"},
            {"specialty": "surgeon", "diagnosis": "prostate cancer", "treatment": "surgery"},
        ],
    }


def test_a_two_to_one_split_gets_one_consistent_answer() -> None:
    advice = _advise(_split())
    assert "reflect_before_more_opinions" in advice.kinds
    assert "get_another_opinion" not in advice.kinds
    reflect = advice.by_kind("reflect_before_more_opinions")
    assert reflect is not None and reflect.priority is Priority.HIGH


def test_no_specialist_is_suggested_whose_kind_already_gave_an_opinion() -> None:
    case = {
        "diagnosis": {"seriousness": "serious", "cancer": "yes"},
        "treatment": {"kind": "surgery"},
        "opinions": [{"specialty": "radiation_oncologist", "treatment": "radiation"}],
    }
    other = _advise(case).by_kind("consider_other_specialty")
    assert other is not None
    assert not any("radiation" in s for s in getattr(other, "specialties", ()))
    spine = {"diagnosis": {"spine": "yes", "seriousness": "serious"}, "opinions": [{"specialty": "neurosurgeon"}]}
    consult = _advise(spine).by_kind("consult_specialties")
    assert consult is not None
    assert not any("neurosurgeon" in s for s in getattr(consult, "specialties", ()))


@pytest.mark.parametrize("count", [3, 4, 5])
def test_texts_count_opinions_right(count: int) -> None:
    opinions = [{"treatment": "surgery" if i % 2 else "medication", "diagnosis": "gout"} for i in range(count)]
    text = _texts(_advise({"diagnosis": {"seriousness": "serious"}, "opinions": opinions}))
    assert not re.search(r"\bthird opinion\b|\bboth\b", text, re.IGNORECASE)


# ---------------------------------------------------------------- 4. agreement that is not independent


@pytest.mark.parametrize(
    ("second", "expected"),
    [
        ({"close_associate_of_first": "yes"}, "choose_independent_doctor"),
        ({"institution": "City Hospital"}, "choose_independent_doctor"),
        ({"mode": "remote"}, "be_seen_in_person"),
    ],
)
def test_agreement_that_is_not_independent_is_not_confirmation(second: dict[str, Any], expected: str) -> None:
    case = {
        "diagnosis": {"seriousness": "serious"},
        "opinions": [
            {"institution": "city hospital", "diagnosis": "gallstones", "treatment": "surgery"},
            {"diagnosis": "gallstones", "treatment": "surgery", **second},
        ],
    }
    advice = _advise(case)
    assert "proceed_with_confidence" not in advice.kinds
    assert expected in advice.kinds


@pytest.mark.parametrize(
    "second",
    [
        {"diagnosis": "gallbladder polyp", "diagnosis_vs_first": "different"},  # the patient says they differ
        {"diagnosis": "gallbladder polyp"},  # worded differently, not known to match
        {"diagnosis_code": "K82.4", "diagnosis_code_system": "icd10cm"},  # a different code
        {},  # no diagnosis given
    ],
)
def test_same_place_and_same_treatment_without_agreement_is_no_agreement(second: dict[str, Any]) -> None:
    # AGREEMENT-SAME-PLACE marked an "agreement" not independent for any two opinions from one place
    # with the same treatment, even when their diagnoses differ or are not known to match.
    first = {"institution": "city hospital", "diagnosis": "gallstones", "treatment": "surgery"}
    first |= {"diagnosis_code": "K80.20", "diagnosis_code_system": "icd10cm"} if "diagnosis_code" in second else {}
    advice = _advise({"opinions": [first, {"institution": "City Hospital", "treatment": "surgery", **second}]})
    assert not [f for f in advice.derived_facts if f.type == "agreement_not_independent"]
    assert "choose_independent_doctor" in advice.kinds  # the second opinion is still from the same place


def test_a_same_place_pair_that_does_not_agree_does_not_hold_back_an_independent_agreement() -> None:
    case = {
        "diagnosis": {"seriousness": "moderate"},
        "opinions": [
            {"institution": "city hospital", "diagnosis": "gallstones", "treatment": "surgery"},
            {"institution": "city hospital", "treatment": "surgery"},
            {"institution": "lake clinic", "diagnosis": "gallstones", "treatment": "surgery"},
        ],
    }
    assert "proceed_with_confidence" in _advise(case).kinds


@pytest.mark.parametrize(
    "third",
    [{"diagnosis": "gallstones", "treatment": "medication"}, {"diagnosis": "gallstones", "treatment": "wait_and_see"}],
)
def test_any_conflict_among_three_holds_back_going_ahead(third: dict[str, Any]) -> None:
    # A choice, not a defect: with a dissenting third doctor the opinions do not agree, even if a pair does.
    pair = {"diagnosis": "gallstones", "treatment": "surgery"}
    opinions = [{"institution": "city hospital", **pair}, {"institution": "lake clinic", **pair}, third]
    advice = _advise({"opinions": opinions})
    assert "proceed_with_confidence" not in advice.kinds
    assert {"reflect_before_more_opinions", "resolve_conflict"} <= set(advice.kinds)


@pytest.mark.parametrize(
    ("dependent", "independent_agreement_counts"),
    [
        ({"mode": "remote"}, True),
        ({"institution": "north clinic", "close_associate_of_first": "yes"}, True),
        # the outside doctor's agreement is judged on its own pair (AGREEMENT-INDEPENDENT), so the
        # same-place pair no longer holds "go ahead" back, and the same-place card gives way
        ({"institution": "City Hospital"}, True),
    ],
    ids=["remote", "colleague", "same-place"],
)
def test_an_independent_in_person_agreement_among_three_is_not_sent_to_another_doctor(
    dependent: dict[str, Any], independent_agreement_counts: bool
) -> None:
    # With an independent, in-person agreement already in, an outside view or an in-person visit would
    # be yet another opinion (G49 first): the independence cards give way, and the agreement counts.
    same = {"diagnosis": "inguinal hernia", "treatment": "surgery"}
    opinions = [
        {"institution": "city hospital", "mode": "in_person", **same},
        {**same, **dependent},
        {"institution": "university clinic", "mode": "in_person", "close_associate_of_first": "no", **same},
    ]
    advice = _advise({"opinions": opinions})
    assert not {"be_seen_in_person", "get_another_opinion"} & set(advice.kinds)
    assert ("choose_independent_doctor" in advice.kinds) is not independent_agreement_counts
    assert "reflect_before_more_opinions" in advice.kinds
    assert ("proceed_with_confidence" in advice.kinds) is independent_agreement_counts


# ---------------------------------------------------------------- 5. proportion


def test_minor_low_risk_surgery_stays_short_and_optional() -> None:
    advice = _advise(
        {"diagnosis": {"seriousness": "minor"}, "treatment": {"kind": "surgery", "risk": "low", "invasiveness": "low"}}
    )
    assert "second_opinion_optional" in advice.kinds
    assert "seek_second_opinion" not in advice.kinds
    assert len(advice.recommendations) <= 3
    assert "big step" not in _texts(advice)


def test_a_small_skin_cancer_is_not_treated_like_a_major_one() -> None:
    case = {
        "diagnosis": {"seriousness": "minor", "cancer": "yes", "cancer_type": "basal cell skin cancer"},
        "treatment": {"kind": "surgery", "risk": "low", "invasiveness": "low"},
        "records": {"imaging": "none", "biopsy_slides": "yes"},
    }
    advice = _advise(case)
    assert len(advice.recommendations) <= 8
    assert "prefer_cancer_center" not in advice.kinds and "consider_other_specialty" not in advice.kinds
    review = advice.by_kind("expert_review")
    assert review is not None and "radiologist" not in getattr(review, "reviewers", ())
    assert not {e.id for r in advice.recommendations for e in r.evidence} & {"E1", "E3"}


@pytest.mark.parametrize(
    "treatment", [{"kind": "chemotherapy"}, {"kind": "radiation"}, {"kind": "other", "invasiveness": "high"}]
)
def test_intensive_or_invasive_treatment_alone_calls_for_an_opinion(treatment: dict[str, Any]) -> None:
    advice = _advise({"treatment": treatment})
    seek = advice.by_kind("seek_second_opinion")
    assert seek is not None and seek.priority is Priority.HIGH


def test_a_small_operation_wanted_for_the_options_is_not_a_big_step() -> None:
    advice = _advise(
        {
            "diagnosis": {"seriousness": "minor"},
            "treatment": {"kind": "surgery", "risk": "low", "invasiveness": "low"},
            "patient": {"wants_all_options": "yes"},
        }
    )
    seek = advice.by_kind("seek_second_opinion")
    assert seek is not None and seek.priority is Priority.MEDIUM
    assert "big step" not in _texts(advice)


# ---------------------------------------------------------------- 6. stated facts are not asked again


@pytest.mark.parametrize("answer", ["yes", "no"])
def test_a_stated_referral_rule_is_not_asked_again(answer: str) -> None:
    case = {"diagnosis": {"seriousness": "serious"}, "insurance": {"insured": "yes", "referral_required": answer}}
    advice = _advise(case)
    assert "referral" not in " ".join(getattr(advice.by_kind("check_insurance"), "questions", ())).lower()
    if answer == "yes":
        referral = advice.by_kind("ask_for_referral")
        assert referral is not None and any("plan" in a for a in getattr(referral, "ask", ()))


def test_a_stated_coverage_answer_is_not_asked_again() -> None:
    case = {"diagnosis": {"seriousness": "serious"}, "insurance": {"insured": "yes", "covers_second_opinion": "yes"}}
    questions = getattr(_advise(case).by_kind("check_insurance"), "questions", ())
    assert "Do you pay for a second opinion?" not in questions


def test_a_plan_that_pays_for_no_opinion_is_not_asked_about_one_more() -> None:
    case = {
        "insurance": {"insured": "yes", "covers_second_opinion": "no"},
        "opinions": [{"diagnosis": "gout", "treatment": "medication"}, {"diagnosis": "gout", "treatment": "surgery"}],
    }
    questions = getattr(_advise(case).by_kind("check_insurance"), "questions", ())
    assert "Will you pay for one more opinion?" not in questions


# ---------------------------------------------------------------- 7. evidence in scope


@pytest.mark.parametrize(("cancer_type", "shown"), [("breast", True), ("prostate", False), ("lymphoma", False)])
def test_the_breast_cancer_figure_is_shown_for_breast_cancer_only(cancer_type: str, shown: bool) -> None:
    advice = _advise({"diagnosis": {"seriousness": "serious", "cancer": "yes", "cancer_type": cancer_type}})
    evidence = {e.id for r in advice.recommendations for e in r.evidence}
    assert ("E3" in evidence) is shown


# ---------------------------------------------------------------- 8. wording that assumes facts


def test_a_wait_and_see_plan_is_not_told_before_treatment_starts() -> None:
    advice = _advise({"treatment": {"kind": "wait_and_see"}, "patient": {"uneasy_with_plan": "yes"}})
    assert "before your treatment starts" not in _texts(advice).lower()
    assert "act_quickly" in advice.kinds


def test_a_treatment_not_started_is_not_called_not_helping() -> None:
    advice = _advise({"diagnosis": {"seriousness": "serious"}, "treatment": {"started": "no", "working": "no"}})
    assert "not helping" not in _texts(advice)
    assert "check_answers" in advice.kinds


def test_an_objection_from_a_doctor_never_told_is_a_check_not_a_script() -> None:
    advice = _advise(
        {"diagnosis": {"seriousness": "serious"}, "doctor": {"reaction": "objects", "told_about_second_opinion": "no"}}
    )
    assert "handle_objection" not in advice.kinds
    check = advice.by_kind("check_answers")
    assert check is not None and "doctor.told_about_second_opinion" in getattr(check, "fields", ())
    assert [r.kind for r in advice.recommendations].count("check_answers") == 1


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ({"diagnosis": "gout"}, {"diagnosis": "gout", "diagnosis_vs_first": "different"}),
        (
            {"diagnosis_code": "K80.20", "diagnosis_code_system": "icd10cm"},
            {"diagnosis_code": "k8020", "diagnosis_code_system": "icd10cm", "diagnosis_vs_first": "different"},
        ),
        (
            {"diagnosis_code": "K80.20", "diagnosis_code_system": "icd10cm"},
            {"diagnosis_code": "K80.21", "diagnosis_code_system": "icd10cm", "diagnosis_vs_first": "same"},
        ),
    ],
    ids=["different-same-label", "different-same-code", "same-codes-differ"],
)
def test_the_patients_word_against_the_labels_or_codes_is_a_check_not_a_conflict(
    first: dict[str, Any], second: dict[str, Any]
) -> None:
    # "different" with identical labels fired both AGREE-JOIN and CONFLICT-SAID-DIFFERENT: a high "third
    # opinion" built on answers that cannot both be right. The advice built on them waits: check the
    # answers, and ask the doctors whether they mean the same illness.
    advice = _advise({"opinions": [{**first, "treatment": "surgery"}, {**second, "treatment": "surgery"}]})
    check = advice.by_kind("check_answers")
    assert check is not None and "opinions[].diagnosis_vs_first" in getattr(check, "fields", ())
    assert "clarify_diagnoses" in advice.kinds
    assert not {"resolve_conflict", "get_another_opinion", "ask_doctors_to_confer", "proceed_with_confidence"} & set(
        advice.kinds
    )
    assert not [f for f in advice.derived_facts if f.type == "opinions_conflict"]


def test_a_real_treatment_conflict_stands_beside_a_diagnosis_contradiction() -> None:
    second = {"diagnosis": "gout", "diagnosis_vs_first": "different", "treatment": "surgery"}
    advice = _advise({"opinions": [{"diagnosis": "gout", "treatment": "medication"}, second]})
    assert {"check_answers", "resolve_conflict"} <= set(advice.kinds)


# ---------------------------------------------------------------- 9. claims the guides do not make


@pytest.mark.parametrize(
    ("phrase", "kind"),
    [
        (r"\btop\b", None),  # the guide names NCI-designated centres, not "top" ones
        (r"most plans pay", None),
        (r"pitfalls", None),
        (r"\bphone\b", "check_insurance"),  # the guide says insurers often do not pay for internet opinions only
        (r"two-thirds", None),
    ],
)
def test_no_rule_text_makes_a_claim_beyond_the_guides(phrase: str, kind: str | None) -> None:
    book = secondopinion.Rulebook.load()
    for rule in book.rules:
        then = rule.then
        if kind is not None and getattr(then, "kind", None) != kind:
            continue
        text = " ".join(str(getattr(then, name, "")) for name in ("title", "detail", "fields"))
        assert not re.search(phrase, text, re.IGNORECASE), rule.id


# ---------------------------------------------------------------- 10. texts that name rules


_RULE_ID_LIKE = re.compile(r"(?<![A-Za-z0-9_-])[A-Z][A-Z0-9]*(?:-[A-Z0-9]+)+(?![A-Za-z0-9_-])")


def test_texts_name_only_rules_that_exist() -> None:
    # CONFLICT-JOIN-DIAGNOSIS was replaced by CONFLICT-JOIN-CODES, yet the README, a rationale and
    # the catalogue still named it. Any word shaped like a rule id whose first part is that of a
    # shipped rule (CONFLICT-, AGREE-, ...) must be a shipped rule. The changelog is history.
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    book = secondopinion.Rulebook.load()
    ids = {rule.id for rule in book.rules}
    families = {rule_id.split("-")[0] for rule_id in ids}
    texts = {f"rule {rule.id}": f"{rule.title} {rule.rationale}" for rule in book.rules}
    for path in [root / "README.md", *sorted((root / "docs").rglob("*.md"))]:
        texts[str(path.relative_to(root))] = path.read_text(encoding="utf-8")
    stale = sorted(
        f"{where}: {word}"
        for where, text in texts.items()
        for word in set(_RULE_ID_LIKE.findall(text))
        if word.split("-")[0] in families and word not in ids
    )
    assert stale == []
