"""Advice over dask collections: a bag of cases, or a dataframe with a column of cases.

For population screening on a cluster. Each worker process builds one
:class:`~secondopinion.advisor.Advisor` on first use (see
:func:`secondopinion.batch.advisor_for`) and keeps it, so the rule base is
loaded and compiled once per process, not once per task. Results are the same
as advising on the cases one by one, in the same order. Needs the ``dask``
extra: ``pip install "secondopinion[dask]"``::

    import dask
    import dask.bag as db
    from distributed import Client, LocalCluster
    from secondopinion.dask import advise_bag, worker_environment

    with worker_environment():
        cluster = LocalCluster(n_workers=2, threads_per_worker=1)
    client = Client(cluster)
    advice = advise_bag(db.from_sequence(cases, npartitions=16)).compute()

Speed: dask's nanny starts workers with ``MALLOC_TRIM_THRESHOLD_=65536``; with
that setting advice runs 2 to 3 times slower in the workers.
:func:`worker_environment` leaves glibc's default in place. Keep results on the
workers where you can (write them out, or reduce them): shipping every Advice
back to the client costs more than computing it.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterable, Iterator, Sequence
from os import PathLike
from typing import Any, Literal

import dask
import dask.bag as db
import dask.dataframe as dd
import pandas as pd

from .batch import AdvisorSpec, RecordError, advise_or_error, advisor_for
from .recommendations import Advice

__all__ = ["ADVICE_COLUMNS", "advise_bag", "advise_dataframe", "worker_environment"]

ADVICE_COLUMNS = ("advice", "kinds", "error")
"""Columns :func:`advise_dataframe` adds: the Advice as JSON text, its kinds (comma-separated), the error."""

OnError = Literal["raise", "record"]

_TRIM = "MALLOC_TRIM_THRESHOLD_"


@contextlib.contextmanager
def worker_environment() -> Iterator[None]:
    """Start dask workers inside this block to keep glibc's default memory trimming in them.

    dask's nanny gives workers ``MALLOC_TRIM_THRESHOLD_=65536``; with any explicit
    trim threshold glibc stops adapting its thresholds and advice runs 2 to 3
    times slower (each rule-engine session's memory apparently goes back to the
    operating system and is faulted in again). Inside
    the block the nanny's setting is unset (``None``, as distributed documents)
    and the variable is kept out of this process's environment, where an earlier
    nanny may have left it (nannies copy their worker settings into the
    environment of the process that starts them); it is put back afterwards.
    Workers started later (a restart, ``cluster.scale``) do not get this.
    """
    import distributed  # noqa: F401 - loads distributed's configuration defaults

    saved = os.environ.pop(_TRIM, None)
    try:
        with dask.config.set({f"distributed.nanny.pre-spawn-environ.{_TRIM}": None}):
            yield
    finally:
        os.environ.pop(_TRIM, None)
        if saved is not None:
            os.environ[_TRIM] = saved


def _spec(rules: Sequence[str | PathLike[str]], include_drafts: bool) -> AdvisorSpec:
    return AdvisorSpec(tuple(str(r) for r in rules), include_drafts)


def _advise_partition(cases: Iterable[Any], spec: AdvisorSpec, on_error: OnError) -> list[Advice | RecordError]:
    """Advise on one partition with this process's advisor."""
    advisor = advisor_for(spec)
    if on_error == "raise":
        return [advisor.advise(case) for case in cases]
    return [advise_or_error(advisor, case) for case in cases]


def advise_bag(
    bag: db.Bag,
    *,
    rules: Sequence[str | PathLike[str]] = (),
    include_drafts: bool = False,
    on_error: OnError = "raise",
) -> db.Bag:
    """A bag of :class:`~secondopinion.Advice`, one per case of ``bag`` (Case, mapping or JSON text).

    ``rules``: extra rule packs beside the shipped rules (paths every worker can
    read). ``on_error="raise"`` fails the computation on the first bad case (a
    CaseError); ``"record"`` puts a :class:`~secondopinion.batch.RecordError`
    in that case's place instead.
    """
    if on_error not in ("raise", "record"):
        raise ValueError("on_error must be 'raise' or 'record'")
    map_partitions: Any = bag.map_partitions
    result: db.Bag = map_partitions(_advise_partition, _spec(rules, include_drafts), on_error)
    return result


def _advise_frame(frame: pd.DataFrame, column: str, spec: AdvisorSpec) -> pd.DataFrame:
    """Add the advice columns to one pandas partition."""
    advice: list[str | None] = []
    kinds: list[str | None] = []
    errors: list[str | None] = []
    if len(frame):
        advisor = advisor_for(spec)
        for value in frame[column]:
            result = advise_or_error(advisor, value)
            if isinstance(result, RecordError):
                advice.append(None)
                kinds.append(None)
                errors.append(json.dumps(result.to_dict(), ensure_ascii=False))
            else:
                advice.append(result.to_json(indent=None))
                kinds.append(",".join(result.kinds))
                errors.append(None)
    out = frame.copy()
    for name, values in zip(ADVICE_COLUMNS, (advice, kinds, errors), strict=True):
        out[name] = pd.Series(values, index=frame.index, dtype="string")
    return out


def advise_dataframe(
    df: dd.DataFrame,
    column: str = "case",
    *,
    rules: Sequence[str | PathLike[str]] = (),
    include_drafts: bool = False,
) -> dd.DataFrame:
    """``df`` with the columns of :data:`ADVICE_COLUMNS` added, from the cases in ``column``.

    ``column`` holds one case per row, as JSON text or as a mapping. A bad case
    never fails the computation: its row gets no advice and an ``error`` (JSON
    with the error kind, a safe message and the problems by field path).
    """
    if column not in df.columns:
        raise KeyError(f"no column {column!r}")
    spec = _spec(rules, include_drafts)
    meta = _advise_frame(df._meta, column, spec)
    map_partitions: Any = df.map_partitions
    result: dd.DataFrame = map_partitions(_advise_frame, column, spec, meta=meta)
    return result
