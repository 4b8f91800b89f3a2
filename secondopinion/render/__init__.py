"""Renderers: advice, derivation trees, why-not answers and next questions as text, Markdown, HTML or JSON.

Advice is shown as a plan (:mod:`secondopinion.plan`): a headline, steps in
the order a person acts, and the questions to bring. Text is for terminals,
through rich: styled when ``color`` is true (the CLI turns it on when stdout is
a terminal) and plain otherwise. Markdown is for apps and notebooks; HTML is a
printable page; JSON is for programs; ics puts the plan's dates in a calendar.
The patient view is the default: ``why=True`` adds each recommendation's
reasons (the rules that made it and what they rested on), guidance ids and
sources (by guide title). :func:`render_text` and :func:`render_markdown` keep
the older reviewer's list of every recommendation.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

from ..explain import Explanation, WhyNot, explain, why_not
from ..plan import Plan, build_plan
from ..questions import NextQuestion
from ..recommendations import KINDS, Advice
from ..rulebook import Rulebook
from .common import details, kind_label, reasons, source_title, source_titles, sources
from .html import plan_html
from .jsonout import dumps, explanation_json, questions_json, render_json, why_not_json
from .markdown import explanation_markdown, plan_markdown, questions_markdown, render_markdown, why_not_markdown
from .text import explanation_text, plan_text, questions_text, render_text, why_not_text

if TYPE_CHECKING:
    import datetime as dt

    from ..advisor import Advisor, CaseLike

__all__ = [
    "Format",
    "details",
    "explain_report",
    "explanation_json",
    "explanation_markdown",
    "explanation_text",
    "kind_label",
    "plan_html",
    "plan_markdown",
    "plan_text",
    "questions_json",
    "questions_markdown",
    "questions_text",
    "reasons",
    "render",
    "render_explanation",
    "render_json",
    "render_markdown",
    "render_questions",
    "render_text",
    "render_why_not",
    "source_title",
    "source_titles",
    "sources",
    "why_not_json",
    "why_not_markdown",
    "why_not_text",
]

Format = Literal["text", "markdown", "json"]
AdviceFormat = Literal["text", "markdown", "json", "html", "ics"]


def render(
    advice: Advice,
    fmt: AdviceFormat = "text",
    rulebook: Rulebook | None = None,
    *,
    color: bool = False,
    questions: Sequence[NextQuestion] | None = None,
    why: bool = False,
    case: CaseLike | None = None,
    today: dt.date | None = None,
    plan: Plan | None = None,
) -> str:
    """Render advice as a plan in one of the formats.

    ``case`` (the case advised on) gives the plan its dates, counted from
    ``today`` (default: today's date); a ready ``plan`` may be passed instead.
    ``why`` adds the reviewer's detail (reasons, rule ids, guidance ids,
    sources); ``questions`` adds the questions worth asking next. JSON is the
    advice with its ``plan``; ics is the plan's dates as calendar events (it
    raises :class:`~secondopinion.render.ics.NoDatesError` when there are none).
    """
    the_plan = plan if plan is not None else build_plan(advice, case, today=today)
    if fmt == "json":
        return render_json(advice, questions=questions, plan=the_plan)
    if fmt == "markdown":
        return plan_markdown(the_plan, rulebook, why=why, questions=questions)
    if fmt == "html":
        return plan_html(the_plan, rulebook, why=why, questions=questions)
    if fmt == "ics":
        return the_plan.to_ics()
    return plan_text(the_plan, rulebook, color=color, why=why, questions=questions)


def render_explanation(
    explanation: Explanation, fmt: Format = "text", rulebook: Rulebook | None = None, *, color: bool = False
) -> str:
    """Render a derivation tree; ``rulebook`` names the source documents."""
    if fmt == "json":
        return explanation_json(explanation)
    if fmt == "markdown":
        return explanation_markdown(explanation, rulebook)
    return explanation_text(explanation, rulebook, color=color)


def render_why_not(why: WhyNot, fmt: Format = "text", *, color: bool = False) -> str:
    """Render a why-not answer."""
    if fmt == "json":
        return why_not_json(why)
    if fmt == "markdown":
        return why_not_markdown(why)
    return why_not_text(why, color=color)


def render_questions(questions: Sequence[NextQuestion], fmt: Format = "text", *, color: bool = False) -> str:
    """Render the questions worth asking next on their own."""
    if fmt == "json":
        return questions_json(questions)
    if fmt == "markdown":
        return questions_markdown(questions)
    return questions_text(questions, color=color)


def explain_report(
    case: CaseLike,
    advisor: Advisor,
    *,
    recommendation: str | None = None,
    why_not_target: str | None = None,
    fmt: Format = "text",
    color: bool = False,
) -> str:
    """What ``secondopinion explain`` prints.

    With ``recommendation`` (a kind), its derivation tree; with
    ``why_not_target`` (a kind, rule id or derived fact type), why it did or
    did not come out; with neither, the tree of every recommendation. JSON is
    always ``{"explanations": [...], "why_not": {...} or null}``. Raises
    ``LookupError`` for an unknown kind or target, or a kind the advice does
    not hold (the message names the kind, never a case value).
    """
    advice = advisor.advise(case)
    trees: list[Explanation] = []
    if recommendation is not None:
        if recommendation not in KINDS:
            raise LookupError(f"unknown recommendation kind {recommendation!r}")
        if advice.by_kind(recommendation) is None:
            raise LookupError(f"{recommendation!r} is not in the advice for this case; try --why-not {recommendation}")
        trees.append(explain(advice, recommendation, rulebook=advisor.rulebook, case=case))
    elif why_not_target is None:
        trees = [explain(advice, rec, rulebook=advisor.rulebook, case=case) for rec in advice.recommendations]
    answer: WhyNot | None = None
    if why_not_target is not None:
        try:
            answer = why_not(case, why_not_target, advisor=advisor)
        except ValueError as exc:
            raise LookupError(str(exc)) from None
    if fmt == "json":
        return dumps({"explanations": [t.to_dict() for t in trees], "why_not": answer.to_dict() if answer else None})
    parts = [render_explanation(t, fmt, advisor.rulebook, color=color) for t in trees]
    if answer is not None:
        parts.append(render_why_not(answer, fmt, color=color))
    if not parts:
        parts.append("No recommendation for this case.\n")
    return "\n".join(parts)
