"""Explanations: derivation trees, why-not answers and the questions worth asking next."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import textstat
from casegen import random_case

import secondopinion
from secondopinion import Advice, Advisor, Rulebook, default_advisor, load_case
from secondopinion.case import case_fact_types, dump_case
from secondopinion.explain import Explanation, FactNode, RuleNode, explain, why_not
from secondopinion.questions import next_questions, question_for, questions
from secondopinion.recommendations import Derivation, DerivedFactRecord, SeekSecondOpinion

EXAMPLES = Path(__file__).parent.parent / "examples" / "cases"
CASES = sorted(EXAMPLES.glob("*.json"))
CONFLICT = json.loads((EXAMPLES / "conflicting-opinions.json").read_text())
CANCER = json.loads((EXAMPLES / "cancer-surgery.json").read_text())

# Same treatment, different illness: the conflict comes from the diagnosis join (CONFLICT-JOIN).
DIAGNOSES_DIFFER = {
    "diagnosis": {"seriousness": "serious", "cancer": "yes"},
    "opinions": [
        {"specialty": "medical_oncologist", "diagnosis": "lymphoma", "treatment": "chemotherapy"},
        {"specialty": "medical_oncologist", "diagnosis": "leukemia", "treatment": "chemotherapy"},
    ],
}


def rule_nodes(tree: Explanation) -> list[RuleNode]:
    return [n for n in tree.walk() if isinstance(n, RuleNode)]


def fact_nodes(tree: Explanation) -> list[FactNode]:
    return [n for n in tree.walk() if isinstance(n, FactNode)]


# --------------------------------------------------------------------------- derivation trees


def test_tree_of_a_join_derived_recommendation_reaches_both_opinions() -> None:
    advice = secondopinion.advise(CONFLICT)
    tree = advice.explain("get_another_opinion", case=CONFLICT)

    (top,) = tree.rules
    assert top.rule_id == "CONFLICT-THIRD-OPINION"
    assert top.title and top.rationale and top.sources
    conflict = next(f for f in top.matched if f.type == "opinions_conflict")
    assert not conflict.is_case_fact
    assert conflict.attributes == {"first": 0, "second": 1}
    (join,) = conflict.derived_by
    assert join.rule_id == "CONFLICT-JOIN" and join.derives == "opinions_conflict"
    assert [(f.binding, f.path) for f in join.matched] == [("a", "$.opinions[0]"), ("b", "$.opinions[1]")]
    checks = {c.text: c for f in join.matched for c in f.checks}
    differ = checks["$.opinions[1].treatment differs from $.opinions[0].treatment"]
    assert differ.values == {"$.opinions[1].treatment": "medication", "$.opinions[0].treatment": "surgery"}
    assert "$.opinions[1] comes after $.opinions[0]" in checks
    assert {"$.opinions[0].treatment", "$.opinions[1].treatment"} <= set(tree.fields)
    assert tree.rule_ids[:2] == ("CONFLICT-THIRD-OPINION", "CONFLICT-JOIN")


def test_tree_through_a_join_on_the_diagnosis_labels() -> None:
    advice = secondopinion.advise(DIAGNOSES_DIFFER)
    # Labels that differ are checked with the doctors (never a conflict by wording alone).
    tree = advice.explain("clarify_diagnoses", case=DIAGNOSES_DIFFER)
    assert tree.rule_ids[0] == "CLARIFY-DIAGNOSES"
    joins = [r for r in rule_nodes(tree) if r.derives == "diagnosis_wording_differs"]
    assert len(joins) == 1
    checks = [c for f in joins[0].matched for c in f.checks]
    differ = next(c for c in checks if c.text == "$.opinions[1].diagnosis differs from $.opinions[0].diagnosis")
    assert differ.values == {"$.opinions[1].diagnosis": "leukemia", "$.opinions[0].diagnosis": "lymphoma"}


def test_merged_duplicates_give_one_branch_per_rule() -> None:
    advice = secondopinion.advise(CANCER)
    rec = advice.by_kind("seek_second_opinion")
    assert rec is not None and len(rec.rule_ids) >= 2
    tree = advice.explain(rec)
    assert tuple(r.rule_id for r in tree.rules) == tuple(d.rule_id for d in rec.derivation)
    assert {"SEEK-SERIOUS-DIAGNOSIS"} <= {r.rule_id for r in tree.rules}
    serious = next(r for r in tree.rules if r.rule_id == "SEEK-SERIOUS-DIAGNOSIS")
    dx = next(f for f in serious.matched if f.is_case_fact)
    assert [c.text for c in dx.checks] == ["$.diagnosis.seriousness is serious or life_threatening"]
    assert dx.checks[0].values == {}  # no case given: the tests, not the values


@pytest.mark.parametrize("path", CASES, ids=lambda p: p.stem)
def test_every_tree_ends_in_case_fields_and_matches_the_derivations(path: Path) -> None:
    case = json.loads(path.read_text())
    advisor = default_advisor()
    advice = advisor.advise(case)
    for rec in advice.recommendations:
        tree = explain(advice, rec, rulebook=advisor.rulebook, case=case)
        assert tuple(r.rule_id for r in tree.rules) == tuple(d.rule_id for d in rec.derivation)
        for node in rule_nodes(tree):
            rule = advisor.rulebook.rule(node.rule_id)
            assert (node.title, node.sources) == (rule.title, rule.sources)
            assert [f.binding for f in node.matched] == [p.bind for p in rule.when]
        for fact in fact_nodes(tree):
            assert fact.note in (None, "shown above")
            if not fact.is_case_fact and fact.note is None:
                assert fact.derived_by, f"{fact.fid} is not explained"
            for check in fact.checks:  # with the case given, every value shown is the case's
                assert set(check.values) <= set(check.fields)
        assert tree.fields and all(f.startswith("$.") for f in tree.fields)
        json.dumps(tree.to_dict())


def test_explain_works_on_advice_read_back_from_json() -> None:
    advice = secondopinion.advise(CONFLICT)
    again = Advice.from_json(advice.to_json())
    assert again.explain("resolve_conflict") == advice.explain("resolve_conflict")


def test_explain_refuses_a_kind_the_advice_does_not_hold() -> None:
    advice = secondopinion.advise({"diagnosis": {"seriousness": "minor"}})
    with pytest.raises(KeyError, match="proceed_with_confidence"):
        advice.explain("proceed_with_confidence")


def test_a_derivation_cycle_is_cut_and_marked() -> None:
    # The engine never produces one; advice built by hand (or by a future engine) might.
    loop = DerivedFactRecord("loop#1", "loop", {}, (Derivation("LOOP-RULE", {"x": "loop#1"}),))
    rec = SeekSecondOpinion(title="t", detail="d", derivation=(Derivation("USES-LOOP", {"l": "loop#1"}),))
    advice = Advice(recommendations=(rec,), derived_facts=(loop,))
    tree = advice.explain(rec)
    notes = [f.note for f in fact_nodes(tree)]
    assert notes == [None, "cycle"]
    assert tree.rule_ids == ("USES-LOOP", "LOOP-RULE")


# --------------------------------------------------------------------------- why not


def test_why_not_names_the_failing_join_condition() -> None:
    answer = why_not(CONFLICT, "AGREE-JOIN")
    assert not answer.present
    (outcome,) = answer.rules
    assert outcome.outcome == "did_not_match"
    failure = outcome.failure
    assert failure is not None
    assert failure.fid == "opinion[1]"
    assert failure.needs == "needs $.opinions[1].treatment to equal $.opinions[0].treatment"
    assert failure.values == {"$.opinions[1].treatment": "medication", "$.opinions[0].treatment": "surgery"}
    assert "medication" in failure.found and "surgery" in failure.found


def test_why_not_follows_a_missing_derived_fact_into_its_rules() -> None:
    answer = why_not(CONFLICT, "proceed_with_confidence")
    assert answer.kind == "proceed_with_confidence" and not answer.present
    proceed = next(o for o in answer.rules if o.rule_id == "PROCEED-WHEN-AGREE")
    assert proceed.failure is not None
    assert proceed.failure.fact_type == "opinions_agree"
    assert proceed.failure.found == "no rule derived one"
    inner = {o.rule_id: o for o in proceed.failure.because}
    assert inner["AGREE-JOIN"].outcome == "did_not_match"


def test_why_not_reports_a_recommendation_held_back_by_unless() -> None:
    case = {
        "opinions": [
            {"diagnosis": "gallstones", "treatment": "surgery"},
            {"diagnosis": "gallstones", "treatment": "surgery"},
            {"diagnosis": "ulcer", "treatment": "medication"},
        ]
    }
    answer = why_not(case, "PROCEED-WHEN-AGREE")
    (outcome,) = answer.rules
    assert outcome.outcome == "held_back"
    assert outcome.held_back_by and any(h.startswith("opinions_conflict (") for h in outcome.held_back_by)
    assert not answer.present


def test_why_not_a_plain_case_condition_says_what_the_case_says() -> None:
    answer = why_not({"diagnosis": {"seriousness": "minor"}}, "SEEK-SERIOUS-DIAGNOSIS")
    failure = answer.rules[0].failure
    assert failure is not None
    assert failure.fields == ("$.diagnosis.seriousness",)
    assert "$.diagnosis.seriousness to be serious or life_threatening" in failure.needs
    assert failure.found == "the case says minor"


def test_why_not_on_something_present_says_so() -> None:
    answer = why_not(CANCER, "seek_second_opinion")
    assert answer.present
    assert any(o.outcome == "fired" and o.rule_id == "SEEK-SERIOUS-DIAGNOSIS" for o in answer.rules)


def test_why_not_refuses_an_unknown_target_without_echoing_the_case() -> None:
    with pytest.raises(ValueError, match="NO-SUCH-RULE") as caught:
        why_not({"opinions": [{"diagnosis": "private label"}]}, "NO-SUCH-RULE")
    assert "private label" not in str(caught.value)


def _rule_examples() -> Iterator[dict[str, Any]]:
    for rule in default_advisor().rules:
        for example in (*rule.fires, *rule.silent):
            yield dict(example.case)


def test_why_not_agrees_with_the_engine_on_every_rule_and_example_case() -> None:
    """The Python evaluation of patterns must match what the engine did, rule by rule."""
    advisor = default_advisor()
    cases = [json.loads(p.read_text()) for p in CASES] + list(_rule_examples())
    checked = 0
    for case in cases:
        trace = advisor.trace(case)
        for rule in advisor.rules:
            outcome = why_not(None, rule.id, advisor=advisor, trace=trace).rules[0]
            fired = rule.id in trace.fired
            assert (outcome.outcome in ("fired", "held_back")) == fired, (rule.id, case)
            if not fired:
                assert outcome.failure is not None, (rule.id, case)
            checked += 1
    assert checked > 1000


# --------------------------------------------------------------------------- next questions

_PACK_RULE = """\
  - id: {id}
    title: Test rule {id}
    status: active
    version: 1
    guidance: [G26]
    sources:
      - {{file: 000_f3b62da58123f209.txt, section: Talk to your insurance company}}
    last_reviewed: "2026-11-22"
    rationale: A rule for the next-questions tests.
    when:
{when}
    then:
      recommend: {{kind: {kind}, priority: medium, title: Test, detail: A test.}}
    examples:
      fires:
        - {fires}
      silent:
        - {silent}
"""


_SOURCES = """\
documents:
  - file: 000_f3b62da58123f209.txt
    title: How Do You Ask For a Second Opinion From Your Doctor?
    sections: [Talk to your insurance company]
guidance:
  - {id: G26, summary: Call the insurer first., sources: [000_f3b62da58123f209.txt]}
"""


def _pack(tmp_path: Path) -> Advisor:
    """Only the test rules and the one source they cite: the ranking below is theirs alone."""
    rules = [
        ("NQ-ASK-INSURER", "{bind: i, fact: insurance, where: {covers_second_opinion: unknown}}", "check_insurance",
         "{}", "{insurance: {covers_second_opinion: 'yes'}}"),
        ("NQ-NO-COVER", "{bind: i, fact: insurance, where: {covers_second_opinion: 'no'}}", "manage_costs",
         "{insurance: {covers_second_opinion: 'no'}}", "{}"),
        ("NQ-STUCK-1", "{bind: t, fact: treatment, where: {working: 'no'}}", "get_another_opinion",
         "{treatment: {working: 'no'}}", "{}"),
        ("NQ-STUCK-2", "{bind: t, fact: treatment, where: {working: 'no'}}", "build_trusted_team",
         "{treatment: {working: 'no'}}", "{}"),
        ("NQ-STUCK-3", "{bind: t, fact: treatment, where: {working: 'no'}}", "act_quickly",
         "{treatment: {working: 'no'}}", "{}"),
        ("NQ-SOON", "{bind: t, fact: treatment, where: {days_to_decide: {lte: 7}}}", "set_deadline",
         "{treatment: {days_to_decide: 3}}", "{}"),
        ("NQ-NEVER", "{bind: p, fact: patient, where: {travel: hard}}|{bind: i, fact: insurance, where: {insured: no}}",
         "consider_remote_opinion", "{patient: {travel: hard}, insurance: {insured: 'no'}}", "{}"),
    ]
    body = "rules:\n" + "".join(
        _PACK_RULE.format(
            id=rid, when="\n".join(f"      - {w}" for w in when.split("|")), kind=kind, fires=fires, silent=silent
        )
        for rid, when, kind, fires, silent in rules
    )
    pack = tmp_path / "pack.yaml"
    pack.write_text(body)
    sources = tmp_path / "sources.yaml"
    sources.write_text(_SOURCES)
    return Advisor(Rulebook.load(sources, pack, shipped=False))


UNKNOWNS = {
    "treatment": {"kind": "medication", "working": "unknown"},
    "insurance": {"insured": "yes", "covers_second_opinion": "unknown"},
    "patient": {"travel": "unknown"},
}


def test_next_questions_rank_treatment_outcome_then_coverage_then_deadline(tmp_path: Path) -> None:
    advisor = _pack(tmp_path)
    assert advisor.advise(UNKNOWNS).kinds == ("check_insurance",)
    found = next_questions(UNKNOWNS, advisor=advisor)
    assert [q.path for q in found] == [
        "$.treatment.working",
        "$.insurance.covers_second_opinion",
        "$.treatment.days_to_decide",
    ]
    working, coverage, days = found
    assert working.question == "Is your treatment working?"
    assert working.change == 3
    assert [(a.value, a.added, a.removed) for a in working.answers] == [
        ("no", ("act_quickly", "build_trusted_team", "get_another_opinion"), ())
    ]
    assert coverage.question == question_for("insurance", "covers_second_opinion").text
    assert coverage.change == 2
    assert {a.value: (a.added, a.removed) for a in coverage.answers} == {
        "no": (("manage_costs",), ("check_insurance",)),
        "yes": ((), ("check_insurance",)),
    }
    assert coverage.answers[0].value == "no"  # the bigger change first
    # Numbers: each threshold the rules use and its neighbours, plus the typical value from questions.yaml.
    assert days.tried == 4
    assert [a.value for a in days.answers] == [6, 7]
    # travel is tested, but no answer changes anything while the patient is insured.
    assert "$.patient.travel" not in [q.path for q in found]
    assert next_questions(UNKNOWNS, advisor=advisor, limit=1) == found[:1]


def test_known_answers_are_not_asked_again(tmp_path: Path) -> None:
    advisor = _pack(tmp_path)
    known = {**UNKNOWNS, "treatment": {"kind": "medication", "working": "yes", "days_to_decide": 30}}
    assert [q.path for q in next_questions(known, advisor=advisor)] == ["$.insurance.covers_second_opinion"]


def _with(case: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    data = dump_case(load_case(case))
    parts = path[2:].replace("]", "").replace("[", ".").split(".")
    target: Any = data
    for part in parts[:-1]:
        target = target[int(part)] if part.isdigit() else target[part]
    target[parts[-1]] = value
    return data


@pytest.mark.parametrize("path", CASES, ids=lambda p: p.stem)
def test_every_claimed_effect_is_what_re_advising_gives(path: Path) -> None:
    """On the shipped rules, each answer's effect is checked by advising again, and silent answers change nothing."""
    case = json.loads(path.read_text())
    case.setdefault("treatment", {})["working"] = "unknown"
    case.setdefault("insurance", {})["covers_second_opinion"] = "unknown"
    base = set(secondopinion.advise(case).kinds)
    found = next_questions(case)
    assert [q.change for q in found] == sorted((q.change for q in found), reverse=True)
    for q in found:
        domain = case_fact_types()["opinion" if q.opinion is not None else q.fact][q.attr]
        listed = {a.value: a for a in q.answers}
        values = [v for v in domain if v != "unknown"] if isinstance(domain, tuple) else list(listed)
        for value in values:
            after = set(secondopinion.advise(_with(case, q.path, value)).kinds)
            if value in listed:
                assert set(listed[value].added) == after - base, (q.path, value)
                assert set(listed[value].removed) == base - after, (q.path, value)
                assert listed[value].change > 0
            else:
                assert after == base, (q.path, value)
        assert q.change == max(a.change for a in q.answers)


def _same_as_exhaustive(cases: list[dict[str, Any]]) -> int:
    advisor = default_advisor()
    asked = 0
    for case in cases:
        quick = next_questions(case, advisor=advisor)
        assert quick == next_questions(case, advisor=advisor, exhaustive=True), case
        asked += len(quick)
    return asked


def test_the_shortcuts_give_what_running_every_answer_gives() -> None:
    """Grouping answers and skipping those that cannot matter must not change a single question or effect."""
    assert _same_as_exhaustive([json.loads(p.read_text()) for p in CASES]) > 30


@pytest.mark.slow
def test_the_shortcuts_hold_on_varied_generated_cases() -> None:
    rng = random.Random(4)
    assert _same_as_exhaustive([random_case(rng, labelled_opinions=False) for _ in range(40)]) > 40


def test_questions_cover_every_askable_field_in_plain_words() -> None:
    types = case_fact_types()
    registry = questions()
    for fact in ("diagnosis", "treatment", "patient", "doctor", "insurance", "records", "opinion"):
        for attr, domain in types[fact].items():
            if domain == "text" or attr == "index":
                continue
            assert (fact, attr) in registry, f"no question for {fact}.{attr}"
    for (fact, attr), q in registry.items():
        domain = types[fact][attr]
        assert textstat.flesch_kincaid_grade(q.text) <= 8, q.text
        if isinstance(domain, tuple):
            assert set(q.answers) <= set(domain), f"{fact}.{attr} labels unknown values"
        else:
            assert q.example is not None, f"{fact}.{attr} needs a typical value"
