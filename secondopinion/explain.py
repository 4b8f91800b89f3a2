"""Why a recommendation was made, and why another one was not.

:func:`explain` turns one recommendation of an :class:`~secondopinion.Advice`
into a derivation tree: the recommendation, the rules that made it (with their
id, title, rationale and sources), the facts each rule matched together with
the tests the rule made on them, and, for a derived fact, the rules that
derived it, down to the case fields (``$.diagnosis.seriousness``). It works
through joins (two opinions compared with each other), through facts derived
several ways and through merged duplicates (one recommendation made by several
rules).

:func:`why_not` answers the opposite question for a recommendation kind, a rule
id or a derived fact type: for each rule that could have produced it, the
first condition that failed, the case field it depends on and what the case
says, in plain words. A pattern on a derived fact that no rule derived is
followed into the rules that could have derived it. Recommendations held back
by ``unless`` are reported with the fact that held them back.

The patterns are evaluated here in Python with the engine's semantics (a fact
matches one pattern of a rule at most; a test on a missing attribute fails;
numbers compare only with numbers); the test suite checks that this
evaluation agrees with the engine on every rule and example case.

Case values appear in the returned objects (they are shown to the user who
asked), never in exceptions or logs.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from functools import cache
from typing import TYPE_CHECKING, Any, Literal

import attrs

from .case import Case, case_fact_types, case_facts, load_case
from .compiler import matches
from .recommendations import KINDS, Advice, Derivation, Recommendation, SourceRef
from .rulebook import AnyOf, Condition, Derive, Pattern, Ref, Rule, Rulebook, Test, iter_conditions

if TYPE_CHECKING:
    from .advisor import Advisor, CaseLike, Trace

__all__ = [
    "Check",
    "Explanation",
    "FactNode",
    "Failure",
    "RuleNode",
    "RuleOutcome",
    "WhyNot",
    "condition_holds",
    "conditions",
    "direct_reasons",
    "explain",
    "field_path",
    "test_holds",
    "why_not",
]

Fact = Mapping[str, Any]

_MAX_DEPTH = 40
"""Deepest derivation chain followed (rule chains are a few levels deep; this only guards odd rule packs)."""

_SEARCH_BUDGET = 20_000
"""Most partial matches tried per rule when looking for the closest one."""


# --------------------------------------------------------------------------- case field paths


@cache
def _case_types() -> frozenset[str]:
    """The case fact types (computed once: building them is not free)."""
    return frozenset(case_fact_types())


def _fid_stub(fid: str) -> dict[str, Any]:
    """A fact with only its identity, for explaining advice without its case."""
    found = re.fullmatch(r"([a-z_]+)\[(\d+)\]", fid)
    if found:
        return {"type": found.group(1), "fid": fid, "index": int(found.group(2))}
    return {"type": fid.split("#", 1)[0], "fid": fid}


def field_path(fact: Fact, attr: str | None = None) -> str | None:
    """The case field a case fact (or one of its attributes) comes from, as a JSON path.

    ``$.diagnosis.seriousness``, ``$.opinions[1].treatment``, ``$.opinions[1]``
    for an opinion's position, ``$.opinions`` for the opinion count. ``None``
    for a derived fact, which comes from rules rather than from the case.
    """
    fact_type = fact.get("type")
    if fact_type not in _case_types():
        return None
    if fact_type == "opinion":
        base = f"$.opinions[{fact.get('index', '?')}]"
        return base if attr in (None, "index") else f"{base}.{attr}"
    if fact_type == "summary":
        if attr == "remote_opinion_count":
            return "$.opinions[*].mode"
        return "$.opinions"
    return f"$.{fact_type}" if attr is None else f"$.{fact_type}.{attr}"


def _subject(fact: Fact, attr: str) -> str:
    """How to name an attribute of a fact: its case field path, or ``type.attr`` for a derived fact."""
    return field_path(fact, attr) or f"{fact.get('type')}.{attr}"


def _name(fact: Fact, attr: str, literal: bool = True) -> str:
    """How a sentence names an attribute: its path, or words where a bare path would mislead."""
    fact_type = fact.get("type")
    if fact_type == "summary":
        which = "remote opinions" if attr == "remote_opinion_count" else "opinions"
        return f"the number of {which} in $.opinions"
    if fact_type == "opinion" and attr == "index" and literal:
        return f"the position (from 0) of {field_path(fact)} in $.opinions"
    return _subject(fact, attr)


def _is_case_fact(fact: Fact) -> bool:
    return fact.get("type") in _case_types()


# --------------------------------------------------------------------------- evaluating tests


conditions = iter_conditions
"""Every condition in a pattern's tests, alternatives included (see :func:`~secondopinion.rulebook.iter_conditions`)."""


def _operand(value: Any, bindings: Mapping[str, Fact]) -> tuple[bool, Any]:
    """(known, value) of a condition's operand; a reference is looked up in the bound facts."""
    if not isinstance(value, Ref):
        return True, value
    fact = bindings.get(value.binding)
    if fact is None or fact.get(value.attr) is None:
        return False, None
    found = fact[value.attr]
    if value.add:
        if isinstance(found, bool) or not isinstance(found, int):
            return False, None
        found = found + value.add
    return True, found


def _number(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def condition_holds(cond: Condition, fact: Fact, bindings: Mapping[str, Fact]) -> bool:
    """Whether one condition holds on a fact, references resolved against the other bound facts."""
    present = fact.get(cond.attr) is not None
    if cond.op == "exists":
        return present is bool(cond.value)
    if not present:
        return False
    actual = fact[cond.attr]
    if cond.op in ("in", "not_in"):
        assert isinstance(cond.value, tuple)
        return (actual in cond.value) is (cond.op == "in")
    known, expected = _operand(cond.value, bindings)
    if not known:
        return False
    if cond.op == "eq":
        return bool(actual == expected)
    if cond.op == "ne":
        return bool(actual != expected)
    if not (_number(actual) and _number(expected)):
        return False
    if cond.op == "gt":
        return bool(actual > expected)
    if cond.op == "gte":
        return bool(actual >= expected)
    if cond.op == "lt":
        return bool(actual < expected)
    return bool(actual <= expected)


def test_holds(test: Test, fact: Fact, bindings: Mapping[str, Fact]) -> bool:
    """Whether a test (a condition or a set of alternatives) holds on a fact."""
    if isinstance(test, AnyOf):
        return any(all(test_holds(t, fact, bindings) for t in alt) for alt in test.alternatives)
    return condition_holds(test, fact, bindings)


test_holds.__test__ = False  # type: ignore[attr-defined]  # not a pytest test when imported into one


# --------------------------------------------------------------------------- plain words


def value_text(value: Any) -> str:
    """A case value as shown to the user (absent values say so)."""
    if value is None:
        return "not given"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def _either(values: Sequence[Any], joiner: str = "or") -> str:
    words = [value_text(v) for v in values]
    if len(words) <= 1:
        return "".join(words)
    return f"{', '.join(words[:-1])} {joiner} {words[-1]}"


_IS = {
    "eq": "is {}",
    "ne": "is not {}",
    "gt": "is more than {}",
    "gte": "is at least {}",
    "lt": "is less than {}",
    "lte": "is at most {}",
}
_TO_BE = {
    "eq": "to be {}",
    "ne": "not to be {}",
    "gt": "to be more than {}",
    "gte": "to be at least {}",
    "lt": "to be less than {}",
    "lte": "to be at most {}",
}
_REF_IS = {**_IS, "eq": "equals {}", "ne": "differs from {}"}
_REF_TO_BE = {**_TO_BE, "eq": "to equal {}", "ne": "to differ from {}"}
# An opinion's index is its place in $.opinions: compared with another opinion's, it says which comes first.
_ORDER_IS = {
    **_REF_IS,
    "gt": "comes after {}",
    "gte": "is {} or comes after it",
    "lt": "comes before {}",
    "lte": "is {} or comes before it",
    "eq": "is {}",
    "ne": "is not {}",
}
_ORDER_TO_BE = {
    **_REF_TO_BE,
    "gt": "to come after {}",
    "gte": "to be {} or come after it",
    "lt": "to come before {}",
    "lte": "to be {} or come before it",
    "eq": "to be {}",
    "ne": "not to be {}",
}


def _predicate(cond: Condition, ref_name: Callable[[Ref], str], form: Literal["is", "to_be"]) -> str:
    """The condition without its subject: ``is serious or life_threatening`` / ``to be serious or ...``."""
    is_form = form == "is"
    op, value = cond.op, cond.value
    if op == "exists":
        wanted = bool(value)
        if is_form:
            return "is given" if wanted else "is not given"
        return "to be given" if wanted else "not to be given"
    if op in ("in", "not_in"):
        assert isinstance(value, tuple)
        if op == "in":
            return ("is " if is_form else "to be ") + _either(value)
        if len(value) == 1:
            return ("is not " if is_form else "not to be ") + value_text(value[0])
        return ("is none of " if is_form else "to be none of ") + _either(value, "and")
    if isinstance(value, Ref):
        if cond.attr == "index" and value.attr == "index" and not value.add:
            table = _ORDER_IS if is_form else _ORDER_TO_BE
        else:
            table = _REF_IS if is_form else _REF_TO_BE
        return table[op].format(ref_name(value))
    table = _IS if is_form else _TO_BE
    return table[op].format(value_text(value))


def _ref_namer(bindings: Mapping[str, Fact]) -> Callable[[Ref], str]:
    def name(ref: Ref) -> str:
        fact = bindings.get(ref.binding)
        base = _name(fact, ref.attr, literal=False) if fact is not None else f"{ref.binding}.{ref.attr}"
        return f"{base} + {ref.add}" if ref.add else base

    return name


def _ref_fields(cond: Condition, bindings: Mapping[str, Fact]) -> list[tuple[str, Any]]:
    """(name, value) of the other fact's attribute a reference condition compares with."""
    if not isinstance(cond.value, Ref):
        return []
    fact = bindings.get(cond.value.binding)
    if fact is None:
        return []
    return [(_subject(fact, cond.value.attr), fact.get(cond.value.attr))]


# --------------------------------------------------------------------------- the derivation tree


@attrs.frozen
class Check:
    """One test a rule made on a matched fact, as a sentence, with the fields it reads.

    ``fields`` are case field paths (``$.diagnosis.seriousness``) or, for a
    derived fact, ``type.attribute``. ``values`` holds what the case (or the
    derived fact) says for each field, when known.
    """

    text: str
    fields: tuple[str, ...]
    values: Mapping[str, Any] = attrs.field(factory=dict)


@attrs.frozen
class FactNode:
    """A fact a rule matched: a case fact (with its ``path``) or a derived fact (with ``derived_by``).

    ``note`` is ``"shown above"`` when the same derived fact was already
    expanded earlier in the tree, ``"cycle"`` when it would derive itself,
    ``"too deep"`` past the depth limit, and ``"not in advice"`` when the
    advice does not record it.
    """

    binding: str
    fid: str
    type: str
    path: str | None
    description: str = ""
    attributes: Mapping[str, Any] = attrs.field(factory=dict)
    checks: tuple[Check, ...] = ()
    derived_by: tuple[RuleNode, ...] = ()
    note: str | None = None

    @property
    def is_case_fact(self) -> bool:
        """Whether this fact comes straight from the case."""
        return self.path is not None


@attrs.frozen
class RuleNode:
    """A rule firing in the tree: the rule's metadata and the facts it matched."""

    rule_id: str
    title: str
    rationale: str
    guidance: tuple[str, ...]
    sources: tuple[SourceRef, ...]
    matched: tuple[FactNode, ...]
    derives: str | None = None
    unless: tuple[str, ...] = ()


@attrs.frozen
class Explanation:
    """Why one recommendation was made: one :class:`RuleNode` per rule that made it.

    ``documents`` gives the title of each source document cited in the tree, by file name.
    """

    kind: str
    title: str
    priority: str
    rules: tuple[RuleNode, ...]
    documents: Mapping[str, str] = attrs.field(factory=dict)

    def walk(self) -> Iterator[RuleNode | FactNode]:
        """Every node of the tree, depth first."""
        stack: list[RuleNode | FactNode] = list(reversed(self.rules))
        while stack:
            node = stack.pop()
            yield node
            children: Sequence[RuleNode | FactNode] = node.matched if isinstance(node, RuleNode) else node.derived_by
            stack.extend(reversed(children))

    @property
    def rule_ids(self) -> tuple[str, ...]:
        """Every rule in the tree, each once, in tree order."""
        return tuple(dict.fromkeys(n.rule_id for n in self.walk() if isinstance(n, RuleNode)))

    @property
    def fields(self) -> tuple[str, ...]:
        """The case fields (``$.``-paths) the recommendation depends on, each once, in tree order."""
        out: dict[str, None] = {}
        for node in self.walk():
            if isinstance(node, FactNode):
                for check in node.checks:
                    out.update((f, None) for f in check.fields if f.startswith("$"))
                if node.path is not None and not node.checks:
                    out[node.path] = None
        return tuple(out)

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready form of the tree."""
        out: dict[str, Any] = attrs.asdict(self)
        return out


class _Explainer:
    """Builds derivation trees from an advice's derivations and a rulebook."""

    def __init__(self, advice: Advice, rulebook: Rulebook, facts: Mapping[str, Fact] | None) -> None:
        self.rulebook = rulebook
        self.rules = {r.id: r for r in rulebook.rules}
        self.derived = {f.fid: f for f in advice.derived_facts}
        self.case_facts = facts
        self.expanded: set[str] = set()

    def fact(self, fid: str) -> tuple[Fact, bool]:
        """The fact with this id and whether its values are known."""
        record = self.derived.get(fid)
        if record is not None:
            return {"type": record.type, "fid": fid, **record.attributes}, True
        if self.case_facts is not None and fid in self.case_facts:
            return self.case_facts[fid], True
        return _fid_stub(fid), False

    def rule_node(self, derivation: Derivation, stack: tuple[str, ...]) -> RuleNode:
        rule = self.rules.get(derivation.rule_id)
        facts = {name: self.fact(fid) for name, fid in derivation.matched.items()}
        bindings = {name: fact for name, (fact, _known) in facts.items()}
        if rule is None:
            matched = tuple(
                self.fact_node(name, fid, None, bindings, facts[name][1], stack)
                for name, fid in derivation.matched.items()
            )
            return RuleNode(derivation.rule_id, "", "", (), (), matched)
        matched = tuple(
            self.fact_node(p.bind, derivation.matched[p.bind], p, bindings, facts[p.bind][1], stack)
            for p in rule.when
            if p.bind in derivation.matched
        )
        unless = tuple(_unless_text(u.fact, u.tests) for u in rule.unless)
        return RuleNode(rule.id, rule.title, rule.rationale, rule.guidance, rule.sources, matched, rule.derives, unless)

    def fact_node(
        self,
        binding: str,
        fid: str,
        pattern: Pattern | None,
        bindings: Mapping[str, Fact],
        known: bool,
        stack: tuple[str, ...],
    ) -> FactNode:
        fact = bindings[binding]
        fact_type = str(fact.get("type"))
        checks = _checks(pattern.tests, fact, bindings, known) if pattern is not None else ()
        path = field_path(fact)
        if path is not None:
            return FactNode(binding, fid, fact_type, path, checks=checks)
        described = self.rulebook.derived_types.get(fact_type)
        description = described.description if described is not None else ""
        record = self.derived.get(fid)
        attributes = dict(record.attributes) if record is not None else {}
        note: str | None = None
        derived_by: tuple[RuleNode, ...] = ()
        if record is None:
            note = "not in advice"
        elif fid in stack:
            note = "cycle"
        elif len(stack) >= _MAX_DEPTH:
            note = "too deep"
        elif fid in self.expanded:
            note = "shown above"
        else:
            self.expanded.add(fid)
            derived_by = tuple(self.rule_node(d, (*stack, fid)) for d in record.derivations)
        return FactNode(binding, fid, fact_type, None, description, attributes, checks, derived_by, note)


def _checks(tests: Sequence[Test], fact: Fact, bindings: Mapping[str, Fact], known: bool) -> tuple[Check, ...]:
    """The tests of a pattern as checks; of alternatives, the one that held when the values are known."""
    out: list[Check] = []
    name = _ref_namer(bindings)
    for test in tests:
        if isinstance(test, AnyOf):
            held = next((alt for alt in test.alternatives if all(test_holds(t, fact, bindings) for t in alt)), None)
            if known and held is not None:
                out.extend(_checks(held, fact, bindings, known))
                continue
            parts = [" and ".join(_sentence(c, fact, name) for c in conditions(alt)) for alt in test.alternatives]
            fields = tuple(dict.fromkeys(f for c in conditions((test,)) for f, _ in _fields(c, fact, bindings)))
            pairs = [kv for c in conditions((test,)) for kv in _fields(c, fact, bindings)]
            values = _shown(pairs) if known else {}
            out.append(Check("either " + " or ".join(f"({p})" for p in parts), fields, values))
            continue
        pairs = _fields(test, fact, bindings)
        out.append(Check(_sentence(test, fact, name), tuple(f for f, _ in pairs), _shown(pairs) if known else {}))
    return tuple(out)


def _sentence(cond: Condition, fact: Fact, name: Callable[[Ref], str]) -> str:
    return f"{_name(fact, cond.attr, not isinstance(cond.value, Ref))} {_predicate(cond, name, 'is')}"


def _fields(cond: Condition, fact: Fact, bindings: Mapping[str, Fact]) -> list[tuple[str, Any]]:
    return [(_subject(fact, cond.attr), fact.get(cond.attr)), *_ref_fields(cond, bindings)]


_POSITION = re.compile(r"\$\.opinions\[\d+\]")


def _shown(pairs: Sequence[tuple[str, Any]]) -> dict[str, Any]:
    """Field values worth showing: an opinion's position is already in its path."""
    return {f: v for f, v in pairs if not _POSITION.fullmatch(f)}


def _unless_text(fact_type: str, tests: Sequence[Test]) -> str:
    """``unless`` in words: 'held back by any second_opinion_indicated fact'."""
    stub = {"type": fact_type}
    where = " and ".join(_sentence(c, stub, _ref_namer({})) for c in conditions(tests))
    suffix = f" where {where}" if where else ""
    return f"held back by any {fact_type} fact{suffix}"


def direct_reasons(derivation: Derivation, rulebook: Rulebook) -> tuple[str, ...]:
    """What one rule firing rested on, in one line each: the tests it made on case fields, and the derived facts.

    ``["$.diagnosis.seriousness is serious or life_threatening"]`` or
    ``["opinions_conflict", "$.opinions"]``. Needs no case: it reads the rule and the fact ids.
    """
    try:
        rule = rulebook.rule(derivation.rule_id)
    except KeyError:
        return tuple(dict.fromkeys(derivation.matched.values()))
    bindings = {name: _fid_stub(fid) for name, fid in derivation.matched.items()}
    out: list[str] = []
    for pattern in rule.when:
        fact = bindings.get(pattern.bind)
        if fact is None:
            continue
        path = field_path(fact)
        if path is None:
            out.append(str(fact["type"]))
            continue
        checks = _checks(pattern.tests, fact, bindings, known=False)
        out.extend([c.text for c in checks] or [path])
    return tuple(dict.fromkeys(out))


def _recommendation(advice: Advice, recommendation: Recommendation | str) -> Recommendation:
    if isinstance(recommendation, Recommendation):
        return recommendation
    found = advice.by_kind(recommendation)
    if found is None:
        raise KeyError(f"the advice has no recommendation of kind {recommendation!r}")
    return found


def _default_rulebook() -> Rulebook:
    from .advisor import default_advisor

    return default_advisor().rulebook


def explain(
    advice: Advice,
    recommendation: Recommendation | str,
    *,
    rulebook: Rulebook | None = None,
    case: Case | Mapping[str, Any] | str | bytes | None = None,
) -> Explanation:
    """The derivation tree of one recommendation (the object, or its kind) of ``advice``.

    ``rulebook`` supplies the rules' titles, rationales and patterns (default:
    the shipped rules; pass the advisor's when it has extra packs). With
    ``case`` (the case that was advised on) each check also shows the case's
    values; without it, checks show the tests the rules made and the fields
    they read. Raises ``KeyError`` when the advice has no recommendation of
    that kind.
    """
    rec = _recommendation(advice, recommendation)
    book = rulebook if rulebook is not None else _default_rulebook()
    facts = {str(f["fid"]): f for f in case_facts(load_case(case))} if case is not None else None
    explainer = _Explainer(advice, book, facts)
    rules = tuple(explainer.rule_node(d, ()) for d in rec.derivation)
    tree = Explanation(rec.kind, rec.title, rec.priority.value, rules)
    cited = {src.file for node in tree.walk() if isinstance(node, RuleNode) for src in node.sources}
    titles = {f: book.documents[f].title for f in sorted(cited) if f in book.documents}
    return attrs.evolve(tree, documents=titles)


# --------------------------------------------------------------------------- why not


Outcome = Literal["fired", "held_back", "did_not_match", "not_active"]


@attrs.frozen
class Failure:
    """The first condition of a rule that failed, on the fact that came closest to matching.

    ``needs`` and ``found`` are plain sentences ("needs $.diagnosis.seriousness
    to be serious or life_threatening" / "the case says minor"); ``fields``
    are the case fields the condition depends on and ``values`` what the case
    says for them. ``because`` follows a missing derived fact into the rules
    that could have derived it.
    """

    binding: str
    fact_type: str
    fid: str | None
    needs: str
    found: str
    fields: tuple[str, ...] = ()
    values: Mapping[str, Any] = attrs.field(factory=dict)
    because: tuple[RuleOutcome, ...] = ()


@attrs.frozen
class RuleOutcome:
    """What one candidate rule did on the case, and, if it did not fire, why not."""

    rule_id: str
    title: str
    outcome: Outcome
    failure: Failure | None = None
    held_back_by: tuple[str, ...] = ()


@attrs.frozen
class WhyNot:
    """Why a recommendation kind, rule or derived fact did (not) come out, rule by rule."""

    target: str
    kind: str | None
    present: bool
    rules: tuple[RuleOutcome, ...]

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready form."""
        out: dict[str, Any] = attrs.asdict(self)
        return out


@attrs.frozen
class _Miss:
    """A candidate failure while searching: how far the match got, and what failed."""

    depth: int
    passed: int
    pattern: Pattern
    fact: Fact | None
    test: Test | None
    bindings: Mapping[str, Fact]
    others: int  # facts of the pattern's type that exist (0: none at all)


class _WhyNot:
    """Evaluates candidate rules against one traced run."""

    def __init__(self, advisor: Advisor, trace: Trace) -> None:
        self.rulebook = advisor.rulebook
        self.active = {r.id for r in advisor.rules}
        self.by_type: dict[str, list[Fact]] = {}
        for fact in trace.session.facts:
            self.by_type.setdefault(str(fact["type"]), []).append(fact)
        self.derivers = {d.fid: tuple(dict.fromkeys(f.rule_id for f in d.derivations)) for d in trace.session.derived}
        self.fired = trace.fired
        self.held = frozenset(d.rule_id for d in trace.suppressed)

    def outcome(self, rule: Rule, visiting: tuple[str, ...] = ()) -> RuleOutcome:
        """What ``rule`` did; ``visiting`` holds the rules already being explained (no cycles)."""
        if rule.id not in self.active:
            return RuleOutcome(rule.id, rule.title, "not_active")
        if rule.id in self.fired:
            if rule.id in self.held:
                return RuleOutcome(rule.id, rule.title, "held_back", held_back_by=self._held_back_by(rule))
            return RuleOutcome(rule.id, rule.title, "fired")
        miss = self._closest(rule)
        failure = self._failure(miss, (*visiting, rule.id)) if miss is not None else None
        return RuleOutcome(rule.id, rule.title, "did_not_match", failure)

    def _held_back_by(self, rule: Rule) -> tuple[str, ...]:
        out = []
        for unless in rule.unless:
            for fact in self.by_type.get(unless.fact, []):
                if matches(fact, unless.fact, unless.tests):
                    out.append(f"{unless.fact} ({fact['fid']}){self._derived_by(fact)}")
        return tuple(dict.fromkeys(out))

    def _derived_by(self, fact: Fact) -> str:
        rules = self.derivers.get(str(fact.get("fid")), ())
        return f", derived by {', '.join(rules)}" if rules else ""

    def _closest(self, rule: Rule) -> _Miss | None:
        """The partial match that got furthest (most patterns, then most tests passed); None if it matches."""
        best: list[_Miss] = []
        budget = [_SEARCH_BUDGET]

        def note(miss: _Miss) -> None:
            if not best or (miss.depth, miss.passed) > (best[0].depth, best[0].passed):
                best[:] = [miss]

        def visit(depth: int, bindings: dict[str, Fact], used: frozenset[str]) -> bool:
            if depth == len(rule.when):
                return True
            budget[0] -= 1
            if budget[0] < 0:
                return False
            pattern = rule.when[depth]
            of_type = self.by_type.get(pattern.fact, [])
            candidates = [f for f in of_type if f["fid"] not in used]
            if not candidates:
                note(_Miss(depth, -1, pattern, None, None, dict(bindings), len(of_type)))
                return False
            for fact in candidates:
                trial = {**bindings, pattern.bind: fact}
                for passed, test in enumerate(pattern.tests):
                    if not test_holds(test, fact, trial):
                        note(_Miss(depth, passed, pattern, fact, test, trial, len(of_type)))
                        break
                else:
                    if visit(depth + 1, trial, used | {str(fact["fid"])}):
                        return True
            return False

        if visit(0, {}, frozenset()):
            return None
        return best[0] if best else None

    def _failure(self, miss: _Miss, visiting: tuple[str, ...]) -> Failure:
        pattern = miss.pattern
        because = self._producers(pattern.fact, visiting, pattern) if pattern.fact not in _case_types() else ()
        if miss.fact is None or miss.test is None:
            return self._absent(miss, because)
        fact, test = miss.fact, miss.test
        name = _ref_namer(miss.bindings)
        conds = list(conditions((test,)))
        pairs = list(dict.fromkeys(kv for c in conds for kv in _hashable(_fields(c, fact, miss.bindings))))
        if isinstance(test, AnyOf):
            options = [
                " and ".join(
                    f"{_name(fact, c.attr, not isinstance(c.value, Ref))} {_predicate(c, name, 'to_be')}"
                    for c in conditions(alt)
                )
                for alt in test.alternatives
            ]
            needs = "needs " + " or ".join(options)
        else:
            subject = _name(fact, test.attr, not isinstance(test.value, Ref))
            needs = f"needs {subject} {_predicate(test, name, 'to_be')}"
        speaker = "the case says" if _is_case_fact(fact) else f"the {fact.get('type')} fact says"
        shown = list(_shown(pairs).items())
        if not shown:  # only positions were compared
            found = "the case lists these opinions the other way round"
        elif len(shown) == 1 and len(pairs) == 1:
            found = f"{speaker} {_said(shown[0][1])}"
        else:  # several fields: name each
            found = f"{speaker} " + "; ".join(f"{field} is {_said(value)}" for field, value in shown)
        return Failure(
            pattern.bind,
            pattern.fact,
            str(fact.get("fid")),
            needs,
            found,
            tuple(f for f, _ in pairs),
            _shown(pairs),
            because,
        )

    def _absent(self, miss: _Miss, because: tuple[RuleOutcome, ...]) -> Failure:
        pattern = miss.pattern
        fact_type = pattern.fact
        taken = [field_path(f) or str(f.get("fid")) for f in miss.bindings.values() if f.get("type") == fact_type]
        if fact_type == "opinion":
            if miss.others == 0:
                needs, found = "needs an opinion in $.opinions", "the case has none"
            else:
                needs = "needs one more opinion besides " + _either(taken, "and")
                found = f"the case has {miss.others}"
            return Failure(pattern.bind, fact_type, None, needs, found, ("$.opinions",), {})
        described = self.rulebook.derived_types.get(fact_type)
        about = f" ({described.description.rstrip('.')})" if described is not None else ""
        if miss.others == 0:
            needs, found = f"needs {_article(fact_type)} {fact_type} fact{about}", "no rule derived one"
        else:
            needs = f"needs another {fact_type} fact besides " + _either(taken, "and")
            found = f"only {miss.others} was derived"
        return Failure(pattern.bind, fact_type, None, needs, found, because=because)

    def _producers(
        self, fact_type: str, visiting: tuple[str, ...], pattern: Pattern | None = None
    ) -> tuple[RuleOutcome, ...]:
        """Why the rules that derive ``fact_type`` (and could derive one that fits ``pattern``) did not fire."""
        if len(visiting) >= _MAX_DEPTH:
            return ()
        out = []
        for rule in self.rulebook.rules:
            if rule.derives != fact_type or rule.id not in self.active or rule.id in visiting:
                continue
            if rule.id in self.fired or (pattern is not None and not _could_satisfy(rule, pattern)):
                continue
            out.append(self.outcome(rule, visiting))
        return tuple(out)


def _could_satisfy(rule: Rule, pattern: Pattern) -> bool:
    """Whether a fact this rule derives could pass the pattern's tests on the values the rule fixes."""
    if not isinstance(rule.then, Derive):
        return False
    fixed = {attr: v for attr, v in rule.then.set.items() if not isinstance(v, Ref)}
    fact = {"type": rule.then.fact, **fixed}
    for test in pattern.tests:
        conds = list(conditions((test,)))
        if all(c.attr in fixed and not isinstance(c.value, Ref) for c in conds) and not test_holds(test, fact, {}):
            return False
    return True


def _hashable(pairs: list[tuple[str, Any]]) -> list[tuple[str, Any]]:
    return [(f, v if isinstance(v, str | int | bool | None) else str(v)) for f, v in pairs]


def _article(word: str) -> str:
    return "an" if word[:1].lower() in "aeiou" else "a"


def _said(value: Any) -> str:
    return "nothing (not given)" if value is None else value_text(value)


def _targets(rulebook: Rulebook, target: str) -> tuple[str | None, tuple[Rule, ...]]:
    """The recommendation kind and the candidate rules for a why-not target; ValueError if unknown."""
    by_id = [r for r in rulebook.rules if r.id == target]
    if by_id:
        return by_id[0].recommends, tuple(by_id)
    if target in KINDS:
        return target, tuple(r for r in rulebook.rules if r.recommends == target)
    if target in rulebook.derived_types:
        return None, tuple(r for r in rulebook.rules if r.derives == target)
    raise ValueError(f"{target!r} is not a recommendation kind, a rule id or a derived fact type")


def why_not(
    case: CaseLike | None, target: str, *, advisor: Advisor | None = None, trace: Trace | None = None
) -> WhyNot:
    """Why ``target`` (a recommendation kind, a rule id or a derived fact type) did or did not come out.

    For each rule that could produce it: ``fired``, ``held_back`` (by an
    ``unless`` fact, named), ``not_active`` (draft or retired), or
    ``did_not_match`` with the first failing condition. Pass ``trace`` (from
    ``advisor.trace(case)``, same advisor) to reuse a run instead of running
    the case again; ``case`` is then not needed. Raises ``ValueError`` for an
    unknown target and :class:`~secondopinion.CaseError` for a bad case.
    """
    from .advisor import default_advisor

    adv = advisor if advisor is not None else default_advisor()
    kind, rules = _targets(adv.rulebook, target)
    if trace is None:
        if case is None:
            raise ValueError("why_not needs a case or a trace")
        trace = adv.trace(case)
    outcomes = tuple(_WhyNot(adv, trace).outcome(r) for r in rules)
    if any(r.id == target for r in rules):
        present = target in trace.effective
    elif kind is not None:
        present = any(rec.kind == kind for rec in trace.recommendations)
    else:
        present = any(f.type == target for f in trace.session.derived)
    return WhyNot(target, kind, present, outcomes)
