"""Renderers: Advice as terminal text, Markdown or JSON.

Text and Markdown show each recommendation with its kind-specific details,
its reasons (the rules that produced it and what they matched) and its sources
(document titles and sections). Text is coloured through rich when asked to
(the CLI asks when stdout is a terminal) and plain otherwise.
"""

from __future__ import annotations

import io
import textwrap
from typing import Any, Literal

from rich.console import Console
from rich.text import Text

from ..recommendations import Advice, Priority, Recommendation, SetDeadline
from ..rulebook import Rulebook

__all__ = ["Format", "details", "reasons", "render", "render_json", "render_markdown", "render_text", "sources"]

Format = Literal["text", "markdown", "json"]

_STYLE = {Priority.CRITICAL: "bold red", Priority.HIGH: "bold yellow", Priority.MEDIUM: "cyan", Priority.LOW: "dim"}


def _label(name: str) -> str:
    return name.replace("_", " ").capitalize()


def details(rec: Recommendation) -> list[tuple[str, str]]:
    """The kind-specific fields of a recommendation as (label, text) pairs, empty ones left out."""
    out: list[tuple[str, str]] = []
    for field in rec.specific_fields():
        value: Any = getattr(rec, field.name)
        if value in (None, (), ""):
            continue
        if isinstance(value, bool):
            if not value:
                continue
            value = "yes"
        elif isinstance(value, tuple):
            value = "; ".join(str(v) for v in value)
        out.append((_label(field.name), str(value)))
    if isinstance(rec, SetDeadline) and rec.get_opinion_within_days is not None:
        out.append(("Get the opinion within", f"{rec.get_opinion_within_days} days"))
    return out


def reasons(rec: Recommendation, rulebook: Rulebook | None) -> list[str]:
    """Why a recommendation was made: each rule's title and the facts it matched."""
    out = []
    for d in rec.derivation:
        title = ""
        if rulebook is not None:
            try:
                title = rulebook.rule(d.rule_id).title
            except KeyError:
                title = ""
        matched = ", ".join(dict.fromkeys(d.matched.values()))
        label = f"{title} (rule {d.rule_id})" if title else f"rule {d.rule_id}"
        out.append(f"{label}; based on: {matched}" if matched else label)
    return list(dict.fromkeys(out))


def sources(rec: Recommendation, rulebook: Rulebook | None) -> list[str]:
    """The sources of a recommendation as 'Title, section (file)' lines."""
    out = []
    for src in rec.sources:
        doc = rulebook.documents.get(src.file) if rulebook is not None else None
        title = f"{doc.title}, " if doc is not None else ""
        out.append(f'{title}"{src.section}" ({src.file})')
    return out


def render_text(advice: Advice, rulebook: Rulebook | None = None, *, color: bool = False, width: int = 100) -> str:
    """Advice for a terminal; ``color`` turns on rich styling."""
    buffer = io.StringIO()
    console = Console(
        file=buffer, force_terminal=color, no_color=not color, width=width, highlight=False, soft_wrap=False
    )

    def say(text: str, style: str = "", indent: str = "   ") -> None:
        wrapped = textwrap.fill(text, width=width, initial_indent=indent, subsequent_indent=indent + "  ")
        console.print(Text(wrapped, style=style))

    console.print(Text("Second opinion guidance", style="bold"))
    say(advice.disclaimer, "italic", "")
    if not advice.recommendations:
        console.print("\nNo recommendation for this case.")
    for n, rec in enumerate(advice.recommendations, 1):
        console.print()
        head = Text(f"{n}. ")
        head.append(f"[{rec.priority.value.upper()}] ", style=_STYLE[rec.priority])
        head.append(rec.title, style="bold")
        console.print(head)
        say(rec.detail)
        for label, value in details(rec):
            say(f"{label}: {value}")
        for ev in rec.evidence:
            say(f"Evidence ({ev.id}): {ev.figure}", "dim")
        for reason in reasons(rec, rulebook):
            say(f"Why: {reason}", "dim")
        say(f"Guidance: {', '.join(rec.guidance)}", "dim")
        for src in sources(rec, rulebook):
            say(f"Source: {src}", "dim")
    return buffer.getvalue()


def render_markdown(advice: Advice, rulebook: Rulebook | None = None) -> str:
    """Advice as Markdown, for apps and notebooks."""
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
    return "\n".join(lines).rstrip() + "\n"


def render_json(advice: Advice) -> str:
    """Advice as JSON (see :meth:`Advice.to_json`)."""
    return advice.to_json() + "\n"


def render(advice: Advice, fmt: Format = "text", rulebook: Rulebook | None = None, *, color: bool = False) -> str:
    """Render advice in one of the formats."""
    if fmt == "json":
        return render_json(advice)
    if fmt == "markdown":
        return render_markdown(advice, rulebook)
    return render_text(advice, rulebook, color=color)
