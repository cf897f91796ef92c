"""Load generator and post-recovery checks shared by the fault-injection scenarios.

`Load` runs one sequential client per patient (so each patient's events enter the log in
`recorded_at` order), paced to a total rate. Every request is retried until it gets a 202:
after `Retry-After` on 503/429, after 0.2 s on a connection error or timeout, after 0.5 s on
anything else (counted). Only event ids answered 202 are "acknowledged".
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiohttp
import asyncpg

from tests.support import Receiver, Tenant, enrol, poll

REPORT: list[dict[str, Any]] = []


@dataclass
class Acked:
    patient_id: str
    recorded_at: datetime
    at: float  # time.monotonic() of the 202
    red_flag: bool


@dataclass
class Load:
    ingest: str
    tenant: Tenant
    patients: list[str]
    rate: float = 60.0
    offered: set[str] = field(default_factory=set)
    acked: dict[str, Acked] = field(default_factory=dict)
    statuses: Counter[int] = field(default_factory=Counter)
    conn_errors: int = 0
    red_flag_pids: set[str] = field(default_factory=set)
    red_flag_events: dict[str, str] = field(default_factory=dict)  # patient -> event id
    _pending_flags: set[str] = field(default_factory=set)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15))
        self._tasks = [asyncio.create_task(self._worker(pid, i)) for i, pid in enumerate(self.patients)]

    def red_flag(self, pids: list[str]) -> None:
        """The next event of each of these patients reports a red flag."""
        self.red_flag_pids.update(pids)
        self._pending_flags.update(pids)

    async def stop(self, finish_s: float = 45.0) -> None:
        """Stop offering new events; requests already offered keep retrying up to `finish_s`."""
        self._stop.set()
        done, pending = await asyncio.wait(self._tasks, timeout=finish_s)
        for t in pending:
            t.cancel()
        for t in done:
            t.result()
        if self._session is not None:
            await self._session.close()

    async def _worker(self, pid: str, index: int) -> None:
        interval = len(self.patients) / self.rate
        await asyncio.sleep(interval * index / len(self.patients))
        next_at = time.monotonic()
        while not self._stop.is_set():
            flag = pid in self._pending_flags
            self._pending_flags.discard(pid)
            event_id = str(uuid.uuid4())
            recorded_at = datetime.now(UTC)
            body: dict[str, Any] = {
                "event_id": event_id,
                "patient_id": pid,
                "recorded_at": recorded_at.isoformat(),
                "pain": {"current": 8 if flag else random.randint(2, 4)},
            }
            if flag:
                body["red_flags"] = ["foot_drop"]
                self.red_flag_events[pid] = event_id
            self.offered.add(event_id)
            await self._send(body)
            self.acked[event_id] = Acked(pid, recorded_at, time.monotonic(), flag)
            next_at = max(next_at + interval, time.monotonic() - interval)
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))

    async def _send(self, body: dict[str, Any]) -> None:
        assert self._session is not None
        while True:
            try:
                async with self._session.post(
                    f"{self.ingest}/v1/checkins", json=body, headers=self.tenant.headers
                ) as resp:
                    self.statuses[resp.status] += 1
                    await resp.read()
                    if resp.status == 202:
                        return
                    if resp.status in (429, 503):
                        await asyncio.sleep(min(float(resp.headers.get("Retry-After", "1")), 2.0))
                    else:
                        await asyncio.sleep(0.5)
            except (TimeoutError, aiohttp.ClientError):
                self.conn_errors += 1
                await asyncio.sleep(0.2)

    def acked_ids(self, after: float | None = None, before: float | None = None) -> set[str]:
        return {
            e for e, a in self.acked.items() if (after is None or a.at >= after) and (before is None or a.at < before)
        }


async def enrol_cohort(ingest: str, tenant: Tenant, prefix: str, n: int, receiver: Receiver) -> list[str]:
    pids = [f"pt-{prefix}-{i:03d}-{uuid.uuid4().hex[:4]}" for i in range(n)]
    team = [
        {"member_id": "oncall", "role": "on_call", "min_severity": "critical", "notify": {"webhook_url": receiver.url}}
    ]
    async with aiohttp.ClientSession() as http:
        for start in range(0, n, 16):
            await asyncio.gather(*(enrol(http, ingest, tenant, pid, team) for pid in pids[start : start + 16]))
    return pids


async def wait_scored(dsn: str, tenant: Tenant, pids: list[str], timeout_s: float = 60) -> None:
    """Every patient has a stored profile (the enrolment reached scoring)."""

    async def ready() -> bool:
        conn = await asyncpg.connect(dsn)
        try:
            n = await conn.fetchval(
                "SELECT count(*) FROM scoring.patients WHERE tenant_id = $1 AND patient_id = ANY($2::text[])"
                " AND profile IS NOT NULL",
                tenant.tenant_id,
                pids,
            )
        finally:
            await conn.close()
        return int(n) == len(pids)

    await poll(ready, timeout_s=timeout_s, interval_s=0.3)


async def _fetch(dsn: str, query: str, *args: Any) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(dsn)
    try:
        return list(await conn.fetch(query, *args))
    finally:
        await conn.close()


async def verify(
    scenario: str,
    dsn: str,
    load: Load,
    receiver: Receiver,
    *,
    must_store: set[str] | None = None,
    lost_by_design: set[str] | None = None,
    note: str = "",
    timeout_s: float = 90,
) -> dict[str, Any]:
    """The post-recovery checks shared by every scenario; returns (and records) the figures.

    - every acknowledged event (or `must_store`) is in scoring.checkins, once;
    - per patient, events were stored in the order they were recorded and the trajectory is
      as of the newest stored check-in;
    - one red_flag alert per red-flag patient, at most one unresolved alert per patient and kind;
    - every notification of these alerts ends delivered (the receiver is healthy).
    """
    tenant = load.tenant.tenant_id
    expected = must_store if must_store is not None else set(load.acked)

    async def stored_all() -> bool:
        rows = await _fetch(
            dsn,
            "SELECT count(*) AS n FROM scoring.checkins WHERE tenant_id = $1 AND event_id = ANY($2::uuid[])",
            tenant,
            list(expected),
        )
        return int(rows[0]["n"]) == len(expected)

    missing_note = ""
    try:
        await poll(stored_all, timeout_s=timeout_s, interval_s=0.5)
    except TimeoutError:
        missing_note = "TIMEOUT"
    rows = await _fetch(
        dsn,
        """SELECT event_id::text AS event_id, patient_id, recorded_at, stored_at FROM scoring.checkins
           WHERE tenant_id = $1 AND patient_id = ANY($2::text[])""",
        tenant,
        load.patients,
    )
    stored_ids = [r["event_id"] for r in rows]
    missing = expected - set(stored_ids)
    duplicates = len(stored_ids) - len(set(stored_ids))
    unknown = set(stored_ids) - load.offered
    # Per-patient order: sorted by recorded_at, stored_at never goes back.
    order_violations = 0
    by_patient: dict[str, list[asyncpg.Record]] = {}
    for r in rows:
        by_patient.setdefault(r["patient_id"], []).append(r)
    for items in by_patient.values():
        items.sort(key=lambda r: r["recorded_at"])
        order_violations += sum(1 for a, b in itertools.pairwise(items) if b["stored_at"] < a["stored_at"])

    # The trajectory is as of the newest stored check-in of each patient.
    async def trajectories_caught_up() -> bool:
        traj = await _fetch(
            dsn,
            """SELECT t.patient_id, t.as_of, t.last_checkin_at,
                      (SELECT max(recorded_at) FROM scoring.checkins c
                        WHERE c.tenant_id = t.tenant_id AND c.patient_id = t.patient_id) AS newest
               FROM scoring.trajectories t WHERE t.tenant_id = $1 AND t.patient_id = ANY($2::text[])""",
            tenant,
            list(by_patient),
        )
        return len(traj) == len(by_patient) and all(
            t["as_of"] == t["newest"] and t["last_checkin_at"] == t["newest"] for t in traj
        )

    trajectories_ok = True
    try:
        await poll(trajectories_caught_up, timeout_s=30, interval_s=0.5)
    except TimeoutError:
        trajectories_ok = False

    flagged = sorted(load.red_flag_pids)

    async def alerts_raised() -> bool:
        got = await _fetch(
            dsn,
            "SELECT DISTINCT patient_id FROM alerts.alerts WHERE tenant_id = $1 AND kind = 'red_flag'"
            " AND patient_id = ANY($2::text[])",
            tenant,
            flagged,
        )
        return len(got) == len(flagged)

    with contextlib.suppress(TimeoutError):
        await poll(alerts_raised, timeout_s=60, interval_s=0.5)
    alerts = await _fetch(
        dsn,
        "SELECT id, patient_id, kind, status FROM alerts.alerts WHERE tenant_id = $1 AND patient_id = ANY($2::text[])",
        tenant,
        load.patients,
    )
    red_flag_alerts = Counter(a["patient_id"] for a in alerts if a["kind"] == "red_flag")
    unresolved = Counter((a["patient_id"], a["kind"]) for a in alerts if a["status"] != "resolved")
    alert_ids = [a["id"] for a in alerts]

    async def notifications_delivered() -> bool:
        got = await _fetch(dsn, "SELECT status FROM alerts.notifications WHERE alert_id = ANY($1::text[])", alert_ids)
        return len(got) >= len(flagged) and all(r["status"] == "delivered" for r in got)

    with contextlib.suppress(TimeoutError):
        await poll(notifications_delivered, timeout_s=60, interval_s=0.5)
    notes = await _fetch(
        dsn,
        "SELECT delivery_id::text AS d, status FROM alerts.notifications WHERE alert_id = ANY($1::text[])",
        alert_ids,
    )
    ids = {n["d"] for n in notes}
    seen = Counter(r["headers"].get("NerveWatch-Delivery") for r in receiver.requests)
    received = {d: seen[d] for d in ids if seen[d]}
    row = {
        "scenario": scenario,
        "offered": len(load.offered),
        "acked": len(load.acked),
        "must_store": len(expected),
        "stored": len(set(stored_ids) & expected),
        "missing": len(missing),
        "lost_by_design": len(lost_by_design or set()),
        "duplicates": duplicates,
        "order_violations": order_violations,
        "http": dict(sorted(load.statuses.items())),
        "conn_errors": load.conn_errors,
        "alerts_expected": len(flagged),
        "red_flag_alerts": sum(red_flag_alerts.values()),
        "notifications": len(notes),
        "delivered": sum(1 for n in notes if n["status"] == "delivered"),
        "webhook_posts": sum(received.values()),
        "note": " ".join(x for x in (note, missing_note) if x),
    }
    REPORT.append(row)
    print(f"\n[faults] {row}")
    assert not missing, f"{len(missing)} acknowledged events missing from scoring.checkins: {row}"
    assert duplicates == 0 and not unknown
    assert order_violations == 0, row
    assert trajectories_ok, f"trajectories not as of the newest check-in: {row}"
    assert all(red_flag_alerts[p] == 1 for p in flagged), f"red-flag alerts {dict(red_flag_alerts)}: {row}"
    assert all(n <= 1 for n in unresolved.values())
    delivered = sum(1 for n in notes if n["status"] == "delivered")
    assert delivered == len(notes) >= len(flagged), row
    # A delivery id reaches the receiver once per attempt; a crash may repeat one attempt.
    assert all(received.get(d, 0) >= 1 for d in ids), row
    return row


async def committed_offsets(bootstrap: str, group: str, topic: str) -> dict[int, int]:
    """The group's committed offset per partition of `topic` (partitions without a commit are absent)."""
    from aiokafka import AIOKafkaConsumer

    from nervewatch.kafka import topic_partitions

    # Not subscribed, so it never joins the group; it only asks the coordinator for its offsets.
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        offsets = {tp.partition: await consumer.committed(tp) for tp in await topic_partitions(bootstrap, topic)}
    finally:
        await consumer.stop()
    return {p: o for p, o in offsets.items() if o is not None and o >= 0}


async def logged_event_ids(bootstrap: str, topic: str, upto: dict[int, int] | None = None) -> set[str]:
    """Check-in event ids of `topic`, read from the start without a group: the records below offset
    `upto[partition]`, or without `upto` every record until a poll comes back empty (the embedded
    broker's end offsets can lag the records it holds, so they are not used as the end)."""
    import json

    from aiokafka import AIOKafkaConsumer

    from nervewatch.kafka import topic_partitions

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    ids: set[str] = set()
    try:
        tps = [tp for tp in await topic_partitions(bootstrap, topic) if upto is None or upto.get(tp.partition, 0) > 0]
        if not tps:
            return ids
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        remaining = set(tps)
        deadline = time.monotonic() + 120
        while remaining and time.monotonic() < deadline:
            batch = await consumer.getmany(*remaining, timeout_ms=1000, max_records=10_000)
            if not batch and upto is None:
                break
            for tp, records in batch.items():
                end = upto[tp.partition] if upto is not None else None
                ids.update(
                    str(json.loads(r.value)["checkin"]["event_id"])
                    for r in records
                    if r.value and (end is None or r.offset < end)
                )
                if end is not None and await consumer.position(tp) >= end:
                    remaining.discard(tp)
        assert upto is None or not remaining, f"could not read {topic} up to the committed offsets"
    finally:
        await consumer.stop()
    return ids
