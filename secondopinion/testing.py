"""Property-based testing of rule bases: Hypothesis strategies and assertion helpers.

The library tests its own rules with these, and a rule pack's authors can test
theirs the same way::

    from hypothesis import given
    import secondopinion
    from secondopinion.testing import assert_advice_sound, assert_consistent, cases

    advisor = secondopinion.Advisor.with_packs("my-pack/")

    def test_my_pack_verifies():
        assert_consistent(advisor)          # static findings at error level fail the test

    @given(cases())
    def test_every_case_gets_sound_advice(case):
        assert_advice_sound(advisor, case)  # no incompatible pair, sources cited, stable

The strategies follow the case model as it grows (they are built from
:func:`~secondopinion.case.case_fact_types`): every aspect and every field may
be left out, enum fields take any of their values, free text comes from a
small vocabulary (so opinions agree as well as conflict) plus the words a
rulebook's rules mention, and sometimes arbitrary text.

This module needs Hypothesis: ``pip install "secondopinion[testing]"``.
Assertion messages name kinds, rule ids and field paths, never case values.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

try:
    from hypothesis import strategies as st
except ImportError as exc:  # pragma: no cover - only without the testing extra
    raise ImportError('secondopinion.testing needs Hypothesis: pip install "secondopinion[testing]"') from exc

from .advisor import Advisor
from .case import (
    Case,
    Diagnosis,
    Doctor,
    Insurance,
    Opinion,
    Patient,
    Records,
    Treatment,
    case_fact_types,
    converter,
    dump_case,
    load_case,
)
from .recommendations import Advice
from .rulebook import AnyOf, Condition, Rulebook, Test

__all__ = [
    "ASPECTS",
    "TEXT_VOCABULARY",
    "advice_problems",
    "aimed_case_dicts",
    "aimed_cases",
    "assert_advice_sound",
    "assert_cites_sources",
    "assert_consistent",
    "assert_examples_pass",
    "assert_keeps_kinds",
    "assert_monotone",
    "assert_no_incompatible",
    "case_dicts",
    "cases",
    "diagnoses",
    "doctors",
    "insurances",
    "monotonicity_problems",
    "opinions",
    "patients",
    "records",
    "rulebook_words",
    "treatments",
]

ASPECTS: tuple[str, ...] = ("diagnosis", "treatment", "patient", "doctor", "insurance", "records")
"""The single aspects of a case, in the order of the case model."""

TEXT_VOCABULARY: Mapping[str, tuple[str, ...]] = {
    "diagnosis": ("gallstones", "Gallstones", "lymphoma", "  lymphoma ", "disc herniation", "migraine"),
    "institution": ("city hospital", "University Clinic", "cancer institute"),
    "cancer_type": ("breast", "lung", "sarcoma"),
}
"""Free-text values the strategies draw from, by attribute (case and spacing vary on purpose)."""

_Strategy = st.SearchStrategy


def rulebook_words(rulebook: Rulebook) -> tuple[str, ...]:
    """The text values a rulebook's rules compare free-text attributes with."""
    types = rulebook.fact_types()
    words: set[str] = set()

    def walk(fact: str, tests: Iterable[Test]) -> None:
        for test in tests:
            if isinstance(test, AnyOf):
                for alt in test.alternatives:
                    walk(fact, alt)
            elif isinstance(test, Condition) and types.get(fact, {}).get(test.attr) == "text":
                values = test.value if isinstance(test.value, tuple) else (test.value,)
                words.update(v for v in values if isinstance(v, str) and v)

    for rule in rulebook.rules:
        for pattern in rule.when:
            walk(pattern.fact, pattern.tests)
        for unless in rule.unless:
            walk(unless.fact, unless.tests)
    return tuple(sorted(words))


def _text(attr: str, words: Sequence[str]) -> _Strategy[str]:
    vocabulary = (*TEXT_VOCABULARY.get(attr, ("other",)), *words)
    free = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), min_size=1, max_size=24)
    return st.one_of(st.sampled_from(vocabulary), free.filter(lambda s: bool(s.strip())))


DIAGNOSIS_CODES = ("M51.26", "m5126", "M51.27", "C50.911", "254837009", "363406005")
"""Diagnosis codes the strategies draw from: ICD-10-CM (a letter first) and SNOMED CT (digits)."""


def code_system(code: str) -> str:
    """The system a code from :data:`DIAGNOSIS_CODES` belongs to."""
    return "snomed" if code[:1].isdigit() else "icd10cm"


def _with_code_system(part: dict[str, Any]) -> dict[str, Any]:
    if "diagnosis_code" in part:
        part["diagnosis_code_system"] = code_system(part["diagnosis_code"])
    return part


def _part(fact: str, words: Sequence[str]) -> _Strategy[dict[str, Any]]:
    """A sparse JSON-like dict for one aspect of a case (or one opinion)."""
    optional: dict[str, _Strategy[Any]] = {}
    for attr, domain in case_fact_types()[fact].items():
        if attr == "index":
            continue
        if attr == "diagnosis_code":
            optional[attr] = st.sampled_from(DIAGNOSIS_CODES)
        elif domain == "int":
            optional[attr] = st.integers(min_value=0, max_value=400)
        elif domain == "text":
            optional[attr] = _text(attr, words)
        else:
            optional[attr] = st.sampled_from(domain)
    return st.fixed_dictionaries({}, optional=optional).map(_with_code_system)


def case_dicts(*, max_opinions: int = 4, rulebook: Rulebook | None = None) -> _Strategy[dict[str, Any]]:
    """Valid cases as JSON-like dicts (any aspect or field may be missing; 0 to ``max_opinions`` opinions).

    With ``rulebook``, free text also takes the words its rules test for.
    """
    words = rulebook_words(rulebook) if rulebook is not None else ()
    optional: dict[str, _Strategy[Any]] = {name: _part(name, words) for name in ASPECTS}
    optional["opinions"] = st.lists(_part("opinion", words), max_size=max_opinions)
    return st.fixed_dictionaries({}, optional=optional)


def cases(*, max_opinions: int = 4, rulebook: Rulebook | None = None) -> _Strategy[Case]:
    """Valid :class:`~secondopinion.case.Case` objects (see :func:`case_dicts`)."""
    return case_dicts(max_opinions=max_opinions, rulebook=rulebook).map(load_case)


_SAMPLERS: dict[tuple[int, bool], tuple[Rulebook, Any]] = {}


def _sampler(rulebook: Rulebook, include_drafts: bool) -> Any:
    """One :class:`~secondopinion.verify.CaseSampler` per rulebook (a rulebook holds dicts: keyed by identity)."""
    from .verify import CaseSampler

    key = (id(rulebook), include_drafts)
    if key not in _SAMPLERS or _SAMPLERS[key][0] is not rulebook:
        _SAMPLERS[key] = (rulebook, CaseSampler(rulebook, include_drafts=include_drafts))
    return _SAMPLERS[key][1]


def aimed_case_dicts(rulebook: Rulebook, *, include_drafts: bool = False) -> _Strategy[dict[str, Any]]:
    """Valid cases as dicts, aimed by the rulebook's own conditions (see :class:`~secondopinion.verify.CaseSampler`).

    Each example solves one thing the rules test (a rule's ``when``, an
    ``unless`` entry, a coverage requirement, two rules with incompatible
    kinds at once) with random choices drawn by Hypothesis, so the boundary
    values of each threshold, each value a rule tests and the opinion counts
    the rules mention come up within the default number of examples.
    """
    sampler = _sampler(rulebook, include_drafts)
    return st.builds(
        sampler.sample, st.randoms(use_true_random=False), st.integers(0, len(sampler.targets))
    )


def aimed_cases(rulebook: Rulebook, *, include_drafts: bool = False) -> _Strategy[Case]:
    """Valid :class:`~secondopinion.case.Case` objects aimed by the rulebook (see :func:`aimed_case_dicts`)."""
    return aimed_case_dicts(rulebook, include_drafts=include_drafts).map(load_case)


def diagnoses() -> _Strategy[Diagnosis]:
    """Valid :class:`~secondopinion.case.Diagnosis` parts."""
    return _part("diagnosis", ()).map(lambda d: converter.structure(d, Diagnosis))


def treatments() -> _Strategy[Treatment]:
    """Valid :class:`~secondopinion.case.Treatment` parts."""
    return _part("treatment", ()).map(lambda d: converter.structure(d, Treatment))


def patients() -> _Strategy[Patient]:
    """Valid :class:`~secondopinion.case.Patient` parts."""
    return _part("patient", ()).map(lambda d: converter.structure(d, Patient))


def doctors() -> _Strategy[Doctor]:
    """Valid :class:`~secondopinion.case.Doctor` parts."""
    return _part("doctor", ()).map(lambda d: converter.structure(d, Doctor))


def insurances() -> _Strategy[Insurance]:
    """Valid :class:`~secondopinion.case.Insurance` parts."""
    return _part("insurance", ()).map(lambda d: converter.structure(d, Insurance))


def records() -> _Strategy[Records]:
    """Valid :class:`~secondopinion.case.Records` parts."""
    return _part("records", ()).map(lambda d: converter.structure(d, Records))


def opinions() -> _Strategy[Opinion]:
    """Valid :class:`~secondopinion.case.Opinion` objects."""
    return _part("opinion", ()).map(lambda d: converter.structure(d, Opinion))


# --------------------------------------------------------------------------- helpers for test suites


def _advisor(subject: Advisor | Rulebook, include_drafts: bool = False) -> Advisor:
    return subject if isinstance(subject, Advisor) else Advisor(subject, include_drafts=include_drafts)


def advice_problems(advisor: Advisor, case: Case | Mapping[str, Any]) -> list[str]:
    """Everything wrong with the advice on one case, as messages without case values.

    Checks: no declared incompatible pair of kinds is given together; every
    recommendation cites at least one source and one guidance id; a second
    run gives identical JSON; the Advice and the case survive a JSON round trip.
    """
    problems: list[str] = []
    checked = load_case(case)
    advice = advisor.advise(checked)
    kinds = set(advice.kinds)
    for a, b in advisor.rulebook.incompatible_kinds:
        if a in kinds and b in kinds:
            by = sorted({rid for r in advice.recommendations if r.kind in (a, b) for rid in r.rule_ids})
            problems.append(f"incompatible kinds {a} and {b} given together (rules {', '.join(by)})")
    for rec in advice.recommendations:
        if not rec.sources:
            problems.append(f"{rec.kind} cites no source (rules {', '.join(rec.rule_ids)})")
        if not rec.guidance:
            problems.append(f"{rec.kind} names no guidance id (rules {', '.join(rec.rule_ids)})")
    text = advice.to_json()
    if advisor.advise(checked).to_json() != text:
        problems.append("a second run gave different advice")
    if Advice.from_json(text) != advice:
        problems.append("the advice does not survive a JSON round trip")
    if load_case(dump_case(checked)) != checked:
        problems.append("the case does not survive a round trip through its dict form")
    return problems


def assert_advice_sound(advisor: Advisor | Rulebook, case: Case | Mapping[str, Any]) -> None:
    """Fail with every problem :func:`advice_problems` finds on this case."""
    problems = advice_problems(_advisor(advisor), case)
    assert not problems, "unsound advice:\n  " + "\n  ".join(problems)


def assert_no_incompatible(advisor: Advisor | Rulebook, case: Case | Mapping[str, Any]) -> None:
    """Fail if the advice on this case gives two kinds the rulebook declares incompatible."""
    adv = _advisor(advisor)
    kinds = set(adv.advise(case).kinds)
    clashes = [f"{a} and {b}" for a, b in adv.rulebook.incompatible_kinds if a in kinds and b in kinds]
    assert not clashes, "incompatible kinds given together: " + "; ".join(clashes)


def assert_cites_sources(advisor: Advisor | Rulebook, case: Case | Mapping[str, Any]) -> None:
    """Fail if any recommendation on this case lacks a source or a guidance id."""
    missing = [
        f"{r.kind} (rules {', '.join(r.rule_ids)})"
        for r in _advisor(advisor).advise(case).recommendations
        if not r.sources or not r.guidance
    ]
    assert not missing, "recommendations without a source or guidance id: " + "; ".join(missing)


def assert_keeps_kinds(
    advisor: Advisor | Rulebook,
    before: Case | Mapping[str, Any],
    after: Case | Mapping[str, Any],
    kinds: Iterable[str],
) -> None:
    """Fail if a kind recommended for ``before`` is missing for ``after`` (a monotonicity property)."""
    adv = _advisor(advisor)
    wanted = set(kinds)
    lost = sorted((wanted & set(adv.advise(before).kinds)) - set(adv.advise(after).kinds))
    assert not lost, "the change removed: " + ", ".join(lost)


def monotonicity_problems(advisor: Advisor | Rulebook, case: Case | Mapping[str, Any]) -> list[str]:
    """Every declared monotonicity requirement this case breaks, as messages without case values.

    For each requirement of the rulebook (``monotonicity:`` in a rule file),
    the case is advised with the attribute set to each value of its order
    (for a number, to the values the rules compare it with and their
    neighbours), the rest unchanged; a kept kind given at one value and
    missing at a higher one is a problem.
    """
    adv = _advisor(advisor)
    data = dump_case(load_case(case))
    problems: list[str] = []
    for mono in adv.rulebook.monotonicity:
        if isinstance(mono.order, tuple):
            values: list[Any] = list(mono.order)
        else:
            numbers = [v for v in _sampler(adv.rulebook, False).domain(mono.fact, mono.attr) if v is not None]
            values = sorted(numbers, reverse=mono.order == "decreasing")
        kept: set[str] = set()
        for value in values:
            changed = {**data, mono.fact: {**data.get(mono.fact, {}), mono.attr: value}}
            kinds = set(adv.advise(changed).kinds)
            lost = sorted(kept - kinds)
            if lost:
                problems.append(f"{mono.id}: raising {mono.attribute} removes {', '.join(lost)}")
                break
            kept |= kinds & set(mono.keeps_kinds)
    return problems


def assert_monotone(advisor: Advisor | Rulebook, case: Case | Mapping[str, Any]) -> None:
    """Fail if this case breaks a declared monotonicity requirement (see :func:`monotonicity_problems`)."""
    problems = monotonicity_problems(advisor, case)
    assert not problems, "monotonicity broken:\n  " + "\n  ".join(problems)


def assert_examples_pass(advisor: Advisor | Rulebook, *, include_drafts: bool = False) -> None:
    """Fail if any rule's ``fires``/``silent`` example does not behave as declared."""
    failures = _advisor(advisor, include_drafts).check_examples()
    assert not failures, "failing rule examples:\n  " + "\n  ".join(str(f) for f in failures)


def assert_consistent(
    advisor: Advisor | Rulebook,
    *,
    include_drafts: bool = False,
    fail_on: Sequence[str] = ("error",),
    samples: int = 200,
) -> None:
    """Verify the rulebook (:func:`secondopinion.verify.verify`) and fail on findings of the given severities.

    Each finding in the message names its kind, its rules and, where there is
    one, its witness case (witnesses are made up by the analysis).
    """
    from .verify import verify

    adv = advisor if isinstance(advisor, Advisor) else None
    book = advisor.rulebook if isinstance(advisor, Advisor) else advisor
    report = verify(book, include_drafts=include_drafts, samples=samples, advisor=adv)
    bad = [f for f in report.findings if f.severity in fail_on]
    lines = []
    for finding in bad:
        lines.append(str(finding))
        if finding.witness is not None:
            lines.append(f"    witness: {dict(finding.witness)}")
    assert not bad, f"{len(bad)} finding(s):\n  " + "\n  ".join(lines)
