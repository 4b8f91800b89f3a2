"""A plan a patient can follow: the advice grouped into steps, in the order a person acts.

:func:`build_plan` turns :class:`~secondopinion.recommendations.Advice` into a
:class:`Plan`: a one-sentence headline, then steps (decide, now, before the
visit, at the visit, after the opinions), each with its actions, and dates when
the case gives the time there is to decide. It also gathers one list of
questions to bring, for the new doctor and for the insurer, without repeats.

Which step a recommendation goes in comes from one table, :data:`KIND_STEPS`;
a kind the table does not list goes in :data:`DEFAULT_STEP`. Two rules sit on
top of the table:

* critical recommendations lead the first step, whatever their kind (that
  step is then headed :data:`URGENT_TITLE`);
* the first step holds at most :data:`FIRST_STEP_LIMIT` actions: the rest move,
  in order, to the front of the next step, so nothing is lost (the last step,
  "once the opinions are in", spills into a "then" step that holds nothing else);
* when care is needed now (a :data:`EMERGENCY_KIND` card), every other action
  waits in the "then" step, and the plan has no dates.

Every recommendation of the advice lands in exactly one step.

Dates come only from what the case states: ``treatment.days_to_decide`` (or,
without a case, the days a ``set_deadline`` recommendation carries), counted
from ``today`` (by default :meth:`datetime.date.today`). The second opinion is
due after about two thirds of that time (as
:attr:`~secondopinion.recommendations.SetDeadline.get_opinion_within_days`),
leaving the rest to decide; there is no such date when the plan does not go on
to get an opinion (a minor problem, or opinions that agree).

A plan holds plain data: no rule ids, fact names or sources. Those stay on the
recommendations (see :meth:`Plan.recommendation`), for the ``why`` views.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Callable, Mapping, Sequence
from enum import StrEnum
from typing import TYPE_CHECKING, Any

import attrs

from .recommendations import DISCLAIMER, Advice, Priority, Recommendation, SetDeadline

if TYPE_CHECKING:
    from .advisor import CaseLike

__all__ = [
    "CHILD_NOTE",
    "COST_KINDS",
    "DEFAULT_STEP",
    "DOCTORS_TITLE",
    "DOCTOR_TITLE",
    "EMERGENCY_KIND",
    "FIRST_STEP_LIMIT",
    "FLAG_NOTES",
    "GLOSSES",
    "INSURER_TITLE",
    "INSURER_TITLE_IF_ANY",
    "KIND_STEPS",
    "STEP_TITLES",
    "URGENT_TITLE",
    "Plan",
    "PlanAction",
    "PlanField",
    "PlanStep",
    "StepId",
    "action_for",
    "build_plan",
    "join_values",
]


class StepId(StrEnum):
    """The steps of a plan, in the order a person acts."""

    DECIDE = "decide"
    NOW = "now"
    BEFORE_VISIT = "before_visit"
    AT_VISIT = "at_visit"
    AFTER = "after"
    THEN = "then"


STEP_ORDER: tuple[StepId, ...] = tuple(StepId)

STEP_TITLES: Mapping[StepId, str] = {
    StepId.DECIDE: "First, decide",
    StepId.NOW: "Do now",
    StepId.BEFORE_VISIT: "Before the visit",
    StepId.AT_VISIT: "At the visit",
    StepId.AFTER: "Once the opinions are in",
    StepId.THEN: "Then, when you are ready",
}
"""The heading of each step, in plain words."""

EMERGENCY_KIND = "get_care_now"
"""The kind of the card that says care cannot wait: with it, the plan has no dates, and every other
action waits in the "then" step."""

URGENT_TITLE = "Right away"
"""The heading of the first step when a critical action leads it, whatever the step."""

KIND_STEPS: Mapping[str, StepId] = {
    # Whether to get an opinion at all; with two opinions in hand, what they mean for the next move
    # (ask why they differ, whether to see a third doctor) comes before booking any visit.
    "seek_second_opinion": StepId.DECIDE,
    "second_opinion_optional": StepId.DECIDE,
    "reflect_before_more_opinions": StepId.DECIDE,
    "proceed_with_confidence": StepId.DECIDE,
    "resolve_conflict": StepId.DECIDE,
    "ask_doctors_to_confer": StepId.DECIDE,
    "get_another_opinion": StepId.DECIDE,
    # Things to start right away: the clock, the booking, the doctor, the insurer, the records.
    "set_deadline": StepId.NOW,
    "act_quickly": StepId.NOW,
    "talk_to_doctor": StepId.NOW,
    "handle_objection": StepId.NOW,
    "check_insurance": StepId.NOW,
    "gather_records": StepId.NOW,
    "send_original_materials": StepId.NOW,
    "assert_records_rights": StepId.NOW,
    "keep_symptom_record": StepId.NOW,
    # Choosing the doctor and getting ready.
    "ask_for_referral": StepId.BEFORE_VISIT,
    "find_condition_specialist": StepId.BEFORE_VISIT,
    "consult_specialties": StepId.BEFORE_VISIT,
    "consider_other_specialty": StepId.BEFORE_VISIT,
    "prefer_cancer_center": StepId.BEFORE_VISIT,
    "consider_remote_opinion": StepId.BEFORE_VISIT,
    "check_credentials": StepId.BEFORE_VISIT,
    "choose_independent_doctor": StepId.BEFORE_VISIT,
    "prefer_in_network": StepId.BEFORE_VISIT,
    "manage_costs": StepId.BEFORE_VISIT,
    "build_trusted_team": StepId.BEFORE_VISIT,
    "prepare_questions": StepId.BEFORE_VISIT,
    # At the new doctor's.
    "be_seen_in_person": StepId.AT_VISIT,
    "ask_about_alternatives": StepId.AT_VISIT,
    "expert_review": StepId.AT_VISIT,
    # Once the opinions are in.
    "decide_with_your_values": StepId.AFTER,
    "after_the_opinion": StepId.AFTER,
}
"""The step of each recommendation kind. Kinds not listed go in :data:`DEFAULT_STEP`."""

LAST_IN_STEP: frozenset[str] = frozenset({"get_another_opinion"})
"""Kinds that come last in their step (unless critical): see one more doctor after asking why the others differ."""

DEFAULT_STEP = StepId.BEFORE_VISIT
"""The step of a kind :data:`KIND_STEPS` does not list: getting ready is where most new advice belongs."""

FIRST_STEP_LIMIT = 3
"""The most actions the first step holds; the rest move to the next step."""

# Which list fields hold questions, and for whom. A field named "questions" on a kind not listed
# here holds questions for the new doctor.
QUESTION_FIELDS: Mapping[tuple[str, str], str] = {("check_insurance", "questions"): "insurer"}

# Fields that stay out of an action's concrete fields: questions go to the plan's question lists,
# and these others only repeat the title or the plan's dates.
_HIDDEN_FIELDS = frozenset(
    {"questions", "about", "decide_within_days", "ask_doctor_how_long", "before_treatment_starts", "opinion_number"}
)

# Plain labels for concrete fields; other fields get their name with spaces.
FIELD_LABELS: Mapping[str, str] = {
    "documents": "Bring or send",
    "items": "How",
    "specialties": "See",
    "specialist": "See",
    "reviewers": "Ask for a review by",
    "ask": "Ask",
    "ask_about": "Ask about",
    "check": "Check",
    "prefer": "Look for",
    "options": "Options",
    "openers": "You could say",
    "steps": "Steps",
    "choices": "Your choices",
    "look_beyond_local_area": "Look beyond your area",
    "expect_it_to_take_time": "Expect it to take time",
}

GLOSSES: Mapping[str, str] = {
    "pathologist": "pathologist (checks tissue and cells)",
    "radiologist": "radiologist (reads scans)",
}
"""Field values that are a specialist's bare name, said with what that doctor does (the advice keeps the name)."""

NOTES_LABEL = "Keep in mind"
"""The label of the field that gathers an action's yes/no flags as plain sentences."""

FLAG_NOTES: Mapping[str, str] = {
    "look_beyond_local_area": "You may need to look outside your own area.",
    "expect_it_to_take_time": "Finding the right doctor can take some time.",
}
"""Yes/no fields said as a sentence under :data:`NOTES_LABEL`, instead of a bare "yes"."""

CHILD_NOTE = 'This plan is about your child. Where it says "you" or "your problem", read it as your child.'
"""A line under the notice when the case is about a child: the actions speak to the patient."""

DOCTOR_TITLE = "Questions to ask the new doctor"
"""The heading of the doctor's questions."""

DOCTORS_TITLE = "Questions to ask your doctors"
"""The heading of the doctor's questions when the case already has two or more opinions."""

INSURER_TITLE = "Questions to ask your insurer"
"""The heading of the insurer's questions when the case says the person is insured."""

INSURER_TITLE_IF_ANY = "If you have health insurance, ask your insurer"
"""The heading of the insurer's questions when the case does not say the person is insured."""

HEADLINE_KINDS: tuple[str, ...] = (
    "seek_second_opinion",
    "resolve_conflict",
    "proceed_with_confidence",
    "get_another_opinion",
    "reflect_before_more_opinions",
    "second_opinion_optional",
)
"""The kinds whose title makes the best headline, best first; without any, the first action's title."""

COST_KINDS: frozenset[str] = frozenset({"check_insurance", "prefer_in_network", "manage_costs"})
"""Money matters: without a :data:`HEADLINE_KINDS` action, they head the plan only when nothing else can."""

_TREATMENT_WORDS: Mapping[str, str] = {
    "surgery": "surgery",
    "chemotherapy": "chemo",
    "radiation": "radiation",
    "medication": "you start the medicine",
    "other": "treatment starts",
}


@attrs.frozen
class PlanField:
    """A concrete detail of an action: what to bring, whom to see, what to check."""

    name: str
    label: str
    values: tuple[str, ...]

    @property
    def text(self) -> str:
        """The values on one line: whole sentences one after another, short items split by semicolons."""
        return join_values(self.values)

    @property
    def sentences(self) -> bool:
        """Whether the values are several whole sentences (such as lines to say), best shown as a list."""
        return len(self.values) > 1 and all(v.rstrip().endswith((".", "?", "!")) for v in self.values)


def join_values(values: Sequence[str]) -> str:
    """Values on one line: sentences (ending in . ? or !) joined by a space, other items by "; "."""
    if values and all(v.rstrip().endswith((".", "?", "!")) for v in values):
        return " ".join(v.strip() for v in values)
    return "; ".join(values)


@attrs.frozen
class PlanAction:
    """One thing to do: a recommendation's title, plain detail and concrete fields."""

    kind: str
    title: str
    detail: str
    priority: Priority
    fields: tuple[PlanField, ...] = ()


@attrs.frozen
class PlanStep:
    """One step of the plan, with its actions; ``due`` when the case gives a date."""

    id: StepId
    title: str
    actions: tuple[PlanAction, ...]
    due: dt.date | None = None
    due_in_days: int | None = None
    due_text: str | None = None


@attrs.frozen
class Plan:
    """The advice as a plan: headline, steps in order, and the questions to bring.

    ``decide_by`` is the day to decide on treatment and ``opinion_by`` the day
    to have the second opinion by; both are None when the case gives no time,
    or when care is needed now. ``opinion_by`` is None, too, when the plan does
    not go on to get an opinion (nothing to do now, before or at a visit).
    ``opinion_due`` is the words before that day ("Have the second opinion by";
    "Have your next opinion by" when the case already has two or more; "If you
    see one more doctor, do it by" when the plan asks to stop and think first), and
    ``doctor_title`` heads the doctor's questions ("your doctors" once the case
    has two or more opinions) and ``insurer_title`` the insurer's, hedged when the
    case does not say the person is insured. ``reader_note`` is a line for the
    reader under the notice (:data:`CHILD_NOTE` when the case is about a child).
    """

    headline: str
    steps: tuple[PlanStep, ...]
    doctor_questions: tuple[str, ...] = ()
    insurer_questions: tuple[str, ...] = ()
    opinion_due: str = "Have the second opinion by"
    doctor_title: str = DOCTOR_TITLE
    insurer_title: str = INSURER_TITLE
    reader_note: str | None = None
    today: dt.date = attrs.field(factory=dt.date.today)
    decide_by: dt.date | None = None
    opinion_by: dt.date | None = None
    disclaimer: str = DISCLAIMER
    advice: Advice | None = attrs.field(default=None, eq=False, repr=False)

    @property
    def actions(self) -> tuple[PlanAction, ...]:
        """Every action, step by step."""
        return tuple(a for s in self.steps for a in s.actions)

    def step(self, step_id: StepId | str) -> PlanStep | None:
        """The step with this id, if the plan has it."""
        return next((s for s in self.steps if s.id == step_id), None)

    def step_of(self, kind: str) -> PlanStep | None:
        """The step that holds the action of this recommendation kind."""
        return next((s for s in self.steps if any(a.kind == kind for a in s.actions)), None)

    def date_sentences(self, day: Callable[[dt.date], str]) -> list[str]:
        """The sentences that give the plan's dates, each day written by ``day`` (every renderer its own way)."""
        out = []
        if self.opinion_by is not None:
            out.append(f"{self.opinion_due} {day(self.opinion_by)}.")
        if self.decide_by is not None:
            out.append(f"Decide on treatment by {day(self.decide_by)}.")
        return out

    def question_lists(self) -> tuple[tuple[str, tuple[str, ...]], ...]:
        """The doctor's and the insurer's questions, each with its heading (either list may be empty)."""
        return ((self.doctor_title, self.doctor_questions), (self.insurer_title, self.insurer_questions))

    def recommendation(self, kind: str) -> Recommendation | None:
        """The full recommendation behind an action (reasons, sources), when the plan knows its advice."""
        return self.advice.by_kind(kind) if self.advice is not None else None

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready form (dates as ISO text)."""
        return _plain(self)

    def to_json(self, *, indent: int | None = 2) -> str:
        """This plan as JSON text."""
        return json.dumps(self.to_dict(), indent=indent, ensure_ascii=False)

    def to_ics(self) -> str:
        """The dated steps as an iCalendar file (see :func:`secondopinion.render.ics.plan_ics`)."""
        from .render.ics import plan_ics

        return plan_ics(self)


def _serialize(_inst: Any, _field: Any, value: Any) -> Any:
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, StrEnum):
        return value.value
    return value


def _plain(obj: Any) -> dict[str, Any]:
    data = attrs.asdict(obj, filter=lambda a, _v: a.name != "advice", value_serializer=_serialize)
    plain: dict[str, Any] = json.loads(json.dumps(data))  # tuples to lists: what JSON gives back
    return plain


# --------------------------------------------------------------------------- building


def _field_value(value: Any) -> tuple[str, ...] | None:
    if value in (None, (), "", False):
        return None
    if value is True:
        return ("yes",)
    if isinstance(value, tuple):
        return tuple(str(v) for v in value)
    if isinstance(value, str):
        return (value,)
    return None  # numbers: the plan's dates say it better


def _fields(rec: Recommendation) -> tuple[PlanField, ...]:
    out = []
    notes = []
    for field in rec.specific_fields():
        if field.name in _HIDDEN_FIELDS:
            continue
        value = getattr(rec, field.name)
        if value is True and field.name in FLAG_NOTES:
            notes.append(FLAG_NOTES[field.name])
            continue
        values = _field_value(value)
        if values is None:
            continue
        label = FIELD_LABELS.get(field.name, field.name.replace("_", " ").capitalize())
        out.append(PlanField(field.name, label, tuple(GLOSSES.get(v, v) for v in values)))
    if notes:
        out.append(PlanField("notes", NOTES_LABEL, tuple(notes)))
    return tuple(out)


def action_for(rec: Recommendation) -> PlanAction:
    """A recommendation as a plan action: title, plain detail and concrete fields (questions left out)."""
    return PlanAction(rec.kind, rec.title, rec.detail, rec.priority, _fields(rec))


def _norm(text: str) -> str:
    return re.sub(r"[^\w]+", " ", text.casefold()).strip()


def _questions(recs: Sequence[Recommendation]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    lists: dict[str, dict[str, str]] = {"doctor": {}, "insurer": {}}
    for rec in recs:
        for field in rec.specific_fields():
            who = QUESTION_FIELDS.get((rec.kind, field.name))
            if who is None and field.name == "questions":
                who = "doctor"
            if who is None:
                continue
            for question in getattr(rec, field.name):
                text = " ".join(str(question).split())
                lists[who].setdefault(_norm(text), text)
    return tuple(lists["doctor"].values()), tuple(lists["insurer"].values())


@attrs.frozen
class _CaseFacts:
    """What the plan takes from the case: days to decide, treatment, whether insured, opinions had."""

    days: int | None = None
    treatment: str | None = None
    started: str | None = None
    insured: str | None = None
    opinions: int = 0
    age_group: str | None = None


def _case_facts(case: CaseLike | None) -> _CaseFacts:
    """Days to decide, treatment kind and whether it started, insurance and opinions, as the case gives them."""
    if case is None:
        return _CaseFacts()
    from .case import load_case

    checked = load_case(case)
    treatment = checked.treatment
    return _CaseFacts(
        days=treatment.days_to_decide,
        treatment=getattr(treatment.kind, "value", None),
        started=getattr(treatment.started, "value", None),
        insured=getattr(checked.insurance.insured, "value", None),
        opinions=len(checked.opinions),
        age_group=getattr(checked.patient.age_group, "value", None),
    )


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _headline(
    advice: Advice, first: PlanAction | None, days: int | None, treatment: str | None, started: str | None
) -> str:
    if first is None:
        return "We need a few more answers before we can make a plan."
    if advice.by_kind(EMERGENCY_KIND) is not None:
        days = None  # "about 0 days to decide" helps no one: care comes first
    pending = False
    lead = first.title.rstrip(".")
    best = next((k for k in HEADLINE_KINDS if advice.by_kind(k) is not None), None)
    if first.priority is not Priority.CRITICAL and best == "seek_second_opinion":
        lead = "Get a second opinion"
        if treatment is not None and treatment in _TREATMENT_WORDS and started != "yes":
            lead += f" before {_TREATMENT_WORDS[treatment]}"
            pending = True
    elif first.priority is not Priority.CRITICAL and best is not None:
        rec = advice.by_kind(best)
        assert rec is not None
        lead = rec.title.rstrip(".")
    elif first.priority is not Priority.CRITICAL and first.kind in COST_KINDS:
        other = next((r for r in advice.recommendations if r.kind not in COST_KINDS), None)
        if other is not None:
            lead = other.title.rstrip(".")
    if days is not None:
        return f"{lead}. You have about {_plural(days, 'day')} to decide."
    if pending:
        return f"{lead}. Ask your doctor how long you can take to decide."
    return f"{lead}."


def _place(advice: Advice) -> dict[StepId, list[Recommendation]]:
    """Each recommendation in its step; critical ones lead the first step; the first step capped."""
    placed: dict[StepId, list[Recommendation]] = {step: [] for step in STEP_ORDER}
    critical = [r for r in advice.recommendations if r.priority is Priority.CRITICAL]
    for rec in advice.recommendations:
        if rec.priority is not Priority.CRITICAL:
            placed[KIND_STEPS.get(rec.kind, DEFAULT_STEP)].append(rec)
    for step, recs in placed.items():  # a third doctor, once talking has not settled it
        placed[step] = sorted(recs, key=lambda r: r.kind in LAST_IN_STEP)
    if critical:
        placed[STEP_ORDER[0]][:0] = critical
    if any(r.kind == EMERGENCY_KIND for r in critical):
        # Care comes first: whatever else there is waits until the person is safe.
        later = [r for step in STEP_ORDER[1:] for r in placed[step]]
        for step in STEP_ORDER[1:]:
            placed[step] = []
        placed[StepId.THEN] = later
    used = [s for s in STEP_ORDER if placed[s]]
    if used and len(placed[used[0]]) > FIRST_STEP_LIMIT:
        head = used[0]
        following = STEP_ORDER[STEP_ORDER.index(head) + 1]  # THEN is never first: nothing maps to it
        placed[following][:0] = placed[head][FIRST_STEP_LIMIT:]
        del placed[head][FIRST_STEP_LIMIT:]
    return placed


def build_plan(advice: Advice, case: CaseLike | None = None, *, today: dt.date | None = None) -> Plan:
    """The plan for some advice; ``case`` (the case advised on) gives dates and the headline's treatment.

    Without ``case``, the days to decide come from a ``set_deadline``
    recommendation, if the advice has one. ``today`` defaults to today's date.
    """
    day0 = today if today is not None else dt.date.today()
    facts = _case_facts(case)
    days = facts.days
    if days is None:
        deadline = advice.by_kind("set_deadline")
        if isinstance(deadline, SetDeadline):
            days = deadline.decide_within_days
    if advice.by_kind(EMERGENCY_KIND) is not None:
        days = None  # care is needed now: no date to plan an opinion around
    placed = _place(advice)
    gets_opinion = any(placed[s] for s in (StepId.NOW, StepId.BEFORE_VISIT, StepId.AT_VISIT))
    if advice.by_kind("reflect_before_more_opinions") is not None:
        opinion_due = "If you see one more doctor, do it by"  # the plan asks to stop and think first
    elif facts.opinions >= 2:
        opinion_due = "Have your next opinion by"
    else:
        opinion_due = "Have the second opinion by"
    decide_by = opinion_by = None
    opinion_days = None
    if days is not None:
        opinion_days = max(1, (days * 2) // 3)
        decide_by = day0 + dt.timedelta(days=days)
        if gets_opinion:
            opinion_by = day0 + dt.timedelta(days=opinion_days)
    due: dict[StepId, tuple[dt.date | None, int | None, str | None]] = {}
    if opinion_by is not None and opinion_days is not None:
        have = f"{opinion_due} {_day(opinion_by)}."
        due[StepId.BEFORE_VISIT] = (opinion_by, opinion_days, have)
        due[StepId.AT_VISIT] = (opinion_by, opinion_days, have)
    if decide_by is not None and days is not None:
        due[StepId.AFTER] = (decide_by, days, f"Decide on treatment by {_day(decide_by)}.")
    steps: list[PlanStep] = []
    for step_id, recs in placed.items():
        if not recs:
            continue
        when, in_days, text = due.get(step_id, (None, None, None))
        title = URGENT_TITLE if not steps and recs[0].priority is Priority.CRITICAL else STEP_TITLES[step_id]
        steps.append(PlanStep(step_id, title, tuple(action_for(r) for r in recs), when, in_days, text))
    first = steps[0].actions[0] if steps else None
    doctor, insurer = _questions(advice.recommendations)
    if facts.insured == "no":
        insurer = ()  # no insurer to ask
    return Plan(
        headline=_headline(advice, first, days, facts.treatment, facts.started),
        steps=tuple(steps),
        doctor_questions=doctor,
        insurer_questions=insurer,
        opinion_due=opinion_due,
        doctor_title=DOCTORS_TITLE if facts.opinions >= 2 else DOCTOR_TITLE,
        insurer_title=INSURER_TITLE if facts.insured == "yes" else INSURER_TITLE_IF_ANY,
        reader_note=CHILD_NOTE if facts.age_group == "child" and steps else None,
        today=day0,
        decide_by=decide_by,
        opinion_by=opinion_by,
        disclaimer=advice.disclaimer,
        advice=advice,
    )


def _day(day: dt.date) -> str:
    """A date in words: ``Tuesday, March 3, 2026``."""
    return f"{day:%A}, {day:%B} {day.day}, {day.year}"
