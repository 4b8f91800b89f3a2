"""Load-time limits on rule packs: refuse what durable-rules 2.0.28 would hang or fail on.

durable's C core keeps a node's children in a fixed hash table of 512 buckets (a full
table makes inserting loop forever, holding the GIL), at most 256 rules behind one node
(error 108 at load), at most 16 joined facts in one match frame (error 304 on every
matching case), and a fixed evaluation stack that overflows (error 303) when one fact
meets too many range tests at once. Each limit below stays well inside what was
measured on this engine (see docs/hardening.md for the figures); a rule pack past one
is refused when it is loaded, with the file, the line and the rule id, rather than
freezing or failing later in ``advise()``.

:func:`check_rules` is called by :meth:`secondopinion.Rulebook.load` on every rule
that can run (``draft`` and ``active``), shipped ones included, since the engine's
tables are shared by all of them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Final

from .rulebook import Derive, Ref, Rule, RuleProblem, iter_conditions

__all__ = [
    "MAX_CONDITIONS_PER_FACT_TYPE",
    "MAX_LIST_VALUES",
    "MAX_NUMBER",
    "MAX_PATTERNS_PER_RULE",
    "MAX_RANGE_TESTS_PER_FACT_TYPE",
    "MAX_RULES_PER_PATTERN",
    "MAX_RULE_FILE_BYTES",
    "check_rules",
]

MAX_RULE_FILE_BYTES: Final = 1 << 20
"""Largest rule file read, in bytes (1 MiB; the largest shipped file is about 48 KB)."""

MAX_LIST_VALUES: Final = 100
"""Most values in one ``[...]``, ``in`` or ``not_in`` list (each value is a node; 497 froze durable)."""

MAX_PATTERNS_PER_RULE: Final = 16
"""Most facts one rule matches (17 joined facts fail with durable error 304 on every match)."""

MAX_CONDITIONS_PER_FACT_TYPE: Final = 300
"""Most distinct tests (attribute, operator, value) on one fact type over all rules.

They hang off the fact type's node in durable's 512-bucket table; about 497 froze it."""

MAX_RULES_PER_PATTERN: Final = 200
"""Most rules sharing one identical pattern (durable holds 256 behind one node: error 108)."""

MAX_NUMBER: Final = 1_000_000_000
"""Largest number (either sign) a rule may state or ``add``: the engine holds 64-bit integers, and
a sum past them overflows in ``advise()``; every number of the case model is far smaller."""

MAX_RANGE_TESTS_PER_FACT_TYPE: Final = 32
"""Most distinct tests other than equality (``ne``, ``gt``, ``lt``, ``not_in``, ``exists``, ...)
on one fact type: one fact meeting many of them at once overflows durable's stack (error 303)."""


def check_rules(rules: Sequence[Rule], derived_types: Iterable[str]) -> list[RuleProblem]:
    """Every limit the rules break, each as a problem with file, line and rule id."""
    derived = frozenset(derived_types)
    problems: list[RuleProblem] = []
    live = [r for r in rules if r.status != "retired"]

    def add(rule: Rule, message: str) -> None:
        problems.append(RuleProblem(rule.file, rule.line, rule.id, message))

    tests_by_type: dict[str, dict[tuple[str, str, str], Rule]] = {}
    patterns: Counter[tuple[str, str]] = Counter()
    for rule in live:
        if len(rule.when) > MAX_PATTERNS_PER_RULE:
            add(rule, f"matches {len(rule.when)} facts; the engine joins at most {MAX_PATTERNS_PER_RULE}")
        if _big_numbers(rule):
            add(rule, f"a number or 'add' beyond {MAX_NUMBER:,} (the engine would overflow)")
        joined = _derived_in_joins(rule, derived)
        if joined:
            add(
                rule,
                f"a join (a 'ref' to another fact) reads {joined!r} facts, which rules derive; the engine "
                "does not reliably match joins on derived facts (hazard A11): compare the case facts "
                "themselves, as AGREEMENT-INDEPENDENT does, and put a case fact first",
            )
        seen_derived: set[str] = set()
        for pattern in rule.when:
            if pattern.fact in derived and pattern.fact in seen_derived:
                add(
                    rule,
                    f"matches two {pattern.fact!r} facts; the engine never matches two derived facts "
                    "of one type together (derive one fact that holds both values instead)",
                )
            seen_derived.add(pattern.fact)
            key = (pattern.fact, repr(pattern.tests))
            patterns[key] += 1
            if patterns[key] == MAX_RULES_PER_PATTERN + 1:
                add(rule, f"more than {MAX_RULES_PER_PATTERN} rules share one pattern on {pattern.fact!r}")
            tests = tests_by_type.setdefault(pattern.fact, {})
            for condition in iter_conditions(pattern.tests):
                values: tuple[object, ...]
                if condition.op in ("in", "not_in") and isinstance(condition.value, tuple):
                    values = condition.value
                    if len(values) > MAX_LIST_VALUES:
                        add(
                            rule,
                            f"a list of {len(values)} values for {pattern.fact}.{condition.attr}; "
                            f"at most {MAX_LIST_VALUES}",
                        )
                else:
                    values = (condition.value,)
                for value in values:
                    tests.setdefault((condition.attr, condition.op, repr(value)), rule)
    problems.extend(_per_type(tests_by_type))
    return problems


def _derived_in_joins(rule: Rule, derived: frozenset[str]) -> str | None:
    """The first derived fact type a join of ``rule`` reads, if any.

    A join reads the fact whose pattern holds the ``ref``, the fact it refers to and, as the
    engine adds a comparison of session ids with the first fact to every join (hazard A7),
    the rule's first fact. durable-rules 2.0.28 misses matches of such joins when one of
    those facts was derived during the session, and not the same ones from run to run.
    """
    fact_of = {p.bind: p.fact for p in rule.when}
    read: list[str] = []
    for pattern in rule.when:
        refs = [c.value.binding for c in iter_conditions(pattern.tests) if isinstance(c.value, Ref)]
        if refs:
            read.extend((pattern.fact, *(fact_of.get(b, "") for b in refs)))
    if read:
        read.append(rule.when[0].fact)
    return next((fact for fact in read if fact in derived), None)


def _big(value: object) -> bool:
    if isinstance(value, Ref):
        return abs(value.add) > MAX_NUMBER
    if isinstance(value, tuple):
        return any(_big(v) for v in value)
    return isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_NUMBER


def _big_numbers(rule: Rule) -> bool:
    """Whether a rule states a number (in a test, a value it sets, or an ``add``) past MAX_NUMBER."""
    values: list[object] = [c.value for p in rule.when for c in iter_conditions(p.tests)]
    values.extend(c.value for u in rule.unless for c in iter_conditions(u.tests))
    values.extend(rule.then.set.values() if isinstance(rule.then, Derive) else rule.then.fields.values())
    return any(_big(v) for v in values)


def _per_type(tests_by_type: Mapping[str, Mapping[tuple[str, str, str], Rule]]) -> list[RuleProblem]:
    problems: list[RuleProblem] = []
    for fact, tests in tests_by_type.items():
        ranges = [rule for (_attr, op, _value), rule in tests.items() if op not in ("eq", "in")]
        if len(tests) > MAX_CONDITIONS_PER_FACT_TYPE:
            rule = list(tests.values())[MAX_CONDITIONS_PER_FACT_TYPE]
            problems.append(
                RuleProblem(
                    rule.file,
                    rule.line,
                    rule.id,
                    f"the rules test {fact!r} facts in {len(tests)} different ways; "
                    f"the engine holds at most {MAX_CONDITIONS_PER_FACT_TYPE} (this rule goes past it)",
                )
            )
        if len(ranges) > MAX_RANGE_TESTS_PER_FACT_TYPE:
            rule = ranges[MAX_RANGE_TESTS_PER_FACT_TYPE]
            problems.append(
                RuleProblem(
                    rule.file,
                    rule.line,
                    rule.id,
                    f"the rules use {len(ranges)} different tests other than equality on {fact!r} facts; "
                    f"the engine holds at most {MAX_RANGE_TESTS_PER_FACT_TYPE} (this rule goes past it)",
                )
            )
    return problems
