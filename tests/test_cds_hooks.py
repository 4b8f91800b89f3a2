"""The CDS Hooks 2.0 service, end to end over HTTP.

Most tests call the ASGI app through httpx (its ASGI transport); the last
ones start the real thing, ``secondopinion serve`` under uvicorn on a free
local port, and talk to it with an httpx client as a CDS client would.
Cards are checked against the CDS Hooks 2.0 rules (required fields, summary
under 140 characters, allowed indicators, no null or empty values) and
against the advice the library gives for the same case.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi")
import asyncio

import httpx
from fhir_prefetch import prefetch_from_bundle
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import secondopinion
from secondopinion.cds_hooks import HOOK, KIND_SYSTEM, NOT_ENOUGH_DATA, PREFETCH, SERVICE_ID, SERVICES, cards, summary
from secondopinion.service import MAX_BODY_BYTES, create_app

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "examples" / "cases").glob("*.json"))
SECRET = "Zebra-Secret-Value-9731"
SNOMED = "http://snomed.info/sct"

INDICATOR = {"critical": "critical", "high": "warning", "medium": "info", "low": "info"}


class Client:
    """A synchronous HTTP client for the ASGI app, through httpx's ASGI transport."""

    def __init__(self, app: Any) -> None:
        self.transport = httpx.ASGITransport(app=app)

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        async def call() -> httpx.Response:
            async with httpx.AsyncClient(transport=self.transport, base_url="http://cds.test") as http:
                return await http.request(method, url, **kwargs)

        return asyncio.run(call())

    def get(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", url, **kwargs)


@pytest.fixture(scope="module")
def client() -> Client:
    return Client(create_app(fetch_fhir=False))


def hook_request(context: dict[str, Any], prefetch: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "hook": HOOK,
        "hookInstance": str(uuid.uuid4()),
        "context": {"userId": "Practitioner/example", "patientId": "p1", **context},
    }
    if prefetch is not None:
        body["prefetch"] = prefetch
    body.update(extra)
    return body


def no_null_or_empty(value: Any, path: str = "$") -> list[str]:
    """CDS Hooks: JSON elements are never null or empty (an empty cards list excepted)."""
    bad = []
    if value is None or value in ("", [], {}):
        bad.append(path)
    elif isinstance(value, dict):
        for k, v in value.items():
            bad += no_null_or_empty(v, f"{path}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            bad += no_null_or_empty(v, f"{path}[{i}]")
    return bad


def check_card(card: dict[str, Any]) -> None:
    assert set(card) <= {"uuid", "summary", "detail", "indicator", "source", "suggestions", "links", "extension"}
    assert uuid.UUID(card["uuid"])
    assert 0 < len(card["summary"]) < 140
    assert card["indicator"] in ("info", "warning", "critical")
    assert card["source"]["label"]
    assert card["source"]["url"].startswith("https://")
    assert card["source"]["topic"]["system"] == KIND_SYSTEM
    for link in card.get("links", []):
        assert link["type"] == "absolute"
        assert link["url"].startswith("https://") and link["label"]
    assert no_null_or_empty(card) == []


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_post_a_case_returns_one_card_per_recommendation(client: Client, path: Path) -> None:
    case = json.loads(path.read_text("utf-8"))
    response = client.post(f"/cds-services/{SERVICE_ID}", json=hook_request({"case": case}))
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    advice = secondopinion.advise(case)
    assert [c["source"]["topic"]["code"] for c in body["cards"]] == list(advice.kinds)
    for card, rec in zip(body["cards"], advice.recommendations, strict=True):
        check_card(card)
        assert card["indicator"] == INDICATOR[rec.priority.value]
        assert card["summary"] == summary(rec.title)
        assert rec.detail.split(".")[0] in card["detail"]
        assert advice.disclaimer in card["detail"]
        assert card["extension"]["io.github.secondopinion.recommendation"]["rules"] == list(rec.rule_ids)
        assert len(card["links"]) == len(rec.rule_ids)
        for link, rule_id in zip(card["links"], rec.rule_ids, strict=True):
            assert rule_id in link["label"]
            assert re.fullmatch(r"https://github\.com/.+/blob/main/rules/[\w.-]+\.yaml#L\d+", link["url"])


def test_card_source_names_the_first_source_document(client: Client) -> None:
    case = json.loads(EXAMPLES[0].read_text("utf-8"))
    body = client.post(f"/cds-services/{SERVICE_ID}", json=hook_request({"case": case})).json()
    advisor = secondopinion.default_advisor()
    advice = advisor.advise(case)
    for card, rec in zip(body["cards"], advice.recommendations, strict=True):
        assert card["source"]["label"] == advisor.rulebook.documents[rec.sources[0].file].title


def test_indicators_cover_critical_warning_and_info() -> None:
    """The priority mapping, on advice holding every priority."""
    from secondopinion.recommendations import Advice, Priority, SeekSecondOpinion

    recs = tuple(SeekSecondOpinion(title=f"T {p.value}", detail="D.", priority=p) for p in Priority)
    response = cards(Advice(recommendations=recs))
    assert [c["indicator"] for c in response["cards"]] == ["critical", "warning", "info", "info"]


def test_discovery_document(client: Client) -> None:
    response = client.get("/cds-services")
    assert response.status_code == 200
    services = response.json()["services"]
    assert {s["id"]: s["hook"] for s in services} == SERVICES
    assert [s["hook"] for s in services] == [HOOK, "order-select", "order-sign"]
    for service in services:
        assert service["title"] and service["description"]
        assert service["prefetch"] == PREFETCH
        assert all("{{context.patientId}}" in t or "{{context.encounterId}}" in t for t in service["prefetch"].values())
    assert no_null_or_empty(response.json()) == []


def test_discovery_without_prefetch_and_prefetch_refused() -> None:
    c = Client(create_app(accept_prefetch=False))
    assert "prefetch" not in c.get("/cds-services").json()["services"][0]
    response = c.post(f"/cds-services/{SERVICE_ID}", json=hook_request({}, prefetch={"patient": {}}))
    assert response.status_code == 412
    assert "context.case" in response.json()["message"]


def test_same_hook_instance_same_uuids_other_instance_other_uuids(client: Client) -> None:
    case = json.loads(EXAMPLES[0].read_text("utf-8"))
    first = hook_request({"case": case})
    a = client.post(f"/cds-services/{SERVICE_ID}", json=first).json()["cards"]
    b = client.post(f"/cds-services/{SERVICE_ID}", json=first).json()["cards"]
    c = client.post(f"/cds-services/{SERVICE_ID}", json=hook_request({"case": case})).json()["cards"]
    ids = [x["uuid"] for x in a]
    assert ids == [x["uuid"] for x in b]
    assert len(set(ids)) == len(ids)
    assert not set(ids) & {x["uuid"] for x in c}


def test_no_recommendation_gives_an_empty_card_list() -> None:
    from secondopinion.recommendations import Advice

    assert cards(Advice()) == {"cards": []}


def surgery_prefetch(birth_date: str = "1970-05-04") -> dict[str, Any]:
    subject = {"reference": "Patient/p1"}
    return {
        "patient": {"resourceType": "Patient", "id": "p1", "birthDate": birth_date},
        "conditions": {
            "resourceType": "Bundle",
            "type": "searchset",
            "entry": [
                {
                    "resource": {
                        "resourceType": "Condition",
                        "subject": subject,
                        "clinicalStatus": {
                            "coding": [
                                {"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}
                            ]
                        },
                        "severity": {"coding": [{"system": SNOMED, "code": "24484000"}]},
                        "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "C50.911"}]},
                    }
                }
            ],
        },
        "serviceRequests": {
            "resourceType": "Bundle",
            "type": "searchset",
            "entry": [
                {
                    "resource": {
                        "resourceType": "ServiceRequest",
                        "status": "active",
                        "intent": "order",
                        "subject": subject,
                        "category": [{"coding": [{"system": SNOMED, "code": "387713003"}]}],
                    }
                }
            ],
        },
        "procedures": None,
        "coverage": {
            "resourceType": "Bundle",
            "type": "searchset",
            "entry": [
                {
                    "resource": {
                        "resourceType": "Coverage",
                        "status": "active",
                        "beneficiary": subject,
                        "payor": [{"reference": "Organization/plan"}],
                    }
                },
            ],
        },
    }


def test_fhir_prefetch_is_mapped_to_a_case_and_reported(client: Client) -> None:
    response = client.post(f"/cds-services/{SERVICE_ID}", json=hook_request({}, prefetch=surgery_prefetch()))
    assert response.status_code == 200
    body = response.json()
    expected = secondopinion.advise(
        {
            "diagnosis": {"seriousness": "serious", "cancer": "yes"},
            "treatment": {"kind": "surgery", "started": "no"},
            "patient": {"age_group": "adult"},
            "insurance": {"insured": "yes"},
        }
    )
    kinds = [c["source"]["topic"]["code"] for c in body["cards"]]
    assert kinds == list(expected.kinds)
    assert "seek_second_opinion" in kinds
    report = body["extension"]["io.github.secondopinion.fhir-mapping"]
    fields = {m["case_field"]: m["fhir_path"] for m in report["mapped"]}
    assert fields["treatment.kind"] == "prefetch.serviceRequests.entry[0].resource.category"
    assert fields["patient.age_group"] == "prefetch.patient.birthDate"
    assert fields["insurance.insured"].startswith("prefetch.coverage.entry[0]")
    for card in body["cards"]:
        check_card(card)


def test_context_case_wins_over_prefetch(client: Client) -> None:
    body = hook_request({"case": {"diagnosis": {"seriousness": "minor"}}}, prefetch=surgery_prefetch())
    response = client.post(f"/cds-services/{SERVICE_ID}", json=body).json()
    assert "extension" not in response
    assert [c["source"]["topic"]["code"] for c in response["cards"]] == list(
        secondopinion.advise({"diagnosis": {"seriousness": "minor"}}).kinds
    )


BAD_REQUESTS: dict[str, tuple[bytes, list[str]]] = {
    "not JSON": (b'{"hook": ', []),
    "not an object": (b"[1, 2]", ["@ $"]),
    "missing fields": (b"{}", ["@ $.hook", "@ $.hookInstance", "@ $.context"]),
    "wrong types": (
        json.dumps({"hook": 3, "hookInstance": "", "context": [], "prefetch": "x"}).encode(),
        ["@ $.hook", "@ $.hookInstance", "@ $.context", "@ $.prefetch"],
    ),
    "another hook": (json.dumps({"hook": "order-sign", "hookInstance": "i", "context": {}}).encode(), ["@ $.hook"]),
}


@pytest.mark.parametrize("name", BAD_REQUESTS)
def test_bad_requests_get_400_with_field_paths(client: Client, name: str) -> None:
    raw, paths = BAD_REQUESTS[name]
    response = client.post(f"/cds-services/{SERVICE_ID}", content=raw, headers={"content-type": "application/json"})
    assert response.status_code == 400
    body = response.json()
    assert body["error"] == "bad_request" and body["message"]
    for path in paths:
        assert any(p.endswith(path) for p in body["problems"]), (path, body)


def test_invalid_case_gets_400_naming_paths_never_values(client: Client) -> None:
    case = {"diagnosis": {"seriousness": SECRET, "cancer_type": 5}, "mood": SECRET}
    response = client.post(f"/cds-services/{SERVICE_ID}", json=hook_request({"case": case}))
    assert response.status_code == 400
    body = response.json()
    assert body["error"] == "invalid_case"
    problems = " ".join(body["problems"])
    assert "@ $.context.case.diagnosis.seriousness" in problems
    assert "@ $.context.case.diagnosis.cancer_type" in problems
    assert "unknown field(s): mood @ $.context.case" in problems
    assert SECRET not in response.text


def test_invalid_case_value_is_never_echoed(client: Client) -> None:
    case = {"diagnosis": {"seriousness": SECRET}, "opinions": [{"institution": SECRET * 40}]}
    response = client.post(f"/cds-services/{SERVICE_ID}", json=hook_request({"case": case}))
    assert response.status_code == 400
    assert SECRET not in response.text


def test_invalid_fhir_prefetch_gets_400_naming_paths_never_values(client: Client) -> None:
    prefetch = surgery_prefetch(birth_date=SECRET)
    response = client.post(f"/cds-services/{SERVICE_ID}", json=hook_request({}, prefetch=prefetch))
    assert response.status_code == 400
    body = response.json()
    assert body["error"] == "invalid_fhir"
    assert any(p.endswith("@ $.prefetch.patient.birthDate") for p in body["problems"])
    assert SECRET not in response.text


def test_no_case_and_no_fhir_data_at_all_gets_412(client: Client) -> None:
    response = client.post(f"/cds-services/{SERVICE_ID}", json=hook_request({}))
    assert response.status_code == 412
    assert response.json()["error"] == "no_case"
    assert "fhirServer" in response.json()["message"]


def test_fhir_data_without_a_condition_or_treatment_gets_a_not_enough_data_card(client: Client) -> None:
    empty = client.post(f"/cds-services/{SERVICE_ID}", json=hook_request({}, prefetch={"patient": None}))
    assert empty.status_code == 200
    (card,) = empty.json()["cards"]
    assert card["summary"] == NOT_ENOUGH_DATA and card["indicator"] == "info"
    assert "Condition" in card["detail"] and "ServiceRequest" in card["detail"]
    assert no_null_or_empty(card) == []


def test_unknown_service_wrong_method_and_oversized_body(client: Client) -> None:
    unknown = client.post("/cds-services/nope", json=hook_request({"case": {}}))
    assert unknown.status_code == 404 and unknown.json()["error"] == "not_found"
    assert client.get(f"/cds-services/{SERVICE_ID}").status_code == 405
    big = b'{"hook": "' + b"x" * (MAX_BODY_BYTES + 1) + b'"}'
    too_large = client.post(f"/cds-services/{SERVICE_ID}", content=big)
    assert too_large.status_code == 413 and too_large.json()["error"] == "too_large"


def test_summary_is_shortened_at_a_word_below_140() -> None:
    title = "Ask " + " ".join(["about the options"] * 20)
    short = summary(title)
    assert len(short) < 140 and short.endswith("…")
    assert title.startswith(short[:-1])
    assert summary("Short title") == "Short title"


def test_case_text_cannot_inject_markdown_or_html() -> None:
    from secondopinion.recommendations import Advice, ChooseIndependentDoctor

    rec = ChooseIndependentDoctor(
        title="T", detail="D.", prefer=("<script>alert(1)</script>", "[click](https://evil.example)")
    )
    detail = cards(Advice(recommendations=(rec,)))["cards"][0]["detail"]
    # Rendered the way a CDS client would (CommonMark with raw HTML allowed; markdown-it comes with rich).
    from markdown_it import MarkdownIt

    html = MarkdownIt("commonmark").render(detail)
    assert "<script>" not in html and "<a " not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "[click](https://evil.example)" in html


# --------------------------------------------------------------------------- a real server


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def console_script() -> str:
    script = Path(sys.executable).parent / "secondopinion"
    assert script.exists(), "the secondopinion console script is not installed in this environment"
    return str(script)


class Server:
    """``secondopinion serve`` in a child process, as a user starts it."""

    def __init__(self, *args: str) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [console_script(), "serve", "--port", str(self.port), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )

    def wait_until_up(self) -> None:
        deadline = time.monotonic() + 60  # a start-up wait, not a performance assertion
        while True:
            if self.proc.poll() is not None:
                pytest.fail(f"the server exited early: {self.stop()}")
            try:
                if httpx.get(f"{self.base}/cds-services", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("the server did not start")
            time.sleep(0.2)

    def stop(self) -> str:
        """Stop the server (SIGTERM, as Ctrl+C or a process manager would) and return all it printed."""
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            out, err = self.proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, err = self.proc.communicate()
        return out + err


@pytest.fixture
def server() -> Iterator[Server]:
    srv = Server()
    try:
        srv.wait_until_up()
        yield srv
    finally:
        srv.stop()


def test_real_server_end_to_end(server: Server) -> None:
    with httpx.Client(base_url=server.base, timeout=30) as http:
        discovery = http.get("/cds-services").json()
        service = discovery["services"][0]
        url = f"/cds-services/{service['id']}"
        case = json.loads(EXAMPLES[0].read_text("utf-8"))
        response = http.post(url, json=hook_request({"case": case}))
        assert response.status_code == 200
        kinds = [c["source"]["topic"]["code"] for c in response.json()["cards"]]
        assert kinds == list(secondopinion.advise(case).kinds)
        prefetched = http.post(url, json=hook_request({}, prefetch=surgery_prefetch()))
        assert prefetched.status_code == 200 and prefetched.json()["cards"]
        private = {"opinions": [{"institution": SECRET, "diagnosis": SECRET}, {"diagnosis": "other"}]}
        assert http.post(url, json=hook_request({"case": private})).status_code == 200
        bad = http.post(url, json=hook_request({"case": {"diagnosis": {"seriousness": SECRET}}}))
        assert bad.status_code == 400 and SECRET not in bad.text
        assert http.post(url, content=SECRET.encode()).status_code == 400
    printed = server.stop()
    assert "CDS Hooks service at" in printed
    assert SECRET not in printed


def test_docs_list_every_recommendation_kind() -> None:
    """docs/interop.md is the code system of card topics: it must define every kind."""
    from secondopinion.recommendations import KINDS

    text = (ROOT / "docs" / "interop.md").read_text("utf-8")
    start = text.index("### Recommendation kinds")
    section = text[start : text.index("\n## ", start)]
    listed = re.findall(r"^\| `([a-z_]+)` \|", section, flags=re.MULTILINE)
    assert listed == list(KINDS)
    assert KIND_SYSTEM.endswith("docs/interop.md#recommendation-kinds")


def test_an_internal_failure_gets_500_and_logs_no_case_value(caplog: pytest.LogCaptureFixture) -> None:
    class Broken(secondopinion.Advisor):
        def advise(self, case: Any) -> Any:
            raise RuntimeError(f"failed on {SECRET}")

    broken = Client(create_app(Broken()))
    with caplog.at_level("DEBUG"):
        response = broken.post(f"/cds-services/{SERVICE_ID}", json=hook_request({"case": {}}))
    assert response.status_code == 500
    assert response.json() == {"error": "internal_error", "message": "the service failed"}
    assert "RuntimeError" in caplog.text
    assert SECRET not in caplog.text + response.text


def test_prefetch_the_client_could_not_fetch_counts_as_missing(client: Client) -> None:
    failed = {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "timeout"}]}
    only_failures = client.post(
        f"/cds-services/{SERVICE_ID}", json=hook_request({}, prefetch={"patient": failed, "conditions": None})
    )
    assert only_failures.status_code == 200
    assert [c["summary"] for c in only_failures.json()["cards"]] == [NOT_ENOUGH_DATA]
    prefetch = {**surgery_prefetch(), "coverage": failed}
    partial = client.post(f"/cds-services/{SERVICE_ID}", json=hook_request({}, prefetch=prefetch))
    assert partial.status_code == 200
    unmapped = partial.json()["extension"]["io.github.secondopinion.fhir-mapping"]["unmapped"]
    reason = "an OperationOutcome: the data could not be fetched"
    assert unmapped == [{"fhir_path": "prefetch.coverage", "reason": reason, "category": "not_understood"}]


FHIR_FIXTURES = ROOT / "tests" / "fixtures" / "fhir"


@pytest.mark.parametrize("patient_id", ["{id}", "Patient/{id}"])
def test_synthea_prefetch_with_urn_uuid_references_gets_the_cards(client: Client, patient_id: str) -> None:
    """Synthea writes subject.reference urn:uuid:<id>: the patient with that id, as Patient/<id> would be."""
    from secondopinion.fhir import case_from_bundle

    pid, prefetch = prefetch_from_bundle("synthea-colon-cancer-surgery.json")
    body = hook_request({"patientId": patient_id.format(id=pid)}, prefetch=prefetch)
    response = client.post(f"/cds-services/{SERVICE_ID}", json=body)
    assert response.status_code == 200
    kinds = topics(response.json())
    assert NOT_ENOUGH_DATA not in [c["summary"] for c in response.json()["cards"]]
    bundle = json.loads((FHIR_FIXTURES / "synthea-colon-cancer-surgery.json").read_text("utf-8"))
    assert kinds == list(secondopinion.advise(case_from_bundle(bundle).case).kinds)
    assert {"seek_second_opinion", "prefer_cancer_center", "set_deadline"} <= set(kinds)
    report = response.json()["extension"]["io.github.secondopinion.fhir-mapping"]
    fields = {m["case_field"]: m["fhir_path"] for m in report["mapped"]}
    assert fields["diagnosis.cancer"] == "prefetch.conditions.entry[2].resource.code"
    assert fields["treatment.kind"] == "prefetch.serviceRequests.entry[0].resource.code"
    assert fields["insurance.insured"] == "prefetch.coverage.entry[0].resource.status"
    assert not any("another patient" in u["reason"] for u in report["unmapped"])
    for card in response.json()["cards"]:
        check_card(card)


def test_synthea_self_pay_prefetch_gets_no_call_your_insurer_card(client: Client) -> None:
    pid, prefetch = prefetch_from_bundle("uscore-prostate-cancer-self-pay.json")
    response = client.post(f"/cds-services/{SERVICE_ID}", json=hook_request({"patientId": pid}, prefetch=prefetch))
    assert response.status_code == 200
    kinds = topics(response.json())
    assert "manage_costs" in kinds and "check_insurance" not in kinds
    report = response.json()["extension"]["io.github.secondopinion.fhir-mapping"]
    insured = next(m for m in report["mapped"] if m["case_field"] == "insurance.insured")
    assert insured == {
        "case_field": "insurance.insured",
        "fhir_path": "prefetch.coverage.entry[0].resource.type",
        "reason": "every active Coverage is self-pay: no insurance",
    }


def test_create_app_refuses_an_unknown_fhir_version() -> None:
    with pytest.raises(ValueError, match="R4B or R5"):
        create_app(fhir_version="DSTU2")


# --------------------------------------------------------------------------- hooks as EHRs send them

SPEC_FHIR_SERVER = "http://hooks.smarthealthit.org:9080"  # as in the specification's examples; never contacted


def spec_patient_view() -> dict[str, Any]:
    """The structure of the CDS Hooks 2.0 specification's example patient-view request."""
    return {
        "hookInstance": "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea",
        "fhirServer": SPEC_FHIR_SERVER,
        "hook": "patient-view",
        "fhirAuthorization": {
            "access_token": "some-opaque-fhir-access-token",
            "token_type": "Bearer",
            "expires_in": 300,
            "scope": "user/Patient.read user/Observation.read",
            "subject": "cds-service4",
        },
        "context": {"userId": "Practitioner/example", "patientId": "1288992", "encounterId": "89284"},
        "prefetch": {
            "patientToGreet": {
                "resourceType": "Patient",
                "gender": "male",
                "birthDate": "1925-12-23",
                "id": "1288992",
                "active": True,
            }
        },
    }


def draft_orders(*resources: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": r} for r in resources]}


NUTRITION_ORDER = {
    "resourceType": "NutritionOrder",
    "id": "pureeddiet-simple",
    "status": "draft",
    "intent": "proposal",
    "patient": {"reference": "Patient/1288992"},
    "dateTime": "2014-09-17",
    "oralDiet": {"type": [{"coding": [{"system": SNOMED, "code": "226211001", "display": "Pureed diet"}]}]},
}
ACETAMINOPHEN = {
    "resourceType": "MedicationRequest",
    "id": "smart-MedicationRequest-103",
    "status": "draft",
    "intent": "order",
    "medicationCodeableConcept": {
        "coding": [
            {
                "system": "http://www.nlm.nih.gov/research/umls/rxnorm",
                "code": "617993",
                "display": "Amoxicillin 120 MG/ML / clavulanate potassium 8.58 MG/ML Oral Suspension",
            }
        ],
        "text": "Amoxicillin 120 MG/ML / clavulanate potassium 8.58 MG/ML Oral Suspension",
    },
    "subject": {"reference": "Patient/1288992"},
}
CHEMO_ORDER = {
    "resourceType": "MedicationRequest",
    "id": "chemo-1",
    "status": "draft",
    "intent": "order",
    "priority": "urgent",
    "medicationCodeableConcept": {
        "coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "1736854"}],
        "text": "Cisplatin 50 MG Injection",
    },
    "subject": {"reference": "Patient/1288992"},
}
SURGERY_ORDER = {
    "resourceType": "ServiceRequest",
    "id": "colectomy-1",
    "status": "draft",
    "intent": "order",
    "code": {"coding": [{"system": SNOMED, "code": "43075005", "display": "Partial resection of colon"}]},
    "subject": {"reference": "Patient/1288992"},
}


def order_request(hook: str, *orders: dict[str, Any], prefetch: dict[str, Any] | None = None) -> dict[str, Any]:
    context: dict[str, Any] = {
        "userId": "Practitioner/example",
        "patientId": "1288992",
        "encounterId": "89284",
        "draftOrders": draft_orders(*orders),
    }
    if hook == "order-select":
        context["selections"] = [f"{o['resourceType']}/{o['id']}" for o in orders[-1:]]
    body: dict[str, Any] = {"hook": hook, "hookInstance": str(uuid.uuid4()), "context": context}
    if prefetch is not None:
        body["prefetch"] = prefetch
    return body


def colon_cancer_prefetch() -> dict[str, Any]:
    cancer = {
        "resourceType": "Condition",
        "id": "c1",
        "subject": {"reference": "Patient/1288992"},
        "clinicalStatus": {
            "coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]
        },
        "code": {"coding": [{"system": SNOMED, "code": "363406005", "display": "Malignant neoplasm of colon"}]},
    }
    return {
        "patient": {"resourceType": "Patient", "id": "1288992", "birthDate": "1961-07-30"},
        "conditions": {"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": cancer}]},
    }


def topics(body: dict[str, Any]) -> list[str]:
    return [c["source"]["topic"]["code"] for c in body["cards"]]


def test_the_specification_patient_view_example_gets_a_not_enough_data_card(client: Client) -> None:
    response = client.post(f"/cds-services/{SERVICE_ID}", json=spec_patient_view())
    assert response.status_code == 200
    body = response.json()
    assert [c["summary"] for c in body["cards"]] == [NOT_ENOUGH_DATA]
    report = body["extension"]["io.github.secondopinion.fhir-mapping"]
    assert {"case_field": "patient.age_group", "fhir_path": "prefetch.patientToGreet.birthDate"} in report["mapped"]


@pytest.mark.parametrize("hook", ["order-select", "order-sign"])
def test_the_specification_order_examples_bring_no_card_for_orders_that_are_not_treatments(
    client: Client, hook: str
) -> None:
    body = order_request(hook, NUTRITION_ORDER, ACETAMINOPHEN, prefetch=colon_cancer_prefetch())
    response = client.post(f"/cds-services/{SERVICE_ID}-{hook}", json=body)
    assert response.status_code == 200
    assert response.json()["cards"] == []
    summary_ = response.json()["extension"]["io.github.secondopinion.fhir-mapping"]["summary"]
    assert summary_["NutritionOrder"]["ignored"] == 1


@pytest.mark.parametrize(
    ("hook", "order", "kind"), [("order-select", SURGERY_ORDER, "surgery"), ("order-sign", CHEMO_ORDER, "chemotherapy")]
)
def test_an_order_for_surgery_or_chemotherapy_brings_the_second_opinion_cards(
    client: Client, hook: str, order: dict[str, Any], kind: str
) -> None:
    body = order_request(hook, NUTRITION_ORDER, order, prefetch=colon_cancer_prefetch())
    response = client.post(f"/cds-services/{SERVICE_ID}-{hook}", json=body)
    assert response.status_code == 200
    data = response.json()
    report = data["extension"]["io.github.secondopinion.fhir-mapping"]
    fields = {m["case_field"]: m["fhir_path"] for m in report["mapped"]}
    assert fields["treatment.kind"].startswith("context.draftOrders.entry[1].resource")
    expected = secondopinion.advise(
        {
            "diagnosis": {"seriousness": "serious", "cancer": "yes", "cancer_type": "Malignant neoplasm of colon"},
            "treatment": {"kind": kind, "started": "no", **({"urgency": "urgent"} if kind == "chemotherapy" else {})},
            "patient": {"age_group": "adult"},
            "opinions": [{"diagnosis_code": "363406005", "diagnosis_code_system": "snomed"}],
        }
    )
    assert topics(data) == list(expected.kinds)
    assert "seek_second_opinion" in topics(data)
    for card in data["cards"]:
        check_card(card)


def test_each_service_answers_its_own_hook_only(client: Client) -> None:
    body = order_request("order-sign", SURGERY_ORDER)
    wrong = client.post(f"/cds-services/{SERVICE_ID}-order-select", json=body)
    assert wrong.status_code == 400
    assert any(p.endswith("@ $.hook") for p in wrong.json()["problems"])
    bad_orders = {**body, "context": {**body["context"], "draftOrders": [1]}}
    bad = client.post(f"/cds-services/{SERVICE_ID}-order-sign", json=bad_orders)
    assert bad.status_code == 400
    assert any(p.endswith("@ $.context.draftOrders") for p in bad.json()["problems"])


def test_card_links_follow_the_base_url() -> None:
    c = Client(create_app(base_url="https://docs.example.org/secondopinion/", fetch_fhir=False))
    case = json.loads(EXAMPLES[0].read_text("utf-8"))
    body = c.post(f"/cds-services/{SERVICE_ID}", json=hook_request({"case": case})).json()
    urls = [link["url"] for card in body["cards"] for link in card["links"]]
    assert urls and all(
        re.fullmatch(r"https://docs\.example\.org/secondopinion/rules/[\w.-]+\.yaml#L\d+", u) for u in urls
    )
    assert all(
        card["source"]["url"].startswith("https://docs.example.org/secondopinion/rules/") for card in body["cards"]
    )


def test_rule_file_paths_are_resolved_once_not_on_every_request(client: Client) -> None:
    from secondopinion import cds_hooks

    case = json.loads(EXAMPLES[0].read_text("utf-8"))
    client.post(f"/cds-services/{SERVICE_ID}", json=hook_request({"case": case}))
    misses = cds_hooks._shipped_name.cache_info().misses
    for _ in range(3):
        assert client.post(f"/cds-services/{SERVICE_ID}", json=hook_request({"case": case})).status_code == 200
    assert cds_hooks._shipped_name.cache_info().misses == misses


def test_an_unknown_resource_type_is_not_echoed_by_the_service(client: Client) -> None:
    prefetch = {**colon_cancer_prefetch(), "extra": {"resourceType": SECRET}}
    response = client.post(f"/cds-services/{SERVICE_ID}", json=hook_request({}, prefetch=prefetch))
    assert response.status_code == 200
    assert SECRET not in response.text


# --------------------------------------------------------------------------- CORS


def preflight(c: Client, origin: str) -> httpx.Response:
    headers = {
        "Origin": origin,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type",
    }
    return c.request("OPTIONS", f"/cds-services/{SERVICE_ID}", headers=headers)


def test_cors_is_off_by_default_and_answers_preflights_for_configured_origins() -> None:
    off = preflight(Client(create_app(fetch_fhir=False)), "https://sandbox.example")
    assert off.status_code == 405 and "access-control-allow-origin" not in off.headers
    on = Client(create_app(cors_origins=["https://sandbox.example"], fetch_fhir=False))
    ok = preflight(on, "https://sandbox.example")
    assert ok.status_code == 200
    assert ok.headers["access-control-allow-origin"] == "https://sandbox.example"
    assert "POST" in ok.headers["access-control-allow-methods"]
    assert "authorization" in ok.headers["access-control-allow-headers"].lower()
    other = preflight(on, "https://evil.example")
    assert other.status_code == 400 and "access-control-allow-origin" not in other.headers
    call = on.post(
        f"/cds-services/{SERVICE_ID}", json=hook_request({"case": {}}), headers={"Origin": "https://sandbox.example"}
    )
    assert call.headers["access-control-allow-origin"] == "https://sandbox.example"


# --------------------------------------------------------------------------- JWT


class Keys:
    """An EC P-384 key pair (ES384, as CDS Hooks 2.0 asks) and its JWKS, made for the test."""

    def __init__(self, kid: str = "ehr-key-1") -> None:
        from cryptography.hazmat.primitives.asymmetric import ec
        from jwt.algorithms import ECAlgorithm

        self.kid = kid
        self.private = ec.generate_private_key(ec.SECP384R1())
        jwk = json.loads(ECAlgorithm.to_jwk(self.private.public_key()))
        self.jwks = {"keys": [{**jwk, "kid": kid, "use": "sig", "alg": "ES384"}]}

    def token(self, aud: str, **claims: Any) -> str:
        import jwt

        now = int(time.time())
        payload = {"iss": "https://ehr.example", "sub": "client-1", "aud": aud, "iat": now, "exp": now + 300}
        payload["jti"] = str(uuid.uuid4())
        payload.update(claims)
        payload = {k: v for k, v in payload.items() if v is not None}
        return jwt.encode(payload, self.private, algorithm="ES384", headers={"kid": self.kid})


@pytest.fixture(scope="module")
def keys() -> Keys:
    pytest.importorskip("jwt")
    return Keys()


def jwt_app(keys: Keys, tmp_path: Path) -> Client:
    from secondopinion.service import JwtVerifier

    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps(keys.jwks), "utf-8")
    return Client(create_app(jwt=JwtVerifier(str(jwks), ("https://ehr.example",)), fetch_fhir=False))


URL = f"http://cds.test/cds-services/{SERVICE_ID}"


def test_a_valid_jwt_is_accepted_once(keys: Keys, tmp_path: Path) -> None:
    c = jwt_app(keys, tmp_path)
    token = keys.token(URL)
    body = hook_request({"case": {"diagnosis": {"seriousness": "serious"}}})
    ok = c.post(f"/cds-services/{SERVICE_ID}", json=body, headers={"Authorization": f"Bearer {token}"})
    assert ok.status_code == 200 and ok.json()["cards"]
    again = c.post(f"/cds-services/{SERVICE_ID}", json=body, headers={"Authorization": f"Bearer {token}"})
    assert again.status_code == 401 and "jti" in again.json()["message"]
    assert c.get("/cds-services").status_code == 200  # discovery stays open


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda k: None, "needs a bearer JWT"),
        (lambda k: k.token(URL, exp=int(time.time()) - 3600), "expired"),
        (lambda k: k.token("https://other.example/cds-services/x"), "aud"),
        (lambda k: k.token(URL, iss="https://stranger.example"), "iss"),
        (lambda k: k.token(URL, jti=None), "jti"),
        (lambda k: Keys(k.kid).token(URL), "signature"),
        (lambda k: Keys("unknown-kid").token(URL), "not signed by a key"),
        (lambda k: "not.a.token", "could not be read"),
    ],
)
def test_a_bad_or_missing_jwt_gets_401(keys: Keys, tmp_path: Path, make: Any, message: str) -> None:
    c = jwt_app(keys, tmp_path)
    token = make(keys)
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    response = c.post(f"/cds-services/{SERVICE_ID}", json=hook_request({"case": {}}), headers=headers)
    assert response.status_code == 401
    assert response.json()["error"] == "unauthorized"
    assert message in response.json()["message"]
    assert response.headers["www-authenticate"].startswith("Bearer")
    if token is not None:
        assert token not in response.text


def test_a_bad_jwks_file_is_refused_at_start(tmp_path: Path) -> None:
    from secondopinion.service import JwtVerifier

    bad = tmp_path / "jwks.json"
    bad.write_text("{}", "utf-8")
    with pytest.raises(ValueError, match="not a JSON Web Key Set"):
        JwtVerifier(str(bad), ("https://ehr.example",))
    with pytest.raises(ValueError, match="cannot read"):
        JwtVerifier(str(tmp_path / "missing.json"), ("https://ehr.example",))
    with pytest.raises(ValueError, match="issuer"):
        JwtVerifier(str(bad), ())


# --------------------------------------------------------------------------- the request parser, for any JSON


def test_a_number_too_long_for_python_gets_400_not_500(client: Client) -> None:
    raw = b'{"hook": "patient-view", "hookInstance": "i", "context": {"n": ' + b"9" * 5000 + b"}}"
    response = client.post(f"/cds-services/{SERVICE_ID}", content=raw)
    assert response.status_code == 400
    assert response.json()["error"] == "bad_request"


HOOK_NAMES = st.sampled_from(["patient-view", "order-select", "order-sign", "other", ""])
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=25,
)
RESOURCE_TYPES = st.sampled_from(
    ["Patient", "Condition", "ServiceRequest", "Procedure", "MedicationRequest", "CarePlan", "Coverage", "Bundle", "X"]
)
RESOURCES = st.fixed_dictionaries({"resourceType": RESOURCE_TYPES}, optional={"id": JSON, "status": JSON, "code": JSON})
CONTEXTS = st.fixed_dictionaries(
    {},
    optional={
        "patientId": JSON,
        "case": JSON,
        "draftOrders": st.one_of(JSON, st.fixed_dictionaries({"resourceType": st.just("Bundle"), "entry": JSON})),
    },
)
REQUESTS = st.fixed_dictionaries(
    {
        "hook": st.one_of(HOOK_NAMES, JSON),
        "hookInstance": st.one_of(st.text(max_size=5), JSON),
        "context": st.one_of(CONTEXTS, JSON),
    },
    optional={
        "prefetch": st.one_of(JSON, st.dictionaries(st.sampled_from(sorted(PREFETCH)), st.one_of(RESOURCES, JSON))),
        "fhirServer": JSON,
        "fhirAuthorization": JSON,
    },
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=st.one_of(REQUESTS, JSON), service=st.sampled_from(sorted(SERVICES)))
def test_the_request_parser_answers_400_or_412_for_any_json_never_500(body: Any, service: str) -> None:
    from secondopinion.cds_hooks import handle

    status, payload = handle(json.dumps(body), secondopinion.default_advisor(), service_id=service)
    assert status in (200, 400, 412), payload
    assert "error" in payload if status != 200 else "cards" in payload


@settings(max_examples=100, deadline=None)
@given(raw=st.binary(max_size=200))
def test_any_bytes_get_an_answer_never_500(raw: bytes) -> None:
    from secondopinion.cds_hooks import handle

    status, _payload = handle(raw, secondopinion.default_advisor())
    assert status in (200, 400, 412)


# --------------------------------------------------------------------------- fetching from a stub FHIR server


class StubFhir:
    """A FHIR server on 127.0.0.1 for the tests: canned answers by path, and the Authorization headers it saw."""

    def __init__(self, routes: dict[str, tuple[int, bytes]]) -> None:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        seen: list[str | None] = []
        self.seen = seen

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                seen.append(self.headers.get("Authorization"))
                status, body = routes.get(self.path, (404, b'{"resourceType": "OperationOutcome"}'))
                self.send_response(status)
                self.send_header("Content-Type", "application/fhir+json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/fhir"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


OFFICE_VISIT = {
    "resourceType": "Encounter",
    "id": "89284",
    "status": "in-progress",
    "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
    "subject": {"reference": "Patient/1288992"},
}


def searchset(*resources: dict[str, Any]) -> bytes:
    return json.dumps(
        {"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": r} for r in resources]}
    ).encode()


@pytest.fixture
def stub_fhir() -> Iterator[StubFhir]:
    prefetch = colon_cancer_prefetch()
    surgery = {**SURGERY_ORDER, "status": "active", "occurrenceDateTime": "2099-01-01"}
    routes = {
        "/fhir/Patient/1288992": (200, json.dumps(prefetch["patient"]).encode()),
        "/fhir/Condition?patient=1288992": (200, json.dumps(prefetch["conditions"]).encode()),
        "/fhir/ServiceRequest?patient=1288992&status=draft,active": (200, searchset(surgery)),
        "/fhir/Procedure?patient=1288992&status=preparation": (500, b"oops"),
        "/fhir/Coverage?patient=1288992&status=active": (200, b" " * 50_000 + searchset()),
        "/fhir/Encounter/89284": (200, json.dumps(OFFICE_VISIT).encode()),
    }
    stub = StubFhir(routes)
    try:
        yield stub
    finally:
        stub.close()


def fetch_request(stub: StubFhir) -> dict[str, Any]:
    body = spec_patient_view()
    body["fhirServer"] = stub.url
    body["fhirAuthorization"]["access_token"] = SECRET
    del body["prefetch"]
    return body


def test_missing_prefetch_is_fetched_from_the_fhir_server_with_the_bearer_token(stub_fhir: StubFhir) -> None:
    from secondopinion.service import fhir_fetcher

    c = Client(create_app(fetcher=fhir_fetcher(max_bytes=20_000)))
    response = c.post(f"/cds-services/{SERVICE_ID}", json=fetch_request(stub_fhir))
    assert response.status_code == 200
    body = response.json()
    assert "seek_second_opinion" in topics(body)
    assert stub_fhir.seen and set(stub_fhir.seen) == {f"Bearer {SECRET}"}
    report = body["extension"]["io.github.secondopinion.fhir-mapping"]
    fields = {m["case_field"]: m["fhir_path"] for m in report["mapped"]}
    assert fields["diagnosis.cancer"] == "fhirServer.conditions.entry[0].resource.code"
    assert fields["treatment.kind"] == "fhirServer.serviceRequests.entry[0].resource.code"
    failed = {u["fhir_path"] for u in report["unmapped"]}
    assert failed == {"fhirServer.procedures", "fhirServer.coverage"}  # a 500, and an answer over the size limit
    assert SECRET not in response.text


def test_prefetch_that_was_sent_is_not_fetched_again(stub_fhir: StubFhir) -> None:
    c = Client(create_app())
    body = fetch_request(stub_fhir)
    body["prefetch"] = {key: None for key in PREFETCH} | colon_cancer_prefetch()
    response = c.post(f"/cds-services/{SERVICE_ID}", json=body)
    assert response.status_code == 200
    assert stub_fhir.seen == []


def test_an_unreachable_fhir_server_is_reported_not_fatal() -> None:
    body = spec_patient_view()
    body["fhirServer"] = f"http://127.0.0.1:{free_port()}/fhir"  # nothing listens there
    response = Client(create_app()).post(f"/cds-services/{SERVICE_ID}", json=body)
    assert response.status_code == 200
    assert [c["summary"] for c in response.json()["cards"]] == [NOT_ENOUGH_DATA]
    unmapped = response.json()["extension"]["io.github.secondopinion.fhir-mapping"]["unmapped"]
    assert {u["fhir_path"] for u in unmapped} == {f"fhirServer.{key}" for key in PREFETCH if key != "patient"}


# --------------------------------------------------------------------------- over HTTP, on the loopback


def test_real_server_with_cors_jwt_each_hook_and_fhir_fetch(keys: Keys, tmp_path: Path, stub_fhir: StubFhir) -> None:
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps(keys.jwks), "utf-8")
    srv = Server(
        "--cors-origin", "https://sandbox.example",
        "--jwt-jwks", str(jwks),
        "--jwt-issuer", "https://ehr.example",
        "--base-url", "https://docs.example.org/so",
    )  # fmt: skip
    try:
        srv.wait_until_up()
        with httpx.Client(base_url=srv.base, timeout=30) as http:
            pre = http.options(
                f"/cds-services/{SERVICE_ID}",
                headers={"Origin": "https://sandbox.example", "Access-Control-Request-Method": "POST"},
            )
            assert pre.status_code == 200
            assert pre.headers["access-control-allow-origin"] == "https://sandbox.example"

            def post(service: str, body: dict[str, Any], token: str | None = "make") -> httpx.Response:
                url = f"/cds-services/{service}"
                bearer = keys.token(f"{srv.base}{url}") if token == "make" else token
                headers = {"Authorization": f"Bearer {bearer}"} if bearer else {}
                return http.post(url, json=body, headers=headers)

            assert post(SERVICE_ID, fetch_request(stub_fhir), token=None).status_code == 401
            refused = post(SERVICE_ID, fetch_request(stub_fhir), token=keys.token("https://elsewhere.example/x"))
            assert refused.status_code == 401
            fetched = post(SERVICE_ID, fetch_request(stub_fhir))
            assert fetched.status_code == 200 and "seek_second_opinion" in topics(fetched.json())
            assert all(
                link["url"].startswith("https://docs.example.org/so/rules/")
                for card in fetched.json()["cards"]
                for link in card["links"]
            )
            for hook, order in (("order-select", SURGERY_ORDER), ("order-sign", CHEMO_ORDER)):
                answer = post(f"{SERVICE_ID}-{hook}", order_request(hook, order, prefetch=colon_cancer_prefetch()))
                assert answer.status_code == 200 and "seek_second_opinion" in topics(answer.json())
    finally:
        printed = srv.stop()
    assert SECRET not in printed


def test_fetching_is_limited_to_the_allowed_fhir_servers(stub_fhir: StubFhir) -> None:
    allowed = Client(create_app(fhir_servers=[stub_fhir.url]))
    assert allowed.post(f"/cds-services/{SERVICE_ID}", json=fetch_request(stub_fhir)).status_code == 200
    assert stub_fhir.seen
    stub_fhir.seen.clear()
    elsewhere = Client(create_app(fhir_servers=["https://ehr.example.org/fhir"]))
    response = elsewhere.post(f"/cds-services/{SERVICE_ID}", json=fetch_request(stub_fhir))
    assert response.status_code == 200
    assert [c["summary"] for c in response.json()["cards"]] == [NOT_ENOUGH_DATA]
    assert stub_fhir.seen == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--jwt-jwks", "jwks.json"], "needs both --jwt-jwks and at least one --jwt-issuer"),
        (["--jwt-issuer", "https://ehr.example"], "needs both"),
        (["--jwt-jwks", "missing.json", "--jwt-issuer", "https://ehr.example"], "cannot read the JWKS file"),
        (["--base-url", "ftp://x"], "--base-url must be an http or https URL"),
        (["--fhir-server", "file:///etc"], "--fhir-server must be an http or https URL"),
    ],
)
def test_bad_serve_options_are_refused_before_starting(args: list[str], message: str, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from secondopinion.cli import app

    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(tmp_path)
        result = CliRunner().invoke(app, ["serve", *args])
    assert result.exit_code == 2
    assert result.output.startswith("error: ") and message in result.output
    assert "Traceback" not in result.output


# --------------------------------------------------------------------------- review round 3: real request shapes

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "fhir"


def fixture_resources(name: str, rtype: str) -> list[dict[str, Any]]:
    data = json.loads((FIXTURES / name).read_text("utf-8"))
    return [e["resource"] for e in data["entry"] if e["resource"]["resourceType"] == rtype]


def emergency_order_sign() -> tuple[dict[str, Any], dict[str, Any]]:
    """An order-sign request for the bypass surgery of a patient in the ED now, and the ED Encounter."""
    name = "synthea-emergency-heart-attack.json"
    pid, prefetch = prefetch_from_bundle(name, {"conditions": "Condition", "coverage": "Coverage"})
    er = next(e for e in fixture_resources(name, "Encounter") if e["class"]["code"] == "EMER")
    order = {**fixture_resources(name, "ServiceRequest")[0], "status": "draft"}
    context = {
        "userId": "Practitioner/example",
        "patientId": pid,
        "encounterId": er["id"],
        "draftOrders": draft_orders(order),
    }
    return {"hook": "order-sign", "hookInstance": str(uuid.uuid4()), "context": context, "prefetch": prefetch}, er


def test_order_sign_in_the_emergency_department_says_get_care_now_and_nothing_that_delays_it(client: Client) -> None:
    body, er = emergency_order_sign()
    # Without the Encounter the service cannot know; the discovery document asks for it.
    assert PREFETCH["encounter"] == "Encounter/{{context.encounterId}}"
    body["prefetch"]["encounter"] = er
    response = client.post(f"/cds-services/{SERVICE_ID}-order-sign", json=body)
    assert response.status_code == 200
    got = response.json()
    assert topics(got)[0] == "get_care_now"
    assert got["cards"][0]["indicator"] == "critical"
    assert not {"seek_second_opinion", "act_quickly", "set_deadline"} & set(topics(got))
    fields = {
        m["case_field"]: m["fhir_path"] for m in got["extension"]["io.github.secondopinion.fhir-mapping"]["mapped"]
    }
    assert fields["treatment.urgency"] == "prefetch.encounter.class"


def test_the_emergency_encounter_is_fetched_when_the_client_did_not_prefetch_it() -> None:
    from secondopinion.service import fhir_fetcher

    body, er = emergency_order_sign()
    pid = body["context"]["patientId"]
    routes = {f"/fhir/Encounter/{er['id']}": (200, json.dumps(er).encode())}
    routes[f"/fhir/ServiceRequest?patient={pid}&status=draft,active"] = (200, searchset())
    routes[f"/fhir/Procedure?patient={pid}&status=preparation"] = (200, searchset())
    stub = StubFhir(routes)
    try:
        body["fhirServer"] = stub.url
        c = Client(create_app(fetcher=fhir_fetcher(max_bytes=200_000)))
        response = c.post(f"/cds-services/{SERVICE_ID}-order-sign", json=body)
    finally:
        stub.close()
    assert response.status_code == 200
    assert topics(response.json())[0] == "get_care_now"


def test_order_select_of_chemotherapy_named_by_a_contained_medication_gets_cards(client: Client) -> None:
    pid, prefetch = prefetch_from_bundle("synthea-child-leukemia.json")
    order = {
        "resourceType": "MedicationRequest",
        "id": "vincristine-1",
        "status": "draft",
        "intent": "order",
        "contained": [
            {
                "resourceType": "Medication",
                "id": "med1",
                "code": {
                    "coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "11202"}],
                    "text": "vincristine",
                },
            }
        ],
        "medicationReference": {"reference": "#med1"},
        "subject": {"reference": f"Patient/{pid}"},
    }
    context = {
        "userId": "Practitioner/example",
        "patientId": pid,
        "selections": ["MedicationRequest/vincristine-1"],
        "draftOrders": draft_orders(order),
    }
    body = {"hook": "order-select", "hookInstance": str(uuid.uuid4()), "context": context, "prefetch": prefetch}
    response = client.post(f"/cds-services/{SERVICE_ID}-order-select", json=body)
    assert response.status_code == 200
    got = response.json()
    assert got["cards"], "a chemotherapy order named through a contained Medication was not recognised"
    fields = {
        m["case_field"]: m["fhir_path"] for m in got["extension"]["io.github.secondopinion.fhir-mapping"]["mapped"]
    }
    assert fields["treatment.kind"].startswith("context.draftOrders.entry[0].resource.medicationReference")
    assert fields["patient.age_group"].startswith("prefetch.patient")


def test_order_sign_for_surgery_picks_the_condition_the_order_is_for_among_twenty(client: Client) -> None:
    pid, prefetch = prefetch_from_bundle("synthea-buried-cancer.json")
    conditions = prefetch["conditions"]["entry"]
    assert len(conditions) >= 20
    target = next(i for i, e in enumerate(conditions) if e["resource"]["code"]["text"].startswith("Malignant"))
    order = {
        "resourceType": "ServiceRequest",
        "id": "whipple-1",
        "status": "draft",
        "intent": "original-order",
        "category": [{"coding": [{"system": SNOMED, "code": "387713003", "display": "Surgical procedure"}]}],
        "code": {"coding": [{"system": SNOMED, "code": "116028008", "display": "Pancreaticoduodenectomy"}]},
        "subject": {"reference": f"Patient/{pid}"},
        "reasonReference": [{"reference": f"Condition/{conditions[target]['resource']['id']}"}],
    }
    context = {"userId": "Practitioner/example", "patientId": pid, "draftOrders": draft_orders(order)}
    body = {"hook": "order-sign", "hookInstance": str(uuid.uuid4()), "context": context, "prefetch": prefetch}
    response = client.post(f"/cds-services/{SERVICE_ID}-order-sign", json=body)
    assert response.status_code == 200
    report = response.json()["extension"]["io.github.secondopinion.fhir-mapping"]
    assert report["focus"]["fhir_path"] == f"prefetch.conditions.entry[{target}].resource"
    assert report["focus"]["reason"] == "the condition the planned treatment is for (its reason)"
    assert "seek_second_opinion" in topics(response.json())


def test_a_patient_who_has_died_gets_no_card(client: Client) -> None:
    pid, prefetch = prefetch_from_bundle("refused/synthea-deceased.json")
    body = {
        "hook": "patient-view",
        "hookInstance": str(uuid.uuid4()),
        "context": {"userId": "Practitioner/example", "patientId": pid},
        "prefetch": prefetch,
    }
    response = client.post(f"/cds-services/{SERVICE_ID}", json=body)
    assert response.status_code == 200
    got = response.json()
    assert got["cards"] == []
    report = got["extension"]["io.github.secondopinion.fhir-mapping"]
    assert report["unmapped"][0]["fhir_path"] == "prefetch.patient.deceasedDateTime"
