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
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi")
import asyncio

import httpx

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
        assert all("{{context.patientId}}" in t for t in service["prefetch"].values())
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
    response = client.post(
        f"/cds-services/{SERVICE_ID}", content=raw, headers={"content-type": "application/json"}
    )
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

    def __init__(self) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [console_script(), "serve", "--port", str(self.port)],
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


def test_create_app_refuses_an_unknown_fhir_version() -> None:
    with pytest.raises(ValueError, match="R4B or R5"):
        create_app(fhir_version="DSTU2")
