"""aiohttp plumbing shared by the three services.

`create_app` adds: JSON access metrics per route and status, problem+json for every error
(unexpected exceptions become a 500 that reveals nothing), a 1 MiB body limit, API-key
authentication helpers, and the `/healthz`, `/readyz` and `/metrics` endpoints.
`serve` runs an app until SIGTERM/SIGINT, then stops accepting, lets in-flight requests finish
(bounded by the shutdown timeout) and runs the app's cleanup hooks (consumers commit and close).
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from nervewatch import metrics
from nervewatch.identity.store import IdentityStore, Principal
from nervewatch.problems import ProblemError, problem_response

log = logging.getLogger(__name__)

MAX_BODY = 1024 * 1024
ReadyCheck = Callable[[], Awaitable[bool]]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

IDENTITY: web.AppKey[IdentityStore] = web.AppKey("identity", IdentityStore)
READY_CHECKS: web.AppKey[dict[str, ReadyCheck]] = web.AppKey("ready_checks", dict)
SERVICE: web.AppKey[str] = web.AppKey("service", str)
BEFORE_SCRAPE: web.AppKey[list[Callable[[], None]]] = web.AppKey("before_scrape", list)


def _route_name(request: web.Request) -> str:
    info = request.match_info
    if info.http_exception is not None or info.route.resource is None:
        return "unmatched"
    return info.route.resource.canonical


@web.middleware
async def observe(request: web.Request, handler: Handler) -> web.StreamResponse:
    service = request.app[SERVICE]
    route = _route_name(request)
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
            return problem_response(413, "Payload too large", f"the body limit is {MAX_BODY} bytes", slug="too-large")
        if exc.status < 400:
            raise
        return problem_response(exc.status, exc.reason or "Error")
    except asyncio.CancelledError:
        status = 499
        raise
    except Exception:
        log.exception("unhandled error", extra={"route": route, "method": request.method})
        return problem_response(500, "Internal error", "the error was logged", slug="internal")
    finally:
        metrics.HTTP_IN_FLIGHT.labels(service).dec()
        metrics.HTTP_REQUESTS.labels(service, route, request.method, str(status)).inc()
        metrics.HTTP_LATENCY.labels(service, route, request.method).observe(time.perf_counter() - started)


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


def create_app(service: str, identity: IdentityStore | None = None) -> web.Application:
    app = web.Application(middlewares=[observe], client_max_size=MAX_BODY)
    app[SERVICE] = service
    app[READY_CHECKS] = {}
    app[BEFORE_SCRAPE] = []
    if identity is not None:
        app[IDENTITY] = identity
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics_endpoint)
    return app


async def authenticate(request: web.Request, scope: str) -> Principal:
    """The caller's principal if its key is valid and has `scope`; else a 401 or 403 problem."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ProblemError(
            401,
            "Unauthorized",
            "missing bearer API key",
            slug="unauthorized",
            headers={"WWW-Authenticate": 'Bearer realm="nervewatch"'},
        )
    principal = await request.app[IDENTITY].authenticate(token.strip())
    if principal is None:
        raise ProblemError(
            401,
            "Unauthorized",
            "unknown or revoked API key",
            slug="unauthorized",
            headers={"WWW-Authenticate": 'Bearer realm="nervewatch"'},
        )
    if scope not in principal.scopes:
        raise ProblemError(403, "Forbidden", f"this key lacks the '{scope}' scope", slug="forbidden")
    return principal


async def serve(
    app: web.Application, host: str, port: int, shutdown_timeout: float, ready: asyncio.Event | None = None
) -> None:
    """Serve until SIGTERM or SIGINT; then shut down gracefully within `shutdown_timeout` seconds."""
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=shutdown_timeout, handle_signals=False)
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
