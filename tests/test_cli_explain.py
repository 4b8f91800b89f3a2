"""The command line: ``secondopinion explain`` and ``secondopinion advise --next-questions``."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from secondopinion import Advice
from secondopinion.cli import app

EXAMPLES = Path(__file__).parent.parent / "examples" / "cases"
CONFLICT = str(EXAMPLES / "conflicting-opinions.json")
MINOR = str(EXAMPLES / "minor-problem.json")
runner = CliRunner()


def test_explain_a_recommendation_shows_its_tree() -> None:
    result = runner.invoke(app, ["explain", CONFLICT, "--recommendation", "get_another_opinion", "--no-color"])
    assert result.exit_code == 0, result.output
    flat = " ".join(result.stdout.split())
    assert flat.startswith("Why: ")
    assert "rule CONFLICT-THIRD-OPINION" in flat and "rule CONFLICT-JOIN" in flat
    assert "$.opinions[1].treatment differs from $.opinions[0].treatment" in flat
    assert "medication" in flat and "surgery" in flat  # the user's own case values, on stdout
    assert "\x1b[" not in result.stdout


def test_explain_without_options_explains_every_recommendation() -> None:
    result = runner.invoke(app, ["explain", CONFLICT, "--format", "json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    advice = runner.invoke(app, ["advise", CONFLICT, "--format", "json"])
    kinds = [r["kind"] for r in json.loads(advice.stdout)["recommendations"]]
    assert [e["kind"] for e in data["explanations"]] == kinds
    assert data["why_not"] is None


def test_explain_why_not_in_markdown() -> None:
    result = runner.invoke(app, ["explain", CONFLICT, "--why-not", "proceed_with_confidence", "-f", "markdown"])
    assert result.exit_code == 0, result.output
    assert "## Why not `proceed_with_confidence`?" in result.stdout
    assert "**Rule AGREE-JOIN**" in result.stdout


def test_explain_why_not_a_rule_id_as_json() -> None:
    result = runner.invoke(app, ["explain", CONFLICT, "-w", "AGREE-JOIN", "-f", "json"])
    assert result.exit_code == 0, result.output
    answer = json.loads(result.stdout)["why_not"]
    assert answer["target"] == "AGREE-JOIN" and answer["present"] is False
    assert answer["rules"][0]["failure"]["fields"] == ["$.opinions[1].treatment", "$.opinions[0].treatment"]


def test_explain_mistakes_exit_1_with_a_message_and_no_case_values() -> None:
    unknown = runner.invoke(app, ["explain", CONFLICT, "-r", "no_such_kind"])
    assert unknown.exit_code == 1
    assert "unknown recommendation kind 'no_such_kind'" in unknown.output
    absent = runner.invoke(app, ["explain", MINOR, "-r", "resolve_conflict"])
    assert absent.exit_code == 1
    assert "try --why-not resolve_conflict" in absent.output
    bad_target = runner.invoke(app, ["explain", CONFLICT, "-w", "NOPE"])
    assert bad_target.exit_code == 1
    assert "lumbar" not in bad_target.output  # a diagnosis label from the case
    missing = runner.invoke(app, ["explain", "no-such-file.json"])
    assert missing.exit_code == 2


def test_advise_next_questions_in_text_and_json() -> None:
    text = runner.invoke(app, ["advise", MINOR, "--next-questions", "--no-color"])
    assert text.exit_code == 0, text.output
    assert "Questions worth asking next" in text.stdout
    assert '1. ' in text.stdout.split("Questions worth asking next", 1)[1]
    data = runner.invoke(app, ["advise", MINOR, "--next-questions", "-f", "json"])
    assert data.exit_code == 0, data.output
    parsed = json.loads(data.stdout)
    assert parsed["next_questions"] and all(q["question"] and q["answers"] for q in parsed["next_questions"])
    assert Advice.from_json(data.stdout).kinds == tuple(r["kind"] for r in parsed["recommendations"])
    plain = runner.invoke(app, ["advise", MINOR, "-f", "json"])
    assert "next_questions" not in json.loads(plain.stdout)


def test_advise_next_questions_refuses_cds_hooks() -> None:
    result = runner.invoke(app, ["advise", MINOR, "--next-questions", "-f", "cds-hooks"])
    assert result.exit_code == 2
