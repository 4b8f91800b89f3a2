"""The clinical scenario suite (tests/scenarios/*.yaml) and its runner, secondopinion.scenarios.

Each scenario is one test: the advice on its case must hold every expectation
(kinds that must and must not appear, the cap, the first kind, field, figure
and wording checks). When a rule change makes one fail, read its ``reason``
before changing the expectation: the expectation is the clinical judgement,
the rules are what must follow it. ``python -m secondopinion.scenarios --report``
shows all of them at once.

When ``test_docs_page_is_current`` fails, run
``python -m secondopinion.scenarios --report --format markdown --write docs/scenarios.md``
and commit the result.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from secondopinion import advise
from secondopinion.case import Urgency
from secondopinion.recommendations import (
    KINDS,
    Advice,
    Evidence,
    Priority,
    Recommendation,
    SetDeadline,
    merge_recommendations,
)
from secondopinion.rulebook import Rulebook
from secondopinion.scenarios import (
    Outcome,
    Scenario,
    ScenarioError,
    load_scenarios,
    main,
    render_report,
    run_scenario,
    run_scenarios,
)

ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = ROOT / "tests" / "scenarios"
DOCS_PAGE = ROOT / "docs" / "scenarios.md"
ALL = load_scenarios([SCENARIOS])


def _explain(outcome: Outcome) -> str:
    s = outcome.scenario
    lines = [f"scenario {s.id} ({s.source}) deviates. Reason: {s.reason}"]
    if outcome.missing:
        lines.append(f"  missing: {', '.join(outcome.missing)}")
    if outcome.unexpected:
        lines.append(f"  unexpected: {', '.join(outcome.unexpected)}")
    lines.extend(f"  {p}" for p in outcome.problems)
    lines.append(f"  got ({outcome.count}): {', '.join(outcome.kinds)}")
    return "\n".join(lines)


@pytest.mark.parametrize("scenario", ALL, ids=[s.id for s in ALL])
def test_scenario(scenario: Scenario) -> None:
    outcome = run_scenario(scenario)
    assert not outcome.deviates, _explain(outcome)


# --------------------------------------------------------------------------- the suite's own shape


def test_suite_covers_the_edges_of_issue_11() -> None:
    assert len(ALL) >= 60
    # 0 to 5 opinions, emergencies by urgency and by days, urgent cases, the empty case.
    assert {len(s.case.opinions) for s in ALL} >= {0, 1, 2, 3, 4, 5}
    assert any(s.case.treatment.urgency is Urgency.EMERGENCY for s in ALL)
    assert any(s.case.treatment.days_to_decide in (0, 1) for s in ALL)
    assert any(s.case.treatment.days_to_decide in range(2, 8) for s in ALL)
    assert any(s.case.treatment.urgency is Urgency.URGENT for s in ALL)
    assert any(s.case == type(s.case)() for s in ALL)
    # Synonyms, codes, associates, same place, remote reviews, every area file.
    opinions = [o for s in ALL for o in s.case.opinions]
    assert any(o.diagnosis_code is not None for o in opinions)
    assert any(o.close_associate_of_first.value == "yes" for o in opinions)
    assert any(o.mode.value == "remote" for o in opinions)
    assert len({s.area for s in ALL}) >= 8


def test_the_suite_reaches_every_guidance_item() -> None:
    # Short lists must not lose guidance: across all scenarios, the advice cites every item (G01 to G51).
    book = Rulebook.load()
    cited = {g for s in ALL for rec in advise(s.case).recommendations for g in rec.guidance}
    assert sorted(set(book.guidance) - cited) == []


def test_every_scenario_says_why() -> None:
    for scenario in ALL:
        assert scenario.reason and len(scenario.reason) <= 200, scenario.id
        assert scenario.must or scenario.must_not, scenario.id


def test_docs_page_is_current() -> None:
    expected = render_report(run_scenarios(ALL), "markdown")
    assert DOCS_PAGE.read_text("utf-8") == expected, (
        "docs/scenarios.md is stale: run `python -m secondopinion.scenarios --report --format markdown "
        "--write docs/scenarios.md` and commit the result"
    )


# --------------------------------------------------------------------------- the runner's checks


def _scenario(tmp_path: Path, body: str, name: str = "s.yaml") -> Scenario:
    path = tmp_path / name
    path.write_text("area: test\nscenarios:\n" + body, "utf-8")
    (only,) = load_scenarios([path])
    return only


MINOR = "{diagnosis: {seriousness: minor, certainty: confirmed}, treatment: {kind: medication, risk: low}}"
SERIOUS_30 = "{diagnosis: {seriousness: serious}, treatment: {kind: surgery, days_to_decide: 30}}"


def test_a_scenario_that_holds(tmp_path: Path) -> None:
    s = _scenario(
        tmp_path,
        f"""
  - id: minor
    reason: minor.
    case: {MINOR}
    must: [second_opinion_optional]
    must_not: [seek_second_opinion]
    max_recommendations: 3
    first: second_opinion_optional
""",
    )
    outcome = run_scenario(s)
    assert (outcome.deviates, outcome.status, outcome.missing, outcome.unexpected) == (False, "ok", (), ())
    assert outcome.kinds[0] == "second_opinion_optional"


class _FixedAdvisor:
    """Gives the same advice whatever the case, so the runner's checks are tested apart from the rules."""

    def __init__(self, *recs: Recommendation) -> None:
        self.advice = Advice(recommendations=merge_recommendations(recs))

    def advise(self, case: object) -> Advice:
        return self.advice


def _rec(kind: str, title: str = "A title", detail: str = "A detail.", **fields: Any) -> Recommendation:
    return KINDS[kind](title=title, detail=detail, **fields)


FIXED = _FixedAdvisor(
    _rec("seek_second_opinion", priority=Priority.HIGH, about=("your diagnosis",), evidence=(Evidence("E3", "x"),)),
    _rec("set_deadline", decide_within_days=30, detail="Leave time for both of you."),
    _rec("expert_review", reviewers=("pathologist", "radiologist"), evidence=(Evidence("E1", "y"),)),
    _rec("gather_records", priority=Priority.LOW, documents=("Your bother list",)),
)


def _run_fixed(tmp_path: Path, checks: str, *, must: str = "[]", must_not: str = "[]") -> Outcome:
    s = _scenario(
        tmp_path,
        f"""
  - id: fixed
    reason: r.
    case: {{}}
    must: {must}
    must_not: {must_not}
    max_recommendations: 4
"""
        + checks,
    )
    return run_scenario(s, FIXED)  # type: ignore[arg-type]


def test_each_kind_of_deviation_is_reported(tmp_path: Path) -> None:
    outcome = _run_fixed(
        tmp_path,
        """    first: gather_records
    fields:
      set_deadline: {decide_within_days: {lt_field: get_opinion_within_days}}
      seek_second_opinion: {about: {contains: treatment}}
      expert_review: {reviewers: {not_contains: [surgeon, RADIOLOGIST]}}
    no_evidence: [E1, E4]
    no_text: [both]
""",
        must="[second_opinion_optional, seek_second_opinion]",
        must_not="[set_deadline, get_another_opinion]",
    )
    deadline = FIXED.advice.by_kind("set_deadline")
    assert isinstance(deadline, SetDeadline)
    opinion_by = deadline.get_opinion_within_days  # the library's rule for it, whatever it is
    assert opinion_by is not None and opinion_by < 30
    assert outcome.missing == ("second_opinion_optional",)
    assert outcome.unexpected == ("set_deadline",)
    assert outcome.problems == (
        "first is seek_second_opinion, not gather_records",
        f"set_deadline.decide_within_days (30) not below get_opinion_within_days ({opinion_by})",
        "seek_second_opinion.about lacks 'treatment'",
        "expert_review.reviewers holds 'RADIOLOGIST'",
        "E1 shown on expert_review",
        "'both' in set_deadline",
    )
    assert outcome.deviates and outcome.count == 4


def test_checks_that_hold_report_nothing(tmp_path: Path) -> None:
    outcome = _run_fixed(
        tmp_path,
        """    first: seek_second_opinion
    fields:
      set_deadline: {get_opinion_within_days: {lt_field: decide_within_days}}
      seek_second_opinion: {about: {contains: DIAGNOSIS}}
      expert_review: {reviewers: {not_contains: surgeon}}
      gather_records: {documents: {contains: [bother, LIST]}}
      get_another_opinion: {opinion_number: {contains: "3"}}
    no_evidence: [E2, E4]
    no_text: [ou, you r]
""",
        must="[seek_second_opinion, gather_records]",
        must_not="[get_another_opinion]",
    )
    # "ou" is not a whole word anywhere; "bother" does not hold the word "both"; a check on a kind not given passes.
    assert (outcome.deviates, outcome.status) == (False, "ok")


def test_over_the_cap(tmp_path: Path) -> None:
    s = _scenario(
        tmp_path,
        "  - id: cap\n    reason: r.\n    case: {}\n    must: []\n    must_not: []\n    max_recommendations: 3\n",
    )
    assert run_scenario(s, FIXED).problems == ("4 > cap 3",)  # type: ignore[arg-type]


def test_an_unset_number_passes_lt_field(tmp_path: Path) -> None:
    s = _scenario(
        tmp_path,
        "  - id: unset\n    reason: r.\n    case: {}\n    must: []\n    must_not: []\n    max_recommendations: 3\n"
        "    fields: {set_deadline: {get_opinion_within_days: {lt_field: decide_within_days}}}\n",
    )
    advisor = _FixedAdvisor(_rec("set_deadline", ask_doctor_how_long=True))
    assert run_scenario(s, advisor).problems == ()  # type: ignore[arg-type]


def test_a_kind_the_library_does_not_know_is_a_deviation(tmp_path: Path) -> None:
    # A misspelt kind in must_not would otherwise pass for ever.
    s = _scenario(
        tmp_path,
        f"""
  - id: typo
    reason: typo.
    case: {MINOR}
    must: []
    must_not: [seek_secnd_opinion]
    max_recommendations: 3
""",
    )
    assert run_scenario(s).problems == ("unknown kind seek_secnd_opinion",)


# --------------------------------------------------------------------------- bad scenario files


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("  - id: a\n    reason: r\n    case: {}\n    must: []\n    must_not: []\n", "max_recommendations is required"),
        (
            "  - id: a\n    reason: r\n    case: {}\n    must: [Not A Kind]\n    must_not: []\n"
            "    max_recommendations: 1\n",
            "must must be a list of kind names",
        ),
        (
            "  - id: a\n    reason: r\n    case: {}\n    must: []\n    must_not: []\n    max_recommendations: 1\n"
            "    colour: red\n",
            "unknown key colour",
        ),
        (
            "  - id: a\n    reason: r\n    case: {}\n    must: [set_deadline]\n    must_not: [set_deadline]\n"
            "    max_recommendations: 1\n",
            "set_deadline is in both must and must_not",
        ),
        (
            "  - id: a\n    reason: r\n    case: {}\n    must: []\n    must_not: []\n    max_recommendations: 1\n"
            "    fields: {set_deadline: {days: {lt_field: decide_within_days}}}\n",
            "set_deadline has no field days @ fields.set_deadline.days",
        ),
        (
            "  - id: a\n    reason: r\n    case: {}\n    must: []\n    must_not: []\n    max_recommendations: 1\n"
            "    fields: {gather_records: {get_opinion_within_days: {contains: '3'}}}\n",
            "gather_records has no field get_opinion_within_days",
        ),
        (
            "  - id: a\n    reason: r\n    case: {}\n    must: []\n    must_not: []\n    max_recommendations: 1\n"
            "    fields: {set_deadline: {decide_within_days: {below: 3}}}\n",
            "a check must be one of",
        ),
        (
            "  - id: a\n    reason: r\n    case: {}\n    must: []\n    must_not: []\n    max_recommendations: 1\n"
            "    no_evidence: [breast]\n",
            "no_evidence must be a list of evidence ids",
        ),
        ("  - id: Not_An_Id\n", "id must be lower-case words joined by hyphens"),
    ],
)
def test_bad_scenarios_name_file_line_and_id(tmp_path: Path, body: str, message: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(
        "area: test\nscenarios:\n  - id: fine\n    reason: r\n    case: {}\n    must: []\n"
        "    must_not: []\n    max_recommendations: 1\n" + body,
        "utf-8",
    )
    with pytest.raises(ScenarioError) as info:
        load_scenarios([path])
    (problem,) = info.value.problems
    assert problem.startswith(f"{path}:9: ")
    assert message in problem


def test_a_bad_case_names_its_path_but_never_its_value(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(
        "area: test\nscenarios:\n  - id: leaky\n    reason: r\n    must: []\n    must_not: []\n"
        "    max_recommendations: 1\n    case: {diagnosis: {seriousness: secret-value-123}, patient: {name: Jane}}\n",
        "utf-8",
    )
    with pytest.raises(ScenarioError) as info:
        load_scenarios([path])
    text = str(info.value)
    assert "secret-value-123" not in text and "Jane" not in text
    assert f"{path}:3: scenario leaky: invalid value, expected Seriousness" in text
    assert "@ case.diagnosis.seriousness" in text
    assert "unknown field(s): name @ case.patient" in text


def test_yaml_syntax_errors_and_duplicate_ids(tmp_path: Path) -> None:
    broken = tmp_path / "a.yaml"
    broken.write_text("area: test\nscenarios:\n  - id: [unclosed\n", "utf-8")
    with pytest.raises(ScenarioError) as info:
        load_scenarios([broken])
    assert info.value.problems[0].startswith(f"{broken}:")
    assert "not valid YAML" in info.value.problems[0]
    one = (
        "scenarios:\n  - id: same\n    area: x\n    reason: r\n    case: {}\n    must: []\n    must_not: []\n"
        "    max_recommendations: 1\n"
    )
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "1.yaml").write_text(one, "utf-8")
    (tmp_path / "b" / "2.yaml").write_text(one, "utf-8")
    with pytest.raises(ScenarioError, match=r"2\.yaml:2: scenario same: id also used at .*1\.yaml:2"):
        load_scenarios([tmp_path / "b"])


def test_a_missing_path_is_a_file_not_found_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        load_scenarios([tmp_path / "nope.yaml"])


# --------------------------------------------------------------------------- command line and report


def _run(args: list[str]) -> tuple[int, str]:
    out = io.StringIO()
    code = main(args, out=out.write)
    return code, out.getvalue()


def _write(tmp_path: Path, must: str) -> Path:
    path = tmp_path / "one.yaml"
    path.write_text(
        f"area: test\nscenarios:\n  - id: minor\n    reason: r\n    case: {MINOR}\n    must: [{must}]\n"
        "    must_not: []\n    max_recommendations: 3\n",
        "utf-8",
    )
    return path


def test_cli_exit_codes_and_text_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, text = _run(["--report", str(_write(tmp_path, "second_opinion_optional"))])
    assert code == 0
    assert text.splitlines()[0].split() == ["id", "area", "count", "cap", "missing", "unexpected", "status"]
    assert text.rstrip().endswith("1 scenarios, 0 deviating, median 1 recommendations")
    code, text = _run(["--report", str(_write(tmp_path, "seek_second_opinion"))])
    assert code == 1
    assert "seek_second_opinion" in text and "1 deviating" in text
    assert _run(["--report", str(tmp_path / "missing.yaml")])[0] == 2
    assert "no such scenario file" in capsys.readouterr().err
    (tmp_path / "bad.yaml").write_text("scenarios: 3\n", "utf-8")
    assert _run([str(tmp_path / "bad.yaml")])[0] == 1
    assert "bad.yaml:1: a scenario file must be a mapping" in capsys.readouterr().err


def test_cli_writes_markdown(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    code, text = _run(["--report", "--format", "markdown", "--write", str(page), str(_write(tmp_path, ""))])
    assert code == 0
    assert text == "1 scenarios, 0 deviating, median 1 recommendations\n"
    written = page.read_text("utf-8")
    assert written.startswith("# Clinical scenarios")
    assert "| minor | test | 1 | 3 | - | - | ok |" in written
    assert "- `minor`: r" in written


def test_module_runs_as_a_program(tmp_path: Path) -> None:
    # The real entry point, in a fresh interpreter: no traceback for a bad file, exit 1.
    bad = tmp_path / "bad.yaml"
    bad.write_text("area: x\nscenarios:\n  - id: a\n", "utf-8")
    done = subprocess.run(
        [sys.executable, "-m", "secondopinion.scenarios", "--report", str(bad)],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert f"{bad}:3: scenario a: reason is required" in done.stderr


def test_report_rows_match_outcomes() -> None:
    outcomes = run_scenarios(ALL[:3])
    text = render_report(outcomes)
    for outcome in outcomes:
        row = next(line for line in text.splitlines() if line.startswith(outcome.scenario.id + " "))
        assert row.split()[2:4] == [str(outcome.count), str(outcome.scenario.max_recommendations)]


_ADVISE_ALL = """
import json, sys
import secondopinion
from secondopinion.scenarios import load_scenarios
scenarios = load_scenarios([sys.argv[1]])
order = reversed(scenarios) if sys.argv[2] == "reversed" else scenarios
print(json.dumps({s.id: list(secondopinion.advise(s.case).kinds) for s in order}, sort_keys=True))
"""


@pytest.mark.parametrize("seed", ["1", "2", "3"])
def test_advice_on_every_scenario_is_the_same_in_any_process_and_order(seed: str) -> None:
    # The advice must not depend on hash randomisation or on which cases an engine saw before.
    here = {s.id: list(o.kinds) for s, o in zip(ALL, run_scenarios(ALL), strict=True)}
    env = {**os.environ, "PYTHONHASHSEED": seed}
    done = subprocess.run(
        [sys.executable, "-c", _ADVISE_ALL, str(SCENARIOS), "reversed"],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
        env=env,
    )
    there = json.loads(done.stdout)
    differ = sorted(sid for sid in here if here[sid] != there.get(sid))
    assert differ == [], f"advice differs with PYTHONHASHSEED={seed}, cases in reverse order: {differ}"
