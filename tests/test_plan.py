"""The plan view: steps in order, the first step short, every recommendation placed once, dates, questions,
and the text, HTML and iCalendar renderings of it.

The bundled cases are checked by properties, not by snapshots, so the tests
hold while the rules change.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import icalendar
import jsonschema
import pytest
import textstat
from typer.testing import CliRunner

from secondopinion import Advice, default_advisor
from secondopinion.advice_schema import advice_schema
from secondopinion.cli import app
from secondopinion.plan import (
    DEFAULT_STEP,
    FIRST_STEP_LIMIT,
    KIND_STEPS,
    STEP_ORDER,
    STEP_TITLES,
    URGENT_TITLE,
    StepId,
    build_plan,
)
from secondopinion.recommendations import (
    AfterTheOpinion,
    CheckInsurance,
    GatherRecords,
    PrepareQuestions,
    Priority,
    ResolveConflict,
    SeekSecondOpinion,
    SendOriginalMaterials,
    SetDeadline,
    TalkToDoctor,
)
from secondopinion.render import render
from secondopinion.render.ics import NoDatesError

EXAMPLES = Path(__file__).parent.parent / "examples" / "cases"
CASES = sorted(EXAMPLES.glob("*.json"))
CANCER = EXAMPLES / "cancer-surgery.json"
TODAY = dt.date(2026, 3, 1)


def _load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text("utf-8"))
    return data


@pytest.fixture(scope="module")
def advisor() -> Any:
    return default_advisor()


# --------------------------------------------------------------------------- the plan of every bundled case


@pytest.mark.parametrize("path", CASES, ids=lambda p: p.stem)
def test_plan_of_every_bundled_case(path: Path, advisor: Any) -> None:
    case = _load(path)
    advice = advisor.advise(case)
    plan = build_plan(advice, case, today=TODAY)
    assert plan.headline and plan.headline.endswith(".")
    positions = [STEP_ORDER.index(s.id) for s in plan.steps]
    assert positions == sorted(positions) and len(set(positions)) == len(positions)  # in acting order, each once
    assert all(s.actions for s in plan.steps)
    assert len(plan.steps[0].actions) <= FIRST_STEP_LIMIT
    # Every recommendation lands in exactly one step.
    assert Counter(a.kind for a in plan.actions) == Counter(advice.kinds)
    for action in plan.actions:
        rec = advice.by_kind(action.kind)
        assert rec is not None
        assert (action.title, action.detail, action.priority) == (rec.title, rec.detail, rec.priority)
    critical = [r.kind for r in advice.recommendations if r.priority is Priority.CRITICAL]
    if critical:
        assert [a.kind for a in plan.steps[0].actions[: len(critical)]] == critical[:FIRST_STEP_LIMIT]
        assert plan.steps[0].title == URGENT_TITLE
    else:
        assert plan.steps[0].title == STEP_TITLES[plan.steps[0].id]
    # Questions come without repeats.
    for questions in (plan.doctor_questions, plan.insurer_questions):
        assert len({q.casefold() for q in questions}) == len(questions)


@pytest.mark.parametrize("path", CASES, ids=lambda p: p.stem)
def test_plan_json_is_in_the_advice_schema_and_reads_back(path: Path, advisor: Any) -> None:
    case = _load(path)
    advice = advisor.advise(case)
    text = render(advice, "json", advisor.rulebook, case=case, today=TODAY)
    data = json.loads(text)
    jsonschema.validate(data, advice_schema())
    assert data["plan"] == build_plan(advice, case, today=TODAY).to_dict()
    assert data["plan"]["today"] == "2026-03-01"
    assert Advice.from_json(text) == advice


def test_plan_wording_reads_at_grade_eight_or_below(advisor: Any) -> None:
    texts = [*STEP_TITLES.values(), URGENT_TITLE]
    for path in CASES:
        case = _load(path)
        texts.append(build_plan(advisor.advise(case), case, today=TODAY).headline)
    texts.append(build_plan(Advice()).headline)
    for text in texts:
        assert textstat.flesch_kincaid_grade(text) <= 8, text


# --------------------------------------------------------------------------- placement rules


def _rec(cls: Any, priority: Priority = Priority.MEDIUM, **fields: Any) -> Any:
    return cls(title=f"{cls.__name__} title", detail="Some detail.", priority=priority, **fields)


def test_critical_recommendations_lead_the_first_step_whatever_their_kind() -> None:
    advice = Advice(
        recommendations=(
            _rec(SeekSecondOpinion, Priority.HIGH),
            _rec(AfterTheOpinion, Priority.CRITICAL),
            _rec(GatherRecords),
        )
    )
    plan = build_plan(advice, today=TODAY)
    assert plan.steps[0].id == StepId.DECIDE and plan.steps[0].title == URGENT_TITLE
    assert [a.kind for a in plan.steps[0].actions] == ["after_the_opinion", "seek_second_opinion"]
    assert plan.step(StepId.AFTER) is None  # not placed twice
    assert plan.headline == "AfterTheOpinion title."  # a critical action heads the plan


def test_first_step_holds_at_most_three_and_the_rest_move_to_the_next_step() -> None:
    recs = (
        _rec(SetDeadline, Priority.HIGH),
        _rec(CheckInsurance),
        _rec(GatherRecords),
        _rec(SendOriginalMaterials),
        _rec(TalkToDoctor),
    )
    plan = build_plan(Advice(recommendations=recs), today=TODAY)
    assert [s.id for s in plan.steps] == [StepId.NOW, StepId.BEFORE_VISIT]
    assert [a.kind for a in plan.steps[0].actions] == ["set_deadline", "check_insurance", "gather_records"]
    assert [a.kind for a in plan.steps[1].actions] == ["send_original_materials", "talk_to_doctor"]


def test_the_last_step_spills_into_a_then_step() -> None:
    recs = (
        *(_rec(cls) for cls in (AfterTheOpinion, ResolveConflict, PrepareQuestions)),
        _rec(SeekSecondOpinion, Priority.CRITICAL),
        _rec(SetDeadline, Priority.CRITICAL),
        _rec(TalkToDoctor, Priority.CRITICAL),
        _rec(GatherRecords, Priority.CRITICAL),
    )
    plan = build_plan(Advice(recommendations=recs), today=TODAY)
    assert len(plan.steps[0].actions) == 3
    assert sorted(a.kind for a in plan.actions) == sorted(r.kind for r in recs)
    from secondopinion.recommendations import AskDoctorsToConfer, DecideWithYourValues, ProceedWithConfidence

    only_after = Advice(recommendations=tuple(_rec(c) for c in (AfterTheOpinion, DecideWithYourValues)))
    assert [s.id for s in build_plan(only_after).steps] == [StepId.AFTER]
    kinds = (AfterTheOpinion, ResolveConflict, AskDoctorsToConfer, ProceedWithConfidence)
    many = Advice(recommendations=tuple(_rec(c) for c in kinds))
    with pytest.MonkeyPatch.context() as patch:
        for cls in kinds:  # four kinds in the last step: one spills into "then"
            patch.setitem(KIND_STEPS, cls(title="t", detail="d").kind, StepId.AFTER)  # type: ignore[index]
        plan = build_plan(many, today=TODAY)
    assert [s.id for s in plan.steps] == [StepId.AFTER, StepId.THEN]
    assert [len(s.actions) for s in plan.steps] == [3, 1]


def test_a_kind_the_table_does_not_list_goes_in_the_default_step(monkeypatch: pytest.MonkeyPatch) -> None:
    assert KIND_STEPS["resolve_conflict"] is StepId.DECIDE
    monkeypatch.delitem(KIND_STEPS, "resolve_conflict")  # type: ignore[attr-defined]
    plan = build_plan(Advice(recommendations=(_rec(SeekSecondOpinion), _rec(ResolveConflict))), today=TODAY)
    step = plan.step_of("resolve_conflict")
    assert step is not None and step.id is DEFAULT_STEP


def test_the_step_table_names_only_real_kinds() -> None:
    """New kinds may be missing from the table (they go in the default step); a misspelt kind may not."""
    from secondopinion.recommendations import KINDS

    assert set(KIND_STEPS) <= set(KINDS)


# --------------------------------------------------------------------------- dates and questions


def test_dates_come_from_the_days_the_case_gives() -> None:
    case = {"diagnosis": {"seriousness": "serious"}, "treatment": {"kind": "surgery", "days_to_decide": 30}}
    advice = default_advisor().advise(case)
    plan = build_plan(advice, case, today=TODAY)
    assert plan.decide_by == dt.date(2026, 3, 31)
    assert plan.opinion_by == dt.date(2026, 3, 21)  # two thirds of the time, as SetDeadline says
    assert plan.headline == "Get a second opinion before surgery. You have about 30 days to decide."
    dated = [s for s in plan.steps if s.due is not None]
    assert dated and all(s.due in (plan.opinion_by, plan.decide_by) for s in dated)
    assert all(s.due is None for s in plan.steps if s.id in (StepId.DECIDE, StepId.NOW))


def test_no_dates_without_a_time_to_decide() -> None:
    case = {"diagnosis": {"seriousness": "serious"}, "treatment": {"kind": "surgery"}}
    plan = build_plan(default_advisor().advise(case), case, today=TODAY)
    assert plan.decide_by is None and plan.opinion_by is None
    assert all(s.due is None for s in plan.steps)
    assert "days" not in plan.headline
    with pytest.raises(NoDatesError):
        plan.to_ics()


def test_without_a_case_the_days_come_from_the_deadline_recommendation() -> None:
    advice = Advice(recommendations=(_rec(SetDeadline, Priority.HIGH, decide_within_days=9),))
    plan = build_plan(advice, today=TODAY)
    assert plan.decide_by == dt.date(2026, 3, 10) and plan.opinion_by == dt.date(2026, 3, 7)


def test_today_defaults_to_the_current_date() -> None:
    assert build_plan(Advice()).today == dt.date.today()


def test_questions_are_gathered_once_for_the_doctor_and_for_the_insurer() -> None:
    advice = Advice(
        recommendations=(
            _rec(PrepareQuestions, questions=("What else could it be?", "How sure are you?")),
            _rec(ResolveConflict, questions=("what else could it be", "Why do you differ?")),
            _rec(CheckInsurance, questions=("Do you pay for a second opinion?", "Do you pay for a second opinion?")),
        )
    )
    plan = build_plan(advice, today=TODAY)
    assert plan.doctor_questions == ("What else could it be?", "How sure are you?", "Why do you differ?")
    assert plan.insurer_questions == ("Do you pay for a second opinion?",)


def test_headline_prefers_the_kinds_that_say_what_to_do() -> None:
    conflict = Advice(recommendations=(_rec(SetDeadline, Priority.HIGH), _rec(ResolveConflict)))
    assert build_plan(conflict, today=TODAY).headline == "ResolveConflict title."
    plain = Advice(recommendations=(_rec(GatherRecords), _rec(CheckInsurance)))
    assert build_plan(plain, today=TODAY).headline == "GatherRecords title."  # the first action's title
    case = {"treatment": {"kind": "chemotherapy", "started": "no"}}
    seek = Advice(recommendations=(_rec(SeekSecondOpinion), _rec(ResolveConflict)))
    assert build_plan(seek, case, today=TODAY).headline == (
        "Get a second opinion before chemo. Ask your doctor how long you can take to decide."
    )
    started = {"treatment": {"kind": "chemotherapy", "started": "yes"}}
    assert build_plan(seek, started, today=TODAY).headline == "Get a second opinion."


def test_field_values_join_as_sentences_or_items() -> None:
    from secondopinion.plan import join_values

    assert join_values(("Send the slides.", "Bring a disc?")) == "Send the slides. Bring a disc?"
    assert join_values(("pathologist", "radiologist")) == "pathologist; radiologist"
    assert join_values(("a list", "A sentence.")) == "a list; A sentence."
    advice = Advice(recommendations=(_rec(TalkToDoctor, openers=("Can we talk?", "I want more views.")),))
    md = render(advice, "markdown", today=TODAY)
    assert "  - You could say:\n    - Can we talk?\n    - I want more views.\n" in md
    page = render(advice, "html", today=TODAY)
    assert "<li>You could say:<ul><li>Can we talk?</li><li>I want more views.</li></ul></li>" in page


def test_an_empty_advice_gives_a_plan_without_steps() -> None:
    plan = build_plan(Advice(), today=TODAY)
    assert plan.steps == () and "answers" in plan.headline


# --------------------------------------------------------------------------- renderings


def test_cancer_case_default_text_fits_one_page(advisor: Any) -> None:
    case = _load(CANCER)
    advice = advisor.advise(case)
    text = render(advice, "text", advisor.rulebook, case=case, today=TODAY)
    assert len(text.splitlines()) <= 60
    assert text.startswith("Your plan: Get a second opinion before surgery")
    assert "Saturday, March 21" in text and "Tuesday, March 31" in text
    for rec in advice.recommendations:
        assert " ".join(rec.title.split()) in " ".join(text.split())
    why = render(advice, "text", advisor.rulebook, case=case, today=TODAY, why=True)
    assert len(why.splitlines()) > 2 * len(text.splitlines())


class _Html(HTMLParser):
    VOID = frozenset({"meta", "br", "hr", "img", "link", "input"})

    def __init__(self) -> None:
        super().__init__()
        self.open: list[str] = []
        self.tags: Counter[str] = Counter()
        self.attrs: dict[str, list[dict[str, str | None]]] = {}
        self.text: dict[str, list[str]] = {}
        self.errors: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags[tag] += 1
        self.attrs.setdefault(tag, []).append(dict(attrs))
        if tag not in self.VOID:
            self.open.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.open or self.open[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.open[-1:] or 'nothing'}")
        else:
            self.open.pop()

    def handle_data(self, data: str) -> None:
        if self.open and data.strip():
            self.text.setdefault(self.open[-1], []).append(data.strip())


@pytest.mark.parametrize("path", [CANCER, EXAMPLES / "conflicting-opinions.json"], ids=lambda p: p.stem)
def test_html_plan_is_one_accessible_page_without_scripts(path: Path, advisor: Any) -> None:
    case = _load(path)
    advice = advisor.advise(case)
    plan = build_plan(advice, case, today=TODAY)
    page = render(advice, "html", advisor.rulebook, plan=plan)
    parser = _Html()
    parser.feed(page)
    parser.close()
    assert parser.errors == [] and parser.open == []
    assert page.startswith("<!DOCTYPE html>")
    assert parser.attrs["html"][0]["lang"] == "en"
    assert parser.tags["script"] == 0 and "javascript:" not in page
    assert not any(name.startswith("on") for attrs in parser.attrs.values() for a in attrs for name in a)
    assert not any(a.get("src") or a.get("href") for attrs in parser.attrs.values() for a in attrs)  # self-contained
    assert parser.tags["h1"] == 1 and parser.text["title"] == ["Your second opinion plan"]
    step_headings = [t for t in parser.text["h2"] if t[0].isdigit()]
    assert [h.split(". ", 1)[1].split(" (")[0] for h in step_headings] == [s.title for s in plan.steps]
    assert parser.tags["li"] >= len(plan.actions) + len(plan.doctor_questions) + len(plan.insurer_questions)
    assert parser.text["strong"] == [a.title for a in plan.actions]
    for section in parser.attrs["section"]:
        assert section["aria-labelledby"]
    why = render(advice, "html", advisor.rulebook, plan=plan, why=True)
    for rec in advice.recommendations:
        for rule_id in rec.rule_ids:
            assert rule_id in why and rule_id not in page
    assert ".txt" not in why


def test_html_escapes_text() -> None:
    advice = Advice(recommendations=(_rec(TalkToDoctor, openers=("<script>alert(1)</script>",)),))
    page = render(advice, "html", today=TODAY)
    assert "<script>" not in page and "&lt;script&gt;" in page


def test_ics_parses_back_with_the_right_dates(advisor: Any) -> None:
    case = _load(CANCER)
    advice = advisor.advise(case)
    text = render(advice, "ics", advisor.rulebook, case=case, today=TODAY)
    assert text == advice.to_ics(case, today=TODAY)
    assert "\r\n" in text
    calendar = icalendar.Calendar.from_ical(text)
    events = list(calendar.walk("VEVENT"))
    plan = build_plan(advice, case, today=TODAY)
    days = {e.decoded("dtstart") for e in events}
    assert days == {dt.date(2026, 3, 21), dt.date(2026, 3, 31)} == {plan.opinion_by, plan.decide_by}
    for event in events:
        start, end = event.decoded("dtstart"), event.decoded("dtend")
        assert not isinstance(start, dt.datetime) and end - start == dt.timedelta(days=1)  # all-day
        assert event["uid"] and event.decoded("dtstamp")
        assert list(event.walk("VALARM"))
    assert len({str(e["uid"]) for e in events}) == len(events)
    summaries = [str(e["summary"]) for e in events]
    assert any("decide" in s.lower() for s in summaries)
    assert text == render(advice, "ics", advisor.rulebook, case=case, today=TODAY)  # stable


# --------------------------------------------------------------------------- command line


def test_cli_why_restores_the_reasons(advisor: Any) -> None:
    runner = CliRunner()
    plain = runner.invoke(app, ["advise", str(CANCER), "--today", "2026-03-01"])
    why = runner.invoke(app, ["advise", str(CANCER), "--today", "2026-03-01", "--why"])
    assert plain.exit_code == 0 and why.exit_code == 0
    advice = advisor.advise(_load(CANCER))
    for rec in advice.recommendations:
        for rule_id in rec.rule_ids:
            assert rule_id not in plain.stdout
            assert rule_id in why.stdout
        for guidance in rec.guidance:
            assert guidance in why.stdout
    assert "Why: " in why.stdout and "Source: " in why.stdout and "Guidance: " in why.stdout
    assert "$.treatment" in why.stdout and "$." not in plain.stdout
    assert ".txt" not in why.stdout  # sources by the guide's title


def test_cli_html_and_ics(tmp_path: Path) -> None:
    runner = CliRunner()
    page = runner.invoke(app, ["advise", str(CANCER), "--format", "html"])
    assert page.exit_code == 0 and page.stdout.startswith("<!DOCTYPE html>")
    ics = runner.invoke(app, ["advise", str(CANCER), "--format", "ics", "--today", "2026-03-01"])
    assert ics.exit_code == 0
    days = {e.decoded("dtstart") for e in icalendar.Calendar.from_ical(ics.stdout).walk("VEVENT")}
    assert dt.date(2026, 3, 31) in days
    no_days = tmp_path / "case.json"
    no_days.write_text(json.dumps({"diagnosis": {"seriousness": "serious"}}))
    refused = runner.invoke(app, ["advise", str(no_days), "--format", "ics"])
    assert refused.exit_code == 1
    assert "treatment.days_to_decide" in refused.stderr and "Traceback" not in refused.output
    bad_day = runner.invoke(app, ["advise", str(CANCER), "--today", "March"])
    assert bad_day.exit_code == 2 and "YYYY-MM-DD" in bad_day.stderr


def test_cli_empty_case_prints_the_three_questions_that_matter_most(tmp_path: Path, advisor: Any) -> None:
    from secondopinion.questions import next_questions

    empty = tmp_path / "empty.json"
    empty.write_text("{}")
    result = CliRunner().invoke(app, ["advise", str(empty)])
    assert result.exit_code == 0
    top = next_questions({}, advisor=advisor, limit=3)
    assert len(top) == 3
    lines = result.stdout.splitlines()
    for n, q in enumerate(top, 1):
        assert f"{n}. {q.question}" in lines
    assert "4. " not in result.stdout
    assert "$." not in result.stdout  # plain questions: no case paths
    assert f"secondopinion interview {empty}" in result.stderr
    full = CliRunner().invoke(app, ["advise", str(CANCER)])
    assert "interview" not in full.stderr and "Questions worth asking next" not in full.stdout


# --------------------------------------------------------------------------- CDS Hooks cards


@pytest.mark.parametrize("path", [CANCER, EXAMPLES / "conflicting-opinions.json"], ids=lambda p: p.stem)
def test_cds_card_detail_holds_the_plan_step_and_links_the_rest(path: Path, advisor: Any) -> None:
    from secondopinion.cds_hooks import cards

    advice = advisor.advise(_load(path))
    plan = build_plan(advice)
    response = cards(advice, advisor.rulebook)
    assert len(response["cards"]) == len(advice.recommendations)
    for card, rec in zip(response["cards"], advice.recommendations, strict=True):
        step = plan.step_of(rec.kind)
        assert step is not None
        number = plan.steps.index(step) + 1
        detail = card["detail"]
        assert detail.startswith(f"**Step {number} of {len(plan.steps)}: {step.title}**")
        assert " ".join(rec.detail.split())[:30] in detail
        for rule_id in rec.rule_ids:
            assert rule_id not in detail  # the reasons are behind the links
            assert any(rule_id in link["label"] for link in card["links"])
        assert "**Why**" not in detail and "Guidance" not in detail and ".txt" not in detail
        assert "see the links on this card" in detail
        assert advice.disclaimer in detail
        assert len(detail) < 1200


# --------------------------------------------------------------------------- read as the patient reads it


def _plan_of(case: dict[str, Any]) -> Any:
    return build_plan(default_advisor().advise(case), case, today=TODAY)


def test_an_emergency_plan_gives_no_opinion_date_and_keeps_the_rest_for_later() -> None:
    """Care today: no "0 days to decide", no opinion date after the day to decide, nothing else "now"."""
    case = {"diagnosis": {"seriousness": "serious"}, "treatment": {"kind": "surgery", "days_to_decide": 0}}
    plan = _plan_of(case)
    assert plan.steps[0].title == URGENT_TITLE and plan.steps[0].actions[0].kind == "get_care_now"
    assert "0 days" not in plan.headline and "day" not in plan.headline
    assert plan.opinion_by is None and plan.decide_by is None
    assert all(s.id in (StepId.DECIDE, StepId.THEN) for s in plan.steps)  # no "Do now" beside the emergency
    assert plan.step_of("gather_records") is plan.step(StepId.THEN)
    text = render(default_advisor().advise(case), "text", case=case, today=TODAY, color=False)
    assert "Do now" not in text and "second opinion by" not in text


def test_no_date_to_have_an_opinion_by_when_the_plan_does_not_get_one() -> None:
    minor = {
        "diagnosis": {"seriousness": "minor", "certainty": "confirmed"},
        "treatment": {"kind": "medication", "risk": "low", "days_to_decide": 30},
        "insurance": {"insured": "yes"},
    }
    plan = _plan_of(minor)
    assert plan.step_of("second_opinion_optional") is not None
    assert plan.opinion_by is None and plan.decide_by == dt.date(2026, 3, 31)
    agree = _load(EXAMPLES / "opinions-agree.json")
    plan = _plan_of(agree)
    assert plan.opinion_by is None and plan.decide_by is not None
    text = render(default_advisor().advise(agree), "text", case=agree, today=TODAY, color=False)
    assert "second opinion by" not in text and "Decide on treatment by" in text


@pytest.mark.parametrize("fmt", ["text", "markdown", "html"])
def test_with_two_opinions_in_hand_the_date_is_for_the_next_one(fmt: str) -> None:
    case = _load(EXAMPLES / "conflicting-opinions.json")
    plan = _plan_of(case)
    assert plan.opinion_by is not None
    text = render(default_advisor().advise(case), fmt, case=case, today=TODAY, color=False)
    assert "second opinion by" not in text
    assert "Have your next opinion by" in text


def test_yes_no_fields_read_as_plain_sentences() -> None:
    case = {
        "diagnosis": {"seriousness": "serious", "rare": "yes", "cancer": "no"},
        "treatment": {"kind": "medication", "started": "no"},
        "patient": {"travel": "hard"},
    }
    plan = _plan_of(case)
    fields = [f for a in plan.actions for f in a.fields]
    assert fields and all(v != "yes" for f in fields for v in f.values)
    text = render(default_advisor().advise(case), "text", case=case, today=TODAY, color=False)
    assert ": yes" not in text
    assert "Keep in mind:" in text


@pytest.mark.parametrize(
    "treatment",
    [{"kind": "surgery", "started": "no"}, {"kind": "none"}, {}],
    ids=["surgery", "no-treatment", "treatment-not-given"],
)
def test_asking_for_time_does_not_read_like_a_prognosis(treatment: dict[str, Any]) -> None:
    """"How long you have" can read as how long you have to live; the plan asks how long it is safe to wait."""
    case = {"diagnosis": {"seriousness": "serious"}, "treatment": treatment}
    advice = default_advisor().advise(case)
    assert advice.by_kind("set_deadline") is not None
    text = " ".join(render(advice, "text", case=case, today=TODAY, color=False).split())
    assert "how long you have" not in text
    deadline = build_plan(advice, case, today=TODAY).step_of("set_deadline")
    assert deadline is not None
    action = next(a for a in deadline.actions if a.kind == "set_deadline")
    assert "decide" not in action.title  # nothing to decide may be on the table yet
    assert "safe to wait" in action.detail


def test_listed_items_start_in_lower_case_as_the_plan_joins_them() -> None:
    """Short items are joined by semicolons in one line, so none starts with a capital (names aside)."""
    import re

    import yaml

    bad = []
    for path in sorted((Path(__file__).parent.parent / "rules").glob("[0-9]*.yaml")):
        for rule in yaml.safe_load(path.read_text("utf-8")).get("rules", []):
            fields = ((rule.get("then") or {}).get("recommend") or {}).get("fields") or {}
            for name, values in fields.items():
                if name == "questions" or not isinstance(values, list) or len(values) < 2:
                    continue
                if all(str(v).rstrip().endswith((".", "?", "!")) for v in values):
                    continue  # whole sentences
                bad += [f"{rule['id']}: {v}" for v in values if re.match(r"[A-Z][a-z ]", str(v))]
    assert not bad


def test_differing_cancer_opinions_name_the_cancer_guides_to_ask_about() -> None:
    """G46: when cancer opinions differ, the question on guidelines names the cancer guides; not for other problems."""
    opinions = [
        {"specialty": "surgeon", "institution": "a", "diagnosis": "prostate cancer", "treatment": "surgery"},
        {"specialty": "radiation_oncologist", "institution": "b", "close_associate_of_first": "no",
         "diagnosis": "prostate cancer", "treatment": "radiation"},
    ]
    cancer = {"diagnosis": {"seriousness": "serious", "cancer": "yes"}, "opinions": opinions}
    plan = _plan_of(cancer)
    assert any("National Cancer Institute" in q for q in plan.doctor_questions)
    conflict = plan.recommendation("resolve_conflict")
    assert conflict is not None and conflict.title == "Your doctors disagree - ask each one why"
    other = _load(EXAMPLES / "conflicting-opinions.json")
    assert not any("Cancer" in q for q in _plan_of(other).doctor_questions)


def test_a_cost_check_does_not_head_the_plan_when_there_is_more_to_do() -> None:
    """Two opinions in, one given online: the plan leads with the visit, not with asking an insurer."""
    from secondopinion.recommendations import BeSeenInPerson

    advice = Advice(recommendations=(_rec(CheckInsurance), _rec(BeSeenInPerson)))
    assert build_plan(advice, today=TODAY).headline == "BeSeenInPerson title."
    only = Advice(recommendations=(_rec(CheckInsurance),))
    assert build_plan(only, today=TODAY).headline == "CheckInsurance title."
    case = {
        "diagnosis": {"seriousness": "serious", "certainty": "confirmed"},
        "treatment": {"kind": "surgery", "days_to_decide": 30},
        "opinions": [
            {"specialty": "surgeon", "institution": "a", "mode": "in_person", "diagnosis": "hernia",
             "treatment": "surgery"},
            {"specialty": "surgeon", "institution": "b", "mode": "remote", "diagnosis": "hernia",
             "treatment": "surgery", "close_associate_of_first": "no"},
        ],
    }
    assert "paid" not in _plan_of(case).headline


def test_how_to_send_originals_is_labelled_how() -> None:
    case = _load(CANCER)
    text = render(default_advisor().advise(case), "text", case=case, today=TODAY, color=False)
    assert "Send: Ask" not in text and "How: Ask the lab" in text


def test_after_three_opinions_the_date_does_not_take_one_more_for_granted() -> None:
    """The plan asks the person to stop and think before a fourth doctor; the date line says "if"."""
    case = _load(EXAMPLES / "three-opinions.json")
    plan = _plan_of(case)
    assert plan.step_of("reflect_before_more_opinions") is not None and plan.opinion_by is not None
    assert plan.opinion_due == "If you see one more doctor, do it by"
    text = render(default_advisor().advise(case), "text", case=case, today=TODAY, color=False)
    assert "Have your next opinion by" not in text and "If you see one more doctor, do it by" in text


def test_cli_ics_of_an_emergency_says_care_comes_first(tmp_path: Path) -> None:
    """The case gave 0 days: the refusal must not claim the case gave no time."""
    path = tmp_path / "emergency.json"
    path.write_text(json.dumps({"diagnosis": {"seriousness": "serious"}, "treatment": {"days_to_decide": 0}}))
    refused = CliRunner().invoke(app, ["advise", str(path), "--format", "ics"])
    assert refused.exit_code == 1
    assert "does not give treatment.days_to_decide" not in refused.stderr
    assert "emergency" in refused.stderr and "Traceback" not in refused.output


@pytest.mark.parametrize("fmt", ["text", "markdown", "html"])
def test_a_plan_for_a_child_tells_the_parent_who_you_means(fmt: str) -> None:
    """The actions speak to the patient ("medicines you take", "my case"); a parent reads it for a child."""
    case = _load(EXAMPLES / "child-vague-symptoms.json")
    plan = _plan_of(case)
    assert plan.reader_note is not None and "your child" in plan.reader_note
    text = " ".join(render(default_advisor().advise(case), fmt, case=case, today=TODAY, color=False).split())
    assert "This plan is about your child" in text
    adult = _load(CANCER)
    assert _plan_of(adult).reader_note is None
    assert "your child" not in render(default_advisor().advise(adult), fmt, case=adult, today=TODAY, color=False)


@pytest.mark.parametrize("name", ["conflicting-opinions", "three-opinions", "opinions-agree"])
def test_with_opinions_in_hand_the_plan_starts_from_them(name: str) -> None:
    """Ask why they differ and whether to see a third doctor before booking that visit, not after it."""
    case = _load(EXAMPLES / f"{name}.json")
    plan = _plan_of(case)
    kinds = [a.kind for a in plan.actions]
    for kind in ("resolve_conflict", "get_another_opinion", "proceed_with_confidence"):
        if kind in kinds:
            assert plan.step_of(kind) is plan.steps[0] or plan.step_of(kind).id is StepId.DECIDE
            for later in ("set_deadline", "act_quickly", "talk_to_doctor", "check_insurance"):
                if later in kinds:
                    assert kinds.index(kind) < kinds.index(later)
    assert plan.steps[0].id is StepId.DECIDE


def test_a_third_doctor_comes_after_asking_why_the_first_two_differ() -> None:
    plan = _plan_of(_load(EXAMPLES / "conflicting-opinions.json"))
    first = [a.kind for a in plan.steps[0].actions]
    assert first == ["resolve_conflict", "ask_doctors_to_confer", "get_another_opinion"]


@pytest.mark.parametrize("fmt", ["text", "markdown", "html"])
def test_with_opinions_in_hand_the_questions_are_for_your_doctors(fmt: str) -> None:
    """"Why is your view right for me?" goes to the doctors already seen, not only to a new one."""
    case = _load(EXAMPLES / "conflicting-opinions.json")
    text = render(default_advisor().advise(case), fmt, case=case, today=TODAY, color=False)
    assert "Questions to ask the new doctor" not in text and "Questions to ask your doctors" in text
    one = _load(CANCER)
    text = render(default_advisor().advise(one), fmt, case=one, today=TODAY, color=False)
    assert "Questions to ask the new doctor" in text


def test_the_experts_to_ask_for_are_said_in_plain_words() -> None:
    """"pathologist; radiologist" alone is jargon; the plan says what each one does (the advice keeps the names)."""
    advice = default_advisor().advise(_load(CANCER))
    review = advice.by_kind("expert_review")
    assert review is not None and set(review.reviewers) == {"pathologist", "radiologist"}
    plan = build_plan(advice, _load(CANCER), today=TODAY)
    step = plan.step_of("expert_review")
    assert step is not None
    action = next(a for a in step.actions if a.kind == "expert_review")
    values = [v for f in action.fields for v in f.values]
    assert "pathologist (checks tissue and cells)" in values
    assert "radiologist (reads scans)" in values
