"""The ``secondopinion`` command line (Typer).

Exit codes: 0 success; 1 findings or advice errors (an invalid case, a bad
rule file, failing rule examples); 2 usage errors (unknown option, missing
file). Mistakes print one clear message on stderr, never a traceback, and
never a value from the case.
"""

from __future__ import annotations

import contextlib
import json
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from . import __version__
from .advisor import Advisor
from .case import CaseError, load_case
from .render import render
from .rulebook import Rule, Rulebook, RuleFileError
from .schema import schema_for

app = typer.Typer(
    name="secondopinion",
    help="Guidance on whether, when and how to get a medical second opinion. Guidance, not medical advice.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # Plain help and error text: it reads the same in a terminal, a pipe and a log, and square
    # brackets in help text (such as "[default: ...]") are printed instead of taken as markup.
    rich_markup_mode=None,
)


class AdviceFormat(str, Enum):
    """Output formats of ``advise``."""

    text = "text"
    markdown = "markdown"
    json = "json"
    cds_hooks = "cds-hooks"


class ListFormat(str, Enum):
    """Output formats of listings."""

    text = "text"
    json = "json"


class SchemaName(str, Enum):
    """The schemas ``schema`` can print."""

    case = "case"
    advice = "advice"
    rules = "rules"


RulesOption = Annotated[
    list[Path] | None,
    typer.Option(
        "--rules", metavar="PATH", help="Extra rule file or folder to load beside the shipped rules (repeatable)."
    ),
]


def fail(message: str, code: int = 1) -> NoReturn:
    """Print a message on stderr and exit with ``code``."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def read_input(path: Path) -> str:
    """The text of a file, or of standard input for ``-``; exit 2 when it cannot be read."""
    if str(path) == "-":
        return sys.stdin.read()
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        fail(f"no such file: {path}", 2)
    except IsADirectoryError:
        fail(f"is a folder, not a file: {path}", 2)
    except UnicodeDecodeError:
        fail(f"{path} is not UTF-8 text", 1)
    except OSError as exc:
        fail(f"cannot read {path}: {exc.strerror}", 2)


def load_rulebook(extra: list[Path] | None) -> Rulebook:
    """The shipped rules plus extra packs; exit 1 with every problem on a bad rule file."""
    for path in extra or []:
        if not path.exists():
            fail(f"no such rule file or folder: {path}", 2)
    try:
        return Rulebook.load(*(extra or []))
    except RuleFileError as exc:
        fail(str(exc), 1)


def make_advisor(extra: list[Path] | None) -> Advisor:
    """An advisor on the shipped rules plus extra packs (the default one when there are none)."""
    if not extra:
        from .advisor import default_advisor

        try:
            return default_advisor()
        except RuleFileError as exc:
            fail(str(exc), 1)
    return Advisor(load_rulebook(extra))


def load_case_file(path: Path) -> Any:
    """Read and check a case file; exit 1 listing every problem by path."""
    text = read_input(path)
    try:
        return load_case(text)
    except CaseError as exc:
        fail(f"{path}: {exc}", 1)


def _version(value: bool) -> None:
    if value:
        typer.echo(__version__)
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Guidance on whether, when and how to get a medical second opinion."""


@app.command()
def advise(
    case: Annotated[Path, typer.Argument(help="Case file (JSON), or - for standard input.")],
    fmt: Annotated[AdviceFormat, typer.Option("--format", "-f", help="Output format.")] = AdviceFormat.text,
    rules: RulesOption = None,
    color: Annotated[
        bool | None, typer.Option("--color/--no-color", help="Colour the text output (default: when a terminal).")
    ] = None,
    next_questions: Annotated[
        bool, typer.Option("--next-questions", help="Also list unknown facts whose answers would change the advice.")
    ] = False,
) -> None:
    """Advise on a case: recommendations with their reasons and sources."""
    advisor = make_advisor(rules)
    checked = load_case_file(case)
    advice = advisor.advise(checked)
    if fmt is AdviceFormat.cds_hooks:
        if next_questions:
            fail("--next-questions works with --format text, markdown or json", 2)
        from .cds_hooks import cards

        typer.echo(json.dumps(cards(advice, advisor.rulebook), indent=2, ensure_ascii=False))
        return
    use_color = sys.stdout.isatty() if color is None else color
    questions = None
    if next_questions:
        from .questions import next_questions as ask_next

        questions = ask_next(checked, advisor=advisor)
    typer.echo(render(advice, fmt.value, advisor.rulebook, color=use_color, questions=questions), nl=False)


class ExplainFormat(str, Enum):
    """Output formats of ``explain``."""

    text = "text"
    markdown = "markdown"
    json = "json"


@app.command()
def explain(
    case: Annotated[Path, typer.Argument(help="Case file (JSON), or - for standard input.")],
    recommendation: Annotated[
        str | None,
        typer.Option("--recommendation", "-r", metavar="KIND", help="Show how this recommendation was derived."),
    ] = None,
    why_not: Annotated[
        str | None,
        typer.Option(
            "--why-not", "-w", metavar="KIND_OR_RULE_ID", help="Show why this kind, rule or derived fact did not fire."
        ),
    ] = None,
    fmt: Annotated[ExplainFormat, typer.Option("--format", "-f", help="Output format.")] = ExplainFormat.text,
    rules: RulesOption = None,
    color: Annotated[
        bool | None, typer.Option("--color/--no-color", help="Colour the text output (default: when a terminal).")
    ] = None,
) -> None:
    """Explain the advice on a case: how each recommendation was derived, or why one was not."""
    from .render import explain_report

    advisor = make_advisor(rules)
    checked = load_case_file(case)
    use_color = sys.stdout.isatty() if color is None else color
    try:
        text = explain_report(
            checked, advisor, recommendation=recommendation, why_not_target=why_not, fmt=fmt.value, color=use_color
        )
    except LookupError as exc:
        fail(str(exc.args[0]) if exc.args else "nothing to explain", 1)
    typer.echo(text, nl=False)


def _rule_summary(rule: Rule) -> dict[str, Any]:
    return {
        "id": rule.id,
        "title": rule.title,
        "status": rule.status,
        "version": rule.version,
        "topic": rule.topic,
        "guidance": list(rule.guidance),
        "evidence": list(rule.evidence),
        "tensions": list(rule.tensions),
        "sources": [{"file": s.file, "section": s.section} for s in rule.sources],
        "last_reviewed": rule.last_reviewed,
        "derives": rule.derives,
        "recommends": rule.recommends,
        "consumes": list(rule.consumes),
        "file": rule.file,
        "line": rule.line,
        "rationale": rule.rationale,
    }


@app.command("rules")
def rules_command(
    rule_id: Annotated[str | None, typer.Argument(help="Show one rule by id.")] = None,
    fmt: Annotated[ListFormat, typer.Option("--format", "-f", help="Output format.")] = ListFormat.text,
    rules: RulesOption = None,
) -> None:
    """List the rules (or show one) with their guidance ids and sources."""
    book = load_rulebook(rules)
    selected = list(book.rules)
    if rule_id is not None:
        try:
            selected = [book.rule(rule_id)]
        except KeyError:
            fail(f"no rule with id {rule_id!r}", 1)
    if fmt is ListFormat.json:
        payload: Any = [_rule_summary(r) for r in selected]
        typer.echo(json.dumps(payload[0] if rule_id else payload, indent=2))
        return
    for rule in selected:
        then = f"derives {rule.derives}" if rule.derives else f"recommends {rule.recommends}"
        typer.echo(f"{rule.id}  [{rule.status}]  {rule.title}")
        typer.echo(f"    {then}; guidance {', '.join(rule.guidance)}; {rule.file}:{rule.line}")
        if rule_id is not None:
            typer.echo(f"    rationale: {rule.rationale}")
            for src in rule.sources:
                typer.echo(f"    source: {src.file} - {src.section}")


@app.command()
def check(rules: RulesOption = None) -> None:
    """Load the rule files and run every rule's examples; exit 1 on any problem."""
    book = load_rulebook(rules)
    advisor = Advisor(book, include_drafts=True)
    failures = advisor.check_examples()
    for failure in failures:
        typer.echo(str(failure), err=True)
    examples = sum(len(r.fires) + len(r.silent) for r in advisor.rules)
    typer.echo(f"{len(book.rules)} rules, {examples} examples, {len(failures)} failing")
    if failures:
        raise typer.Exit(1)


@app.command()
def batch(
    source: Annotated[Path, typer.Argument(help="Cases as JSON Lines (one case per line), or - for standard input.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Advice as JSON Lines, in input order (- for stdout).")],
    errors: Annotated[
        Path | None,
        typer.Option("--errors", "-e", help="Bad records with line number and reason [default: OUT.errors.jsonl]."),
    ] = None,
    workers: Annotated[int, typer.Option("--workers", "-j", min=0, help="Processes to use; 0 means every core.")] = 0,
    rules: RulesOption = None,
    progress: Annotated[
        bool | None, typer.Option("--progress/--no-progress", help="Progress bar (default: when stderr is a terminal).")
    ] = None,
) -> None:
    """Advise on many cases in parallel; every bad record goes to the errors file (exit 1 if any)."""
    from .batch import AdvisorSpec, BatchError, TerminalProgress, batch_files

    if str(source) != "-" and not source.is_file():
        fail(f"no such file: {source}", 2)
    if errors is None:
        if str(out) == "-":
            fail("--errors is required when --out is -", 2)
        errors = out.with_suffix(".errors.jsonl")
    if str(errors) == str(out) == "-" or (str(out) != "-" and errors.resolve() == out.resolve()):
        fail("--errors must not be the --out file", 2)
    for path in (rules or []):
        if not path.exists():
            fail(f"no such rule file or folder: {path}", 2)
    show = sys.stderr.isatty() if progress is None else progress
    size = source.stat().st_size if str(source) != "-" else None
    spec = AdvisorSpec(rules or ())
    try:
        with TerminalProgress(size) if show else contextlib.nullcontext() as bar:
            summary = batch_files(source, out, errors, workers=workers or None, spec=spec, progress=bar)
    except RuleFileError as exc:
        fail(str(exc), 1)
    except BatchError as exc:
        fail(str(exc), 1)
    except OSError as exc:
        fail(f"cannot read or write a file: {exc.strerror or type(exc).__name__}", 2)
    skipped = f"; {summary.blank_lines} blank line(s) skipped" if summary.blank_lines else ""
    where = f" (see {errors})" if summary.errors else ""
    typer.echo(
        f"{summary.records} records: {summary.results} advised, {summary.errors} errors{where}{skipped}", err=True
    )
    if summary.errors:
        raise typer.Exit(1)


@app.command("verify")
def verify_command(
    rules: RulesOption = None,
    fmt: Annotated[ListFormat, typer.Option("--format", "-f", help="Output format.")] = ListFormat.text,
    drafts: Annotated[
        bool, typer.Option("--drafts/--no-drafts", help="Also verify draft rules (their findings are warnings).")
    ] = False,
    only: Annotated[
        bool, typer.Option("--only", help="Verify the --rules packs alone, without the shipped rules.")
    ] = False,
    fail_on: Annotated[
        list[str] | None,
        typer.Option(
            "--fail-on",
            metavar="SEVERITY_OR_KIND",
            help="Findings that make the run fail (exit 1): a severity (error, warning, info) or a finding kind "
            "such as gap or redundant-rule (repeatable) [default: error].",
        ),
    ] = None,
) -> None:
    """Verify the rule base (dead rules, conflicts, gaps, coverage, monotonicity, ...); exit 1 on a failing finding."""
    from .verify import KIND_DESCRIPTIONS, verify

    names = fail_on or ["error"]
    unknown = sorted(set(names) - {"error", "warning", "info"} - set(KIND_DESCRIPTIONS))
    if unknown:
        fail(f"--fail-on: unknown severity or finding kind: {', '.join(unknown)}", 2)
    if only and not rules:
        fail("--only needs at least one --rules PATH", 2)
    for path in rules or []:
        if not path.exists():
            fail(f"no such rule file or folder: {path}", 2)
    try:
        book = Rulebook.load(*(rules or []), shipped=not only)
    except RuleFileError as exc:
        if fmt is ListFormat.json:
            problems = [
                {"file": p.file, "line": p.line, "rule_id": p.rule_id, "message": p.message} for p in exc.problems
            ]
            typer.echo(json.dumps({"ok": False, "load_errors": problems, "findings": []}, indent=2))
            raise typer.Exit(1) from None
        fail(str(exc), 1)
    try:
        report = verify(book, include_drafts=drafts)
    except Exception as exc:  # a bug in the analysis must not print a traceback
        fail(f"verify could not finish ({type(exc).__name__}); please report this with the rule files", 1)
    failing = report.failing(names)
    if fmt is ListFormat.json:
        data = report.to_dict()
        data["fail_on"] = list(names)
        data["failing"] = len(failing)
        typer.echo(json.dumps(data, indent=2, ensure_ascii=False))
    else:
        typer.echo(report.to_text(), nl=False)
    if failing:
        raise typer.Exit(1)


class DiffFormat(str, Enum):
    """Output formats of ``diff``."""

    text = "text"
    markdown = "markdown"
    json = "json"


@app.command("diff")
def diff_command(
    rules_before: Annotated[
        list[Path],
        typer.Option("--rules-before", metavar="PATH", help="Rule file or folder before the change (repeatable)."),
    ],
    rules_after: Annotated[
        list[Path],
        typer.Option("--rules-after", metavar="PATH", help="Rule file or folder after the change (repeatable)."),
    ],
    cases: Annotated[
        Path | None,
        typer.Option("--cases", metavar="FILE", help="Cases as JSON Lines [default: a generated population]."),
    ] = None,
    only: Annotated[
        bool, typer.Option("--only", help="Load the rule paths alone, without the shipped rules.")
    ] = False,
    size: Annotated[int, typer.Option("--size", min=1, help="Cases to generate without --cases.")] = 400,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the generated population.")] = 2026,
    examples: Annotated[int, typer.Option("--examples", min=0, help="Example cases per change.")] = 3,
    fmt: Annotated[DiffFormat, typer.Option("--format", "-f", help="Output format.")] = DiffFormat.text,
    fail_on_change: Annotated[
        bool, typer.Option("--fail-on-change", help="Exit 1 when any case changes advice.")
    ] = False,
) -> None:
    """Show how a rule change changes the advice on a population of cases."""
    from .impact import PopulationError, generated_population, impact, read_population

    books = []
    for paths in (rules_before, rules_after):
        for path in paths:
            if not path.exists():
                fail(f"no such rule file or folder: {path}", 2)
        try:
            books.append(Rulebook.load(*paths, shipped=not only))
        except RuleFileError as exc:
            fail(str(exc), 1)
    before, after = books
    if cases is not None:
        if not cases.is_file():
            fail(f"no such file: {cases}", 2)
        try:
            population = read_population(cases)
        except PopulationError as exc:
            fail(f"{cases}: {exc}", 1)
        except UnicodeDecodeError:
            fail(f"{cases} is not UTF-8 text", 1)
        label = f"{cases}, {len(population)} cases"
    else:
        population = generated_population(before, after, size=size, seed=seed)
        label = f"generated from both rule bases: {size} cases, seed {seed}"
    report = impact(Advisor(before), Advisor(after), population, population=label, examples=examples)
    if fmt is DiffFormat.json:
        typer.echo(report.to_json())
    else:
        typer.echo(report.to_markdown() if fmt is DiffFormat.markdown else report.to_text(), nl=False)
    if fail_on_change and report.changed:
        raise typer.Exit(1)


@app.command()
def schema(name: Annotated[SchemaName, typer.Argument(help="Which schema.")]) -> None:
    """Print a JSON Schema (2020-12): the case format, the advice format or the rule file format."""
    typer.echo(json.dumps(schema_for(name.value), indent=2))


class FhirVersionName(str, Enum):
    """FHIR versions the service reads prefetch data in."""

    R4B = "R4B"
    R5 = "R5"


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 8080,
    fhir_version: Annotated[
        FhirVersionName, typer.Option("--fhir-version", help="FHIR version of prefetch data (R4B also reads R4).")
    ] = FhirVersionName.R4B,
    rules: RulesOption = None,
) -> None:
    """Run the CDS Hooks service: GET /cds-services, POST /cds-services/second-opinion (service extra)."""
    try:
        from .service import serve as run_service
    except ImportError:
        fail("serve needs the service extra: pip install 'secondopinion[service]'", 1)
    advisor = make_advisor(rules)
    typer.echo(f"CDS Hooks service at http://{host}:{port}/cds-services (Ctrl+C stops it)", err=True)
    run_service(advisor, host=host, port=port, fhir_version=fhir_version.value)


def main() -> None:
    """Entry point of the console script."""
    app()
