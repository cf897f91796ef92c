"""Benchmark load generators: HTTP closed and open loop, raw broker and COPY ceilings, payloads."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from nervewatch.kafka import PRODUCER_BATCH_BYTES, topic_partitions
from schemas.checkins import CheckIn
from schemas.events import CheckInRecorded, TrajectoryUpdated, TriggerRef, event_key
from schemas.trajectory import Signal, SignalCode, Trajectory, TrajectoryState

TENANT = "bench"
TIMEZONE = "America/New_York"


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100); NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


# -- payloads ----------------------------------------------------------------------------------


def checkin_dict(patient_id: str, recorded_at: datetime, *, red_flag: bool = False, seq: int = 0) -> dict[str, Any]:
    """A realistic, fully populated check-in (~550 bytes of JSON)."""
    pain = 3 + seq % 5
    return {
        "event_id": str(uuid.uuid4()),
        "patient_id": patient_id,
        "recorded_at": recorded_at.isoformat(),
        "pain": {"current": pain, "worst_24h": pain + 1, "quality": ["burning", "tingling"]},
        "tingling": 3,
        "numbness": 2,
        "weakness": 2,
        "numbness_spreading": False,
        "night_wakings": 1,
        "grip_strength_kg": 17.5,
        "function": {"instrument": "bctq_sss", "score": 2.1},
        "analgesic_doses_24h": 1,
        "pt_session": {"ended_at": (recorded_at - timedelta(hours=16)).isoformat(), "intensity": "moderate"},
        "home_exercises_done": True,
        "red_flags": ["foot_drop"] if red_flag else [],
        "notes": "slept a bit better; exercises done after lunch",
    }


def checkin_body(patient_id: str, *, red_flag: bool = False, seq: int = 0) -> bytes:
    return json.dumps(checkin_dict(patient_id, datetime.now(UTC), red_flag=red_flag, seq=seq)).encode()


def batch_body(patients: list[str], size: int, start: int) -> bytes:
    now = datetime.now(UTC)
    items = [checkin_dict(patients[(start + i) % len(patients)], now, seq=i) for i in range(size)]
    return json.dumps({"items": items}).encode()


def patient_body(patient_id: str, webhook_url: str | None = None) -> bytes:
    body: dict[str, Any] = {
        "patient_id": patient_id,
        "condition": "carpal_tunnel",
        "side": "right",
        "treatment": "surgical_decompression",
        "timezone": TIMEZONE,
        "baseline": {"pain": 7, "tingling": 6, "numbness": 5, "weakness": 4},
    }
    if webhook_url:
        body["care_team"] = [
            {
                "member_id": "oncall",
                "role": "on_call",
                "min_severity": "critical",
                "notify": {"webhook_url": webhook_url},
            }
        ]
    return json.dumps(body).encode()


def checkin_events(patients: list[str], n: int, now: datetime) -> list[tuple[bytes, bytes]]:
    """`n` CheckInRecorded events (key, value), replay-like: many per patient, one per day, oldest first."""
    per_patient = -(-n // len(patients))
    out: list[tuple[bytes, bytes]] = []
    for i in range(n):
        patient = patients[i % len(patients)]
        day = i // len(patients)
        recorded = now - timedelta(days=per_patient - day, hours=i % 12)
        checkin = CheckIn.model_validate(checkin_dict(patient, recorded, seq=i), context={"now": now})
        event = CheckInRecorded(tenant_id=TENANT, received_at=now, checkin=checkin)
        out.append((event_key(TENANT, patient), event.model_dump_json().encode()))
    return out


def red_flag_trajectory(patient: str, now: datetime) -> tuple[bytes, bytes]:
    """One live TrajectoryUpdated carrying a red-flag signal for `patient` (opens a critical alert)."""
    event = TrajectoryUpdated(
        tenant_id=TENANT,
        event_id=uuid.uuid4(),
        trajectory=Trajectory(patient_id=patient, state=TrajectoryState.red_flag, as_of=now, symptom_index=70.0),
        previous_state=TrajectoryState.improving,
        state_changed=True,
        signals=[Signal(code=SignalCode.red_flag, event_time=now, event_id=str(uuid.uuid4()))],
        trigger=TriggerRef(event_id=str(uuid.uuid4()), recorded_at=now, received_at=now),
        last_checkin_at=now,
        computed_at=now,
    )
    return event_key(TENANT, patient), event.model_dump_json().encode()


def trajectory_events(patients: list[str], n: int, now: datetime, red_flag_every: int) -> list[tuple[bytes, bytes]]:
    """`n` TrajectoryUpdated events; every `red_flag_every`-th carries a red-flag signal."""
    out: list[tuple[bytes, bytes]] = []
    for i in range(n):
        patient = patients[i % len(patients)]
        as_of = now - timedelta(minutes=n - i)
        red = red_flag_every > 0 and i % red_flag_every == 0
        signals = [Signal(code=SignalCode.red_flag, event_time=as_of, event_id=str(uuid.uuid4()))] if red else []
        state = TrajectoryState.red_flag if red else TrajectoryState.improving
        event = TrajectoryUpdated(
            tenant_id=TENANT,
            event_id=uuid.uuid4(),
            trajectory=Trajectory(patient_id=patient, state=state, as_of=as_of, symptom_index=40.0),
            previous_state=TrajectoryState.improving,
            state_changed=red,
            signals=signals,
            trigger=TriggerRef(event_id=str(uuid.uuid4()), recorded_at=as_of, received_at=now),
            last_checkin_at=as_of,
            computed_at=now,
        )
        out.append((event_key(TENANT, patient), event.model_dump_json().encode()))
    return out


# -- HTTP --------------------------------------------------------------------------------------


@dataclass
class HttpResult:
    sent: int = 0
    ok: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)
    elapsed: float = 0.0
    max_lag_s: float = 0.0  # how far the open-loop sender fell behind its timetable

    def error(self, what: str) -> None:
        self.errors[what] = self.errors.get(what, 0) + 1

    def error_text(self) -> str:
        return ", ".join(f"{k}: {v}" for k, v in sorted(self.errors.items())) or "none"


async def _post(session: aiohttp.ClientSession, url: str, body: bytes, res: HttpResult, want: int) -> bool:
    res.sent += 1
    try:
        async with session.post(url, data=body, headers={"Content-Type": "application/json"}) as resp:
            await resp.read()
            if resp.status == want:
                res.ok += 1
                return True
            res.error(str(resp.status))
    except (TimeoutError, aiohttp.ClientError, OSError) as exc:
        res.error(type(exc).__name__)
    return False


def session_for(key: str, limit: int) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=limit, limit_per_host=limit),
        headers={"Authorization": f"Bearer {key}"},
        timeout=aiohttp.ClientTimeout(total=30),
        skip_auto_headers=("User-Agent",),
    )


async def closed_loop(
    key: str, url: str, make_body: Callable[[int], bytes], *, concurrency: int, duration_s: float, warmup_s: float
) -> HttpResult:
    """`concurrency` clients each send back to back; only requests that start in the window count."""
    res = HttpResult()
    warm = HttpResult()
    loop = asyncio.get_running_loop()
    counter = iter(range(1 << 62))
    async with session_for(key, concurrency) as session:
        start = loop.time() + warmup_s
        end = start + duration_s

        async def worker() -> None:
            while True:
                t = loop.time()
                if t >= end:
                    return
                target = warm if t < start else res
                body = make_body(next(counter))
                if await _post(session, url, body, target, 202) and target is res:
                    res.latencies.append(loop.time() - t)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        res.elapsed = loop.time() - start
    return res


async def open_loop(
    key: str,
    url: str,
    make_body: Callable[[int], bytes],
    *,
    rate: float,
    duration_s: float,
    on_scheduled: Callable[[int, float], None] | None = None,
) -> HttpResult:
    """Requests on a fixed timetable (`rate`/s); latency counts from the scheduled send time, so a
    sender or server that falls behind shows up as latency (no coordinated omission).
    `on_scheduled(i, wall_time)` receives each request's scheduled wall-clock send time."""
    res = HttpResult()
    loop = asyncio.get_running_loop()
    n = max(1, int(rate * duration_s))
    bodies = [make_body(i) for i in range(n)]
    tasks: list[asyncio.Task[None]] = []
    async with session_for(key, 512) as session:

        async def one(i: int, scheduled: float) -> None:
            if await _post(session, url, bodies[i], res, 202):
                res.latencies.append(loop.time() - scheduled)

        t0 = loop.time() + 0.05
        wall0 = time.time() + (t0 - loop.time())
        for i in range(n):
            scheduled = t0 + i / rate
            delay = scheduled - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            else:
                res.max_lag_s = max(res.max_lag_s, -delay)
            if on_scheduled is not None:
                on_scheduled(i, wall0 + (scheduled - t0))
            tasks.append(asyncio.create_task(one(i, scheduled)))
        await asyncio.gather(*tasks)
        res.elapsed = loop.time() - t0
    return res


async def enrol(
    key: str, url: str, patients: list[str], concurrency: int = 32, webhook_url: str | None = None
) -> HttpResult:
    res = HttpResult()
    queue = list(reversed(patients))
    async with session_for(key, concurrency) as session:

        async def worker() -> None:
            while queue:
                pid = queue.pop()
                if not await _post(session, url, patient_body(pid, webhook_url), res, 201):
                    await _post(session, url, patient_body(pid, webhook_url), res, 200)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    if res.ok < len(patients):
        raise RuntimeError(f"enrolment failed: {res.ok} of {len(patients)} ({res.error_text()})")
    return res


# -- broker and database ceilings ---------------------------------------------------------------


def producer(bootstrap: str, linger_ms: int) -> AIOKafkaProducer:
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        enable_idempotence=False,
        linger_ms=linger_ms,
        max_request_size=4 * 1024 * 1024,
        max_batch_size=PRODUCER_BATCH_BYTES,
    )


async def publish(prod: AIOKafkaProducer, topic: str, records: list[tuple[bytes, bytes]], chunk: int = 5000) -> None:
    """Pipelined sends; returns when every record is acknowledged."""
    for i in range(0, len(records), chunk):
        futures = [await prod.send(topic, value=v, key=k) for k, v in records[i : i + chunk]]
        await asyncio.gather(*futures)


async def produce_ceiling(bootstrap: str, linger_ms: int, topic: str, n: int) -> float:
    """messages/s of a plain producer sending check-in-sized events."""
    records = checkin_events([f"pt-{i:04d}" for i in range(500)], n, datetime.now(UTC))
    prod = producer(bootstrap, linger_ms)
    await prod.start()
    try:
        await publish(prod, topic, records[: min(1000, n)])  # warm up connections and metadata
        started = time.perf_counter()
        await publish(prod, topic, records)
        return n / (time.perf_counter() - started)
    finally:
        await prod.stop()


async def consume_ceiling(bootstrap: str, topic: str, n: int) -> float:
    """messages/s of a plain consumer (no group) reading `n` records of `topic` from the beginning."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, max_partition_fetch_bytes=8 << 20
    )
    await consumer.start()
    try:
        tps = await topic_partitions(bootstrap, topic)
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        got = 0
        started = time.perf_counter()
        deadline = started + 120
        while got < n and time.perf_counter() < deadline:
            batch = await consumer.getmany(timeout_ms=500, max_records=5000)
            got += sum(len(v) for v in batch.values())
        return got / (time.perf_counter() - started)
    finally:
        await consumer.stop()


async def copy_ceiling(dsn: str, n: int) -> float:
    """rows/s of a binary COPY of check-in-like rows into an unlogged table."""
    now = datetime.now(UTC)
    data = json.dumps(checkin_dict("pt-0001", now))
    rows = [
        (TENANT, uuid.uuid4(), f"pt-{i % 500:04d}", now, now, now.date(), uuid.uuid4().bytes, data) for i in range(n)
    ]
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(
            """CREATE UNLOGGED TABLE IF NOT EXISTS public.bench_copy (
                   tenant_id text NOT NULL, event_id uuid NOT NULL, patient_id text NOT NULL,
                   recorded_at timestamptz NOT NULL, received_at timestamptz NOT NULL, local_date date,
                   content_hash bytea NOT NULL, data jsonb NOT NULL, PRIMARY KEY (tenant_id, event_id))"""
        )
        started = time.perf_counter()
        for i in range(0, n, 10_000):
            await conn.copy_records_to_table("bench_copy", schema_name="public", records=rows[i : i + 10_000])
        rate = n / (time.perf_counter() - started)
        await conn.execute("DROP TABLE public.bench_copy")
        return rate
    finally:
        await conn.close()


@dataclass
class DigestCost:
    """Rates of ingest's digest statement and of a COPY of the same rows, measured back to back."""

    new_per_s: float  # events/s recorded by `DigestStore.claim` (all new)
    repost_per_s: float  # events/s judged by `DigestStore.claim` when all are on record (identical reposts)
    copy_per_s: float  # rows/s of a binary COPY of the same rows into a table of the same shape


async def digest_cost(dsn: str, n: int, batch: int) -> DigestCost:
    """Time `DigestStore.claim` over `n` fresh (event id, digest) pairs in statements of `batch`,
    then the same pairs again (reposts), then a COPY of the same rows; the rows are deleted after."""
    from nervewatch.db import create_pool
    from services.ingest.digests import DigestStore

    tenant = f"bench-digest-{uuid.uuid4().hex[:8]}"
    pairs = [(uuid.uuid4(), hashlib.sha256(i.to_bytes(8, "big")).digest()) for i in range(n)]
    chunks = [pairs[i : i + batch] for i in range(0, n, batch)]
    pool = await create_pool(dsn, min_size=1, max_size=2)
    try:
        store = DigestStore(pool)
        rates = []
        for _ in range(2):
            started = time.perf_counter()
            for chunk in chunks:
                await store.claim(tenant, "checkin", chunk)
            rates.append(n / (time.perf_counter() - started))
        async with pool.acquire() as conn:
            await conn.execute(
                """CREATE UNLOGGED TABLE IF NOT EXISTS public.bench_digest_copy (
                       tenant_id text NOT NULL, event_id uuid NOT NULL, kind text NOT NULL, digest bytea NOT NULL,
                       first_seen timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (tenant_id, event_id))"""
            )
            rows = [(tenant, e, "checkin", d) for e, d in pairs]
            started = time.perf_counter()
            for i in range(0, n, batch):
                await conn.copy_records_to_table(
                    "bench_digest_copy",
                    schema_name="public",
                    columns=("tenant_id", "event_id", "kind", "digest"),
                    records=rows[i : i + batch],
                )
            copy = n / (time.perf_counter() - started)
            await conn.execute("DROP TABLE public.bench_digest_copy")
            await conn.execute("DELETE FROM ingest.event_digests WHERE tenant_id = $1", tenant)
    finally:
        await pool.close()
    return DigestCost(rates[0], rates[1], copy)


# -- consumer group progress ----------------------------------------------------------------------


class GroupWatch:
    """End offsets of topics and committed offsets of consumer groups, via one plain consumer per group."""

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap
        self._consumers: dict[str | None, AIOKafkaConsumer] = {}

    async def _consumer(self, group: str | None) -> AIOKafkaConsumer:
        if group not in self._consumers:
            c = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, group_id=group, enable_auto_commit=False)
            await c.start()
            self._consumers[group] = c
        return self._consumers[group]

    async def partitions(self, topic: str) -> list[TopicPartition]:
        return await topic_partitions(self.bootstrap, topic)

    async def end_offsets(self, topics: list[str]) -> dict[TopicPartition, int]:
        tps = [tp for t in topics for tp in await self.partitions(t)]
        c = await self._consumer(None)
        return dict(await c.end_offsets(tps))

    async def committed(self, group: str, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        c = await self._consumer(group)
        out = {}
        for tp in tps:
            out[tp] = (await c.committed(tp)) or 0
        return out

    async def lag(self, group: str, topics: list[str]) -> int:
        ends = await self.end_offsets(topics)
        done = await self.committed(group, list(ends))
        return sum(max(0, end - done[tp]) for tp, end in ends.items())

    async def wait_caught_up(self, group: str, topics: list[str], timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if await self.lag(group, topics) == 0:
                return True
            await asyncio.sleep(0.25)
        return False

    async def skip_to_end(self, group: str, topic: str) -> None:
        """Commit the group's offsets on `topic` to its end (before the group's consumers start)."""
        tps = await self.partitions(topic)
        ends = await self.end_offsets([topic])
        c = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, group_id=group, enable_auto_commit=False)
        await c.start()
        try:
            c.assign(tps)
            await c.commit({tp: ends[tp] for tp in tps})
        finally:
            await c.stop()

    async def close(self) -> None:
        for c in self._consumers.values():
            await c.stop()
        self._consumers.clear()


async def hop_latency(
    bootstrap: str, linger_ms: int, fetch_max_wait_ms: int, topic: str, rate: float, duration_s: float
) -> list[float]:
    """Seconds from send to receipt through the broker for single messages at `rate`/s (plain client, no group),
    with the same producer linger and consumer fetch wait as the services."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_wait_ms=fetch_max_wait_ms
    )
    prod = producer(bootstrap, linger_ms)
    await consumer.start()
    await prod.start()
    latencies: list[float] = []
    try:
        tps = await topic_partitions(bootstrap, topic)
        consumer.assign(tps)
        await consumer.seek_to_end(*tps)
        n = max(1, int(rate * duration_s))
        done = asyncio.Event()

        async def receive() -> None:
            while len(latencies) < n:
                batch = await consumer.getmany(timeout_ms=1000)
                now = time.time()
                for recs in batch.values():
                    latencies.extend(now - float(r.value) for r in recs if r.value and r.key == b"hop")
            done.set()

        reader = asyncio.create_task(receive())
        await asyncio.sleep(0.5)  # let the consumer settle on the end offsets
        for i in range(n):
            await prod.send(topic, key=b"hop", value=repr(time.time()).encode(), partition=i % len(tps))
            await asyncio.sleep(1 / rate)
        try:
            await asyncio.wait_for(done.wait(), 10)
        except TimeoutError:
            reader.cancel()
        return latencies
    finally:
        await prod.stop()
        await consumer.stop()
