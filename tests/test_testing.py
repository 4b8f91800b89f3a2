"""Tests for secondopinion.testing: the strategies reach the cases that matter, the helpers fail when they should."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import attrs
import pytest
from hypothesis import find, given, settings

from secondopinion import Advisor, default_advisor
from secondopinion.case import Case, load_case
from secondopinion.rulebook import Rulebook
from secondopinion.testing import (
    ASPECTS,
    assert_cites_sources,
    assert_consistent,
    assert_examples_pass,
    assert_keeps_kinds,
    assert_no_incompatible,
    case_dicts,
    cases,
    diagnoses,
    opinions,
    rulebook_words,
)

REPO = Path(__file__).resolve().parent.parent
PACKS = Path(__file__).parent / "packs"


def pack(name: str) -> Rulebook:
    return Rulebook.load(PACKS / f"{name}.yaml", shipped=False)


@given(case_dicts())
def test_case_dicts_are_valid_cases(data: dict[str, object]) -> None:
    assert isinstance(load_case(data), Case)


def test_cases_reach_agreeing_and_conflicting_opinions() -> None:
    seen: set[str] = set()
    advisor = default_advisor()

    @settings(max_examples=300, database=None)
    @given(cases())
    def collect(case: Case) -> None:
        seen.update(d.type for d in advisor.trace(case).session.derived)

    collect()
    assert {"opinions_agree", "opinions_conflict"} <= seen


def test_cases_can_fill_every_aspect() -> None:
    full: list[dict[str, object]] = []

    @settings(max_examples=300, database=None)
    @given(case_dicts())
    def collect(data: dict[str, object]) -> None:
        opinions = data.get("opinions")
        if all(data.get(a) for a in ASPECTS) and isinstance(opinions, list) and len(opinions) >= 2:
            full.append(data)

    collect()
    assert full


def test_part_strategies_build_model_objects() -> None:
    assert find(diagnoses(), lambda d: d.seriousness.value == "life_threatening").cancer is not None
    assert (
        find(opinions(), lambda o: o.diagnosis is not None).diagnosis
        == find(opinions(), lambda o: o.diagnosis is not None).diagnosis
    )


def test_rulebook_words_feed_the_text_fields(tmp_path: Path) -> None:
    text = (
        (PACKS / "gap.yaml")
        .read_text("utf-8")
        .replace(
            "{seriousness: [serious, life_threatening]}",
            "{seriousness: [serious, life_threatening], cancer_type: Ewing Sarcoma}",
        )
    )
    (tmp_path / "words.yaml").write_text(text, "utf-8")
    book = Rulebook.load(tmp_path / "words.yaml", shipped=False)
    assert rulebook_words(book) == ("ewing sarcoma",)
    hit = find(
        case_dicts(rulebook=book),
        lambda d: d.get("diagnosis", {}).get("cancer_type") == "ewing sarcoma",
        settings=settings(max_examples=5000, database=None),
    )
    assert load_case(hit).diagnosis.cancer_type == "ewing sarcoma"


def test_assert_consistent_fails_on_a_broken_pack_and_names_the_rule() -> None:
    with pytest.raises(AssertionError, match="PK-DEAD-RANGE"):
        assert_consistent(pack("dead"))
    assert_consistent(pack("gap"))  # warnings only
    with pytest.raises(AssertionError, match="gap"):
        assert_consistent(pack("gap"), fail_on=("error", "warning"))


def test_assert_examples_pass_fails_on_a_dead_rule() -> None:
    with pytest.raises(AssertionError, match="PK-DEAD-TWO-DIAGNOSES"):
        assert_examples_pass(pack("dead"))


def test_assert_no_incompatible_fails_on_a_conflicting_case() -> None:
    book = pack("conflict")
    assert_no_incompatible(book, {"diagnosis": {"seriousness": "life_threatening"}})
    with pytest.raises(AssertionError, match="second_opinion_optional and seek_second_opinion"):
        assert_no_incompatible(book, {"diagnosis": {"seriousness": "serious"}})


def test_assert_cites_sources_fails_on_a_rule_without_sources() -> None:
    book = pack("gap")
    bare = attrs.evolve(book.rule("PK-SEEK-SERIOUS"), sources=())
    advisor = Advisor(attrs.evolve(book, rules=(bare, book.rule("PK-OPTIONAL-MINOR"))))
    assert_cites_sources(advisor, {"diagnosis": {"seriousness": "minor"}})
    with pytest.raises(AssertionError, match="seek_second_opinion"):
        assert_cites_sources(advisor, {"diagnosis": {"seriousness": "serious"}})


def test_assert_keeps_kinds_fails_when_a_change_removes_advice() -> None:
    book = pack("gap")
    serious, moderate = {"diagnosis": {"seriousness": "serious"}}, {"diagnosis": {"seriousness": "moderate"}}
    assert_keeps_kinds(book, moderate, serious, ["seek_second_opinion"])
    with pytest.raises(AssertionError, match="seek_second_opinion"):
        assert_keeps_kinds(book, serious, moderate, ["seek_second_opinion"])


def test_the_worked_example_pack_passes_its_own_tests() -> None:
    folder = REPO / "examples" / "packs" / "maple-clinic"
    result = subprocess.run(
        [sys.executable, "-m", "pytest", str(folder), "-q", "-p", "no:cacheprovider"],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stdout[-3000:]
    assert "4 passed" in result.stdout


# --------------------------------------------------------------------------- strategies aimed by the rules

_DEFAULTS = settings(max_examples=100, derandomize=True, deadline=None, database=None)


def test_aimed_cases_find_a_monotonicity_defect_at_default_settings() -> None:
    from secondopinion.testing import aimed_cases, assert_monotone

    book = pack("monotonic")
    advisor = Advisor(book)

    @_DEFAULTS
    @given(aimed_cases(book))
    def prop(case: Case) -> None:
        assert_monotone(advisor, case)

    with pytest.raises(AssertionError, match=r"PK-MONO-SERIOUSNESS: raising diagnosis\.seriousness removes"):
        prop()


def test_aimed_cases_find_a_four_opinion_conflict_at_default_settings() -> None:
    from secondopinion.testing import aimed_cases

    book = pack("conflict-four")
    advisor = Advisor(book)

    @_DEFAULTS
    @given(aimed_cases(book))
    def prop(case: Case) -> None:
        assert_no_incompatible(advisor, case)

    with pytest.raises(AssertionError, match="second_opinion_optional and seek_second_opinion"):
        prop()


def test_aimed_cases_are_valid_and_reach_every_target() -> None:
    import random

    from secondopinion.verify import CaseSampler

    book = pack("conflict-four")
    sampler = CaseSampler(book)
    labels = [label for label, _ in sampler.targets]
    assert "pair PK-OPTIONAL-MANY PK-SEEK-MANY-REMOTE" in labels
    rng = random.Random(7)
    advisor = Advisor(book)
    for index, label in enumerate(labels):
        case = load_case(sampler.sample(rng, index))
        if label.startswith("rule "):
            assert label.split()[1] in advisor.trace(case).fired
    population = sampler.population(40, seed=3)
    assert population == sampler.population(40, seed=3)
    assert all(isinstance(load_case(c), Case) for c in population)


def test_monotonicity_problems_on_a_kept_and_a_broken_case() -> None:
    from secondopinion.testing import monotonicity_problems

    book = pack("monotonic")
    broken = {"diagnosis": {"seriousness": "minor", "cancer": "no", "rare": "yes"}}
    kept = {"diagnosis": {"seriousness": "minor", "cancer": "yes", "rare": "yes"}}
    (problem,) = monotonicity_problems(book, broken)
    assert problem == "PK-MONO-SERIOUSNESS: raising diagnosis.seriousness removes seek_second_opinion"
    assert monotonicity_problems(book, kept) == []


def test_aimed_cases_are_the_same_in_every_process() -> None:
    """A failing example Hypothesis saved must replay as the same case in the next test run.

    The sampler's search shuffled each attribute's values in the order of a set, which
    changes with each process's hash seed: two processes drew different cases.
    """
    script = (
        "import hashlib, json\n"
        "from secondopinion import Rulebook\n"
        "from secondopinion.verify import CaseSampler\n"
        "cases = CaseSampler(Rulebook.load()).population(60, seed=7)\n"
        "print(hashlib.sha256(json.dumps(cases, sort_keys=True).encode()).hexdigest())\n"
    )
    digests = {
        subprocess.run(
            [sys.executable, "-c", script],
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for seed in ("1", "2")
    }
    assert len(digests) == 1
