"""Rule files: safe YAML, schema, vocabulary checks, and errors that name file, line and rule id."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from secondopinion import Rulebook, RuleFileError
from secondopinion.rulebook import Derive, Recommend

GOOD_RULE = """\
rules:
  - id: PACK-SERIOUS
    title: A test rule
    status: active
    version: 1
    guidance: [G01]
    sources:
      - {file: 002_8194ba36582a8229.txt, section: Second Opinions 101}
    last_reviewed: "2026-11-22"
    rationale: A rule used by the tests.
    when:
      - {bind: dx, fact: diagnosis, where: {seriousness: serious}}
    then:
      recommend:
        kind: seek_second_opinion
        priority: high
        title: Get another opinion
        detail: See another doctor.
    examples:
      fires:
        - {diagnosis: {seriousness: serious}}
      silent:
        - {diagnosis: {seriousness: minor}}
"""


def write(tmp_path: Path, text: str, name: str = "pack.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def load_error(path: Path) -> RuleFileError:
    with pytest.raises(RuleFileError) as info:
        Rulebook.load(path)
    return info.value


def line_of(text: str, needle: str) -> int:
    for number, line in enumerate(text.splitlines(), 1):
        if needle in line:
            return number
    raise AssertionError(needle)


def test_shipped_rules_load_and_a_good_pack_adds_to_them(tmp_path: Path) -> None:
    shipped = Rulebook.load()
    assert len(shipped.active) > 10
    book = Rulebook.load(write(tmp_path, GOOD_RULE))
    assert book.rule("PACK-SERIOUS").recommends == "seek_second_opinion"
    assert len(book.rules) == len(shipped.rules) + 1


def test_yaml_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    text = GOOD_RULE.replace("    version: 1\n", "    version: [1\n")
    error = load_error(write(tmp_path, text))
    problem = error.problems[0]
    assert problem.file.endswith("pack.yaml")
    assert problem.line is not None and problem.line >= line_of(text, "version: [1")
    assert "YAML syntax error" in problem.message


def test_unknown_key_names_line_and_rule(tmp_path: Path) -> None:
    text = GOOD_RULE.replace("    version: 1\n", "    version: 1\n    colour: blue\n")
    error = load_error(write(tmp_path, text))
    (problem,) = error.problems
    assert problem.rule_id == "PACK-SERIOUS"
    assert problem.line == line_of(text, "colour: blue")
    assert "unknown key 'colour'" in problem.message
    assert f"{problem.file}:{problem.line}: rule PACK-SERIOUS:" in str(error)


def test_unknown_fact_attribute_and_value(tmp_path: Path) -> None:
    text = GOOD_RULE.replace("where: {seriousness: serious}", "where: {gravity: serious}")
    (problem,) = load_error(write(tmp_path, text)).problems
    assert (problem.rule_id, problem.line) == ("PACK-SERIOUS", line_of(text, "gravity"))
    assert "unknown attribute 'gravity' of fact 'diagnosis'" in problem.message

    text = GOOD_RULE.replace("where: {seriousness: serious}", "where: {seriousness: dire}")
    (problem,) = load_error(write(tmp_path, text)).problems
    assert "unknown value 'dire' for diagnosis.seriousness" in problem.message
    assert problem.line == line_of(text, "dire")

    text = GOOD_RULE.replace("fact: diagnosis,", "fact: prognosis,")
    (problem,) = load_error(write(tmp_path, text)).problems
    assert "unknown fact type 'prognosis'" in problem.message


def test_unknown_recommendation_kind_and_field(tmp_path: Path) -> None:
    text = GOOD_RULE.replace("kind: seek_second_opinion", "kind: pray")
    (problem,) = load_error(write(tmp_path, text)).problems
    assert "unknown recommendation kind 'pray'" in problem.message
    assert problem.line == line_of(text, "kind: pray")

    text = GOOD_RULE.replace("        detail: See another doctor.\n", "        detail: x\n        fields: {days: 3}\n")
    (problem,) = load_error(write(tmp_path, text)).problems
    assert "has no field 'days'" in problem.message


def test_duplicate_rule_id_within_a_pack_and_against_shipped(tmp_path: Path) -> None:
    text = GOOD_RULE + GOOD_RULE.split("rules:\n", 1)[1]
    error = load_error(write(tmp_path, text))
    assert [p.rule_id for p in error.problems] == ["PACK-SERIOUS"]
    assert "duplicate rule id" in error.problems[0].message
    assert error.problems[0].line == 24  # the second copy

    clash = GOOD_RULE.replace("PACK-SERIOUS", "SEEK-SERIOUS-DIAGNOSIS")
    error = load_error(write(tmp_path, clash, "clash.yaml"))
    assert error.problems[0].rule_id == "SEEK-SERIOUS-DIAGNOSIS"
    assert "first defined in" in error.problems[0].message


def test_unknown_guidance_id(tmp_path: Path) -> None:
    text = GOOD_RULE.replace("guidance: [G01]", "guidance: [G01, G99]")
    (problem,) = load_error(write(tmp_path, text)).problems
    assert "unknown guidance id 'G99'" in problem.message
    assert problem.line == line_of(text, "G99")


def test_missing_or_unknown_source(tmp_path: Path) -> None:
    text = GOOD_RULE.replace(
        "    sources:\n      - {file: 002_8194ba36582a8229.txt, section: Second Opinions 101}\n", ""
    )
    (problem,) = load_error(write(tmp_path, text)).problems
    assert "'sources' is a required property" in problem.message
    assert problem.rule_id == "PACK-SERIOUS"

    text = GOOD_RULE.replace("002_8194ba36582a8229.txt", "999_blog.txt")
    (problem,) = load_error(write(tmp_path, text)).problems
    assert "unknown source document '999_blog.txt'" in problem.message

    text = GOOD_RULE.replace("section: Second Opinions 101", "section: Chapter 9")
    (problem,) = load_error(write(tmp_path, text)).problems
    assert "has no section 'Chapter 9'" in problem.message


def test_active_rule_without_examples_is_refused(tmp_path: Path) -> None:
    text = GOOD_RULE.split("    examples:")[0]
    (problem,) = load_error(write(tmp_path, text)).problems
    assert "needs at least one 'fires' and one 'silent' example" in problem.message
    draft = text.replace("status: active", "status: draft")
    assert Rulebook.load(write(tmp_path, draft)).rule("PACK-SERIOUS").status == "draft"


def test_references_must_point_to_earlier_bindings(tmp_path: Path) -> None:
    text = GOOD_RULE.replace("where: {seriousness: serious}", "where: {seriousness: {ref: later.seriousness}}")
    (problem,) = load_error(write(tmp_path, text)).problems
    assert "no earlier pattern binds" in problem.message


def test_unless_only_on_recommend_rules(tmp_path: Path) -> None:
    text = GOOD_RULE.replace(
        """      recommend:
        kind: seek_second_opinion
        priority: high
        title: Get another opinion
        detail: See another doctor.
""",
        "      derive: {fact: minor_case}\n",
    ).replace("    then:\n", "    unless:\n      - {fact: high_stakes}\n    then:\n")
    (problem,) = load_error(write(tmp_path, text)).problems
    assert "'unless' is only allowed on rules that recommend" in problem.message


def test_no_code_runs_from_yaml(tmp_path: Path) -> None:
    text = "rules: !!python/object/apply:os.system ['echo pwned > pwned.txt']\n"
    (problem,) = load_error(write(tmp_path, text)).problems
    assert "YAML syntax error" in problem.message or "YAML" in problem.message
    assert not (tmp_path / "pwned.txt").exists() and not Path("pwned.txt").exists()


def test_yes_and_no_stay_words_not_booleans(tmp_path: Path) -> None:
    text = GOOD_RULE.replace("where: {seriousness: serious}", "where: {cancer: yes}").replace(
        "{diagnosis: {seriousness: serious}}", "{diagnosis: {cancer: yes}}"
    )
    book = Rulebook.load(write(tmp_path, text))
    (pattern,) = book.rule("PACK-SERIOUS").when
    assert pattern.tests[0].value == "yes"  # type: ignore[union-attr]


def test_every_error_is_collected_not_only_the_first(tmp_path: Path) -> None:
    one = write(tmp_path, GOOD_RULE.replace("kind: seek_second_opinion", "kind: pray"), "a.yaml")
    two = write(tmp_path, GOOD_RULE.replace("PACK-SERIOUS", "PACK-OTHER").replace("[G01]", "[G77]"), "b.yaml")
    with pytest.raises(RuleFileError) as info:
        Rulebook.load(one, two)
    assert {(Path(p.file).name, p.rule_id) for p in info.value.problems} == {
        ("a.yaml", "PACK-SERIOUS"),
        ("b.yaml", "PACK-OTHER"),
    }


def test_rule_model_exposes_what_it_derives_and_recommends() -> None:
    book = Rulebook.load()
    join = book.rule("CONFLICT-JOIN")
    assert isinstance(join.then, Derive) and join.derives == "opinions_conflict"
    assert join.consumes == ("opinion",)
    ask = book.rule("CONFLICT-ASK-WHY")
    assert isinstance(ask.then, Recommend) and ask.recommends == "resolve_conflict"


def test_schema_of_rule_files_is_shipped_and_valid() -> None:
    import jsonschema

    from secondopinion.rulebook import rules_schema

    jsonschema.Draft202012Validator.check_schema(rules_schema())


def test_add_in_a_test_is_refused_because_the_engine_cannot_join_on_sums(tmp_path: Path) -> None:
    text = GOOD_RULE.replace(
        "      - {bind: dx, fact: diagnosis, where: {seriousness: serious}}\n",
        "      - {bind: a, fact: opinion}\n"
        "      - {bind: b, fact: opinion, where: {index: {gt: {ref: a.index, add: 1}}}}\n",
    )
    (problem,) = load_error(write(tmp_path, text)).problems
    assert "'add' is only allowed in values a rule sets" in problem.message
    assert problem.line == line_of(text, "add: 1")
