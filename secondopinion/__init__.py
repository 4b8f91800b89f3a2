"""secondopinion: explainable guidance on whether, when and how to get a medical second opinion.

Facts about a case run through a forward-chaining rule base on durable-rules;
the result is typed recommendations, each with its reasons and sources.
This is guidance about second opinions, not medical advice.

    >>> import secondopinion
    >>> advice = secondopinion.advise({"diagnosis": {"seriousness": "serious"}})
    >>> "seek_second_opinion" in advice.kinds
    True
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .advisor import Advisor, Trace, advise, default_advisor
    from .case import Case, CaseError, case_facts, dump_case, load_case
    from .engine import ActionError, EngineBudgetError, EngineError
    from .explain import Explanation, WhyNot, why_not
    from .interview import Interview
    from .plan import Plan, build_plan
    from .questions import NextQuestion, next_questions
    from .recommendations import DISCLAIMER, KINDS, Advice, Priority, Recommendation
    from .rulebook import Rule, Rulebook, RuleFileError

# The public names, and the module each comes from. They are imported on first use
# (PEP 562), so ``import secondopinion`` stays fast and loads neither durable-rules nor
# YAML until something needs them.
_LAZY = {
    "Advisor": "advisor",
    "Trace": "advisor",
    "advise": "advisor",
    "default_advisor": "advisor",
    "Case": "case",
    "CaseError": "case",
    "case_facts": "case",
    "dump_case": "case",
    "load_case": "case",
    "ActionError": "engine",
    "EngineError": "engine",
    "EngineBudgetError": "engine",
    "Interview": "interview",
    "Plan": "plan",
    "build_plan": "plan",
    "Explanation": "explain",
    "WhyNot": "explain",
    "why_not": "explain",
    "NextQuestion": "questions",
    "next_questions": "questions",
    "DISCLAIMER": "recommendations",
    "KINDS": "recommendations",
    "Advice": "recommendations",
    "Priority": "recommendations",
    "Recommendation": "recommendations",
    "Rule": "rulebook",
    "Rulebook": "rulebook",
    "RuleFileError": "rulebook",
}

_SUBMODULES = frozenset(
    {
        "advice_schema",
        "advisor",
        "batch",
        "case",
        "cds_hooks",
        "cli",
        "compiler",
        "dask",
        "docsgen",
        "engine",
        "explain",
        "fhir",
        "interview",
        "limits",
        "plan",
        "questions",
        "recommendations",
        "render",
        "rulebook",
        "rulecache",
        "schema",
        "service",
        "testing",
        "traceability",
        "verify",
    }
)


def __getattr__(name: str) -> Any:
    """Import a public name (or a submodule) on first use."""
    module = _LAZY.get(name)
    if module is not None:
        value = getattr(importlib.import_module(f".{module}", __name__), name)
        globals()[name] = value
        return value
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


__version__ = "0.1.0"

__all__ = [
    "DISCLAIMER",
    "KINDS",
    "ActionError",
    "Advice",
    "Advisor",
    "Case",
    "CaseError",
    "EngineBudgetError",
    "EngineError",
    "Explanation",
    "Interview",
    "NextQuestion",
    "Plan",
    "Priority",
    "Recommendation",
    "Rule",
    "RuleFileError",
    "Rulebook",
    "Trace",
    "WhyNot",
    "__version__",
    "advise",
    "build_plan",
    "case_facts",
    "default_advisor",
    "dump_case",
    "load_case",
    "next_questions",
    "why_not",
]
