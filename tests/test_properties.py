"""Properties of the shipped rule base that hold for every valid case (Hypothesis).

Cases come from the public strategies in ``secondopinion.testing``; the number
of examples is set by the Hypothesis profile (tests/conftest.py). The
monotonicity properties tested here are the documented ones
(docs/verification.md, "Properties the rule base keeps").
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs
from hypothesis import given
from hypothesis import strategies as st

from secondopinion import Advice, Advisor, default_advisor
from secondopinion.case import Case, Level, Opinion, Seriousness, dump_case, load_case
from secondopinion.engine import SessionResult
from secondopinion.rulebook import Rulebook
from secondopinion.testing import (
    advice_problems,
    assert_keeps_kinds,
    case_dicts,
    cases,
    opinions,
)
from secondopinion.verify import _Model

REPO = Path(__file__).resolve().parent.parent
ADVISOR = default_advisor()
SHIPPED = Rulebook.load()

SERIOUSNESS_ORDER = (Seriousness.MINOR, Seriousness.MODERATE, Seriousness.SERIOUS, Seriousness.LIFE_THREATENING)
RISK_ORDER = (Level.LOW, Level.MODERATE, Level.HIGH)


@given(cases(rulebook=SHIPPED))
def test_advice_is_sound_for_every_case(case: Case) -> None:
    # No declared incompatible pair, every recommendation cites a source and a guidance id,
    # a second run gives identical JSON, Advice and case survive their round trips.
    assert advice_problems(ADVISOR, case) == []


@given(case_dicts())
def test_case_json_round_trip(data: dict[str, Any]) -> None:
    case = load_case(data)
    assert load_case(json.dumps(dump_case(case))) == case
    assert load_case(dump_case(load_case(dump_case(case)))) == case


@given(cases())
def test_advice_json_round_trip(case: Case) -> None:
    advice = ADVISOR.advise(case)
    text = advice.to_json()
    again = Advice.from_json(text)
    assert again == advice
    assert again.to_json() == text


class _Shuffling:
    """Feeds the engine the case's facts in an order chosen by the test."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.rnd = random.Random(0)

    def run(self, facts: Sequence[dict[str, Any]]) -> SessionResult:
        order = list(facts)
        self.rnd.shuffle(order)
        result: SessionResult = self.inner.run(order)
        return result


SHUFFLING = Advisor(SHIPPED)
SHUFFLER = _Shuffling(SHUFFLING.engine)
SHUFFLING.engine = SHUFFLER  # type: ignore[assignment]


@given(cases(rulebook=SHIPPED), st.integers(min_value=0, max_value=2**32))
def test_advice_does_not_depend_on_the_order_facts_are_asserted(case: Case, seed: int) -> None:
    SHUFFLER.rnd = random.Random(seed)
    assert SHUFFLING.advise(case).to_dict() == ADVISOR.advise(case).to_dict()


def _with_seriousness(case: Case, value: Seriousness) -> Case:
    return attrs.evolve(case, diagnosis=attrs.evolve(case.diagnosis, seriousness=value))


@given(cases(rulebook=SHIPPED), st.data())
def test_a_more_serious_diagnosis_never_removes_the_advice_to_seek_an_opinion(case: Case, data: st.DataObject) -> None:
    low, high = sorted(data.draw(st.lists(st.sampled_from(range(4)), min_size=2, max_size=2, unique=True)))
    before = _with_seriousness(case, SERIOUSNESS_ORDER[low])
    after = _with_seriousness(case, SERIOUSNESS_ORDER[high])
    assert_keeps_kinds(ADVISOR, before, after, ["seek_second_opinion"])


@given(cases(rulebook=SHIPPED), st.data())
def test_a_more_serious_diagnosis_never_makes_the_opinion_optional(case: Case, data: st.DataObject) -> None:
    low, high = sorted(data.draw(st.lists(st.sampled_from(range(4)), min_size=2, max_size=2, unique=True)))
    after = ADVISOR.advise(_with_seriousness(case, SERIOUSNESS_ORDER[high]))
    if "second_opinion_optional" in after.kinds:
        assert "second_opinion_optional" in ADVISOR.advise(_with_seriousness(case, SERIOUSNESS_ORDER[low])).kinds


@given(cases(rulebook=SHIPPED), st.data())
def test_a_riskier_treatment_never_makes_the_opinion_optional(case: Case, data: st.DataObject) -> None:
    low, high = sorted(data.draw(st.lists(st.sampled_from(range(3)), min_size=2, max_size=2, unique=True)))

    def with_risk(level: Level) -> Case:
        return attrs.evolve(case, treatment=attrs.evolve(case.treatment, risk=level))

    if "second_opinion_optional" in ADVISOR.advise(with_risk(RISK_ORDER[high])).kinds:
        assert "second_opinion_optional" in ADVISOR.advise(with_risk(RISK_ORDER[low])).kinds


@given(cases(rulebook=SHIPPED, max_opinions=3), opinions())
def test_another_opinion_never_settles_a_conflict(case: Case, extra: Opinion) -> None:
    after = attrs.evolve(case, opinions=(*case.opinions, extra))
    assert_keeps_kinds(ADVISOR, case, after, ["resolve_conflict"])


MODEL = _Model(SHIPPED, SHIPPED.active, seed=0)


@given(cases(rulebook=SHIPPED))
def test_static_analysis_and_engine_agree_on_which_rules_fire(case: Case) -> None:
    # The analysis behind `verify` predicts, for a concrete case, which rules fire
    # (derived facts expanded through the rules that produce them); the engine must agree.
    n, values = MODEL.slots_of_case(case)
    predicted = {r.id for r in SHIPPED.active if MODEL.holds(MODEL.rule_alts(r, n), n, values)}
    assert predicted == set(ADVISOR.trace(case).fired)


def _corpus() -> list[dict[str, Any]]:
    found = [json.loads(p.read_text("utf-8")) for p in sorted((REPO / "examples" / "cases").glob("*.json"))]
    for rule in SHIPPED.active:
        found.extend(dict(e.case) for e in (*rule.fires, *rule.silent))
    return found


_CHILD = """
import json, sys
import secondopinion
cases = json.load(sys.stdin)
json.dump([secondopinion.advise(c).to_dict() for c in cases], sys.stdout, sort_keys=True)
"""


def test_same_case_same_advice_json_across_processes() -> None:
    corpus = _corpus()
    assert len(corpus) > 50
    here = json.dumps([ADVISOR.advise(c).to_dict() for c in corpus], sort_keys=True)
    for hash_seed in ("1", "4242"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        child = subprocess.run(
            [sys.executable, "-c", _CHILD],
            input=json.dumps(corpus),
            capture_output=True,
            text=True,
            timeout=300,
            check=True,
            env=env,
        )
        assert child.stdout == here
