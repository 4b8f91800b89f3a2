"""Review round 3: advice on FHIR data shaped like real records, read as a patient and as a clinician.

Each fixture in tests/fixtures/fhir/ (written by build.py) holds a shape real
Synthea or US Core data has and the first fixtures did not: many chronic and
minor conditions with social findings, a serious diagnosis buried among
fifteen others, a patient in the emergency department now, cancers that are
refuted, entered in error, resolved or abated, a child, and two clinics that
disagree. The tests say what advice is defensible for each.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fhir.resources")

from secondopinion.advisor import default_advisor
from secondopinion.fhir import FhirCase, case_from_bundle
from secondopinion.recommendations import Advice, Priority

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "fhir"
TODAY = dt.date(2026, 11, 22)
SNOMED = "http://snomed.info/sct"


def fixture(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / name).read_text("utf-8"))
    return data


def path_of(data: dict[str, Any], rid_suffix: str) -> str:
    """The report path of the entry whose Condition code display starts with ``rid_suffix``."""
    for i, entry in enumerate(data["entry"]):
        res = entry["resource"]
        if res["resourceType"] == "Condition" and res["code"]["coding"][0]["display"].startswith(rid_suffix):
            return f"Bundle.entry[{i}].resource"
    raise AssertionError(rid_suffix)


def reasons(result: FhirCase) -> dict[str, str]:
    return {u.fhir_path: u.reason for u in result.unmapped}


def advise(result: FhirCase) -> Advice:
    return default_advisor().advise(result.case)


def kinds(advice: Advice) -> list[str]:
    return [r.kind for r in advice.recommendations]


def test_chronic_and_minor_conditions_with_social_findings_get_proportionate_advice() -> None:
    data = fixture("synthea-chronic-and-social.json")
    result = case_from_bundle(data, today=TODAY)
    # Every Synthea social finding is set aside as not a diagnosis, never chosen as the focus.
    findings = [
        f"Bundle.entry[{i}].resource"
        for i, e in enumerate(data["entry"])
        if e["resource"]["resourceType"] == "Condition"
        and e["resource"]["code"]["coding"][0]["display"].endswith(("(finding)", "(situation)"))
        and not e["resource"]["code"]["coding"][0]["display"].startswith(("Prediabetes", "Body mass index"))
    ]
    assert len(findings) == 9
    why = reasons(result)
    assert all(why[p] == "a social or administrative finding, not a diagnosis: not used" for p in findings)
    assert result.focus is not None and result.focus.fhir_path not in findings
    # The focus is one of the long-standing conditions (a known chronic code comes before a cold),
    # it is not cancer, and nothing about it is urgent: no question "is it cancer?", no alarm.
    chronic = {path_of(data, name) for name in ("Essential hypertension", "Prediabetes", "Body mass index")}
    assert result.focus.fhir_path in chronic
    case = result.case
    assert case.diagnosis.seriousness.value not in ("serious", "life_threatening")
    assert case.diagnosis.cancer.value == "no"
    assert case.treatment.urgency.value == "unknown"  # the ER visit for the sprain is two years old
    advice = advise(result)
    assert not {"get_care_now", "act_quickly", "seek_second_opinion", "set_deadline"} & set(kinds(advice))
    assert all(r.priority in (Priority.LOW, Priority.MEDIUM) for r in advice.recommendations)


def test_only_minor_conditions_left_get_an_optional_second_opinion() -> None:
    data = fixture("synthea-chronic-and-social.json")
    chronic = ("Essential hypertension", "Prediabetes", "Body mass index")
    data["entry"] = [
        e
        for e in data["entry"]
        if e["resource"]["resourceType"] != "Condition"
        or not e["resource"]["code"]["coding"][0]["display"].startswith(chronic)
    ]
    result = case_from_bundle(data, today=TODAY)
    assert result.focus is not None and result.focus.fhir_path == path_of(data, "Viral sinusitis")
    assert (result.case.diagnosis.seriousness.value, result.case.diagnosis.cancer.value) == ("minor", "no")
    assert kinds(advise(result)) == ["second_opinion_optional"]


def test_a_cancer_buried_among_fifteen_conditions_is_the_focus() -> None:
    data = fixture("synthea-buried-cancer.json")
    result = case_from_bundle(data, today=TODAY)
    assert result.focus is not None
    assert result.focus.fhir_path == path_of(data, "Malignant tumor of pancreas")
    assert (result.case.diagnosis.cancer.value, result.case.diagnosis.seriousness.value) == ("yes", "serious")
    assert "seek_second_opinion" in kinds(advise(result))


def test_a_rare_disease_wins_over_a_more_recent_sore_throat() -> None:
    data = fixture("synthea-buried-unknown-code.json")
    result = case_from_bundle(data, today=TODAY)
    assert result.focus is not None
    assert result.focus.fhir_path == path_of(data, "Amyotrophic lateral sclerosis")
    assert result.focus.reason.startswith("a rare disease or spine problem comes before")
    assert result.case.diagnosis.rare.value == "yes"


def unknown_condition(code: str, display: str, onset: str) -> dict[str, Any]:
    return {
        "resourceType": "Condition",
        "clinicalStatus": {
            "coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]
        },
        "code": {"coding": [{"system": SNOMED, "code": code, "display": display}]},
        "subject": {"reference": "Patient/p1"},
        "onsetDateTime": onset,
    }


def unknown_codes_bundle(*conditions: dict[str, Any]) -> dict[str, Any]:
    """A patient born in 1960 with Conditions whose codes are in no value set."""
    patient = {"resourceType": "Patient", "id": "p1", "birthDate": "1960-01-01"}
    return {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"resource": patient}, *({"resource": c} for c in conditions)],
    }


FIBROSIS = ("28168000", "Idiopathic pulmonary fibrosis (disorder)", "2026-03-01")
PROSTATE = ("126906006", "Neoplasm of prostate (disorder)", "2026-06-01")


def test_a_focus_chosen_only_by_date_among_unknown_codes_says_it_is_a_guess() -> None:
    data = unknown_codes_bundle(
        unknown_condition(*FIBROSIS),
        unknown_condition(*PROSTATE),
        unknown_condition("444814009", "Viral sinusitis (disorder)", "2026-11-01"),
    )
    result = case_from_bundle(data, today=TODAY)
    assert result.focus is not None
    assert result.focus.fhir_path == "Bundle.entry[2].resource"  # the sinusitis is known to be minor: never first
    assert "a guess" in result.focus.reason
    focus_items = [u for u in result.unmapped if u.fhir_path == "focus"]
    assert len(focus_items) == 1 and focus_items[0].category == "not_understood"
    assert "--focus" in focus_items[0].reason or "focus" in focus_items[0].reason
    # A single active condition, or one the codes rank first, is no guess.
    one = case_from_bundle({**data, "entry": data["entry"][:2]}, today=TODAY)
    assert one.focus is not None and "guess" not in one.focus.reason
    assert not [u for u in one.unmapped if u.fhir_path == "focus"]


def test_a_patient_in_the_emergency_department_now_is_told_to_get_care_first() -> None:
    result = case_from_bundle(fixture("synthea-emergency-heart-attack.json"), today=TODAY)
    case = result.case
    assert case.treatment.urgency.value == "emergency"
    source = {m.case_field: m.fhir_path for m in result.mapped}["treatment.urgency"]
    assert source.endswith(".class")
    advice = advise(result)
    assert kinds(advice)[0] == "get_care_now"
    # Nothing that sends the patient to book a visit or shop for a doctor before care.
    assert not {"seek_second_opinion", "act_quickly", "set_deadline", "check_credentials"} & set(kinds(advice))


@pytest.mark.parametrize(
    ("status", "klass", "urgent"),
    [
        ("in-progress", "EMER", True),
        ("arrived", "EMER", True),
        ("triaged", "EMER", True),
        ("finished", "EMER", False),
        ("cancelled", "EMER", False),
        ("in-progress", "AMB", False),
        ("in-progress", "IMP", False),
    ],
)
def test_only_an_emergency_encounter_going_on_now_makes_it_an_emergency(status: str, klass: str, urgent: bool) -> None:
    data = fixture("synthea-emergency-heart-attack.json")
    for entry in data["entry"]:
        res = entry["resource"]
        if res["resourceType"] == "Encounter" and res["class"]["code"] == "EMER":
            res["status"] = status
            res["class"]["code"] = klass
    result = case_from_bundle(data, today=TODAY)
    assert (result.case.treatment.urgency.value == "emergency") is urgent


def test_an_emergency_encounter_of_another_patient_is_not_used() -> None:
    data = fixture("synthea-emergency-heart-attack.json")
    for entry in data["entry"]:
        if entry["resource"]["resourceType"] == "Encounter" and entry["resource"]["class"]["code"] == "EMER":
            entry["resource"]["subject"] = {"reference": "Patient/someone-else"}
    assert case_from_bundle(data, today=TODAY).case.treatment.urgency.value != "emergency"


def test_refuted_entered_in_error_resolved_and_abated_cancers_never_drive_advice() -> None:
    data = fixture("conditions-not-active.json")
    result = case_from_bundle(data, today=TODAY)
    assert result.focus is not None
    assert result.focus.fhir_path == path_of(data, "Essential hypertension")
    assert result.case.diagnosis.cancer.value == "no"
    why = reasons(result)
    assert why[path_of(data, "Malignant melanoma")] == "condition not active (it has an end date): not used"
    assert why[path_of(data, "Malignant neoplasm of breast")] == "condition refuted or entered in error: not used"
    assert why[path_of(data, "Malignant tumor of pancreas")] == "condition refuted or entered in error: not used"
    assert why[path_of(data, "Malignant neoplasm of colon")] == "condition not active: not used"
    assert "seek_second_opinion" not in kinds(advise(result))


def test_a_child_with_leukemia_is_a_child_with_a_serious_cancer() -> None:
    result = case_from_bundle(fixture("synthea-child-leukemia.json"), today=TODAY)
    case = result.case
    assert case.patient.age_group.value == "child"
    assert (case.diagnosis.cancer.value, case.diagnosis.seriousness.value) == ("yes", "serious")
    sources = {m.case_field: m.fhir_path for m in result.mapped}
    assert not sources["diagnosis.cancer"].endswith("(text)")  # read from the code, not guessed from text
    assert case.treatment.kind.value == "chemotherapy"
    advice = advise(result)
    assert "get_care_now" not in kinds(advice)  # urgent is not an emergency


# --------------------------------------------------------------------------- as a user runs it


def run_cli(*args: str | Path) -> Any:
    from typer.testing import CliRunner

    from secondopinion.cli import app

    return CliRunner().invoke(app, [str(a) for a in args])


def test_the_command_line_leads_a_patient_in_the_emergency_department_to_care() -> None:
    result = run_cli("advise", FIXTURES / "synthea-emergency-heart-attack.json", "--today", "2026-11-22")
    assert result.exit_code == 0, result.output
    first = result.stdout.splitlines()[0]
    assert "emergency" in first and "do not put off care" in first
    assert "Book the visit" not in result.stdout


def test_the_command_line_says_when_the_focus_is_a_guess(tmp_path: Path) -> None:
    data = unknown_codes_bundle(unknown_condition(*FIBROSIS), unknown_condition(*PROSTATE))
    path = tmp_path / "bundle.json"
    path.write_text(json.dumps(data), "utf-8")
    result = run_cli("advise", path, "--today", "2026-11-22")
    assert result.exit_code == 0, result.output
    assert "a guess: name the right one with --focus" in result.stderr
    assert "fibrosis" not in result.stderr.casefold()  # paths, never values
    named = run_cli("advise", path, "--today", "2026-11-22", "--focus", "Bundle.entry[1].resource")
    assert named.exit_code == 0 and "guess" not in named.stderr


def test_two_clinics_that_disagree_are_named_in_the_report_not_hidden() -> None:
    data = fixture("uscore-conflicting-diagnoses.json")
    result = case_from_bundle(data, today=TODAY)
    cancer, benign = path_of(data, "Malignant neoplasm of breast"), path_of(data, "Fibroadenoma of breast")
    assert result.focus is not None and result.focus.fhir_path == cancer  # the mastectomy is for it
    assert result.case.diagnosis.certainty.value == "probable"  # the cancer is provisional
    other = next(u for u in result.unmapped if u.fhir_path == benign)
    assert other.category == "not_understood"
    assert "another doctor's view of the same problem" in other.reason
    assert result.case.opinions and len(result.case.opinions) == 1  # no conflict is made up from the data
    assert "seek_second_opinion" in kinds(advise(result))


def test_an_r5_emergency_encounter_class_list_is_read_too() -> None:
    act = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
    data = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [
            {"resource": {"resourceType": "Patient", "id": "p1", "birthDate": "1960-01-01"}},
            {
                "resource": {
                    "resourceType": "Encounter",
                    "id": "e1",
                    "status": "in-progress",
                    "class": [{"coding": [{"system": act, "code": "EMER"}]}],
                    "subject": {"reference": "Patient/p1"},
                    "actualPeriod": {"start": "2026-11-22T02:00:00Z"},
                }
            },
        ],
    }
    result = case_from_bundle(data, fhir_version="R5", today=TODAY)
    assert result.case.treatment.urgency.value == "emergency"
    assert result.summary["Encounter"] == {"mapped": 1, "ignored": 0, "not_understood": 0}
    bad = json.loads(json.dumps(data))
    bad["entry"][1]["resource"]["status"] = "not-a-status"  # a finished or odd visit is never read
    assert case_from_bundle(bad, fhir_version="R5", today=TODAY).case.treatment.urgency.value == "unknown"


def test_a_patient_who_has_died_gets_no_advice() -> None:
    from secondopinion.fhir import FhirError, PatientDeceased

    data = fixture("refused/synthea-deceased.json")
    with pytest.raises(PatientDeceased) as caught:
        case_from_bundle(data, today=TODAY)
    assert isinstance(caught.value, FhirError)  # every caller that handles FHIR it cannot advise on handles it
    assert caught.value.path == "Bundle.entry[0].resource.deceasedDateTime"
    assert "2026" not in str(caught.value)  # the path, never the date
    result = run_cli("advise", FIXTURES / "refused/synthea-deceased.json", "--today", "2026-11-22")
    assert result.exit_code == 1 and result.stdout == ""
    assert "the patient has died" in result.stderr and "invalid" not in result.stderr
    alive = json.loads(json.dumps(data))
    del alive["entry"][0]["resource"]["deceasedDateTime"]
    alive["entry"][0]["resource"]["deceasedBoolean"] = False
    assert case_from_bundle(alive, today=TODAY).case.diagnosis.cancer.value == "yes"


def test_a_us_core_sdoh_condition_is_not_a_diagnosis_whatever_its_code() -> None:
    food = unknown_condition("733423003", "Food insecurity (finding)", "2026-11-01")
    food["category"] = [
        {"coding": [{"system": "http://hl7.org/fhir/us/core/CodeSystem/us-core-category", "code": "sdoh"}]}
    ]
    data = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [
            {"resource": {"resourceType": "Patient", "id": "p1", "birthDate": "1960-01-01"}},
            {"resource": food},
            {"resource": unknown_condition("59621000", "Essential hypertension (disorder)", "2010-01-01")},
        ],
    }
    result = case_from_bundle(data, today=TODAY)
    assert result.focus is not None and result.focus.fhir_path == "Bundle.entry[2].resource"
    social = "a social or administrative finding, not a diagnosis: not used"
    assert reasons(result)["Bundle.entry[1].resource"] == social


def test_the_same_diagnosis_recorded_twice_by_two_people_is_no_differing_view() -> None:
    data = fixture("uscore-conflicting-diagnoses.json")
    conditions = [e for e in data["entry"] if e["resource"]["resourceType"] == "Condition"]
    cancer = next(e for e in conditions if e["resource"]["code"]["text"].startswith("Breast cancer"))
    again = json.loads(json.dumps(cancer))
    again["resource"]["id"] = "again"
    again["fullUrl"] = "urn:uuid:again"
    again["resource"]["asserter"] = {"reference": "Practitioner/someone-else"}
    again["resource"]["category"] = [
        {
            "coding": [
                {"system": "http://terminology.hl7.org/CodeSystem/condition-category", "code": "encounter-diagnosis"}
            ]
        }
    ]
    data["entry"].append(again)
    result = case_from_bundle(data, today=TODAY)
    why = reasons(result)
    assert why[f"Bundle.entry[{len(data['entry']) - 1}].resource"].startswith("the same diagnosis recorded again")
    assert "another doctor's view" in why[path_of(data, "Fibroadenoma of breast")]
