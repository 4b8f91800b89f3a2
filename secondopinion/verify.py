"""Verification of a rule base: static findings, each one checked through the engine.

:func:`verify` analyses a :class:`~secondopinion.rulebook.Rulebook` (the shipped
rules plus any packs) and returns a :class:`Report` of :class:`Finding` objects:
dead and masked rules, derived facts nobody produces or uses, recommendation
kinds never given, conflicts between incompatible kinds, redundant rules,
cycles, gaps (cases that get no recommendation), declared coverage
requirements that are missed, rule metadata, and any disagreement between this
analysis and the engine.

How it works. Every rule's ``when`` is expanded into *plans*: conjunctions of
tests on case facts. A pattern over a derived fact is replaced by the patterns
of each rule that derives it (chaining), the derived attributes by what that
rule sets. Plans are grounded for a given number of opinions (each opinion
pattern picks one opinion; patterns of one rule bind different facts, as in
durable-rules) and solved by a small backtracking search over finite domains:
enum attributes take their values, numbers take the constants the rules
compare them with (and their neighbours), text takes the words the rules
mention plus a few others, and optional attributes may be absent. A
satisfying assignment becomes a *witness*, a valid case, which is then run
through the real engine (:meth:`Advisor.trace`); a finding is ``confirmed``
when the engine shows what the analysis claims. Negation (``unless``, "this
case is outside that rule") is handled exactly as *nogoods*: conjunctions the
assignment must not satisfy.

Besides the search, a deterministic corpus of cases (the rules' own examples,
pairwise combinations of the tested attribute values, and seeded random
cases) runs through the engine; each run is compared with the analysis, so a
rule the analysis calls dead that fires anyway, or an engine failure on a
valid case, is itself reported.
"""

from __future__ import annotations

import functools
import itertools
import json
import random
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, Literal

import attrs

from .advisor import Advisor, Trace
from .case import Case, CaseError, Domain, case_fact_types, case_facts, load_case
from .compiler import compile_rules
from .engine import Engine, EngineError
from .recommendations import KINDS
from .rulebook import AnyOf, Condition, Coverage, Derive, Pattern, Recommend, Ref, Rule, Rulebook, Test, iter_conditions

__all__ = ["KIND_DESCRIPTIONS", "CaseSampler", "Finding", "Report", "Severity", "verify"]

Severity = Literal["error", "warning", "info"]

_SEVERITY_RANK = {"error": 0, "warning": 1, "info": 2}

KIND_DESCRIPTIONS: Mapping[str, str] = {
    "dead-rule": "the rule's conditions cannot all hold for any valid case",
    "masked-rule": "whenever the rule fires, its 'unless' holds back its recommendation",
    "unproduced-fact": "rules match a derived fact that no rule can derive",
    "unused-fact": "a derived fact that no rule matches",
    "unused-kind": "recommendation kinds that no rule gives",
    "conflict": "two rules give incompatible recommendations for the same case",
    "redundant-rule": "every firing of the rule is covered by another rule with the same conclusion",
    "cycle": "derived facts that depend on themselves",
    "gap": "a region of cases that gets no recommendation at all",
    "coverage": "a declared coverage requirement is missed",
    "monotonicity": "raising a declared ordered attribute removes a kind that must not disappear",
    "metadata": "review metadata missing or unknown (examples, sources, guidance ids)",
    "unimplemented-guidance": "guidance items no active rule implements",
    "example-fails": "a rule's own example does not behave as declared",
    "engine-error": "the engine fails on a valid case",
    "engine-disagrees": "the engine and the analysis disagree on whether a rule fires",
    "analysis-limit": "the search gave up (too many combinations); no claim is made",
}

# --------------------------------------------------------------------------- findings and report


@attrs.frozen
class Finding:
    """One verification finding.

    ``witness`` is a valid case (as a dict) that shows the finding, when one
    exists; ``confirmed`` is ``True`` when the engine reproduced the finding on
    the witness (or, for a dead rule, never fired it on any case it ran),
    ``False`` when it did not, and ``None`` when there is nothing to run
    (structural findings such as cycles or metadata). ``region`` describes a
    gap: attribute path to the values that make up the region.
    """

    kind: str
    severity: Severity
    rule_ids: tuple[str, ...]
    message: str
    witness: Mapping[str, Any] | None = None
    confirmed: bool | None = None
    region: Mapping[str, tuple[Any, ...]] | None = None
    witness_after: Mapping[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready form of this finding (``witness_after`` only for findings about a pair of cases)."""
        extra = {"witness_after": _plain(self.witness_after)} if self.witness_after is not None else {}
        return {
            "kind": self.kind,
            "severity": self.severity,
            "rule_ids": list(self.rule_ids),
            "message": self.message,
            "witness": _plain(self.witness) if self.witness is not None else None,
            "confirmed": self.confirmed,
            "region": {k: [_json_value(x) for x in v] for k, v in self.region.items()}
            if self.region is not None
            else None,
            **extra,
        }

    def __str__(self) -> str:
        rules = f" [{', '.join(self.rule_ids)}]" if self.rule_ids else ""
        return f"{self.severity}: {self.kind}{rules}: {self.message}"


def _json_value(value: Any) -> Any:
    """A region value for JSON: an absent attribute is ``null``."""
    return None if value is ABSENT else value


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


@attrs.frozen
class Report:
    """The result of :func:`verify`: findings in a stable order, and what the run cost."""

    findings: tuple[Finding, ...]
    rules_checked: int
    engine_runs: int
    seconds: float

    @property
    def errors(self) -> tuple[Finding, ...]:
        """The error-level findings."""
        return tuple(f for f in self.findings if f.severity == "error")

    @property
    def warnings(self) -> tuple[Finding, ...]:
        """The warning-level findings."""
        return tuple(f for f in self.findings if f.severity == "warning")

    @property
    def ok(self) -> bool:
        """True when there is no error-level finding."""
        return not self.errors

    def of_kind(self, kind: str) -> tuple[Finding, ...]:
        """The findings of one kind."""
        return tuple(f for f in self.findings if f.kind == kind)

    def failing(self, fail_on: Iterable[str] = ("error",)) -> tuple[Finding, ...]:
        """The findings that fail a run: those whose severity or kind is named in ``fail_on``.

        ``fail_on`` holds severities (``error``, ``warning``, ``info``) and
        finding kinds (``gap``, ``redundant-rule``, ...); an unknown name is a
        ``ValueError``.
        """
        names = set(fail_on)
        unknown = sorted(names - set(_SEVERITY_RANK) - set(KIND_DESCRIPTIONS))
        if unknown:
            raise ValueError(f"unknown severity or finding kind: {', '.join(unknown)}")
        return tuple(f for f in self.findings if f.severity in names or f.kind in names)

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready form of this report."""
        counts = {s: sum(1 for f in self.findings if f.severity == s) for s in ("error", "warning", "info")}
        return {
            "ok": self.ok,
            "counts": counts,
            "rules_checked": self.rules_checked,
            "engine_runs": self.engine_runs,
            "seconds": round(self.seconds, 3),
            "findings": [f.to_dict() for f in self.findings],
            "kinds": {
                k: KIND_DESCRIPTIONS[k] for k in sorted({f.kind for f in self.findings}) if k in KIND_DESCRIPTIONS
            },
        }

    def to_json(self, *, indent: int | None = 2) -> str:
        """This report as JSON text."""
        return json.dumps(self.to_dict(), indent=indent, ensure_ascii=False)

    def to_text(self) -> str:
        """A plain-text rendering: one block per finding, then a summary line."""
        lines: list[str] = []
        for finding in self.findings:
            lines.append(str(finding))
            if finding.region:
                for path, values in finding.region.items():
                    lines.append(f"    {path}: {', '.join(_show(v) for v in values)}")
            if finding.witness is not None:
                state = {True: "confirmed by the engine", False: "NOT reproduced by the engine", None: ""}[
                    finding.confirmed
                ]
                lines.append(f"    witness ({state}): {json.dumps(_plain(finding.witness), sort_keys=True)}")
            if finding.witness_after is not None:
                lines.append(f"    raised to: {json.dumps(_plain(finding.witness_after), sort_keys=True)}")
        counts = {s: sum(1 for f in self.findings if f.severity == s) for s in ("error", "warning", "info")}
        lines.append(
            f"{self.rules_checked} rules checked, {counts['error']} errors, {counts['warning']} warnings, "
            f"{counts['info']} notes ({self.engine_runs} engine runs, {self.seconds:.1f} s)"
        )
        return "\n".join(lines) + "\n"


def _show(value: Any) -> str:
    return "(absent)" if value is ABSENT else str(value)


# --------------------------------------------------------------------------- the finite model


class _Absent:
    """The value of an optional attribute that a case leaves out."""

    def __repr__(self) -> str:
        return "ABSENT"


ABSENT: Any = _Absent()

Slot = tuple[str, int, str]
"""An attribute of one case fact: (fact type, opinion index or 0, attribute)."""

Expr = tuple[Any, ...]
"""("c", value) | ("b", binding key, attr, add) in plans | ("s", slot, add) | ("r", n, add) once grounded."""

Atom = tuple[Any, ...]
"""("cmp", left, op, right) | ("or", alternatives) | ("differ", exprs, exprs) | ("member", expr, values)."""

_CASE_TYPES = case_fact_types()
_SINGLETONS = frozenset(t for t in _CASE_TYPES if t != "opinion")
_MAX_OPINIONS = 6
_MAX_PLANS = 4000


class _TooBig(Exception):
    """The search space of one question is too large; no claim is made."""


@attrs.frozen
class _Plan:
    """One way a goal can hold: case-fact bindings, tests on them, and who must differ."""

    keys: Mapping[str, str]  # binding key -> case fact type
    atoms: tuple[Atom, ...]
    apart: tuple[tuple[str, str], ...]  # opinion keys of one rule instance: different opinions
    content: Mapping[str, Expr]  # what a deriving rule sets (for chaining)
    rules: frozenset[str]


@attrs.frozen
class _Alt:
    """A plan grounded for a number of opinions: a conjunction of tests on slots."""

    atoms: tuple[Atom, ...]
    slots: frozenset[Slot]


def _plus(expr: Expr, add: int) -> Expr:
    if not add:
        return expr
    if expr[0] == "c":
        value = expr[1]
        return ("c", value + add) if isinstance(value, int) and not isinstance(value, bool) else expr
    return (*expr[:-1], expr[-1] + add)


class _Model:
    """The rules under verification, their plans, and the solver over finite domains."""

    def __init__(self, rulebook: Rulebook, rules: Sequence[Rule], seed: int) -> None:
        self.rulebook = rulebook
        self.rules = tuple(rules)
        self.by_id = {r.id: r for r in self.rules}
        self.producers: dict[str, list[Rule]] = {}
        for rule in self.rules:
            if rule.derives:
                self.producers.setdefault(rule.derives, []).append(rule)
        self.fact_types = rulebook.fact_types()
        self.seed = seed
        self._plans: dict[str, list[_Plan]] = {}
        self._alts: dict[tuple[str, int], list[_Alt]] = {}
        self.cut_cycles: set[str] = set()
        self.limited: set[str] = set()
        ints: set[int] = {0, 1, 2}
        texts: set[str] = set()
        counts: set[int] = set()
        for patterns in self._all_pattern_lists():
            for pattern in patterns:
                for cond in iter_conditions(pattern.tests):
                    domain = self.fact_types.get(pattern.fact, {}).get(cond.attr)
                    for value in _literals(cond):
                        if isinstance(value, bool):
                            continue
                        if isinstance(value, int):
                            ints.update(value + d for d in (-1, 0, 1, 2))
                            if pattern.fact == "summary" or (pattern.fact == "opinion" and cond.attr == "index"):
                                counts.update(value + d for d in (-1, 0, 1, 2))
                        elif isinstance(value, str) and domain == "text" and value:
                            texts.add(value)
                    if isinstance(cond.value, Ref) and cond.value.add:
                        ints.update(c + cond.value.add for c in list(ints))
        self.ints = sorted(i for i in ints if i >= 0)
        fresh = [f"other {c}" for c in "abcd" if f"other {c}" not in texts]
        self.texts: list[Any] = [*sorted(texts), *fresh]
        for rule in self.rules:  # a rule that matches k opinions needs k of them (and k + 1 to tell them apart)
            need = self._opinions_needed(rule.when, frozenset({rule.id}))
            counts.update((need, need + 1))
        self.opinion_counts = [
            c for c in sorted({0, 1, 2, 3} | {c for c in counts if 0 <= c <= _MAX_OPINIONS}) if _valid_count(c)
        ]
        self.small_counts = self.opinion_counts
        self._domains: dict[tuple[str, str], list[Any]] = {}
        self._stages: dict[int, tuple[_Plan, list[list[Atom]], list[list[tuple[str, str]]]]] = {}

    def _opinions_needed(self, patterns: Sequence[Pattern], stack: frozenset[str]) -> int:
        """How many opinions one instance of these patterns matches at most (through derived facts too)."""
        need = 0
        for pattern in patterns:
            if pattern.fact == "opinion":
                need += 1
            elif pattern.fact not in _CASE_TYPES:
                need += max(
                    (
                        self._opinions_needed(p.when, stack | {p.id})
                        for p in self.producers.get(pattern.fact, ())
                        if p.id not in stack
                    ),
                    default=0,
                )
        return need

    def _all_pattern_lists(self) -> Iterator[Sequence[Pattern]]:
        for rule in self.rules:
            yield rule.when
            for u in rule.unless:
                yield (Pattern("u", u.fact, u.tests),)
        for cov in self.rulebook.coverage:
            yield cov.when

    # ------------------------------------------------------------------ domains

    def domain(self, slot: Slot) -> list[Any]:
        """Candidate values of a slot, the case model's default first."""
        fact, _, attr = slot
        cached = self._domains.get((fact, attr))
        if cached is not None:
            return list(cached)
        domain: Domain = _CASE_TYPES[fact][attr]
        if isinstance(domain, tuple):
            values = list(domain)
            if "unknown" in values:
                values.remove("unknown")
                values.insert(0, "unknown")
        else:
            # only values the case model accepts: a witness must be a valid case
            candidates: Sequence[Any] = self.ints if domain == "int" else self.texts
            values = [ABSENT, *(v for v in candidates if _valid_value(fact, attr, v))]
        self._domains[(fact, attr)] = values
        return list(values)

    # ------------------------------------------------------------------ plans

    def goal_plans(self, goal: str, patterns: Sequence[Pattern], stack: frozenset[str] = frozenset()) -> list[_Plan]:
        """The plans of a goal (cached by goal name)."""
        if goal not in self._plans:
            try:
                self._plans[goal] = self._instance(patterns, f"{goal}/", stack)
            except _TooBig:
                self.limited.add(goal)
                self._plans[goal] = []
        return self._plans[goal]

    def rule_plans(self, rule: Rule) -> list[_Plan]:
        """The plans of a rule's ``when``."""
        return self.goal_plans(f"rule:{rule.id}", rule.when, frozenset({rule.id}))

    def unless_plans(self, rule: Rule) -> list[list[_Plan]]:
        """The plans of each of a rule's ``unless`` entries."""
        return [
            self.goal_plans(f"unless:{rule.id}:{i}", (Pattern("u", u.fact, u.tests),))
            for i, u in enumerate(rule.unless)
        ]

    def _instance(
        self,
        patterns: Sequence[Pattern],
        prefix: str,
        stack: frozenset[str],
        sets: Mapping[str, Any] | None = None,
    ) -> list[_Plan]:
        """Expand one rule instance's patterns into plans (derived facts through their producers).

        ``sets`` is what the rule derives, when it derives: each plan then
        carries the derived fact's attributes as expressions over case slots.
        """
        # partial: (bindings, keys, atoms, apart, rules); a binding is ("case", key, fact) or ("derived", fact, content)
        partials: list[
            tuple[dict[str, tuple[Any, ...]], dict[str, str], tuple[Atom, ...], tuple[Any, ...], frozenset[str]]
        ]
        partials = [({}, {}, (), (), frozenset())]
        for pattern in patterns:
            grown: list[Any] = []
            if pattern.fact in _CASE_TYPES:
                key = prefix + pattern.bind
                for binds, keys, atoms, apart, used in partials:
                    grown.append(
                        (
                            {**binds, pattern.bind: ("case", key, pattern.fact)},
                            {**keys, key: pattern.fact},
                            atoms,
                            apart,
                            used,
                        )
                    )
            else:
                options: list[_Plan] = []
                for producer in self.producers.get(pattern.fact, ()):
                    if producer.id in stack:
                        self.cut_cycles.add(producer.id)
                        continue
                    assert isinstance(producer.then, Derive)
                    subs = self._instance(
                        producer.when,
                        f"{prefix}{pattern.bind}>{producer.id}/",
                        stack | {producer.id},
                        producer.then.set,
                    )
                    options.extend(attrs.evolve(sub, rules=sub.rules | {producer.id}) for sub in subs)
                for binds, keys, atoms, apart, used in partials:
                    for sub in options:
                        grown.append(
                            (
                                {**binds, pattern.bind: ("derived", pattern.fact, sub.content)},
                                {**keys, **sub.keys},
                                atoms + sub.atoms,
                                apart + sub.apart,
                                used | sub.rules,
                            )
                        )
            partials = []
            for binds, keys, atoms, apart, used in grown:
                new = tuple(self._template(t, binds[pattern.bind], binds) for t in pattern.tests)
                partials.append((binds, keys, atoms + new, apart, used))
            if len(partials) > _MAX_PLANS:
                raise _TooBig
        plans: list[_Plan] = []
        for binds, keys, atoms, apart, used in partials:
            extra_atoms: list[Atom] = []
            extra_apart: list[tuple[str, str]] = []
            ok = True
            items = list(binds.values())
            for a, b in itertools.combinations(items, 2):
                if a[0] == "case" and b[0] == "case" and a[2] == b[2]:
                    if a[2] in _SINGLETONS:
                        ok = False  # two patterns of one rule need two facts; a case has one
                        break
                    extra_apart.append((a[1], b[1]))
                elif a[0] == "derived" and b[0] == "derived" and a[1] == b[1]:
                    names = sorted(set(a[2]) | set(b[2]))
                    if not names:
                        ok = False  # a fact without attributes exists at most once
                        break
                    extra_atoms.append(
                        (
                            "differ",
                            tuple(a[2].get(n, ("c", ABSENT)) for n in names),
                            tuple(b[2].get(n, ("c", ABSENT)) for n in names),
                        )
                    )
            if not ok:
                continue
            content: dict[str, Expr] = {}
            for attr, value in (sets or {}).items():
                if isinstance(value, Ref):
                    content[attr] = _plus(_attr_expr(binds[value.binding], value.attr), value.add)
                else:
                    content[attr] = ("c", value)
            plans.append(_Plan(keys, atoms + tuple(extra_atoms), apart + tuple(extra_apart), content, used))
        return plans

    def _template(self, test: Test, bound: tuple[Any, ...], binds: Mapping[str, tuple[Any, ...]]) -> Atom:
        if isinstance(test, AnyOf):
            return ("or", tuple(tuple(self._template(t, bound, binds) for t in alt) for alt in test.alternatives))
        left = _attr_expr(bound, test.attr)
        value = test.value
        right: Any
        if isinstance(value, Ref):
            right = _plus(_attr_expr(binds[value.binding], value.attr), value.add)
        elif test.op in ("in", "not_in"):
            right = tuple(value) if isinstance(value, tuple) else (value,)
        elif test.op == "exists":
            right = bool(value)
        else:
            right = ("c", value)
        return ("cmp", left, test.op, right)

    # ------------------------------------------------------------------ grounding

    def alts(self, goal: str, plans: Sequence[_Plan], n: int) -> list[_Alt]:
        """The plans of a goal grounded for ``n`` opinions (cached)."""
        cache_key = (goal, n)
        if cache_key in self._alts:
            return self._alts[cache_key]
        seen: dict[tuple[Atom, ...], _Alt] = {}
        for plan in plans:
            opinion_keys = [k for k, t in plan.keys.items() if t == "opinion"]
            if opinion_keys and n == 0:
                continue
            self._place(goal, plan, opinion_keys, n, seen)  # past the limit: the goal is marked limited
        result = _minimal(list(seen.values()))
        self._alts[cache_key] = result
        return result

    def _place(
        self, goal: str, plan: _Plan, opinion_keys: Sequence[str], n: int, seen: dict[tuple[Atom, ...], _Alt]
    ) -> bool:
        """Ground one plan for every placement of its opinion patterns on ``n`` opinions (False: too many).

        Each atom is grounded as soon as the opinions it names are placed, so a
        placement that breaks a test (an index order, a count) is cut off early.
        """
        staged = self._stages.get(id(plan))
        if staged is None or staged[0] is not plan:
            position = {k: i for i, k in enumerate(opinion_keys)}
            stages: list[list[Atom]] = [[] for _ in range(len(opinion_keys) + 1)]
            for atom in plan.atoms:
                named = [position[k] for k in _atom_keys(atom) if k in position]
                stages[max(named) + 1 if named else 0].append(atom)
            apart_at: list[list[tuple[str, str]]] = [[] for _ in range(len(opinion_keys) + 1)]
            for a, b in plan.apart:
                if a in position and b in position:
                    apart_at[max(position[a], position[b]) + 1].append((a, b))
            staged = self._stages[id(plan)] = (plan, stages, apart_at)
        _, stages, apart_at = staged
        leaves = 0

        def place(depth: int, where: dict[str, int], grounded: list[Atom]) -> bool:
            nonlocal leaves
            if any(where[a] == where[b] for a, b in apart_at[depth]):
                return True
            added: list[Atom] = []
            for atom in stages[depth]:
                g = _ground_atom(atom, plan.keys, where, n)
                if not _atom_slots(g, n):
                    if not _truth(g, {}, n):
                        return True
                    continue
                added.append(g)
            if depth == len(opinion_keys):
                leaves += 1
                if leaves > 20_000:
                    self.limited.add(goal)
                    return False
                for conjunction in _dnf([*grounded, *added]):
                    key = tuple(sorted(set(conjunction), key=repr))
                    if key not in seen:
                        seen[key] = _Alt(key, frozenset(s for a in key for s in _atom_slots(a, n)))
                return True
            for index in range(n):
                where[opinion_keys[depth]] = index
                if not place(depth + 1, where, [*grounded, *added]):
                    return False
            del where[opinion_keys[depth]]
            return True

        return place(0, {}, [])

    def rule_alts(self, rule: Rule, n: int) -> list[_Alt]:
        """A rule's ``when`` grounded for ``n`` opinions."""
        return self.alts(f"rule:{rule.id}", self.rule_plans(rule), n)

    def unless_alts(self, rule: Rule, n: int) -> list[_Alt]:
        """Every way any of a rule's ``unless`` entries can hold, for ``n`` opinions."""
        out: list[_Alt] = []
        for i, plans in enumerate(self.unless_plans(rule)):
            out.extend(self.alts(f"unless:{rule.id}:{i}", plans, n))
        return out

    def coverage_alts(self, cov: Coverage, n: int) -> list[_Alt]:
        """A coverage requirement's ``when`` grounded for ``n`` opinions."""
        return self.alts(f"cov:{cov.id}", self.goal_plans(f"cov:{cov.id}", cov.when), n)

    # ------------------------------------------------------------------ solving

    def solve(
        self,
        n: int,
        positive: Sequence[Atom],
        nogoods: Sequence[Sequence[Atom]] = (),
        *,
        rng: random.Random | None = None,
        also: Iterable[Slot] = (),
        budget: int = 200_000,
    ) -> dict[Slot, Any] | None:
        """An assignment of slots that makes every positive atom true and no nogood wholly true.

        Backtracking with forward checking and smallest-domain-first. ``also``
        adds slots to assign (randomly when ``rng`` is given, else the
        default value first). Raises :class:`_TooBig` past ``budget`` steps.
        """
        variables: set[Slot] = set(also)
        for atom in positive:
            variables |= _atom_slots(atom, n)
        for nogood in nogoods:
            if not nogood:
                return None  # a nogood that always holds
            for atom in nogood:
                variables |= _atom_slots(atom, n)
        domains: dict[Slot, list[Any]] = {s: self.domain(s) for s in variables}
        if rng is not None:
            for values in domains.values():
                rng.shuffle(values)
        constraints: list[tuple[tuple[Slot, ...], bool, Any]] = []  # (slots, positive?, atom or atoms)
        guards: list[Atom] = []
        for atom in positive:
            slots = tuple(sorted(_atom_slots(atom, n)))
            if atom[0] == "ineffective" and len(slots) > 1:
                guards.append(atom)
            elif len(slots) == 1:
                slot = slots[0]
                domains[slot] = [v for v in domains[slot] if _truth(atom, {slot: v}, n)]
                if not domains[slot]:
                    return None
            else:
                constraints.append((slots, True, atom))
        nogoods = list(nogoods)
        for guard in guards:  # after every one-slot test has narrowed the domains
            simple = _simplify_guard(guard, domains, n)
            if simple is False:
                return None
            if simple is True:
                continue
            if not simple[2]:  # nothing can hold the rule back: each way it fires is a nogood of its own
                nogoods.extend(simple[1])
            else:
                slots = tuple(sorted(_atom_slots(simple, n)))
                if len(slots) == 1:
                    slot = slots[0]
                    domains[slot] = [v for v in domains[slot] if _truth(simple, {slot: v}, n)]
                    if not domains[slot]:
                        return None
                else:
                    compiled = tuple(
                        tuple(tuple((a, frozenset(_atom_slots(a, n))) for a in alt) for alt in alts)
                        for alts in (simple[1], simple[2])
                    )
                    constraints.append((slots, True, ("ineffective", simple[1], simple[2], compiled)))
        for nogood in nogoods:
            per_atom = [(_atom_slots(a, n), a) for a in nogood]
            if all(
                len(sl) == 1 and all(_truth(a, {next(iter(sl)): v}, n) for v in domains[next(iter(sl))])
                for sl, a in per_atom
            ):
                return None  # the positive tests already force this nogood
            if any(
                len(sl) == 1 and not any(_truth(a, {next(iter(sl)): v}, n) for v in domains[next(iter(sl))])
                for sl, a in per_atom
            ):
                continue  # some test of it can never hold: the nogood is harmless
            slots = tuple(sorted({s for sl, _ in per_atom for s in sl}))
            if len(slots) == 1:
                slot = slots[0]
                domains[slot] = [v for v in domains[slot] if not all(_truth(a, {slot: v}, n) for a in nogood)]
                if not domains[slot]:
                    return None
            else:
                constraints.append((slots, False, tuple(nogood)))
        watch: dict[Slot, list[int]] = {s: [] for s in variables}
        for i, (slots, _, _) in enumerate(constraints):
            for slot in slots:
                watch[slot].append(i)
        in_positive = {s for slots, pos, _ in constraints if pos for s in slots}
        rank = {s: (s not in in_positive, s) for s in variables}
        assignment: dict[Slot, Any] = {}
        unassigned = set(variables)
        steps = 0

        def holds(index: int) -> bool:
            _, pos, payload = constraints[index]
            if pos:
                return _truth(payload, assignment, n)
            return not all(_truth(a, assignment, n) for a in payload)

        def search() -> bool:
            nonlocal steps
            if not unassigned:
                return True
            slot = min(unassigned, key=lambda s: (len(domains[s]), rank[s]))
            unassigned.discard(slot)
            for value in list(domains[slot]):
                steps += 1
                if steps > budget:
                    raise _TooBig
                assignment[slot] = value
                saved: list[tuple[Slot, list[Any]]] = []
                good = True
                for index in watch[slot]:
                    free = [s for s in constraints[index][0] if s not in assignment]
                    if not free:
                        if not holds(index):
                            good = False
                            break
                    elif constraints[index][2][0] == "ineffective" and _guard_broken(
                        constraints[index][2], assignment, n
                    ):
                        good = False
                        break
                    elif len(free) == 1:
                        other = free[0]
                        kept = []
                        for candidate in domains[other]:
                            assignment[other] = candidate
                            if holds(index):
                                kept.append(candidate)
                        del assignment[other]
                        if len(kept) < len(domains[other]):
                            saved.append((other, domains[other]))
                            domains[other] = kept
                            if not kept:
                                good = False
                                break
                if good and search():
                    return True
                for other, values in reversed(saved):
                    domains[other] = values
            del assignment[slot]
            unassigned.add(slot)
            return False

        return dict(assignment) if search() else None

    def first_solution(
        self,
        ns: Iterable[int],
        alts_for: Any,
        nogoods_for: Any = lambda n: (),
        *,
        rng: random.Random | None = None,
        also_for: Any = lambda n: (),
        goal: str = "",
    ) -> tuple[int, dict[Slot, Any]] | None:
        """The first (n, assignment) over opinion counts ``ns`` and the alternatives of each."""
        for n in ns:
            nogoods = [a.atoms for a in nogoods_for(n)]
            for alt in alts_for(n):
                try:
                    found = self.solve(n, alt.atoms, nogoods, rng=rng, also=also_for(n))
                except _TooBig:
                    self.limited.add(goal)
                    continue
                if found is not None:
                    return n, found
        return None

    def ineffective(self, rule: Rule, n: int, rename: Mapping[Slot, Slot] | None = None) -> Atom | None:
        """An atom that holds when the rule does not give its advice for ``n`` opinions (None: it never can).

        ``("ineffective", whens, unlesses)`` holds when no alternative of the
        rule's ``when`` holds, or one of its ``unless`` alternatives does (the
        rule fires but is held back). ``rename`` moves the atoms to other
        slots (the second case of a pair).
        """
        whens = tuple(_rename_atoms(a.atoms, rename) for a in self.rule_alts(rule, n))
        if not whens:
            return None
        unlesses = tuple(_rename_atoms(u.atoms, rename) for u in self.unless_alts(rule, n))
        return ("ineffective", whens, unlesses)

    def solve_without(
        self,
        n: int,
        positive: Sequence[Atom],
        rules: Sequence[Rule],
        *,
        rename: Mapping[Slot, Slot] | None = None,
        nogoods: Sequence[Sequence[Atom]] = (),
        budget: int = 200_000,
    ) -> dict[Slot, Any] | None:
        """An assignment meeting ``positive`` on which none of ``rules`` advises (exactly, ``unless`` included).

        Each rule adds one ``ineffective`` constraint to the search, so this is
        one backtracking search, not one per way the rules can stay silent.
        Raises :class:`_TooBig` past ``budget`` steps.
        """
        guards = [g for g in (self.ineffective(rule, n, rename) for rule in rules) if g is not None]
        return self.solve(n, [*positive, *guards], nogoods, budget=budget)

    def first_without(
        self, ns: Iterable[int], positives_for: Any, rules: Sequence[Rule], *, goal: str
    ) -> tuple[int, dict[Slot, Any]] | None:
        """The first (n, assignment) where one of the positive conjunctions holds and none of ``rules`` advises."""
        for n in ns:
            for positive in positives_for(n):
                try:
                    found = self.solve_without(n, positive, rules)
                except _TooBig:
                    self.limited.add(goal)
                    continue
                if found is not None:
                    return n, found
        return None

    def witness(self, n: int, assignment: Mapping[Slot, Any]) -> dict[str, Any]:
        """The case (as a dict) an assignment describes; unassigned attributes keep their defaults."""
        case: dict[str, Any] = {}
        opinions: list[dict[str, Any]] = [{} for _ in range(n)]
        for (fact, index, attr), value in sorted(assignment.items(), key=lambda kv: kv[0]):
            if value is ABSENT or value == "unknown" or fact == "summary":
                continue
            if fact == "opinion":
                opinions[index][attr] = value
            else:
                case.setdefault(fact, {})[attr] = value
        if n:
            case["opinions"] = opinions
        return case

    def slots_of_case(self, case: Case) -> tuple[int, dict[Slot, Any]]:
        """Every slot of a concrete case, with its value (absent attributes as ABSENT)."""
        values: dict[Slot, Any] = {}
        for fact in case_facts(case):
            ftype = fact["type"]
            index = fact["index"] if ftype == "opinion" else 0
            for attr in _CASE_TYPES[ftype]:
                values[(ftype, index, attr)] = fact.get(attr, ABSENT)
        return len(case.opinions), values

    def holds(
        self, alts: Sequence[_Alt], n: int, values: Mapping[Slot, Any], memo: dict[Atom, bool] | None = None
    ) -> bool:
        """Whether any alternative holds on a concrete case's slots (``memo`` caches atoms of one case)."""
        if memo is None:
            memo = {}
        for alt in alts:
            for atom in alt.atoms:
                truth = memo.get(atom)
                if truth is None:
                    truth = memo[atom] = _truth(atom, values, n)
                if not truth:
                    break
            else:
                return True
        return False


@functools.cache
def _valid_value(fact: str, attr: str, value: Any) -> bool:
    """Whether the case model accepts this value for one attribute (limits included)."""
    part = {attr: value}
    try:
        load_case({"opinions": [part]} if fact == "opinion" else {fact: part})
    except CaseError:
        return False
    return True


@functools.cache
def _valid_count(n: int) -> bool:
    """Whether the case model accepts a case with ``n`` opinions."""
    try:
        load_case({"opinions": [{} for _ in range(n)]})
    except CaseError:
        return False
    return True


def _attr_expr(bound: tuple[Any, ...], attr: str) -> Expr:
    if bound[0] == "case":
        return ("b", bound[1], attr, 0)
    content: Mapping[str, Expr] = bound[2]
    return content.get(attr, ("c", ABSENT))


def _literals(cond: Condition) -> Iterator[Any]:
    if isinstance(cond.value, tuple):
        yield from cond.value
    elif not isinstance(cond.value, Ref) and cond.op != "exists":
        yield cond.value


def _simplify_guard(guard: Atom, domains: Mapping[Slot, Sequence[Any]], n: int) -> Atom | bool:
    """An ``ineffective`` atom reduced by the slots' domains: True (always holds), False (never), or a smaller atom."""

    def reduce(alt: Sequence[Atom]) -> tuple[Atom, ...] | None:
        kept: list[Atom] = []
        for atom in alt:
            slots = _atom_slots(atom, n)
            if not slots:
                if not _truth(atom, {}, n):
                    return None
                continue
            if len(slots) == 1:
                (slot,) = slots
                passing = [_truth(atom, {slot: v}, n) for v in domains[slot]]
                if not any(passing):
                    return None  # this alternative can never hold
                if all(passing):
                    continue  # this test always holds
            kept.append(atom)
        return tuple(kept)

    whens = [r for r in (reduce(alt) for alt in guard[1]) if r is not None]
    unlesses = [r for r in (reduce(alt) for alt in guard[2]) if r is not None]
    if not whens or any(not u for u in unlesses):
        return True  # the rule never fires here, or is always held back
    if any(not w for w in whens) and not unlesses:
        return False  # the rule always fires here and nothing holds it back
    return ("ineffective", tuple(whens), tuple(unlesses))


def _decided(alt: Sequence[tuple[Atom, frozenset[Slot]]], assignment: Mapping[Slot, Any], n: int) -> bool | None:
    """Whether a conjunction holds on a partial assignment: True, False, or None (not yet known)."""
    known = True
    for atom, slots in alt:
        if slots <= assignment.keys():
            if not _truth(atom, assignment, n):
                return False
        else:
            known = False
    return True if known else None


def _guard_broken(guard: Atom, assignment: Mapping[Slot, Any], n: int) -> bool:
    """Whether a partial assignment already makes the rule give its advice (an ``ineffective`` atom fails).

    ``guard`` is the compiled form :meth:`_Model.solve` builds: each atom with its slots.
    """
    whens, unlesses = guard[3]
    if not any(_decided(alt, assignment, n) is True for alt in whens):
        return False
    return all(_decided(alt, assignment, n) is False for alt in unlesses)


def _tells_apart(atom: Atom, slot: Slot, low: Any, high: Any, n: int) -> bool:
    """Whether an atom may hold for one of two values of a slot and not for the other (True when unsure)."""
    slots = _atom_slots(atom, n)
    if slot not in slots:
        return False
    if len(slots) > 1:
        return True
    return _truth(atom, {slot: low}, n) != _truth(atom, {slot: high}, n)


def _rename_expr(expr: Any, rename: Mapping[Slot, Slot]) -> Any:
    if isinstance(expr, tuple) and expr and expr[0] == "s" and expr[1] in rename:
        return ("s", rename[expr[1]], expr[2])
    return expr


def _rename_atom(atom: Atom, rename: Mapping[Slot, Slot]) -> Atom:
    tag = atom[0]
    if tag == "or":
        return ("or", tuple(tuple(_rename_atom(a, rename) for a in alt) for alt in atom[1]))
    if tag == "and":
        return ("and", tuple(_rename_atom(a, rename) for a in atom[1]))
    if tag == "ineffective":
        return (
            tag,
            tuple(tuple(_rename_atom(a, rename) for a in alt) for alt in atom[1]),
            tuple(tuple(_rename_atom(a, rename) for a in alt) for alt in atom[2]),
        )
    if tag == "differ":
        return (
            "differ",
            tuple(_rename_expr(e, rename) for e in atom[1]),
            tuple(_rename_expr(e, rename) for e in atom[2]),
        )
    if tag in ("member", "outside"):
        return (tag, _rename_expr(atom[1], rename), atom[2])
    _, left, op, right = atom
    return ("cmp", _rename_expr(left, rename), op, _rename_expr(right, rename))


def _rename_atoms(atoms: Sequence[Atom], rename: Mapping[Slot, Slot] | None) -> tuple[Atom, ...]:
    """Atoms with some slots replaced by others (no change without ``rename``)."""
    if not rename:
        return tuple(atoms)
    return tuple(_rename_atom(a, rename) for a in atoms)


@functools.lru_cache(maxsize=65_536)
def _atom_keys(atom: Any) -> frozenset[str]:
    """The binding keys an atom (in plan form) refers to (cached: plans share their atoms)."""
    if isinstance(atom, tuple) and atom:
        if atom[0] == "b":
            return frozenset((atom[1],))
        return frozenset(k for part in atom if isinstance(part, tuple) for k in _atom_keys(part))
    return frozenset()


def _ground_expr(expr: Any, keys: Mapping[str, str], where: Mapping[str, int], n: int) -> Any:
    if not isinstance(expr, tuple) or not expr or expr[0] != "b":
        return expr
    _, key, attr, add = expr
    fact = keys[key]
    if fact == "opinion":
        if attr == "index":
            return ("c", where[key] + add)
        return ("s", ("opinion", where[key], attr), add)
    if fact == "summary":
        if attr == "opinion_count":
            return ("c", n + add)
        return ("r", n, add)
    return ("s", (fact, 0, attr), add)


def _ground_atom(atom: Atom, keys: Mapping[str, str], where: Mapping[str, int], n: int) -> Atom:
    tag = atom[0]
    if tag == "or":
        return ("or", tuple(tuple(_ground_atom(a, keys, where, n) for a in alt) for alt in atom[1]))
    if tag == "differ":
        return (
            "differ",
            tuple(_ground_expr(e, keys, where, n) for e in atom[1]),
            tuple(_ground_expr(e, keys, where, n) for e in atom[2]),
        )
    _, left, op, right = atom
    return ("cmp", _ground_expr(left, keys, where, n), op, _ground_expr(right, keys, where, n))


def _minimal(alts: Sequence[_Alt]) -> list[_Alt]:
    """Drop every alternative whose tests include all of another's: it adds nothing to an 'or'."""
    kept: list[tuple[frozenset[Atom], _Alt]] = []
    for alt in sorted(alts, key=lambda a: (len(a.atoms), repr(a.atoms))):
        atoms = frozenset(alt.atoms)
        if not any(other <= atoms for other, _ in kept):
            kept.append((atoms, alt))
    return [alt for _, alt in kept]


def _dnf(atoms: Sequence[Atom], limit: int = 256) -> list[list[Atom]]:
    """Split 'any' alternatives into separate conjunctions (kept whole past ``limit``)."""
    result: list[list[Atom]] = [[]]
    for atom in atoms:
        if atom[0] == "or":
            options = [c for alt in atom[1] for c in _dnf(alt, limit)]
            if len(result) * len(options) <= limit:
                result = [r + o for r in result for o in options]
                continue
        result = [[*r, atom] for r in result]
    return result


def _expr_slots(expr: Any, n: int) -> set[Slot]:
    if not isinstance(expr, tuple) or not expr:
        return set()
    if expr[0] == "s":
        return {expr[1]}
    if expr[0] == "r":
        return {("opinion", i, "mode") for i in range(expr[1])}
    return set()


def _atom_slots(atom: Atom, n: int) -> set[Slot]:
    tag = atom[0]
    if tag == "or":
        return {s for alt in atom[1] for a in alt for s in _atom_slots(a, n)}
    if tag == "and":
        return {s for a in atom[1] for s in _atom_slots(a, n)}
    if tag == "ineffective":
        return {s for alts in (atom[1], atom[2]) for alt in alts for a in alt for s in _atom_slots(a, n)}
    if tag == "differ":
        return {s for e in (*atom[1], *atom[2]) for s in _expr_slots(e, n)}
    if tag in ("member", "outside"):
        return _expr_slots(atom[1], n)
    return _expr_slots(atom[1], n) | _expr_slots(atom[3], n)


def _value(expr: Any, values: Mapping[Slot, Any]) -> Any:
    tag = expr[0]
    if tag == "c":
        return expr[1]
    if tag == "s":
        value = values[expr[1]]
    else:  # "r": remote opinions among the first n
        value = sum(1 for i in range(expr[1]) if values[("opinion", i, "mode")] == "remote")
    add = expr[2]
    if add and value is not ABSENT and isinstance(value, int) and not isinstance(value, bool):
        return value + add
    return value


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _truth(atom: Atom, values: Mapping[Slot, Any], n: int) -> bool:
    """Whether an atom holds; the same semantics as the engine (an absent attribute fails every test but 'exists')."""
    tag = atom[0]
    if tag == "or":
        return any(all(_truth(a, values, n) for a in alt) for alt in atom[1])
    if tag == "and":
        return all(_truth(a, values, n) for a in atom[1])
    if tag == "differ":
        return any(_value(x, values) != _value(y, values) for x, y in zip(atom[1], atom[2], strict=True))
    if tag == "ineffective":
        fires = any(all(_truth(a, values, n) for a in alt) for alt in atom[1])
        return not fires or any(all(_truth(a, values, n) for a in alt) for alt in atom[2])
    if tag == "member":
        return _value(atom[1], values) in atom[2]
    if tag == "outside":
        return _value(atom[1], values) not in atom[2]
    _, left, op, right = atom
    actual = _value(left, values)
    if op == "exists":
        return (actual is not ABSENT) is right
    if actual is ABSENT:
        return False
    if op == "in":
        return actual in right
    if op == "not_in":
        return actual not in right
    other = _value(right, values)
    if other is ABSENT:
        return False
    if op == "eq":
        return bool(actual == other)
    if op == "ne":
        return bool(actual != other)
    if not _is_int(actual) or not _is_int(other):
        return False
    if op == "gt":
        return bool(actual > other)
    if op == "gte":
        return bool(actual >= other)
    if op == "lt":
        return bool(actual < other)
    return bool(actual <= other)


# --------------------------------------------------------------------------- engine runs


@attrs.frozen
class _Run:
    """One case run through the engine, with what the analysis says about it."""

    case: Mapping[str, Any]
    n: int
    values: Mapping[Slot, Any]
    trace: Trace | None
    error: str | None
    fired: frozenset[str] = frozenset()
    effective: frozenset[str] = frozenset()
    memo: dict[Atom, bool] = attrs.field(factory=dict, eq=False)

    @property
    def kinds(self) -> frozenset[str]:
        """The kinds the engine recommended (suppressed ones excluded)."""
        return frozenset(r.kind for r in self.trace.recommendations) if self.trace else frozenset()


def _case_key(case: Mapping[str, Any]) -> str:
    return json.dumps(_plain(case), sort_keys=True)


def _path(slot: Slot) -> str:
    fact, index, attr = slot
    return f"opinions[{index}].{attr}" if fact == "opinion" else f"{fact}.{attr}"


class _Verifier:
    """Runs every check on one rulebook and collects the findings."""

    def __init__(self, rulebook: Rulebook, include_drafts: bool, seed: int, samples: int, max_gaps: int) -> None:
        self.rulebook = rulebook
        self.include_drafts = include_drafts
        self.rules = tuple(
            r for r in rulebook.rules if r.status == "active" or (include_drafts and r.status == "draft")
        )
        self.seed = seed
        self.samples = samples
        self.max_gaps = max_gaps
        self.model = _Model(rulebook, self.rules, seed)
        self.findings: list[Finding] = []
        self.runs: dict[str, _Run] = {}
        self.engine_runs = 0
        self.advisor: Advisor | None = None
        self.fire_witness: dict[str, tuple[int, dict[Slot, Any]]] = {}
        self.dead: dict[str, Finding] = {}
        self.conflict_pairs: set[frozenset[str]] = set()
        self.coverage_missed: set[str] = set()
        self.boxes: dict[int, list[dict[Slot, frozenset[Any]]]] = {}
        self.disagreeing: set[str] = set()
        self.error_rules: set[tuple[str, ...]] = set()

    def add(self, kind: str, severity: Severity, rule_ids: Iterable[str], message: str, **extra: Any) -> Finding:
        finding = Finding(kind, severity, tuple(rule_ids), message, **extra)
        self.findings.append(finding)
        return finding

    def severity_for(self, rule: Rule, error: Severity = "error") -> Severity:
        return error if rule.status == "active" else "warning"

    # ------------------------------------------------------------------ engine

    def run(self, case: Mapping[str, Any]) -> _Run:
        """Run a case through the engine once (cached by content)."""
        key = _case_key(case)
        if key in self.runs:
            return self.runs[key]
        try:
            checked = load_case(dict(case))
        except CaseError:
            # the analysis built a case the case model refuses: no claim rests on it
            self.model.limited.add("witness")
            refused = _Run(case, 0, {}, None, None)
            self.runs[key] = refused
            return refused
        n, values = self.model.slots_of_case(checked)
        trace: Trace | None = None
        error: str | None = None
        if self.advisor is not None:
            self.engine_runs += 1
            try:
                trace = self.advisor.trace(checked)
            except EngineError as exc:
                error = f"{type(exc).__name__}: {exc}"
        result = _Run(
            case,
            n,
            values,
            trace,
            error,
            trace.fired if trace else frozenset(),
            trace.effective if trace else frozenset(),
        )
        self.runs[key] = result
        return result

    def fired_statically(self, rule: Rule, run: _Run) -> bool:
        return self.model.holds(self.model.rule_alts(rule, run.n), run.n, run.values, run.memo)

    # ------------------------------------------------------------------ the checks

    def check_all(self) -> None:
        self.check_metadata()
        self.check_structure()
        try:
            if self.advisor is None:
                self.advisor = Advisor(self.rulebook, include_drafts=self.include_drafts)
        except EngineError as exc:
            self.add("engine-error", "error", (), f"the engine refuses the rules ({type(exc).__name__}: {exc})")
        self.check_examples()
        self.check_dead_and_masked()
        self.check_conflicts()
        self.check_redundancy()
        self.check_coverage()
        self.check_monotonicity()
        self.check_gaps()
        self.check_corpus()
        self.check_runs()
        self.fold_dead_examples()
        for goal in sorted(self.model.limited):
            self.add(
                "analysis-limit",
                "info",
                (goal.split(":")[1],) if ":" in goal else (),
                f"search limit reached for {goal}",
            )

    def fold_dead_examples(self) -> None:
        """A dead rule's 'fires' examples cannot fire: say so in the dead-rule finding, not as a second error."""
        for rule_id, dead in list(self.dead.items()):
            failing = [
                f
                for f in self.findings
                if f.kind == "example-fails" and f.rule_ids == (rule_id,) and "should fire" in f.message
            ]
            if not failing:
                continue
            for finding in failing:
                self.findings.remove(finding)
            where = ", ".join(f.message.split(" ")[2] for f in failing)
            folded = attrs.evolve(dead, message=f"{dead.message} (so its 'fires' example at {where} cannot fire)")
            self.findings[self.findings.index(dead)] = folded
            self.dead[rule_id] = folded

    def check_metadata(self) -> None:
        book = self.rulebook
        for rule in book.rules:
            if rule.status == "retired":
                continue
            sev: Severity = "error" if rule.status == "active" else "warning"
            if not rule.fires or not rule.silent:
                self.add(
                    "metadata",
                    sev,
                    (rule.id,),
                    f"{rule.status} rule needs at least one 'fires' and one 'silent' example",
                )
            if not rule.sources:
                self.add("metadata", sev, (rule.id,), f"{rule.status} rule cites no source")
            if not rule.guidance:
                self.add("metadata", sev, (rule.id,), f"{rule.status} rule names no guidance id")
            for gid in rule.guidance:
                if gid not in book.guidance:
                    self.add("metadata", sev, (rule.id,), f"unknown guidance id {gid}")
            for eid in rule.evidence:
                if eid not in book.evidence:
                    self.add("metadata", sev, (rule.id,), f"unknown evidence id {eid}")
            for tid in rule.tensions:
                if tid not in book.tensions:
                    self.add("metadata", sev, (rule.id,), f"unknown tension id {tid}")
            for src in rule.sources:
                doc = book.documents.get(src.file)
                if doc is None or src.section not in doc.sections:
                    self.add("metadata", sev, (rule.id,), f"unknown source {src.file} / {src.section}")
        cited = {g for r in book.active for g in r.guidance}
        missing = sorted(g for g in book.guidance if g not in cited)
        if missing:
            self.add("unimplemented-guidance", "info", (), f"guidance no active rule cites: {', '.join(missing)}")

    def check_structure(self) -> None:
        rules = self.rules
        produced = {r.derives for r in rules if r.derives}
        consumed: dict[str, list[str]] = {}
        for rule in rules:
            for fact in {p.fact for p in rule.when} | {u.fact for u in rule.unless}:
                if fact in self.rulebook.derived_types:
                    consumed.setdefault(fact, []).append(rule.id)
        for fact in sorted(self.rulebook.derived_types):
            if fact in consumed and fact not in produced:
                self.add(
                    "unproduced-fact",
                    "warning",
                    consumed[fact],
                    f"rules match derived fact {fact!r}, but no rule derives it",
                )
            elif fact in produced and fact not in consumed:
                self.add(
                    "unused-fact",
                    "warning",
                    [r.id for r in rules if r.derives == fact],
                    f"derived fact {fact!r} is derived but no rule matches it",
                )
            elif fact not in produced and fact not in consumed:
                self.add(
                    "unused-fact", "info", (), f"derived fact {fact!r} is declared but neither derived nor matched"
                )
        given = {r.recommends for r in rules if r.recommends}
        never = [k for k in KINDS if k not in given]
        if never:
            self.add("unused-kind", "info", (), f"recommendation kinds no rule gives: {', '.join(never)}")
        for a, b in self.rulebook.incompatible_kinds:
            for kind in (a, b):
                if kind not in given:
                    self.add("unused-kind", "info", (), f"incompatible pair ({a}, {b}): no rule gives {kind}")
        # cycles: derived fact -> derived fact through a rule
        graph: dict[str, set[str]] = {}
        via: dict[tuple[str, str], list[str]] = {}
        for rule in rules:
            if rule.derives:
                for pattern in rule.when:
                    if pattern.fact in self.rulebook.derived_types:
                        graph.setdefault(pattern.fact, set()).add(rule.derives)
                        via.setdefault((pattern.fact, rule.derives), []).append(rule.id)
        for component in _cycles(graph):
            members = set(component)
            ids = sorted({rid for (a, b), rids in via.items() if a in members and b in members for rid in rids})
            self.add(
                "cycle",
                "error",
                ids,
                f"derived facts depend on themselves: {' -> '.join([*component, component[0]])}",
            )

    def check_examples(self) -> None:
        if self.advisor is None:
            return
        for rule in self.rules:
            for expected, examples in (("fires", rule.fires), ("silent", rule.silent)):
                for example in examples:
                    run = self.run(example.case)
                    if run.trace is None:
                        continue
                    if (rule.id in run.effective) != (expected == "fires"):
                        verb = "fire" if expected == "fires" else "stay silent"
                        self.add(
                            "example-fails",
                            self.severity_for(rule),
                            (rule.id,),
                            f"example at {rule.file}:{example.line} should {verb} but does not",
                            witness=example.case,
                            confirmed=True,
                        )

    def check_dead_and_masked(self) -> None:
        model = self.model
        for rule in self.rules:
            found = model.first_solution(
                model.opinion_counts, lambda n, r=rule: model.rule_alts(r, n), goal=f"rule:{rule.id}"
            )
            if found is None:
                if f"rule:{rule.id}" in model.limited:
                    continue
                self.dead[rule.id] = self.add(
                    "dead-rule",
                    self.severity_for(rule),
                    (rule.id,),
                    f"can never fire: {self.explain_dead(rule)}",
                    confirmed=True,
                )
                continue
            self.fire_witness[rule.id] = found
            self.run(model.witness(*found))
            if not rule.unless:
                continue
            effective = model.first_solution(
                model.opinion_counts,
                lambda n, r=rule: model.rule_alts(r, n),
                lambda n, r=rule: model.unless_alts(r, n),
                goal=f"rule:{rule.id}",
            )
            if effective is not None:
                self.run(model.witness(*effective))
                continue
            witness = model.witness(*found)
            run = self.run(witness)
            confirmed = run.trace is not None and rule.id in run.fired and rule.id not in run.effective
            self.add(
                "masked-rule",
                self.severity_for(rule),
                (rule.id,),
                "fires, but its 'unless' always holds back the recommendation",
                witness=witness,
                confirmed=confirmed,
            )

    def explain_dead(self, rule: Rule) -> str:
        model = self.model
        for pattern in rule.when:
            if pattern.fact in self.rulebook.derived_types and not model.producers.get(pattern.fact):
                return f"no rule derives {pattern.fact!r} (pattern {pattern.bind!r})"
        facts = [p.fact for p in rule.when]
        for fact in sorted(set(facts)):
            if fact in _SINGLETONS and facts.count(fact) > 1:
                return f"two patterns need two different {fact!r} facts, but a case has only one"
        for i, pattern in enumerate(rule.when):
            goal = f"why:{rule.id}:{i}"
            plans = model.goal_plans(goal, rule.when[: i + 1])
            alone = model.first_solution(
                model.opinion_counts, lambda n, p=plans, g=goal: model.alts(g, p, n), goal=goal
            )
            if alone is not None:
                continue
            detail = self.explain_unary(goal, plans)
            if i > 0:
                return (
                    f"pattern {pattern.bind!r} ({pattern.fact}) cannot hold together with the patterns before it"
                    + detail
                )
            if pattern.fact in self.rulebook.derived_types:
                return f"no rule derives a {pattern.fact!r} fact that meets pattern {pattern.bind!r}'s tests" + detail
            return f"pattern {pattern.bind!r} ({pattern.fact}) can never match" + detail
        return "its patterns cannot all hold at once (a join or the values they share rule it out)"

    def explain_unary(self, goal: str, plans: Sequence[_Plan]) -> str:
        model = self.model
        for n in model.opinion_counts[:3]:
            for alt in model.alts(goal, plans, n):
                by_slot: dict[Slot, list[Atom]] = {}
                for atom in alt.atoms:
                    slots = _atom_slots(atom, n)
                    if len(slots) == 1:
                        by_slot.setdefault(next(iter(slots)), []).append(atom)
                for slot, atoms in sorted(by_slot.items()):
                    if not any(all(_truth(a, {slot: v}, n) for a in atoms) for v in model.domain(slot)):
                        return (
                            f": no value of {_path(slot).replace('opinions[0]', 'opinion')} "
                            "that the case model allows passes all its tests"
                        )
        return ""

    def check_conflicts(self) -> None:
        model = self.model
        for kind_a, kind_b in self.rulebook.incompatible_kinds:
            side_a = [r for r in self.rules if r.recommends == kind_a]
            side_b = [r for r in self.rules if r.recommends == kind_b]
            for a in side_a:
                for b in side_b:
                    if a.id in self.dead or b.id in self.dead:
                        continue
                    found = self.solve_pair(a, b)
                    if found is None:
                        continue
                    witness = model.witness(*found)
                    run = self.run(witness)
                    confirmed = run.trace is not None and {a.id, b.id} <= run.effective
                    self.conflict_pairs.add(frozenset((a.id, b.id)))
                    self.add(
                        "conflict",
                        "error" if confirmed else "warning",
                        (a.id, b.id),
                        f"{a.id} ({kind_a}) and {b.id} ({kind_b}) are declared incompatible "
                        "but both apply to this case",
                        witness=witness,
                        confirmed=confirmed,
                    )

    def solve_pair(self, a: Rule, b: Rule) -> tuple[int, dict[Slot, Any]] | None:
        model = self.model
        for n in model.small_counts:
            nogoods = [alt.atoms for alt in model.unless_alts(a, n) + model.unless_alts(b, n)]
            for alt_a in model.rule_alts(a, n):
                for alt_b in model.rule_alts(b, n):
                    try:
                        found = model.solve(n, alt_a.atoms + alt_b.atoms, nogoods)
                    except _TooBig:
                        model.limited.add(f"pair:{a.id}")
                        continue
                    if found is not None:
                        return n, found
        return None

    def check_redundancy(self) -> None:
        model = self.model
        groups: dict[Any, list[Rule]] = {}
        for rule in self.rules:
            if rule.id in self.dead:
                continue
            sig = _conclusion(rule)
            if sig is not None:
                groups.setdefault(sig, []).append(rule)
        reported: set[frozenset[str]] = set()
        for members in groups.values():
            for a in members:
                for b in members:
                    if a is b or not set(b.unless) <= set(a.unless):
                        continue
                    if not self.subsumed(a, b):
                        continue
                    pair = frozenset((a.id, b.id))
                    if pair in reported:
                        continue
                    reported.add(pair)
                    both = set(a.unless) == set(b.unless) and self.subsumed(b, a)
                    witness = model.witness(*self.fire_witness[a.id])
                    run = self.run(witness)
                    confirmed = run.trace is not None and {a.id, b.id} <= run.fired
                    message = (
                        f"{a.id} and {b.id} fire on exactly the same cases with the same conclusion"
                        if both
                        else f"every case that fires {a.id} also fires {b.id}, which concludes the same"
                    )
                    self.add("redundant-rule", "warning", (a.id, b.id), message, witness=witness, confirmed=confirmed)

    def subsumed(self, a: Rule, b: Rule) -> bool:
        """Whether every firing of ``a`` is a firing of ``b`` (over the opinion counts explored)."""
        model = self.model
        for n in model.small_counts:
            nogoods = [alt.atoms for alt in model.rule_alts(b, n)]
            for alt in model.rule_alts(a, n):
                try:
                    if model.solve(n, alt.atoms, nogoods) is not None:
                        return False
                except _TooBig:
                    model.limited.add(f"pair:{a.id}")
                    return False
        return True

    def check_coverage(self) -> None:
        """Decide each coverage requirement exactly: a case it matches on which no giver of the kinds is effective."""
        model = self.model
        for cov in self.rulebook.coverage:
            groups = [cov.requires_kinds] if cov.mode == "any" else [(k,) for k in cov.requires_kinds]
            for kinds in groups:
                givers = [r for r in self.rules if r.recommends in kinds]
                found = model.first_without(
                    model.opinion_counts,
                    lambda n, c=cov: [a.atoms for a in model.coverage_alts(c, n)],
                    givers,
                    goal=f"cov:{cov.id}",
                )
                if found is not None:
                    self.report_coverage(cov, kinds, model.witness(*found))

    def check_monotonicity(self) -> None:
        """For each declared order, look for two cases that differ in one step of it and lose a kept kind.

        One step suffices: if a kind is given at a low value and not at a
        higher one, it is lost at some step between them. The first case
        must have a rule giving the kind without its ``unless``; the second,
        the same case with the attribute one step higher, must have none
        (decided exactly, as for coverage). Both are run through the engine.
        """
        model = self.model
        for mono in self.rulebook.monotonicity:
            slot: Slot = (mono.fact, 0, mono.attr)
            raised: Slot = (mono.fact, 1, mono.attr)  # a singleton aspect never uses index 1: the second case
            values = [v for v in model.domain(slot) if v is not ABSENT]
            if isinstance(mono.order, tuple):
                steps = list(itertools.pairwise(mono.order))
            else:
                numbers = sorted(values, reverse=mono.order == "decreasing")
                steps = list(itertools.pairwise(numbers))
            for kind in mono.keeps_kinds:
                givers = [r for r in self.rules if r.recommends == kind and r.id not in self.dead]
                found = self.monotonicity_pair(mono.id, kind, slot, raised, steps, givers)
                if found is None:
                    continue
                giver, n, assignment = found
                before_values = {s: v for s, v in assignment.items() if s != raised}
                before = model.witness(n, before_values)
                after = model.witness(n, {**before_values, slot: assignment[raised]})
                run_before, run_after = self.run(before), self.run(after)
                confirmed = (
                    run_before.trace is not None
                    and run_after.trace is not None
                    and kind in run_before.kinds
                    and kind not in run_after.kinds
                )
                self.add(
                    "monotonicity",
                    "error" if confirmed else "warning",
                    (mono.id, giver.id),
                    f"{mono.description} Raising {mono.attribute} from {assignment[slot]} to "
                    f"{assignment[raised]} removes {kind} (given by {giver.id}).",
                    witness=before,
                    witness_after=after,
                    confirmed=confirmed,
                )

    def monotonicity_pair(
        self,
        mono_id: str,
        kind: str,
        slot: Slot,
        raised: Slot,
        steps: Sequence[tuple[Any, Any]],
        givers: Sequence[Rule],
    ) -> tuple[Rule, int, dict[Slot, Any]] | None:
        model = self.model
        rename = {slot: raised}
        for n in model.opinion_counts:
            tests = {
                rule.id: [a for alt in model.rule_alts(rule, n) + model.unless_alts(rule, n) for a in alt.atoms]
                for rule in givers
            }
            for low, high in steps:
                step = [("member", ("s", slot, 0), (low,)), ("member", ("s", raised, 0), (high,))]
                # only a rule with a test that tells the two values apart can stop giving the kind
                # when the value rises (the rest of the case is the same)
                turning = [g for g in givers if any(_tells_apart(a, slot, low, high, n) for a in tests[g.id])]
                for giver in turning:
                    nogoods = [u.atoms for u in model.unless_alts(giver, n)]
                    for alt in model.rule_alts(giver, n):
                        try:
                            found = model.solve_without(
                                n, [*alt.atoms, *step], givers, rename=rename, nogoods=nogoods
                            )
                        except _TooBig:
                            model.limited.add(f"mono:{mono_id}")
                            continue
                        if found is not None:
                            return giver, n, found
        return None

    def report_coverage(self, cov: Coverage, kinds: Sequence[str], witness: Mapping[str, Any]) -> None:
        if f"{cov.id}:{kinds}" in self.coverage_missed:
            return
        self.coverage_missed.add(f"{cov.id}:{kinds}")
        run = self.run(witness)
        confirmed = run.trace is not None and not (set(kinds) & run.kinds)
        needed = " or ".join(kinds)
        self.add(
            "coverage",
            "error" if confirmed else "warning",
            (cov.id,),
            f"{cov.description} This case matches but gets no {needed}.",
            witness=witness,
            confirmed=confirmed,
        )

    def tested_slots(self, n: int) -> set[Slot]:
        """Every slot some rule or coverage requirement tests, for ``n`` opinions."""
        out: set[Slot] = set()
        for rule in self.rules:
            for alt in self.model.rule_alts(rule, n) + self.model.unless_alts(rule, n):
                out |= alt.slots
        for cov in self.rulebook.coverage:
            for alt in self.model.coverage_alts(cov, n):
                out |= alt.slots
        return out

    # ------------------------------------------------------------------ gaps

    def recommenders(self) -> list[Rule]:
        return [r for r in self.rules if r.recommends and r.id not in self.dead]

    def check_gaps(self) -> None:
        """Search, for 0, 1 and 2 opinions, for cases no rule gives advice on, each outside the regions found so far."""
        model = self.model
        recommenders = self.recommenders()
        if not recommenders:
            return
        for n in model.opinion_counts[:3]:
            tested = sorted(self.tested_slots(n))
            rule_nogoods = [alt.atoms for alt in _minimal([a for r in recommenders for a in model.rule_alts(r, n)])]
            while len(self.of_kind("gap")) < self.max_gaps:
                previous = [
                    {s: v for s, v in box.items() if s[0] != "opinion" and len(v) < len(model.domain(s))}
                    for boxes in self.boxes.values()
                    for box in boxes
                ]
                try:
                    seed = self.escape(n, previous, rule_nogoods, tested)
                except _TooBig:
                    model.limited.add("gaps")
                    break
                if seed is None:
                    break
                self.add_gap(n, seed, tested)

    def escape(
        self,
        n: int,
        previous: Sequence[Mapping[Slot, frozenset[Any]]],
        rule_nogoods: Sequence[Sequence[Atom]],
        tested: Sequence[Slot],
    ) -> dict[Slot, Any] | None:
        """A case no rule advises on that lies outside every earlier region (on the case's single aspects)."""
        attempts = 0

        def search(i: int, positive: list[Atom]) -> dict[Slot, Any] | None:
            nonlocal attempts
            attempts += 1
            if attempts > 400:
                raise _TooBig
            if i == len(previous):
                return self.model.solve(n, positive, rule_nogoods, also=tested, budget=20_000)
            for slot, values in sorted(previous[i].items()):
                found = search(i + 1, [*positive, ("outside", ("s", slot, 0), values)])
                if found is not None:
                    return found
            return None

        return search(0, [])

    def add_gap(self, n: int, seed: Mapping[Slot, Any], tested: Sequence[Slot]) -> None:
        model = self.model
        box = self.grow_box(n, seed, tested)
        self.boxes.setdefault(n, []).append(box)
        witness = model.witness(n, seed)
        run = self.run(witness)
        confirmed = run.trace is not None and not run.trace.recommendations
        rng = random.Random(f"{self.seed}:gap:{len(self.findings)}")  # noqa: S311 - seeded sampling
        for _ in range(8):
            point = {s: rng.choice(sorted(v, key=repr)) for s, v in box.items()}
            other = self.run(model.witness(n, point))
            if other.trace is None or other.trace.recommendations:
                confirmed = False
        region = {_path(s): tuple(sorted(v, key=repr)) for s, v in box.items() if len(v) < len(model.domain(s))}
        self.add(
            "gap",
            "warning",
            (),
            f"no recommendation at all for any case with {n} opinion(s) in this region "
            f"({len(region)} attributes narrowed, the others may take any value)",
            witness=witness,
            confirmed=confirmed,
            region={"opinion_count": (n,), **region},
        )

    def grow_box(self, n: int, seed: Mapping[Slot, Any], tested: Sequence[Slot]) -> dict[Slot, frozenset[Any]]:
        """Widen a gap case, one attribute at a time, to a box of cases that all get no recommendation."""
        model = self.model
        box: dict[Slot, frozenset[Any]] = {s: frozenset([seed[s]]) for s in tested}
        by_slot: dict[Slot, list[tuple[Rule, _Alt]]] = {}
        for rule in self.recommenders():
            alts = model.rule_alts(rule, n)
            unless_slots = {s for alt in model.unless_alts(rule, n) for s in alt.slots}
            for alt in alts:
                for slot in alt.slots | unless_slots:
                    by_slot.setdefault(slot, []).append((rule, alt))
        for slot in tested:
            for value in model.domain(slot):
                if value in box[slot]:
                    continue
                trial = {**box, slot: frozenset([value])}
                if all(self.empty_in(rule, alt, n, trial) for rule, alt in by_slot.get(slot, [])):
                    box[slot] = box[slot] | {value}
        return box

    def empty_in(self, rule: Rule, alt: _Alt, n: int, box: Mapping[Slot, frozenset[Any]]) -> bool:
        """Whether no case in the box makes this alternative of the rule fire without its 'unless'."""
        model = self.model
        nogoods = [u.atoms for u in model.unless_alts(rule, n)]
        slots = set(alt.slots) | {s for u in nogoods for a in u for s in _atom_slots(a, n)}
        members = [("member", ("s", s, 0), box[s]) for s in slots if s in box]
        for atom in alt.atoms:  # quick test: a one-slot atom no value of the box passes
            atom_slots = _atom_slots(atom, n)
            if len(atom_slots) == 1:
                (slot,) = atom_slots
                if slot in box and not any(_truth(atom, {slot: v}, n) for v in box[slot]):
                    return True
        try:
            return model.solve(n, [*alt.atoms, *members], nogoods, budget=5_000) is None
        except _TooBig:
            return False

    # ------------------------------------------------------------------ the corpus

    def check_corpus(self) -> None:
        """Run pairwise combinations of the tested values and seeded random cases."""
        if self.advisor is None:
            return
        model = self.model
        rng = random.Random(f"{self.seed}:corpus")  # noqa: S311 - seeded sampling
        max_n = 3
        params: list[tuple[Slot, list[Any]]] = []
        for slot in sorted(self.tested_slots(max_n)):
            if slot[0] == "opinion" and slot[1] >= max_n:
                continue
            params.append((slot, model.domain(slot)))
        counts = [n for n in model.opinion_counts if n <= max_n]
        rows = _pairwise([("n", counts), *((s, d) for s, d in params)], rng, limit=self.samples)
        for row in rows:
            n = row.pop("n")
            self.run(model.witness(n, {s: v for s, v in row.items() if s[0] != "opinion" or s[1] < n}))
        for _ in range(self.samples):
            n = rng.choice(counts)
            point = {s: rng.choice(d) for s, d in params if s[0] != "opinion" or s[1] < n}
            self.run(model.witness(n, point))

    def check_runs(self) -> None:
        """Compare every engine run with the analysis."""
        recommenders = self.recommenders()
        for run in sorted(self.runs.values(), key=lambda r: len(_case_key(r.case))):
            if run.error is not None:
                self.report_engine_error(run)
                continue
            if run.trace is None:
                continue
            for rule in self.rules:
                static = self.fired_statically(rule, run)
                engine = rule.id in run.fired
                if rule.id in self.dead and engine:
                    dead = self.dead.pop(rule.id)
                    self.findings.remove(dead)
                if static != engine and rule.id not in self.disagreeing:
                    self.disagreeing.add(rule.id)
                    says = "fires" if engine else "does not fire"
                    self.add(
                        "engine-disagrees",
                        "error",
                        (rule.id,),
                        f"the engine says the rule {says} on this case; the analysis says the opposite",
                        witness=run.case,
                        confirmed=True,
                    )
            for kind_a, kind_b in self.rulebook.incompatible_kinds:
                if {kind_a, kind_b} <= run.kinds:
                    ids = sorted(
                        r.rule_ids[0] for r in run.trace.recommendations if r.kind in (kind_a, kind_b) and r.rule_ids
                    )
                    if any(frozenset(p) in self.conflict_pairs for p in itertools.combinations(ids, 2)):
                        continue
                    self.conflict_pairs.add(frozenset(ids))
                    self.add(
                        "conflict",
                        "error",
                        ids,
                        f"the engine gave both {kind_a} and {kind_b} for this case",
                        witness=run.case,
                        confirmed=True,
                    )
            for cov in self.rulebook.coverage:
                if not self.model.holds(self.model.coverage_alts(cov, run.n), run.n, run.values, run.memo):
                    continue
                groups = [cov.requires_kinds] if cov.mode == "any" else [(k,) for k in cov.requires_kinds]
                for kinds in groups:
                    if not (set(kinds) & run.kinds):
                        self.report_coverage(cov, kinds, run.case)
            if (
                recommenders
                and not run.trace.recommendations
                and not self.in_box(run)
                and len(self.of_kind("gap")) < self.max_gaps
            ):
                tested = sorted(self.tested_slots(run.n))
                seed = {s: run.values[s] for s in tested}
                self.add_gap(run.n, seed, tested)

    def of_kind(self, kind: str) -> list[Finding]:
        return [f for f in self.findings if f.kind == kind]

    def in_box(self, run: _Run) -> bool:
        """Whether a case lies in a gap region found so far (for other opinion counts: on its single aspects)."""
        return any(
            all(run.values[s] in v for s, v in box.items() if n == run.n or s[0] != "opinion")
            for n, boxes in self.boxes.items()
            for box in boxes
        )

    def report_engine_error(self, run: _Run) -> None:
        culprits = tuple(self.culprits(run))
        if culprits in self.error_rules:
            return
        self.error_rules.add(culprits)
        self.add(
            "engine-error",
            "error",
            culprits,
            f"the engine fails on this valid case ({run.error})",
            witness=run.case,
            confirmed=True,
        )

    def culprits(self, run: _Run) -> Iterator[str]:
        """Rules whose own engine (with the rules they build on) fails on the case."""
        facts = case_facts(load_case(dict(run.case)))
        for rule in self.rules:
            if not any(isinstance(c.value, Ref) for p in rule.when for c in iter_conditions(p.tests)):
                continue
            closure = self.closure(rule)
            compiled = compile_rules(closure)
            try:
                Engine(compiled.rules, compiled.derive).run(facts)
            except EngineError:
                yield rule.id

    def closure(self, rule: Rule) -> list[Rule]:
        out: dict[str, Rule] = {}
        todo = [rule]
        while todo:
            current = todo.pop()
            if current.id in out:
                continue
            out[current.id] = current
            for pattern in current.when:
                todo.extend(self.model.producers.get(pattern.fact, ()))
        return list(out.values())


def _conclusion(rule: Rule) -> Any:
    """What a rule concludes, comparable between rules; None when it depends on which facts matched.

    A recommendation's conclusion is its kind, priority and fields: a rule that
    would change the priority or a field of the merged recommendation is not
    redundant. Titles and details are wording and do not count.
    """
    singles = {p.bind: p.fact for p in rule.when if p.fact in _SINGLETONS}

    def sig(value: Any) -> Any:
        if isinstance(value, Ref):
            if value.binding not in singles:
                raise LookupError
            return ("ref", singles[value.binding], value.attr, value.add)
        return value

    try:
        if isinstance(rule.then, Derive):
            return ("derive", rule.then.fact, tuple(sorted((k, sig(v)) for k, v in rule.then.set.items())))
        assert isinstance(rule.then, Recommend)
        fields = tuple(sorted((k, sig(v)) for k, v in rule.then.fields.items()))
        return ("recommend", rule.then.kind, rule.then.priority, fields)
    except LookupError:
        return None


def _cycles(graph: Mapping[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with a cycle (Tarjan), each in a stable order."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    counter = 0

    def visit(node: str) -> None:
        nonlocal counter
        index[node] = low[node] = counter
        counter += 1
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1 or node in graph.get(node, ()):
                out.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return out


def _pairwise(params: Sequence[tuple[Any, Sequence[Any]]], rng: random.Random, *, limit: int) -> list[dict[Any, Any]]:
    """Rows that cover every pair of values of every two parameters (greedy, seeded), at most ``limit``."""
    names = [p for p, _ in params]
    sizes = [len(d) for _, d in params]
    # need[(i, a, j)] = values b of parameter j (j > i) not yet seen with value a of parameter i
    need: dict[tuple[int, int, int], set[int]] = {}
    for i, j in itertools.combinations(range(len(names)), 2):
        for a in range(sizes[i]):
            need[(i, a, j)] = set(range(sizes[j]))
    rows: list[dict[Any, Any]] = []
    while len(rows) < limit:
        start = next(((i, a, j, min(b)) for (i, a, j), b in need.items() if b), None)
        if start is None:
            break
        i0, a0, j0, b0 = start
        choice: dict[int, int] = {i0: a0, j0: b0}
        order = [k for k in range(len(names)) if k not in choice]
        rng.shuffle(order)
        for k in order:
            gain = [0] * sizes[k]
            for c, cv in choice.items():
                if c < k:
                    for v in need[(c, cv, k)]:
                        gain[v] += 1
                else:
                    for v in range(sizes[k]):
                        if cv in need[(k, v, c)]:
                            gain[v] += 1
            choice[k] = max(range(sizes[k]), key=lambda v: gain[v])
        for i, j in itertools.combinations(sorted(choice), 2):
            need[(i, choice[i], j)].discard(choice[j])
        rows.append({names[k]: params[k][1][v] for k, v in choice.items()})
    return rows


class CaseSampler:
    """Valid cases aimed by a rule base's own conditions, for property tests and populations.

    Each *target* is one thing the rules test: a rule's ``when``, one of its
    ``unless`` entries, a coverage requirement, or two rules whose kinds are
    declared incompatible (both at once). :meth:`sample` solves a target with
    a random choice at every step, so cases fall on the boundary values of
    each threshold, on each value a rule tests, and on the opinion counts the
    rules mention; attributes no rule tests keep their defaults. Target
    number ``len(targets)`` (one past the last) draws every tested attribute
    at random from the same values instead.
    """

    def __init__(self, rulebook: Rulebook, *, include_drafts: bool = False) -> None:
        self.rules = tuple(
            r for r in rulebook.rules if r.status == "active" or (include_drafts and r.status == "draft")
        )
        self.model = _Model(rulebook, self.rules, 0)
        self.targets: list[tuple[str, Any]] = []
        for rule in self.rules:
            self.targets.append((f"rule {rule.id}", lambda n, r=rule: self.model.rule_alts(r, n)))
            for i, plans in enumerate(self.model.unless_plans(rule)):
                goal = f"unless:{rule.id}:{i}"
                self.targets.append(
                    (f"unless {rule.id}", lambda n, g=goal, p=plans: self.model.alts(g, p, n))
                )
        for cov in rulebook.coverage:
            self.targets.append((f"coverage {cov.id}", lambda n, c=cov: self.model.coverage_alts(c, n)))
        for kind_a, kind_b in rulebook.incompatible_kinds:
            for a in (r for r in self.rules if r.recommends == kind_a):
                for b in (r for r in self.rules if r.recommends == kind_b):
                    self.targets.append((f"pair {a.id} {b.id}", lambda n, a=a, b=b: self._both(a, b, n)))
        self._tested: dict[int, list[Slot]] = {}

    def _both(self, a: Rule, b: Rule, n: int) -> list[_Alt]:
        out = []
        for x in self.model.rule_alts(a, n):
            for y in self.model.rule_alts(b, n):
                out.append(_Alt(x.atoms + y.atoms, x.slots | y.slots))
        return out

    def tested(self, n: int) -> list[Slot]:
        """Every slot a rule or coverage requirement tests, for ``n`` opinions."""
        if n not in self._tested:
            slots: set[Slot] = set()
            for rule in self.rules:
                for alt in self.model.rule_alts(rule, n) + self.model.unless_alts(rule, n):
                    slots |= alt.slots
            for cov in self.model.rulebook.coverage:
                for alt in self.model.coverage_alts(cov, n):
                    slots |= alt.slots
            self._tested[n] = sorted(s for s in slots if s[0] != "opinion" or s[1] < n)
        return self._tested[n]

    def domain(self, fact: str, attr: str) -> list[Any]:
        """The values the sampler draws for one attribute (``None`` for absent)."""
        return [None if v is ABSENT else v for v in self.model.domain((fact, 0, attr))]

    def sample(self, rng: random.Random, target: int | None = None) -> dict[str, Any]:
        """One case as a dict, aimed at ``targets[target]`` (chosen at random when None)."""
        model = self.model
        if target is None:
            target = rng.randrange(len(self.targets) + 1)
        if target < len(self.targets):
            _, alts_for = self.targets[target]
            counts = list(model.opinion_counts)
            rng.shuffle(counts)
            for n in counts:
                alts = list(alts_for(n))
                if not alts:
                    continue
                alt = rng.choice(alts)
                try:
                    found = model.solve(n, alt.atoms, rng=rng, also=self.tested(n), budget=5_000)
                except _TooBig:
                    found = None
                if found is not None:
                    return model.witness(n, found)
        n = rng.choice(model.opinion_counts)
        return model.witness(n, {s: rng.choice(model.domain(s)) for s in self.tested(n)})

    def population(self, size: int, *, seed: int = 2026) -> list[dict[str, Any]]:
        """``size`` cases, deterministic for a seed: each target in turn, then random draws."""
        rng = random.Random(seed)  # noqa: S311 - seeded sampling, not secrets
        order = list(range(len(self.targets) + 1))
        return [self.sample(rng, order[i % len(order)]) for i in range(size)]


def verify(
    rulebook: Rulebook | None = None,
    *,
    include_drafts: bool = False,
    seed: int = 2026,
    samples: int = 200,
    max_gaps: int = 3,
    advisor: Advisor | None = None,
) -> Report:
    """Verify a rule base: static findings, each checked through the engine.

    ``rulebook`` defaults to the shipped rules. ``include_drafts`` also
    analyses and runs rules with status ``draft`` (their findings are at most
    warnings). ``samples`` bounds the pairwise rows and the seeded random
    cases run through the engine; ``max_gaps`` bounds the gap regions
    reported. ``advisor`` is the advisor that confirms findings (by default
    one built on ``rulebook``). The same inputs always give the same report.
    """
    started = time.perf_counter()
    book = rulebook if rulebook is not None else Rulebook.load()
    verifier = _Verifier(book, include_drafts, seed, samples, max_gaps)
    verifier.advisor = advisor
    verifier.check_all()
    findings = sorted(verifier.findings, key=lambda f: (_SEVERITY_RANK[f.severity], f.kind, f.rule_ids, f.message))
    return Report(tuple(findings), len(verifier.rules), verifier.engine_runs, time.perf_counter() - started)
