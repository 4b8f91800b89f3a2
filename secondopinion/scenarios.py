"""Clinical scenarios: realistic cases with the advice they must and must not get.

A scenario file (YAML, one per area of the guidance, in ``tests/scenarios/``)
holds an ``area`` and a list of ``scenarios``. Each scenario has:

``id``
    unique across all files (lower case, digits and hyphens).
``area``
    optional; defaults to the file's ``area``.
``reason``
    one line: the clinical reason the expectation is right.
``case``
    the case, as in ``examples/cases/*.json`` (checked like any case).
``must`` / ``must_not``
    recommendation kinds that must appear / must not appear.
``max_recommendations``
    the most recommendations the case may get.
``first``
    optional: the kind that must come first.
``fields``
    optional checks on one kind's fields, ``{kind: {field: check}}``, where a
    check is ``{contains: TEXT}`` or ``{not_contains: TEXT}`` (for a list
    field: whether any item holds the text; case is ignored; a list of texts
    checks each) or
    ``{lt_field: OTHER}`` (a number less than another field's number; passes
    when either is not set, so a deadline without an opinion date passes).
    A check applies only when the kind is given.
``no_evidence``
    optional: evidence ids (E1 to E4) no recommendation may show.
``no_text``
    optional: words or phrases no title, detail or list item may hold
    (whole words, case ignored).

:func:`load_scenarios` reads files and raises :class:`ScenarioError` naming
the file, the line and the scenario id of every problem (never a case value).
:func:`run_scenarios` advises on each case (:func:`secondopinion.advise`, or a
given advisor) and returns an :class:`Outcome` per scenario;
:func:`render_report` prints them as a table. From the command line::

    python -m secondopinion.scenarios --report [--format text|markdown] [--write FILE] [PATH...]

PATH is a scenario file or folder (default ``tests/scenarios``). The exit code
is 0 when every scenario holds, 1 when one deviates or a file is bad, 2 for a
usage error (such as a missing path).
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import attrs
import yaml

from .advisor import Advisor, advise
from .case import Case, CaseError, load_case
from .recommendations import KINDS, Advice, Recommendation
from .rulebook import RuleFileError

__all__ = [
    "DEFAULT_PATH",
    "FieldCheck",
    "Outcome",
    "Scenario",
    "ScenarioError",
    "load_scenarios",
    "main",
    "recommendation_texts",
    "render_report",
    "run_scenario",
    "run_scenarios",
    "scenario_files",
]

DEFAULT_PATH = Path("tests") / "scenarios"
"""Where the scenario files live, relative to the repository root."""

_ID = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")
_KIND = re.compile(r"[a-z][a-z0-9_]*")
_EVIDENCE = re.compile(r"E[0-9]+")
_KEYS = {
    "id",
    "area",
    "reason",
    "case",
    "must",
    "must_not",
    "max_recommendations",
    "first",
    "fields",
    "no_evidence",
    "no_text",
}
_REQUIRED = ("id", "reason", "case", "must", "must_not", "max_recommendations")
_CHECKS = ("contains", "not_contains", "lt_field")


class ScenarioError(ValueError):
    """Scenario files that could not be read. ``problems`` lists each as ``file:line: message``.

    Messages name files, lines, scenario ids and field paths, never case values.
    """

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = tuple(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"invalid scenarios ({len(self.problems)} problem(s)):\n{lines}")


@attrs.frozen
class FieldCheck:
    """One check on a field of one recommendation kind."""

    kind: str
    field: str
    check: str
    value: str

    def describe(self) -> str:
        """The check in words, for a report."""
        return f"{self.kind}.{self.field} {self.check} {self.value}"


@attrs.frozen(kw_only=True)
class Scenario:
    """A case with the advice it must and must not get, and why."""

    id: str
    area: str
    reason: str
    case: Case
    must: tuple[str, ...] = ()
    must_not: tuple[str, ...] = ()
    max_recommendations: int
    first: str | None = None
    fields: tuple[FieldCheck, ...] = ()
    no_evidence: tuple[str, ...] = ()
    no_text: tuple[str, ...] = ()
    source: str = ""
    """Where the scenario is written, ``file:line``."""

    def kinds_named(self) -> tuple[str, ...]:
        """Every kind the scenario names, each once."""
        named = [*self.must, *self.must_not, *([self.first] if self.first else []), *(f.kind for f in self.fields)]
        return tuple(dict.fromkeys(named))


@attrs.frozen(kw_only=True)
class Outcome:
    """What the advice on one scenario's case was, and how it deviates."""

    scenario: Scenario
    kinds: tuple[str, ...]
    missing: tuple[str, ...] = ()
    unexpected: tuple[str, ...] = ()
    problems: tuple[str, ...] = ()
    """Every other deviation: over the cap, the wrong first kind, a failed field, evidence or text check."""

    @property
    def count(self) -> int:
        """How many recommendations the case got."""
        return len(self.kinds)

    @property
    def deviates(self) -> bool:
        """Whether the advice breaks any expectation of the scenario."""
        return bool(self.missing or self.unexpected or self.problems)

    @property
    def status(self) -> str:
        """``ok``, or the deviations other than missing and unexpected kinds (``deviates`` when there are none)."""
        if not self.deviates:
            return "ok"
        return "; ".join(self.problems) if self.problems else "deviates"


# --------------------------------------------------------------------------- loading


def scenario_files(paths: Iterable[str | Path]) -> list[Path]:
    """The scenario files among ``paths``: files as given, folders by their ``*.yaml`` files, sorted."""
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found.extend(sorted(p for p in path.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file()))
        elif path.is_file():
            found.append(path)
        else:
            raise FileNotFoundError(f"no such scenario file or folder: {path}")
    return found


def _lines(text: str) -> dict[int, int]:
    """The 1-based line of each item of the file's ``scenarios`` list, by position."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return {}
    if not isinstance(root, yaml.MappingNode):
        return {}
    for key, value in root.value:
        if isinstance(key, yaml.ScalarNode) and key.value == "scenarios" and isinstance(value, yaml.SequenceNode):
            return {index: item.start_mark.line + 1 for index, item in enumerate(value.value)}
    return {}


def _kind_list(raw: Any, where: str, name: str, problems: list[str]) -> tuple[str, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list) or not all(isinstance(k, str) and _KIND.fullmatch(k) for k in raw):
        problems.append(f"{where}: {name} must be a list of kind names (such as seek_second_opinion)")
        return ()
    return tuple(raw)


def _field_names(cls: type[Recommendation]) -> set[str]:
    """The fields of a kind a check may read: its attributes and its computed properties."""
    properties = {name for name in dir(cls) if isinstance(getattr(cls, name, None), property)}
    return {f.name for f in attrs.fields(cls)} | properties


def _field_checks(raw: Any, where: str, problems: list[str]) -> tuple[FieldCheck, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, dict):
        problems.append(f"{where}: fields must map kinds to {{field: check}}")
        return ()
    checks: list[FieldCheck] = []
    for kind, per_field in raw.items():
        if not isinstance(kind, str) or not _KIND.fullmatch(kind) or not isinstance(per_field, dict):
            problems.append(f"{where}: fields must map kinds to {{field: check}}")
            continue
        cls = KINDS.get(kind)
        names = _field_names(cls) if cls is not None else None
        for field, check in per_field.items():
            path = f"fields.{kind}.{field}"
            if not isinstance(field, str):
                problems.append(f"{where}: a field name must be text @ fields.{kind}")
                continue
            if names is not None and field not in names:
                problems.append(f"{where}: {kind} has no field {field} @ {path}")
                continue
            ((op, value),) = check.items() if isinstance(check, dict) and len(check) == 1 else ((None, None),)
            values = value if isinstance(value, list) and op != "lt_field" else [value]
            if op not in _CHECKS or not values or not all(isinstance(v, str | int) for v in values):
                problems.append(
                    f"{where}: a check must be one of {{contains|not_contains: TEXT or [TEXT...]}} "
                    f"or {{lt_field: FIELD}} @ {path}"
                )
                continue
            if op == "lt_field" and names is not None and value not in names:
                problems.append(f"{where}: {kind} has no field {value} @ {path}.lt_field")
                continue
            checks.extend(FieldCheck(kind, field, str(op), str(v)) for v in values)
    return tuple(checks)


def _scenario(raw: Any, file_area: str | None, where: str, problems: list[str]) -> Scenario | None:
    if not isinstance(raw, dict):
        problems.append(f"{where}: a scenario must be a mapping")
        return None
    sid = raw.get("id")
    if not isinstance(sid, str) or not _ID.fullmatch(sid):
        problems.append(f"{where}: id must be lower-case words joined by hyphens")
        return None
    where = f"{where}: scenario {sid}"
    before = len(problems)
    for key in sorted(set(map(str, raw)) - _KEYS):
        problems.append(f"{where}: unknown key {key}")
    for key in _REQUIRED:
        if key not in raw:
            problems.append(f"{where}: {key} is required")
    area = raw.get("area", file_area)
    if not isinstance(area, str) or not area.strip():
        problems.append(f"{where}: area is required (on the scenario or the file)")
    reason = raw.get("reason")
    if "reason" in raw and (not isinstance(reason, str) or not reason.strip() or "\n" in reason.strip()):
        problems.append(f"{where}: reason must be one line of text")
    cap = raw.get("max_recommendations")
    if "max_recommendations" in raw and (isinstance(cap, bool) or not isinstance(cap, int) or cap < 0):
        problems.append(f"{where}: max_recommendations must be a whole number, 0 or more")
    must = _kind_list(raw.get("must"), where, "must", problems)
    must_not = _kind_list(raw.get("must_not"), where, "must_not", problems)
    for kind in sorted(set(must) & set(must_not)):
        problems.append(f"{where}: {kind} is in both must and must_not")
    first = raw.get("first")
    if first is not None and (not isinstance(first, str) or not _KIND.fullmatch(first)):
        problems.append(f"{where}: first must be a kind name")
    elif first is not None and first in must_not:
        problems.append(f"{where}: first kind {first} is in must_not")
    fields = _field_checks(raw.get("fields"), where, problems)
    no_evidence = raw.get("no_evidence") or []
    if not isinstance(no_evidence, list) or not all(isinstance(e, str) and _EVIDENCE.fullmatch(e) for e in no_evidence):
        problems.append(f"{where}: no_evidence must be a list of evidence ids (E1 to E4)")
        no_evidence = []
    no_text = raw.get("no_text") or []
    if not isinstance(no_text, list) or not all(isinstance(t, str) and t.strip() for t in no_text):
        problems.append(f"{where}: no_text must be a list of words or phrases")
        no_text = []
    case: Case | None = None
    if "case" in raw:
        if not isinstance(raw["case"], dict):
            problems.append(f"{where}: case must be a mapping @ case")
        else:
            try:
                case = load_case(raw["case"])
            except CaseError as exc:
                problems.extend(f"{where}: {p.replace('@ $', '@ case', 1)}" for p in exc.problems)
    if len(problems) > before or case is None:
        return None
    assert isinstance(area, str) and isinstance(reason, str) and isinstance(cap, int)
    return Scenario(
        id=sid,
        area=area.strip(),
        reason=" ".join(reason.split()),
        case=case,
        must=must,
        must_not=must_not,
        max_recommendations=cap,
        first=first,
        fields=fields,
        no_evidence=tuple(no_evidence),
        no_text=tuple(" ".join(t.split()) for t in no_text),
        source=where.split(": scenario", 1)[0],
    )


def _load_file(path: Path, problems: list[str]) -> list[Scenario]:
    try:
        text = path.read_text("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        problems.append(f"{path}: cannot be read ({type(exc).__name__})")
        return []
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        problems.append(f"{path}{line}: not valid YAML ({getattr(exc, 'problem', None) or 'syntax error'})")
        return []
    if not isinstance(data, dict) or not isinstance(data.get("scenarios"), list):
        problems.append(f"{path}:1: a scenario file must be a mapping with a list of scenarios")
        return []
    for key in sorted(set(map(str, data)) - {"area", "description", "scenarios"}):
        problems.append(f"{path}:1: unknown top-level key {key}")
    file_area = data.get("area")
    if file_area is not None and not isinstance(file_area, str):
        problems.append(f"{path}:1: area must be text")
        file_area = None
    lines = _lines(text)
    loaded = []
    for index, raw in enumerate(data["scenarios"]):
        where = f"{path}:{lines.get(index, 1)}"
        scenario = _scenario(raw, file_area, where, problems)
        if scenario is not None:
            loaded.append(scenario)
    return loaded


def load_scenarios(paths: Iterable[str | Path] = (DEFAULT_PATH,)) -> list[Scenario]:
    """Read and check every scenario in ``paths`` (files or folders); raise :class:`ScenarioError`.

    Ids must be unique across all files. A missing path raises ``FileNotFoundError``.
    """
    problems: list[str] = []
    loaded: list[Scenario] = []
    for path in scenario_files(paths):
        loaded.extend(_load_file(path, problems))
    seen: dict[str, str] = {}
    for scenario in loaded:
        if scenario.id in seen:
            problems.append(f"{scenario.source}: scenario {scenario.id}: id also used at {seen[scenario.id]}")
        seen.setdefault(scenario.id, scenario.source)
    if problems:
        raise ScenarioError(problems)
    return loaded


# --------------------------------------------------------------------------- running


def recommendation_texts(rec: Recommendation) -> list[str]:
    """Every text the patient reads in one recommendation: title, detail and list items."""
    out = [rec.title, rec.detail]
    for field in rec.specific_fields():
        value = getattr(rec, field.name)
        if isinstance(value, str):
            out.append(value)
        elif isinstance(value, tuple):
            out.extend(item for item in value if isinstance(item, str))
    return out


def _holds(value: Any, text: str) -> bool:
    needle = text.casefold()
    if isinstance(value, tuple):
        return any(needle in str(item).casefold() for item in value)
    return value is not None and needle in str(value).casefold()


def _field_problem(rec: Recommendation, check: FieldCheck) -> str | None:
    value = getattr(rec, check.field, None)
    if check.check == "contains" and not _holds(value, check.value):
        return f"{check.kind}.{check.field} lacks {check.value!r}"
    if check.check == "not_contains" and _holds(value, check.value):
        return f"{check.kind}.{check.field} holds {check.value!r}"
    if check.check == "lt_field":
        other = getattr(rec, check.value, None)
        if isinstance(value, int) and isinstance(other, int) and not value < other:
            return f"{check.kind}.{check.field} ({value}) not below {check.value} ({other})"
    return None


def _problems(scenario: Scenario, advice: Advice) -> list[str]:
    problems = [f"unknown kind {kind}" for kind in scenario.kinds_named() if kind not in KINDS]
    count = len(advice.recommendations)
    if count > scenario.max_recommendations:
        problems.append(f"{count} > cap {scenario.max_recommendations}")
    if scenario.first is not None:
        actual = advice.kinds[0] if advice.kinds else "nothing"
        if actual != scenario.first:
            problems.append(f"first is {actual}, not {scenario.first}")
    for check in scenario.fields:
        rec = advice.by_kind(check.kind)
        found = _field_problem(rec, check) if rec is not None else None
        if found is not None:
            problems.append(found)
    for evidence_id in scenario.no_evidence:
        shown = [r.kind for r in advice.recommendations if any(e.id == evidence_id for e in r.evidence)]
        if shown:
            problems.append(f"{evidence_id} shown on {', '.join(shown)}")
    for phrase in scenario.no_text:
        pattern = re.compile(r"(?<!\w)" + re.escape(phrase) + r"(?!\w)", re.IGNORECASE)
        said = [r.kind for r in advice.recommendations if any(pattern.search(t) for t in recommendation_texts(r))]
        if said:
            problems.append(f"{phrase!r} in {', '.join(dict.fromkeys(said))}")
    return problems


def run_scenario(scenario: Scenario, advisor: Advisor | None = None) -> Outcome:
    """Advise on one scenario's case and compare the advice with its expectations."""
    advice = advisor.advise(scenario.case) if advisor is not None else advise(scenario.case)
    kinds = advice.kinds
    return Outcome(
        scenario=scenario,
        kinds=kinds,
        missing=tuple(k for k in scenario.must if k not in kinds),
        unexpected=tuple(k for k in scenario.must_not if k in kinds),
        problems=tuple(_problems(scenario, advice)),
    )


def run_scenarios(scenarios: Iterable[Scenario], advisor: Advisor | None = None) -> list[Outcome]:
    """Run every scenario (see :func:`run_scenario`), in order."""
    return [run_scenario(s, advisor) for s in scenarios]


# --------------------------------------------------------------------------- reporting


def summary(outcomes: Sequence[Outcome]) -> str:
    """One line: how many scenarios, how many deviate, the median number of recommendations."""
    median = statistics.median(o.count for o in outcomes) if outcomes else 0
    shown = f"{median:g}" if isinstance(median, float) else str(median)
    deviating = sum(o.deviates for o in outcomes)
    return f"{len(outcomes)} scenarios, {deviating} deviating, median {shown} recommendations"


_HEADER = ("id", "area", "count", "cap", "missing", "unexpected", "status")


def _row(outcome: Outcome) -> tuple[str, ...]:
    return (
        outcome.scenario.id,
        outcome.scenario.area,
        str(outcome.count),
        str(outcome.scenario.max_recommendations),
        ", ".join(outcome.missing) or "-",
        ", ".join(outcome.unexpected) or "-",
        outcome.status,
    )


def _text_table(outcomes: Sequence[Outcome]) -> str:
    rows = [_HEADER, *(_row(o) for o in outcomes)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(_HEADER) - 1)]
    lines = []
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        lines.append("  ".join([*cells, row[-1]]).rstrip())
    return "\n".join(lines)


def _md(cell: str) -> str:
    return cell.replace("|", "\\|")


_INTRO = """\
# Clinical scenarios

<!-- Generated by `python -m secondopinion.scenarios --report --format markdown --write docs/scenarios.md`;
do not edit by hand. tests/test_scenarios.py checks that this page is current. -->

Realistic cases, each with the advice it must and must not get, a cap on how
many recommendations it may get, and a one-line clinical reason. They live in
`tests/scenarios/*.yaml` (one file per area of the guidance), run in the test
suite (`tests/test_scenarios.py`, one test per scenario), and show a rule
author the effect of a change on all of them at once:

```bash
python -m secondopinion.scenarios --report              # a table; exit 1 if any scenario deviates
python -m secondopinion.scenarios --report tests/scenarios/10-emergencies.yaml
```

## Adding a scenario

Add an entry to the file of its area (or a new file with `area:` and
`scenarios:`). Write the expectation a careful patient advocate would defend,
not the output of today's rules:

```yaml
  - id: gallbladder-surgery-minor          # unique, lower case and hyphens
    reason: Low-risk keyhole surgery for a minor problem; another opinion is a choice, not a need.
    case:                                  # as in examples/cases/*.json
      diagnosis: {seriousness: minor, certainty: confirmed}
      treatment: {kind: surgery, risk: low, invasiveness: low}
    must: [second_opinion_optional]
    must_not: [seek_second_opinion]
    max_recommendations: 5
    first: second_opinion_optional         # optional
    fields:                                # optional: {kind: {field: {contains|not_contains|lt_field: X}}}
      set_deadline: {get_opinion_within_days: {lt_field: decide_within_days}}
    no_evidence: [E3]                      # optional: figures that must not be shown
    no_text: [before your treatment starts]   # optional: words no text may hold
```

Then run the report, and regenerate this page with the command at its top.
In the table, *missing* lists required kinds that were not given,
*unexpected* lists forbidden kinds that were, and *status* names every other
deviation (over the cap, the wrong first kind, a field, figure or wording check).
"""


def _markdown(outcomes: Sequence[Outcome]) -> str:
    lines = [_INTRO, "## Results", "", summary(outcomes) + ".", ""]
    lines.append("| " + " | ".join(_HEADER) + " |")
    lines.append("|" + "---|" * len(_HEADER))
    for outcome in outcomes:
        lines.append("| " + " | ".join(_md(c) for c in _row(outcome)) + " |")
    lines.extend(["", "## Clinical reasons", ""])
    by_area: dict[str, list[Outcome]] = {}
    for outcome in outcomes:
        by_area.setdefault(outcome.scenario.area, []).append(outcome)
    for area, group in by_area.items():
        lines.extend([f"### {area}", ""])
        for outcome in group:
            lines.append(f"- `{outcome.scenario.id}`: {_md(outcome.scenario.reason)}")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def render_report(outcomes: Sequence[Outcome], fmt: str = "text") -> str:
    """The report as ``text`` (a table and a summary line) or ``markdown`` (the docs/scenarios.md page)."""
    if fmt == "markdown":
        return _markdown(outcomes)
    if fmt != "text":
        raise ValueError(f"unknown report format: {fmt}")
    return _text_table(outcomes) + "\n\n" + summary(outcomes) + "\n"


# --------------------------------------------------------------------------- command line


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m secondopinion.scenarios",
        description="Run the clinical scenarios and report how the advice compares with each one's expectations.",
    )
    parser.add_argument("paths", nargs="*", metavar="PATH", help="scenario file or folder (default tests/scenarios)")
    parser.add_argument("--report", action="store_true", help="print the table of scenarios (the default output)")
    parser.add_argument("--format", choices=("text", "markdown"), default="text", help="report format")
    parser.add_argument("--write", metavar="FILE", help="write the report to FILE instead of printing it")
    parser.add_argument(
        "--rules", metavar="PATH", action="append", help="extra rule file or folder beside the shipped rules"
    )
    return parser


def main(argv: Sequence[str] | None = None, *, out: Callable[[str], object] | None = None) -> int:
    """Run the command line; return the exit code (0 all hold, 1 deviations or bad files, 2 usage)."""
    echo = out if out is not None else sys.stdout.write
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        scenarios = load_scenarios(args.paths or [DEFAULT_PATH])
    except FileNotFoundError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2
    except ScenarioError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 1
    advisor = None
    if args.rules:
        missing = [p for p in args.rules if not Path(p).exists()]
        if missing:
            sys.stderr.write(f"error: no such rule file or folder: {missing[0]}\n")
            return 2
        try:
            advisor = Advisor.with_packs(*args.rules)
        except RuleFileError as exc:
            sys.stderr.write(f"error: {exc}\n")
            return 1
    outcomes = run_scenarios(scenarios, advisor)
    report = render_report(outcomes, args.format)
    if args.write:
        Path(args.write).write_text(report, "utf-8")
        echo(summary(outcomes) + "\n")
    else:
        echo(report)
    return 1 if any(o.deviates for o in outcomes) else 0


if __name__ == "__main__":  # pragma: no cover - the command line
    sys.exit(main())
