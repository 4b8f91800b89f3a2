"""Benchmark of the CDS Hooks service: requests per second at concurrency 1 and 100, over HTTP.

Run from the repository root (needs the service and fhir extras)::

    python tests/benchmarks/bench_service.py            # 2,000 requests per measurement
    python tests/benchmarks/bench_service.py --quick    # 300
    python tests/benchmarks/bench_service.py --requests 1000
    python tests/benchmarks/bench_service.py --json results.json

It starts ``secondopinion serve`` (one uvicorn process) on 127.0.0.1 only, on a
free port, with FHIR fetching off (nothing leaves the machine), and prints:

* in process: ``handle()`` p50 per call against ``advise()`` alone, for a case
  sent as ``context.case``, and ``handle()`` with the rule-link cache cleared
  before every call (what every request paid before the links were resolved once);
* over HTTP: requests per second and latency p50 / p95 at concurrency 1 (one
  keep-alive connection) and at concurrency 100 (100 connections), for a
  ``context.case`` call and for a FHIR prefetch call.

Not collected by pytest (tests/benchmarks/conftest.py ignores this folder); no timing here is a test.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

import secondopinion
from secondopinion import cds_hooks

ROOT = Path(__file__).resolve().parents[2]
CASE = json.loads((ROOT / "examples" / "cases" / "cancer-surgery.json").read_text("utf-8"))
SNOMED = "http://snomed.info/sct"


def case_request() -> dict[str, Any]:
    return {
        "hook": "patient-view",
        "hookInstance": str(uuid.uuid4()),
        "context": {"userId": "Practitioner/1", "patientId": "p1", "case": CASE},
    }


def prefetch_request() -> dict[str, Any]:
    subject = {"reference": "Patient/p1"}
    cancer = {
        "resourceType": "Condition",
        "subject": subject,
        "clinicalStatus": {
            "coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]
        },
        "code": {"coding": [{"system": SNOMED, "code": "363406005"}]},
    }
    surgery = {
        "resourceType": "ServiceRequest",
        "status": "active",
        "intent": "order",
        "subject": subject,
        "code": {"coding": [{"system": SNOMED, "code": "43075005"}]},
    }
    bundle = {"resourceType": "Bundle", "type": "searchset"}
    return {
        "hook": "patient-view",
        "hookInstance": str(uuid.uuid4()),
        "context": {"userId": "Practitioner/1", "patientId": "p1"},
        "prefetch": {
            "patient": {"resourceType": "Patient", "id": "p1", "birthDate": "1961-07-30"},
            "conditions": {**bundle, "entry": [{"resource": cancer}]},
            "serviceRequests": {**bundle, "entry": [{"resource": surgery}]},
            "procedures": None,
            "coverage": None,
        },
    }


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def timed(fn: Callable[[], Any], n: int, before: Callable[[], Any] | None = None) -> list[float]:
    out = []
    for _ in range(n):
        if before is not None:
            before()
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def in_process(n: int) -> dict[str, float]:
    advisor = secondopinion.default_advisor()
    body = json.dumps(case_request())
    advisor.advise(CASE)
    cds_hooks.handle(body, advisor, fetch=None)
    advise = timed(lambda: advisor.advise(CASE), n)
    handle = timed(lambda: cds_hooks.handle(body, advisor, fetch=None), n)
    uncached = timed(
        lambda: cds_hooks.handle(body, advisor, fetch=None), max(50, n // 10), cds_hooks._shipped_name.cache_clear
    )
    return {
        "advise_p50_ms": statistics.median(advise) * 1000,
        "handle_p50_ms": statistics.median(handle) * 1000,
        "handle_uncached_links_p50_ms": statistics.median(uncached) * 1000,
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def start_server() -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    script = Path(sys.executable).parent / "secondopinion"
    proc = subprocess.Popen(
        [str(script), "serve", "--host", "127.0.0.1", "--port", str(port), "--no-fhir-fetch"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/cds-services", timeout=2).status_code == 200:
                return proc, base
        except httpx.TransportError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("the server did not start")


async def load(base: str, make: Callable[[], dict[str, Any]], total: int, concurrency: int) -> dict[str, float]:
    url = f"{base}/cds-services/second-opinion"
    bodies = [json.dumps(make()).encode() for _ in range(total)]
    latencies: list[float] = []
    failures = 0
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for body in bodies:
        queue.put_nowait(body)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=120) as http:

        async def worker() -> None:
            nonlocal failures
            while not queue.empty():
                body = queue.get_nowait()
                start = time.perf_counter()
                try:
                    response = await http.post(url, content=body, headers={"content-type": "application/json"})
                except httpx.TransportError:  # counted, not fatal: a closed keep-alive connection, a reset
                    failures += 1
                    continue
                latencies.append(time.perf_counter() - start)
                if response.status_code != 200:
                    failures += 1

        # Warm up each connection, then measure.
        await asyncio.gather(*(http.get(f"{base}/cds-services") for _ in range(concurrency)))
        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - start
    return {
        "requests": total,
        "failures": failures,
        "requests_per_s": total / elapsed,
        "p50_ms": statistics.median(latencies) * 1000,
        "p95_ms": pct(latencies, 0.95) * 1000,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer requests")
    parser.add_argument("--requests", type=int, help="requests per measurement (default 2,000; 300 with --quick)")
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    args = parser.parse_args()
    n = args.requests or (300 if args.quick else 2000)
    results: dict[str, Any] = {
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "cores": os.cpu_count(),
            "python": sys.version.split()[0],
        },
        "in_process": in_process(max(100, n // 4)),
    }
    proc, base = start_server()
    try:
        for name, make in (("context.case", case_request), ("FHIR prefetch", prefetch_request)):
            for concurrency in (1, 100):
                key = f"{name}, concurrency {concurrency}"
                results[key] = asyncio.run(load(base, make, n, concurrency))
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    for key, value in results.items():
        print(f"{key}:")
        for k, v in value.items():
            print(f"  {k}: {v:.2f}" if isinstance(v, float) else f"  {k}: {v}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n", "utf-8")


if __name__ == "__main__":
    main()
