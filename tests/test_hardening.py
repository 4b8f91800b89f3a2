"""Hardening: many threads at once, malformed input to both loaders, and privacy of case values.

* Threads: 8 threads advising on thousands of cases through one shared advisor give exactly the
  sequential results, repeatedly, in fresh processes too (a crash would show as a signal).
* Fuzzing (Hypothesis): ``load_case`` and ``Rulebook.load`` fed wrong types, unknown fields, deep
  nesting, huge strings, invalid UTF-8 and other encodings only ever raise CaseError /
  RuleFileError; every case ``load_case`` accepts can be advised on.
* Privacy: no value from a case appears in any log record (every logger at DEBUG, durable's
  included), in any exception message or its chain, in the batch errors file or on stderr.
"""

from __future__ import annotations

import copy
import io
import json
import logging
import pickle
import subprocess
import sys
import tempfile
import textwrap
import traceback
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import yaml
from casegen import random_cases
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

import secondopinion
from secondopinion import Advisor, CaseError, Rulebook, RuleFileError, load_case
from secondopinion.batch import run_batch
from secondopinion.case import case_fact_types, case_facts
from secondopinion.cli import app
from secondopinion.engine import MAX_STRING_LENGTH, EngineError
from secondopinion.rulebook import RuleProblem, default_rules_path

TESTS = Path(__file__).resolve().parent
RULES = default_rules_path()

# --------------------------------------------------------------------------- threads


def test_eight_threads_give_exactly_the_sequential_results() -> None:
    cases = list(random_cases(2000, seed=51, labelled_opinions=False))
    advisor = secondopinion.default_advisor()
    expected = [advisor.advise(c) for c in cases]
    for _ in range(2):
        with ThreadPoolExecutor(max_workers=8) as pool:
            got = list(pool.map(advisor.advise, cases))
        assert got == expected


def test_threads_on_two_advisors_at_once_do_not_mix_sessions() -> None:
    cases = list(random_cases(600, seed=52, labelled_opinions=False))
    first = secondopinion.default_advisor()
    second = Advisor(first.rulebook)  # its own Engine, its own durable host
    expected = [first.advise(c) for c in cases]
    jobs = [(first if i % 2 else second, c) for i, c in enumerate(cases)] * 2
    with ThreadPoolExecutor(max_workers=8) as pool:
        got = list(pool.map(lambda job: job[0].advise(job[1]), jobs))
    assert got == expected * 2


_THREAD_SCRIPT = textwrap.dedent(
    """
    import json
    import sys
    from concurrent.futures import ThreadPoolExecutor
    sys.path.insert(0, sys.argv[1])
    from casegen import random_cases
    import secondopinion

    cases = list(random_cases(800, seed=int(sys.argv[2]), labelled_opinions=False))
    expected = [secondopinion.advise(c).to_json() for c in cases]
    with ThreadPoolExecutor(max_workers=8) as pool:
        got = list(pool.map(lambda c: secondopinion.advise(json.dumps(c) if len(c) % 2 else c).to_json(), cases))
    print("same" if got == expected else "different")
    """
)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [61, 62, 63])
def test_threaded_runs_in_fresh_processes_neither_crash_nor_differ(seed: int) -> None:
    proc = subprocess.run(
        [sys.executable, "-W", "error", "-c", _THREAD_SCRIPT, str(TESTS), str(seed)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, f"exit {proc.returncode}: {proc.stderr[-2000:]}"
    assert proc.stdout.strip() == "same"


# --------------------------------------------------------------------------- fuzzing load_case

_TYPES = case_fact_types()
_ASPECTS = ("diagnosis", "treatment", "patient", "doctor", "insurance", "records")
_FIELDS = sorted({attr for aspect in _ASPECTS for attr in _TYPES[aspect]} | set(_TYPES["opinion"]))
_ENUM_VALUES = sorted({v for t in _TYPES.values() for d in t.values() if isinstance(d, tuple) for v in d})

scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=30)
    | st.sampled_from(_ENUM_VALUES)
    | st.builds(lambda n: "x" * n, st.integers(min_value=400, max_value=5000))
)
json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.sampled_from(_FIELDS) | st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)
odd_python = st.sampled_from([object(), {1, 2}, b"bytes", (1, 2), 1 + 2j, Ellipsis, float("nan")])


@st.composite
def case_shaped(draw: st.DrawFn) -> dict[str, Any]:
    """Mostly right structure, wrong or odd values: known aspects and fields, junk values."""
    case: dict[str, Any] = {}
    for aspect in draw(st.lists(st.sampled_from([*_ASPECTS, "opinions", "extra"]), max_size=4, unique=True)):
        if aspect == "opinions":
            value: Any = draw(st.lists(st.dictionaries(st.sampled_from(_FIELDS), json_values | odd_python), max_size=3))
        else:
            names = sorted(_TYPES.get(aspect, {})) or ["anything"]
            value = draw(st.dictionaries(st.sampled_from(names), json_values | odd_python, max_size=4))
        case[aspect] = draw(st.just(value) | json_values)
    return case


@st.composite
def mutated_valid_case(draw: st.DrawFn) -> dict[str, Any]:
    """A valid generated case with one value somewhere replaced by junk."""
    case = next(random_cases(1, seed=draw(st.integers(0, 10_000)), labelled_opinions=False))
    paths: list[list[Any]] = []

    def walk(node: Any, path: list[Any]) -> None:
        paths.append(path)
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, [*path, k])
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, [*path, i])

    walk(case, [])
    path = paths[draw(st.integers(0, len(paths) - 1))]
    junk = draw(json_values | odd_python)
    if not path:
        return {"diagnosis": junk}
    parent: Any = case
    for step in path[:-1]:
        parent = parent[step]
    parent[path[-1]] = junk
    return case


def _load_or_case_error(data: Any) -> None:
    """The contract: a Case that can be advised on, or CaseError; nothing else."""
    try:
        case = load_case(data)
    except CaseError as exc:
        problems = exc.problems
    else:
        assert secondopinion.advise(case).disclaimer
        return
    assert problems
    assert all(isinstance(p, str) and " @ $" in p for p in problems)


_FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@_FUZZ
@given(json_values | odd_python | st.lists(json_values))
def test_load_case_on_any_json_like_value(data: Any) -> None:
    _load_or_case_error(data)


@_FUZZ
@given(case_shaped())
def test_load_case_on_case_shaped_junk(data: dict[str, Any]) -> None:
    _load_or_case_error(data)


@_FUZZ
@given(mutated_valid_case())
def test_load_case_on_a_valid_case_with_one_bad_value(data: dict[str, Any]) -> None:
    _load_or_case_error(data)


@_FUZZ
@given(st.text(max_size=300) | st.builds(json.dumps, json_values))
def test_load_case_on_any_text(text: str) -> None:
    _load_or_case_error(text)


@_FUZZ
@given(
    st.binary(max_size=300)
    | st.builds(
        lambda value, encoding: json.dumps(value, ensure_ascii=False).encode(encoding, errors="replace"),
        json_values,
        st.sampled_from(["utf-8", "utf-16", "utf-32", "latin-1", "cp1252", "utf-8-sig", "utf-16-be"]),
    )
)
def test_load_case_on_any_bytes_in_any_encoding(data: bytes) -> None:
    _load_or_case_error(data)


def _nested_dict(depth: int) -> dict[str, Any]:
    node: dict[str, Any] = {}
    for _ in range(depth):
        node = {"cancer_type": node}
    return node


@pytest.mark.parametrize(
    "data",
    [
        "[" * 100_000 + "]" * 100_000,
        '{"a":' * 100_000 + "1" + "}" * 100_000,
        b"[" * 100_000,
        '{"diagnosis": {"cancer_type": "' + "x" * 5_000_000 + '"}}',
        "9" * 10_000,
        '{"treatment": {"days_to_decide": ' + "9" * 10_000 + "}}",
        '{"treatment": {"days_to_decide": 1e400}}',
        '{"treatment": {"days_to_decide": NaN}}',
        b'{"diagnosis": {"cancer_type": "\xff\xfe"}}',
        '{"diagnosis": {"cancer_type": "\\ud800"}}',
        '{"opinions": [{"diagnosis": "a\\u0000b"}, {"diagnosis": "a\\u0000b"}]}',
        "\ufeff{}",
        {"diagnosis": _nested_dict(5000)},
        {"opinions": [[[[[[[[[[[[]]]]]]]]]]]]},
        {"opinions": {"0": {}}},
        {"opinions": "not a list"},
        {1: 2},
        {None: {}},
        {"diagnosis": {1: "yes"}},
        {"diagnosis": {"seriousness": ["serious"]}},
        {"treatment": {"days_to_decide": True}},
        {"treatment": {"days_to_decide": -1}},
        {"treatment": {"days_to_decide": 2**70}},
        {"treatment": {"days_to_decide": 3.0}},
        {"patient": {"age_group": "child"}, "unknown": {}},
        ["not", "an", "object"],
        None,
        42,
    ],
    ids=lambda d: type(d).__name__,
)
def test_load_case_on_known_nasty_inputs(data: Any) -> None:
    _load_or_case_error(data)


def test_control_characters_and_lone_surrogates_in_free_text_are_case_errors() -> None:
    # Regression: durable compares C strings, so "a\x00b" twice did not count as agreeing
    # opinions, and a lone surrogate made the engine fail with an EngineError.
    for text in ("a\x00b", "\ud800", "x\x1by", "del\x7f"):
        with pytest.raises(CaseError) as info:
            load_case({"opinions": [{"diagnosis": text}]})
        assert info.value.problems == (
            "invalid value: text must not hold control characters or lone surrogates @ $.opinions[0].diagnosis",
        )
    assert load_case({"diagnosis": {"cancer_type": "  Breast\tcancer \n"}}).diagnosis.cancer_type == "breast cancer"


def test_days_beyond_a_hundred_years_are_a_case_error_not_an_engine_error() -> None:
    # Regression: 2**70 days passed load_case and then failed in the engine (64-bit ints only).
    with pytest.raises(CaseError) as info:
        load_case({"treatment": {"days_to_decide": 2**70}})
    assert info.value.problems == ("invalid value: must be at most 36500 @ $.treatment.days_to_decide",)
    assert secondopinion.advise({"treatment": {"days_to_decide": 36_500}}).disclaimer


def test_unknown_keys_of_any_type_are_reported_by_name() -> None:
    # Regression: a non-text key ({1: 2}) made load_case raise TypeError instead of CaseError.
    with pytest.raises(CaseError) as info:
        load_case({1: 2, None: 3, "z" * 100: 4})
    assert info.value.problems == ("unknown field(s): 1, None, " + "z" * 40 + " @ $",)


def test_loader_errors_survive_pickling_for_worker_processes() -> None:
    with pytest.raises(CaseError) as info:
        load_case({"diagnosis": {"seriousness": "very"}, "treatment": {"kind": 3}})
    again = pickle.loads(pickle.dumps(info.value))
    assert type(again) is CaseError and again.problems == info.value.problems and str(again) == str(info.value)
    assert info.value.__context__ is None and info.value.__cause__ is None
    error = RuleFileError([RuleProblem("x.yaml", 3, "R-1", "bad"), RuleProblem("y.yaml", None, None, "worse")])
    again_rules = pickle.loads(pickle.dumps(error))
    assert again_rules.problems == error.problems and str(again_rules) == str(error)


# --------------------------------------------------------------------------- fuzzing Rulebook.load


@pytest.fixture(scope="module")
def rule_file_base() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((RULES / "20-timing.yaml").read_text(encoding="utf-8"))
    return {"topic": data["topic"], "description": "fuzz", "rules": data["rules"][:2]}


def _load_rules_or_rule_file_error(raw: bytes, *context: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "fuzz.yaml"
        path.write_bytes(raw)
        try:
            Rulebook.load(*context, path, shipped=False)
        except RuleFileError as exc:
            problems = exc.problems
        else:
            return
    assert problems
    assert all(len(str(p)) < 2000 for p in problems)


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=400))
def test_rule_loader_on_any_bytes(raw: bytes) -> None:
    _load_rules_or_rule_file_error(raw)


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=400))
def test_rule_loader_on_any_text(text: str) -> None:
    _load_rules_or_rule_file_error(text.encode("utf-8", errors="surrogatepass"))


@st.composite
def mutated_rule_file(draw: st.DrawFn, base: dict[str, Any]) -> dict[str, Any]:
    """A real rule file with one node replaced by junk, or one unknown key added."""
    data = copy.deepcopy(base)
    nodes: list[tuple[Any, Any]] = []

    def walk(node: Any) -> None:
        items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
        for key, value in items:
            nodes.append((node, key))
            walk(value)

    walk(data)
    for _ in range(draw(st.integers(1, 3))):
        parent, key = nodes[draw(st.integers(0, len(nodes) - 1))]
        if draw(st.booleans()) and isinstance(parent, dict):
            parent[draw(st.text(min_size=1, max_size=8))] = draw(json_values)
        else:
            parent[key] = draw(json_values)
    return data


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_rule_loader_on_real_rules_with_junk_inside(rule_file_base: dict[str, Any], data: st.DataObject) -> None:
    mutated = data.draw(mutated_rule_file(rule_file_base))
    raw = yaml.safe_dump(mutated, allow_unicode=True).encode("utf-8", errors="surrogatepass")
    _load_rules_or_rule_file_error(raw, RULES / "sources.yaml", RULES / "facts.yaml")


_BILLION_LAUGHS = "\n".join(
    ["topic: timing", "description: x", "rules:", "  - id: LAUGHS", '    guidance: &a ["lol", "lol", "lol"]']
    + [f"    x{i}: &a{i} [{', '.join(['*a' if i == 0 else f'*a{i - 1}'] * 9)}]" for i in range(9)]
)


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\xff\xfe\x00t\x00o\x00p\x00",
        "topic: tim\u00e9\n".encode("utf-16"),
        b"topic: \xe9t\xe9\n",
        b"[" * 20_000,
        b"- " * 20_000 + b"x",
        b"!!python/object/apply:os.system ['echo owned']\n",
        b"topic: a\ntopic: b\n",
        b"? [1, 2]\n: x\n",
        b"1.5: x\n",
        b"rules: [{id: X, when: !!binary aGVsbG8=}]\n",
        b"topic: x\nrules:\n  - &r {id: A}\n  - *r\n",
        _BILLION_LAUGHS.encode(),
        b"topic: x\ndescription: " + b"y" * 2_000_000 + b"\nrules: []\n",
        b"%YAML 9.9\n---\ntopic: x\n",
        b"topic: x\n...\n---\ntopic: y\n",
    ],
    ids=lambda raw: repr(raw[:16]),
)
def test_rule_loader_on_known_nasty_files(raw: bytes) -> None:
    _load_rules_or_rule_file_error(raw, RULES / "sources.yaml", RULES / "facts.yaml")


def test_rule_files_may_not_use_aliases(tmp_path: Path) -> None:
    # Regression: nested aliases ("billion laughs") made a 15-line file produce a 39 MB error message.
    path = tmp_path / "laughs.yaml"
    path.write_text(_BILLION_LAUGHS)
    with pytest.raises(RuleFileError) as info:
        Rulebook.load(path, shipped=False)
    assert [p.message for p in info.value.problems] == [
        "YAML syntax error: aliases (*name) are not allowed in rule files"
    ]


def test_rule_loader_reports_a_missing_file_and_a_folder_of_junk(tmp_path: Path) -> None:
    with pytest.raises(RuleFileError, match="cannot read file"):
        Rulebook.load(tmp_path / "missing.yaml", shipped=False)
    (tmp_path / "a.yaml").write_bytes(b"\x00\x01\x02")
    (tmp_path / "b.yml").write_text("just text")
    with pytest.raises(RuleFileError) as info:
        Rulebook.load(tmp_path, shipped=False)
    assert {p.file.rsplit("/", 1)[-1] for p in info.value.problems} == {"a.yaml", "b.yml"}


# --------------------------------------------------------------------------- privacy

MARK = "Zq7Marker"
"""A distinctive string put into case values; it must never show up in logs or messages."""


class _Capture(logging.Handler):
    """Keeps every record, formatted with its exception (as a log file would)."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.texts: list[str] = []
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.texts.append(self.format(record))
        self.texts.append(repr(record.args))


@pytest.fixture
def all_logs() -> Iterator[_Capture]:
    """Every logger (durable's included) at DEBUG, all records captured."""
    assert "durable" in logging.root.manager.loggerDict  # created when secondopinion.engine imported durable
    capture = _Capture()
    root = logging.getLogger()
    saved = {name: (lg.level, lg.propagate, lg.disabled) for name, lg in _loggers()}
    root_level = root.level
    root.addHandler(capture)
    root.setLevel(logging.DEBUG)
    for _, lg in _loggers():
        lg.setLevel(logging.DEBUG)
        lg.propagate = True
        lg.disabled = False
    try:
        yield capture
    finally:
        root.removeHandler(capture)
        root.setLevel(root_level)
        for name, (level, propagate, disabled) in saved.items():
            lg = logging.getLogger(name)
            lg.setLevel(level)
            lg.propagate = propagate
            lg.disabled = disabled


def _loggers() -> list[tuple[str, logging.Logger]]:
    return [(n, lg) for n, lg in logging.root.manager.loggerDict.items() if isinstance(lg, logging.Logger)]


def _exception_text(exc: BaseException) -> str:
    """What a logger or a traceback would show: the whole chain, messages and reprs."""
    parts = ["".join(traceback.format_exception(exc))]
    seen: set[int] = set()
    node: BaseException | None = exc
    while node is not None and id(node) not in seen:
        seen.add(id(node))
        parts += [str(node), repr(node), repr(getattr(node, "problems", ""))]
        node = node.__cause__ or node.__context__
    return "\n".join(parts)


_BAD_CASES: list[Any] = [
    {"diagnosis": {"seriousness": MARK}},
    {"diagnosis": {"cancer_type": MARK * 100}},
    {"diagnosis": {"cancer_type": MARK + "\x00"}},
    {"patient": {"nickname": MARK}},
    {"treatment": {"days_to_decide": MARK}},
    {"opinions": [{"institution": [MARK]}]},
    {"opinions": MARK},
    {"records": MARK},
    [MARK],
    MARK,
    '{"diagnosis": {"cancer_type": "' + MARK,
    '{"diagnosis": {"cancer_type": "' + MARK + '"}, }',
    ('{"diagnosis": {"seriousness": "' + MARK + '"}}').encode("utf-16"),
    ('{"diagnosis": {"cancer_type": "' + MARK + '\u00e9"}}').encode("latin-1"),
]


def test_no_case_value_in_logs_or_errors_of_the_library(all_logs: _Capture, capfd: pytest.CaptureFixture[str]) -> None:
    texts: list[str] = []
    advisor = secondopinion.default_advisor()
    # Good cases with the marker in every free-text field, through advise, trace and explain paths.
    for case in random_cases(150, seed=71, marker=MARK, labelled_opinions=False):
        advisor.advise(case)
        advisor.advise(json.dumps(case))
    # Bad cases: CaseError messages, problems and chains.
    for bad in _BAD_CASES:
        with pytest.raises(CaseError) as info:
            secondopinion.advise(bad)
        texts.append(_exception_text(info.value))
    # Engine errors on facts that carry the marker.
    good = load_case({"diagnosis": {"cancer_type": MARK}, "opinions": [{"institution": MARK}]})
    facts = case_facts(good)
    broken = [
        [*facts[:1], {**facts[1], "note": MARK * (MAX_STRING_LENGTH // len(MARK) + 1)}],
        [*facts, {**facts[0], "fid": "copy", "weight": 1e-7, "label": MARK}],
        [*facts, {**facts[0]}],
        [*facts, {"type": "diagnosis", "fid": "x", "id": MARK}],
        [*facts, {"type": "diagnosis", "fid": "y", "labels": [MARK, {"nested": MARK}]}],
    ]
    for fact_set in broken:
        with pytest.raises(EngineError) as engine_info:
            advisor.engine.run(fact_set)
        texts.append(_exception_text(engine_info.value))
    out, err = capfd.readouterr()
    texts += [out, err, *all_logs.texts]
    leaks = [t for t in texts if MARK in t]
    assert not leaks, leaks[0][:500]
    assert texts, "nothing was checked"


def test_no_case_value_in_batch_errors_or_summaries(all_logs: _Capture, tmp_path: Path) -> None:
    lines: list[bytes] = []
    for bad in _BAD_CASES:
        if isinstance(bad, bytes):
            lines.append(bad.replace(b"\n", b" "))
        elif isinstance(bad, str):
            lines.append(bad.encode("utf-8"))
        else:
            lines.append(json.dumps(bad).encode("utf-8"))
    lines.append(json.dumps({"id": "m1", "case": {"diagnosis": {"seriousness": MARK}}}).encode())
    lines.append(json.dumps({"id": "m2", "case": {}, "note": MARK}).encode())
    lines.append(b'{"diagnosis": {"cancer_type": "' + MARK.encode() * 20 + b'"}}')
    data = b"\n".join(lines) + b"\n"
    errors = io.StringIO()
    summary = run_batch(io.BytesIO(data), io.StringIO(), errors, workers=1, max_line_bytes=120)
    assert summary.errors == summary.records == len(lines)
    assert MARK not in errors.getvalue()
    source = tmp_path / "bad.jsonl"
    source.write_bytes(data)
    result = CliRunner().invoke(app, ["batch", str(source), "--out", str(tmp_path / "o.jsonl"), "-j", "1"])
    assert result.exit_code == 1
    assert MARK not in result.output + result.stderr
    assert MARK not in (tmp_path / "o.errors.jsonl").read_text()
    for bad in _BAD_CASES[:8]:
        case_file = tmp_path / "case.json"
        case_file.write_text(json.dumps(bad))
        advised = CliRunner().invoke(app, ["advise", str(case_file)])
        assert advised.exit_code == 1
        assert MARK not in advised.output + advised.stderr
    assert not [t for t in all_logs.texts if MARK in t]
