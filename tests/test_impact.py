"""Tests for change impact (secondopinion.impact and ``secondopinion diff``) on two versions of a small pack."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from secondopinion.advisor import Advisor
from secondopinion.impact import PopulationError, generated_population, impact, read_population
from secondopinion.rulebook import Rulebook

PACKS = Path(__file__).parent / "packs"
BEFORE, AFTER = PACKS / "diff-before.yaml", PACKS / "diff-after.yaml"
POPULATION = PACKS / "diff-population.jsonl"


def book(path: Path) -> Rulebook:
    return Rulebook.load(path, shipped=False)


def test_impact_on_a_known_population() -> None:
    report = impact(Advisor(book(BEFORE)), Advisor(book(AFTER)), read_population(POPULATION))
    assert (report.cases, report.changed, report.unchanged) == (6, 3, 3)
    assert report.appeared == {"expert_review": 2, "seek_second_opinion": 2}
    assert report.vanished == {"second_opinion_optional": 1}
    # examples name the line of the cases file (line 5 is blank)
    assert [c.where for c in report.examples["-second_opinion_optional"]] == [6]
    assert sorted(c.where for c in report.examples["+seek_second_opinion"]) == [2, 3]
    (minor_cancer,) = report.examples["-second_opinion_optional"]
    assert minor_cancer.appeared == ("expert_review",)


def test_no_change_means_an_empty_report() -> None:
    same = Advisor(book(BEFORE))
    report = impact(same, same, read_population(POPULATION))
    assert report.changed == 0 and not report.appeared and not report.vanished
    assert "no case changes advice" in report.to_text()
    assert "No case changes advice." in report.to_markdown()


def test_renderings_hold_the_same_figures() -> None:
    report = impact(Advisor(book(BEFORE)), Advisor(book(AFTER)), read_population(POPULATION), examples=1)
    data = json.loads(report.to_json())
    assert data["changed"] == 3 and data["vanished"] == {"second_opinion_optional": 1}
    assert all(len(v) == 1 for v in data["examples"].values())
    markdown = report.to_markdown()
    assert "**3 of 6**" in markdown and "| vanishes | `second_opinion_optional` | 1 |" in markdown
    assert "3 of 6 cases change advice" in report.to_text()


def test_generated_population_is_seeded_and_finds_each_change() -> None:
    before, after = book(BEFORE), book(AFTER)
    population = generated_population(before, after, size=60, seed=5)
    assert population == generated_population(before, after, size=60, seed=5)
    assert len(population) == 60
    report = impact(Advisor(before), Advisor(after), population)
    assert set(report.appeared) == {"expert_review", "seek_second_opinion"}
    assert set(report.vanished) == {"second_opinion_optional"}


def test_bad_population_lines_are_named_by_line_without_values(tmp_path: Path) -> None:
    path = tmp_path / "cases.jsonl"
    path.write_text('{}\nnot json\n{"diagnosis": {"seriousness": "secret-value"}}\n', encoding="utf-8")
    with pytest.raises(PopulationError) as caught:
        read_population(path)
    problems = caught.value.problems
    assert problems[0].startswith("line 2: not JSON")
    assert problems[1].startswith("line 3:") and "diagnosis.seriousness" in problems[1].replace("$.", "")
    assert "secret-value" not in str(caught.value)


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "secondopinion", *args], capture_output=True, text=True, timeout=300, check=False
    )


def test_cli_diff_formats_and_exit_codes(tmp_path: Path) -> None:
    base = ["diff", "--rules-before", str(BEFORE), "--rules-after", str(AFTER), "--only"]
    out = _cli(*base, "--cases", str(POPULATION), "--format", "json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["changed"] == 3
    markdown = _cli(*base, "--cases", str(POPULATION), "--format", "markdown", "--fail-on-change")
    assert markdown.returncode == 1 and markdown.stdout.startswith("### Change impact")
    generated = _cli(*base, "--size", "30")
    assert generated.returncode == 0 and "of 30 cases change advice" in generated.stdout
    assert _cli(*base, "--cases", str(tmp_path / "missing.jsonl")).returncode == 2
    bad = tmp_path / "bad.jsonl"
    bad.write_text("[1, 2]\n", encoding="utf-8")
    failed = _cli(*base, "--cases", str(bad))
    assert failed.returncode == 1 and "line 1" in failed.stderr and "Traceback" not in failed.stderr
