"""Benchmark of secondopinion: advise() latency, overhead over raw durable-rules, batch throughput, memory.

Run from the repository root::

    python tests/benchmarks/bench_advise.py            # full run, several minutes
    python tests/benchmarks/bench_advise.py --quick    # smaller counts, about a minute
    python tests/benchmarks/bench_advise.py --json results.json

It prints, from one run:

* the machine (CPU model, cores, Python, durable-rules version, rule count);
* ``advise()`` p50 / p95 per case on the full shipped rule base, over varied generated cases;
* the same facts posted to raw durable-rules with the same registered rule set and no-op actions,
  and our ratio to it (plus a raw run whose actions assert the derived facts, i.e. the least any
  adapter must do to chain rules, so the ratio can be read both ways);
* a plain-Python reference implementation of a subset of the decisions (the floor), with its
  agreement with the engine on that subset;
* batch throughput in cases per second (the ``secondopinion batch`` command), one process and every
  core, end to end and with worker start-up taken out;
* RSS after 10,000 and after 200,000 cases (in a fresh process);
* with the ``dask`` extra, advise_bag on a LocalCluster with 1 and with 2 worker processes;
* start-up: ``secondopinion advise examples/cases/cancer-surgery.json`` in a fresh process (rule
  file cache filled, and empty), and ``python -c "import secondopinion"``;
* ``secondopinion verify`` on the shipped rules (in this process) and, with ``--suite``, the
  README's test command.

Not collected by pytest (tests/benchmarks/conftest.py ignores this folder); no timing here is a test.
"""

from __future__ import annotations

import argparse
import copy
import gc
import importlib.metadata
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # tests/: the case generator
sys.path.insert(0, str(HERE))  # the reference implementation

from casegen import random_cases  # noqa: E402
from reference import SUBSET, decide  # noqa: E402

import secondopinion  # noqa: E402
import secondopinion.engine as engine_module  # noqa: E402
from secondopinion.batch import available_cores  # noqa: E402

# durable itself, reached through the adapter (engine.py stays the only module importing it).
durable: Any = engine_module._durable

SEED = 20261122


# --------------------------------------------------------------------------- helpers


def percentile(sorted_ns: Sequence[int], q: float) -> float:
    """The q-quantile (0..1) of sorted nanosecond timings, in milliseconds (nearest rank)."""
    index = min(len(sorted_ns) - 1, max(0, round(q * len(sorted_ns)) - 1))
    return sorted_ns[index] / 1e6


def summarise(ns: list[int]) -> dict[str, float]:
    """p50, p95, p99 and mean of per-case timings, in milliseconds."""
    ns = sorted(ns)
    return {
        "p50_ms": percentile(ns, 0.50),
        "p95_ms": percentile(ns, 0.95),
        "p99_ms": percentile(ns, 0.99),
        "mean_ms": statistics.fmean(ns) / 1e6,
        "n": len(ns),
    }


CLOCKS: dict[str, Callable[[], int]] = {"wall": time.perf_counter_ns, "cpu": time.thread_time_ns}
"""Per-case clocks: wall time, or this thread's CPU time (``--clock cpu``: on a machine shared with
other work, a time slice lost to another process counts in wall time but not in CPU time)."""

_clock_name = "wall"


def time_interleaved(
    runs: Mapping[str, tuple[Callable[[Any], Any], Sequence[Any]]], rounds: int
) -> dict[str, list[int]]:
    """Per-item wall time in nanoseconds of several functions, each on its own items, interleaved.

    For item ``i`` every function runs once on its own ``i``-th item before item ``i + 1``, so a
    change of load on this shared machine touches every function alike and the ratios stay fair.
    The order rotates from item to item: a function that always ran right after another one
    sharing its data (``Engine.run`` after ``advise()``, say) would find the CPU caches warm
    and look faster than it is. GC is disabled during a pass (collected between passes).
    """
    out: dict[str, list[int]] = {name: [] for name in runs}
    clock = CLOCKS[_clock_name]
    order = list(runs.items())
    count = min(len(items) for _, items in runs.values())
    for _ in range(rounds):
        gc.collect()
        gc.disable()
        try:
            for i in range(count):
                shift = i % len(order)
                for name, (fn, items) in order[shift:] + order[:shift]:
                    item = items[i]
                    start = clock()
                    fn(item)
                    out[name].append(clock() - start)
        finally:
            gc.enable()
    return out


def load_average() -> tuple[float, float, float]:
    """The 1, 5 and 15 minute load averages (other work on this shared machine skews timings)."""
    try:
        return os.getloadavg()
    except OSError:
        return (0.0, 0.0, 0.0)


def machine() -> dict[str, Any]:
    """What this ran on."""
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=HERE, check=False
        ).stdout.strip()
    except OSError:
        commit = ""
    advisor = secondopinion.default_advisor()
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "usable_cores": available_cores(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "durable_rules": importlib.metadata.version("durable-rules"),
        "secondopinion": secondopinion.__version__,
        "commit": commit,
        "active_rules": len(advisor.rules),
        "engine_rules": len(captured_definitions()),
    }


# --------------------------------------------------------------------------- raw durable-rules


_captured: dict[str, Any] = {}


def captured_definitions() -> dict[str, Any]:
    """The exact rule set the default advisor's Engine registered with durable (its rules plus internal ones)."""
    if not _captured:
        original = engine_module._Host.register_rulesets

        def spy(host: Any, definitions: Mapping[str, Any]) -> Any:
            _captured.update(copy.deepcopy(dict(definitions)))
            return original(host, definitions)

        engine_module._Host.register_rulesets = spy
        try:
            secondopinion.Advisor()  # a second advisor on the shipped rules, built only to see its rule set
        finally:
            engine_module._Host.register_rulesets = original
    ((_, definitions),) = _captured.items()
    return dict(definitions)


def captured_posts(cases: Sequence[Mapping[str, Any]]) -> list[list[tuple[str, Any]]]:
    """For each case, the calls the default advisor's Engine made into durable (method, payload without sid)."""
    advisor = secondopinion.default_advisor()
    host = advisor.engine._host
    calls: list[tuple[str, Any]] = []
    originals = {name: getattr(host, name) for name in ("assert_fact", "assert_facts")}

    def recorder(name: str) -> Callable[..., Any]:
        def record(ruleset: str, payload: Any, *args: Any) -> Any:
            calls.append((name, copy.deepcopy(payload)))
            return originals[name](ruleset, payload, *args)

        return record

    out: list[list[tuple[str, Any]]] = []
    for name in originals:
        setattr(host, name, recorder(name))
    try:
        for case in cases:
            calls.clear()
            advisor.advise(case)
            out.append([(name, _without_sid(payload)) for name, payload in calls])
    finally:
        for name in originals:
            delattr(host, name)
    return out


def _without_sid(payload: Any) -> Any:
    if isinstance(payload, list):
        return [{k: v for k, v in fact.items() if k != "sid"} for fact in payload]
    return {k: v for k, v in payload.items() if k != "sid"}


class RawHost(durable.Host):  # type: ignore[misc]
    """A plain durable Host: actions looked up by name, no timer threads (they crash delete_state)."""

    def __init__(self, actions: Mapping[str, Callable[[Any], None]]) -> None:
        self._raw_actions = dict(actions)
        super().__init__()

    def _run(self) -> None:
        pass

    def get_action(self, action_name: str) -> Callable[[Any], None]:
        return self._raw_actions[action_name]


def raw_runner(chaining: bool) -> Callable[[list[tuple[str, Any]]], None]:
    """A function replaying one case's posts on raw durable-rules, in a fresh session each time.

    ``chaining=False``: every action is a no-op. ``chaining=True``: deriving rules assert their
    derived fact (de-duplicated by content), so rules chain as they do in the product.
    """
    definitions = captured_definitions()
    derive = secondopinion.compiler.compile_rules(secondopinion.default_advisor().rules).derive
    session: dict[str, Any] = {"seen": set(), "n": 0}

    def noop(c: Any) -> None:
        return None

    def make_chain(rule_id: str, names: tuple[str, ...]) -> Callable[[Any], None]:
        fn = derive[rule_id]

        def act(c: Any) -> None:
            produced = fn({name: dict(c._m[name]) for name in names})
            if produced is None:
                return
            key = json.dumps(produced, sort_keys=True)
            if key in session["seen"]:
                return
            session["seen"].add(key)
            session["n"] += 1
            c.assert_fact({**produced, "fid": f"d#{session['n']}", "sid": c.s.sid})

        return act

    actions: dict[str, Callable[[Any], None]] = {}
    for rule_id, definition in definitions.items():
        names = tuple(sorted(next(iter(cond)) for cond in definition["all"]))
        actions[definition.get("run", rule_id)] = make_chain(rule_id, names) if chaining and rule_id in derive else noop
    host = RawHost(actions)
    name = "raw-chain" if chaining else "raw-noop"
    host.register_rulesets({name: copy.deepcopy(definitions)})
    counter = iter(range(1, 1 << 62))

    def replay(posts: list[tuple[str, Any]]) -> None:
        sid = f"r{next(counter)}"
        session["seen"] = set()
        for method, payload in posts:
            if method == "assert_facts":
                host.assert_facts(name, [{**fact, "sid": sid} for fact in payload])
            else:
                host.assert_fact(name, {**payload, "sid": sid})
        host.delete_state(name, sid)

    return replay


# --------------------------------------------------------------------------- sections


def bench_latency(cases: list[dict[str, Any]], rounds: int) -> dict[str, Any]:
    """advise(), Engine.run alone, raw durable (no-op and chaining actions), the plain-Python floor."""
    advisor = secondopinion.default_advisor()
    for case in cases[:500]:
        advisor.advise(case)
    traces = [advisor.trace(case) for case in cases]
    facts = [secondopinion.case_facts(t.case) for t in traces]
    posts = captured_posts(cases)
    raw_noop, raw_chain = raw_runner(False), raw_runner(True)
    for p in posts[:500]:
        raw_noop(p)
        raw_chain(p)

    out: dict[str, Any] = {
        "cases": len(cases),
        "rounds": rounds,
        "firings_mean": statistics.fmean(len(t.session.firings) for t in traces),
        "firings_max": max(len(t.session.firings) for t in traces),
        "facts_mean": statistics.fmean(len(f) for f in facts),
        "recommendations_mean": statistics.fmean(len(advisor.advice_from(t).recommendations) for t in traces),
    }
    out["load_before"] = load_average()
    timings = time_interleaved(
        {
            "advise": (advisor.advise, cases),
            "engine_run": (advisor.engine.run, facts),
            "raw_chaining": (raw_chain, posts),
            "raw_noop": (raw_noop, posts),
            "reference": (decide, cases),
        },
        rounds,
    )
    out["load_after"] = load_average()
    for name, ns in timings.items():
        out[name] = summarise(ns)
    agree = sum(1 for case, t in zip(cases, traces, strict=True) if decide(case) == (t.effective & SUBSET))
    out["reference_agreement"] = agree / len(cases)
    out["reference_subset_rules"] = len(SUBSET & {r.id for r in advisor.rules})
    a = out["advise"]
    for raw in ("raw_noop", "raw_chaining"):
        out[f"ratio_{raw}"] = {k: a[k] / out[raw][k] for k in ("p50_ms", "p95_ms", "mean_ms")}
    out["ratio_engine_run_raw_chaining"] = {
        k: out["engine_run"][k] / out["raw_chaining"][k] for k in ("p50_ms", "p95_ms", "mean_ms")
    }
    return out


def _write_cases(path: Path, count: int) -> None:
    with path.open("w", encoding="utf-8") as f:
        for case in random_cases(count, seed=SEED + 1):
            f.write(json.dumps(case) + "\n")


def _batch_once(script: str, source: Path, out: Path, workers: int, env: Mapping[str, str]) -> tuple[float, float]:
    """One ``secondopinion batch`` run as a user starts it: wall and CPU seconds (all its processes)."""
    argv = [script, "batch", str(source), "-o", str(out), "-j", str(workers), "--no-progress"]
    return _run_timed(argv, env, HERE.parent.parent)


def bench_batch(count: int, rounds: int = 3) -> dict[str, Any]:
    """``secondopinion batch`` on a JSON Lines file of ``count`` cases: one process, then every core.

    Timed as a user runs it: the CLI in a fresh process, reading and writing real files, its
    worker processes' start-up included. The runs alternate (one process, every core, every
    core, one process, ...) so that a slow spell of this shared machine does not land on one
    side only; medians of ``rounds`` runs each. Start-up is measured apart (the same command on
    a one-case file), so the steady rate, ``count / (wall - start-up)``, is shown beside the
    end-to-end one. CPU is user + system time of the CLI and its workers.
    """
    script = shutil.which("secondopinion", path=str(Path(sys.executable).parent)) or "secondopinion"
    cores = available_cores()
    configs = (("single", 1), ("all_cores", cores))
    out: dict[str, Any] = {"cases": count, "rounds": rounds, "command": "secondopinion batch CASES -o OUT -j N"}
    with tempfile.TemporaryDirectory() as tmp:
        source, one = Path(tmp) / "cases.jsonl", Path(tmp) / "one.jsonl"
        _write_cases(source, count)
        one.write_text(source.open(encoding="utf-8").readline(), encoding="utf-8")
        sink = Path(tmp) / "out.jsonl"
        env = {**os.environ, "SECONDOPINION_CACHE_DIR": str(Path(tmp) / "cache")}
        _batch_once(script, one, sink, 1, env)  # fills the rule file cache
        samples: dict[str, list[tuple[float, float]]] = {label: [] for label, _ in configs}
        startup: dict[str, list[tuple[float, float]]] = {label: [] for label, _ in configs}
        for n in range(rounds):
            for label, workers in configs if n % 2 == 0 else configs[::-1]:
                startup[label].append(_batch_once(script, one, sink, workers, env))
                samples[label].append(_batch_once(script, source, sink, workers, env))
        out["output_mb"] = sink.stat().st_size / 2**20
    for label, workers in configs:
        wall = statistics.median(w for w, _ in samples[label])
        cpu = statistics.median(c for _, c in samples[label])
        start_wall = statistics.median(w for w, _ in startup[label])
        steady = count / max(wall - start_wall, 1e-9)
        out[label] = {
            "workers": workers,
            "seconds": wall,
            "seconds_runs": [w for w, _ in samples[label]],
            "cpu_s": cpu,
            "startup_s": start_wall,
            "cases_per_s": count / wall,
            "cases_per_s_per_core": count / wall / workers,
            "steady_cases_per_s": steady,
            "steady_cases_per_s_per_core": steady / workers,
            "cases_per_cpu_s": count / cpu,
        }
    single, every = out["single"], out["all_cores"]
    out["scaling"] = every["cases_per_s"] / single["cases_per_s"]
    out["steady_scaling"] = every["steady_cases_per_s"] / single["steady_cases_per_s"]
    return out


def scaling_child(kind: str, count: int) -> None:
    """In a fresh process: get ready, wait for ``go`` on stdin, run ``count`` cases, print the seconds."""
    cases = list(random_cases(count, seed=SEED + 2))
    run: Callable[[Any], Any] = secondopinion.default_advisor().advise
    items: Sequence[Any] = cases
    if kind != "advise":
        run = raw_runner(chaining=True)
        items = captured_posts(cases)
    for item in items[:200]:  # warm: the first calls fill caches
        run(item)
    print("ready", flush=True)
    sys.stdin.readline()
    gc.disable()
    start = time.perf_counter()
    for item in items:
        run(item)
    print(time.perf_counter() - start, flush=True)


def _independent_rate(kind: str, processes: int, count: int) -> float:
    """Cases per second of ``processes`` independent processes started together (total / slowest)."""
    argv = [sys.executable, str(Path(__file__).resolve()), "--scaling-child", kind, str(count)]
    children = [
        subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) for _ in range(processes)
    ]
    try:
        for child in children:
            assert child.stdout is not None and child.stdout.readline().strip() == "ready"
        for child in children:
            assert child.stdin is not None
            child.stdin.write("go\n")
            child.stdin.flush()
        walls = [float(child.stdout.readline()) for child in children if child.stdout is not None]
    finally:
        for child in children:
            child.wait(timeout=600)
    return processes * count / max(walls)


def bench_ceiling(count: int, rounds: int = 3) -> dict[str, Any]:
    """What this machine gives ``N`` independent processes doing the same work: the batch's ceiling.

    The same cases in ``N`` = every core processes at once, against one alone, alternating,
    medians of ``rounds``: ``advise()`` in a loop, and raw durable-rules with chaining actions
    (the baseline). No pipes, no parent, no start-up: if these do not scale linearly, the cores
    (shared caches and memory, or a host that shares them) are the limit, not the batch.
    """
    cores = available_cores()
    out: dict[str, Any] = {"cases": count, "rounds": rounds, "processes": cores}
    for kind in ("advise", "raw_chaining"):
        rates: dict[int, list[float]] = {1: [], cores: []}
        for n in range(rounds):
            for procs in (1, cores) if n % 2 == 0 else (cores, 1):
                rates[procs].append(_independent_rate(kind, procs, count))
        one, every = statistics.median(rates[1]), statistics.median(rates[cores])
        out[kind] = {"one": one, "every": every, "scaling": every / one}
    return out


def _rss_mb() -> float:
    import psutil

    return float(psutil.Process().memory_info().rss) / 2**20


def rss_child(first: int, total: int) -> dict[str, Any]:
    """In a fresh process: advise on ``total`` varied cases; RSS after ``first`` and after ``total``."""
    advisor = secondopinion.default_advisor()
    out: dict[str, Any] = {"rss_start_mb": _rss_mb()}
    for n, case in enumerate(random_cases(total, seed=SEED + 2), start=1):
        advisor.advise(case)
        if n == first:
            gc.collect()
            out[f"rss_after_{first}_mb"] = _rss_mb()
    gc.collect()
    out[f"rss_after_{total}_mb"] = _rss_mb()
    out["growth_mb"] = out[f"rss_after_{total}_mb"] - out[f"rss_after_{first}_mb"]
    out["first"], out["total"] = first, total
    return out


def bench_rss(first: int, total: int) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, __file__, "--rss-child", str(first), str(total)],
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


def _run_timed(argv: Sequence[str], env: Mapping[str, str], cwd: Path) -> tuple[float, float]:
    """Wall and CPU (user + system) seconds of one run of a command in a fresh process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(argv, env=dict(env), cwd=cwd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def _medians(samples: list[tuple[float, float]]) -> dict[str, float]:
    return {
        "wall_s": statistics.median(w for w, _ in samples),
        "cpu_s": statistics.median(c for _, c in samples),
        "min_wall_s": min(w for w, _ in samples),
        "runs": len(samples),
    }


def bench_startup(runs: int) -> dict[str, Any]:
    """Cold start of the CLI and of the import, each in a fresh process; medians of ``runs`` runs."""
    root = HERE.parent.parent
    script = shutil.which("secondopinion", path=str(Path(sys.executable).parent)) or "secondopinion"
    advise_argv = [script, "advise", "examples/cases/cancer-surgery.json"]
    out: dict[str, Any] = {"command": "secondopinion advise examples/cases/cancer-surgery.json"}
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "SECONDOPINION_CACHE_DIR": str(Path(tmp) / "cache")}
        _run_timed(advise_argv, env, root)  # fills the rule file cache (and the .pyc files)
        out["advise_cached"] = _medians([_run_timed(advise_argv, env, root) for _ in range(runs)])
        empty = []
        for n in range(max(3, runs // 3)):
            env_empty = {**os.environ, "SECONDOPINION_CACHE_DIR": str(Path(tmp) / f"empty-{n}")}
            empty.append(_run_timed(advise_argv, env_empty, root))
        out["advise_empty_cache"] = _medians(empty)
        out["import"] = _medians(
            [_run_timed([sys.executable, "-c", "import secondopinion"], env, root) for _ in range(runs)]
        )
        out["python_alone"] = _medians([_run_timed([sys.executable, "-c", "pass"], env, root) for _ in range(runs)])
    return out


def bench_verify() -> dict[str, Any]:
    """``secondopinion verify`` on the shipped rules, in this process (the advisor already built)."""
    from secondopinion.verify import verify

    start = time.perf_counter()
    cpu = time.process_time()
    report_ = verify()
    return {
        "seconds": time.perf_counter() - start,
        "cpu_s": time.process_time() - cpu,
        "engine_runs": getattr(report_, "engine_runs", None),
    }


def bench_suite() -> dict[str, Any]:
    """The README's test command (``python -m pytest -n auto``), wall clock."""
    root = HERE.parent.parent
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-n", "auto", "-q", "-p", "no:cacheprovider"],
        cwd=root,
        capture_output=True,
        text=True,
        check=False,
    )
    seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    tail = proc.stdout.strip().splitlines()[-1:] or [""]
    return {"seconds": seconds, "cpu_s": cpu, "exit_code": proc.returncode, "summary": tail[0]}


def _build_default_advisor() -> None:
    secondopinion.default_advisor()


def bench_dask(count: int) -> dict[str, Any]:
    """advise_bag on a LocalCluster with 1 and with 2 worker processes (cluster start-up excluded)."""
    try:
        import dask.bag as db
        from distributed import Client, LocalCluster

        from secondopinion.dask import advise_bag, worker_environment
    except ImportError:
        return {"skipped": "dask extra not installed"}
    cases = list(random_cases(count, seed=SEED + 3))
    out: dict[str, Any] = {"cases": count}
    expected = None
    for workers in (1, 2):
        with worker_environment():  # without it, dask's worker malloc setting costs 2-3x
            cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None)
        with cluster, Client(cluster) as client:
            warm = db.from_sequence(cases[: 8 * workers], npartitions=2 * workers)
            advise_bag(warm).compute()  # every worker builds its advisor before the clock starts
            client.run(_build_default_advisor)  # and on every worker, whatever the warm-up touched
            bag = db.from_sequence(cases, npartitions=8 * workers)
            start = time.perf_counter()
            result = advise_bag(bag).compute()  # every Advice back to the client
            collected = time.perf_counter() - start
            start = time.perf_counter()
            tally = advise_bag(bag).map(lambda a: len(a.recommendations)).sum().compute()  # advice stays on workers
            on_workers = time.perf_counter() - start
        kinds = [a.kinds for a in result]
        expected = expected or kinds
        assert tally == sum(len(k) for k in kinds)
        out[f"workers_{workers}"] = {
            "seconds_collected": collected,
            "cases_per_s_collected": count / collected,
            "seconds": on_workers,
            "cases_per_s": count / on_workers,
            "same_as_1": kinds == expected,
        }
    out["speedup_2_vs_1"] = out["workers_1"]["seconds"] / out["workers_2"]["seconds"]
    out["speedup_2_vs_1_collected"] = out["workers_1"]["seconds_collected"] / out["workers_2"]["seconds_collected"]
    return out


_PROFILE_STEPS = (
    # (label, module file name, function name, cumulative time or "rest": cumulative less the steps above)
    ("advise()", "advisor.py", "advise", "cum"),
    ("  load_case (cattrs, checks)", "case.py", "load_case", "cum"),
    ("  case_facts", "case.py", "case_facts", "cum"),
    ("  Engine.run", "engine.py", "run", "cum"),
    ("    checking and copying the input facts", "engine.py", "_prepare", "cum"),
    ("    the adapter's actions (record, derive, assert)", "engine.py", "_fire", "cum"),
    ("  trace: the recommendations each firing makes", "advisor.py", "trace", "rest"),
    ("  advice_from: merging, derived-fact records", "advisor.py", "advice_from", "cum"),
)


_TRACE_PARTS = (("case.py", "load_case"), ("case.py", "case_facts"), ("engine.py", "run"))


def profile(cases: list[dict[str, Any]]) -> str:
    """Where advise() spends its time: cProfile over the cases, each step's share of advise().

    cProfile (the standard library's) adds a fixed cost per Python call, so Python-heavy
    steps look larger than they are; the shares compare runs of this script, not clocks.
    The durable C calls (``durable_rules_engine.*``) are summed as one line.
    """
    import cProfile
    import pstats

    advisor = secondopinion.default_advisor()
    for case in cases[:200]:
        advisor.advise(case)
    profiler = cProfile.Profile()
    profiler.enable()
    for case in cases:
        advisor.advise(case)
    profiler.disable()
    stats: dict[tuple[str, int, str], tuple[int, int, float, float, Any]] = pstats.Stats(profiler).stats  # type: ignore[attr-defined]

    def seconds(file: str, function: str) -> float:
        return sum(
            ct
            for (path, _, name), (_, _, _, ct, _) in stats.items()
            if name == function and path.endswith(f"secondopinion/{file}")
        )

    whole = seconds("advisor.py", "advise")
    native = sum(tt for (path, _, name), (_, _, tt, _, _) in stats.items() if "durable_rules_engine" in name)
    json_time = sum(
        tt for (path, _, name), (_, _, tt, _, _) in stats.items() if "orjson" in name or "/json/" in path
    )
    lines = [f"cProfile, {len(cases)} cases: share of advise() ({whole / len(cases) * 1e3:.3f} ms per case profiled)"]
    for label, file, function, kind in _PROFILE_STEPS:
        spent = seconds(file, function)
        if kind == "rest":  # trace() less what it calls that has a line of its own
            spent -= sum(seconds(f, name) for f, name in _TRACE_PARTS)
        lines.append(f"  {label:<58} {spent / whole:6.1%}")
    lines.append(f"  {'durable C calls (durable_rules_engine.*, own time)':<58} {native / whole:6.1%}")
    lines.append(f"  {'JSON to and from durable (json / orjson, own time)':<58} {json_time / whole:6.1%}")
    return "\n".join(lines)


# --------------------------------------------------------------------------- report


def report(results: Mapping[str, Any]) -> Iterator[str]:
    m = results["machine"]
    yield f"machine: {m['cpu']}, {m['cores']} cores ({m['usable_cores']} usable), {m['implementation']} {m['python']}"
    yield f"         {m['platform']}; durable-rules {m['durable_rules']}"
    yield f"         secondopinion {m['secondopinion']} at {m['commit']}"
    yield f"rules:   {m['active_rules']} active rules ({m['engine_rules']} durable rules incl. internal ones)"
    st = results.get("startup")
    if st:
        yield ""
        yield "start-up, fresh process each run (median wall / median CPU, user + system):"
        for key, label in (
            ("advise_cached", f"{st['command']} (rule cache filled)"),
            ("advise_empty_cache", f"{st['command']} (empty rule cache)"),
            ("import", 'python -c "import secondopinion"'),
            ("python_alone", 'python -c "pass" (the interpreter alone)'),
        ):
            r = st[key]
            yield (
                f"  {label:78} {r['wall_s']:6.3f} s / {r['cpu_s']:6.3f} s"
                f"  (min {r['min_wall_s']:.3f} s, {r['runs']} runs)"
            )
    lat = results.get("latency")
    if lat:
        yield ""
        yield (
            f"per case, {lat['cases']} varied cases x {lat['rounds']} rounds "
            f"(mean {lat['facts_mean']:.1f} facts, {lat['firings_mean']:.1f} firings, max {lat['firings_max']}; "
            f"{lat['recommendations_mean']:.1f} recommendations)"
        )
        yield (
            "  load average before {:.2f}, after {:.2f} (2 cores; other work on the machine inflates timings)".format(
                lat["load_before"][0], lat["load_after"][0]
            )
        )
        yield f"  per-case clock: {results.get('clock', 'wall')}"
        yield f"  {'':34} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'mean ms':>8}"
        for key, label in (
            ("advise", "advise()"),
            ("engine_run", "Engine.run (facts ready)"),
            ("raw_chaining", "raw durable, chaining actions"),
            ("raw_noop", "raw durable, no-op actions"),
            ("reference", "plain-Python reference (floor)"),
        ):
            s = lat[key]
            yield f"  {label:34} {s['p50_ms']:8.3f} {s['p95_ms']:8.3f} {s['p99_ms']:8.3f} {s['mean_ms']:8.3f}"
        for key, label in (
            ("ratio_raw_noop", "advise() / raw no-op"),
            ("ratio_raw_chaining", "advise() / raw chaining"),
            ("ratio_engine_run_raw_chaining", "Engine.run / raw chaining"),
        ):
            r = lat[key]
            yield f"  ratio {label:28} p50 {r['p50_ms']:.2f}x  p95 {r['p95_ms']:.2f}x  mean {r['mean_ms']:.2f}x"
        yield (
            f"  reference implements {lat['reference_subset_rules']} shipped rules; "
            f"agrees with the engine on {lat['reference_agreement']:.1%} of cases"
        )
    b = results.get("batch")
    if b:
        yield ""
        load = f"load average {b['load'][0]:.2f} -> {b['load'][1]:.2f}"
        yield (
            f"batch: {b['command']}, {b['cases']} cases ({b['output_mb']:.0f} MB out), "
            f"median of {b['rounds']} runs; {load}:"
        )
        for label in ("single", "all_cores"):
            s = b[label]
            yield (
                f"  {label:10} {s['workers']} process(es): {s['cases_per_s']:6.0f} cases/s end to end "
                f"({s['cases_per_s_per_core']:.0f} per core, {s['seconds']:.1f} s); start-up {s['startup_s']:.2f} s; "
                f"steady {s['steady_cases_per_s']:.0f} cases/s ({s['steady_cases_per_s_per_core']:.0f} per core); "
                f"{s['cases_per_cpu_s']:.0f} cases per CPU second"
            )
            yield "             runs: " + ", ".join(f"{w:.1f} s" for w in s["seconds_runs"])
        yield (
            f"  scaling on {b['all_cores']['workers']} cores: {b['scaling']:.2f}x end to end, "
            f"{b['steady_scaling']:.2f}x steady"
        )
        c = b.get("ceiling")
        if c:
            yield (
                f"  the machine's own scaling (independent processes, {c['cases']} cases each, "
                f"median of {c['rounds']}; no batch):"
            )
            for kind, label in (("advise", "advise() in a loop"), ("raw_chaining", "raw durable, chaining")):
                k = c[kind]
                yield (
                    f"    {label:22} 1 process {k['one']:6.0f} cases/s; {c['processes']} at once "
                    f"{k['every']:6.0f} cases/s ({k['scaling']:.2f}x)"
                )
            yield (
                f"  batch steady scaling / advise() loop scaling: "
                f"{b['steady_scaling'] / c['advise']['scaling']:.0%} of what the cores allow"
            )
    r = results.get("rss")
    if r:
        first, total = r["first"], r["total"]
        yield ""
        yield (
            f"RSS (fresh process): start {r['rss_start_mb']:.1f} MB, after {first:,} cases "
            f"{r[f'rss_after_{first}_mb']:.1f} MB, after {total:,} cases {r[f'rss_after_{total}_mb']:.1f} MB "
            f"(growth {r['growth_mb']:+.2f} MB)"
        )
    v = results.get("verify")
    if v:
        yield ""
        yield f"secondopinion verify (shipped rules, in process): {v['seconds']:.1f} s wall, {v['cpu_s']:.1f} s CPU"
    su = results.get("suite")
    if su:
        yield ""
        yield (
            f"README test command (python -m pytest -n auto): {su['seconds']:.0f} s wall, "
            f"{su['cpu_s']:.0f} s CPU in all processes, exit {su['exit_code']}: {su['summary']}"
        )
    d = results.get("dask")
    if d:
        yield ""
        if "skipped" in d:
            yield f"dask: skipped ({d['skipped']})"
        else:
            w1, w2 = d["workers_1"], d["workers_2"]
            yield (
                f"dask advise_bag on a LocalCluster ({d['cases']} cases, worker processes with 1 thread each; "
                f"load average {d['load'][0]:.2f} -> {d['load'][1]:.2f}):"
            )
            yield (
                f"  advice kept on the workers (a sum returned): 1 worker {w1['cases_per_s']:.0f} cases/s, "
                f"2 workers {w2['cases_per_s']:.0f} cases/s, speed-up {d['speedup_2_vs_1']:.2f}x"
            )
            yield (
                f"  every Advice returned to the client:        1 worker {w1['cases_per_s_collected']:.0f} cases/s, "
                f"2 workers {w2['cases_per_s_collected']:.0f} cases/s, speed-up {d['speedup_2_vs_1_collected']:.2f}x"
            )
            yield f"  same results with 2 workers as with 1: {w2['same_as_1']}"


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller counts (about a minute)")
    parser.add_argument("--json", type=Path, help="also write the results as JSON to this file")
    parser.add_argument(
        "--skip", action="append", default=[], choices=["startup", "latency", "batch", "rss", "verify", "dask"]
    )
    parser.add_argument("--suite", action="store_true", help="also time the README's test command (minutes)")
    parser.add_argument(
        "--clock", choices=sorted(CLOCKS), default="wall", help="per-case clock: wall time or thread CPU time"
    )
    parser.add_argument(
        "--profile", action="store_true", help="print where advise() spends its time (cProfile) and stop"
    )
    parser.add_argument("--rss-child", nargs=2, type=int, help=argparse.SUPPRESS)
    parser.add_argument("--scaling-child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.rss_child:
        print(json.dumps(rss_child(*args.rss_child)))
        return
    if args.scaling_child:
        scaling_child(args.scaling_child[0], int(args.scaling_child[1]))
        return
    global _clock_name
    _clock_name = args.clock
    cases = list(random_cases(1000 if args.quick else 5000, seed=SEED))
    if args.profile:
        print(profile(cases))
        return

    results: dict[str, Any] = {"machine": machine(), "quick": args.quick, "clock": args.clock}
    if "startup" not in args.skip:
        before = load_average()
        results["startup"] = bench_startup(5 if args.quick else 15)
        results["startup"]["load"] = (before[0], load_average()[0])
    if "latency" not in args.skip:
        results["latency"] = bench_latency(cases, rounds=2 if args.quick else 3)
    if "batch" not in args.skip:
        before = load_average()
        results["batch"] = bench_batch(3000 if args.quick else 20000, rounds=1 if args.quick else 3)
        results["batch"]["ceiling"] = bench_ceiling(1000 if args.quick else 4000, rounds=1 if args.quick else 3)
        results["batch"]["load"] = (before[0], load_average()[0])
    if "rss" not in args.skip:
        results["rss"] = bench_rss(2000, 20000) if args.quick else bench_rss(10000, 200000)
    if "verify" not in args.skip:
        results["verify"] = bench_verify()
    if args.suite:
        results["suite"] = bench_suite()
    if "dask" not in args.skip:
        before = load_average()
        results["dask"] = bench_dask(2000 if args.quick else 20000)
        results["dask"]["load"] = (before[0], load_average()[0])
    for line in report(results):
        print(line)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
