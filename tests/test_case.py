"""The case model: loading, errors by path without values, round trips, schema."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from secondopinion import Case, CaseError, dump_case, load_case
from secondopinion.case import Diagnosis, Seriousness, TreatmentKind, Tri, case_facts
from secondopinion.schema import case_schema

CASES = sorted((Path(__file__).parent.parent / "examples" / "cases").glob("*.json"))


def test_every_part_is_optional_and_defaults_to_unknown() -> None:
    case = load_case({})
    assert case.diagnosis.seriousness is Seriousness.UNKNOWN
    assert case.insurance.covers_second_opinion is Tri.UNKNOWN
    assert case.opinions == ()


def test_load_accepts_case_dict_and_json_text() -> None:
    data = {"diagnosis": {"seriousness": "serious"}, "opinions": [{"treatment": "surgery"}]}
    from_dict = load_case(data)
    assert load_case(json.dumps(data)) == from_dict
    assert load_case(from_dict) is from_dict
    assert from_dict.opinions[0].treatment is TreatmentKind.SURGERY


def test_bad_case_lists_every_problem_by_path() -> None:
    bad = {
        "diagnosis": {"seriousness": "very bad", "colour": "red"},
        "treatment": {"days_to_decide": -4},
        "opinions": [{"specialty": "wizard"}, {"diagnosis": 12}],
        "extra": True,
    }
    with pytest.raises(CaseError) as info:
        load_case(bad)
    paths = [p.rsplit(" @ ", 1)[1] for p in info.value.problems]
    assert sorted(paths) == sorted(
        [
            "$.diagnosis.seriousness",
            "$.diagnosis",  # unknown field colour
            "$.treatment.days_to_decide",
            "$.opinions[0].specialty",
            "$.opinions[1].diagnosis",
            "$",  # unknown field extra
        ]
    )
    message = str(info.value)
    assert "colour" in message and "extra" in message  # unknown field names are named
    for value in ("very bad", "red", "wizard", "-4"):
        assert value not in message  # never the values


def test_bad_json_and_non_objects_are_case_errors() -> None:
    with pytest.raises(CaseError, match="not valid JSON at line 1"):
        load_case("{nope")
    with pytest.raises(CaseError, match="must be a JSON object"):
        load_case("[1, 2]")
    with pytest.raises(CaseError, match="list of opinions"):
        load_case({"opinions": "one"})


def test_free_text_is_normalised_for_comparison() -> None:
    case = load_case({"opinions": [{"diagnosis": "  Disc   HERNIA "}]})
    assert case.opinions[0].diagnosis == "disc hernia"


@pytest.mark.parametrize("path", CASES, ids=lambda p: p.name)
def test_json_round_trip(path: Path) -> None:
    case = load_case(path.read_text())
    again = load_case(json.dumps(dump_case(case)))
    assert again == case


def test_case_facts_one_per_aspect_and_one_per_opinion() -> None:
    case = load_case({"opinions": [{"treatment": "surgery"}, {"treatment": "medication", "mode": "remote"}]})
    facts = case_facts(case)
    fids = [f["fid"] for f in facts]
    assert fids == [
        "diagnosis",
        "treatment",
        "patient",
        "doctor",
        "insurance",
        "records",
        "summary",
        "opinion[0]",
        "opinion[1]",
    ]
    summary = facts[6]
    assert summary["opinion_count"] == 2 and summary["remote_opinion_count"] == 1
    assert facts[8]["index"] == 1 and facts[8]["treatment"] == "medication"
    assert "days_to_decide" not in facts[1]  # absent values are left out


def test_schema_is_valid_2020_12_and_accepts_every_bundled_case() -> None:
    schema = case_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    assert CASES, "no bundled example cases"
    for path in CASES:
        errors = list(validator.iter_errors(json.loads(path.read_text())))
        assert not errors, (path.name, [e.message for e in errors])


@pytest.mark.parametrize(
    "bad",
    [
        {"diagnosis": {"seriousness": "grave"}},
        {"treatment": {"days_to_decide": -1}},
        {"treatment": {"days_to_decide": "soon"}},
        {"opinions": [{"mode": "telepathy"}]},
        {"unknown_part": {}},
        {"patient": {"age": 7}},
    ],
)
def test_schema_and_loader_both_reject_bad_cases(bad: dict[str, object]) -> None:
    validator = jsonschema.Draft202012Validator(case_schema())
    assert list(validator.iter_errors(bad))
    with pytest.raises(CaseError):
        load_case(bad)


def test_schema_command_prints_the_case_schema(capsys: pytest.CaptureFixture[str]) -> None:
    from typer.testing import CliRunner

    from secondopinion.cli import app

    result = CliRunner().invoke(app, ["schema", "case"])
    assert result.exit_code == 0
    assert json.loads(result.stdout) == case_schema()


def test_case_is_frozen() -> None:
    case = Case()
    with pytest.raises(AttributeError):
        case.diagnosis = None  # type: ignore[misc]


def test_free_text_has_a_length_limit_reported_by_path() -> None:
    with pytest.raises(CaseError) as info:
        load_case({"opinions": [{"institution": "x" * 501}]})
    assert info.value.problems == ("invalid value: text longer than 500 characters @ $.opinions[0].institution",)
    assert load_case({"opinions": [{"institution": "x" * 500}]}).opinions[0].institution == "x" * 500


def test_case_facts_of_a_hand_built_case_hold_plain_values_whether_enum_or_text() -> None:
    as_member = case_facts(Case(diagnosis=Diagnosis(seriousness=Seriousness.SERIOUS)))
    as_text = case_facts(Case(diagnosis=Diagnosis(seriousness="serious")))  # type: ignore[arg-type]
    assert as_member == as_text
    diagnosis = next(f for f in as_member if f["type"] == "diagnosis")
    assert type(diagnosis["seriousness"]) is str and diagnosis["seriousness"] == "serious"
