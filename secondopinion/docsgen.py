"""Documentation generated from the rule files, and Graphviz pictures of rules and derivations.

Reviewers read the rules on the documentation site, so the pages that
describe them are made from ``rules/`` rather than written by hand:

* ``docs/catalogue/index.md``: the vocabulary (case facts, derived facts,
  recommendation kinds) with the rules that produce and use each, and the
  declared coverage requirements;
* ``docs/catalogue/<rule file>.md``: every rule of one topic file with its
  review metadata, conditions, conclusion and examples;
* ``docs/sources.md``: the source documents (titles, dates, sections, the
  rules citing each section), the guidance inventory and the evidence figures;
* ``docs/rule-graph.md`` with ``docs/img/rule-graph.dot`` and ``.svg``: the
  rule graph (case facts -> derived facts -> recommendations).

Run ``python -m secondopinion.docsgen`` after changing the rules to rewrite
them, and ``python -m secondopinion.docsgen --check`` to list stale pages
(exit code 1); the test suite runs the check. The SVG is drawn by Graphviz's
``dot`` program; it records the SHA-256 of the DOT text it was drawn from, so
the check needs no Graphviz and does not depend on its version.

:func:`derivation_dot` draws one recommendation's derivation tree (from
:func:`secondopinion.explain.explain`) the same way, for notebooks and reports.
"""

from __future__ import annotations

import argparse
import hashlib
import re
import sys
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import graphviz
import yaml

from .case import case_fact_types
from .recommendations import KINDS
from .rulebook import AnyOf, Condition, Coverage, Derive, Pattern, Recommend, Ref, Rule, Rulebook, Test

if TYPE_CHECKING:
    from .explain import Explanation, FactNode, RuleNode

__all__ = [
    "GENERATED_NOTE",
    "derivation_dot",
    "describe_tests",
    "generate",
    "main",
    "render_svg",
    "rule_graph_dot",
    "stale",
    "write",
]

GENERATED_NOTE = (
    "<!-- Generated from rules/ by `python -m secondopinion.docsgen`. Do not edit by hand: "
    "change the rule files and run it again. -->"
)
"""The first line of every generated Markdown page."""

_SVG_STAMP = re.compile(r"<!-- secondopinion-dot-sha256: ([0-9a-f]{64}) -->")

_GRAPH_SVG = "img/rule-graph.svg"
_GRAPH_DOT = "img/rule-graph.dot"

_OPS = {"eq": "is", "ne": "is not", "gt": ">", "gte": "≥", "lt": "<", "lte": "≤"}


# --------------------------------------------------------------------------- Markdown helpers


def _md(text: str) -> str:
    """Plain text made safe for Markdown (no accidental emphasis, links, HTML or table cells)."""
    return re.sub(r"([\\`*_\[\]<>|])", r"\\\1", " ".join(text.split()))


def _code(text: Any) -> str:
    """A Markdown code span; pipes escaped so that it can sit in a table cell."""
    shown = str(text).replace("|", "\\|")
    return f"``{shown}``" if "`" in shown else f"`{shown}`"


def _value(value: Any) -> str:
    if isinstance(value, Ref):
        return _code(str(value))
    if isinstance(value, bool):
        return _code("true" if value else "false")
    if isinstance(value, tuple | list):
        return ", ".join(_value(v) for v in value) if value else "(nothing)"
    return _code(value)


def _anchor(rule_id: str) -> str:
    return rule_id.lower()


def _page_of(rule: Rule) -> str:
    """The catalogue page (relative to ``docs/catalogue/``) that lists a rule."""
    return f"{Path(rule.file).stem}.md"


def _rule_link(rule: Rule, from_catalogue: bool = True) -> str:
    page = _page_of(rule) if from_catalogue else f"catalogue/{_page_of(rule)}"
    return f"[{_code(rule.id)}]({page}#{_anchor(rule.id)})"


def describe_condition(cond: Condition) -> str:
    """One condition in reviewer's words, e.g. ``seriousness`` is ``serious`` or ``life_threatening``."""
    attr = _code(cond.attr)
    if cond.op == "exists":
        return f"{attr} is {'given' if cond.value else 'not given'}"
    if cond.op in ("in", "not_in"):
        values = cond.value if isinstance(cond.value, tuple) else (cond.value,)
        joined = " or ".join(_value(v) for v in values)
        return f"{attr} is {'not ' if cond.op == 'not_in' else ''}{joined}"
    return f"{attr} {_OPS[cond.op]} {_value(cond.value)}"


def describe_tests(tests: Sequence[Test]) -> str:
    """The tests of one pattern joined with "and"; alternatives in brackets joined with "or"."""
    parts: list[str] = []
    for test in tests:
        if isinstance(test, AnyOf):
            options = [describe_tests(alt) or "anything" for alt in test.alternatives]
            parts.append("either (" + ") or (".join(options) + ")")
        else:
            parts.append(describe_condition(test))
    return " and ".join(parts)


def _pattern_line(pattern: Pattern) -> str:
    where = describe_tests(pattern.tests)
    head = f"{_code(pattern.bind)}: a {_code(pattern.fact)} fact"
    return f"{head} where {where}" if where else head


def _table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines.extend("| " + " | ".join(row) + " |" for row in rows)
    return lines


def _title(topic: str) -> str:
    return topic.replace("_", " ").capitalize()


# --------------------------------------------------------------------------- reading the rule files


def _shipped_dir() -> Path:
    from .rulebook import default_rules_path

    return default_rules_path()


def _file_headers(rules_dir: Path) -> dict[str, tuple[str, str]]:
    """Each rule file's stem mapped to its ``topic`` and ``description`` (safe YAML, nothing evaluated)."""
    out: dict[str, tuple[str, str]] = {}
    for path in sorted(rules_dir.glob("*.yaml")):
        data = yaml.safe_load(path.read_text("utf-8"))
        if isinstance(data, dict) and data.get("rules"):
            out[path.stem] = (str(data.get("topic", path.stem)), " ".join(str(data.get("description", "")).split()))
    return out


class _Index:
    """Who produces and who uses each fact type and recommendation kind."""

    def __init__(self, book: Rulebook) -> None:
        self.book = book
        self.rules = book.rules
        self.by_file: dict[str, list[Rule]] = defaultdict(list)
        self.derives: dict[str, list[Rule]] = defaultdict(list)
        self.gives: dict[str, list[Rule]] = defaultdict(list)
        self.reads: dict[str, list[Rule]] = defaultdict(list)
        self.holds: dict[str, list[Rule]] = defaultdict(list)
        self.cites: dict[tuple[str, str], list[Rule]] = defaultdict(list)
        self.implements: dict[str, list[Rule]] = defaultdict(list)
        for rule in book.rules:
            self.by_file[Path(rule.file).stem].append(rule)
            if rule.status != "active":
                continue
            if isinstance(rule.then, Derive):
                self.derives[rule.then.fact].append(rule)
            else:
                self.gives[rule.then.kind].append(rule)
            for fact in rule.consumes:
                self.reads[fact].append(rule)
            for fact in dict.fromkeys(u.fact for u in rule.unless):
                self.holds[fact].append(rule)
            for src in rule.sources:
                self.cites[(src.file, src.section)].append(rule)
            for gid in rule.guidance:
                self.implements[gid].append(rule)


def _links(rules: Sequence[Rule], from_catalogue: bool = True) -> str:
    return ", ".join(_rule_link(r, from_catalogue) for r in rules) if rules else "none"


# --------------------------------------------------------------------------- the catalogue


def _rule_section(rule: Rule, book: Rulebook) -> list[str]:
    out = [f"### {_code(rule.id)}: {_md(rule.title)} {{#{_anchor(rule.id)}}}", ""]
    guidance = "<br>".join(
        f"[{g}](../sources.md#{g.lower()})" + (f" {_md(book.guidance[g].summary)}" if g in book.guidance else "")
        for g in rule.guidance
    )
    sources = "<br>".join(
        f"[{_md(book.documents[s.file].title if s.file in book.documents else s.file)}]"
        f"(../sources.md#{_doc_anchor(s.file)}), {_md(s.section)}"
        for s in rule.sources
    )
    rows = [
        ("Status", f"{rule.status}, version {rule.version}, last reviewed {rule.last_reviewed}"),
        ("Guidance", guidance or "none"),
        ("Sources", sources or "none"),
        ("Rule file", f"{_code('rules/' + Path(rule.file).name)}, line {rule.line}"),
    ]
    if rule.evidence:
        rows.append(("Evidence", "; ".join(f"{e}: {_md(book.evidence[e].figure)}" for e in rule.evidence)))
    if rule.tensions:
        rows.append(("Tensions", ", ".join(f"[{t}](../sources.md#{t.lower()})" for t in rule.tensions)))
    out += _table(("Review", ""), ((f"**{k}**", v) for k, v in rows))
    out += ["", _md(rule.rationale), "", "**When** every one of these facts exists:", ""]
    out += [f"- {_pattern_line(p)}" for p in rule.when]
    if rule.unless:
        out += ["", "**Unless**, once all rules have run, there is:", ""]
        for u in rule.unless:
            where = describe_tests(u.tests)
            out.append(f"- a {_code(u.fact)} fact" + (f" where {where}" if where else ""))
    out.append("")
    if isinstance(rule.then, Derive):
        sets = ", ".join(f"{_code(k)} = {_value(v)}" for k, v in rule.then.set.items())
        fact = rule.then.fact
        out.append(f"**Then** derive [{_code(fact)}](index.md#fact-{fact})" + (f" with {sets}" if sets else "") + ".")
    else:
        rec: Recommend = rule.then
        out += [
            f"**Then** recommend [{_code(rec.kind)}](index.md#kind-{rec.kind}), priority {_code(rec.priority.value)}:",
            "",
            f"> **{_md(rec.title)}**",
            ">",
            f"> {_md(rec.detail)}",
        ]
        for name, value in rec.fields.items():
            if isinstance(value, tuple):
                out += [">", f"> {_code(name)}:", ">"] + [f"> - {_md(str(v))}" for v in value]
            else:
                out += [">", f"> {_code(name)}: {_value(value)}"]
    out += [
        "",
        f"**Examples**: {len(rule.fires)} case(s) that must fire it, {len(rule.silent)} that must not.",
        "",
    ]
    return out


def _topic_page(stem: str, topic: str, description: str, rules: Sequence[Rule], book: Rulebook) -> str:
    out = [GENERATED_NOTE, "", f"# {_title(topic)}", "", _md(description) if description else "", ""]
    out += [f"Rule file: {_code('rules/' + stem + '.yaml')}. {len(rules)} rule(s).", ""]
    out += _table(
        ("Rule", "Title", "Concludes", "Status"),
        (
            (
                f"[{_code(r.id)}](#{_anchor(r.id)})",
                _md(r.title),
                _code(r.derives) if r.derives else _code(r.recommends),
                r.status,
            )
            for r in rules
        ),
    )
    out.append("")
    for rule in rules:
        out += _rule_section(rule, book)
    return "\n".join(out).rstrip() + "\n"


def _domain(domain: Any) -> str:
    if isinstance(domain, tuple):
        return ", ".join(_code(v) for v in domain)
    return "a whole number" if domain == "int" else "text"


def _catalogue_index(index: _Index, headers: Mapping[str, tuple[str, str]]) -> str:
    book = index.book
    out = [
        GENERATED_NOTE,
        "",
        "# Rule catalogue",
        "",
        "Every rule the library ships, generated from the YAML files in `rules/`. Each rule",
        "lists its review metadata, the facts it needs, what it concludes and how many",
        "example cases test it. The [rule graph](../rule-graph.md) draws the same",
        "structure as a picture; the [rule file format](../rule-format.md) explains the fields.",
        "",
        "## Topics",
        "",
    ]
    rows = []
    for stem, (topic, description) in headers.items():
        rules = index.by_file.get(stem, [])
        active = sum(1 for r in rules if r.status == "active")
        rows.append((f"[{_title(topic)}]({stem}.md)", _md(description), str(len(rules)), str(active)))
    out += _table(("Topic", "What it covers", "Rules", "Active"), rows)
    total = len(book.rules)
    out += ["", f"{total} rules in all, {len(book.active)} active.", ""]

    out += [
        "## Case facts {#case-facts}",
        "",
        "What a case states, as the rules see it: one fact per part of the case and one",
        "per opinion. Each attribute takes one of the values listed.",
        "",
    ]
    for fact, attrs_ in case_fact_types().items():
        out += [f"### {_code(fact)} {{#case-{fact}}}", ""]
        out.append(f"Read by: {_links(index.reads.get(fact, []))}.")
        out.append("")
        out += _table(("Attribute", "Values"), ((_code(a), _domain(d)) for a, d in attrs_.items()))
        out.append("")

    out += ["## Derived facts {#derived-facts}", "", "Facts the rules conclude and other rules build on.", ""]
    for name, dtype in sorted(book.derived_types.items()):
        out += [f"### {_code(name)} {{#fact-{name}}}", "", _md(dtype.description), ""]
        if dtype.attributes:
            out += _table(("Attribute", "Values"), ((_code(a), _domain(d)) for a, d in dtype.attributes.items()))
            out.append("")
        out.append(f"- Derived by: {_links(index.derives.get(name, []))}")
        out.append(f"- Used by: {_links(index.reads.get(name, []))}")
        if index.holds.get(name):
            out.append(f"- Holds back: {_links(index.holds[name])}")
        out.append("")

    out += ["## Recommendation kinds {#recommendation-kinds}", "", "What the rules can recommend.", ""]
    for kind, cls in sorted(KINDS.items()):
        doc = " ".join((cls.__doc__ or "").split("\n\n")[0].split())
        out += [f"### {_code(kind)} {{#kind-{kind}}}", "", _md(doc), ""]
        fields = cls.specific_fields()
        if fields:
            out.append("Fields: " + ", ".join(_code(f.name) for f in fields) + ".")
            out.append("")
        out.append(f"Given by: {_links(index.gives.get(kind, []))}.")
        out.append("")

    if book.incompatible_kinds:
        out += ["## Kinds never given together {#incompatible-kinds}", ""]
        out += [f"- {_code(a)} and {_code(b)}" for a, b in book.incompatible_kinds]
        out.append("")

    if book.coverage:
        out += [
            "## Coverage requirements {#coverage}",
            "",
            "Promises about whole groups of cases, checked by `secondopinion verify`.",
            "",
        ]
        for cov in book.coverage:
            out += _coverage_section(cov)
    return "\n".join(out).rstrip() + "\n"


def _coverage_section(cov: Coverage) -> list[str]:
    need = "all of" if cov.mode == "all" else "at least one of"
    out = [f"### {_code(cov.id)} {{#{_anchor(cov.id)}}}", "", _md(cov.description), "", "When:", ""]
    out += [f"- {_pattern_line(p)}" for p in cov.when]
    out += ["", f"the case must get {need}: " + ", ".join(f"[{_code(k)}](#kind-{k})" for k in cov.requires_kinds), ""]
    return out


# --------------------------------------------------------------------------- the sources page


def _doc_anchor(file: str) -> str:
    return "doc-" + file.split("_", 1)[0]


def _sources_page(index: _Index) -> str:
    book = index.book
    out = [
        GENERATED_NOTE,
        "",
        "# Sources",
        "",
        "The rules come from four public guides on second opinions. The rules cite them by",
        "file and section and say everything in this project's own words; the guidance items",
        "below are short paraphrases, not quotations.",
        "",
        "## Documents",
        "",
    ]
    out += _table(
        ("", "Title", "Dated", "File", "Rules citing it"),
        (
            (
                f"[{d.file.split('_', 1)[0]}](#{_doc_anchor(d.file)})",
                _md(d.title),
                _md(d.dated) if d.dated else "undated",
                _code(d.file),
                str(len({r.id for s in d.sections for r in index.cites.get((d.file, s), [])})),
            )
            for d in book.documents.values()
        ),
    )
    out.append("")
    for doc in book.documents.values():
        out += [f"### {_md(doc.title)} {{#{_doc_anchor(doc.file)}}}", ""]
        out += [f"File {_code(doc.file)}, {_md(doc.dated) if doc.dated else 'undated'}.", ""]
        out += _table(
            ("Section", "Cited by"), ((_md(s), _links(index.cites.get((doc.file, s), []), False)) for s in doc.sections)
        )
        out.append("")

    out += [
        "## Guidance {#guidance}",
        "",
        "What the rules implement, item by item, with the documents each item comes from.",
        "The [traceability matrix](traceability.md) lists the rules and recommendation kinds",
        "behind every item.",
        "",
    ]
    by_area: dict[str, list[Any]] = defaultdict(list)
    for item in book.guidance.values():
        by_area[item.area or "other"].append(item)
    for area, items in by_area.items():
        out += [f"### {_title(area)}", ""]
        out += _table(
            ("Id", "Guidance", "Sources", "Active rules"),
            (
                (
                    f'<a id="{g.id.lower()}"></a>{g.id}',
                    _md(g.summary),
                    ", ".join(f"[{s.split('_', 1)[0]}](#{_doc_anchor(s)})" for s in g.sources),
                    str(len(index.implements.get(g.id, []))),
                )
                for g in items
            ),
        )
        out.append("")

    out += [
        "## Evidence figures {#evidence}",
        "",
        "Figures the sources cite. Recommendations show them as context; they are never the",
        "reason a rule fires.",
        "",
    ]
    out += _table(
        ("Id", "Figure", "Sources"),
        (
            (e.id, _md(e.figure), ", ".join(f"[{s.split('_', 1)[0]}](#{_doc_anchor(s)})" for s in e.sources))
            for e in book.evidence.values()
        ),
    )
    out.append("")
    if book.tensions:
        out += [
            "## Tensions between the sources {#tensions}",
            "",
            "Where the guides disagree, and how the rules settle it in short; the page on",
            "[tensions](tensions.md) discusses each one with the rules involved.",
            "",
        ]
        for t in book.tensions.values():
            out += [f'<a id="{t.id.lower()}"></a>', "", f"**{t.id}.** {_md(t.summary)}", ""]
            out += [f"*Resolution:* {_md(t.resolution)}", ""]
            if t.rules:
                out += [f"Rules: {_links([book.rule(r) for r in t.rules], False)}.", ""]
    return "\n".join(out).rstrip() + "\n"


# --------------------------------------------------------------------------- the rule graph


def rule_graph_dot(book: Rulebook) -> str:
    """The rule graph in Graphviz DOT: case facts -> derived facts -> recommendation kinds.

    One node per fact type and per recommendation kind the active rules use;
    one edge per (fact read, conclusion) pair, labelled with how many rules
    make it and listing them in its tooltip. A dashed edge marks a fact that
    holds a recommendation back (``unless``). Nodes link to the catalogue.
    """
    index = _Index(book)
    case_types = case_fact_types()
    g = graphviz.Digraph("rule_graph")
    g.attr(rankdir="LR", ranksep="1.6", nodesep="0.12", fontname="Helvetica", fontsize="12", newrank="true")
    g.attr(label="secondopinion rule graph: case facts → derived facts → recommendations", labelloc="t")
    g.attr("node", fontname="Helvetica", fontsize="11", style="filled,rounded", shape="box")
    g.attr("edge", color="#55555588", arrowsize="0.6")

    used_case = [t for t in case_types if index.reads.get(t) or index.holds.get(t)]
    with g.subgraph(name="case") as sub:
        sub.attr(rank="source")
        for fact in used_case:
            sub.node(
                f"case_{fact}",
                fact,
                fillcolor="#dbeafe",
                tooltip=f"case fact {fact}: " + ", ".join(case_types[fact]),
                URL=f"../catalogue/#case-{fact}",
            )
    for name, dtype in sorted(book.derived_types.items()):
        if index.derives.get(name) or index.reads.get(name):
            g.node(
                f"fact_{name}",
                name,
                fillcolor="#fef3c7",
                shape="box",
                style="filled",
                tooltip=dtype.description,
                URL=f"../catalogue/#fact-{name}",
            )
    with g.subgraph(name="kinds") as sub:
        sub.attr(rank="sink")
        for kind in sorted(index.gives):
            doc = " ".join((KINDS[kind].__doc__ or kind).split("\n\n")[0].split())
            sub.node(f"kind_{kind}", kind, fillcolor="#dcfce7", tooltip=doc, URL=f"../catalogue/#kind-{kind}")

    def node_id(fact: str) -> str:
        return f"case_{fact}" if fact in case_types else f"fact_{fact}"

    edges: dict[tuple[str, str], list[str]] = defaultdict(list)
    holds: dict[tuple[str, str], list[str]] = defaultdict(list)
    for rule in book.active:
        target = f"fact_{rule.then.fact}" if isinstance(rule.then, Derive) else f"kind_{rule.then.kind}"
        for fact in rule.consumes:
            edges[(node_id(fact), target)].append(rule.id)
        for fact in dict.fromkeys(u.fact for u in rule.unless):
            holds[(node_id(fact), target)].append(rule.id)
    for (tail, head), ids in sorted(edges.items()):
        g.edge(
            tail,
            head,
            tooltip=f"{len(ids)} rule(s): " + ", ".join(ids),
            penwidth=str(min(1 + 0.5 * (len(ids) - 1), 4)),
        )
    for (tail, head), ids in sorted(holds.items()):
        g.edge(
            tail,
            head,
            style="dashed",
            color="#dc2626",
            constraint="false",
            tooltip="holds back: " + ", ".join(ids),
        )
    return str(g.source)


def render_svg(dot: str) -> str:
    """Draw DOT text as SVG with Graphviz's ``dot`` program, stamped with the DOT's SHA-256.

    Raises ``graphviz.ExecutableNotFound`` when Graphviz is not installed.
    """
    svg = graphviz.Source(dot).pipe(format="svg", encoding="utf-8")
    stamp = f"<!-- secondopinion-dot-sha256: {_sha256(dot)} -->"
    svg = re.sub(r"<!-- Generated by graphviz.*?-->\n?", "", svg, flags=re.DOTALL)  # names the version
    lines = svg.splitlines()
    at = 1 if lines and lines[0].startswith("<?xml") else 0
    lines.insert(at, stamp)
    return "\n".join(lines).rstrip() + "\n"


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def svg_source_hash(svg: str) -> str | None:
    """The SHA-256 of the DOT text an SVG from :func:`render_svg` was drawn from."""
    found = _SVG_STAMP.search(svg)
    return found.group(1) if found else None


def _graph_page(index: _Index) -> str:
    book = index.book
    derived_used = [n for n in book.derived_types if index.derives.get(n) or index.reads.get(n)]
    out = [
        GENERATED_NOTE,
        "",
        "# Rule graph",
        "",
        "How facts flow through the rules: facts stated by the case (blue) are read by rules",
        "that derive new facts (yellow) or give recommendations (green). An arrow joins a fact",
        "to what the rules conclude from it; a thicker arrow stands for more rules, and a",
        "dashed red arrow for a fact that holds a recommendation back. In the",
        "[full-size picture](img/rule-graph.svg) each node links to the",
        "[catalogue](catalogue/index.md) and each arrow names its rules when you point at it.",
        "",
        "![The rule graph: case facts, derived facts and recommendation kinds](img/rule-graph.svg)",
        "",
        f"{len(book.active)} active rules join {sum(1 for t in case_fact_types() if index.reads.get(t))} kinds of",
        f"case fact, {len(derived_used)} derived facts and {len(index.gives)} recommendation kinds.",
        "",
        "## Chains of derived facts",
        "",
        "Which rules derive each fact and which rules build on it:",
        "",
    ]
    out += _table(
        ("Derived fact", "Derived from", "Leads to"),
        (
            (
                f"[{_code(n)}](catalogue/index.md#fact-{n})",
                ", ".join(_code(f) for f in dict.fromkeys(f for r in index.derives.get(n, []) for f in r.consumes))
                or "nothing",
                ", ".join(_code(r.derives or r.recommends) for r in _unique_conclusions(index.reads.get(n, [])))
                or "nothing",
            )
            for n in derived_used
        ),
    )
    out += [
        "",
        "The graph is drawn from `img/rule-graph.dot`, which is generated with the pages;",
        "`dot -Tsvg docs/img/rule-graph.dot` draws it again.",
        "",
    ]
    return "\n".join(out)


def _unique_conclusions(rules: Sequence[Rule]) -> list[Rule]:
    seen: dict[str | None, Rule] = {}
    for rule in rules:
        seen.setdefault(rule.derives or rule.recommends, rule)
    return list(seen.values())


# --------------------------------------------------------------------------- derivation trees


def derivation_dot(explanation: Explanation) -> str:
    """One recommendation's derivation as Graphviz DOT, read left to right.

    Case facts (blue notes, with the tests the rules made on them and the
    case's values when known) feed rules (ellipses), which derive facts
    (yellow) that feed further rules, up to the recommendation (green).
    A fact or firing that appears several times in the tree is drawn once.
    """
    g = graphviz.Digraph("derivation")
    g.attr(rankdir="LR", fontname="Helvetica", nodesep="0.25")
    g.attr("node", fontname="Helvetica", fontsize="10")
    g.attr("edge", fontname="Helvetica", fontsize="9", color="#555555")
    g.node(
        "recommendation",
        f"{explanation.kind}\n{_wrap(explanation.title)}",
        shape="box",
        style="filled,rounded,bold",
        fillcolor="#dcfce7",
    )
    ids: dict[tuple[str, ...], str] = {}
    checks: dict[str, dict[str, None]] = {}  # case fact node -> the tests made on it, each once
    edges: dict[tuple[str, str, str], None] = {}
    drawn: set[str] = set()

    def node_id(key: tuple[str, ...]) -> str:
        return ids.setdefault(key, f"n{len(ids) + 1}")

    def add_fact(node: FactNode) -> str:
        key = node_id(("fact", node.fid))
        if node.is_case_fact:
            if key not in checks:
                checks[key] = {node.path or node.fid: None}
            for check in node.checks:
                shown = ", ".join(f"{_short(k)} = {v}" for k, v in check.values.items())
                checks[key][_wrap(_short(check.text) + (f" ({shown})" if shown else ""), 48)] = None
            return key
        if key not in drawn:
            drawn.add(key)
            attrs_ = ", ".join(f"{k}={v}" for k, v in node.attributes.items())
            label = node.type + (f"\n{attrs_}" if attrs_ else "")
            g.node(key, label, shape="box", style="filled", fillcolor="#fef3c7", tooltip=node.description)
        for producer in node.derived_by:  # a fact "shown above" has none; its first mention has them
            edges[(add_rule(producer), key, "")] = None
        return key

    def add_rule(node: RuleNode) -> str:
        key = node_id(("rule", node.rule_id, *sorted(f"{m.binding}={m.fid}" for m in node.matched)))
        if key in drawn:
            return key
        drawn.add(key)
        g.node(key, f"{node.rule_id}\n{_wrap(node.title, 32)}", shape="ellipse", tooltip=node.rationale)
        for fact in node.matched:
            edges[(add_fact(fact), key, fact.binding)] = None
        return key

    for rule in explanation.rules:
        edges[(add_rule(rule), "recommendation", "")] = None
    for key, lines in checks.items():
        g.node(key, "\n".join(lines), shape="note", style="filled", fillcolor="#dbeafe")
    for tail, head, label in edges:
        g.edge(tail, head, label=label or None)
    return str(g.source)


def _short(text: str) -> str:
    """A case path without the leading ``$.``, for compact labels."""
    return text.replace("$.", "")


def _wrap(text: str, width: int = 36) -> str:
    words = text.split()
    lines: list[str] = []
    line = ""
    for word in words:
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}" if line else word
    if line:
        lines.append(line)
    return "\n".join(lines)


# --------------------------------------------------------------------------- writing and checking


def generate(book: Rulebook | None = None, rules_dir: Path | None = None) -> dict[str, str]:
    """The generated text files (pages and DOT), by path relative to ``docs/``.

    ``book`` defaults to the shipped rules alone (no packs); ``rules_dir``
    (default: where the shipped rules are) supplies each file's topic
    description. The SVG is not included: see :func:`write`.
    """
    rules_dir = rules_dir or _shipped_dir()
    book = book or Rulebook.load(rules_dir, shipped=False)
    index = _Index(book)
    headers = _file_headers(rules_dir)
    files = {
        "catalogue/index.md": _catalogue_index(index, headers),
        "sources.md": _sources_page(index),
        "rule-graph.md": _graph_page(index),
        _GRAPH_DOT: rule_graph_dot(book),
    }
    for stem, (topic, description) in headers.items():
        files[f"catalogue/{stem}.md"] = _topic_page(stem, topic, description, index.by_file.get(stem, []), book)
    return files


def _generated_pages(docs: Path) -> set[str]:
    """Catalogue pages present on disk (to find pages of rule files that are gone)."""
    folder = docs / "catalogue"
    return {f"catalogue/{p.name}" for p in folder.glob("*.md")} if folder.is_dir() else set()


def stale(docs: Path, book: Rulebook | None = None, rules_dir: Path | None = None) -> list[str]:
    """Generated files under ``docs`` that are missing, out of date or left over; empty when all is current."""
    files = generate(book, rules_dir)
    out = []
    for rel, text in files.items():
        path = docs / rel
        if not path.is_file() or path.read_text("utf-8") != text:
            out.append(rel)
    out += sorted(_generated_pages(docs) - set(files))
    svg = docs / _GRAPH_SVG
    if not svg.is_file() or svg_source_hash(svg.read_text("utf-8")) != _sha256(files[_GRAPH_DOT]):
        out.append(_GRAPH_SVG)
    return out


def write(docs: Path, book: Rulebook | None = None, rules_dir: Path | None = None) -> list[str]:
    """Write every generated file under ``docs`` (and draw the SVG); return the paths that changed."""
    files = generate(book, rules_dir)
    changed = []
    for rel in sorted(_generated_pages(docs) - set(files)):
        (docs / rel).unlink()
        changed.append(rel)
    for rel, text in files.items():
        path = docs / rel
        if path.is_file() and path.read_text("utf-8") == text:
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, "utf-8")
        changed.append(rel)
    svg = docs / _GRAPH_SVG
    if not svg.is_file() or svg_source_hash(svg.read_text("utf-8")) != _sha256(files[_GRAPH_DOT]):
        svg.write_text(render_svg(files[_GRAPH_DOT]), "utf-8")
        changed.append(_GRAPH_SVG)
    return changed


def _default_docs() -> Path:
    return Path(__file__).resolve().parent.parent / "docs"


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: write the generated docs, or with ``--check`` list the stale ones."""
    parser = argparse.ArgumentParser(prog="python -m secondopinion.docsgen", description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="only list stale files; exit 1 if any")
    parser.add_argument("--docs", type=Path, default=_default_docs(), help="the docs folder (default: docs/)")
    parser.add_argument("--rules", type=Path, default=None, help="the rule folder (default: the shipped rules)")
    args = parser.parse_args(argv)
    if args.check:
        old = stale(args.docs, rules_dir=args.rules)
        for rel in old:
            print(f"stale: docs/{rel}")
        if old:
            print("run: python -m secondopinion.docsgen", file=sys.stderr)
        return 1 if old else 0
    try:
        changed = write(args.docs, rules_dir=args.rules)
    except graphviz.ExecutableNotFound:
        print(
            "Graphviz's 'dot' program is needed to draw the rule graph (Debian: apt-get install graphviz)",
            file=sys.stderr,
        )
        return 2
    for rel in changed:
        print(f"wrote docs/{rel}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
