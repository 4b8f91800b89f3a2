"""Benchmark of ``verify()``: CPU time on the shipped rules, and with generated extra rules.

Run from the repository root::

    python tests/benchmarks/bench_verify.py               # shipped rules, then + 200 rules
    python tests/benchmarks/bench_verify.py --extra 50 --extra 200 --repeat 3

It prints, from one run, the machine, then for each rule base the CPU time
(``time.process_time``, this process only, so other load on the machine
counts little) and the wall time of ``verify()``, with the rule count, the
engine runs and the findings by severity. Rule loading is not timed.

The extra rules are generated (seeded) in a pack of their own: each tests one
to three choice attributes of one or two case aspects, sometimes a number
threshold or an opinion, and recommends a kind; each comes with a ``fires``
example built from its own tests. They look like rules an author adds, not
like the shipped ones, so the second figure shows how verify grows with the
rule count. Not collected by pytest; no timing here is a test.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from secondopinion.case import case_fact_types
from secondopinion.recommendations import KINDS
from secondopinion.rulebook import Rulebook
from secondopinion.verify import verify

ASPECTS = ("diagnosis", "treatment", "patient", "doctor", "insurance", "records")


def extra_pack(count: int, seed: int = 2026) -> dict[str, Any]:
    """A rule pack of ``count`` generated rules (seeded)."""
    rng = random.Random(seed)
    types = case_fact_types()
    kinds = sorted(KINDS)
    rules = []
    for i in range(count):
        when: list[dict[str, Any]] = []
        fires: dict[str, Any] = {}
        for j, aspect in enumerate(rng.sample(ASPECTS, rng.choice((1, 1, 2)))):
            choices = [a for a, d in types[aspect].items() if isinstance(d, tuple)]
            where: dict[str, Any] = {}
            example: dict[str, Any] = {}
            for attr in rng.sample(choices, min(len(choices), rng.choice((1, 2, 3)))):
                values = [v for v in types[aspect][attr] if v != "unknown"]
                picked = rng.sample(values, rng.choice((1, min(2, len(values)))))
                where[attr] = picked if len(picked) > 1 else picked[0]
                example[attr] = picked[0]
            if aspect == "treatment" and rng.random() < 0.3:
                limit = rng.choice((3, 7, 14, 30))
                where["days_to_decide"] = {"lt": limit}
                example["days_to_decide"] = limit - 1
            when.append({"bind": f"p{j}", "fact": aspect, "where": where})
            fires[aspect] = example
        if rng.random() < 0.2:
            when.append({"bind": "op", "fact": "opinion", "where": {"treatment": "surgery"}})
            fires["opinions"] = [{"treatment": "surgery"}]
        rules.append(
            {
                "id": f"BENCH-{i:03d}",
                "title": f"Generated rule {i}",
                "status": "active",
                "version": 1,
                "guidance": ["BENCH01"],
                "sources": [{"file": "bench-notes.md", "section": "Rules"}],
                "last_reviewed": "2026-12-01",
                "rationale": "A generated rule for the verify benchmark.",
                "when": when,
                "then": {
                    "recommend": {
                        "kind": rng.choice(kinds),
                        "priority": rng.choice(("low", "medium", "high")),
                        "title": "Generated advice",
                        "detail": "Generated advice for the benchmark.",
                    }
                },
                "examples": {"fires": [fires], "silent": [{}]},
            }
        )
    return {
        "topic": "bench_generated",
        "documents": [{"file": "bench-notes.md", "title": "Benchmark notes", "sections": ["Rules"]}],
        "guidance": [{"id": "BENCH01", "summary": "A generated guidance item.", "sources": ["bench-notes.md"]}],
        "rules": rules,
    }


def measure(book: Rulebook, label: str, repeat: int) -> None:
    for run in range(repeat):
        cpu, wall = time.process_time(), time.perf_counter()
        report = verify(book)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        counts = {s: sum(1 for f in report.findings if f.severity == s) for s in ("error", "warning", "info")}
        print(
            f"{label:<28} run {run + 1}: {cpu:6.2f} s CPU, {wall:6.2f} s wall; "
            f"{report.rules_checked} rules, {report.engine_runs} engine runs, "
            f"{counts['error']} errors / {counts['warning']} warnings / {counts['info']} notes"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--extra", type=int, action="append", help="extra generated rules (repeatable; default 200)")
    parser.add_argument("--repeat", type=int, default=1, help="runs per rule base")
    args = parser.parse_args(argv)
    print(f"Python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} cores; {platform.platform()}")
    try:
        load = os.getloadavg()
        print(f"load average at start: {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}")
    except OSError:
        pass
    measure(Rulebook.load(), "shipped rules", args.repeat)
    for extra in args.extra or [200]:
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "generated.yaml"
            path.write_text(yaml.safe_dump(extra_pack(extra), sort_keys=False), encoding="utf-8")
            measure(Rulebook.load(path), f"shipped + {extra} generated", args.repeat)
    return 0


if __name__ == "__main__":
    sys.exit(main())
