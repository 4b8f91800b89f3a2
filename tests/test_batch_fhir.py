"""FHIR Bundles as batch records: population screening from one Bundle per member.

* A record that is a Bundle (or an envelope around one) is mapped with ``case_from_bundle`` and
  advised on: its advice is the library's advice on the mapped case, with the day given once
  per run, the same with one worker and with two, and through the command line.
* Its result line keeps the shape of a case's and adds ``"fhir": {"mapped": N, "not_used": M}``;
  a case record's line is unchanged.
* Invalid FHIR, several patients, a resource that is not a Bundle and a missing ``fhir`` extra are
  ``fhir_error`` lines with line numbers and paths, never a value; records in = results + errors.
* ``--resume`` continues a run of Bundle records exactly.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import secondopinion
from secondopinion.batch import ERROR_KINDS, PARTIAL_SUFFIX, BatchSummary, BundleSpec, batch_files, run_batch
from secondopinion.cli import app

pytest.importorskip("fhir.resources")
from secondopinion.fhir import case_from_bundle

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures" / "fhir"
BUNDLES = sorted(FIXTURES.glob("*.json"))
COLON = FIXTURES / "synthea-colon-cancer-surgery.json"
LUNG = FIXTURES / "synthea-lung-cancer-chemotherapy.json"
CANCER_CASE = ROOT / "examples" / "cases" / "cancer-surgery.json"
TODAY = dt.date(2026, 11, 22)
SECRET = "Tapir-Secret-Value-6620"


def _fixture(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text("utf-8"))
    return data


def _two_patients() -> dict[str, Any]:
    colon, lung = _fixture(COLON), _fixture(LUNG)
    return {**colon, "entry": colon["entry"] + lung["entry"]}


def _bad_bundle() -> dict[str, Any]:
    data = _fixture(COLON)
    data["entry"][0]["resource"]["birthDate"] = SECRET
    data["entry"].append({"resource": {"resourceType": "Condition", "code": {"text": SECRET}}})
    return data


def _records() -> tuple[bytes, dict[int, dict[str, Any]], dict[int, dict[str, Any]]]:
    """The input: each fixture, an envelope, a bad Bundle, two patients, a resource, a case, a blank line.

    Returns the bytes, the Bundles by line number and the case by line number.
    """
    bundles = {i: _fixture(path) for i, path in enumerate(BUNDLES, 1)}
    n = len(bundles)
    lines = [json.dumps(b) for b in bundles.values()]
    bundles[n + 1] = _fixture(LUNG)
    lines.append(json.dumps({"id": "member-17", "case": bundles[n + 1]}))
    lines.append(json.dumps(_bad_bundle()))  # n + 2
    lines.append(json.dumps(_two_patients()))  # n + 3
    lines.append(json.dumps({"resourceType": SECRET, "id": SECRET}))  # n + 4: not a Bundle
    lines.append("")  # n + 5: blank, not a record
    case = json.loads(CANCER_CASE.read_text("utf-8"))
    lines.append(json.dumps(case))  # n + 6
    return ("\n".join(lines) + "\n").encode(), bundles, {n + 6: case}


def _lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines()]


def _run(data: bytes, **options: Any) -> tuple[BatchSummary, str, str]:
    out, errors = io.StringIO(), io.StringIO()
    summary = run_batch(io.BytesIO(data), out, errors, **options)
    return summary, out.getvalue(), errors.getvalue()


def _expected_advice(bundle: dict[str, Any], today: dt.date = TODAY) -> dict[str, Any]:
    advice: dict[str, Any] = secondopinion.advise(case_from_bundle(bundle, today=today).case).to_dict()
    return advice


def _check(out: str, errors: str, summary: BatchSummary) -> None:
    _, bundles, cases = _records()
    n = len(BUNDLES)
    assert summary == BatchSummary(records=n + 5, results=n + 2, errors=3, blank_lines=1)
    results, bad = _lines(out), _lines(errors)
    assert [r["line"] for r in results] == [*bundles, n + 6]  # input order
    assert [e["line"] for e in bad] == [n + 2, n + 3, n + 4]
    for result in results:
        line = result["line"]
        if line in bundles:
            got = case_from_bundle(bundles[line], today=TODAY)
            assert result["advice"] == _expected_advice(bundles[line])
            assert result["fhir"] == {"mapped": len(got.mapped), "not_used": len(got.unmapped)}
            assert set(result) == {"line", "advice", "fhir"} | ({"id"} if line == n + 1 else set())
        else:  # a case record: the line a batch has always written
            assert result == {"line": line, "advice": secondopinion.advise(cases[line]).to_dict()}
    assert results[n]["id"] == "member-17"
    invalid, several, resource = bad
    assert "fhir_error" in ERROR_KINDS and {e["error"] for e in bad} == {"fhir_error"}
    assert invalid["message"].startswith("invalid FHIR data")
    assert "invalid value @ Bundle.entry[0].resource.birthDate" in invalid["problems"]
    assert all("@ Bundle" in p for p in invalid["problems"])
    assert "2 patients" in several["message"] and "one patient per Bundle" in several["message"]
    paths = [f"Bundle.entry[{i}].resource" for i in (0, len(_fixture(COLON)["entry"]))]
    assert several["problems"] == paths and all(p in several["message"] for p in paths)
    assert resource["message"].startswith("a FHIR resource, not a Bundle") and resource["problems"] == []
    ids = [b["entry"][0]["resource"]["id"] for b in (_fixture(COLON), _fixture(LUNG))]
    for value in (SECRET, *ids):
        assert value not in errors
    assert SECRET not in out


@pytest.mark.parametrize("workers", [1, 2])
def test_bundle_records_are_mapped_and_advised_in_order(workers: int) -> None:
    data, _, _ = _records()
    summary, out, errors = _run(data, workers=workers, chunk_size=2, bundles=BundleSpec(TODAY))
    _check(out, errors, summary)


def test_the_day_is_the_one_given_for_the_run() -> None:
    later = dt.date(2027, 6, 1)
    data = json.dumps(_fixture(COLON)).encode() + b"\n"
    _, out, _ = _run(data, workers=1, bundles=BundleSpec(later))
    assert _lines(out)[0]["advice"] == _expected_advice(_fixture(COLON), later)
    # the day matters: the colon fixture's age or days to decide differ from TODAY's
    assert case_from_bundle(_fixture(COLON), today=later).case != case_from_bundle(_fixture(COLON), today=TODAY).case
    _, default_out, _ = _run(data, workers=1)  # default: today, once for the run
    assert _lines(default_out)[0]["advice"] == _expected_advice(_fixture(COLON), dt.date.today())


def test_fhir_version_is_handed_to_the_mapping() -> None:
    coverage = {"resourceType": "Coverage", "status": "active", "kind": "self-pay"}
    coverage["beneficiary"] = {"reference": "Patient/p1"}  # type: ignore[assignment]
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [
            {"resource": {"resourceType": "Patient", "id": "p1", "birthDate": "1970-01-01"}},
            {"resource": coverage},
        ],
    }
    data = json.dumps(bundle).encode() + b"\n"
    _, out, errors = _run(data, workers=1, bundles=BundleSpec(TODAY))  # Coverage.kind is not an R4B element
    assert out == "" and "@ Bundle.entry[1].resource.kind" in errors
    _, out, errors = _run(data, workers=2, bundles=BundleSpec(TODAY, "R5"))
    assert errors == "" and _lines(out)[0]["fhir"]["mapped"] >= 1
    with pytest.raises(ValueError, match="fhir_version"):
        BundleSpec(TODAY, "R6")  # type: ignore[arg-type]


def test_a_missing_fhir_extra_is_an_error_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "secondopinion.fhir", None)  # as if fhir.resources were not installed
    monkeypatch.delattr(secondopinion, "fhir", raising=False)
    case = CANCER_CASE.read_text("utf-8").replace("\n", " ")
    data = json.dumps(_fixture(COLON)).encode() + b"\n" + case.encode() + b"\n"
    summary, out, errors = _run(data, workers=1, bundles=BundleSpec(TODAY))
    assert (summary.records, summary.results, summary.errors) == (2, 1, 1)
    (error,) = _lines(errors)
    assert error == {
        "line": 1,
        "error": "fhir_error",
        "message": 'a FHIR Bundle needs the fhir extra: pip install "secondopinion[fhir]"',
        "problems": [],
    }
    assert _lines(out)[0]["line"] == 2


def test_case_records_never_import_the_fhir_module() -> None:
    script = (
        "import io, sys\n"
        "from secondopinion.batch import run_batch\n"
        f"case = open({str(CANCER_CASE)!r}, 'rb').read().replace(b'\\n', b' ')\n"
        "out, err = io.StringIO(), io.StringIO()\n"
        "s = run_batch(io.BytesIO(case + b'\\n'), out, err, workers=1)\n"
        "print(s.results, 'secondopinion.fhir' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True)
    assert done.stdout.split() == ["1", "False"]


def test_resume_continues_a_run_of_bundle_records_exactly(tmp_path: Path) -> None:
    data, _, _ = _records()
    source = tmp_path / "members.jsonl"
    source.write_bytes(data)
    out, err = tmp_path / "advice.jsonl", tmp_path / "advice.errors.jsonl"
    full = batch_files(source, out, err, workers=1, chunk_size=2, bundles=BundleSpec(TODAY))
    reference = out.read_bytes(), err.read_bytes()
    # an interrupted run: the first three results and the first error written, a torn line after them
    kept_out = b"".join(reference[0].splitlines(keepends=True)[:3]) + b'{"line":9'
    kept_err = reference[1].splitlines(keepends=True)[0]
    out.unlink()
    err.unlink()
    Path(f"{out}{PARTIAL_SUFFIX}").write_bytes(kept_out)
    Path(f"{err}{PARTIAL_SUFFIX}").write_bytes(kept_err)
    resumed = batch_files(source, out, err, workers=2, chunk_size=2, bundles=BundleSpec(TODAY), resume=True)
    assert resumed.complete and resumed.resumed == 3  # lines 1-3; line 4 was not written
    assert (resumed.records, resumed.results, resumed.errors) == (full.records, full.results, full.errors)
    assert (out.read_bytes(), err.read_bytes()) == reference


def test_the_command_line_reads_bundle_records(tmp_path: Path) -> None:
    data, _, _ = _records()
    source = tmp_path / "members.jsonl"
    source.write_bytes(data)
    out, err = tmp_path / "advice.jsonl", tmp_path / "bad.jsonl"
    args = ["batch", str(source), "-o", str(out), "-e", str(err), "--today", TODAY.isoformat(), "--no-progress"]
    result = CliRunner().invoke(app, [*args, "-j", "2"])
    assert result.exit_code == 1, result.output  # bad records: exit 1, as ever
    n = len(BUNDLES)
    assert f"{n + 5} records: {n + 2} advised, 3 errors" in result.stderr
    assert SECRET not in result.output
    _check(out.read_text("utf-8"), err.read_text("utf-8"), BatchSummary(n + 5, n + 2, 3, 1))
    one = CliRunner().invoke(app, [*args, "-j", "1", "-o", str(tmp_path / "one.jsonl"), "-e", str(tmp_path / "e1")])
    assert one.exit_code == 1 and (tmp_path / "one.jsonl").read_bytes() == out.read_bytes()
    r5 = CliRunner().invoke(app, [*args, "--fhir-version", "R5"])
    assert r5.exit_code == 1  # the fixtures are R4 data; R5 reads them or names what it cannot, by path
    assert SECRET not in r5.output and SECRET not in out.read_text("utf-8") + err.read_text("utf-8")
    bad_day = CliRunner().invoke(app, [*args, "--today", "22/11/2026"])
    assert bad_day.exit_code == 2 and "--today must be a date written YYYY-MM-DD" in bad_day.stderr


def test_a_bundle_line_may_be_longer_than_a_case_line() -> None:
    """Synthea's Bundles are often several MB: a line naming a Bundle in its first MAX_LINE_BYTES is read on."""
    spine, colon, lung = _fixture(FIXTURES / "spine-stat-surgery.json"), _fixture(COLON), _fixture(LUNG)
    case = json.loads(CANCER_CASE.read_text("utf-8"))
    case["diagnosis"]["label"] = SECRET + "x" * 5000  # a case line over the line limit
    lines = [json.dumps(colon), json.dumps({"id": 3, "case": spine}), json.dumps(lung), json.dumps(case)]
    sizes = [len(line) for line in lines]
    assert sizes[0] > 4096 and sizes[1] > 4096 and sizes[2] > 16_000 and 4096 < sizes[3] < 16_000
    data = ("\n".join(lines) + "\n").encode()
    summary, out, errors = _run(
        data, workers=1, max_line_bytes=4096, max_bundle_bytes=16_000, bundles=BundleSpec(TODAY)
    )
    assert (summary.records, summary.results, summary.errors) == (4, 2, 2)
    first, second = _lines(out)
    assert (first["line"], first["advice"]) == (1, _expected_advice(colon))
    assert (second["line"], second["id"], second["advice"]) == (2, 3, _expected_advice(spine))
    assert _lines(errors) == [
        {
            "line": 3,
            "error": "line_too_long",
            "message": "a FHIR Bundle line longer than the limit (MAX_BUNDLE_LINE_BYTES)",
            "problems": [],
        },
        {"line": 4, "error": "line_too_long", "message": "line is longer than the limit (MAX_LINE_BYTES)"}
        | {"problems": []},
    ]
    assert SECRET not in out + errors


def test_chunks_close_at_a_byte_budget_too() -> None:
    from secondopinion.batch import _chunks, _Counts, read_records

    data = b"".join(b"x" * size + b"\n" for size in (10, 10, 50, 10, 10, 10))
    chunks = list(_chunks(read_records(io.BytesIO(data)), 4, _Counts(), max_bytes=60))
    assert [[n for n, _ in chunk] for chunk, _ in chunks] == [[1, 2, 3], [4, 5, 6]]
    assert sum(covered for _, covered in chunks) == len(data)


def test_a_patient_who_has_died_is_an_error_line_that_says_so_not_invalid_data() -> None:
    deceased = FIXTURES / "refused" / "synthea-deceased.json"
    data = json.dumps(_fixture(deceased)).encode() + b"\n" + json.dumps(_fixture(COLON)).encode() + b"\n"
    out, errors = io.StringIO(), io.StringIO()
    summary = run_batch(io.BytesIO(data), out, errors, workers=1, bundles=BundleSpec(TODAY))
    assert (summary.records, summary.results, summary.errors) == (2, 1, 1)
    (error,) = [json.loads(line) for line in errors.getvalue().splitlines()]
    assert error["line"] == 1 and error["error"] == "fhir_error"
    assert error["message"] == "the patient has died: no second-opinion advice applies"
    assert error["problems"] and all("@ Bundle.entry" in p for p in error["problems"])
