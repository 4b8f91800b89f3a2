"""The case model: what a patient's situation can state, and how it becomes facts.

A :class:`Case` is a frozen attrs object built and checked through one cattrs
converter (:data:`converter`). Graded values are enums; wherever a patient may
not know the answer the enum has an explicit ``unknown`` member, which is also
the default. Opinions are a list: the first is the current doctor's.

:func:`load_case` accepts a ``Case``, a mapping, or JSON text and raises one
:class:`CaseError` listing every problem by path, built on
``cattrs.transform_error``. Messages name field paths, never the values.

:func:`case_facts` flattens a case into the facts the rule engine sees: one per
aspect (``diagnosis``, ``treatment``, ``patient``, ``doctor``, ``insurance``,
``records``, ``summary``) and one per opinion.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from enum import StrEnum
from typing import Any

import attrs
import cattrs
from cattrs import transform_error

__all__ = [
    "MAX_BUNDLE_BYTES",
    "MAX_OPINIONS",
    "Access",
    "AgeGroup",
    "Case",
    "CaseError",
    "Certainty",
    "CodeSystem",
    "Comparison",
    "Diagnosis",
    "Doctor",
    "DoctorReaction",
    "Imaging",
    "Insurance",
    "Level",
    "Opinion",
    "OpinionMode",
    "Patient",
    "Records",
    "RecordsRelease",
    "Seriousness",
    "Specialty",
    "Treatment",
    "TreatmentKind",
    "Tri",
    "Trust",
    "Urgency",
    "case_fact_types",
    "case_facts",
    "converter",
    "dump_case",
    "is_fhir_resource",
    "load_case",
    "loads",
    "names_a_bundle",
    "parse_json",
]


class Tri(StrEnum):
    """A yes/no answer the patient may not know."""

    YES = "yes"
    NO = "no"
    UNKNOWN = "unknown"


class Seriousness(StrEnum):
    """How serious the diagnosis is."""

    MINOR = "minor"
    MODERATE = "moderate"
    SERIOUS = "serious"
    LIFE_THREATENING = "life_threatening"
    UNKNOWN = "unknown"


class Certainty(StrEnum):
    """How sure the current diagnosis is."""

    CONFIRMED = "confirmed"
    PROBABLE = "probable"
    UNCLEAR = "unclear"
    UNKNOWN = "unknown"


class Level(StrEnum):
    """A low/moderate/high grade (risk, invasiveness)."""

    LOW = "low"
    MODERATE = "moderate"
    HIGH = "high"
    UNKNOWN = "unknown"


class TreatmentKind(StrEnum):
    """The kind of treatment proposed or recommended."""

    NONE = "none"
    WAIT_AND_SEE = "wait_and_see"
    MEDICATION = "medication"
    SURGERY = "surgery"
    CHEMOTHERAPY = "chemotherapy"
    RADIATION = "radiation"
    OTHER = "other"
    UNKNOWN = "unknown"


class Urgency(StrEnum):
    """How soon the treatment decision has to be made, as the treating doctor puts it.

    ``emergency``: care is needed now (today); nothing should hold it up.
    ``urgent``: the decision is due within days; only a quick review fits.
    ``can_wait``: there is time (weeks or more) to get another opinion first.
    ``days_to_decide`` gives the same information in days: 0 means the
    decision is due today and is treated as an emergency, 1 as an emergency
    too (no time for an opinion before it), 2 to 7 as urgent.
    """

    EMERGENCY = "emergency"
    URGENT = "urgent"
    CAN_WAIT = "can_wait"
    UNKNOWN = "unknown"


class CodeSystem(StrEnum):
    """The code system of a coded diagnosis."""

    ICD10CM = "icd10cm"
    SNOMED = "snomed"
    UNKNOWN = "unknown"


class Comparison(StrEnum):
    """How the patient says one opinion's diagnosis compares with the first doctor's."""

    SAME = "same"
    DIFFERENT = "different"
    NOT_SURE = "not_sure"
    UNKNOWN = "unknown"


class AgeGroup(StrEnum):
    """Whether the patient is a child."""

    CHILD = "child"
    ADULT = "adult"
    UNKNOWN = "unknown"


class Trust(StrEnum):
    """How much the patient trusts the current doctor."""

    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"
    UNKNOWN = "unknown"


class DoctorReaction(StrEnum):
    """How the current doctor reacted to the request for another opinion."""

    NOT_ASKED = "not_asked"
    SUPPORTIVE = "supportive"
    NEUTRAL = "neutral"
    OBJECTS = "objects"
    UNKNOWN = "unknown"


class Imaging(StrEnum):
    """Which imaging (X-ray, MRI, PET, CT) exists and in what form."""

    NONE = "none"
    FILM = "film"
    ELECTRONIC = "electronic"
    BOTH = "both"
    UNKNOWN = "unknown"


class RecordsRelease(StrEnum):
    """Where the request for the medical records stands."""

    NOT_REQUESTED = "not_requested"
    REQUESTED = "requested"
    RELEASED = "released"
    REFUSED = "refused"
    UNKNOWN = "unknown"


class Access(StrEnum):
    """Whether the patient can reach a distant doctor."""

    EASY = "easy"
    HARD = "hard"
    UNKNOWN = "unknown"


class OpinionMode(StrEnum):
    """How an opinion was given."""

    IN_PERSON = "in_person"
    REMOTE = "remote"
    UNKNOWN = "unknown"


class Specialty(StrEnum):
    """The specialty of the doctor who gave an opinion."""

    PRIMARY_CARE = "primary_care"
    PEDIATRICIAN = "pediatrician"
    PEDIATRIC_SPECIALIST = "pediatric_specialist"
    SURGEON = "surgeon"
    ORTHOPEDIC_SURGEON = "orthopedic_surgeon"
    NEUROSURGEON = "neurosurgeon"
    MEDICAL_ONCOLOGIST = "medical_oncologist"
    RADIATION_ONCOLOGIST = "radiation_oncologist"
    PATHOLOGIST = "pathologist"
    RADIOLOGIST = "radiologist"
    CARDIOLOGIST = "cardiologist"
    NEUROLOGIST = "neurologist"
    PHYSICAL_THERAPIST = "physical_therapist"
    PAIN_SPECIALIST = "pain_specialist"
    PHYSIATRIST = "physiatrist"
    OTHER = "other"
    UNKNOWN = "unknown"


def _text(value: str | None) -> str | None:
    """Normalise free text used for comparison: trimmed, case-folded, inner spaces collapsed."""
    if value is None:
        return None
    cleaned = " ".join(value.split()).casefold()
    return cleaned or None


MAX_TEXT_LENGTH = 500
"""Longest free text a case field may hold (a label, not a report)."""


class _Invalid(ValueError):
    """A structuring failure whose message is safe to show: it never holds the value."""


MAX_DAYS = 36_500
"""Most days a case may state (a hundred years; the engine holds 64-bit integers only)."""


def _days(value: int | None) -> int | None:
    if value is not None and value < 0:
        raise _Invalid("must not be negative")
    if value is not None and value > MAX_DAYS:
        raise _Invalid(f"must be at most {MAX_DAYS}")
    return value


def _code(value: str | None) -> str | None:
    """Normalise a diagnosis code for comparison: no spaces or dots, upper case (``m51.26`` is ``M5126``)."""
    if value is None:
        return None
    cleaned = "".join(value.split()).replace(".", "").upper()
    return cleaned or None


@attrs.frozen(kw_only=True)
class Diagnosis:
    """The current diagnosis and what is known about it."""

    seriousness: Seriousness = Seriousness.UNKNOWN
    certainty: Certainty = Certainty.UNKNOWN
    cancer: Tri = Tri.UNKNOWN
    cancer_type: str | None = attrs.field(default=None, converter=_text)
    rare: Tri = Tri.UNKNOWN
    spine: Tri = Tri.UNKNOWN
    complex: Tri = Tri.UNKNOWN
    suspected_misdiagnosis: Tri = Tri.UNKNOWN
    symptoms_vague: Tri = Tri.UNKNOWN
    tests_normal_but_problem_persists: Tri = Tri.UNKNOWN
    doubts_about_tests: Tri = Tri.UNKNOWN


@attrs.frozen(kw_only=True)
class Treatment:
    """The treatment the current doctor proposes, and where it stands."""

    kind: TreatmentKind = TreatmentKind.UNKNOWN
    risk: Level = Level.UNKNOWN
    invasiveness: Level = Level.UNKNOWN
    long_term: Tri = Tri.UNKNOWN
    started: Tri = Tri.UNKNOWN
    working: Tri = Tri.UNKNOWN
    several_options: Tri = Tri.UNKNOWN
    days_to_decide: int | None = attrs.field(default=None, converter=_days)
    urgency: Urgency = Urgency.UNKNOWN


@attrs.frozen(kw_only=True)
class Patient:
    """The patient: who they are and how they feel about the plan."""

    age_group: AgeGroup = AgeGroup.UNKNOWN
    wants_all_options: Tri = Tri.UNKNOWN
    uneasy_with_plan: Tri = Tri.UNKNOWN
    finds_asking_hard: Tri = Tri.UNKNOWN
    travel: Access = Access.UNKNOWN
    pays_out_of_pocket: Tri = Tri.UNKNOWN


@attrs.frozen(kw_only=True)
class Doctor:
    """The relationship with the current doctor."""

    trust: Trust = Trust.UNKNOWN
    red_flags: Tri = Tri.UNKNOWN
    told_about_second_opinion: Tri = Tri.UNKNOWN
    reaction: DoctorReaction = DoctorReaction.UNKNOWN


@attrs.frozen(kw_only=True)
class Insurance:
    """What the patient's health insurance says about second opinions."""

    insured: Tri = Tri.UNKNOWN
    covers_second_opinion: Tri = Tri.UNKNOWN
    referral_required: Tri = Tri.UNKNOWN
    in_network_required: Tri = Tri.UNKNOWN
    has_own_program: Tri = Tri.UNKNOWN
    covers_remote_opinions: Tri = Tri.UNKNOWN
    covers_extra_tests: Tri = Tri.UNKNOWN


@attrs.frozen(kw_only=True)
class Records:
    """Which medical records exist, and whether they have been released."""

    pathology_report: Tri = Tri.UNKNOWN
    operative_report: Tri = Tri.UNKNOWN
    discharge_summary: Tri = Tri.UNKNOWN
    imaging: Imaging = Imaging.UNKNOWN
    biopsy_slides: Tri = Tri.UNKNOWN
    medication_list: Tri = Tri.UNKNOWN
    release: RecordsRelease = RecordsRelease.UNKNOWN


@attrs.frozen(kw_only=True)
class Opinion:
    """One opinion obtained so far; the first in a case is the current doctor's.

    ``diagnosis`` is a short label (case and spacing are ignored);
    ``diagnosis_code`` with ``diagnosis_code_system`` is the same diagnosis
    coded (ICD-10-CM such as ``M51.26``, or a SNOMED CT concept id; spaces and
    dots are ignored and letters upper-cased), which is what the rules compare
    when two opinions both have one in the same system. A code without its
    system is kept but never compared. Free-text labels
    that differ are not taken as a conflict: they may mean the same thing.
    ``diagnosis_vs_first`` is what the patient says about how this opinion's
    diagnosis compares with the first doctor's. ``treatment`` is the kind of
    treatment the doctor recommends.
    """

    specialty: Specialty = Specialty.UNKNOWN
    institution: str | None = attrs.field(default=None, converter=_text)
    close_associate_of_first: Tri = Tri.UNKNOWN
    mode: OpinionMode = OpinionMode.UNKNOWN
    diagnosis: str | None = attrs.field(default=None, converter=_text)
    diagnosis_code: str | None = attrs.field(default=None, converter=_code)
    diagnosis_code_system: CodeSystem = CodeSystem.UNKNOWN
    diagnosis_vs_first: Comparison = Comparison.UNKNOWN
    treatment: TreatmentKind = TreatmentKind.UNKNOWN


@attrs.frozen(kw_only=True)
class Case:
    """Everything a patient's situation can state; every part is optional."""

    diagnosis: Diagnosis = attrs.Factory(Diagnosis)
    treatment: Treatment = attrs.Factory(Treatment)
    patient: Patient = attrs.Factory(Patient)
    doctor: Doctor = attrs.Factory(Doctor)
    insurance: Insurance = attrs.Factory(Insurance)
    records: Records = attrs.Factory(Records)
    opinions: tuple[Opinion, ...] = ()


_ASPECTS: tuple[tuple[str, type], ...] = (
    ("diagnosis", Diagnosis),
    ("treatment", Treatment),
    ("patient", Patient),
    ("doctor", Doctor),
    ("insurance", Insurance),
    ("records", Records),
)


class CaseError(ValueError):
    """A case that could not be read. ``problems`` lists every problem, each with its path.

    Messages name field paths and expected types, never the values given, so
    they are safe to log.
    """

    def __init__(self, problems: list[str]) -> None:
        self.problems = tuple(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"invalid case ({len(self.problems)} problem(s)):\n{lines}")

    def __reduce__(self) -> tuple[type[CaseError], tuple[list[str]]]:
        """Pickle by problems, so the error crosses process boundaries intact (batch, dask)."""
        return (type(self), (list(self.problems),))


converter = cattrs.Converter(forbid_extra_keys=True)
"""The one converter for cases: JSON-like data to :class:`Case` and back."""


MAX_OPINIONS = 20
"""Most opinions a case may hold. Opinion rules match pairs, so the engine's work grows with the
square of the opinions (20: about 1,100 firings in 30 ms; 100: 27,000 firings in 1 s)."""


MAX_BUNDLE_BYTES = 64 << 20
"""Largest FHIR Bundle read in place of a case, in bytes: a file given to ``advise``, ``explain`` or
``interview``, or one line of a batch (a Synthea patient's whole record is often several MB)."""

_BUNDLE_MARK = re.compile(rb'"resourceType"\s*:\s*"Bundle"')


def names_a_bundle(head: bytes) -> bool:
    """Whether the first bytes of an input hold ``"resourceType": "Bundle"``: it may be read up to
    :data:`MAX_BUNDLE_BYTES` (whether it is a Bundle is decided once it is parsed)."""
    return _BUNDLE_MARK.search(head) is not None


def is_fhir_resource(data: Any) -> bool:
    """Whether parsed input is FHIR data rather than a case: an object with a string ``resourceType``
    (which no case has)."""
    return isinstance(data, dict) and isinstance(data.get("resourceType"), str)


def _structure_tuple_of_opinions(value: Any, _type: Any) -> tuple[Opinion, ...]:
    if not isinstance(value, list | tuple):
        raise _Invalid("expected a list of opinions")
    if len(value) > MAX_OPINIONS:
        raise _Invalid(f"at most {MAX_OPINIONS} opinions")
    return tuple(converter.structure(value, list[Opinion]))


UNSAFE_TEXT_PATTERN = "[\\u0000-\\u0008\\u000e-\\u001f\\u007f\\ud800-\\udfff]"
"""The characters refused in free text, as a regular expression (Python and JSON Schema alike)."""

_UNSAFE_TEXT = re.compile(UNSAFE_TEXT_PATTERN)
"""Characters refused in free text (tab, newline and the other whitespace controls are collapsed by ``_text``)."""


def _structure_optional_text(value: Any, _type: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise _Invalid("expected text")
    if len(value) > MAX_TEXT_LENGTH:
        raise _Invalid(f"text longer than {MAX_TEXT_LENGTH} characters")
    if _UNSAFE_TEXT.search(value):
        # durable compares C strings (a NUL ends them: equal labels stop matching) and cannot
        # encode lone surrogates (JSON "\ud800" yields one).
        raise _Invalid("text must not hold control characters or lone surrogates")
    return value


def _structure_optional_int(value: Any, _type: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise _Invalid("expected a whole number")
    return _days(value)


def _enum_hook(cls: type[StrEnum]) -> Callable[[Any, Any], StrEnum]:
    """Structure one StrEnum by a dict lookup: what ``cls(value)`` returns, a third of the time.

    A case has about twenty enum values; ``Enum.__call__`` goes through ``__new__`` for each.
    Anything the lookup does not find (a wrong or unhashable value) goes to ``cls(value)``,
    which raises the same ``ValueError`` as before.
    """
    members: Mapping[str, StrEnum] = {m.value: m for m in cls}

    def structure(value: Any, _type: Any) -> StrEnum:
        if type(value) is str:
            member = members.get(value)
            if member is not None:
                return member
        return cls(value)

    return structure


for _enum in StrEnum.__subclasses__():
    if _enum.__module__ == __name__:
        converter.register_structure_hook(_enum, _enum_hook(_enum))
converter.register_structure_hook_func(lambda t: t == tuple[Opinion, ...], _structure_tuple_of_opinions)
converter.register_structure_hook_func(lambda t: t == (str | None), _structure_optional_text)
converter.register_structure_hook_func(lambda t: t == (int | None), _structure_optional_int)


def _format_problem(exc: BaseException, type_: Any) -> str:
    """Describe one cattrs failure without echoing the value (privacy)."""
    if isinstance(exc, KeyError):
        return "required field missing"
    if isinstance(exc, cattrs.ForbiddenExtraKeysError):
        return f"unknown field(s): {_key_names(exc.extra_fields)}"
    name = getattr(type_, "__name__", None) or str(type_).replace("secondopinion.case.", "")
    choices = ""
    if isinstance(type_, type) and issubclass(type_, StrEnum):
        choices = " (one of: " + ", ".join(m.value for m in type_) + ")"
    if isinstance(exc, _Invalid):
        return f"invalid value: {exc}"
    if type_ is not None and type_ is not Any:
        return f"invalid value, expected {name}{choices}"
    return "invalid value"


MAX_KEY_NAMES = 10
"""Most unknown key names one problem quotes; each is cut to 40 characters and sanitised."""

_KEY_CHAR = re.compile(r"[^A-Za-z0-9_. -]")


def _key_names(keys: Any) -> str:
    """Unknown key names as safe text: at most MAX_KEY_NAMES, each short and plain (keys may be any JSON key)."""
    names = sorted({_KEY_CHAR.sub("?", str(k)[:40]) for k in keys})
    shown = ", ".join(names[:MAX_KEY_NAMES])
    return shown + (f" and {len(names) - MAX_KEY_NAMES} more" if len(names) > MAX_KEY_NAMES else "")


class _Duplicates(dict[str, Any]):
    """A JSON object that held a key twice (``duplicates`` names them)."""

    duplicates: list[str]


def _marked(out: dict[str, Any], pairs: list[tuple[str, Any]]) -> _Duplicates:
    marked = _Duplicates(out)
    seen: set[str] = set()
    marked.duplicates = []
    for key, _value in pairs:
        if key in seen:
            marked.duplicates.append(key)
        seen.add(key)
    return marked


def loads(text: str | bytes) -> tuple[Any, list[str]]:
    """``json.loads`` that also finds keys repeated in one object: (data, a problem per such object).

    Raises what ``json.loads`` raises for text that is not JSON. The objects are checked as they
    are parsed; the data is walked for paths only when a key was repeated.
    """
    repeated = False

    def hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        nonlocal repeated
        out = dict(pairs)
        if len(out) == len(pairs):
            return out
        repeated = True
        return _marked(out, pairs)

    data = json.loads(text, object_pairs_hook=hook)
    return data, (_duplicate_keys(data) if repeated else [])


def _duplicate_keys(data: Any, path: str = "$") -> list[str]:
    """Problems for every object of parsed JSON that repeats a key."""
    problems: list[str] = []
    stack: list[tuple[Any, str]] = [(data, path)]
    while stack:
        node, where = stack.pop()
        if isinstance(node, dict):
            if isinstance(node, _Duplicates):
                problems.append(f"duplicate key(s): {_key_names(node.duplicates)} @ {where}")
            stack.extend((v, f"{where}.{_KEY_CHAR.sub('?', str(k)[:40])}") for k, v in node.items())
        elif isinstance(node, list):
            stack.extend((v, f"{where}[{i}]") for i, v in enumerate(node))
    return sorted(problems)


def parse_json(text: str | bytes) -> Any:
    """Parse one JSON document the way every case reader does; raise :class:`CaseError`.

    One rule for ``advise`` and ``batch``: a UTF-8 byte-order mark at the very start is
    dropped, a key repeated in one object is refused (naming its path), and errors never
    quote the input.
    """
    problems: list[str] = []
    if isinstance(text, bytes) and text.startswith(b"\xef\xbb\xbf"):
        text = text[3:]
    elif isinstance(text, str) and text.startswith("\ufeff"):
        text = text[1:]
    try:
        data, repeated = loads(text)
    except json.JSONDecodeError as exc:
        problems = [f"not valid JSON at line {exc.lineno}, column {exc.colno} @ $"]
    except ValueError:  # bytes that are not UTF-8/16/32, or a number too long to convert
        problems = ["not valid JSON @ $"]
    except RecursionError:
        problems = ["JSON nested too deeply @ $"]
    if not problems:
        problems = repeated
    if problems:
        raise CaseError(problems)
    return data


def _field_kinds(cls: type) -> tuple[tuple[str, Any], ...]:
    """(name, enum class or "int" or "text") for each field of a case part."""
    out: list[tuple[str, Any]] = []
    for field in attrs.fields(attrs.resolve_types(cls)):
        if isinstance(field.type, type) and issubclass(field.type, StrEnum):
            out.append((field.name, field.type))
        else:
            out.append((field.name, "int" if field.type == (int | None) else "text"))
    return tuple(out)


def _well_formed(case: Case) -> bool:
    """Whether a hand-built Case holds only values its loader would accept (exact types, safe text)."""
    opinions = case.opinions
    if type(opinions) is not tuple or len(opinions) > MAX_OPINIONS:
        return False
    parts: list[tuple[Any, type]] = [(getattr(case, name), cls) for name, cls in _ASPECTS]
    parts.extend((o, Opinion) for o in opinions)
    for part, cls in parts:
        if type(part) is not cls:
            return False
        for name, kind in _KINDS[cls]:
            value = getattr(part, name)
            if value is None and not isinstance(kind, type):
                continue
            if kind == "int":
                if type(value) is not int or not 0 <= value <= MAX_DAYS:
                    return False
            elif kind == "text":
                if type(value) is not str or len(value) > MAX_TEXT_LENGTH or _UNSAFE_TEXT.search(value):
                    return False
            elif type(value) is not kind:
                return False
    return True


def _as_data(case: Case) -> dict[str, Any]:
    """A hand-built Case as plain data (values as they are), to be checked like any input."""

    def part(value: Any) -> Any:
        if not attrs.has(type(value)):
            return value
        return {
            f.name: (v.value if isinstance(v, StrEnum) else v)
            for f in attrs.fields(type(value))
            for v in (getattr(value, f.name),)
        }

    out: dict[str, Any] = {name: part(getattr(case, name)) for name, _cls in _ASPECTS}
    opinions = case.opinions
    out["opinions"] = [part(o) for o in opinions] if isinstance(opinions, list | tuple) else opinions
    return out


_KINDS: dict[type, tuple[tuple[str, Any], ...]] = {cls: _field_kinds(cls) for _name, cls in (*_ASPECTS, ("", Opinion))}


def load_case(data: Case | Mapping[str, Any] | str | bytes) -> Case:
    """Build a :class:`Case` from a Case, a mapping or JSON text; raise :class:`CaseError`.

    A hand-built :class:`Case` is checked too: one holding a value its loader would refuse
    (a wrong enum, too many opinions, unsafe text) raises CaseError naming the path.
    """
    if isinstance(data, Case):
        if _well_formed(data):
            return data
        data = _as_data(data)
    # Every CaseError is raised outside the handler: the original exception (which may quote
    # the input) must not ride along as __context__ (pickled by dask, printed by loggers).
    problems: list[str] = []
    if isinstance(data, str | bytes):
        data = parse_json(data)
    if not isinstance(data, Mapping):
        raise CaseError(["a case must be a JSON object @ $"])
    try:
        return converter.structure(dict(data), Case)
    except (cattrs.BaseValidationError, ValueError, TypeError, KeyError) as exc:
        if isinstance(exc, cattrs.BaseValidationError):
            problems = transform_error(exc, path="$", format_exception=_format_problem)
        else:
            problems = [f"{_format_problem(exc, None)} @ $"]
    except RecursionError:
        problems = ["case nested too deeply @ $"]
    raise CaseError(problems)


def dump_case(case: Case) -> dict[str, Any]:
    """The JSON-ready form of a case (the inverse of :func:`load_case`)."""
    out: dict[str, Any] = converter.unstructure(case)
    out["opinions"] = [converter.unstructure(o) for o in case.opinions]
    return out


_FIELD_ENUMS: dict[type, tuple[tuple[str, bool], ...]] = {
    cls: tuple((name, isinstance(kind, type)) for name, kind in kinds) for cls, kinds in _KINDS.items()
}
"""Per case part, each field's name and whether it holds an enum (a loaded or checked Case holds members)."""


def _aspect(fact_type: str, obj: Any) -> dict[str, Any]:
    fact: dict[str, Any] = {"type": fact_type, "fid": fact_type}
    fields = _FIELD_ENUMS.get(type(obj))
    if fields is None:  # a subclass of a case part, built by hand
        fields = tuple((name, isinstance(kind, type)) for name, kind in _field_kinds(type(obj)))
    for name, is_enum in fields:
        value = getattr(obj, name)
        if value is not None:
            fact[name] = getattr(value, "_value_", value) if is_enum else value  # a hand-built Case may hold text
    return fact


def case_facts(case: Case) -> list[dict[str, Any]]:
    """Flatten a case into engine facts: one per aspect and one per opinion.

    Absent optional values (``None``) are left out of the fact, so rules test
    their presence. The ``summary`` fact carries counts the rules use.
    """
    facts = [
        _aspect("diagnosis", case.diagnosis),
        _aspect("treatment", case.treatment),
        _aspect("patient", case.patient),
        _aspect("doctor", case.doctor),
        _aspect("insurance", case.insurance),
        _aspect("records", case.records),
    ]
    remote = sum(1 for o in case.opinions if o.mode is OpinionMode.REMOTE)
    facts.append(
        {
            "type": "summary",
            "fid": "summary",
            "opinion_count": len(case.opinions),
            "remote_opinion_count": remote,
        }
    )
    for index, opinion in enumerate(case.opinions):
        fact = _aspect("opinion", opinion)
        fact["fid"] = f"opinion[{index}]"
        fact["index"] = index
        if opinion.diagnosis_code is not None:
            # Codes compare within one system: the fact holds them qualified by it, and
            # a code without its system is left out (it cannot be compared).
            if opinion.diagnosis_code_system is CodeSystem.UNKNOWN:
                del fact["diagnosis_code"]
            else:
                fact["diagnosis_code"] = f"{opinion.diagnosis_code_system.value}:{opinion.diagnosis_code}"
        facts.append(fact)
    return facts


Domain = tuple[str, ...] | str
"""An attribute's domain: its allowed values, or ``"int"`` or ``"text"``."""


def _domains(cls: type) -> dict[str, Domain]:
    out: dict[str, Domain] = {}
    for field in attrs.fields(attrs.resolve_types(cls)):
        if isinstance(field.type, type) and issubclass(field.type, StrEnum):
            out[field.name] = tuple(m.value for m in field.type)
        elif field.type == (int | None):
            out[field.name] = "int"
        else:
            out[field.name] = "text"
    return out


def case_fact_types() -> dict[str, dict[str, Domain]]:
    """The fact types :func:`case_facts` produces, each attribute with its domain."""
    return {
        "diagnosis": _domains(Diagnosis),
        "treatment": _domains(Treatment),
        "patient": _domains(Patient),
        "doctor": _domains(Doctor),
        "insurance": _domains(Insurance),
        "records": _domains(Records),
        "summary": {"opinion_count": "int", "remote_opinion_count": "int"},
        "opinion": {"index": "int", **_domains(Opinion)},
    }
