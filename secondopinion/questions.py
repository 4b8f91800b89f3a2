"""Questions worth asking next: which unknown facts would change the advice.

For every case field the case leaves unknown (``unknown``) or absent and that
some active rule tests, :func:`next_questions` re-advises the case with each
possible answer (every value but ``unknown``; for a number, the values around
each threshold the rules compare it with, plus a typical value) and counts
how many recommendation kinds each answer adds or removes. Questions come
ranked by the largest change one answer makes, then by the mean change over
the answers; each carries the plain-language question from
``questions.yaml`` and the answers that matter.

It stays fast by doing as little as it can: fields no active rule tests are
never tried; answers that pass and fail exactly the same rule conditions as
each other (or as the current value) share one run, unless the field is also
compared with another fact or copied into a derived one; and identical
hypothetical cases run once.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from functools import cache
from importlib import resources
from typing import TYPE_CHECKING, Any

import attrs
import yaml

from .case import Case, case_fact_types, dump_case, load_case
from .compiler import matches
from .explain import condition_holds, conditions, test_holds
from .rulebook import Condition, Derive, Recommend, Ref, Rule

if TYPE_CHECKING:
    from .advisor import Advisor, CaseLike, Trace

__all__ = ["AnswerEffect", "NextQuestion", "Question", "next_questions", "question_for", "questions"]

_ASPECTS = ("diagnosis", "treatment", "patient", "doctor", "insurance", "records")


# --------------------------------------------------------------------------- the question registry


@attrs.frozen
class Question:
    """The question to ask the patient about one case field, with plain labels for its answers."""

    fact: str
    attr: str
    text: str
    answers: Mapping[str, str] = attrs.field(factory=dict)
    example: int | None = None

    def label(self, value: str | int) -> str:
        """A plain label for an answer."""
        if isinstance(value, int):
            return str(value)
        return self.answers.get(value) or value.replace("_", " ").capitalize()


@cache
def questions() -> Mapping[tuple[str, str], Question]:
    """The shipped questions, by (fact type, attribute)."""
    text = resources.files("secondopinion").joinpath("questions.yaml").read_text("utf-8")
    data: dict[str, dict[str, dict[str, Any]]] = yaml.safe_load(text)
    out: dict[tuple[str, str], Question] = {}
    for fact, fields in data.items():
        for attr, spec in fields.items():
            answers = {str(k): str(v) for k, v in (spec.get("answers") or {}).items()}
            text = " ".join(str(spec["question"]).split())
            out[(fact, attr)] = Question(fact, attr, text, answers, spec.get("example"))
    return out


def question_for(fact: str, attr: str) -> Question:
    """The question for a field; a plain fallback for a field the registry does not know yet."""
    found = questions().get((fact, attr))
    if found is not None:
        return found
    return Question(fact, attr, f"What can you tell us about this: {attr.replace('_', ' ')}?")


# --------------------------------------------------------------------------- results


@attrs.frozen
class AnswerEffect:
    """What one answer would change: the recommendation kinds it adds and removes."""

    value: str | int
    label: str
    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()

    @property
    def change(self) -> int:
        """How many recommendation kinds this answer adds or removes."""
        return len(self.added) + len(self.removed)


@attrs.frozen
class NextQuestion:
    """A question whose answer would change the advice.

    ``path`` is the case field (``$.insurance.covers_second_opinion``,
    ``$.opinions[1].mode``); ``about`` names the opinion for opinion fields.
    ``change`` is the most kinds one answer adds or removes; ``expected_change``
    the mean over the ``tried`` answers. ``answers`` lists the answers that
    change the advice, largest change first.
    """

    path: str
    fact: str
    attr: str
    question: str
    change: int
    expected_change: float
    answers: tuple[AnswerEffect, ...]
    tried: int
    opinion: int | None = None

    @property
    def about(self) -> str | None:
        """Which opinion the question is about ("opinion 2"), for opinion fields."""
        return None if self.opinion is None else f"opinion {self.opinion + 1}"

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready form."""
        out: dict[str, Any] = attrs.asdict(self)
        out["about"] = self.about
        for answer, effect in zip(out["answers"], self.answers, strict=True):
            answer["change"] = effect.change
        return out


# --------------------------------------------------------------------------- which fields the rules use


@attrs.frozen
class _Use:
    """How the active rules use one attribute of a fact type."""

    conditions: tuple[Condition, ...] = ()
    joined: bool = False  # compared with another fact, or copied into a derived fact


def _refs(value: Any) -> Iterable[Ref]:
    if isinstance(value, Ref):
        yield value
    elif isinstance(value, tuple):
        for item in value:
            yield from _refs(item)


def rule_usage(rules: Sequence[Rule]) -> dict[tuple[str, str], _Use]:
    """For each (fact type, attribute) the rules test, the conditions on it and whether it is joined."""
    conds: dict[tuple[str, str], list[Condition]] = {}
    joined: set[tuple[str, str]] = set()
    for rule in rules:
        bound = {p.bind: p.fact for p in rule.when}
        tested = [(p.fact, p.tests) for p in rule.when] + [(u.fact, u.tests) for u in rule.unless]
        for fact, tests in tested:
            for cond in conditions(tests):
                conds.setdefault((fact, cond.attr), []).append(cond)
                for ref in _refs(cond.value):
                    joined.add((fact, cond.attr))
                    if ref.binding in bound:
                        joined.add((bound[ref.binding], ref.attr))
        if isinstance(rule.then, Derive):
            for value in rule.then.set.values():
                for ref in _refs(value):
                    if ref.binding in bound:
                        joined.add((bound[ref.binding], ref.attr))
        elif isinstance(rule.then, Recommend):
            pass  # fields copied into a recommendation change its details, not which kinds come out
    if ("summary", "remote_opinion_count") in conds or ("summary", "remote_opinion_count") in joined:
        joined.add(("opinion", "mode"))  # the summary counts remote opinions from each opinion's mode
    keys = set(conds) | joined
    return {k: _Use(tuple(conds.get(k, ())), k in joined) for k in keys}


# --------------------------------------------------------------------------- candidate answers


@attrs.frozen
class _Field:
    fact: str
    attr: str
    opinion: int | None
    current: Any
    values: tuple[str | int, ...]
    use: _Use

    @property
    def path(self) -> str:
        if self.opinion is not None:
            return f"$.opinions[{self.opinion}].{self.attr}"
        return f"$.{self.fact}.{self.attr}"


def _int_values(use: _Use, example: int | None) -> tuple[int, ...]:
    """Numbers worth trying: each threshold the rules use and its neighbours, plus a typical value."""
    found: set[int] = set()
    for cond in use.conditions:
        literals = cond.value if isinstance(cond.value, tuple) else (cond.value,)
        for value in literals:
            if isinstance(value, int) and not isinstance(value, bool):
                found.update((value - 1, value, value + 1))
    if example is not None:
        found.add(example)
    if not found:
        found.add(1)
    return tuple(sorted(v for v in found if v >= 0))


@cache
def _case_types() -> Mapping[str, Mapping[str, Any]]:
    return case_fact_types()


def _candidates(case: Case, usage: Mapping[tuple[str, str], _Use]) -> list[_Field]:
    """Unknown or absent fields that some active rule tests, in case order."""
    dumped = dump_case(case)
    types = _case_types()
    out: list[_Field] = []
    places: list[tuple[str, int | None, Mapping[str, Any]]] = [(a, None, dumped[a]) for a in _ASPECTS]
    places += [("opinion", i, o) for i, o in enumerate(dumped["opinions"])]
    for fact, index, values in places:
        for attr, domain in types[fact].items():
            use = usage.get((fact, attr))
            if use is None or attr == "index":
                continue
            current = values.get(attr)
            if current not in (None, "unknown"):
                continue
            if isinstance(domain, tuple):
                answers: tuple[str | int, ...] = tuple(v for v in domain if v != "unknown")
            elif domain == "int":
                answers = _int_values(use, question_for(fact, attr).example)
            else:
                continue  # free text: the possible answers cannot be listed
            out.append(_Field(fact, attr, index, current, answers, use))
    return out


def _signature(field: _Field, value: Any) -> tuple[bool, ...]:
    fact = {} if value is None else {field.attr: value}
    return tuple(condition_holds(c, fact, {}) for c in field.use.conditions)


def _with_answer(dumped: Mapping[str, Any], field: _Field, value: str | int) -> dict[str, Any]:
    data: dict[str, Any] = {k: (dict(v) if isinstance(v, Mapping) else v) for k, v in dumped.items()}
    if field.opinion is None:
        data[field.fact][field.attr] = value
    else:
        data["opinions"] = [dict(o) for o in data["opinions"]]
        data["opinions"][field.opinion][field.attr] = value
    return data


Flip = str  # "", "gain", "lose" or "both": how a rule's match on the changed fact can move


def _test_attrs(test: Any) -> set[str]:
    return {c.attr for c in conditions((test,))}


def _has_ref(test: Any) -> bool:
    return any(isinstance(c.value, Ref) for c in conditions((test,)))


def _flip(tests: Sequence[Any], attr: str, old: Mapping[str, Any], new: Mapping[str, Any]) -> Flip:
    """How changing ``attr`` from ``old`` to ``new`` moves a pattern's tests (those on other attributes hold still)."""
    touched = [t for t in tests if attr in _test_attrs(t)]
    if not touched:
        return ""
    if any(_has_ref(t) for t in touched):
        return "both"
    before = all(test_holds(t, old, {}) for t in touched)
    after = all(test_holds(t, new, {}) for t in touched)
    if before == after:
        return ""
    return "lose" if before else "gain"


def _merge(a: Flip, b: Flip) -> Flip:
    if not a or a == b:
        return b or a
    return a if not b else "both"


class _Impact:
    """Whether changing one field of one case fact could change the recommended kinds at all.

    A sound over-approximation worked out on the base run, so that answers that
    cannot matter need no engine run. A base firing is *lost* if its rule's
    match on the changed fact fails with the new value, or a fact it matched
    is lost (a derived fact is lost when every derivation of it is). A rule
    *may gain* firings if its match on the changed fact starts to hold, or it
    matches a derived type that may gain facts, or (held back by ``unless``)
    what held it back may be lost; unless it is *blocked*: some pattern has no
    candidate fact passing its tests that involve no other fact. A derive rule
    that may gain adds a new fact unless it sets only fixed values and that
    very fact exists already. A kind may change if it is absent and a rule that
    recommends it may gain, or present and every firing that produced it may be
    lost or held back. The test suite checks the shortcut against running every
    answer.
    """

    def __init__(self, rules: Sequence[Rule], trace: Trace) -> None:
        self.rules = tuple(rules)
        self.derived = trace.session.derived
        self.held = frozenset(d.rule_id for d in trace.suppressed)
        self.kinds = _kinds(trace)
        self.by_type: dict[str, list[Mapping[str, Any]]] = {}
        for fact in trace.session.facts:
            self.by_type.setdefault(str(fact["type"]), []).append(fact)
        self.derivers = tuple(r for r in self.rules if isinstance(r.then, Derive))
        self.makers: dict[str, tuple[Rule, ...]] = {}
        for rule in self.rules:
            if rule.recommends:
                self.makers[rule.recommends] = (*self.makers.get(rule.recommends, ()), rule)
        self.effective: dict[str, list[tuple[str, Mapping[str, str]]]] = {}
        for firing in trace.session.firings:
            kind = next((r.recommends for r in self.rules if r.id == firing.rule_id), None)
            if kind and firing.rule_id not in self.held:
                self.effective.setdefault(kind, []).append((firing.rule_id, firing.matched))
        self.plain = {
            r.id: tuple((p.fact, tuple(t for t in p.tests if not _has_ref(t))) for p in r.when) for r in self.rules
        }
        self.sets_fixed = {
            r.id: not any(True for v in r.then.set.values() for _ in _refs(v))
            for r in self.derivers
            if isinstance(r.then, Derive)
        }
        self.existing = {_key({"type": f.type, **f.attributes}): f.fid for f in self.derived}

    def may_change(self, fact_type: str, attr: str, old: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
        """Whether changing ``attr`` of one case fact (``old``, of type ``fact_type``) to give ``new`` may change
        the kinds."""
        when: dict[str, Flip] = {}
        unless: dict[str, Flip] = {}
        for rule in self.rules:
            for p in rule.when:
                if p.fact == fact_type:
                    when[rule.id] = _merge(when.get(rule.id, ""), _flip(p.tests, attr, old, new))
            for u in rule.unless:
                if u.fact == fact_type:
                    unless[rule.id] = _merge(unless.get(rule.id, ""), _flip(u.tests, attr, old, new))

        # Derived facts that may be lost (least fixpoint).
        lost: set[str] = set()

        changed_fid = old.get("fid")

        def firing_lost(rule_id: str, matched: Mapping[str, str]) -> bool:
            if when.get(rule_id, "") in ("lose", "both") and changed_fid in matched.values():
                return True
            return any(fid in lost for fid in matched.values())

        changed = True
        while changed:
            changed = False
            for fact in self.derived:
                if fact.fid not in lost and all(firing_lost(f.rule_id, f.matched) for f in fact.derivations):
                    lost.add(fact.fid)
                    changed = True

        # New derived facts that may appear (least fixpoint): by type, their content, or None when the
        # content copies a matched fact's value and so cannot be known here.
        gaining: dict[str, list[dict[str, Any]] | None] = {}
        pools = dict(self.by_type)
        pools[fact_type] = [new if f.get("fid") == old.get("fid") else f for f in self.by_type.get(fact_type, [])]

        def blocked(rule: Rule) -> bool:
            for pattern_type, plain in self.plain[rule.id]:
                extra = gaining.get(pattern_type, [])
                if extra is None:
                    continue
                pool = [*pools.get(pattern_type, []), *extra]
                if not any(all(test_holds(t, f, {}) for t in plain) for f in pool):
                    return True
            return False

        def unless_may_lose(rule: Rule) -> bool:
            if unless.get(rule.id, "") in ("lose", "both"):
                return True
            return any(
                f.get("fid") in lost and matches(f, u.fact, u.tests) for u in rule.unless for f in pools.get(u.fact, [])
            )

        def may_gain(rule: Rule) -> bool:
            moved = when.get(rule.id, "") in ("gain", "both") or any(p.fact in gaining for p in rule.when)
            if not moved and not (rule.id in self.held and unless_may_lose(rule)):
                return False
            return not blocked(rule)

        changed = True
        while changed:
            changed = False
            for rule in self.derivers:
                spec = rule.then
                assert isinstance(spec, Derive)
                if gaining.get(spec.fact, []) is None or not may_gain(rule):
                    continue
                if not self.sets_fixed[rule.id]:
                    gaining[spec.fact] = None
                    changed = True
                    continue
                content = {"type": spec.fact, **spec.set}
                there = self.existing.get(_key(content))
                if (there is not None and there not in lost) or content in (gaining.get(spec.fact) or []):
                    continue  # derives a fact that is there already
                listed = gaining.setdefault(spec.fact, [])
                assert listed is not None
                listed.append(content)
                changed = True

        def unless_may_gain(rule: Rule) -> bool:
            return unless.get(rule.id, "") in ("gain", "both") or any(u.fact in gaining for u in rule.unless)

        for kind, makers in self.makers.items():
            if kind not in self.kinds:
                if any(may_gain(r) for r in makers):
                    return True
                continue
            by_id = {r.id: r for r in makers}
            if all(
                firing_lost(rule_id, matched) or unless_may_gain(by_id[rule_id])
                for rule_id, matched in self.effective.get(kind, [])
            ):
                return True
        return False


def _kinds(trace: Trace) -> frozenset[str]:
    return frozenset(rec.kind for rec in trace.recommendations)


def _key(data: Mapping[str, Any]) -> str:
    import json

    return json.dumps(data, sort_keys=True, default=str)


def _effect(question: Question, value: str | int, kinds: frozenset[str], base: frozenset[str]) -> AnswerEffect:
    return AnswerEffect(value, question.label(value), tuple(sorted(kinds - base)), tuple(sorted(base - kinds)))


def next_questions(
    case: CaseLike, *, advisor: Advisor | None = None, limit: int | None = None, exhaustive: bool = False
) -> tuple[NextQuestion, ...]:
    """The questions whose answers would change the advice on ``case``, most change first.

    Only questions with at least one answer that adds or removes a
    recommendation kind are returned (at most ``limit`` of them).
    ``exhaustive`` runs the rules on every answer instead of taking the
    shortcuts described in this module (same result, slower; for checking).
    Raises :class:`~secondopinion.CaseError` for a bad case.
    """
    from .advisor import default_advisor

    adv = advisor if advisor is not None else default_advisor()
    checked = load_case(case)
    trace = adv.trace(checked)
    base = _kinds(trace)
    usage = rule_usage(adv.rules)
    dumped = dump_case(checked)
    impact = _Impact(adv.rules, trace)
    base_facts = {str(f["fid"]): f for f in trace.session.facts}
    cache: dict[str, frozenset[str]] = {}

    def run(data: dict[str, Any]) -> frozenset[str]:
        key = _key(data)
        if key not in cache:
            cache[key] = _kinds(adv.trace(load_case(data)))
        return cache[key]

    found: list[tuple[int, NextQuestion]] = []
    for order, field in enumerate(_candidates(checked, usage)):
        question = question_for(field.fact, field.attr)
        current = _signature(field, field.current)
        by_signature: dict[tuple[bool, ...], frozenset[str]] = {}
        effects: list[AnswerEffect] = []
        for value in field.values:
            if exhaustive or field.use.joined:
                kinds = run(_with_answer(dumped, field, value))
                effects.append(_effect(question, value, kinds, base))
                continue
            signature = _signature(field, value)
            if signature == current:
                kinds = base
            elif signature in by_signature:
                kinds = by_signature[signature]
            else:
                old = base_facts[field.fact if field.opinion is None else f"opinion[{field.opinion}]"]
                if impact.may_change(field.fact, field.attr, old, {**old, field.attr: value}):
                    kinds = run(_with_answer(dumped, field, value))
                else:
                    kinds = base
                by_signature[signature] = kinds
            effects.append(_effect(question, value, kinds, base))
        most = max((e.change for e in effects), default=0)
        if most == 0:
            continue
        mean = sum(e.change for e in effects) / len(effects)
        mattering = tuple(sorted((e for e in effects if e.change), key=lambda e: -e.change))
        found.append(
            (
                order,
                NextQuestion(
                    field.path,
                    field.fact,
                    field.attr,
                    question.text,
                    most,
                    round(mean, 3),
                    mattering,
                    len(effects),
                    field.opinion,
                ),
            )
        )
    found.sort(key=lambda item: (-item[1].change, -item[1].expected_change, item[0]))
    ranked = tuple(q for _, q in found)
    return ranked if limit is None else ranked[:limit]
