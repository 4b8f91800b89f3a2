"""The FHIR mapping report (:meth:`secondopinion.fhir.FhirCase.report`) as text or Markdown.

``secondopinion advise BUNDLE.json --mapping`` prints it after the plan: which
Condition the advice is about and why, each case field with the FHIR element
it came from, each element or resource not used with the reason, and the
resources counted by type. Like the report, it names paths, never values.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["TITLE", "mapping_markdown", "mapping_text", "not_used_note"]

TITLE = "What was read from the FHIR Bundle"


def _counts(counts: Mapping[str, int]) -> str:
    parts = [f"{n} {status.replace('_', ' ')}" for status, n in counts.items() if n]
    return ", ".join(parts) or "none"


def _category(item: Mapping[str, Any]) -> str:
    return str(item["category"]).replace("_", " ")


def _source(item: Mapping[str, Any], code: str = "") -> str:
    reason = f" ({item['reason']})" if item.get("reason") else ""
    return f"{code}{item['fhir_path']}{code}{reason}"


def mapping_text(report: Mapping[str, Any]) -> str:
    """The report as plain text, ending with a newline."""
    lines = [TITLE]
    focus = report.get("focus")
    if focus is not None:
        lines.append(f"  The advice is about {focus['fhir_path']}: {focus['reason']}")
    mapped = report["mapped"]
    lines.append(f"  Mapped ({len(mapped)}):")
    width = max((len(m["case_field"]) for m in mapped), default=0)
    lines += [f"    {m['case_field']:<{width}} <- {_source(m)}" for m in mapped]
    unmapped = report["unmapped"]
    lines.append(f"  Not used ({len(unmapped)}):")
    lines += [f"    {u['fhir_path']}: {u['reason']} ({_category(u)})" for u in unmapped]
    lines.append("  Resources by type:")
    lines += [f"    {name}: {_counts(counts)}" for name, counts in report["summary"].items()]
    return "\n".join(lines) + "\n"


def mapping_markdown(report: Mapping[str, Any]) -> str:
    """The report as Markdown (a level-2 section), ending with a newline."""
    lines = [f"## {TITLE}", ""]
    focus = report.get("focus")
    if focus is not None:
        lines += [f"The advice is about `{focus['fhir_path']}`: {focus['reason']}.", ""]
    lines += [f"### Mapped ({len(report['mapped'])})", ""]
    lines += [f"- `{m['case_field']}` <- {_source(m, '`')}" for m in report["mapped"]]
    lines += ["", f"### Not used ({len(report['unmapped'])})", ""]
    lines += [f"- `{u['fhir_path']}`: {u['reason']} ({_category(u)})" for u in report["unmapped"]]
    lines += ["", "### Resources by type", ""]
    lines += [f"- {name}: {_counts(counts)}" for name, counts in report["summary"].items()]
    return "\n".join(lines) + "\n"


def not_used_note(report: Mapping[str, Any], version: str, *, shown: bool) -> str:
    """The one line that says the case came from a FHIR Bundle, and how much of it was not used."""
    mapped, unmapped = len(report["mapped"]), len(report["unmapped"])
    line = (
        f"Read from a FHIR {version} Bundle: {mapped} case field{'s' if mapped != 1 else ''} mapped, "
        f"{unmapped} item{'s' if unmapped != 1 else ''} not used"
    )
    line += "." if shown else "; add --mapping to see each with its FHIR path."
    if any(u["fhir_path"] == "focus" and str(u["reason"]).startswith("a guess") for u in report["unmapped"]):
        line += " The condition the advice is about was chosen by date, a guess: name the right one with --focus."
    return line
