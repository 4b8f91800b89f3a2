"""The engine's speed changes keep its behaviour: the action loop (guard 15) and content keys (guard 5)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

import secondopinion.engine as engine_module
from secondopinion.engine import Engine, EngineError, Fact

CHAIN = {
    "a": {"all": [{"o": {"type": "opinion"}}], "pri": 0},
    "b": {"all": [{"x": {"type": "step_a"}}], "pri": 0},
    "c": {"all": [{"x": {"type": "step_b"}}], "pri": 0},
}


def _opinions(count: int) -> list[Fact]:
    return [{"type": "opinion", "fid": f"opinion[{i}]", "index": i} for i in range(count)]


def _chain_engine() -> Engine:
    return Engine(
        CHAIN,
        {
            "a": lambda b: {"type": "step_a", "n": b["o"]["index"]},
            "b": lambda b: {"type": "step_b", "n": b["x"]["n"]},
        },
    )


class _CountingNative:
    """durable's C extension with update_state calls counted."""

    def __init__(self, native: Any) -> None:
        self._native = native
        self.update_state_calls = 0

    def update_state(self, *args: Any) -> Any:
        self.update_state_calls += 1
        return self._native.update_state(*args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._native, name)


def test_the_session_state_is_written_once_per_engine_call_not_once_per_action(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    counting = _CountingNative(engine_module._native)
    monkeypatch.setattr(engine_module, "_native", counting)
    eng = _chain_engine()
    result = eng.run(_opinions(5))
    assert len(result.firings) == 15  # 5 x (a, b, c): 15 actions besides __open
    # Two calls into durable (open the session, assert the case facts): the state is written
    # after the first action of each, and never again as no action changes it.
    assert counting.update_state_calls == 2


def test_the_action_loop_gives_what_durables_own_loop_gives() -> None:
    ours = _chain_engine()
    stock = _chain_engine()
    ruleset = stock._host.get_ruleset(stock.name)
    del ruleset._flush_actions  # back to durable's Ruleset._flush_actions
    for count in (0, 1, 4, 9):
        assert ours.run(_opinions(count)) == stock.run(_opinions(count))


def test_a_changed_state_is_written_back(monkeypatch: pytest.MonkeyPatch) -> None:
    """An action that changes the state (here: durable records an exception in it) gets it written."""
    counting = _CountingNative(engine_module._native)
    monkeypatch.setattr(engine_module, "_native", counting)
    eng = Engine({"r": {"all": [{"o": {"type": "opinion"}}]}}, {})
    promise = eng._host.get_ruleset(eng.name)._actions["r"]

    calls = {"n": 0}

    def failing(c: Any) -> None:
        calls["n"] += 1
        if calls["n"] >= 2:  # the first case action leaves the state as it is; the second changes it
            raise RuntimeError("boom")

    monkeypatch.setattr(promise, "_func", failing)
    with pytest.raises(EngineError, match="action exception"):
        eng.run(_opinions(3))
    # open (1), the first case action (1), and the action whose exception durable stored in the state
    assert counting.update_state_calls >= 3


@pytest.mark.parametrize(
    ("first", "second", "same"),
    [
        ({"v": 1}, {"v": 1}, True),
        ({"v": 1}, {"v": 1.0}, False),
        ({"v": 1}, {"v": True}, False),
        ({"v": 0.0}, {"v": -0.0}, False),
        ({"v": "1"}, {"v": 1}, False),
        ({"a": 1, "b": "x"}, {"b": "x", "a": 1}, True),
        ({"v": [1, 2]}, {"v": (1, 2)}, True),
        ({"v": [1, 2]}, {"v": [2, 1]}, False),
        ({"v": [1]}, {"v": [True]}, False),
        ({"v": [1]}, {"v": 1}, False),
    ],
)
def test_derived_facts_are_the_same_exactly_when_their_json_content_is(
    first: Mapping[str, Any], second: Mapping[str, Any], same: bool
) -> None:
    produced = iter([first, second])
    eng = Engine(
        {"d": {"all": [{"o": {"type": "opinion"}}]}},
        {"d": lambda b: {"type": "made", **next(produced)}},
    )
    result = eng.run(_opinions(2))
    assert len(result.derived) == (1 if same else 2)
    assert sum(len(d.derivations) for d in result.derived) == 2
    assert {f.matched["o"] for f in result.firings} == {"opinion[0]", "opinion[1]"}


def test_compact_json_to_durable_gives_what_durables_own_json_gives(monkeypatch: pytest.MonkeyPatch) -> None:
    """orjson writes no space after ',' and ':' where ``json.dumps`` (durable's own) does.

    durable's C parser reads both, but its hazard A11 showed that the text's layout can
    change what a faulty join matches; on the shipped rules (no such join) the sessions must
    be the same either way.
    """
    import json

    from casegen import random_cases

    from secondopinion import Advisor
    from secondopinion.case import case_facts, load_case

    advisor = Advisor()
    facts = [case_facts(load_case(case)) for case in random_cases(300, seed=17)]
    compact = [advisor.engine.run(f) for f in facts]
    monkeypatch.setattr(engine_module, "_dumps", lambda value: json.dumps(value, ensure_ascii=False))
    spaced = [advisor.engine.run(f) for f in facts]
    assert spaced == compact
    assert sum(len(r.derived) for r in compact) > 300  # the cases chain rules
