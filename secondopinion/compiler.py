"""Compile checked rules into durable-rules JSON rule definitions.

Each rule becomes one durable rule named by its id: every pattern constrains
``type`` by equality and adds its attribute tests; references to an earlier
binding become durable joins (``{"$neq": {"dx": {"a": "dx"}}}``). Derive rules
get a :data:`DeriveFn` that builds the new fact from the matched facts. No
text is evaluated: the compiler only maps the checked rule model to data.

``unless`` conditions are not compiled into the engine: durable's ``$not``
does not withdraw an activation when the negated fact arrives later, so
absence is checked after the engine reaches its fixpoint (see
:func:`matches`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import attrs

from .rulebook import AnyOf, Condition, Derive, Ref, Rule, Test, Value

__all__ = ["CompiledRules", "compile_rules", "matches", "resolve"]

Fact = dict[str, Any]
DeriveFn = Callable[[Mapping[str, Fact]], Fact | None]

_OPS = {"ne": "$neq", "gt": "$gt", "gte": "$gte", "lt": "$lt", "lte": "$lte"}


@attrs.frozen
class CompiledRules:
    """Durable rule definitions by rule id, and the derive functions of derive rules."""

    rules: Mapping[str, Mapping[str, Any]]
    derive: Mapping[str, DeriveFn]


def _operand(value: Value) -> Any:
    if isinstance(value, Ref):
        return {value.binding: value.attr}
    return value


def _condition(cond: Condition) -> dict[str, Any]:
    attr, op, value = cond.attr, cond.op, cond.value
    if op == "eq":
        return {attr: _operand(value)}  # type: ignore[arg-type]
    if op == "in":
        assert isinstance(value, tuple)
        if len(value) == 1:
            return {attr: value[0]}
        return {"$or": [{attr: v} for v in value]}
    if op == "not_in":
        assert isinstance(value, tuple)
        return _all([{"$neq": {attr: v}} for v in value])
    if op == "exists":
        return {"$ex" if value else "$nex": {attr: 1}}
    return {_OPS[op]: {attr: _operand(value)}}  # type: ignore[arg-type]


def _all(parts: list[dict[str, Any]]) -> dict[str, Any]:
    return parts[0] if len(parts) == 1 else {"$and": parts}


def _test(test: Test) -> dict[str, Any]:
    if isinstance(test, AnyOf):
        return {"$or": [_all([_test(t) for t in alt]) if alt else {} for alt in test.alternatives]}
    return _condition(test)


def _pattern(fact: str, tests: Sequence[Test]) -> dict[str, Any]:
    return _all([{"type": fact}, *(_test(t) for t in tests)])


def resolve(value: Value | tuple[str, ...], bindings: Mapping[str, Mapping[str, Any]]) -> Any:
    """The value of a field or attribute given the matched facts (refs looked up, ``add`` applied)."""
    if isinstance(value, Ref):
        found = bindings[value.binding].get(value.attr)
        if found is not None and value.add:
            return int(found) + value.add
        return found
    return value


def _make_derive(spec: Derive) -> DeriveFn:
    fact_type = spec.fact
    items = tuple(spec.set.items())

    def derive(bindings: Mapping[str, Fact]) -> Fact | None:
        fact: Fact = {"type": fact_type}
        for attr, value in items:
            resolved = resolve(value, bindings)
            if resolved is not None:
                fact[attr] = resolved
        return fact

    return derive


def compile_rules(rules: Sequence[Rule]) -> CompiledRules:
    """Compile rules (normally a rulebook's active ones) for the engine."""
    compiled: dict[str, Mapping[str, Any]] = {}
    derive: dict[str, DeriveFn] = {}
    for rule in rules:
        compiled[rule.id] = {
            "all": [{p.bind: _pattern(p.fact, p.tests)} for p in rule.when],
            "pri": 0 if rule.derives else 1,
        }
        if isinstance(rule.then, Derive):
            derive[rule.id] = _make_derive(rule.then)
    return CompiledRules(compiled, derive)


# --------------------------------------------------------------------------- evaluation outside the engine


def _holds(cond: Condition, fact: Mapping[str, Any]) -> bool:
    op, value = cond.op, cond.value
    present = cond.attr in fact
    actual = fact.get(cond.attr)
    if op == "exists":
        return present is bool(value)
    if not present:
        return False
    if op == "eq":
        return bool(actual == value)
    if op == "ne":
        return bool(actual != value)
    if op == "in":
        return actual in value  # type: ignore[operator]
    if op == "not_in":
        return actual not in value  # type: ignore[operator]
    if not isinstance(actual, int) or not isinstance(value, int):
        return False
    if op == "gt":
        return actual > value
    if op == "gte":
        return actual >= value
    if op == "lt":
        return actual < value
    return actual <= value


def matches(fact: Mapping[str, Any], fact_type: str, tests: Sequence[Test]) -> bool:
    """Whether one fact satisfies a pattern without references (used for ``unless``)."""
    if fact.get("type") != fact_type:
        return False
    for test in tests:
        if isinstance(test, AnyOf):
            if not any(all(_holds_any(t, fact) for t in alt) for alt in test.alternatives):
                return False
        elif not _holds(test, fact):
            return False
    return True


def _holds_any(test: Test, fact: Mapping[str, Any]) -> bool:
    if isinstance(test, AnyOf):
        return any(all(_holds_any(t, fact) for t in alt) for alt in test.alternatives)
    return _holds(test, fact)
