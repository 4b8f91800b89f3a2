"""Markdown, for apps and notebooks. Values that come from a case are put in code spans, so they cannot
inject Markdown or HTML."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from ..explain import Check, Explanation, FactNode, RuleNode, RuleOutcome, WhyNot
from ..plan import Plan
from ..questions import NextQuestion
from ..recommendations import Advice
from ..rulebook import Rulebook
from .common import details, document_titles, kind_label, reasons, source_line, source_titles, sources, value_text

__all__ = ["explanation_markdown", "plan_markdown", "questions_markdown", "render_markdown", "why_not_markdown"]


def code(text: str) -> str:
    """``text`` as an inline code span, whatever backticks it holds."""
    text = " ".join(text.split())
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if text.startswith("`") or text.endswith("`") or longest else ""
    return f"{fence}{pad}{text}{pad}{fence}"


_SPECIAL = re.compile(r"([\\`*_{}\[\]<>()#+!|~])")


def escape(text: str) -> str:
    """Plain text with Markdown's special characters escaped (and on one line)."""
    return _SPECIAL.sub(r"\\\1", " ".join(text.split()))


def render_markdown(
    advice: Advice, rulebook: Rulebook | None = None, *, questions: Sequence[NextQuestion] | None = None
) -> str:
    """Advice as Markdown: each recommendation with its details, reasons and sources."""
    lines = ["# Second opinion guidance", "", f"*{advice.disclaimer}*", ""]
    if not advice.recommendations:
        lines.append("No recommendation for this case.")
    for rec in advice.recommendations:
        lines += [
            f"## {rec.title}",
            "",
            f"**Priority:** {rec.priority.value} · **Kind:** `{rec.kind}`",
            "",
            rec.detail,
            "",
        ]
        for label, value in details(rec):
            lines.append(f"- **{label}:** {value}")
        for ev in rec.evidence:
            lines.append(f"- **Evidence ({ev.id}):** {ev.figure}")
        lines += ["", "**Why**", ""]
        lines += [f"- {r}" for r in reasons(rec, rulebook)]
        lines += ["", f"**Guidance:** {', '.join(rec.guidance)}", "", "**Sources**", ""]
        lines += [f"- {s}" for s in sources(rec, rulebook)]
        lines.append("")
    if questions is not None:
        lines += _questions(questions, "##")
    return "\n".join(lines).rstrip() + "\n"


# --------------------------------------------------------------------------- the plan


def plan_markdown(
    plan: Plan,
    rulebook: Rulebook | None = None,
    *,
    why: bool = False,
    questions: Sequence[NextQuestion] | None = None,
) -> str:
    """A plan as Markdown: headline, dates, one section per step, and the questions to bring.

    Every action shows its title, plain detail and concrete fields (values
    escaped: some come from the case). ``why`` adds the priority, kind,
    evidence, reasons, guidance ids and sources (by guide title).
    """
    lines = ["# Your second opinion plan", "", f"**{escape(plan.headline)}**", ""]
    dates = plan.date_sentences(_day)
    if dates:
        lines += [" ".join(dates), ""]
    lines += [f"*{plan.disclaimer}*", ""]
    if plan.reader_note:
        lines += [escape(plan.reader_note), ""]
    if not plan.steps:
        lines += ["No recommendation for this case yet.", ""]
    for n, step in enumerate(plan.steps, 1):
        due = f" (by {_day(step.due)})" if step.due is not None else ""
        lines += [f"## {n}. {step.title}{due}", ""]
        for action in step.actions:
            lines.append(f"- **{escape(action.title)}**  ")
            lines.append(f"  {escape(action.detail)}")
            for field in action.fields:
                if field.sentences:
                    lines.append(f"  - {field.label}:")
                    lines += [f"    - {escape(v)}" for v in field.values]
                else:
                    lines.append(f"  - {field.label}: {escape(field.text)}")
            rec = plan.recommendation(action.kind)
            if why and rec is not None:
                lines.append(f"  - *Priority:* {rec.priority.value} · *Kind:* `{rec.kind}`")
                lines += [f"  - *Evidence ({ev.id}):* {ev.figure}" for ev in rec.evidence]
                lines += [f"  - *Why:* {escape(r)}" for r in reasons(rec, rulebook)]
                if rec.guidance:
                    lines.append(f"  - *Guidance:* {', '.join(rec.guidance)}")
                lines += [f"  - *Source:* {escape(src)}" for src in source_titles(rec, rulebook)]
        lines.append("")
    for title, items in plan.question_lists():
        if items:
            lines += [f"## {title}", ""] + [f"- {escape(q)}" for q in items] + [""]
    if questions is not None:
        lines += _questions(questions, "##", full=why)
    return "\n".join(lines).rstrip() + "\n"


def _day(day: Any) -> str:
    return f"{day:%A}, {day:%B} {day.day}"


# --------------------------------------------------------------------------- derivation trees


def _values(values: Mapping[str, Any]) -> str:
    if not values:
        return ""
    if len(values) == 1:
        return " (case: " + code(value_text(next(iter(values.values())))) + ")"
    return " (case: " + "; ".join(f"{code(k)} = {code(value_text(v))}" for k, v in values.items()) + ")"


def _check(check: Check, indent: str) -> list[str]:
    return [f"{indent}- ✓ {escape(check.text)}{_values(check.values)}"]


def _fact(node: FactNode, indent: str, titles: Mapping[str, str], seen: set[str]) -> list[str]:
    if node.is_case_fact:
        head = f"{indent}- Case field {code(str(node.path))}"
    else:
        head = f"{indent}- Derived fact {code(node.fid)}"
        if node.description:
            head += f": {node.description}"
        if node.attributes:
            head += " (" + ", ".join(code(f"{k}={value_text(v)}") for k, v in node.attributes.items()) + ")"
        if node.note:
            head += f" *({node.note})*"
    lines = [head]
    for check in node.checks:
        lines += _check(check, indent + "  ")
    for rule in node.derived_by:
        lines += _rule(rule, indent + "  ", titles, seen)
    return lines


def _rule(node: RuleNode, indent: str, titles: Mapping[str, str], seen: set[str]) -> list[str]:
    title = f": {node.title}" if node.title else " (not in the rulebook)"
    first = node.rule_id not in seen
    seen.add(node.rule_id)
    lines = [f"{indent}- **Rule {node.rule_id}**{title}" + ("" if first else " *(rationale and sources above)*")]
    inner = indent + "  "
    if first and node.rationale:
        lines.append(f"{inner}- *Rationale:* {node.rationale}")
    if first and node.sources:
        lines.append(f"{inner}- *Sources:* " + "; ".join(source_line(s, None, titles) for s in node.sources))
    for unless in node.unless:
        lines.append(f"{inner}- *{escape(unless)}* (none was)")
    for fact in node.matched:
        lines += _fact(fact, inner, titles, seen)
    return lines


def explanation_markdown(explanation: Explanation, rulebook: Rulebook | None = None) -> str:
    """A derivation tree as nested Markdown lists."""
    lines = [
        f"## Why: {explanation.title}",
        "",
        f"**Kind:** `{explanation.kind}` · **Priority:** {explanation.priority}",
        "",
    ]
    seen: set[str] = set()
    for rule in explanation.rules:
        lines += _rule(rule, "", document_titles(explanation, rulebook), seen)
    if explanation.fields:
        lines += ["", "**Depends on:** " + ", ".join(code(f) for f in explanation.fields)]
    return "\n".join(lines).rstrip() + "\n"


# --------------------------------------------------------------------------- why not

_OUTCOME_WORDS = {
    "fired": "fired",
    "held_back": "fired, but was held back",
    "did_not_match": "did not match",
    "not_active": "not active (draft or retired)",
}


def _outcome(outcome: RuleOutcome, indent: str) -> list[str]:
    lines = [f"{indent}- **Rule {outcome.rule_id}**: {outcome.title} - *{_OUTCOME_WORDS[outcome.outcome]}*"]
    inner = indent + "  "
    for held in outcome.held_back_by:
        lines.append(f"{inner}- held back by {escape(held)}")
    failure = outcome.failure
    if failure is not None:
        lines.append(f"{inner}- {escape(failure.needs)}; {escape(failure.found)}")
        for deeper in failure.because:
            lines += _outcome(deeper, inner + "  ")
    return lines


def why_not_markdown(why: WhyNot) -> str:
    """Why a kind, rule or derived fact did (not) come out, as Markdown."""
    state = "It is in the advice for this case." if why.present else "It is not in the advice for this case."
    lines = [f"## Why not {code(why.target)}?", "", state, ""]
    if not why.rules:
        lines.append("No rule produces it.")
    for outcome in why.rules:
        lines += _outcome(outcome, "")
    return "\n".join(lines).rstrip() + "\n"


# --------------------------------------------------------------------------- next questions


def _questions(questions: Sequence[NextQuestion], level: str, *, full: bool = True) -> list[str]:
    lines = [f"{level} Questions worth asking next", ""]
    if not questions:
        lines += ["None: no answer to an open question would change this advice.", ""]
    for n, q in enumerate(questions, 1):
        about = f"About {q.about}: " if q.about else ""
        marker = f"{n}. "
        if not full:
            lines.append(f"{marker}{escape(about + q.question)}")
            continue
        pad = " " * len(marker)  # sub-items line up with the item's text, as CommonMark needs
        lines.append(f"{marker}**{about}{q.question}** ({code(q.path)})")
        for answer in q.answers:
            parts = []
            if answer.added:
                parts.append("adds " + ", ".join(kind_label(k) for k in answer.added))
            if answer.removed:
                parts.append("removes " + ", ".join(kind_label(k) for k in answer.removed))
            lines.append(f"{pad}- If *{escape(answer.label)}*: {'; '.join(parts)}")
        lines.append("")
    return lines


def questions_markdown(questions: Sequence[NextQuestion]) -> str:
    """The questions worth asking next, as Markdown."""
    return "\n".join(_questions(questions, "##")).rstrip() + "\n"
