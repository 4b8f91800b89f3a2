"""A FHIR Bundle fixture as the CDS Hooks prefetch an EHR sends (shared by the FHIR and CDS Hooks tests)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "fhir"

SEARCHES = {
    "conditions": "Condition",
    "serviceRequests": "ServiceRequest",
    "procedures": "Procedure",
    "coverage": "Coverage",
}
"""Prefetch key -> resource type searched, as in the service's prefetch templates."""


def prefetch_from_bundle(name: str, searches: Mapping[str, str] = SEARCHES) -> tuple[str, dict[str, Any]]:
    """The fixture's Patient id, and its resources as prefetch: the Patient, then one searchset per key.

    References stay as the fixture wrote them (Synthea: ``urn:uuid:<id>``); each entry's
    ``fullUrl`` is the EHR's own, as a server's search result gives it.
    """
    resources = [e["resource"] for e in json.loads((FIXTURES / name).read_text("utf-8"))["entry"]]

    def search(rtype: str) -> dict[str, Any]:
        found = [r for r in resources if r["resourceType"] == rtype]
        entries = [{"fullUrl": f"https://ehr.example.org/fhir/{rtype}/{r['id']}", "resource": r} for r in found]
        return {"resourceType": "Bundle", "type": "searchset", "total": len(entries), "entry": entries}

    patient = next(r for r in resources if r["resourceType"] == "Patient")
    return patient["id"], {"patient": patient, **{key: search(rtype) for key, rtype in searches.items()}}
