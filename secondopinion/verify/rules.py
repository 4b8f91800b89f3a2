"""Checks of single rules: their own examples, dead rules (with the reason) and masked rules."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import attrs

from ..rulebook import (
    Rule,
)
from .atoms import (
    Atom,
    Slot,
    _atom_slots,
    _path,
    _Plan,
    _truth,
)
from .model import _SINGLETONS

if TYPE_CHECKING:
    from .verifier import _Verifier


def check_examples(v: _Verifier) -> None:
    if v.advisor is None:
        return
    for rule in v.rules:
        for expected, examples in (("fires", rule.fires), ("silent", rule.silent)):
            for example in examples:
                run = v.run(example.case)
                if run.trace is None:
                    continue
                if (rule.id in run.effective) != (expected == "fires"):
                    verb = "fire" if expected == "fires" else "stay silent"
                    v.add(
                        "example-fails",
                        v.severity_for(rule),
                        (rule.id,),
                        f"example at {rule.file}:{example.line} should {verb} but does not",
                        witness=example.case,
                        confirmed=True,
                    )


def check_dead_and_masked(v: _Verifier) -> None:
    model = v.model
    for rule in v.rules:
        found = model.first_solution(
            model.opinion_counts, lambda n, r=rule: model.rule_alts(r, n), goal=f"rule:{rule.id}"
        )
        if found is None:
            if f"rule:{rule.id}" in model.limited:
                continue
            v.dead[rule.id] = v.add(
                "dead-rule",
                v.severity_for(rule),
                (rule.id,),
                f"can never fire: {explain_dead(v, rule)}",
                confirmed=True,
            )
            continue
        v.fire_witness[rule.id] = found
        v.run(model.witness(*found))
        if not rule.unless:
            continue
        effective = model.first_solution(
            model.opinion_counts,
            lambda n, r=rule: model.rule_alts(r, n),
            lambda n, r=rule: model.unless_alts(r, n),
            goal=f"rule:{rule.id}",
        )
        if effective is not None:
            v.run(model.witness(*effective))
            continue
        witness = model.witness(*found)
        run = v.run(witness)
        confirmed = run.trace is not None and rule.id in run.fired and rule.id not in run.effective
        v.add(
            "masked-rule",
            v.severity_for(rule),
            (rule.id,),
            "fires, but its 'unless' always holds back the recommendation",
            witness=witness,
            confirmed=confirmed,
        )


def explain_dead(v: _Verifier, rule: Rule) -> str:
    model = v.model
    for pattern in rule.when:
        if pattern.fact in v.rulebook.derived_types and not model.producers.get(pattern.fact):
            return f"no rule derives {pattern.fact!r} (pattern {pattern.bind!r})"
    facts = [p.fact for p in rule.when]
    for fact in sorted(set(facts)):
        if fact in _SINGLETONS and facts.count(fact) > 1:
            return f"two patterns need two different {fact!r} facts, but a case has only one"
    for i, pattern in enumerate(rule.when):
        goal = f"why:{rule.id}:{i}"
        plans = model.goal_plans(goal, rule.when[: i + 1])
        alone = model.first_solution(model.opinion_counts, lambda n, p=plans, g=goal: model.alts(g, p, n), goal=goal)
        if alone is not None:
            continue
        detail = explain_unary(v, goal, plans)
        if i > 0:
            return (
                f"pattern {pattern.bind!r} ({pattern.fact}) cannot hold together with the patterns before it" + detail
            )
        if pattern.fact in v.rulebook.derived_types:
            return f"no rule derives a {pattern.fact!r} fact that meets pattern {pattern.bind!r}'s tests" + detail
        return f"pattern {pattern.bind!r} ({pattern.fact}) can never match" + detail
    return "its patterns cannot all hold at once (a join or the values they share rule it out)"


def explain_unary(v: _Verifier, goal: str, plans: Sequence[_Plan]) -> str:
    model = v.model
    for n in model.opinion_counts[:3]:
        for alt in model.alts(goal, plans, n):
            by_slot: dict[Slot, list[Atom]] = {}
            for atom in alt.atoms:
                slots = _atom_slots(atom, n)
                if len(slots) == 1:
                    by_slot.setdefault(next(iter(slots)), []).append(atom)
            for slot, atoms in sorted(by_slot.items()):
                if not any(all(_truth(a, {slot: v}, n) for a in atoms) for v in model.domain(slot)):
                    return (
                        f": no value of {_path(slot).replace('opinions[0]', 'opinion')} "
                        "that the case model allows passes all its tests"
                    )
    return ""


def fold_dead_examples(v: _Verifier) -> None:
    """A dead rule's 'fires' examples cannot fire: say so in the dead-rule finding, not as a second error."""
    for rule_id, dead in list(v.dead.items()):
        failing = [
            f
            for f in v.findings
            if f.kind == "example-fails" and f.rule_ids == (rule_id,) and "should fire" in f.message
        ]
        if not failing:
            continue
        for finding in failing:
            v.findings.remove(finding)
        where = ", ".join(f.message.split(" ")[2] for f in failing)
        folded = attrs.evolve(dead, message=f"{dead.message} (so its 'fires' example at {where} cannot fire)")
        v.findings[v.findings.index(dead)] = folded
        v.dead[rule_id] = folded
