"""A guided interview: one question at a time, only those whose answers change the advice.

:class:`Interview` drives the next-questions ranking
(:func:`secondopinion.questions.next_questions`) over a case that grows with
each answer. It never asks for a fact the case already has, nor asks a
question twice (a skipped one stays skipped); :meth:`Interview.back` undoes
the last answer or skip. The ``secondopinion interview`` command is a
terminal front end to it; an app or a notebook can drive it the same way::

    interview = Interview()
    while (question := interview.next_question()) is not None:
        choice = interview.choices(question)[0]      # or ask the person
        interview.answer(question, choice.value)
    interview.advice, interview.plan(), interview.to_case()

Errors name the case field, never the value given.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import attrs

from .case import Case, case_fact_types, dump_case, load_case
from .questions import NextQuestion, next_questions, question_for

if TYPE_CHECKING:
    from .advisor import Advisor, CaseLike
    from .plan import Plan
    from .recommendations import Advice

__all__ = ["Choice", "Interview", "PlanChange"]


@attrs.frozen
class Choice:
    """One answer the person can pick: the case value and its plain label."""

    value: str
    label: str


@attrs.frozen
class PlanChange:
    """How one answer changed the advice: the titles of the recommendations it added and removed."""

    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.added or self.removed)


@attrs.frozen
class _Entry:
    """One answer or skip, with what the field held before, so that it can be undone."""

    path: str
    fact: str
    attr: str
    opinion: int | None
    before: Any
    skipped: bool


class Interview:
    """A case built one answer at a time, asking only what changes the advice.

    ``case`` is where to start (empty by default); ``advisor`` defaults to
    the shipped rules; ``today`` dates the plan (default: today).
    """

    def __init__(
        self, case: CaseLike | None = None, *, advisor: Advisor | None = None, today: dt.date | None = None
    ) -> None:
        from .advisor import default_advisor

        self._advisor = advisor if advisor is not None else default_advisor()
        self._data: dict[str, Any] = _copy(dump_case(load_case(case if case is not None else {})))
        self._history: list[_Entry] = []
        self._today = today
        self._advice: Advice | None = None
        self._questions: tuple[NextQuestion, ...] | None = None

    # ----------------------------------------------------------------------- asking

    def questions(self) -> tuple[NextQuestion, ...]:
        """The questions still worth asking, most change first (none asked before)."""
        if self._questions is None:
            asked = {e.path for e in self._history}
            ranked = next_questions(self.to_case(), advisor=self._advisor)
            self._questions = tuple(q for q in ranked if q.path not in asked)
        return self._questions

    def next_question(self) -> NextQuestion | None:
        """The question whose answer changes the advice most, or None when no answer would change it."""
        found = self.questions()
        return found[0] if found else None

    @staticmethod
    def choices(question: NextQuestion) -> tuple[Choice, ...]:
        """The answers to pick from, in the case model's order; empty for a number (see :meth:`wants_number`)."""
        domain = case_fact_types()[question.fact][question.attr]
        if not isinstance(domain, tuple):
            return ()
        known = question_for(question.fact, question.attr)
        return tuple(Choice(v, known.label(v)) for v in domain if v != "unknown")

    @staticmethod
    def wants_number(question: NextQuestion) -> bool:
        """Whether the answer is a whole number (such as the days to decide)."""
        return case_fact_types()[question.fact][question.attr] == "int"

    # ----------------------------------------------------------------------- answering

    def answer(self, question: NextQuestion, value: str | int) -> PlanChange:
        """Record an answer; returns what it changed in the advice.

        Raises ``ValueError`` (naming the field, not the value) for an answer
        the field does not take, or a question this interview did not ask.
        """
        self._check_open(question)
        if self.wants_number(question):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{question.path} takes a whole number of zero or more")
        elif value not in {c.value for c in self.choices(question)}:
            raise ValueError(f"{question.path} takes one of its listed answers")
        before = self.advice
        self._record(question, value, skipped=False)
        return _change(before, self.advice)

    def skip(self, question: NextQuestion) -> None:
        """Leave a question unanswered; it is not asked again (unless undone with :meth:`back`)."""
        self._check_open(question)
        self._record(question, _get(self._data, question), skipped=True)

    def back(self) -> NextQuestion | None:
        """Undo the last answer or skip; returns that question again (None when there is nothing to undo)."""
        if not self._history:
            return None
        entry = self._history.pop()
        _set(self._data, entry.fact, entry.attr, entry.opinion, entry.before)
        self._changed()
        return next((q for q in self.questions() if q.path == entry.path), None)

    @property
    def answered(self) -> Mapping[str, Any]:
        """The answers given so far, by case field path (skips left out)."""
        return {e.path: _get_path(self._data, e) for e in self._history if not e.skipped}

    @property
    def skipped(self) -> tuple[str, ...]:
        """The case field paths skipped so far."""
        return tuple(e.path for e in self._history if e.skipped)

    # ----------------------------------------------------------------------- results

    @property
    def advice(self) -> Advice:
        """The advice on the case as it stands."""
        if self._advice is None:
            self._advice = self._advisor.advise(self.to_case())
        return self._advice

    def plan(self) -> Plan:
        """The plan for the case as it stands."""
        from .plan import build_plan

        return build_plan(self.advice, self.to_case(), today=self._today)

    def to_case(self) -> Case:
        """The case as it stands."""
        return load_case(self._data)

    def to_json(self) -> str:
        """The case as JSON text, as ``secondopinion advise`` reads it."""
        return json.dumps(dump_case(self.to_case()), indent=2, ensure_ascii=False) + "\n"

    # ----------------------------------------------------------------------- inside

    def _check_open(self, question: NextQuestion) -> None:
        if all(q.path != question.path for q in self.questions()):
            raise ValueError(f"{question.path} is not an open question of this interview")

    def _record(self, question: NextQuestion, value: Any, *, skipped: bool) -> None:
        before = _get(self._data, question)
        entry = _Entry(question.path, question.fact, question.attr, question.opinion, before, skipped)
        if not skipped:
            _set(self._data, question.fact, question.attr, question.opinion, value)
        self._history.append(entry)
        self._changed()

    def _changed(self) -> None:
        self._advice = None
        self._questions = None


def _copy(data: Mapping[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(data))  # type: ignore[no-any-return]


def _place(data: dict[str, Any], fact: str, opinion: int | None) -> dict[str, Any]:
    if opinion is not None:
        place: dict[str, Any] = data["opinions"][opinion]
        return place
    return data.setdefault(fact, {})  # type: ignore[no-any-return]


def _get(data: dict[str, Any], question: NextQuestion) -> Any:
    return _place(data, question.fact, question.opinion).get(question.attr)


def _get_path(data: dict[str, Any], entry: _Entry) -> Any:
    return _place(data, entry.fact, entry.opinion).get(entry.attr)


def _set(data: dict[str, Any], fact: str, attr: str, opinion: int | None, value: Any) -> None:
    place = _place(data, fact, opinion)
    if value is None:
        place.pop(attr, None)
    else:
        place[attr] = value


def _change(before: Advice, after: Advice) -> PlanChange:
    old, new = set(before.kinds), set(after.kinds)
    return PlanChange(
        added=tuple(r.title for r in after.recommendations if r.kind not in old),
        removed=tuple(r.title for r in before.recommendations if r.kind not in new),
    )
