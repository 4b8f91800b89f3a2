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

The package follows the analysis: :mod:`.model` (the rule base as plans over
finite domains), :mod:`.atoms` (what a test means on a case), :mod:`.search`
(the solver), one module per family of checks (:mod:`.structure`,
:mod:`.rules`, :mod:`.pairs`, :mod:`.promises`, :mod:`.gaps`,
:mod:`.corpus`), :mod:`.verifier` (which runs them) and :mod:`.report`.
:mod:`.sampler` builds cases from the same model.
"""

from __future__ import annotations

from .atoms import ABSENT
from .model import _Model  # noqa: F401 - the project's own property tests use it
from .report import KIND_DESCRIPTIONS, Finding, Report, Severity
from .sampler import CaseSampler
from .verifier import verify

__all__ = ["ABSENT", "KIND_DESCRIPTIONS", "CaseSampler", "Finding", "Report", "Severity", "verify"]
