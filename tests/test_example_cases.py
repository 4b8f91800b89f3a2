"""The bundled example cases and the advice each one must get.

Each case in examples/cases/ stands for an area of the guidance. For each we
assert which kinds appear and which must not, what comes first, and the
kind-specific content a patient acts on (the specialties to consult, the
deadline's days, the records checklist, the openers and questions). Every
recommendation must lead back to active rules and to the source documents.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import attrs
import pytest
from typer.testing import CliRunner

import secondopinion
from secondopinion import Advice, Priority, Rulebook, case_facts, load_case
from secondopinion.cli import app

CASES = Path(__file__).resolve().parent.parent / "examples" / "cases"
BOOK = Rulebook.load()
AREAS = {
    "when_to_seek",
    "timing",
    "choosing_the_doctor",
    "insurance_and_cost",
    "records",
    "talking_with_the_doctor",
    "preparing",
    "after_the_opinions",
}
HOW_TO = {"set_deadline", "act_quickly", "check_insurance", "gather_records", "talk_to_doctor", "prepare_questions"}
SPINE_SPECIALTIES = {
    "orthopedic surgeon (bone and joint surgeon)",
    "neurosurgeon (brain and spine surgeon)",
    "physical therapist",
    "pain specialist",
    "physiatrist (rehab doctor)",
}


@attrs.frozen
class Expected:
    """What one bundled case must be told."""

    area: str
    first: tuple[str, ...]
    present: frozenset[str] = frozenset()
    absent: frozenset[str] = frozenset()


EXPECTED: dict[str, Expected] = {
    "minor-problem.json": Expected("when_to_seek", ("second_opinion_optional",)),
    "child-vague-symptoms.json": Expected(
        "when_to_seek",
        ("seek_second_opinion", "find_condition_specialist"),
        frozenset({"keep_symptom_record", "be_seen_in_person", "set_deadline"}),
        frozenset({"second_opinion_optional", "manage_costs"}),
    ),
    "cancer-surgery.json": Expected(
        "when_to_seek",
        ("seek_second_opinion", "expert_review", "set_deadline", "act_quickly"),
        frozenset({"prefer_cancer_center", "consider_other_specialty", "send_original_materials", "gather_records"}),
        frozenset({"second_opinion_optional", "proceed_with_confidence", "manage_costs"}),
    ),
    "short-deadline.json": Expected(
        "timing",
        ("set_deadline", "seek_second_opinion", "ask_about_alternatives"),
        frozenset({"gather_records", "send_original_materials"}),
        frozenset({"second_opinion_optional"}),
    ),
    "rare-condition-far-away.json": Expected(
        "choosing_the_doctor",
        ("seek_second_opinion", "find_condition_specialist"),
        frozenset({"consider_remote_opinion", "be_seen_in_person", "check_insurance", "check_credentials"}),
        frozenset({"set_deadline", "talk_to_doctor"}),
    ),
    "paying-yourself.json": Expected(
        "insurance_and_cost",
        ("seek_second_opinion", "set_deadline"),
        frozenset({"manage_costs"}),
        frozenset({"check_insurance", "prefer_in_network"}),
    ),
    "records-refused.json": Expected(
        "records",
        ("seek_second_opinion", "expert_review"),
        frozenset({"assert_records_rights", "send_original_materials", "gather_records", "prefer_in_network"}),
    ),
    "asking-is-hard.json": Expected(
        "talking_with_the_doctor",
        ("seek_second_opinion", "set_deadline"),
        frozenset({"talk_to_doctor", "ask_for_referral"}),
        frozenset({"handle_objection", "second_opinion_optional"}),
    ),
    "doctor-objects.json": Expected(
        "talking_with_the_doctor",
        ("seek_second_opinion",),
        frozenset({"handle_objection", "ask_for_referral", "build_trusted_team"}),
        frozenset({"talk_to_doctor"}),
    ),
    "spine-surgery.json": Expected(
        "preparing",
        ("seek_second_opinion", "consult_specialties"),
        frozenset({"prepare_questions", "be_seen_in_person", "consider_other_specialty", "send_original_materials"}),
        frozenset({"second_opinion_optional"}),
    ),
    "opinions-agree.json": Expected(
        "after_the_opinions",
        ("proceed_with_confidence",),
        frozenset({"get_another_opinion", "decide_with_your_values", "after_the_opinion"}),
        frozenset({"seek_second_opinion", "resolve_conflict", "ask_about_alternatives"}) | HOW_TO,
    ),
    "conflicting-opinions.json": Expected(
        "after_the_opinions",
        ("get_another_opinion",),
        frozenset({"resolve_conflict", "ask_doctors_to_confer", "consult_specialties", "decide_with_your_values"}),
        frozenset({"proceed_with_confidence", "seek_second_opinion", "second_opinion_optional"}),
    ),
    "three-opinions.json": Expected(
        "after_the_opinions",
        ("choose_independent_doctor",),
        # Three opinions: reflect first (G49); differently worded diagnoses are checked with the
        # doctors, not counted as a conflict; agreement from the same place and a remote service is
        # not independent.
        frozenset({"reflect_before_more_opinions", "clarify_diagnoses", "be_seen_in_person"}),
        frozenset({"proceed_with_confidence", "seek_second_opinion", "get_another_opinion", "resolve_conflict"}),
    ),
}


def _advise(name: str) -> Advice:
    return secondopinion.advise((CASES / name).read_text(encoding="utf-8"))


def _field(advice: Advice, kind: str, name: str) -> Any:
    rec = advice.by_kind(kind)
    assert rec is not None, f"no {kind}"
    return getattr(rec, name)


def test_every_bundled_case_has_expectations_and_every_area_a_case() -> None:
    assert {p.name for p in CASES.glob("*.json")} == set(EXPECTED)
    assert {e.area for e in EXPECTED.values()} == AREAS


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_kinds_present_absent_and_most_important_first(name: str) -> None:
    expected = EXPECTED[name]
    advice = _advise(name)
    assert advice.kinds[: len(expected.first)] == expected.first
    assert expected.present <= set(advice.kinds), expected.present - set(advice.kinds)
    assert not expected.absent & set(advice.kinds), expected.absent & set(advice.kinds)
    ranks = [r.priority.rank for r in advice.recommendations]
    assert ranks == sorted(ranks)
    for a, b in BOOK.incompatible_kinds:
        assert not {a, b} <= set(advice.kinds)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_recommendation_leads_back_to_active_rules_and_source_documents(name: str) -> None:
    advice = _advise(name)
    case = load_case((CASES / name).read_text(encoding="utf-8"))
    known_facts = {f["fid"] for f in case_facts(case)} | {f.fid for f in advice.derived_facts}
    for rec in advice.recommendations:
        assert rec.rule_ids, rec.kind
        rules = [BOOK.rule(rid) for rid in rec.rule_ids]
        assert all(r.status == "active" and r.recommends == rec.kind for r in rules)
        assert set(rec.guidance) == {g for r in rules for g in r.guidance}
        assert rec.sources and set(rec.sources) <= {s for r in rules for s in r.sources}
        for src in rec.sources:
            assert src.section in BOOK.documents[src.file].sections
        assert {e.id for e in rec.evidence} <= {e for r in rules for e in r.evidence}
        for derivation in rec.derivation:
            assert set(derivation.matched.values()) <= known_facts
    for fact in advice.derived_facts:
        assert fact.derivations
        assert all(BOOK.rule(d.rule_id).derives == fact.type for d in fact.derivations)


@pytest.mark.parametrize("name", ["cancer-surgery.json", "minor-problem.json", "spine-surgery.json"])
def test_the_command_line_json_carries_rules_and_sources(name: str) -> None:
    result = CliRunner().invoke(app, ["advise", str(CASES / name), "--format", "json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["recommendations"]
    for rec in data["recommendations"]:
        assert rec["derivation"] and all(BOOK.rule(d["rule_id"]).status == "active" for d in rec["derivation"])
        assert rec["sources"] and all(s["file"] in BOOK.documents for s in rec["sources"])


# --------------------------------------------------------------------------- kind-specific content


def test_minor_problem_gets_one_short_optional_answer() -> None:
    advice = _advise("minor-problem.json")
    assert advice.kinds == ("second_opinion_optional",)
    (only,) = advice.recommendations
    assert only.priority is Priority.LOW and only.guidance == ("G14",)


def test_cancer_surgery_full_set() -> None:
    advice = _advise("cancer-surgery.json")
    assert len(advice.recommendations) >= 15
    assert _field(advice, "set_deadline", "decide_within_days") == 30
    assert _field(advice, "set_deadline", "get_opinion_within_days") == 23
    assert set(_field(advice, "expert_review", "reviewers")) == {"pathologist", "radiologist"}
    assert [e.id for e in advice.by_kind("prefer_cancer_center").evidence] == ["E1"]  # type: ignore[union-attr]
    assert "E3" in {e.id for e in advice.by_kind("seek_second_opinion").evidence}  # type: ignore[union-attr]
    documents = " / ".join(_field(advice, "gather_records", "documents"))
    assert "pathology report" in documents and "medicines" in documents
    assert "operative report" not in documents  # the case says there is none
    items = " ".join(_field(advice, "send_original_materials", "items"))
    assert "biopsy slides" in items and "digital scans" in items and "films" not in items
    openers = _field(advice, "talk_to_doctor", "openers")
    assert any("Before we begin" in o for o in openers) and any("every choice" in o for o in openers)
    assert "How many times a year do you do this operation?" in _field(advice, "prepare_questions", "questions")
    specialties = " ".join(_field(advice, "consider_other_specialty", "specialties"))
    assert "medical oncologist" in specialties and "radiation oncologist" in specialties


def test_short_deadline_comes_first_and_is_computed_from_the_days() -> None:
    advice = _advise("short-deadline.json")
    first = advice.recommendations[0]
    assert first.kind == "set_deadline" and first.priority is Priority.CRITICAL
    assert _field(advice, "set_deadline", "decide_within_days") == 5
    assert _field(advice, "set_deadline", "get_opinion_within_days") == 4
    assert _field(advice, "set_deadline", "ask_doctor_how_long") is False
    assert "discharge summary from each hospital stay" in _field(advice, "gather_records", "documents")


def test_child_with_vague_symptoms() -> None:
    advice = _advise("child-vague-symptoms.json")
    assert "pediatric specialist" in _field(advice, "find_condition_specialist", "specialist")
    assert advice.by_kind("be_seen_in_person").priority is Priority.MEDIUM  # type: ignore[union-attr]
    assert "whether to act now instead of waiting" in _field(advice, "seek_second_opinion", "about")
    assert _field(advice, "set_deadline", "ask_doctor_how_long") is True
    documents = _field(advice, "gather_records", "documents")
    assert not any("medicines" in d for d in documents)  # the case says there is no medication list


def test_rare_condition_far_away_resolves_t1() -> None:
    advice = _advise("rare-condition-far-away.json")
    assert _field(advice, "find_condition_specialist", "look_beyond_local_area") is True
    assert _field(advice, "find_condition_specialist", "expect_it_to_take_time") is True
    assert any("records and any scans" in o for o in _field(advice, "consider_remote_opinion", "options"))
    assert advice.by_kind("be_seen_in_person").priority is Priority.MEDIUM  # type: ignore[union-attr]
    assert any("internet" in q for q in _field(advice, "check_insurance", "questions"))
    assert _field(advice, "act_quickly", "before_treatment_starts") is False


def test_paying_yourself() -> None:
    advice = _advise("paying-yourself.json")
    options = _field(advice, "manage_costs", "options")
    assert any("free" in o for o in options) and any("over time" in o for o in options)
    assert _field(advice, "set_deadline", "get_opinion_within_days") == 14


def test_records_refused() -> None:
    advice = _advise("records-refused.json")
    assert advice.by_kind("assert_records_rights").priority is Priority.HIGH  # type: ignore[union-attr]
    documents = " / ".join(_field(advice, "gather_records", "documents"))
    assert "pathology report" in documents and "discharge summary" in documents
    assert "operative report" not in documents and "medicines" not in documents
    items = " ".join(_field(advice, "send_original_materials", "items"))
    assert "biopsy slides" in items and "films" in items and "digital" not in items
    assert advice.by_kind("prefer_in_network").priority is Priority.MEDIUM  # type: ignore[union-attr]
    assert "RECORDS-SEND-WITH-CONSENT" not in advice.by_kind("gather_records").rule_ids  # type: ignore[union-attr]


def test_asking_is_hard() -> None:
    advice = _advise("asking-is-hard.json")
    openers = _field(advice, "talk_to_doctor", "openers")
    assert any("My family" in o for o in openers) and any("every choice" in o for o in openers)
    ask = _field(advice, "ask_for_referral", "ask")
    assert ask[0] == "your current doctor" and "a teaching hospital near you" in ask
    # only preference reasons: the answer to whether comes before when
    assert advice.kinds.index("seek_second_opinion") < advice.kinds.index("set_deadline")


def test_doctor_objects() -> None:
    advice = _advise("doctor-objects.json")
    steps = _field(advice, "handle_objection", "steps")
    assert any("value" in s for s in steps) and any("changing doctors" in s for s in steps)
    ask = _field(advice, "ask_for_referral", "ask")
    assert "your current doctor" not in ask and "another doctor you trust" in ask


def test_spine_surgery() -> None:
    advice = _advise("spine-surgery.json")
    # The first opinion came from an orthopedic surgeon: that kind of doctor is not suggested again.
    assert set(_field(advice, "consult_specialties", "specialties")) == {
        s for s in SPINE_SPECIALTIES if not s.startswith("orthopedic")
    }
    assert advice.by_kind("consult_specialties").priority is Priority.HIGH  # type: ignore[union-attr]
    assert advice.by_kind("be_seen_in_person").priority is Priority.MEDIUM  # type: ignore[union-attr]
    questions = _field(advice, "prepare_questions", "questions")
    assert len(questions) == 4 and "How many times a year do you do this operation?" in questions
    assert _field(advice, "set_deadline", "ask_doctor_how_long") is True
    items = " ".join(_field(advice, "send_original_materials", "items"))
    assert "films" in items and "digital scans" in items


def test_opinions_agree() -> None:
    advice = _advise("opinions-agree.json")
    third = advice.by_kind("get_another_opinion")
    assert third is not None and third.priority is Priority.LOW and third.opinion_number == 3  # type: ignore[attr-defined]


def test_conflicting_opinions() -> None:
    advice = _advise("conflicting-opinions.json")
    assert _field(advice, "get_another_opinion", "opinion_number") == 3
    assert advice.by_kind("get_another_opinion").priority is Priority.HIGH  # type: ignore[union-attr]
    assert any("guideline" in q for q in _field(advice, "resolve_conflict", "questions"))
    # The orthopedic surgeon and the neurosurgeon have given their opinions: only the others are named.
    assert set(_field(advice, "consult_specialties", "specialties")) == {
        s for s in SPINE_SPECIALTIES if not s.startswith(("orthopedic", "neurosurgeon"))
    }
    assert advice.by_kind("consult_specialties").priority is Priority.MEDIUM  # type: ignore[union-attr]
    assert any("one more opinion" in q for q in _field(advice, "check_insurance", "questions"))


def test_three_opinions() -> None:
    advice = _advise("three-opinions.json")
    # Three opinions in: reflect first (G49), and no card offers a "third" or a fourth opinion.
    assert "get_another_opinion" not in advice.kinds
    reflect = advice.by_kind("reflect_before_more_opinions")
    assert reflect is not None and reflect.priority is Priority.HIGH
    questions = _field(advice, "check_insurance", "questions")
    assert any("internet" in q for q in questions)
    independent = advice.by_kind("choose_independent_doctor")
    assert independent is not None and independent.priority is Priority.HIGH
    assert "NOT-INDEPENDENT-SAME-PLACE" in independent.rule_ids
