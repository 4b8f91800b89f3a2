"""advise(): forward chaining, typed recommendations, merging, ordering and JSON round trips."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cattrs
import pytest

import secondopinion
from secondopinion import KINDS, Advice, Priority, load_case
from secondopinion.recommendations import (
    Derivation,
    SeekSecondOpinion,
    SendOriginalMaterials,
    SetDeadline,
    SourceRef,
    merge_recommendations,
)

EXAMPLES = Path(__file__).parent.parent / "examples" / "cases"
CONFLICT = EXAMPLES / "conflicting-opinions.json"


def test_advise_accepts_case_dict_and_json_alike() -> None:
    data = {"diagnosis": {"seriousness": "serious"}}
    a = secondopinion.advise(data)
    assert secondopinion.advise(json.dumps(data)) == a
    assert secondopinion.advise(load_case(data)) == a
    assert "seek_second_opinion" in a.kinds


def test_bad_case_raises_case_error() -> None:
    with pytest.raises(secondopinion.CaseError):
        secondopinion.advise({"diagnosis": {"seriousness": 3}})


def test_conflict_is_derived_by_a_join_and_consumed_by_later_rules() -> None:
    advice = secondopinion.advise(CONFLICT.read_text())
    conflict = [f for f in advice.derived_facts if f.type == "opinions_conflict"]
    assert len(conflict) == 1
    (how,) = conflict[0].derivations
    assert how.rule_id == "CONFLICT-JOIN"
    assert dict(how.matched) == {"a": "opinion[0]", "b": "opinion[1]"}
    assert conflict[0].attributes == {"first": 0, "second": 1}
    resolve = advice.by_kind("resolve_conflict")
    assert resolve is not None
    assert conflict[0].fid in [fid for d in resolve.derivation for fid in d.matched.values()]


def test_agreeing_opinions_give_confidence_not_conflict_advice() -> None:
    same = {"diagnosis": "gallstones", "treatment": "surgery"}
    advice = secondopinion.advise({"opinions": [same, same]})
    assert "proceed_with_confidence" in advice.kinds
    assert "resolve_conflict" not in advice.kinds


def test_unless_is_checked_after_all_rules_ran() -> None:
    # AGREE-JOIN fires for opinions 0 and 1 before the conflict with opinion 2 is derived;
    # the recommendation must still be held back, whatever the firing order.
    same = {"diagnosis": "gallstones", "treatment": "surgery"}
    other = {"diagnosis": "ulcer", "treatment": "medication"}
    for opinions in ([same, same, other], [other, same, same], [same, other, same]):
        advice = secondopinion.advise({"opinions": opinions})
        assert "proceed_with_confidence" not in advice.kinds
        assert "PROCEED-WHEN-AGREE" in [d.rule_id for d in advice.suppressed]
        assert "resolve_conflict" in advice.kinds


def test_high_stakes_is_a_derived_fact_later_rules_build_on() -> None:
    advice = secondopinion.advise({"treatment": {"kind": "surgery"}, "insurance": {"insured": "yes"}})
    stakes = [f for f in advice.derived_facts if f.type == "high_stakes"]
    assert [f.attributes["reason"] for f in stakes] == ["surgery"]
    indicated = [f for f in advice.derived_facts if f.type == "second_opinion_indicated"]
    assert indicated and indicated[0].derivations[0].matched == {"hs": stakes[0].fid}
    seeking = [f for f in advice.derived_facts if f.type == "seeking_opinion"]
    assert len(seeking) == 1
    assert {d.matched["why"] for d in seeking[0].derivations} == {indicated[0].fid}
    insurance = advice.by_kind("check_insurance")
    assert insurance is not None
    # the how-to rule builds on the single seeking_opinion hub, once, not once per reason
    assert {d.matched["go"] for d in insurance.derivation} == {seeking[0].fid}
    rule_ids = [d.rule_id for d in insurance.derivation]
    assert len(rule_ids) == len(set(rule_ids))


def test_how_to_rules_fire_once_however_many_reasons() -> None:
    many = {
        "diagnosis": {"seriousness": "serious", "cancer": "yes", "rare": "yes"},
        "treatment": {"kind": "surgery", "risk": "high", "long_term": "yes", "several_options": "yes"},
        "patient": {"wants_all_options": "yes"},
        "doctor": {"trust": "low"},
        "insurance": {"insured": "yes"},
    }
    advice = secondopinion.advise(many)
    reasons = {f.attributes["reason"] for f in advice.derived_facts if f.type == "second_opinion_indicated"}
    assert len(reasons) >= 4
    insurance = advice.by_kind("check_insurance")
    assert insurance is not None
    assert [d.rule_id for d in insurance.derivation].count("CALL-INSURER-FIRST") == 1


def test_minor_case_gets_the_short_answer_only() -> None:
    advice = secondopinion.advise((EXAMPLES / "minor-problem.json").read_text())
    assert advice.kinds == ("second_opinion_optional",)


def test_minor_case_with_a_stronger_reason_is_not_optional() -> None:
    advice = secondopinion.advise(
        {"diagnosis": {"seriousness": "minor"}, "treatment": {"kind": "medication", "risk": "high"}}
    )
    assert "second_opinion_optional" not in advice.kinds
    assert "seek_second_opinion" in advice.kinds or "set_deadline" in advice.kinds


def test_duplicates_merge_into_one_recommendation_citing_both_rules() -> None:
    advice = secondopinion.advise(
        {
            "diagnosis": {"seriousness": "serious"},
            "treatment": {"kind": "surgery"},
            "records": {"biopsy_slides": "yes", "imaging": "film"},
        }
    )
    seek = advice.by_kind("seek_second_opinion")
    assert isinstance(seek, SeekSecondOpinion)
    assert {"SEEK-SERIOUS-DIAGNOSIS", "SEEK-BEFORE-SURGERY"} <= set(seek.rule_ids)
    assert {"G01", "G02"} <= set(seek.guidance)
    originals = advice.by_kind("send_original_materials")
    assert isinstance(originals, SendOriginalMaterials)
    assert any("slides" in i for i in originals.items) and any("scan" in i for i in originals.items)
    assert len([k for k in advice.kinds if k == "seek_second_opinion"]) == 1


def test_deadline_is_computed_from_the_time_to_decide() -> None:
    advice = secondopinion.advise({"diagnosis": {"seriousness": "serious"}, "treatment": {"days_to_decide": 30}})
    deadline = advice.by_kind("set_deadline")
    assert isinstance(deadline, SetDeadline)
    assert deadline.decide_within_days == 30
    assert deadline.get_opinion_within_days == 23
    assert deadline.ask_doctor_how_long is False


def test_every_recommendation_cites_guidance_and_sources() -> None:
    for path in EXAMPLES.glob("*.json"):
        for rec in secondopinion.advise(path.read_text()).recommendations:
            assert rec.guidance and rec.sources and rec.derivation, (path.name, rec.kind)
            assert len(rec.title) < 140


def test_order_is_priority_then_kind_and_deterministic() -> None:
    advice = secondopinion.advise(CONFLICT.read_text())
    ranks = [r.priority.rank for r in advice.recommendations]
    assert ranks == sorted(ranks)
    order = list(KINDS)
    for a, b in zip(advice.recommendations, advice.recommendations[1:], strict=False):
        if a.priority == b.priority:
            assert order.index(a.kind) < order.index(b.kind)
    assert secondopinion.advise(CONFLICT.read_text()).to_json() == advice.to_json()


def test_merge_keeps_most_urgent_title_and_unions_lists() -> None:
    low = SendOriginalMaterials(
        title="low",
        detail="d",
        priority=Priority.LOW,
        items=("a",),
        guidance=("G36",),
        derivation=(Derivation("R2", {"x": "records"}),),
    )
    high = SendOriginalMaterials(
        title="high",
        detail="d",
        priority=Priority.HIGH,
        items=("b", "a"),
        guidance=("G35",),
        sources=(SourceRef("f", "s"),),
        derivation=(Derivation("R1", {"x": "records"}),),
    )
    (merged,) = merge_recommendations([low, high])
    assert merged.title == "high" and merged.priority is Priority.HIGH
    assert merged.items == ("b", "a")  # type: ignore[attr-defined]
    assert merged.guidance == ("G35", "G36")
    assert [d.rule_id for d in merged.derivation] == ["R1", "R2"]


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.json")), ids=lambda p: p.name)
def test_advice_json_round_trip_is_lossless(path: Path) -> None:
    advice = secondopinion.advise(path.read_text())
    data = json.loads(advice.to_json())
    for rec in data["recommendations"]:
        assert {"kind", "title", "detail", "priority", "guidance", "sources"} <= set(rec)
    again = Advice.from_json(advice.to_json())
    assert again == advice
    assert [type(r) for r in again.recommendations] == [type(r) for r in advice.recommendations]


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_every_kind_round_trips_with_its_kind_first(kind: str) -> None:
    cls = KINDS[kind]
    extra = {f.name: ("x",) for f in cls.specific_fields() if f.default == ()}
    rec = cls(title="T", detail="D", guidance=("G01",), derivation=(Derivation("R", {"c": "case"}),), **extra)
    data = Advice(recommendations=(rec,)).to_dict()
    assert list(data["recommendations"][0])[:3] == ["kind", "title", "detail"]
    assert data["recommendations"][0]["kind"] == kind
    assert Advice.from_dict(json.loads(json.dumps(data))) == Advice(recommendations=(rec,))


def test_unknown_kind_is_refused_when_reading_advice_back() -> None:
    data = Advice(recommendations=(SeekSecondOpinion(title="T", detail="D"),)).to_dict()
    data["recommendations"][0]["kind"] = "no_such_kind"
    with pytest.raises(cattrs.ClassValidationError) as caught:
        Advice.from_dict(data)
    expected = "invalid value for type, expected Recommendation @ $.recommendations[0]"
    assert cattrs.transform_error(caught.value) == [expected]


def test_cli_advise_json_on_the_conflict_example_goes_through_the_join() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "secondopinion", "advise", str(CONFLICT), "--format", "json"],
        capture_output=True,
        text=True,
        check=True,
    )
    data = json.loads(out.stdout)
    conflict_fids = {f["fid"] for f in data["derived_facts"] if f["type"] == "opinions_conflict"}
    assert conflict_fids
    through_join = [
        r["kind"]
        for r in data["recommendations"]
        if any(set(d["matched"].values()) & conflict_fids for d in r["derivation"])
    ]
    assert "resolve_conflict" in through_join


def test_cli_advise_text_shows_reasons_and_sources() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "secondopinion", "advise", str(CONFLICT), "--why"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "not medical advice" in out.stdout
    assert "Why:" in out.stdout and "CONFLICT-ASK-WHY" in out.stdout
    assert 'Source: Second Opinions 101, "' in out.stdout and ".txt" not in out.stdout  # the guide's title
    assert "\x1b[" not in out.stdout  # no colour codes when not a terminal
