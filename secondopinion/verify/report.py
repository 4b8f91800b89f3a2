"""The verification report: findings, their kinds and severities, and their text and JSON forms."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any, Literal

import attrs

from .atoms import ABSENT

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
