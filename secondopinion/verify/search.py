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
    ABSENT,
    Atom,
    Predicate,
    Slot,
    _predicate,
    _slots_of,
    _TooBig,
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
    Atoms are evaluated through their compiled :func:`.atoms._predicate`.
    """
    variables: set[Slot] = set(also)
    for atom in positive:
        variables |= _slots_of(atom)
    for nogood in nogoods:
        if not nogood:
            return None  # a nogood that always holds
        for atom in nogood:
            variables |= _slots_of(atom)
    domains: dict[Slot, list[Any]] = {s: domain(s) for s in variables}
    if rng is not None:
        for slot in sorted(domains):  # in slot order: a set's order changes with the hash seed of each process
            rng.shuffle(domains[slot])
    constraints: list[_Constraint] = []
    in_positive: set[Slot] = set()
    guards: list[Atom] = []
    for atom in positive:
        slots = tuple(sorted(_slots_of(atom)))
        if atom[0] == "ineffective" and len(slots) > 1:
            guards.append(atom)
        elif len(slots) == 1:
            slot = slots[0]
            check = _predicate(atom)
            domains[slot] = [v for v in domains[slot] if check({slot: v})]
            if not domains[slot]:
                return None
        else:
            constraints.append(_Constraint(slots, _predicate(atom), relation=_relation(atom)))
            in_positive.update(slots)
    nogoods = list(nogoods)
    judged: dict[Atom, tuple[bool, bool]] = {}  # one-slot atoms on the current domains (cleared when one narrows)

    def judge(atom: Atom, slot: Slot) -> tuple[bool, bool]:
        """Whether a one-slot atom holds for some, and for every, value of the slot's domain."""
        verdict = judged.get(atom)
        if verdict is None:
            test = _predicate(atom)
            passing = [test({slot: v}) for v in domains[slot]]
            verdict = judged[atom] = (any(passing), all(passing))
        return verdict

    def narrow(slot: Slot, check: Predicate) -> bool:
        """Keep the values of one slot's domain that pass ``check``; whether any is left."""
        domains[slot] = [v for v in domains[slot] if check({slot: v})]
        judged.clear()
        return bool(domains[slot])

    for guard in guards:  # after every one-slot test has narrowed the domains
        simple = _simplify_guard(guard, judge)
        if simple is False:
            return None
        if simple is True:
            continue
        if not simple[2]:  # nothing can hold the rule back: each way it fires is a nogood of its own
            nogoods.extend(simple[1])
        else:
            slots = tuple(sorted(_slots_of(simple)))
            check = _predicate(simple)
            if len(slots) == 1:
                if not narrow(slots[0], check):
                    return None
            else:
                constraints.append(_Constraint(slots, check, broken=_broken(simple)))
                in_positive.update(slots)
    for nogood in nogoods:
        per_atom = [(_slots_of(a), _predicate(a), _relation(a)) for a in nogood]
        one_slot = [(a, next(iter(sl))) for a, (sl, _, _) in zip(nogood, per_atom, strict=True) if len(sl) == 1]
        if len(one_slot) == len(per_atom) and all(judge(a, slot)[1] for a, slot in one_slot):
            return None  # the positive tests already force this nogood
        if any(not judge(a, slot)[0] for a, slot in one_slot):
            continue  # some test of it can never hold: the nogood is harmless
        slots = tuple(sorted({s for sl, _, _ in per_atom for s in sl}))
        check = _outside([p for _, p, _ in per_atom])
        if len(slots) == 1:
            if not narrow(slots[0], check):
                return None
        else:
            constraints.append(_Constraint(slots, check, parts=per_atom))
    watch: dict[Slot, list[_Constraint]] = {s: [] for s in variables}
    for constraint in constraints:
        for slot in constraint.slots:
            watch[slot].append(constraint)
    # smallest domain first; among equals, slots in positive constraints first, then by slot
    ranked = sorted(variables, key=lambda s: (s not in in_positive, s))
    assignment: dict[Slot, Any] = {}
    unassigned = set(variables)
    steps = 0

    def search() -> bool:
        nonlocal steps
        if not unassigned:
            return True
        # the unassigned slot with the smallest domain, the first in rank order among those (once a domain
        # of one value is found, none can be smaller)
        slot = ranked[0]
        smallest = -1
        for candidate in ranked:
            if candidate in assignment:
                continue
            size = len(domains[candidate])
            if smallest < 0 or size < smallest:
                slot, smallest = candidate, size
                if size <= 1:
                    break
        unassigned.discard(slot)
        watching = watch[slot]
        for constraint in watching:
            constraint.open -= 1
        for value in list(domains[slot]):
            steps += 1
            if steps > budget:
                raise _TooBig
            assignment[slot] = value
            saved: list[tuple[Slot, list[Any]]] = []
            good = True
            for constraint in watching:
                left = constraint.open
                if not left:
                    if not constraint.check(assignment):
                        good = False
                        break
                elif constraint.broken is not None and constraint.broken(assignment):
                    good = False
                    break
                elif left == 1:
                    for other in constraint.slots:  # the one slot left free
                        if other not in assignment:
                            break
                    before = domains[other]
                    kept = constraint.kept(other, before, assignment)
                    if len(kept) < len(before):
                        saved.append((other, before))
                        domains[other] = kept
                        if not kept:
                            good = False
                            break
            if not good:
                # the order in which the constraints are read changes nothing but the time: whether a value
                # fails, and the domains it leaves, do not depend on it; the one that failed is read first next
                if constraint is not watching[0]:
                    watching.remove(constraint)
                    watching.insert(0, constraint)
            elif search():
                return True
            for other, values in reversed(saved):
                domains[other] = values
        del assignment[slot]
        for constraint in watching:
            constraint.open += 1
        unassigned.add(slot)
        return False

    return dict(assignment) if search() else None


class _Constraint:
    """A constraint of the search on two or more slots.

    ``check`` tells whether it holds once all its slots are assigned;
    ``broken`` (``ineffective`` guards only) whether a partial assignment
    already makes the rule give its advice; ``parts`` (nogoods only) are the
    nogood's tests, each with the slots it reads and its :func:`_relation`;
    ``relation`` (a test that two slots are equal or differ) is the test's
    :func:`_relation`. ``open`` counts its slots the search has not assigned
    yet.
    """

    __slots__ = ("_split", "broken", "check", "open", "parts", "relation", "slots")

    def __init__(
        self,
        slots: tuple[Slot, ...],
        check: Predicate,
        *,
        broken: Predicate | None = None,
        parts: Sequence[tuple[frozenset[Slot], Predicate, _Relation | None]] | None = None,
        relation: _Relation | None = None,
    ) -> None:
        self.slots = slots
        self.check = check
        self.broken = broken
        self.parts = parts
        self.relation = relation
        self.open = len(slots)
        self._split: dict[Slot, _Split] = {}

    def kept(self, other: Slot, domain: list[Any], assignment: dict[Slot, Any]) -> list[Any]:
        """The values of ``other``, the one slot left free, with which the constraint holds (forward checking).

        A nogood's tests that do not read ``other`` are read once: if one
        fails, the nogood holds whatever ``other`` is (``domain`` is returned
        as it is); else only the tests that read ``other`` are tried on each
        value (one that reads ``other`` alone, once per value; one that
        compares it with another slot, as that comparison).
        """
        if self.parts is not None:
            split = self._split.get(other)
            if split is None:
                split = self._split[other] = _split(self.parts, other)
            fixed, tests, alone, relation = split
            for test in fixed:
                if not test(assignment):
                    return domain
            if alone is not None:  # one test, on ``other`` alone: its truth by value
                kept = []
                for candidate in domain:
                    truth = alone.get(candidate)
                    if truth is None:
                        truth = alone[candidate] = tests[0]({other: candidate})
                    if not truth:
                        kept.append(candidate)  # the nogood is not wholly true
                return kept
            if relation is not None:  # one test, ``other`` equal to (or other than) a known slot
                op, left, right = relation
                known = assignment[right if other == left else left]
                if known is ABSENT:
                    return domain  # the test fails whatever ``other`` is
                if op == "eq":
                    return [c for c in domain if c is ABSENT or c != known]
                return [c for c in domain if c is ABSENT or c == known]
            kept = []
            for candidate in domain:
                assignment[other] = candidate
                for test in tests:
                    if not test(assignment):
                        kept.append(candidate)
                        break
            del assignment[other]
            return kept
        if self.relation is not None:  # the values equal to (or other than) the other slot's, never ABSENT
            op, left, right = self.relation
            known = assignment[right if other == left else left]
            if known is ABSENT:
                return []
            if op == "eq":
                return [c for c in domain if c is not ABSENT and c == known]
            return [c for c in domain if c is not ABSENT and c != known]
        check = self.check
        kept = []
        for candidate in domain:
            assignment[other] = candidate
            if check(assignment):
                kept.append(candidate)
        del assignment[other]
        return kept


_Relation = tuple[str, Slot, Slot]

"""(op, left slot, right slot) of a test that two slots' own values are equal ("eq") or differ ("ne")."""


_Split = tuple[tuple[Predicate, ...], tuple[Predicate, ...], dict[Any, bool] | None, _Relation | None]

"""A nogood seen from one free slot: the tests that do not read it, those that do, and, when that is one test,
a memo of its truth by value (the test reads the slot alone) or its relation (see :meth:`_Constraint.kept`)."""


def _split(parts: Sequence[tuple[frozenset[Slot], Predicate, _Relation | None]], other: Slot) -> _Split:
    fixed = tuple(p for slots, p, _ in parts if other not in slots)
    reading = [(slots, p, relation) for slots, p, relation in parts if other in slots]
    tests = tuple(p for _, p, _ in reading)
    if len(reading) == 1:
        slots, _, relation = reading[0]
        if len(slots) == 1:
            return fixed, tests, {}, None
        return fixed, tests, None, relation
    return fixed, tests, None, None


def _relation(atom: Atom) -> _Relation | None:
    """(op, left slot, right slot) when the atom tests that two slots' own values are equal (or differ)."""
    if atom[0] != "cmp" or atom[2] not in ("eq", "ne"):
        return None
    _, left, op, right = atom
    if left[0] == "s" and not left[2] and isinstance(right, tuple) and right[0] == "s" and not right[2]:
        return op, left[1], right[1]
    return None


def _outside(parts: Sequence[Predicate]) -> Predicate:
    """A nogood's check: not every one of its tests holds."""
    tests = tuple(parts)

    def outside(values: Mapping[Slot, Any]) -> bool:
        for test in tests:  # noqa: SIM110 - a plain loop: no generator in the innermost calls
            if not test(values):
                return True
        return False

    return outside


def _simplify_guard(guard: Atom, judge: Callable[[Atom, Slot], tuple[bool, bool]]) -> Atom | bool:
    """An ``ineffective`` atom reduced by the slots' domains: True (always holds), False (never), or a smaller atom.

    ``judge`` tells whether a one-slot atom holds for some, and for every,
    value of its slot's domain.
    """

    def reduce(alt: Sequence[Atom]) -> tuple[Atom, ...] | None:
        kept: list[Atom] = []
        for atom in alt:
            slots = _slots_of(atom)
            if not slots:
                if not _predicate(atom)({}):
                    return None
                continue
            if len(slots) == 1:
                (slot,) = slots
                some, every = judge(atom, slot)
                if not some:
                    return None  # this alternative can never hold
                if every:
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


def _broken(guard: Atom) -> Predicate:
    """Whether a partial assignment already makes the rule give its advice (the ``ineffective`` guard fails).

    That is: one of the rule's ``when`` alternatives is known to hold and
    every ``unless`` alternative is known to fail (each test is read only once
    all its slots are assigned).
    """
    whens = _compile_alts(guard[1])
    unlesses = _compile_alts(guard[2])

    def broken(assignment: Mapping[Slot, Any]) -> bool:
        if not any(_decided(alt, assignment) is True for alt in whens):
            return False
        return all(_decided(alt, assignment) is False for alt in unlesses)

    return broken


def _compile_alts(alts: Sequence[Sequence[Atom]]) -> tuple[tuple[tuple[Predicate, frozenset[Slot]], ...], ...]:
    """Each atom of each alternative compiled, with the slots it reads."""
    return tuple(tuple((_predicate(a), _slots_of(a)) for a in alt) for alt in alts)


def _decided(alt: Sequence[tuple[Predicate, frozenset[Slot]]], assignment: Mapping[Slot, Any]) -> bool | None:
    """Whether a conjunction holds on a partial assignment: True, False, or None (not yet known)."""
    known = True
    for test, slots in alt:
        if slots <= assignment.keys():
            if not test(assignment):
                return False
        else:
            known = False
    return True if known else None
