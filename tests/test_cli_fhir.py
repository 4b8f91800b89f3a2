"""FHIR Bundles on the command line: ``secondopinion advise|explain|interview BUNDLE.json``.

A Synthea or US Core Bundle is read as it is (told apart from a case file by its
top-level ``"resourceType": "Bundle"``), mapped with ``case_from_bundle`` and
advised on. What a user sees: the plan first, as for a case file; one line on
stderr saying the case was read from a FHIR Bundle and how many items were not
used; ``--mapping`` for the full report; errors naming FHIR paths, never values.
Most tests run in-process (CliRunner) to keep the suite quick; a few run the
installed console script as a user would.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import secondopinion
from secondopinion.case import dump_case
from secondopinion.cli import app

pytest.importorskip("fhir.resources")
from secondopinion.fhir import case_from_bundle

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures" / "fhir"
COLON = FIXTURES / "synthea-colon-cancer-surgery.json"
LUNG = FIXTURES / "synthea-lung-cancer-chemotherapy.json"
PROSTATE = FIXTURES / "uscore-prostate-cancer-self-pay.json"
SPINE = FIXTURES / "spine-stat-surgery.json"
CANCER_CASE = ROOT / "examples" / "cases" / "cancer-surgery.json"
TODAY = "2026-11-22"
SECRET = "Tapir-Secret-Value-6620"
SCRIPT = Path(sys.executable).parent / "secondopinion"
runner = CliRunner()


def cli(*args: str | Path, stdin: str | None = None) -> Any:
    return runner.invoke(app, [str(a) for a in args], input=stdin)


def fixture(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text("utf-8"))
    return data


def mapped(path: Path, **options: Any) -> Any:
    import datetime as dt

    return case_from_bundle(fixture(path), today=dt.date.fromisoformat(TODAY), **options)


def write(tmp_path: Path, data: Any, name: str = "bundle.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(data), "utf-8")
    return path


def clean_error(result: Any, code: int, *expected: str) -> str:
    """A clean failure: the exit code, one message on stderr, no traceback, nothing on stdout."""
    assert result.exit_code == code, (result.exit_code, result.output)
    assert isinstance(result.exception, SystemExit) or result.exception is None, result.exception
    assert result.stdout == ""
    for text in expected:
        assert text in result.stderr, (text, result.stderr)
    return str(result.stderr)


# --------------------------------------------------------------------------- advise


def test_advise_reads_a_synthea_bundle_and_leads_with_what_to_do() -> None:
    result = cli("advise", COLON, "--today", TODAY)
    assert result.exit_code == 0, result.output
    first = result.stdout.splitlines()[0]
    assert first.startswith("Your plan: Get a second opinion before surgery.")
    # The same plan as for the mapped case written as a case file.
    expected = cli("advise", "-", "--today", TODAY, stdin=json.dumps(dump_case(mapped(COLON).case)))
    assert result.stdout == expected.stdout
    # One line on stderr: read from a FHIR Bundle, how much was not used, and the flag for the report.
    (note,) = result.stderr.splitlines()
    report = mapped(COLON)
    assert note == (
        f"Read from a FHIR R4B Bundle: {len(report.mapped)} case fields mapped, "
        f"{len(report.unmapped)} items not used; add --mapping to see each with its FHIR path."
    )


def test_the_console_script_reads_a_bundle() -> None:
    """The reviewer's command, run as a user runs it."""
    assert SCRIPT.exists()
    env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "100"}
    done = subprocess.run(
        [str(SCRIPT), "advise", str(LUNG), "--today", TODAY], capture_output=True, text=True, env=env, timeout=300
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("Your plan: Get a second opinion")
    assert "Traceback" not in done.stderr
    assert "Read from a FHIR R4B Bundle" in done.stderr and "--mapping" in done.stderr


@pytest.mark.parametrize("path", sorted(FIXTURES.glob("*.json")), ids=lambda p: p.stem)
def test_advise_json_on_each_fixture_is_the_library_advice(path: Path) -> None:
    result = cli("advise", path, "--format", "json", "--today", TODAY)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert "fhir_mapping" not in data  # only when asked
    assert secondopinion.Advice.from_json(result.stdout) == secondopinion.advise(mapped(path).case)


def test_mapping_in_json_is_a_separate_key_with_fhir_paths() -> None:
    result = cli("advise", PROSTATE, "--format", "json", "--mapping", "--today", TODAY)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert secondopinion.Advice.from_json(result.stdout) == secondopinion.advise(mapped(PROSTATE).case)
    report = data["fhir_mapping"]
    assert report == mapped(PROSTATE).report()
    assert set(report) == {"summary", "mapped", "unmapped", "focus"}
    assert {"case_field": "treatment.kind", "fhir_path": "Bundle.entry[4].resource.code"} in report["mapped"]
    assert report["focus"]["fhir_path"] == "Bundle.entry[2].resource"


def test_mapping_in_text_follows_the_plan() -> None:
    result = cli("advise", LUNG, "--mapping", "--today", TODAY)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith("Your plan: Get a second opinion")
    start = lines.index("What was read from the FHIR Bundle")
    section = "\n".join(lines[start:])
    report = mapped(LUNG)
    assert report.focus is not None
    assert f"The advice is about {report.focus.fhir_path}: {report.focus.reason}" in section
    for item in report.mapped:
        assert f"{item.case_field} <- {item.fhir_path}" in " ".join(section.split())
    for item in report.unmapped:
        assert f"{item.fhir_path}: {item.reason} ({item.category.replace('_', ' ')})" in section
    assert "Observation: 12 ignored" in section
    assert "--mapping" not in result.stderr  # the report is already there


def test_mapping_in_markdown_and_cds_hooks() -> None:
    markdown = cli("advise", COLON, "-f", "markdown", "--mapping", "--today", TODAY)
    assert markdown.exit_code == 0, markdown.output
    assert markdown.stdout.startswith("# Your second opinion plan")
    assert "\n## What was read from the FHIR Bundle\n" in markdown.stdout
    assert "- `diagnosis.cancer` <- `Bundle.entry[4].resource.code`" in markdown.stdout
    cards = cli("advise", COLON, "-f", "cds-hooks", "--mapping", "--today", TODAY)
    assert cards.exit_code == 0, cards.output
    response = json.loads(cards.stdout)
    assert response["cards"]
    assert response["extension"]["io.github.secondopinion.fhir-mapping"] == mapped(COLON).report()
    plain = json.loads(cli("advise", COLON, "-f", "cds-hooks", "--today", TODAY).stdout)
    assert "extension" not in plain


@pytest.mark.parametrize("fmt", ["html", "ics"])
def test_mapping_with_a_format_that_cannot_hold_it_is_a_usage_error(fmt: str) -> None:
    clean_error(cli("advise", COLON, "-f", fmt, "--mapping"), 2, "--mapping works with --format text")


def test_self_pay_only_patient_gets_no_call_your_insurer_card() -> None:
    result = cli("advise", PROSTATE, "--today", TODAY)
    assert result.exit_code == 0, result.output
    assert "Paying yourself?" in result.stdout
    assert "call your insurer" not in result.stdout.lower()
    report = json.loads(cli("advise", PROSTATE, "-f", "json", "--mapping", "--today", TODAY).stdout)["fhir_mapping"]
    assert {
        "case_field": "insurance.insured",
        "fhir_path": "Bundle.entry[5].resource.type",
        "reason": "every active Coverage is self-pay: no insurance",
    } in report["mapped"]


def test_a_bundle_on_standard_input() -> None:
    result = cli("advise", "-", "-f", "json", "--today", TODAY, stdin=COLON.read_text("utf-8"))
    assert result.exit_code == 0, result.output
    assert secondopinion.Advice.from_json(result.stdout) == secondopinion.advise(mapped(COLON).case)


def test_a_bundle_larger_than_a_case_file_is_read(tmp_path: Path) -> None:
    """A real Synthea patient is often several MB: the 1 MiB case limit does not apply to a Bundle."""
    data = fixture(COLON)
    observation = next(e for e in data["entry"] if e["resource"]["resourceType"] == "Observation")
    data["entry"] += [observation] * 4000
    path = write(tmp_path, data)
    assert path.stat().st_size > 2 << 20
    result = cli("advise", path, "-f", "json", "--today", TODAY)
    assert result.exit_code == 0, result.output
    assert secondopinion.Advice.from_json(result.stdout) == secondopinion.advise(mapped(COLON).case)


def test_a_large_file_that_is_not_a_bundle_still_stops_at_the_case_limit(tmp_path: Path) -> None:
    path = tmp_path / "big.json"
    path.write_text(json.dumps({"opinions": [{"diagnosis": "x" * (2 << 20)}]}), "utf-8")
    clean_error(cli("advise", path), 1, "larger than 1048576 bytes")


# --------------------------------------------------------------------------- options


def test_help_says_a_bundle_is_read_and_lists_the_fhir_options() -> None:
    for command in ("advise", "explain", "interview"):
        result = cli(command, "--help")
        assert result.exit_code == 0
        text = " ".join(result.stdout.split())
        assert "FHIR Bundle" in text, command
        for option in ("--fhir-version", "--patient", "--focus", "--mapping", "--today"):
            assert option in text, (command, option)
        assert "[default: R4B]" in text


def test_r5_is_read_when_asked(tmp_path: Path) -> None:
    coverage = {
        "resourceType": "Coverage",
        "status": "active",
        "kind": "self-pay",
        "beneficiary": {"reference": "Patient/p1"},
    }
    path = write(
        tmp_path,
        {
            "resourceType": "Bundle",
            "type": "collection",
            "entry": [
                {"resource": {"resourceType": "Patient", "id": "p1", "birthDate": "1970-01-01"}},
                {"resource": coverage},
            ],
        },
    )
    r5 = cli("advise", path, "-f", "json", "--mapping", "--fhir-version", "R5")
    assert r5.exit_code == 0, r5.output
    assert "Read from a FHIR R5 Bundle" in r5.stderr
    fields = {m["case_field"]: m["fhir_path"] for m in json.loads(r5.stdout)["fhir_mapping"]["mapped"]}
    assert fields["patient.pays_out_of_pocket"] == "Bundle.entry[1].resource.kind"
    r4b = cli("advise", path, "--fhir-version", "R4B")  # Coverage.kind is not an R4B element
    clean_error(r4b, 1, "invalid FHIR data", "@ Bundle.entry[1].resource.kind")
    clean_error(cli("advise", path, "--fhir-version", "R6"), 2, "Invalid value for '--fhir-version'")


def two_patients(tmp_path: Path) -> tuple[Path, str, str]:
    colon, lung = fixture(COLON), fixture(LUNG)
    both = {**colon, "entry": colon["entry"] + lung["entry"]}
    return write(tmp_path, both), colon["entry"][0]["resource"]["id"], lung["entry"][0]["resource"]["id"]


def test_a_bundle_with_several_patients_needs_patient(tmp_path: Path) -> None:
    path, colon_id, lung_id = two_patients(tmp_path)
    stderr = clean_error(cli("advise", path), 2, "holds 2 patients", "choose one with --patient ID")
    assert "Bundle.entry[0].resource" in stderr
    assert colon_id not in stderr and lung_id not in stderr
    for given in (colon_id, f"Patient/{colon_id}", f"urn:uuid:{colon_id}"):
        result = cli("advise", path, "-f", "json", "--today", TODAY, "--patient", given)
        assert result.exit_code == 0, result.output
        assert secondopinion.Advice.from_json(result.stdout) == secondopinion.advise(mapped(COLON).case)
    lung = cli("advise", path, "-f", "json", "--today", TODAY, "--patient", lung_id)
    assert secondopinion.Advice.from_json(lung.stdout) == secondopinion.advise(mapped(LUNG).case)
    unknown = clean_error(cli("advise", path, "--patient", SECRET), 2, "no Patient in the Bundle has the id")
    assert SECRET not in unknown


def test_focus_picks_the_condition(tmp_path: Path) -> None:
    data = fixture(LUNG)
    hypertension = next(
        e["resource"]["id"]
        for e in data["entry"]
        if e["resource"]["resourceType"] == "Condition" and e["resource"]["code"]["text"].startswith("Essential")
    )
    for given in (hypertension, f"Condition/{hypertension}", f"urn:uuid:{hypertension}"):
        result = cli("advise", LUNG, "-f", "json", "--mapping", "--today", TODAY, "--focus", given)
        assert result.exit_code == 0, result.output
        report = json.loads(result.stdout)["fhir_mapping"]
        assert report["focus"]["reason"] == "the focus condition named by the caller"
        assert secondopinion.Advice.from_json(result.stdout) == secondopinion.advise(
            mapped(LUNG, focus=hypertension).case
        )
    missing = clean_error(cli("advise", LUNG, "--focus", SECRET), 2, "--focus names no active Condition")
    assert SECRET not in missing


@pytest.mark.parametrize("option", [["--patient", "p1"], ["--focus", "c1"], ["--mapping"]])
def test_fhir_options_on_a_case_file_are_a_usage_error(option: list[str]) -> None:
    clean_error(cli("advise", CANCER_CASE, *option), 2, "only apply to a FHIR Bundle")


# --------------------------------------------------------------------------- errors


def test_invalid_fhir_lists_paths_never_values(tmp_path: Path) -> None:
    data = fixture(COLON)
    data["entry"][0]["resource"]["birthDate"] = SECRET
    data["entry"][1]["resource"]["status"] = 7
    data["entry"].append({"resource": {"resourceType": "Condition", "code": {"text": SECRET}}})
    stderr = clean_error(
        cli("advise", write(tmp_path, data)),
        1,
        "bundle.json: invalid FHIR data",
        "@ Bundle.entry[0].resource.birthDate",
        f"@ Bundle.entry[{len(data['entry']) - 1}].resource.subject",
    )
    assert stderr.startswith("error: ")
    assert SECRET not in stderr


def test_a_fhir_resource_that_is_not_a_bundle_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, {"resourceType": "Patient", "id": "p1", "name": [{"family": SECRET}]})
    stderr = clean_error(cli("advise", path), 1, "a FHIR resource, not a Bundle")
    assert SECRET not in stderr and "Patient" not in stderr


def test_without_the_fhir_extra_one_line_names_the_install(monkeypatch: pytest.MonkeyPatch) -> None:
    # As without the extra: fhir.resources cannot be imported, and secondopinion.fhir is not loaded yet.
    monkeypatch.setitem(sys.modules, "fhir.resources", None)
    monkeypatch.delitem(sys.modules, "secondopinion.fhir")
    monkeypatch.delattr(secondopinion, "fhir")
    result = cli("advise", COLON)
    stderr = clean_error(result, 2, 'pip install "secondopinion[fhir]"')
    assert len(stderr.strip().splitlines()) == 1
    assert cli("advise", CANCER_CASE).exit_code == 0  # case files do not need it


def test_a_case_file_does_not_import_fhir() -> None:
    """The fast path stays fast: secondopinion.fhir (and fhir.resources) load only for a Bundle."""
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from secondopinion.cli import app\n"
        f"result = CliRunner().invoke(app, ['advise', {str(CANCER_CASE)!r}, '-f', 'json'])\n"
        "assert result.exit_code == 0, result.output\n"
        "print(sorted(m for m in sys.modules if m.startswith(('fhir', 'secondopinion.fhir'))))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


# --------------------------------------------------------------------------- explain, interview


def test_explain_a_bundle() -> None:
    result = cli("explain", COLON, "--today", TODAY)
    assert result.exit_code == 0, result.output
    advice = secondopinion.advise(mapped(COLON).case)
    for rule_id in advice.recommendations[0].rule_ids:
        assert rule_id in result.stdout
    assert "Read from a FHIR R4B Bundle" in result.stderr
    as_json = cli("explain", COLON, "-f", "json", "--mapping", "--today", TODAY)
    assert as_json.exit_code == 0, as_json.output
    data = json.loads(as_json.stdout)
    assert [e["kind"] for e in data["explanations"]] == list(advice.kinds)
    assert data["fhir_mapping"] == mapped(COLON).report()


def test_interview_starts_from_a_bundle(tmp_path: Path) -> None:
    saved = tmp_path / "case.json"
    result = cli("interview", PROSTATE, "--out", saved, "--today", TODAY, "--mapping", stdin="d\n")
    assert result.exit_code == 0, result.output
    assert "Read from a FHIR R4B Bundle" in result.stderr
    assert "What was read from the FHIR Bundle" in result.stdout
    assert "Your plan so far: Get a second opinion" in result.stdout
    assert json.loads(saved.read_text("utf-8")) == dump_case(mapped(PROSTATE).case)


def test_the_interview_hint_repeats_the_options_that_read_the_bundle(tmp_path: Path) -> None:
    colon = fixture(COLON)
    lone = {"fullUrl": "urn:uuid:lone-patient", "resource": {"resourceType": "Patient", "id": "lone-patient"}}
    path = write(tmp_path, {**colon, "entry": [*colon["entry"], lone]}, "two people.json")
    result = cli("advise", path, "--today", TODAY, "--patient", "lone-patient")
    assert result.exit_code == 0, result.output
    hint = f"secondopinion interview '{path}' --patient lone-patient --today {TODAY}"
    assert hint in result.stderr
    saved = tmp_path / "case.json"
    again = cli("interview", path, "--patient", "lone-patient", "--today", TODAY, "--out", saved, stdin="d\n")
    assert again.exit_code == 0, again.output
    assert json.loads(saved.read_text("utf-8")) == dump_case(mapped(path, patient_id="lone-patient").case)
