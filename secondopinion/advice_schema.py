"""The JSON Schema (draft 2020-12) of Advice, generated from the recommendation classes.

:func:`advice_schema` walks the attrs classes in
:mod:`secondopinion.recommendations` (every kind registered in ``KINDS``, plus
``Advice``, ``SourceRef``, ``Evidence``, ``Derivation`` and
``DerivedFactRecord``), so a field added to a kind shows up in the schema
without anyone editing it. It describes exactly what :meth:`Advice.to_json`
writes: every field is present, a recommendation is one of the kinds (told
apart by ``kind``), and no other properties appear, but for an optional
``plan`` (:class:`secondopinion.plan.Plan`, which ``advise --format json``
adds).
"""

from __future__ import annotations

import copy
import datetime as dt
import types
import typing
from collections.abc import Mapping
from enum import StrEnum
from functools import cache
from typing import Any

import attrs

from .plan import Plan, PlanAction, PlanField, PlanStep
from .recommendations import (
    KINDS,
    Advice,
    Derivation,
    DerivedFactRecord,
    Evidence,
    Recommendation,
    SetDeadline,
    SourceRef,
)

__all__ = ["advice_schema"]

_DIALECT = "https://json-schema.org/draft/2020-12/schema"
_ID = "https://secondopinion.invalid/schemas/advice.schema.json"

# Values computed from other fields that Advice.to_json adds to a kind's own fields.
_COMPUTED: dict[type[Recommendation], dict[str, dict[str, Any]]] = {
    SetDeadline: {
        "get_opinion_within_days": {
            "type": ["integer", "null"],
            "minimum": 1,
            "description": "Days in which to have the opinion (about two thirds of decide_within_days).",
        }
    }
}


def _summary(cls: type) -> str:
    """The first line of a class docstring, without reStructuredText markup."""
    return (cls.__doc__ or "").strip().splitlines()[0].replace("``", "")


def _type_schema(tp: Any) -> dict[str, Any]:
    """The schema of one Python type as the advice converter writes it."""
    if tp is Any:
        return {}
    if tp is str:
        return {"type": "string"}
    if tp is bool:
        return {"type": "boolean"}
    if tp is int:
        return {"type": "integer"}
    if tp is type(None):
        return {"type": "null"}
    if tp is dt.date:
        return {"type": "string", "format": "date"}
    if isinstance(tp, type) and issubclass(tp, StrEnum):
        return {"enum": [m.value for m in tp]}
    if isinstance(tp, type) and attrs.has(tp):
        return {"$ref": f"#/$defs/{tp.__name__}"}
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (types.UnionType, typing.Union):
        if type(None) in args and len(args) == 2:
            inner = _type_schema(next(a for a in args if a is not type(None)))
            if set(inner) == {"type"} and isinstance(inner["type"], str):
                return {"type": [inner["type"], "null"]}
            return {"anyOf": [inner, {"type": "null"}]}
        return {"anyOf": [_type_schema(a) for a in args]}
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        return {"type": "array", "items": _type_schema(args[0])}
    if origin in (Mapping, dict) and args and args[0] is str:
        return {"type": "object", "additionalProperties": _type_schema(args[1])}
    raise TypeError(f"no JSON Schema for type {tp!r}")


def _object(
    cls: type,
    *,
    kind: str | None = None,
    extra: Mapping[str, dict[str, Any]] | None = None,
    leave_out: frozenset[str] = frozenset(),
) -> dict[str, Any]:
    """The schema of an attrs class: every field required (but those left out), nothing else allowed."""
    hints = typing.get_type_hints(cls)
    properties: dict[str, Any] = {}
    if kind is not None:
        properties["kind"] = {"const": kind}
    for field in attrs.fields(cls):
        if field.name not in leave_out:
            properties[field.name] = _type_schema(hints[field.name])
    properties.update(extra or {})
    return {
        "type": "object",
        "description": _summary(cls),
        "properties": properties,
        "required": list(properties),
        "additionalProperties": False,
    }


@cache
def _schema() -> dict[str, Any]:
    defs: dict[str, Any] = {}
    for part in (SourceRef, Evidence, Derivation, DerivedFactRecord):
        defs[part.__name__] = _object(part)
    for kind, cls in KINDS.items():
        defs[cls.__name__] = _object(cls, kind=kind, extra=_COMPUTED.get(cls))
    defs["Recommendation"] = {
        "description": "One recommendation: exactly one of the kinds, told apart by its kind.",
        "oneOf": [{"$ref": f"#/$defs/{cls.__name__}"} for cls in KINDS.values()],
    }
    for plan_part in (PlanField, PlanAction, PlanStep):
        defs[plan_part.__name__] = _object(plan_part)
    defs["Plan"] = _object(Plan, leave_out=frozenset({"advice"}))
    advice = _object(Advice)
    # The plan is not part of Advice itself: `advise --format json` adds it (see secondopinion.plan).
    advice["properties"]["plan"] = {"$ref": "#/$defs/Plan"}
    return {
        "$schema": _DIALECT,
        "$id": _ID,
        "title": "secondopinion advice",
        **advice,
        "$defs": defs,
    }


def advice_schema() -> dict[str, Any]:
    """The JSON Schema of :meth:`Advice.to_dict` output (a fresh copy each call)."""
    return copy.deepcopy(_schema())
