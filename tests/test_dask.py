"""secondopinion.dask on a LocalCluster with two worker processes: the same advice as one by one."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import pytest
from casegen import random_cases

pytest.importorskip("distributed", reason="needs the dask extra: pip install -e '.[dev,dask]'")

import dask
import dask.bag as db
import dask.dataframe as dd
import pandas as pd
from distributed import Client, LocalCluster

import secondopinion
from secondopinion import batch
from secondopinion.batch import RecordError
from secondopinion.dask import ADVICE_COLUMNS, advise_bag, advise_dataframe, worker_environment

pytestmark = pytest.mark.slow

BAD = {"diagnosis": {"seriousness": "very"}}


@pytest.fixture(scope="module")
def client() -> Iterator[Client]:
    # Nannies copy their worker settings into this process's environment: simulate an
    # earlier cluster having done so, which worker_environment() must see through.
    previous = os.environ.get("MALLOC_TRIM_THRESHOLD_")
    os.environ["MALLOC_TRIM_THRESHOLD_"] = "65536"
    try:
        with worker_environment():
            cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
        assert os.environ["MALLOC_TRIM_THRESHOLD_"] == "65536"  # put back after the block
    finally:
        if previous is None:
            os.environ.pop("MALLOC_TRIM_THRESHOLD_", None)
        else:
            os.environ["MALLOC_TRIM_THRESHOLD_"] = previous
    with cluster, Client(cluster) as c:
        yield c


def test_workers_start_without_dasks_malloc_trim_setting(client: Client) -> None:
    # dask sets MALLOC_TRIM_THRESHOLD_=65536 for workers, which makes engine sessions 2-3x slower.
    assert dask.config.get("distributed.nanny.pre-spawn-environ")["MALLOC_TRIM_THRESHOLD_"] == 65536
    environ: dict[str, dict[str, str]] = client.run(lambda: dict(os.environ))
    assert len(environ) == 2
    for worker_environ in environ.values():
        assert "MALLOC_TRIM_THRESHOLD_" not in worker_environ
        assert worker_environ["OMP_NUM_THREADS"] == "1"  # the rest of dask's worker settings stay


@pytest.fixture(scope="module")
def cases() -> list[dict[str, Any]]:
    return list(random_cases(300, seed=41, labelled_opinions=False))


def _pids_and_advisors(client: Client) -> dict[str, tuple[int, int]]:
    def probe() -> tuple[int, int]:
        return os.getpid(), batch.advisors_built()

    result: dict[str, tuple[int, int]] = client.run(probe)
    return result


def test_bag_gives_the_sequential_advice_in_order_with_one_advisor_per_worker(
    client: Client, cases: list[dict[str, Any]]
) -> None:
    got = advise_bag(db.from_sequence(cases, npartitions=12)).compute()
    assert got == [secondopinion.advise(c) for c in cases]
    workers = _pids_and_advisors(client)
    assert len(workers) == 2
    assert len({pid for pid, _ in workers.values()}) == 2
    assert all(built == 1 for _, built in workers.values())  # built once per process, not per task


def test_bag_accepts_json_text_and_records_bad_cases_in_place(client: Client, cases: list[dict[str, Any]]) -> None:
    items: list[Any] = [json.dumps(c) for c in cases[:20]]
    items.insert(5, BAD)
    items.insert(11, "not json")
    got = advise_bag(db.from_sequence(items, npartitions=4), on_error="record").compute()
    assert isinstance(got[5], RecordError) and got[5].kind == "invalid_case"
    assert got[5].problems == (
        "invalid value, expected Seriousness"
        " (one of: minor, moderate, serious, life_threatening, unknown) @ $.diagnosis.seriousness",
    )
    assert isinstance(got[11], RecordError) and got[11].kind == "invalid_case"
    good = [g for i, g in enumerate(got) if i not in (5, 11)]
    assert good == [secondopinion.advise(c) for c in cases[:20]]


def test_bag_raises_case_error_on_a_bad_case_by_default(client: Client) -> None:
    with pytest.raises(secondopinion.CaseError):
        advise_bag(db.from_sequence([{}, BAD, {}], npartitions=2)).compute()


def test_bag_refuses_an_unknown_error_mode() -> None:
    with pytest.raises(ValueError, match="on_error"):
        advise_bag(db.from_sequence([{}]), on_error="ignore")  # type: ignore[arg-type]


def test_dataframe_adds_advice_kinds_and_error_columns(client: Client, cases: list[dict[str, Any]]) -> None:
    texts = [json.dumps(c) for c in cases[:60]]
    texts[7] = json.dumps(BAD)
    frame = pd.DataFrame({"member": [f"m{i}" for i in range(60)], "case": texts})
    result = advise_dataframe(dd.from_pandas(frame, npartitions=5)).compute()
    assert list(result.columns) == ["member", "case", *ADVICE_COLUMNS]
    assert list(result["member"]) == list(frame["member"])
    for i, text in enumerate(texts):
        row = result.iloc[i]
        if i == 7:
            assert pd.isna(row["advice"]) and pd.isna(row["kinds"])
            assert json.loads(row["error"])["error"] == "invalid_case"
            continue
        expected = secondopinion.advise(text)
        assert pd.isna(row["error"])
        assert secondopinion.Advice.from_json(row["advice"]) == expected
        assert row["kinds"] == ",".join(expected.kinds)


def test_dataframe_needs_the_case_column() -> None:
    frame = dd.from_pandas(pd.DataFrame({"other": ["{}"]}), npartitions=1)
    with pytest.raises(KeyError, match="case"):
        advise_dataframe(frame)
