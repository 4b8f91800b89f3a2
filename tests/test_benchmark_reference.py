"""The benchmark's plain-Python reference agrees with the engine on its subset of the rules.

``tests/benchmarks/reference.py`` hard-codes about fifty shipped rules as ``if``
statements; the benchmark times it as the floor under ``advise()`` and reports
how often it agrees with ``Trace.effective`` restricted to its subset. That
figure is only honest if it is 100%: these tests hold it there as the rule base
changes (a rule recalibrated without the reference fails here, not silently in
a benchmark report). Nothing here is timed.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
from casegen import random_cases
from hypothesis import HealthCheck, given, settings

import secondopinion
from secondopinion.testing import case_dicts

_PATH = Path(__file__).parent / "benchmarks" / "reference.py"
_spec = importlib.util.spec_from_file_location("benchmark_reference", _PATH)
assert _spec is not None and _spec.loader is not None
_reference = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_reference)

SUBSET: frozenset[str] = _reference.SUBSET
decide: Callable[[Mapping[str, Any]], set[str]] = _reference.decide

ADVISOR = secondopinion.default_advisor()
BENCH_SEED = 20261122  # bench_advise.SEED: the latency run's cases


def _disagreement(case: Mapping[str, Any]) -> str | None:
    """None if the reference agrees with the engine on ``case``, else the rule ids it misses and adds."""
    expected = ADVISOR.trace(case).effective & SUBSET
    got = decide(case)
    if got == expected:
        return None
    return f"missing {sorted(expected - got)}, extra {sorted(got - expected)}"


def test_the_subset_names_only_active_shipped_rules() -> None:
    active = {rule.id for rule in ADVISOR.rulebook.active}
    assert sorted(SUBSET - active) == []
    assert len(SUBSET) >= 40


@pytest.mark.parametrize(
    ("seed", "labelled"),
    [(BENCH_SEED, True), (BENCH_SEED + 17, False)],
    ids=["benchmark-seed", "unlabelled-opinions"],
)
def test_the_reference_agrees_with_the_engine_on_generated_cases(seed: int, labelled: bool) -> None:
    problems = []
    fired: set[str] = set()
    for n, case in enumerate(random_cases(1500, seed=seed, labelled_opinions=labelled)):
        fired |= decide(case)
        problem = _disagreement(case)
        if problem is not None:
            problems.append(f"case {n}: {problem}")
    assert problems == [], f"{len(problems)} of 1500 cases disagree; first: " + "; ".join(problems[:5])
    # the cases reach most of the subset, so the agreement is not only on silence
    assert len(fired) >= len(SUBSET) - 3, sorted(SUBSET - fired)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case_dicts())
def test_the_reference_agrees_with_the_engine_on_any_valid_case(case: dict[str, Any]) -> None:
    assert _disagreement(case) is None, _disagreement(case)
