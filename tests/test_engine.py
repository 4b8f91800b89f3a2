"""Regression tests for secondopinion.engine, the durable-rules adapter.

Each guard of the adapter has a test that fails when the guard is removed; the
comment above each test names the hazard (numbers from
/work/shared/ENGINE-NOTES.md, ``A``-letters from the module docstring).  Tests
marked "documents" show the raw durable-rules behaviour the guard exists for;
crash-prone ones run in a subprocess.
"""

from __future__ import annotations

import copy
import datetime
import inspect
import os
import subprocess
import sys
import textwrap
import threading
import time
import traceback
import types
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import secondopinion.engine as engine_module
from secondopinion.engine import (
    ActionError,
    DerivedFact,
    Engine,
    EngineError,
    Fact,
    Firing,
    RulesetError,
    SessionResult,
)

# durable itself, reached through the adapter so that engine.py stays the only
# module that imports it.
durable_engine: Any = vars(engine_module)["_durable"]

REPO_ROOT = Path(__file__).resolve().parent.parent
SECRET = "Patient-Secret-Value-1234"

CONFLICT_RULE: dict[str, Any] = {
    "all": [
        {"a": {"type": "opinion"}},
        {
            "b": {
                "$and": [
                    {"type": "opinion"},
                    {"$gt": {"index": {"a": "index"}}},
                    {"$neq": {"dx": {"a": "dx"}}},
                ]
            }
        },
    ],
    "pri": 1,
}
FLAG_RULE: dict[str, Any] = {"all": [{"c": {"type": "conflict"}}], "pri": 2}


def opinion(index: int, dx: str) -> Fact:
    return {"type": "opinion", "fid": f"opinion[{index}]", "index": index, "dx": dx}


def derive_conflict(bindings: Mapping[str, Fact]) -> Fact:
    return {"type": "conflict", "left": bindings["a"]["fid"], "right": bindings["b"]["fid"]}


def conflict_engine(**kwargs: Any) -> Engine:
    return Engine(
        {"conflict": CONFLICT_RULE, "flag": FLAG_RULE},
        {"conflict": derive_conflict},
        **kwargs,
    )


RAW_HOST = """
import durable.engine as de
class Host(de.Host):
    def _run(self): pass
    def get_action(self, name): return lambda c: None
host = Host()
"""
"""Script prefix for the raw-durable demonstrations: a timer-free host whose actions do nothing."""


def run_python(*parts: str) -> subprocess.CompletedProcess[str]:
    """Run the parts (each dedented on its own) in a fresh interpreter that can import the project."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
    return subprocess.run(
        [sys.executable, "-c", "\n".join(textwrap.dedent(part) for part in parts)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )


def assert_no_secret(err: BaseException) -> None:
    """The error, its message and its whole printed traceback hold no fact value."""
    printed = "".join(traceback.format_exception(err))
    assert SECRET not in printed
    assert SECRET not in str(err)


# ------------------------------------------------------------------ basics


def test_join_derives_conflict_and_a_second_rule_consumes_it() -> None:
    result = conflict_engine().run([opinion(0, "a"), opinion(1, "b")])

    first = Firing("conflict", {"a": "opinion[0]", "b": "opinion[1]"})
    assert result.firings == (first, Firing("flag", {"c": "conflict#1"}))
    assert result.derived == (
        DerivedFact(
            fid="conflict#1",
            type="conflict",
            attributes={"left": "opinion[0]", "right": "opinion[1]"},
            derivations=(first,),
        ),
    )
    assert list(result.derived[0].derivations[0].matched) == ["a", "b"]
    assert result.facts == (
        opinion(0, "a"),
        opinion(1, "b"),
        {"type": "conflict", "fid": "conflict#1", "left": "opinion[0]", "right": "opinion[1]"},
    )


def test_join_guard_excludes_same_diagnosis_and_reversed_pairs() -> None:
    result = conflict_engine().run([opinion(0, "a"), opinion(1, "a"), opinion(2, "b")])
    pairs = {(f.matched["a"], f.matched["b"]) for f in result.firings if f.rule_id == "conflict"}
    assert pairs == {("opinion[0]", "opinion[2]"), ("opinion[1]", "opinion[2]")}
    assert [d.fid for d in result.derived] == ["conflict#1", "conflict#2"]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from("abc"), max_size=7))
def test_conflicts_match_a_python_oracle(dxs: list[str]) -> None:
    facts = [opinion(i, dx) for i, dx in enumerate(dxs)]
    result = conflict_engine().run(facts)
    expected = {
        (f"opinion[{i}]", f"opinion[{j}]") for i in range(len(dxs)) for j in range(i + 1, len(dxs)) if dxs[i] != dxs[j]
    }
    got = {(d.attributes["left"], d.attributes["right"]) for d in result.derived}
    assert got == expected
    assert len(result.firings) == 2 * len(expected)


def test_derive_receives_copies_without_sid_and_cannot_corrupt_the_result() -> None:
    seen: list[dict[str, Any]] = []

    def derive(bindings: Mapping[str, Fact]) -> None:
        seen.append(dict(bindings["o"]))
        bindings["o"]["dx"] = "mutated"

    facts = [opinion(0, "a")]
    result = Engine({"r": {"all": [{"o": {"type": "opinion"}}]}}, {"r": derive}).run(facts)
    assert seen == [opinion(0, "a")]
    assert result.facts == (opinion(0, "a"),)
    assert facts == [opinion(0, "a")]  # the caller's facts are not touched either
    assert result.derived == ()  # derive returned None: firing only
    assert result.firings == (Firing("r", {"o": "opinion[0]"}),)


def test_fact_types_lists_the_types_named_in_patterns() -> None:
    assert conflict_engine().fact_types == frozenset({"opinion", "conflict"})


# ------------------------------------------------------------------ hazard 1


# Hazard 1: every durable Host starts two timer threads (they race
# delete_state and can segfault); the adapter's Host starts none.
def test_engines_start_no_threads() -> None:
    before = threading.active_count()
    engines = [conflict_engine() for _ in range(5)]
    for eng in engines:
        eng.run([opinion(0, "a"), opinion(1, "b")])
    time.sleep(0.3)  # durable's timers would have started (0.1 s) and re-armed
    assert threading.active_count() == before


# ------------------------------------------------------------------ hazard 2


# Hazard 2: delete_state segfaults for a session in which no action ran; the
# internal __open rule guarantees one did.  Subprocess: the failure is a crash.
def test_session_in_which_no_rule_fires_is_deleted_without_crash() -> None:
    proc = run_python(
        """
        from secondopinion.engine import Engine
        rules = {"join": {"all": [{"a": {"type": "x"}}, {"b": {"type": "y"}}]}}
        sids = iter(["k1", "k2", "k3", "k4"])
        eng = Engine(rules, {}, sid_factory=lambda: next(sids))
        assert eng.run([{"type": "x", "fid": "x"}]).firings == ()
        assert eng.run([]).firings == ()
        assert eng.run([{"type": "unmentioned", "fid": "u"}]).firings == ()
        for sid in ("k1", "k2", "k3"):
            try:
                eng._host.get_state(eng.name, sid)
            except Exception as exc:
                assert "309" in str(exc)  # ERR_SID_NOT_FOUND: the session is gone
            else:
                raise AssertionError("session still alive")
        print("ok")
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"


# Documents hazard 2: raw durable crashes deleting a session where no action ran.
# It is a read of freed memory: CPython 3.11 crashes on it every time here, 3.12 reads the freed
# memory without crashing. The guard (test_session_in_which_no_rule_fires_is_deleted_without_crash and
# the other hazard-2 tests) runs on every version.
@pytest.mark.skipif(sys.version_info[:2] != (3, 11), reason="the use-after-free crashes reproducibly on 3.11 only")
def test_documents_raw_durable_crashes_deleting_a_session_without_actions() -> None:
    proc = run_python(
        RAW_HOST,
        """
        host.register_rulesets(
            {"t": {"r": {"all": [{"a": {"type": "x"}}, {"b": {"type": "y"}}], "run": "r"}}}
        )
        host.assert_facts("t", [{"type": "x", "sid": "s1"}])
        print("asserted", flush=True)
        host.delete_state("t", "s1")
        print("deleted", flush=True)
        """
    )
    assert "asserted" in proc.stdout
    assert "deleted" not in proc.stdout
    assert proc.returncode != 0


# Hazard A5: if a durable call fails before any action of a new session ran,
# deleting the session segfaults; the adapter opens each session in its own
# call, so a failing case-fact call still leaves a deletable session.
def test_failing_engine_call_still_leaves_a_deletable_session() -> None:
    proc = run_python(
        """
        import durable.engine as de
        from secondopinion.engine import Engine, EngineError
        native = de.durable_rules_engine
        original = native.assert_facts
        def failing(handle, text):
            original(handle, text)  # the facts reach the C core, then the call fails
            raise RuntimeError("Could not assert facts, error code: 302")
        native.assert_facts = failing
        eng = Engine({"join": {"all": [{"a": {"type": "x"}}, {"b": {"type": "y"}}]}}, {})
        try:
            eng.run([{"type": "x", "fid": "x"}])
        except EngineError as exc:
            assert "error code: 302" in str(exc), exc
        else:
            raise AssertionError("no EngineError")
        native.assert_facts = original
        assert eng.run([{"type": "x", "fid": "x"}, {"type": "y", "fid": "y"}]).firings
        print("ok")
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"


# Hazard A5 (second half): a session that could not be opened cannot be
# deleted safely; the Engine then refuses further work instead of leaking it.
def test_engine_refuses_work_after_a_session_it_could_not_open(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    eng = conflict_engine()

    def broken(handle: Any, text: str) -> Any:
        raise RuntimeError("Could not assert fact, error code: 101")

    monkeypatch.setattr(durable_engine.durable_rules_engine, "assert_fact", broken)
    with pytest.raises(EngineError, match="error code: 101"):
        eng.run([opinion(0, "a")])
    monkeypatch.undo()
    with pytest.raises(EngineError, match="unusable"):
        eng.run([opinion(0, "a")])


# ------------------------------------------------------------------ hazard 3


# Hazard 3: a ruleset holds at most 1,024 live sessions; every session is
# deleted in a finally block, including sessions whose action raised.
def test_thousands_of_sequential_sessions_including_failing_ones() -> None:
    def derive(bindings: Mapping[str, Fact]) -> Fact:
        if bindings["t"]["boom"]:
            raise ValueError("boom")
        return {"type": "done"}

    eng = Engine({"r": {"all": [{"t": {"type": "trigger"}}]}}, {"r": derive})
    failures = 0
    for i in range(2100):
        facts = [{"type": "trigger", "fid": "t", "boom": i % 3 == 0, "n": i}]
        if i % 3 == 0:
            with pytest.raises(ActionError):
                eng.run(facts)
            failures += 1
        else:
            assert [d.type for d in eng.run(facts).derived] == ["done"]
    assert failures == 700


# ------------------------------------------------------------------ hazard 4


# Hazard 4: sids are looked up by a 32-bit hash; user-129599 and user-732382
# share a session.  One live session at a time keeps their facts apart.
def test_colliding_sids_never_mix_results() -> None:
    sids = iter(["user-129599", "user-732382"] * 200)
    eng = Engine(
        {"join": {"all": [{"a": {"type": "x"}}, {"b": {"type": "y"}}]}},
        {},
        sid_factory=lambda: next(sids),
    )
    for i in range(100):
        # x alone and then y alone: a leftover x would join the next y.
        assert eng.run([{"type": "x", "fid": f"x{i}"}]).firings == ()
        assert eng.run([{"type": "y", "fid": f"y{i}"}]).firings == ()
    both = eng.run([{"type": "x", "fid": "xa"}, {"type": "y", "fid": "ya"}])
    assert both.firings == (Firing("join", {"a": "xa", "b": "ya"}),)


# Documents hazard 4: raw durable mixes the facts of these two live sessions.
def test_documents_raw_durable_mixes_colliding_sessions() -> None:
    proc = run_python(
        RAW_HOST,
        """
        host.register_rulesets({"t": {"r": {"all": [{"a": {"type": "x"}}], "run": "r"}}})
        host.assert_facts("t", [{"type": "x", "v": "A", "sid": "user-129599"}])
        host.assert_facts("t", [{"type": "x", "v": "B", "sid": "user-732382"}])
        print(sorted(f["v"] for f in host.get_facts("t", "user-732382")))
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "['A', 'B']"


def test_invalid_sid_from_factory_is_refused() -> None:
    eng = conflict_engine(sid_factory=lambda: 'bad"sid')
    with pytest.raises(EngineError, match="invalid sid"):
        eng.run([opinion(0, "a")])


# ------------------------------------------------------------------ hazard 5


# Hazard 5: asserting content already in the session raises
# MessageObservedException; identical derivations are recorded, not asserted.
def test_identical_derivations_are_recorded_once() -> None:
    def pair(bindings: Mapping[str, Fact]) -> Fact:
        # symmetric join without an ordering guard: both orders derive this
        return {"type": "pair", "fids": sorted([bindings["a"]["fid"], bindings["b"]["fid"]])}

    rules: dict[str, Any] = {
        "pairs": {
            "all": [
                {"a": {"type": "opinion"}},
                {"b": {"$and": [{"type": "opinion"}, {"$neq": {"dx": {"a": "dx"}}}]}},
            ]
        },
        "same_again": {"all": [{"a": {"type": "opinion"}}, {"b": {"type": "pair"}}]},
        "consume": {"all": [{"p": {"type": "pair"}}], "pri": 5},
    }
    eng = Engine(rules, {"pairs": pair, "same_again": lambda b: {"type": "pair", "fids": []}})
    result = eng.run([opinion(0, "a"), opinion(1, "b")])

    pairs = [d for d in result.derived if d.attributes["fids"]]
    assert len(pairs) == 1
    assert pairs[0].fid == "pair#1"
    assert {f.rule_id for f in pairs[0].derivations} == {"pairs"}
    assert sorted(f.matched["a"] for f in pairs[0].derivations) == ["opinion[0]", "opinion[1]"]
    # "same_again" derives one empty pair per (opinion, pair) match: 1 fact, many derivations
    empty = [d for d in result.derived if not d.attributes["fids"]]
    assert len(empty) == 1
    assert len(empty[0].derivations) == 4  # 2 opinions x 2 pair facts
    assert len([f for f in result.firings if f.rule_id == "consume"]) == 2


# Hazard 5 (input side): input facts are identified by fid; a repeated fid is
# refused before the engine is touched, naming the fid and not the values.
def test_duplicate_input_fid_is_refused() -> None:
    with pytest.raises(EngineError, match=r"duplicate input fact id 'opinion\[0\]'") as info:
        conflict_engine().run([opinion(0, SECRET), opinion(0, SECRET)])
    assert_no_secret(info.value)


def test_facts_equal_except_fid_are_distinct_facts() -> None:
    eng = Engine({"r": {"all": [{"s": {"type": "symptom"}}]}}, {})
    result = eng.run(
        [
            {"type": "symptom", "fid": "symptom[0]", "name": "fever"},
            {"type": "symptom", "fid": "symptom[1]", "name": "fever"},
        ]
    )
    assert sorted(f.matched["s"] for f in result.firings) == ["symptom[0]", "symptom[1]"]


# Documents hazard 5: raw durable refuses content it has already seen.
def test_documents_raw_durable_refuses_repeated_content() -> None:
    proc = run_python(
        RAW_HOST,
        """
        host.register_rulesets({"t": {"r": {"all": [{"a": {"type": "x"}}], "run": "r"}}})
        host.assert_fact("t", {"type": "x", "sid": "s"})
        try:
            host.assert_fact("t", {"type": "x", "sid": "s"})
        except de.MessageObservedException:
            print("observed")
        """
    )
    assert proc.stdout.strip() == "observed", proc.stderr


# Runaway derivations (new content forever) stop at max_facts instead of
# looping (durable also reports spurious duplicates after ~46,000 facts).
def test_runaway_derivation_stops_at_max_facts() -> None:
    eng = Engine(
        {"inc": {"all": [{"n": {"type": "counter"}}]}},
        {"inc": lambda b: {"type": "counter", "value": b["n"]["value"] + 1}},
        max_facts=50,
    )
    with pytest.raises(EngineError, match="exceeded 50 facts"):
        eng.run([{"type": "counter", "fid": "c", "value": 0}])
    ok = Engine(
        {"inc": {"all": [{"n": {"type": "counter"}}]}},
        {"inc": lambda b: {"type": "counter", "value": min(b["n"]["value"] + 1, 10)}},
    ).run([{"type": "counter", "fid": "c", "value": 0}])
    assert [d.attributes["value"] for d in ok.derived] == list(range(1, 11))


# ------------------------------------------------------------------ hazard 6


# Hazard 6: a fact that matches no rule raises MessageNotHandledException and
# holds back the batch; sink rules make every fact of a named type "handled".
def test_fact_matching_no_rule_does_not_hold_back_the_others() -> None:
    eng = Engine(
        {"fever": {"all": [{"s": {"$and": [{"type": "symptom"}, {"name": "fever"}]}}]}},
        {},
    )
    result = eng.run(
        [
            {"type": "symptom", "fid": "symptom[0]", "name": "cough"},
            {"type": "symptom", "fid": "symptom[1]", "name": "fever"},
        ]
    )
    assert result.firings == (Firing("fever", {"s": "symptom[1]"}),)


# Hazard 6: facts of a type no pattern names are skipped (not sent to durable)
# but remain part of the session's facts; derived ones likewise.
def test_facts_of_unmentioned_types_are_skipped_but_reported() -> None:
    eng = Engine(
        {"r": {"all": [{"o": {"type": "opinion"}}]}},
        {"r": lambda b: {"type": "recommendation", "about": b["o"]["fid"]}},
    )
    result = eng.run([{"type": "patient", "fid": "patient", "age": 40}, opinion(0, "a")])
    assert result.firings == (Firing("r", {"o": "opinion[0]"}),)
    assert result.facts == (
        {"type": "patient", "fid": "patient", "age": 40},
        opinion(0, "a"),
        {"type": "recommendation", "fid": "recommendation#1", "about": "opinion[0]"},
    )


# Hazard 6: durable's exceptions embed the facts' JSON (patient data); the
# adapter re-raises a plain EngineError with neither cause nor context.
@pytest.mark.parametrize("exception_name", ["MessageNotHandledException", "MessageObservedException"])
def test_durable_refusal_is_reported_without_fact_data(monkeypatch: pytest.MonkeyPatch, exception_name: str) -> None:
    eng = conflict_engine()
    # durable's C core answers 1 (not handled) or 2 (observed); durable then raises with the facts in the text.
    code = {"MessageNotHandledException": 1, "MessageObservedException": 2}[exception_name]

    def refuse(handle: Any, text: str) -> Any:
        return (code, 0)

    monkeypatch.setattr(durable_engine.durable_rules_engine, "assert_facts", refuse)
    with pytest.raises(EngineError) as info:
        eng.run([opinion(0, SECRET)])
    assert type(info.value) is EngineError
    assert info.value.__cause__ is None
    assert info.value.__context__ is None
    assert_no_secret(info.value)
    monkeypatch.undo()
    assert eng.run([opinion(0, "a"), opinion(1, "b")]).derived


# ------------------------------------------------------------------ hazard 7


# Hazard 7: an exception inside an action never reaches the caller in raw
# durable; the adapter re-raises it as ActionError(rule_id) with the cause.
def test_raising_derive_becomes_action_error_and_the_next_run_works() -> None:
    calls = {"n": 0}

    def derive(bindings: Mapping[str, Fact]) -> Fact:
        calls["n"] += 1
        if calls["n"] == 1:
            raise ValueError(SECRET)
        return derive_conflict(bindings)

    eng = Engine({"conflict": CONFLICT_RULE, "flag": FLAG_RULE}, {"conflict": derive})
    with pytest.raises(ActionError) as info:
        eng.run([opinion(0, "a"), opinion(1, "b")])
    assert info.value.rule_id == "conflict"
    assert isinstance(info.value.__cause__, ValueError)
    assert SECRET not in str(info.value)

    result = eng.run([opinion(0, "a"), opinion(1, "b")])
    assert [f.rule_id for f in result.firings] == ["conflict", "flag"]


# Hazard 7: durable treats a two-parameter action (also one with a defaulted
# second parameter) as asynchronous and drops what it asserts.
def test_bound_actions_take_one_parameter_and_their_facts_are_seen() -> None:
    eng = conflict_engine()
    ruleset = eng._host.get_ruleset(eng.name)
    assert ruleset._actions  # user rules plus __open and the sink rules
    for promise in ruleset._actions.values():
        assert promise._sync is True
        assert promise._func.__code__.co_argcount - inspect.ismethod(promise._func) == 1
        assert len(inspect.signature(promise._func).parameters) == 1
    result = eng.run([opinion(0, "a"), opinion(1, "b")])
    assert Firing("flag", {"c": "conflict#1"}) in result.firings


# Hazard 7: invalid output of a DeriveFn is the rule's fault: ActionError.
@pytest.mark.parametrize(
    "produced",
    [
        {"type": "conflict", "fid": "mine"},
        {"type": "conflict", "sid": "s"},
        {"type": "conflict", "id": 1},
        {"type": "conflict", "x": 1e-5},
        {"type": "conflict", "x": {"nested": 1}},
        {"type": "__session__"},
        {"dx": "a"},
        ["not", "a", "mapping"],
    ],
)
def test_invalid_derived_fact_is_an_action_error(produced: Any) -> None:
    eng = Engine({"conflict": CONFLICT_RULE, "flag": FLAG_RULE}, {"conflict": lambda b: produced})
    with pytest.raises(ActionError) as info:
        eng.run([opinion(0, "a"), opinion(1, "b")])
    assert info.value.rule_id == "conflict"
    assert isinstance(info.value.__cause__, EngineError)


# Hazard 7: an exception durable itself caught is stored in the session state
# under "exception"; the adapter checks the returned state.
def test_exception_recorded_in_state_is_an_engine_error() -> None:
    eng = Engine({"r": {"all": [{"o": {"type": "opinion"}}]}}, {})
    promise = eng._host.get_ruleset(eng.name)._actions["r"]
    original = promise._func

    def bypassing_the_adapter(c: Any) -> None:
        raise RuntimeError(SECRET)

    promise._func = bypassing_the_adapter
    with pytest.raises(EngineError, match="action exception") as info:
        eng.run([opinion(0, "a")])
    assert_no_secret(info.value)
    promise._func = original
    assert eng.run([opinion(0, "a")]).firings == (Firing("r", {"o": "opinion[0]"}),)


# Hazard 9 (second half): durable silently drops the rest of a session when an
# action outlives its 10 s lease; the adapter notices the unfinished call.
def test_action_over_the_lease_is_an_engine_error(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [1000.0]
    monkeypatch.setattr(durable_engine, "_unix_now", lambda: clock[0])

    def slow(bindings: Mapping[str, Fact]) -> Fact:
        clock[0] += 11.0
        return derive_conflict(bindings)

    eng = Engine({"conflict": CONFLICT_RULE, "flag": FLAG_RULE}, {"conflict": slow})
    with pytest.raises(EngineError, match="10 s lease"):
        eng.run([opinion(0, "a"), opinion(1, "b")])
    assert eng.run([opinion(0, "a")]).firings == ()


# ------------------------------------------------------------------ hazard 8


# Hazard 8: no truth maintenance; each run is a fresh session holding only
# its own facts.
def test_a_run_holds_nothing_from_the_previous_run() -> None:
    # every session gets the same sid: only a fresh session per run keeps them apart
    eng = conflict_engine(sid_factory=lambda: "same-sid")
    first = eng.run([opinion(0, "a"), opinion(1, "b"), opinion(2, "c")])
    assert len(first.derived) == 3
    second = eng.run([opinion(5, "x")])
    assert second == SessionResult(firings=(), derived=(), facts=(opinion(5, "x"),))
    third = eng.run([opinion(7, "y"), opinion(8, "z")])
    assert [d.fid for d in third.derived] == ["conflict#1"]
    assert third.derived[0].attributes == {"left": "opinion[7]", "right": "opinion[8]"}


# ------------------------------------------------------------------ hazard 9


# Hazard 9: a pattern that does not constrain "type" could match durable's
# session-state fact and loop; such rule sets are refused.
@pytest.mark.parametrize(
    "pattern",
    [
        {"dx": "a"},
        {"$ex": {"type": 1}},
        {"$or": [{"type": "opinion"}, {"type": "conflict"}]},
        {"$and": [{"dx": "a"}, {"$gt": {"index": 1}}]},
        {"type": 3},
        {"type": {"a": "type"}},
        {"$and": [{"type": "a"}, {"type": "b"}]},
    ],
)
def test_pattern_without_type_equality_is_refused(pattern: dict[str, Any]) -> None:
    with pytest.raises(RulesetError):
        Engine({"r": {"all": [{"m": pattern}]}}, {})


def test_type_constraint_inside_top_level_and_is_accepted() -> None:
    eng = Engine({"r": {"all": [{"m": {"$and": [{"dx": "a"}, {"type": "opinion"}]}}]}}, {})
    assert eng.run([opinion(0, "a"), opinion(1, "b")]).firings == (Firing("r", {"m": "opinion[0]"}),)


# Hazard A1: durable matches a multi-key pattern object on its first key only.
def test_multi_key_pattern_object_is_refused() -> None:
    with pytest.raises(RulesetError, match="exactly one key"):
        Engine({"r": {"all": [{"m": {"type": "opinion", "dx": "a"}}]}}, {})
    with pytest.raises(RulesetError, match="exactly one key"):
        Engine({"r": {"all": [{"m": {"$and": [{"type": "opinion", "dx": "a"}]}}]}}, {})


# Documents hazard A1: raw durable ignores the second key.
def test_documents_raw_durable_ignores_all_but_the_first_pattern_key() -> None:
    proc = run_python(
        """
        import durable.engine as de
        fired = []
        class Host(de.Host):
            def _run(self): pass
            def get_action(self, name): return lambda c: fired.append(c._m["m"]["type"])
        host = Host()
        host.register_rulesets(
            {"t": {"r": {"all": [{"m": {"dx": "a", "type": "opinion"}}], "run": "r"}}}
        )
        host.assert_fact("t", {"type": "not-an-opinion", "dx": "a", "sid": "s"})
        print(fired)
        """
    )
    assert proc.stdout.strip() == "['not-an-opinion']", proc.stderr


# Negation is refused: durable does not retract an activation when the negated
# fact arrives later.  Also refused: forms the adapter cannot guard.
@pytest.mark.parametrize(
    "rule",
    [
        {"all": [{"m": {"type": "opinion"}}, {"m$not": {"type": "conflict"}}]},
        {"all": [{"m": {"$and": [{"type": "opinion"}, {"$not": {"dx": "a"}}]}}]},
        {"all": [{"m$any": [{"a": {"type": "opinion"}}]}]},
        {"any": [{"a": {"type": "opinion"}}]},
        {"all": [{"m": {"type": "opinion"}}], "count": 2},
        {"all": [{"m": {"type": "opinion"}}], "run": "something"},
        {"all": [{"m": {"$and": [{"type": "opinion"}, {"$s": 1}]}}]},
        {"all": [{"m": {"$and": [{"type": "opinion"}, {"sid": "s1"}]}}]},
        {"all": [{"m": {"type": "opinion"}}, {"m": {"type": "conflict"}}]},
        {"all": []},
        {"all": [{"m": {"type": "__session__"}}]},
    ],
)
def test_unsupported_rule_forms_are_refused(rule: dict[str, Any]) -> None:
    with pytest.raises(RulesetError):
        Engine({"r": rule}, {})


@pytest.mark.parametrize("rule_id", ["__open", "__mine", "", "has space", 'q"uote', 7])
def test_reserved_or_unsafe_rule_ids_are_refused(rule_id: Any) -> None:
    with pytest.raises(RulesetError):
        Engine({rule_id: {"all": [{"m": {"type": "opinion"}}]}}, {})


def test_derive_for_unknown_rule_is_refused() -> None:
    with pytest.raises(RulesetError, match="unknown rules"):
        Engine({"r": {"all": [{"m": {"type": "opinion"}}]}}, {"other": derive_conflict})


# ------------------------------------------------------------------ hazard 10


# Hazard 10: concurrent calls into durable return before their own actions
# ran; one lock per Engine serialises whole sessions.
def test_concurrent_runs_equal_sequential_runs() -> None:
    eng = conflict_engine()
    alphabet = "abcd"

    def case(thread: int, i: int) -> list[Fact]:
        n = 2 + (thread + i) % 4
        return [opinion(k, alphabet[(thread * 7 + i * 3 + k * k) % 4]) for k in range(n)]

    threads, runs = 8, 150
    expected = {(t, i): eng.run(case(t, i)) for t in range(threads) for i in range(runs)}
    got: dict[tuple[int, int], SessionResult] = {}
    errors: list[BaseException] = []
    barrier = threading.Barrier(threads)

    def worker(t: int) -> None:
        try:
            barrier.wait()
            for i in range(runs):
                got[(t, i)] = eng.run(case(t, i))
        except BaseException as exc:
            errors.append(exc)

    pool = [threading.Thread(target=worker, args=(t,)) for t in range(threads)]
    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # interleave threads as often as possible
    try:
        for thread in pool:
            thread.start()
        for thread in pool:
            thread.join()
    finally:
        sys.setswitchinterval(switch)
    assert errors == []
    assert got == expected


# ------------------------------------------------------------------ hazard 11


class _Py312Datetime(datetime.datetime):
    """datetime whose utcfromtimestamp warns as it does on Python 3.12+."""

    @classmethod
    def utcfromtimestamp(cls, t: float) -> datetime.datetime:  # type: ignore[override]
        warnings.warn("datetime.datetime.utcfromtimestamp() is deprecated", DeprecationWarning, stacklevel=2)
        return datetime.datetime.fromtimestamp(t, datetime.UTC).replace(tzinfo=None)


@pytest.fixture
def py312_datetime(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make durable.engine see the 3.12+ deprecation even on older Pythons."""
    monkeypatch.setattr(durable_engine, "datetime", types.SimpleNamespace(datetime=_Py312Datetime))


# Hazard 11: durable's _unix_now calls the deprecated utcfromtimestamp; with
# warnings as errors every action would break.  The adapter replaces it.
@pytest.mark.usefixtures("py312_datetime")
def test_unix_now_does_not_warn() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        first = durable_engine._unix_now()
        second = durable_engine._unix_now()
    assert 0.0 <= second - first < 1.0


@pytest.mark.usefixtures("py312_datetime")
def test_run_works_with_warnings_as_errors() -> None:
    eng = conflict_engine()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = eng.run([opinion(0, "a"), opinion(1, "b")])
    assert [f.rule_id for f in result.firings] == ["conflict", "flag"]


# ------------------------------------------------------------------ hazard 13


# Hazard 13: pri is stored unsigned (a negative pri would fire last).
@pytest.mark.parametrize("pri", [-1, True, 1.5, "1", 2**31])
def test_invalid_pri_is_refused(pri: Any) -> None:
    with pytest.raises(RulesetError, match="pri"):
        Engine({"r": {"all": [{"m": {"type": "opinion"}}], "pri": pri}}, {})


def test_lower_pri_fires_first() -> None:
    for low, high in (("first", "second"), ("second", "first")):
        eng = Engine(
            {
                low: {"all": [{"m": {"type": "opinion"}}], "pri": 0},
                high: {"all": [{"m": {"type": "opinion"}}], "pri": 7},
            },
            {},
        )
        assert [f.rule_id for f in eng.run([opinion(0, "a")]).firings] == [low, high]


# ------------------------------------------------------------------ hazard 14


# Hazard 14: register_rulesets mutates what it is given; the caller's rules
# stay untouched, and Engines with equal names and rules coexist.
def test_rules_are_not_mutated_and_engines_coexist() -> None:
    rules = {"conflict": copy.deepcopy(CONFLICT_RULE), "flag": copy.deepcopy(FLAG_RULE)}
    snapshot = copy.deepcopy(rules)
    one = Engine(rules, {"conflict": derive_conflict}, name="rules")
    two = Engine(rules, {}, name="rules")
    assert rules == snapshot
    assert one.name != two.name
    assert one.run([opinion(0, "a"), opinion(1, "b")]).derived
    assert two.run([opinion(0, "a"), opinion(1, "b")]).derived == ()


@pytest.mark.parametrize("name", ["cases$state", "x$flow", "", "a b"])
def test_unsafe_engine_names_are_refused(name: str) -> None:  # hazard A6
    with pytest.raises(RulesetError, match="name"):
        conflict_engine(name=name)


# ------------------------------------------------------------------ facts (A2-A4)


# Hazards A2-A4: values durable cannot parse (exponent floats segfault the C
# parser), too many keys (segfault) and keys durable treats specially (id,
# sid) are refused, naming the fid and key but never the value.
@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"level": 1e-5}, "'level'"),
        ({"level": 1.5e16}, "'level'"),
        ({"level": float("nan")}, "'level'"),
        ({"levels": [0.5, 2e-7]}, "'levels'"),
        ({"level": 2**63}, "'level'"),
        ({"nested": {"a": 1}}, "'nested'"),
        ({"level": None}, "'level'"),
        ({"levels": [1, None]}, "'levels'"),
        ({"id": 7}, "'id'"),
        ({"sid": "s"}, "'sid'"),
        ({"$s": 1}, "'\\$s'"),
        ({f"k{i}": i for i in range(250)}, "more than"),
        ({"note": "x" * (engine_module.MAX_STRING_LENGTH + 1)}, "'note'"),
    ],
)
def test_unsafe_fact_contents_are_refused(extra: dict[str, Any], message: str) -> None:
    fact = {"type": "opinion", "fid": "opinion[0]", "secret": SECRET, **extra}
    with pytest.raises(EngineError, match=message) as info:
        conflict_engine().run([fact])
    assert "opinion[0]" in str(info.value)
    assert_no_secret(info.value)


def test_safe_edge_values_are_accepted() -> None:
    eng = Engine({"r": {"all": [{"m": {"type": "lab"}}]}}, {})
    fact = {
        "type": "lab",
        "fid": "lab",
        "small": 0.0001,
        "big": 9999999999999998.0,
        "zero": -0.0,
        "neg": -(2**63),
        "flags": [True, 'ü"\\\n'],
    }
    assert eng.run([fact]).facts == (fact,)


@pytest.mark.parametrize(
    "fact",
    [
        {"type": "opinion"},
        {"fid": "x"},
        {"type": "__never__", "fid": "x"},
        {"type": "opinion", "fid": "__session__"},
        {"type": "opinion", "fid": "conflict#1"},
        ["type", "opinion"],
    ],
)
def test_malformed_or_reserved_input_facts_are_refused(fact: Any) -> None:
    with pytest.raises(EngineError):
        conflict_engine().run([fact])


# Hazard A2: exponent constants in patterns make durable's parser fail.
def test_exponent_constant_in_pattern_is_refused() -> None:
    pattern = {"$and": [{"type": "lab"}, {"$lt": {"value": 1e-5}}]}
    with pytest.raises(RulesetError, match="constant"):
        Engine({"r": {"all": [{"m": pattern}]}}, {})


# Documents hazard A2: raw durable segfaults on a float written as 1e-05.
def test_documents_raw_durable_crashes_on_exponent_floats() -> None:
    proc = run_python(
        RAW_HOST,
        """
        host.register_rulesets({"t": {"r": {"all": [{"a": {"type": "x"}}], "run": "r"}}})
        host.assert_facts("t", [{"type": "x", "v": 1e-5, "sid": "s"}])
        print("survived", flush=True)
        """
    )
    assert "survived" not in proc.stdout
    assert proc.returncode != 0


# ------------------------------------------------------------------ joins (A7-A9)


# Hazard A7: when the last join condition of an "$and" is false, durable scans
# past the end of its expression array (uninitialised memory) and, depending on
# the heap, segfaults; the adapter appends an always-true join.  Subprocess:
# without the guard this crashed within about ten engines.
def test_false_last_join_condition_does_not_crash() -> None:
    proc = run_python(
        """
        from secondopinion.engine import Engine
        rule = {"all": [
            {"a": {"type": "opinion"}},
            {"b": {"$and": [{"type": "opinion"}, {"$gt": {"index": {"a": "index"}}},
                            {"$neq": {"dx": {"a": "dx"}}}]}},
        ]}
        same = [{"type": "opinion", "fid": f"o{i}", "index": i, "dx": "a"} for i in range(3)]
        for _ in range(60):
            engine = Engine({"conflict": rule}, {})
            for _ in range(5):
                assert engine.run(same).firings == ()
        print("ok")
        """
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "ok"


def pairs_of(result: SessionResult, rule_id: str) -> list[tuple[str, str]]:
    return sorted((f.matched["a"], f.matched["b"]) for f in result.firings if f.rule_id == rule_id)


# Hazard A8: durable ignores join conditions that follow a nested "$or"/"$and"
# (here the ordering "$gt" would be dropped and every ordered pair would fire);
# the adapter expands "$or" into rule variants and flattens "$and".
@pytest.mark.parametrize(
    "nested",
    [
        {"$or": [{"dx": "x"}, {"dx": "y"}]},
        {"$and": [{"$or": [{"dx": "x"}, {"dx": "y"}]}]},
        {"$or": [{"dx": "x"}, {}]},
    ],
)
def test_join_after_nested_group_is_evaluated(nested: dict[str, Any]) -> None:
    rule = {
        "all": [
            {"a": {"type": "opinion"}},
            {"b": {"$and": [{"type": "opinion"}, nested, {"$gt": {"index": {"a": "index"}}}]}},
        ]
    }
    result = Engine({"r": rule}, {}).run([opinion(i, "x") for i in range(3)])
    assert pairs_of(result, "r") == [
        ("opinion[0]", "opinion[1]"),
        ("opinion[0]", "opinion[2]"),
        ("opinion[1]", "opinion[2]"),
    ]


# Hazard A10: durable activates a rule once per satisfied alternative of a
# join-free "$or" (opinion[1] and opinion[6] below would fire twice); a rule
# fires and derives at most once per tuple of matched facts.
def test_fact_satisfying_several_alternatives_fires_once() -> None:
    any_of = {"$or": [{"dx": "x"}, {"index": 1}, {"$gt": {"index": 5}}]}
    rule = {"all": [{"o": {"$and": [{"type": "opinion"}, any_of]}}]}
    result = Engine({"r": rule}, {"r": lambda b: {"type": "hit", "of": b["o"]["fid"]}}).run(
        [opinion(0, "x"), opinion(1, "x"), opinion(2, "z"), opinion(6, "x")]
    )
    assert sorted(f.matched["o"] for f in result.firings) == ["opinion[0]", "opinion[1]", "opinion[6]"]
    assert [len(d.derivations) for d in result.derived] == [1, 1, 1]


# Hazards A8/A10: a "$or" of joins becomes rule variants; a tuple satisfying
# several of them fires once, under the rule's own id.
def test_pair_satisfying_several_join_alternatives_fires_once() -> None:
    differs = {"$or": [{"$neq": {"dx": {"a": "dx"}}}, {"$neq": {"note": {"a": "note"}}}]}
    rule = {
        "all": [
            {"a": {"type": "opinion"}},
            {"b": {"$and": [{"type": "opinion"}, {"$gt": {"index": {"a": "index"}}}, differs]}},
        ]
    }
    facts = [
        {**opinion(0, "x"), "note": "n"},
        {**opinion(1, "y"), "note": "m"},  # differs from opinion[0] in both
        {**opinion(2, "x"), "note": "n"},  # differs from opinion[1] in both, from [0] in none
    ]
    result = Engine({"r": rule}, {"r": derive_conflict}).run(facts)
    assert pairs_of(result, "r") == [("opinion[0]", "opinion[1]"), ("opinion[1]", "opinion[2]")]
    assert {f.rule_id for f in result.firings} == {"r"}
    assert [len(d.derivations) for d in result.derived] == [1, 1]


def test_join_alternative_demanding_another_type_is_dropped() -> None:
    other_type = {"$and": [{"type": "conflict"}, {"$gt": {"index": {"a": "index"}}}]}
    rule = {
        "all": [
            {"a": {"type": "opinion"}},
            {"b": {"$and": [{"type": "opinion"}, {"$or": [other_type, {"$lt": {"index": {"a": "index"}}}]}]}},
        ]
    }
    result = Engine({"r": rule}, {}).run([opinion(0, "x"), opinion(1, "y")])
    assert pairs_of(result, "r") == [("opinion[1]", "opinion[0]")]
    never = {"$or": [other_type, {"$and": [{"type": "flag"}, {"$lt": {"index": {"a": "index"}}}]}]}
    with pytest.raises(RulesetError, match="never match"):
        Engine({"r": {"all": [{"a": {"type": "opinion"}}, {"b": {"$and": [{"type": "opinion"}, never]}}]}}, {})


def test_too_many_or_variants_are_refused() -> None:
    many = {"$or": [{"$neq": {"index": {"a": f"k{i}"}}} for i in range(12)]}
    rule = {"all": [{"a": {"type": "opinion"}}, {"b": {"$and": [{"type": "opinion"}, many, many]}}]}
    with pytest.raises(RulesetError, match="variants"):
        Engine({"r": rule}, {})


# The CONFLICT-JOIN shape of the shipped rulebook: a join inside an "$or",
# over attributes that may be absent.  Hazard A9: durable aborts the whole call
# (error 311) when a join meets a missing attribute; the adapter requires both
# fields ($ex), so a missing attribute makes that comparison false, as
# compiler.matches does.
CONFLICT_ANY_RULE: dict[str, Any] = {
    "all": [
        {"a": {"type": "opinion"}},
        {
            "b": {
                "$and": [
                    {"type": "opinion"},
                    {"$gt": {"index": {"a": "index"}}},
                    {"$or": [{"$neq": {"diagnosis": {"a": "diagnosis"}}}, {"$neq": {"treatment": {"a": "treatment"}}}]},
                ]
            }
        },
    ]
}


def conflict_oracle(opinions: list[Fact]) -> list[tuple[str, str]]:
    def differs(a: Fact, b: Fact, field: str) -> bool:
        return field in a and field in b and a[field] != b[field]

    return sorted(
        (a["fid"], b["fid"])
        for a in opinions
        for b in opinions
        if b["index"] > a["index"] and (differs(a, b, "diagnosis") or differs(a, b, "treatment"))
    )


@settings(max_examples=80, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from([None, "hernia", "strain"]), st.sampled_from([None, "surgery", "rest"])),
        max_size=6,
    )
)
def test_join_inside_or_with_absent_attributes_matches_an_oracle(pairs: list[tuple[str | None, str | None]]) -> None:
    opinions: list[Fact] = []
    for index, (diagnosis, treatment) in enumerate(pairs):
        fact: Fact = {"type": "opinion", "fid": f"opinion[{index}]", "index": index}
        if diagnosis is not None:
            fact["diagnosis"] = diagnosis
        if treatment is not None:
            fact["treatment"] = treatment
        opinions.append(fact)
    derive = {"conflict": lambda b: {"type": "conflict", "pair": [b["a"]["fid"], b["b"]["fid"]]}}
    result = Engine({"conflict": CONFLICT_ANY_RULE}, derive).run(opinions)
    expected = conflict_oracle(opinions)
    assert pairs_of(result, "conflict") == expected
    assert len(result.derived) == len(expected)
    assert all(len(d.derivations) == 1 for d in result.derived)


# Documents hazard A9: raw durable aborts the call when a join meets an absent attribute.
def test_documents_raw_durable_aborts_on_join_with_absent_attribute() -> None:
    proc = run_python(
        RAW_HOST,
        """
        b = {"$and": [{"type": "o"}, {"$neq": {"dx": {"a": "dx"}}}, {"sid": {"a": "sid"}}]}
        host.register_rulesets({"t": {
            "r": {"all": [{"a": {"type": "o"}}, {"b": b}], "run": "r"},
            "open": {"all": [{"s": {"type": "s"}}], "run": "r"},
        }})
        host.assert_fact("t", {"type": "s", "sid": "s"})
        try:
            host.assert_facts("t", [{"type": "o", "i": 0, "dx": "x", "sid": "s"}, {"type": "o", "i": 1, "sid": "s"}])
        except Exception as exc:
            print(exc)
        """
    )
    assert proc.stdout.strip() == "Could not assert facts, error code: 311", proc.stderr


# Hazard A9: a list compared in a join also aborts durable (error 312).
def test_list_in_a_join_field_is_refused() -> None:
    with pytest.raises(EngineError, match="'dx' is used in a join"):
        conflict_engine().run([opinion(0, "a"), {**opinion(1, "b"), "dx": ["b", "c"]}])
    # A derived fact in a join is refused before its values are looked at (hazard A11).
    derive = {"conflict": lambda b: {"type": "conflict", "left": ["x"]}}
    joined = {"all": [{"c": {"type": "conflict"}}, {"d": {"$and": [{"type": "conflict"}, {"left": {"c": "left"}}]}}]}
    eng = Engine({"conflict": CONFLICT_RULE, "pair": joined}, derive)
    with pytest.raises(EngineError, match="hazard A11"):
        eng.run([opinion(0, "a"), opinion(1, "b")])


# Hazard A11: durable-rules 2.0.28 misses matches of a join that reads a fact derived during
# the session (the fact holding the join, the one it refers to, or the rule's first fact,
# which hazard A7's sid comparison reads), and not the same ones from run to run: two
# opinions and one derived conflict matched in about two runs of three. A rule set whose
# rules derive such a fact is stopped at the first such derivation, never answered wrongly.
_A11_RULES: dict[str, dict[str, Any]] = {
    "holds": {"all": [{"o": {"type": "opinion"}}, {"c": {"$and": [{"type": "conflict"}, {"right": {"o": "fid"}}]}}]},
    "referred": {"all": [{"c": {"type": "conflict"}}, {"o": {"$and": [{"type": "opinion"}, {"fid": {"c": "right"}}]}}]},
    "first": {
        "all": [
            {"c": {"type": "conflict"}},
            {"a": {"type": "opinion"}},
            {"b": {"$and": [{"type": "opinion"}, {"$gt": {"index": {"a": "index"}}}]}},
        ]
    },
}


@pytest.mark.parametrize("shape", sorted(_A11_RULES))
def test_a_join_reading_a_derived_fact_stops_the_run(shape: str) -> None:
    eng = Engine({"conflict": CONFLICT_RULE, "probe": _A11_RULES[shape]}, {"conflict": derive_conflict})
    with pytest.raises(EngineError, match=r"rule 'conflict' derived a 'conflict' fact.*hazard A11"):
        eng.run([opinion(0, "a"), opinion(1, "b")])
    # The engine stays usable: a case that derives no conflict is answered.
    assert eng.run([opinion(0, "a"), opinion(1, "a")]).firings == ()


def test_a_join_on_input_facts_beside_a_later_derived_fact_is_reliable() -> None:
    later = {
        "all": [
            {"a": {"type": "opinion"}},
            {"b": {"$and": [{"type": "opinion"}, {"$gt": {"index": {"a": "index"}}}]}},
            {"c": {"type": "conflict"}},
        ]
    }
    eng = Engine({"conflict": CONFLICT_RULE, "later": later}, {"conflict": derive_conflict})
    for _ in range(30):
        fired = [f.rule_id for f in eng.run([opinion(0, "a"), opinion(1, "b")]).firings]
        assert sorted(fired) == ["conflict", "later"]
