"""Advice for many cases at once: JSON Lines in, JSON Lines out, across processes.

For population screening (a health plan advising on every member's case
overnight). :func:`run_batch` reads one record per line and writes, in input
order, one result line per good record and one error line per bad record, so
that records in = results + errors, always. It streams: memory stays flat
however long the input is (a bounded number of chunks is in flight, and a line
longer than :data:`MAX_LINE_BYTES` is skipped unread and reported; a FHIR
Bundle line, up to :data:`MAX_BUNDLE_LINE_BYTES`).

A record is either a case (a JSON object, see :func:`secondopinion.load_case`),
a FHIR Bundle (a JSON object with ``"resourceType": "Bundle"``, one patient's
data as Synthea writes it; needs the ``fhir`` extra), or an envelope
``{"id": "member-17", "case": {...}}`` around either, whose ``id`` (text or a
whole number) is copied to the result. Blank lines are not records; they are
skipped and counted.

A Bundle is mapped with :func:`secondopinion.fhir.case_from_bundle` in the
worker (which imports :mod:`secondopinion.fhir` only when it meets one), with
the FHIR version and the day ages and days are counted from given once per run
(:class:`BundleSpec`), so every record of a run counts from the same day. A
Bundle with several patients is a bad record: a batch advises on one patient
per Bundle.

Result lines: ``{"line": 3, "id": ..., "advice": {...Advice.to_dict()...}}``;
for a Bundle, one more key, ``"fhir": {"mapped": N, "not_used": M}``: how many
case fields the mapping filled and how many FHIR items it did not use (counts
only; ``secondopinion advise BUNDLE --mapping`` shows the paths).
Error lines: ``{"line": 4, "id": ..., "error": KIND, "message": ..., "problems": [...]}``
with ``KIND`` one of :data:`ERROR_KINDS`. Messages name positions and field
paths, never a value from the case.

Parallel runs use a pool of worker processes: durable's engine state is per
process, and one engine serialises its sessions, so processes (not threads)
are what scale. On Linux, a process running no other thread builds its
:class:`~secondopinion.advisor.Advisor` once and forks the workers, which start
with it; otherwise (other systems, threaded apps) each worker is spawned and
builds its own once, in its initializer (``run_batch(start_method=...)``).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import re
import signal
import sys
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from multiprocessing import get_context
from pathlib import Path
from typing import IO, Any, Final, Literal

import attrs
import orjson

from .advisor import Advisor, default_advisor
from .case import MAX_BUNDLE_BYTES, CaseError, is_fhir_resource, loads, names_a_bundle
from .engine import EngineError
from .recommendations import Advice
from .rulebook import Rulebook

__all__ = [
    "ERROR_KINDS",
    "MAX_BUNDLE_LINE_BYTES",
    "MAX_LINE_BYTES",
    "PARTIAL_SUFFIX",
    "AdvisorSpec",
    "BatchError",
    "BatchSummary",
    "BundleSpec",
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
    "same_file",
]

MAX_LINE_BYTES: Final = 1 << 20
"""Longest input line read, in bytes (1 MiB); a longer line is an error record, never held in memory."""

MAX_BUNDLE_LINE_BYTES: Final = MAX_BUNDLE_BYTES
"""Longest line read when its first :data:`MAX_LINE_BYTES` name a FHIR Bundle:
:data:`~secondopinion.case.MAX_BUNDLE_BYTES`, as ``advise`` reads a Bundle file."""

CHUNK_BYTES: Final = 8 << 20
"""A chunk closes once its lines hold this many bytes (or ``chunk_size`` lines), so big Bundles travel few at a time."""

_BUNDLE_TOO_LONG: Final = b"\n(a FHIR Bundle line longer than MAX_BUNDLE_LINE_BYTES)"
"""Stands for such a line in a chunk: it holds a newline, so no line read can equal it."""

MAX_ID_LENGTH: Final = 200
"""Longest record id, in characters."""

ERROR_KINDS: Final = (
    "line_too_long",
    "invalid_utf8",
    "invalid_json",
    "invalid_record",
    "invalid_case",
    "engine_error",
    "fhir_error",
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
    complete: bool = True
    """False when the run was stopped early (``stop``): the outputs hold a prefix of the input."""
    resumed: int = 0
    """Records taken over from an interrupted run's partial files (``resume=True``); counted in ``records``."""


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


FhirVersion = Literal["R4B", "R5"]

StartMethod = Literal["fork", "spawn"]
"""How batch worker processes start (see :func:`run_batch`)."""


def _auto_start_method() -> StartMethod:
    """``fork`` on Linux while this process runs only the calling thread; ``spawn`` otherwise.

    Forking copies the built advisor, so workers start at once; with another thread running,
    a lock it holds would be copied held, so a threaded process spawns. macOS and Windows spawn.
    """
    if sys.platform.startswith("linux") and threading.active_count() == 1:
        return "fork"
    return "spawn"


@attrs.frozen
class BundleSpec:
    """How the records that are FHIR Bundles are read: the FHIR version, and the day ages and days count from.

    Made once per run (``today`` defaults to the day it is made) and handed to every worker, so
    every record of a run counts from the same day.
    """

    today: dt.date = attrs.field(factory=dt.date.today)
    fhir_version: FhirVersion = attrs.field(default="R4B", validator=attrs.validators.in_(("R4B", "R5")))


# --------------------------------------------------------------------------- one record


def _dumps(obj: Any) -> str:
    """One output line: compact JSON, UTF-8 as is (orjson: the text ``json.dumps`` writes with
    ``ensure_ascii=False`` and no spaces, for the strings, integers and lists advice holds)."""
    return orjson.dumps(obj).decode()


def _parse(raw: bytes | None) -> Any:
    """Bytes of one line to JSON data, or a RecordError."""
    if raw is None:
        return RecordError("line_too_long", "line is longer than the limit (MAX_LINE_BYTES)")
    if raw == _BUNDLE_TOO_LONG:
        return RecordError("line_too_long", "a FHIR Bundle line longer than the limit (MAX_BUNDLE_LINE_BYTES)")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return RecordError("invalid_utf8", f"not valid UTF-8 at byte {exc.start + 1}")
    try:
        data, repeated = loads(text)  # the same rule as load_case: a key repeated in one object is refused
    except json.JSONDecodeError as exc:
        return RecordError("invalid_json", f"not valid JSON at column {exc.colno}")
    except ValueError:  # e.g. an integer with more digits than Python converts
        return RecordError("invalid_json", "not valid JSON: a number is too long")
    except RecursionError:
        return RecordError("invalid_json", "JSON nested too deeply")
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


FHIR_EXTRA_MISSING: Final = 'a FHIR Bundle needs the fhir extra: pip install "secondopinion[fhir]"'


def _case_from_fhir(data: dict[str, Any], bundles: BundleSpec) -> tuple[Any, dict[str, int]] | RecordError:
    """A Bundle record mapped to (case, ``{"mapped": N, "not_used": M}``), or the RecordError saying why not.

    Messages and problems name FHIR paths, never a value (not even an unknown ``resourceType``).
    """
    if data["resourceType"] != "Bundle":
        return RecordError("fhir_error", "a FHIR resource, not a Bundle: FHIR data is read in a Bundle")
    try:
        from . import fhir  # only in a process that meets a Bundle: case records never pay for it
    except ImportError:
        return RecordError("fhir_error", FHIR_EXTRA_MISSING)
    try:
        got = fhir.case_from_bundle(data, fhir_version=bundles.fhir_version, today=bundles.today)
    except fhir.PatientDeceased as exc:  # valid FHIR: say what it is, not "invalid"
        return RecordError("fhir_error", exc.REASON, exc.problems)
    except fhir.FhirError as exc:
        return RecordError("fhir_error", f"invalid FHIR data ({len(exc.problems)} problem(s))", exc.problems)
    except Exception as exc:
        return record_error(exc)
    if got.patient is None and len(got.patients) > 1:
        return RecordError(
            "fhir_error",
            f"the Bundle holds {len(got.patients)} patients ({got.patients_named()}): "
            "a batch advises on one patient per Bundle",
            got.patients,
        )
    return got.case, {"mapped": len(got.mapped), "not_used": len(got.unmapped)}


def _advise_one(
    advisor: Advisor, raw: bytes | None, bundles: BundleSpec | None
) -> tuple[Any, dict[str, Any] | RecordError, dict[str, int] | None]:
    """(record id or None, ``Advice.to_dict()`` or a RecordError, the FHIR mapping counts or None)."""
    data = _parse(raw)
    if isinstance(data, RecordError):
        return None, data, None
    unwrapped = _unwrap(data)
    if isinstance(unwrapped, RecordError):
        return None, unwrapped, None
    record_id, case = unwrapped
    counts = None
    if is_fhir_resource(case):
        mapped = _case_from_fhir(case, bundles or BundleSpec())
        if isinstance(mapped, RecordError):
            return record_id, mapped, None
        case, counts = mapped
    result = advise_or_error(advisor, case)
    if isinstance(result, RecordError):
        return record_id, result, None
    try:
        return record_id, result.to_dict(), counts
    except Exception as exc:
        return record_id, record_error(exc), None


def advise_record(
    advisor: Advisor, raw: bytes | None, bundles: BundleSpec | None = None
) -> tuple[Any, dict[str, Any] | RecordError]:
    """Advise on one raw input line: (record id or None, ``Advice.to_dict()`` or a RecordError).

    A FHIR Bundle is mapped as ``bundles`` says (default: R4B, counted from today). Never
    raises for a bad record: every failure becomes a RecordError whose message holds no
    value from the case.
    """
    record_id, result, _ = _advise_one(advisor, raw, bundles)
    return record_id, result


def _advise_chunk_with(
    advisor: Advisor, chunk: Sequence[tuple[int, bytes | None]], bundles: BundleSpec | None = None
) -> list[tuple[bool, str]]:
    out: list[tuple[bool, str]] = []
    for line, raw in chunk:
        record_id, result, counts = _advise_one(advisor, raw, bundles)
        head: dict[str, Any] = {"line": line}
        if record_id is not None:
            head["id"] = record_id
        if isinstance(result, RecordError):
            out.append((False, _dumps({**head, **result.to_dict()})))
        elif counts is None:
            out.append((True, _dumps({**head, "advice": result})))
        else:
            out.append((True, _dumps({**head, "advice": result, "fhir": counts})))
    return out


_worker_spec: AdvisorSpec | None = None
_worker_bundles: BundleSpec | None = None


def _die_with_parent(parent: int) -> None:
    """Ask Linux to kill this process when its parent dies (even by SIGKILL); no-op elsewhere."""
    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1
        with contextlib.suppress(OSError, AttributeError):  # no prctl: nothing to ask for
            ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, int(signal.SIGKILL), 0, 0, 0)
    if os.getppid() != parent:  # the parent died before the request took effect
        os._exit(1)


def _init_worker(spec: AdvisorSpec, parent: int | None = None, bundles: BundleSpec | None = None) -> None:
    """Pool initializer: die with the parent, leave Ctrl-C to it, build this worker's advisor once
    (a forked worker has its parent's already)."""
    global _worker_spec, _worker_bundles
    if parent is not None:
        _die_with_parent(parent)
    # Ctrl-C reaches the whole process group: the parent stops the run cleanly, workers finish their chunk.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # A forked worker inherits the parent's SIGTERM handler (the CLI's sets a stop flag): the pool
    # ends a broken worker with SIGTERM, which must end it.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    _worker_spec = spec
    _worker_bundles = bundles
    advisor_for(spec)


def _advise_chunk(chunk: Sequence[tuple[int, bytes | None]]) -> list[tuple[bool, str]]:
    """Pool task: advise on a chunk of lines with this worker's advisor."""
    assert _worker_spec is not None, "worker not initialised"
    return _advise_chunk_with(advisor_for(_worker_spec), chunk, _worker_bundles)


# --------------------------------------------------------------------------- streams


def read_records(
    stream: IO[bytes], *, max_line_bytes: int = MAX_LINE_BYTES, max_bundle_bytes: int = MAX_BUNDLE_LINE_BYTES
) -> Iterator[tuple[int, bytes | None, int]]:
    """Yield ``(line number, line bytes or None if too long, bytes consumed)`` for every line.

    Line numbers count from 1 and include blank lines. A line longer than
    ``max_line_bytes`` is consumed piece by piece and never held whole, unless
    its first ``max_line_bytes`` hold ``"resourceType": "Bundle"``: such a line
    (a FHIR Bundle, or an envelope around one) is read up to ``max_bundle_bytes``.
    A UTF-8 byte-order mark at the start of the first line is dropped.
    """
    number = 0
    while True:
        line = stream.readline(max_line_bytes + 1)
        if not line:
            return
        number += 1
        consumed = len(line)
        limit, too_long = max_line_bytes, None
        if len(line) > limit and not line.endswith(b"\n"):
            if max_bundle_bytes > max_line_bytes and names_a_bundle(line):  # a Bundle: read on, to its limit
                limit, too_long = max_bundle_bytes, _BUNDLE_TOO_LONG
                line += stream.readline(max_bundle_bytes - len(line) + 1)
                consumed = len(line)
            if len(line) > limit and not line.endswith(b"\n"):
                while True:
                    rest = stream.readline(max_line_bytes)
                    consumed += len(rest)
                    if not rest or rest.endswith(b"\n"):
                        break
                yield number, too_long, consumed
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
    resumed: int = 0


def _chunks(
    lines: Iterable[tuple[int, bytes | None, int]], size: int, counts: _Counts, max_bytes: int = CHUNK_BYTES
) -> Iterator[tuple[list[tuple[int, bytes | None]], int]]:
    """Group non-blank lines into chunks of ``size`` lines or ``max_bytes`` bytes; yield each with the input
    bytes it covers."""
    chunk: list[tuple[int, bytes | None]] = []
    covered = held = 0
    for number, raw, consumed in lines:
        covered += consumed
        if raw is not None and not raw.strip():
            counts.blank += 1
            continue
        chunk.append((number, raw))
        held += len(raw or b"")
        if len(chunk) >= size or held >= max_bytes:
            yield chunk, covered
            chunk, covered, held = [], 0, 0
    if chunk or covered:
        yield chunk, covered


def run_batch(
    source: IO[bytes],
    out: IO[str],
    errors: IO[str],
    *,
    workers: int | None = None,
    spec: AdvisorSpec | None = None,
    bundles: BundleSpec | None = None,
    chunk_size: int = 128,
    progress: ProgressFn | None = None,
    max_line_bytes: int = MAX_LINE_BYTES,
    max_bundle_bytes: int = MAX_BUNDLE_LINE_BYTES,
    stop: threading.Event | None = None,
    skip: Callable[[Iterator[tuple[int, bytes | None, int]], _Counts], Iterator[tuple[int, bytes | None, int]]]
    | None = None,
    start_method: StartMethod | Literal["auto"] = "auto",
) -> BatchSummary:
    """Advise on every record of a JSON Lines stream; write results to ``out``, bad records to ``errors``.

    ``workers``: processes to use (default: every available core; 1 runs in
    this process). ``spec``: which rules (default: the shipped ones).
    ``bundles``: how records that are FHIR Bundles are read (default: R4B, ages
    and days counted from the day the run starts, the same for every record).
    Output keeps input order. A line longer than ``max_line_bytes`` is an error
    record, unless it is a FHIR Bundle of at most ``max_bundle_bytes``; a chunk
    holds ``chunk_size`` lines or :data:`CHUNK_BYTES`. ``stop``: once set (by a signal handler, say), the run
    ends after the chunks in flight are written; the summary then says
    ``complete=False``, and ``records == results + errors`` still holds for what
    was written. Raises RuleFileError for bad rule packs (before reading any
    input) and :class:`BatchError` if a worker process dies.

    ``start_method``: how worker processes start. ``"spawn"``: each imports the
    package and builds its own advisor (about half a second). ``"fork"``: this
    process builds the advisor once and the workers are copies of it that start
    at once; safe only while this process runs no other thread. ``"auto"`` (the
    default) forks on Linux when the calling process has one thread, and spawns
    otherwise (other systems, threaded apps, a progress bar already running).
    """
    spec = spec or AdvisorSpec()
    bundles = bundles or BundleSpec()  # one day for the whole run, even across midnight
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
        out.flush()  # each chunk reaches the file whole: a killed run loses at most what is in flight
        errors.flush()
        if progress is not None:
            progress(counts.records, counts.bytes)

    lines = read_records(source, max_line_bytes=max_line_bytes, max_bundle_bytes=max_bundle_bytes)
    if skip is not None:
        lines = skip(lines, counts)
    chunks = _chunks(lines, chunk_size, counts)
    stopped = stop if stop is not None else threading.Event()
    if workers == 1:
        advisor = advisor_for(spec)
        for chunk, covered in chunks:
            emit(_advise_chunk_with(advisor, chunk, bundles), covered)
            if stopped.is_set():
                break
    else:
        method = start_method if start_method != "auto" else _auto_start_method()
        if method == "fork":
            advisor_for(spec)  # built once here; the forked workers start with it
            for stream in (out, errors, sys.stdout, sys.stderr):
                stream.flush()  # nothing buffered before the fork may be written twice
        elif spec.rules:
            spec.build()  # bad rule packs fail here, once, rather than in every worker
        _run_parallel(chunks, workers, spec, bundles, emit, stopped, method)
    complete = not stopped.is_set() or next(chunks, None) is None
    return BatchSummary(counts.records, counts.results, counts.errors, counts.blank, complete, counts.resumed)


def _run_parallel(
    chunks: Iterator[tuple[list[tuple[int, bytes | None]], int]],
    workers: int,
    spec: AdvisorSpec,
    bundles: BundleSpec,
    emit: Callable[[list[tuple[bool, str]], int], None],
    stop: threading.Event,
    method: StartMethod = "spawn",
) -> None:
    """Feed chunks to a process pool with a bounded window; emit results in input order.

    Once ``stop`` is set no chunk is submitted; those in flight are still written, in order.
    """
    window = 4 * workers
    pool = ProcessPoolExecutor(
        max_workers=workers,
        mp_context=get_context(method),
        initializer=_init_worker,
        initargs=(spec, os.getpid(), bundles),
    )
    pending: deque[tuple[Future[list[tuple[bool, str]]], int]] = deque()
    try:
        for chunk, covered in chunks:
            pending.append((pool.submit(_advise_chunk, chunk), covered))
            if len(pending) >= window:
                future, done = pending.popleft()
                emit(future.result(), done)
            if stop.is_set():
                break
        while pending:
            future, done = pending.popleft()
            emit(future.result(), done)
    except BrokenProcessPool:
        raise BatchError("a worker process stopped unexpectedly; the output is incomplete") from None
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


PARTIAL_SUFFIX: Final = ".partial"
"""Outputs are written to ``NAME.partial`` and renamed to ``NAME`` once the run is complete."""


def same_file(a: Path, b: Path) -> bool:
    """Whether two paths name one file (through symbolic and hard links too); ``-`` is never a file."""
    if str(a) == "-" or str(b) == "-":
        return False
    try:
        return os.path.samefile(a, b)
    except OSError:  # one does not exist (yet): compare where the paths lead
        return a.resolve() == b.resolve()


_RECORD_LINE = re.compile(rb'\{"line":(\d+)[,}]')


def _written(path: Path) -> Iterator[tuple[int, int]]:
    """(input line, end offset) of every complete record of a partial output file, in file order."""
    offset = 0
    with path.open("rb") as stream:
        for raw in stream:
            match = _RECORD_LINE.match(raw)
            if not raw.endswith(b"\n") or match is None:
                return  # a torn last line (the run was killed while writing it)
            offset += len(raw)
            yield int(match.group(1)), offset


class _Resume:
    """Skips the input records an interrupted run wrote completely, and cuts both partial files to them.

    The two files are written in input order but flushed separately, so a killed run may leave
    one ahead of the other: only the prefix of input records found in one file or the other is
    kept (``records == results + errors`` for it), and the run continues after it.
    """

    def __init__(self, out: Path, errors: Path) -> None:
        self.files = (out, errors)
        self.kept = [0, 0]
        self.ends = [0, 0]

    def __call__(
        self, lines: Iterator[tuple[int, bytes | None, int]], counts: _Counts
    ) -> Iterator[tuple[int, bytes | None, int]]:
        readers = [_written(path) if path.exists() else iter(()) for path in self.files]
        heads = [next(reader, None) for reader in readers]
        for number, raw, consumed in lines:
            if raw is not None and not raw.strip():
                counts.blank += 1
                counts.bytes += consumed
                continue
            which = next((i for i, head in enumerate(heads) if head is not None and head[0] == number), None)
            if which is None:  # the first record not written: continue from here
                self._cut()
                yield number, raw, consumed
                break
            self.kept[which] += 1
            self.ends[which] = heads[which][1]  # type: ignore[index]
            heads[which] = next(readers[which], None)
            counts.bytes += consumed
            counts.records += 1
            counts.resumed += 1
            if which == 0:
                counts.results += 1
            else:
                counts.errors += 1
        else:
            self._cut()
        yield from lines

    def _cut(self) -> None:
        for path, end in zip(self.files, self.ends, strict=True):
            with path.open("ab") as stream:
                stream.truncate(end)


def batch_files(
    source: Path,
    out: Path,
    errors: Path,
    *,
    workers: int | None = None,
    spec: AdvisorSpec | None = None,
    bundles: BundleSpec | None = None,
    chunk_size: int = 128,
    progress: ProgressFn | None = None,
    stop: threading.Event | None = None,
    resume: bool = False,
    start_method: StartMethod | Literal["auto"] = "auto",
) -> BatchSummary:
    """:func:`run_batch` on files (``-`` reads standard input / writes standard output).

    Output files are written as ``NAME.partial`` and renamed to ``NAME`` only when the run is
    complete, so a crash, a kill or a full disk never leaves a half-written file under the final
    name. A run stopped early (``stop``, a signal, a crash) leaves its ``.partial`` files;
    ``resume=True`` continues from the records they hold completely (same input, same options;
    give ``bundles`` the first run's day so FHIR Bundle records count from it too).
    An output that is the input file (also through a link) is refused with :class:`BatchError`
    before anything is opened for writing.
    """
    if resume and "-" in (str(out), str(errors), str(source)):
        raise BatchError("resuming needs an input file and output files (not -)")
    partial_out, partial_errors = (_partial(out), _partial(errors))
    for target in (out, errors, partial_out, partial_errors):
        if same_file(source, target):
            raise BatchError(f"an output file is the input file: {target}")
    skip = None
    if resume:
        skip = _Resume(partial_out, partial_errors)
    with (
        _open_in(source, sys.stdin.buffer) as src,
        _open_out(partial_out, sys.stdout, append=resume) as dst,
        _open_out(partial_errors, sys.stdout, append=resume) as err,
    ):
        summary = run_batch(
            src,
            dst,
            err,
            workers=workers,
            spec=spec,
            bundles=bundles,
            chunk_size=chunk_size,
            progress=progress,
            stop=stop,
            skip=skip,
            start_method=start_method,
        )
        if summary.complete:
            for path, final, stream in ((partial_out, out, dst), (partial_errors, errors, err)):
                stream.flush()
                if path != final:
                    os.fsync(stream.fileno())  # on disk before the rename makes it look complete
    if summary.complete:
        for partial, final in ((partial_out, out), (partial_errors, errors)):
            if partial != final:
                os.replace(partial, final)
    return summary


def _partial(path: Path) -> Path:
    """Where an output is written until complete: ``NAME.partial``, or the path itself for ``-``
    and for what is not a regular file (``/dev/null``, a pipe), which cannot be renamed into."""
    if str(path) == "-" or (path.exists() and not path.is_file()):
        return path
    return path.with_name(path.name + PARTIAL_SUFFIX)


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


def _open_out(path: Path, stdout: IO[str], *, append: bool = False) -> Any:
    if str(path) == "-":
        return _Borrowed(stdout)
    return path.open("a" if append else "w", encoding="utf-8", newline="\n")


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
        self._started = False

    def __enter__(self) -> TerminalProgress:
        # The bar (and its refresh thread) starts with the first chunk written: by then the
        # batch's workers have started, and a process with no other thread may fork them.
        return self

    def __exit__(self, *exc: object) -> None:
        if self._started:
            self._progress.stop()

    def __call__(self, records: int, consumed: int) -> None:
        if not self._started:
            self._started = True
            self._progress.start()
        self._progress.update(self._task, completed=consumed, records=records)
