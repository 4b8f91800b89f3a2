"""The region search: a backtracking solver over finite domains, with exact negation.

Nogoods (conjunctions that must not all hold) and ``ineffective`` guards
("this rule gives no advice here": none of its ``when`` alternatives holds, or
one of its ``unless`` alternatives does) are checked as soon as enough of the
assignment is known.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from .atoms import (
    Atom,
    Slot,
    _atom_slots,
    _TooBig,
    _truth,
)


def solve(
    domain: Callable[[Slot], list[Any]],
    n: int,
    positive: Sequence[Atom],
    nogoods: Sequence[Sequence[Atom]] = (),
    *,
    rng: random.Random | None = None,
    also: Iterable[Slot] = (),
    budget: int = 200_000,
) -> dict[Slot, Any] | None:
    """An assignment of slots that makes every positive atom true and no nogood wholly true.

    Backtracking with forward checking and smallest-domain-first. ``also``
    adds slots to assign (randomly when ``rng`` is given, else the
    default value first). Raises :class:`_TooBig` past ``budget`` steps.
    """
    variables: set[Slot] = set(also)
    for atom in positive:
        variables |= _atom_slots(atom, n)
    for nogood in nogoods:
        if not nogood:
            return None  # a nogood that always holds
        for atom in nogood:
            variables |= _atom_slots(atom, n)
    domains: dict[Slot, list[Any]] = {s: domain(s) for s in variables}
    if rng is not None:
        for values in domains.values():
            rng.shuffle(values)
    constraints: list[tuple[tuple[Slot, ...], bool, Any]] = []  # (slots, positive?, atom or atoms)
    guards: list[Atom] = []
    for atom in positive:
        slots = tuple(sorted(_atom_slots(atom, n)))
        if atom[0] == "ineffective" and len(slots) > 1:
            guards.append(atom)
        elif len(slots) == 1:
            slot = slots[0]
            domains[slot] = [v for v in domains[slot] if _truth(atom, {slot: v}, n)]
            if not domains[slot]:
                return None
        else:
            constraints.append((slots, True, atom))
    nogoods = list(nogoods)
    for guard in guards:  # after every one-slot test has narrowed the domains
        simple = _simplify_guard(guard, domains, n)
        if simple is False:
            return None
        if simple is True:
            continue
        if not simple[2]:  # nothing can hold the rule back: each way it fires is a nogood of its own
            nogoods.extend(simple[1])
        else:
            slots = tuple(sorted(_atom_slots(simple, n)))
            if len(slots) == 1:
                slot = slots[0]
                domains[slot] = [v for v in domains[slot] if _truth(simple, {slot: v}, n)]
                if not domains[slot]:
                    return None
            else:
                compiled = tuple(
                    tuple(tuple((a, frozenset(_atom_slots(a, n))) for a in alt) for alt in alts)
                    for alts in (simple[1], simple[2])
                )
                constraints.append((slots, True, ("ineffective", simple[1], simple[2], compiled)))
    for nogood in nogoods:
        per_atom = [(_atom_slots(a, n), a) for a in nogood]
        if all(
            len(sl) == 1 and all(_truth(a, {next(iter(sl)): v}, n) for v in domains[next(iter(sl))])
            for sl, a in per_atom
        ):
            return None  # the positive tests already force this nogood
        if any(
            len(sl) == 1 and not any(_truth(a, {next(iter(sl)): v}, n) for v in domains[next(iter(sl))])
            for sl, a in per_atom
        ):
            continue  # some test of it can never hold: the nogood is harmless
        slots = tuple(sorted({s for sl, _ in per_atom for s in sl}))
        if len(slots) == 1:
            slot = slots[0]
            domains[slot] = [v for v in domains[slot] if not all(_truth(a, {slot: v}, n) for a in nogood)]
            if not domains[slot]:
                return None
        else:
            constraints.append((slots, False, tuple(nogood)))
    watch: dict[Slot, list[int]] = {s: [] for s in variables}
    for i, (slots, _, _) in enumerate(constraints):
        for slot in slots:
            watch[slot].append(i)
    in_positive = {s for slots, pos, _ in constraints if pos for s in slots}
    rank = {s: (s not in in_positive, s) for s in variables}
    assignment: dict[Slot, Any] = {}
    unassigned = set(variables)
    steps = 0

    def holds(index: int) -> bool:
        _, pos, payload = constraints[index]
        if pos:
            return _truth(payload, assignment, n)
        return not all(_truth(a, assignment, n) for a in payload)

    def search() -> bool:
        nonlocal steps
        if not unassigned:
            return True
        slot = min(unassigned, key=lambda s: (len(domains[s]), rank[s]))
        unassigned.discard(slot)
        for value in list(domains[slot]):
            steps += 1
            if steps > budget:
                raise _TooBig
            assignment[slot] = value
            saved: list[tuple[Slot, list[Any]]] = []
            good = True
            for index in watch[slot]:
                free = [s for s in constraints[index][0] if s not in assignment]
                if not free:
                    if not holds(index):
                        good = False
                        break
                elif constraints[index][2][0] == "ineffective" and _guard_broken(constraints[index][2], assignment, n):
                    good = False
                    break
                elif len(free) == 1:
                    other = free[0]
                    kept = []
                    for candidate in domains[other]:
                        assignment[other] = candidate
                        if holds(index):
                            kept.append(candidate)
                    del assignment[other]
                    if len(kept) < len(domains[other]):
                        saved.append((other, domains[other]))
                        domains[other] = kept
                        if not kept:
                            good = False
                            break
            if good and search():
                return True
            for other, values in reversed(saved):
                domains[other] = values
        del assignment[slot]
        unassigned.add(slot)
        return False

    return dict(assignment) if search() else None


def _simplify_guard(guard: Atom, domains: Mapping[Slot, Sequence[Any]], n: int) -> Atom | bool:
    """An ``ineffective`` atom reduced by the slots' domains: True (always holds), False (never), or a smaller atom."""

    def reduce(alt: Sequence[Atom]) -> tuple[Atom, ...] | None:
        kept: list[Atom] = []
        for atom in alt:
            slots = _atom_slots(atom, n)
            if not slots:
                if not _truth(atom, {}, n):
                    return None
                continue
            if len(slots) == 1:
                (slot,) = slots
                passing = [_truth(atom, {slot: v}, n) for v in domains[slot]]
                if not any(passing):
                    return None  # this alternative can never hold
                if all(passing):
                    continue  # this test always holds
            kept.append(atom)
        return tuple(kept)

    whens = [r for r in (reduce(alt) for alt in guard[1]) if r is not None]
    unlesses = [r for r in (reduce(alt) for alt in guard[2]) if r is not None]
    if not whens or any(not u for u in unlesses):
        return True  # the rule never fires here, or is always held back
    if any(not w for w in whens) and not unlesses:
        return False  # the rule always fires here and nothing holds it back
    return ("ineffective", tuple(whens), tuple(unlesses))


def _decided(alt: Sequence[tuple[Atom, frozenset[Slot]]], assignment: Mapping[Slot, Any], n: int) -> bool | None:
    """Whether a conjunction holds on a partial assignment: True, False, or None (not yet known)."""
    known = True
    for atom, slots in alt:
        if slots <= assignment.keys():
            if not _truth(atom, assignment, n):
                return False
        else:
            known = False
    return True if known else None


def _guard_broken(guard: Atom, assignment: Mapping[Slot, Any], n: int) -> bool:
    """Whether a partial assignment already makes the rule give its advice (an ``ineffective`` atom fails).

    ``guard`` is the compiled form :meth:`_Model.solve` builds: each atom with its slots.
    """
    whens, unlesses = guard[3]
    if not any(_decided(alt, assignment, n) is True for alt in whens):
        return False
    return all(_decided(alt, assignment, n) is False for alt in unlesses)
