"""The advice builder merges each kind once; it must give what merging every firing's recommendation gives.

``Advisor.advice_from`` builds one recommendation per kind from the rules' prepared
parts (issue 15: building and merging a recommendation per firing cost a third of
``advise()``). The reference here is the public :func:`merge_recommendations` applied
to :attr:`Trace.recommendations` (one per firing), in rulebook order with the derived
facts numbered by content, as ``advice_from`` documents.
"""

from __future__ import annotations

import sys
from pathlib import Path

import attrs
from hypothesis import HealthCheck, given, settings

import secondopinion
from secondopinion.advisor import Trace, _canonical_fids, _renamed
from secondopinion.recommendations import Derivation, Recommendation, merge_recommendations
from secondopinion.testing import case_dicts

sys.path.insert(0, str(Path(__file__).parent))
from casegen import random_cases

ADVISOR = secondopinion.default_advisor()


def _reference(trace: Trace) -> tuple[Recommendation, ...]:
    rename = _canonical_fids(trace.session.derived)
    recs = [
        attrs.evolve(r, derivation=tuple(_renamed(d, rename) for d in r.derivation)) for r in trace.recommendations
    ]
    order = trace.rule_order
    recs.sort(key=lambda r: (order[r.derivation[0].rule_id], sorted(r.derivation[0].matched.items())))
    return merge_recommendations(recs)


def test_builder_agrees_with_merging_every_firing_on_generated_cases() -> None:
    merged_kinds = 0
    for case in random_cases(400, seed=15):
        trace = ADVISOR.trace(case)
        built = ADVISOR.advice_from(trace).recommendations
        assert built == _reference(trace)
        merged_kinds += sum(len(r.derivation) > 1 for r in built)
    assert merged_kinds > 100  # the cases do exercise merging, not only lone recommendations


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case_dicts())
def test_builder_agrees_with_merging_every_firing(case: dict[str, object]) -> None:
    trace = ADVISOR.trace(case)
    assert ADVISOR.advice_from(trace).recommendations == _reference(trace)


def test_trace_keeps_one_unmerged_recommendation_per_effective_firing() -> None:
    trace = ADVISOR.trace((Path(__file__).parent.parent / "examples" / "cases" / "cancer-surgery.json").read_text())
    recs = trace.recommendations
    assert recs is trace.recommendations  # built once
    assert all(len(r.derivation) == 1 for r in recs)
    assert {r.derivation[0].rule_id for r in recs} <= trace.effective
    assert len(recs) > len(ADVISOR.advice_from(trace).recommendations)


def test_derivations_keep_their_bindings_in_sorted_order() -> None:
    # Derivation.in_order skips the sort: the engine's firings must already be in key order.
    for case in random_cases(200, seed=16):
        advice = ADVISOR.advise(case)
        derivations = [d for r in advice.recommendations for d in r.derivation]
        derivations += [d for f in advice.derived_facts for d in f.derivations]
        for d in derivations:
            assert list(d.matched) == sorted(d.matched)
            assert d == Derivation(d.rule_id, dict(reversed(list(d.matched.items()))))
