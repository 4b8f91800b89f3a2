"""FHIR in and out: a Case from a FHIR Bundle, and Advice as a GuidanceResponse.

Needs the ``fhir`` extra (``pip install 'secondopinion[fhir]'``), which brings
`fhir.resources <https://pypi.org/project/fhir.resources/>`_, which validates
the resources this module maps and every resource it writes.

**In.** :func:`case_from_bundle` reads a Bundle (R4B, which also reads R4
data, or R5) and :func:`case_from_prefetch` reads CDS Hooks prefetch data.
Every Patient, Condition, ServiceRequest, Procedure and Coverage is validated
with fhir.resources first. They map only what the FHIR data states without
doubt and report everything else:

* ``Patient.birthDate`` -> ``patient.age_group`` (child under 18 on the day of
  the mapping; a partial date that cannot tell is reported).
* ``Condition`` (active, not refuted): ``severity`` (SNOMED CT) ->
  ``diagnosis.seriousness``; ``verificationStatus`` -> ``diagnosis.certainty``;
  an ICD-10 code ``C00``-``C97`` -> ``diagnosis.cancer`` = yes (other ICD-10
  chapters -> no; in situ, benign and uncertain neoplasms, symptoms and
  codes from other systems are reported as undecided); ICD-10 ``M40``-``M54``
  (dorsopathies) -> ``diagnosis.spine`` = yes. A case has one diagnosis: with
  several Conditions the most severe is used and the others are reported.
* ``ServiceRequest`` (draft, active or on hold) or ``Procedure`` (in
  preparation) whose category is SNOMED CT 387713003 *Surgical procedure* ->
  ``treatment.kind`` = surgery, not started; a planned date in the future ->
  ``treatment.days_to_decide``.
* ``Coverage`` (active, in its period): insurance -> ``insurance.insured`` =
  yes; self-pay -> ``patient.pays_out_of_pocket`` = yes.

Each mapped case field names the FHIR element it came from; each element or
resource that was not used is reported with its path and the reason. Reports
and errors name paths, never values.

**Out.** :func:`guidance_response` turns Advice into a GuidanceResponse whose
``result`` is a contained RequestGroup (R4B) or RequestOrchestration (R5); each
recommendation is one action with its title, plain-language description,
priority, code (the recommendation kind), documentation (the source documents,
the evidence figures and the rule files) and, for a deadline, its timing; the
kind-specific fields (documents to gather, questions to ask...) are spelled out
in ``textEquivalent``. A mapping report travels along as a contained
OperationOutcome in ``evaluationMessage``.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal, cast

import attrs
import pydantic

from .advisor import default_advisor
from .case import Case, CaseError, load_case
from .cds_hooks import KIND_SYSTEM, RULES_URL, rule_url
from .recommendations import Advice, Priority, Recommendation, SetDeadline
from .rulebook import Rulebook

try:
    from fhir.resources import get_fhir_model_class as _r5_class
    from fhir.resources.R4B import get_fhir_model_class as _r4b_class
except ImportError as _exc:  # pragma: no cover - depends on the installed extras
    raise ImportError("secondopinion.fhir needs the fhir extra: pip install 'secondopinion[fhir]'") from _exc

__all__ = [
    "FHIR_VERSIONS",
    "KIND_SYSTEM",
    "FhirCase",
    "FhirError",
    "FhirVersion",
    "Mapped",
    "Unmapped",
    "case_from_bundle",
    "case_from_prefetch",
    "guidance_response",
]

FhirVersion = Literal["R4B", "R5"]
FHIR_VERSIONS: tuple[FhirVersion, ...] = ("R4B", "R5")

ADULT_AGE = 18
SNOMED = "http://snomed.info/sct"
SURGICAL_PROCEDURE = "387713003"
ICD10_SYSTEMS = frozenset({"http://hl7.org/fhir/sid/icd-10", "http://hl7.org/fhir/sid/icd-10-cm"})
VER_STATUS = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
CLINICAL_STATUS = "http://terminology.hl7.org/CodeSystem/condition-clinical"
SELF_PAY_SYSTEM = "http://terminology.hl7.org/CodeSystem/coverage-selfpay"
UCUM = "http://unitsofmeasure.org"

# SNOMED CT severity qualifiers -> Diagnosis.seriousness (the Condition.severity value set, plus
# 442452003 "Life threatening severity").
_SEVERITY = {
    "255604002": "minor",
    "6736007": "moderate",
    "24484000": "serious",
    "442452003": "life_threatening",
}
_SEVERITY_RANK = {"minor": 0, "moderate": 1, "serious": 2, "life_threatening": 3}
_CERTAINTY = {"confirmed": "confirmed", "provisional": "probable", "differential": "unclear", "unconfirmed": "unclear"}
_REQUEST_STATUSES = frozenset({"draft", "active", "on-hold"})
_MAPPED_TYPES = frozenset({"Patient", "Condition", "ServiceRequest", "Procedure", "Coverage"})

# FHIR request priority of an action, by recommendation priority.
_ACTION_PRIORITY = {
    Priority.CRITICAL: "asap",
    Priority.HIGH: "urgent",
    Priority.MEDIUM: "routine",
    Priority.LOW: "routine",
}


@attrs.frozen
class Mapped:
    """A case field and the FHIR element its value came from."""

    case_field: str
    fhir_path: str


@attrs.frozen
class Unmapped:
    """A FHIR element or resource that was not used, and why (never its value)."""

    fhir_path: str
    reason: str


@attrs.frozen
class FhirCase:
    """A case built from FHIR data, with what was mapped and what was not."""

    case: Case
    mapped: tuple[Mapped, ...] = ()
    unmapped: tuple[Unmapped, ...] = ()

    def report(self) -> dict[str, Any]:
        """The mapping report as JSON-ready data."""
        return {
            "mapped": [{"case_field": m.case_field, "fhir_path": m.fhir_path} for m in self.mapped],
            "unmapped": [{"fhir_path": u.fhir_path, "reason": u.reason} for u in self.unmapped],
        }


class FhirError(ValueError):
    """FHIR data that could not be read. ``problems`` names each problem with its path, never a value."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = tuple(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"invalid FHIR data ({len(self.problems)} problem(s)):\n{lines}")


# --------------------------------------------------------------------------- reading helpers


def _model_class(version: FhirVersion, resource_type: str) -> type[pydantic.BaseModel]:
    getter = _r4b_class if version == "R4B" else _r5_class
    return cast(type[pydantic.BaseModel], getter(resource_type))


def _loc(loc: Iterable[int | str]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


_SAFE_ERROR_TYPES = frozenset({"missing", "extra_forbidden", "string_type", "int_type", "bool_type", "list_type"})


def _validate(version: FhirVersion, path: str, resource: Mapping[str, Any]) -> list[str]:
    """Problems of one resource under fhir.resources, by path; messages never echo a value."""
    try:
        _model_class(version, str(resource["resourceType"])).model_validate(dict(resource))
    except pydantic.ValidationError as exc:
        problems = []
        for err in exc.errors():
            kind = err.get("type", "")
            message = err["msg"] if kind in _SAFE_ERROR_TYPES else "invalid value"
            problems.append(f"{message} @ {path}{_loc(err.get('loc', ()))}")
        return problems
    except (ValueError, TypeError, KeyError):
        return [f"not a valid FHIR {version} resource @ {path}"]
    return []


def _codings(concept: Any) -> list[Mapping[str, Any]]:
    """The codings of a CodeableConcept (or of each of a list of them)."""
    concepts = concept if isinstance(concept, list) else [concept]
    out: list[Mapping[str, Any]] = []
    for c in concepts:
        if isinstance(c, Mapping):
            out.extend(x for x in c.get("coding", []) or [] if isinstance(x, Mapping))
    return out


def _has_code(concept: Any, system: str, code: str) -> bool:
    return any(c.get("system") == system and c.get("code") == code for c in _codings(concept))


def _code_in(concept: Any, system: str) -> str | None:
    return next((str(c["code"]) for c in _codings(concept) if c.get("system") == system and "code" in c), None)


def _date(value: Any) -> tuple[dt.date, dt.date] | None:
    """The earliest and latest day a FHIR date or dateTime can mean (partial dates widen)."""
    if not isinstance(value, str) or len(value) < 4:
        return None
    try:
        year = int(value[:4])
        if len(value) == 4:
            return dt.date(year, 1, 1), dt.date(year, 12, 31)
        month = int(value[5:7])
        if len(value) == 7:
            first = dt.date(year, month, 1)
            last = (first.replace(day=28) + dt.timedelta(days=4)).replace(day=1) - dt.timedelta(days=1)
            return first, last
        day = dt.date.fromisoformat(value[:10])
    except ValueError:
        return None
    return day, day


def _age_on(birth: dt.date, today: dt.date) -> int:
    return today.year - birth.year - ((today.month, today.day) < (birth.month, birth.day))


def _reference_targets(ref: Any) -> str | None:
    return str(ref["reference"]) if isinstance(ref, Mapping) and isinstance(ref.get("reference"), str) else None


@attrs.define
class _Patient:
    path: str
    id: str | None
    full_url: str | None
    resource: Mapping[str, Any]


@attrs.define
class _Mapper:
    """Collects case fields, provenance and the report while walking the resources."""

    today: dt.date
    patient_id: str | None = None
    case: dict[str, dict[str, Any]] = attrs.Factory(dict)
    mapped: list[Mapped] = attrs.Factory(list)
    unmapped: list[Unmapped] = attrs.Factory(list)
    patient: _Patient | None = None

    def set(self, field: str, value: Any, source: str) -> None:
        part, name = field.split(".")
        self.case.setdefault(part, {})[name] = value
        self.mapped.append(Mapped(field, source))

    def skip(self, path: str, reason: str) -> None:
        self.unmapped.append(Unmapped(path, reason))

    def about_patient(self, ref: Any) -> bool:
        """Whether a reference points at the case's patient (true when that patient is not known)."""
        target = _reference_targets(ref)
        pid = self.patient.id if self.patient is not None else self.patient_id
        full_url = self.patient.full_url if self.patient is not None else None
        if target is None or (pid is None and full_url is None):
            return True
        return (full_url is not None and target == full_url) or (
            pid is not None and (target == f"Patient/{pid}" or target.endswith(f"/Patient/{pid}"))
        )


def _map_patient(m: _Mapper, p: _Patient) -> None:
    span = _date(p.resource.get("birthDate"))
    if "birthDate" not in p.resource:
        m.skip(f"{p.path}.birthDate", "no birth date: child or adult is unknown")
        return
    if span is None:
        m.skip(f"{p.path}.birthDate", "birth date could not be read")
        return
    earliest, latest = span
    oldest, youngest = _age_on(earliest, m.today), _age_on(latest, m.today)
    if youngest >= ADULT_AGE:
        m.set("patient.age_group", "adult", f"{p.path}.birthDate")
    elif oldest < ADULT_AGE:
        m.set("patient.age_group", "child", f"{p.path}.birthDate")
    else:
        m.skip(f"{p.path}.birthDate", "partial birth date: cannot tell child from adult")


def _condition_usable(m: _Mapper, path: str, res: Mapping[str, Any]) -> bool:
    ver = _code_in(res.get("verificationStatus"), VER_STATUS)
    if ver in ("refuted", "entered-in-error"):
        m.skip(path, "condition refuted or entered in error: not used")
        return False
    clinical = _code_in(res.get("clinicalStatus"), CLINICAL_STATUS)
    if clinical in ("inactive", "resolved", "remission"):
        m.skip(path, "condition not active: not used")
        return False
    if not m.about_patient(res.get("subject")):
        m.skip(path, "condition of another patient: not used")
        return False
    return True


def _icd10(res: Mapping[str, Any]) -> str | None:
    for coding in _codings(res.get("code")):
        if coding.get("system") in ICD10_SYSTEMS and isinstance(coding.get("code"), str):
            return str(coding["code"]).upper().replace(".", "")
    return None


def _in_block(code: str, letter: str, low: int, high: int) -> bool:
    return code[:1] == letter and code[1:3].isdigit() and low <= int(code[1:3]) <= high


def _map_condition(m: _Mapper, path: str, res: Mapping[str, Any], others: Sequence[str]) -> None:
    for other in others:
        m.skip(other, "the case holds one diagnosis: the most severe condition was used instead")
    severity_codes = [c for c in _codings(res.get("severity")) if c.get("system") == SNOMED]
    seriousness = next((_SEVERITY[str(c.get("code"))] for c in severity_codes if str(c.get("code")) in _SEVERITY), None)
    if seriousness is not None:
        m.set("diagnosis.seriousness", seriousness, f"{path}.severity")
    elif "severity" in res:
        m.skip(f"{path}.severity", "severity is not a SNOMED CT severity code this mapping knows")
    ver = _code_in(res.get("verificationStatus"), VER_STATUS)
    if ver in _CERTAINTY:
        m.set("diagnosis.certainty", _CERTAINTY[ver], f"{path}.verificationStatus")
    elif "verificationStatus" in res:
        m.skip(f"{path}.verificationStatus", "verification status code not known")
    code = _icd10(res)
    if code is None:
        if "code" in res:
            m.skip(f"{path}.code", "cancer and spine are read only from ICD-10 codes: left unknown")
        return
    if _in_block(code, "C", 0, 97):
        m.set("diagnosis.cancer", "yes", f"{path}.code")
        label = res["code"].get("text") or next(
            (c.get("display") for c in _codings(res.get("code")) if c.get("system") in ICD10_SYSTEMS), None
        )
        if isinstance(label, str) and 0 < len(label) <= 500:
            m.set("diagnosis.cancer_type", label, f"{path}.code")
    elif _in_block(code, "D", 0, 48):
        m.skip(f"{path}.code", "in situ, benign or uncertain neoplasm: cancer left unknown")
    elif code[:1] in ("R", "Z", "U", "V", "W", "X", "Y"):
        m.skip(f"{path}.code", "symptom, external cause or status code: cancer left unknown")
    else:
        m.set("diagnosis.cancer", "no", f"{path}.code")
    if _in_block(code, "M", 40, 54):
        m.set("diagnosis.spine", "yes", f"{path}.code")


def _planned_date(res: Mapping[str, Any]) -> tuple[str, Any] | None:
    for key in ("occurrenceDateTime", "performedDateTime"):
        if key in res:
            return key, res[key]
    for key in ("occurrencePeriod", "performedPeriod"):
        period = res.get(key)
        if isinstance(period, Mapping) and "start" in period:
            return f"{key}.start", period["start"]
    return None


def _map_surgery(m: _Mapper, path: str, res: Mapping[str, Any], deadlines: list[tuple[int, str]]) -> None:
    """Map a ServiceRequest or Procedure when it proposes surgery; report it otherwise."""
    kind = str(res.get("resourceType"))
    status = res.get("status")
    proposed = status in _REQUEST_STATUSES if kind == "ServiceRequest" else status == "preparation"
    if not proposed:
        m.skip(path, f"{kind} is not a proposed procedure (status): not used")
        return
    if not m.about_patient(res.get("subject")):
        m.skip(path, f"{kind} of another patient: not used")
        return
    if not _has_code(res.get("category"), SNOMED, SURGICAL_PROCEDURE):
        m.skip(path, f"{kind} is not categorised as a surgical procedure: other treatments are not mapped")
        return
    m.set("treatment.kind", "surgery", f"{path}.category")
    m.set("treatment.started", "no", f"{path}.status")
    planned = _planned_date(res)
    if planned is not None:
        key, value = planned
        span = _date(value)
        if span is None or span[0] != span[1]:
            m.skip(f"{path}.{key}", "planned date is not a full date: time to decide left unknown")
        elif span[0] <= m.today:
            m.skip(f"{path}.{key}", "planned date is not in the future: time to decide left unknown")
        else:
            deadlines.append(((span[0] - m.today).days, f"{path}.{key}"))


def _map_coverage(m: _Mapper, path: str, res: Mapping[str, Any]) -> None:
    if res.get("status") != "active":
        m.skip(path, "coverage is not active: not used")
        return
    if not m.about_patient(res.get("beneficiary")):
        m.skip(path, "coverage of another patient: not used")
        return
    period = res.get("period")
    if isinstance(period, Mapping) and "end" in period:
        end = _date(period["end"])
        if end is not None and end[1] < m.today:
            m.skip(f"{path}.period", "coverage period has ended: not used")
            return
    kind = res.get("kind")
    self_pay = kind == "self-pay" or _has_code(res.get("type"), SELF_PAY_SYSTEM, "pay")
    if self_pay:
        m.set("patient.pays_out_of_pocket", "yes", f"{path}.{'kind' if kind else 'type'}")
    elif kind in (None, "insurance"):
        m.set("insurance.insured", "yes", f"{path}.status")
    else:
        m.skip(f"{path}.kind", "coverage kind is neither insurance nor self-pay: not used")


def _resources(data: Any, path: str, problems: list[str]) -> list[tuple[str, str | None, Mapping[str, Any]]]:
    """The (path, fullUrl, resource) of a Bundle's entries, or of one resource; shape problems go to ``problems``."""
    if not isinstance(data, Mapping) or not isinstance(data.get("resourceType"), str):
        problems.append(f"expected a FHIR resource (a JSON object with a resourceType) @ {path}")
        return []
    if data["resourceType"] != "Bundle":
        return [(path, None, data)]
    entries = data.get("entry", [])
    if not isinstance(entries, list):
        problems.append(f"expected a list of entries @ {path}.entry")
        return []
    out: list[tuple[str, str | None, Mapping[str, Any]]] = []
    for i, entry in enumerate(entries):
        where = f"{path}.entry[{i}]"
        if not isinstance(entry, Mapping):
            problems.append(f"expected an object @ {where}")
            continue
        resource = entry.get("resource")
        if resource is None:
            continue
        if not isinstance(resource, Mapping) or not isinstance(resource.get("resourceType"), str):
            problems.append(f"expected a FHIR resource (a JSON object with a resourceType) @ {where}.resource")
            continue
        full_url = entry.get("fullUrl") if isinstance(entry.get("fullUrl"), str) else None
        out.append((f"{where}.resource", full_url, resource))
    return out


def _build(
    resources: Sequence[tuple[str, str | None, Mapping[str, Any]]],
    problems: list[str],
    version: FhirVersion,
    today: dt.date | None,
    patient_id: str | None,
) -> FhirCase:
    for path, _url, res in resources:
        if res["resourceType"] in _MAPPED_TYPES:
            problems.extend(_validate(version, path, res))
    if problems:
        raise FhirError(problems)
    m = _Mapper(today=today or dt.date.today(), patient_id=patient_id)

    patients = [
        _Patient(path, res.get("id") if isinstance(res.get("id"), str) else None, url, res)
        for path, url, res in resources
        if res["resourceType"] == "Patient"
    ]
    if patient_id is not None:
        matching = [p for p in patients if p.id == patient_id]
        for p in patients:
            if p not in matching:
                m.skip(p.path, "another patient: not used")
        patients = matching
    if len(patients) == 1:
        m.patient = patients[0]
        _map_patient(m, patients[0])
    elif len(patients) > 1:
        for p in patients:
            m.skip(p.path, "more than one Patient: child or adult is unknown")

    conditions = [(path, res) for path, _u, res in resources if res["resourceType"] == "Condition"]
    usable = [(path, res) for path, res in conditions if _condition_usable(m, path, res)]
    if usable:

        def rank(item: tuple[str, Mapping[str, Any]]) -> int:
            codes = [str(c.get("code")) for c in _codings(item[1].get("severity")) if c.get("system") == SNOMED]
            return max((_SEVERITY_RANK[_SEVERITY[c]] for c in codes if c in _SEVERITY), default=-1)

        chosen = max(usable, key=rank)  # ties: the first in the data
        _map_condition(m, chosen[0], chosen[1], [p for p, _r in usable if p != chosen[0]])

    deadlines: list[tuple[int, str]] = []
    for path, _u, res in resources:
        rtype = res["resourceType"]
        if rtype in ("ServiceRequest", "Procedure"):
            _map_surgery(m, path, res, deadlines)
        elif rtype == "Coverage":
            _map_coverage(m, path, res)
        elif rtype == "OperationOutcome":
            m.skip(path, "an OperationOutcome: the data could not be fetched")
        elif rtype not in ("Patient", "Condition"):
            m.skip(path, f"{rtype} resources are not mapped")
    if deadlines:
        days, source = min(deadlines)
        m.set("treatment.days_to_decide", days, source)

    try:
        case = load_case(m.case)
    except CaseError as exc:  # pragma: no cover - the mapper only writes values the case model accepts
        raise FhirError(list(exc.problems)) from None
    return FhirCase(case, _dedupe(m.mapped), tuple(m.unmapped))


def _dedupe(items: Iterable[Mapped]) -> tuple[Mapped, ...]:
    """Mapped fields, the last source of each field winning (as in the case)."""
    last: dict[str, Mapped] = {}
    for item in items:
        last.pop(item.case_field, None)
        last[item.case_field] = item
    return tuple(last.values())


def _check_version(version: str) -> FhirVersion:
    if version not in FHIR_VERSIONS:
        raise ValueError(f"unknown FHIR version (one of: {', '.join(FHIR_VERSIONS)})")
    return "R4B" if version == "R4B" else "R5"


def case_from_bundle(
    bundle: Mapping[str, Any] | str | bytes,
    *,
    fhir_version: FhirVersion = "R4B",
    today: dt.date | None = None,
    patient_id: str | None = None,
) -> FhirCase:
    """Build a case from a FHIR Bundle (or JSON text of one), reporting what could not be mapped.

    ``today`` is the day ages and times to decide are counted from (default:
    today); ``patient_id`` picks the patient when the bundle holds several.
    Raises :class:`FhirError` when the data is not valid FHIR.
    """
    version = _check_version(fhir_version)
    if isinstance(bundle, str | bytes):
        try:
            bundle = json.loads(bundle)
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise FhirError(["not valid JSON @ Bundle"]) from None
    problems: list[str] = []
    if not isinstance(bundle, Mapping) or bundle.get("resourceType") != "Bundle":
        raise FhirError(["expected a FHIR Bundle @ Bundle.resourceType"])
    resources = _resources(bundle, "Bundle", problems)
    return _build(resources, problems, version, today, patient_id)


def case_from_prefetch(
    prefetch: Mapping[str, Any],
    *,
    fhir_version: FhirVersion = "R4B",
    today: dt.date | None = None,
    patient_id: str | None = None,
) -> FhirCase:
    """Build a case from CDS Hooks prefetch data: each value a resource, a searchset Bundle, or null.

    Paths in the report read ``prefetch.<key>`` and ``prefetch.<key>.entry[i].resource``.
    """
    version = _check_version(fhir_version)
    problems: list[str] = []
    resources: list[tuple[str, str | None, Mapping[str, Any]]] = []
    for key, value in prefetch.items():
        if value is None:
            continue
        resources.extend(_resources(value, f"prefetch.{key}", problems))
    return _build(resources, problems, version, today, patient_id)


# --------------------------------------------------------------------------- writing


def _documentation(rec: Recommendation, rulebook: Rulebook) -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for src in rec.sources:
        doc = rulebook.documents.get(src.file)
        title = doc.title if doc is not None else src.file
        docs.append({"type": "citation", "label": src.file, "display": f"{title}: {src.section}", "citation": title})
    for ev in rec.evidence:
        docs.append({"type": "justification", "label": ev.id, "display": ev.figure})
    for rule in rulebook.rules_for(rec.rule_ids):
        entry: dict[str, Any] = {"type": "documentation", "label": rule.id, "display": rule.title}
        url = rule_url(rule)
        if url is not None:
            entry["document"] = {"url": url, "title": f"Rule {rule.id}"}
        docs.append(entry)
    return docs


def _kind_code(rec: Recommendation) -> dict[str, Any]:
    label = rec.kind.replace("_", " ").capitalize()
    return {"coding": [{"system": KIND_SYSTEM, "code": rec.kind, "display": label}], "text": label}


def _action(rec: Recommendation, rulebook: Rulebook) -> dict[str, Any]:
    from .render import details

    lines = [rec.detail, *(f"{label}: {value}" for label, value in details(rec))]
    action: dict[str, Any] = {
        "title": rec.title,
        "description": rec.detail,
        "textEquivalent": "\n".join(lines),
        "priority": _ACTION_PRIORITY[rec.priority],
        "code": [_kind_code(rec)],
        "documentation": _documentation(rec, rulebook),
    }
    if isinstance(rec, SetDeadline) and rec.get_opinion_within_days is not None:
        action["timingDuration"] = {"value": rec.get_opinion_within_days, "unit": "days", "system": UCUM, "code": "d"}
    return action


def _operation_outcome(mapping: FhirCase) -> dict[str, Any]:
    issues = [
        {"severity": "information", "code": "not-supported", "diagnostics": u.reason, "expression": [u.fhir_path]}
        for u in mapping.unmapped
    ]
    if not issues:
        issues = [{"severity": "information", "code": "informational", "diagnostics": "every FHIR resource was mapped"}]
    return {"resourceType": "OperationOutcome", "id": "mapping-report", "issue": issues}


def _identifier(value: str) -> dict[str, str]:
    """An Identifier: a URN when the value is a UUID, plain otherwise."""
    try:
        return {"system": "urn:ietf:rfc:3986", "value": uuid.UUID(value).urn}
    except ValueError:
        return {"value": value}


def guidance_response(
    advice: Advice,
    *,
    fhir_version: FhirVersion = "R5",
    rulebook: Rulebook | None = None,
    subject: str | None = None,
    request_id: str | None = None,
    occurred: dt.datetime | None = None,
    mapping: FhirCase | None = None,
) -> dict[str, Any]:
    """Advice as a FHIR GuidanceResponse (JSON-ready), validated with fhir.resources.

    The result is a contained RequestGroup (R4B) or RequestOrchestration (R5)
    with one action per recommendation. ``subject`` is a reference such as
    ``Patient/123``; ``request_id`` (e.g. a CDS Hooks hookInstance) becomes
    the requestIdentifier; ``mapping`` adds the FHIR mapping report as a
    contained OperationOutcome.
    """
    version = _check_version(fhir_version)
    book = rulebook if rulebook is not None else default_advisor().rulebook
    when = (occurred or dt.datetime.now(dt.UTC)).isoformat(timespec="seconds")
    plan: dict[str, Any] = {
        "resourceType": "RequestGroup" if version == "R4B" else "RequestOrchestration",
        "id": "plan",
        "status": "active",
        "intent": "proposal",
        "authoredOn": when,
        "note": [{"text": advice.disclaimer}],
        "action": [_action(rec, book) for rec in advice.recommendations],
    }
    if not plan["action"]:
        del plan["action"]
    response: dict[str, Any] = {
        "resourceType": "GuidanceResponse",
        "contained": [plan],
        "moduleUri": RULES_URL,
        "status": "success",
        "occurrenceDateTime": when,
        "note": [{"text": advice.disclaimer}],
        # R4B: one result and a list of messages; R5: a list of results and one message.
        "result": {"reference": "#plan"} if version == "R4B" else [{"reference": "#plan"}],
    }
    if subject is not None:
        response["subject"] = {"reference": subject}
        plan["subject"] = {"reference": subject}
    if request_id is not None:
        response["requestIdentifier"] = _identifier(request_id)
    if mapping is not None:
        response["contained"].append(_operation_outcome(mapping))
        message = {"reference": "#mapping-report"}
        response["evaluationMessage"] = [message] if version == "R4B" else message
    model = _model_class(version, "GuidanceResponse").model_validate(response)
    out: dict[str, Any] = json.loads(model.model_dump_json(exclude_none=True))
    return out
