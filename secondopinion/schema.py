"""JSON Schemas (draft 2020-12) of the formats this library reads and writes.

The case schema is generated from the attrs case model, so it cannot drift
from what :func:`~secondopinion.case.load_case` accepts. The rule file schema
ships as a file in the package.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

import attrs

from .advice_schema import advice_schema
from .case import MAX_DAYS, MAX_OPINIONS, MAX_TEXT_LENGTH, UNSAFE_TEXT_PATTERN, Case, Opinion
from .rulebook import rules_schema

__all__ = ["advice_schema", "case_schema", "rules_schema", "schema_for"]

_DIALECT = "https://json-schema.org/draft/2020-12/schema"


def _field_schema(field: attrs.Attribute[Any]) -> dict[str, Any]:
    ftype = field.type
    doc: dict[str, Any]
    if isinstance(ftype, type) and issubclass(ftype, StrEnum):
        doc = {"enum": [m.value for m in ftype]}
    elif ftype == (int | None):
        doc = {"type": ["integer", "null"], "minimum": 0, "maximum": MAX_DAYS}
    elif ftype == (str | None):
        doc = {"type": ["string", "null"], "maxLength": MAX_TEXT_LENGTH, "pattern": f"^[^{UNSAFE_TEXT_PATTERN[1:]}*$"}
    elif ftype == tuple[Opinion, ...]:
        doc = {"type": "array", "items": {"$ref": "#/$defs/Opinion"}, "maxItems": MAX_OPINIONS}
    elif ftype is not None and attrs.has(ftype):
        doc = {"$ref": f"#/$defs/{ftype.__name__}"}
    else:  # pragma: no cover - the case model has no other field types
        raise TypeError(f"no schema for field {field.name}")
    default = field.default
    if isinstance(default, StrEnum):
        doc["default"] = default.value
    elif default is None:
        doc["default"] = None
    return doc


def _object_schema(cls: type) -> dict[str, Any]:
    fields = attrs.fields(attrs.resolve_types(cls))
    return {
        "type": "object",
        "description": (cls.__doc__ or "").strip().splitlines()[0],
        "additionalProperties": False,
        "properties": {f.name: _field_schema(f) for f in fields},
    }


def case_schema() -> dict[str, Any]:
    """The JSON Schema of a case, generated from the case model."""
    defs = {}
    for field in attrs.fields(attrs.resolve_types(Case)):
        if field.type is not None and attrs.has(field.type):
            defs[field.type.__name__] = _object_schema(field.type)
    defs["Opinion"] = _object_schema(Opinion)
    schema = {
        "$schema": _DIALECT,
        "$id": "https://secondopinion.invalid/schemas/case.schema.json",
        "title": "secondopinion case",
        **_object_schema(Case),
        "$defs": defs,
    }
    return schema


def schema_for(name: str) -> dict[str, Any]:
    """A schema by name: ``case``, ``advice`` or ``rules``."""
    if name == "case":
        return case_schema()
    if name == "advice":
        return advice_schema()
    if name == "rules":
        return rules_schema()
    raise KeyError(name)
