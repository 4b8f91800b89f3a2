"""One case run through the engine, with what the analysis says about it."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import attrs

from ..advisor import Trace
from .atoms import Slot
from .report import _plain


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
    memo: list[bool | None] = attrs.field(factory=list, eq=False)  # atoms' truths on this case (see _Model.holds)

    @property
    def kinds(self) -> frozenset[str]:
        """The kinds the engine recommended (suppressed ones excluded)."""
        return frozenset(r.kind for r in self.trace.recommendations) if self.trace else frozenset()


def _case_key(case: Mapping[str, Any]) -> str:
    return json.dumps(_plain(case), sort_keys=True)
