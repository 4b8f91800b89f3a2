"""The published JSON Schemas (docs/schemas) are current, and they accept and reject what the library does.

Validation uses jsonschema's Draft 2020-12 validator on every bundled example
case, on the advice for each, on the shipped rule files, and on varied
generated cases; hand-made bad documents must be rejected by the schema and,
for cases, by ``load_case`` as well, so the schema and the loader agree.
"""

from __future__ import annotations

import copy
import json
import random
from pathlib import Path
from typing import Any

import attrs
import pytest
import yaml
from casegen import random_case
from jsonschema import Draft202012Validator

import secondopinion
from secondopinion import Advice, CaseError, load_case
from secondopinion.recommendations import KINDS, Derivation, SourceRef
from secondopinion.schema import schema_for

ROOT = Path(__file__).resolve().parent.parent
SCHEMAS = ROOT / "docs" / "schemas"
EXAMPLES = sorted((ROOT / "examples" / "cases").glob("*.json"))
NAMES = ("case", "advice", "rules")


def validator(name: str) -> Draft202012Validator:
    schema = json.loads((SCHEMAS / f"{name}.schema.json").read_text("utf-8"))
    return Draft202012Validator(schema)


def errors(name: str, document: Any) -> list[str]:
    return [f"{e.json_path}: {e.message}" for e in validator(name).iter_errors(document)]


@pytest.mark.parametrize("name", NAMES)
def test_published_schema_is_current(name: str) -> None:
    published = json.loads((SCHEMAS / f"{name}.schema.json").read_text("utf-8"))
    assert published == schema_for(name), (
        f"docs/schemas/{name}.schema.json is stale: run "
        f"`secondopinion schema {name} > docs/schemas/{name}.schema.json`"
    )


@pytest.mark.parametrize("name", NAMES)
def test_published_schema_is_a_valid_2020_12_schema(name: str) -> None:
    schema = json.loads((SCHEMAS / f"{name}.schema.json").read_text("utf-8"))
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    Draft202012Validator.check_schema(schema)


def test_there_are_bundled_examples() -> None:
    assert len(EXAMPLES) >= 3


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_every_example_case_and_its_advice_validate(path: Path) -> None:
    case = json.loads(path.read_text("utf-8"))
    assert errors("case", case) == []
    advice = secondopinion.advise(case)
    assert advice.recommendations, "an example case should produce advice"
    document = json.loads(advice.to_json())
    assert errors("advice", document) == []
    assert Advice.from_dict(document) == advice


def test_generated_cases_and_their_advice_validate() -> None:
    rng = random.Random(6)
    for _ in range(60):
        case = random_case(rng)
        assert errors("case", case) == [], case
        assert errors("advice", secondopinion.advise(case).to_dict()) == []


@pytest.mark.parametrize("path", sorted((ROOT / "rules").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_rule_files_validate(path: Path) -> None:
    assert errors("rules", yaml.safe_load(path.read_text("utf-8"))) == []


BAD_CASES = {
    "unknown top-level field": {"diagnosis": {}, "mood": "fine"},
    "unknown nested field": {"diagnosis": {"severity": "serious"}},
    "value outside the enum": {"diagnosis": {"seriousness": "very"}},
    "negative days": {"treatment": {"days_to_decide": -3}},
    "days as text": {"treatment": {"days_to_decide": "30"}},
    "opinions not a list": {"opinions": {"specialty": "surgeon"}},
    "opinion with a bad specialty": {"opinions": [{"specialty": "wizard"}]},
    "text too long": {"diagnosis": {"cancer_type": "x" * 501}},
    "not an object": ["diagnosis"],
}


@pytest.mark.parametrize("case", BAD_CASES.values(), ids=BAD_CASES.keys())
def test_bad_cases_are_rejected_by_the_schema_and_by_load_case(case: Any) -> None:
    assert errors("case", case) != []
    with pytest.raises(CaseError):
        load_case(case)


def _advice() -> dict[str, Any]:
    return json.loads(secondopinion.advise(json.loads(EXAMPLES[0].read_text("utf-8"))).to_json())


def _first(doc: dict[str, Any], kind: str | None = None) -> dict[str, Any]:
    recs = doc["recommendations"]
    rec: dict[str, Any] = next(r for r in recs if kind is None or r["kind"] == kind)
    return rec


def _break(change: str) -> dict[str, Any]:
    doc = copy.deepcopy(_advice())
    rec = _first(doc)
    if change == "unknown kind":
        rec["kind"] = "do_something_else"
    elif change == "missing title":
        del rec["title"]
    elif change == "bad priority":
        rec["priority"] = "urgent"
    elif change == "extra field":
        rec["colour"] = "red"
    elif change == "field of another kind":
        rec["decide_within_days"] = 3
    elif change == "guidance not a list":
        rec["guidance"] = "G01"
    elif change == "derivation without rule id":
        rec["derivation"] = [{"matched": {}}]
    elif change == "missing disclaimer":
        del doc["disclaimer"]
    return doc


@pytest.mark.parametrize(
    "change",
    [
        "unknown kind",
        "missing title",
        "bad priority",
        "extra field",
        "field of another kind",
        "guidance not a list",
        "derivation without rule id",
        "missing disclaimer",
    ],
)
def test_bad_advice_is_rejected(change: str) -> None:
    assert errors("advice", _advice()) == []
    assert errors("advice", _break(change)) != []


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_every_kind_as_written_by_to_json_validates(kind: str) -> None:
    """One recommendation of each kind, with its own fields filled, matches the generated schema."""
    cls = KINDS[kind]
    extra: dict[str, Any] = {}
    for field in cls.specific_fields():
        if field.default is not attrs.NOTHING and isinstance(field.default, bool):
            extra[field.name] = not field.default
    rec = cls(
        title="A short title",
        detail="A plain detail.",
        guidance=("G01",),
        sources=(SourceRef("000_f3b62da58123f209.txt", "Surgery"),),
        derivation=(Derivation("RULE-X", {"dx": "diagnosis"}),),
        **extra,
    )
    doc = Advice(recommendations=(rec,)).to_dict()
    assert errors("advice", doc) == []
    assert doc["recommendations"][0]["kind"] == kind
