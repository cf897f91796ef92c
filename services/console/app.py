"""The console service process: serves the browser console under /console/ and proxies /v1/* to the
service that owns each path, so the browser talks to one origin. Owns no tables and no topics.

Proxy contract:
- the method, raw path, query, body (streamed, not buffered) and the headers in `FORWARDED_REQUEST`
  (Authorization among them) go to the owning service; its status, body and the headers in
  `FORWARDED_RESPONSE` come back unchanged (a 401, 404 or 503 stays what it was);
- `text/event-stream` responses are relayed chunk by chunk as they arrive (no buffering, no read
  timeout); the relay ends when either side closes;
- a service that cannot be reached is a 502 problem (`upstream-unavailable`) naming only the service;
- nothing of a request is logged (no path, no query, no body: paths carry patient ids); the request
  metrics label the route as the pattern `/v1/{tail}`.
Static files are served with `Cache-Control: no-store` and a same-origin Content-Security-Policy.
Shutdown: aiohttp's runner stops accepting, in-flight relays are cancelled at the shutdown timeout,
then the client session is closed.
"""

from __future__ import annotations

import logging
from pathlib import Path

import aiohttp
from aiohttp import web

from nervewatch.http import READY_CHECKS, create_app
from nervewatch.problems import problem_response
from nervewatch.settings import Settings
from services.console.routing import Upstream, upstream_for

log = logging.getLogger("nervewatch.console")

STATIC_DIR = Path(__file__).resolve().parent / "static"
CLIENT: web.AppKey[aiohttp.ClientSession] = web.AppKey("console_client", aiohttp.ClientSession)
UPSTREAMS: web.AppKey[dict[str, str]] = web.AppKey("console_upstreams", dict)

FORWARDED_REQUEST = (
    "Authorization",
    "Content-Type",
    "Accept",
    "Accept-Language",
    "Last-Event-ID",
    "If-None-Match",
    "If-Match",
    "Idempotency-Key",
)
FORWARDED_RESPONSE = (
    "Content-Type",
    "Cache-Control",
    "Retry-After",
    "Allow",
    "WWW-Authenticate",
    "Location",
    "ETag",
    "Link",
    "X-Accel-Buffering",
    "Content-Disposition",
)
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
        "connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".md": "text/plain; charset=utf-8",
}
CONNECT_TIMEOUT_S = 5.0
READ_TIMEOUT_S = 60.0


def upstream_urls(settings: Settings) -> dict[str, str]:
    """Base URL of each service the proxy talks to (settings override the local defaults)."""
    return {
        "ingest": (settings.console_ingest_url or f"http://127.0.0.1:{settings.ingest_port}").rstrip("/"),
        "scoring": (settings.console_scoring_url or f"http://127.0.0.1:{settings.scoring_port}").rstrip("/"),
        "alerts": (settings.console_alerts_url or f"http://127.0.0.1:{settings.alerts_port}").rstrip("/"),
    }


def _security(resp: web.StreamResponse) -> web.StreamResponse:
    for name, value in SECURITY_HEADERS.items():
        resp.headers.setdefault(name, value)
    return resp


async def index(_: web.Request) -> web.StreamResponse:
    return _static_file(STATIC_DIR / "index.html")


async def redirect_root(_: web.Request) -> web.StreamResponse:
    raise web.HTTPFound("/console/")


async def static(request: web.Request) -> web.StreamResponse:
    """A file under static/ (no directory listing, no path outside static/)."""
    rel = request.match_info["path"]
    target = (STATIC_DIR / rel).resolve()
    if not rel or not target.is_relative_to(STATIC_DIR) or not target.is_file():
        return problem_response(404, "Not found", "no such console file", slug="not-found")
    return _static_file(target)


def _static_file(path: Path) -> web.StreamResponse:
    resp = web.Response(body=path.read_bytes())
    resp.headers["Content-Type"] = CONTENT_TYPES.get(path.suffix, "application/octet-stream")
    return _security(resp)


async def proxy(request: web.Request) -> web.StreamResponse:
    """Relay one /v1 request to the service that owns its path (see the module contract)."""
    target: Upstream | None = upstream_for(request.path)
    if target is None:
        return problem_response(404, "Not found", "no such resource", slug="not-found")
    url = request.app[UPSTREAMS][target] + request.rel_url.raw_path_qs
    headers = {name: request.headers[name] for name in FORWARDED_REQUEST if name in request.headers}
    has_body = request.body_exists
    if has_body and "Content-Length" in request.headers:
        headers["Content-Length"] = request.headers["Content-Length"]
    client = request.app[CLIENT]
    is_stream = "text/event-stream" in request.headers.get("Accept", "") or request.path == "/v1/alerts/stream"
    timeout = aiohttp.ClientTimeout(
        total=None, sock_connect=CONNECT_TIMEOUT_S, sock_read=None if is_stream else READ_TIMEOUT_S
    )
    try:
        async with client.request(
            request.method,
            url,
            headers=headers,
            data=request.content if has_body else None,
            timeout=timeout,
            allow_redirects=False,
        ) as upstream:
            resp = web.StreamResponse(status=upstream.status, reason=upstream.reason)
            for name in FORWARDED_RESPONSE:
                if name in upstream.headers:
                    resp.headers[name] = upstream.headers[name]
            resp.headers.setdefault("Cache-Control", "no-store")
            resp.headers["X-Content-Type-Options"] = "nosniff"
            if upstream.headers.get("Content-Type", "").startswith("text/event-stream"):
                resp.headers["X-Accel-Buffering"] = "no"
            elif upstream.content_length is not None:
                resp.content_length = upstream.content_length
            await resp.prepare(request)
            try:
                async for chunk in upstream.content.iter_any():
                    await resp.write(chunk)
            except (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError):
                resp.force_close()  # the service ended the stream (e.g. a revoked key): end ours too
            await resp.write_eof()
            return resp
    except (TimeoutError, aiohttp.ClientConnectorError, aiohttp.ServerDisconnectedError) as exc:
        log.warning("upstream unavailable", extra={"upstream": target, "error": type(exc).__name__})
        return problem_response(
            502, "Bad gateway", f"the {target} service cannot be reached", slug="upstream-unavailable"
        )


def build_app(settings: Settings) -> web.Application:
    """The console app; the client session is created on startup and closed on cleanup."""
    app = create_app("console")
    app[UPSTREAMS] = upstream_urls(settings)
    app.router.add_get("/", redirect_root)
    app.router.add_get("/console", redirect_root)
    app.router.add_get("/console/", index)
    app.router.add_get("/console/{path:.+}", static)
    app.router.add_route("*", "/v1/{tail:.*}", proxy)

    async def start(app: web.Application) -> None:
        app[CLIENT] = aiohttp.ClientSession(
            auto_decompress=False,
            connector=aiohttp.TCPConnector(limit=256),
            skip_auto_headers=("User-Agent", "Accept-Encoding"),
        )

    async def close(app: web.Application) -> None:
        await app[CLIENT].close()

    async def upstreams_reachable() -> bool:
        client = app[CLIENT]
        for base in app[UPSTREAMS].values():
            async with client.get(f"{base}/healthz", timeout=aiohttp.ClientTimeout(total=2)) as resp:
                if resp.status != 200:
                    return False
        return True

    app[READY_CHECKS]["upstreams"] = upstreams_reachable
    app.on_startup.append(start)
    app.on_cleanup.append(close)
    return app
