"""The finite model's vocabulary: slots, expressions and atoms, and their meaning on a case.

Atoms are plain tuples (hashable, cheap to compare): see :data:`Expr` and :data:`Atom`.
:func:`_truth` says what an atom means; :func:`_predicate` compiles it to a
function with the same meaning, which the search and the corpus evaluate.
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Callable, Iterator, Mapping, Sequence
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


Predicate = Callable[[Mapping[Slot, Any]], bool]

"""An atom compiled to a function of the slots' values (see :func:`_predicate`)."""


_CACHE_SIZE = 1 << 17  # atoms (and their slots, predicates) cached across one verification and the next


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


@functools.lru_cache(maxsize=_CACHE_SIZE)
def _atom_repr(atom: Atom) -> str:
    """``repr(atom)``, cached: alternatives are put in a canonical order by their atoms' reprs.

    (Equal atoms have one repr: a rule's literals are never bools, so no
    ``True`` stands where a ``1`` could.)
    """
    return repr(atom)


def _atoms_repr(atoms: tuple[Atom, ...]) -> str:
    """``repr(atoms)``, from the atoms' cached reprs."""
    if len(atoms) == 1:
        return f"({_atom_repr(atoms[0])},)"
    return "(" + ", ".join(map(_atom_repr, atoms)) + ")"


def _minimal(alts: Sequence[_Alt]) -> list[_Alt]:
    """Drop every alternative whose tests include all of another's: it adds nothing to an 'or'."""
    kept: list[tuple[frozenset[Atom], _Alt]] = []
    for alt in sorted(alts, key=lambda a: (len(a.atoms), _atoms_repr(a.atoms))):
        atoms = frozenset(alt.atoms)
        for other, _ in kept:
            if other <= atoms:
                break
        else:
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


@functools.lru_cache(maxsize=_CACHE_SIZE)
def _slots_of(atom: Atom) -> frozenset[Slot]:
    """The slots an atom reads, cached (the search reads the same atoms again and again; ``n`` plays no part)."""
    return frozenset(_atom_slots(atom, 0))


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


_ORDER = {"gt": operator.gt, "gte": operator.ge, "lt": operator.lt, "lte": operator.le}


@functools.lru_cache(maxsize=_CACHE_SIZE)
def _predicate(atom: Atom) -> Predicate:
    """An atom compiled to a function of the slots' values: ``_predicate(atom)(values) == _truth(atom, values, n)``.

    The same semantics as :func:`_truth`, tests in the same order, without
    interpreting the atom's tuples again on every call (the search asks the
    same atoms millions of times). Cached per atom.
    """
    tag = atom[0]
    if tag in ("or", "and", "ineffective"):
        return _compound(atom)
    if tag == "differ":
        pairs = tuple((_getter(x), _getter(y)) for x, y in zip(atom[1], atom[2], strict=True))

        def differ(values: Mapping[Slot, Any]) -> bool:
            for x, y in pairs:  # noqa: SIM110 - a plain loop: no generator in the innermost calls
                if x(values) != y(values):
                    return True
            return False

        return differ
    if tag in ("member", "outside"):
        get = _getter(atom[1])
        allowed = atom[2]
        if tag == "member":
            return lambda values: get(values) in allowed
        return lambda values: get(values) not in allowed
    _, left, op, right = atom
    if left[0] == "s" and not left[2]:
        on_slot = _slot_test(left[1], op, right)
        if on_slot is not None:
            return on_slot
    actual = _getter(left)
    if op == "exists":
        return lambda values: (actual(values) is not ABSENT) is right
    if op in ("in", "not_in"):
        inside = op == "in"

        def contained(values: Mapping[Slot, Any]) -> bool:
            value = actual(values)
            if value is ABSENT:
                return False
            return (value in right) is inside

        return contained
    if right[0] == "c" and right[1] is not ABSENT:
        return _against_constant(actual, op, right[1])
    other = _getter(right)
    order = _ORDER.get(op)

    def compare(values: Mapping[Slot, Any]) -> bool:
        value = actual(values)
        if value is ABSENT:
            return False
        than = other(values)
        if than is ABSENT:
            return False
        if op == "eq":
            return bool(value == than)
        if op == "ne":
            return bool(value != than)
        if not _is_int(value) or not _is_int(than):
            return False
        return bool(order(value, than)) if order is not None else bool(value <= than)

    return compare


def _slot_test(slot: Slot, op: str, right: Any) -> Predicate | None:
    """The commonest comparisons, of one slot's own value, compiled tightest (None: see :func:`_predicate`)."""
    if op == "exists":
        return lambda values: (values[slot] is not ABSENT) is right
    if op in ("in", "not_in"):
        if op == "in":
            return lambda values: (value := values[slot]) is not ABSENT and value in right
        return lambda values: (value := values[slot]) is not ABSENT and value not in right
    if op in _ORDER:
        if right[0] != "c" or not _is_int(right[1]):
            return None
        bound: int = right[1]
        if op == "gt":
            return lambda values: (
                isinstance(value := values[slot], int) and not isinstance(value, bool) and value > bound
            )
        if op == "gte":
            return lambda values: (
                isinstance(value := values[slot], int) and not isinstance(value, bool) and value >= bound
            )
        if op == "lt":
            return lambda values: (
                isinstance(value := values[slot], int) and not isinstance(value, bool) and value < bound
            )
        return lambda values: isinstance(value := values[slot], int) and not isinstance(value, bool) and value <= bound
    if right[0] == "c" and right[1] is not ABSENT:
        constant = right[1]
        if op == "eq":
            return lambda values: (value := values[slot]) is not ABSENT and bool(value == constant)
        return lambda values: (value := values[slot]) is not ABSENT and bool(value != constant)
    if right[0] == "s" and not right[2]:
        other: Slot = right[1]

        def same(values: Mapping[Slot, Any]) -> bool:
            value = values[slot]
            if value is ABSENT:
                return False
            than = values[other]
            if than is ABSENT:
                return False
            return bool(value == than) if op == "eq" else bool(value != than)

        return same
    return None


def _against_constant(actual: Callable[[Mapping[Slot, Any]], Any], op: str, constant: Any) -> Predicate:
    """A comparison of an expression with a constant (not ABSENT): the common atom, compiled tighter."""
    if op == "eq":

        def equal(values: Mapping[Slot, Any]) -> bool:
            value = actual(values)
            return value is not ABSENT and bool(value == constant)

        return equal
    if op == "ne":

        def unequal(values: Mapping[Slot, Any]) -> bool:
            value = actual(values)
            return value is not ABSENT and bool(value != constant)

        return unequal
    if not _is_int(constant):

        def never(values: Mapping[Slot, Any]) -> bool:
            actual(values)  # read, as _truth does
            return False

        return never
    order = _ORDER.get(op, operator.le)

    def ordered(values: Mapping[Slot, Any]) -> bool:
        value = actual(values)
        return isinstance(value, int) and not isinstance(value, bool) and bool(order(value, constant))

    return ordered


def _compound(atom: Atom) -> Predicate:
    """An ``or``, ``and`` or ``ineffective`` atom compiled: its parts in the order :func:`_truth` tries them."""
    tag = atom[0]
    if tag == "and":
        parts = tuple(_predicate(a) for a in atom[1])

        def conjunction(values: Mapping[Slot, Any]) -> bool:
            for part in parts:  # noqa: SIM110 - a plain loop: no generator in the innermost calls
                if not part(values):
                    return False
            return True

        return conjunction
    alts = _disjunction(atom[1])
    if tag == "or":
        return alts
    unlesses = _disjunction(atom[2])
    return lambda values: not alts(values) or unlesses(values)


def _disjunction(alternatives: Sequence[Sequence[Atom]]) -> Predicate:
    """Whether any of the conjunctions holds (each tried in order, its tests in order)."""
    compiled = tuple(tuple(_predicate(a) for a in alt) for alt in alternatives)

    def any_holds(values: Mapping[Slot, Any]) -> bool:
        for alt in compiled:
            for part in alt:
                if not part(values):
                    break
            else:
                return True
        return False

    return any_holds


def _getter(expr: Expr) -> Callable[[Mapping[Slot, Any]], Any]:
    """An expression compiled to a function of the slots' values (see :func:`_value`)."""
    tag = expr[0]
    if tag == "c":
        constant = expr[1]
        return lambda values: constant
    add = expr[2]
    if tag == "s":
        slot: Slot = expr[1]
        if not add:
            return lambda values: values[slot]

        def shifted(values: Mapping[Slot, Any]) -> Any:
            value = values[slot]
            if value is not ABSENT and _is_int(value):
                return value + add
            return value

        return shifted
    modes = tuple(("opinion", i, "mode") for i in range(expr[1]))  # "r": remote opinions among the first n

    def remote(values: Mapping[Slot, Any]) -> Any:
        return sum(1 for mode in modes if values[mode] == "remote") + add

    return remote


def _path(slot: Slot) -> str:
    fact, index, attr = slot
    return f"opinions[{index}].{attr}" if fact == "opinion" else f"{fact}.{attr}"
