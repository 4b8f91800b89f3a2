"""Gaps: regions of cases that get no recommendation at all, grown into boxes."""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ..rulebook import (
    Rule,
)
from .atoms import (
    Atom,
    Slot,
    _Alt,
    _minimal,
    _path,
    _predicate,
    _slots_of,
    _TooBig,
)
from .runs import _Run

if TYPE_CHECKING:
    from .verifier import _Verifier


def check_gaps(v: _Verifier) -> None:
    """Search, for 0, 1 and 2 opinions, for cases no rule gives advice on, each outside the regions found so far."""
    model = v.model
    recommenders = v.recommenders()
    if not recommenders:
        return
    for n in model.opinion_counts[:3]:
        tested = sorted(v.tested_slots(n))
        rule_nogoods = [alt.atoms for alt in _minimal([a for r in recommenders for a in model.rule_alts(r, n)])]
        while len(v.of_kind("gap")) < v.max_gaps:
            previous = [
                {s: v for s, v in box.items() if s[0] != "opinion" and len(v) < len(model.domain(s))}
                for boxes in v.boxes.values()
                for box in boxes
            ]
            try:
                seed = escape(v, n, previous, rule_nogoods, tested)
            except _TooBig:
                model.limited.add("gaps")
                break
            if seed is None:
                break
            add_gap(v, n, seed, tested)


def escape(
    v: _Verifier,
    n: int,
    previous: Sequence[Mapping[Slot, frozenset[Any]]],
    rule_nogoods: Sequence[Sequence[Atom]],
    tested: Sequence[Slot],
) -> dict[Slot, Any] | None:
    """A case no rule advises on that lies outside every earlier region (on the case's single aspects)."""
    # depth first: one 'outside' choice per earlier region, the choices in order (an explicit stack, so no
    # recursive closure holds the verifier in a reference cycle: see verifier._collector_paused)
    attempts = 0
    stack: list[tuple[int, list[Atom]]] = [(0, [])]
    while stack:
        i, positive = stack.pop()
        attempts += 1
        if attempts > 400:
            raise _TooBig
        if i == len(previous):
            found = v.model.solve(n, positive, rule_nogoods, also=tested, budget=20_000)
            if found is not None:
                return found
            continue
        choices = sorted(previous[i].items())
        stack.extend((i + 1, [*positive, ("outside", ("s", slot, 0), values)]) for slot, values in reversed(choices))
    return None


def add_gap(v: _Verifier, n: int, seed: Mapping[Slot, Any], tested: Sequence[Slot]) -> None:
    model = v.model
    box = grow_box(v, n, seed, tested)
    v.boxes.setdefault(n, []).append(box)
    witness = model.witness(n, seed)
    run = v.run(witness)
    confirmed = run.trace is not None and not run.trace.recommendations
    rng = random.Random(f"{v.seed}:gap:{len(v.findings)}")  # noqa: S311 - seeded sampling
    for _ in range(8):
        point = {s: rng.choice(sorted(v, key=repr)) for s, v in box.items()}
        other = v.run(model.witness(n, point))
        if other.trace is None or other.trace.recommendations:
            confirmed = False
    region = {_path(s): tuple(sorted(v, key=repr)) for s, v in box.items() if len(v) < len(model.domain(s))}
    v.add(
        "gap",
        "warning",
        (),
        f"no recommendation at all for any case with {n} opinion(s) in this region "
        f"({len(region)} attributes narrowed, the others may take any value)",
        witness=witness,
        confirmed=confirmed,
        region={"opinion_count": (n,), **region},
    )


def grow_box(v: _Verifier, n: int, seed: Mapping[Slot, Any], tested: Sequence[Slot]) -> dict[Slot, frozenset[Any]]:
    """Widen a gap case, one attribute at a time, to a box of cases that all get no recommendation."""
    model = v.model
    box: dict[Slot, frozenset[Any]] = {s: frozenset([seed[s]]) for s in tested}
    by_slot: dict[Slot, list[tuple[Rule, _Alt]]] = {}
    for rule in v.recommenders():
        alts = model.rule_alts(rule, n)
        unless_slots = {s for alt in model.unless_alts(rule, n) for s in alt.slots}
        for alt in alts:
            for slot in alt.slots | unless_slots:
                by_slot.setdefault(slot, []).append((rule, alt))
    # empty_in's quick test, prepared once: each alternative's one-slot tests on the box's slots, each as the
    # values (of all those the box can hold) that pass it
    passing: dict[Atom, frozenset[Any]] = {}
    one_slot: dict[int, list[tuple[Slot, frozenset[Any]]]] = {}  # by id of the alternatives in by_slot
    for pairs in by_slot.values():
        for _, alt in pairs:
            if id(alt) in one_slot:
                continue
            tests: list[tuple[Slot, frozenset[Any]]] = []
            for atom in alt.atoms:
                atom_slots = _slots_of(atom)
                if len(atom_slots) != 1:
                    continue
                (slot,) = atom_slots
                if slot not in box:
                    continue
                ok = passing.get(atom)
                if ok is None:
                    test = _predicate(atom)
                    ok = passing[atom] = frozenset(x for x in {seed[slot], *model.domain(slot)} if test({slot: x}))
                tests.append((slot, ok))
            one_slot[id(alt)] = tests
    for slot in tested:
        # while one slot widens, the box keeps its other slots: an alternative one of their tests rules out
        # (empty_in's quick test) is empty whatever the slot's value; the others are tried on each value
        live: list[tuple[Rule, _Alt, list[frozenset[Any]]]] = []
        for rule, alt in by_slot.get(slot, []):
            tests = one_slot[id(alt)]
            if not any(s != slot and box[s].isdisjoint(ok) for s, ok in tests):
                live.append((rule, alt, [ok for s, ok in tests if s == slot]))
        for value in model.domain(slot):
            if value in box[slot]:
                continue
            trial = {**box, slot: frozenset([value])}
            if all(any(value not in ok for ok in own) or empty_in(v, rule, alt, n, trial) for rule, alt, own in live):
                box[slot] = box[slot] | {value}
    return box


def empty_in(v: _Verifier, rule: Rule, alt: _Alt, n: int, box: Mapping[Slot, frozenset[Any]]) -> bool:
    """Whether no case in the box makes this alternative of the rule fire without its 'unless'."""
    model = v.model
    for atom in alt.atoms:  # quick test: a one-slot atom no value of the box passes
        atom_slots = _slots_of(atom)
        if len(atom_slots) == 1:
            (slot,) = atom_slots
            if slot in box and not any(_predicate(atom)({slot: v}) for v in box[slot]):
                return True
    nogoods = [u.atoms for u in model.unless_alts(rule, n)]
    slots = set(alt.slots) | {s for u in nogoods for a in u for s in _slots_of(a)}
    members = [("member", ("s", s, 0), box[s]) for s in slots if s in box]
    try:
        return model.solve(n, [*alt.atoms, *members], nogoods, budget=5_000) is None
    except _TooBig:
        return False


def in_box(v: _Verifier, run: _Run) -> bool:
    """Whether a case lies in a gap region found so far (for other opinion counts: on its single aspects)."""
    return any(
        all(run.values[s] in v for s, v in box.items() if n == run.n or s[0] != "opinion")
        for n, boxes in v.boxes.items()
        for box in boxes
    )
