"""Typed recommendations and the Advice that holds them.

Each kind of recommendation is a frozen attrs class with the fields that kind
needs (a deadline's days, the specialties to consult, the documents to
gather). All share the fields of :class:`Recommendation`: a short title, a
plain-language detail, a priority, the guidance ids and sources behind it, and
its derivation (the rules that fired and the facts each matched).

:class:`Advice` orders recommendations deterministically (priority, then kind)
and merges duplicates: two rules recommending the same kind give one
recommendation citing both. Advice goes through JSON and back without loss via
:data:`advice_converter` (a cattrs union tagged by ``kind``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from enum import StrEnum
from typing import TYPE_CHECKING, Any, ClassVar, cast

import attrs
import cattrs
from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn

if TYPE_CHECKING:
    import datetime

    from .explain import Explanation
    from .plan import Plan
    from .rulebook import Rulebook

__all__ = [
    "DISCLAIMER",
    "KINDS",
    "Advice",
    "Derivation",
    "DerivedFactRecord",
    "Evidence",
    "Priority",
    "Recommendation",
    "SourceRef",
    "advice_converter",
    "join_values",
    "merge_recommendations",
]

DISCLAIMER = (
    "This is general guidance about getting a second opinion. It is not medical advice. "
    "Talk with your doctors about your own care."
)


class Priority(StrEnum):
    """How soon a recommendation matters; ``critical`` comes first."""

    CRITICAL = "critical"
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"

    @property
    def rank(self) -> int:
        """Sort key: 0 for critical up to 3 for low."""
        return _PRIORITY_RANK[self]


_PRIORITY_RANK = {Priority.CRITICAL: 0, Priority.HIGH: 1, Priority.MEDIUM: 2, Priority.LOW: 3}


@attrs.frozen
class SourceRef:
    """A place in one of the source documents: file name and section heading."""

    file: str
    section: str


@attrs.frozen
class Evidence:
    """A supporting figure from the sources (E1-E4), shown with a recommendation."""

    id: str
    figure: str
    sources: tuple[str, ...] = ()


def _sorted_dict(mapping: Mapping[str, str]) -> dict[str, str]:
    if len(mapping) < 2:  # the common case: nothing to sort
        return dict(mapping)
    return dict(sorted(mapping.items()))


@attrs.frozen(hash=False)
class Derivation:
    """One rule firing: the rule id and, per binding name, the id of the fact it matched."""

    rule_id: str
    matched: Mapping[str, str] = attrs.field(factory=dict, converter=_sorted_dict)

    @classmethod
    def in_order(cls, rule_id: str, matched: Mapping[str, str]) -> Derivation:
        """A Derivation from a mapping whose keys are already sorted (an engine firing's are).

        The same as ``Derivation(rule_id, matched)`` without the sort: a third of the
        time, and ``advise()`` makes one per firing.
        """
        derivation = object.__new__(cls)
        object.__setattr__(derivation, "rule_id", rule_id)
        object.__setattr__(derivation, "matched", dict(matched))
        return derivation


@attrs.frozen
class DerivedFactRecord:
    """A fact the rules derived, with every firing that derived it."""

    fid: str
    type: str
    attributes: Mapping[str, Any]
    derivations: tuple[Derivation, ...]


def _tuple(value: Iterable[Any]) -> tuple[Any, ...]:
    return tuple(value)


@attrs.frozen(kw_only=True)
class Recommendation:
    """What every recommendation has. Subclasses add the fields of their kind."""

    kind: ClassVar[str] = "recommendation"

    title: str
    detail: str
    priority: Priority = Priority.MEDIUM
    guidance: tuple[str, ...] = attrs.field(default=(), converter=_tuple)
    sources: tuple[SourceRef, ...] = attrs.field(default=(), converter=_tuple)
    evidence: tuple[Evidence, ...] = attrs.field(default=(), converter=_tuple)
    derivation: tuple[Derivation, ...] = attrs.field(default=(), converter=_tuple)

    @property
    def rule_ids(self) -> tuple[str, ...]:
        """The ids of the rules that produced this recommendation, in firing order."""
        return tuple(dict.fromkeys(d.rule_id for d in self.derivation))

    @classmethod
    def specific_fields(cls) -> tuple[attrs.Attribute[Any], ...]:
        """The fields this kind adds to the common ones."""
        common = {f.name for f in attrs.fields(Recommendation)}
        return tuple(f for f in attrs.fields(cls) if f.name not in common)


KINDS: dict[str, type[Recommendation]] = {}
"""Every recommendation kind by its name."""


def _kind(name: str) -> Any:
    def register(cls: type[Recommendation]) -> type[Recommendation]:
        cls.kind = name
        KINDS[name] = cls
        return cls

    return register


def _items() -> Any:
    return attrs.field(default=(), converter=_tuple)


@_kind("get_care_now")
@attrs.frozen(kw_only=True)
class GetCareNow(Recommendation):
    """An emergency: get the care now; a quick review only if it cannot hold care up; an opinion can come later."""


@_kind("check_answers")
@attrs.frozen(kw_only=True)
class CheckAnswers(Recommendation):
    """Some answers in the case contradict each other; ``fields`` names them (case paths)."""

    fields: tuple[str, ...] = _items()


@_kind("seek_second_opinion")
@attrs.frozen(kw_only=True)
class SeekSecondOpinion(Recommendation):
    """Get a second opinion; ``about`` says on what (diagnosis, treatment plan)."""

    about: tuple[str, ...] = _items()


@_kind("second_opinion_optional")
@attrs.frozen(kw_only=True)
class SecondOpinionOptional(Recommendation):
    """A second opinion is a free choice here, not a need."""


@_kind("ask_about_alternatives")
@attrs.frozen(kw_only=True)
class AskAboutAlternatives(Recommendation):
    """Ask about other options, such as less invasive treatment."""

    ask_about: tuple[str, ...] = _items()


@_kind("expert_review")
@attrs.frozen(kw_only=True)
class ExpertReview(Recommendation):
    """Have experts review the evidence itself (tissue, images, test results)."""

    reviewers: tuple[str, ...] = _items()


@_kind("find_condition_specialist")
@attrs.frozen(kw_only=True)
class FindConditionSpecialist(Recommendation):
    """Find a doctor who knows this condition or this kind of patient well."""

    specialist: str = "a specialist in this condition"
    look_beyond_local_area: bool = False
    expect_it_to_take_time: bool = False


@_kind("consult_specialties")
@attrs.frozen(kw_only=True)
class ConsultSpecialties(Recommendation):
    """Hear from doctors of several specialties."""

    specialties: tuple[str, ...] = _items()


@_kind("get_another_opinion")
@attrs.frozen(kw_only=True)
class GetAnotherOpinion(Recommendation):
    """Get one more opinion (a third, fourth...); ``opinion_number`` is which one it would be."""

    opinion_number: int | None = None


@_kind("set_deadline")
@attrs.frozen(kw_only=True)
class SetDeadline(Recommendation):
    """Fix a date by which to have the opinion, so treatment is not held up.

    ``decide_within_days`` is the time the doctor says there is to decide (when
    known). ``get_opinion_within_days`` is this library's planning aid, not a
    figure from the guides: it keeps some days after the opinion to think
    (a third of the time, at least one day and at most a week). With one day
    or less to decide there is no time for an opinion first, and it is ``None``.
    """

    decide_within_days: int | None = None
    ask_doctor_how_long: bool = True

    @property
    def get_opinion_within_days(self) -> int | None:
        """Days in which to have the second opinion, when the time to decide is known."""
        days = self.decide_within_days
        if days is None or days <= 1:
            return None
        return days - max(1, min(7, days // 3))


@_kind("act_quickly")
@attrs.frozen(kw_only=True)
class ActQuickly(Recommendation):
    """Book the appointment now; waiting lists are long."""

    before_treatment_starts: bool = True


@_kind("ask_for_referral")
@attrs.frozen(kw_only=True)
class AskForReferral(Recommendation):
    """Who to ask for the name of a doctor."""

    ask: tuple[str, ...] = _items()


@_kind("check_credentials")
@attrs.frozen(kw_only=True)
class CheckCredentials(Recommendation):
    """Check the doctor's board certification and training."""

    check: tuple[str, ...] = _items()


@_kind("choose_independent_doctor")
@attrs.frozen(kw_only=True)
class ChooseIndependentDoctor(Recommendation):
    """Pick a doctor independent of the first one."""

    prefer: tuple[str, ...] = _items()


@_kind("consider_other_specialty")
@attrs.frozen(kw_only=True)
class ConsiderOtherSpecialty(Recommendation):
    """Ask a doctor of another specialty that treats the same condition."""

    specialties: tuple[str, ...] = _items()


@_kind("prefer_cancer_center")
@attrs.frozen(kw_only=True)
class PreferCancerCenter(Recommendation):
    """For cancer, prefer a major cancer center or an academic hospital."""

    prefer: tuple[str, ...] = _items()


@_kind("consider_remote_opinion")
@attrs.frozen(kw_only=True)
class ConsiderRemoteOpinion(Recommendation):
    """Doctors far away can review the case; help with travel may exist."""

    options: tuple[str, ...] = _items()


@_kind("prefer_in_network")
@attrs.frozen(kw_only=True)
class PreferInNetwork(Recommendation):
    """Pick a doctor in the insurance network to pay less."""


@_kind("check_insurance")
@attrs.frozen(kw_only=True)
class CheckInsurance(Recommendation):
    """Call the insurer first; ``questions`` are what to ask."""

    questions: tuple[str, ...] = _items()


@_kind("manage_costs")
@attrs.frozen(kw_only=True)
class ManageCosts(Recommendation):
    """Ways to keep the cost down when paying yourself."""

    options: tuple[str, ...] = _items()


@_kind("gather_records")
@attrs.frozen(kw_only=True)
class GatherRecords(Recommendation):
    """The records to collect and send; ``documents`` is the checklist."""

    documents: tuple[str, ...] = _items()


@_kind("send_original_materials")
@attrs.frozen(kw_only=True)
class SendOriginalMaterials(Recommendation):
    """Send the slides and images themselves, not only the reports."""

    items: tuple[str, ...] = _items()


@_kind("assert_records_rights")
@attrs.frozen(kw_only=True)
class AssertRecordsRights(Recommendation):
    """The patient has a right to a copy of their records."""


@_kind("talk_to_doctor")
@attrs.frozen(kw_only=True)
class TalkToDoctor(Recommendation):
    """Tell the current doctor; ``openers`` are ways to start."""

    openers: tuple[str, ...] = _items()


@_kind("handle_objection")
@attrs.frozen(kw_only=True)
class HandleObjection(Recommendation):
    """What to do when the doctor objects."""

    steps: tuple[str, ...] = _items()


@_kind("prepare_questions")
@attrs.frozen(kw_only=True)
class PrepareQuestions(Recommendation):
    """Learn about the condition and bring written questions."""

    questions: tuple[str, ...] = _items()


@_kind("be_seen_in_person")
@attrs.frozen(kw_only=True)
class BeSeenInPerson(Recommendation):
    """Be examined in person, not only by phone or online."""


@_kind("proceed_with_confidence")
@attrs.frozen(kw_only=True)
class ProceedWithConfidence(Recommendation):
    """The opinions agree: go ahead with more confidence."""


@_kind("clarify_diagnoses")
@attrs.frozen(kw_only=True)
class ClarifyDiagnoses(Recommendation):
    """The opinions word the diagnosis differently: ask the doctors whether they mean the same thing."""

    questions: tuple[str, ...] = _items()


@_kind("resolve_conflict")
@attrs.frozen(kw_only=True)
class ResolveConflict(Recommendation):
    """The opinions differ: questions that help sort it out."""

    questions: tuple[str, ...] = _items()


@_kind("ask_doctors_to_confer")
@attrs.frozen(kw_only=True)
class AskDoctorsToConfer(Recommendation):
    """Ask the doctors to review the case together or talk to each other."""


@_kind("reflect_before_more_opinions")
@attrs.frozen(kw_only=True)
class ReflectBeforeMoreOpinions(Recommendation):
    """With three or more opinions, ask why you want another."""


@_kind("decide_with_your_values")
@attrs.frozen(kw_only=True)
class DecideWithYourValues(Recommendation):
    """The choice is the patient's, using facts and values."""


@_kind("after_the_opinion")
@attrs.frozen(kw_only=True)
class AfterTheOpinion(Recommendation):
    """The choices once the opinion is in."""

    choices: tuple[str, ...] = _items()


@_kind("build_trusted_team")
@attrs.frozen(kw_only=True)
class BuildTrustedTeam(Recommendation):
    """Choose doctors the patient trusts and is at ease with."""


@_kind("keep_symptom_record")
@attrs.frozen(kw_only=True)
class KeepSymptomRecord(Recommendation):
    """Write down symptoms and changes over time."""


def _identity(item: Any) -> Any:
    """A hashable stand-in, equal exactly when the items are equal (a Derivation holds a dict)."""
    if type(item) is Derivation:
        return (Derivation, item.rule_id, tuple(sorted(item.matched.items())))
    return item


def _unique(items: tuple[Any, ...]) -> tuple[Any, ...]:
    """Items in order, each once (by equality)."""
    try:
        seen: dict[Any, Any] = {}
        for item in items:
            seen.setdefault(_identity(item), item)
        return tuple(seen.values())
    except TypeError:  # an unhashable item of another kind: compare pairwise
        out: list[Any] = []
        for item in items:
            if item not in out:
                out.append(item)
        return tuple(out)


def join_values(values: Sequence[Any]) -> Any:
    """One field's merged value across a group, first member first.

    Tuples are unioned (order kept, each item once), booleans or-ed, a ``None``
    takes the first value that is not ``None``; any other value is the first's.
    """
    value = values[0]
    joined = False
    for theirs in values[1:]:
        if isinstance(value, tuple):
            value, joined = value + theirs, True
        elif isinstance(value, bool):
            value = value or theirs
        elif value is None and theirs is not None:
            value = theirs
    return _unique(value) if joined else value


def _merge_group(group: list[Recommendation]) -> Recommendation:
    """Merge a group of one kind into its first member: union lists, keep the first's scalars.

    Field by field, the same as merging the members pairwise in order, but with
    one ``attrs.evolve`` at most (none for a lone member whose guidance is sorted).
    """
    primary = group[0]
    changes: dict[str, Any] = {}
    if len(group) > 1:
        for field in attrs.fields(type(primary)):
            if field.init:
                changes[field.name] = join_values([getattr(member, field.name) for member in group])
    guidance = changes.get("guidance", primary.guidance)
    ordered = tuple(sorted(guidance))
    if ordered != guidance:
        changes["guidance"] = ordered
    return attrs.evolve(primary, **changes) if changes else primary


_KIND_ORDER: dict[str, int] = {}


def sort_key(rec: Recommendation) -> tuple[int, int, str]:
    if len(_KIND_ORDER) != len(KINDS):
        _KIND_ORDER.clear()
        _KIND_ORDER.update((kind, index) for index, kind in enumerate(KINDS))
    return (_PRIORITY_RANK[rec.priority], _KIND_ORDER[rec.kind], rec.title)


def merge_recommendations(recs: Iterable[Recommendation]) -> tuple[Recommendation, ...]:
    """Merge recommendations of the same kind and order them by priority, then kind.

    Kinds sort in the order they are declared in this module, which follows a
    patient's path: whether to seek an opinion, timing, who, cost, records,
    talking with the doctor, preparing, and what to do after.

    Within a kind, the most urgent one (ties: the first produced) supplies the
    title and detail; lists, guidance, sources and derivations are unioned.
    """
    by_kind: dict[str, list[Recommendation]] = {}
    for rec in recs:
        by_kind.setdefault(rec.kind, []).append(rec)
    merged = []
    for group in by_kind.values():
        group.sort(key=lambda r: r.priority.rank)
        merged.append(_merge_group(group))
    return tuple(sorted(merged, key=sort_key))


@attrs.frozen(kw_only=True)
class Advice:
    """The result of advising on a case: ordered, merged, typed recommendations.

    ``derived_facts`` holds every fact the rules derived, each with the rule
    firings behind it, so any recommendation can be traced back to the case.
    ``suppressed`` names recommendations a rule would have made but that an
    ``unless`` condition held back (kind and rule id).
    """

    recommendations: tuple[Recommendation, ...] = ()
    derived_facts: tuple[DerivedFactRecord, ...] = ()
    suppressed: tuple[Derivation, ...] = ()
    disclaimer: str = DISCLAIMER

    def by_kind(self, kind: str) -> Recommendation | None:
        """The recommendation of this kind, if any."""
        return next((r for r in self.recommendations if r.kind == kind), None)

    @property
    def kinds(self) -> tuple[str, ...]:
        """The kinds recommended, in order."""
        return tuple(r.kind for r in self.recommendations)

    def fact(self, fid: str) -> DerivedFactRecord | None:
        """A derived fact by its id."""
        return next((f for f in self.derived_facts if f.fid == fid), None)

    def explain(
        self, recommendation: Recommendation | str, *, rulebook: Rulebook | None = None, case: Any = None
    ) -> Explanation:
        """The derivation tree of one recommendation (or kind): see :func:`secondopinion.explain.explain`.

        ``rulebook`` defaults to the shipped rules; ``case`` adds the case's values to each check.
        """
        from .explain import explain  # the explain module builds on this one

        return explain(self, recommendation, rulebook=rulebook, case=case)

    def plan(self, case: Any = None, *, today: datetime.date | None = None) -> Plan:
        """This advice as a plan a patient can follow: see :func:`secondopinion.plan.build_plan`.

        ``case`` (the case advised on) gives the dates, counted from ``today`` (default: today).
        """
        from .plan import build_plan  # the plan module builds on this one

        return build_plan(self, case, today=today)

    def to_ics(self, case: Any = None, *, today: datetime.date | None = None) -> str:
        """The plan's dated steps as iCalendar text (raises ``NoDatesError`` when the case gives no time)."""
        return self.plan(case, today=today).to_ics()

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready form of this advice."""
        out: dict[str, Any] = advice_converter.unstructure(self)
        return out

    def to_json(self, *, indent: int | None = 2) -> str:
        """This advice as JSON text."""
        return json.dumps(self.to_dict(), indent=indent, ensure_ascii=False)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Advice:
        """Rebuild advice from :meth:`to_dict` output."""
        return advice_converter.structure(dict(data), cls)

    @classmethod
    def from_json(cls, text: str) -> Advice:
        """Rebuild advice from :meth:`to_json` output."""
        return cls.from_dict(json.loads(text))


advice_converter = cattrs.Converter()
"""Converter for Advice and recommendations: a cattrs union tagged by ``kind``."""


# Each kind's hooks are made on first use (cattrs generates code for them): making them
# for all kinds at import, as a tagged-union strategy does, was most of this module's
# import time, paid by every command and every batch worker.
_unstructure_kind: dict[type[Recommendation], Callable[[Any], dict[str, Any]]] = {}
_structure_kind: dict[type[Recommendation], Callable[[Any, Any], Any]] = {}


def _unstructure_recommendation(rec: Recommendation) -> dict[str, Any]:
    """``{"kind": ..., **fields}``, plus the computed ``get_opinion_within_days`` of a deadline."""
    cls = type(rec)
    hook = _unstructure_kind.get(cls)
    if hook is None:
        hook = _unstructure_kind.setdefault(cls, make_dict_unstructure_fn(cls, advice_converter))
    out: dict[str, Any] = {"kind": rec.kind, **hook(rec)}
    if isinstance(rec, SetDeadline):
        out["get_opinion_within_days"] = rec.get_opinion_within_days
    return out


def _structure_recommendation(value: Any, _type: Any) -> Recommendation:
    """The recommendation class named by ``value["kind"]``, built from the other keys."""
    kind = value.get("kind") if isinstance(value, Mapping) else None
    cls = KINDS.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise ValueError("a recommendation needs a known 'kind'")
    hook = _structure_kind.get(cls)
    if hook is None:
        hook = _structure_kind.setdefault(cls, make_dict_structure_fn(cls, advice_converter))
    return cast("Recommendation", hook(value, cls))


advice_converter.register_unstructure_hook(Recommendation, _unstructure_recommendation)
advice_converter.register_structure_hook(Recommendation, _structure_recommendation)
advice_converter.register_unstructure_hook(Derivation, lambda d: {"rule_id": d.rule_id, "matched": dict(d.matched)})
