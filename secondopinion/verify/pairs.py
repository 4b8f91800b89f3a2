"""Checks of pairs of rules: conflicts between incompatible kinds, and redundant rules."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..rulebook import (
    Derive,
    Recommend,
    Ref,
    Rule,
)
from .atoms import (
    Slot,
    _TooBig,
)
from .model import _SINGLETONS

if TYPE_CHECKING:
    from .verifier import _Verifier


def check_conflicts(v: _Verifier) -> None:
    model = v.model
    for kind_a, kind_b in v.rulebook.incompatible_kinds:
        side_a = [r for r in v.rules if r.recommends == kind_a]
        side_b = [r for r in v.rules if r.recommends == kind_b]
        for a in side_a:
            for b in side_b:
                if a.id in v.dead or b.id in v.dead:
                    continue
                found = solve_pair(v, a, b)
                if found is None:
                    continue
                witness = model.witness(*found)
                run = v.run(witness)
                confirmed = run.trace is not None and {a.id, b.id} <= run.effective
                v.conflict_pairs.add(frozenset((a.id, b.id)))
                v.add(
                    "conflict",
                    "error" if confirmed else "warning",
                    (a.id, b.id),
                    f"{a.id} ({kind_a}) and {b.id} ({kind_b}) are declared incompatible but both apply to this case",
                    witness=witness,
                    confirmed=confirmed,
                )


_PAIR_STEPS = 20_000  # solver steps for one combination of the two rules' alternatives
_PAIR_GIVE_UP = 3  # combinations past that budget before the pair is left as an analysis limit


def solve_pair(v: _Verifier, a: Rule, b: Rule) -> tuple[int, dict[Slot, Any]] | None:
    model = v.model
    too_big = 0
    for n in model.counts_for((a, b)):
        nogoods = [alt.atoms for alt in model.unless_alts(a, n) + model.unless_alts(b, n)]
        for alt_a in model.rule_alts(a, n):
            for alt_b in model.rule_alts(b, n):
                try:
                    found = model.solve(n, alt_a.atoms + alt_b.atoms, nogoods, budget=_PAIR_STEPS)
                except _TooBig:
                    model.limited.add(f"pair:{a.id}")
                    too_big += 1
                    if too_big >= _PAIR_GIVE_UP:
                        return None
                    continue
                if found is not None:
                    return n, found
    return None


def check_redundancy(v: _Verifier) -> None:
    model = v.model
    groups: dict[Any, list[Rule]] = {}
    for rule in v.rules:
        if rule.id in v.dead:
            continue
        sig = _conclusion(rule)
        if sig is not None:
            groups.setdefault(sig, []).append(rule)
    reported: set[frozenset[str]] = set()
    for members in groups.values():
        for a in members:
            for b in members:
                if a is b or not set(b.unless) <= set(a.unless):
                    continue
                if not subsumed(v, a, b):
                    continue
                pair = frozenset((a.id, b.id))
                if pair in reported:
                    continue
                reported.add(pair)
                both = set(a.unless) == set(b.unless) and subsumed(v, b, a)
                witness = model.witness(*v.fire_witness[a.id])
                run = v.run(witness)
                confirmed = run.trace is not None and {a.id, b.id} <= run.fired
                message = (
                    f"{a.id} and {b.id} fire on exactly the same cases with the same conclusion"
                    if both
                    else f"every case that fires {a.id} also fires {b.id}, which concludes the same"
                )
                v.add("redundant-rule", "warning", (a.id, b.id), message, witness=witness, confirmed=confirmed)


def subsumed(v: _Verifier, a: Rule, b: Rule) -> bool:
    """Whether every firing of ``a`` is a firing of ``b`` (over the opinion counts explored)."""
    model = v.model
    for n in model.counts_for((a, b)):
        nogoods = [alt.atoms for alt in model.rule_alts(b, n)]
        for alt in model.rule_alts(a, n):
            try:
                if model.solve(n, alt.atoms, nogoods) is not None:
                    return False
            except _TooBig:
                model.limited.add(f"pair:{a.id}")
                return False
    return True


def _conclusion(rule: Rule) -> Any:
    """What a rule concludes, comparable between rules; None when it depends on which facts matched.

    A recommendation's conclusion is its kind, priority and fields: a rule that
    would change the priority or a field of the merged recommendation is not
    redundant. Titles and details are wording and do not count.
    """
    singles = {p.bind: p.fact for p in rule.when if p.fact in _SINGLETONS}

    def sig(value: Any) -> Any:
        if isinstance(value, Ref):
            if value.binding not in singles:
                raise LookupError
            return ("ref", singles[value.binding], value.attr, value.add)
        return value

    try:
        if isinstance(rule.then, Derive):
            return ("derive", rule.then.fact, tuple(sorted((k, sig(v)) for k, v in rule.then.set.items())))
        assert isinstance(rule.then, Recommend)
        fields = tuple(sorted((k, sig(v)) for k, v in rule.then.fields.items()))
        return ("recommend", rule.then.kind, rule.then.priority, fields)
    except LookupError:
        return None
