"""The corpus: the rules' examples, pairwise and seeded random cases run through the engine.

Every run is compared with the analysis: which rules fire, incompatible kinds, coverage, cases with no advice.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from ..case import case_facts, load_case
from ..compiler import compile_rules
from ..engine import Engine, EngineError
from ..rulebook import (
    Ref,
    Rule,
    iter_conditions,
)
from .atoms import (
    Slot,
)
from .gaps import add_gap, in_box
from .promises import report_coverage
from .runs import _case_key, _Run

if TYPE_CHECKING:
    from .verifier import _Verifier


def check_corpus(v: _Verifier) -> None:
    """Run pairwise combinations of the tested values and seeded random cases."""
    if v.advisor is None:
        return
    model = v.model
    rng = random.Random(f"{v.seed}:corpus")  # noqa: S311 - seeded sampling
    max_n = 3
    params: list[tuple[Slot, list[Any]]] = []
    for slot in sorted(v.tested_slots(max_n)):
        if slot[0] == "opinion" and slot[1] >= max_n:
            continue
        params.append((slot, model.domain(slot)))
    counts = [n for n in model.opinion_counts if n <= max_n]
    rows = _pairwise([("n", counts), *((s, d) for s, d in params)], rng, limit=v.samples)
    for row in rows:
        n = row.pop("n")
        v.run(model.witness(n, {s: v for s, v in row.items() if s[0] != "opinion" or s[1] < n}))
    for _ in range(v.samples):
        n = rng.choice(counts)
        point = {s: rng.choice(d) for s, d in params if s[0] != "opinion" or s[1] < n}
        v.run(model.witness(n, point))


def check_runs(v: _Verifier) -> None:
    """Compare every engine run with the analysis."""
    recommenders = v.recommenders()
    for run in sorted(v.runs.values(), key=lambda r: len(_case_key(r.case))):
        if run.error is not None:
            report_engine_error(v, run)
            continue
        if run.trace is None:
            continue
        for rule, static in zip(v.rules, v.fired_statically(run), strict=True):
            engine = rule.id in run.fired
            if rule.id in v.dead and engine:
                dead = v.dead.pop(rule.id)
                v.findings.remove(dead)
            if static != engine and rule.id not in v.disagreeing:
                v.disagreeing.add(rule.id)
                says = "fires" if engine else "does not fire"
                v.add(
                    "engine-disagrees",
                    "error",
                    (rule.id,),
                    f"the engine says the rule {says} on this case; the analysis says the opposite",
                    witness=run.case,
                    confirmed=True,
                )
        for kind_a, kind_b in v.rulebook.incompatible_kinds:
            if {kind_a, kind_b} <= run.kinds:
                ids = sorted(
                    r.rule_ids[0] for r in run.trace.recommendations if r.kind in (kind_a, kind_b) and r.rule_ids
                )
                if any(frozenset(p) in v.conflict_pairs for p in itertools.combinations(ids, 2)):
                    continue
                v.conflict_pairs.add(frozenset(ids))
                v.add(
                    "conflict",
                    "error",
                    ids,
                    f"the engine gave both {kind_a} and {kind_b} for this case",
                    witness=run.case,
                    confirmed=True,
                )
        for cov in v.rulebook.coverage:
            if not v.model.holds(v.model.coverage_alts(cov, run.n), run.n, run.values, run.memo):
                continue
            groups = [cov.requires_kinds] if cov.mode == "any" else [(k,) for k in cov.requires_kinds]
            for kinds in groups:
                if not (set(kinds) & run.kinds):
                    report_coverage(v, cov, kinds, run.case)
        if recommenders and not run.trace.recommendations and not in_box(v, run) and len(v.of_kind("gap")) < v.max_gaps:
            tested = sorted(v.tested_slots(run.n))
            seed = {s: run.values[s] for s in tested}
            add_gap(v, run.n, seed, tested)


def report_engine_error(v: _Verifier, run: _Run) -> None:
    names = tuple(culprits(v, run))
    if names in v.error_rules:
        return
    v.error_rules.add(names)
    v.add(
        "engine-error",
        "error",
        names,
        f"the engine fails on this valid case ({run.error})",
        witness=run.case,
        confirmed=True,
    )


def culprits(v: _Verifier, run: _Run) -> Iterator[str]:
    """Rules whose own engine (with the rules they build on) fails on the case."""
    facts = case_facts(load_case(dict(run.case)))
    for rule in v.rules:
        if not any(isinstance(c.value, Ref) for p in rule.when for c in iter_conditions(p.tests)):
            continue
        compiled = compile_rules(closure(v, rule))
        try:
            Engine(compiled.rules, compiled.derive).run(facts)
        except EngineError:
            yield rule.id


def closure(v: _Verifier, rule: Rule) -> list[Rule]:
    out: dict[str, Rule] = {}
    todo = [rule]
    while todo:
        current = todo.pop()
        if current.id in out:
            continue
        out[current.id] = current
        for pattern in current.when:
            todo.extend(v.model.producers.get(pattern.fact, ()))
    return list(out.values())


def _pairwise(params: Sequence[tuple[Any, Sequence[Any]]], rng: random.Random, *, limit: int) -> list[dict[Any, Any]]:
    """Rows that cover every pair of values of every two parameters (greedy, seeded), at most ``limit``."""
    names = [p for p, _ in params]
    sizes = [len(d) for _, d in params]
    count = len(names)
    # unmet[i][a][j] = values b of parameter j not yet seen with value a of parameter i (kept both ways round)
    unmet = [[[set(range(sizes[j])) for j in range(count)] for _ in range(sizes[i])] for i in range(count)]
    pairs = [(i, a, j) for i, j in itertools.combinations(range(count), 2) for a in range(sizes[i])]
    first = 0  # the first (i, a, j), j > i, with an unmet pair: a set once empty stays empty
    rows: list[dict[Any, Any]] = []
    while len(rows) < limit:
        while first < len(pairs) and not unmet[pairs[first][0]][pairs[first][1]][pairs[first][2]]:
            first += 1
        if first == len(pairs):
            break
        i0, a0, j0 = pairs[first]
        choice: dict[int, int] = {i0: a0, j0: min(unmet[i0][a0][j0])}
        order = [k for k in range(count) if k not in choice]
        rng.shuffle(order)
        needs = [unmet[c][cv] for c, cv in choice.items()]  # for each value chosen, what it still needs (in order)
        for k in order:
            gain = [0] * sizes[k]
            for need in needs:
                for v in need[k]:
                    gain[v] += 1
            choice[k] = best = gain.index(max(gain))  # the first value with the most gain
            needs.append(unmet[k][best])
        picked = list(choice.items())
        for x, (i, a) in enumerate(picked):  # every pair of the row is now met
            need = needs[x]
            for y in range(x + 1, len(picked)):
                j, b = picked[y]
                need[j].discard(b)
                needs[y][i].discard(a)
        rows.append({names[k]: params[k][1][v] for k, v in choice.items()})
    return rows
