"""The verifier: runs every family of checks on one rule base and confirms findings through the engine."""

from __future__ import annotations

import contextlib
import gc
import time
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from ..advisor import Advisor, Trace
from ..case import CaseError, load_case
from ..engine import EngineError
from ..rulebook import (
    Rule,
    Rulebook,
)
from .atoms import (
    Slot,
)
from .corpus import check_corpus, check_runs
from .gaps import check_gaps
from .model import _Model
from .pairs import check_conflicts, check_redundancy
from .promises import check_coverage, check_monotonicity
from .report import _SEVERITY_RANK, Finding, Report, Severity
from .rules import check_dead_and_masked, check_examples, fold_dead_examples
from .runs import _case_key, _Run
from .structure import check_metadata, check_structure


class _Verifier:
    """Runs every check on one rulebook and collects the findings."""

    def __init__(self, rulebook: Rulebook, include_drafts: bool, seed: int, samples: int, max_gaps: int) -> None:
        self.rulebook = rulebook
        self.include_drafts = include_drafts
        self.rules = tuple(
            r for r in rulebook.rules if r.status == "active" or (include_drafts and r.status == "draft")
        )
        self.seed = seed
        self.samples = samples
        self.max_gaps = max_gaps
        self.model = _Model(rulebook, self.rules, seed)
        self.findings: list[Finding] = []
        self.runs: dict[str, _Run] = {}
        self.engine_runs = 0
        self.advisor: Advisor | None = None
        self.fire_witness: dict[str, tuple[int, dict[Slot, Any]]] = {}
        self.dead: dict[str, Finding] = {}
        self.conflict_pairs: set[frozenset[str]] = set()
        self.coverage_missed: set[str] = set()
        self.boxes: dict[int, list[dict[Slot, frozenset[Any]]]] = {}
        self.disagreeing: set[str] = set()
        self.error_rules: set[tuple[str, ...]] = set()

    def add(self, kind: str, severity: Severity, rule_ids: Iterable[str], message: str, **extra: Any) -> Finding:
        finding = Finding(kind, severity, tuple(rule_ids), message, **extra)
        self.findings.append(finding)
        return finding

    def severity_for(self, rule: Rule, error: Severity = "error") -> Severity:
        return error if rule.status == "active" else "warning"

    def run(self, case: Mapping[str, Any]) -> _Run:
        """Run a case through the engine once (cached by content)."""
        key = _case_key(case)
        if key in self.runs:
            return self.runs[key]
        try:
            checked = load_case(dict(case))
        except CaseError:
            # the analysis built a case the case model refuses: no claim rests on it
            self.model.limited.add("witness")
            refused = _Run(case, 0, {}, None, None)
            self.runs[key] = refused
            return refused
        n, values = self.model.slots_of_case(checked)
        trace: Trace | None = None
        error: str | None = None
        if self.advisor is not None:
            self.engine_runs += 1
            try:
                trace = self.advisor.trace(checked)
            except EngineError as exc:
                error = f"{type(exc).__name__}: {exc}"
        result = _Run(
            case,
            n,
            values,
            trace,
            error,
            trace.fired if trace else frozenset(),
            trace.effective if trace else frozenset(),
        )
        self.runs[key] = result
        return result

    def fired_statically(self, run: _Run) -> list[bool]:
        """For each rule under verification, whether the analysis says it fires on the run's case."""
        return self.model.fired(self.rules, run.n, run.values, run.memo)

    def check_all(self) -> None:
        check_metadata(self)
        check_structure(self)
        try:
            if self.advisor is None:
                self.advisor = Advisor(self.rulebook, include_drafts=self.include_drafts)
        except EngineError as exc:
            self.add("engine-error", "error", (), f"the engine refuses the rules ({type(exc).__name__}: {exc})")
        check_examples(self)
        check_dead_and_masked(self)
        check_conflicts(self)
        check_redundancy(self)
        check_coverage(self)
        check_monotonicity(self)
        check_gaps(self)
        check_corpus(self)
        check_runs(self)
        fold_dead_examples(self)
        for goal in sorted(self.model.limited):
            self.add(
                "analysis-limit",
                "info",
                (goal.split(":")[1],) if ":" in goal else (),
                f"search limit reached for {goal}",
            )

    def of_kind(self, kind: str) -> list[Finding]:
        return [f for f in self.findings if f.kind == kind]

    def tested_slots(self, n: int) -> set[Slot]:
        """Every slot some rule or coverage requirement tests, for ``n`` opinions."""
        out: set[Slot] = set()
        for rule in self.rules:
            for alt in self.model.rule_alts(rule, n) + self.model.unless_alts(rule, n):
                out |= alt.slots
        for cov in self.rulebook.coverage:
            for alt in self.model.coverage_alts(cov, n):
                out |= alt.slots
        return out

    def recommenders(self) -> list[Rule]:
        return [r for r in self.rules if r.recommends and r.id not in self.dead]


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector for one verification (as it was, after).

    The analysis builds hundreds of thousands of small long-lived objects
    (plans, atoms, grounded alternatives, caches) and makes few reference
    cycles, so the collector's repeated passes over them cost about a fifth
    of the run and free little. The verifier avoids cycles that would hold
    it (no recursive closures over the model), so reference counting frees
    it when the checks return, and the collector has little left to look
    at when it runs again.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def verify(
    rulebook: Rulebook | None = None,
    *,
    include_drafts: bool = False,
    seed: int = 2026,
    samples: int = 200,
    max_gaps: int = 3,
    advisor: Advisor | None = None,
) -> Report:
    """Verify a rule base: static findings, each checked through the engine.

    ``rulebook`` defaults to the shipped rules. ``include_drafts`` also
    analyses and runs rules with status ``draft`` (their findings are at most
    warnings). ``samples`` bounds the pairwise rows and the seeded random
    cases run through the engine; ``max_gaps`` bounds the gap regions
    reported. ``advisor`` is the advisor that confirms findings (by default
    one built on ``rulebook``). The same inputs always give the same report.
    """
    started = time.perf_counter()
    book = rulebook if rulebook is not None else Rulebook.load()
    with _collector_paused():
        findings, checked, engine_runs = _run_checks(book, include_drafts, seed, samples, max_gaps, advisor)
    return Report(findings, checked, engine_runs, time.perf_counter() - started)


def _run_checks(
    book: Rulebook, include_drafts: bool, seed: int, samples: int, max_gaps: int, advisor: Advisor | None
) -> tuple[tuple[Finding, ...], int, int]:
    """The sorted findings, the number of rules checked and of engine runs (the verifier is freed on return)."""
    verifier = _Verifier(book, include_drafts, seed, samples, max_gaps)
    verifier.advisor = advisor
    verifier.check_all()
    findings = sorted(verifier.findings, key=lambda f: (_SEVERITY_RANK[f.severity], f.kind, f.rule_ids, f.message))
    return tuple(findings), len(verifier.rules), verifier.engine_runs
