"""The documentation site: generated pages are current, every page is reachable, and the code in the guides runs.

When ``test_generated_docs_are_current`` fails, run ``python -m secondopinion.docsgen``
(it needs Graphviz's ``dot`` for the rule graph) and commit the result.
"""

from __future__ import annotations

import re
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
import yaml

import secondopinion
from secondopinion import docsgen
from secondopinion.rulebook import Rulebook, default_rules_path

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
MKDOCS = DOCS / "mkdocs" / "mkdocs.yml"
EXAMPLES = ROOT / "examples" / "cases"


class _MkdocsLoader(yaml.SafeLoader):
    """Reads mkdocs.yml: its ``!relative`` and ``!ENV`` tags become plain text."""


_MkdocsLoader.add_multi_constructor("!", lambda loader, suffix, node: loader.construct_scalar(node))


def _nav_pages(nav: Any) -> list[str]:
    if isinstance(nav, str):
        return [nav]
    if isinstance(nav, list):
        return [page for item in nav for page in _nav_pages(item)]
    if isinstance(nav, dict):
        return [page for value in nav.values() for page in _nav_pages(value)]
    return []


@pytest.fixture(scope="module")
def mkdocs_config() -> dict[str, Any]:
    config: dict[str, Any] = yaml.load(MKDOCS.read_text("utf-8"), Loader=_MkdocsLoader)
    return config


# --------------------------------------------------------------------------- generated pages


def test_generated_docs_are_current() -> None:
    old = docsgen.stale(DOCS)
    assert old == [], f"stale generated docs {old}: run `python -m secondopinion.docsgen` and commit the result"


def test_a_changed_rule_makes_its_pages_stale(tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    shutil.copytree(default_rules_path(), rules)
    timing = rules / "20-timing.yaml"
    text, count = re.subn(
        r"(id: DEADLINE-KNOWN-TIME\s+title: ).*", r"\1A reworded title for review", timing.read_text("utf-8")
    )
    assert count == 1
    timing.write_text(text, "utf-8")

    old = docsgen.stale(DOCS, rules_dir=rules)

    assert "catalogue/20-timing.md" in old
    assert "catalogue/10-when-to-seek.md" not in old
    assert "A reworded title for review" in docsgen.generate(rules_dir=rules)["catalogue/20-timing.md"]


def test_a_new_rule_file_needs_a_page_and_a_gone_one_leaves_a_stale_page(tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    shutil.copytree(default_rules_path(), rules)
    shutil.copy(ROOT / "examples" / "rule-packs" / "acme-health.yaml", rules / "90-acme-health.yaml")
    docs = tmp_path / "docs"
    shutil.copytree(DOCS, docs, ignore=shutil.ignore_patterns("mkdocs"))
    (docs / "catalogue" / "95-gone.md").write_text("# A topic whose rule file was removed\n", "utf-8")

    old = docsgen.stale(docs, rules_dir=rules)

    assert "catalogue/90-acme-health.md" in old
    assert "catalogue/95-gone.md" in old
    assert "catalogue/index.md" in old  # the topic table and the kinds list name the new rules
    assert "ACME-SPINE-PROGRAM" in docsgen.generate(rules_dir=rules)["catalogue/90-acme-health.md"]


def test_the_catalogue_shows_every_rule_on_its_topic_page() -> None:
    book = Rulebook.load()
    for rule in book.rules:
        page = (DOCS / "catalogue" / f"{Path(rule.file).stem}.md").read_text("utf-8")
        assert f"{{#{rule.id.lower()}}}" in page, rule.id
        assert docsgen._md(rule.rationale) in page, rule.id


def test_the_sources_page_names_every_document_with_its_date() -> None:
    page = (DOCS / "sources.md").read_text("utf-8")
    for doc in Rulebook.load().documents.values():
        assert docsgen._md(doc.title) in page
        assert (docsgen._md(doc.dated) if doc.dated else "undated") in page


def test_the_rule_graph_joins_case_facts_to_derived_facts_to_recommendations() -> None:
    book = Rulebook.load()
    dot = (DOCS / "img" / "rule-graph.dot").read_text("utf-8")
    given = {r.recommends for r in book.active if r.recommends}
    derived = {r.derives for r in book.active if r.derives}
    for kind in given:
        assert f"kind_{kind} [label={kind}" in dot, kind
    for fact in derived:
        assert f"fact_{fact} [label={fact}" in dot, fact
    # Every conclusion has an arrow coming in, and each derived fact one going out to what builds on it.
    for kind in given:
        assert re.search(rf"-> kind_{kind}\b", dot), kind
    for fact in derived:
        if any(fact in r.consumes for r in book.active):
            assert re.search(rf"\bfact_{fact} ->", dot), fact


def test_the_rule_graph_svg_was_drawn_from_the_current_dot() -> None:
    dot = (DOCS / "img" / "rule-graph.dot").read_text("utf-8")
    svg = (DOCS / "img" / "rule-graph.svg").read_text("utf-8")
    assert docsgen.svg_source_hash(svg) == docsgen._sha256(dot)
    root = ET.fromstring(svg.encode("utf-8"))
    titles = {t.text for t in root.iter("{http://www.w3.org/2000/svg}title")}
    assert "case_diagnosis" in titles
    assert "kind_seek_second_opinion" in titles


@pytest.mark.skipif(shutil.which("dot") is None, reason="needs Graphviz's dot program")
def test_render_svg_stamps_the_source_it_was_drawn_from() -> None:
    dot = 'digraph { a -> b [tooltip="x"] }'
    svg = docsgen.render_svg(dot)
    assert svg.startswith("<?xml")
    assert docsgen.svg_source_hash(svg) == docsgen._sha256(dot)
    assert docsgen.svg_source_hash(docsgen.render_svg(dot + "\n")) != docsgen._sha256(dot)


def test_derivation_dot_draws_the_whole_chain_of_a_recommendation() -> None:
    case = (EXAMPLES / "conflicting-opinions.json").read_text("utf-8")
    advice = secondopinion.advise(case)
    kind = "get_another_opinion"
    tree = advice.explain(kind, case=case)

    dot = docsgen.derivation_dot(tree)

    for rule_id in tree.rule_ids:
        assert rule_id in dot
    for field in tree.fields:
        assert field.removeprefix("$.") in dot
    assert "opinions_conflict" in dot
    assert f'label="{kind}' in dot
    # Each rule firing and each fact is drawn once, however often the tree mentions it.
    nodes = re.findall(r"^\s*(n\d+) \[", dot, re.MULTILINE)
    assert len(nodes) == len(set(nodes))


def test_conditions_read_as_words() -> None:
    rule = Rulebook.load().rule("DEADLINE-KNOWN-TIME")
    lines = [docsgen._pattern_line(p) for p in rule.when]
    assert any("`days_to_decide` >" in line for line in lines)


# --------------------------------------------------------------------------- the site's navigation


def test_every_generated_page_is_in_the_nav(mkdocs_config: dict[str, Any]) -> None:
    nav = set(_nav_pages(mkdocs_config["nav"]))
    pages = {p for p in docsgen.generate() if p.endswith(".md")}
    missing = sorted(pages - nav)
    assert missing == [], f"add these pages to the nav in {MKDOCS.relative_to(ROOT)}: {missing}"


def test_every_page_in_the_nav_exists(mkdocs_config: dict[str, Any]) -> None:
    missing = [p for p in _nav_pages(mkdocs_config["nav"]) if not (DOCS / p).is_file()]
    assert missing == []


def test_every_module_has_an_api_page() -> None:
    documented = set()
    for page in (DOCS / "reference" / "api").glob("*.md"):
        documented.update(re.findall(r"^::: (secondopinion(?:\.\w+)*)", page.read_text("utf-8"), re.MULTILINE))
    package = ROOT / "secondopinion"
    modules = {f"secondopinion.{p.stem}" for p in package.glob("*.py") if not p.stem.startswith("_")}
    modules |= {f"secondopinion.{p.name}" for p in package.iterdir() if (p / "__init__.py").is_file()}
    modules -= {"secondopinion.cli"}  # the command line is documented on the interoperability page
    assert sorted(modules - documented) == []


# --------------------------------------------------------------------------- the code in the guides runs


_GUIDES = [
    "tutorial.md",
    "howto/extend-rules.md",
    "howto/verify-rule-pack.md",
    "howto/serve-cds-hooks.md",
    "howto/map-fhir.md",
]
_NEEDS = {"howto/serve-cds-hooks.md": "fastapi", "howto/map-fhir.md": "fhir.resources"}


@pytest.mark.parametrize("page", _GUIDES)
def test_the_python_in_a_guide_runs(page: str, monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    if page in _NEEDS:
        pytest.importorskip(_NEEDS[page])
    blocks = re.findall(r"^```python\n(.*?)^```", (DOCS / page).read_text("utf-8"), re.MULTILINE | re.DOTALL)
    assert blocks, page
    monkeypatch.chdir(ROOT)  # the guides use paths from the repository root
    namespace: dict[str, Any] = {"__name__": "guide"}
    for block in blocks:
        exec(compile(block, page, "exec"), namespace)
    # A guide that shows a test file: its tests must pass.
    for name, function in list(namespace.items()):
        if name.startswith("test_") and callable(function):
            function()
    assert capsys.readouterr().out.strip(), "the guide's code printed nothing"
