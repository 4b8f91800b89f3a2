"""Seeded generator of varied, valid case dicts for benchmarks, batch, soak and thread tests.

The generator reads the case model (``case_fact_types`` and the attrs fields of
``Case``), so it follows the model as it grows: every aspect may be left out,
every field may be left out or set to any allowed value, and 0 to 4 opinions
share a small vocabulary of diagnoses and institutions, so that opinions
agree as well as conflict. ``marker`` puts a distinctive string into every
free-text field (privacy tests look for it in logs and messages).
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import attrs

from secondopinion.case import Case, case_fact_types
from secondopinion.testing import DIAGNOSIS_CODES, code_system

_DIAGNOSES = ("gallstones", "ulcer", "lymphoma", "disc herniation", "migraine", "sarcoma")
_INSTITUTIONS = ("city hospital", "university clinic", "county medical center", "cancer institute")
_CANCER_TYPES = ("breast", "lung", "sarcoma", "lymphoma")
_OPINION_COUNTS = (0, 0, 0, 0, 1, 1, 1, 2, 2, 3, 4)

_TEXT_VOCAB = {"diagnosis": _DIAGNOSES, "institution": _INSTITUTIONS, "cancer_type": _CANCER_TYPES}


def _aspects() -> dict[str, dict[str, Any]]:
    types = case_fact_types()
    return {f.name: dict(types[f.name]) for f in attrs.fields(Case) if f.name != "opinions"}


def _value(rng: random.Random, attr: str, domain: Any, marker: str | None, n: int) -> Any:
    if attr == "diagnosis_code":
        return rng.choice(DIAGNOSIS_CODES)
    if domain == "int":
        return rng.choice((0, 1, 3, 7, 14, 30, 60, 90, 180))
    if domain == "text":
        if marker is not None:
            return f"{marker}-{attr}-{n}"
        return rng.choice(_TEXT_VOCAB.get(attr, ("other",)))
    return rng.choice(domain)


def random_case(
    rng: random.Random, *, marker: str | None = None, n: int = 0, labelled_opinions: bool = True
) -> dict[str, Any]:
    """One valid case dict: random aspects, random fields, 0-4 opinions.

    ``labelled_opinions`` gives every opinion a diagnosis label, so the joins
    that compare labels get many pairs to work on. ``False`` leaves labels out
    at random, as patients do; the benchmark's reference implementation
    handles both (tests/test_benchmark_reference.py runs it on each).
    """
    case: dict[str, Any] = {}
    for aspect, attributes in _aspects().items():
        if rng.random() < 0.25:
            continue
        part = {attr: _value(rng, attr, dom, marker, n) for attr, dom in attributes.items() if rng.random() < 0.5}
        case[aspect] = part
    opinion_attrs = {k: v for k, v in case_fact_types()["opinion"].items() if k != "index"}
    opinions = []
    for _ in range(rng.choice(_OPINION_COUNTS)):
        opinion = {a: _value(rng, a, d, marker, n) for a, d in opinion_attrs.items() if rng.random() < 0.6}
        if "diagnosis_code" in opinion:
            opinion["diagnosis_code_system"] = code_system(opinion["diagnosis_code"])
        if labelled_opinions:
            opinion.setdefault("diagnosis", _value(rng, "diagnosis", "text", marker, n))
        opinions.append(opinion)
    if opinions:
        case["opinions"] = opinions
    return case


def random_cases(
    count: int, seed: int = 0, *, marker: str | None = None, labelled_opinions: bool = True
) -> Iterator[dict[str, Any]]:
    """``count`` varied valid case dicts, the same ones for the same seed."""
    rng = random.Random(seed)
    for n in range(count):
        yield random_case(rng, marker=marker, n=n, labelled_opinions=labelled_opinions)
