"""From a case to Advice: facts in, engine run, recommendations out.

:class:`Advisor` holds one checked rulebook and its compiled engine; it is
safe to share between threads (the engine serialises its sessions). The
module-level :func:`advise` uses one shared advisor on the shipped rules.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from .case import Case, case_facts, load_case
from .compiler import compile_rules, matches, resolve
from .engine import Engine, Firing, RulesetError, SessionResult
from .recommendations import (
    KINDS,
    Advice,
    Derivation,
    DerivedFactRecord,
    Priority,
    Recommendation,
    join_values,
    sort_key,
)
from .rulebook import Example, Recommend, Rule, Rulebook, RuleFileError, RuleProblem, Unless

__all__ = ["Advisor", "ExampleFailure", "Trace", "advise", "default_advisor"]

CaseLike = Case | Mapping[str, Any] | str | bytes


Made = tuple["_Prepared", Firing, Mapping[str, Any]]
"""A recommendation one firing made, before it is built: the rule's prepared part, the firing, its fields."""


@attrs.frozen
class Trace:
    """Everything one run produced, before merging: for explanations and checks."""

    case: Case
    session: SessionResult
    made: tuple[Made, ...]
    """Each firing that made a recommendation (not held back by ``unless``), in firing order."""
    suppressed: tuple[Derivation, ...]
    rule_order: Mapping[str, int] = attrs.field(factory=dict, eq=False, repr=False)
    """Each rule's position in the rulebook: merged advice is built in this order, not firing order."""
    _built: list[tuple[Recommendation, ...]] = attrs.field(factory=list, init=False, eq=False, repr=False)

    @property
    def recommendations(self) -> tuple[Recommendation, ...]:
        """One recommendation per firing in :attr:`made`, unmerged (built on first use)."""
        if not self._built:
            self._built.append(
                tuple(
                    prepared.cls(**prepared.common, derivation=(_derivation(firing),), **fields)
                    for prepared, firing, fields in self.made
                )
            )
        return self._built[0]

    @property
    def fired(self) -> frozenset[str]:
        """Ids of rules that fired (suppressed recommendations included)."""
        return frozenset(f.rule_id for f in self.session.firings)

    @property
    def effective(self) -> frozenset[str]:
        """Ids of rules that fired and were not held back by ``unless``."""
        held = {d.rule_id for d in self.suppressed}
        return frozenset(f.rule_id for f in self.session.firings if f.rule_id not in held)


@attrs.frozen
class ExampleFailure:
    """A rule example that did not behave as declared."""

    rule_id: str
    file: str
    line: int | None
    expected: str  # "fires" or "silent"

    def __str__(self) -> str:
        verb = "fire" if self.expected == "fires" else "stay silent"
        return f"{self.file}:{self.line}: rule {self.rule_id}: example should {verb} but did not"


def _derivation(firing: Firing) -> Derivation:
    return Derivation.in_order(firing.rule_id, firing.matched)


def _rule_file_error(rules: Sequence[Rule], compiled: Mapping[str, Any], exc: RulesetError) -> RuleFileError:
    """The engine refused the rule set: find the rule it refuses on its own, to name its file and line."""
    for rule in rules:
        try:
            Engine({rule.id: compiled[rule.id]}, {})
        except RulesetError as alone:
            problem = RuleProblem(rule.file, rule.line, rule.id, f"the engine refuses this rule ({alone})")
            return RuleFileError([problem])
    first = rules[0] if rules else None
    return RuleFileError(
        [RuleProblem(first.file if first else "(rules)", None, None, f"the engine refuses the rule set ({exc})")]
    )


@attrs.frozen
class _Prepared:
    """What a recommending rule contributes to every recommendation it makes, built once per advisor."""

    cls: type[Recommendation]
    common: Mapping[str, Any]  # title, detail, priority, guidance, sources, evidence
    fields: tuple[tuple[str, Any], ...]  # kind-specific fields, resolved per firing
    unless: tuple[Unless, ...]
    rank: int  # the priority's rank: groups of one kind are merged most urgent first
    alone: Mapping[str, Any]  # ``common`` as a lone recommendation of its kind has it (guidance sorted)
    specific: tuple[tuple[str, Any, Any], ...]  # (name, default, converter) of the kind's own fields


def _kind_fields(cls: type[Recommendation]) -> tuple[tuple[str, Any, Any], ...]:
    """Name, default and converter of each field a kind adds to the common ones."""
    out = []
    for field in cls.specific_fields():
        default: Any = field.default
        if isinstance(default, attrs.Factory):  # type: ignore[arg-type]
            default = default.factory()
        out.append((field.name, default, field.converter))
    return tuple(out)


_Member = tuple[int, int, _Prepared, Derivation, Mapping[str, Any]]
"""One recommendation of a kind before merging: its priority's rank, its rule's place in the rulebook,
its rule's prepared part, its derivation, its fields."""


def _member_key(member: _Member) -> tuple[int, int, tuple[tuple[str, str], ...]]:
    """Most urgent first, then rulebook order, then the (canonical) facts matched."""
    return (member[0], member[1], tuple(member[3].matched.items()))


def _merged(group: list[_Member]) -> Recommendation:
    """One recommendation from a group of one kind, ordered: the same as ``merge_recommendations``.

    Title, detail and priority are the first member's; guidance, sources and evidence are
    unioned (their items are hashable); every member's derivation is kept (the engine fires
    a rule once per tuple of facts, so no two are equal); the kind's own fields are joined
    by :func:`join_values`.
    """
    first = group[0][2]
    if len(group) == 1:
        _, _, prepared, derivation, fields = group[0]
        return prepared.cls(**prepared.alone, derivation=(derivation,), **fields)
    values: dict[str, Any] = dict(first.common)
    for name in _UNIONED:
        values[name] = tuple(dict.fromkeys(item for member in group for item in member[2].common[name]))
    values["guidance"] = tuple(sorted(values["guidance"]))
    values["derivation"] = tuple(member[3] for member in group)
    for name, default, converter in first.specific:
        column = []
        for *_, fields in group:
            value = fields.get(name, default)
            column.append(converter(value) if converter is not None and name in fields else value)
        values[name] = join_values(column)
    return first.cls(**values)


_UNIONED = ("guidance", "sources", "evidence")
"""The common fields that hold lists: a merged recommendation has every member's items, each once."""


def _canonical_fids(derived: Sequence[Any]) -> dict[str, str]:
    """Derived fact ids that do not depend on the order the engine derived them in.

    The engine numbers derived facts per type in the order they appear, which follows the
    order facts were asserted. Numbered instead by their content (each derived fact's
    content is unique per type), the advice is the same whatever that order. Only the ids
    that change are returned.
    """
    by_type: dict[str, list[Any]] = {}
    for d in derived:
        by_type.setdefault(d.type, []).append(d)
    rename: dict[str, str] = {}
    for fact_type, facts in by_type.items():
        if len(facts) < 2:
            continue
        ordered = sorted(facts, key=lambda d: json.dumps(d.attributes, sort_keys=True, default=str))
        for number, d in enumerate(ordered, 1):
            fid = f"{fact_type}#{number}"
            if fid != d.fid:
                rename[d.fid] = fid
    return rename


def _renamed(firing: Firing | Derivation, rename: Mapping[str, str]) -> Derivation:
    """The derivation of a firing, its facts under their canonical ids."""
    matched = firing.matched
    if rename:
        for fid in matched.values():
            if fid in rename:
                matched = {k: rename.get(v, v) for k, v in matched.items()}
                break
    return Derivation.in_order(firing.rule_id, matched)


_NO_FIELDS: Mapping[str, Any] = {}


class Advisor:
    """Advises on cases with one rulebook.

    ``include_drafts`` also runs rules with status ``draft`` (retired rules
    never run). Raises :class:`~secondopinion.rulebook.RuleFileError` (with file,
    line and rule id) if the engine refuses a rule.
    """

    def __init__(self, rulebook: Rulebook | None = None, *, include_drafts: bool = False) -> None:
        self.rulebook = rulebook if rulebook is not None else Rulebook.load()
        self.rules: tuple[Rule, ...] = tuple(
            r for r in self.rulebook.rules if r.status == "active" or (include_drafts and r.status == "draft")
        )
        self._by_id = {r.id: r for r in self.rules}
        self._order = {r.id: n for n, r in enumerate(self.rules)}
        self._prepared = {r.id: self._prepare(r, r.then) for r in self.rules if isinstance(r.then, Recommend)}
        compiled = compile_rules(self.rules)
        try:
            self.engine = Engine(compiled.rules, compiled.derive)
        except RulesetError as exc:
            raise _rule_file_error(self.rules, compiled.rules, exc) from None

    @classmethod
    def with_packs(cls, *packs: str | Path, include_drafts: bool = False) -> Advisor:
        """An advisor on the shipped rules plus extra rule packs (files or folders)."""
        return cls(Rulebook.load(*packs), include_drafts=include_drafts)

    def trace(self, case: CaseLike) -> Trace:
        """Run the rules on a case and keep every detail of the run."""
        checked = load_case(case)
        session = self.engine.run(case_facts(checked))
        facts = session.facts
        by_fid = {f["fid"]: f for f in facts}
        by_type: dict[str, list[Mapping[str, Any]]] | None = None
        made: list[Made] = []
        suppressed: list[Derivation] = []
        prepared_by_id = self._prepared
        for firing in session.firings:
            prepared = prepared_by_id.get(firing.rule_id)
            if prepared is None:
                continue
            if prepared.unless:
                if by_type is None:
                    by_type = {}
                    for fact in facts:
                        by_type.setdefault(fact["type"], []).append(fact)
                if any(matches(f, u.fact, u.tests) for u in prepared.unless for f in by_type.get(u.fact, ())):
                    suppressed.append(_derivation(firing))
                    continue
            if prepared.fields:
                bindings = {name: by_fid[fid] for name, fid in firing.matched.items()}
                made.append((prepared, firing, {name: resolve(value, bindings) for name, value in prepared.fields}))
            else:
                made.append((prepared, firing, _NO_FIELDS))
        return Trace(checked, session, tuple(made), tuple(suppressed), self._order)

    def _prepare(self, rule: Rule, spec: Recommend) -> _Prepared:
        common = {
            "title": spec.title,
            "detail": spec.detail,
            "priority": spec.priority,
            "guidance": tuple(rule.guidance),
            "sources": tuple(rule.sources),
            "evidence": tuple(self.rulebook.evidence[e] for e in rule.evidence),
        }
        cls = KINDS[spec.kind]
        alone = {**common, "guidance": tuple(sorted(rule.guidance))}
        rank = Priority(spec.priority).rank
        return _Prepared(cls, common, tuple(spec.fields.items()), rule.unless, rank, alone, _kind_fields(cls))

    def advise(self, case: CaseLike) -> Advice:
        """Typed, ordered, merged recommendations for a case, with how each was derived."""
        return self.advice_from(self.trace(case))

    @staticmethod
    def advice_from(trace: Trace) -> Advice:
        """Build the Advice of a traced run.

        The same as merging :attr:`Trace.recommendations` (in rulebook order, derived
        facts numbered by content) with :func:`merge_recommendations`, but each merged
        recommendation is built once, from the prepared parts of the rules.
        """
        rename = _canonical_fids(trace.session.derived)
        derived = []
        for d in trace.session.derived:
            derivations = [_renamed(f, rename) for f in d.derivations]
            if len(derivations) > 1:
                derivations.sort(key=lambda x: (x.rule_id, tuple(x.matched.items())))
            derived.append(DerivedFactRecord(rename.get(d.fid, d.fid), d.type, dict(d.attributes), tuple(derivations)))
        derived.sort(key=lambda d: (d.type, int(d.fid.rpartition("#")[2])))
        order = trace.rule_order
        last = len(order)
        suppressed = trace.suppressed
        if rename:
            suppressed = tuple(_renamed(d, rename) for d in suppressed)
        if len(suppressed) > 1:  # in rulebook order too, not firing order
            suppressed = tuple(sorted(suppressed, key=lambda d: (order.get(d.rule_id, last), tuple(d.matched.items()))))
        # Per kind, most urgent first, then rulebook order, then the (canonical) facts matched:
        # the same advice whatever order the engine fired in (merging keeps the first of equals).
        groups: dict[type[Recommendation], list[_Member]] = {}
        for prepared, firing, fields in trace.made:
            derivation = _renamed(firing, rename)
            member = (prepared.rank, order.get(firing.rule_id, last), prepared, derivation, fields)
            group = groups.get(prepared.cls)
            if group is None:
                groups[prepared.cls] = [member]
            else:
                group.append(member)
        recs = []
        for group in groups.values():
            if len(group) > 1:
                group.sort(key=_member_key)
            recs.append(_merged(group))
        recs.sort(key=sort_key)
        return Advice(recommendations=tuple(recs), derived_facts=tuple(derived), suppressed=suppressed)

    def check_examples(self, rules: Sequence[Rule] | None = None) -> list[ExampleFailure]:
        """Run every rule's examples; return those that do not behave as declared."""
        failures: list[ExampleFailure] = []
        for rule in rules if rules is not None else self.rules:
            for expected, examples in (("fires", rule.fires), ("silent", rule.silent)):
                for example in examples:
                    if self._fires(rule, example) != (expected == "fires"):
                        failures.append(ExampleFailure(rule.id, rule.file, example.line, expected))
        return failures

    def _fires(self, rule: Rule, example: Example) -> bool:
        return rule.id in self.trace(dict(example.case)).effective


_default: Advisor | None = None
_default_lock = threading.Lock()


def default_advisor() -> Advisor:
    """The shared advisor on the shipped rules (built on first use)."""
    global _default
    if _default is None:
        with _default_lock:
            if _default is None:
                _default = Advisor()
    return _default


def advise(case: CaseLike) -> Advice:
    """Advise on a case (a :class:`Case`, a mapping, or JSON text) with the shipped rules.

    Raises :class:`~secondopinion.case.CaseError` for a bad case. This is
    guidance about second opinions, not medical advice.
    """
    return default_advisor().advise(case)
