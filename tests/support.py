"""Test harness: the embedded stack, the three services as real processes, a webhook receiver."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from tooling.devstack import EmbeddedStack, create_tenant_key, free_port
from tooling.supervisor import spawn_service, stop_process, wait_ready

SERVICES = ("ingest", "scoring", "alerts")


@dataclass
class Tenant:
    tenant_id: str
    key: str
    webhook_secret: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}


@dataclass
class Services:
    env: dict[str, str]
    ports: dict[str, int]
    log_dir: Path
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.ports[service]}"

    def start(self, service: str) -> None:
        self.procs[service] = spawn_service(service, self.env, self.log_dir / f"{service}.log")

    def start_all(self) -> None:
        for s in SERVICES:
            self.start(s)
        self.wait_ready()

    def wait_ready(self, services: tuple[str, ...] = SERVICES, timeout_s: float = 60) -> None:
        wait_ready([f"{self.url(s)}/readyz" for s in services], timeout_s)

    def stop(self, service: str, sig: int = signal.SIGTERM) -> int | None:
        proc = self.procs.pop(service, None)
        if proc is None:
            return None
        return stop_process(proc, sig)

    def stop_all(self) -> None:
        for s in list(self.procs):
            self.stop(s)

    def keep_logs(self, prefix: str = "") -> None:
        """Copy the processes' logs to `$NERVEWATCH_TEST_LOG_DIR` (as `<prefix><name>.log`) when it is set."""
        keep = os.environ.get("NERVEWATCH_TEST_LOG_DIR")
        if not keep:
            return
        Path(keep).mkdir(parents=True, exist_ok=True)
        for log in self.log_dir.glob("*.log"):
            (Path(keep) / f"{prefix}{log.name}").write_bytes(log.read_bytes())

    def logs(self) -> str:
        return "".join(
            (self.log_dir / f"{s}.log").read_text(errors="replace")
            for s in SERVICES
            if (self.log_dir / f"{s}.log").exists()
        )


def service_env(stack: EmbeddedStack, ports: dict[str, int], extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NERVEWATCH_")}
    env.update(
        DATABASE_URL=stack.database_url,
        KAFKA_BOOTSTRAP_SERVERS=stack.bootstrap,
        NERVEWATCH_INGEST_PORT=str(ports["ingest"]),
        NERVEWATCH_SCORING_PORT=str(ports["scoring"]),
        NERVEWATCH_ALERTS_PORT=str(ports["alerts"]),
        NERVEWATCH_TOPIC_PARTITIONS="3",
        NERVEWATCH_DISPATCHER_POLL_S="0.2",
        NERVEWATCH_SWEEP_INTERVAL_S="1",
        # Scoring's data-days-at-risk sweep is driven by the tests that need it (injected clock).
        NERVEWATCH_BILLING_RISK_INTERVAL_S="86400",
        NERVEWATCH_SHUTDOWN_TIMEOUT_S="5",
        NERVEWATCH_LOG_LEVEL="INFO",
    )
    env.update(extra or {})
    return env


async def create_tenant(dsn: str, tenant_id: str, scopes: frozenset[str] | None = None) -> Tenant:
    """Tenant `tenant_id` (named after itself) with a new key of `scopes` (default: all)."""
    secret, key = await create_tenant_key(dsn, tenant_id, tenant_id, scopes)
    return Tenant(tenant_id, key, secret)


async def run_cli(database_url: str, *args: str) -> tuple[int, str, str]:
    """`nervewatch *args` as an operator runs it: a subprocess with `DATABASE_URL` and none of this
    process's `NERVEWATCH_*` settings; returns (exit code, stdout, stderr)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NERVEWATCH_")}
    env["DATABASE_URL"] = database_url
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tooling.cli", *args, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


@dataclass
class Receiver:
    """A local webhook receiver that records every request."""

    url: str
    requests: list[dict[str, Any]] = field(default_factory=list)
    status: int = 200
    delay_s: float = 0.0

    async def wait_for(self, n: int, timeout_s: float = 30) -> list[dict[str, Any]]:
        end = time.monotonic() + timeout_s
        while len(self.requests) < n:
            if time.monotonic() > end:
                raise TimeoutError(f"{len(self.requests)} of {n} webhooks arrived")
            await asyncio.sleep(0.05)
        return self.requests


@asynccontextmanager
async def webhook_receiver() -> AsyncIterator[Receiver]:
    port = free_port()
    receiver = Receiver(url=f"http://127.0.0.1:{port}/hook")

    async def hook(request: web.Request) -> web.Response:
        body = await request.read()
        receiver.requests.append({"headers": dict(request.headers), "body": body, "json": json.loads(body)})
        if receiver.delay_s:
            await asyncio.sleep(receiver.delay_s)
        return web.Response(status=receiver.status)

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield receiver
    finally:
        await runner.cleanup()


async def poll(fn: Any, timeout_s: float = 30, interval_s: float = 0.1) -> Any:
    """Call async `fn` until it returns a truthy value."""
    end = time.monotonic() + timeout_s
    while True:
        value = await fn()
        if value:
            return value
        if time.monotonic() > end:
            raise TimeoutError("condition not met in time")
        await asyncio.sleep(interval_s)


async def get_json(session: aiohttp.ClientSession, url: str, headers: dict[str, str]) -> tuple[int, Any]:
    async with session.get(url, headers=headers) as resp:
        return resp.status, await resp.json(content_type=None)


async def enrol(
    http: aiohttp.ClientSession, ingest: str, tenant: Tenant, pid: str, care_team: list[dict[str, Any]]
) -> None:
    body = {
        "patient_id": pid,
        "condition": "lumbar_radiculopathy",
        "treatment": "conservative",
        "timezone": "UTC",
        "care_team": care_team,
    }
    async with http.post(f"{ingest}/v1/patients", json=body, headers=tenant.headers) as resp:
        assert resp.status in (200, 201), await resp.text()


async def post_red_flag(http: aiohttp.ClientSession, ingest: str, tenant: Tenant, pid: str) -> str:
    import uuid
    from datetime import UTC, datetime

    event_id = str(uuid.uuid4())
    body = {
        "event_id": event_id,
        "patient_id": pid,
        "recorded_at": datetime.now(UTC).isoformat(),
        "pain": {"current": 8},
        "red_flags": ["foot_drop"],
    }
    async with http.post(f"{ingest}/v1/checkins", json=body, headers=tenant.headers) as resp:
        assert resp.status == 202, await resp.text()
    return event_id


async def wait_alert(http: aiohttp.ClientSession, alerts: str, tenant: Tenant, pid: str) -> dict[str, Any]:
    async def listed() -> Any:
        _, page = await get_json(http, f"{alerts}/v1/alerts?patient_id={pid}", tenant.headers)
        return page["items"][0] if page.get("items") else None

    return await poll(listed)  # type: ignore[no-any-return]
