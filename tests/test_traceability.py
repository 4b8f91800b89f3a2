"""docs/traceability.md is generated from the rule files and must be current."""

from __future__ import annotations

import json
import re
from pathlib import Path

import attrs
import pytest
from typer.testing import CliRunner

from secondopinion import Rulebook
from secondopinion.cli import app
from secondopinion.traceability import guidance_traces, main, render_matrix, untraced_guidance

ROOT = Path(__file__).resolve().parent.parent
MATRIX = ROOT / "docs" / "traceability.md"
BOOK = Rulebook.load()


def test_the_matrix_in_docs_is_current() -> None:
    assert MATRIX.read_text(encoding="utf-8") == render_matrix(BOOK), (
        "docs/traceability.md is stale: run python -m secondopinion.traceability --write docs/traceability.md"
    )


def test_the_matrix_traces_all_51_items_to_active_rules_and_their_kinds() -> None:
    text = render_matrix(BOOK)
    assert "**51 of 51 guidance items traced to active rules.**" in text
    rows = {m.group(1): m.group(0) for m in re.finditer(r"^\| (G\d\d) \|.*$", text, flags=re.M)}
    assert sorted(rows) == [f"G{n:02d}" for n in range(1, 52)]
    for trace in guidance_traces(BOOK):
        row = rows[trace.id]
        for rid in trace.rules:
            assert f"`{rid}`" in row
            assert trace.id in BOOK.rule(rid).guidance
        for kind in trace.kinds:
            assert f"`{kind}`" in row
    # e.g. the spine item leads to the specialties to consult
    assert "`consult_specialties`" in rows["G15"] and "`SPINE-SPECIALTIES`" in rows["G15"]


def test_an_item_without_active_rules_shows_as_untraced() -> None:
    assert untraced_guidance(BOOK) == ()
    retired = tuple(attrs.evolve(r, status="retired") if "G05" in r.guidance else r for r in BOOK.rules)
    book = attrs.evolve(BOOK, rules=retired)
    assert untraced_guidance(book) == ("G05",)
    text = render_matrix(book)
    assert "**50 of 51 guidance items traced to active rules.**" in text
    (row,) = [line for line in text.splitlines() if line.startswith("| G05 |")]
    assert "**none**" in row and "RARE-SPECIALIST (retired)" in row
    assert text != MATRIX.read_text(encoding="utf-8")


def test_evidence_and_tensions_sections() -> None:
    text = render_matrix(BOOK)
    (e1,) = [line for line in text.splitlines() if line.startswith("| E1 |")]
    assert "`CANCER-CENTER`" in e1 and "`prefer_cancer_center`" in e1
    for tid, tension in BOOK.tensions.items():
        (row,) = [line for line in text.splitlines() if line.startswith(f"| {tid} |")]
        assert all(f"`{rid}`" in row for rid in tension.rules)


def test_module_entry_writes_and_checks(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "matrix.md"
    assert main(["--write", str(target)]) == 0
    assert target.read_text(encoding="utf-8") == render_matrix(BOOK)
    assert main(["--check", str(target)]) == 0
    target.write_text(target.read_text(encoding="utf-8").replace("G15", "G99", 1), encoding="utf-8")
    assert main(["--check", str(target)]) == 1
    assert "stale" in capsys.readouterr().err
    assert main(["--check", str(tmp_path / "missing.md")]) == 1


def test_rules_json_lists_every_rule_with_its_metadata() -> None:
    result = CliRunner().invoke(app, ["rules", "--format", "json"])
    assert result.exit_code == 0, result.output
    listed = json.loads(result.stdout)
    assert {r["id"] for r in listed} == {r.id for r in BOOK.rules}
    for item in listed:
        assert item["status"] in ("draft", "active", "retired")
        assert item["guidance"] and all(g in BOOK.guidance for g in item["guidance"])
        assert item["sources"] and all({"file", "section"} <= set(s) for s in item["sources"])
