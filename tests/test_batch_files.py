"""Batch files and processes (issue 16): no lost input, no torn output, no orphans, resumable runs.

* An output that is the input (the same path, a symbolic or a hard link) is refused before
  anything is opened for writing; the input is untouched.
* Outputs are written as ``NAME.partial`` and renamed when complete.
* A run stopped early (``stop``; Ctrl-C or SIGTERM in the CLI) writes whole chunks only, and
  ``resume`` continues it: the final files equal those of an uninterrupted run, records in =
  results + errors, even when a kill left the two partial files at different records or a torn
  last line.
* Worker processes die with their parent, even when the parent is killed with SIGKILL.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psutil
import pytest
from casegen import random_cases
from typer.testing import CliRunner

from secondopinion.batch import PARTIAL_SUFFIX, BatchError, batch_files, same_file
from secondopinion.cli import app


def _input(path: Path, count: int, seed: int = 7) -> Path:
    with path.open("w", encoding="utf-8") as out:
        for i, case in enumerate(random_cases(count, seed=seed, labelled_opinions=False)):
            if i % 23 == 5:
                out.write("{not json\n")
            elif i % 31 == 4:
                out.write("\n")
            else:
                out.write(json.dumps(case) + "\n")
    return path


def _lines(path: Path) -> list[int]:
    return [json.loads(line)["line"] for line in path.read_text("utf-8").splitlines()]


def _records(path: Path) -> list[int]:
    return [n for n, line in enumerate(path.read_text("utf-8").split("\n")[:-1], 1) if line.strip()]


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, bytes, bytes]:
    folder = tmp_path_factory.mktemp("reference")
    source = _input(folder / "in.jsonl", 400)
    summary = batch_files(source, folder / "out.jsonl", folder / "err.jsonl", workers=1, chunk_size=16)
    assert summary.complete and summary.records == summary.results + summary.errors == len(_records(source))
    return source, (folder / "out.jsonl").read_bytes(), (folder / "err.jsonl").read_bytes()


# --------------------------------------------------------------------------- an output that is the input


@pytest.mark.parametrize("link", ["same", "symlink", "hardlink", "dotted"])
@pytest.mark.parametrize("option", ["--out", "--errors"])
def test_an_output_that_is_the_input_is_refused_and_the_input_kept(tmp_path: Path, link: str, option: str) -> None:
    source = _input(tmp_path / "in.jsonl", 5)
    before = source.read_bytes()
    target = {
        "same": source,
        "symlink": tmp_path / "link.jsonl",
        "hardlink": tmp_path / "hard.jsonl",
        "dotted": tmp_path / "." / "in.jsonl",
    }[link]
    if link == "symlink":
        target.symlink_to(source)
    elif link == "hardlink":
        os.link(source, target)
    other = tmp_path / "other.jsonl"
    args = ["batch", str(source), "--out", str(target), "--errors", str(other)]
    if option == "--errors":
        args = ["batch", str(source), "--out", str(other), "--errors", str(target)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
    assert f"{option} must not be the input file" in result.output
    assert source.read_bytes() == before
    with pytest.raises(BatchError, match="is the input file"):
        batch_files(source, target, other, workers=1)
    assert source.read_bytes() == before
    assert same_file(source, target) and not same_file(source, other) and not same_file(source, Path("-"))


# --------------------------------------------------------------------------- partial files, stop, resume


def test_outputs_appear_under_their_names_only_when_complete(tmp_path: Path) -> None:
    source = _input(tmp_path / "in.jsonl", 60)
    out, err = tmp_path / "out.jsonl", tmp_path / "err.jsonl"
    out.write_text("an older complete run\n", encoding="utf-8")
    seen: list[tuple[bool, bool]] = []

    def progress(_records: int, _consumed: int) -> None:
        seen.append((out.read_text("utf-8") == "an older complete run\n", Path(f"{out}{PARTIAL_SUFFIX}").exists()))

    summary = batch_files(source, out, err, workers=1, chunk_size=8, progress=progress)
    assert summary.complete
    assert seen and all(seen_now == (True, True) for seen_now in seen)  # the old file stays until the end
    assert not Path(f"{out}{PARTIAL_SUFFIX}").exists() and not Path(f"{err}{PARTIAL_SUFFIX}").exists()
    assert sorted(_lines(out) + _lines(err)) == _records(source)


def test_a_stopped_run_keeps_whole_chunks_and_resume_finishes_it_exactly(
    tmp_path: Path, reference: tuple[Path, bytes, bytes]
) -> None:
    source, ref_out, ref_err = reference
    out, err = tmp_path / "out.jsonl", tmp_path / "err.jsonl"
    stop = threading.Event()

    def progress(records: int, _consumed: int) -> None:
        if records >= 100:
            stop.set()

    first = batch_files(source, out, err, workers=1, chunk_size=16, progress=progress, stop=stop)
    assert not first.complete and first.records == first.results + first.errors >= 100
    assert not out.exists() and not err.exists()
    partial = _lines(Path(f"{out}{PARTIAL_SUFFIX}")) + _lines(Path(f"{err}{PARTIAL_SUFFIX}"))
    assert sorted(partial) == _records(source)[: first.records]
    second = batch_files(source, out, err, workers=1, chunk_size=16, resume=True)
    assert second.complete and second.resumed == first.records
    assert second.records == second.results + second.errors == len(_records(source))
    assert (out.read_bytes(), err.read_bytes()) == (ref_out, ref_err)


@pytest.mark.parametrize("damage", ["torn_last_line", "errors_behind", "results_behind", "nothing_written"])
def test_resume_after_a_kill_keeps_only_the_complete_prefix(
    tmp_path: Path, reference: tuple[Path, bytes, bytes], damage: str
) -> None:
    source, ref_out, ref_err = reference
    out, err = tmp_path / "out.jsonl", tmp_path / "err.jsonl"
    part_out, part_err = Path(f"{out}{PARTIAL_SUFFIX}"), Path(f"{err}{PARTIAL_SUFFIX}")
    out_lines, err_lines = ref_out.splitlines(keepends=True), ref_err.splitlines(keepends=True)
    if damage == "torn_last_line":  # killed while writing: half a line at the end of each file
        part_out.write_bytes(b"".join(out_lines[:150]) + out_lines[150][:40])
        part_err.write_bytes(b"".join(err_lines[:7]) + err_lines[7][:10])
    elif damage == "errors_behind":  # results flushed further than errors
        part_out.write_bytes(b"".join(out_lines[:300]))
        part_err.write_bytes(b"".join(err_lines[:2]))
    elif damage == "results_behind":
        part_out.write_bytes(b"".join(out_lines[:20]))
        part_err.write_bytes(b"".join(err_lines[:15]))
    summary = batch_files(source, out, err, workers=1, chunk_size=16, resume=True)
    assert summary.complete and summary.records == summary.results + summary.errors == len(_records(source))
    assert (out.read_bytes(), err.read_bytes()) == (ref_out, ref_err)
    if damage == "nothing_written":
        assert summary.resumed == 0


def test_resume_needs_files_not_standard_streams(tmp_path: Path) -> None:
    source = _input(tmp_path / "in.jsonl", 3)
    result = CliRunner().invoke(app, ["batch", str(source), "--out", "-", "--errors", str(tmp_path / "e"), "--resume"])
    assert result.exit_code == 2 and "--resume needs" in result.output


# --------------------------------------------------------------------------- signals and orphans


def _start_cli(tmp_path: Path, source: Path, *extra: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "secondopinion", "batch", str(source), "--out", str(tmp_path / "out.jsonl"), *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=tmp_path,
    )


def _wait_for(predicate: Any, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.1)


def test_sigterm_stops_the_batch_cleanly_and_resume_completes_it(tmp_path: Path) -> None:
    source = _input(tmp_path / "in.jsonl", 3000, seed=11)
    partial = tmp_path / f"out.jsonl{PARTIAL_SUFFIX}"
    proc = _start_cli(tmp_path, source, "--workers", "2", "--no-progress")
    try:
        _wait_for(lambda: partial.exists() and partial.stat().st_size > 0)
        workers = psutil.Process(proc.pid).children(recursive=True)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 143, stderr
    message = stderr.decode()
    assert "stopped:" in message and "--resume" in message and "Traceback" not in message
    _, alive = psutil.wait_procs(workers, timeout=30)
    assert alive == []
    assert not (tmp_path / "out.jsonl").exists()
    resumed = _start_cli(tmp_path, source, "--workers", "1", "--no-progress", "--resume")
    _, stderr = resumed.communicate(timeout=600)
    assert resumed.returncode == 1, stderr  # 1: the input holds bad records
    written = _lines(tmp_path / "out.jsonl") + _lines(tmp_path / "out.errors.jsonl")
    assert sorted(written) == _records(source)
    assert _lines(tmp_path / "out.jsonl") == sorted(_lines(tmp_path / "out.jsonl"))


def test_workers_die_with_a_parent_killed_by_sigkill(tmp_path: Path) -> None:
    source = _input(tmp_path / "in.jsonl", 3000, seed=12)
    partial = tmp_path / f"out.jsonl{PARTIAL_SUFFIX}"
    proc = _start_cli(tmp_path, source, "--workers", "2", "--no-progress")
    try:
        _wait_for(lambda: partial.exists() and partial.stat().st_size > 0)
        children = psutil.Process(proc.pid).children(recursive=True)
        assert len(children) >= 2  # the workers (and the resource tracker)
        proc.kill()
        proc.communicate(timeout=60)
    finally:
        proc.kill()
    _, alive = psutil.wait_procs(children, timeout=60)
    assert alive == []


def test_an_input_named_like_an_output_partial_file_is_refused(tmp_path: Path) -> None:
    source = _input(tmp_path / f"out.jsonl{PARTIAL_SUFFIX}", 3)
    before = source.read_bytes()
    with pytest.raises(BatchError, match="is the input file"):
        batch_files(source, tmp_path / "out.jsonl", tmp_path / "err.jsonl", workers=1)
    assert source.read_bytes() == before


def test_an_output_that_is_not_a_regular_file_is_written_directly(tmp_path: Path) -> None:
    source = _input(tmp_path / "in.jsonl", 4)
    summary = batch_files(source, Path(os.devnull), tmp_path / "err.jsonl", workers=1)
    assert summary.complete and summary.records == summary.results + summary.errors == len(_records(source))
    assert (tmp_path / "err.jsonl").exists() and not Path(f"{os.devnull}{PARTIAL_SUFFIX}").exists()
