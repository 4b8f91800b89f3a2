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

Requests. Three services, one per hook: ``patient-view``, ``order-select``
and ``order-sign`` (:data:`SERVICES`). The case comes from ``context.case``
(this library's case JSON) or, when the ``fhir`` extra is installed, from
FHIR data: every resource in the prefetch, what the client did not prefetch
fetched from its ``fhirServer`` (with a ``fetch`` function, see
:func:`secondopinion.service.fhir_fetcher`), and an order hook's
``context.draftOrders``. The order hooks answer only when a draft order is
surgery, chemotherapy or radiation. FHIR data with neither a known condition
nor a planned treatment gets one "not enough data" card. Bad JSON, a
malformed request, an invalid case or invalid FHIR get HTTP 400; a request
with no case, no FHIR data and no ``fhirServer`` gets 412 (Precondition
Failed). Error bodies name field paths, never values.
"""

from __future__ import annotations

import functools
import json
import os
import re
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

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
DEFAULT_BASE_URL = f"{REPO_URL}/blob/main"
"""Where card links point by default: the repository's files (``--base-url`` changes it)."""
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
    "encounter": "Encounter/{{context.encounterId}}",
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


@functools.lru_cache(maxsize=1024)
def _shipped_name(file: str, cwd: str) -> str | None:
    """The file name of a shipped rule file, None for another pack's (paths resolved once per file)."""
    path = Path(file)
    if not path.is_absolute():
        path = Path(cwd) / path
    return path.name if path.resolve().parent == _shipped_dir() else None


@functools.cache
def _shipped_dir() -> Path:
    return default_rules_path().resolve()


def rule_url(rule: Rule, base_url: str | None = None) -> str | None:
    """A link to a shipped rule (file and line) under ``base_url``; None for rules from other packs.

    ``base_url`` is where the repository's files are served (``rules/`` below
    it); by default :data:`DEFAULT_BASE_URL`.
    """
    name = _shipped_name(rule.file, os.getcwd())
    if name is None:
        return None
    anchor = f"#L{rule.line}" if rule.line else ""
    return f"{(base_url or DEFAULT_BASE_URL).rstrip('/')}/rules/{name}{anchor}"


def rules_url(base_url: str | None = None) -> str:
    """The folder of the shipped rules under ``base_url`` (the card source when no rule file is shipped)."""
    return RULES_URL if base_url is None else f"{base_url.rstrip('/')}/rules"


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
    base_url: str | None = None,
) -> dict[str, Any]:
    """One CDS Hooks card for a recommendation (see the module docstring for each field).

    ``step`` is the plan step that holds it: its number, the number of steps, and the step.
    """
    rules = rulebook.rules_for(rec.rule_ids)
    first_doc = rulebook.documents.get(rec.sources[0].file) if rec.sources else None
    label = first_doc.title if first_doc is not None else "secondopinion guidance"
    urls = [u for u in (rule_url(r, base_url) for r in rules) if u is not None]
    kind_label = rec.kind.replace("_", " ").capitalize()
    key = "|".join([hook_instance or "", rec.kind, *rec.rule_ids])
    out: dict[str, Any] = {
        "uuid": str(uuid.uuid5(CARD_NAMESPACE, key)),
        "summary": summary(rec.title),
        "indicator": _INDICATOR[rec.priority],
        "detail": _detail(rec, disclaimer or "", step, bool(urls)),
        "source": {
            "label": label,
            "url": urls[0] if urls else rules_url(base_url),
            "topic": {"system": KIND_SYSTEM, "code": rec.kind, "display": kind_label},
        },
    }
    links = [
        {"label": f"Rule {rule.id}: {rule.title}", "url": url, "type": "absolute"}
        for rule, url in zip(rules, (rule_url(r, base_url) for r in rules), strict=True)
        if url is not None
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
    base_url: str | None = None,
) -> dict[str, Any]:
    """The CDS Hooks response for some advice: ``{"cards": [...]}``, one card per recommendation."""
    book = rulebook if rulebook is not None else default_advisor().rulebook
    plan = build_plan(advice)
    where = {a.kind: (n, len(plan.steps), s) for n, s in enumerate(plan.steps, 1) for a in s.actions}
    response: dict[str, Any] = {
        "cards": [
            card(
                rec,
                book,
                hook_instance=hook_instance,
                disclaimer=advice.disclaimer,
                step=where.get(rec.kind),
                base_url=base_url,
            )
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


SERVICES: dict[str, str] = {
    SERVICE_ID: "patient-view",
    f"{SERVICE_ID}-order-select": "order-select",
    f"{SERVICE_ID}-order-sign": "order-sign",
}
"""Service id -> the hook it answers. A CDS Hooks service answers one hook, so each hook has its own id."""

ORDER_HOOKS = frozenset({"order-select", "order-sign"})

_TITLES = {
    "patient-view": "Second opinion guidance",
    "order-select": "Second opinion before this order",
    "order-sign": "Second opinion before signing this order",
}


def discovery(*, prefetch: bool | None = None) -> dict[str, Any]:
    """The CDS Hooks discovery document (``GET /cds-services``): one service per hook.

    ``prefetch`` says whether to ask for FHIR prefetch data; by default, when
    the ``fhir`` extra is installed.
    """
    ask = fhir_available() if prefetch is None else prefetch
    services = []
    for service_id, hook in SERVICES.items():
        service: dict[str, Any] = {
            "hook": hook,
            "title": _TITLES[hook],
            "id": service_id,
            "description": (
                "Whether, when and how to get a medical second opinion: typed recommendations with their "
                "reasons and sources. Guidance, not medical advice."
                + (
                    " Answers only when a draft order is surgery, chemotherapy or radiation."
                    if hook in ORDER_HOOKS
                    else ""
                )
            ),
            "usageRequirements": (
                "Send the case as context.case (secondopinion case JSON, see docs/schemas/case.schema.json)"
                + (" or the FHIR prefetch data (or a fhirServer to fetch it from)." if ask else ".")
            ),
        }
        if ask:
            service["prefetch"] = dict(PREFETCH)
        services.append(service)
    return {"services": services}


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
    fhir_server: str | None = None
    access_token: str | None = None


def _loads(body: bytes | str) -> Any:
    try:
        return json.loads(body)
    except json.JSONDecodeError as exc:
        where = f" at line {exc.lineno}, column {exc.colno}"
        raise CdsError(400, "bad_request", f"the request body is not valid JSON{where}") from None
    except RecursionError:
        raise CdsError(400, "bad_request", "the request body is nested too deeply") from None
    except ValueError:  # not UTF-8/16/32, or a number longer than Python converts (sys.get_int_max_str_digits)
        raise CdsError(400, "bad_request", "the request body is not valid JSON") from None


def parse_request(body: bytes | str | Mapping[str, Any], hook: str = HOOK) -> HookRequest:
    """Check a request body for a service on ``hook``; raise :class:`CdsError` (400) naming every bad field."""
    data: Any = _loads(body) if isinstance(body, bytes | str) else body
    if not isinstance(data, Mapping):
        raise CdsError(400, "bad_request", "the request body must be a JSON object", ["expected an object @ $"])
    problems = []
    for name in ("hook", "hookInstance"):
        if name not in data:
            problems.append(f"required field missing @ $.{name}")
        elif not isinstance(data[name], str) or not data[name]:
            problems.append(f"expected a non-empty string @ $.{name}")
    if isinstance(data.get("hook"), str) and data["hook"] and data["hook"] != hook:
        problems.append(f"this service answers the {hook} hook @ $.hook")
    if "context" not in data:
        problems.append("required field missing @ $.context")
    elif not isinstance(data["context"], Mapping):
        problems.append("expected an object @ $.context")
    elif (
        hook in ORDER_HOOKS
        and "draftOrders" in data["context"]
        and not isinstance(data["context"]["draftOrders"], Mapping)
    ):
        problems.append("expected a FHIR Bundle @ $.context.draftOrders")
    prefetch = data.get("prefetch")
    if prefetch is not None and not isinstance(prefetch, Mapping):
        problems.append("expected an object @ $.prefetch")
    server = data.get("fhirServer")
    if server is not None and not (isinstance(server, str) and server.startswith(("http://", "https://"))):
        problems.append("expected an http or https URL @ $.fhirServer")
    auth = data.get("fhirAuthorization")
    token: str | None = None
    if auth is not None:
        if not isinstance(auth, Mapping) or not isinstance(auth.get("access_token"), str):
            problems.append("expected an object with an access_token @ $.fhirAuthorization")
        else:
            token = auth["access_token"]
    if problems:
        raise CdsError(400, "bad_request", "the request is not a valid CDS Hooks request", problems)
    return HookRequest(data["hook"], data["hookInstance"], data["context"], prefetch, server, token)


def _rebase(problems: Sequence[str], root: str) -> list[str]:
    """Move case-relative paths (``@ $.x``) under ``root`` (``@ $.context.case.x``)."""
    return [re.sub(r"@ \$(?=\.|\[|$)", f"@ {root}", p) for p in problems]


def _is_outcome(value: Any) -> bool:
    return isinstance(value, Mapping) and value.get("resourceType") == "OperationOutcome"


def _is_resource(value: Any) -> bool:
    return isinstance(value, Mapping) and isinstance(value.get("resourceType"), str)


Fetcher = Callable[[str, str, str | None], Any]
"""Fetches one FHIR query: (fhirServer, relative URL, bearer token) -> a resource or Bundle.

On failure it returns an OperationOutcome, which the mapping reports as data that could not be fetched."""


@attrs.frozen
class FromRequest:
    """What a request gives to advise on: a case, and the FHIR mapping report when it came from FHIR."""

    case: Case
    report: dict[str, Any] | None = None
    missing: tuple[str, ...] = ()
    """What the FHIR data lacked to give advice (empty when enough was there)."""
    order_treatment: bool = True
    """For order hooks: whether a draft order is a treatment the advice is about."""
    deceased: bool = False
    """The FHIR data says the patient has died: no card applies."""


def _queries(request: HookRequest, known: Mapping[str, Any]) -> dict[str, str]:
    """The prefetch queries to run on the FHIR server: the keys the client left out or failed to fetch."""
    patient_id = request.context.get("patientId")
    if request.fhir_server is None or not isinstance(patient_id, str) or not patient_id:
        return {}
    pid = quote(patient_id.removeprefix("Patient/"), safe="")
    encounter_id = request.context.get("encounterId")
    eid = quote(encounter_id.removeprefix("Encounter/"), safe="") if isinstance(encounter_id, str) else ""
    has_patient = any(isinstance(v, Mapping) and v.get("resourceType") == "Patient" for v in known.values())
    out = {}
    for key, template in PREFETCH.items():
        if key == "patient" and has_patient:
            continue  # sent under another key (the specification's example calls it patientToGreet)
        if "{{context.encounterId}}" in template and not eid:
            continue  # no encounter in the context (patient-view may have none)
        if key not in known or _is_outcome(known[key]):
            out[key] = template.replace("{{context.patientId}}", pid).replace("{{context.encounterId}}", eid)
    return out


def case_from_request(
    request: HookRequest,
    *,
    fhir_version: str = "R4B",
    accept_prefetch: bool | None = None,
    fetch: Fetcher | None = None,
) -> FromRequest:
    """What to advise on: the case of a request and, when it came from FHIR, the mapping report.

    ``context.case`` wins over FHIR data. Otherwise the FHIR data is every
    resource in the prefetch (under any key), the prefetch the client did not
    send fetched from ``fhirServer`` with ``fetch`` (when given), and an order
    hook's ``context.draftOrders``. Raises :class:`CdsError`: 400 for an
    invalid case or invalid FHIR, 412 when the request carries no way to get
    a case at all.
    """
    if "case" in request.context:
        try:
            return FromRequest(load_case(request.context["case"]))
        except CaseError as exc:
            raise CdsError(
                400, "invalid_case", "context.case is not a valid case", _rebase(exc.problems, "$.context.case")
            ) from None
    use_fhir = fhir_available() if accept_prefetch is None else accept_prefetch
    prefetch = request.prefetch or {}
    # Our own keys in any shape (a bad one is a 400); other keys only when they hold a resource.
    known = {k: v for k, v in prefetch.items() if k in PREFETCH or _is_resource(v)}
    draft = request.context.get("draftOrders") if request.hook in ORDER_HOOKS else None
    queries = _queries(request, known) if fetch is not None else {}
    if not use_fhir or not (known or queries or draft):
        wanted = "context.case, the FHIR prefetch data or a fhirServer" if use_fhir else "context.case"
        raise CdsError(412, "no_case", f"nothing to advise on: send {wanted}")
    from . import fhir

    fetched: dict[str, Any] = {}
    if fetch is not None and request.fhir_server is not None:
        for key, query in queries.items():
            fetched[key] = fetch(request.fhir_server, query, request.access_token)
    data = {k: v for k, v in known.items() if not (k in fetched and _is_outcome(v))}
    data.update({f"fhirServer.{k}": v for k, v in fetched.items()})
    patient_id = request.context.get("patientId")
    try:
        mapped = fhir.case_from_prefetch(
            data,
            fhir_version="R5" if fhir_version == "R5" else "R4B",
            patient_id=patient_id.removeprefix("Patient/") if isinstance(patient_id, str) else None,
            draft_orders=draft if isinstance(draft, Mapping) else None,
        )
    except fhir.PatientDeceased as exc:
        path = exc.path.replace("prefetch.fhirServer.", "fhirServer.")
        died = {
            "fhir_path": path,
            "reason": exc.REASON,
            "category": "ignored",
        }
        return FromRequest(Case(), {"summary": {}, "mapped": [], "unmapped": [died]}, deceased=True)
    except fhir.FhirError as exc:
        rebased = [
            p.replace("@ prefetch.fhirServer.", "@ fhirServer.").replace("@ prefetch", "@ $.prefetch")
            for p in exc.problems
        ]
        rebased = [p.replace("@ context.", "@ $.context.") for p in rebased]
        raise CdsError(400, "invalid_fhir", "the FHIR data is not valid FHIR", rebased) from None
    report = mapped.report()
    for item in report["mapped"] + report["unmapped"]:
        item["fhir_path"] = item["fhir_path"].replace("prefetch.fhirServer.", "fhirServer.")
    fields = {m.case_field.split(".")[0] for m in mapped.mapped}
    missing = []
    if "diagnosis" not in fields:
        missing.append("an active condition (Condition) with a code this service knows")
    if "treatment" not in fields:
        missing.append("a planned treatment (ServiceRequest, Procedure, MedicationRequest or CarePlan)")
    order_treatment = any(
        m.case_field == "treatment.kind" and m.fhir_path.startswith("context.draftOrders") for m in mapped.mapped
    )
    # Enough to advise on: a diagnosis or a treatment.
    return FromRequest(
        mapped.case, report, tuple(missing) if len(missing) == 2 else (), order_treatment or draft is None
    )


NOT_ENOUGH_DATA = "Not enough data for second opinion guidance"


def not_enough_data_card(missing: Sequence[str], *, hook_instance: str | None = None) -> dict[str, Any]:
    """A short info card saying what the FHIR data lacked (instead of an error)."""
    lines = "\n".join(f"- {_md(m)}" for m in missing)
    return {
        "uuid": str(uuid.uuid5(CARD_NAMESPACE, f"{hook_instance or ''}|not-enough-data")),
        "summary": NOT_ENOUGH_DATA,
        "indicator": "info",
        "detail": f"The record did not show what this guidance needs:\n\n{lines}\n",
        "source": {"label": "secondopinion guidance"},
    }


def handle(
    body: bytes | str | Mapping[str, Any],
    advisor: Advisor,
    *,
    fhir_version: str = "R4B",
    accept_prefetch: bool | None = None,
    service_id: str = SERVICE_ID,
    base_url: str | None = None,
    fetch: Fetcher | None = None,
) -> tuple[int, dict[str, Any]]:
    """Answer one call of a service: ``(HTTP status, JSON body)``; errors never echo values.

    ``fetch`` fetches prefetch data the client did not send from its
    ``fhirServer`` (see :func:`secondopinion.service.fhir_fetcher`); without it
    nothing is fetched.
    """
    hook = SERVICES.get(service_id)
    if hook is None:
        return 404, {"error": "not_found", "message": "no such CDS service"}
    try:
        request = parse_request(body, hook)
        got = case_from_request(request, fhir_version=fhir_version, accept_prefetch=accept_prefetch, fetch=fetch)
    except CdsError as exc:
        return exc.status, exc.body()
    extension = {f"{EXTENSION}.fhir-mapping": got.report} if got.report is not None else None
    if got.deceased or not got.order_treatment:
        # A patient who has died, or an order hook whose draft orders hold no surgery, chemotherapy or
        # radiation: nothing to say now.
        return 200, {"cards": [], **({"extension": extension} if extension else {})}
    if got.missing:
        response: dict[str, Any] = {"cards": [not_enough_data_card(got.missing, hook_instance=request.hook_instance)]}
        if extension:
            response["extension"] = extension
        return 200, response
    advice = advisor.advise(got.case)
    return 200, cards(
        advice, advisor.rulebook, hook_instance=request.hook_instance, extension=extension, base_url=base_url
    )
