"""The guided interview: through the Python API and as a scripted terminal session."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from secondopinion import Advice, Interview, default_advisor, dump_case, load_case
from secondopinion.cli import app
from secondopinion.questions import NextQuestion, next_questions

EXAMPLES = Path(__file__).parent.parent / "examples" / "cases"
CANCER = EXAMPLES / "cancer-surgery.json"


def _first_answer(interview: Interview, question: NextQuestion) -> str | int:
    return 30 if interview.wants_number(question) else interview.choices(question)[0].value


def _run_through(interview: Interview, limit: int = 60) -> list[tuple[str, str | int]]:
    """Answer every question with its first choice (30 for numbers), as a person clicking through would."""
    given = []
    while (question := interview.next_question()) is not None:
        value = _first_answer(interview, question)
        interview.answer(question, value)
        given.append((question.path, value))
        assert len(given) <= limit, "the interview should end"
    return given


def test_api_asks_only_open_questions_each_once_and_reaches_the_advise_result() -> None:
    start = json.loads(CANCER.read_text("utf-8"))
    known = dump_case(load_case(start))
    interview = Interview(start)
    assert interview.next_question() == next_questions(start)[0]  # the ranking's top question comes first
    given = _run_through(interview)
    assert given, "the cancer case leaves questions open"
    paths = [p for p, _ in given]
    assert len(paths) == len(set(paths))  # never asks twice
    for path in paths:  # it never asks for a fact the starting case has
        if path.startswith("$.opinions["):
            index, attr = int(path.split("[")[1].split("]")[0]), path.rsplit(".", 1)[1]
            assert known["opinions"][index].get(attr) in (None, "unknown"), path
        else:
            section, attr = path[2:].split(".", 1)
            assert known[section].get(attr) in (None, "unknown"), path
    case = interview.to_case()
    assert default_advisor().advise(case) == interview.advice
    assert Interview(case).next_question() is None  # nothing left that would change the advice
    assert dict(interview.answered) == dict(given)


def test_api_skip_and_back() -> None:
    interview = Interview()
    first = interview.next_question()
    assert first is not None
    interview.skip(first)
    second = interview.next_question()
    assert second is not None and second.path != first.path
    assert first.path not in {q.path for q in interview.questions()}  # a skipped question is not asked again
    assert interview.skipped == (first.path,)
    before = interview.advice
    change = interview.answer(second, _first_answer(interview, second))
    assert interview.advice != before or not change
    again = interview.back()
    assert again is not None and again.path == second.path
    assert interview.advice == before and interview.answered == {}
    assert interview.back() is not None and interview.back() is None  # back past the skip, then nothing to undo
    assert interview.next_question() == first


def test_api_answer_reports_the_change_in_titles() -> None:
    interview = Interview()
    question = next(q for q in interview.questions() if q.path == "$.diagnosis.cancer")
    change = interview.answer(question, "yes")
    assert change and not change.removed
    assert set(change.added) == {r.title for r in interview.advice.recommendations}


def test_api_refuses_bad_answers_naming_the_field_never_the_value() -> None:
    interview = Interview()
    question = interview.next_question()
    assert question is not None
    with pytest.raises(ValueError, match=r"\$\.") as caught:
        interview.answer(question, "SECRET-VALUE")
    assert "SECRET-VALUE" not in str(caught.value)
    interview.skip(question)
    with pytest.raises(ValueError, match="not an open question"):
        interview.answer(question, interview.choices(question)[0].value)
    number = Interview()
    while not any(number.wants_number(q) for q in number.questions()):  # answer until a number is asked for
        nxt = number.next_question()
        assert nxt is not None, "some interview should ask for the days to decide"
        number.answer(nxt, number.choices(nxt)[0].value)
    days = next(q for q in number.questions() if number.wants_number(q))
    with pytest.raises(ValueError, match="whole number"):
        number.answer(days, -3)
    assert number.answer(days, 20) is not None
    assert number.to_case().treatment.days_to_decide == 20


def test_terminal_session_end_to_end(tmp_path: Path) -> None:
    saved = tmp_path / "case.json"
    # Answer the first question "1", type nonsense, answer the second "3", skip one, go back to it, answer
    # "20" (the days to decide), then stop with "d". (After "1", an emergency, only the days to decide
    # would be left to ask: nothing else changes an emergency's advice.)
    script = "1\nmaybe\n3\ns\nb\n20\nd\n"
    result = CliRunner().invoke(app, ["interview", "--out", str(saved), "--today", "2026-03-01"], input=script)
    assert result.exit_code == 0, result.output
    assert "Question 1:" in result.stdout and "Your plan now:" in result.stdout
    assert "Please type 1-" in result.stdout
    assert "Your plan:" in result.stdout and saved.exists()
    # The same answers through the Python API give the same case.
    api = Interview()
    q1 = api.next_question()
    assert q1 is not None
    api.answer(q1, api.choices(q1)[0].value)
    q2 = api.next_question()
    assert q2 is not None
    api.answer(q2, api.choices(q2)[2].value)
    q3 = api.next_question()
    assert q3 is not None
    assert api.wants_number(q3)  # the days to decide
    api.answer(q3, 20)
    assert load_case(saved.read_text("utf-8")) == api.to_case()
    # And `advise` on the saved case reaches the same advice as the interview.
    advised = CliRunner().invoke(app, ["advise", str(saved), "--format", "json"])
    assert advised.exit_code == 0
    assert Advice.from_json(advised.stdout) == api.advice


def test_terminal_session_runs_to_the_end_and_matches_advise(tmp_path: Path) -> None:
    saved = tmp_path / "case.json"
    api = Interview(json.loads(CANCER.read_text("utf-8")))
    given = _run_through(api)
    replies = ["30" if isinstance(v, int) else "1" for _, v in given]
    result = CliRunner().invoke(app, ["interview", str(CANCER), "--out", str(saved)], input="\n".join(replies) + "\n")
    assert result.exit_code == 0, result.output
    assert "No other answer would change the plan." in result.stdout
    assert result.stdout.count("Question ") == len(given)
    advised = CliRunner().invoke(app, ["advise", str(saved), "--format", "json"])
    assert Advice.from_json(advised.stdout) == api.advice


def test_terminal_session_stops_cleanly_at_end_of_input(tmp_path: Path) -> None:
    saved = tmp_path / "case.json"
    result = CliRunner().invoke(app, ["interview", "--out", str(saved)], input="1\n")
    assert result.exit_code == 0, result.output
    assert "Stopped." in result.stdout and "Traceback" not in result.output
    assert load_case(saved.read_text("utf-8")).diagnosis is not None
    unsaved = CliRunner().invoke(app, ["interview"], input="d\n")
    assert unsaved.exit_code == 1 and "not saved" in unsaved.stderr


def test_interview_of_a_bad_case_file_lists_paths(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"diagnosis": {"seriousness": "SECRET"}}))
    result = CliRunner().invoke(app, ["interview", str(bad)])
    assert result.exit_code == 1 and "diagnosis" in result.stderr and "SECRET" not in result.stderr
