"""The shipped rule base as a reviewed whole.

Every rule's examples behave as declared; every guidance item G01-G51 is
implemented by active rules that cite its sources; evidence figures E1-E4 are
only ever evidence; each tension T1-T4 is resolved by named active rules and
documented in docs/tensions.md; every patient-facing text reads at grade 8 or
below (median 6 or below) and is in the project's own words.
"""

from __future__ import annotations

import re
import statistics
from collections.abc import Iterator
from pathlib import Path

import pytest
import textstat

import secondopinion
from secondopinion import Advisor, Rulebook, RuleFileError
from secondopinion.rulebook import Condition, Recommend, Rule

ROOT = Path(__file__).resolve().parent.parent
SEEDS = ROOT.parent / "shared" / "seeds"
BOOK = Rulebook.load()
GUIDANCE_IDS = [f"G{n:02d}" for n in range(1, 52)]

# List fields whose items are whole sentences (graded for readability); other
# list fields hold short labels (names of documents, specialties, places).
SENTENCE_FIELDS = {"openers", "questions", "steps", "options", "choices", "items"}
MAX_GRADE = 8.0
MAX_MEDIAN_GRADE = 6.0
COPY_WINDOW = 6  # this many words in a row, shared with a source document, count as copied


@pytest.fixture(scope="module")
def advisor() -> Advisor:
    return Advisor(BOOK, include_drafts=True)


# --------------------------------------------------------------------------- examples


@pytest.mark.parametrize("rule_id", [r.id for r in BOOK.rules])
def test_every_example_of_every_rule_behaves_as_declared(advisor: Advisor, rule_id: str) -> None:
    rule = BOOK.rule(rule_id)
    if rule.status == "active":
        assert rule.fires and rule.silent
    failures = advisor.check_examples([rule])
    assert not failures, "\n".join(map(str, failures))


def _pack(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "pack.yaml"
    path.write_text(body, encoding="utf-8")
    return path


_RULE = """\
rules:
  - id: TEST-PACK-RULE
    title: A test rule
    status: {status}
    version: 1
    guidance: [G01]
    sources:
      - {{file: 002_8194ba36582a8229.txt, section: Second Opinions 101}}
    last_reviewed: "2026-11-22"
    rationale: A rule used to test the checks.
    when:
      - {{bind: dx, fact: diagnosis, where: {{seriousness: serious}}}}
    then:
      recommend: {{kind: seek_second_opinion, priority: high, title: Get one, detail: Get one now.}}
{examples}
"""


def test_an_active_rule_without_examples_is_refused(tmp_path: Path) -> None:
    pack = _pack(tmp_path, _RULE.format(status="active", examples=""))
    with pytest.raises(RuleFileError) as info:
        Rulebook.load(pack)
    assert any(p.rule_id == "TEST-PACK-RULE" and "example" in p.message for p in info.value.problems)

    only_fires = _RULE.format(
        status="active", examples="    examples:\n      fires: [{diagnosis: {seriousness: serious}}]"
    )
    with pytest.raises(RuleFileError):
        Rulebook.load(_pack(tmp_path, only_fires))


def test_a_wrong_example_is_reported_with_its_rule_and_line(tmp_path: Path) -> None:
    wrong = _RULE.format(
        status="active",
        examples=(
            "    examples:\n"
            "      fires: [{diagnosis: {seriousness: minor}}]\n"
            "      silent: [{diagnosis: {seriousness: serious}}]"
        ),
    )
    book = Rulebook.load(_pack(tmp_path, wrong))
    failures = Advisor(book).check_examples([book.rule("TEST-PACK-RULE")])
    assert {(f.rule_id, f.expected) for f in failures} == {("TEST-PACK-RULE", "fires"), ("TEST-PACK-RULE", "silent")}
    assert all(f.line is not None for f in failures)


# --------------------------------------------------------------------------- traceability


def test_all_51_guidance_items_are_registered() -> None:
    assert sorted(BOOK.guidance) == GUIDANCE_IDS


@pytest.mark.parametrize("gid", GUIDANCE_IDS)
def test_every_guidance_item_is_implemented_by_an_active_recommending_rule(gid: str) -> None:
    citing = [r for r in BOOK.active if gid in r.guidance]
    assert citing, f"{gid} has no active rule"
    # Every item reaches the patient: at least one citing rule recommends something.
    assert any(r.recommends for r in citing), f"{gid} is only derived, never recommended"


def test_rules_cite_the_documents_of_the_guidance_they_implement() -> None:
    problems = []
    for rule in BOOK.active:
        files = {s.file for s in rule.sources}
        for gid in rule.guidance:
            if not files & set(BOOK.guidance[gid].sources):
                problems.append(f"{rule.id} cites {gid} but none of its documents")
        for eid in rule.evidence:
            if not files & set(BOOK.evidence[eid].sources):
                problems.append(f"{rule.id} shows {eid} but cites none of its documents")
    assert not problems, problems


def test_rule_sources_name_real_sections_of_the_registered_documents() -> None:
    for rule in BOOK.rules:
        assert rule.sources
        for src in rule.sources:
            assert src.section in BOOK.documents[src.file].sections


def test_cited_documents_exist_beside_the_project() -> None:
    if not SEEDS.is_dir():
        pytest.skip("../shared/seeds is not beside this checkout")
    cited = {s.file for r in BOOK.rules for s in r.sources}
    assert cited <= {p.name for p in SEEDS.glob("*.txt")}


def test_evidence_ids_are_only_evidence() -> None:
    evidence_ids = set(BOOK.evidence)
    assert evidence_ids == {"E1", "E2", "E3", "E4"}
    for rule in BOOK.rules:
        assert not evidence_ids & set(rule.guidance), f"{rule.id} cites evidence as guidance"
        assert not rule.evidence or rule.recommends, f"{rule.id}: evidence only goes with a recommendation"
    for eid in evidence_ids:
        assert any(eid in r.evidence for r in BOOK.active if r.recommends), f"{eid} backs no recommendation"
    centre = BOOK.rule("CANCER-CENTER")
    assert "E1" in centre.evidence and centre.recommends == "prefer_cancer_center"


def test_evidence_travels_with_the_recommendation_it_supports() -> None:
    advice = secondopinion.advise({"diagnosis": {"cancer": "yes", "seriousness": "serious"}})
    review = advice.by_kind("prefer_cancer_center")
    assert review is not None
    assert [e.id for e in review.evidence] == ["E1"]
    assert "43%" in review.evidence[0].figure
    assert all(not r.kind.startswith("E") for r in advice.recommendations)


# --------------------------------------------------------------------------- tensions


@pytest.mark.parametrize("tid", ["T1", "T2", "T3", "T4"])
def test_each_tension_is_resolved_by_named_active_rules(tid: str) -> None:
    tension = BOOK.tensions[tid]
    assert tension.resolution.strip()
    assert len(tension.sources) >= 2, "a tension has sources on both sides"
    assert tension.rules, f"{tid} names no rules"
    for rid in tension.rules:
        rule = BOOK.rule(rid)
        assert rule.status == "active", f"{rid} resolves {tid} but is {rule.status}"
        assert tid in rule.tensions, f"{rid} is listed under {tid} but does not say so"
    declaring = {r.id for r in BOOK.rules if tid in r.tensions}
    assert declaring <= set(tension.rules), f"rules declaring {tid} but not listed: {declaring - set(tension.rules)}"
    # Every side of the tension is cited by at least one of the rules that resolve it.
    cited = {s.file for rid in tension.rules for s in BOOK.rule(rid).sources}
    assert set(tension.sources) <= cited, f"{tid}: sources not cited by its rules: {set(tension.sources) - cited}"


@pytest.mark.parametrize("tid", ["T1", "T2", "T3", "T4"])
def test_each_tension_is_documented_with_its_sources_and_rules(tid: str) -> None:
    text = (ROOT / "docs" / "tensions.md").read_text(encoding="utf-8")
    match = re.search(rf"^## {tid}:.*?(?=^## |\Z)", text, flags=re.M | re.S)
    assert match, f"docs/tensions.md has no section for {tid}"
    section = match.group(0)
    tension = BOOK.tensions[tid]
    for src in tension.sources:
        assert src[:3] in section, f"{tid}: source {src} not named"
    for rid in tension.rules:
        assert f"`{rid}`" in section, f"{tid}: rule {rid} not named"


def test_t1_remote_review_in_person_exam_and_coverage_check() -> None:
    base = {"diagnosis": {"seriousness": "serious"}, "insurance": {"insured": "yes"}}
    far = secondopinion.advise({**base, "patient": {"travel": "hard"}})
    assert "consider_remote_opinion" in far.kinds and "be_seen_in_person" not in far.kinds
    coverage = far.by_kind("check_insurance")
    assert coverage is not None and any("internet" in q for q in coverage.questions)  # type: ignore[attr-defined]

    far_exam = secondopinion.advise({**base, "diagnosis": {"seriousness": "serious", "spine": "yes"},
                                     "patient": {"travel": "hard"}})
    assert {"consider_remote_opinion", "be_seen_in_person"} <= set(far_exam.kinds)
    visit = far_exam.by_kind("be_seen_in_person")
    assert visit is not None and visit.priority is secondopinion.Priority.MEDIUM

    near = secondopinion.advise({**base, "patient": {"travel": "easy"}})
    assert "consider_remote_opinion" not in near.kinds
    visit = near.by_kind("be_seen_in_person")
    assert visit is not None and visit.priority is secondopinion.Priority.LOW

    given = secondopinion.advise({"opinions": [{"mode": "in_person"}, {"mode": "remote"}]})
    check = given.by_kind("check_insurance")
    assert check is not None and any("internet" in q for q in check.questions)  # type: ignore[attr-defined]


def test_t3_agreement_leaves_a_third_opinion_open_only_as_a_low_note() -> None:
    same = {"diagnosis": "gallstones", "treatment": "surgery"}
    agree = secondopinion.advise({"opinions": [same, same]})
    third = agree.by_kind("get_another_opinion")
    assert third is not None and third.priority is secondopinion.Priority.LOW
    assert agree.kinds.index("proceed_with_confidence") < agree.kinds.index("get_another_opinion")

    differ = secondopinion.advise({"opinions": [same, {"diagnosis": "gallstones", "treatment": "medication"}]})
    third = differ.by_kind("get_another_opinion")
    assert third is not None and third.priority is secondopinion.Priority.HIGH
    assert "proceed_with_confidence" not in differ.kinds


# --------------------------------------------------------------------------- the hub and proportion


def _indicated_reasons() -> tuple[str, ...]:
    domain = BOOK.derived_types["second_opinion_indicated"].attributes["reason"]
    assert isinstance(domain, tuple)
    return domain


def _reason_test(rule: Rule) -> set[str] | None:
    """The reasons a rule's second_opinion_indicated pattern accepts (None: any)."""
    for pattern in rule.when:
        if pattern.fact != "second_opinion_indicated":
            continue
        for test in pattern.tests:
            if isinstance(test, Condition) and test.attr == "reason":
                value = test.value
                return {str(v) for v in value} if isinstance(value, tuple) else {str(value)}
        return None
    return None


def test_every_reason_has_a_producer() -> None:
    produced = {str(r.then.set["reason"]) for r in BOOK.active if r.derives == "second_opinion_indicated"}  # type: ignore[union-attr]
    assert produced == set(_indicated_reasons())


@pytest.mark.parametrize(
    ("pressing", "preference"),
    [
        ("DEADLINE-KNOWN-TIME", "DEADLINE-KNOWN-TIME-ELECTIVE"),
        ("DEADLINE-ASK-TIME", "DEADLINE-ASK-TIME-ELECTIVE"),
        ("ACT-QUICKLY-BEFORE-START", "ACT-QUICKLY-ELECTIVE"),
    ],
)
def test_timing_covers_every_reason_exactly_once(pressing: str, preference: str) -> None:
    high, medium = _reason_test(BOOK.rule(pressing)), _reason_test(BOOK.rule(preference))
    assert high is not None and medium is not None
    assert not high & medium
    assert high | medium == set(_indicated_reasons())


def _producer_examples() -> Iterator[tuple[str, dict[str, object]]]:
    for rule in BOOK.active:
        if rule.derives == "second_opinion_indicated":
            for example in rule.fires:
                yield rule.id, dict(example.case)


@pytest.mark.parametrize(("rule_id", "case"), list(_producer_examples()))
def test_every_reason_brings_the_how_to_advice_and_holds_back_optional(rule_id: str, case: dict[str, object]) -> None:
    advice = secondopinion.advise(case)
    kinds = set(advice.kinds)
    assert "second_opinion_optional" not in kinds
    assert {"act_quickly", "check_credentials", "prepare_questions", "gather_records"} <= kinds, rule_id
    assert {"seek_second_opinion", "get_another_opinion", "find_condition_specialist",
            "consult_specialties", "expert_review"} & kinds, f"{rule_id}: no advice on whom to see"


def test_a_minor_case_gets_only_the_short_optional_answer() -> None:
    for case in (
        {"diagnosis": {"seriousness": "minor"}, "treatment": {"kind": "medication", "risk": "low"}},
        {"diagnosis": {"seriousness": "minor", "spine": "yes"}, "treatment": {"kind": "none"}},
        {"diagnosis": {"seriousness": "moderate"}, "treatment": {"kind": "medication", "risk": "low"}},
    ):
        advice = secondopinion.advise(case)
        assert advice.kinds == ("second_opinion_optional",)
        assert advice.recommendations[0].priority is secondopinion.Priority.LOW


# --------------------------------------------------------------------------- plain language, own words


def _patient_texts() -> list[tuple[str, str, str]]:
    """(rule id, where, text) for every patient-facing text of the active rules."""
    out = []
    for rule in BOOK.active:
        if not isinstance(rule.then, Recommend):
            continue
        spec = rule.then
        out += [(rule.id, "title", spec.title), (rule.id, "detail", spec.detail)]
        for name, value in spec.fields.items():
            if isinstance(value, tuple):
                out += [(rule.id, name, str(item)) for item in value]
            elif isinstance(value, str):
                out.append((rule.id, name, value))
    return out


def _is_sentence(text: str) -> bool:
    return text.rstrip().endswith((".", "?"))


def test_list_fields_hold_sentences_or_short_labels() -> None:
    problems = []
    for rid, where, text in _patient_texts():
        if where in SENTENCE_FIELDS and not _is_sentence(text):
            problems.append(f"{rid} {where}: items of this field must be sentences: {text!r}")
        if where not in SENTENCE_FIELDS | {"title", "detail"} and len(text.split()) > 12:
            problems.append(f"{rid} {where}: a label should be short: {text!r}")
    assert not problems, "\n".join(problems)


def test_titles_fit_a_card() -> None:
    for rid, where, text in _patient_texts():
        if where == "title":
            assert len(text) < 140, rid


def test_patient_texts_read_at_grade_8_or_below_median_6_or_below() -> None:
    graded = [
        (textstat.flesch_kincaid_grade(text), rid, where, text)
        for rid, where, text in _patient_texts()
        if where in ("title", "detail") or _is_sentence(text)
    ]
    too_hard = [f"{g:.1f} {rid} {where}: {text}" for g, rid, where, text in graded if g > MAX_GRADE]
    assert not too_hard, "\n".join(too_hard)
    median = statistics.median(g for g, *_ in graded)
    assert median <= MAX_MEDIAN_GRADE, f"median grade {median:.2f}"
    assert len(graded) > 150  # titles, details and sentence items of every recommending rule


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9']+", text.lower().replace("\u2019", "'"))


def test_patient_texts_do_not_copy_the_source_documents() -> None:
    if not SEEDS.is_dir():
        pytest.skip("../shared/seeds is not beside this checkout")
    source_runs: set[tuple[str, ...]] = set()
    for path in SEEDS.glob("*.txt"):
        words = _words(path.read_text(encoding="utf-8"))
        source_runs |= {tuple(words[i : i + COPY_WINDOW]) for i in range(len(words) - COPY_WINDOW + 1)}
    copied = []
    for rid, where, text in _patient_texts():
        words = _words(text)
        for i in range(len(words) - COPY_WINDOW + 1):
            if tuple(words[i : i + COPY_WINDOW]) in source_runs:
                copied.append(f"{rid} {where}: '{' '.join(words[i:i + COPY_WINDOW])}'")
    assert not copied, "\n".join(copied)
