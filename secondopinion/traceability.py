"""The traceability matrix: guidance item -> rules -> recommendation kinds.

Reviewers use it to see that every actionable guidance item (G01-G51) is
implemented by active rules, which evidence figures (E1-E4) back which
recommendations, and which rules resolve each tension (T1-T4). It is rendered
from a :class:`~secondopinion.rulebook.Rulebook`, never written by hand:
``docs/traceability.md`` is the output of ::

    python -m secondopinion.traceability --write docs/traceability.md

and ``python -m secondopinion.traceability --check docs/traceability.md``
exits 1 when that file is stale (the test suite runs the same comparison).
The output holds no file paths or line numbers, so it does not depend on the
working directory.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

import attrs

from .rulebook import Rule, Rulebook

__all__ = [
    "GuidanceTrace",
    "guidance_traces",
    "main",
    "render_matrix",
    "untraced_guidance",
]


@attrs.frozen
class GuidanceTrace:
    """One guidance item with the active rules that cite it and the kinds they recommend."""

    id: str
    area: str | None
    summary: str
    rules: tuple[str, ...]
    derives: tuple[str, ...]
    kinds: tuple[str, ...]
    inactive_rules: tuple[str, ...] = ()

    @property
    def traced(self) -> bool:
        """Whether at least one active rule implements this item."""
        return bool(self.rules)


def _citing(rules: Iterable[Rule], guidance_id: str) -> list[Rule]:
    return [r for r in rules if guidance_id in r.guidance]


def guidance_traces(book: Rulebook) -> tuple[GuidanceTrace, ...]:
    """Every guidance item of the rulebook, in id order, with the rules that implement it."""
    out = []
    for gid in sorted(book.guidance):
        item = book.guidance[gid]
        active = _citing(book.active, gid)
        inactive = [r for r in _citing(book.rules, gid) if r.status != "active"]
        out.append(
            GuidanceTrace(
                id=gid,
                area=item.area,
                summary=item.summary,
                rules=tuple(r.id for r in active),
                derives=tuple(sorted({r.derives for r in active if r.derives})),
                kinds=tuple(sorted({r.recommends for r in active if r.recommends})),
                inactive_rules=tuple(f"{r.id} ({r.status})" for r in inactive),
            )
        )
    return tuple(out)


def untraced_guidance(book: Rulebook) -> tuple[str, ...]:
    """Ids of guidance items that no active rule implements (empty when all are traced)."""
    return tuple(t.id for t in guidance_traces(book) if not t.traced)


def _cell(text: str) -> str:
    """Text safe inside a Markdown table cell."""
    return " ".join(text.split()).replace("|", "\\|")


def _codes(items: Sequence[str], empty: str = "(none)") -> str:
    return ", ".join(f"`{i}`" for i in items) if items else empty


def _rule_action(rule: Rule) -> str:
    if rule.derives:
        return f"derives `{rule.derives}`"
    assert isinstance(rule.recommends, str)
    priority = getattr(rule.then, "priority", None)
    level = f" ({priority.value})" if priority is not None else ""
    return f"recommends `{rule.recommends}`{level}"


def render_matrix(book: Rulebook) -> str:
    """The traceability matrix of a rulebook as Markdown."""
    traces = guidance_traces(book)
    traced = sum(1 for t in traces if t.traced)
    active = book.active
    derive_count = sum(1 for r in active if r.derives)
    lines = [
        "# Traceability matrix",
        "",
        "<!-- Generated from the rule files by `python -m secondopinion.traceability --write "
        "docs/traceability.md`. Do not edit by hand: tests/test_traceability.py fails when it is stale. -->",
        "",
        f"**{traced} of {len(traces)} guidance items traced to active rules.** "
        f"{len(active)} active rules ({derive_count} derive facts, {len(active) - derive_count} recommend); "
        f"{len(book.rules) - len(active)} draft or retired.",
        "",
        "A rule that derives a fact implements its guidance through the rules that",
        "build on that fact; the kinds column lists what the citing rules recommend",
        "directly. Guidance summaries are the project's own paraphrases; the",
        "authority is the source documents cited by each rule.",
        "",
        "## Guidance -> rules -> recommendation kinds",
        "",
        "| Guidance | Area | Summary | Active rules | Derives | Recommendation kinds |",
        "|---|---|---|---|---|---|",
    ]
    for t in traces:
        rules = _codes(t.rules, "**none**")
        if t.inactive_rules:
            rules += "; not active: " + ", ".join(t.inactive_rules)
        lines.append(
            f"| {t.id} | {_cell(t.area or '')} | {_cell(t.summary)} | {rules} | "
            f"{_codes(t.derives, '')} | {_codes(t.kinds, '')} |"
        )

    lines += [
        "",
        "## Evidence figures (shown with recommendations, never recommendations themselves)",
        "",
        "| Evidence | Figure | Shown with rules | Recommendation kinds |",
        "|---|---|---|---|",
    ]
    for eid in sorted(book.evidence):
        users = [r for r in active if eid in r.evidence]
        kinds = sorted({r.recommends for r in users if r.recommends})
        lines.append(
            f"| {eid} | {_cell(book.evidence[eid].figure)} | {_codes([r.id for r in users])} | {_codes(kinds, '')} |"
        )

    lines += [
        "",
        "## Tensions between the sources and the rules that resolve them",
        "",
        "See [tensions.md](tensions.md) for each resolution with the sources on both sides.",
        "",
        "| Tension | Sources | Resolution | Rules |",
        "|---|---|---|---|",
    ]
    for tid in sorted(book.tensions):
        tension = book.tensions[tid]
        lines.append(
            f"| {tid} | {', '.join(tension.sources)} | {_cell(tension.resolution)} | {_codes(tension.rules)} |"
        )

    lines += [
        "",
        "## Rule index",
        "",
        "| Rule | Topic | Status | Guidance | Evidence | Then | Sources |",
        "|---|---|---|---|---|---|---|",
    ]
    for rule in sorted(book.rules, key=lambda r: (r.topic or "", r.id)):
        sources = "; ".join(f"{s.file} \u00a7 {_cell(s.section)}" for s in rule.sources)
        lines.append(
            f"| `{rule.id}` | {rule.topic or ''} | {rule.status} | {', '.join(rule.guidance)} | "
            f"{', '.join(rule.evidence)} | {_rule_action(rule)} | {sources} |"
        )
    lines.append("")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Print the matrix, write it to a file, or check that a file is current (exit 1 if stale)."""
    parser = argparse.ArgumentParser(
        prog="python -m secondopinion.traceability",
        description="Render the traceability matrix (guidance -> rules -> recommendation kinds).",
    )
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--write", type=Path, metavar="PATH", help="write the matrix to PATH")
    group.add_argument("--check", type=Path, metavar="PATH", help="exit 1 if PATH is not the current matrix")
    parser.add_argument(
        "--rules", type=Path, action="append", default=[], metavar="PATH",
        help="extra rule file or folder beside the shipped rules (repeatable)",
    )
    args = parser.parse_args(argv)
    text = render_matrix(Rulebook.load(*args.rules))
    if args.write is not None:
        args.write.write_text(text, encoding="utf-8")
        return 0
    if args.check is not None:
        try:
            current = args.check.read_text(encoding="utf-8")
        except OSError:
            print(f"error: cannot read {args.check}", file=sys.stderr)
            return 1
        if current != text:
            print(
                f"{args.check} is stale: run python -m secondopinion.traceability --write {args.check}",
                file=sys.stderr,
            )
            return 1
        return 0
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
