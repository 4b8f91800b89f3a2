"""The ``secondopinion`` command line (Typer).

``advise``, ``explain`` and ``interview`` also read a FHIR Bundle (told apart
from a case file by its top-level ``"resourceType": "Bundle"``), mapped with
:func:`secondopinion.fhir.case_from_bundle` (the ``fhir`` extra).

Exit codes: 0 success; 1 findings or advice errors (an invalid case or FHIR
Bundle, a bad rule file, failing rule examples, rules the engine cannot run, out of memory);
2 usage errors (unknown option, missing file, an output that is the input, a missing extra);
130 / 143 a batch stopped by Ctrl-C / SIGTERM (its partial outputs are kept
for ``--resume``). Mistakes print one clear message on stderr, never a traceback, and
never a value from the case.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import shlex
import sys
from collections.abc import Iterator, Mapping, Sequence
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, NamedTuple, NoReturn

import typer

from . import __version__
from .advisor import Advisor
from .case import MAX_BUNDLE_BYTES, CaseError, is_fhir_resource, load_case, names_a_bundle
from .engine import EngineError
from .rulebook import Rule, Rulebook, RuleFileError

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
    html = "html"
    ics = "ics"


class ListFormat(str, Enum):
    """Output formats of listings."""

    text = "text"
    json = "json"


class SchemaName(str, Enum):
    """The schemas ``schema`` can print."""

    case = "case"
    advice = "advice"
    rules = "rules"


class FhirVersionName(str, Enum):
    """FHIR versions read: of a Bundle given to advise, explain or interview, and of the service's prefetch data."""

    R4B = "R4B"
    R5 = "R5"


CASE_HELP = "Case file (JSON) or FHIR Bundle (JSON, needs the fhir extra), or - for standard input."
FhirVersionOption = Annotated[
    FhirVersionName,
    typer.Option("--fhir-version", help="FHIR version of a Bundle: R4B (also reads R4) or R5."),
]
PatientOption = Annotated[
    str | None,
    typer.Option(
        "--patient",
        metavar="ID",
        help="In a FHIR Bundle with several patients, the one to advise on: its id, Patient/ID or fullUrl.",
    ),
]
FocusOption = Annotated[
    str | None,
    typer.Option(
        "--focus",
        metavar="CONDITION",
        help="In a FHIR Bundle, the Condition the advice is about: its id, Condition/ID or fullUrl "
        "[default: the one the planned treatment is for, else the most serious].",
    ),
]
MappingOption = Annotated[
    bool,
    typer.Option(
        "--mapping",
        help="With a FHIR Bundle, also print the mapping report: each case field with the FHIR element it came "
        "from, each item not used with the reason.",
    ),
]


class FhirInput(NamedTuple):
    """What the FHIR options of advise, explain and interview ask for."""

    version: FhirVersionName = FhirVersionName.R4B
    patient: str | None = None
    focus: str | None = None
    mapping: bool = False


NO_FHIR_OPTIONS = FhirInput()


class CaseInput(NamedTuple):
    """A case read from a file: a case file, or a FHIR Bundle with its mapping report."""

    case: Any
    mapping: dict[str, Any] | None = None
    """The FHIR mapping report (FhirCase.report()) when the case was read from a Bundle."""


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


MAX_CASE_BYTES = 1 << 20
"""Largest case file read, in bytes (1 MiB, as a batch line): ``advise /dev/zero`` stops there."""



@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Turn the errors a user's rules or machine can cause into one line and exit 1, never a traceback."""
    try:
        yield
    except RuleFileError as exc:
        fail(str(exc), 1)
    except EngineError as exc:  # ActionError, RulesetError, EngineBudgetError: messages name rules, never values
        fail(f"the rules could not be run: {exc}", 1)
    except MemoryError:
        fail("out of memory", 1)
    except RecursionError:
        fail("input nested too deeply", 1)


def read_input(path: Path) -> str:
    """The text of a file, or of standard input for ``-``; exit 2 when it cannot be read.

    At most MAX_CASE_BYTES, unless what was read so far holds ``"resourceType": "Bundle"``:
    then at most MAX_BUNDLE_BYTES (whether it is a Bundle is decided once it is parsed).
    """
    try:
        with contextlib.ExitStack() as stack:
            stream = sys.stdin.buffer if str(path) == "-" else stack.enter_context(path.open("rb"))
            raw = stream.read(MAX_CASE_BYTES + 1)
            if len(raw) > MAX_CASE_BYTES:
                if not names_a_bundle(raw):
                    fail(f"{path} is larger than {MAX_CASE_BYTES} bytes (the limit for one case)", 1)
                raw += stream.read(MAX_BUNDLE_BYTES - len(raw) + 1)
                if len(raw) > MAX_BUNDLE_BYTES:
                    fail(f"{path} is larger than {MAX_BUNDLE_BYTES} bytes (the limit for a FHIR Bundle)", 1)
        return raw.decode("utf-8")
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
    with user_errors():
        return Advisor(load_rulebook(extra))


def _fhir_resource(text: str) -> dict[str, Any] | None:
    """The JSON object when the text is a FHIR resource (a top-level string ``resourceType``), else None.

    A case file never has ``resourceType``, so most case files are not even parsed twice.
    """
    if '"resourceType"' not in text:
        return None
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        return None  # load_case says what is wrong with it
    return data if is_fhir_resource(data) else None


def load_case_input(path: Path, fhir_input: FhirInput, day: dt.date | None) -> CaseInput:
    """A case file, or a FHIR Bundle mapped to a case (with its report); exit 1 or 2 with one clear message."""
    text = read_input(path)
    resource = _fhir_resource(text)
    if resource is None:
        if fhir_input.patient is not None or fhir_input.focus is not None or fhir_input.mapping:
            fail(f"--patient, --focus and --mapping only apply to a FHIR Bundle; {path} is a case file", 2)
        try:
            return CaseInput(load_case(text))
        except CaseError as exc:
            fail(f"{path}: {exc}", 1)
    if resource["resourceType"] != "Bundle":
        # The type is never echoed: it is data, and may be anything.
        fail(f"{path}: a FHIR resource, not a Bundle: secondopinion reads FHIR data in a Bundle", 1)
    return _case_from_bundle(path, resource, fhir_input, day)


def _case_from_bundle(path: Path, bundle: dict[str, Any], fhir_input: FhirInput, day: dt.date | None) -> CaseInput:
    try:
        from . import fhir
    except ImportError:
        fail('reading a FHIR Bundle needs the fhir extra: pip install "secondopinion[fhir]"', 2)
    try:
        got = fhir.case_from_bundle(
            bundle,
            fhir_version=fhir_input.version.value,
            today=day,
            patient_id=fhir_input.patient,
            focus=fhir_input.focus,
        )
    except fhir.FhirError as exc:
        fail(f"{path}: {exc}", 1)
    if got.patient is None and got.patients and (fhir_input.patient is not None or len(got.patients) > 1):
        where = got.patients_named()
        if fhir_input.patient is None:
            fail(f"{path}: the Bundle holds {len(got.patients)} patients ({where}): choose one with --patient ID", 2)
        fail(f"{path}: no Patient in the Bundle has the id given with --patient (Patients: {where})", 2)
    if fhir_input.focus is not None and (got.focus is None or got.focus.reason != fhir.FOCUS_NAMED):
        fail(f"{path}: --focus names no active Condition of the patient (give its id, Condition/ID or fullUrl)", 2)
    return CaseInput(got.case, got.report())


def _fhir_note(loaded: CaseInput, fhir_input: FhirInput, *, shown: bool) -> None:
    """One line on stderr, after the output: the case came from a FHIR Bundle, and how much was not used."""
    if loaded.mapping is not None:
        from .render.mapping import not_used_note

        typer.echo(not_used_note(loaded.mapping, fhir_input.version.value, shown=shown), err=True)


def _with_mapping(text: str, fmt: str, report: Mapping[str, Any]) -> str:
    """Output text with the FHIR mapping report: a ``fhir_mapping`` key in JSON, a section after text or Markdown."""
    if fmt == "json":
        data = json.loads(text)
        data["fhir_mapping"] = report
        return json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    from .render.mapping import mapping_markdown, mapping_text

    return f"{text}\n{mapping_markdown(report) if fmt == 'markdown' else mapping_text(report)}"


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
    case: Annotated[Path, typer.Argument(help=CASE_HELP)],
    fmt: Annotated[AdviceFormat, typer.Option("--format", "-f", help="Output format.")] = AdviceFormat.text,
    rules: RulesOption = None,
    color: Annotated[
        bool | None, typer.Option("--color/--no-color", help="Colour the text output (default: when a terminal).")
    ] = None,
    next_questions: Annotated[
        bool, typer.Option("--next-questions", help="Also list unknown facts whose answers would change the advice.")
    ] = False,
    why: Annotated[
        bool, typer.Option("--why", help="Also show the reasons, rule ids, guidance ids and sources of each step.")
    ] = False,
    today: Annotated[
        str | None,
        typer.Option(
            "--today",
            metavar="YYYY-MM-DD",
            help="Count the plan's dates, and a FHIR Bundle's ages and days to decide, from this day "
            "[default: today].",
        ),
    ] = None,
    fhir_version: FhirVersionOption = FhirVersionName.R4B,
    patient: PatientOption = None,
    focus: FocusOption = None,
    mapping: MappingOption = False,
) -> None:
    """Advise on a case or a FHIR Bundle: a plan of what to do, step by step (--why adds the reasons and sources)."""
    day = _parse_day(today)
    if mapping and fmt in (AdviceFormat.html, AdviceFormat.ics):
        fail("--mapping works with --format text, markdown, json or cds-hooks", 2)
    with user_errors():
        _advise(case, fmt, rules, color, next_questions, why, day, FhirInput(fhir_version, patient, focus, mapping))


def _advise(
    case: Path,
    fmt: AdviceFormat,
    rules: list[Path] | None,
    color: bool | None,
    next_questions: bool,
    why: bool,
    day: dt.date | None,
    fhir_input: FhirInput = NO_FHIR_OPTIONS,
) -> None:
    if fmt is AdviceFormat.cds_hooks and next_questions:
        fail("--next-questions works with --format text, markdown, html or json", 2)
    advisor = make_advisor(rules)
    loaded = load_case_input(case, fhir_input, day)
    checked = loaded.case
    advice = advisor.advise(checked)
    show_mapping = fhir_input.mapping and loaded.mapping is not None
    if fmt is AdviceFormat.cds_hooks:
        from .cds_hooks import EXTENSION, cards

        extension = {f"{EXTENSION}.fhir-mapping": loaded.mapping} if show_mapping else None
        typer.echo(json.dumps(cards(advice, advisor.rulebook, extension=extension), indent=2, ensure_ascii=False))
        _fhir_note(loaded, fhir_input, shown=show_mapping)
        return
    use_color = sys.stdout.isatty() if color is None else color
    questions = None
    from .questions import next_questions as ask_next

    sparse = not advice.recommendations or checked == type(checked)()
    if next_questions:
        questions = ask_next(checked, advisor=advisor)
    elif fmt is not AdviceFormat.ics and sparse:
        questions = ask_next(checked, advisor=advisor, limit=3)  # an empty case: the questions that matter most
    from .render import render
    from .render.ics import NoDatesError

    try:
        text = render(
            advice, fmt.value, advisor.rulebook, color=use_color, questions=questions, why=why, case=checked, today=day
        )
    except NoDatesError:
        if advice.by_kind("get_care_now") is not None:
            fail("the plan has no dates for a calendar: this is an emergency, and care comes first", 1)
        fail("the plan has no dates for a calendar: the case does not give treatment.days_to_decide", 1)
    if show_mapping and loaded.mapping is not None:
        text = _with_mapping(text, fmt.value, loaded.mapping)
    typer.echo(text, nl=False)
    _fhir_note(loaded, fhir_input, shown=show_mapping)
    if sparse and questions:
        where = "" if str(case) == "-" else f" {shlex.quote(str(case))}"
        if loaded.mapping is not None:  # the interview must read the Bundle as advise did
            where += _fhir_arguments(fhir_input, day)
        typer.echo(f"To answer them one at a time: secondopinion interview{where}", err=True)


def _fhir_arguments(fhir_input: FhirInput, day: dt.date | None) -> str:
    """The options that read a Bundle the same way again, as command-line text."""
    pairs = [
        ("--fhir-version", None if fhir_input.version is FhirVersionName.R4B else fhir_input.version.value),
        ("--patient", fhir_input.patient),
        ("--focus", fhir_input.focus),
        ("--today", None if day is None else day.isoformat()),
    ]
    return "".join(f" {option} {shlex.quote(value)}" for option, value in pairs if value is not None)


def _parse_day(text: str | None) -> dt.date | None:
    """A --today value as a date; exit 2 when it is not YYYY-MM-DD."""
    if text is None:
        return None
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        fail("--today must be a date written YYYY-MM-DD", 2)


@app.command()
def interview(
    case: Annotated[
        Path | None,
        typer.Argument(help="Case file or FHIR Bundle (JSON) to start from [default: an empty case]."),
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Where to save the case (JSON) [default: asked at the end].")
    ] = None,
    rules: RulesOption = None,
    today: Annotated[
        str | None,
        typer.Option(
            "--today",
            metavar="YYYY-MM-DD",
            help="Count the plan's dates, and a FHIR Bundle's ages and days to decide, from this day "
            "[default: today].",
        ),
    ] = None,
    fhir_version: FhirVersionOption = FhirVersionName.R4B,
    patient: PatientOption = None,
    focus: FocusOption = None,
    mapping: MappingOption = False,
) -> None:
    """Guided interview: one question at a time, only those that change the plan; saves the case.

    Only questions whose answers change the advice are asked, most important
    first. Type the number of an answer, s to skip, b to go back, d when done.
    """
    from .interview import Interview
    from .plan import build_plan
    from .render.text import plan_text

    day = _parse_day(today)
    advisor = make_advisor(rules)
    start = None
    if case is not None:
        fhir_input = FhirInput(fhir_version, patient, focus, mapping)
        loaded = load_case_input(case, fhir_input, day)
        start = loaded.case
        if mapping and loaded.mapping is not None:
            from .render.mapping import mapping_text

            typer.echo(mapping_text(loaded.mapping))
        _fhir_note(loaded, fhir_input, shown=mapping)
    elif patient is not None or focus is not None or mapping:
        fail("--patient, --focus and --mapping only apply to a FHIR Bundle", 2)
    talk = Interview(start, advisor=advisor, today=day)
    typer.echo("Answer a few questions to get your plan. Type s to skip, b to go back, d when you are done.")
    typer.echo(f"Your plan so far: {talk.plan().headline}")
    number = 0
    try:
        while (question := talk.next_question()) is not None:
            number += 1
            typer.echo("")
            about = f" (about {question.about})" if question.about else ""
            typer.echo(f"Question {number}{about}: {question.question}")
            options = talk.choices(question)
            for k, option in enumerate(options, 1):
                typer.echo(f"  {k}. {option.label}")
            hint = "a number" if talk.wants_number(question) else f"1-{len(options)}"
            while True:
                reply = typer.prompt(f"Your answer ({hint}, s, b or d)", prompt_suffix=": ").strip().lower()
                if reply in ("s", "b", "d"):
                    break
                value = _interview_value(reply, options, talk.wants_number(question))
                if value is not None:
                    break
                typer.echo(f"Please type {hint}, or s to skip, b to go back, d when you are done.")
            if reply == "d":
                break
            if reply == "s":
                talk.skip(question)
                continue
            if reply == "b":
                if talk.back() is None:
                    typer.echo("This is the first question.")
                number = max(0, number - 2)
                continue
            change = talk.answer(question, value)  # type: ignore[arg-type]
            for title in change.added:
                typer.echo(f"  + {title}")
            for title in change.removed:
                typer.echo(f"  - no longer needed: {title}")
            typer.echo(f"Your plan now: {talk.plan().headline}")
        else:
            typer.echo("")
            typer.echo("No other answer would change the plan.")
    except (typer.Abort, EOFError):
        typer.echo("")
        typer.echo("Stopped.")
    typer.echo("")
    typer.echo(plan_text(build_plan(talk.advice, talk.to_case(), today=day), advisor.rulebook), nl=False)
    target = out
    if target is None:
        try:
            target = Path(typer.prompt("Save the case to", default="my-case.json"))
        except (typer.Abort, EOFError):
            fail("the case was not saved", 1)
    try:
        target.write_text(talk.to_json(), encoding="utf-8")
    except OSError as exc:
        fail(f"cannot write {target}: {exc.strerror or type(exc).__name__}", 2)
    typer.echo(f"Saved the case to {target}. Run: secondopinion advise {target}", err=True)


def _interview_value(reply: str, options: Sequence[Any], wants_number: bool) -> str | int | None:
    """The answer a reply picks: a choice by its number, or a whole number; None when it picks nothing."""
    if not reply.isdigit():
        return None
    if wants_number:
        return int(reply)
    index = int(reply)
    return str(options[index - 1].value) if 1 <= index <= len(options) else None


class ExplainFormat(str, Enum):
    """Output formats of ``explain``."""

    text = "text"
    markdown = "markdown"
    json = "json"


@app.command()
def explain(
    case: Annotated[Path, typer.Argument(help=CASE_HELP)],
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
    today: Annotated[
        str | None,
        typer.Option(
            "--today", metavar="YYYY-MM-DD", help="Count a FHIR Bundle's ages and days to decide from this day "
            "[default: today]."
        ),
    ] = None,
    fhir_version: FhirVersionOption = FhirVersionName.R4B,
    patient: PatientOption = None,
    focus: FocusOption = None,
    mapping: MappingOption = False,
) -> None:
    """Explain the advice on a case or a FHIR Bundle: how each recommendation was derived, or why one was not."""
    from .render import explain_report

    day = _parse_day(today)
    fhir_input = FhirInput(fhir_version, patient, focus, mapping)
    with user_errors():
        advisor = make_advisor(rules)
        loaded = load_case_input(case, fhir_input, day)
    use_color = sys.stdout.isatty() if color is None else color
    try:
        with user_errors():
            text = explain_report(
                loaded.case,
                advisor,
                recommendation=recommendation,
                why_not_target=why_not,
                fmt=fmt.value,
                color=use_color,
            )
    except LookupError as exc:
        fail(str(exc.args[0]) if exc.args else "nothing to explain", 1)
    if mapping and loaded.mapping is not None:
        text = _with_mapping(text, fmt.value, loaded.mapping)
    typer.echo(text, nl=False)
    _fhir_note(loaded, fhir_input, shown=mapping)


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
    with user_errors():
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
    source: Annotated[
        Path,
        typer.Argument(
            help="Cases as JSON Lines (one case or one FHIR Bundle per line), or - for standard input."
        ),
    ],
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
    resume: Annotated[
        bool,
        typer.Option(
            "--resume",
            help="Continue a run stopped by Ctrl-C (exit 130), SIGTERM (143) or a crash, from its OUT.partial files.",
        ),
    ] = False,
    today: Annotated[
        str | None,
        typer.Option(
            "--today",
            metavar="YYYY-MM-DD",
            help="Count the ages and days to decide of every FHIR Bundle record from this day [default: today, "
            "once for the whole run]. Give the first run's day with --resume.",
        ),
    ] = None,
    fhir_version: FhirVersionOption = FhirVersionName.R4B,
) -> None:
    """Advise on many cases or FHIR Bundles in parallel; every bad record goes to the errors file (exit 1 if any)."""
    # Outputs are written as OUT.partial (and ERRORS.partial) and renamed when the run is complete;
    # Ctrl-C or SIGTERM stops the run cleanly (exit 130 or 143) and --resume continues it.
    import signal
    import threading

    from .batch import AdvisorSpec, BatchError, BundleSpec, TerminalProgress, batch_files, same_file

    day = _parse_day(today)
    if str(source) != "-" and not source.is_file():
        fail(f"no such file: {source}", 2)
    if errors is None:
        if str(out) == "-":
            fail("--errors is required when --out is -", 2)
        errors = out.with_suffix(".errors.jsonl")
    if str(errors) == str(out) == "-" or same_file(errors, out):
        fail("--errors must not be the --out file", 2)
    for name, target in (("--out", out), ("--errors", errors)):
        if same_file(source, target):
            fail(f"{name} must not be the input file", 2)
    if resume and "-" in (str(source), str(out), str(errors)):
        fail("--resume needs an input file and output files (not -)", 2)
    for path in (rules or []):
        if not path.exists():
            fail(f"no such rule file or folder: {path}", 2)
    show = sys.stderr.isatty() if progress is None else progress
    size = source.stat().st_size if str(source) != "-" else None
    spec = AdvisorSpec(rules or ())
    bundles = BundleSpec(day or dt.date.today(), fhir_version.value)
    stop = threading.Event()
    received: list[int] = []

    def on_signal(signum: int, _frame: Any) -> None:
        received.append(signum)
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        with TerminalProgress(size) if show else contextlib.nullcontext() as bar:
            summary = batch_files(
                source,
                out,
                errors,
                workers=workers or None,
                spec=spec,
                bundles=bundles,
                progress=bar,
                stop=stop,
                resume=resume,
            )
    except RuleFileError as exc:
        fail(str(exc), 1)
    except BatchError as exc:
        fail(str(exc), 1)
    except OSError as exc:
        fail(f"cannot read or write a file: {exc.strerror or type(exc).__name__}", 2)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if not summary.complete:
        outputs = " and ".join(f"{p}.partial" for p in (out, errors) if str(p) != "-")
        typer.echo(
            f"stopped: {summary.records} records written ({summary.results} advised, {summary.errors} errors) "
            f"to {outputs}; run the same command with --resume to continue",
            err=True,
        )
        raise typer.Exit(128 + (received[0] if received else signal.SIGINT))
    resumed = f" ({summary.resumed} from the interrupted run)" if summary.resumed else ""
    skipped = f"; {summary.blank_lines} blank line(s) skipped" if summary.blank_lines else ""
    where = f" (see {errors})" if summary.errors else ""
    typer.echo(
        f"{summary.records} records{resumed}: {summary.results} advised, {summary.errors} errors{where}{skipped}",
        err=True,
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
    from .schema import schema_for

    typer.echo(json.dumps(schema_for(name.value), indent=2))


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 8080,
    fhir_version: Annotated[
        FhirVersionName, typer.Option("--fhir-version", help="FHIR version of prefetch data (R4B also reads R4).")
    ] = FhirVersionName.R4B,
    rules: RulesOption = None,
    base_url: Annotated[
        str | None, typer.Option("--base-url", help="Where card links point: the rule files are under BASE_URL/rules.")
    ] = None,
    cors_origin: Annotated[
        list[str] | None,
        typer.Option("--cors-origin", metavar="ORIGIN", help="Browser origin allowed to call (repeatable; none: off)."),
    ] = None,
    jwt_jwks: Annotated[
        str | None,
        typer.Option("--jwt-jwks", metavar="FILE_OR_URL", help="Check the CDS client's JWT against this JWKS."),
    ] = None,
    jwt_issuer: Annotated[
        list[str] | None,
        typer.Option("--jwt-issuer", metavar="ISS", help="Accepted JWT issuer, a CDS client (repeatable)."),
    ] = None,
    jwt_audience: Annotated[
        str | None, typer.Option("--jwt-audience", metavar="URL", help="Expected JWT aud (default: the called URL).")
    ] = None,
    fhir_fetch: Annotated[
        bool, typer.Option("--fhir-fetch/--no-fhir-fetch", help="Fetch missing prefetch data from the fhirServer.")
    ] = True,
    fhir_server: Annotated[
        list[str] | None,
        typer.Option("--fhir-server", metavar="URL", help="Only fetch from fhirServers under this URL (repeatable)."),
    ] = None,
) -> None:
    """Run the CDS Hooks service: GET /cds-services, POST /cds-services/{id} (service extra)."""
    try:
        from .service import JwtVerifier
        from .service import serve as run_service
    except ImportError:
        fail('serve needs the service extra: pip install "secondopinion[service]"', 2)
    for name, url in [("--base-url", base_url), *(("--fhir-server", u) for u in fhir_server or [])]:
        if url is not None and not url.startswith(("https://", "http://")):
            fail(f"{name} must be an http or https URL", 2)
    verifier = None
    if jwt_jwks is not None or jwt_issuer:
        if jwt_jwks is None or not jwt_issuer:
            fail("JWT checking needs both --jwt-jwks and at least one --jwt-issuer", 2)
        try:
            verifier = JwtVerifier(jwt_jwks, tuple(jwt_issuer), jwt_audience)
        except ValueError as exc:
            fail(str(exc), 2)
    advisor = make_advisor(rules)
    typer.echo(f"CDS Hooks service at http://{host}:{port}/cds-services (Ctrl+C stops it)", err=True)
    run_service(
        advisor,
        host=host,
        port=port,
        fhir_version=fhir_version.value,
        base_url=base_url,
        cors_origins=cors_origin or (),
        jwt=verifier,
        fetch_fhir=fhir_fetch,
        fhir_servers=fhir_server or (),
    )


def main() -> None:
    """Entry point of the console script."""
    app()
