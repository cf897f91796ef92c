"""The console's /v1 proxy against stand-in services (in-process): statuses and headers kept,
Authorization forwarded, bodies streamed, SSE relayed chunk by chunk, an unreachable service a
502, nothing of a request logged; static files with no-store and a CSP."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from nervewatch.http import make_runner
from nervewatch.settings import Settings
from services.console.app import build_app
from tooling.devstack import free_port


@asynccontextmanager
async def serve_console(settings: Settings) -> AsyncIterator[str]:
    """The console app served as in production (`make_runner`: no aiohttp access log)."""
    runner = make_runner(build_app(settings), 5)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


class Upstream:
    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []
        self.release = asyncio.Event()

    def app(self, name: str) -> web.Application:
        app = web.Application()

        async def echo(request: web.Request) -> web.StreamResponse:
            body = await request.read()
            self.seen.append(
                {
                    "service": name,
                    "method": request.method,
                    "path_qs": request.path_qs,
                    "headers": dict(request.headers),
                    "body": body,
                }
            )
            if request.path.endswith("/busy"):
                return web.json_response({"title": "busy"}, status=503, headers={"Retry-After": "2"})
            if request.path == "/v1/alerts/stream":
                resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
                await resp.prepare(request)
                await resp.write(b'event: alert\ndata: {"n": 1}\n\n')
                await self.release.wait()
                await resp.write(b'event: alert\ndata: {"n": 2}\n\n')
                return resp
            return web.json_response(
                {"service": name, "len": len(body)}, status=201 if request.method == "POST" else 200
            )

        app.router.add_route("*", "/{tail:.*}", echo)
        return app


@pytest.fixture
async def proxied() -> AsyncIterator[tuple[str, Upstream]]:
    up = Upstream()
    servers = {name: TestServer(up.app(name), port=free_port()) for name in ("ingest", "scoring", "alerts")}
    for s in servers.values():
        await s.start_server()
    settings = Settings(
        console_ingest_url=str(servers["ingest"].make_url("")),
        console_scoring_url=str(servers["scoring"].make_url("")),
        console_alerts_url=str(servers["alerts"].make_url("")),
    )
    try:
        async with serve_console(settings) as base:
            yield base, up
            up.release.set()
    finally:
        up.release.set()
        for s in servers.values():
            await s.close()


async def test_routes_by_path_and_forwards_auth_query_and_body(proxied: tuple[str, Upstream]) -> None:
    base, up = proxied
    async with aiohttp.ClientSession() as http:
        async with http.get(
            f"{base}/v1/trajectories?state=plateau&limit=5", headers={"Authorization": "Bearer k1"}
        ) as r:
            assert r.status == 200 and (await r.json())["service"] == "scoring"
        async with http.post(
            f"{base}/v1/patients/pt-1/time-entries",
            json={"minutes": 5},
            headers={"Authorization": "Bearer k2", "Cookie": "x=1"},
        ) as r:
            assert r.status == 201 and (await r.json())["service"] == "scoring"
        async with http.get(f"{base}/v1/alerts/al_1/audit") as r:
            assert (await r.json())["service"] == "alerts"
        async with http.get(f"{base}/v1/patients/pt-1") as r:
            assert (await r.json())["service"] == "ingest"
    first, second = up.seen[0], up.seen[1]
    assert first["path_qs"] == "/v1/trajectories?state=plateau&limit=5"
    assert first["headers"]["Authorization"] == "Bearer k1"
    assert second["headers"]["Authorization"] == "Bearer k2"
    assert "Cookie" not in second["headers"]
    assert second["body"] == b'{"minutes": 5}'


async def test_keeps_the_services_status_and_headers(proxied: tuple[str, Upstream]) -> None:
    base, _ = proxied
    async with aiohttp.ClientSession() as http, http.get(f"{base}/v1/alerts/busy") as r:
        assert r.status == 503
        assert r.headers["Retry-After"] == "2"
        assert r.headers["Cache-Control"] == "no-store"


async def test_relays_sse_as_it_arrives(proxied: tuple[str, Upstream]) -> None:
    base, up = proxied
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{base}/v1/alerts/stream", headers={"Accept": "text/event-stream"}) as r,
    ):
        assert r.headers["Content-Type"].startswith("text/event-stream")
        first = await r.content.readuntil(b"\n\n")  # arrives while the service still holds the stream open
        assert b'{"n": 1}' in first
        up.release.set()
        rest = await r.content.read()
        assert b'{"n": 2}' in rest


async def test_unreachable_service_is_a_502_naming_only_the_service(caplog: pytest.LogCaptureFixture) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    settings = Settings(console_ingest_url=dead, console_scoring_url=dead, console_alerts_url=dead)
    with caplog.at_level(logging.DEBUG):
        async with serve_console(settings) as base, aiohttp.ClientSession() as http:
            r = await http.get(f"{base}/v1/patients/pt-secret-42/checkins?q=x")
            assert r.status == 502
            body = await r.json()
            r.release()
    assert body["type"].endswith("upstream-unavailable") and "scoring" in body["detail"]
    assert "pt-secret-42" not in caplog.text and "pt-secret-42" not in str(body)


async def test_static_console_files(proxied: tuple[str, Upstream]) -> None:
    base, _ = proxied
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{base}/console/") as r:
            assert r.status == 200 and r.headers["Content-Type"].startswith("text/html")
            assert r.headers["Cache-Control"] == "no-store"
            assert "frame-ancestors 'none'" in r.headers["Content-Security-Policy"]
        async with http.get(f"{base}/console/app.js") as r:
            assert r.status == 200 and r.headers["Content-Type"].startswith("text/javascript")
        async with http.get(f"{base}/console/vendor/uplot/uPlot.iife.min.js") as r:
            assert r.status == 200
        async with http.get(f"{base}/console/../app.py") as r:
            assert r.status == 404
        async with http.get(f"{base}/console/%2e%2e/app.py") as r:
            assert r.status == 404
        async with http.get(f"{base}/", allow_redirects=False) as r:
            assert r.status == 302 and r.headers["Location"] == "/console/"
