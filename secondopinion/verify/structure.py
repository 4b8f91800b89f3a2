"""Structural checks: rule metadata, derived facts nobody produces or uses, kinds never given, cycles."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from ..recommendations import KINDS
from .report import Severity

if TYPE_CHECKING:
    from .verifier import _Verifier


def check_metadata(v: _Verifier) -> None:
    book = v.rulebook
    for rule in book.rules:
        if rule.status == "retired":
            continue
        sev: Severity = "error" if rule.status == "active" else "warning"
        if not rule.fires or not rule.silent:
            v.add(
                "metadata",
                sev,
                (rule.id,),
                f"{rule.status} rule needs at least one 'fires' and one 'silent' example",
            )
        if not rule.sources:
            v.add("metadata", sev, (rule.id,), f"{rule.status} rule cites no source")
        if not rule.guidance:
            v.add("metadata", sev, (rule.id,), f"{rule.status} rule names no guidance id")
        for gid in rule.guidance:
            if gid not in book.guidance:
                v.add("metadata", sev, (rule.id,), f"unknown guidance id {gid}")
        for eid in rule.evidence:
            if eid not in book.evidence:
                v.add("metadata", sev, (rule.id,), f"unknown evidence id {eid}")
        for tid in rule.tensions:
            if tid not in book.tensions:
                v.add("metadata", sev, (rule.id,), f"unknown tension id {tid}")
        for src in rule.sources:
            doc = book.documents.get(src.file)
            if doc is None or src.section not in doc.sections:
                v.add("metadata", sev, (rule.id,), f"unknown source {src.file} / {src.section}")
    cited = {g for r in book.active for g in r.guidance}
    missing = sorted(g for g in book.guidance if g not in cited)
    if missing:
        v.add("unimplemented-guidance", "info", (), f"guidance no active rule cites: {', '.join(missing)}")


def check_structure(v: _Verifier) -> None:
    rules = v.rules
    produced = {r.derives for r in rules if r.derives}
    consumed: dict[str, list[str]] = {}
    for rule in rules:
        for fact in {p.fact for p in rule.when} | {u.fact for u in rule.unless}:
            if fact in v.rulebook.derived_types:
                consumed.setdefault(fact, []).append(rule.id)
    for fact in sorted(v.rulebook.derived_types):
        if fact in consumed and fact not in produced:
            v.add(
                "unproduced-fact",
                "warning",
                consumed[fact],
                f"rules match derived fact {fact!r}, but no rule derives it",
            )
        elif fact in produced and fact not in consumed:
            v.add(
                "unused-fact",
                "warning",
                [r.id for r in rules if r.derives == fact],
                f"derived fact {fact!r} is derived but no rule matches it",
            )
        elif fact not in produced and fact not in consumed:
            v.add("unused-fact", "info", (), f"derived fact {fact!r} is declared but neither derived nor matched")
    given = {r.recommends for r in rules if r.recommends}
    never = [k for k in KINDS if k not in given]
    if never:
        v.add("unused-kind", "info", (), f"recommendation kinds no rule gives: {', '.join(never)}")
    for a, b in v.rulebook.incompatible_kinds:
        for kind in (a, b):
            if kind not in given:
                v.add("unused-kind", "info", (), f"incompatible pair ({a}, {b}): no rule gives {kind}")
    # cycles: derived fact -> derived fact through a rule
    graph: dict[str, set[str]] = {}
    via: dict[tuple[str, str], list[str]] = {}
    for rule in rules:
        if rule.derives:
            for pattern in rule.when:
                if pattern.fact in v.rulebook.derived_types:
                    graph.setdefault(pattern.fact, set()).add(rule.derives)
                    via.setdefault((pattern.fact, rule.derives), []).append(rule.id)
    for component in _cycles(graph):
        members = set(component)
        ids = sorted({rid for (a, b), rids in via.items() if a in members and b in members for rid in rids})
        v.add(
            "cycle",
            "error",
            ids,
            f"derived facts depend on themselves: {' -> '.join([*component, component[0]])}",
        )


def _cycles(graph: Mapping[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with a cycle (Tarjan), each in a stable order."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    counter = 0

    def visit(node: str) -> None:
        nonlocal counter
        index[node] = low[node] = counter
        counter += 1
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1 or node in graph.get(node, ()):
                out.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return out
