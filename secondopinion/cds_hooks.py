"""CDS Hooks 2.0: Advice as cards, the discovery document, and requests to cases.

This module is framework-free: :func:`cards` and :func:`discovery` build the
JSON of the two CDS Hooks responses, and :func:`handle` answers a service call
(a request body in, an HTTP status and a JSON body out). The ASGI app in
:mod:`secondopinion.service` is a thin shell around it.

Cards. One card per recommendation, in the advice's order:

* ``summary``: the recommendation's title, shortened at a word to fewer than
  140 characters when needed;
* ``indicator``: ``critical`` for critical priority, ``warning`` for high,
  ``info`` for medium and low;
* ``detail``: short Markdown: the plan step the recommendation belongs to
  (:mod:`secondopinion.plan`; "Step 2 of 4: Do now", with its date when there
  is one), the plain-language detail, the concrete fields (what to bring, whom
  to see), a pointer to the links for the reasons and sources, and the
  disclaimer; text that may come from a case is escaped so it cannot turn
  into Markdown or HTML. The reasons and sources are behind the ``links``;
* ``source``: ``label`` is the title of the first source document; ``url``
  links to the rule file (shipped rules) or to the rules folder; ``topic``
  codes the recommendation kind (:data:`KIND_SYSTEM`);
* ``links``: one per shipped rule behind the card, to its line in the rule file;
* ``uuid``: deterministic, a UUID 5 over the hook instance, the kind and the
  rule ids. The same call gives the same uuids (a retried hook is
  idempotent), two hook instances never share one, and a CLI run without a
  hook instance gives stable uuids.

Requests. The service answers the ``patient-view`` hook. The case comes from
``context.case`` (this library's case JSON) or, when the ``fhir`` extra is
installed, from FHIR prefetch data (``patient``, ``conditions``,
``serviceRequests``, ``procedures``, ``coverage``). Bad JSON, a malformed
request, an invalid case or invalid FHIR get HTTP 400; a request with neither
a case nor usable prefetch gets 412 (Precondition Failed), as CDS Hooks asks.
Error bodies name field paths, never values.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from .advisor import Advisor, default_advisor
from .case import Case, CaseError, load_case
from .plan import PlanStep, action_for, build_plan
from .recommendations import Advice, Priority, Recommendation, SetDeadline
from .rulebook import Rule, Rulebook, default_rules_path

__all__ = [
    "HOOK",
    "KIND_SYSTEM",
    "PREFETCH",
    "SERVICE_ID",
    "CdsError",
    "HookRequest",
    "card",
    "cards",
    "case_from_request",
    "discovery",
    "fhir_available",
    "handle",
    "parse_request",
    "rule_url",
    "summary",
]

SERVICE_ID = "second-opinion"
HOOK = "patient-view"
REPO_URL = "https://github.com/secondopinion/secondopinion"
RULES_URL = f"{REPO_URL}/tree/main/rules"
KIND_SYSTEM = f"{REPO_URL}/blob/main/docs/interop.md#recommendation-kinds"
"""The code system of recommendation kinds (CDS Hooks card topics, FHIR action codes)."""
EXTENSION = "io.github.secondopinion"
"""Prefix of this library's CDS Hooks extension keys (reverse domain notation)."""
CARD_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, f"{REPO_URL}/cds-hooks/cards")
MAX_SUMMARY = 139  # CDS Hooks: fewer than 140 characters

PREFETCH: dict[str, str] = {
    "patient": "Patient/{{context.patientId}}",
    "conditions": "Condition?patient={{context.patientId}}",
    "serviceRequests": "ServiceRequest?patient={{context.patientId}}&status=draft,active",
    "procedures": "Procedure?patient={{context.patientId}}&status=preparation",
    "coverage": "Coverage?patient={{context.patientId}}&status=active",
}
"""The FHIR prefetch templates the service asks for (when the fhir extra is installed)."""

_INDICATOR = {Priority.CRITICAL: "critical", Priority.HIGH: "warning", Priority.MEDIUM: "info", Priority.LOW: "info"}

# Characters that GitHub Flavored Markdown (or inline HTML) could read as syntax anywhere in a line,
# and the block markers it reads at the start of one; a backslash makes each literal.
_MARKDOWN_INLINE = re.compile(r"([\\`*_\[\]<>|~&])")
_MARKDOWN_BLOCK = re.compile(r"^(\d*)([#>+=.)-])")


def _md(text: str) -> str:
    """Text shown literally in Markdown, on one line: syntax and HTML characters escaped."""
    one_line = " ".join(text.split())
    return _MARKDOWN_BLOCK.sub(r"\1\\\2", _MARKDOWN_INLINE.sub(r"\\\1", one_line))


def summary(title: str) -> str:
    """A card summary: the title, shortened at a word to fewer than 140 characters."""
    text = " ".join(title.split())
    if len(text) <= MAX_SUMMARY:
        return text
    cut = text[: MAX_SUMMARY - 1]
    if " " in cut:
        cut = cut[: cut.rindex(" ")]
    return cut.rstrip(" ,;:-") + "…"


def rule_url(rule: Rule) -> str | None:
    """A link to a shipped rule in the repository (file and line); None for rules from other packs."""
    path = Path(rule.file)
    if not path.is_absolute():
        path = Path.cwd() / path
    if path.resolve().parent != default_rules_path().resolve():
        return None
    anchor = f"#L{rule.line}" if rule.line else ""
    return f"{REPO_URL}/blob/main/rules/{path.name}{anchor}"


def _detail(rec: Recommendation, disclaimer: str, step: tuple[int, int, PlanStep] | None, linked: bool) -> str:
    blocks = []
    if step is not None:
        number, count, where = step
        due = f" (by {where.due:%B} {where.due.day})" if where.due is not None else ""
        blocks.append(f"**Step {number} of {count}: {_md(where.title)}**{due}")
    blocks.append(_md(rec.detail))
    if isinstance(rec, SetDeadline) and rec.decide_within_days is not None:
        blocks.append(
            f"Have the opinion within {rec.get_opinion_within_days} days; decide within {rec.decide_within_days} days."
        )
    action = next((a for a in step[2].actions if a.kind == rec.kind), None) if step is not None else None
    if action is None:
        action = action_for(rec)
    facts = [f"- **{_md(f.label)}:** {_md(f.text)}" for f in action.fields]
    if facts:
        blocks.append("\n".join(facts))
    if linked:
        blocks.append("Reasons and sources: see the links on this card.")
    if disclaimer:
        blocks.append(f"*{_md(disclaimer)}*")
    return "\n\n".join(blocks) + "\n"


def card(
    rec: Recommendation,
    rulebook: Rulebook,
    *,
    hook_instance: str | None = None,
    disclaimer: str | None = None,
    step: tuple[int, int, PlanStep] | None = None,
) -> dict[str, Any]:
    """One CDS Hooks card for a recommendation (see the module docstring for each field).

    ``step`` is the plan step that holds it: its number, the number of steps, and the step.
    """
    rules = rulebook.rules_for(rec.rule_ids)
    first_doc = rulebook.documents.get(rec.sources[0].file) if rec.sources else None
    label = first_doc.title if first_doc is not None else "secondopinion guidance"
    urls = [u for u in (rule_url(r) for r in rules) if u is not None]
    kind_label = rec.kind.replace("_", " ").capitalize()
    key = "|".join([hook_instance or "", rec.kind, *rec.rule_ids])
    out: dict[str, Any] = {
        "uuid": str(uuid.uuid5(CARD_NAMESPACE, key)),
        "summary": summary(rec.title),
        "indicator": _INDICATOR[rec.priority],
        "detail": _detail(rec, disclaimer or "", step, any(rule_url(r) for r in rules)),
        "source": {
            "label": label,
            "url": urls[0] if urls else RULES_URL,
            "topic": {"system": KIND_SYSTEM, "code": rec.kind, "display": kind_label},
        },
    }
    links = [
        {"label": f"Rule {rule.id}: {rule.title}", "url": url, "type": "absolute"}
        for rule in rules
        if (url := rule_url(rule)) is not None
    ]
    if links:
        out["links"] = links
    out["extension"] = {
        f"{EXTENSION}.recommendation": {
            "kind": rec.kind,
            "priority": rec.priority.value,
            "guidance": list(rec.guidance),
            "rules": list(rec.rule_ids),
        }
    }
    return out


def cards(
    advice: Advice,
    rulebook: Rulebook | None = None,
    *,
    hook_instance: str | None = None,
    extension: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The CDS Hooks response for some advice: ``{"cards": [...]}``, one card per recommendation."""
    book = rulebook if rulebook is not None else default_advisor().rulebook
    plan = build_plan(advice)
    where = {a.kind: (n, len(plan.steps), s) for n, s in enumerate(plan.steps, 1) for a in s.actions}
    response: dict[str, Any] = {
        "cards": [
            card(rec, book, hook_instance=hook_instance, disclaimer=advice.disclaimer, step=where.get(rec.kind))
            for rec in advice.recommendations
        ]
    }
    if extension:
        response["extension"] = dict(extension)
    return response


def fhir_available() -> bool:
    """Whether the ``fhir`` extra (fhir.resources) is installed, so FHIR prefetch can be read."""
    try:
        import fhir.resources  # noqa: F401
    except ImportError:
        return False
    return True


def discovery(*, prefetch: bool | None = None) -> dict[str, Any]:
    """The CDS Hooks discovery document (``GET /cds-services``).

    ``prefetch`` says whether to ask for FHIR prefetch data; by default, when
    the ``fhir`` extra is installed.
    """
    ask = fhir_available() if prefetch is None else prefetch
    service: dict[str, Any] = {
        "hook": HOOK,
        "title": "Second opinion guidance",
        "id": SERVICE_ID,
        "description": (
            "Whether, when and how to get a medical second opinion: typed recommendations with their "
            "reasons and sources. Guidance, not medical advice."
        ),
        "usageRequirements": (
            "Send the case as context.case (secondopinion case JSON, see docs/schemas/case.schema.json)"
            + (" or send the FHIR prefetch data." if ask else ".")
        ),
    }
    if ask:
        service["prefetch"] = dict(PREFETCH)
    return {"services": [service]}


class CdsError(Exception):
    """A request the service cannot answer: an HTTP status, an error code and problems by path."""

    def __init__(self, status: int, error: str, message: str, problems: Sequence[str] = ()) -> None:
        self.status = status
        self.error = error
        self.message = message
        self.problems = tuple(problems)
        super().__init__(message)

    def body(self) -> dict[str, Any]:
        """The JSON error body: code, message and problems (paths only, never values)."""
        out: dict[str, Any] = {"error": self.error, "message": self.message}
        if self.problems:
            out["problems"] = list(self.problems)
        return out


@attrs.frozen
class HookRequest:
    """The parts of a CDS Hooks request this service reads."""

    hook: str
    hook_instance: str
    context: Mapping[str, Any]
    prefetch: Mapping[str, Any] | None = None


def parse_request(body: bytes | str | Mapping[str, Any]) -> HookRequest:
    """Check a CDS Hooks request body; raise :class:`CdsError` (400) naming every bad field."""
    data: Any = body
    if isinstance(body, bytes | str):
        try:
            data = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            where = f" at line {exc.lineno}, column {exc.colno}" if isinstance(exc, json.JSONDecodeError) else ""
            raise CdsError(400, "bad_request", f"the request body is not valid JSON{where}") from None
        except RecursionError:
            raise CdsError(400, "bad_request", "the request body is nested too deeply") from None
    if not isinstance(data, Mapping):
        raise CdsError(400, "bad_request", "the request body must be a JSON object", ["expected an object @ $"])
    problems = []
    for name in ("hook", "hookInstance"):
        if name not in data:
            problems.append(f"required field missing @ $.{name}")
        elif not isinstance(data[name], str) or not data[name]:
            problems.append(f"expected a non-empty string @ $.{name}")
    if isinstance(data.get("hook"), str) and data["hook"] and data["hook"] != HOOK:
        problems.append(f"this service answers the {HOOK} hook @ $.hook")
    if "context" not in data:
        problems.append("required field missing @ $.context")
    elif not isinstance(data["context"], Mapping):
        problems.append("expected an object @ $.context")
    prefetch = data.get("prefetch")
    if prefetch is not None and not isinstance(prefetch, Mapping):
        problems.append("expected an object @ $.prefetch")
    if problems:
        raise CdsError(400, "bad_request", "the request is not a valid CDS Hooks request", problems)
    return HookRequest(data["hook"], data["hookInstance"], data["context"], prefetch)


def _rebase(problems: Sequence[str], root: str) -> list[str]:
    """Move case-relative paths (``@ $.x``) under ``root`` (``@ $.context.case.x``)."""
    return [re.sub(r"@ \$(?=\.|\[|$)", f"@ {root}", p) for p in problems]


def _is_outcome(value: Any) -> bool:
    return isinstance(value, Mapping) and value.get("resourceType") == "OperationOutcome"


def case_from_request(
    request: HookRequest, *, fhir_version: str = "R4B", accept_prefetch: bool | None = None
) -> tuple[Case, dict[str, Any] | None]:
    """The case of a request and, when it came from FHIR prefetch, the mapping report.

    ``context.case`` wins over prefetch. Raises :class:`CdsError`: 400 for an
    invalid case or invalid FHIR, 412 when there is no case to advise on.
    """
    if "case" in request.context:
        try:
            return load_case(request.context["case"]), None
        except CaseError as exc:
            raise CdsError(
                400, "invalid_case", "context.case is not a valid case", _rebase(exc.problems, "$.context.case")
            ) from None
    use_prefetch = fhir_available() if accept_prefetch is None else accept_prefetch
    known = {k: v for k, v in (request.prefetch or {}).items() if k in PREFETCH}
    # A null value means no data; an OperationOutcome means the client failed to fetch it (CDS Hooks 2.0).
    fetched = [v for v in known.values() if v is not None and not _is_outcome(v)]
    if not use_prefetch or not fetched:
        wanted = "context.case or the FHIR prefetch data" if use_prefetch else "context.case"
        raise CdsError(412, "no_case", f"nothing to advise on: send {wanted}")
    from . import fhir

    patient_id = request.context.get("patientId")
    try:
        mapped = fhir.case_from_prefetch(
            known,
            fhir_version="R5" if fhir_version == "R5" else "R4B",
            patient_id=patient_id if isinstance(patient_id, str) else None,
        )
    except fhir.FhirError as exc:
        rebased = [p.replace("@ prefetch", "@ $.prefetch") for p in exc.problems]
        raise CdsError(400, "invalid_fhir", "the prefetch data is not valid FHIR", rebased) from None
    return mapped.case, mapped.report()


def handle(
    body: bytes | str | Mapping[str, Any],
    advisor: Advisor,
    *,
    fhir_version: str = "R4B",
    accept_prefetch: bool | None = None,
) -> tuple[int, dict[str, Any]]:
    """Answer one call of the service: ``(HTTP status, JSON body)``; errors never echo values."""
    try:
        request = parse_request(body)
        case, report = case_from_request(request, fhir_version=fhir_version, accept_prefetch=accept_prefetch)
    except CdsError as exc:
        return exc.status, exc.body()
    advice = advisor.advise(case)
    extension = {f"{EXTENSION}.fhir-mapping": report} if report is not None else None
    return 200, cards(advice, advisor.rulebook, hook_instance=request.hook_instance, extension=extension)
