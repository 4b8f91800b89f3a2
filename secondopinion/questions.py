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
from .explain import condition_holds, conditions
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


def _kinds(trace: Trace) -> frozenset[str]:
    return frozenset(rec.kind for rec in trace.recommendations)


def _key(data: Mapping[str, Any]) -> str:
    import json

    return json.dumps(data, sort_keys=True, default=str)


def next_questions(
    case: CaseLike, *, advisor: Advisor | None = None, limit: int | None = None
) -> tuple[NextQuestion, ...]:
    """The questions whose answers would change the advice on ``case``, most change first.

    Only questions with at least one answer that adds or removes a
    recommendation kind are returned (at most ``limit`` of them). Raises
    :class:`~secondopinion.CaseError` for a bad case.
    """
    from .advisor import default_advisor

    adv = advisor if advisor is not None else default_advisor()
    checked = load_case(case)
    base = _kinds(adv.trace(checked))
    usage = rule_usage(adv.rules)
    dumped = dump_case(checked)
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
            if field.use.joined:
                kinds = run(_with_answer(dumped, field, value))
            else:
                signature = _signature(field, value)
                if signature == current:
                    kinds = base
                elif signature in by_signature:
                    kinds = by_signature[signature]
                else:
                    kinds = by_signature[signature] = run(_with_answer(dumped, field, value))
            effects.append(
                AnswerEffect(value, question.label(value), tuple(sorted(kinds - base)), tuple(sorted(base - kinds)))
            )
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
