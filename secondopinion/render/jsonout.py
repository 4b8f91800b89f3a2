"""JSON: the same data the Python API returns, for programs."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from ..explain import Explanation, WhyNot
from ..plan import Plan
from ..questions import NextQuestion
from ..recommendations import Advice

__all__ = ["dumps", "explanation_json", "questions_json", "render_json", "why_not_json"]


def dumps(data: Any) -> str:
    """JSON text, indented, ending with a newline."""
    return json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n"


def render_json(
    advice: Advice, *, questions: Sequence[NextQuestion] | None = None, plan: Plan | None = None
) -> str:
    """Advice as JSON (see :meth:`Advice.to_json`); with ``plan``, also the ``plan`` (see
    :meth:`Plan.to_dict`); with ``questions``, also a ``next_questions`` list.

    The extra keys do not stop :meth:`Advice.from_json` from reading the text back.
    """
    if questions is None and plan is None:
        return advice.to_json() + "\n"
    data = advice.to_dict()
    if plan is not None:
        data["plan"] = plan.to_dict()
    if questions is not None:
        data["next_questions"] = [q.to_dict() for q in questions]
    return dumps(data)


def explanation_json(explanation: Explanation) -> str:
    """A derivation tree as JSON (see :meth:`Explanation.to_dict`)."""
    return dumps(explanation.to_dict())


def why_not_json(why: WhyNot) -> str:
    """A why-not answer as JSON."""
    return dumps(why.to_dict())


def questions_json(questions: Sequence[NextQuestion]) -> str:
    """Next questions as a JSON list."""
    return dumps([q.to_dict() for q in questions])
