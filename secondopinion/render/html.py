"""A printable one-page plan as HTML: self-contained (inline style, no scripts, no outside files).

The markup is plain and accessible: ``lang`` set, one ``h1``, a heading per
step, lists for actions, fields and questions, and the dates in ``<time>``
elements. Every piece of text is escaped. ``why`` adds each action's
priority, reasons, guidance ids and sources (by guide title).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from html import escape

from ..plan import Plan
from ..questions import NextQuestion
from ..rulebook import Rulebook
from .common import reasons, source_titles

__all__ = ["plan_html"]

_STYLE = """
body { font: 11pt/1.35 system-ui, sans-serif; max-width: 48em; margin: 1.5em auto; padding: 0 1em; color: #111; }
h1 { font-size: 1.4em; margin: 0 0 .3em; }
h2 { font-size: 1.1em; margin: 1em 0 .3em; border-bottom: 1px solid #999; }
.headline { font-size: 1.15em; font-weight: bold; margin: .2em 0; }
.disclaimer { font-style: italic; font-size: .9em; }
ul { margin: .2em 0; padding-left: 1.3em; }
li { margin: .15em 0; }
.detail { margin: 0; }
.fields, .why { font-size: .92em; }
.why { color: #444; }
.columns { display: flex; gap: 2em; }
.columns > section { flex: 1; }
@media print { body { margin: 0; font-size: 9.5pt; } h2 { break-after: avoid; } li { break-inside: avoid; } }
"""


def _day(day: dt.date) -> str:
    return f'<time datetime="{day.isoformat()}">{day:%A}, {day:%B} {day.day}</time>'


def plan_html(
    plan: Plan,
    rulebook: Rulebook | None = None,
    *,
    why: bool = False,
    questions: Sequence[NextQuestion] | None = None,
) -> str:
    """The plan as one self-contained HTML page, ready to print."""
    out = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        "<title>Your second opinion plan</title>",
        f"<style>{_STYLE}</style>",
        "</head>",
        "<body>",
        "<main>",
        "<h1>Your second opinion plan</h1>",
        f'<p class="headline">{escape(plan.headline)}</p>',
    ]
    dates = plan.date_sentences(_day)
    if dates:
        out.append(f"<p>{' '.join(dates)}</p>")
    out.append(f'<p class="disclaimer">{escape(plan.disclaimer)}</p>')
    if plan.reader_note:
        out.append(f"<p>{escape(plan.reader_note)}</p>")
    if not plan.steps:
        out.append("<p>No recommendation for this case yet.</p>")
    for n, step in enumerate(plan.steps, 1):
        due = f" (by {_day(step.due)})" if step.due is not None else ""
        out.append(f'<section aria-labelledby="step-{n}">')
        out.append(f'<h2 id="step-{n}">{n}. {escape(step.title)}{due}</h2>')
        out.append("<ul>")
        for action in step.actions:
            out.append(f"<li><strong>{escape(action.title)}</strong>")
            out.append(f'<p class="detail">{escape(action.detail)}</p>')
            if action.fields:
                out.append('<ul class="fields">')
                for field in action.fields:
                    if field.sentences:
                        said = "".join(f"<li>{escape(v)}</li>" for v in field.values)
                        out.append(f"<li>{escape(field.label)}:<ul>{said}</ul></li>")
                    else:
                        out.append(f"<li>{escape(field.label)}: {escape(field.text)}</li>")
                out.append("</ul>")
            rec = plan.recommendation(action.kind)
            if why and rec is not None:
                items = [f"Priority: {rec.priority.value}; kind: {rec.kind}"]
                items += [f"Evidence ({ev.id}): {ev.figure}" for ev in rec.evidence]
                items += [f"Why: {r}" for r in reasons(rec, rulebook)]
                if rec.guidance:
                    items.append(f"Guidance: {', '.join(rec.guidance)}")
                items += [f"Source: {s}" for s in source_titles(rec, rulebook)]
                out.append('<ul class="why">' + "".join(f"<li>{escape(w)}</li>" for w in items) + "</ul>")
            out.append("</li>")
        out.append("</ul>")
        out.append("</section>")
    lists = plan.question_lists()
    if any(asked for _, asked in lists):
        out.append('<div class="columns">')
        for k, (title, asked) in enumerate(lists):
            if asked:
                out.append(f'<section aria-labelledby="questions-{k}">')
                out.append(f'<h2 id="questions-{k}">{escape(title)}</h2>')
                out.append("<ul>" + "".join(f"<li>{escape(q)}</li>" for q in asked) + "</ul>")
                out.append("</section>")
        out.append("</div>")
    if questions is not None:
        out.append('<section aria-labelledby="next">')
        out.append('<h2 id="next">Questions worth answering next</h2>')
        if not questions:
            out.append("<p>None: no answer to an open question would change this advice.</p>")
        out.append("<ol>" + "".join(f"<li>{escape(q.question)}</li>" for q in questions) + "</ol>")
        out.append("</section>")
    out += ["</main>", "</body>", "</html>"]
    return "\n".join(out) + "\n"
