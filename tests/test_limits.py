"""Hardening, round two (issue 16): bounded work for any input, and rules that load must work.

* Cases: at most MAX_OPINIONS opinions, a hand-built Case is checked like any input, a key
  repeated in one JSON object is refused with its path, one byte-order-mark rule for every
  reader, unknown key names are capped and sanitised.
* The engine: every run has a budget of firings and of time, and a run over it stops promptly.
* Rule packs: what durable-rules would freeze on or fail on later is refused at load time,
  with file, line and rule id (secondopinion.limits).
"""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

import secondopinion
from secondopinion import Advisor, CaseError, Rulebook, RuleFileError, load_case
from secondopinion.case import MAX_OPINIONS, Case, Diagnosis, Opinion, Treatment, parse_json
from secondopinion.engine import Engine, EngineBudgetError
from secondopinion.limits import (
    MAX_CONDITIONS_PER_FACT_TYPE,
    MAX_LIST_VALUES,
    MAX_PATTERNS_PER_RULE,
    MAX_RANGE_TESTS_PER_FACT_TYPE,
    MAX_RULE_FILE_BYTES,
    MAX_RULES_PER_PATTERN,
)
from secondopinion.schema import case_schema

# --------------------------------------------------------------------------- cases


def _opinions(count: int) -> list[dict[str, Any]]:
    return [
        {"diagnosis": "a" if i % 2 else "b", "treatment": "surgery" if i % 2 else "medication"} for i in range(count)
    ]


def test_a_case_may_hold_max_opinions_and_no_more() -> None:
    assert len(load_case({"opinions": _opinions(MAX_OPINIONS)}).opinions) == MAX_OPINIONS
    with pytest.raises(CaseError) as info:
        load_case({"opinions": _opinions(MAX_OPINIONS + 1)})
    assert info.value.problems == (f"invalid value: at most {MAX_OPINIONS} opinions @ $.opinions",)
    assert case_schema()["properties"]["opinions"]["maxItems"] == MAX_OPINIONS


def test_three_hundred_alternating_opinions_are_refused_before_the_engine_runs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Before the limit: 10 to 14 s of engine work under the engine's lock, then an EngineError.
    runs: list[int] = []
    engine = secondopinion.default_advisor().engine
    original = engine.run
    monkeypatch.setattr(engine, "run", lambda facts: runs.append(len(facts)) or original(facts))
    with pytest.raises(CaseError, match="at most 20 opinions"):
        secondopinion.advise(json.dumps({"opinions": _opinions(300)}))
    assert runs == []


def test_the_largest_case_is_advised_on() -> None:
    advice = secondopinion.advise({"diagnosis": {"seriousness": "serious"}, "opinions": _opinions(MAX_OPINIONS)})
    assert advice.recommendations


def test_a_hand_built_case_with_an_invalid_enum_is_a_case_error_naming_the_path() -> None:
    bad = Case(diagnosis=Diagnosis(seriousness="dire"))  # type: ignore[arg-type]
    with pytest.raises(CaseError) as info:
        secondopinion.advise(bad)
    assert info.value.problems[0].endswith("@ $.diagnosis.seriousness")
    assert "dire" not in str(info.value)
    bad_opinion = Case(opinions=(Opinion(specialty="wizard"),))  # type: ignore[arg-type]
    with pytest.raises(CaseError, match=r"\$\.opinions\[0\]\.specialty"):
        load_case(bad_opinion)


def test_a_hand_built_case_with_plain_strings_is_normalised_and_advised_like_json() -> None:
    plain = Case(diagnosis=Diagnosis(seriousness="serious"), treatment=Treatment(kind="surgery"))  # type: ignore[arg-type]
    checked = load_case(plain)
    assert checked == load_case({"diagnosis": {"seriousness": "serious"}, "treatment": {"kind": "surgery"}})
    assert secondopinion.advise(plain) == secondopinion.advise(checked)
    good = load_case({"opinions": [{"specialty": "surgeon"}]})
    assert load_case(good) is good  # a well-formed Case is used as it is
    many = Case(opinions=tuple(Opinion() for _ in range(MAX_OPINIONS + 1)))
    with pytest.raises(CaseError, match="at most"):
        load_case(many)


def test_a_key_repeated_in_one_object_is_refused_with_its_path() -> None:
    text = (
        '{"diagnosis": {"seriousness": "minor", "seriousness": "serious"},'
        ' "opinions": [{"mode": "remote", "mode": "x"}]}'
    )
    with pytest.raises(CaseError) as info:
        load_case(text)
    assert info.value.problems == (
        "duplicate key(s): mode @ $.opinions[0]",
        "duplicate key(s): seriousness @ $.diagnosis",
    )
    assert "serious" not in " ".join(info.value.problems).replace("seriousness", "")


def test_one_byte_order_mark_rule_for_text_bytes_and_batch(tmp_path: Path) -> None:
    case = {"diagnosis": {"seriousness": "serious"}}
    plain = secondopinion.advise(case)
    assert secondopinion.advise("\ufeff" + json.dumps(case)) == plain
    assert secondopinion.advise(b"\xef\xbb\xbf" + json.dumps(case).encode()) == plain
    assert parse_json("\ufeff{}") == {}
    with pytest.raises(CaseError):  # only at the very start
        parse_json('{"a": 1}\ufeff')
    from typer.testing import CliRunner

    from secondopinion.cli import app

    path = tmp_path / "bom.json"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(case).encode())
    result = CliRunner().invoke(app, ["advise", str(path), "--format", "json"])
    assert result.exit_code == 0, result.output
    source = tmp_path / "in.jsonl"
    source.write_bytes(b"\xef\xbb\xbf" + json.dumps(case).encode() + b"\n" + b'{"a": 1, "a": 2}\n')
    result = CliRunner().invoke(app, ["batch", str(source), "--out", str(tmp_path / "out.jsonl")])
    assert result.exit_code == 1
    errors = [json.loads(line) for line in (tmp_path / "out.errors.jsonl").read_text().splitlines()]
    assert [(e["line"], e["problems"]) for e in errors] == [(2, ["duplicate key(s): a @ $"])]


def test_unknown_key_names_are_capped_and_sanitised() -> None:
    keys = {f"k{i}\u0000\u202e<script>" + "x" * 100: 1 for i in range(50)}
    with pytest.raises(CaseError) as info:
        load_case(keys)
    (problem,) = info.value.problems
    assert "and 40 more" in problem
    assert "\u0000" not in problem and "\u202e" not in problem and "<" not in problem
    assert len(problem) < 600


# --------------------------------------------------------------------------- the engine's budget


def _growing_engine(**budget: Any) -> Engine:
    counter = itertools.count()
    return Engine(
        {"grow": {"all": [{"a": {"type": "n"}}, {"b": {"type": "n"}}]}, "plain": {"all": [{"m": {"type": "m"}}]}},
        {"grow": lambda _m: {"type": "n", "v": next(counter)}},
        **budget,
    )


_SEEDS = [{"type": "n", "fid": "n0", "v": -1}, {"type": "n", "fid": "n1", "v": -2}]


def test_a_run_over_its_firing_budget_ends_with_a_budget_error_and_the_engine_still_works() -> None:
    engine = _growing_engine(max_firings=300, max_seconds=600)
    for _ in range(3):
        with pytest.raises(EngineBudgetError, match="more than 300 rule firings"):
            engine.run(_SEEDS)
        assert [f.rule_id for f in engine.run([{"type": "m", "fid": "m0"}]).firings] == ["plain"]


def test_a_run_over_its_budget_stops_durable_at_once_instead_of_draining_its_queue() -> None:
    engine = _growing_engine(max_firings=300, max_seconds=600)
    calls = {"within": 0, "after": 0}
    fire = engine._fire

    def counting(*args: Any) -> None:
        ctx = engine._ctx
        calls["after" if ctx is not None and ctx.failure is not None else "within"] += 1
        fire(*args)

    engine._fire = counting  # type: ignore[method-assign]
    with pytest.raises(EngineBudgetError):
        engine.run(_SEEDS)
    # Without stopping durable's loop, 90,601 queued actions still ran after the budget was spent
    # (63 s past a 5 s time budget); now none do.
    assert calls == {"within": 301, "after": 0}


def test_a_run_over_its_time_budget_ends_with_a_budget_error() -> None:
    engine = _growing_engine(max_firings=10**9, max_seconds=0.5)
    with pytest.raises(EngineBudgetError, match=r"more than 0\.5 s"):
        engine.run(_SEEDS)
    assert [f.rule_id for f in engine.run([{"type": "m", "fid": "m0"}]).firings] == ["plain"]


@pytest.mark.parametrize("budget", [{"max_firings": 0}, {"max_seconds": 0}, {"max_seconds": True}])
def test_a_budget_must_be_positive(budget: dict[str, Any]) -> None:
    with pytest.raises(secondopinion.EngineError):
        _growing_engine(**budget)


# --------------------------------------------------------------------------- rule packs

_HEAD = {
    "topic": "limits_test",
    "documents": [{"file": "limits-notes.md", "title": "Notes", "sections": ["Rules"]}],
    "guidance": [{"id": "LM01", "summary": "A made-up guidance item.", "sources": ["limits-notes.md"]}],
}


def _rule(rid: str, when: list[dict[str, Any]], then: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "id": rid,
        "title": "t",
        "status": "draft",
        "version": 1,
        "guidance": ["LM01"],
        "sources": [{"file": "limits-notes.md", "section": "Rules"}],
        "last_reviewed": "2026-11-22",
        "rationale": "r",
        "when": when,
        "then": then or {"recommend": {"kind": "seek_second_opinion", "priority": "high", "title": "t", "detail": "d"}},
    }


def _pack(tmp_path: Path, rules: list[dict[str, Any]], **extra: Any) -> Path:
    path = tmp_path / "pack.yaml"
    path.write_text(json.dumps({**_HEAD, **extra, "rules": rules}, indent=1), encoding="utf-8")
    return path


def _refused(path: Path) -> RuleFileError:
    with pytest.raises(RuleFileError) as info:
        Rulebook.load(path)
    return info.value


def _line_of(path: Path, needle: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if needle in line)


def test_a_long_in_list_is_refused_at_load_time_with_file_line_and_rule_id(tmp_path: Path) -> None:
    values = list(range(MAX_LIST_VALUES + 1))
    path = _pack(
        tmp_path, [_rule("LM-LIST", [{"bind": "t", "fact": "treatment", "where": {"days_to_decide": values}}])]
    )
    error = _refused(path)
    (problem,) = error.problems
    assert (problem.file.endswith("pack.yaml"), problem.rule_id) == (True, "LM-LIST")
    assert problem.line == _line_of(path, '"id": "LM-LIST"') - 1  # the line that opens the rule
    assert f"at most {MAX_LIST_VALUES}" in problem.message
    ok = _pack(
        tmp_path, [_rule("LM-LIST", [{"bind": "t", "fact": "treatment", "where": {"days_to_decide": values[:-1]}}])]
    )
    assert Rulebook.load(ok).rule("LM-LIST")


def test_too_many_tests_on_one_fact_type_are_refused(tmp_path: Path) -> None:
    rules = [
        _rule(f"LM-T{i}", [{"bind": "o", "fact": "opinion", "where": {"index": i}}])
        for i in range(MAX_CONDITIONS_PER_FACT_TYPE + 1)
    ]
    error = _refused(_pack(tmp_path, rules))
    assert any("different ways" in p.message and p.rule_id and p.rule_id.startswith("LM-T") for p in error.problems)


def test_too_many_range_tests_on_one_fact_type_are_refused(tmp_path: Path) -> None:
    rules = [
        _rule(f"LM-R{i}", [{"bind": "t", "fact": "treatment", "where": {"days_to_decide": {"gt": i}}}])
        for i in range(MAX_RANGE_TESTS_PER_FACT_TYPE + 1)
    ]
    error = _refused(_pack(tmp_path, rules))
    assert any("other than equality" in p.message for p in error.problems)
    assert Rulebook.load(_pack(tmp_path, rules[:10]))


def test_too_many_rules_sharing_one_pattern_are_refused(tmp_path: Path) -> None:
    rules = [
        _rule(f"LM-S{i}", [{"bind": "d", "fact": "diagnosis", "where": {"seriousness": "serious"}}])
        for i in range(MAX_RULES_PER_PATTERN + 1)
    ]
    error = _refused(_pack(tmp_path, rules))
    assert [p.rule_id for p in error.problems] == [f"LM-S{MAX_RULES_PER_PATTERN}"]


def test_more_joined_patterns_than_the_engine_holds_are_refused(tmp_path: Path) -> None:
    when = [{"bind": "a0", "fact": "opinion"}] + [
        {"bind": f"a{i}", "fact": "opinion", "where": {"index": {"gt": {"ref": f"a{i - 1}.index"}}}}
        for i in range(1, MAX_PATTERNS_PER_RULE + 1)
    ]
    error = _refused(_pack(tmp_path, [_rule("LM-JOIN", when)]))
    assert [(p.rule_id, "joins at most 16" in p.message) for p in error.problems] == [("LM-JOIN", True)]
    advisor = Advisor(Rulebook.load(_pack(tmp_path, [_rule("LM-JOIN", when[:-1])])), include_drafts=True)
    trace = advisor.trace({"opinions": [{} for _ in range(MAX_PATTERNS_PER_RULE)]})
    assert "LM-JOIN" in trace.fired  # 16 joined opinions do match


def test_two_derived_facts_of_one_type_in_one_rule_are_refused(tmp_path: Path) -> None:
    when = [
        {"bind": "a", "fact": "second_opinion_indicated"},
        {"bind": "b", "fact": "second_opinion_indicated", "where": {"reason": "high_stakes"}},
    ]
    error = _refused(_pack(tmp_path, [_rule("LM-DD", when)]))
    assert [p.rule_id for p in error.problems] == ["LM-DD"]
    assert "two 'second_opinion_indicated' facts" in error.problems[0].message


def test_a_text_value_bound_into_a_number_field_is_refused(tmp_path: Path) -> None:
    then = {
        "recommend": {
            "kind": "set_deadline",
            "priority": "high",
            "title": "t",
            "detail": "d",
            "fields": {"decide_within_days": {"ref": "d.cancer_type"}},
        }
    }
    path = _pack(tmp_path, [_rule("LM-FIELD", [{"bind": "d", "fact": "diagnosis"}], then)])
    error = _refused(path)
    assert [p.rule_id for p in error.problems] == ["LM-FIELD"]
    assert "cannot take diagnosis.cancer_type" in error.problems[0].message
    assert error.problems[0].line == _line_of(path, '"decide_within_days"')


def test_a_rule_file_over_the_size_limit_is_refused_unread(tmp_path: Path) -> None:
    path = tmp_path / "huge.yaml"
    with path.open("wb") as out:
        out.write(b"# " + b"x" * MAX_RULE_FILE_BYTES + b"\n")
    error = _refused(path)
    assert "larger than" in error.problems[0].message
    assert error.problems[0].file.endswith("huge.yaml")


def test_a_long_guidance_id_is_refused_and_the_id_pattern_cannot_backtrack(tmp_path: Path) -> None:
    from secondopinion.rulebook import rules_schema

    guidance_id = rules_schema()["$defs"]["guidance_id"]
    # The old pattern ^[A-Z][A-Z0-9]*[0-9]+$ took 8.6 to 25 s on one 40,000-character id: two
    # unbounded repeats over the same characters. Only bounded repeats are left.
    assert "*" not in guidance_id["pattern"] and "+" not in guidance_id["pattern"]
    assert guidance_id["maxLength"] == 40
    rule = _rule("LM-G", [{"bind": "d", "fact": "diagnosis"}])
    rule["guidance"] = ["G" + "1" * 40_000 + "x"]
    error = _refused(_pack(tmp_path, [rule]))
    assert {p.rule_id for p in error.problems} == {"LM-G"}  # too long, and not matching the pattern


_WITH_PACKS = textwrap.dedent(
    """
    import sys
    from secondopinion import Advisor, RuleFileError
    try:
        Advisor.with_packs(sys.argv[1], include_drafts=True)
    except RuleFileError as exc:
        print("RuleFileError", exc.file is not None, exc.line is not None, exc.rule_id)
    """
)


def test_a_list_that_froze_durable_is_refused_in_a_subprocess_with_a_timeout(tmp_path: Path) -> None:
    # 497 values froze durable inside create_ruleset (holding the GIL): run it where a hang cannot block the suite.
    path = _pack(
        tmp_path,
        [_rule("LM-FREEZE", [{"bind": "t", "fact": "treatment", "where": {"days_to_decide": list(range(600))}}])],
    )
    result = subprocess.run(
        [sys.executable, "-c", _WITH_PACKS, str(path)], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.stdout.strip() == "RuleFileError True True LM-FREEZE", result.stderr


# --------------------------------------------------------------------------- errors reach the user as one line


def _variant_bomb(tmp_path: Path) -> Path:
    """A rule the checker accepts but the engine refuses: 2**8 join variants (more than MAX_VARIANTS)."""
    when: list[dict[str, Any]] = [{"bind": "a", "fact": "opinion"}]
    for i in range(8):
        alternatives = [{"diagnosis": {"ref": "a.diagnosis"}}, {"institution": {"ref": "a.institution"}}]
        when.append({"bind": f"b{i}", "fact": "opinion", "where": {"any": alternatives}})
    return _pack(tmp_path, [_rule("LM-VARIANTS", when)])


def test_with_packs_raises_rule_file_error_with_file_and_line_when_the_engine_refuses(tmp_path: Path) -> None:
    path = _variant_bomb(tmp_path)
    assert Rulebook.load(path)  # the checker accepts it
    with pytest.raises(RuleFileError) as info:
        Advisor.with_packs(path, include_drafts=True)
    (problem,) = info.value.problems
    assert (problem.rule_id, problem.line) == ("LM-VARIANTS", _line_of(path, '"id": "LM-VARIANTS"') - 1)
    assert problem.file.endswith("pack.yaml") and "variants" in problem.message


def test_big_numbers_in_rules_are_refused_at_load_time(tmp_path: Path) -> None:
    then = {
        "recommend": {
            "kind": "set_deadline",
            "priority": "high",
            "title": "t",
            "detail": "d",
            "fields": {"decide_within_days": {"ref": "t.days_to_decide", "add": 10**19}},
        }
    }
    when = [{"bind": "t", "fact": "treatment", "where": {"days_to_decide": {"gt": 10**30}}}]
    error = _refused(_pack(tmp_path, [_rule("LM-BIG", when, then)]))
    assert [p.rule_id for p in error.problems] == ["LM-BIG"]


def _cli(*args: str) -> Any:
    from typer.testing import CliRunner

    from secondopinion.cli import app

    return CliRunner().invoke(app, list(args))


def test_check_on_a_pack_the_engine_refuses_is_one_line_and_exit_1(tmp_path: Path) -> None:
    result = _cli("check", "--rules", str(_variant_bomb(tmp_path)))
    assert result.exit_code == 1
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output and "LM-VARIANTS" in result.output


@pytest.mark.parametrize(
    "error",
    [
        secondopinion.EngineBudgetError("the rules went over the engine's budget"),
        secondopinion.ActionError("SOME-RULE"),
        MemoryError(),
    ],
)
def test_advise_turns_engine_and_memory_errors_into_one_line(
    error: BaseException, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def boom(self: Advisor, case: Any) -> Any:
        raise error

    monkeypatch.setattr(Advisor, "advise", boom)
    path = tmp_path / "case.json"
    path.write_text("{}", encoding="utf-8")
    result = _cli("advise", str(path))
    assert result.exit_code == 1
    assert isinstance(result.exception, SystemExit), result.exception
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")


def test_advise_on_an_endless_file_stops_at_the_size_limit() -> None:
    result = _cli("advise", "/dev/zero")
    assert result.exit_code == 1
    assert isinstance(result.exception, SystemExit)
    assert "larger than" in result.output


def test_a_dropped_advisor_gives_its_engine_memory_back() -> None:
    import gc

    import psutil

    book = secondopinion.default_advisor().rulebook
    process = psutil.Process()

    def build_and_drop() -> None:
        advisor = Advisor(book)
        assert advisor.advise({"diagnosis": {"seriousness": "serious"}}).recommendations
        del advisor
        gc.collect()

    for _ in range(3):
        build_and_drop()
    before = process.memory_info().rss
    for _ in range(60):
        build_and_drop()
    grown = process.memory_info().rss - before
    assert grown < 20e6  # durable kept about 1.2 MB per dropped Advisor (72 MB here) before the fix
    assert secondopinion.advise({"diagnosis": {"seriousness": "serious"}}).recommendations


_A11_SHAPES = {
    # the derived fact holds the join
    "holds": [
        {"bind": "o", "fact": "opinion"},
        {"bind": "c", "fact": "opinions_conflict", "where": {"second": {"ref": "o.index"}}},
    ],
    # the join refers to the derived fact
    "referred": [
        {"bind": "c", "fact": "opinions_conflict"},
        {"bind": "o", "fact": "opinion", "where": {"index": {"ref": "c.second"}}},
    ],
    # the join is between case facts, but the rule's first fact is derived (hazard A7's sentinel)
    "first": [
        {"bind": "h", "fact": "high_stakes"},
        {"bind": "a", "fact": "opinion"},
        {"bind": "b", "fact": "opinion", "where": {"index": {"gt": {"ref": "a.index"}}}},
    ],
}


@pytest.mark.parametrize("shape", sorted(_A11_SHAPES))
def test_a_join_on_a_derived_fact_is_refused_with_file_line_and_rule_id(tmp_path: Path, shape: str) -> None:
    path = _pack(tmp_path, [_rule("LM-A11", _A11_SHAPES[shape])])
    error = _refused(path)
    opens = _line_of(path, '"id": "LM-A11"') - 1  # the line that opens the rule
    assert [(p.file, p.line, p.rule_id) for p in error.problems] == [(str(path), opens, "LM-A11")]
    assert "hazard A11" in error.problems[0].message


def test_a_join_on_case_facts_beside_a_later_derived_fact_is_accepted(tmp_path: Path) -> None:
    when = [
        {"bind": "a", "fact": "opinion"},
        {"bind": "b", "fact": "opinion", "where": {"index": {"gt": {"ref": "a.index"}}}},
        {"bind": "h", "fact": "high_stakes"},
    ]
    advisor = Advisor(Rulebook.load(_pack(tmp_path, [_rule("LM-LATER", when)])), include_drafts=True)
    case = {"diagnosis": {"seriousness": "serious"}, "opinions": [{}, {}]}
    for _ in range(20):  # reliably, not only once
        assert "LM-LATER" in advisor.trace(case).fired
