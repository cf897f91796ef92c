"""Security features against the real services: key lifecycle (create, list, rotate, revoke across
processes), webhook secret rotation with multi-signature headers, per-key rate limits, the care-scope
access audit, and a scan of the service logs for the health data a simulated cohort posted."""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from multidict import CIMultiDictProxy

from nervewatch.identity.store import REVOCATION_BOUND_S
from services.alerts.delivery import verify
from simulator.archetypes import generate_cohort
from simulator.client import replay
from tests.support import (
    Services,
    Tenant,
    create_tenant,
    enrol,
    get_json,
    poll,
    post_red_flag,
    wait_alert,
    webhook_receiver,
)
from tooling.devstack import free_port

pytestmark = pytest.mark.integration


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def call(
    http: aiohttp.ClientSession, method: str, url: str, key: str, body: Any = None
) -> tuple[int, Any, CIMultiDictProxy[str]]:
    async with http.request(method, url, json=body, headers=bearer(key)) as resp:
        text = await resp.text()
        return resp.status, (json.loads(text) if text else None), resp.headers


async def status_of(http: aiohttp.ClientSession, url: str, key: str) -> int:
    async with http.get(url, headers=bearer(key)) as resp:
        await resp.read()
        return resp.status


def service_urls(services: Services) -> list[str]:
    """One authenticated GET per service (any answer but 401 means the key was accepted)."""
    return [
        f"{services.url('ingest')}/v1/patients/pt-nobody",
        f"{services.url('scoring')}/v1/patients/pt-nobody/trajectory",
        f"{services.url('alerts')}/v1/alerts?limit=1",
    ]


async def refused_everywhere(http: aiohttp.ClientSession, services: Services, key: str, since: float) -> None:
    """Every service answers 401 for `key` within 1 s (the contract) of `since`, the monotonic time
    of the answer that revoked or ended it."""
    for url in service_urls(services):
        while await status_of(http, url, key) != 401:
            assert time.monotonic() - since < REVOCATION_BOUND_S, f"{url} still accepts the key"
            await asyncio.sleep(0.02)
    assert time.monotonic() - since < REVOCATION_BOUND_S


async def test_key_lifecycle_create_list_rotate_revoke(
    services: Services, database_url: str, other_tenant: Tenant
) -> None:
    tenant = await create_tenant(database_url, f"sec-keys-{secrets.token_hex(3)}")
    ingest = services.url("ingest")
    async with aiohttp.ClientSession() as http:
        # Create: the raw key is shown once, with its description.
        status, made, headers = await call(
            http, "POST", f"{ingest}/v1/admin/keys", tenant.key, {"scopes": ["care", "ingest"], "expires_in_days": 30}
        )
        assert status == 201, made
        assert headers["Cache-Control"] == "no-store"
        assert set(made) >= {"key_id", "key", "prefix", "scopes", "created_at", "expires_at"}
        assert made["key"].startswith(made["prefix"]) and made["scopes"] == ["care", "ingest"]
        expires = datetime.fromisoformat(made["expires_at"]) - datetime.fromisoformat(made["created_at"])
        assert abs(expires - timedelta(days=30)) < timedelta(minutes=1)
        for url in service_urls(services):
            assert await status_of(http, url, made["key"]) != 401, url

        # The new key has no admin scope.
        status, problem, _ = await call(http, "GET", f"{ingest}/v1/admin/keys", made["key"])
        assert status == 403 and problem["status"] == 403

        # Validation: unknown scope, no scope, extra field -> problem+json without echoing input.
        invalid: list[dict[str, Any]] = [
            {"scopes": ["root"]},
            {"scopes": []},
            {"scopes": ["care"], "x": "SECRET-VALUE"},
        ]
        for body in invalid:
            status, problem, _ = await call(http, "POST", f"{ingest}/v1/admin/keys", tenant.key, body)
            assert status == 422 and "SECRET-VALUE" not in json.dumps(problem)

        # List: no raw keys, no hashes; last use recorded.
        status, listing, _ = await call(http, "GET", f"{ingest}/v1/admin/keys", tenant.key)
        assert status == 200
        text = json.dumps(listing)
        assert made["key"] not in text and tenant.key not in text and "hash" not in text
        mine = {k["key_id"]: k for k in listing["items"]}
        assert set(mine[made["key_id"]]) >= {"last_used_at", "revoked_at", "expires_at", "prefix", "scopes"}
        assert mine[made["key_id"]]["last_used_at"] is not None

        # Rotate with an overlap: the successor has the same scopes; the old key still works for now.
        status, rotated, _ = await call(
            http, "POST", f"{ingest}/v1/admin/keys/{made['key_id']}/rotate", tenant.key, {"overlap_hours": 1}
        )
        assert status == 201, rotated
        assert rotated["scopes"] == made["scopes"] and rotated["key"] != made["key"]
        assert rotated["rotated_from"] == made["key_id"]
        assert rotated["previous_key"]["key_id"] == made["key_id"]
        old_until = datetime.fromisoformat(rotated["previous_key"]["expires_at"])
        assert timedelta(minutes=59) < old_until - datetime.now(UTC) <= timedelta(hours=1)
        assert rotated["expires_at"] is not None  # keeps the 30-day lifetime
        for url in service_urls(services):
            assert await status_of(http, url, made["key"]) != 401
            assert await status_of(http, url, rotated["key"]) != 401

        # Rotating again with no overlap ends the old key at once in the process that rotated it,
        # and within 1 s (LISTEN/NOTIFY) in every other process.
        status, second, _ = await call(
            http, "POST", f"{ingest}/v1/admin/keys/{rotated['key_id']}/rotate", tenant.key, {"overlap_hours": 0}
        )
        assert status == 201
        ended = time.monotonic()
        assert await status_of(http, service_urls(services)[0], rotated["key"]) == 401
        await refused_everywhere(http, services, rotated["key"], ended)
        for url in service_urls(services):
            assert await status_of(http, url, second["key"]) != 401, url
        status, _, _ = await call(http, "POST", f"{ingest}/v1/admin/keys/{rotated['key_id']}/rotate", tenant.key)
        assert status == 409  # an expired key cannot be rotated

        # Another tenant can neither see, rotate nor revoke these keys: 404 as for unknown keys.
        status, theirs, _ = await call(http, "GET", f"{ingest}/v1/admin/keys", other_tenant.key)
        assert status == 200 and made["key_id"] not in json.dumps(theirs)
        for method, path in (("DELETE", ""), ("POST", "/rotate")):
            status, problem, _ = await call(
                http, method, f"{ingest}/v1/admin/keys/{second['key_id']}{path}", other_tenant.key
            )
            assert status == 404 and problem["status"] == 404
        status, _, _ = await call(http, "DELETE", f"{ingest}/v1/admin/keys/key_0000000000000000", tenant.key)
        assert status == 404
        status, _, _ = await call(http, "DELETE", f"{ingest}/v1/admin/keys/not-a-key", tenant.key)
        assert status == 404

        # Revoke: every process refuses the key within 1 s of the answer.
        for url in service_urls(services):
            assert await status_of(http, url, second["key"]) != 401  # cached everywhere now
        status, gone, _ = await call(http, "DELETE", f"{ingest}/v1/admin/keys/{second['key_id']}", tenant.key)
        revoked_at = time.monotonic()
        assert status == 204 and gone is None
        await refused_everywhere(http, services, second["key"], revoked_at)
        status, listing, _ = await call(http, "GET", f"{ingest}/v1/admin/keys", tenant.key)
        revoked = {k["key_id"]: k for k in listing["items"]}[second["key_id"]]
        assert revoked["revoked_at"] is not None
        # Revoking twice is harmless.
        status, _, _ = await call(http, "DELETE", f"{ingest}/v1/admin/keys/{second['key_id']}", tenant.key)
        assert status == 204


async def test_webhook_secret_rotation_signs_with_both_secrets_during_overlap(
    services: Services, database_url: str
) -> None:
    tenant = await create_tenant(database_url, f"sec-wh-{secrets.token_hex(3)}")
    ingest, alerts = services.url("ingest"), services.url("alerts")
    original = tenant.webhook_secret
    async with webhook_receiver() as receiver, aiohttp.ClientSession() as http:
        status, rotated, headers = await call(
            http, "POST", f"{ingest}/v1/admin/webhook-secret/rotate", tenant.key, {"overlap_hours": 2}
        )
        assert status == 200, rotated
        assert headers["Cache-Control"] == "no-store"
        new_secret = rotated["webhook_secret"]
        assert new_secret != original
        until = datetime.fromisoformat(rotated["previous_secret_expires_at"])
        assert timedelta(hours=1, minutes=59) < until - datetime.now(UTC) <= timedelta(hours=2)

        team = [
            {"member_id": "oncall", "role": "on_call", "min_severity": "low", "notify": {"webhook_url": receiver.url}}
        ]
        pid = f"pt-wh-{uuid.uuid4().hex[:8]}"
        await enrol(http, ingest, tenant, pid, team)
        await post_red_flag(http, ingest, tenant, pid)
        await wait_alert(http, alerts, tenant, pid)
        hook = (await receiver.wait_for(1))[0]
        header = hook["headers"]["NerveWatch-Signature"]
        assert header.count("v1=") == 2
        assert verify(new_secret, header, hook["body"])
        assert verify(original, header, hook["body"])
        assert not verify("some-other-secret", header, hook["body"])

        # A rotation without overlap drops the old secret at once.
        status, again, _ = await call(
            http, "POST", f"{ingest}/v1/admin/webhook-secret/rotate", tenant.key, {"overlap_hours": 0}
        )
        assert status == 200 and again["previous_secret_expires_at"] is None
        pid2 = f"pt-wh-{uuid.uuid4().hex[:8]}"
        await enrol(http, ingest, tenant, pid2, team)
        await post_red_flag(http, ingest, tenant, pid2)
        hook = (await receiver.wait_for(2))[1]
        header = hook["headers"]["NerveWatch-Signature"]
        assert header.count("v1=") == 1
        assert verify(again["webhook_secret"], header, hook["body"])
        assert not verify(new_secret, header, hook["body"]) and not verify(original, header, hook["body"])

        # Validation and scope.
        status, problem, _ = await call(
            http, "POST", f"{ingest}/v1/admin/webhook-secret/rotate", tenant.key, {"overlap_hours": -1}
        )
        assert status == 422 and problem["status"] == 422
        status, made, _ = await call(http, "POST", f"{ingest}/v1/admin/keys", tenant.key, {"scopes": ["care"]})
        status, problem, _ = await call(http, "POST", f"{ingest}/v1/admin/webhook-secret/rotate", made["key"], {})
        assert status == 403


async def test_rate_limit_per_key(services: Services, database_url: str, tmp_path: Path) -> None:
    """A separate ingest process with a tiny limit: over it, 429 problem+json with Retry-After."""
    tenant = await create_tenant(database_url, f"sec-rl-{secrets.token_hex(3)}")
    other = await create_tenant(database_url, f"sec-rl2-{secrets.token_hex(3)}")
    port = free_port()
    env = dict(
        services.env,
        NERVEWATCH_INGEST_PORT=str(port),
        NERVEWATCH_RATE_LIMIT_PER_KEY_RPS="0.5",
        NERVEWATCH_RATE_LIMIT_PER_KEY_BURST="3",
    )
    limited = Services(env=env, ports={**services.ports, "ingest": port}, log_dir=tmp_path)
    limited.start("ingest")
    try:
        limited.wait_ready(("ingest",))
        url = f"{limited.url('ingest')}/v1/admin/keys"
        async with aiohttp.ClientSession() as http:
            answers = []
            for _ in range(5):
                async with http.get(url, headers=tenant.headers) as resp:
                    answers.append((resp.status, resp.content_type, resp.headers.get("Retry-After"), await resp.read()))
            assert [a[0] for a in answers] == [200, 200, 200, 429, 429]
            _, ctype, retry_after, body = answers[-1]
            assert ctype == "application/problem+json" and retry_after is not None and 1 <= int(retry_after) <= 2
            assert json.loads(body)["status"] == 429
            async with http.get(url, headers=other.headers) as resp:
                assert resp.status == 200  # per key, not per process
    finally:
        limited.stop("ingest")


async def test_care_access_is_audited(services: Services, database_url: str, other_tenant: Tenant) -> None:
    tenant = await create_tenant(database_url, f"sec-audit-{secrets.token_hex(3)}")
    ingest, alerts, scoring = services.url("ingest"), services.url("alerts"), services.url("scoring")
    pid = f"pt-audit-{uuid.uuid4().hex[:8]}"
    async with aiohttp.ClientSession() as http:
        status, care, _ = await call(http, "POST", f"{ingest}/v1/admin/keys", tenant.key, {"scopes": ["care"]})
        assert status == 201
        started = datetime.now(UTC)
        await enrol(http, ingest, tenant, pid, [])
        await post_red_flag(http, ingest, tenant, pid)
        ck = care["key"]

        async def listed() -> Any:
            _, page = await get_json(http, f"{alerts}/v1/alerts?patient_id={pid}", bearer(ck))
            return page["items"][0] if page.get("items") else None

        alert = await poll(listed)
        aid = alert["id"]

        async def scored() -> bool:
            return await status_of(http, f"{scoring}/v1/patients/{pid}/trajectory", ck) == 200

        await poll(scored)
        assert (await status_of(http, f"{alerts}/v1/alerts/{aid}", ck)) == 200
        assert (await status_of(http, f"{alerts}/v1/alerts/{aid}/audit", ck)) == 200
        status, _, _ = await call(http, "POST", f"{alerts}/v1/alerts/{aid}/acknowledge", ck, {"by": "nurse-1"})
        assert status == 200
        until = (datetime.now(UTC) + timedelta(days=1)).isoformat()
        status, _, _ = await call(
            http, "POST", f"{alerts}/v1/patients/{pid}/snoozes", ck, {"kind": "plateau", "until": until, "by": "n1"}
        )
        assert status == 201
        async with http.get(f"{alerts}/v1/alerts/stream", headers=bearer(ck)) as resp:
            assert resp.status == 200
            await resp.content.readline()
        status, _, _ = await call(http, "POST", f"{alerts}/v1/alerts/{aid}/resolve", ck, {"by": "nurse-1"})
        assert status == 200
        # Failures are not successful accesses: not recorded.
        assert (await status_of(http, f"{alerts}/v1/alerts/al-does-not-exist", ck)) == 404

        want = {
            ("GET", "/v1/alerts", pid, None),
            ("GET", "/v1/patients/{patient_id}/trajectory", pid, None),
            ("GET", "/v1/alerts/{alert_id}", None, aid),
            ("GET", "/v1/alerts/{alert_id}/audit", None, aid),
            ("POST", "/v1/alerts/{alert_id}/acknowledge", None, aid),
            ("POST", "/v1/patients/{patient_id}/snoozes", pid, None),
            ("GET", "/v1/alerts/stream", None, None),
            ("POST", "/v1/alerts/{alert_id}/resolve", None, aid),
        }

        async def audited() -> list[dict[str, Any]] | None:
            status, page, _ = await call(
                http,
                "GET",
                f"{ingest}/v1/admin/access-log?key_id={care['key_id']}&since={started.isoformat().replace('+', '%2B')}",
                tenant.key,
            )
            assert status == 200, page
            got = {(r["method"], r["route"], r["patient_id"], r["alert_id"]) for r in page["items"]}
            return page["items"] if want <= got else None

        items = await poll(audited, timeout_s=15)
        assert all(r["key_id"] == care["key_id"] and 200 <= r["status"] < 300 for r in items)
        assert not any(r["alert_id"] == "al-does-not-exist" for r in items)
        # Ingest-scope requests (the enrolment, the check-in) are not care access.
        status, page, _ = await call(http, "GET", f"{ingest}/v1/admin/access-log?limit=1000", tenant.key)
        assert all(r["route"] not in ("/v1/patients", "/v1/checkins") for r in page["items"])

        # Paging with the cursor walks the same rows.
        seen: list[int] = []
        cursor = ""
        while True:
            status, page, _ = await call(
                http, "GET", f"{ingest}/v1/admin/access-log?limit=2&patient_id={pid}{cursor}", tenant.key
            )
            seen += [r["id"] for r in page["items"]]
            if not page["next_cursor"]:
                break
            cursor = f"&cursor={page['next_cursor']}"
        assert seen == sorted(seen) and len(seen) >= 3

        # Tenant-scoped, admin-only, validated.
        status, page, _ = await call(http, "GET", f"{ingest}/v1/admin/access-log?limit=1000", other_tenant.key)
        assert status == 200 and pid not in json.dumps(page)
        assert (await status_of(http, f"{ingest}/v1/admin/access-log", ck)) == 403
        for bad in ("since=yesterday", "limit=0", "limit=5000", "cursor=-1", "patient_id=%00", "key_id=x"):
            status, problem, _ = await call(http, "GET", f"{ingest}/v1/admin/access-log?{bad}", tenant.key)
            assert status == 400 and problem["status"] == 400, bad


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


async def read_to_end(stream: aiohttp.StreamReader) -> float:
    """Read until the server ends the stream; returns the monotonic time it did."""
    while await stream.readline():
        pass
    return time.monotonic()


async def test_revoked_key_is_refused_and_its_stream_closed_within_a_second(
    services: Services, database_url: str
) -> None:
    """A care key streams alerts (each one and the stream opening in the access log); then it is
    revoked through the admin API on ingest: scoring and alerts refuse it, and the alerts service
    ends its open stream, within 1 s of the revocation's answer."""
    tenant = await create_tenant(database_url, f"sec-revoke-{secrets.token_hex(3)}")
    ingest, alerts = services.url("ingest"), services.url("alerts")
    pid = f"pt-revoke-{uuid.uuid4().hex[:8]}"
    async with aiohttp.ClientSession() as http:
        status, care, _ = await call(http, "POST", f"{ingest}/v1/admin/keys", tenant.key, {"scopes": ["care"]})
        assert status == 201
        await enrol(http, ingest, tenant, pid, [])
        timeout = aiohttp.ClientTimeout(total=None, sock_read=60)
        async with http.get(f"{alerts}/v1/alerts/stream", headers=bearer(care["key"]), timeout=timeout) as stream:
            assert stream.status == 200
            assert (await stream.content.readline()).startswith(b": connected")
            await post_red_flag(http, ingest, tenant, pid)
            streamed = await read_event(stream.content)
            assert streamed["patient_id"] == pid
            for url in service_urls(services):
                assert await status_of(http, url, care["key"]) != 401  # cached everywhere now
            ended = asyncio.create_task(read_to_end(stream.content))
            status, _, _ = await call(http, "DELETE", f"{ingest}/v1/admin/keys/{care['key_id']}", tenant.key)
            revoked_at = time.monotonic()
            assert status == 204
            await refused_everywhere(http, services, care["key"], revoked_at)
            closed_at = await asyncio.wait_for(ended, 30)
            assert closed_at - revoked_at < REVOCATION_BOUND_S, f"stream open {closed_at - revoked_at:.2f} s"

        want = {
            ("GET", "/v1/alerts/stream", None, None),  # the opening
            ("GET", "/v1/alerts/stream", pid, streamed["id"]),  # the alert sent over it
        }

        async def audited() -> bool:
            status, page, _ = await call(
                http, "GET", f"{ingest}/v1/admin/access-log?key_id={care['key_id']}&limit=1000", tenant.key
            )
            assert status == 200, page
            got = {(r["method"], r["route"], r["patient_id"], r["alert_id"]) for r in page["items"]}
            return want <= got

        await poll(audited, timeout_s=15)


async def test_service_logs_carry_no_health_data(services: Services, database_url: str) -> None:
    """Post a simulated cohort plus check-ins with distinctive notes, ids and values; then none of
    them may appear in any service's log (the whole session's logs, other tests' traffic included)."""
    tenant = await create_tenant(database_url, f"sec-logs-{secrets.token_hex(3)}")
    ingest, alerts, scoring = services.url("ingest"), services.url("alerts"), services.url("scoring")
    tag = secrets.token_hex(4)
    async with webhook_receiver() as receiver, aiohttp.ClientSession() as http:
        cohort = generate_cohort(per_archetype=1, seed=4242, webhook_url=receiver.url)
        stats = await replay(cohort, ingest, tenant.key, session=http, progress=False)
        assert stats.accepted > 0

        pids = [f"pt-leak{tag}-{i}" for i in range(3)]
        notes = [f"LEAKCHECK-{tag}-note-{i} numb fingers after surgery" for i in range(3)]
        email = f"leakcheck-{tag}@example.org"
        team = [
            {"member_id": "doc", "role": "on_call", "min_severity": "low", "notify": {"webhook_url": receiver.url}},
            {"member_id": "nurse", "role": "care_coordinator", "min_severity": "low", "notify": {"email": email}},
        ]
        for pid, note in zip(pids, notes, strict=True):
            await enrol(http, ingest, tenant, pid, team)
            body = {
                "event_id": str(uuid.uuid4()),
                "patient_id": pid,
                "recorded_at": datetime.now(UTC).isoformat(),
                "pain": {"current": 9, "worst_24h": 10, "quality": ["burning"]},
                "numbness": 7,
                "grip_strength_kg": 37.913,
                "red_flags": ["foot_drop"],
                "notes": note,
            }
            async with http.post(f"{ingest}/v1/checkins", json=body, headers=tenant.headers) as resp:
                assert resp.status == 202, await resp.text()
            # Invalid input must not be echoed into logs either.
            bad = {**body, "event_id": str(uuid.uuid4()), "pain": {"current": 99}, "tingling": "LEAKCHECK-bad"}
            async with http.post(f"{ingest}/v1/checkins", json=bad, headers=tenant.headers) as resp:
                assert resp.status == 422
                assert "LEAKCHECK" not in await resp.text()
        for pid in pids:
            await wait_alert(http, alerts, tenant, pid)
            status, _ = await get_json(http, f"{scoring}/v1/patients/{pid}/trajectory", tenant.headers)
            assert status == 200
        red = next(p.patient_id for p in cohort if p.label.archetype == "red_flag")
        await wait_alert(http, alerts, tenant, red)
        await receiver.wait_for(len(pids))
        await asyncio.sleep(2.0)  # let retries, sweeps and consumers log what they log

    logs = services.logs()
    assert logs, "no service logs captured"
    leaks = []
    cohort_notes = {
        post.payload["notes"]
        for p in cohort
        for post in p.posts
        if post.kind == "checkin" and post.payload.get("notes")
    }
    needles = [*pids, *notes, email, "37.913", "LEAKCHECK", *(p.patient_id for p in cohort), *cohort_notes]
    leaks += [n for n in needles if n in logs]
    # Symptom fields as JSON text ("pain": ..., "numbness": 7) never appear in a log line.
    fields = ("pain", "tingling", "numbness", "weakness", "notes", "grip_strength_kg", "red_flags", "patient_id")
    leaks += [m.group(0) for m in re.finditer(r'"(' + "|".join(fields) + r')"\s*:', logs)]
    assert not leaks, f"health data in service logs: {sorted(set(leaks))[:20]}"
