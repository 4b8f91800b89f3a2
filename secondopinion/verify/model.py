"""The model of a rule base: each rule's conditions as plans, grounded for a number of opinions, over finite domains."""

from __future__ import annotations

import functools
import itertools
import random
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import attrs

from ..case import Case, CaseError, Domain, case_fact_types, case_facts, load_case
from ..rulebook import (
    AnyOf,
    Coverage,
    Derive,
    Pattern,
    Ref,
    Rule,
    Rulebook,
    Test,
    iter_conditions,
)
from . import search
from .atoms import (
    ABSENT,
    Atom,
    Expr,
    Predicate,
    Slot,
    _Alt,
    _atom_keys,
    _atom_repr,
    _atom_slots,
    _attr_expr,
    _dnf,
    _ground_atom,
    _is_int,
    _literals,
    _minimal,
    _Plan,
    _plus,
    _predicate,
    _rename_atoms,
    _slots_of,
    _TooBig,
    _truth,
)

_CASE_TYPES = case_fact_types()


_SINGLETONS = frozenset(t for t in _CASE_TYPES if t != "opinion")


_MAX_OPINIONS = 6


_MAX_PLANS = 4000


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
        self._rule_alts: dict[tuple[str, int], list[_Alt]] = {}  # by rule id and n
        self._unless_alts: dict[tuple[str, int], list[_Alt]] = {}
        self._ineffective: dict[tuple[str, int, tuple[tuple[Slot, Slot], ...]], Atom | None] = {}
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
        self._counts_for: dict[tuple[Any, ...], list[int]] = {}
        self._stages: dict[int, tuple[Sequence[_Plan], list[_Staged]]] = {}  # by list of plans (see alts)
        self._atom_info: dict[Atom, tuple[tuple[str, ...], str, Atom, bool | None]] = {}  # see _atom_info
        self._on_n: dict[tuple[Atom, int], tuple[Atom, bool | None]] = {}  # the same for atoms on the summary, by n
        self._numbers: dict[Atom, int] = {}  # every atom :meth:`holds` tests, numbered
        self._tests: list[Predicate] = []  # each numbered atom compiled
        self._indices: dict[int, tuple[Sequence[_Alt], tuple[tuple[int, ...], ...]]] = {}
        self._fired: dict[int, tuple[Sequence[Rule], list[tuple[tuple[int, ...], ...]]]] = {}  # by n (see fired)

    def counts_for(self, rules: Sequence[Rule], patterns: Sequence[Pattern] = ()) -> list[int]:
        """The opinion counts a search over these rules (and extra patterns) needs: the counts they mention.

        0 to 3, every count their ``opinion_count``, ``remote_opinion_count``
        or ``index`` tests compare with (and its neighbours), and the number of
        opinions their patterns match plus one, plus one more for each
        ``unless`` over opinions (each may need an opinion of its own). Rules
        they build on through derived facts count too.
        """
        key = (tuple(sorted(r.id for r in rules)), tuple(patterns))
        cached = self._counts_for.get(key)
        if cached is not None:
            return cached
        counts = {0, 1, 2, 3}
        lists: list[Sequence[Pattern]] = [patterns] if patterns else []
        seen: set[str] = set()
        todo = list(rules)
        unless_opinions = 0
        while todo:
            rule = todo.pop()
            if rule.id in seen:
                continue
            seen.add(rule.id)
            lists.append(rule.when)
            lists.extend((Pattern("u", u.fact, u.tests),) for u in rule.unless)
            unless_opinions += sum(1 for u in rule.unless if u.fact == "opinion")
            for pattern in (*rule.when, *(Pattern("u", u.fact, u.tests) for u in rule.unless)):
                todo.extend(self.producers.get(pattern.fact, ()))
        need = 0
        for pats in lists:
            need = max(need, self._opinions_needed(pats, frozenset()))
            for pattern in pats:
                if pattern.fact not in ("summary", "opinion"):
                    continue
                for cond in iter_conditions(pattern.tests):
                    if pattern.fact == "opinion" and cond.attr != "index":
                        continue
                    for value in _literals(cond):
                        if _is_int(value):
                            counts.update(value + d for d in (-1, 0, 1, 2))
        counts.update((need, need + 1, need + unless_opinions + 1))
        result = [c for c in self.opinion_counts if c in counts]
        self._counts_for[key] = result
        return result

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
        cached = self._stages.get(id(plans))
        if cached is None or cached[0] is not plans:
            cached = self._stages[id(plans)] = (plans, [self._staged(plan) for plan in plans])
        for staged in cached[1]:
            if staged.opinion_keys and n == 0:
                continue
            start = self._start(staged, n)
            if start is None:
                continue  # a test on no opinion fails for every case with n opinions
            if staged.opinion_keys:
                self._place(goal, staged, start, n, seen)  # past the limit: the goal is marked limited
                continue
            if start is staged.base:  # the same atoms for every n: grounded once
                if staged.leaves is None:
                    staged.leaves = _conjunctions(start)
                conjunctions = staged.leaves
            else:
                conjunctions = _conjunctions(start)
            for key, alt in conjunctions:
                if key not in seen:
                    seen[key] = alt
        result = _minimal(list(seen.values()))
        self._alts[cache_key] = result
        return result

    def _staged(self, plan: _Plan) -> _Staged:
        """A plan prepared for grounding (:meth:`alts` keeps them, by list of plans).

        The atoms that name neither an opinion nor the summary ground the
        same way for every ``n``: they are grounded here, once per atom (many
        plans hold the same atoms: one derived fact's plans appear in every
        plan built on it; a binding key always names the same fact, so equal
        atoms ground the same: see :func:`_atom_info`).
        """
        opinion_keys = [k for k, t in plan.keys.items() if t == "opinion"]
        position = {k: i for i, k in enumerate(opinion_keys)}
        stages: list[list[Atom]] = [[] for _ in range(len(opinion_keys) + 1)]
        first: list[tuple[Atom, bool]] = []
        base: list[Atom] | None = []
        infos = self._atom_info
        for atom in plan.atoms:
            info = infos.get(atom)
            if info is None:
                info = infos[atom] = _atom_info(atom, plan.keys)
            opinions, names, grounded, truth = info
            if names == "opinion":
                last = position[opinions[0]] if len(opinions) == 1 else max(position[k] for k in opinions)
                stages[last + 1].append(atom)
                continue
            stages[0].append(atom)
            first.append((atom, names == "summary"))
            if names == "summary":
                continue
            if truth is None:
                if base is not None:
                    base.append(grounded)
            elif not truth:
                base = None  # fails for every case
        apart_at: list[list[tuple[str, str]]] = [[] for _ in range(len(opinion_keys) + 1)]
        for a, b in plan.apart:
            if a in position and b in position:
                apart_at[max(position[a], position[b]) + 1].append((a, b))
        return _Staged(plan, opinion_keys, stages, apart_at, first, base)

    def _start(self, staged: _Staged, n: int) -> list[Atom] | None:
        """A plan's atoms that name no opinion, grounded for ``n`` opinions (None: one of them can never hold).

        Atoms that read no slot are decided here and left out. When every
        atom on the summary is decided, this is the plan's ``base`` itself.
        """
        if staged.base is None:
            return None
        memo = self._on_n
        kept = False
        for atom, on_n in staged.first:
            if not on_n:
                continue
            entry = memo.get((atom, n))
            if entry is None:
                g = _ground_atom(atom, staged.plan.keys, {}, n)
                entry = memo[(atom, n)] = (g, None if _atom_slots(g, n) else _truth(g, {}, n))
            if entry[1] is None:
                kept = True
            elif not entry[1]:
                return None
        if not kept:
            return staged.base
        out: list[Atom] = []
        for atom, on_n in staged.first:
            grounded, truth = memo[(atom, n)] if on_n else self._atom_info[atom][2:]
            if truth is None:
                out.append(grounded)
        return out

    def _place(self, goal: str, staged: _Staged, start: list[Atom], n: int, seen: dict[tuple[Atom, ...], _Alt]) -> bool:
        """Ground one plan for every placement of its opinion patterns on ``n`` opinions (False: too many).

        ``start`` is the plan's atoms that name no opinion, already grounded
        (:meth:`_start`). Each other atom is grounded as soon as the opinions
        it names are placed, so a placement that breaks a test (an index
        order, a count) is cut off early.
        """
        if _Placement(staged, start, n, seen).place(0, {}, []):
            return True
        self.limited.add(goal)  # past 20,000 placements
        return False

    def rule_alts(self, rule: Rule, n: int) -> list[_Alt]:
        """A rule's ``when`` grounded for ``n`` opinions (cached: the list is shared, do not change it)."""
        cached = self._rule_alts.get((rule.id, n))
        if cached is None:
            cached = self._rule_alts[(rule.id, n)] = self.alts(f"rule:{rule.id}", self.rule_plans(rule), n)
        return cached

    def unless_alts(self, rule: Rule, n: int) -> list[_Alt]:
        """Every way any of a rule's ``unless`` entries can hold, for ``n`` opinions (cached, shared as well)."""
        cached = self._unless_alts.get((rule.id, n))
        if cached is not None:
            return cached
        out: list[_Alt] = []
        for i, plans in enumerate(self.unless_plans(rule)):
            out.extend(self.alts(f"unless:{rule.id}:{i}", plans, n))
        self._unless_alts[(rule.id, n)] = out
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
        """An assignment making every positive atom true and no nogood wholly true (see :func:`.search.solve`)."""
        return search.solve(self.domain, n, positive, nogoods, rng=rng, also=also, budget=budget)

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
        slots (the second case of a pair). Cached.
        """
        key = (rule.id, n, tuple(sorted(rename.items())) if rename else ())
        if key in self._ineffective:
            return self._ineffective[key]
        whens = tuple(_rename_atoms(a.atoms, rename) for a in self.rule_alts(rule, n))
        guard: Atom | None = None
        if whens:
            unlesses = tuple(_rename_atoms(u.atoms, rename) for u in self.unless_alts(rule, n))
            guard = ("ineffective", whens, unlesses)
        self._ineffective[key] = guard
        return guard

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
        self, alts: Sequence[_Alt], n: int, values: Mapping[Slot, Any], memo: list[bool | None] | None = None
    ) -> bool:
        """Whether any alternative holds on a concrete case's slots.

        ``memo`` caches the atoms' truths on one case, by :meth:`_indexed` number (None: not known yet).
        """
        indexed = self._indexed(alts)
        tests = self._tests
        if memo is None:
            memo = []
        if len(memo) < len(tests):
            memo.extend([None] * (len(tests) - len(memo)))
        return _some_alternative_holds(indexed, tests, memo, values)

    def fired(self, rules: Sequence[Rule], n: int, values: Mapping[Slot, Any], memo: list[bool | None]) -> list[bool]:
        """For each rule, whether its ``when`` holds on a concrete case with ``n`` opinions (see :meth:`holds`)."""
        cached = self._fired.get(n)
        if cached is None or cached[0] is not rules:
            cached = self._fired[n] = (rules, [self._indexed(self.rule_alts(rule, n)) for rule in rules])
        indexed = cached[1]
        tests = self._tests
        if len(memo) < len(tests):
            memo.extend([None] * (len(tests) - len(memo)))
        return [_some_alternative_holds(alts, tests, memo, values) for alts in indexed]

    def _indexed(self, alts: Sequence[_Alt]) -> tuple[tuple[int, ...], ...]:
        """The alternatives with each atom replaced by its number (equal atoms, one number; see :attr:`_tests`).

        Cached per list of alternatives (the lists :meth:`alts` caches; the
        cache holds the list itself, so its ``id`` stays its own).
        """
        cached = self._indices.get(id(alts))
        if cached is not None and cached[0] is alts:
            return cached[1]
        numbers = self._numbers
        out: list[tuple[int, ...]] = []
        for alt in alts:
            row: list[int] = []
            for atom in alt.atoms:
                number = numbers.get(atom)
                if number is None:
                    number = numbers[atom] = len(self._tests)
                    self._tests.append(_predicate(atom))
                row.append(number)
            out.append(tuple(row))
        indexed = tuple(out)
        self._indices[id(alts)] = (alts, indexed)
        return indexed


class _Staged:
    """A plan prepared for grounding by :meth:`_Model._staged`.

    ``stages`` are its atoms by the depth at which the opinions they name are
    placed (depth 0: they name none), ``apart_at`` the pairs of opinions that
    must differ at each depth; ``first`` is depth 0's atoms, each marked when
    it reads the summary (its grounding depends on ``n``); ``base`` the
    others grounded, those that read no slot left out (None: one of those
    fails for every case); ``leaves`` the conjunctions of ``base`` when the
    plan names no opinion (computed once, for any ``n`` that keeps it).
    """

    __slots__ = ("apart_at", "base", "first", "leaves", "opinion_keys", "plan", "stages")

    def __init__(
        self,
        plan: _Plan,
        opinion_keys: list[str],
        stages: list[list[Atom]],
        apart_at: list[list[tuple[str, str]]],
        first: list[tuple[Atom, bool]],
        base: list[Atom] | None,
    ) -> None:
        self.plan = plan
        self.opinion_keys = opinion_keys
        self.stages = stages
        self.apart_at = apart_at
        self.first = first
        self.base = base
        self.leaves: list[tuple[tuple[Atom, ...], _Alt]] | None = None


def _atom_info(atom: Atom, keys: Mapping[str, str]) -> tuple[tuple[str, ...], str, Atom, bool | None]:
    """A plan atom's opinion binding keys, what it names ("opinion", else "summary", else ""), and, when it names
    neither (its grounding is the same for every placement and ``n``), the atom grounded and its truth if it reads
    no slot.
    """
    names = _atom_keys(atom)
    opinions = tuple(sorted(k for k in names if keys[k] == "opinion"))
    if opinions:
        return opinions, "opinion", atom, None
    if any(keys[k] == "summary" for k in names):
        return (), "summary", atom, None
    grounded = _ground_atom(atom, keys, {}, 0)
    return (), "", grounded, None if _atom_slots(grounded, 0) else _truth(grounded, {}, 0)


class _Placement:
    """One plan grounded for every placement of its opinion patterns on ``n`` opinions (see :meth:`_Model._place`).

    A class, not a recursive closure: a closure that calls itself is a
    reference cycle, which would keep what it holds alive until the cyclic
    collector runs (see ``verifier._collector_paused``).
    """

    __slots__ = ("leaves", "n", "seen", "staged", "start")

    def __init__(self, staged: _Staged, start: list[Atom], n: int, seen: dict[tuple[Atom, ...], _Alt]) -> None:
        self.staged = staged
        self.start = start
        self.n = n
        self.seen = seen
        self.leaves = 0

    def place(self, depth: int, where: dict[str, int], grounded: list[Atom]) -> bool:
        """Place the opinion patterns from ``depth`` on (False: past the limit of placements)."""
        staged, n = self.staged, self.n
        if any(where[a] == where[b] for a, b in staged.apart_at[depth]):
            return True
        added: list[Atom] = []
        if depth == 0:
            added = self.start
        else:
            for atom in staged.stages[depth]:
                g = _ground_atom(atom, staged.plan.keys, where, n)
                if not _atom_slots(g, n):
                    if not _truth(g, {}, n):
                        return True
                    continue
                added.append(g)
        opinion_keys = staged.opinion_keys
        if depth == len(opinion_keys):
            self.leaves += 1
            if self.leaves > 20_000:
                return False
            seen = self.seen
            for key, alt in _conjunctions([*grounded, *added]):
                if key not in seen:
                    seen[key] = alt
            return True
        for index in range(n):
            where[opinion_keys[depth]] = index
            if not self.place(depth + 1, where, [*grounded, *added]):
                return False
        del where[opinion_keys[depth]]
        return True


def _conjunctions(atoms: Sequence[Atom]) -> list[tuple[tuple[Atom, ...], _Alt]]:
    """The conjunctions of a grounded plan ('any' split), each in a canonical order, with its alternative."""
    out: list[tuple[tuple[Atom, ...], _Alt]] = []
    for conjunction in _dnf(atoms):
        key = tuple(sorted(set(conjunction), key=_atom_repr))
        out.append((key, _Alt(key, frozenset(s for a in key for s in _slots_of(a)))))
    return out


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


def _some_alternative_holds(
    indexed: tuple[tuple[int, ...], ...],
    tests: Sequence[Predicate],
    memo: list[bool | None],
    values: Mapping[Slot, Any],
) -> bool:
    """Whether every atom of some alternative holds on ``values``.

    Each atom's truth is read from ``memo`` or computed once and kept there.
    """
    for alt in indexed:
        for index in alt:
            truth = memo[index]
            if truth is None:
                truth = memo[index] = tests[index](values)
            if not truth:
                break
        else:
            return True
    return False
