"""Webhook and e-mail delivery against real local servers: success, hang, 500, redirect, refused, SMTP down."""

from __future__ import annotations

import asyncio
import email
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from aiosmtpd.controller import Controller

from nervewatch.settings import Settings
from services.alerts.delivery import Deliverer, DeliveryError, verify
from tooling.devstack import free_port

pytestmark = pytest.mark.integration


@pytest.fixture
async def http_server() -> AsyncIterator[str]:
    seen: list[dict[str, str]] = []
    released = asyncio.Event()  # set at teardown, so the hanging handler does not hold up cleanup

    async def ok(request: web.Request) -> web.Response:
        seen.append(dict(request.headers))
        return web.Response(status=204)

    async def fail(_: web.Request) -> web.Response:
        return web.Response(status=500)

    async def hang(_: web.Request) -> web.Response:
        await released.wait()
        return web.Response(status=200)

    async def redirect(_: web.Request) -> web.Response:
        raise web.HTTPMovedPermanently("http://169.254.169.254/latest/meta-data")

    app = web.Application()
    app.router.add_post("/ok", ok)
    app.router.add_post("/fail", fail)
    app.router.add_post("/hang", hang)
    app.router.add_post("/redirect", redirect)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        released.set()
        await runner.cleanup()


@pytest.fixture
async def deliverer() -> AsyncIterator[Deliverer]:
    d = Deliverer(Settings(webhook_connect_timeout_s=0.5, webhook_read_timeout_s=0.5, smtp_port=free_port()))
    try:
        yield d
    finally:
        await d.close()


async def test_webhook_outcomes(http_server: str, deliverer: Deliverer) -> None:
    body = b'{"id":"al_x"}'
    await deliverer.webhook(f"{http_server}/ok", body, "secret", "d-1", allow_private=True)
    for path, code in (("/fail", "http_500"), ("/hang", "timeout"), ("/redirect", "http_301")):
        with pytest.raises(DeliveryError) as info:
            await deliverer.webhook(f"{http_server}{path}", body, "secret", "d-2", allow_private=True)
        assert info.value.code == code, path
    refused = f"http://127.0.0.1:{free_port()}/nobody"
    with pytest.raises(DeliveryError) as info:
        await deliverer.webhook(refused, body, "secret", "d-3", allow_private=True)
    assert info.value.code == "connection_failed"
    with pytest.raises(DeliveryError) as info:
        await deliverer.webhook(f"{http_server}/ok", body, "secret", "d-4", allow_private=False)
    assert info.value.code == "blocked_target"


async def test_webhook_headers_are_signed(deliverer: Deliverer) -> None:
    got: list[tuple[dict[str, str], bytes]] = []

    async def hook(request: web.Request) -> web.Response:
        got.append((dict(request.headers), await request.read()))
        return web.Response(status=200)

    app = web.Application()
    app.router.add_post("/h", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        await deliverer.webhook(f"http://127.0.0.1:{port}/h", b'{"a":1}', "k", "delivery-9", allow_private=True)
    finally:
        await runner.cleanup()
    headers, raw = got[0]
    assert headers["NerveWatch-Delivery"] == "delivery-9"
    assert verify("k", headers["NerveWatch-Signature"], raw)


class _Sink:
    def __init__(self) -> None:
        self.messages: list[email.message.Message] = []

    async def handle_DATA(self, server: object, session: object, envelope: object) -> str:
        self.messages.append(email.message_from_bytes(envelope.content))  # type: ignore[attr-defined]
        return "250 OK"


async def test_email_via_real_smtp_and_smtp_down() -> None:
    port = free_port()
    sink = _Sink()
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    alert = {
        "id": "al_1",
        "kind": "red_flag",
        "severity": "critical",
        "status": "open",
        "summary": "Red-flag symptom reported",
        "patient_id": "pt-1",
    }
    d = Deliverer(Settings(smtp_port=port))
    try:
        await d.email("oncall@example.org", alert, "delivery-1")
        assert sink.messages[0]["X-NerveWatch-Delivery"] == "delivery-1"
        assert "CRITICAL" in sink.messages[0]["Subject"]
    finally:
        controller.stop()
    with pytest.raises(DeliveryError) as info:
        await d.email("oncall@example.org", alert, "delivery-2")
    assert info.value.code == "smtp_failed"
    await d.close()
