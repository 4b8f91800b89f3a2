"""FHIR in and out, as a health app would use it.

In: FHIR Bundles (R4B and R5) become cases; what is mapped names its FHIR
element, and what is not mapped is reported with its path and reason, never
its value. Out: advice becomes a GuidanceResponse with a contained
RequestGroup (R4B) or RequestOrchestration (R5), and every emitted resource is
validated by fhir.resources.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
from fhir_prefetch import SEARCHES, prefetch_from_bundle

pytest.importorskip("fhir.resources")
from fhir.resources import get_fhir_model_class as r5_class
from fhir.resources.R4B import get_fhir_model_class as r4b_class

import secondopinion
from secondopinion.fhir import (
    CLINICAL_STATUS,
    KIND_SYSTEM,
    SNOMED,
    VER_STATUS,
    FhirCase,
    FhirError,
    case_from_bundle,
    guidance_response,
)
from secondopinion.recommendations import SetDeadline

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "examples" / "cases").glob("*.json"))
TODAY = dt.date(2026, 11, 22)
SECRET = "Quokka-Secret-Value-5512"
ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
PATIENT = {"reference": "Patient/p1"}


def concept(system: str, code: str, display: str | None = None) -> dict[str, Any]:
    coding: dict[str, Any] = {"system": system, "code": code}
    if display:
        coding["display"] = display
    return {"coding": [coding]}


def bundle(*resources: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": r} for r in resources]}


def patient(birth_date: str = "1971-02-03", pid: str = "p1") -> dict[str, Any]:
    return {"resourceType": "Patient", "id": pid, "birthDate": birth_date, "name": [{"family": SECRET}]}


def condition(
    icd: str | None = "C50.911",
    severity: str | None = "24484000",
    verification: str | None = "confirmed",
    clinical: str = "active",
    subject: dict[str, str] = PATIENT,
) -> dict[str, Any]:
    res: dict[str, Any] = {
        "resourceType": "Condition",
        "subject": subject,
        "clinicalStatus": concept(CLINICAL_STATUS, clinical),
    }
    if icd is not None:
        res["code"] = concept(ICD10CM, icd, "Malignant neoplasm of breast")
    if severity is not None:
        res["severity"] = concept(SNOMED, severity)
    if verification is not None:
        res["verificationStatus"] = concept(VER_STATUS, verification)
    return res


def surgery_request(status: str = "active", when: str | None = "2026-12-22", surgical: bool = True) -> dict[str, Any]:
    res: dict[str, Any] = {
        "resourceType": "ServiceRequest",
        "status": status,
        "intent": "order",
        "subject": PATIENT,
        "category": [concept(SNOMED, "387713003" if surgical else "363679005")],
        "note": [{"text": SECRET}],
    }
    if when is not None:
        res["occurrenceDateTime"] = when
    return res


def coverage_r4(status: str = "active", self_pay: bool = False, end: str | None = None) -> dict[str, Any]:
    res: dict[str, Any] = {
        "resourceType": "Coverage",
        "status": status,
        "beneficiary": PATIENT,
        "payor": [{"reference": "Organization/plan"}],
    }
    if self_pay:
        res["type"] = concept("http://terminology.hl7.org/CodeSystem/coverage-selfpay", "pay")
    if end is not None:
        res["period"] = {"end": end}
    return res


def reasons(result: FhirCase) -> dict[str, str]:
    return {u.fhir_path: u.reason for u in result.unmapped}


def sources(result: FhirCase) -> dict[str, str]:
    return {m.case_field: m.fhir_path for m in result.mapped}


# --------------------------------------------------------------------------- in


def test_r4b_bundle_becomes_a_case_with_provenance_and_report() -> None:
    observation = {"resourceType": "Observation", "status": "final", "code": {"text": SECRET}}
    data = bundle(patient(), condition(), surgery_request(), coverage_r4(), observation)
    result = case_from_bundle(data, today=TODAY)
    case = result.case
    assert case.patient.age_group.value == "adult"
    assert case.diagnosis.seriousness.value == "serious"
    assert case.diagnosis.certainty.value == "confirmed"
    assert case.diagnosis.cancer.value == "yes"
    assert case.diagnosis.cancer_type == "malignant neoplasm of breast"
    assert case.treatment.kind.value == "surgery"
    assert case.treatment.started.value == "no"
    assert case.treatment.days_to_decide == 30
    assert case.insurance.insured.value == "yes"
    assert sources(result) == {
        "patient.age_group": "Bundle.entry[0].resource.birthDate",
        "diagnosis.seriousness": "Bundle.entry[1].resource.severity",
        "diagnosis.certainty": "Bundle.entry[1].resource.verificationStatus",
        "diagnosis.cancer": "Bundle.entry[1].resource.code",
        "diagnosis.cancer_type": "Bundle.entry[1].resource.code",
        "treatment.kind": "Bundle.entry[2].resource.category",
        "treatment.started": "Bundle.entry[2].resource.status",
        "treatment.days_to_decide": "Bundle.entry[2].resource.occurrenceDateTime",
        "insurance.insured": "Bundle.entry[3].resource.status",
        "opinions[0].diagnosis_code": "Bundle.entry[1].resource.code",
        "opinions[0].diagnosis_code_system": "Bundle.entry[1].resource.code",
    }
    assert (case.opinions[0].diagnosis_code, case.opinions[0].diagnosis_code_system.value) == ("C50911", "icd10cm")
    # An Observation is not relevant: counted in the summary, not listed line by line.
    assert reasons(result) == {}
    assert result.summary["Observation"] == {"mapped": 0, "ignored": 1, "not_understood": 0}
    assert result.summary["Condition"] == {"mapped": 1, "ignored": 0, "not_understood": 0}
    assert result.focus is not None and result.focus.fhir_path == "Bundle.entry[1].resource"
    assert result.focus.reason == "the only active condition"
    assert SECRET not in json.dumps(result.report())


def test_the_mapped_case_gets_the_same_advice_as_the_same_facts_typed_in() -> None:
    result = case_from_bundle(bundle(patient(), condition(), surgery_request(), coverage_r4()), today=TODAY)
    typed = {
        "diagnosis": {"seriousness": "serious", "certainty": "confirmed", "cancer": "yes"},
        "treatment": {"kind": "surgery", "started": "no", "days_to_decide": 30},
        "patient": {"age_group": "adult"},
        "insurance": {"insured": "yes"},
    }
    advice = secondopinion.advise(result.case)
    assert advice.kinds == secondopinion.advise(typed).kinds
    assert "seek_second_opinion" in advice.kinds


def test_r5_bundle_with_planned_procedure_and_self_pay() -> None:
    procedure = {
        "resourceType": "Procedure",
        "status": "preparation",
        "subject": PATIENT,
        "category": [concept(SNOMED, "387713003")],
        "occurrencePeriod": {"start": "2027-01-01T09:00:00Z"},
    }
    coverage = {"resourceType": "Coverage", "status": "active", "kind": "self-pay", "beneficiary": PATIENT}
    data = bundle(patient("2016-07-01"), condition("M51.16", severity="6736007"), procedure, coverage)
    result = case_from_bundle(json.dumps(data), fhir_version="R5", today=TODAY)
    case = result.case
    assert case.patient.age_group.value == "child"
    assert case.diagnosis.seriousness.value == "moderate"
    assert (case.diagnosis.cancer.value, case.diagnosis.spine.value) == ("no", "yes")
    assert case.treatment.kind.value == "surgery"
    assert case.treatment.days_to_decide == 40
    assert case.patient.pays_out_of_pocket.value == "yes"
    assert case.insurance.insured.value == "no"  # the only active Coverage is self-pay
    assert sources(result)["insurance.insured"] == "Bundle.entry[3].resource.kind"
    assert sources(result)["treatment.days_to_decide"] == "Bundle.entry[2].resource.occurrencePeriod.start"
    assert result.unmapped == ()


@pytest.mark.parametrize(
    ("birth_date", "age_group"),
    [
        ("2000-01-01", "adult"),
        ("2015", "child"),
        ("1990-06", "adult"),
        ("2008-11-22", "adult"),
        ("2008-11-23", "child"),
    ],
)
def test_age_group_from_birth_date(birth_date: str, age_group: str) -> None:
    assert case_from_bundle(bundle(patient(birth_date)), today=TODAY).case.patient.age_group.value == age_group


def test_a_partial_birth_date_that_cannot_tell_is_reported() -> None:
    result = case_from_bundle(bundle(patient("2008")), today=TODAY)
    assert result.case.patient.age_group.value == "unknown"
    assert reasons(result) == {"Bundle.entry[0].resource.birthDate": "partial birth date: cannot tell child from adult"}


def test_conditions_not_used_are_reported() -> None:
    data = bundle(
        patient(),
        condition("C50.911", verification="refuted"),
        condition("J45.909", clinical="resolved"),
        condition("C61", subject={"reference": "Patient/someone-else"}),
        condition("K80.20", severity="255604002"),
        condition("I21.9", severity="442452003"),
    )
    result = case_from_bundle(data, today=TODAY)
    assert result.case.diagnosis.seriousness.value == "life_threatening"
    assert result.case.diagnosis.cancer.value == "no"
    got = reasons(result)
    assert got["Bundle.entry[1].resource"] == "condition refuted or entered in error: not used"
    assert got["Bundle.entry[2].resource"] == "condition not active: not used"
    assert got["Bundle.entry[3].resource"] == "condition of another patient: not used"
    assert "another condition was chosen" in got["Bundle.entry[4].resource"]
    assert sources(result)["diagnosis.seriousness"] == "Bundle.entry[5].resource.severity"
    assert result.focus is not None and result.focus.fhir_path == "Bundle.entry[5].resource"
    assert result.focus.reason.startswith("the most serious")
    assert result.summary["Condition"] == {"mapped": 1, "ignored": 4, "not_understood": 0}


@pytest.mark.parametrize(
    ("code", "cancer", "reported"),
    [
        ("C34.90", "yes", False),
        ("D05.10", "unknown", True),
        ("R10.9", "unknown", True),
        ("K35.80", "no", False),
    ],
)
def test_cancer_is_read_from_icd10_chapters_only(code: str, cancer: str, reported: bool) -> None:
    result = case_from_bundle(bundle(condition(code)), today=TODAY)
    assert result.case.diagnosis.cancer.value == cancer
    assert ("Bundle.entry[0].resource.code" in reasons(result)) is reported


def test_codes_in_no_value_set_leave_cancer_unknown_and_say_so() -> None:
    res = condition(icd=None, severity="99999999", verification="weird-status")
    res["code"] = concept(SNOMED, "118940003")  # a disorder of the nervous system: in no shipped value set
    result = case_from_bundle(bundle(res), today=TODAY)
    assert result.case.diagnosis.cancer.value == "unknown"
    assert result.case.diagnosis.seriousness.value == "unknown"
    assert set(reasons(result)) == {
        "Bundle.entry[0].resource.code",
        "Bundle.entry[0].resource.severity",
        "Bundle.entry[0].resource.verificationStatus",
    }


def test_requests_and_coverage_that_do_not_map_are_reported() -> None:
    data = bundle(
        patient(),
        surgery_request(status="completed"),
        surgery_request(surgical=False),
        surgery_request(when="2026-01-01"),
        surgery_request(when="2027-02"),
        coverage_r4(status="cancelled"),
        coverage_r4(end="2025-12-31"),
    )
    result = case_from_bundle(data, today=TODAY)
    assert result.case.treatment.kind.value == "surgery"
    assert result.case.treatment.days_to_decide is None
    assert result.case.insurance.insured.value == "unknown"
    assert reasons(result) == {
        "Bundle.entry[1].resource": "ServiceRequest is not planned or in preparation (status): not used",
        "Bundle.entry[2].resource": "ServiceRequest is not surgery, chemotherapy or radiation by its codes: not used",
        "Bundle.entry[3].resource.occurrenceDateTime": "planned date is not in the future: time to decide left unknown",
        "Bundle.entry[4].resource": "the case holds one treatment: another planned treatment was used",
        "Bundle.entry[5].resource": "coverage is not active: not used",
        "Bundle.entry[6].resource.period": "coverage period has ended: not used",
    }
    assert result.summary["ServiceRequest"] == {"mapped": 1, "ignored": 2, "not_understood": 1}


def test_several_patients_need_a_patient_id() -> None:
    data = bundle(patient("2015-01-01", "kid"), patient("1960-01-01", "p1"))
    unsure = case_from_bundle(data, today=TODAY)
    assert unsure.case.patient.age_group.value == "unknown"
    assert len(unsure.unmapped) == 2
    chosen = case_from_bundle(data, today=TODAY, patient_id="kid")
    assert chosen.case.patient.age_group.value == "child"
    assert reasons(chosen) == {"Bundle.entry[1].resource": "another patient: not used"}


def test_invalid_fhir_raises_with_paths_and_never_values() -> None:
    bad_patient = {"resourceType": "Patient", "birthDate": SECRET, "gender": 7}
    bad_condition = {"resourceType": "Condition", "code": {"text": SECRET}}
    with pytest.raises(FhirError) as info:
        case_from_bundle(bundle(bad_patient, bad_condition), today=TODAY)
    problems = info.value.problems
    assert "invalid value @ Bundle.entry[0].resource.birthDate" in problems
    assert "Input should be a valid string @ Bundle.entry[0].resource.gender" in problems
    assert any(p.endswith("@ Bundle.entry[1].resource.subject") for p in problems)
    assert SECRET not in str(info.value)


@pytest.mark.parametrize(
    "data",
    [
        "{not json",
        {"resourceType": "Patient"},
        {"resourceType": "Bundle", "entry": {"resource": {}}},
        {"resourceType": "Bundle", "entry": [{"resource": {"no": "type"}}]},
        ["Bundle"],
    ],
)
def test_data_that_is_not_a_bundle_is_refused(data: Any) -> None:
    with pytest.raises(FhirError):
        case_from_bundle(data, today=TODAY)


def test_unknown_fhir_version_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown FHIR version"):
        case_from_bundle(bundle(), fhir_version="R6")  # type: ignore[arg-type]


# --------------------------------------------------------------------------- out


@pytest.mark.parametrize("version", ["R4B", "R5"])
@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_guidance_response_is_valid_fhir_with_one_action_per_recommendation(path: Path, version: str) -> None:
    advisor = secondopinion.default_advisor()
    advice = advisor.advise(path.read_text("utf-8"))
    when = dt.datetime(2026, 11, 22, 12, 0, tzinfo=dt.UTC)
    out = guidance_response(
        advice,
        fhir_version=version,  # type: ignore[arg-type]
        rulebook=advisor.rulebook,
        subject="Patient/p1",
        request_id="d1577c69-dfbe-44ad-ba6d-3e05e953b2ea",
        occurred=when,
    )
    get_class = r4b_class if version == "R4B" else r5_class
    get_class("GuidanceResponse").model_validate_json(json.dumps(out))
    plan = out["contained"][0]
    plan_type = "RequestGroup" if version == "R4B" else "RequestOrchestration"
    assert plan["resourceType"] == plan_type
    get_class(plan_type).model_validate(plan)
    result = out["result"] if version == "R4B" else out["result"][0]
    assert result == {"reference": "#plan"}
    assert out["status"] == "success"
    assert out["subject"] == {"reference": "Patient/p1"}
    assert out["requestIdentifier"]["value"] == "urn:uuid:d1577c69-dfbe-44ad-ba6d-3e05e953b2ea"
    assert advice.disclaimer in json.dumps(out["note"])
    actions = plan["action"]
    assert [a["title"] for a in actions] == [r.title for r in advice.recommendations]
    for action, rec in zip(actions, advice.recommendations, strict=True):
        assert action["description"] == rec.detail
        assert action["code"][0]["coding"][0] == {
            "system": KIND_SYSTEM,
            "code": rec.kind,
            "display": rec.kind.replace("_", " ").capitalize(),
        }
        expected_priority = {"critical": "asap", "high": "urgent", "medium": "routine", "low": "routine"}
        assert action["priority"] == expected_priority[rec.priority.value]
        docs = action["documentation"]
        citations = [d for d in docs if d["type"] == "citation"]
        assert [d["label"] for d in citations] == [s.file for s in rec.sources]
        rules = [d for d in docs if d["type"] == "documentation"]
        assert [d["label"] for d in rules] == list(rec.rule_ids)
        assert all(d["document"]["url"].startswith("https://github.com/") for d in rules)
        assert [d["label"] for d in docs if d["type"] == "justification"] == [e.id for e in rec.evidence]
        if isinstance(rec, SetDeadline) and rec.get_opinion_within_days is not None:
            assert action["timingDuration"] == {
                "value": rec.get_opinion_within_days,
                "unit": "days",
                "system": "http://unitsofmeasure.org",
                "code": "d",
            }
        else:
            assert not any(key.startswith("timing") for key in action)


@pytest.mark.parametrize("version", ["R4B", "R5"])
def test_mapping_report_travels_as_a_valid_operation_outcome(version: str) -> None:
    unknown = condition(icd=None)
    unknown["code"] = {"text": SECRET}
    mapped = case_from_bundle(bundle(patient(), condition(), unknown), fhir_version=version, today=TODAY)  # type: ignore[arg-type]
    out = guidance_response(secondopinion.advise(mapped.case), fhir_version=version, mapping=mapped)  # type: ignore[arg-type]
    get_class = r4b_class if version == "R4B" else r5_class
    get_class("GuidanceResponse").model_validate(out)
    report = out["contained"][1]
    get_class("OperationOutcome").model_validate(report)
    message = out["evaluationMessage"][0] if version == "R4B" else out["evaluationMessage"]
    assert message == {"reference": f"#{report['id']}"}
    assert [i["expression"] for i in report["issue"]] == [["Bundle.entry[2].resource"]]
    assert SECRET not in json.dumps(out)


def test_guidance_response_without_recommendations_is_still_valid() -> None:
    out = guidance_response(secondopinion.Advice(), fhir_version="R4B")
    r4b_class("GuidanceResponse").model_validate(out)
    assert "action" not in out["contained"][0]


# --------------------------------------------------------------------------- coded data, as Synthea and US Core send it

FIXTURES = ROOT / "tests" / "fixtures" / "fhir"


def fixture(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / name).read_text("utf-8"))
    return data


def test_synthea_lung_cancer_coded_in_snomed_only_wins_over_older_hypertension() -> None:
    data = fixture("synthea-lung-cancer-chemotherapy.json")
    result = case_from_bundle(data, today=TODAY)
    case = result.case
    assert (case.diagnosis.cancer.value, case.diagnosis.seriousness.value) == ("yes", "serious")
    assert case.diagnosis.cancer_type == "non-small cell lung cancer"
    assert case.treatment.kind.value == "chemotherapy"
    assert case.treatment.started.value == "unknown"  # an active MedicationRequest may or may not have started
    assert case.insurance.insured.value == "unknown"  # Synthea bundles carry no Coverage
    assert (case.opinions[0].diagnosis_code, case.opinions[0].diagnosis_code_system.value) == ("254637007", "snomed")
    entries = data["entry"]
    assert result.focus is not None
    chosen = entries[int(result.focus.fhir_path.split("[")[1].split("]")[0])]["resource"]
    assert chosen["code"]["coding"][0]["code"] == "254637007"
    # The chemotherapy order names the cancer as its reason.
    assert result.focus.reason == "the condition the planned treatment is for (its reason)"
    del data["entry"][21]["resource"]["reasonReference"]
    unreasoned = case_from_bundle(data, today=TODAY)
    assert unreasoned.focus is not None and unreasoned.focus.fhir_path == result.focus.fhir_path
    assert unreasoned.focus.reason.startswith("the most serious")
    kind_source = sources(result)["treatment.kind"]
    assert kind_source.endswith(".medicationCodeableConcept (text)")  # an RxNorm product: its ingredient name
    # Social findings are ignored, never "not understood"; irrelevant types are counted, not listed.
    assert result.summary["Condition"] == {"mapped": 1, "ignored": 5, "not_understood": 0}
    assert result.summary["Observation"]["ignored"] == 12
    assert not any(u.fhir_path in {f"Bundle.entry[{i}].resource" for i in range(8, 20)} for u in result.unmapped)
    assert len(result.unmapped) < 10
    advice = secondopinion.advise(case)
    assert {"seek_second_opinion", "prefer_cancer_center", "expert_review"} <= set(advice.kinds)


def test_synthea_colon_cancer_with_planned_resection_and_insurance() -> None:
    result = case_from_bundle(fixture("synthea-colon-cancer-surgery.json"), today=TODAY)
    case = result.case
    assert case.diagnosis.cancer.value == "yes"
    assert (case.treatment.kind.value, case.treatment.started.value) == ("surgery", "no")
    assert case.treatment.days_to_decide == 36
    assert case.treatment.urgency.value == "can_wait"  # ServiceRequest.priority routine
    assert case.insurance.insured.value == "yes"
    assert sources(result)["treatment.kind"].endswith(".code")
    assert result.summary["Procedure"] == {"mapped": 0, "ignored": 1, "not_understood": 0}  # a done colonoscopy
    advice = secondopinion.advise(case)
    assert {"seek_second_opinion", "prefer_cancer_center", "prefer_in_network", "set_deadline"} <= set(advice.kinds)


def test_us_core_prostate_cancer_with_surgery_in_preparation_and_self_pay() -> None:
    result = case_from_bundle(fixture("uscore-prostate-cancer-self-pay.json"), today=TODAY)
    case = result.case
    assert case.diagnosis.cancer.value == "yes" and case.diagnosis.cancer_type == "prostate cancer"
    assert (case.treatment.kind.value, case.treatment.days_to_decide) == ("surgery", 54)
    assert case.patient.pays_out_of_pocket.value == "yes"
    # The only active Coverage is self-pay: not insured, and the report says why.
    assert case.insurance.insured.value == "no"
    insured = next(m for m in result.mapped if m.case_field == "insurance.insured")
    assert insured.fhir_path == "Bundle.entry[5].resource.type"
    assert insured.reason == "every active Coverage is self-pay: no insurance"
    assert {
        "case_field": "insurance.insured",
        "fhir_path": "Bundle.entry[5].resource.type",
        "reason": insured.reason,
    } in result.report()["mapped"]
    kinds = secondopinion.advise(case).kinds
    assert "manage_costs" in kinds  # "Paying yourself? There are ways to lower the cost"
    assert "check_insurance" not in kinds  # no "Call your insurer before you book" without an insurer


def test_spine_problem_with_a_stat_order_is_an_emergency() -> None:
    result = case_from_bundle(fixture("spine-stat-surgery.json"), today=TODAY)
    case = result.case
    assert (case.diagnosis.spine.value, case.diagnosis.cancer.value) == ("yes", "no")
    assert case.treatment.urgency.value == "emergency"
    assert sources(result)["treatment.urgency"].endswith(".priority")
    reasons_by_path = reasons(result)
    assert "condition not active: not used" in reasons_by_path.values()  # the breast cancer in remission


def test_an_explicit_focus_wins_and_an_unknown_one_is_reported() -> None:
    data = fixture("synthea-lung-cancer-chemotherapy.json")
    conditions = [e["resource"] for e in data["entry"] if e["resource"]["resourceType"] == "Condition"]
    hypertension = next(c["id"] for c in conditions if c["code"]["text"].startswith("Essential"))
    focused = case_from_bundle(data, today=TODAY, focus=f"Condition/{hypertension}")
    assert focused.focus is not None and focused.focus.reason == "the focus condition named by the caller"
    assert focused.case.diagnosis.cancer.value == "no"  # hypertension: a chronic condition by code
    missing = case_from_bundle(data, today=TODAY, focus="Condition/nope")
    assert missing.case.diagnosis.cancer.value == "yes"
    assert "focus" in reasons(missing)


@pytest.mark.parametrize(
    ("first", "second", "winner", "why"),
    [
        (("C50.9", None, "2020-01-01"), ("I10", None, "2026-01-01"), 0, "the most serious"),
        (("I21.9", None, "2020-01-01"), ("C50.9", None, "2026-01-01"), 0, "the most serious"),
        (("C50.9", "24484000", "2020-01-01"), ("M51.16", "24484000", "2026-01-01"), 0, "cancer comes before"),
        (("I10", "24484000", "2026-01-01"), ("K35.80", "24484000", "2020-01-01"), 1, "other conditions come before"),
        (("K35.80", None, "2020-01-01"), ("K80.20", None, "2026-01-01"), 1, "the most recent"),
        (("K35.80", None, None), ("K80.20", None, None), 0, "the first active condition"),
    ],
)
def test_which_condition_the_advice_is_about(
    first: tuple[str, str | None, str | None], second: tuple[str, str | None, str | None], winner: int, why: str
) -> None:
    made = []
    for code, severity, onset in (first, second):
        res = condition(code, severity=severity)
        if onset is not None:
            res["onsetDateTime"] = onset
        made.append(res)
    result = case_from_bundle(bundle(*made), today=TODAY)
    assert result.focus is not None
    assert result.focus.fhir_path == f"Bundle.entry[{winner}].resource"
    assert result.focus.reason.startswith(why), result.focus.reason


@pytest.mark.parametrize(
    ("system", "code", "display", "field", "value"),
    [
        (SNOMED, "363406005", None, "cancer", "yes"),
        (SNOMED, "93761005", None, "cancer", "yes"),
        (ICD10CM, "C18.9", None, "cancer", "yes"),
        (SNOMED, "86044005", None, "rare", "yes"),
        (ICD10CM, "E84.0", None, "rare", "yes"),
        (SNOMED, "279039007", None, "spine", "yes"),
        (SNOMED, "59621000", None, "cancer", "no"),
        (SNOMED, "118940003", None, "cancer", "unknown"),
        ("http://example.org/local-codes", "LC-1", "Adenocarcinoma of pancreas", "cancer", "yes"),
        ("http://example.org/local-codes", "LC-2", "History of malignant neoplasm", "cancer", "unknown"),
    ],
)
def test_value_sets_recognise_codes_and_text_only_as_a_fallback(
    system: str, code: str, display: str | None, field: str, value: str
) -> None:
    res = condition(icd=None, severity=None)
    res["code"] = concept(system, code, display)
    result = case_from_bundle(bundle(res), today=TODAY)
    assert getattr(result.case.diagnosis, field).value == value
    if display is not None and value == "yes":
        assert sources(result)[f"diagnosis.{field}"].endswith(".code (text)")


def test_seriousness_comes_from_the_code_when_no_severity_is_recorded() -> None:
    metastatic = condition("C78.00", severity=None)
    assert case_from_bundle(bundle(metastatic), today=TODAY).case.diagnosis.seriousness.value == "life_threatening"
    cancer = condition("C61", severity=None)
    result = case_from_bundle(bundle(cancer), today=TODAY)
    assert result.case.diagnosis.seriousness.value == "serious"
    assert sources(result)["diagnosis.seriousness"] == "Bundle.entry[0].resource.code"
    stated = condition("C61", severity="255604002")  # a recorded severity always wins
    assert case_from_bundle(bundle(stated), today=TODAY).case.diagnosis.seriousness.value == "minor"


def medication_request(coding: dict[str, Any], status: str = "draft", r5: bool = False) -> dict[str, Any]:
    res: dict[str, Any] = {"resourceType": "MedicationRequest", "status": status, "intent": "order", "subject": PATIENT}
    if r5:
        res["medication"] = {"concept": coding}
    else:
        res["medicationCodeableConcept"] = coding
    return res


@pytest.mark.parametrize(
    ("coding", "kind"),
    [
        (concept("http://www.whocc.no/atc", "L01XA01"), "chemotherapy"),
        (concept("http://www.nlm.nih.gov/research/umls/rxnorm", "56946"), "chemotherapy"),
        ({"text": "Docetaxel 20 MG/ML Injectable Solution"}, "chemotherapy"),
        (concept("http://www.nlm.nih.gov/research/umls/rxnorm", "314231", "Simvastatin 10 MG Oral Tablet"), "unknown"),
    ],
)
@pytest.mark.parametrize("version", ["R4B", "R5"])
def test_chemotherapy_from_a_medication_request_by_class_code_or_name(
    coding: dict[str, Any], kind: str, version: str
) -> None:
    res = medication_request(coding, r5=version == "R5")
    result = case_from_bundle(bundle(res), fhir_version=version, today=TODAY)  # type: ignore[arg-type]
    assert result.case.treatment.kind.value == kind
    if kind == "chemotherapy":
        assert result.case.treatment.started.value == "no"
    else:
        assert result.summary["MedicationRequest"]["not_understood"] == 1


def test_care_plan_activity_and_order_priority_map_to_treatment() -> None:
    plan = {
        "resourceType": "CarePlan",
        "status": "draft",
        "intent": "plan",
        "subject": PATIENT,
        "activity": [
            {"detail": {"code": concept(SNOMED, "367336001"), "status": "completed"}},
            {"detail": {"code": concept(SNOMED, "33195004"), "status": "not-started"}},
        ],
    }
    result = case_from_bundle(bundle(plan), today=TODAY)
    assert result.case.treatment.kind.value == "radiation"
    assert sources(result)["treatment.kind"] == "Bundle.entry[0].resource.activity[1].detail.code"
    for priority, urgency in [("stat", "emergency"), ("asap", "urgent"), ("urgent", "urgent"), ("routine", "can_wait")]:
        request = {**surgery_request(), "priority": priority}
        assert case_from_bundle(bundle(request), today=TODAY).case.treatment.urgency.value == urgency


def test_an_unknown_resource_type_is_never_echoed() -> None:
    weird = {"resourceType": SECRET + "<script>" * 50}
    result = case_from_bundle(bundle(patient(), weird), today=TODAY)
    report = json.dumps(result.report())
    assert SECRET not in report and "<script>" not in report
    assert result.summary["(unknown resource type)"] == {"mapped": 0, "ignored": 1, "not_understood": 0}


def test_every_value_set_is_versioned_sourced_and_consistent() -> None:
    from secondopinion import valuesets

    sets = valuesets.value_sets()
    assert {"cancer", "spine", "rare", "surgery", "chemotherapy", "radiation", "self-pay"} <= set(sets)
    for vs in sets.values():
        assert vs.version and vs.title and vs.sources and vs.limitations, vs.id
        assert vs.codes or vs.ranges, vs.id
        for system, ranges in vs.ranges.items():
            for low, high in ranges:
                assert vs.has_code(system, low) and vs.has_code(system, high), (vs.id, low)
    cancer = sets["cancer"]
    assert cancer.has_code(ICD10CM, "c50.911") and not cancer.has_code(ICD10CM, "D05.10")
    assert not cancer.has_code(ICD10CM, "C9") and not cancer.has_code(SNOMED, "59621000")
    text = (ROOT / "docs" / "interop.md").read_text("utf-8")
    for vs in sets.values():
        assert f"`{vs.id}`" in text, f"docs/interop.md does not list the value set {vs.id}"


def test_a_number_too_long_for_python_is_refused_as_invalid_json() -> None:
    with pytest.raises(FhirError):
        case_from_bundle('{"resourceType": "Bundle", "total": ' + "9" * 5000 + "}")


def test_searchset_warnings_are_not_patient_data() -> None:
    warning = {"resourceType": "OperationOutcome", "issue": [{"severity": "warning", "code": "incomplete"}]}
    data = {
        "resourceType": "Bundle",
        "type": "searchset",
        "entry": [{"resource": condition()}, {"resource": warning, "search": {"mode": "outcome"}}],
    }
    result = case_from_bundle(data, today=TODAY)
    assert result.case.diagnosis.cancer.value == "yes"
    assert result.unmapped == () and "OperationOutcome" not in result.summary


@pytest.mark.parametrize("version", ["R4B", "R5"])
def test_the_condition_a_planned_treatment_is_for_wins_over_a_more_serious_one(version: str) -> None:
    heart_attack = {**condition("I21.9", severity=None), "id": "mi"}
    cancer = {**condition("C18.9", severity=None), "id": "crc"}
    surgery = surgery_request()
    if version == "R4B":
        surgery["reasonReference"] = [{"reference": "Condition/crc"}]
    else:
        surgery["reason"] = [{"reference": {"reference": "Condition/crc"}}]
    result = case_from_bundle(bundle(heart_attack, cancer, surgery), fhir_version=version, today=TODAY)  # type: ignore[arg-type]
    assert result.focus is not None and result.focus.fhir_path == "Bundle.entry[1].resource"
    assert result.focus.reason == "the condition the planned treatment is for (its reason)"
    assert result.case.diagnosis.cancer.value == "yes"
    del surgery["reasonReference" if version == "R4B" else "reason"]
    plain = case_from_bundle(bundle(heart_attack, cancer, surgery), fhir_version=version, today=TODAY)  # type: ignore[arg-type]
    assert plain.focus is not None and plain.focus.fhir_path == "Bundle.entry[0].resource"
    assert plain.case.diagnosis.seriousness.value == "life_threatening"


@pytest.mark.parametrize(
    ("coverages", "insured", "pays", "source"),
    [
        ([coverage_r4(self_pay=True)], "no", "yes", "Bundle.entry[1].resource.type"),
        ([coverage_r4(self_pay=True), coverage_r4()], "yes", "yes", "Bundle.entry[2].resource.status"),
        ([coverage_r4(), coverage_r4(self_pay=True)], "yes", "yes", "Bundle.entry[1].resource.status"),
        ([coverage_r4(self_pay=True), coverage_r4(status="cancelled")], "no", "yes", "Bundle.entry[1].resource.type"),
        ([coverage_r4(self_pay=True), coverage_r4(end="2025-12-31")], "no", "yes", "Bundle.entry[1].resource.type"),
        ([], "unknown", "unknown", None),
    ],
    ids=[
        "self-pay only",
        "self-pay then insurance",
        "insurance then self-pay",
        "insurance cancelled",
        "insurance ended",
        "no coverage",
    ],
)
def test_insured_is_no_only_when_every_active_coverage_is_self_pay(
    coverages: list[dict[str, Any]], insured: str, pays: str, source: str | None
) -> None:
    result = case_from_bundle(bundle(patient(), *coverages), today=TODAY)
    assert result.case.insurance.insured.value == insured
    assert result.case.patient.pays_out_of_pocket.value == pays
    assert sources(result).get("insurance.insured") == source


def test_an_r5_coverage_of_another_kind_leaves_insured_unknown() -> None:
    self_pay = {"resourceType": "Coverage", "status": "active", "kind": "self-pay", "beneficiary": PATIENT}
    other = {**self_pay, "kind": "other"}
    result = case_from_bundle(bundle(patient(), self_pay, other), fhir_version="R5", today=TODAY)
    assert result.case.insurance.insured.value == "unknown"  # "other" may be a payer: cannot say not insured
    assert result.case.patient.pays_out_of_pocket.value == "yes"
    assert reasons(result) == {
        "Bundle.entry[2].resource.kind": "coverage kind is neither insurance nor self-pay: not used"
    }


# --------------------------------------------------------------------------- references as Synthea writes them


def without_full_urls(data: dict[str, Any]) -> dict[str, Any]:
    return {**data, "entry": [{"resource": e["resource"]} for e in data["entry"]]}


@pytest.mark.parametrize("full_urls", [True, False], ids=["fullUrl urn:uuid", "no fullUrl"])
def test_urn_uuid_references_point_at_the_patient_by_full_url_or_id(full_urls: bool) -> None:
    """Synthea: fullUrl urn:uuid:X and subject urn:uuid:X; without the fullUrl, X is the Patient's id."""
    data = fixture("synthea-colon-cancer-surgery.json")
    result = case_from_bundle(data if full_urls else without_full_urls(data), today=TODAY)
    assert result.case.diagnosis.cancer.value == "yes"
    assert result.case.treatment.kind.value == "surgery"
    assert result.case.insurance.insured.value == "yes"
    assert not any("another patient" in u.reason for u in result.unmapped)


def test_a_reference_to_another_urn_uuid_is_another_patient() -> None:
    data = fixture("synthea-colon-cancer-surgery.json")
    for entry in data["entry"]:
        if entry["resource"]["resourceType"] == "Condition":
            entry["resource"]["subject"] = {"reference": "urn:uuid:00000000-0000-4000-8000-000000000000"}
    result = case_from_bundle(data, today=TODAY)
    assert result.case.diagnosis.cancer.value == "unknown"
    assert result.summary["Condition"] == {"mapped": 0, "ignored": 4, "not_understood": 0}


def colon_prefetch() -> tuple[str, dict[str, Any]]:
    """The Synthea colon cancer patient as CDS Hooks prefetch: references stay urn:uuid, as Synthea wrote them."""
    searches = {k: v for k, v in SEARCHES.items() if k != "procedures"}
    return prefetch_from_bundle("synthea-colon-cancer-surgery.json", searches)


@pytest.mark.parametrize("patient_id", ["{id}", "Patient/{id}", None])
def test_prefetch_with_urn_uuid_references_maps_like_the_bundle(patient_id: str | None) -> None:
    from secondopinion.fhir import case_from_prefetch

    pid, prefetch = colon_prefetch()
    given = None if patient_id is None else patient_id.format(id=pid)
    result = case_from_prefetch(prefetch, today=TODAY, patient_id=given)
    expected = case_from_bundle(fixture("synthea-colon-cancer-surgery.json"), today=TODAY).case
    assert result.case == expected
    fields = sources(result)
    assert fields["diagnosis.cancer"] == "prefetch.conditions.entry[2].resource.code"
    assert fields["treatment.kind"] == "prefetch.serviceRequests.entry[0].resource.code"
    assert fields["insurance.insured"] == "prefetch.coverage.entry[0].resource.status"


@pytest.mark.parametrize("given", ["{id}", "Patient/{id}", "urn:uuid:{id}"])
def test_patient_id_may_be_the_id_a_reference_or_the_full_url(given: str) -> None:
    data = fixture("synthea-colon-cancer-surgery.json")
    other = fixture("synthea-lung-cancer-chemotherapy.json")
    both = {**data, "entry": data["entry"] + other["entry"]}
    pid = data["entry"][0]["resource"]["id"]
    result = case_from_bundle(both, today=TODAY, patient_id=given.format(id=pid))
    assert result.patient == "Bundle.entry[0].resource"
    assert result.case.treatment.kind.value == "surgery"  # the lung patient's chemotherapy is another patient's
    assert result.case.diagnosis.cancer_type == "malignant neoplasm of colon"
    unsure = case_from_bundle(both, today=TODAY)
    assert unsure.patient is None
