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
        "AGREE-JOIN",
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


def decide(case: Mapping[str, Any]) -> set[str]:
    """The rules of :data:`SUBSET` that fire on ``case`` and are not held back."""
    dx = case.get("diagnosis", _EMPTY)
    tx = case.get("treatment", _EMPTY)
    pt = case.get("patient", _EMPTY)
    records = case.get("records", _EMPTY)
    opinions = case.get("opinions", ())
    fired: set[str] = set()
    add = fired.add

    seriousness = dx.get("seriousness", "unknown")
    cancer = dx.get("cancer", "unknown") == "yes"
    kind = tx.get("kind", "unknown")
    started = tx.get("started", "unknown") == "yes"
    risk = tx.get("risk", "unknown")
    surgery = kind == "surgery" and not started
    uneasy = pt.get("uneasy_with_plan", "unknown") == "yes"
    child = pt.get("age_group", "unknown") == "child"

    stakes = False
    if seriousness in _SERIOUS:
        add("STAKES-SERIOUS-DIAGNOSIS")
        stakes = True
    if cancer:
        add("STAKES-CANCER")
        stakes = True
    if surgery:
        add("STAKES-SURGERY")
        add("ASK-LESS-INVASIVE")
        stakes = True
    if risk == "high":
        add("STAKES-RISKY-TREATMENT")
        stakes = True
    indicated = stakes
    if stakes:
        add("INDICATED-HIGH-STAKES")
    for rule_id, aspect, *alternatives in _INDICATIONS:
        facts = case.get(aspect, _EMPTY)
        if any(facts.get(attr, "unknown") in values for attr, values in alternatives):
            add(rule_id)
            indicated = True
    if dx.get("tests_normal_but_problem_persists") == "yes" or dx.get("suspected_misdiagnosis") == "yes":
        add("INDICATED-UNCLEAR-DIAGNOSIS")
        indicated = True
    if uneasy:
        add("INDICATED-UNEASY-WITH-WAITING" if kind == "wait_and_see" else "INDICATED-DOUBTS-ABOUT-PLAN")
        indicated = True
    if child and (dx.get("symptoms_vague") == "yes"):
        add("INDICATED-CHILD-SYMPTOMS")
        indicated = True
    if child and uneasy and kind == "wait_and_see":
        add("INDICATED-CHILD-WAITING")
        indicated = True
    if dx.get("spine") == "yes" and seriousness != "minor":
        add("INDICATED-SPINE")
        indicated = True

    if seriousness == "minor" and not cancer and kind in _MINOR_KINDS and risk in ("low", "unknown"):
        add("MINOR-CASE")
        if not indicated and len(opinions) < 2:
            add("OPTIONAL-MINOR")

    if indicated and len(opinions) <= 1:
        fired.update(("SEEKING-SECOND", "INDEPENDENT-DOCTOR", "CHECK-CREDENTIALS", "RECORDS-CHECKLIST-PLAN"))
        if seriousness in _SERIOUS:
            add("SEEK-SERIOUS-DIAGNOSIS")
        if surgery:
            add("SEEK-BEFORE-SURGERY")
        if cancer:
            add("CANCER-EXPERT-REVIEW")
        if case.get("insurance", _EMPTY).get("insured", "unknown") in ("yes", "unknown"):
            add("CALL-INSURER-FIRST")
        days = tx.get("days_to_decide")
        if days is not None:
            add("DEADLINE-SHORT-TIME" if days <= 7 else "DEADLINE-KNOWN-TIME")
        elif not started:
            add("DEADLINE-ASK-TIME")
        add("ACT-QUICKLY-DURING-TREATMENT" if started else "ACT-QUICKLY-BEFORE-START")
        if records.get("biopsy_slides", "unknown") == "yes":
            add("ORIGINALS-BIOPSY-SLIDES")
        if records.get("imaging", "unknown") in ("film", "electronic", "both"):
            add("ORIGINALS-IMAGING")

    labels = [(_label(o.get("diagnosis")), o.get("treatment", "unknown")) for o in opinions]
    conflict = agree = False
    for i, first in enumerate(labels):
        for second in labels[i + 1 :]:
            if first == second:
                agree = True
            else:
                conflict = True
    if agree:
        add("AGREE-JOIN")
        if not conflict:
            add("PROCEED-WHEN-AGREE")
    if conflict:
        fired.update(("CONFLICT-JOIN", "CONFLICT-ASK-WHY", "CONFLICT-CONFER", "CONFLICT-THIRD-OPINION"))
    return fired
