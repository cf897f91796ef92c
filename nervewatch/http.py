"""aiohttp plumbing shared by the three services.

`create_app` adds: JSON access metrics per route and status, problem+json for every error
(unexpected exceptions become a 500 that reveals nothing; aiohttp's own HTTP errors keep the
headers that matter, so a 405 carries `Allow`), a 1 MiB body limit (a route may set its own with
`with_body_limit` and read its body with `read_body`), API-key authentication helpers, and the
`/healthz`, `/readyz` and `/metrics` endpoints. With an identity store it also starts and stops
the store's key-change listener and access-log flusher with the app.
`authenticate` also applies the per-key rate limit (429 + `Retry-After`) and marks requests made
for scope `care` so that, once their response starts with a success status, one row goes to the
access audit (`nervewatch.identity.access_log`), written in the background; `record_access` adds
a row for patient data sent later within an open response (each alert of the stream), and
`still_authorized` re-checks a long-lived response's key.
`serve` runs an app until SIGTERM/SIGINT, then stops accepting, lets in-flight requests finish
(bounded by the shutdown timeout) and runs the app's cleanup hooks (consumers commit and close).
Requests aiohttp's parser refuses (oversized request line or headers, malformed HTTP) never reach
the app: `nervewatch.http_protocol` answers them (414 / 431 / 400 problem+json).
"""

from __future__ import annotations

import asyncio
import logging
import math
import signal
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from nervewatch import metrics
from nervewatch.http_protocol import ProblemAppRunner
from nervewatch.identity.access_log import AccessRecord
from nervewatch.identity.ratelimit import KeyRateLimiter
from nervewatch.identity.store import IdentityStore, Principal
from nervewatch.problems import ProblemError, problem_response
from nervewatch.settings import Settings, get_settings

log = logging.getLogger(__name__)

MAX_BODY = 1024 * 1024
# HTTP parser limits, set explicitly in `serve`: the request line (its target with aiohttp's C
# parser: path and query string) at most 8190 bytes, each header field (name and value) at most
# 8192 bytes, at most 128 headers. Beyond them the parser refuses the request before any
# application code, answered 414 / 431 problem+json by `nervewatch.http_protocol` (which tells the
# two apart by the limit exceeded: they must differ).
MAX_REQUEST_LINE = 8190
MAX_HEADER_FIELD = 8192
MAX_HEADERS = 128
# Headers of an aiohttp HTTPException (router 405, ...) that its problem answer keeps.
KEPT_EXCEPTION_HEADERS = ("Allow", "Retry-After", "WWW-Authenticate")
# Methods counted under their own name in the HTTP metrics; any other token counts as "other"
# (the parser accepts any method token: labels must stay a bounded set).
METRIC_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
ReadyCheck = Callable[[], Awaitable[bool]]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
R = TypeVar("R", bound=web.StreamResponse)

IDENTITY: web.AppKey[IdentityStore] = web.AppKey("identity", IdentityStore)
READY_CHECKS: web.AppKey[dict[str, ReadyCheck]] = web.AppKey("ready_checks", dict)
SERVICE: web.AppKey[str] = web.AppKey("service", str)
BEFORE_SCRAPE: web.AppKey[list[Callable[[], None]]] = web.AppKey("before_scrape", list)
RATE_LIMITER: web.AppKey[KeyRateLimiter] = web.AppKey("rate_limiter", KeyRateLimiter)
# Request key: the principal of a request authenticated for scope `care` (access-audited).
AUDITED: web.RequestKey[Principal] = web.RequestKey("audited_principal", Principal)
# Scopes whose successful requests are recorded in the access audit.
AUDITED_SCOPES = frozenset({"care"})
# Request key: the body limit of a route with its own (`with_body_limit`); absent: `MAX_BODY`.
BODY_LIMIT: web.RequestKey[int] = web.RequestKey("body_limit", int)


def body_limit(request: web.Request) -> int:
    """The body limit of the request's route: its own (`with_body_limit`), else `MAX_BODY`."""
    limit: int = request.get(BODY_LIMIT, MAX_BODY)
    return limit


def too_large(limit: int) -> ProblemError:
    return ProblemError(413, "Payload too large", f"the body limit is {limit} bytes", slug="too-large")


def with_body_limit(
    limit: int, handler: Callable[[web.Request], Awaitable[R]]
) -> Callable[[web.Request], Awaitable[R]]:
    """A route handler whose body limit is `limit` instead of the app-wide `MAX_BODY`.

    A `Content-Length` beyond the limit is a 413 at once, before `handler` (and so admission control
    wrapped inside it) runs and before any of the body is read. The handler must read the body with
    `read_body`, which enforces the limit also without `Content-Length`; aiohttp's `request.read()`
    keeps the app-wide limit."""

    async def limited(request: web.Request) -> R:
        if request.content_length is not None and request.content_length > limit:
            raise too_large(limit)
        request[BODY_LIMIT] = limit
        return await handler(request)

    return limited


async def read_body(request: web.Request) -> bytes:
    """The request body, at most `body_limit(request)` bytes (as decoded, like `request.read()`);
    beyond it a 413 problem, raised as soon as the limit is passed (the rest is not read)."""
    limit = body_limit(request)
    if request.content_length is not None and request.content_length > limit:
        raise too_large(limit)
    body = bytearray()
    while chunk := await request.content.readany():
        body.extend(chunk)
        if len(body) > limit:
            raise too_large(limit)
    return bytes(body)


def _route_name(request: web.Request) -> str:
    info = request.match_info
    if info.http_exception is not None or info.route.resource is None:
        return "unmatched"
    return info.route.resource.canonical


@web.middleware
async def observe(request: web.Request, handler: Handler) -> web.StreamResponse:
    service = request.app[SERVICE]
    route = _route_name(request)
    method = request.method if request.method in METRIC_METHODS else "other"
    started = time.perf_counter()
    status = 500
    metrics.HTTP_IN_FLIGHT.labels(service).inc()
    try:
        response = await handler(request)
        status = response.status
        return response
    except ProblemError as exc:
        status = exc.status
        return exc.response()
    except web.HTTPException as exc:
        status = exc.status
        if exc.status == 413:
            return too_large(body_limit(request)).response()
        if exc.status < 400:
            raise
        kept = {name: exc.headers[name] for name in KEPT_EXCEPTION_HEADERS if name in exc.headers}
        detail = f"this resource supports {kept['Allow']}" if exc.status == 405 and "Allow" in kept else None
        return problem_response(exc.status, exc.reason or "Error", detail, headers=kept or None)
    except asyncio.CancelledError:
        status = 499
        raise
    except Exception:
        log.exception("unhandled error", extra={"route": route, "method": method})
        return problem_response(500, "Internal error", "the error was logged", slug="internal")
    finally:
        metrics.HTTP_IN_FLIGHT.labels(service).dec()
        metrics.HTTP_REQUESTS.labels(service, route, method, str(status)).inc()
        metrics.HTTP_LATENCY.labels(service, route, method).observe(time.perf_counter() - started)


async def healthz(_: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    results = {}
    for name, check in request.app[READY_CHECKS].items():
        try:
            results[name] = await asyncio.wait_for(check(), timeout=3)
        except Exception:
            results[name] = False
    ok = all(results.values())
    metrics.READY.labels(request.app[SERVICE]).set(1 if ok else 0)
    return web.json_response({"ready": ok, "checks": results}, status=200 if ok else 503)


async def metrics_endpoint(request: web.Request) -> web.Response:
    for hook in request.app[BEFORE_SCRAPE]:
        hook()
    resp = web.Response(body=generate_latest())
    resp.content_type = CONTENT_TYPE_LATEST.split(";")[0]
    return resp


def create_app(
    service: str,
    identity: IdentityStore | None = None,
    settings: Settings | None = None,
    *,
    openapi: Callable[[], bytes] | None = None,
) -> web.Application:
    """An app with the shared middleware and `/healthz`, `/readyz`, `/metrics`, and `/openapi.json`
    when `openapi` (the document's bytes, from the caller: plumbing knows no API) is given."""
    app = web.Application(middlewares=[observe], client_max_size=MAX_BODY)
    app[SERVICE] = service
    app[READY_CHECKS] = {}
    app[BEFORE_SCRAPE] = []
    if identity is not None:
        app[IDENTITY] = identity
        conf = settings or get_settings()
        if conf.rate_limit_per_key_rps > 0:
            app[RATE_LIMITER] = KeyRateLimiter(conf.rate_limit_per_key_rps, conf.rate_limit_per_key_burst)
        app.on_response_prepare.append(_record_access)

        async def start_identity(_: web.Application) -> None:
            identity.access_log.start()
            if conf.database_url:
                identity.start_listener(conf.database_url)

        async def stop_identity(_: web.Application) -> None:
            await identity.stop_listener()
            await identity.access_log.stop()

        app.on_startup.append(start_identity)
        app.on_cleanup.append(stop_identity)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics_endpoint)
    if openapi is not None:
        document = openapi

        async def openapi_endpoint(_: web.Request) -> web.Response:
            """The OpenAPI 3.1 description of the public API (no auth; the same document from every service)."""
            return web.Response(body=document(), content_type="application/json")

        app.router.add_get("/openapi.json", openapi_endpoint)
    return app


async def authenticate(request: web.Request, scope: str) -> Principal:
    """The caller's principal if its key is valid and has `scope`; else a 401 or 403 problem."""
    return admit(request, await _bearer_principal(request), scope)


async def authenticate_either(request: web.Request, scopes: tuple[str, ...]) -> tuple[Principal, str]:
    """Like `authenticate` for a route open to several scopes: the principal and the first of
    `scopes` (in the given order) that its key has; that scope decides the access audit (list the
    audited scope first, so that a key holding it is always recorded). 403 when it has none."""
    principal = await _bearer_principal(request)
    scope = next((s for s in scopes if s in principal.scopes), scopes[0])
    return admit(request, principal, scope), scope


async def _bearer_principal(request: web.Request) -> Principal:
    """The principal of the request's bearer key; a 401 problem when it has none or an invalid one."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise unauthorized("missing bearer API key")
    principal = await request.app[IDENTITY].authenticate(token.strip())
    if principal is None:
        raise unauthorized("unknown or revoked API key")
    return principal


def unauthorized(detail: str) -> ProblemError:
    """The 401 problem of every refused credential (`detail` must never echo the credential)."""
    return ProblemError(
        401, "Unauthorized", detail, slug="unauthorized", headers={"WWW-Authenticate": 'Bearer realm="nervewatch"'}
    )


async def authenticate_key_id(request: web.Request, key_id: str, scope: str) -> Principal:
    """Like `authenticate`, for a credential that stands for a key without carrying it (a stream
    ticket bound to `key_id`): the key's principal if it is still valid and has `scope`, with the
    rate limit and the access-audit mark; else a 401, 403 or 429 problem."""
    principal = await request.app[IDENTITY].authenticate_key_id(key_id)
    if principal is None:
        raise unauthorized("unknown or revoked API key")
    return admit(request, principal, scope)


def admit(request: web.Request, principal: Principal, scope: str) -> Principal:
    """The checks every authenticated request passes: the per-key rate limit (429), the scope
    (403), and for an audited scope the mark that puts the request in the access log."""
    limiter = request.app.get(RATE_LIMITER)
    if limiter is not None:
        wait = limiter.acquire(principal.key_id)
        if wait > 0:
            raise ProblemError(
                429,
                "Too many requests",
                "this API key is over its request rate limit",
                slug="rate-limited",
                headers={"Retry-After": str(max(1, math.ceil(wait)))},
            )
    if scope not in principal.scopes:
        raise ProblemError(403, "Forbidden", f"this key lacks the '{scope}' scope", slug="forbidden")
    if scope in AUDITED_SCOPES:
        request[AUDITED] = principal
    return principal


async def _record_access(request: web.Request, response: web.StreamResponse) -> None:
    """on_response_prepare: queue an access-audit row for a successful care-scope request.

    Runs when the response starts (so a stream is recorded at connect). Never raises."""
    principal = request.get(AUDITED)
    if principal is None or not 200 <= response.status < 400:
        return
    try:
        info = request.match_info
        patient_id, alert_id = info.get("patient_id") or request.query.get("patient_id"), info.get("alert_id")
    except Exception as exc:  # an audit hook must never fail the request
        log.warning("access audit hook failed", extra={"error": type(exc).__name__})
        return
    _queue_access(request, principal, patient_id=patient_id, alert_id=alert_id, status=response.status)


def record_access(request: web.Request, principal: Principal, *, patient_id: str | None, alert_id: str | None) -> None:
    """Queue an access-audit row for patient data sent within an open response (an alert over the
    stream): the request's method and route, status 200. Never blocks, never raises."""
    _queue_access(request, principal, patient_id=patient_id, alert_id=alert_id, status=200)


def _queue_access(
    request: web.Request, principal: Principal, *, patient_id: str | None, alert_id: str | None, status: int
) -> None:
    try:
        request.app[IDENTITY].access_log.record(
            AccessRecord(
                at=datetime.now(UTC),
                tenant_id=principal.tenant_id,
                key_id=principal.key_id,
                method=request.method,
                route=_route_name(request),
                patient_id=_clean(patient_id),
                alert_id=_clean(alert_id),
                status=status,
            )
        )
    except Exception as exc:  # an audit hook must never fail the request
        log.warning("access audit hook failed", extra={"error": type(exc).__name__})


async def still_authorized(request: web.Request, principal: Principal) -> bool:
    """Whether the credentials of `request` (authenticated earlier as `principal`) are still valid:
    for a long-lived response (the alert stream) to end once its key is revoked or expires.

    As fresh as `IdentityStore.authenticate` (within `REVOCATION_BOUND_S` of a revocation);
    a database failure counts as not authorized. Checked by key id, so it works alike for a
    request authenticated by its `Authorization` header and one opened with a stream ticket.
    No rate limit, no audit row."""
    try:
        current = await request.app[IDENTITY].authenticate_key_id(principal.key_id)
    except Exception as exc:
        log.warning("re-authentication failed", extra={"error": type(exc).__name__})
        return False
    return current is not None and current.key_id == principal.key_id


def _clean(value: str | None) -> str | None:
    """An id fit for the audit table: bounded, and without NUL (which PostgreSQL text cannot hold)."""
    if not value:
        return None
    return value.replace("\x00", "")[:128] or None


def make_runner(app: web.Application, shutdown_timeout: float) -> ProblemAppRunner:
    """The runner every service is served with: the parser limits above, parse errors answered as
    problems (`nervewatch.http_protocol`), no aiohttp access log (nothing of a request is logged)."""
    return ProblemAppRunner(
        app,
        service=app[SERVICE],
        access_log=None,
        shutdown_timeout=shutdown_timeout,
        handle_signals=False,
        max_line_size=MAX_REQUEST_LINE,
        max_field_size=MAX_HEADER_FIELD,
        max_headers=MAX_HEADERS,
    )


async def serve(
    app: web.Application, host: str, port: int, shutdown_timeout: float, ready: asyncio.Event | None = None
) -> None:
    """Serve until SIGTERM or SIGINT; then shut down gracefully within `shutdown_timeout` seconds."""
    runner = make_runner(app, shutdown_timeout)
    await runner.setup()
    site = web.TCPSite(runner, host, port, backlog=1024, reuse_address=True)
    await site.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    log.info("listening", extra={"service": app[SERVICE], "host": host, "port": port})
    if ready is not None:
        ready.set()
    try:
        await stop.wait()
    finally:
        log.info("shutting down", extra={"service": app[SERVICE]})
        try:
            await asyncio.wait_for(runner.cleanup(), timeout=shutdown_timeout + 5)
        except TimeoutError:
            log.error("shutdown deadline passed; exiting anyway")
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)


def json_response(payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    """JSON response from an already-serialisable payload or pydantic JSON bytes."""
    if isinstance(payload, bytes | str):
        body = payload.encode() if isinstance(payload, str) else payload
        return web.Response(body=body, status=status, content_type="application/json", headers=headers)
    return web.json_response(payload, status=status, headers=headers)
