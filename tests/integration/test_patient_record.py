"""`GET /v1/patients/{patient_id}` (ingest) for the care console: a `care` key reads the enrolment
record as posted plus `enrolled_at` and `updated_at`, and the read is in the access log; an
`ingest` key still reads it (not audited); another tenant's patient is a 404; a key with neither
scope is a 403."""

from __future__ import annotations

import uuid
from typing import Any

import aiohttp
import asyncpg
import pytest

from tests.support import Services, create_tenant, get_json, poll

pytestmark = pytest.mark.integration


async def test_care_key_reads_the_record_tenant_isolated_and_audited(
    services: Services, database_url: str, db: asyncpg.Connection
) -> None:
    ingest = services.url("ingest")
    tenant = f"rec-{uuid.uuid4().hex[:6]}"
    owner = await create_tenant(database_url, tenant)
    care = await create_tenant(database_url, tenant, frozenset({"care"}))  # another key of the same tenant
    platform = await create_tenant(database_url, tenant, frozenset({"ingest"}))
    admin = await create_tenant(database_url, tenant, frozenset({"admin"}))
    other = await create_tenant(database_url, f"rec-o-{uuid.uuid4().hex[:6]}", frozenset({"care"}))
    pid = f"pt-rec-{uuid.uuid4().hex[:6]}"
    posted: dict[str, Any] = {
        "patient_id": pid,
        "condition": "cubital_tunnel",
        "side": "left",
        "treatment": "surgical_decompression",
        "timezone": "Europe/Berlin",
        "care_team": [
            {
                "member_id": "ot-3",
                "role": "occupational_therapist",
                "min_severity": "high",
                "notify": {"email": "ot3@example.org"},
            }
        ],
    }
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{ingest}/v1/patients", json=posted, headers=owner.headers) as resp:
            assert resp.status == 201, await resp.text()
        url = f"{ingest}/v1/patients/{pid}"
        status, record = await get_json(http, url, care.headers)
        assert status == 200, record
        for key, value in posted.items():
            if key != "care_team":
                assert record[key] == value, key
        member = record["care_team"][0]
        assert member["member_id"] == "ot-3" and member["notify"]["email"] == "ot3@example.org"
        assert member["min_severity"] == "high" and member["role"] == "occupational_therapist"
        assert record["enrolled_at"] == record["created_at"] and record["updated_at"]

        status, as_platform = await get_json(http, url, platform.headers)
        assert status == 200 and as_platform == record
        status, problem = await get_json(http, url, other.headers)
        assert status == 404 and pid not in str(problem)
        status, _ = await get_json(http, f"{ingest}/v1/patients/pt-nobody-{uuid.uuid4().hex[:4]}", care.headers)
        assert status == 404
        status, _ = await get_json(http, url, admin.headers)
        assert status == 403
        status, _ = await get_json(http, url, {})
        assert status == 401

    async def audited() -> list[asyncpg.Record] | None:
        rows = await db.fetch(
            "SELECT key_id, status FROM identity.access_log WHERE tenant_id = $1 AND patient_id = $2"
            " AND route = '/v1/patients/{patient_id}' AND method = 'GET'",
            tenant,
            pid,
        )
        return rows or None

    rows = await poll(audited, timeout_s=15)
    care_key = await db.fetchval(
        "SELECT key_id FROM identity.api_keys WHERE tenant_id = $1 AND scopes = '{care}'", tenant
    )
    assert {r["key_id"] for r in rows} == {care_key}  # the platform's read is not care access; 404s are no access
    assert all(r["status"] == 200 for r in rows)
    assert not await db.fetch("SELECT 1 FROM identity.access_log WHERE tenant_id = $1", other.tenant_id)
