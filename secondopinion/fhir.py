"""FHIR in and out: a Case from a FHIR Bundle, and Advice as a GuidanceResponse.

Needs the ``fhir`` extra (``pip install 'secondopinion[fhir]'``), which brings
`fhir.resources <https://pypi.org/project/fhir.resources/>`_, which validates
the resources this module maps and every resource it writes.

**In.** :func:`case_from_bundle` reads a Bundle (R4B, which also reads R4
data, or R5) and :func:`case_from_prefetch` reads CDS Hooks prefetch data and
an order hook's draft orders. Every Patient, Condition, ServiceRequest,
Procedure, MedicationRequest, CarePlan and Coverage is validated with
fhir.resources first. Codes are read through the value sets shipped in
:mod:`secondopinion.valuesets` (SNOMED CT, ICD-10-CM, RxNorm, ATC, CPT; free
text only as a fallback). They map only what the FHIR data states without
doubt and report everything else:

* ``Patient.birthDate`` -> ``patient.age_group``.
* The **focus** Condition (active, not refuted, a diagnosis rather than a
  social finding): an explicit ``focus`` id, else the one the planned
  treatment names as its reason, else the most serious (by
  severity, else by code; a known-minor one after one of unknown seriousness),
  cancer before others, then rare or spine, chronic ones last, the most
  recent, the first; a choice by date alone among unranked codes is reported
  as a guess. Its severity or code -> ``diagnosis.seriousness``; its
  code -> ``diagnosis.cancer``, ``cancer_type``, ``spine``, ``rare`` and the
  first opinion's ``diagnosis_code``; ``verificationStatus`` ->
  ``diagnosis.certainty``.
* The planned treatment (ServiceRequest, Procedure in preparation or in
  progress, MedicationRequest, CarePlan activity) in the surgery,
  chemotherapy or radiation value set -> ``treatment.kind``, ``started``,
  ``urgency`` (request priority) and ``days_to_decide`` (planned date).
* An emergency Encounter going on now (class EMER; arrived, triaged or in
  progress) -> ``treatment.urgency`` = emergency.
* ``Coverage`` (active, in its period): insurance -> ``insurance.insured`` =
  yes; self-pay -> ``patient.pays_out_of_pocket`` = yes, and, when every
  active Coverage is self-pay, ``insurance.insured`` = no.

References to the patient or to a Condition are read as FHIR and Synthea
write them: ``Patient/<id>`` (or a URL ending so), the entry's ``fullUrl``,
or ``urn:uuid:<id>``.

Each mapped case field names the FHIR element it came from; each element or
resource of a type the mapping reads that was not used is reported with its
path, the reason and whether it was ignored or not understood; every resource
is counted by type in the summary. Reports and errors name paths, never
values; an unknown ``resourceType`` is never echoed. docs/interop.md has the
full rules.

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
import functools
import json
import re
import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal, cast

import attrs
import pydantic

from . import valuesets
from .advisor import default_advisor
from .case import MAX_DAYS, Case, CaseError, load_case
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
    "FOCUS_NAMED",
    "KIND_SYSTEM",
    "FhirCase",
    "FhirError",
    "FhirVersion",
    "Focus",
    "Mapped",
    "PatientDeceased",
    "Unmapped",
    "case_from_bundle",
    "case_from_prefetch",
    "guidance_response",
    "type_name",
]

FhirVersion = Literal["R4B", "R5"]
FHIR_VERSIONS: tuple[FhirVersion, ...] = ("R4B", "R5")

ADULT_AGE = 18
SNOMED = "http://snomed.info/sct"
SURGICAL_PROCEDURE = "387713003"
ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
ICD10_SYSTEMS = frozenset({"http://hl7.org/fhir/sid/icd-10", ICD10CM})
VER_STATUS = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
CLINICAL_STATUS = "http://terminology.hl7.org/CodeSystem/condition-clinical"
SELF_PAY_SYSTEM = "http://terminology.hl7.org/CodeSystem/coverage-selfpay"
UCUM = "http://unitsofmeasure.org"
US_CORE_CATEGORY = "http://hl7.org/fhir/us/core/CodeSystem/us-core-category"
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"

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

# FHIR request priority of an action, by recommendation priority.
_ACTION_PRIORITY = {
    Priority.CRITICAL: "asap",
    Priority.HIGH: "urgent",
    Priority.MEDIUM: "routine",
    Priority.LOW: "routine",
}


@attrs.frozen
class Mapped:
    """A case field and the FHIR element its value came from; ``reason`` says why when it is not plain."""

    case_field: str
    fhir_path: str
    reason: str | None = None


Category = Literal["ignored", "not_understood"]


@attrs.frozen
class Unmapped:
    """A FHIR element or resource that was not used, and why (never its value).

    ``category`` is ``ignored`` when the data was understood and is not relevant
    (a resolved condition, another patient, a finished procedure) and
    ``not_understood`` when it might matter but the mapping cannot read it (a
    code in no value set).
    """

    fhir_path: str
    reason: str
    category: Category = "not_understood"


@attrs.frozen
class Focus:
    """The Condition the advice is about, and why it was chosen over the others."""

    fhir_path: str
    reason: str


@attrs.frozen
class FhirCase:
    """A case built from FHIR data, with what was mapped and what was not.

    ``summary`` counts the resources of each type: ``mapped`` (gave at least
    one case field), ``ignored`` (understood, not relevant) and
    ``not_understood``. Resources of types the mapping never reads (Observation,
    Claim...) and Encounters other than an emergency visit going on now are
    counted there and not listed in ``unmapped``.
    ``patient`` is the path of the Patient resource the case is about (None
    when the data holds none, or several and no ``patient_id`` picked one);
    ``patients`` the paths of every Patient resource in the data.
    """

    case: Case
    mapped: tuple[Mapped, ...] = ()
    unmapped: tuple[Unmapped, ...] = ()
    focus: Focus | None = None
    summary: Mapping[str, Mapping[str, int]] = attrs.field(factory=dict)
    patient: str | None = None
    patients: tuple[str, ...] = ()

    def patients_named(self, limit: int = 5) -> str:
        """The paths of the Patient resources, for a message: at most ``limit``, then "..."."""
        return ", ".join(self.patients[:limit]) + (", ..." if len(self.patients) > limit else "")

    def report(self) -> dict[str, Any]:
        """The mapping report as JSON-ready data."""
        out: dict[str, Any] = {
            "summary": {k: dict(v) for k, v in self.summary.items()},
            "mapped": [_mapped_item(m) for m in self.mapped],
            "unmapped": [{"fhir_path": u.fhir_path, "reason": u.reason, "category": u.category} for u in self.unmapped],
        }
        if self.focus is not None:
            out["focus"] = {"fhir_path": self.focus.fhir_path, "reason": self.focus.reason}
        return out


def _mapped_item(m: Mapped) -> dict[str, str]:
    item = {"case_field": m.case_field, "fhir_path": m.fhir_path}
    if m.reason is not None:
        item["reason"] = m.reason
    return item


class FhirError(ValueError):
    """FHIR data that could not be read. ``problems`` names each problem with its path, never a value."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = tuple(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"invalid FHIR data ({len(self.problems)} problem(s)):\n{lines}")


class PatientDeceased(FhirError):
    """The Patient the case is about has died (``Patient.deceased[x]``): no advice about a second opinion applies.

    Valid FHIR, so not "invalid"; a :class:`FhirError` so that every caller that
    handles FHIR it cannot advise on handles this too. ``path`` names the element.
    """

    REASON = "the patient has died: no second-opinion advice applies"
    """Why there is no advice, as every caller says it (no date, no value)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.problems = (f"{self.REASON} @ {path}",)
        ValueError.__init__(self, f"the patient has died ({path}): no second-opinion advice applies")


# --------------------------------------------------------------------------- reading helpers


def _model_class(version: FhirVersion, resource_type: str) -> type[pydantic.BaseModel]:
    getter = _r4b_class if version == "R4B" else _r5_class
    return cast(type[pydantic.BaseModel], getter(resource_type))


_TYPE_NAME = re.compile(r"[A-Z][A-Za-z]{1,63}")
UNKNOWN_TYPE = "(unknown resource type)"


@functools.lru_cache(maxsize=512)
def _known_type(version: FhirVersion, name: str) -> bool:
    try:
        _model_class(version, name)
    except Exception:  # fhir.resources raises several kinds for a name it does not know
        return False
    return True


def type_name(version: FhirVersion, value: Any) -> str:
    """A resource type safe to show: a FHIR type this version knows, else a fixed placeholder (never echoed raw)."""
    if isinstance(value, str) and _TYPE_NAME.fullmatch(value) and _known_type(version, value):
        return value
    return UNKNOWN_TYPE


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
    except (ValueError, TypeError, KeyError, RecursionError):
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


def _texts(concept: Any) -> list[str]:
    """The human text of a CodeableConcept (or list): its text and its codings' displays."""
    concepts = concept if isinstance(concept, list) else [concept]
    out = [c["text"] for c in concepts if isinstance(c, Mapping) and isinstance(c.get("text"), str)]
    out += [c["display"] for c in _codings(concept) if isinstance(c.get("display"), str)]
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


def _points_at(ref: str, resource_type: str, rid: str | None, full_url: str | None) -> bool:
    """Whether a reference names this resource: its fullUrl, ``Type/id`` (or a URL ending so), or ``urn:uuid:id``.

    Synthea writes ``fullUrl: urn:uuid:<id>`` and references ``urn:uuid:<id>``;
    CDS Hooks prefetch sends the same resources without that fullUrl, so
    ``urn:uuid:<id>`` also names the resource whose id is ``<id>``.
    """
    if full_url is not None and ref == full_url:
        return True
    if rid is None:
        return False
    return ref in (f"{resource_type}/{rid}", f"urn:uuid:{rid}") or ref.endswith(f"/{resource_type}/{rid}")


def _plain_id(reference: str) -> str:
    """A patient id given as ``Patient/<id>`` or ``urn:uuid:<id>``, as the bare id."""
    return reference.removeprefix("Patient/").removeprefix("urn:uuid:")


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
    case: dict[str, Any] = attrs.Factory(dict)
    mapped: list[Mapped] = attrs.Factory(list)
    unmapped: list[Unmapped] = attrs.Factory(list)
    patient: _Patient | None = None
    focus: Focus | None = None
    medications: dict[str, Mapping[str, Any]] = attrs.Factory(dict)
    """Medication resources in the data, by each reference that names them (for medicationReference)."""

    def set(self, field: str, value: Any, source: str, reason: str | None = None) -> None:
        part, name = field.split(".")
        self.case.setdefault(part, {})[name] = value
        self.mapped.append(Mapped(field, source, reason))

    def skip(self, path: str, reason: str, category: Category = "not_understood") -> None:
        self.unmapped.append(Unmapped(path, reason, category))

    def ignore(self, path: str, reason: str) -> None:
        self.skip(path, reason, "ignored")

    def about_patient(self, ref: Any) -> bool:
        """Whether a reference points at the case's patient (true when that patient is not known)."""
        target = _reference_targets(ref)
        if self.patient is not None:
            pid, full_url = self.patient.id, self.patient.full_url
        else:
            pid, full_url = (_plain_id(self.patient_id) if self.patient_id is not None else None), None
        if target is None or (pid is None and full_url is None):
            return True
        return _points_at(target, "Patient", pid, full_url)


def _check_alive(p: _Patient) -> None:
    """Refuse a Patient who has died (Synthea records a death date for many of its patients)."""
    if p.resource.get("deceasedBoolean") is True:
        raise PatientDeceased(f"{p.path}.deceasedBoolean")
    if "deceasedDateTime" in p.resource:
        raise PatientDeceased(f"{p.path}.deceasedDateTime")


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


# --------------------------------------------------------------------------- conditions


def _condition_usable(m: _Mapper, path: str, res: Mapping[str, Any]) -> bool:
    ver = _code_in(res.get("verificationStatus"), VER_STATUS)
    if ver in ("refuted", "entered-in-error"):
        m.ignore(path, "condition refuted or entered in error: not used")
        return False
    clinical = _code_in(res.get("clinicalStatus"), CLINICAL_STATUS)
    if clinical in ("inactive", "resolved", "remission"):
        m.ignore(path, "condition not active: not used")
        return False
    if "clinicalStatus" not in res and any(key.startswith("abatement") for key in res):
        # FHIR's con-4: a Condition that has ended is not active, whether or not its status says so.
        m.ignore(path, "condition not active (it has an end date): not used")
        return False
    if not m.about_patient(res.get("subject")):
        m.ignore(path, "condition of another patient: not used")
        return False
    if valuesets.load("not-a-diagnosis").match_codings(_codings(res.get("code"))) is not None or _has_code(
        res.get("category"), US_CORE_CATEGORY, "sdoh"
    ):
        m.ignore(path, "a social or administrative finding, not a diagnosis: not used")
        return False
    return True


_CONDITION_SETS = ("cancer", "life-threatening", "serious", "spine", "rare", "chronic", "minor")
# How the focus ranks seriousness: a condition known to be minor comes after one whose seriousness is
# not known (its code may be in no value set and still be grave), which comes after moderate ones.
_FOCUS_RANK = {"minor": 0, None: 1, "moderate": 2, "serious": 3, "life_threatening": 4}
_CODE_SYSTEMS = {SNOMED: "snomed", ICD10CM: "icd10cm"}
_CODE_SHAPES = {"snomed": re.compile(r"[1-9][0-9]{5,17}"), "icd10cm": re.compile(r"[A-Z][0-9][0-9A-Z]{1,5}")}


@attrs.frozen
class _Condition:
    """A usable Condition with what its codes and severity say."""

    index: int
    path: str
    full_url: str | None
    res: Mapping[str, Any]
    matches: Mapping[str, valuesets.Match]
    severity: str | None
    recorded: dt.date

    @property
    def seriousness(self) -> str | None:
        """From the severity when stated, else implied by the code's value sets (the gravest)."""
        if self.severity is not None:
            return self.severity
        implied = [
            valuesets.load(vs).implies.get("diagnosis.seriousness")
            for vs in self.matches
            if self.matches[vs].by == "code"
        ]
        ranked = [s for s in implied if s is not None]
        return max(ranked, key=lambda s: _SEVERITY_RANK[s], default=None)

    def key(self) -> tuple[int, int, int, int, dt.date, int]:
        """Most serious first (known-minor last), cancer first, then rare or spine, chronic last, most recent, first."""
        serious = _FOCUS_RANK[self.seriousness]
        special = "rare" in self.matches or "spine" in self.matches
        return (serious, "cancer" in self.matches, special, "chronic" not in self.matches, self.recorded, -self.index)


FOCUS_NAMED = "the focus condition named by the caller"
"""The focus reason when the caller named the Condition (``focus``) and it was found."""

_KEY_REASONS = (
    "the most serious active condition (by its severity or its code)",
    "cancer comes before other conditions",
    "a rare disease or spine problem comes before other conditions",
    "other conditions come before common chronic ones",
    "the most recent active condition",
    "the first active condition in the data (the others are no more serious, nor more recent)",
)


def _recorded(res: Mapping[str, Any]) -> dt.date:
    period = res.get("onsetPeriod")
    start = period.get("start") if isinstance(period, Mapping) else None
    for value in (res.get("onsetDateTime"), start, res.get("recordedDate")):
        span = _date(value)
        if span is not None:
            return span[0]
    return dt.date.min


def _condition(index: int, path: str, full_url: str | None, res: Mapping[str, Any]) -> _Condition:
    codings = _codings(res.get("code"))
    matches: dict[str, valuesets.Match] = {}
    for vs_id in _CONDITION_SETS:
        found = valuesets.load(vs_id).match_codings(codings)
        if found is not None:
            matches[vs_id] = found
    # Free text only when no code is recognised, and never beside an ICD-10 code (its blocks are complete).
    if not matches and not any(c.get("system") in ICD10_SYSTEMS for c in codings):
        for vs_id in _CONDITION_SETS:
            found = valuesets.load(vs_id).match_text(_texts(res.get("code")))
            if found is not None:
                matches[vs_id] = found
    severity_codes = [str(c.get("code")) for c in _codings(res.get("severity")) if c.get("system") == SNOMED]
    severity = next((_SEVERITY[c] for c in severity_codes if c in _SEVERITY), None)
    return _Condition(index, path, full_url, res, matches, severity, _recorded(res))


_BY_DATE = 4  # the position in the key from which the choice is by date and order, not by code


def _focus_reason(chosen: _Condition, others: Sequence[_Condition]) -> tuple[str, bool]:
    """Why this condition was chosen, and whether the choice is a guess.

    A guess: the chosen condition's code is in none of the value sets, and the next one ranks the
    same by code, so only the dates (or the order in the data) told them apart.
    """
    if not others:
        return "the only active condition", False
    runner_up = max(others, key=_Condition.key)
    for position, (a, b) in enumerate(zip(chosen.key(), runner_up.key(), strict=True)):
        if a != b:
            return _KEY_REASONS[position], position >= _BY_DATE and not chosen.matches
    return _KEY_REASONS[-1], not chosen.matches  # pragma: no cover - the index makes every key unique


GUESS = (
    "a guess: more than one active condition has a code this mapping cannot rank, so the date chose;"
    " check it, or name the condition (focus)"
)
"""The report item (at path ``focus``) when the focus was chosen by date among conditions of unknown codes."""


def _is_focus(c: _Condition, focus: str) -> bool:
    """Whether ``focus`` names this Condition: its path in the report, its id, or a reference to it."""
    rid = c.res.get("id")
    rid = rid if isinstance(rid, str) else None
    return focus in (c.path, rid) or _points_at(focus, "Condition", rid, c.full_url)


def _referenced(c: _Condition, refs: Sequence[str]) -> bool:
    """Whether one of the references (``Condition/id``, a full URL, a ``urn:uuid``) points at this Condition."""
    rid = c.res.get("id")
    return any(_points_at(ref, "Condition", rid if isinstance(rid, str) else None, c.full_url) for ref in refs)


def _choose_condition(
    m: _Mapper, usable: Sequence[_Condition], focus: str | None, reasons: Sequence[str] = ()
) -> _Condition | None:
    if not usable:
        if focus is not None:
            m.skip("focus", "the focus condition is not among the active conditions of the patient")
        return None
    chosen: _Condition | None = None
    if focus is not None:
        chosen = next((c for c in usable if _is_focus(c, focus)), None)
        if chosen is None:
            m.skip("focus", "the focus condition is not among the active conditions: the rules below chose one")
    others = [c for c in usable if c is not chosen] if chosen is not None else []
    treated = [c for c in usable if _referenced(c, reasons)] if chosen is None else []
    if chosen is not None:
        reason = FOCUS_NAMED
    elif treated:
        chosen = max(treated, key=_Condition.key)
        others = [c for c in usable if c is not chosen]
        reason = "the condition the planned treatment is for (its reason)"
    else:
        chosen = max(usable, key=_Condition.key)
        others = [c for c in usable if c is not chosen]
        reason, guess = _focus_reason(chosen, others)
        if guess:
            reason = f"{reason} - {GUESS}"
            m.skip("focus", GUESS)
    m.focus = Focus(chosen.path, reason)
    author = _author(chosen.res)
    codes = _code_pairs(chosen.res)
    for other in others:
        other_author = _author(other.res)
        if codes & _code_pairs(other.res):
            m.ignore(other.path, "the same diagnosis recorded again (a code in common with the focus): not used")
        elif author is not None and other_author is not None and other_author != author:
            m.skip(other.path, ANOTHER_AUTHOR)
        else:
            m.ignore(other.path, "the case holds one diagnosis: another condition was chosen (see focus)")
    return chosen


def _code_pairs(res: Mapping[str, Any]) -> set[tuple[str, str]]:
    """The (system, normalised code) pairs of a Condition's code."""
    return {
        (str(c["system"]), valuesets.normalise(c["code"]))
        for c in _codings(res.get("code"))
        if isinstance(c.get("system"), str) and isinstance(c.get("code"), str)
    }


ANOTHER_AUTHOR = (
    "another condition, asserted or recorded by someone else than the focus: if it is another doctor's"
    " view of the same problem, the opinions differ (add it to the case as an opinion)"
)
"""The report reason for a Condition not chosen whose asserter (or recorder) is not the focus's."""


def _author(res: Mapping[str, Any]) -> str | None:
    """Who stated the Condition: its asserter, else its recorder (a reference), else None."""
    for key in ("asserter", "recorder"):
        target = _reference_targets(res.get(key))
        if target is not None:
            return target
    return None


_SEMANTIC_TAG = re.compile(r"\s*\((?:disorder|finding|situation|morphologic abnormality)\)\s*$")


def _label(res: Mapping[str, Any]) -> str | None:
    """A short label of the condition: its text or first display, without a SNOMED CT semantic tag."""
    texts = _texts(res.get("code"))
    label = _SEMANTIC_TAG.sub("", texts[0]) if texts else None
    return label if isinstance(label, str) and 0 < len(label) <= 500 else None


def _map_condition(m: _Mapper, c: _Condition) -> None:
    path, res = c.path, c.res
    if c.severity is not None:
        m.set("diagnosis.seriousness", c.severity, f"{path}.severity")
    else:
        if "severity" in res:
            m.skip(f"{path}.severity", "severity is not a SNOMED CT severity code this mapping knows")
        if c.seriousness is not None:
            m.set("diagnosis.seriousness", c.seriousness, f"{path}.code")
    ver = _code_in(res.get("verificationStatus"), VER_STATUS)
    if ver in _CERTAINTY:
        m.set("diagnosis.certainty", _CERTAINTY[ver], f"{path}.verificationStatus")
    elif "verificationStatus" in res:
        m.skip(f"{path}.verificationStatus", "verification status code not known")
    where = f"{path}.code"
    for vs_id in ("cancer", "spine", "rare"):
        found = c.matches.get(vs_id)
        if found is not None:
            source = where if found.by == "code" else f"{where} (text)"
            for field, value in valuesets.load(vs_id).implies.items():
                if field != "diagnosis.seriousness":
                    m.set(field, value, source)
    if "cancer" in c.matches:
        label = _label(res)
        if label is not None:
            m.set("diagnosis.cancer_type", label, where)
    else:
        _not_cancer(m, c, where)
    _diagnosis_code(m, res, where)


def _not_cancer(m: _Mapper, c: _Condition, where: str) -> None:
    """Cancer = no only when a code says so without doubt; otherwise report why it stays unknown."""
    icd = next(
        (
            valuesets.normalise(x["code"])
            for x in _codings(c.res.get("code"))
            if x.get("system") in ICD10_SYSTEMS and isinstance(x.get("code"), str)
        ),
        None,
    )
    if icd is not None:
        if icd[:1] == "D" and icd[1:3].isdigit() and int(icd[1:3]) <= 48:
            m.skip(where, "in situ, benign or uncertain neoplasm: cancer left unknown")
        elif icd[:1] in ("R", "Z", "U", "V", "W", "X", "Y"):
            m.skip(where, "symptom, external cause or status code: cancer left unknown")
        else:
            m.set("diagnosis.cancer", "no", where)
        return
    if any(vs in c.matches and c.matches[vs].by == "code" for vs in ("spine", "rare", "serious", "chronic", "minor")):
        m.set("diagnosis.cancer", "no", where)
        return
    if "code" in c.res:
        m.skip(where, "code in none of the value sets (cancer, spine, rare...): cancer left unknown")


def _diagnosis_code(m: _Mapper, res: Mapping[str, Any], where: str) -> None:
    """The condition's code as the current doctor's coded diagnosis (opinions[0])."""
    for coding in _codings(res.get("code")):
        system = _CODE_SYSTEMS.get(str(coding.get("system")))
        code = coding.get("code")
        if system is None or not isinstance(code, str):
            continue
        norm = valuesets.normalise(code)
        if _CODE_SHAPES[system].fullmatch(norm):
            m.case["opinions"] = [{"diagnosis_code": norm, "diagnosis_code_system": system}]
            m.mapped.append(Mapped("opinions[0].diagnosis_code", where))
            m.mapped.append(Mapped("opinions[0].diagnosis_code_system", where))
            return


# --------------------------------------------------------------------------- treatment


_TREATMENT_SETS = ("surgery", "chemotherapy", "radiation")
_TREATMENT_ORDER = {"surgery": 0, "chemotherapy": 1, "radiation": 2}
_URGENCY = {"stat": "emergency", "asap": "urgent", "urgent": "urgent", "routine": "can_wait"}


@attrs.frozen
class _Treatment:
    kind: str
    path: str
    source: str  # the element the kind was read from
    draft: bool  # from the hook's draft orders: what is being ordered right now
    started: str | None
    started_source: str
    planned: tuple[str, Any] | None
    priority: str | None
    index: int
    reasons: tuple[str, ...] = ()

    def key(self, today: dt.date) -> tuple[int, int, dt.date, int]:
        """Draft orders first, then surgery, chemotherapy, radiation, then the soonest planned, then data order."""
        span = _date(self.planned[1]) if self.planned is not None else None
        soonest = span[0] if span is not None and span[0] == span[1] and span[0] > today else dt.date.max
        return (0 if self.draft else 1, _TREATMENT_ORDER[self.kind], soonest, self.index)


def _planned_date(res: Mapping[str, Any]) -> tuple[str, Any] | None:
    for key in ("occurrenceDateTime", "performedDateTime"):
        if key in res:
            return key, res[key]
    for key in ("occurrencePeriod", "performedPeriod"):
        period = res.get(key)
        if isinstance(period, Mapping) and "start" in period:
            return f"{key}.start", period["start"]
    return None


def _match_treatment(concepts: Sequence[tuple[str, Any]]) -> tuple[str, str] | None:
    """(kind, element) of the first concept in a treatment value set: codes first, then text."""
    for by_text in (False, True):
        for element, concept in concepts:
            for vs_id in _TREATMENT_SETS:
                vs = valuesets.load(vs_id)
                found = vs.match_text(_texts(concept)) if by_text else vs.match_codings(_codings(concept))
                if found is not None:
                    return vs.implies["treatment.kind"], element + (" (text)" if by_text else "")
    return None


_STARTED: dict[str, dict[str, str | None]] = {
    "ServiceRequest": {"draft": "no", "active": "no", "on-hold": "no"},
    "Procedure": {"preparation": "no", "in-progress": "yes"},
    "MedicationRequest": {"draft": "no", "on-hold": "no", "active": None},
    "CarePlan": {"draft": "no", "on-hold": "no", "active": None},
}


def _reason_refs(res: Mapping[str, Any]) -> tuple[str, ...]:
    """The Conditions a request, procedure or plan says it is for (R4/R4B and R5 shapes)."""
    refs: list[Any] = []
    for key in ("reasonReference", "addresses", "reason"):
        value = res.get(key)
        for item in value if isinstance(value, list) else []:
            if isinstance(item, Mapping):
                refs.append(item.get("reference") if isinstance(item.get("reference"), Mapping) else item)
    return tuple(t for t in (_reference_targets(r) for r in refs) if t is not None)


def _medication_concepts(m: _Mapper, res: Mapping[str, Any]) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    if "medicationCodeableConcept" in res:  # R4 / R4B
        out.append(("medicationCodeableConcept", res["medicationCodeableConcept"]))
    medication = res.get("medication")
    if isinstance(medication, Mapping) and "concept" in medication:  # R5 CodeableReference
        out.append(("medication.concept", medication["concept"]))
    # A reference to a Medication: contained ("#id", as EHRs often send draft orders) or elsewhere in the data.
    for element, ref in (("medicationReference", res.get("medicationReference")), ("medication.reference", None)):
        if ref is None and isinstance(medication, Mapping):
            ref = medication.get("reference")
        target = _reference_targets(ref)
        if target is None:
            continue
        found: Mapping[str, Any] | None = None
        if target.startswith("#"):
            found = next(
                (
                    c
                    for c in res.get("contained") or []
                    if isinstance(c, Mapping) and c.get("resourceType") == "Medication" and c.get("id") == target[1:]
                ),
                None,
            )
        else:
            found = m.medications.get(target)
        if found is not None:
            out.append((element, found.get("code")))
    out.append(("category", res.get("category")))
    return out


def _index_medications(m: _Mapper, resources: Sequence[Entry]) -> None:
    """Each Medication resource under the references that can name it."""
    for _path, url, res in resources:
        rid = res.get("id")
        if res["resourceType"] != "Medication" or not isinstance(rid, str):
            continue
        for ref in (f"Medication/{rid}", f"urn:uuid:{rid}", url):
            if ref is not None:
                m.medications[ref] = res


def _treatment(m: _Mapper, index: int, path: str, res: Mapping[str, Any], draft: bool) -> _Treatment | None:
    kind = str(res.get("resourceType"))
    status = res.get("status")
    started_by_status = _STARTED[kind]
    if status not in started_by_status:
        m.ignore(path, f"{kind} is not planned or in preparation (status): not used")
        return None
    subject = res.get("subject")
    if not m.about_patient(subject):
        m.ignore(path, f"{kind} of another patient: not used")
        return None
    if kind == "MedicationRequest":
        concepts = _medication_concepts(m, res)
    elif kind == "CarePlan":
        concepts = [("category", res.get("category"))]
        for i, activity in enumerate(res.get("activity") or []):
            detail = activity.get("detail") if isinstance(activity, Mapping) else None
            if isinstance(detail, Mapping) and detail.get("status") not in ("completed", "cancelled", "stopped"):
                concepts.append((f"activity[{i}].detail.code", detail.get("code")))
    else:
        concepts = [("category", res.get("category")), ("code", res.get("code"))]
    found = _match_treatment(concepts)
    if found is None:
        m.skip(path, f"{kind} is not surgery, chemotherapy or radiation by its codes: not used")
        return None
    treatment_kind, element = found
    priority = res.get("priority") if kind in ("ServiceRequest", "MedicationRequest") else None
    return _Treatment(
        kind=treatment_kind,
        path=path,
        source=f"{path}.{element}",
        draft=draft,
        started=started_by_status[str(status)],
        started_source=f"{path}.status",
        planned=_planned_date(res) if kind in ("ServiceRequest", "Procedure") else None,
        priority=priority if isinstance(priority, str) else None,
        index=index,
        reasons=_reason_refs(res),
    )


def _pick_treatment(m: _Mapper, found: Sequence[_Treatment]) -> _Treatment | None:
    if not found:
        return None
    chosen = min(found, key=lambda t: t.key(m.today))
    for other in found:
        if other is not chosen:
            m.ignore(other.path, "the case holds one treatment: another planned treatment was used")
    return chosen


def _map_treatment(m: _Mapper, chosen: _Treatment) -> None:
    m.set("treatment.kind", chosen.kind, chosen.source)
    if chosen.started is not None:
        m.set("treatment.started", chosen.started, chosen.started_source)
    if chosen.priority in _URGENCY:
        m.set("treatment.urgency", _URGENCY[chosen.priority], f"{chosen.path}.priority")
    if chosen.planned is not None:
        key, value = chosen.planned
        span = _date(value)
        if span is None or span[0] != span[1]:
            m.skip(f"{chosen.path}.{key}", "planned date is not a full date: time to decide left unknown")
        elif span[0] <= m.today:
            m.skip(f"{chosen.path}.{key}", "planned date is not in the future: time to decide left unknown")
        else:
            m.set("treatment.days_to_decide", min((span[0] - m.today).days, MAX_DAYS), f"{chosen.path}.{key}")


# --------------------------------------------------------------------------- emergency encounter


# Encounter statuses that mean the visit is going on now: R4/R4B (arrived, triaged, in-progress) and R5.
_ENCOUNTER_NOW = frozenset({"arrived", "triaged", "in-progress"})


def _emergency_now(m: _Mapper, res: Mapping[str, Any]) -> bool:
    """Whether an Encounter says the patient is in an emergency department now (class EMER, going on)."""
    if res.get("status") not in _ENCOUNTER_NOW or not m.about_patient(res.get("subject")):
        return False
    klass = res.get("class")
    # R4/R4B: class is one Coding; R5: a list of CodeableConcepts.
    codings = [klass] if isinstance(klass, Mapping) and "code" in klass else _codings(klass)
    return any(c.get("system") == ACT_CODE and c.get("code") == "EMER" for c in codings)


def _map_emergency(m: _Mapper, encounters: Sequence[str]) -> None:
    """An emergency visit going on now makes it an emergency, whatever an order's priority says."""
    if encounters:
        m.set(
            "treatment.urgency",
            "emergency",
            f"{encounters[0]}.class",
            "an emergency department visit is going on now (class EMER, status arrived, triaged or in progress)",
        )


# --------------------------------------------------------------------------- coverage


CoverageKind = Literal["insurance", "self-pay", "other"]


def _map_coverage(m: _Mapper, path: str, res: Mapping[str, Any]) -> tuple[CoverageKind, str] | None:
    """An active Coverage of the patient: what kind it is and the element that says so (None when not used)."""
    if res.get("status") != "active":
        m.ignore(path, "coverage is not active: not used")
        return None
    if not m.about_patient(res.get("beneficiary")):
        m.ignore(path, "coverage of another patient: not used")
        return None
    period = res.get("period")
    if isinstance(period, Mapping) and "end" in period:
        end = _date(period["end"])
        if end is not None and end[1] < m.today:
            m.ignore(f"{path}.period", "coverage period has ended: not used")
            return None
    kind = res.get("kind")
    self_pay = kind == "self-pay" or valuesets.load("self-pay").match_codings(_codings(res.get("type"))) is not None
    if self_pay:
        source = f"{path}.{'kind' if kind else 'type'}"
        m.set("patient.pays_out_of_pocket", "yes", source)
        return "self-pay", source
    if kind in (None, "insurance"):
        m.set("insurance.insured", "yes", f"{path}.status")
        return "insurance", f"{path}.status"
    m.skip(f"{path}.kind", "coverage kind is neither insurance nor self-pay: not used")
    return "other", f"{path}.kind"


def _map_insured(m: _Mapper, coverages: Sequence[tuple[CoverageKind, str]]) -> None:
    """Not insured when every active Coverage of the patient is self-pay (insurance ones set yes as they come)."""
    if coverages and all(kind == "self-pay" for kind, _source in coverages):
        m.set("insurance.insured", "no", coverages[0][1], "every active Coverage is self-pay: no insurance")


# --------------------------------------------------------------------------- the walk


Entry = tuple[str, str | None, Mapping[str, Any]]


def _resources(data: Any, path: str, problems: list[str]) -> list[Entry]:
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
    out: list[Entry] = []
    for i, entry in enumerate(entries):
        where = f"{path}.entry[{i}]"
        if not isinstance(entry, Mapping):
            problems.append(f"expected an object @ {where}")
            continue
        resource = entry.get("resource")
        search = entry.get("search")
        if resource is None or (isinstance(search, Mapping) and search.get("mode") == "outcome"):
            continue  # an empty entry, or a searchset's own warnings (search.mode outcome), not patient data
        if not isinstance(resource, Mapping) or not isinstance(resource.get("resourceType"), str):
            problems.append(f"expected a FHIR resource (a JSON object with a resourceType) @ {where}.resource")
            continue
        full_url = entry.get("fullUrl") if isinstance(entry.get("fullUrl"), str) else None
        out.append((f"{where}.resource", full_url, resource))
    return out


_MAPPED_TYPES = frozenset(
    {"Patient", "Condition", "ServiceRequest", "Procedure", "Coverage", "MedicationRequest", "CarePlan"}
)
_TREATMENT_TYPES = frozenset({"ServiceRequest", "Procedure", "MedicationRequest", "CarePlan"})
# Counted mapped or ignored in the summary; an Encounter is read (and validated) only when it is an
# emergency visit going on now, so a Synthea record's hundreds of past visits cost nothing.
_SUMMARY_TYPES = _MAPPED_TYPES | {"Encounter"}


def _summary(
    version: FhirVersion, resources: Sequence[Entry], mapped: Sequence[Mapped], unmapped: Sequence[Unmapped]
) -> dict[str, dict[str, int]]:
    counts: dict[str, dict[str, int]] = {}
    for path, _url, res in resources:
        name = type_name(version, res["resourceType"])
        if name in _SUMMARY_TYPES:
            own = (path, path + ".", path + "[", path + " ")
            if any(x.fhir_path == path or x.fhir_path.startswith(own[1:]) for x in mapped):
                status = "mapped"
            elif any(
                (u.fhir_path == path or u.fhir_path.startswith(own[1:])) and u.category == "not_understood"
                for u in unmapped
            ):
                status = "not_understood"
            else:
                status = "ignored"
        elif name == "OperationOutcome":
            status = "not_understood"
        else:
            status = "ignored"
        row = counts.setdefault(name, {"mapped": 0, "ignored": 0, "not_understood": 0})
        row[status] += 1
    return dict(sorted(counts.items()))


def _build(
    resources: Sequence[Entry],
    problems: list[str],
    version: FhirVersion,
    today: dt.date | None,
    patient_id: str | None,
    focus: str | None = None,
    draft_prefix: str | None = None,
) -> FhirCase:
    m = _Mapper(today=today or dt.date.today(), patient_id=patient_id)
    for path, _url, res in resources:
        if res["resourceType"] in _MAPPED_TYPES or (res["resourceType"] == "Encounter" and _emergency_now(m, res)):
            problems.extend(_validate(version, path, res))
    if problems:
        raise FhirError(problems)

    patients = [
        _Patient(path, res.get("id") if isinstance(res.get("id"), str) else None, url, res)
        for path, url, res in resources
        if res["resourceType"] == "Patient"
    ]
    every_patient = tuple(p.path for p in patients)
    if patient_id is not None:
        matching = [p for p in patients if p.id == _plain_id(patient_id) or p.full_url == patient_id]
        for p in patients:
            if p not in matching:
                m.ignore(p.path, "another patient: not used")
        patients = matching
    if len(patients) == 1:
        m.patient = patients[0]
        _check_alive(patients[0])
        _map_patient(m, patients[0])
    elif len(patients) > 1:
        for p in patients:
            m.skip(p.path, "more than one Patient: child or adult is unknown")

    treatments: list[_Treatment] = []
    coverages: list[tuple[CoverageKind, str]] = []
    emergencies: list[str] = []
    _index_medications(m, resources)
    for index, (path, _u, res) in enumerate(resources):
        rtype = res["resourceType"]
        if rtype in _TREATMENT_TYPES:
            draft = draft_prefix is not None and path.startswith(draft_prefix)
            found = _treatment(m, index, path, res, draft)
            if found is not None:
                treatments.append(found)
        elif rtype == "Coverage":
            coverage = _map_coverage(m, path, res)
            if coverage is not None:
                coverages.append(coverage)
        elif rtype == "Encounter" and _emergency_now(m, res):
            emergencies.append(path)
        elif rtype == "OperationOutcome":
            m.skip(path, "an OperationOutcome: the data could not be fetched")
    _map_insured(m, coverages)
    treatment = _pick_treatment(m, treatments)

    usable = [
        _condition(i, path, url, res)
        for i, (path, url, res) in enumerate(resources)
        if res["resourceType"] == "Condition" and _condition_usable(m, path, res)
    ]
    chosen = _choose_condition(m, usable, focus, treatment.reasons if treatment is not None else ())
    if chosen is not None:
        _map_condition(m, chosen)
    if treatment is not None:
        _map_treatment(m, treatment)
    _map_emergency(m, emergencies)

    try:
        case = load_case(m.case)
    except CaseError as exc:  # pragma: no cover - the mapper only writes values the case model accepts
        raise FhirError(list(exc.problems)) from None
    mapped = _dedupe(m.mapped)
    summary = _summary(version, resources, mapped, m.unmapped)
    return FhirCase(
        case, mapped, tuple(m.unmapped), m.focus, summary, m.patient.path if m.patient else None, every_patient
    )


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
    focus: str | None = None,
) -> FhirCase:
    """Build a case from a FHIR Bundle (or JSON text of one), reporting what could not be mapped.

    ``today`` is the day ages and times to decide are counted from (default:
    today); ``patient_id`` picks the patient when the bundle holds several;
    ``focus`` names the Condition the advice is about (its id, ``Condition/id``
    or its path in the report), overriding the choice rules. Raises
    :class:`FhirError` when the data is not valid FHIR.
    """
    version = _check_version(fhir_version)
    if isinstance(bundle, str | bytes):
        try:
            bundle = json.loads(bundle)
        except (ValueError, RecursionError):  # bad JSON, bad UTF-8, a number too long to convert, deep nesting
            raise FhirError(["not valid JSON @ Bundle"]) from None
    problems: list[str] = []
    if not isinstance(bundle, Mapping) or bundle.get("resourceType") != "Bundle":
        raise FhirError(["expected a FHIR Bundle @ Bundle.resourceType"])
    resources = _resources(bundle, "Bundle", problems)
    return _build(resources, problems, version, today, patient_id, focus)


def case_from_prefetch(
    prefetch: Mapping[str, Any],
    *,
    fhir_version: FhirVersion = "R4B",
    today: dt.date | None = None,
    patient_id: str | None = None,
    focus: str | None = None,
    draft_orders: Mapping[str, Any] | None = None,
) -> FhirCase:
    """Build a case from CDS Hooks prefetch data: each value a resource, a searchset Bundle, or null.

    ``draft_orders`` is the Bundle of an order hook's ``context.draftOrders``:
    its orders are read like the others and win over them (they are what is
    being ordered now). Paths in the report read ``prefetch.<key>``,
    ``prefetch.<key>.entry[i].resource`` and ``context.draftOrders.entry[i].resource``.
    """
    version = _check_version(fhir_version)
    problems: list[str] = []
    resources: list[Entry] = []
    for key, value in prefetch.items():
        if value is None:
            continue
        resources.extend(_resources(value, f"prefetch.{key}", problems))
    draft_prefix = "context.draftOrders"
    if draft_orders is not None:
        resources.extend(_resources(draft_orders, draft_prefix, problems))
    return _build(resources, problems, version, today, patient_id, focus, draft_prefix)


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
