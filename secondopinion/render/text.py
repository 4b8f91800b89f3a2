"""Terminal text, through rich: styled when asked to (the CLI asks when stdout is a terminal), plain otherwise."""

from __future__ import annotations

import io
import textwrap
from collections.abc import Mapping, Sequence
from typing import Any

from rich.console import Console
from rich.text import Text
from rich.tree import Tree

from ..explain import Check, Explanation, FactNode, Failure, RuleNode, RuleOutcome, WhyNot
from ..plan import Plan, join_values
from ..questions import NextQuestion
from ..recommendations import Advice, Priority
from ..rulebook import Rulebook
from .common import (
    details,
    document_titles,
    kind_label,
    reasons,
    short_values,
    show_detail,
    source_line,
    source_titles,
    sources,
    value_text,
)

__all__ = ["explanation_text", "plan_text", "questions_text", "render_text", "why_not_text"]

_STYLE = {Priority.CRITICAL: "bold red", Priority.HIGH: "bold yellow", Priority.MEDIUM: "cyan", Priority.LOW: "dim"}
_OUTCOME_STYLE = {"fired": "green", "held_back": "yellow", "did_not_match": "red", "not_active": "dim"}
_OUTCOME_WORDS = {
    "fired": "fired",
    "held_back": "fired, but was held back",
    "did_not_match": "did not match",
    "not_active": "not active (draft or retired)",
}


def _console(buffer: io.StringIO, color: bool, width: int) -> Console:
    return Console(
        file=buffer,
        force_terminal=color,
        no_color=not color,
        width=width,
        highlight=False,
        soft_wrap=False,
        force_jupyter=False,
    )


class _Writer:
    """Prints wrapped, optionally styled lines to a rich console writing into a string."""

    def __init__(self, color: bool, width: int) -> None:
        self.buffer = io.StringIO()
        self.width = width
        self.console = _console(self.buffer, color, width)

    def say(self, text: str, style: str = "", indent: str = "   ", hang: str = "  ") -> None:
        wrapped = textwrap.fill(
            text,
            width=self.width,
            initial_indent=indent,
            subsequent_indent=(indent if not indent.strip() else " " * len(indent)) + hang,
            break_on_hyphens=False,  # keep rule ids such as SEEK-BEFORE-SURGERY whole
            break_long_words=False,
        )
        self.console.print(Text(wrapped, style=style))

    def print(self, *items: Any) -> None:
        self.console.print(*items)

    def text(self) -> str:
        return self.buffer.getvalue()


def render_text(
    advice: Advice,
    rulebook: Rulebook | None = None,
    *,
    color: bool = False,
    width: int = 100,
    questions: Sequence[NextQuestion] | None = None,
) -> str:
    """Advice for a terminal: each recommendation with its details, reasons and sources; ``color`` styles it."""
    out = _Writer(color, width)
    out.print(Text("Second opinion guidance", style="bold"))
    out.say(advice.disclaimer, "italic", "")
    if not advice.recommendations:
        out.print("\nNo recommendation for this case.")
    for n, rec in enumerate(advice.recommendations, 1):
        out.print()
        head = Text(f"{n}. ")
        head.append(f"[{rec.priority.value.upper()}] ", style=_STYLE[rec.priority])
        head.append(rec.title, style="bold")
        out.print(head)
        out.say(rec.detail)
        for label, value in details(rec):
            out.say(f"{label}: {value}")
        for ev in rec.evidence:
            out.say(f"Evidence ({ev.id}): {ev.figure}", "dim")
        for reason in reasons(rec, rulebook):
            out.say(f"Why: {reason}", "dim")
        out.say(f"Guidance: {', '.join(rec.guidance)}", "dim")
        for src in sources(rec, rulebook):
            out.say(f"Source: {src}", "dim")
    if questions is not None:
        out.print()
        _questions(out, questions)
    return out.text()


# --------------------------------------------------------------------------- the plan


def plan_text(
    plan: Plan,
    rulebook: Rulebook | None = None,
    *,
    color: bool = False,
    width: int = 100,
    why: bool = False,
    questions: Sequence[NextQuestion] | None = None,
) -> str:
    """A plan for a terminal: headline, dates, steps with their actions, and the questions to bring.

    To fit a printed page, the plain detail of an action is shown in the first
    step and for critical actions (see :func:`~secondopinion.render.common.show_detail`),
    and long sample sentences are cut to the first one. ``why`` shows it all
    and adds, under each action, its priority, the rules behind it and
    their reasons, the guidance ids and the sources (by guide title).
    """
    out = _Writer(color, width)
    out.say(f"Your plan: {plan.headline}", "bold", "", "")
    dates = " ".join(plan.date_sentences(_day))
    if dates:
        out.say(dates, "", "", "")
    out.say(plan.disclaimer, "italic", "", "")
    if plan.reader_note:
        out.say(plan.reader_note, "", "", "")
    for n, step in enumerate(plan.steps, 1):
        out.print()
        head = Text(f"{n}. {step.title}", style="bold")
        if step.due is not None:
            head.append(f"  (by {step.due:%b} {step.due.day})", style="bold yellow")
        out.print(head)
        for action in step.actions:
            out.say(action.title, "bold" if action.priority.rank <= 1 else "", "   - ", "")
            if why or show_detail(n, action):
                out.say(action.detail, "", "     ", "")
            for field in action.fields:
                values = field.values if why else short_values(field)
                out.say(f"{field.label}: {join_values(values)}", "", "     ", "  ")
            rec = plan.recommendation(action.kind)
            if why and rec is not None:
                out.say(f"Priority: {rec.priority.value}; kind: {rec.kind}", "dim", "     ", "  ")
                for ev in rec.evidence:
                    out.say(f"Evidence ({ev.id}): {ev.figure}", "dim", "     ", "  ")
                for reason in reasons(rec, rulebook):
                    out.say(f"Why: {reason}", "dim", "     ", "  ")
                if rec.guidance:
                    out.say(f"Guidance: {', '.join(rec.guidance)}", "dim", "     ", "  ")
                for src in source_titles(rec, rulebook):
                    out.say(f"Source: {src}", "dim", "     ", "  ")
    for number, (title, items) in enumerate((t, q) for t, q in plan.question_lists() if q):
        if number == 0:
            out.print()
        out.print(Text(title, style="bold"))
        for item in items:
            out.say(item, "", "   - ", "")
    if not plan.steps and questions is None:
        out.print()
        out.say("No recommendation for this case yet.", "", "", "")
    if questions is not None:
        out.print()
        _questions(out, questions, full=why)
    return out.text()


def _day(day: Any) -> str:
    return f"{day:%A}, {day:%B} {day.day}"




# --------------------------------------------------------------------------- derivation trees


def _values(values: Mapping[str, Any]) -> str:
    if not values:
        return ""
    if len(values) == 1:
        return f"  [{value_text(next(iter(values.values())))}]"
    return "  [" + "; ".join(f"{k} = {value_text(v)}" for k, v in values.items()) + "]"


def _check_label(check: Check) -> Text:
    label = Text("✓ ", style="green")
    label.append(check.text)
    label.append(_values(check.values), style="cyan")
    return label


def _rule_label(node: RuleNode, titles: Mapping[str, str], first: bool) -> Text:
    label = Text()
    label.append(f"rule {node.rule_id}", style="bold magenta")
    label.append(f": {node.title}" if node.title else " (not in the rulebook)")
    if not first:
        label.append(" (rationale and sources above)", style="dim")
        return label
    if node.rationale:
        label.append(f"\nrationale: {node.rationale}", style="dim")
    if node.sources:
        label.append("\nsources: " + "; ".join(source_line(s, None, titles) for s in node.sources), style="dim")
    for unless in node.unless:
        label.append(f"\n{unless} (none was)", style="dim")
    return label


def _fact_label(node: FactNode) -> Text:
    label = Text()
    if node.is_case_fact:
        label.append("case ", style="blue")
        label.append(str(node.path), style="bold")
        return label
    label.append("derived ", style="blue")
    label.append(node.fid, style="bold")
    if node.description:
        label.append(f": {node.description}")
    if node.attributes:
        label.append(" (" + ", ".join(f"{k}={value_text(v)}" for k, v in node.attributes.items()) + ")", style="cyan")
    if node.note:
        label.append(f" - {node.note}", style="dim")
    return label


def _add_rule(parent: Tree, node: RuleNode, titles: Mapping[str, str], seen: set[str]) -> None:
    branch = parent.add(_rule_label(node, titles, node.rule_id not in seen))
    seen.add(node.rule_id)
    for fact in node.matched:
        fact_branch = branch.add(_fact_label(fact))
        for check in fact.checks:
            fact_branch.add(_check_label(check))
        for rule in fact.derived_by:
            _add_rule(fact_branch, rule, titles, seen)


def explanation_text(
    explanation: Explanation, rulebook: Rulebook | None = None, *, color: bool = False, width: int = 100
) -> str:
    """A derivation tree for a terminal."""
    out = _Writer(color, width)
    head = Text("Why: ", style="bold")
    head.append(explanation.title, style="bold")
    head.append(f"  ({explanation.kind}, {explanation.priority})", style="dim")
    tree = Tree(head, guide_style="dim")
    seen: set[str] = set()
    for rule in explanation.rules:
        _add_rule(tree, rule, document_titles(explanation, rulebook), seen)
    out.print(tree)
    if explanation.fields:
        out.say("Depends on: " + ", ".join(explanation.fields), "dim", "")
    return out.text()


# --------------------------------------------------------------------------- why not


def _failure_label(failure: Failure) -> Text:
    label = Text(failure.needs)
    label.append("; ")
    label.append(failure.found, style="cyan")
    return label


def _add_outcome(parent: Tree, outcome: RuleOutcome) -> None:
    label = Text()
    label.append(f"rule {outcome.rule_id}", style="bold magenta")
    label.append(f": {outcome.title} - ")
    label.append(_OUTCOME_WORDS[outcome.outcome], style=_OUTCOME_STYLE[outcome.outcome])
    branch = parent.add(label)
    for held in outcome.held_back_by:
        branch.add(Text(f"held back by {held}", style="yellow"))
    if outcome.failure is not None:
        failure_branch = branch.add(_failure_label(outcome.failure))
        for inner in outcome.failure.because:
            _add_outcome(failure_branch, inner)


def why_not_text(why: WhyNot, *, color: bool = False, width: int = 100) -> str:
    """Why a kind, rule or derived fact did (not) come out, for a terminal."""
    out = _Writer(color, width)
    head = Text(f"Why not {why.target}?", style="bold")
    head.append(
        "  It is in the advice for this case." if why.present else "  It is not in the advice for this case.",
        style="green" if why.present else "yellow",
    )
    tree = Tree(head, guide_style="dim")
    if not why.rules:
        tree.add("No rule produces it.")
    for outcome in why.rules:
        _add_outcome(tree, outcome)
    out.print(tree)
    return out.text()


# --------------------------------------------------------------------------- next questions


def _effect(added: Sequence[str], removed: Sequence[str]) -> str:
    parts = []
    if added:
        parts.append("adds " + ", ".join(kind_label(k) for k in added))
    if removed:
        parts.append("removes " + ", ".join(kind_label(k) for k in removed))
    return "; ".join(parts)


def _questions(out: _Writer, questions: Sequence[NextQuestion], *, full: bool = True) -> None:
    """The questions; ``full`` adds each one's case field and what each answer would change."""
    out.print(Text("Questions worth asking next", style="bold"))
    if not questions:
        out.say("None: no answer to an open question would change this advice.", "", "   ")
    for n, q in enumerate(questions, 1):
        head = Text(f"{n}. ")
        if q.about:
            head.append(f"About {q.about}: ", style="bold")
        head.append(q.question, style="bold")
        if not full:
            out.print(head)
            continue
        head.append(f"  ({q.path})", style="dim")
        out.print(head)
        for answer in q.answers:
            out.say(f'If "{answer.label}": {_effect(answer.added, answer.removed)}', "")


def questions_text(questions: Sequence[NextQuestion], *, color: bool = False, width: int = 100) -> str:
    """The questions worth asking next, for a terminal."""
    out = _Writer(color, width)
    _questions(out, questions)
    return out.text()
