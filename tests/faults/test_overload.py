"""Overload: twice ingest's measured capacity for 30 s; it sheds load and memory stays bounded.

Runs in its own database and on its own broker (an ingest and a scoring process, default
settings), so the backlog it builds never slows the other scenarios.

1. Capacity: a closed loop of 16 clients posting batches of 100 check-ins for 5 s measures how
   many events/s ingest accepts here.
2. Overload: an open loop offers twice that rate, in the same batches, for
   `$NERVEWATCH_OVERLOAD_SECONDS` (30 by default; `make soak` is the long run). Requests are not retried.

Asserted: every answer is 202, 429 or 503 (no 5xx, no timeout, no refused connection), every
429/503 carries Retry-After, some load was shed, ingest kept accepting throughout (every 10 s of
the overload has accepted batches; the accepted share of capacity is reported, not asserted: it
depends on what else the machine runs),
ingest's and scoring's RSS stay under a fixed bound and level off (the last third of the run
within a few MiB of the middle third) while scoring's lag grows all along (its consumer holds
one batch at a time), and every accepted event is in the log (read back from it: the embedded
broker's end offsets lag).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from schemas.events import Topics
from tests.faults.load import REPORT, committed_offsets, enrol_cohort, logged_event_ids, wait_scored
from tests.support import Receiver, Services, Tenant, create_tenant, service_env
from tooling.devstack import EmbeddedStack, free_port, fresh_database

OVERLOAD_S = float(os.environ.get("NERVEWATCH_OVERLOAD_SECONDS", "30"))
BATCH = 100
PATIENTS = 4000  # what scoring gets through in a run is ~10 check-ins per patient-day, as in a busy clinic
CAPACITY_CLIENTS = 16
CAPACITY_S = 5.0
SLICE_S = 10.0  # ingest must accept something in every slice of the overload
RSS_BOUND_MIB = 400.0  # per process; the in-flight cap (256 requests of at most 1 MiB) bounds ingest
RSS_GROWTH_MIB = 48.0  # middle third vs last third of the run (scoring's patient windows fill early on)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(OVERLOAD_S + 150)]


@dataclass
class Isolated:
    services: Services
    bootstrap: str
    dsn: str
    tenant: Tenant
    broker_pid: int


@pytest.fixture
async def isolated(fault_stack: EmbeddedStack) -> AsyncIterator[Isolated]:
    """An ingest and a scoring process on their own database and their own embedded broker."""
    dsn = await fresh_database(fault_stack.database_url, "nwoverload")
    tenant = await create_tenant(dsn, "overload-clinic")
    log_dir = Path(fault_stack.broker_log or "/tmp").parent / "overload"
    log_dir.mkdir(parents=True, exist_ok=True)
    broker = EmbeddedStack(database_url=dsn, bootstrap="", broker_port=free_port(), broker_log=log_dir / "broker.log")
    broker.start_broker()
    bootstrap = f"127.0.0.1:{broker.broker_port}"
    ports = {s: free_port() for s in ("ingest", "scoring", "alerts")}
    env = service_env(EmbeddedStack(database_url=dsn, bootstrap=bootstrap), ports)
    services = Services(env=env, ports=ports, log_dir=log_dir)
    try:
        for s in ("ingest", "scoring"):
            services.start(s)
        await asyncio.to_thread(services.wait_ready, ("ingest", "scoring"), 60)
        assert broker.broker is not None
        yield Isolated(services, bootstrap, dsn, tenant, broker.broker.pid)
    finally:
        services.stop_all()
        broker.stop_broker()
        services.keep_logs("overload-")


class Checkins:
    """Batches of check-ins; each patient's check-ins are one day apart, from 700 days ago onwards.

    One check-in per patient-day keeps scoring's working set what it is in production (a patient's
    window of days, not thousands of same-day check-ins) while the load lasts.
    """

    def __init__(self, pids: list[str]) -> None:
        self.pids = pids
        self.start = datetime.now(UTC) - timedelta(days=700)
        self.day = dict.fromkeys(pids, 0)

    def batch(self) -> bytes:
        items = []
        for _ in range(BATCH):
            pid = random.choice(self.pids)
            recorded_at = (self.start + timedelta(days=self.day[pid])).isoformat()
            self.day[pid] += 1
            items.append(
                f'{{"event_id":"{uuid.uuid4()}","patient_id":"{pid}",'
                f'"recorded_at":"{recorded_at}","pain":{{"current":{random.randint(1, 6)}}}}}'
            )
        return f'{{"items":[{",".join(items)}]}}'.encode()


@dataclass
class Tally:
    statuses: Counter[int] = field(default_factory=Counter)
    accepted_events: int = 0
    accepted_ids: set[str] = field(default_factory=set)
    missing_retry_after: int = 0
    timeouts: int = 0
    conn_errors: int = 0
    sent: int = 0
    accepted_at: list[float] = field(default_factory=list)  # time.monotonic() of every 202


async def _post(http: aiohttp.ClientSession, url: str, headers: dict[str, str], body: bytes, tally: Tally) -> None:
    tally.sent += 1
    try:
        async with http.post(url, data=body, headers=headers) as resp:
            payload = await resp.read()
            tally.statuses[resp.status] += 1
            if resp.status == 202:
                result = json.loads(payload)
                tally.accepted_events += int(result["accepted"])
                tally.accepted_ids.update(result["accepted_event_ids"])
                tally.accepted_at.append(time.monotonic())
            elif resp.status in (429, 503) and "Retry-After" not in resp.headers:
                tally.missing_retry_after += 1
    except TimeoutError:
        tally.timeouts += 1
    except aiohttp.ClientError:
        tally.conn_errors += 1


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def test_twice_capacity_is_shed_with_bounded_memory(isolated: Isolated) -> None:
    svc = isolated.services
    ingest = svc.url("ingest")
    pids = await enrol_cohort(ingest, isolated.tenant, "overload", PATIENTS, Receiver("http://127.0.0.1:9/unused"))
    await wait_scored(isolated.dsn, isolated.tenant, pids)
    url = f"{ingest}/v1/checkins/batch"
    checkins = Checkins(pids)
    headers = {**isolated.tenant.headers, "Content-Type": "application/json"}
    connector = aiohttp.TCPConnector(limit=1024)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=20)) as http:
        # 1. Capacity, closed loop.
        capacity_tally = Tally()
        end = time.monotonic() + CAPACITY_S

        async def closed_loop() -> None:
            while time.monotonic() < end:
                await _post(http, url, headers, checkins.batch(), capacity_tally)

        started = time.monotonic()
        await asyncio.gather(*(closed_loop() for _ in range(CAPACITY_CLIENTS)))
        capacity = capacity_tally.accepted_events / (time.monotonic() - started)
        assert capacity > 0, capacity_tally

        # 2. Twice that, open loop, sampling RSS once a second.
        rate = 2 * capacity / BATCH  # requests per second
        tally = Tally()
        samples: list[tuple[float, float, float]] = []
        procs = {s: svc.procs[s].pid for s in ("ingest", "scoring")} | {"broker": isolated.broker_pid}
        tasks: set[asyncio.Task[None]] = set()
        cpu0 = {name: _cpu_s(pid) for name, pid in procs.items()} | {"client": time.process_time()}
        t0 = time.monotonic()

        async def sample() -> None:
            while True:
                samples.append((time.monotonic() - t0, _rss_mib(procs["ingest"]), _rss_mib(procs["scoring"])))
                await asyncio.sleep(1)

        sampler = asyncio.create_task(sample())
        i = 0
        while (due := t0 + i / rate) < t0 + OVERLOAD_S:
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            task = asyncio.create_task(_post(http, url, headers, checkins.batch(), tally))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            i += 1
        offered_s = time.monotonic() - t0
        if tasks:
            await asyncio.wait(tasks, timeout=30)
        sampler.cancel()
        cpu1 = {name: _cpu_s(pid) for name, pid in procs.items()} | {"client": time.process_time()}
        elapsed = time.monotonic() - t0

    accepted = tally.accepted_ids | capacity_tally.accepted_ids
    logged = await logged_event_ids(isolated.bootstrap, Topics.checkins)
    scored = sum((await committed_offsets(isolated.bootstrap, "nervewatch-scoring", Topics.checkins)).values())
    third = max(1, len(samples) // 3)
    middle, last = samples[third : 2 * third], samples[-third:]
    ingest_max = max(s[1] for s in samples)
    scoring_max = max(s[2] for s in samples)
    ingest_growth = max(s[1] for s in last) - max(s[1] for s in middle)
    scoring_growth = max(s[2] for s in last) - max(s[2] for s in middle)
    shed = tally.statuses[503] + tally.statuses[429]
    slices = max(1, int(OVERLOAD_S // SLICE_S))
    accepting = Counter(min(slices - 1, int((at - t0) // SLICE_S)) for at in tally.accepted_at if at >= t0)
    row: dict[str, Any] = {
        "scenario": f"overload: 2x capacity for {OVERLOAD_S:.0f} s",
        "capacity_events_s": round(capacity),
        "offered_events_s": round(tally.sent * BATCH / offered_s),
        "accepted_events_s": round(tally.accepted_events / offered_s),
        "accepted_share_of_capacity": round(tally.accepted_events / offered_s / capacity, 2),
        "accepted_batches_per_slice": [accepting[k] for k in range(slices)],
        "requests": tally.sent,
        "http": dict(sorted(tally.statuses.items())),
        "shed_share": round(shed / max(1, tally.sent), 3),
        "timeouts": tally.timeouts,
        "conn_errors": tally.conn_errors,
        "ingest_rss_max_mib": round(ingest_max),
        "ingest_rss_growth_mib": round(ingest_growth, 1),
        "scoring_rss_max_mib": round(scoring_max),
        "scoring_rss_growth_mib": round(scoring_growth, 1),
        "rss_mib_every_10s": [(round(a), round(b)) for _, a, b in samples[::10]],
        "cpu_cores": {name: round((cpu1[name] - cpu0[name]) / elapsed, 2) for name in cpu0},
        "accepted_events": len(accepted),
        "accepted_missing_from_log": len(accepted - logged),
        "scoring_consumed": scored,
        "scoring_lag_at_end": len(logged) - scored,
    }
    REPORT.append(row)
    print(f"\n[faults] {row}")
    assert set(tally.statuses) <= {202, 429, 503}, row
    assert tally.timeouts == 0 and tally.conn_errors == 0, row
    assert tally.missing_retry_after == 0, row
    assert shed > 0, f"nothing was shed: the load did not overload ingest {row}"
    assert tally.sent * BATCH / offered_s >= 1.5 * capacity, f"the client could not offer 2x capacity {row}"
    assert all(accepting[k] > 0 for k in range(slices)), f"ingest stopped accepting under overload {row}"
    assert ingest_max < RSS_BOUND_MIB and scoring_max < RSS_BOUND_MIB, row
    assert ingest_growth < RSS_GROWTH_MIB and scoring_growth < RSS_GROWTH_MIB, row
    assert accepted <= logged, row
    assert len(logged) - scored > len(logged) // 2, f"scoring was never under backlog {row}"
