"""secondopinion: explainable guidance on whether, when and how to get a medical second opinion.

Facts about a case run through a forward-chaining rule base on durable-rules;
the result is typed recommendations, each with its reasons and sources.
This is guidance about second opinions, not medical advice.

    >>> import secondopinion
    >>> advice = secondopinion.advise({"diagnosis": {"seriousness": "serious"}})
    >>> "seek_second_opinion" in advice.kinds
    True
"""

from .advisor import Advisor, Trace, advise, default_advisor
from .case import Case, CaseError, case_facts, dump_case, load_case
from .engine import ActionError, EngineBudgetError, EngineError
from .explain import Explanation, WhyNot, why_not
from .interview import Interview
from .plan import Plan, build_plan
from .questions import NextQuestion, next_questions
from .recommendations import DISCLAIMER, KINDS, Advice, Priority, Recommendation
from .rulebook import Rule, Rulebook, RuleFileError

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
