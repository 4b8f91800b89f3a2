"""Value sets: the code lists that tell the FHIR mapping what a coded Condition or order is.

Each concept is one small YAML file beside this module (``cancer.yaml``,
``spine.yaml``, ``chemotherapy.yaml``...), shipped in the wheel, with its
``version``, the ``sources`` its codes come from and its ``limitations``. A
file lists, per code system, exact ``codes`` and/or code ``ranges`` (ICD-10-CM
blocks such as C00-C96, compared on the code without its dot; ATC and CPT
ranges alike), and optionally ``text`` words, the free-text fallback used only
when no code of the resource is recognised. ``implies`` says which case fields
a match sets.

The full SNOMED CT hierarchy is not shipped and no terminology server is
called: SNOMED CT lists are curated sets of descendants (see each file's
``hierarchy`` note). docs/interop.md lists every value set.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping
from importlib import resources
from typing import Any

import attrs
import yaml

__all__ = ["Match", "ValueSet", "load", "value_sets"]


def normalise(code: str) -> str:
    """A code as compared: no spaces or dots, upper case (``c50.911`` is ``C50911``)."""
    return "".join(code.split()).replace(".", "").upper()


@attrs.frozen
class Match:
    """Why a resource matched a value set: by a coding (system and code) or by text."""

    value_set: str
    by: str  # "code" or "text"
    system: str | None = None
    code: str | None = None


@attrs.frozen
class ValueSet:
    """One concept's code lists (see the module docstring)."""

    id: str
    version: str
    title: str
    implies: Mapping[str, str]
    codes: Mapping[str, frozenset[str]]
    ranges: Mapping[str, tuple[tuple[str, str], ...]]
    words: tuple[str, ...] = ()
    not_with: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()
    limitations: str = ""

    def has_code(self, system: str, code: str) -> bool:
        """Whether ``code`` of ``system`` is in the set (exactly, or in one of its ranges)."""
        norm = normalise(code)
        if norm in self.codes.get(system, frozenset()):
            return True
        for low, high in self.ranges.get(system, ()):
            head = norm[: len(low)]
            if len(head) == len(low) and low <= head <= high:
                return True
        return False

    def match_codings(self, codings: Iterable[Mapping[str, Any]]) -> Match | None:
        """The first coding in the set, if any."""
        for coding in codings:
            system, code = coding.get("system"), coding.get("code")
            if isinstance(system, str) and isinstance(code, str) and self.has_code(system, code):
                return Match(self.id, "code", system, code)
        return None

    def match_text(self, texts: Iterable[str]) -> Match | None:
        """The free-text fallback: a listed word (whole word, any case) and none of ``not_with``."""
        if not self.words:
            return None
        for text in texts:
            low = text.casefold()
            if any(_word(w).search(low) for w in self.not_with):
                continue
            if any(_word(w).search(low) for w in self.words):
                return Match(self.id, "text")
        return None

    def knows_system(self, system: str) -> bool:
        return system in self.codes or system in self.ranges


@functools.lru_cache(maxsize=256)
def _word(word: str) -> re.Pattern[str]:
    return re.compile(r"(?<![\w-])" + re.escape(word.casefold()) + r"(?![\w-])")


def _parse(data: Mapping[str, Any], name: str) -> ValueSet:
    codes: dict[str, set[str]] = {}
    ranges: dict[str, list[tuple[str, str]]] = {}
    for block in data.get("include", []):
        system = str(block["system"])
        for entry in block.get("codes", []):
            codes.setdefault(system, set()).add(normalise(str(entry["code"])))
        for entry in block.get("ranges", []):
            low, high = normalise(str(entry["from"])), normalise(str(entry["to"]))
            if len(low) != len(high) or low > high:
                raise ValueError(f"value set {name}: a range needs two bounds of one length, low first")
            ranges.setdefault(system, []).append((low, high))
    text = data.get("text") or {}
    return ValueSet(
        id=str(data["id"]),
        version=str(data["version"]),
        title=str(data["title"]),
        implies={str(k): str(v) for k, v in (data.get("implies") or {}).items()},
        codes={k: frozenset(v) for k, v in codes.items()},
        ranges={k: tuple(v) for k, v in ranges.items()},
        words=tuple(str(w) for w in text.get("words", [])),
        not_with=tuple(str(w) for w in text.get("not_with", [])),
        sources=tuple(str(s) for s in data.get("sources", [])),
        limitations=str(data.get("limitations", "")).strip(),
    )


@functools.cache
def value_sets() -> Mapping[str, ValueSet]:
    """Every shipped value set, by id (read once)."""
    out: dict[str, ValueSet] = {}
    for item in sorted(resources.files(__name__).iterdir(), key=lambda p: p.name):
        if item.name.endswith(".yaml"):
            vs = _parse(yaml.safe_load(item.read_text("utf-8")), item.name)
            if vs.id != item.name.removesuffix(".yaml"):
                raise ValueError(f"value set {item.name}: its id must be its file name")
            out[vs.id] = vs
    return out


def load(value_set_id: str) -> ValueSet:
    """One shipped value set by id (``cancer``, ``spine``...)."""
    return value_sets()[value_set_id]
