"""The ``secondopinion`` command line, used the way a person uses it.

Most tests run the installed console script in a child process and look at
what a user sees: the exit code (0 success, 1 findings or advice errors, 2
usage errors), stdout, and one clear message on stderr, never a traceback and
never a value from the case. A few use Typer's CliRunner where a child
process cannot set the situation up (a missing optional extra).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

import secondopinion
from secondopinion.cli import app
from secondopinion.rulebook import Rulebook
from secondopinion.schema import schema_for

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "examples" / "cases").glob("*.json"))
CANCER = ROOT / "examples" / "cases" / "cancer-surgery.json"
SECRET = "Okapi-Secret-Value-4417"
SCRIPT = Path(sys.executable).parent / "secondopinion"


def run(*args: str | Path, stdin: str | None = None, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    """Run the installed console script as a user would, with a plain (non-terminal) output."""
    assert SCRIPT.exists(), "the secondopinion console script is not installed in this environment"
    env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "100"}
    return subprocess.run(
        [str(SCRIPT), *map(str, args)], input=stdin, capture_output=True, text=True, cwd=cwd, env=env, timeout=300
    )


def user_error(result: subprocess.CompletedProcess[str], code: int, *expected: str) -> str:
    """Assert a clean failure: the exit code, the message on stderr, no traceback, nothing on stdout."""
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr + result.stdout
    assert result.stdout == ""
    for text in expected:
        assert text in result.stderr, (text, result.stderr)
    return result.stderr


COMMANDS = ["advise", "interview", "explain", "rules", "check", "verify", "batch", "schema", "serve"]


# --------------------------------------------------------------------------- help and version


def test_help_lists_every_command() -> None:
    result = run("--help")
    assert result.returncode == 0
    assert "not medical advice" in result.stdout
    for command in COMMANDS:
        assert f"\n  {command} " in result.stdout, command


@pytest.mark.parametrize("command", COMMANDS)
def test_each_command_has_useful_help(command: str) -> None:
    result = run(command, "--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"Usage: secondopinion {command}")
    summary = (typer.main.get_command(app).commands[command].help or "").split(":")[0]  # type: ignore[attr-defined]
    assert summary and summary in " ".join(result.stdout.split())
    assert "--help" in result.stdout


def test_help_shows_defaults_written_in_brackets() -> None:
    """Help text with square brackets is printed, not swallowed as markup."""
    assert "[default: OUT.errors.jsonl]" in " ".join(run("batch", "--help").stdout.split())


def test_version() -> None:
    result = run("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == secondopinion.__version__


def test_no_arguments_shows_help_and_exits_2() -> None:
    result = run()
    assert result.returncode == 2
    assert "Usage: secondopinion" in result.stdout + result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["frobnicate"], "No such command"),
        (["advise", str(CANCER), "--bogus"], "No such option: --bogus"),
        (["advise", str(CANCER), "--format", "pdf"], "Invalid value for '--format'"),
        (["advise"], "Missing argument"),
        (["schema", "nonsense"], "Invalid value"),
        (["serve", "--port", "0"], "Invalid value for '--port'"),
    ],
)
def test_usage_errors_exit_2(args: list[str], message: str) -> None:
    result = run(*args)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


# --------------------------------------------------------------------------- advise


def test_advise_json_is_the_library_advice() -> None:
    result = run("advise", CANCER, "--format", "json")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert secondopinion.Advice.from_json(result.stdout) == secondopinion.advise(CANCER.read_text("utf-8"))


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_every_example_advises_in_json_and_cds_hooks(path: Path) -> None:
    """In-process (CliRunner) to keep the suite quick; the subprocess tests cover the same paths once."""
    expected = secondopinion.advise(path.read_text("utf-8"))
    as_json = CliRunner().invoke(app, ["advise", str(path), "--format", "json"])
    assert as_json.exit_code == 0, as_json.output
    assert secondopinion.Advice.from_json(as_json.stdout) == expected
    as_cards = CliRunner().invoke(app, ["advise", str(path), "--format", "cds-hooks"])
    assert as_cards.exit_code == 0, as_cards.output
    assert [c["source"]["topic"]["code"] for c in json.loads(as_cards.stdout)["cards"]] == list(expected.kinds)


def test_advise_text_and_markdown() -> None:
    advice = secondopinion.advise(CANCER.read_text("utf-8"))
    text = run("advise", CANCER)
    assert text.returncode == 0
    assert advice.disclaimer.split(".")[0] in text.stdout
    assert "\x1b[" not in text.stdout  # no colour codes when stdout is not a terminal
    for rec in advice.recommendations:
        assert rec.title[:40] in " ".join(text.stdout.split())
    markdown = run("advise", CANCER, "-f", "markdown")
    assert markdown.returncode == 0
    assert markdown.stdout.startswith("# Your second opinion plan")
    actions = [line[4:-4] for line in markdown.stdout.splitlines() if line.startswith("- **")]
    assert sorted(actions) == sorted(r.title for r in advice.recommendations)


def test_advise_cds_hooks_gives_cards() -> None:
    result = run("advise", CANCER, "--format", "cds-hooks")
    assert result.returncode == 0, result.stderr
    response = json.loads(result.stdout)
    advice = secondopinion.advise(CANCER.read_text("utf-8"))
    assert [c["source"]["topic"]["code"] for c in response["cards"]] == list(advice.kinds)
    for card in response["cards"]:
        assert len(card["summary"]) < 140
        assert card["indicator"] in ("info", "warning", "critical")
        assert card["source"]["label"]
    again = json.loads(run("advise", CANCER, "--format", "cds-hooks").stdout)
    assert [c["uuid"] for c in again["cards"]] == [c["uuid"] for c in response["cards"]]  # stable run to run


def test_advise_reads_standard_input() -> None:
    result = run("advise", "-", "-f", "json", stdin=CANCER.read_text("utf-8"))
    assert result.returncode == 0
    assert secondopinion.Advice.from_json(result.stdout).kinds == secondopinion.advise(CANCER.read_text("utf-8")).kinds


def test_advise_missing_file_exits_2(tmp_path: Path) -> None:
    user_error(run("advise", tmp_path / "nope.json"), 2, "error: no such file:", "nope.json")


def test_advise_folder_exits_2(tmp_path: Path) -> None:
    user_error(run("advise", tmp_path), 2, "error: is a folder, not a file")


def test_advise_bad_json_exits_1(tmp_path: Path) -> None:
    path = tmp_path / "case.json"
    path.write_text('{"diagnosis": {"seriousness": "serious",}}', "utf-8")
    user_error(run("advise", path), 1, "not valid JSON at line 1")


def test_advise_not_utf8_exits_1(tmp_path: Path) -> None:
    path = tmp_path / "case.json"
    path.write_bytes(b'{"diagnosis": "\xff\xfe"}')
    user_error(run("advise", path), 1, "is not UTF-8 text")


def test_advise_invalid_case_lists_paths_never_values(tmp_path: Path) -> None:
    path = tmp_path / "case.json"
    case = {
        "diagnosis": {"seriousness": SECRET},
        "treatment": {"days_to_decide": -4},
        "opinions": [{"institution": 12}],
        "colour": SECRET,
    }
    path.write_text(json.dumps(case), "utf-8")
    stderr = user_error(
        run("advise", path),
        1,
        "invalid case (4 problem(s))",
        "@ $.diagnosis.seriousness",
        "@ $.treatment.days_to_decide",
        "@ $.opinions[0].institution",
        "unknown field(s): colour",
    )
    assert SECRET not in stderr


@pytest.mark.parametrize("fmt", ["text", "json", "cds-hooks"])
def test_advise_output_never_fails_on_case_text(tmp_path: Path, fmt: str) -> None:
    path = tmp_path / "case.json"
    case = {"opinions": [{"institution": "<b>St. *Mary*</b>", "diagnosis": "a"}, {"diagnosis": "b"}]}
    path.write_text(json.dumps(case), "utf-8")
    assert run("advise", path, "-f", fmt).returncode == 0


# --------------------------------------------------------------------------- rule packs


GOOD_PACK = """\
topic: local_extras
rules:
  - id: LOCAL-SPINE-TEAM
    title: Spine problem - hear from a spine team
    status: active
    version: 1
    guidance: [G15]
    sources:
      - {file: 000_f3b62da58123f209.txt, section: Surgery}
    last_reviewed: "2026-11-22"
    rationale: A local rule used by the command line tests.
    when:
      - {bind: dx, fact: diagnosis, where: {spine: "yes"}}
    then:
      recommend:
        kind: consult_specialties
        priority: medium
        title: Ask a spine team
        detail: Ask a team of spine doctors to look at your case.
        fields: {specialties: [spine team]}
    examples:
      fires:
        - {diagnosis: {spine: "yes"}}
      silent:
        - {diagnosis: {spine: "%s"}}
"""


def pack(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "local.yaml"
    path.write_text(text, "utf-8")
    return path


def test_check_passes_on_the_shipped_rules() -> None:
    result = run("check")
    assert result.returncode == 0, result.stderr
    book = Rulebook.load()
    assert result.stdout.startswith(f"{len(book.rules)} rules, ")
    assert result.stdout.strip().endswith(", 0 failing")


def test_check_with_an_extra_pack(tmp_path: Path) -> None:
    result = run("check", "--rules", pack(tmp_path, GOOD_PACK % "no"))
    assert result.returncode == 0, result.stderr
    assert f"{len(Rulebook.load().rules) + 1} rules" in result.stdout


def test_check_reports_a_failing_example_and_exits_1(tmp_path: Path) -> None:
    path = pack(tmp_path, GOOD_PACK % "yes")  # the silent example now matches
    result = run("check", "--rules", path)
    assert result.returncode == 1
    assert "rule LOCAL-SPINE-TEAM: example should stay silent but did not" in result.stderr
    assert "1 failing" in result.stdout
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("broken", "message"),
    [
        (GOOD_PACK.replace("fact: diagnosis", "fact: horoscope") % "no", "LOCAL-SPINE-TEAM"),
        (GOOD_PACK.replace("kind: consult_specialties", "kind: buy_a_boat") % "no", "LOCAL-SPINE-TEAM"),
        (GOOD_PACK.replace("    title: Spine problem - hear from a spine team\n", "") % "no", "LOCAL-SPINE-TEAM"),
        ("rules: [unclosed\n", "local.yaml"),
        ("!!python/object/apply:os.system ['echo hacked']\n", "local.yaml"),
    ],
    ids=["unknown fact", "unknown kind", "missing title", "bad YAML", "unsafe YAML"],
)
def test_bad_rule_pack_exits_1_naming_the_file(tmp_path: Path, broken: str, message: str) -> None:
    stderr = user_error(run("check", "--rules", pack(tmp_path, broken)), 1, "local.yaml", message)
    assert "hacked" not in stderr


@pytest.mark.parametrize("command", ["advise", "rules", "explain", "verify"])
def test_every_command_taking_rules_refuses_a_bad_pack(tmp_path: Path, command: str) -> None:
    path = pack(tmp_path, GOOD_PACK.replace("fact: diagnosis", "fact: horoscope") % "no")
    args: list[str | Path] = [command, "--rules", path]
    if command in ("advise", "explain"):
        args.insert(1, CANCER)
    user_error(run(*args), 1, "local.yaml", "LOCAL-SPINE-TEAM", "horoscope")


def test_missing_rule_pack_exits_2(tmp_path: Path) -> None:
    user_error(run("advise", CANCER, "--rules", tmp_path / "none.yaml"), 2, "no such rule file or folder")


def test_verify_passes_on_the_shipped_rules() -> None:
    text = run("verify")
    assert text.returncode == 0, text.stdout + text.stderr
    assert f"{len(Rulebook.load().active)} rules checked, 0 errors" in text.stdout.splitlines()[-1]
    report = json.loads(run("verify", "--format", "json").stdout)
    assert report["ok"] is True and report["counts"]["error"] == 0


def test_verify_finds_a_dead_rule_with_its_reason_and_exits_1(tmp_path: Path) -> None:
    never = "\n      - {bind: tx, fact: treatment, where: {days_to_decide: {lt: 0}}}"  # days are never negative
    dead = GOOD_PACK.replace('where: {spine: "yes"}}', 'where: {spine: "yes"}}' + never)
    result = run("verify", "--rules", pack(tmp_path, dead % "no"))
    assert result.returncode == 1
    assert "error: dead-rule [LOCAL-SPINE-TEAM]: can never fire" in result.stdout
    assert "Traceback" not in result.stderr + result.stdout


def test_verify_missing_pack_exits_2(tmp_path: Path) -> None:
    user_error(run("verify", "--rules", tmp_path / "none.yaml"), 2, "no such rule file or folder")


def test_advise_with_an_extra_pack_uses_it(tmp_path: Path) -> None:
    case = tmp_path / "case.json"
    case.write_text(json.dumps({"diagnosis": {"spine": "yes"}}), "utf-8")
    result = run("advise", case, "-f", "json", "--rules", pack(tmp_path, GOOD_PACK % "no"))
    assert result.returncode == 0, result.stderr
    advice = secondopinion.Advice.from_json(result.stdout)
    rec = advice.by_kind("consult_specialties")
    assert rec is not None and "LOCAL-SPINE-TEAM" in rec.rule_ids


# --------------------------------------------------------------------------- rules and schema


def test_rules_lists_every_rule() -> None:
    result = run("rules")
    assert result.returncode == 0
    for rule in Rulebook.load().rules:
        assert f"{rule.id}  [{rule.status}]" in result.stdout


def test_rules_shows_one_rule_in_text_and_json() -> None:
    rule = Rulebook.load().rules[0]
    text = run("rules", rule.id)
    assert text.returncode == 0
    assert text.stdout.startswith(f"{rule.id}  [{rule.status}]  {rule.title}")
    assert "rationale:" in text.stdout
    shown: dict[str, Any] = json.loads(run("rules", rule.id, "--format", "json").stdout)
    assert (shown["id"], shown["title"], shown["guidance"]) == (rule.id, rule.title, list(rule.guidance))


def test_rules_unknown_id_exits_1() -> None:
    user_error(run("rules", "NO-SUCH-RULE"), 1, "no rule with id 'NO-SUCH-RULE'")


@pytest.mark.parametrize("name", ["case", "advice", "rules"])
def test_schema_prints_each_schema(name: str) -> None:
    result = run("schema", name)
    assert result.returncode == 0
    assert json.loads(result.stdout) == schema_for(name)


# --------------------------------------------------------------------------- explain, batch, serve


def test_explain_a_case() -> None:
    advice = secondopinion.advise(CANCER.read_text("utf-8"))
    result = run("explain", CANCER)
    assert result.returncode == 0, result.stderr
    for rule_id in advice.recommendations[0].rule_ids:
        assert rule_id in result.stdout


def test_explain_user_errors(tmp_path: Path) -> None:
    user_error(run("explain", tmp_path / "nope.json"), 2, "no such file")
    user_error(run("explain", CANCER, "--why-not", "no_such_thing"), 1, "no_such_thing")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"patient": {"age_group": SECRET}}), "utf-8")
    assert SECRET not in user_error(run("explain", bad), 1, "@ $.patient.age_group")


def test_batch_advises_good_lines_and_reports_bad_ones(tmp_path: Path) -> None:
    cases = [json.loads(p.read_text("utf-8")) for p in EXAMPLES]
    lines = [json.dumps(c) for c in cases]
    lines.insert(1, json.dumps({"diagnosis": {"seriousness": SECRET}}))
    lines.insert(2, "{not json")
    source = tmp_path / "cases.jsonl"
    source.write_text("\n".join(lines) + "\n", "utf-8")
    out = tmp_path / "advice.jsonl"
    result = run("batch", source, "--out", out, "--workers", "1", "--no-progress")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert f"{len(lines)} records: {len(cases)} advised, 2 errors" in result.stderr
    advised = out.read_text("utf-8").splitlines()
    assert len(advised) == len(cases)
    errors = (tmp_path / "advice.errors.jsonl").read_text("utf-8")
    assert len(errors.splitlines()) == 2
    assert SECRET not in errors + result.stderr


def test_batch_missing_input_exits_2(tmp_path: Path) -> None:
    user_error(run("batch", tmp_path / "none.jsonl", "--out", tmp_path / "out.jsonl"), 2, "no such file")


def test_serve_without_the_service_extra_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "secondopinion.service", None)  # import fails as if fastapi were missing
    result = CliRunner().invoke(app, ["serve", "--port", "8999"])
    assert result.exit_code == 2  # as for a FHIR Bundle without the fhir extra
    assert 'pip install "secondopinion[service]"' in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
