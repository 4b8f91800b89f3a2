"""Renderers: text, Markdown and JSON of advice, derivation trees, why-not answers and next questions."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from secondopinion import Advice, default_advisor
from secondopinion.explain import explain, why_not
from secondopinion.questions import next_questions
from secondopinion.render import (
    render,
    render_explanation,
    render_markdown,
    render_questions,
    render_why_not,
)
from secondopinion.render.markdown import code, escape

EXAMPLES = Path(__file__).parent.parent / "examples" / "cases"
CASES = sorted(EXAMPLES.glob("*.json"))
ANSI = "\x1b["


def _load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


@pytest.fixture(scope="module")
def advisor() -> Any:
    return default_advisor()


@pytest.mark.parametrize("path", CASES, ids=lambda p: p.stem)
def test_text_why_shows_every_recommendation_with_reasons_and_sources(path: Path, advisor: Any) -> None:
    advice = advisor.advise(_load(path))
    text = render(advice, "text", advisor.rulebook, color=False, why=True)
    assert ANSI not in text
    assert advice.disclaimer.split(".")[0] in text
    flat = " ".join(text.split())
    for rec in advice.recommendations:
        assert " ".join(rec.title.split()) in flat
        assert " ".join(rec.detail.split()) in flat
        for rule_id in rec.rule_ids:
            assert f"(rule {rule_id})" in flat
        for src in rec.sources:
            title = advisor.rulebook.documents[src.file].title
            assert f'{title}, "{src.section}"' in flat
            assert src.file not in flat  # sources by the guide's title, never a hashed file name
    assert flat.count("Why: ") >= len(advice.recommendations)


@pytest.mark.parametrize("path", CASES, ids=lambda p: p.stem)
@pytest.mark.parametrize("fmt", ["text", "markdown", "html"])
def test_default_view_leaves_reviewer_detail_behind_why(path: Path, fmt: Any, advisor: Any) -> None:
    case = _load(path)
    advice = advisor.advise(case)
    shown = render(advice, fmt, advisor.rulebook, case=case)
    flat = " ".join(shown.split())
    for rec in advice.recommendations:
        assert " ".join(rec.title.split()).replace("'", "&#x27;" if fmt == "html" else "'") in flat
        for rule_id in rec.rule_ids:
            assert rule_id not in flat
        for guidance in rec.guidance:
            assert f"{guidance}," not in flat and f"Guidance: {guidance}" not in flat
        for src in rec.sources:
            assert src.file not in flat
        for derivation in rec.derivation:
            for fid in derivation.matched.values():
                if "#" in fid:  # derived facts (case facts are named by plain words such as "doctor")
                    assert fid not in flat
    assert "based on:" not in flat
    assert "$." not in flat  # no JSON paths
    assert "Why:" not in flat and "*Why:*" not in flat


@pytest.mark.parametrize("path", CASES, ids=lambda p: p.stem)
def test_text_is_coloured_only_when_asked(path: Path, advisor: Any) -> None:
    advice = advisor.advise(_load(path))
    coloured = render(advice, "text", advisor.rulebook, color=True)
    assert ANSI in coloured
    plain = render(advice, "text", advisor.rulebook, color=False)
    assert ANSI not in plain
    tree = explain(advice, advice.recommendations[0], rulebook=advisor.rulebook) if advice.recommendations else None
    if tree is not None:
        assert ANSI in render_explanation(tree, "text", advisor.rulebook, color=True)
        assert ANSI not in render_explanation(tree, "text", advisor.rulebook, color=False)


@pytest.mark.parametrize("path", CASES, ids=lambda p: p.stem)
def test_markdown_shows_every_recommendation_with_reasons_and_sources(path: Path, advisor: Any) -> None:
    advice = advisor.advise(_load(path))
    md = render(advice, "markdown", advisor.rulebook, why=True)
    assert ANSI not in md
    assert md.startswith("# Your second opinion plan\n")
    for rec in advice.recommendations:
        section = md.split(f"- **{escape(rec.title)}**  \n", 1)[1].split("\n- **", 1)[0]
        assert f"`{rec.kind}`" in section
        assert "*Why:*" in section and "*Source:*" in section
        for rule_id in rec.rule_ids:
            assert escape(f"(rule {rule_id})") in section
        for src in rec.sources:
            assert escape(f'"{src.section}"') in section
            assert src.file not in section
    # The reviewer's full list is still there as a function of its own.
    old = render_markdown(advice, advisor.rulebook)
    assert old.startswith("# Second opinion guidance\n")


@pytest.mark.parametrize("path", CASES, ids=lambda p: p.stem)
def test_json_round_trips_the_advice(path: Path, advisor: Any) -> None:
    advice = advisor.advise(_load(path))
    text = render(advice, "json", advisor.rulebook)
    assert Advice.from_json(text) == advice
    data = json.loads(text)
    assert [r["kind"] for r in data["recommendations"]] == list(advice.kinds)
    assert all(r["sources"] and r["derivation"] for r in data["recommendations"])


@pytest.mark.parametrize("path", CASES, ids=lambda p: p.stem)
def test_derivation_trees_in_three_formats(path: Path, advisor: Any) -> None:
    case = _load(path)
    advice = advisor.advise(case)
    for rec in advice.recommendations:
        tree = explain(advice, rec, rulebook=advisor.rulebook, case=case)
        text = " ".join(render_explanation(tree, "text", advisor.rulebook).split())
        md = render_explanation(tree, "markdown", advisor.rulebook)
        data = json.loads(render_explanation(tree, "json", advisor.rulebook))
        assert data == json.loads(json.dumps(tree.to_dict()))
        for rule_id in tree.rule_ids:
            assert f"rule {rule_id}" in text
            assert f"**Rule {rule_id}**" in md
        for field in tree.fields:
            assert field in text
            assert f"`{field}`" in md
        for src in tree.rules[0].sources:
            assert src.file in text and src.file in md


def test_why_not_in_three_formats(advisor: Any) -> None:
    case = _load(EXAMPLES / "conflicting-opinions.json")
    answer = why_not(case, "proceed_with_confidence", advisor=advisor)
    text = " ".join(render_why_not(answer, "text").split())
    assert "Why not proceed_with_confidence?" in text
    assert "rule PROCEED-WHEN-AGREE" in text and "rule AGREE-JOIN" in text
    assert "needs $.opinions[1].treatment to equal $.opinions[0].treatment" in text
    md = render_why_not(answer, "markdown")
    assert "**Rule AGREE-JOIN**" in md and "*did not match*" in md
    assert json.loads(render_why_not(answer, "json")) == json.loads(json.dumps(answer.to_dict()))


def test_next_questions_in_three_formats(advisor: Any) -> None:
    case = _load(EXAMPLES / "minor-problem.json")
    found = next_questions(case, advisor=advisor)
    assert found, "the minor-problem case leaves questions open"
    text = render_questions(found, "text")
    md = render_questions(found, "markdown")
    for n, q in enumerate(found, 1):
        assert q.question in text and q.path in text
        assert f"{n}. **{q.question}**" in md
        for answer in q.answers:
            assert f'If "{answer.label}"' in text
    data = json.loads(render_questions(found, "json"))
    assert [d["path"] for d in data] == [q.path for q in found]
    assert all(d["answers"][0]["change"] == q.change for d, q in zip(data, found, strict=True))
    # Advice with questions: JSON still reads back as Advice.
    advice = advisor.advise(case)
    with_questions = render(advice, "json", advisor.rulebook, questions=found)
    assert Advice.from_json(with_questions) == advice
    shown = render(advice, "text", advisor.rulebook, questions=found)
    assert "Questions worth asking next" in shown
    assert found[0].question in shown and found[0].path not in shown  # plain in the default view
    assert found[0].path in render(advice, "text", advisor.rulebook, questions=found, why=True)


def test_markdown_keeps_case_text_inert() -> None:
    assert code("a `b` c") == "`` a `b` c ``"
    assert escape("*bold* <b>x</b> [l](u)") == r"\*bold\* \<b\>x\</b\> \[l\]\(u\)"
    case = {
        "diagnosis": {"seriousness": "serious"},
        "opinions": [
            {"diagnosis": "<script>x</script>", "treatment": "surgery"},
            {"diagnosis": "*other*", "treatment": "surgery"},
        ],
    }
    advice = default_advisor().advise(case)
    rec = advice.by_kind("clarify_diagnoses")
    assert rec is not None
    md = render_explanation(explain(advice, rec, case=case), "markdown")
    assert "<script>" not in md.replace("`<script>x</script>`", "")


def test_text_renderer_returns_text_inside_jupyter_too() -> None:
    """rich detects Jupyter and would display the output instead of returning it."""
    from unittest import mock

    import rich.console

    import secondopinion
    from secondopinion.render import render

    advice = secondopinion.advise({"diagnosis": {"seriousness": "serious"}})
    with mock.patch.object(rich.console, "_is_jupyter", return_value=True):
        out = render(advice, "text", secondopinion.default_advisor().rulebook)
    assert "Your plan:" in out
    assert advice.recommendations[0].title in out


@pytest.mark.parametrize("fmt", ["text", "markdown", "html"])
def test_insurer_questions_are_headed_for_someone_who_may_have_no_insurer(fmt: str, advisor: Any) -> None:
    """Insurance not stated: the heading does not take an insurer for granted; stated: the plain heading."""
    unknown = {"diagnosis": {"seriousness": "serious"}, "treatment": {"kind": "surgery", "started": "no"}}
    text = render(advisor.advise(unknown), fmt, advisor.rulebook, case=unknown, color=False)
    assert "Questions to ask your insurer" not in text
    assert "If you have health insurance, ask your insurer" in text
    insured = {**unknown, "insurance": {"insured": "yes"}}
    text = render(advisor.advise(insured), fmt, advisor.rulebook, case=insured, color=False)
    assert "Questions to ask your insurer" in text
    assert "If you have health insurance, ask your insurer" not in text
    uninsured = {**unknown, "insurance": {"insured": "no"}}
    text = render(advisor.advise(uninsured), fmt, advisor.rulebook, case=uninsured, color=False)
    assert "insurer" not in text.split("Questions to ask the new doctor")[-1]
