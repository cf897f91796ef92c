"""`nervewatch.http_protocol` against the aiohttp that is installed: raw requests over a real socket
to an in-process server built exactly as `nervewatch.http.serve` builds it (no database, no broker).

This is the test that fails if aiohttp changes what the override relies on: the internals named in
the module doc (checked directly) and the behaviour (parse errors answered 414/431/400 as problems,
nothing echoed, nothing of the request logged). Both of aiohttp's parsers are exercised: the C one
(what runs in production) and the pure-Python fallback.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
from collections.abc import AsyncIterator, Iterator

import pytest
from aiohttp import http_parser, web, web_protocol
from aiohttp.http_exceptions import LineTooLong

from nervewatch.http import MAX_HEADER_FIELD, MAX_HEADERS, MAX_REQUEST_LINE, SERVICE, create_app, make_runner
from nervewatch.http_protocol import ProblemRequestHandler, _ProblemServer
from tooling.devstack import free_port

MARK = "pt-LEAKMARK-77"
KEY = "nw_LEAKKEY" + "x" * 30

# name -> (raw request, expected status)
CASES: dict[str, tuple[bytes, int]] = {
    "long url": (
        f"GET /v1/patients/{MARK}/trajectory?q={'a' * 9000} HTTP/1.1\r\nHost: x\r\n"
        f"Authorization: Bearer {KEY}\r\n\r\n".encode(),
        414,
    ),
    "long header value": (
        f"GET /v1/patients/{MARK}/trajectory HTTP/1.1\r\nHost: x\r\n"
        f"Authorization: Bearer {KEY}{'x' * 9000}\r\n\r\n".encode(),
        431,
    ),
    "long header name": (
        f"GET /v1/patients/{MARK} HTTP/1.1\r\nHost: x\r\nX-{MARK}{'a' * 9000}: {KEY}\r\n\r\n".encode(),
        431,
    ),
    "too many headers": (
        f"GET /v1/patients/{MARK} HTTP/1.1\r\nHost: x\r\n".encode()
        + b"".join(f"X-H{i}: {KEY}\r\n".encode() for i in range(MAX_HEADERS + 10))
        + b"\r\n",
        431,
    ),
    "bad method": (f"G@T /v1/patients/{MARK} HTTP/1.1\r\nHost: x\r\n\r\n".encode(), 400),
    "bad header token": (f"GET / HTTP/1.1\r\nHost: x\r\nBad {MARK}: {KEY}\r\n\r\n".encode(), 400),
    "bad version": (f"GET /v1/patients/{MARK} HTTP/9.{MARK}\r\n\r\n".encode(), 400),
    "bad chunk size": (
        f"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n{MARK}\r\n".encode(),
        400,
    ),
    "tls on the port": (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + MARK.encode() + b"\r\n\r\n", 400),
}


@pytest.fixture(params=["c", "python"])
def parser(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    if request.param == "python":
        monkeypatch.setattr(web_protocol, "HttpRequestParser", http_parser.HttpRequestParserPy)
    elif http_parser.HttpRequestParser is http_parser.HttpRequestParserPy:
        pytest.skip("aiohttp's C parser is not installed")
    yield request.param


async def ok(_: web.Request) -> web.Response:
    return web.json_response({})


async def boom(_: web.Request) -> web.Response:
    raise ValueError(f"failure quoting {MARK}")


@pytest.fixture
async def server(parser: str) -> AsyncIterator[tuple[int, web.AppRunner]]:
    app = create_app("protocol-test")
    app.router.add_get("/v1/patients/{patient_id}", ok)
    app.router.add_post("/echo", ok)
    runner = make_runner(app, 1.0)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield port, runner
    finally:
        await runner.cleanup()


async def exchange(port: int, raw: bytes) -> tuple[int, dict[str, str], bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(raw)
        await writer.drain()
        data = await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
    if not data:
        return 0, {}, b""  # the server closed the connection without an answer
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split()[1]), headers, body


def leaked(records: list[logging.LogRecord]) -> list[str]:
    """Records whose text (message, fields, exception) quotes the marker or the key."""
    out = []
    for r in records:
        text = r.getMessage() + json.dumps({k: str(v) for k, v in r.__dict__.items()})
        if MARK in text or "LEAKKEY" in text or "LEAKMARK" in text:
            out.append(f"{r.name} {r.levelname} {r.getMessage()[:100]}")
    return out


def test_the_internals_the_override_relies_on() -> None:
    params = list(inspect.signature(web_protocol.RequestHandler.handle_error).parameters)
    assert params == ["self", "request", "status", "exc", "message"]
    assert hasattr(web.AppRunner, "_make_server") and hasattr(web_protocol.RequestHandler, "_make_error_handler")
    assert LineTooLong(b"line", 123).args[1] == 123
    for attr in ("max_line_size", "max_field_size", "max_headers"):
        assert attr in web_protocol.RequestHandler.__slots__


async def test_connections_use_the_problem_handler(server: tuple[int, web.AppRunner]) -> None:
    port, runner = server
    assert isinstance(runner.server, _ProblemServer)
    handler = runner.server()
    assert isinstance(handler, ProblemRequestHandler)
    assert (handler.max_line_size, handler.max_field_size, handler.max_headers) == (
        MAX_REQUEST_LINE,
        MAX_HEADER_FIELD,
        MAX_HEADERS,
    )
    status, _, body = await exchange(port, b"GET /v1/patients/p1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert status == 200 and body == b"{}"


@pytest.mark.parametrize("case", list(CASES))
async def test_parse_errors_are_problems_that_echo_and_log_nothing(
    case: str, parser: str, server: tuple[int, web.AppRunner], caplog: pytest.LogCaptureFixture
) -> None:
    raw, want = CASES[case]
    port, _ = server
    caplog.set_level(logging.DEBUG)
    status, headers, body = await exchange(port, raw)
    assert status == want, body[:200]
    assert headers["content-type"].startswith("application/problem+json")
    # (the connection is closed: `exchange` read to EOF)
    problem = json.loads(body)
    assert problem["status"] == want and problem["title"]
    assert MARK.encode() not in body and b"LEAKKEY" not in body and b"aaaa" not in body
    records = [r for r in caplog.records if not r.name.startswith("asyncio")]
    assert not leaked(records), leaked(records)
    assert not any(r.exc_info for r in records), "no traceback for a refused request"
    assert not [r for r in records if r.name.startswith("aiohttp") and r.levelno >= logging.INFO]
    refusals = [r for r in records if r.name == "nervewatch.http_protocol"]
    assert len(refusals) == 1
    if want in (414, 431):
        assert refusals[0].levelno == logging.WARNING
        assert refusals[0].__dict__["limit_bytes"] in (MAX_REQUEST_LINE, MAX_HEADER_FIELD, MAX_HEADERS)
    else:
        assert refusals[0].levelno <= logging.INFO


async def test_the_service_survives_refusals(server: tuple[int, web.AppRunner]) -> None:
    port, _ = server
    for raw, want in CASES.values():
        assert (await exchange(port, raw))[0] == want
    status, _, _ = await exchange(port, b"GET /v1/patients/p1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert status == 200


async def test_failures_outside_the_middleware_log_no_exception_text(
    parser: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Without `observe` (which catches everything in practice), a handler's exception reaches
    aiohttp's own error paths: still a problem, and the log has the error class and stack only."""
    caplog.set_level(logging.DEBUG)
    app = web.Application()
    app.router.add_get("/boom", boom)
    app.router.add_get("/prepare-fails", ok)

    async def failing_prepare(request: web.Request, _: web.StreamResponse) -> None:
        if request.path == "/prepare-fails":
            raise RuntimeError(f"prepare quoting {MARK}")

    app.on_response_prepare.append(failing_prepare)
    app[SERVICE] = "protocol-test"
    runner = make_runner(app, 1.0)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        status, headers, body = await exchange(port, b"GET /boom HTTP/1.1\r\nHost: x\r\n\r\n")
        assert status == 500 and headers["content-type"].startswith("application/problem+json")
        assert MARK.encode() not in body
        status, _, body = await exchange(port, b"GET /prepare-fails HTTP/1.1\r\nHost: x\r\n\r\n")
        assert MARK.encode() not in body
    finally:
        await runner.cleanup()
    records = [r for r in caplog.records if not r.name.startswith("asyncio")]
    assert not leaked(records), leaked(records)
    errors = [r for r in records if r.levelno >= logging.ERROR]
    assert {r.__dict__.get("error") for r in errors} >= {"ValueError", "RuntimeError"}
    assert all(r.__dict__.get("stack") and not r.exc_info for r in errors)
