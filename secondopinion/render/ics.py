"""iCalendar (RFC 5545): the plan's dated steps as all-day events, built with the ``icalendar`` library.

Each step with a date becomes one all-day event on that day, its description
the step's actions; the day to decide on treatment gets an event of its own
when no step falls on it. Every event has a reminder two days before. UIDs
are UUID 5 over the plan's day, the step and its date, so the same plan gives
the same file. A plan without dates (the case gives no time to decide) has no
events, and :func:`plan_ics` refuses it; so does an emergency plan, which has no dates.
"""

from __future__ import annotations

import datetime as dt
import uuid

from ..plan import Plan

__all__ = ["NoDatesError", "plan_ics"]

_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://github.com/secondopinion/secondopinion/plan")
_PRODID = "-//secondopinion//second opinion plan//EN"


class NoDatesError(ValueError):
    """The plan has no dated step: the case does not say how long there is to decide."""


def plan_ics(plan: Plan) -> str:
    """The plan's dated steps as iCalendar text (CRLF line ends, as RFC 5545 asks).

    Raises :class:`NoDatesError` when the plan has no dates.
    """
    from icalendar import Alarm, Calendar, Event

    events: list[tuple[str, str, dt.date, str]] = []
    for step in plan.steps:
        if step.due is None:
            continue
        summary = f"Second opinion plan: {step.title.lower()}"
        lines = [step.due_text or "", *(f"- {a.title}" for a in step.actions)]
        events.append((step.id.value, summary, step.due, "\n".join(x for x in lines if x)))
    if plan.decide_by is not None and all(day != plan.decide_by for _, _, day, _ in events):
        events.append(("decide", "Decide on treatment", plan.decide_by, plan.headline))
    if not events:
        raise NoDatesError("the plan has no dates: the case does not give treatment.days_to_decide")
    calendar = Calendar()
    calendar.add("prodid", _PRODID)
    calendar.add("version", "2.0")
    stamp = dt.datetime.combine(plan.today, dt.time(), tzinfo=dt.UTC)
    for key, summary, day, description in events:
        event = Event()
        event.add("uid", f"{uuid.uuid5(_NAMESPACE, f'{plan.today}|{key}|{day}')}@secondopinion")
        event.add("dtstamp", stamp)
        event.add("dtstart", day)
        event.add("dtend", day + dt.timedelta(days=1))
        event.add("summary", summary)
        event.add("description", f"{description}\n\n{plan.disclaimer}")
        event.add("transp", "TRANSPARENT")
        alarm = Alarm()
        alarm.add("action", "DISPLAY")
        alarm.add("description", summary)
        alarm.add("trigger", dt.timedelta(days=-2))
        event.add_component(alarm)
        calendar.add_component(event)
    text: str = calendar.to_ical().decode("utf-8")
    return text
