"""The CDS Hooks service as an ASGI app (FastAPI), and ``secondopinion serve``.

Needs the ``service`` extra (``pip install 'secondopinion[service]'``).

* ``GET /cds-services``: the discovery document.
* ``POST /cds-services/second-opinion``: a CDS Hooks call; the case comes from
  ``context.case`` or from FHIR prefetch data; the answer is ``{"cards": [...]}``.

The request body is read and checked by :func:`secondopinion.cds_hooks.handle`
rather than by FastAPI's own validation, so every error is a JSON body that
names field paths and never echoes a value (400 for bad input, 412 when there
is nothing to advise on, 413 for an oversized body, 404 for an unknown
service). Nothing from a request is logged. Advice runs in a worker thread:
the engine serialises its sessions, so one process serves one case at a time
and runs more processes for more throughput.

The CDS Hooks security model (TLS, and a JWT from the CDS client on every
call) belongs to the deployment: run this app behind a proxy or an ASGI
middleware that checks them.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from . import __version__
from .advisor import Advisor, default_advisor
from .cds_hooks import SERVICE_ID, discovery, handle

__all__ = ["MAX_BODY_BYTES", "create_app", "serve"]

MAX_BODY_BYTES = 1_000_000
"""The largest request body accepted; a case with FHIR prefetch is far smaller."""

_log = logging.getLogger(__name__)


def create_app(
    advisor: Advisor | None = None,
    *,
    fhir_version: str = "R4B",
    accept_prefetch: bool | None = None,
) -> FastAPI:
    """The CDS Hooks ASGI app.

    ``advisor`` defaults to the shared one on the shipped rules;
    ``fhir_version`` is how prefetch data is read (``R4B``, which also reads
    R4, or ``R5``); ``accept_prefetch`` defaults to whether the ``fhir`` extra
    is installed.
    """
    if fhir_version not in ("R4B", "R5"):
        raise ValueError("fhir_version must be R4B or R5")
    app = FastAPI(
        title="secondopinion CDS Hooks service",
        version=__version__,
        description="Guidance on whether, when and how to get a medical second opinion. Not medical advice.",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    state: dict[str, Advisor] = {}

    def get_advisor() -> Advisor:
        if "advisor" not in state:
            state["advisor"] = advisor if advisor is not None else default_advisor()
        return state["advisor"]

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        error = "not_found" if exc.status_code == 404 else "http_error"
        return JSONResponse({"error": error, "message": str(exc.detail)}, status_code=exc.status_code)

    @app.exception_handler(Exception)
    async def internal_error(_request: Request, exc: Exception) -> JSONResponse:
        return _internal_error(exc)

    @app.get("/cds-services")
    async def services() -> dict[str, Any]:
        """The CDS Hooks discovery document."""
        return discovery(prefetch=accept_prefetch)

    @app.post(f"/cds-services/{SERVICE_ID}")
    async def second_opinion(request: Request) -> JSONResponse:
        """Answer a patient-view call with cards."""
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
            return _too_large()
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_BODY_BYTES:
                return _too_large()
        try:
            status, payload = await run_in_threadpool(
                lambda: handle(body, get_advisor(), fhir_version=fhir_version, accept_prefetch=accept_prefetch)
            )
        except Exception as exc:  # answered here so that no traceback (which could quote a case) reaches the log
            return _internal_error(exc)
        return JSONResponse(payload, status_code=status)

    return app


def _internal_error(exc: Exception) -> JSONResponse:
    """A 500 answer; the log gets the exception type only, since its message could hold part of a case."""
    _log.error("internal error while answering a CDS Hooks call: %s", type(exc).__name__)
    return JSONResponse({"error": "internal_error", "message": "the service failed"}, status_code=500)


def _too_large() -> JSONResponse:
    message = f"the request body is larger than {MAX_BODY_BYTES} bytes"
    return JSONResponse({"error": "too_large", "message": message}, status_code=413)


def serve(
    advisor: Advisor | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 8080,
    fhir_version: str = "R4B",
) -> None:
    """Run the service with uvicorn until interrupted (access log off: paths are all it would add)."""
    import uvicorn

    app = create_app(advisor, fhir_version=fhir_version)
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)
