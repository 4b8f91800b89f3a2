"""What every renderer shows the same way: a recommendation's details, reasons and sources."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..explain import Explanation, direct_reasons, value_text
from ..plan import PlanAction, PlanField
from ..recommendations import Priority, Recommendation, SetDeadline, SourceRef
from ..rulebook import Rulebook

__all__ = [
    "details",
    "document_titles",
    "kind_label",
    "reasons",
    "short_values",
    "show_detail",
    "source_line",
    "source_title",
    "source_titles",
    "sources",
    "value_text",
]


def _label(name: str) -> str:
    return name.replace("_", " ").capitalize()


def kind_label(kind: str) -> str:
    """A recommendation kind in words: ``get_another_opinion`` -> ``get another opinion``."""
    return kind.replace("_", " ")


def details(rec: Recommendation) -> list[tuple[str, str]]:
    """The kind-specific fields of a recommendation as (label, text) pairs, empty ones left out."""
    out: list[tuple[str, str]] = []
    for field in rec.specific_fields():
        value: Any = getattr(rec, field.name)
        if value in (None, (), ""):
            continue
        if isinstance(value, bool):
            if not value:
                continue
            value = "yes"
        elif isinstance(value, tuple):
            value = "; ".join(str(v) for v in value)
        out.append((_label(field.name), str(value)))
    if isinstance(rec, SetDeadline) and rec.get_opinion_within_days is not None:
        out.append(("Get the opinion within", f"{rec.get_opinion_within_days} days"))
    return out


def reasons(rec: Recommendation, rulebook: Rulebook | None) -> list[str]:
    """Why a recommendation was made: per rule, its title and id and what it rested on.

    With a rulebook, "what it rested on" is the tests the rule made on case
    fields (``$.diagnosis.seriousness is serious or life_threatening``) and the
    derived facts it used; without one, the ids of the facts it matched.
    ``secondopinion explain`` shows the whole chain.
    """
    out = []
    for d in rec.derivation:
        title = ""
        basis: tuple[str, ...] = tuple(dict.fromkeys(d.matched.values()))
        if rulebook is not None:
            try:
                title = rulebook.rule(d.rule_id).title
            except KeyError:
                title = ""
            basis = direct_reasons(d, rulebook)
        label = f"{title} (rule {d.rule_id})" if title else f"rule {d.rule_id}"
        out.append(f"{label}; based on: {'; '.join(basis)}" if basis else label)
    return list(dict.fromkeys(out))


def source_line(src: SourceRef, rulebook: Rulebook | None, titles: Mapping[str, str] | None = None) -> str:
    """One source as 'Title, "section" (file)'; the title from the rulebook, else from ``titles``."""
    doc = rulebook.documents.get(src.file) if rulebook is not None else None
    name = doc.title if doc is not None else (titles or {}).get(src.file)
    title = f"{name}, " if name else ""
    return f'{title}"{src.section}" ({src.file})'


def sources(rec: Recommendation, rulebook: Rulebook | None) -> list[str]:
    """The sources of a recommendation as 'Title, "section" (file)' lines."""
    return [source_line(src, rulebook) for src in rec.sources]


def document_titles(explanation: Explanation, rulebook: Rulebook | None) -> dict[str, str]:
    """Source document titles by file name: those the explanation carries, and the rulebook's."""
    titles = dict(explanation.documents)
    if rulebook is not None:
        titles.update({f: d.title for f, d in rulebook.documents.items()})
    return titles


def source_title(src: SourceRef, rulebook: Rulebook | None) -> str:
    """One source for a reader: 'Guide title, "section"', never the document's file name.

    Without a rulebook the shipped rules' document titles are used; a document
    neither knows is called "a source guide".
    """
    book = rulebook
    if book is None:
        from ..advisor import default_advisor

        book = default_advisor().rulebook
    doc = book.documents.get(src.file)
    name = doc.title if doc is not None else "A source guide"
    return f'{name}, "{src.section}"'


def source_titles(rec: Recommendation, rulebook: Rulebook | None) -> list[str]:
    """The sources of a recommendation by guide title and section, each once."""
    return list(dict.fromkeys(source_title(src, rulebook) for src in rec.sources))


# Fields whose values are whole sample sentences; the short views show the first one only.
_SAMPLE_FIELDS = frozenset({"openers"})


def show_detail(step_number: int, action: PlanAction) -> bool:
    """Whether the short views show an action's plain detail: in the first step, and when it is critical."""
    return step_number == 1 or action.priority is Priority.CRITICAL


def short_values(field: PlanField) -> tuple[str, ...]:
    """A concrete field's values for the short views: sample sentences cut to the first one."""
    return field.values[:1] if field.name in _SAMPLE_FIELDS else field.values
