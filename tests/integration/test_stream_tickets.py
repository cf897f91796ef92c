"""Stream tickets through the real services (`POST /v1/alerts/stream-tickets`, then
`GET /v1/alerts/stream?ticket=...` without an Authorization header): the stream carries the ticket's
tenant's alerts only; a ticket is single-use, expires, and is refused when unknown (401 problem);
only its hash is stored; it appears in no log and no access-log row; revoking the ticket's key
closes the stream it opened."""

from __future__ import annotations

import asyncio
import hashlib
import json
import secrets
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import asyncpg
import pytest

from tests.support import Services, Tenant, create_tenant, enrol, post_red_flag

pytestmark = pytest.mark.integration

STREAM_TIMEOUT = aiohttp.ClientTimeout(total=None, sock_read=60)


async def new_ticket(http: aiohttp.ClientSession, alerts: str, key: str) -> dict[str, Any]:
    async with http.post(f"{alerts}/v1/alerts/stream-tickets", headers={"Authorization": f"Bearer {key}"}) as resp:
        body = await resp.json(content_type=None)
        assert resp.status == 201, body
        assert resp.headers["Cache-Control"] == "no-store"
        return body  # type: ignore[no-any-return]


async def read_event(stream: aiohttp.StreamReader) -> dict[str, Any]:
    """The next `alert` event of an SSE stream (comments and pings skipped)."""
    event = None
    while True:
        line = await asyncio.wait_for(stream.readline(), 30)
        assert line, "the stream ended"
        if line.startswith(b"event: "):
            event = line[7:].strip()
        elif line.startswith(b"data: ") and event == b"alert":
            return json.loads(line[6:])  # type: ignore[no-any-return]


async def refused(http: aiohttp.ClientSession, alerts: str, ticket: str) -> dict[str, Any]:
    async with http.get(f"{alerts}/v1/alerts/stream", params={"ticket": ticket}) as resp:
        text = await resp.text()
        assert resp.status == 401, text
        assert resp.content_type == "application/problem+json"
        assert not ticket or ticket not in text
        return json.loads(text)  # type: ignore[no-any-return]


async def admin_key(http: aiohttp.ClientSession, ingest: str, tenant: Tenant, scopes: list[str]) -> dict[str, Any]:
    async with http.post(f"{ingest}/v1/admin/keys", json={"scopes": scopes}, headers=tenant.headers) as resp:
        body = await resp.json(content_type=None)
        assert resp.status == 201, body
        return body  # type: ignore[no-any-return]


async def test_ticket_opens_the_stream_once_for_its_tenant_only(
    services: Services, database_url: str, db: asyncpg.Connection
) -> None:
    ingest, alerts = services.url("ingest"), services.url("alerts")
    mine = await create_tenant(database_url, f"tk-a-{secrets.token_hex(3)}")
    theirs = await create_tenant(database_url, f"tk-b-{secrets.token_hex(3)}")
    pid, other_pid = f"pt-tk-{uuid.uuid4().hex[:8]}", f"pt-tk-{uuid.uuid4().hex[:8]}"
    async with aiohttp.ClientSession() as http:
        care = await admin_key(http, ingest, mine, ["care"])
        await enrol(http, ingest, mine, pid, [])
        await enrol(http, ingest, theirs, other_pid, [])
        before = datetime.now(UTC)
        issued = await new_ticket(http, alerts, care["key"])
        ticket = issued["ticket"]
        assert set(issued) == {"ticket", "expires_at"}
        expires_at = datetime.fromisoformat(issued["expires_at"])
        assert before + timedelta(seconds=55) < expires_at <= datetime.now(UTC) + timedelta(seconds=60)

        # Only the hash is stored, bound to the key and tenant.
        row = await db.fetchrow(
            "SELECT * FROM alerts.stream_tickets WHERE ticket_hash = $1", hashlib.sha256(ticket.encode()).digest()
        )
        assert row is not None and row["tenant_id"] == mine.tenant_id and row["key_id"] == care["key_id"]
        assert ticket not in json.dumps({k: str(v) for k, v in dict(row).items()})

        async with http.get(f"{alerts}/v1/alerts/stream", params={"ticket": ticket}, timeout=STREAM_TIMEOUT) as stream:
            assert stream.status == 200 and stream.content_type == "text/event-stream"
            assert (await stream.content.readline()).startswith(b": connected")
            # Used up as soon as it opened a stream, in this and any other alerts process.
            problem = await refused(http, alerts, ticket)
            assert problem["status"] == 401 and problem["type"].endswith("/unauthorized")
            await post_red_flag(http, ingest, theirs, other_pid)  # another tenant: never on this stream
            await post_red_flag(http, ingest, mine, pid)
            streamed = await read_event(stream.content)
            assert streamed["patient_id"] == pid and streamed["status"] == "open"

        assert await db.fetchval("SELECT count(*) FROM alerts.stream_tickets WHERE key_id = $1", care["key_id"]) == 0
        # The opening and the alert sent are in the access log, under the ticket's key, without the ticket.
        want = {("/v1/alerts/stream", None, None), ("/v1/alerts/stream", pid, streamed["id"])}

        async def audited() -> list[asyncpg.Record] | None:
            rows = await db.fetch("SELECT * FROM identity.access_log WHERE key_id = $1", care["key_id"])
            got = {(r["route"], r["patient_id"], r["alert_id"]) for r in rows}
            return rows if want <= got else None

        deadline = time.monotonic() + 15
        while (rows := await audited()) is None:
            assert time.monotonic() < deadline, "the stream's access-log rows did not arrive"
            await asyncio.sleep(0.1)
        assert all(other_pid != r["patient_id"] for r in rows)
        assert ticket not in json.dumps([{k: str(v) for k, v in dict(r).items()} for r in rows])
    assert ticket not in services.logs()
    assert ticket[3:] not in services.logs()


async def test_unknown_expired_and_malformed_tickets_are_refused(
    services: Services, tenant: Tenant, ingest_only_tenant: Tenant, db: asyncpg.Connection
) -> None:
    alerts = services.url("alerts")
    async with aiohttp.ClientSession() as http:
        for bad in ("st_" + secrets.token_urlsafe(32), "", "SECRET-VALUE", "st_" + "A" * 500, "st_\x00"):
            await refused(http, alerts, bad)
        expired = (await new_ticket(http, alerts, tenant.key))["ticket"]
        await db.execute(
            "UPDATE alerts.stream_tickets SET expires_at = now() - interval '1 second' WHERE ticket_hash = $1",
            hashlib.sha256(expired.encode()).digest(),
        )
        await refused(http, alerts, expired)
        # Issuing needs the care scope and a valid key.
        async with http.post(f"{alerts}/v1/alerts/stream-tickets", headers=ingest_only_tenant.headers) as resp:
            assert resp.status == 403 and resp.content_type == "application/problem+json"
        async with http.post(f"{alerts}/v1/alerts/stream-tickets") as resp:
            assert resp.status == 401 and resp.content_type == "application/problem+json"
        # The header path is unchanged: no ticket and no header is a 401.
        async with http.get(f"{alerts}/v1/alerts/stream") as resp:
            assert resp.status == 401


async def test_revoking_the_key_closes_the_stream_its_ticket_opened(services: Services, database_url: str) -> None:
    ingest, alerts = services.url("ingest"), services.url("alerts")
    tenant = await create_tenant(database_url, f"tk-r-{secrets.token_hex(3)}")
    async with aiohttp.ClientSession() as http:
        care = await admin_key(http, ingest, tenant, ["care"])
        spare = (await new_ticket(http, alerts, care["key"]))["ticket"]
        ticket = (await new_ticket(http, alerts, care["key"]))["ticket"]
        async with http.get(f"{alerts}/v1/alerts/stream", params={"ticket": ticket}, timeout=STREAM_TIMEOUT) as stream:
            assert stream.status == 200
            assert (await stream.content.readline()).startswith(b": connected")
            async with http.delete(f"{ingest}/v1/admin/keys/{care['key_id']}", headers=tenant.headers) as resp:
                assert resp.status == 204
            revoked_at = time.monotonic()
            while await asyncio.wait_for(stream.content.readline(), 30):
                pass  # pings until the server ends the response
            print(f"\nticket stream closed {time.monotonic() - revoked_at:.2f} s after the revocation")
        # A ticket of a revoked key opens nothing.
        await refused(http, alerts, spare)
