"""Soak: tens of thousands of cases through the batch path, no leak and no lost case.

The benchmark (tests/benchmarks/bench_advise.py) measures RSS over 200,000 cases; this
test keeps to a size CI runs in a minute or two.

The input is generated on the fly (a stream, never a list), with a bad record
every so often and blank lines in between; the output is checked line by line
against a bitmap of line numbers, so the test itself holds almost nothing.
RSS is read with psutil once 10,000 records are done and again at the end.
"""

from __future__ import annotations

import gc
import io
import json
import re
from collections.abc import Iterator
from typing import Any

import psutil
import pytest
from casegen import random_cases

from secondopinion.batch import run_batch

pytestmark = pytest.mark.slow

_LINE = re.compile(r'\{"line":(\d+),')


def _lines(count: int, seed: int) -> Iterator[bytes]:
    """``count`` input lines: cases, bad JSON every 97th, an invalid case every 89th, blank every 101st."""
    cases = random_cases(count, seed=seed, labelled_opinions=False)
    for number in range(1, count + 1):
        case = next(cases)
        if number % 101 == 0:
            yield b"\n"
        elif number % 97 == 0:
            yield b'{"diagnosis": \n'
        elif number % 89 == 0:
            yield b'{"treatment": {"days_to_decide": -1}}\n'
        else:
            yield json.dumps(case).encode() + b"\n"


class _Source(io.RawIOBase):
    """A readable byte stream over a generator of lines."""

    def __init__(self, lines: Iterator[bytes]) -> None:
        self._lines = lines
        self._pending = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._pending:
            try:
                self._pending = next(self._lines)
            except StopIteration:
                return 0
        size = min(len(buffer), len(self._pending))
        buffer[:size] = self._pending[:size]
        self._pending = self._pending[size:]
        return size


class _Tally(io.TextIOBase):
    """A text sink that only marks which line numbers it received (and whether twice)."""

    def __init__(self, seen: bytearray) -> None:
        self.seen = seen
        self.count = 0

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        for record in text.splitlines():
            match = _LINE.match(record)
            assert match, record[:80]
            self.seen[int(match.group(1))] += 1
            self.count += 1
        return len(text)


def _rss_mb() -> float:
    gc.collect()
    return float(psutil.Process().memory_info().rss) / 2**20


def _soak(count: int, workers: int, seed: int) -> tuple[float, float]:
    seen = bytearray(count + 1)
    results, errors = _Tally(seen), _Tally(seen)
    rss: dict[str, float] = {}

    def progress(records: int, _bytes: int) -> None:
        if records >= 10_000 and "at_10k" not in rss:
            rss["at_10k"] = _rss_mb()

    source = io.BufferedReader(_Source(_lines(count, seed)))
    summary = run_batch(source, results, errors, workers=workers, chunk_size=64, progress=progress)
    rss["end"] = _rss_mb()

    blank = count // 101
    assert summary.blank_lines == blank
    assert summary.records == count - blank == summary.results + summary.errors
    assert (results.count, errors.count) == (summary.results, summary.errors)
    expected_errors = sum(1 for n in range(1, count + 1) if n % 101 and (n % 97 == 0 or n % 89 == 0))
    assert summary.errors == expected_errors
    # every non-blank line number exactly once, blank ones never: no lost and no doubled case
    assert all(seen[n] == (0 if n % 101 == 0 else 1) for n in range(1, count + 1))
    return rss["at_10k"], rss["end"]


def test_soak_in_one_process_no_leak_no_lost_case() -> None:
    at_10k, end = _soak(30_000, workers=1, seed=81)
    assert end - at_10k <= 5.0, f"RSS grew {end - at_10k:.1f} MB from 10k to 30k cases"


def test_soak_across_processes_no_lost_case_and_a_flat_parent() -> None:
    at_10k, end = _soak(15_000, workers=2, seed=82)
    assert end - at_10k <= 5.0, f"parent RSS grew {end - at_10k:.1f} MB from 10k to 15k cases"
