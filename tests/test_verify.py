"""Tests for secondopinion.verify: each check finds its deliberately broken pack and names the right rules.

The packs in tests/packs/ load cleanly (the loader cannot see these defects);
each holds one kind of defect. Every witness a finding carries is run through
the engine again here, independently of the verifier's own confirmation.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest

from secondopinion.advisor import Advisor, Trace
from secondopinion.case import load_case
from secondopinion.rulebook import Rulebook
from secondopinion.verify import Finding, Report, verify

PACKS = Path(__file__).parent / "packs"


def pack(name: str) -> Rulebook:
    """A broken pack on its own, without the shipped rules."""
    return Rulebook.load(PACKS / f"{name}.yaml", shipped=False)


def ids(findings: tuple[Finding, ...]) -> set[tuple[str, ...]]:
    return {f.rule_ids for f in findings}


@pytest.fixture(scope="module")
def shipped() -> Report:
    return verify()


# --------------------------------------------------------------------------- one pack per defect


def test_dead_rules_are_found_with_the_reason() -> None:
    report = verify(pack("dead"))
    dead = {f.rule_ids[0]: f for f in report.of_kind("dead-rule")}
    assert set(dead) == {
        "PK-DEAD-TWO-DIAGNOSES",
        "PK-DEAD-RANGE",
        "PK-DEAD-NEGATIVE-DAYS",
        "PK-DEAD-JOIN",
        "PK-DEAD-CHAIN",
    }
    assert "two different 'diagnosis' facts" in dead["PK-DEAD-TWO-DIAGNOSES"].message
    assert "treatment.days_to_decide" in dead["PK-DEAD-RANGE"].message
    assert "treatment.days_to_decide" in dead["PK-DEAD-NEGATIVE-DAYS"].message
    assert "pattern 's'" in dead["PK-DEAD-JOIN"].message  # three opinions needed, at most two allowed
    assert "pk_level" in dead["PK-DEAD-CHAIN"].message  # only a 'low' level is ever derived
    assert all(f.severity == "error" and f.witness is None and f.confirmed for f in dead.values())
    # the rule that uses the level that is derived is alive, and so is its producer
    assert not {"PK-LIVE", "PK-LEVEL-LOW"} & set(dead)
    assert not report.ok


def test_a_dead_rule_that_fires_in_the_engine_is_not_reported_as_dead() -> None:
    # The analysis and the engine must agree: every rule the analysis keeps alive fired somewhere.
    report = verify(pack("dead"))
    alive = {"PK-LIVE", "PK-LEVEL-LOW"}
    advisor = Advisor(pack("dead"))
    assert all(rule_id in advisor.trace({"diagnosis": {"seriousness": "minor"}}).fired for rule_id in alive)
    assert not report.of_kind("engine-disagrees")


def test_conflicting_pair_is_found_with_a_case_that_gets_both() -> None:
    report = verify(pack("conflict"))
    (conflict,) = report.of_kind("conflict")
    assert set(conflict.rule_ids) == {"PK-SEEK-SERIOUS", "PK-OPTIONAL-NOT-MINOR"}
    assert conflict.severity == "error" and conflict.confirmed
    advice = Advisor(pack("conflict")).advise(conflict.witness or {})
    assert {"seek_second_opinion", "second_opinion_optional"} <= set(advice.kinds)


def test_subsumed_rule_and_duplicate_are_found() -> None:
    report = verify(pack("subsumed"))
    found = ids(report.of_kind("redundant-rule"))
    assert ("PK-EXPERT-RARE-CANCER", "PK-EXPERT-CANCER") in found
    assert ("PK-EXPERT-CANCER", "PK-EXPERT-CANCER-COPY") in found
    duplicate = next(
        f for f in report.of_kind("redundant-rule") if f.rule_ids == ("PK-EXPERT-CANCER", "PK-EXPERT-CANCER-COPY")
    )
    assert "exactly the same cases" in duplicate.message
    # a rule with the same conditions but different fields, or a higher priority, adds something: not redundant
    assert not any("PK-EXPERT-SCANS" in f.rule_ids for f in report.of_kind("redundant-rule"))
    assert not any("PK-EXPERT-URGENT" in f.rule_ids for f in report.of_kind("redundant-rule"))
    # the cancer rule is broader than the rare-cancer one: it is not covered by it
    assert ("PK-EXPERT-CANCER", "PK-EXPERT-RARE-CANCER") not in found


def test_cycle_is_found_and_names_the_rules_in_it() -> None:
    report = verify(pack("cycle"))
    (cycle,) = report.of_kind("cycle")
    assert set(cycle.rule_ids) == {"PK-DOUBT-FROM-WORRY", "PK-WORRY-FROM-DOUBT"}
    assert "pk_doubt" in cycle.message and "pk_worry" in cycle.message
    assert cycle.severity == "error"
    # chaining through the cycle still reaches the recommendation (the base rule feeds it)
    assert not any("PK-TALK-ABOUT-DOUBT" in f.rule_ids for f in report.of_kind("dead-rule"))


def test_gap_is_found_as_a_region() -> None:
    report = verify(pack("gap"))
    (gap,) = report.of_kind("gap")
    assert gap.region is not None
    assert gap.region["diagnosis.seriousness"] == ("moderate", "unknown")
    assert gap.confirmed and gap.severity == "warning"
    for seriousness in gap.region["diagnosis.seriousness"]:
        assert Advisor(pack("gap")).advise({"diagnosis": {"seriousness": seriousness}}).recommendations == ()


def test_masked_rule_is_found() -> None:
    report = verify(pack("masked"))
    (masked,) = report.of_kind("masked-rule")
    assert masked.rule_ids == ("PK-OPTIONAL-SERIOUS",)
    assert masked.confirmed
    trace = Advisor(pack("masked")).trace(masked.witness or {})
    assert "PK-OPTIONAL-SERIOUS" in trace.fired and "PK-OPTIONAL-SERIOUS" not in trace.effective


def test_missed_coverage_requirement_is_found() -> None:
    book = pack("coverage")
    assert [c.id for c in book.coverage] == ["PK-COVER-CANCER-EXPERTS"]
    report = verify(book)
    (missed,) = report.of_kind("coverage")
    assert missed.rule_ids == ("PK-COVER-CANCER-EXPERTS",)
    witness = load_case(missed.witness or {})
    assert witness.diagnosis.cancer.value == "yes"
    assert "expert_review" not in Advisor(book).advise(witness).kinds


def test_unproduced_and_unused_facts_are_found() -> None:
    report = verify(pack("unused"))
    assert ids(report.of_kind("unproduced-fact")) == {("PK-NEEDS-MISSING",)}
    assert ids(report.of_kind("unused-fact")) == {("PK-MAKE-ORPHAN",)}
    assert ids(report.of_kind("dead-rule")) == {("PK-NEEDS-MISSING",)}


def test_metadata_findings_for_rules_the_loader_never_sees() -> None:
    book = pack("gap")
    rule = book.rule("PK-SEEK-SERIOUS")
    broken = attrs.evolve(rule, fires=(), guidance=("NOPE1",), sources=())
    draft = attrs.evolve(book.rule("PK-OPTIONAL-MINOR"), status="draft", silent=())
    report = verify(attrs.evolve(book, rules=(broken, draft)), include_drafts=True)
    messages = {(f.rule_ids, f.severity, f.message) for f in report.of_kind("metadata")}
    assert (
        ("PK-SEEK-SERIOUS",),
        "error",
        "active rule needs at least one 'fires' and one 'silent' example",
    ) in messages
    assert (("PK-SEEK-SERIOUS",), "error", "active rule cites no source") in messages
    assert (("PK-SEEK-SERIOUS",), "error", "unknown guidance id NOPE1") in messages
    assert (
        ("PK-OPTIONAL-MINOR",),
        "warning",
        "draft rule needs at least one 'fires' and one 'silent' example",
    ) in messages


def test_drafts_are_only_analysed_when_asked() -> None:
    book = pack("conflict")
    draft = attrs.evolve(book.rule("PK-OPTIONAL-NOT-MINOR"), status="draft")
    book = attrs.evolve(book, rules=(book.rule("PK-SEEK-SERIOUS"), draft))
    assert not verify(book).of_kind("conflict")
    assert verify(book, include_drafts=True).of_kind("conflict")


# --------------------------------------------------------------------------- agreement with the engine


class _DroppingEngine:
    """An engine wrapper that hides one rule's firings: a stand-in for an engine bug."""

    def __init__(self, inner: Any, rule_id: str) -> None:
        self.inner = inner
        self.rule_id = rule_id

    def run(self, facts: Any) -> Any:
        result = self.inner.run(facts)
        return attrs.evolve(result, firings=tuple(f for f in result.firings if f.rule_id != self.rule_id))


def test_engine_disagreement_is_reported_with_a_case() -> None:
    book = pack("gap")
    advisor = Advisor(book)
    advisor.engine = _DroppingEngine(advisor.engine, "PK-OPTIONAL-MINOR")  # type: ignore[assignment]
    report = verify(book, advisor=advisor)
    (disagreement,) = report.of_kind("engine-disagrees")
    assert disagreement.rule_ids == ("PK-OPTIONAL-MINOR",)
    assert load_case(disagreement.witness or {}).diagnosis.seriousness.value == "minor"
    assert not report.ok


def test_engine_failure_is_reported_with_the_rules_involved() -> None:
    book = pack("gap")
    advisor = Advisor(book)

    class Failing:
        def run(self, facts: Any) -> Any:
            from secondopinion.engine import EngineError

            raise EngineError("simulated failure")

    advisor.engine = Failing()  # type: ignore[assignment]
    report = verify(book, advisor=advisor)
    assert report.of_kind("engine-error")
    assert not report.ok


# --------------------------------------------------------------------------- the shipped rules


def test_shipped_rule_base_has_no_error(shipped: Report) -> None:
    assert shipped.ok, shipped.to_text()
    assert shipped.rules_checked == len(Rulebook.load().active)


def _traces(report: Report) -> Iterator[tuple[Finding, Trace]]:
    advisor = Advisor()
    for finding in report.findings:
        if finding.witness is not None:
            yield finding, advisor.trace(dict(finding.witness))


def test_every_shipped_witness_reproduces_through_the_engine(shipped: Report) -> None:
    for finding, trace in _traces(shipped):
        assert finding.confirmed, str(finding)
        if finding.kind == "gap":
            assert trace.recommendations == ()
        if finding.kind == "redundant-rule":
            assert set(finding.rule_ids) <= trace.fired


def test_same_rules_same_report(shipped: Report) -> None:
    again = verify()
    assert [f.to_dict() for f in again.findings] == [f.to_dict() for f in shipped.findings]


def test_report_json_lists_every_finding(shipped: Report) -> None:
    data = json.loads(shipped.to_json())
    assert data["ok"] is True
    assert len(data["findings"]) == len(shipped.findings)
    assert {"kind", "severity", "rule_ids", "message", "witness", "confirmed", "region"} <= set(data["findings"][0])


# --------------------------------------------------------------------------- the command line


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "secondopinion", *args], capture_output=True, text=True, timeout=120, check=False
    )


def test_cli_verify_exit_codes_and_json() -> None:
    # The clean run (exit 0) is CI's own `secondopinion verify` step and test_shipped_rule_base_has_no_error.
    broken = _cli("verify", "--rules", str(PACKS / "conflict.yaml"), "--format", "json")
    assert broken.returncode == 1
    data = json.loads(broken.stdout)
    assert data["ok"] is False
    conflicts = [f for f in data["findings"] if f["kind"] == "conflict" and "PK-OPTIONAL-NOT-MINOR" in f["rule_ids"]]
    assert conflicts and all(f["confirmed"] for f in conflicts)
    assert "conflict" in data["kinds"]
    assert _cli("verify", "--rules", str(PACKS / "no-such-pack.yaml")).returncode == 2


# --------------------------------------------------------------------------- blind spots found by independent packs


def test_json_report_holds_a_region_with_an_absent_value() -> None:
    report = verify(pack("absent-region"))
    (gap,) = report.of_kind("gap")
    assert gap.region is not None and gap.region["treatment.days_to_decide"][-1] is not None
    data = json.loads(report.to_json())
    region = next(f["region"] for f in data["findings"] if f["kind"] == "gap")
    assert None in region["treatment.days_to_decide"]  # absent is null in JSON
    assert 6 in region["treatment.days_to_decide"]


def test_a_dead_rule_reports_its_failing_example_inside_one_finding() -> None:
    report = verify(pack("absent-region"))
    (dead,) = report.of_kind("dead-rule")
    assert dead.rule_ids == ("PK-DEAD-WINDOW",)
    assert "'fires' example at" in dead.message
    assert not report.of_kind("example-fails")
    assert len(report.errors) == 1


def test_a_threshold_past_the_case_model_limit_is_a_dead_rule_not_a_crash() -> None:
    report = verify(pack("beyond-limit"))
    (dead,) = report.of_kind("dead-rule")
    assert dead.rule_ids == ("PK-AGES-AWAY",)
    assert "treatment.days_to_decide" in dead.message and "case model" in dead.message
    for finding in report.findings:  # every witness is a case the case model accepts
        if finding.witness is not None:
            load_case(dict(finding.witness))
    json.loads(report.to_json())


def test_coverage_broken_by_a_four_test_unless_is_decided_exactly() -> None:
    book = pack("coverage-unless")
    report = verify(book, samples=0)  # no corpus: the search alone must find it
    (missed,) = report.of_kind("coverage")
    assert missed.confirmed and missed.severity == "error"
    witness = load_case(missed.witness or {})
    assert witness.treatment.kind.value == "surgery" and witness.treatment.invasiveness.value == "high"
    assert "seek_second_opinion" not in Advisor(book).advise(witness).kinds


def test_a_conflict_that_needs_four_opinions_is_found() -> None:
    book = pack("conflict-four")
    report = verify(book, samples=0)
    (conflict,) = report.of_kind("conflict")
    assert set(conflict.rule_ids) == {"PK-SEEK-MANY-REMOTE", "PK-OPTIONAL-MANY"}
    assert conflict.confirmed and len((conflict.witness or {})["opinions"]) >= 4
    kinds = Advisor(book).advise(conflict.witness or {}).kinds
    assert {"seek_second_opinion", "second_opinion_optional"} <= set(kinds)


def test_report_failing_picks_findings_by_severity_or_kind() -> None:
    report = verify(pack("gap"))
    assert report.ok and not report.failing()
    assert [f.kind for f in report.failing(["gap"])] == ["gap"]
    assert report.failing(["warning"]) == report.warnings
    with pytest.raises(ValueError, match="no-such-kind"):
        report.failing(["no-such-kind"])


def test_cli_verify_only_fail_on_and_json_load_errors(tmp_path: Path) -> None:
    gap = str(PACKS / "gap.yaml")
    alone = _cli("verify", "--rules", gap, "--only", "--format", "json")
    assert alone.returncode == 0, alone.stderr
    data = json.loads(alone.stdout)
    assert data["rules_checked"] == len(pack("gap").active)
    assert data["failing"] == 0 and data["fail_on"] == ["error"]
    failing = _cli("verify", "--rules", gap, "--only", "--fail-on", "gap")
    assert failing.returncode == 1 and "gap" in failing.stdout
    assert _cli("verify", "--only").returncode == 2
    assert _cli("verify", "--rules", gap, "--only", "--fail-on", "nonsense").returncode == 2
    bad = tmp_path / "bad.yaml"
    bad.write_text("rules:\n  - id: X\n", encoding="utf-8")
    broken = _cli("verify", "--rules", str(bad), "--only", "--format", "json")
    assert broken.returncode == 1
    loaded = json.loads(broken.stdout)
    assert loaded["ok"] is False and loaded["load_errors"] and loaded["findings"] == []
    assert all({"file", "line", "rule_id", "message"} <= set(p) for p in loaded["load_errors"])


@pytest.mark.parametrize("name", ["absent-region", "beyond-limit", "coverage-unless", "conflict-four"])
def test_cli_verify_json_never_empty_on_a_loadable_pack(name: str) -> None:
    result = _cli("verify", "--rules", str(PACKS / f"{name}.yaml"), "--only", "--format", "json")
    assert "Traceback" not in result.stderr
    data = json.loads(result.stdout)
    assert result.returncode == (1 if data["failing"] else 0)
    assert data["findings"]


# --------------------------------------------------------------------------- monotonicity


def test_monotonicity_defect_is_found_with_a_pair_the_engine_confirms() -> None:
    book = pack("monotonic")
    (mono,) = book.monotonicity
    assert (mono.attribute, mono.keeps_kinds) == ("diagnosis.seriousness", ("seek_second_opinion",))
    report = verify(book)
    (finding,) = report.of_kind("monotonicity")
    assert finding.rule_ids == ("PK-MONO-SERIOUSNESS", "PK-SEEK-SERIOUS")
    assert finding.severity == "error" and finding.confirmed
    before = load_case(finding.witness or {})
    after = load_case(finding.witness_after or {})
    assert (before.diagnosis.seriousness.value, after.diagnosis.seriousness.value) == ("serious", "life_threatening")
    assert (
        attrs.evolve(before, diagnosis=attrs.evolve(before.diagnosis, seriousness=after.diagnosis.seriousness)) == after
    )
    advisor = Advisor(book)
    assert "seek_second_opinion" in advisor.advise(before).kinds
    assert "seek_second_opinion" not in advisor.advise(after).kinds
    assert "witness_after" in json.loads(report.to_json())["findings"][0]


def test_a_kept_monotonicity_promise_gives_no_finding() -> None:
    book = pack("monotonic")
    rule = book.rule("PK-SEEK-SERIOUS")
    fixed = attrs.evolve(book, rules=(attrs.evolve(rule, unless=()),))
    assert not verify(fixed).of_kind("monotonicity")


def test_monotonicity_on_a_number_attribute(tmp_path: Path) -> None:
    text = (PACKS / "absent-region.yaml").read_text("utf-8")
    text += """
monotonicity:
  - id: PK-MONO-SOONER
    description: Less time to decide never takes away the advice to set a date.
    attribute: treatment.days_to_decide
    order: decreasing
    keeps_kinds: [set_deadline]
  - id: PK-MONO-LATER
    description: More time to decide never takes away the advice to set a date (false on purpose).
    attribute: treatment.days_to_decide
    order: increasing
    keeps_kinds: [set_deadline]
"""
    path = tmp_path / "days.yaml"
    path.write_text(text, encoding="utf-8")
    report = verify(Rulebook.load(path, shipped=False))
    (finding,) = report.of_kind("monotonicity")
    assert finding.rule_ids[0] == "PK-MONO-LATER" and finding.confirmed
    days = (
        load_case(finding.witness or {}).treatment.days_to_decide,
        load_case(finding.witness_after or {}).treatment.days_to_decide,
    )
    assert days == (2, 3)  # the step across the rule's threshold (days_to_decide < 3)


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("attribute: opinion.mode\n    order: [in_person, remote]", "not an aspect of a case"),
        ("attribute: diagnosis.nope\n    order: [a, b]", "unknown attribute 'nope'"),
        ("attribute: diagnosis.seriousness\n    order: [minor, grave]", "unknown value 'grave'"),
        ("attribute: diagnosis.seriousness\n    order: increasing", "is a choice"),
        ("attribute: treatment.days_to_decide\n    order: [a, b]", "is a number"),
        ("attribute: diagnosis.cancer_type\n    order: increasing", "free text"),
    ],
)
def test_monotonicity_declarations_are_checked_on_load(tmp_path: Path, entry: str, message: str) -> None:
    from secondopinion.rulebook import RuleFileError

    path = tmp_path / "mono.yaml"
    path.write_text(
        f"monotonicity:\n  - id: PK-M\n    description: A test.\n    {entry}\n    keeps_kinds: [seek_second_opinion]\n",
        encoding="utf-8",
    )
    with pytest.raises(RuleFileError) as caught:
        Rulebook.load(path, shipped=False)
    assert any(message in p.message and (p.line or 0) >= 2 and p.rule_id == "PK-M" for p in caught.value.problems), str(
        caught.value
    )


# --------------------------------------------------------------------------- the analysis's fast paths


def _shapes() -> list[Any]:
    """Atoms of every shape the model builds (to compare compiled atoms with _truth on)."""
    from secondopinion.verify.atoms import ABSENT

    a = ("s", ("treatment", 0, "days_to_decide"), 0)
    b = ("s", ("opinion", 1, "mode"), 0)
    shifted = ("s", ("treatment", 0, "days_to_decide"), 2)
    remote = ("r", 2, 1)
    out: list[Any] = []
    for op in ("eq", "ne", "gt", "gte", "lt", "lte"):
        for right in (("c", 3), ("c", "remote"), ("c", ABSENT), b, shifted, ("r", 2, 0), remote):
            out += [("cmp", left, op, right) for left in (a, b, shifted, remote)]
    for op, right in (("in", ("remote", 3)), ("not_in", ("remote", 3)), ("exists", True), ("exists", False)):
        out += [("cmp", a, op, right), ("cmp", shifted, op, right)]
    out += [("member", a, frozenset({3, ABSENT})), ("outside", a, frozenset({3})), ("member", b, ("remote",))]
    out += [("differ", (a, ("c", 3)), (b, shifted)), ("differ", (a,), (a,))]
    one, two, three = out[0], out[10], out[20]
    out += [("or", ((one, two), (three,))), ("and", (one, three)), ("ineffective", ((one,),), ((two,),))]
    out += [("ineffective", ((one, two),), ())]
    return out


def test_compiled_atoms_mean_what_truth_says() -> None:
    """_predicate (what the search and the corpus evaluate) agrees with _truth, the atoms' definition."""
    import random

    from secondopinion.verify.atoms import ABSENT, _atom_slots, _predicate, _truth
    from secondopinion.verify.model import _Model

    book = Rulebook.load()
    model = _Model(book, book.active, 0)
    atoms: set[Any] = set(_shapes())
    for n in model.opinion_counts[:4]:
        for rule in book.active:
            for alt in model.rule_alts(rule, n) + model.unless_alts(rule, n):
                atoms.update(alt.atoms)
            guard = model.ineffective(rule, n)
            if guard is not None:
                atoms.add(guard)
    extra = [ABSENT, 0, 1, 2, 3, 5, 7, "yes", "no", "unknown", "remote", "in_person"]
    rng = random.Random(7)
    for atom in sorted(atoms, key=repr):
        slots = sorted(_atom_slots(atom, 0) | {("opinion", i, "mode") for i in range(2)})
        compiled = _predicate(atom)
        for _ in range(30):
            values = {s: rng.choice(extra + model.domain(s)) for s in slots}
            assert compiled(values) is _truth(atom, values, 0), (atom, values)


def _pairwise_as_first_written(params: Any, rng: Any, *, limit: int) -> list[dict[Any, Any]]:
    import itertools

    names = [p for p, _ in params]
    sizes = [len(d) for _, d in params]
    need: dict[tuple[int, int, int], set[int]] = {}
    for i, j in itertools.combinations(range(len(names)), 2):
        for a in range(sizes[i]):
            need[(i, a, j)] = set(range(sizes[j]))
    rows: list[dict[Any, Any]] = []
    while len(rows) < limit:
        start = next(((i, a, j, min(b)) for (i, a, j), b in need.items() if b), None)
        if start is None:
            break
        i0, a0, j0, b0 = start
        choice = {i0: a0, j0: b0}
        order = [k for k in range(len(names)) if k not in choice]
        rng.shuffle(order)
        for k in order:
            gain = [0] * sizes[k]
            for c, cv in choice.items():
                if c < k:
                    for v in need[(c, cv, k)]:
                        gain[v] += 1
                else:
                    for v in range(sizes[k]):
                        if cv in need[(k, v, c)]:
                            gain[v] += 1
            choice[k] = max(range(sizes[k]), key=lambda v: gain[v])
        for i, j in itertools.combinations(sorted(choice), 2):
            need[(i, choice[i], j)].discard(choice[j])
        rows.append({names[k]: params[k][1][v] for k, v in choice.items()})
    return rows


def test_pairwise_rows_are_those_of_the_plain_greedy_algorithm() -> None:
    import random

    from secondopinion.verify.corpus import _pairwise

    shapes = random.Random(3)
    for trial in range(150):
        params = [(f"p{i}", list(range(shapes.randint(1, 6)))) for i in range(shapes.randint(0, 9))]
        limit = shapes.choice([0, 1, 5, 40, 200])
        fast, plain = random.Random(trial), random.Random(trial)
        assert _pairwise(params, fast, limit=limit) == _pairwise_as_first_written(params, plain, limit=limit)
        assert fast.getstate() == plain.getstate()


def test_verify_leaves_the_garbage_collector_as_it_found_it() -> None:
    import gc

    book = pack("gap")
    assert gc.isenabled()
    verify(book)
    assert gc.isenabled()
    gc.disable()
    try:
        verify(book)
        assert not gc.isenabled()
    finally:
        gc.enable()
