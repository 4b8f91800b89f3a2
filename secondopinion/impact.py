"""Change impact: how a change to the rules changes the advice on a population of cases.

:func:`impact` advises every case with the rules before and after a change
and reports how many cases change advice, which recommendation kinds appear
or vanish (and on how many cases), with example cases for each. The
population is a JSON Lines file of cases, or, without one, cases generated
from both rule bases by :class:`~secondopinion.verify.CaseSampler` (seeded, so
the same rules always give the same population). ``secondopinion diff`` is
the command line for it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import attrs

from .advisor import Advisor
from .case import CaseError, load_case
from .rulebook import Rulebook

__all__ = ["CaseChange", "Impact", "PopulationError", "generated_population", "impact", "read_population"]


class PopulationError(ValueError):
    """A population file holds lines that are not valid cases; ``problems`` names each by line (never its values)."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__(f"{len(problems)} bad line(s) in the cases file:\n  " + "\n  ".join(problems[:20]))


@attrs.frozen
class CaseChange:
    """One case whose advice changed: where it is in the population, and the kinds that came and went."""

    where: int
    case: Mapping[str, Any]
    appeared: tuple[str, ...]
    vanished: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready form."""
        return {
            "where": self.where,
            "case": dict(self.case),
            "appeared": list(self.appeared),
            "vanished": list(self.vanished),
        }


@attrs.frozen
class Impact:
    """The effect of a rule change on a population (see :func:`impact`).

    ``appeared`` and ``vanished`` count, for each kind, the cases that gain
    or lose it; ``examples`` holds up to a few changed cases per ``+kind``
    (appears) and ``-kind`` (vanishes). ``where`` is the line number in a
    cases file, or the position in a generated population.
    """

    population: str
    cases: int
    changed: int
    appeared: Mapping[str, int]
    vanished: Mapping[str, int]
    examples: Mapping[str, tuple[CaseChange, ...]]

    @property
    def unchanged(self) -> int:
        """The cases whose advice kept the same kinds."""
        return self.cases - self.changed

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready form."""
        return {
            "population": self.population,
            "cases": self.cases,
            "changed": self.changed,
            "appeared": dict(self.appeared),
            "vanished": dict(self.vanished),
            "examples": {k: [c.to_dict() for c in v] for k, v in self.examples.items()},
        }

    def to_json(self, *, indent: int | None = 2) -> str:
        """This report as JSON text."""
        return json.dumps(self.to_dict(), indent=indent, ensure_ascii=False)

    def _rows(self) -> Iterator[tuple[str, str, int]]:
        for kind, count in self.appeared.items():
            yield "+", kind, count
        for kind, count in self.vanished.items():
            yield "-", kind, count

    def to_text(self) -> str:
        """Plain text: the summary, then each kind that appears or vanishes with its example cases."""
        lines = [
            f"{self.changed} of {self.cases} cases change advice ({self.population})",
        ]
        for sign, kind, count in self._rows():
            verb = "appears" if sign == "+" else "vanishes"
            lines.append(f"  {sign} {kind} {verb} in {count} case(s)")
            for change in self.examples.get(f"{sign}{kind}", ()):
                lines.append(f"      case {change.where}: {json.dumps(change.case, sort_keys=True)}")
        if not self.changed:
            lines.append("  no case changes advice")
        return "\n".join(lines) + "\n"

    def to_markdown(self) -> str:
        """Markdown for a pull request: a summary line, a table of kinds, example cases in a details block."""
        lines = [
            "### Change impact",
            "",
            f"**{self.changed} of {self.cases}** cases change advice ({self.population}).",
            "",
        ]
        if not self.changed:
            return "\n".join([*lines, "No case changes advice.", ""])
        lines += ["| change | kind | cases |", "|---|---|---:|"]
        for sign, kind, count in self._rows():
            lines.append(f"| {'appears' if sign == '+' else 'vanishes'} | `{kind}` | {count} |")
        lines += ["", "<details><summary>Example cases</summary>", ""]
        for sign, kind, _ in self._rows():
            lines.append(f"**`{kind}` {'appears' if sign == '+' else 'vanishes'}**")
            lines.append("")
            for change in self.examples.get(f"{sign}{kind}", ()):
                lines.append(f"- case {change.where}: `{json.dumps(change.case, sort_keys=True)}`")
            lines.append("")
        lines += ["</details>", ""]
        return "\n".join(lines)


def read_population(path: Path) -> list[tuple[int, dict[str, Any]]]:
    """The cases of a JSON Lines file with their line numbers (blank lines skipped).

    Raises :class:`PopulationError` naming every bad line (by number and
    field path, never by value).
    """
    out: list[tuple[int, dict[str, Any]]] = []
    problems: list[str] = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                data = json.loads(line)
            except json.JSONDecodeError as exc:
                problems.append(f"line {number}: not JSON ({exc.msg})")
                continue
            try:
                load_case(data)
            except CaseError as exc:
                problems.append(f"line {number}: " + "; ".join(exc.problems))
                continue
            out.append((number, data))
    if problems:
        raise PopulationError(problems)
    return out


def generated_population(
    before: Rulebook, after: Rulebook, *, size: int = 400, seed: int = 2026
) -> list[tuple[int, dict[str, Any]]]:
    """A seeded population aimed by both rule bases: half from each (see :class:`~secondopinion.verify.CaseSampler`)."""
    from .verify import CaseSampler

    first = CaseSampler(before).population(size - size // 2, seed=seed)
    second = CaseSampler(after).population(size // 2, seed=seed + 1)
    return list(enumerate([*first, *second], start=1))


def impact(
    before: Advisor,
    after: Advisor,
    cases: Iterable[tuple[int, Mapping[str, Any]]],
    *,
    population: str = "",
    examples: int = 3,
) -> Impact:
    """Advise every case with both advisors and count the changes in recommendation kinds."""
    total = changed = 0
    appeared: dict[str, int] = {}
    vanished: dict[str, int] = {}
    shown: dict[str, list[CaseChange]] = {}
    for where, data in cases:
        total += 1
        case = load_case(dict(data))
        old, new = set(before.advise(case).kinds), set(after.advise(case).kinds)
        if old == new:
            continue
        changed += 1
        change = CaseChange(where, data, tuple(sorted(new - old)), tuple(sorted(old - new)))
        for kind in change.appeared:
            appeared[kind] = appeared.get(kind, 0) + 1
            shown.setdefault(f"+{kind}", []).append(change)
        for kind in change.vanished:
            vanished[kind] = vanished.get(kind, 0) + 1
            shown.setdefault(f"-{kind}", []).append(change)

    def order(counts: dict[str, int]) -> dict[str, int]:
        return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))

    picked = {key: tuple(sorted(found, key=_size)[:examples]) for key, found in sorted(shown.items())}
    return Impact(population, total, changed, order(appeared), order(vanished), picked)


def _size(change: CaseChange) -> tuple[int, int]:
    """Smaller cases make better examples; ties keep population order."""
    return (len(json.dumps(change.case)), change.where)
