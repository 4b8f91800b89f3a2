"""Cases aimed by a rule base's own conditions.

For property tests (:mod:`secondopinion.testing`) and generated populations (``secondopinion diff``).
"""

from __future__ import annotations

import random
from typing import Any

from ..rulebook import (
    Rule,
    Rulebook,
)
from .atoms import (
    ABSENT,
    Slot,
    _Alt,
    _TooBig,
)
from .model import _Model


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
                self.targets.append((f"unless {rule.id}", lambda n, g=goal, p=plans: self.model.alts(g, p, n)))
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
