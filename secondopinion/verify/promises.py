"""Declared promises: coverage requirements and monotonicity requirements, decided exactly."""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ..rulebook import (
    Coverage,
    Rule,
)
from .atoms import (
    ABSENT,
    Slot,
    _tells_apart,
    _TooBig,
)

if TYPE_CHECKING:
    from .verifier import _Verifier


def check_coverage(v: _Verifier) -> None:
    """Decide each coverage requirement exactly: a case it matches on which no giver of the kinds is effective."""
    model = v.model
    for cov in v.rulebook.coverage:
        groups = [cov.requires_kinds] if cov.mode == "any" else [(k,) for k in cov.requires_kinds]
        for kinds in groups:
            givers = [r for r in v.rules if r.recommends in kinds]
            found = model.first_without(
                model.counts_for(givers, cov.when),
                lambda n, c=cov: [a.atoms for a in model.coverage_alts(c, n)],
                givers,
                goal=f"cov:{cov.id}",
            )
            if found is not None:
                report_coverage(v, cov, kinds, model.witness(*found))


def report_coverage(v: _Verifier, cov: Coverage, kinds: Sequence[str], witness: Mapping[str, Any]) -> None:
    if f"{cov.id}:{kinds}" in v.coverage_missed:
        return
    v.coverage_missed.add(f"{cov.id}:{kinds}")
    run = v.run(witness)
    confirmed = run.trace is not None and not (set(kinds) & run.kinds)
    needed = " or ".join(kinds)
    v.add(
        "coverage",
        "error" if confirmed else "warning",
        (cov.id,),
        f"{cov.description} This case matches but gets no {needed}.",
        witness=witness,
        confirmed=confirmed,
    )


def check_monotonicity(v: _Verifier) -> None:
    """For each declared order, look for two cases that differ in one step of it and lose a kept kind.

    One step suffices: if a kind is given at a low value and not at a
    higher one, it is lost at some step between them. The first case
    must have a rule giving the kind without its ``unless``; the second,
    the same case with the attribute one step higher, must have none
    (decided exactly, as for coverage). Both are run through the engine.
    """
    model = v.model
    for mono in v.rulebook.monotonicity:
        slot: Slot = (mono.fact, 0, mono.attr)
        raised: Slot = (mono.fact, 1, mono.attr)  # a singleton aspect never uses index 1: the second case
        values = [v for v in model.domain(slot) if v is not ABSENT]
        if isinstance(mono.order, tuple):
            steps = list(itertools.pairwise(mono.order))
        else:
            numbers = sorted(values, reverse=mono.order == "decreasing")
            steps = list(itertools.pairwise(numbers))
        for kind in mono.keeps_kinds:
            givers = [r for r in v.rules if r.recommends == kind and r.id not in v.dead]
            found = monotonicity_pair(v, mono.id, kind, slot, raised, steps, givers)
            if found is None:
                continue
            giver, n, assignment = found
            before_values = {s: v for s, v in assignment.items() if s != raised}
            before = model.witness(n, before_values)
            after = model.witness(n, {**before_values, slot: assignment[raised]})
            run_before, run_after = v.run(before), v.run(after)
            confirmed = (
                run_before.trace is not None
                and run_after.trace is not None
                and kind in run_before.kinds
                and kind not in run_after.kinds
            )
            v.add(
                "monotonicity",
                "error" if confirmed else "warning",
                (mono.id, giver.id),
                f"{mono.description} Raising {mono.attribute} from {assignment[slot]} to "
                f"{assignment[raised]} removes {kind} (given by {giver.id}).",
                witness=before,
                witness_after=after,
                confirmed=confirmed,
            )


def monotonicity_pair(
    v: _Verifier,
    mono_id: str,
    kind: str,
    slot: Slot,
    raised: Slot,
    steps: Sequence[tuple[Any, Any]],
    givers: Sequence[Rule],
) -> tuple[Rule, int, dict[Slot, Any]] | None:
    model = v.model
    rename = {slot: raised}
    for n in model.counts_for(givers):
        tests = {
            rule.id: [a for alt in model.rule_alts(rule, n) + model.unless_alts(rule, n) for a in alt.atoms]
            for rule in givers
        }
        for low, high in steps:
            step = [("member", ("s", slot, 0), (low,)), ("member", ("s", raised, 0), (high,))]
            # only a rule with a test that tells the two values apart can stop giving the kind
            # when the value rises (the rest of the case is the same)
            turning = [g for g in givers if any(_tells_apart(a, slot, low, high, n) for a in tests[g.id])]
            for giver in turning:
                nogoods = [u.atoms for u in model.unless_alts(giver, n)]
                for alt in model.rule_alts(giver, n):
                    try:
                        found = model.solve_without(n, [*alt.atoms, *step], givers, rename=rename, nogoods=nogoods)
                    except _TooBig:
                        model.limited.add(f"mono:{mono_id}")
                        continue
                    if found is not None:
                        return giver, n, found
    return None
