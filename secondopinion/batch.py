"""Advice for many cases at once: JSON Lines in, JSON Lines out, across processes.

For population screening (a health plan advising on every member's case
overnight). :func:`run_batch` reads one record per line and writes, in input
order, one result line per good record and one error line per bad record, so
that records in = results + errors, always. It streams: memory stays flat
however long the input is (a bounded number of chunks is in flight, and a line
longer than :data:`MAX_LINE_BYTES` is skipped unread and reported).

A record is either a case (a JSON object, see :func:`secondopinion.load_case`)
or an envelope ``{"id": "member-17", "case": {...}}`` whose ``id`` (text or a
whole number) is copied to the result. Blank lines are not records; they are
skipped and counted.

Result lines: ``{"line": 3, "id": ..., "advice": {...Advice.to_dict()...}}``.
Error lines: ``{"line": 4, "id": ..., "error": KIND, "message": ..., "problems": [...]}``
with ``KIND`` one of :data:`ERROR_KINDS`. Messages name positions and field
paths, never a value from the case.

Parallel runs use a pool of worker processes (``spawn``), each building its
own :class:`~secondopinion.advisor.Advisor` once, in its initializer: durable's
engine state is per process, and one engine serialises its sessions, so
processes (not threads) are what scale.
"""

from __future__ import annotations

import json
import os
import sys
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from multiprocessing import get_context
from pathlib import Path
from typing import IO, Any, Final

import attrs

from .advisor import Advisor, default_advisor
from .case import CaseError, duplicate_keys, json_object
from .engine import EngineError
from .recommendations import Advice
from .rulebook import Rulebook

__all__ = [
    "ERROR_KINDS",
    "MAX_LINE_BYTES",
    "AdvisorSpec",
    "BatchError",
    "BatchSummary",
    "RecordError",
    "advise_or_error",
    "advise_record",
    "advisor_for",
    "advisors_built",
    "available_cores",
    "batch_files",
    "read_records",
    "record_error",
    "run_batch",
]

MAX_LINE_BYTES: Final = 1 << 20
"""Longest input line read, in bytes (1 MiB); a longer line is an error record, never held in memory."""

MAX_ID_LENGTH: Final = 200
"""Longest record id, in characters."""

ERROR_KINDS: Final = (
    "line_too_long",
    "invalid_utf8",
    "invalid_json",
    "invalid_record",
    "invalid_case",
    "engine_error",
    "internal_error",
)
"""What can be wrong with a record, as named in the errors file."""

_BOM: Final = b"\xef\xbb\xbf"

ProgressFn = Callable[[int, int], None]
"""Called as results are written, with the records done and the input bytes consumed so far."""


class BatchError(Exception):
    """The batch could not go on (a worker process died). Never names a value from a case."""


@attrs.frozen
class BatchSummary:
    """What a batch run did: ``records == results + errors``; blank lines are not records."""

    records: int
    results: int
    errors: int
    blank_lines: int


@attrs.frozen
class RecordError:
    """Why one record got no advice: a kind from :data:`ERROR_KINDS`, a safe message, case problems by path."""

    kind: str
    message: str
    problems: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready form (the fields of an error line, without line and id)."""
        return {"error": self.kind, "message": self.message, "problems": list(self.problems)}


# --------------------------------------------------------------------------- one advisor per process


def _paths(values: Iterable[str | os.PathLike[str]]) -> tuple[str, ...]:
    return tuple(str(v) for v in values)


@attrs.frozen
class AdvisorSpec:
    """How to build an advisor in another process: extra rule packs (paths) and whether drafts run.

    The empty spec means the shipped rules, i.e. :func:`~secondopinion.default_advisor`.
    """

    rules: tuple[str, ...] = attrs.field(default=(), converter=_paths)
    include_drafts: bool = False

    def build(self) -> Advisor:
        """A new advisor for this spec (raises RuleFileError for bad rule packs)."""
        return Advisor(Rulebook.load(*self.rules), include_drafts=self.include_drafts)


_advisors: dict[AdvisorSpec, Advisor] = {}
_advisors_lock = threading.Lock()


def advisor_for(spec: AdvisorSpec) -> Advisor:
    """This process's advisor for ``spec``, built on first use and kept for the life of the process."""
    advisor = _advisors.get(spec)
    if advisor is None:
        with _advisors_lock:
            advisor = _advisors.get(spec)
            if advisor is None:
                advisor = default_advisor() if spec == AdvisorSpec() else spec.build()
                _advisors[spec] = advisor
    return advisor


def advisors_built() -> int:
    """How many advisors this process holds (one per spec used): lets tests check one per worker."""
    return len(_advisors)


# --------------------------------------------------------------------------- one record


def _dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def _parse(raw: bytes | None) -> Any:
    """Bytes of one line to JSON data, or a RecordError."""
    if raw is None:
        return RecordError("line_too_long", "line is longer than the limit (MAX_LINE_BYTES)")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return RecordError("invalid_utf8", f"not valid UTF-8 at byte {exc.start + 1}")
    try:
        data = json.loads(text, object_pairs_hook=json_object)
    except json.JSONDecodeError as exc:
        return RecordError("invalid_json", f"not valid JSON at column {exc.colno}")
    except ValueError:  # e.g. an integer with more digits than Python converts
        return RecordError("invalid_json", "not valid JSON: a number is too long")
    except RecursionError:
        return RecordError("invalid_json", "JSON nested too deeply")
    repeated = duplicate_keys(data)  # the same rule as load_case
    if repeated:
        return RecordError("invalid_case", f"invalid case ({len(repeated)} problem(s))", tuple(repeated))
    return data


def _unwrap(data: Any) -> tuple[Any, Any] | RecordError:
    """Split an envelope ``{"id", "case"}`` into (id, case); anything else is the case itself."""
    if not isinstance(data, dict) or "case" not in data:
        return None, data
    extra = sorted(k for k in data if k not in ("id", "case"))
    if extra:
        return RecordError("invalid_record", "unknown envelope key(s) beside 'id' and 'case': " + ", ".join(extra))
    record_id = data.get("id")
    if record_id is not None and (
        isinstance(record_id, bool) or not isinstance(record_id, str | int) or len(str(record_id)) > MAX_ID_LENGTH
    ):
        return RecordError(
            "invalid_record", f"'id' must be text or a whole number of at most {MAX_ID_LENGTH} characters"
        )
    return record_id, data["case"]


def record_error(exc: Exception) -> RecordError:
    """The RecordError for an exception raised while advising on one case (no value from the case in it)."""
    if isinstance(exc, CaseError):
        return RecordError("invalid_case", f"invalid case ({len(exc.problems)} problem(s))", exc.problems)
    if isinstance(exc, EngineError):  # its messages name rules and attributes, never values
        return RecordError("engine_error", str(exc))
    return RecordError("internal_error", f"unexpected {type(exc).__name__}")


def advise_or_error(advisor: Advisor, case: Any) -> Advice | RecordError:
    """Advice on one case, or the RecordError saying why there is none; never raises for a bad case."""
    try:
        return advisor.advise(case)
    except Exception as exc:  # a bad record must never stop a batch
        return record_error(exc)


def advise_record(advisor: Advisor, raw: bytes | None) -> tuple[Any, dict[str, Any] | RecordError]:
    """Advise on one raw input line: (record id or None, ``Advice.to_dict()`` or a RecordError).

    Never raises for a bad record: every failure becomes a RecordError whose
    message holds no value from the case.
    """
    data = _parse(raw)
    if isinstance(data, RecordError):
        return None, data
    unwrapped = _unwrap(data)
    if isinstance(unwrapped, RecordError):
        return None, unwrapped
    record_id, case = unwrapped
    result = advise_or_error(advisor, case)
    if isinstance(result, RecordError):
        return record_id, result
    try:
        return record_id, result.to_dict()
    except Exception as exc:
        return record_id, record_error(exc)


def _advise_chunk_with(advisor: Advisor, chunk: Sequence[tuple[int, bytes | None]]) -> list[tuple[bool, str]]:
    out: list[tuple[bool, str]] = []
    for line, raw in chunk:
        record_id, result = advise_record(advisor, raw)
        head: dict[str, Any] = {"line": line}
        if record_id is not None:
            head["id"] = record_id
        if isinstance(result, RecordError):
            out.append((False, _dumps({**head, **result.to_dict()})))
        else:
            out.append((True, _dumps({**head, "advice": result})))
    return out


_worker_spec: AdvisorSpec | None = None


def _init_worker(spec: AdvisorSpec) -> None:
    """Pool initializer: build this worker's advisor once."""
    global _worker_spec
    _worker_spec = spec
    advisor_for(spec)


def _advise_chunk(chunk: Sequence[tuple[int, bytes | None]]) -> list[tuple[bool, str]]:
    """Pool task: advise on a chunk of lines with this worker's advisor."""
    assert _worker_spec is not None, "worker not initialised"
    return _advise_chunk_with(advisor_for(_worker_spec), chunk)


# --------------------------------------------------------------------------- streams


def read_records(stream: IO[bytes], *, max_line_bytes: int = MAX_LINE_BYTES) -> Iterator[tuple[int, bytes | None, int]]:
    """Yield ``(line number, line bytes or None if too long, bytes consumed)`` for every line.

    Line numbers count from 1 and include blank lines. A line longer than
    ``max_line_bytes`` is consumed piece by piece and never held whole. A
    UTF-8 byte-order mark at the start of the first line is dropped.
    """
    number = 0
    while True:
        line = stream.readline(max_line_bytes + 1)
        if not line:
            return
        number += 1
        consumed = len(line)
        if len(line) > max_line_bytes and not line.endswith(b"\n"):
            while True:
                rest = stream.readline(max_line_bytes)
                consumed += len(rest)
                if not rest or rest.endswith(b"\n"):
                    break
            yield number, None, consumed
            continue
        if number == 1 and line.startswith(_BOM):
            line = line[len(_BOM) :]
        yield number, line.rstrip(b"\r\n"), consumed


def available_cores() -> int:
    """Cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


@attrs.define
class _Counts:
    records: int = 0
    results: int = 0
    errors: int = 0
    blank: int = 0
    bytes: int = 0


def _chunks(
    lines: Iterable[tuple[int, bytes | None, int]], size: int, counts: _Counts
) -> Iterator[tuple[list[tuple[int, bytes | None]], int]]:
    """Group non-blank lines into chunks; yield each with the input bytes it covers."""
    chunk: list[tuple[int, bytes | None]] = []
    covered = 0
    for number, raw, consumed in lines:
        covered += consumed
        if raw is not None and not raw.strip():
            counts.blank += 1
            continue
        chunk.append((number, raw))
        if len(chunk) >= size:
            yield chunk, covered
            chunk, covered = [], 0
    if chunk or covered:
        yield chunk, covered


def run_batch(
    source: IO[bytes],
    out: IO[str],
    errors: IO[str],
    *,
    workers: int | None = None,
    spec: AdvisorSpec | None = None,
    chunk_size: int = 128,
    progress: ProgressFn | None = None,
    max_line_bytes: int = MAX_LINE_BYTES,
) -> BatchSummary:
    """Advise on every record of a JSON Lines stream; write results to ``out``, bad records to ``errors``.

    ``workers``: processes to use (default: every available core; 1 runs in
    this process). ``spec``: which rules (default: the shipped ones). Output
    keeps input order. Raises RuleFileError for bad rule packs (before reading
    any input) and :class:`BatchError` if a worker process dies.
    """
    spec = spec or AdvisorSpec()
    workers = available_cores() if workers is None else workers
    if workers < 1:
        raise ValueError("workers must be at least 1")
    if chunk_size < 1:
        raise ValueError("chunk_size must be at least 1")
    counts = _Counts()

    def emit(results: list[tuple[bool, str]], covered: int) -> None:
        for ok, text in results:
            (out if ok else errors).write(text + "\n")
            if ok:
                counts.results += 1
            else:
                counts.errors += 1
        counts.records += len(results)
        counts.bytes += covered
        if progress is not None:
            progress(counts.records, counts.bytes)

    chunks = _chunks(read_records(source, max_line_bytes=max_line_bytes), chunk_size, counts)
    if workers == 1:
        advisor = advisor_for(spec)
        for chunk, covered in chunks:
            emit(_advise_chunk_with(advisor, chunk), covered)
    else:
        if spec.rules:
            spec.build()  # bad rule packs fail here, once, rather than in every worker
        _run_parallel(chunks, workers, spec, emit)
    return BatchSummary(counts.records, counts.results, counts.errors, counts.blank)


def _run_parallel(
    chunks: Iterator[tuple[list[tuple[int, bytes | None]], int]],
    workers: int,
    spec: AdvisorSpec,
    emit: Callable[[list[tuple[bool, str]], int], None],
) -> None:
    """Feed chunks to a process pool with a bounded window; emit results in input order."""
    window = 4 * workers
    pool = ProcessPoolExecutor(
        max_workers=workers, mp_context=get_context("spawn"), initializer=_init_worker, initargs=(spec,)
    )
    pending: deque[tuple[Future[list[tuple[bool, str]]], int]] = deque()
    try:
        for chunk, covered in chunks:
            pending.append((pool.submit(_advise_chunk, chunk), covered))
            if len(pending) >= window:
                future, done = pending.popleft()
                emit(future.result(), done)
        while pending:
            future, done = pending.popleft()
            emit(future.result(), done)
    except BrokenProcessPool:
        raise BatchError("a worker process stopped unexpectedly; the output is incomplete") from None
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def batch_files(
    source: Path,
    out: Path,
    errors: Path,
    *,
    workers: int | None = None,
    spec: AdvisorSpec | None = None,
    chunk_size: int = 128,
    progress: ProgressFn | None = None,
) -> BatchSummary:
    """:func:`run_batch` on files (``-`` reads standard input / writes standard output)."""
    with (
        _open_in(source, sys.stdin.buffer) as src,
        _open_out(out, sys.stdout) as dst,
        _open_out(errors, sys.stdout) as err,
    ):
        return run_batch(src, dst, err, workers=workers, spec=spec, chunk_size=chunk_size, progress=progress)


class _Borrowed:
    """A context manager that hands out a stream it does not close."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream

    def __enter__(self) -> Any:
        return self.stream

    def __exit__(self, *exc: object) -> None:
        self.stream.flush()


def _open_in(path: Path, stdin: IO[bytes]) -> Any:
    return _Borrowed(stdin) if str(path) == "-" else path.open("rb")


def _open_out(path: Path, stdout: IO[str]) -> Any:
    return _Borrowed(stdout) if str(path) == "-" else path.open("w", encoding="utf-8", newline="\n")


class TerminalProgress:
    """A rich progress bar on standard error (by input bytes when the size is known), as a :data:`ProgressFn`."""

    def __init__(self, total_bytes: int | None) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        self._progress = Progress(
            TextColumn("advising"),
            BarColumn(),
            TextColumn("{task.fields[records]} records"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=Console(stderr=True),
            transient=True,
        )
        self._task = self._progress.add_task("batch", total=total_bytes, records=0)

    def __enter__(self) -> TerminalProgress:
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()

    def __call__(self, records: int, consumed: int) -> None:
        self._progress.update(self._task, completed=consumed, records=records)
