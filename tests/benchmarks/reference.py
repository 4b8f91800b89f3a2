"""A plain-Python implementation of part of the shipped rule base: the speed floor for the benchmark.

:func:`decide` takes a case dict (as read from JSON, assumed valid) and
returns the ids of the rules in :data:`SUBSET` that the engine would fire and
not hold back (``Trace.effective`` restricted to the subset). It hard-codes
the logic of those rules as ordinary ``if`` statements: no validation, no
engine, no typed output. The benchmark times it on the same cases as
``advise()`` and checks that it agrees with the engine, so the floor stays
honest while the rule base changes (a disagreement is reported, not hidden).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

SUBSET = frozenset(
    {
        # derived facts
        "STAKES-SERIOUS-DIAGNOSIS",
        "STAKES-CANCER",
        "STAKES-SURGERY",
        "STAKES-RISKY-TREATMENT",
        "INDICATED-HIGH-STAKES",
        "INDICATED-UNEASY-WITH-WAITING",
        "INDICATED-DOUBTS-ABOUT-PLAN",
        "INDICATED-UNCLEAR-DIAGNOSIS",
        "INDICATED-TREATMENT-NOT-WORKING",
        "INDICATED-LOW-TRUST",
        "INDICATED-LONG-TERM",
        "INDICATED-CHILD-SYMPTOMS",
        "INDICATED-CHILD-WAITING",
        "INDICATED-SEVERAL-OPTIONS",
        "INDICATED-WANTS-OPTIONS",
        "INDICATED-COMPLEX-OR-TESTS",
        "INDICATED-RARE",
        "INDICATED-SPINE",
        "SEEKING-SECOND",
        "MINOR-CASE",
        "CONFLICT-JOIN",
        "CONFLICT-JOIN-DIAGNOSIS",
        "AGREE-JOIN",
        "INDICATED-CONFLICT",
        "SEEKING-LATER-ON-CONFLICT",
        # recommendations
        "OPTIONAL-MINOR",
        "SEEK-SERIOUS-DIAGNOSIS",
        "SEEK-BEFORE-SURGERY",
        "ASK-LESS-INVASIVE",
        "CANCER-EXPERT-REVIEW",
        "INDEPENDENT-DOCTOR",
        "CHECK-CREDENTIALS",
        "RECORDS-CHECKLIST-PLAN",
        "CALL-INSURER-FIRST",
        "DEADLINE-SHORT-TIME",
        "DEADLINE-KNOWN-TIME",
        "DEADLINE-ASK-TIME",
        "ACT-QUICKLY-BEFORE-START",
        "ACT-QUICKLY-DURING-TREATMENT",
        "ORIGINALS-BIOPSY-SLIDES",
        "ORIGINALS-IMAGING",
        "PROCEED-WHEN-AGREE",
        "CONFLICT-ASK-WHY",
        "CONFLICT-CONFER",
        "CONFLICT-THIRD-OPINION",
    }
)
"""The rules this reference implements: why a second opinion is indicated, the first steps, agreement and conflict."""

_EMPTY: Mapping[str, Any] = {}
_SERIOUS = ("serious", "life_threatening")
_MINOR_KINDS = ("none", "wait_and_see", "medication", "other", "unknown")
_INDICATIONS = (
    # (rule id, aspect, (attribute, values), ...): the rule fires when any one attribute has one of its values
    ("INDICATED-UNCLEAR-DIAGNOSIS", "diagnosis", ("certainty", ("unclear",)), ("symptoms_vague", ("yes",))),
    ("INDICATED-TREATMENT-NOT-WORKING", "treatment", ("working", ("no",))),
    ("INDICATED-LOW-TRUST", "doctor", ("trust", ("low",)), ("red_flags", ("yes",))),
    ("INDICATED-LONG-TERM", "treatment", ("long_term", ("yes",))),
    ("INDICATED-SEVERAL-OPTIONS", "treatment", ("several_options", ("yes",))),
    ("INDICATED-WANTS-OPTIONS", "patient", ("wants_all_options", ("yes",))),
    ("INDICATED-COMPLEX-OR-TESTS", "diagnosis", ("complex", ("yes",)), ("doubts_about_tests", ("yes",))),
    ("INDICATED-RARE", "diagnosis", ("rare", ("yes",))),
)


def _label(value: Any) -> Any:
    return " ".join(value.split()).casefold() or None if isinstance(value, str) else value


_PRESSING = frozenset(
    {
        "high_stakes",
        "uneasy_with_waiting",
        "unclear_diagnosis",
        "treatment_not_working",
        "child_symptoms",
        "complex_or_doubtful_tests",
        "rare_condition",
        "spine_problem",
        "conflicting_opinions",
    }
)
_REASON = {
    "INDICATED-UNCLEAR-DIAGNOSIS": "unclear_diagnosis",
    "INDICATED-TREATMENT-NOT-WORKING": "treatment_not_working",
    "INDICATED-LOW-TRUST": "low_trust",
    "INDICATED-LONG-TERM": "long_term_treatment",
    "INDICATED-SEVERAL-OPTIONS": "several_options",
    "INDICATED-WANTS-OPTIONS": "wants_all_options",
    "INDICATED-COMPLEX-OR-TESTS": "complex_or_doubtful_tests",
    "INDICATED-RARE": "rare_condition",
}


def _opinion_pairs(opinions: Any) -> tuple[bool, bool, bool]:
    """(treatments conflict, diagnoses conflict, agree) over the ordered pairs of opinions."""
    labels = [(_label(o.get("diagnosis")), o.get("treatment", "unknown")) for o in opinions]
    treatment = diagnosis = agree = False
    for i, (dx_a, tx_a) in enumerate(labels):
        for dx_b, tx_b in labels[i + 1 :]:
            if tx_a != "unknown" and tx_b != "unknown" and tx_a != tx_b:
                treatment = True
            if dx_a is not None and dx_b is not None and dx_a != dx_b:
                diagnosis = True
            if dx_a is not None and tx_a != "unknown" and (dx_a, tx_a) == (dx_b, tx_b):
                agree = True
    return treatment, diagnosis, agree


def decide(case: Mapping[str, Any]) -> set[str]:
    """The rules of :data:`SUBSET` that fire on ``case`` and are not held back."""
    dx = case.get("diagnosis", _EMPTY)
    tx = case.get("treatment", _EMPTY)
    pt = case.get("patient", _EMPTY)
    records = case.get("records", _EMPTY)
    opinions = case.get("opinions", ())
    fired: set[str] = set()
    add = fired.add
    reasons: set[str] = set()

    seriousness = dx.get("seriousness", "unknown")
    cancer = dx.get("cancer", "unknown") == "yes"
    kind = tx.get("kind", "unknown")
    started = tx.get("started", "unknown") == "yes"
    risk = tx.get("risk", "unknown")
    surgery = kind == "surgery" and not started
    uneasy = pt.get("uneasy_with_plan", "unknown") == "yes"
    child = pt.get("age_group", "unknown") == "child"

    stakes = False
    for rule_id, holds in (
        ("STAKES-SERIOUS-DIAGNOSIS", seriousness in _SERIOUS),
        ("STAKES-CANCER", cancer),
        ("STAKES-SURGERY", surgery),
        ("STAKES-RISKY-TREATMENT", risk == "high"),
    ):
        if holds:
            add(rule_id)
            stakes = True
    if stakes:
        add("INDICATED-HIGH-STAKES")
        reasons.add("high_stakes")
    for rule_id, aspect, *alternatives in _INDICATIONS:
        facts = case.get(aspect, _EMPTY)
        if any(facts.get(attr, "unknown") in values for attr, values in alternatives):
            add(rule_id)
            reasons.add(_REASON[rule_id])
    if dx.get("tests_normal_but_problem_persists") == "yes" or dx.get("suspected_misdiagnosis") == "yes":
        add("INDICATED-UNCLEAR-DIAGNOSIS")
        reasons.add("unclear_diagnosis")
    if uneasy:
        waiting = kind == "wait_and_see"
        add("INDICATED-UNEASY-WITH-WAITING" if waiting else "INDICATED-DOUBTS-ABOUT-PLAN")
        reasons.add("uneasy_with_waiting" if waiting else "doubts_about_plan")
    if child and (dx.get("symptoms_vague") == "yes"):
        add("INDICATED-CHILD-SYMPTOMS")
        reasons.add("child_symptoms")
    if child and uneasy and kind == "wait_and_see":
        add("INDICATED-CHILD-WAITING")
        reasons.add("child_symptoms")
    if dx.get("spine") == "yes" and seriousness != "minor":
        add("INDICATED-SPINE")
        reasons.add("spine_problem")

    treatment_conflict, diagnosis_conflict, agree = _opinion_pairs(opinions)
    conflict = treatment_conflict or diagnosis_conflict
    if treatment_conflict:
        add("CONFLICT-JOIN")
    if diagnosis_conflict:
        add("CONFLICT-JOIN-DIAGNOSIS")
    if conflict:
        fired.update(("INDICATED-CONFLICT", "SEEKING-LATER-ON-CONFLICT", "CONFLICT-ASK-WHY", "CONFLICT-CONFER"))
        add("CONFLICT-THIRD-OPINION")
        reasons.add("conflicting_opinions")
    if agree:
        add("AGREE-JOIN")
        if not conflict:
            add("PROCEED-WHEN-AGREE")

    indicated = bool(reasons)
    if seriousness == "minor" and not cancer and kind in _MINOR_KINDS and risk in ("low", "unknown"):
        add("MINOR-CASE")
        if not indicated and len(opinions) < 2:
            add("OPTIONAL-MINOR")

    second = indicated and len(opinions) <= 1
    if second:
        add("SEEKING-SECOND")
        if seriousness in _SERIOUS:
            add("SEEK-SERIOUS-DIAGNOSIS")
        if surgery:
            add("SEEK-BEFORE-SURGERY")
    if second or conflict:
        fired.update(("INDEPENDENT-DOCTOR", "CHECK-CREDENTIALS", "RECORDS-CHECKLIST-PLAN"))
        pressing = bool(reasons & _PRESSING)
        if surgery:
            add("ASK-LESS-INVASIVE")
        if cancer:
            add("CANCER-EXPERT-REVIEW")
        if case.get("insurance", _EMPTY).get("insured", "unknown") in ("yes", "unknown"):
            add("CALL-INSURER-FIRST")
        days = tx.get("days_to_decide")
        if days is not None and days <= 7:
            add("DEADLINE-SHORT-TIME")
        elif days is not None and pressing:
            add("DEADLINE-KNOWN-TIME")
        elif days is None and pressing and not started:
            add("DEADLINE-ASK-TIME")
        if started:
            add("ACT-QUICKLY-DURING-TREATMENT")
        elif pressing:
            add("ACT-QUICKLY-BEFORE-START")
        if records.get("biopsy_slides", "unknown") == "yes":
            add("ORIGINALS-BIOPSY-SLIDES")
        if records.get("imaging", "unknown") in ("film", "electronic", "both"):
            add("ORIGINALS-IMAGING")
    return fired
