"""Source references point at text that is really in the guides (issue 11, item 9).

The matcher is tested on small guides written here; the last test runs the
checker on the shipped rules against the real guides in ``../shared/seeds``
(or ``$SECONDOPINION_SEEDS``).
"""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest

from secondopinion import Rulebook
from secondopinion.citations import (
    FixError,
    apply_fixes,
    check,
    default_seeds_path,
    fold,
    main,
    match_section,
    parse_seed,
)

ROOT = Path(__file__).resolve().parent.parent

# A made-up guide laid out like the saved web pages: a title split over two
# lines, stand-alone headings, a numbered step, run-in headings in paragraphs
# and bullet items, curly quotes, a soft hyphen and words split at line ends.
GUIDE = (
    "A Guide to\n"
    "Asking Again\n"
    "It is a short page for the tests.\n"
    "\n"
    "Before you decide\n"
    "\n"
    "Ask early. Your doctor\u2019s staff can help you find some\u00adone who treats this \u2014 often within a week.\n"
    "\n"
    "You may want more. This first sentence starts with a pronoun, so it is not a heading.\n"
    "\n"
    "#1) Book early.\n"
    "\n"
    "Specialists are busy, so a visit can take weeks. Make the call soon and keep the date in your phone.\n"
    "\n"
    "Tips: What To Bring\n"
    "l\t Bring your scans. Bring the pic-\n"
    "tures themselves, not only the re-\n"
    "\n"
    "ports about them.\n"
    "  \u2022 Keep a list. Write down each question as it comes to you.\n"
)
NAME = "900_guide.txt"

SOURCES = """\
topic: sources
description: Documents for the citation tests.
documents:
  - file: 900_guide.txt
    title: A Guide to Asking Again
    sections:
      - Before you decide
      - Choosing well   # not in the guide
guidance:
  - {id: G01, area: when_to_seek, summary: "Ask again.", sources: [900_guide.txt]}
evidence: []
tensions: []
"""
MISSING = """\
topic: sources
description: A document the seeds folder does not hold.
guidance:
  - {id: G02, area: when_to_seek, summary: "Ask early.", sources: [901_missing.txt]}
documents:
  - file: 901_missing.txt
    title: A Guide That Is Not There
    sections: [Its first part]
"""

RULES = """\
topic: when_to_seek
description: Rules for the citation tests.

rules:
  # The first rule cites a real heading and a made-up one.
  - id: TEST-ASK
    title: Ask another doctor
    status: active
    version: 1
    guidance: [G01]
    sources:
      - {file: 900_guide.txt, section: Before you decide}
      - {file: 900_guide.txt, section: Choosing well}   # made up
    last_reviewed: "2026-12-01"
    rationale: A rule for the tests.
    when:
      - {bind: dx, fact: diagnosis, where: {seriousness: serious}}
    then:
      recommend:
        kind: seek_second_opinion
        priority: high
        title: Get another opinion
        detail: See another doctor.
    examples:
      fires: [{diagnosis: {seriousness: serious}}]
      silent: [{diagnosis: {seriousness: minor}}]

  - id: TEST-BOOK
    title: Book early
    status: active
    version: 1
    guidance: [G01]
    sources:
      - file: 900_guide.txt
        section: Choosing well
    last_reviewed: "2026-12-01"
    rationale: A second rule for the tests.
    when:
      - {bind: dx, fact: diagnosis, where: {seriousness: life_threatening}}
    then:
      recommend:
        kind: seek_second_opinion
        priority: high
        title: Get another opinion soon
        detail: See another doctor soon.
    examples:
      fires: [{diagnosis: {seriousness: life_threatening}}]
      silent: [{diagnosis: {seriousness: minor}}]
"""


def write_pack(tmp_path: Path, missing: bool = True) -> tuple[Path, Path]:
    """A seeds folder with the guide, and a rules folder citing it (and, if ``missing``, a document not there)."""
    seeds = tmp_path / "seeds"
    seeds.mkdir()
    (seeds / NAME).write_text(GUIDE, encoding="utf-8")
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "sources.yaml").write_text(SOURCES, encoding="utf-8")
    if missing:
        (rules / "sources-missing.yaml").write_text(MISSING, encoding="utf-8")
    (rules / "10-test.yaml").write_text(RULES, encoding="utf-8")
    return seeds, rules


def line_of(text: str, needle: str) -> int:
    for number, line in enumerate(text.splitlines(), 1):
        if needle in line:
            return number
    raise AssertionError(needle)


# --------------------------------------------------------------------------- folding


def test_fold_straightens_quotes_and_dashes_and_drops_soft_hyphens() -> None:
    assert fold("Your doctor\u2019s \u201cstaff\u201d \u2014 some\u00adone") == 'your doctor\'s "staff" - someone'


def test_fold_joins_words_split_at_a_line_end_even_across_a_blank_line() -> None:
    assert fold("medi-\ncal training") == "medical training"
    assert fold("recommenda-\n\ntion.") == "recommendation."
    assert fold("non-\nHodgkin") == "nonhodgkin"  # the hyphen stays, then inner hyphens fold away


def test_fold_dashes_with_or_without_spaces_alike() -> None:
    assert (
        fold("the long haul\u2014for example")
        == fold("the long haul \u2013 for example")
        == "the long haul - for example"
    )
    assert fold("doctor\u2010patient") == fold("doctor-patient") == "doctorpatient"


def test_fold_case_white_space_and_inner_hyphens() -> None:
    assert fold("  Long-term\n\tTREATMENT  ") == fold("longterm treatment") == "longterm treatment"
    assert fold("condition.Then you") == "condition. then you"


# --------------------------------------------------------------------------- headings


def test_headings_found_in_the_layout() -> None:
    headings = parse_seed(NAME, GUIDE).headings
    for expected in [
        "A Guide to Asking Again",  # the title, over two lines
        "Before you decide",  # a stand-alone line
        "#1) Book early.",  # a numbered step
        "Book early.",  # ... also without its number
        "Ask early.",  # a run-in heading of a paragraph
        "Tips: What To Bring",  # a stand-alone line followed by bullets
        "Bring your scans.",  # a run-in heading of a bullet item
        "Keep a list.",
    ]:
        assert expected in headings, expected


def test_sentences_that_are_not_headings() -> None:
    headings = parse_seed(NAME, GUIDE).headings
    assert "You may want more." not in headings  # starts with a pronoun
    assert "Specialists are busy, so a visit can take weeks." not in headings  # has a comma
    assert "A Guide to" not in headings  # only the first half of the title


# --------------------------------------------------------------------------- matching sections


def test_a_real_heading_is_accepted_with_or_without_its_full_stop() -> None:
    seed = parse_seed(NAME, GUIDE)
    assert match_section(seed, "Before you decide").how == "heading"
    assert match_section(seed, "Book early").how == "heading"
    assert match_section(seed, "#1) Book early.").how == "heading"
    assert match_section(seed, "BEFORE YOU DECIDE").how == "heading"


def test_a_made_up_section_is_refused() -> None:
    seed = parse_seed(NAME, GUIDE)
    result = match_section(seed, "Choosing well")
    assert not result.ok
    assert "not a heading" in result.reason and NAME in result.reason
    assert not match_section(seed, "How to pay for a second opinion").ok
    assert not match_section(seed, "").ok


def test_a_quote_across_a_line_break_and_a_split_word_is_accepted() -> None:
    seed = parse_seed(NAME, GUIDE)
    assert match_section(seed, "Bring the pictures themselves, not only the reports about them").how == "quote"
    assert match_section(seed, "keep the date in your phone").how == "quote"


def test_a_quote_with_straight_quotes_and_dashes_matches_curly_ones() -> None:
    seed = parse_seed(NAME, GUIDE)
    assert match_section(seed, "Your doctor's staff can help you find someone who treats this - often").ok


def test_short_fragments_long_quotes_and_part_words_are_refused() -> None:
    seed = parse_seed(NAME, GUIDE)
    fragment = match_section(seed, "your phone")  # in the text, but 2 words and no heading
    assert not fragment.ok and "occur in the text but not as a heading" in fragment.reason
    assert not match_section(seed, "ecialists are busy, so a visit").ok  # not at a word boundary
    long = " ".join(["Specialists are busy, so a visit can take weeks."] * 3)
    assert "at most 25 words" in match_section(seed, long).reason
    assert not match_section(seed, "Specialists are busy, so a visit can take days").ok


# --------------------------------------------------------------------------- checking a rulebook


def test_check_names_file_line_rule_and_reason(tmp_path: Path) -> None:
    seeds, rules = write_pack(tmp_path)
    book = Rulebook.load(rules, shipped=False)
    findings = check(seeds, book, [rules])
    by_where = {(Path(f.file).name, f.line, f.rule_id): f for f in findings}
    rule_line = line_of(RULES, "section: Choosing well}   # made up")
    assert ("10-test.yaml", rule_line, "TEST-ASK") in by_where
    assert by_where[("10-test.yaml", rule_line, "TEST-ASK")].section == "Choosing well"
    block_line = line_of(RULES, "- file: 900_guide.txt")
    assert ("10-test.yaml", block_line, "TEST-BOOK") in by_where
    declared = line_of(SOURCES, "- Choosing well")
    assert ("sources.yaml", declared, None) in by_where
    missing = [f for f in findings if f.cited_file == "901_missing.txt"]
    assert [(f.rule_id, f.reason) for f in missing] == [
        (None, "no such document in the seeds folder"),
        ("G02", "no such document in the seeds folder"),
    ]
    assert len(findings) == 5  # the real heading "Before you decide" is not a finding
    assert "10-test.yaml:" in str(by_where[("10-test.yaml", rule_line, "TEST-ASK")])


def test_a_cited_file_missing_from_the_seeds_is_refused(tmp_path: Path) -> None:
    seeds, rules = write_pack(tmp_path)
    (seeds / NAME).rename(seeds / "other.txt")
    findings = check(seeds, Rulebook.load(rules, shipped=False), [rules])
    rule_refs = [f for f in findings if f.rule_id == "TEST-ASK"]
    assert len(rule_refs) == 2
    assert all(f.reason == "no such document in the seeds folder" for f in rule_refs)


def test_a_wrong_document_title_is_a_finding(tmp_path: Path) -> None:
    seeds, rules = write_pack(tmp_path)
    (rules / "sources.yaml").write_text(SOURCES.replace("A Guide to Asking Again", "A Guide to Asking"))
    findings = check(seeds, Rulebook.load(rules, shipped=False), [rules])
    assert any(f.section == "A Guide to Asking" and "title" in f.reason for f in findings)


# --------------------------------------------------------------------------- applying fixes

FIXES = """\
sections:
  900_guide.txt:
    - {old: Choosing well, new: "Tips: What To Bring"}
rules:
  TEST-ASK:
    - {file: 900_guide.txt, old: Choosing well, new: "Tips: What To Bring"}
  TEST-BOOK:
    - {file: 900_guide.txt, old: Choosing well, new: "Make the call soon and keep the date"}
  TEST-GONE:
    - {file: 900_guide.txt, old: Choosing well, new: Before you decide}
"""


def test_apply_fixes_rewrites_only_the_cited_sections(tmp_path: Path) -> None:
    seeds, rules = write_pack(tmp_path)
    fixes = tmp_path / "fixes.yaml"
    fixes.write_text(FIXES, encoding="utf-8")
    result = apply_fixes(rules, fixes)

    assert result.skipped == ("TEST-GONE: 900_guide.txt 'Choosing well' not found",)
    assert len(result.applied) == 4  # two rule sections, one declared section renamed, one declared section added
    before, after = RULES.splitlines(), (rules / "10-test.yaml").read_text(encoding="utf-8").splitlines()
    changed = [(a, b) for a, b in zip(before, after, strict=True) if a != b]
    assert changed == [
        (
            "      - {file: 900_guide.txt, section: Choosing well}   # made up",
            '      - {file: 900_guide.txt, section: "Tips: What To Bring"}   # made up',
        ),
        ("        section: Choosing well", "        section: Make the call soon and keep the date"),
    ]
    sources = (rules / "sources.yaml").read_text(encoding="utf-8")
    assert '      - "Tips: What To Bring"   # not in the guide\n' in sources
    assert "      - Make the call soon and keep the date\n" in sources

    book = Rulebook.load(rules, shipped=False)
    assert [s.section for s in book.rule("TEST-BOOK").sources] == ["Make the call soon and keep the date"]
    remaining = check(seeds, book, [rules])
    assert [f.cited_file for f in remaining] == ["901_missing.txt", "901_missing.txt"]


def test_apply_fixes_twice_changes_nothing_more(tmp_path: Path) -> None:
    _, rules = write_pack(tmp_path)
    fixes = tmp_path / "fixes.yaml"
    fixes.write_text(FIXES, encoding="utf-8")
    apply_fixes(rules, fixes)
    snapshot = {p.name: p.read_text(encoding="utf-8") for p in rules.iterdir()}
    again = apply_fixes(rules, fixes)
    assert again.applied == () and again.files == ()
    assert {p.name: p.read_text(encoding="utf-8") for p in rules.iterdir()} == snapshot


def test_a_renamed_section_that_is_already_declared_is_dropped_not_doubled(tmp_path: Path) -> None:
    _, rules = write_pack(tmp_path)
    fixes = tmp_path / "fixes.yaml"
    fixes.write_text(
        textwrap.dedent("""\
            sections:
              900_guide.txt: [{old: Choosing well, new: Before you decide}]
            rules:
              TEST-ASK: [{file: 900_guide.txt, old: Choosing well, new: Before you decide}]
              TEST-BOOK: [{file: 900_guide.txt, old: Choosing well, new: Before you decide}]
            """)
    )
    apply_fixes(rules, fixes)
    book = Rulebook.load(rules, shipped=False)
    assert book.documents[NAME].sections == ("Before you decide",)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("rules: [1, 2]\n", "rules: expected a mapping"),
        ("rules:\n  TEST-ASK:\n    - {file: 900_guide.txt, old: Choosing well}\n", "TEST-ASK/0/new"),
        ("colour: blue\n", "expected a mapping"),
        ("rules: {TEST-ASK: [{file: [\n", "not valid YAML"),
    ],
)
def test_a_malformed_fixes_file_is_a_clear_error_and_writes_nothing(tmp_path: Path, text: str, message: str) -> None:
    _, rules = write_pack(tmp_path)
    fixes = tmp_path / "fixes.yaml"
    fixes.write_text(text, encoding="utf-8")
    with pytest.raises(FixError, match=r"fixes\.yaml") as info:
        apply_fixes(rules, fixes)
    assert message in str(info.value)
    assert (rules / "10-test.yaml").read_text(encoding="utf-8") == RULES


# --------------------------------------------------------------------------- command line


def test_cli_prints_findings_and_exits_1_then_0_after_apply(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    seeds, rules = write_pack(tmp_path, missing=False)
    assert main(["--seeds", str(seeds), "--rules", str(rules)]) == 1
    out = capsys.readouterr().out
    assert "[TEST-ASK] 900_guide.txt / 'Choosing well': not a heading" in out
    fixes = tmp_path / "fixes.yaml"
    fixes.write_text(FIXES, encoding="utf-8")
    assert main(["--seeds", str(seeds), "--rules", str(rules), "--apply", str(fixes)]) == 0
    captured = capsys.readouterr()
    assert "applied: TEST-ASK" in captured.out and "skipped: TEST-GONE" in captured.out
    assert "0 finding(s)" in captured.err


def test_cli_usage_errors_exit_2_without_a_traceback(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--seeds", str(tmp_path / "nowhere")]) == 2
    assert "seeds folder not found" in capsys.readouterr().err
    seeds, rules = write_pack(tmp_path)
    bad = tmp_path / "bad.yaml"
    bad.write_text("rules: [1]\n")
    assert main(["--seeds", str(seeds), "--rules", str(rules), "--apply", str(bad)]) == 2
    assert "error:" in capsys.readouterr().err


# --------------------------------------------------------------------------- the shipped rules


def test_default_seeds_path_honours_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SECONDOPINION_SEEDS", str(tmp_path))
    assert default_seeds_path() == tmp_path
    monkeypatch.delenv("SECONDOPINION_SEEDS")
    assert default_seeds_path() == ROOT.parent / "shared" / "seeds"


def test_every_shipped_reference_is_in_its_guide() -> None:
    seeds = default_seeds_path()
    if not seeds.is_dir():
        if os.environ.get("CI"):
            pytest.fail(f"the guides are not at {seeds}; set SECONDOPINION_SEEDS")
        pytest.skip("the guides (../shared/seeds or $SECONDOPINION_SEEDS) are not here")
    findings = check(seeds)
    assert not findings, "\n" + textwrap.indent("\n".join(map(str, findings)), "  ")
