"""A plain-Python implementation of part of the shipped rule base: the speed floor for the benchmark.

:func:`decide` takes a case dict (as read from JSON, assumed valid) and
returns the ids of the rules in :data:`SUBSET` that the engine would fire and
not hold back (``Trace.effective`` restricted to the subset). It hard-codes
the logic of those rules as ordinary ``if`` statements: no validation, no
engine, no typed output. The benchmark times it on the same cases as
``advise()`` and checks that it agrees with the engine, so the floor stays
honest while the rule base changes (a disagreement is reported, not hidden).

What it follows of the rule base (``rules/*.yaml``):

* why an opinion is indicated: the high-stakes reasons and every reason of
  ``second_opinion_indicated`` (each of them is computed, in the subset or not,
  because the advice depends on which reasons hold);
* the emergency gate: ``treatment.urgency`` ``emergency`` or ``days_to_decide``
  0 or 1 gives ``get_care_now`` and nothing about seeking, timing or
  resolving opinions; ``urgent`` or 2 to 7 days (short on time) and a minor
  diagnosis keep the advice brief, which holds the extras back;
* seeking an opinion: the second (a reason and at most one opinion) or a later
  one (two opinions that conflict; three or more get neither);
* the first steps (doctor, credentials, records, insurer, originals) and the
  deadlines (a week or less, days known, days to ask), pressing reasons apart
  from elective ones, and a minor diagnosis with a preference apart from both;
* agreement and conflict between opinions: treatments compared by family when
  both can be compared (no treatment and watchful waiting are one family;
  "other" and "unknown" are never compared), diagnoses by code within one code system or by the patient's word
  (``diagnosis_vs_first``, for pairs with the first opinion only), never by
  free-text wording alone; the patient's word against the same label or code
  (or "same" against different codes) is a contradiction, neither conflict nor
  agreement; agreement by
  label, by code or by the patient's word. "Proceed" needs an agreement whose
  later opinion is neither a close associate's nor a remote-only review and,
  among all the opinions, no conflict, no diagnoses worded or coded in ways
  that cannot be compared, and no agreeing pair from one institution.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

SUBSET = frozenset(
    {
        # derived facts: high stakes, why an opinion is indicated
        "STAKES-SERIOUS-DIAGNOSIS",
        "STAKES-CANCER",
        "STAKES-SURGERY",
        "STAKES-RISKY-TREATMENT",
        "INDICATED-HIGH-STAKES",
        "INDICATED-UNEASY-WITH-WAITING",
        "INDICATED-DOUBTS-ABOUT-PLAN",
        "INDICATED-UNCLEAR-DIAGNOSIS",
        "INDICATED-TREATMENT-NOT-WORKING",
        "INDICATED-LOW-TRUST",
        "INDICATED-LONG-TERM",
        "INDICATED-CHILD-SYMPTOMS",
        "INDICATED-CHILD-WAITING",
        "INDICATED-SEVERAL-OPTIONS",
        "INDICATED-WANTS-OPTIONS",
        "INDICATED-COMPLEX-OR-TESTS",
        "INDICATED-RARE",
        "INDICATED-SPINE",
        "INDICATED-CONFLICT",
        # derived facts: the emergency gate, seeking, minor cases, opinions
        "EMERGENCY-STATED",
        "EMERGENCY-NO-TIME",
        "SEEKING-SECOND",
        "SEEKING-LATER-ON-CONFLICT",
        "MINOR-CASE",
        "CONFLICT-JOIN",
        "CONFLICT-JOIN-LATER-NO-TREATMENT",
        "CONFLICT-JOIN-CODES",
        "CONFLICT-JOIN-CODES-LATER",
        "AGREE-JOIN",
        # recommendations
        "GET-CARE-NOW",
        "OPTIONAL-MINOR",
        "SEEK-SERIOUS-DIAGNOSIS",
        "SEEK-BEFORE-SURGERY",
        "ASK-LESS-INVASIVE",
        "CANCER-EXPERT-REVIEW",
        "INDEPENDENT-DOCTOR",
        "CHECK-CREDENTIALS",
        "RECORDS-CHECKLIST-PLAN",
        "CALL-INSURER-FIRST",
        "DEADLINE-SHORT-TIME",
        "DEADLINE-SHORT-TIME-ELECTIVE",
        "DEADLINE-SHORT-TIME-MINOR",
        "DEADLINE-KNOWN-TIME",
        "DEADLINE-ASK-TIME",
        "ACT-QUICKLY-BEFORE-START",
        "ACT-QUICKLY-DURING-TREATMENT",
        "ORIGINALS-BIOPSY-SLIDES",
        "ORIGINALS-IMAGING",
        "PROCEED-WHEN-AGREE",
        "CONFLICT-ASK-WHY",
        "CONFLICT-CONFER",
        "CONFLICT-THIRD-OPINION",
    }
)
"""The rules this reference implements: why an opinion is indicated, the emergency gate, the first steps,
deadlines, agreement and conflict."""

_EMPTY: Mapping[str, Any] = {}
_SERIOUS = ("serious", "life_threatening")
_MINOR_KINDS = ("none", "wait_and_see", "medication", "other", "unknown")
_WORD_OPEN = ("unknown", "not_sure")  # diagnosis_vs_first values that leave a wording difference open
_ACTIVE = ("medication", "surgery", "chemotherapy", "radiation")  # treatments that treat now
_NO_TREATMENT = ("none", "wait_and_see")  # one family: neither treats now
_COMPARED = _ACTIVE + _NO_TREATMENT  # "other" and "unknown" are never compared


def _label(value: Any) -> str | None:
    """Free text as the case model compares it: trimmed, case-folded, inner spaces collapsed."""
    return " ".join(value.split()).casefold() or None if isinstance(value, str) else None


def _code(opinion: Mapping[str, Any]) -> str | None:
    """An opinion's diagnosis code qualified by its system, as the engine sees it (None without a system)."""
    code = opinion.get("diagnosis_code")
    system = opinion.get("diagnosis_code_system", "unknown")
    if not isinstance(code, str) or system == "unknown":
        return None
    cleaned = "".join(code.split()).replace(".", "").upper()
    return f"{system}:{cleaned}" if cleaned else None


def _opinion_pairs(opinions: Any) -> tuple[bool, bool, bool, bool, bool, bool, bool]:
    """What the pairs of opinions (an earlier one, a later one) derive.

    Returns (CONFLICT-JOIN fires, CONFLICT-JOIN-LATER-NO-TREATMENT fires,
    CONFLICT-JOIN-CODES fires, CONFLICT-JOIN-CODES-LATER fires, the opinions
    conflict, AGREE-JOIN fires, PROCEED-WHEN-AGREE's agreement stands). The
    agreement stands when some pair agrees and no pair leaves the diagnoses'
    wording open or makes an agreement not independent; a conflict holds it
    back too, which :func:`decide` checks.
    """
    rows = []
    for o in opinions:
        code = _code(o)
        rows.append(
            (
                _label(o.get("diagnosis")),
                o.get("treatment", "unknown"),
                code,
                code.partition(":")[0] if code is not None else None,
                o.get("diagnosis_vs_first", "unknown"),
                _label(o.get("institution")),
                o.get("mode", "unknown") == "remote" or o.get("close_associate_of_first", "unknown") == "yes",
            )
        )
    tx_conflict = tx_later_none = code_first = code_later = said_different = False
    agree_label = agree = blocked = False
    for i, (dx_a, tx_a, code_a, sys_a, vs_a, inst_a, _dependent) in enumerate(rows):
        for dx_b, tx_b, code_b, sys_b, vs_b, inst_b, dependent_b in rows[i + 1 :]:
            # opinions_conflict: treatments of different families (no treatment and waiting are one;
            # "other" and "unknown" are not compared), codes (one system), the patient's word
            if tx_a in _COMPARED and tx_b in _ACTIVE and tx_b != tx_a:
                tx_conflict = True
            if tx_a in _ACTIVE and tx_b in _NO_TREATMENT:
                tx_later_none = True
            codes_differ = code_a is not None and code_b is not None and sys_b == sys_a and code_b != code_a
            same_label = dx_a is not None and dx_b == dx_a
            same_code = code_a is not None and code_b == code_a
            # the patient's word against the labels or codes (pairs with the first): a contradiction
            # (CHECK-ANSWERS-DIAGNOSIS-COMPARISON); the conflict waits, DIAGNOSIS-ANSWERS-DISAGREE derives
            # diagnosis_wording_differs
            contradiction = i == 0 and (
                (vs_b == "different" and (same_label or same_code)) or (vs_b == "same" and codes_differ)
            )
            if contradiction:
                blocked = True
            if codes_differ and i > 0:
                code_later = True
            elif codes_differ and vs_b != "same":
                code_first = True
            if i == 0 and vs_b == "different" and not (same_label or same_code):
                said_different = True
            # diagnosis_wording_differs: labels or code systems that cannot be compared, unless the
            # patient's word settles the pair: it compares each opinion with the first (i == 0); a later
            # pair is settled only when both are said to match the first
            word_open = vs_b in _WORD_OPEN if i == 0 else not (vs_a == "same" and vs_b == "same")
            if (i == 0 and vs_b == "not_sure") or (
                word_open
                and (
                    (dx_a is not None and dx_b is not None and dx_b != dx_a and (code_a is None or code_b is None))
                    or (code_a is not None and code_b is not None and sys_b != sys_a)
                )
            ):
                blocked = True
            if tx_a in ("unknown", "other") or tx_b != tx_a:
                continue
            # the same treatment: opinions_agree by label, by code or by the patient's word
            pair_agrees = False
            if dx_a is not None and dx_b == dx_a:
                agree_label = pair_agrees = True
            if code_a is not None and code_b == code_a:
                pair_agrees = True
            if i == 0 and vs_b == "same":
                pair_agrees = True
            # "proceed" needs an agreement whose later opinion is neither a close associate's nor a
            # remote-only review; an agreeing pair from the same institution holds it back
            if pair_agrees and inst_a is not None and inst_b == inst_a:
                blocked = True
            agree = agree or (pair_agrees and not dependent_b)
    conflict = tx_conflict or tx_later_none or code_first or code_later or said_different
    return tx_conflict, tx_later_none, code_first, code_later, conflict, agree_label, agree and not blocked


def decide(case: Mapping[str, Any]) -> set[str]:
    """The rules of :data:`SUBSET` that fire on ``case`` and are not held back."""
    dx = case.get("diagnosis") or _EMPTY
    tx = case.get("treatment") or _EMPTY
    pt = case.get("patient") or _EMPTY
    doctor = case.get("doctor") or _EMPTY
    records = case.get("records") or _EMPTY
    opinions = case.get("opinions") or ()
    count = len(opinions)
    fired: set[str] = set()
    add = fired.add

    seriousness = dx.get("seriousness", "unknown")
    serious = seriousness in _SERIOUS
    minor = seriousness == "minor"
    cancer = dx.get("cancer", "unknown") == "yes"
    kind = tx.get("kind", "unknown")
    risk = tx.get("risk", "unknown")
    invasiveness = tx.get("invasiveness", "unknown")
    started = tx.get("started", "unknown")
    not_started = started != "yes"
    urgency = tx.get("urgency", "unknown")
    days = tx.get("days_to_decide")
    uneasy = pt.get("uneasy_with_plan", "unknown") == "yes"
    child = pt.get("age_group", "unknown") == "child"
    vague = dx.get("symptoms_vague", "unknown") == "yes"
    surgery = kind == "surgery" and not_started

    # the emergency gate, and brief advice
    emergency = False
    if urgency == "emergency":
        add("EMERGENCY-STATED")
        emergency = True
    if days is not None and days <= 1:
        add("EMERGENCY-NO-TIME")
        emergency = True
    if emergency:
        add("GET-CARE-NOW")
    brief = minor or urgency == "urgent" or (days is not None and 2 <= days <= 7)

    # high stakes
    stakes = False
    if serious:
        add("STAKES-SERIOUS-DIAGNOSIS")
        stakes = True
    if cancer:
        add("STAKES-CANCER")
        stakes = True
    if surgery and not minor:
        add("STAKES-SURGERY")
        stakes = True
    if risk == "high":
        add("STAKES-RISKY-TREATMENT")
        stakes = True
    if not_started and (
        (kind == "surgery" and minor and (risk != "low" or invasiveness in ("moderate", "high")))  # ...-RISKIER
        or kind in ("chemotherapy", "radiation")  # STAKES-INTENSIVE-TREATMENT
        or (kind in ("other", "medication", "unknown") and invasiveness == "high")  # ...-INVASIVE-PROCEDURE
    ):
        stakes = True

    # why a second opinion is indicated: pressing reasons, then elective ones
    pressing = False
    if stakes:
        add("INDICATED-HIGH-STAKES")
        pressing = True
    if uneasy and kind == "wait_and_see":
        add("INDICATED-UNEASY-WITH-WAITING")
        pressing = True
    if (
        dx.get("certainty", "unknown") == "unclear"
        or vague
        or dx.get("tests_normal_but_problem_persists", "unknown") == "yes"
        or dx.get("suspected_misdiagnosis", "unknown") == "yes"
    ):
        add("INDICATED-UNCLEAR-DIAGNOSIS")
        pressing = True
    if tx.get("working", "unknown") == "no" and started != "no":
        add("INDICATED-TREATMENT-NOT-WORKING")
        pressing = True
    if child and vague:
        add("INDICATED-CHILD-SYMPTOMS")
        pressing = True
    if child and uneasy and kind == "wait_and_see":
        add("INDICATED-CHILD-WAITING")
        pressing = True
    if dx.get("complex", "unknown") == "yes" or dx.get("doubts_about_tests", "unknown") == "yes":
        add("INDICATED-COMPLEX-OR-TESTS")
        pressing = True
    if dx.get("rare", "unknown") == "yes":
        add("INDICATED-RARE")
        pressing = True
    if dx.get("spine", "unknown") == "yes" and not minor:
        add("INDICATED-SPINE")
        pressing = True
    elective = False
    if uneasy and kind != "wait_and_see":
        add("INDICATED-DOUBTS-ABOUT-PLAN")
        elective = True
    if doctor.get("trust", "unknown") == "low" or doctor.get("red_flags", "unknown") == "yes":
        add("INDICATED-LOW-TRUST")
        elective = True
    if tx.get("long_term", "unknown") == "yes":
        add("INDICATED-LONG-TERM")
        elective = True
    if tx.get("several_options", "unknown") == "yes":
        add("INDICATED-SEVERAL-OPTIONS")
        elective = True
    if pt.get("wants_all_options", "unknown") == "yes":
        add("INDICATED-WANTS-OPTIONS")
        elective = True

    # what the opinions say
    conflict = agree = False
    if count > 1:
        tx_conflict, tx_later_none, code_first, code_later, conflict, agree_label, agree = _opinion_pairs(opinions)
        if tx_conflict:
            add("CONFLICT-JOIN")
        if tx_later_none:
            add("CONFLICT-JOIN-LATER-NO-TREATMENT")
        if code_first:
            add("CONFLICT-JOIN-CODES")
        if code_later:
            add("CONFLICT-JOIN-CODES-LATER")
        if agree_label:
            add("AGREE-JOIN")
        if conflict:
            add("INDICATED-CONFLICT")
            pressing = True
    indicated = pressing or elective

    # minor cases (MINOR-CASE, and MINOR-SURGERY-CASE for a low-risk operation, derive minor_case)
    if minor and not cancer:
        if kind in _MINOR_KINDS and risk in ("low", "unknown") and invasiveness != "high":
            add("MINOR-CASE")
            minor_case = True
        else:
            minor_case = kind == "surgery" and risk == "low" and invasiveness in ("low", "unknown")
        if minor_case and not indicated and count < 2 and not emergency:
            add("OPTIONAL-MINOR")

    if emergency:
        return fired

    # agreement and conflict (outside an emergency)
    if agree and not conflict:
        add("PROCEED-WHEN-AGREE")
    if conflict:
        add("CONFLICT-ASK-WHY")
        add("CONFLICT-CONFER")
        if count == 2:
            add("CONFLICT-THIRD-OPINION")

    # seeking an opinion: the second, or a later one on a conflict
    second = indicated and count <= 1
    if second:
        add("SEEKING-SECOND")
        if serious:
            add("SEEK-SERIOUS-DIAGNOSIS")
        if surgery:
            add("SEEK-BEFORE-SURGERY")
    later = conflict and count == 2
    if later:
        add("SEEKING-LATER-ON-CONFLICT")
    if not (second or later):
        return fired

    # the first steps
    if surgery:
        add("ASK-LESS-INVASIVE")
    if cancer:
        add("CANCER-EXPERT-REVIEW")
    if (case.get("insurance") or _EMPTY).get("insured", "unknown") == "yes":
        add("CALL-INSURER-FIRST")
    if records.get("biopsy_slides", "unknown") == "yes":
        add("ORIGINALS-BIOPSY-SLIDES")
    if records.get("imaging", "unknown") in ("film", "electronic", "both"):
        add("ORIGINALS-IMAGING")
    if not brief:
        add("INDEPENDENT-DOCTOR")
        add("CHECK-CREDENTIALS")
        add("RECORDS-CHECKLIST-PLAN")
        if started == "yes":
            add("ACT-QUICKLY-DURING-TREATMENT")
        elif pressing and kind not in ("wait_and_see", "none"):
            add("ACT-QUICKLY-BEFORE-START")

    # deadlines: a week or less is critical (a pressing reason, or a preference outside a minor
    # diagnosis) or medium (a minor diagnosis with a preference)
    if days is not None and days <= 7:
        if pressing:
            add("DEADLINE-SHORT-TIME")
        if elective:
            add("DEADLINE-SHORT-TIME-MINOR" if minor else "DEADLINE-SHORT-TIME-ELECTIVE")
    elif pressing and not minor:
        if days is not None:
            add("DEADLINE-KNOWN-TIME")
        elif not_started:
            add("DEADLINE-ASK-TIME")
    return fired
