"""The CDS Hooks service as an ASGI app (FastAPI), and ``secondopinion serve``.

Needs the ``service`` extra (``pip install 'secondopinion[service]'``).

* ``GET /cds-services``: the discovery document, one service per hook
  (``patient-view``, ``order-select``, ``order-sign``).
* ``POST /cds-services/{id}``: a CDS Hooks call; the case comes from
  ``context.case`` or from FHIR data (prefetch, the ``fhirServer``, an order
  hook's ``draftOrders``); the answer is ``{"cards": [...]}``.

The request body is read and checked by :func:`secondopinion.cds_hooks.handle`
rather than by FastAPI's own validation, so every error is a JSON body that
names field paths and never echoes a value (400 for bad input, 401 for a
missing or bad JWT when one is required, 404 for an unknown service, 408 for
a body that arrives too slowly, 413 for an oversized body). Nothing from a
request is logged. Advice runs in a worker thread: the engine serialises its
sessions, so one process serves one case at a time.

Options of :func:`create_app`:

* ``base_url``: where card links point (the rule files below it);
* ``cors_origins``: browser origins allowed to call (Starlette's
  CORSMiddleware; none by default, so no CORS headers at all);
* ``jwt``: a :class:`JwtVerifier` that checks the CDS client's JWT on every
  service call (CDS Hooks 2.0 security: signature from a JWKS, ``iss``,
  ``aud``, ``exp``, ``jti`` never reused);
* ``fetch_fhir``: fetch the prefetch data a client did not send from its
  ``fhirServer`` with its ``fhirAuthorization`` token (httpx; timeouts and a
  size limit; no redirects); ``fhir_servers`` limits it to known servers.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import attrs
import httpx
from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.cors import CORSMiddleware

from . import __version__
from .advisor import Advisor, default_advisor
from .cds_hooks import SERVICES, Fetcher, discovery, handle

__all__ = [
    "BODY_TIMEOUT_SECONDS",
    "FETCH_MAX_BYTES",
    "FETCH_TIMEOUT_SECONDS",
    "KEEP_ALIVE_SECONDS",
    "MAX_BODY_BYTES",
    "JwtError",
    "JwtVerifier",
    "create_app",
    "fhir_fetcher",
    "serve",
]

MAX_BODY_BYTES = 1_000_000
"""The largest request body accepted; a case with FHIR prefetch is far smaller."""
BODY_TIMEOUT_SECONDS = 10.0
"""Longest time a client may take to send a request body (a slow sender gets 408)."""
KEEP_ALIVE_SECONDS = 5
"""How long uvicorn keeps an idle connection open."""
FETCH_TIMEOUT_SECONDS = 5.0
"""Longest time one fetch from a client's fhirServer may take, all of it."""
FETCH_MAX_BYTES = 5_000_000
"""The largest answer read from a client's fhirServer."""

JWT_ALGORITHMS = ("ES384", "RS384", "ES256", "RS256")
"""CDS Hooks 2.0 asks services to support ES384 and RS384; ES256 and RS256 are common too."""

_log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- fetching from the fhirServer


def _outcome(code: str, text: str) -> dict[str, Any]:
    return {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": code, "diagnostics": text}]}


def fhir_fetcher(
    *,
    timeout: float = FETCH_TIMEOUT_SECONDS,
    max_bytes: int = FETCH_MAX_BYTES,
    allowed: Sequence[str] = (),
) -> Fetcher:
    """A fetcher for :func:`secondopinion.cds_hooks.handle`: GET a FHIR query from the client's server.

    It sends the request's bearer token, follows no redirect, ignores proxy
    settings from the environment, stops after ``timeout`` seconds in all and
    after ``max_bytes`` bytes. With ``allowed`` (URL prefixes such as
    ``https://ehr.example.org/fhir``) any other server is not contacted. Any
    failure gives an OperationOutcome, which the mapping report lists as data
    that could not be fetched; nothing is logged.
    """
    prefixes = tuple(a.rstrip("/") for a in allowed)

    def fetch(server: str, query: str, token: str | None) -> Any:
        base = server.rstrip("/")
        if prefixes and not any(base == p or base.startswith(p + "/") for p in prefixes):
            return _outcome("forbidden", "this fhirServer is not one the service may fetch from")
        url = f"{base}/{query}"
        headers = {"Accept": "application/fhir+json, application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        deadline = time.monotonic() + timeout
        try:
            with (
                httpx.Client(timeout=timeout, follow_redirects=False, trust_env=False) as client,
                client.stream("GET", url, headers=headers) as response,
            ):
                if response.status_code != 200:
                    return _outcome("exception", f"the FHIR server answered {response.status_code}")
                body = bytearray()
                for chunk in response.iter_bytes():
                    body += chunk
                    if len(body) > max_bytes:
                        return _outcome("too-costly", "the FHIR server's answer is too large")
                    if time.monotonic() > deadline:
                        return _outcome("timeout", "the FHIR server was too slow")
            data = json.loads(body)
        except httpx.TimeoutException:
            return _outcome("timeout", "the FHIR server was too slow")
        except (httpx.HTTPError, httpx.InvalidURL):
            return _outcome("exception", "the FHIR server could not be reached")
        except (ValueError, RecursionError):
            return _outcome("structure", "the FHIR server's answer is not JSON")
        if not isinstance(data, dict) or not isinstance(data.get("resourceType"), str):
            return _outcome("structure", "the FHIR server's answer is not a FHIR resource")
        return data

    return fetch


# --------------------------------------------------------------------------- JWT (CDS Hooks 2.0 security)


class JwtError(Exception):
    """A JWT that is missing or not accepted; the message says why without quoting the token."""


@attrs.define
class JwtVerifier:
    """Checks the CDS client's JWT: signature (a key of the JWKS), ``iss``, ``aud``, ``exp``, ``iat``, ``jti``.

    ``jwks`` is a JWKS file or an https URL (fetched and cached by PyJWT's
    JWKS client); ``issuers`` are the accepted ``iss`` values (the CDS
    clients); ``audience`` is the expected ``aud`` (default: the URL the call
    was made to). A ``jti`` is accepted once while its token is valid.
    """

    jwks: str
    issuers: tuple[str, ...]
    audience: str | None = None
    leeway: int = 30
    _keys: Any = attrs.field(default=None, init=False)
    _seen: dict[tuple[str, str], float] = attrs.field(factory=dict, init=False)
    _lock: threading.Lock = attrs.field(factory=threading.Lock, init=False)

    def __attrs_post_init__(self) -> None:
        import jwt

        if not self.issuers:
            raise ValueError("JWT checking needs at least one accepted issuer (--jwt-issuer)")
        if self.jwks.startswith("https://") or self.jwks.startswith("http://"):
            self._keys = jwt.PyJWKClient(self.jwks, cache_keys=True, lifespan=300, timeout=5)
            return
        path = Path(self.jwks)
        try:
            data = json.loads(path.read_text("utf-8"))
            self._keys = jwt.PyJWKSet.from_dict(data)
        except OSError:
            raise ValueError(f"cannot read the JWKS file {path}") from None
        except (ValueError, jwt.PyJWTError):
            raise ValueError(f"{path} is not a JSON Web Key Set") from None

    def _key(self, token: str) -> Any:
        import jwt

        if isinstance(self._keys, jwt.PyJWKClient):
            return self._keys.get_signing_key_from_jwt(token).key
        kid = jwt.get_unverified_header(token).get("kid")
        keys = self._keys.keys
        if kid is None and len(keys) == 1:
            return keys[0].key
        for key in keys:
            if kid is not None and key.key_id == kid:
                return key.key
        raise JwtError("the token is not signed by a key of the configured JWKS")

    def verify(self, authorization: str | None, url: str) -> dict[str, Any]:
        """The claims of a valid token from an ``Authorization`` header; raise :class:`JwtError` otherwise."""
        import jwt

        if not authorization or not authorization.lower().startswith("bearer "):
            raise JwtError("this service needs a bearer JWT in the Authorization header")
        token = authorization[7:].strip()
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                self._key(token),
                algorithms=list(JWT_ALGORITHMS),
                audience=self.audience or url,
                issuer=list(self.issuers),
                leeway=self.leeway,
                options={"require": ["iss", "aud", "exp", "iat", "jti"]},
            )
        except jwt.ExpiredSignatureError:
            raise JwtError("the token has expired") from None
        except jwt.InvalidAudienceError:
            raise JwtError("the token's aud is not this service") from None
        except jwt.InvalidIssuerError:
            raise JwtError("the token's iss is not an accepted CDS client") from None
        except jwt.MissingRequiredClaimError as exc:
            raise JwtError(f"the token lacks the {exc.claim} claim") from None
        except jwt.InvalidSignatureError:
            raise JwtError("the token's signature does not verify") from None
        except jwt.PyJWKClientError:
            raise JwtError("the signing keys could not be fetched") from None
        except jwt.PyJWTError:
            raise JwtError("the token could not be read") from None
        self._once(str(claims["iss"]), str(claims["jti"]), float(claims["exp"]))
        return claims

    def _once(self, iss: str, jti: str, exp: float) -> None:
        now = time.time()
        with self._lock:
            for key in [k for k, until in self._seen.items() if until + self.leeway < now]:
                del self._seen[key]
            if (iss, jti) in self._seen:
                raise JwtError("the token was used before (jti)")
            self._seen[(iss, jti)] = exp


# --------------------------------------------------------------------------- the app


def create_app(
    advisor: Advisor | None = None,
    *,
    fhir_version: str = "R4B",
    accept_prefetch: bool | None = None,
    base_url: str | None = None,
    cors_origins: Iterable[str] = (),
    jwt: JwtVerifier | None = None,
    fetch_fhir: bool = True,
    fhir_servers: Sequence[str] = (),
    fetcher: Fetcher | None = None,
    body_timeout: float = BODY_TIMEOUT_SECONDS,
) -> FastAPI:
    """The CDS Hooks ASGI app.

    ``advisor`` defaults to the shared one on the shipped rules;
    ``fhir_version`` is how FHIR data is read (``R4B``, which also reads R4,
    or ``R5``); ``accept_prefetch`` defaults to whether the ``fhir`` extra is
    installed; ``fhir_servers`` limits fetching to these URL prefixes;
    ``fetcher`` replaces :func:`fhir_fetcher` (when ``fetch_fhir``).
    See the module docstring for the others.
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
    origins = list(cors_origins)
    if origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=origins,
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type"],
            max_age=600,
        )
    fetch = (fetcher or fhir_fetcher(allowed=fhir_servers)) if fetch_fhir else None
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

    @app.post("/cds-services/{service_id}")
    async def call(service_id: str, request: Request) -> JSONResponse:
        """Answer a hook call with cards."""
        if service_id not in SERVICES:
            return JSONResponse({"error": "not_found", "message": "no such CDS service"}, status_code=404)
        if jwt is not None:
            url = str(request.url.replace(query=""))
            try:
                await run_in_threadpool(jwt.verify, request.headers.get("authorization"), url)
            except JwtError as exc:
                return JSONResponse(
                    {"error": "unauthorized", "message": str(exc)},
                    status_code=401,
                    headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
                )
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
            return _too_large()
        body = bytearray()
        try:
            async with asyncio.timeout(body_timeout):
                async for chunk in request.stream():
                    body += chunk
                    if len(body) > MAX_BODY_BYTES:
                        return _too_large()
        except TimeoutError:
            message = f"the request body did not arrive within {body_timeout:g} seconds"
            return JSONResponse({"error": "timeout", "message": message}, status_code=408)
        raw = bytes(body)
        try:
            status, payload = await run_in_threadpool(
                lambda: handle(
                    raw,
                    get_advisor(),
                    fhir_version=fhir_version,
                    accept_prefetch=accept_prefetch,
                    service_id=service_id,
                    base_url=base_url,
                    fetch=fetch,
                )
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
    base_url: str | None = None,
    cors_origins: Sequence[str] = (),
    jwt: JwtVerifier | None = None,
    fetch_fhir: bool = True,
    fhir_servers: Sequence[str] = (),
) -> None:
    """Run the service with uvicorn until interrupted (access log off: paths are all it would add).

    Idle keep-alive connections close after :data:`KEEP_ALIVE_SECONDS`; a
    request body must arrive within :data:`BODY_TIMEOUT_SECONDS`.
    """
    import uvicorn

    app = create_app(
        advisor,
        fhir_version=fhir_version,
        base_url=base_url,
        cors_origins=cors_origins,
        jwt=jwt,
        fetch_fhir=fetch_fhir,
        fhir_servers=fhir_servers,
    )
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        timeout_keep_alive=KEEP_ALIVE_SECONDS,
        timeout_graceful_shutdown=10,
        limit_concurrency=500,
    )
