"""The finite model's vocabulary: slots, expressions and atoms, and their meaning on a case.

Atoms are plain tuples (hashable, cheap to compare): see :data:`Expr` and :data:`Atom`.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import attrs

from ..rulebook import (
    Condition,
    Ref,
)


class _Absent:
    """The value of an optional attribute that a case leaves out."""

    def __repr__(self) -> str:
        return "ABSENT"


ABSENT: Any = _Absent()


Slot = tuple[str, int, str]

"""An attribute of one case fact: (fact type, opinion index or 0, attribute)."""


Expr = tuple[Any, ...]

"""("c", value) | ("b", binding key, attr, add) in plans | ("s", slot, add) | ("r", n, add) once grounded."""


Atom = tuple[Any, ...]

"""("cmp", left, op, right) | ("or", alternatives) | ("differ", exprs, exprs) | ("member", expr, values)."""


class _TooBig(Exception):
    """The search space of one question is too large; no claim is made."""


@attrs.frozen
class _Plan:
    """One way a goal can hold: case-fact bindings, tests on them, and who must differ."""

    keys: Mapping[str, str]  # binding key -> case fact type
    atoms: tuple[Atom, ...]
    apart: tuple[tuple[str, str], ...]  # opinion keys of one rule instance: different opinions
    content: Mapping[str, Expr]  # what a deriving rule sets (for chaining)
    rules: frozenset[str]


@attrs.frozen
class _Alt:
    """A plan grounded for a number of opinions: a conjunction of tests on slots."""

    atoms: tuple[Atom, ...]
    slots: frozenset[Slot]


def _plus(expr: Expr, add: int) -> Expr:
    if not add:
        return expr
    if expr[0] == "c":
        value = expr[1]
        return ("c", value + add) if isinstance(value, int) and not isinstance(value, bool) else expr
    return (*expr[:-1], expr[-1] + add)


def _attr_expr(bound: tuple[Any, ...], attr: str) -> Expr:
    if bound[0] == "case":
        return ("b", bound[1], attr, 0)
    content: Mapping[str, Expr] = bound[2]
    return content.get(attr, ("c", ABSENT))


def _literals(cond: Condition) -> Iterator[Any]:
    if isinstance(cond.value, tuple):
        yield from cond.value
    elif not isinstance(cond.value, Ref) and cond.op != "exists":
        yield cond.value


def _tells_apart(atom: Atom, slot: Slot, low: Any, high: Any, n: int) -> bool:
    """Whether an atom may hold for one of two values of a slot and not for the other (True when unsure)."""
    slots = _atom_slots(atom, n)
    if slot not in slots:
        return False
    if len(slots) > 1:
        return True
    return _truth(atom, {slot: low}, n) != _truth(atom, {slot: high}, n)


def _rename_expr(expr: Any, rename: Mapping[Slot, Slot]) -> Any:
    if isinstance(expr, tuple) and expr and expr[0] == "s" and expr[1] in rename:
        return ("s", rename[expr[1]], expr[2])
    return expr


def _rename_atom(atom: Atom, rename: Mapping[Slot, Slot]) -> Atom:
    tag = atom[0]
    if tag == "or":
        return ("or", tuple(tuple(_rename_atom(a, rename) for a in alt) for alt in atom[1]))
    if tag == "and":
        return ("and", tuple(_rename_atom(a, rename) for a in atom[1]))
    if tag == "ineffective":
        return (
            tag,
            tuple(tuple(_rename_atom(a, rename) for a in alt) for alt in atom[1]),
            tuple(tuple(_rename_atom(a, rename) for a in alt) for alt in atom[2]),
        )
    if tag == "differ":
        return (
            "differ",
            tuple(_rename_expr(e, rename) for e in atom[1]),
            tuple(_rename_expr(e, rename) for e in atom[2]),
        )
    if tag in ("member", "outside"):
        return (tag, _rename_expr(atom[1], rename), atom[2])
    _, left, op, right = atom
    return ("cmp", _rename_expr(left, rename), op, _rename_expr(right, rename))


def _rename_atoms(atoms: Sequence[Atom], rename: Mapping[Slot, Slot] | None) -> tuple[Atom, ...]:
    """Atoms with some slots replaced by others (no change without ``rename``)."""
    if not rename:
        return tuple(atoms)
    return tuple(_rename_atom(a, rename) for a in atoms)


@functools.lru_cache(maxsize=65_536)
def _atom_keys(atom: Any) -> frozenset[str]:
    """The binding keys an atom (in plan form) refers to (cached: plans share their atoms)."""
    if isinstance(atom, tuple) and atom:
        if atom[0] == "b":
            return frozenset((atom[1],))
        return frozenset(k for part in atom if isinstance(part, tuple) for k in _atom_keys(part))
    return frozenset()


def _ground_expr(expr: Any, keys: Mapping[str, str], where: Mapping[str, int], n: int) -> Any:
    if not isinstance(expr, tuple) or not expr or expr[0] != "b":
        return expr
    _, key, attr, add = expr
    fact = keys[key]
    if fact == "opinion":
        if attr == "index":
            return ("c", where[key] + add)
        return ("s", ("opinion", where[key], attr), add)
    if fact == "summary":
        if attr == "opinion_count":
            return ("c", n + add)
        return ("r", n, add)
    return ("s", (fact, 0, attr), add)


def _ground_atom(atom: Atom, keys: Mapping[str, str], where: Mapping[str, int], n: int) -> Atom:
    tag = atom[0]
    if tag == "or":
        return ("or", tuple(tuple(_ground_atom(a, keys, where, n) for a in alt) for alt in atom[1]))
    if tag == "differ":
        return (
            "differ",
            tuple(_ground_expr(e, keys, where, n) for e in atom[1]),
            tuple(_ground_expr(e, keys, where, n) for e in atom[2]),
        )
    _, left, op, right = atom
    return ("cmp", _ground_expr(left, keys, where, n), op, _ground_expr(right, keys, where, n))


def _minimal(alts: Sequence[_Alt]) -> list[_Alt]:
    """Drop every alternative whose tests include all of another's: it adds nothing to an 'or'."""
    kept: list[tuple[frozenset[Atom], _Alt]] = []
    for alt in sorted(alts, key=lambda a: (len(a.atoms), repr(a.atoms))):
        atoms = frozenset(alt.atoms)
        if not any(other <= atoms for other, _ in kept):
            kept.append((atoms, alt))
    return [alt for _, alt in kept]


def _dnf(atoms: Sequence[Atom], limit: int = 256) -> list[list[Atom]]:
    """Split 'any' alternatives into separate conjunctions (kept whole past ``limit``)."""
    result: list[list[Atom]] = [[]]
    for atom in atoms:
        if atom[0] == "or":
            options = [c for alt in atom[1] for c in _dnf(alt, limit)]
            if len(result) * len(options) <= limit:
                result = [r + o for r in result for o in options]
                continue
        result = [[*r, atom] for r in result]
    return result


def _expr_slots(expr: Any, n: int) -> set[Slot]:
    if not isinstance(expr, tuple) or not expr:
        return set()
    if expr[0] == "s":
        return {expr[1]}
    if expr[0] == "r":
        return {("opinion", i, "mode") for i in range(expr[1])}
    return set()


def _atom_slots(atom: Atom, n: int) -> set[Slot]:
    tag = atom[0]
    if tag == "or":
        return {s for alt in atom[1] for a in alt for s in _atom_slots(a, n)}
    if tag == "and":
        return {s for a in atom[1] for s in _atom_slots(a, n)}
    if tag == "ineffective":
        return {s for alts in (atom[1], atom[2]) for alt in alts for a in alt for s in _atom_slots(a, n)}
    if tag == "differ":
        return {s for e in (*atom[1], *atom[2]) for s in _expr_slots(e, n)}
    if tag in ("member", "outside"):
        return _expr_slots(atom[1], n)
    return _expr_slots(atom[1], n) | _expr_slots(atom[3], n)


def _value(expr: Any, values: Mapping[Slot, Any]) -> Any:
    tag = expr[0]
    if tag == "c":
        return expr[1]
    if tag == "s":
        value = values[expr[1]]
    else:  # "r": remote opinions among the first n
        value = sum(1 for i in range(expr[1]) if values[("opinion", i, "mode")] == "remote")
    add = expr[2]
    if add and value is not ABSENT and isinstance(value, int) and not isinstance(value, bool):
        return value + add
    return value


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _truth(atom: Atom, values: Mapping[Slot, Any], n: int) -> bool:
    """Whether an atom holds; the same semantics as the engine (an absent attribute fails every test but 'exists')."""
    tag = atom[0]
    if tag == "or":
        return any(all(_truth(a, values, n) for a in alt) for alt in atom[1])
    if tag == "and":
        return all(_truth(a, values, n) for a in atom[1])
    if tag == "differ":
        return any(_value(x, values) != _value(y, values) for x, y in zip(atom[1], atom[2], strict=True))
    if tag == "ineffective":
        fires = any(all(_truth(a, values, n) for a in alt) for alt in atom[1])
        return not fires or any(all(_truth(a, values, n) for a in alt) for alt in atom[2])
    if tag == "member":
        return _value(atom[1], values) in atom[2]
    if tag == "outside":
        return _value(atom[1], values) not in atom[2]
    _, left, op, right = atom
    actual = _value(left, values)
    if op == "exists":
        return (actual is not ABSENT) is right
    if actual is ABSENT:
        return False
    if op == "in":
        return actual in right
    if op == "not_in":
        return actual not in right
    other = _value(right, values)
    if other is ABSENT:
        return False
    if op == "eq":
        return bool(actual == other)
    if op == "ne":
        return bool(actual != other)
    if not _is_int(actual) or not _is_int(other):
        return False
    if op == "gt":
        return bool(actual > other)
    if op == "gte":
        return bool(actual >= other)
    if op == "lt":
        return bool(actual < other)
    return bool(actual <= other)


def _path(slot: Slot) -> str:
    fact, index, attr = slot
    return f"opinions[{index}].{attr}" if fact == "opinion" else f"{fact}.{attr}"
