"""Batch advice over JSON Lines: every record accounted for, by line number, in input order."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from casegen import random_cases
from typer.testing import CliRunner

import secondopinion
from secondopinion import batch as batch_module
from secondopinion.batch import MAX_LINE_BYTES, AdvisorSpec, BatchSummary, read_records, run_batch
from secondopinion.cli import app
from secondopinion.engine import EngineError

REPO = Path(__file__).resolve().parent.parent


def _lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines()]


def _run(data: bytes, **options: Any) -> tuple[BatchSummary, list[dict[str, Any]], list[dict[str, Any]]]:
    out, errors = io.StringIO(), io.StringIO()
    summary = run_batch(io.BytesIO(data), out, errors, **options)
    return summary, _lines(out.getvalue()), _lines(errors.getvalue())


def _mixed_input() -> tuple[bytes, dict[int, dict[str, Any]], dict[int, str]]:
    """An input with good cases, blank lines and every kind of bad record.

    Returns the bytes, the good cases by line number and the expected error kind by line number.
    """
    good = list(random_cases(6, seed=3))
    lines: list[bytes] = []
    cases: dict[int, dict[str, Any]] = {}
    kinds: dict[int, str] = {}

    def add(raw: bytes, case: dict[str, Any] | None = None, kind: str | None = None) -> None:
        lines.append(raw)
        if case is not None:
            cases[len(lines)] = case
        if kind is not None:
            kinds[len(lines)] = kind

    add(json.dumps(good[0]).encode(), case=good[0])
    add(b"")
    add(b"{not json", kind="invalid_json")
    add(json.dumps(good[1]).encode(), case=good[1])
    add(b'{"diagnosis": {"seriousness": 3}}', kind="invalid_case")
    add(b"   \t ")
    add(b'{"diagnosis": {"cancer_type": "caf\xe9"}}', kind="invalid_utf8")
    add(b"[1, 2, 3]", kind="invalid_case")
    add(json.dumps({"id": "member-7", "case": good[2]}).encode(), case=good[2])
    add(json.dumps({"id": "member-8", "case": good[3], "note": "x"}).encode(), kind="invalid_record")
    add(json.dumps({"id": True, "case": good[3]}).encode(), kind="invalid_record")
    add(b'{"unknown_part": {}}', kind="invalid_case")
    add(b"[" * 100_000 + b"]" * 100_000, kind="invalid_json")
    add(b"9" * 5000, kind="invalid_json")
    add(json.dumps(good[4]).encode() + b"\r", case=good[4])
    add(b'{"diagnosis": {"cancer_type": "' + b"a" * MAX_LINE_BYTES + b'"}}', kind="line_too_long")
    add(json.dumps(good[5]).encode(), case=good[5])
    return b"\n".join(lines) + b"\n", cases, kinds


def test_every_record_is_a_result_or_an_error_with_its_line_number() -> None:
    data, cases, kinds = _mixed_input()
    summary, results, errors = _run(data, workers=1, chunk_size=4)
    assert summary == BatchSummary(
        records=len(cases) + len(kinds), results=len(cases), errors=len(kinds), blank_lines=2
    )
    result_lines = [r["line"] for r in results]
    error_lines = [e["line"] for e in errors]
    assert result_lines == sorted(cases) and error_lines == sorted(kinds)


def test_bad_records_are_named_by_kind_and_good_ones_match_advise() -> None:
    data, cases, kinds = _mixed_input()
    _, results, errors = _run(data, workers=1, chunk_size=4)
    assert {e["line"]: e["error"] for e in errors} == kinds
    assert {r["line"]: r["advice"] for r in results} == {
        line: secondopinion.advise(case).to_dict() for line, case in cases.items()
    }
    by_line = {r["line"]: r for r in results}
    assert by_line[9]["id"] == "member-7" and "id" not in by_line[1]
    invalid = next(e for e in errors if e["line"] == 5)
    assert invalid["problems"] and all("@ $." in p for p in invalid["problems"])
    assert all(set(e) == {"line", "error", "message", "problems"} for e in errors if "id" not in e)


START_METHODS = ["spawn", pytest.param("fork", marks=pytest.mark.skipif(sys.platform != "linux", reason="Linux forks"))]


@pytest.mark.parametrize("start_method", START_METHODS)
def test_parallel_output_is_identical_to_the_sequential_output(start_method: str) -> None:
    data, _, _ = _mixed_input()
    many = b"".join(json.dumps(c).encode() + b"\n" for c in random_cases(500, seed=11, labelled_opinions=False))
    data = data + many + data
    single = _run(data, workers=1, chunk_size=7)
    double = _run(data, workers=2, chunk_size=7, start_method=start_method)
    assert single == double
    summary = single[0]
    assert summary.records == summary.results + summary.errors
    assert summary.results >= 500


def test_engine_and_unexpected_failures_become_error_records_and_the_batch_goes_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    advisor = batch_module.advisor_for(AdvisorSpec())
    real = advisor.advise

    def flaky(case: Any) -> Any:
        marker = case.get("diagnosis", {}).get("cancer_type") if isinstance(case, dict) else None
        if marker == "engine":
            raise EngineError("durable refused an input fact (not handled or already observed)")
        if marker == "boom":
            raise RuntimeError("something broke")
        return real(case)

    monkeypatch.setattr(advisor, "advise", flaky)
    rows = [{"diagnosis": {"cancer_type": "engine"}}, {}, {"diagnosis": {"cancer_type": "boom"}}, {}]
    data = b"".join(json.dumps(r).encode() + b"\n" for r in rows)
    summary, results, errors = _run(data, workers=1)
    assert [r["line"] for r in results] == [2, 4]
    assert [(e["line"], e["error"]) for e in errors] == [(1, "engine_error"), (3, "internal_error")]
    assert errors[1]["message"] == "unexpected RuntimeError"
    assert summary.records == 4


def test_read_records_streams_long_lines_without_keeping_them() -> None:
    stream = io.BytesIO(b"\xef\xbb\xbf{}\r\n" + b"x" * 50 + b"\nshort\n" + b"y" * 10)
    got = list(read_records(stream, max_line_bytes=8))
    assert [(n, raw) for n, raw, _ in got] == [(1, b"{}"), (2, None), (3, b"short"), (4, None)]
    assert sum(consumed for _, _, consumed in got) == len(stream.getvalue())


def test_progress_reports_records_and_bytes_up_to_the_end() -> None:
    data = b"".join(json.dumps(c).encode() + b"\n" for c in random_cases(40, seed=5)) + b"\n\n"
    seen: list[tuple[int, int]] = []
    run_batch(
        io.BytesIO(data),
        io.StringIO(),
        io.StringIO(),
        workers=1,
        chunk_size=8,
        progress=lambda r, b: seen.append((r, b)),
    )
    assert seen == sorted(seen)
    assert seen[-1] == (40, len(data))


def test_workers_and_chunk_size_must_be_positive() -> None:
    with pytest.raises(ValueError, match="workers"):
        run_batch(io.BytesIO(b""), io.StringIO(), io.StringIO(), workers=0)
    with pytest.raises(ValueError, match="chunk_size"):
        run_batch(io.BytesIO(b""), io.StringIO(), io.StringIO(), chunk_size=0)


# --------------------------------------------------------------------------- the command


def test_cli_batch_writes_results_and_errors_and_exits_1_on_bad_records(tmp_path: Path) -> None:
    source = tmp_path / "cases.jsonl"
    good = list(random_cases(5, seed=8))
    source.write_text("\n".join([json.dumps(c) for c in good[:3]] + ["oops", "", json.dumps(good[3])]) + "\n")
    out = tmp_path / "advice.jsonl"
    result = CliRunner().invoke(app, ["batch", str(source), "--out", str(out), "--workers", "1"])
    assert result.exit_code == 1, result.output
    assert "5 records: 4 advised, 1 errors" in result.stderr
    assert "1 blank line(s) skipped" in result.stderr
    assert [r["line"] for r in _lines(out.read_text())] == [1, 2, 3, 6]
    errors = _lines((tmp_path / "advice.errors.jsonl").read_text())
    assert [(e["line"], e["error"]) for e in errors] == [(4, "invalid_json")]


def test_cli_batch_exits_0_when_every_record_is_good(tmp_path: Path) -> None:
    source = tmp_path / "cases.jsonl"
    source.write_text("".join(json.dumps(c) + "\n" for c in random_cases(30, seed=9)))
    out, errs = tmp_path / "o.jsonl", tmp_path / "e.jsonl"
    result = CliRunner().invoke(app, ["batch", str(source), "-o", str(out), "-e", str(errs), "-j", "2"])
    assert result.exit_code == 0, result.output
    assert len(_lines(out.read_text())) == 30
    assert errs.read_text() == ""


def test_cli_batch_usage_errors_exit_2(tmp_path: Path) -> None:
    runner = CliRunner()
    missing = runner.invoke(app, ["batch", str(tmp_path / "nope.jsonl"), "--out", str(tmp_path / "o.jsonl")])
    assert missing.exit_code == 2 and "no such file" in missing.stderr
    source = tmp_path / "in.jsonl"
    source.write_text("{}\n")
    same = runner.invoke(
        app, ["batch", str(source), "--out", str(tmp_path / "o.jsonl"), "--errors", str(tmp_path / "o.jsonl")]
    )
    assert same.exit_code == 2
    stdout_needs_errors = runner.invoke(app, ["batch", str(source), "--out", "-"])
    assert stdout_needs_errors.exit_code == 2
    both_on_stdout = runner.invoke(app, ["batch", str(source), "--out", "-", "--errors", "-"])
    assert both_on_stdout.exit_code == 2 and "must not be the --out file" in both_on_stdout.stderr


def test_cli_batch_from_stdin_to_stdout_in_a_real_process(tmp_path: Path) -> None:
    cases = list(random_cases(300, seed=10))
    data = "".join(json.dumps(c) + "\n" for c in cases) + "not json\n"
    errs = tmp_path / "errors.jsonl"
    env = {**os.environ, "PYTHONWARNINGS": "error"}
    proc = subprocess.run(
        [sys.executable, "-m", "secondopinion", "batch", "-", "--out", "-", "--errors", str(errs), "-j", "2"],
        input=data.encode(),
        capture_output=True,
        timeout=300,
        cwd=tmp_path,
        env=env,
        check=False,
    )
    assert proc.returncode == 1, proc.stderr.decode()
    results = _lines(proc.stdout.decode())
    assert [r["line"] for r in results] == list(range(1, 301))
    assert results[17]["advice"] == secondopinion.advise(cases[17]).to_dict()
    assert [(e["line"], e["error"]) for e in _lines(errs.read_text())] == [(301, "invalid_json")]
    assert b"301 records: 300 advised, 1 errors" in proc.stderr


def test_output_lines_are_compact_json_with_text_as_written() -> None:
    # One record per line, no spaces, accented letters and emoji in a record id kept as they are
    # (not \u escapes): the output diffs and greps as a person expects, whatever library writes it.
    record_id = "dossier-é-\N{SMILING FACE WITH SMILING EYES}"
    case = {"diagnosis": {"seriousness": "serious", "cancer": "yes"}}
    out, errors = io.StringIO(), io.StringIO()
    run_batch(io.BytesIO(json.dumps({"id": record_id, "case": case}).encode() + b"\n"), out, errors, workers=1)
    (line,) = out.getvalue().splitlines()
    assert f'"id":"{record_id}"' in line
    assert line == json.dumps(json.loads(line), ensure_ascii=False, separators=(",", ":"))


def test_workers_are_forked_only_from_a_process_with_one_thread() -> None:
    script = "from secondopinion.batch import _auto_start_method; print(_auto_start_method())"
    fresh = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60)
    assert fresh.stdout.strip() == ("fork" if sys.platform == "linux" else "spawn")
    release = threading.Event()
    other = threading.Thread(target=release.wait)
    other.start()
    try:  # a lock another thread holds would be copied held: spawn
        assert batch_module._auto_start_method() == "spawn"
    finally:
        release.set()
        other.join()


def _worker_dies(*_args: Any) -> Any:
    os._exit(3)


@pytest.mark.parametrize("start_method", START_METHODS)
def test_a_worker_that_dies_ends_the_run_with_a_batch_error(
    monkeypatch: pytest.MonkeyPatch, start_method: str
) -> None:
    data = b"".join(json.dumps(c).encode() + b"\n" for c in random_cases(40, seed=12))
    monkeypatch.setattr(batch_module, "_advise_chunk", _worker_dies)  # the task the pool sends
    with pytest.raises(batch_module.BatchError, match="stopped unexpectedly"):
        _run(data, workers=2, chunk_size=4, start_method=start_method)
