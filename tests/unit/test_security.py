"""Security plumbing without a database: rate limiter, multi-signature webhooks, access-audit queue,
and the authenticate() hooks (429, access records) on an in-process app with a fake identity store."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from nervewatch.http import authenticate, create_app
from nervewatch.identity import access_log as access_log_module
from nervewatch.identity.access_log import AccessLog, AccessRecord
from nervewatch.identity.ratelimit import KeyRateLimiter
from nervewatch.identity.store import IdentityStore, Principal
from nervewatch.metrics import ACCESS_LOG_DROPPED
from nervewatch.settings import Settings
from services.alerts.delivery import sign, verify

# -- rate limiter ---------------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_bucket_allows_burst_then_refills_at_rate() -> None:
    clock = Clock()
    rl = KeyRateLimiter(rate=2.0, burst=3, clock=clock)
    assert [rl.acquire("k") for _ in range(3)] == [0.0, 0.0, 0.0]
    wait = rl.acquire("k")
    assert wait == pytest.approx(0.5)  # one token at 2/s
    clock.t += 0.5
    assert rl.acquire("k") == 0.0
    assert rl.acquire("k") > 0
    clock.t += 100  # refills, but never beyond the burst
    assert [rl.acquire("k") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert rl.acquire("k") > 0


def test_buckets_are_per_key_and_bounded() -> None:
    clock = Clock()
    rl = KeyRateLimiter(rate=1.0, burst=1, max_keys=100, clock=clock)
    assert rl.acquire("a") == 0.0
    assert rl.acquire("a") > 0
    assert rl.acquire("b") == 0.0  # another key has its own bucket
    for i in range(1000):
        rl.acquire(f"key-{i}")
    assert len(rl) == 100


def test_limiter_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        KeyRateLimiter(rate=0, burst=1)
    with pytest.raises(ValueError):
        KeyRateLimiter(rate=1, burst=0)


# -- webhook signatures ---------------------------------------------------------------------------


def test_multi_signature_header_verifies_with_either_secret() -> None:
    body = b'{"id":"a1"}'
    header = sign(["new-secret", "old-secret"], body, timestamp=1_700_000_000)
    assert header.startswith("t=1700000000,v1=") and header.count("v1=") == 2
    assert header.split(",")[1] == sign("new-secret", body, timestamp=1_700_000_000).split(",")[1]
    assert verify("new-secret", header, body, now=1_700_000_001)
    assert verify("old-secret", header, body, now=1_700_000_001)
    assert verify(["rotated-away", "old-secret"], header, body, now=1_700_000_001)
    assert not verify("other", header, body, now=1_700_000_001)
    assert not verify("new-secret", header, body + b"x", now=1_700_000_001)
    assert not verify("new-secret", header, body, now=1_700_000_000 + 301)


def test_single_signature_header_is_unchanged() -> None:
    body = b"{}"
    header = sign("s", body, timestamp=1_700_000_000)
    assert header.count("v1=") == 1
    assert verify(["x", "s"], header, body, now=1_700_000_000)


@pytest.mark.parametrize(
    "header",
    [
        "",
        "garbage",
        "v1=abc",
        "t=1700000000",
        "t=notanumber,v1=abc",
        "t=1700000000,t=1700000000,v1={mac}",  # two timestamps: ambiguous, refused
    ],
)
def test_verify_refuses_malformed_headers(header: str) -> None:
    body = b"{}"
    mac = sign("s", body, timestamp=1_700_000_000).split("v1=")[1]
    assert not verify("s", header.format(mac=mac), body, now=1_700_000_000)


def test_sign_needs_a_secret() -> None:
    with pytest.raises(ValueError):
        sign([], b"{}")


# -- access-audit queue ---------------------------------------------------------------------------


class FakePool:
    def __init__(self) -> None:
        self.batches: list[list[tuple[Any, ...]]] = []
        self.fail = 0

    async def copy_records_to_table(self, table: str, *, schema_name: str, columns: Any, records: Any) -> None:
        assert (schema_name, table) == ("identity", "access_log")
        assert len(columns) == 8
        if self.fail:
            self.fail -= 1
            raise OSError("database down")
        self.batches.append(list(records))


def record(i: int = 0) -> AccessRecord:
    return AccessRecord(datetime.now(UTC), "t1", "key_1", "GET", "/v1/alerts/{alert_id}", None, f"a{i}", 200)


def dropped(reason: str) -> float:
    return float(ACCESS_LOG_DROPPED.labels(reason)._value.get())


async def test_access_log_batches_and_bounds() -> None:
    pool = FakePool()
    log = AccessLog(pool, max_queue=10, batch=4, interval_s=60)
    before = dropped("queue_full")
    for i in range(12):
        log.record(record(i))
    assert len(log) == 10
    assert dropped("queue_full") - before == 2
    assert await log.flush() == 10
    assert [len(b) for b in pool.batches] == [4, 4, 2]


async def test_access_log_retries_then_drops_a_failing_batch() -> None:
    pool = FakePool()
    log = AccessLog(pool, max_queue=100, batch=10, interval_s=60)
    for i in range(3):
        log.record(record(i))
    pool.fail = 1
    assert await log.flush() == 0
    assert len(log) == 3  # put back for the next tick
    assert await log.flush() == 3
    before = dropped("write_failed")
    log.record(record())
    pool.fail = access_log_module.MAX_ATTEMPTS
    for _ in range(access_log_module.MAX_ATTEMPTS):
        await log.flush()
    assert len(log) == 0
    assert dropped("write_failed") - before == 1


async def test_access_log_flusher_writes_within_its_interval_and_on_stop() -> None:
    pool = FakePool()
    log = AccessLog(pool, batch=500, interval_s=0.05)
    log.start()
    log.record(record())
    for _ in range(100):
        if pool.batches:
            break
        await asyncio.sleep(0.01)
    assert pool.batches
    log.record(record(2))
    await log.stop()
    assert sum(len(b) for b in pool.batches) == 2


# -- authenticate(): rate limit and access records ------------------------------------------------

KEYS = {
    "care-key": Principal("t1", "key_care", frozenset({"care"})),
    "ingest-key": Principal("t1", "key_ingest", frozenset({"ingest"})),
}


class FakeStore(IdentityStore):
    def __init__(self) -> None:
        super().__init__(FakePool())

    async def authenticate(self, raw_key: str) -> Principal | None:
        return KEYS.get(raw_key)


def make_app(store: FakeStore, rps: float, burst: int) -> web.Application:
    app = create_app("test", store, Settings(rate_limit_per_key_rps=rps, rate_limit_per_key_burst=burst))

    async def care(request: web.Request) -> web.Response:
        await authenticate(request, "care")
        if request.match_info["alert_id"] == "missing":
            raise web.HTTPNotFound()
        return web.json_response({"ok": True})

    async def ingest(request: web.Request) -> web.Response:
        await authenticate(request, "ingest")
        return web.json_response({"ok": True})

    app.router.add_get("/v1/alerts/{alert_id}", care)
    app.router.add_get("/v1/patients/{patient_id}", ingest)
    return app


async def test_rate_limit_answers_429_problem_with_retry_after() -> None:
    store = FakeStore()
    async with TestClient(TestServer(make_app(store, rps=0.5, burst=2))) as client:
        statuses = []
        for _ in range(3):
            resp = await client.get("/v1/patients/p1", headers={"Authorization": "Bearer ingest-key"})
            statuses.append(resp.status)
        assert statuses == [200, 200, 429]
        assert resp.content_type == "application/problem+json"
        assert resp.headers["Retry-After"] == "2"
        body = await resp.json(content_type=None)
        assert body["status"] == 429 and body["type"].endswith("/rate-limited")
        # Another key is not affected.
        resp = await client.get("/v1/alerts/a1", headers={"Authorization": "Bearer care-key"})
        assert resp.status == 200


async def test_zero_rate_disables_the_limit() -> None:
    store = FakeStore()
    async with TestClient(TestServer(make_app(store, rps=0, burst=1))) as client:
        for _ in range(20):
            resp = await client.get("/v1/patients/p1", headers={"Authorization": "Bearer ingest-key"})
            assert resp.status == 200


async def test_successful_care_requests_are_queued_for_the_access_audit() -> None:
    store = FakeStore()
    async with TestClient(TestServer(make_app(store, rps=0, burst=1))) as client:
        care = {"Authorization": "Bearer care-key"}
        assert (await client.get("/v1/alerts/a-17", headers=care)).status == 200
        assert (await client.get("/v1/alerts/missing", headers=care)).status == 404  # not a success
        assert (await client.get("/v1/alerts/a-17", headers={"Authorization": "Bearer nope"})).status == 401
        ingest = {"Authorization": "Bearer ingest-key"}
        assert (await client.get("/v1/patients/p-9", headers=ingest)).status == 200  # not care scope
        queued = list(store.access_log._rows)
        await store.access_log.stop()
    assert len(queued) == 1
    row = queued[0]
    assert (row.tenant_id, row.key_id, row.method, row.route) == ("t1", "key_care", "GET", "/v1/alerts/{alert_id}")
    assert (row.alert_id, row.patient_id, row.status) == ("a-17", None, 200)
