"""SIGKILL of each service under a steady load, then restart: nothing acknowledged is lost.

Load: 30 enrolled patients, about 60 check-ins/s, five of them report a red flag before the
fault. After recovery `verify` checks storage, order, alerts and notifications.
"""

from __future__ import annotations

import asyncio
import signal
import time

import pytest

from tests.faults.conftest import FaultEnv
from tests.faults.load import Load, enrol_cohort, verify, wait_scored
from tests.support import poll

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


async def _cohort(env: FaultEnv, prefix: str, n: int = 30) -> Load:
    pids = await enrol_cohort(env.services.url("ingest"), env.tenant, prefix, n, env.receiver)
    await wait_scored(env.dsn, env.tenant, pids)
    load = Load(env.services.url("ingest"), env.tenant, pids, rate=60)
    await load.start()
    return load


async def _stored(env: FaultEnv, load: Load) -> int:
    import asyncpg

    conn = await asyncpg.connect(env.dsn)
    try:
        return int(
            await conn.fetchval(
                "SELECT count(*) FROM scoring.checkins WHERE tenant_id = $1 AND patient_id = ANY($2::text[])",
                env.tenant.tenant_id,
                load.patients,
            )
        )
    finally:
        await conn.close()


async def test_sigkill_scoring_mid_batch(env: FaultEnv) -> None:
    load = await _cohort(env, "kill-scoring")
    await asyncio.sleep(2)
    load.red_flag(load.patients[:5])
    await poll(lambda: _positive(_stored(env, load)), timeout_s=30)
    await asyncio.sleep(1.5)  # scoring is working through batches of the steady stream
    env.services.stop("scoring", signal.SIGKILL)
    await asyncio.sleep(1.5)  # events keep arriving while scoring is down
    env.services.start("scoring")
    await asyncio.to_thread(env.services.wait_ready, ("scoring",))
    await asyncio.sleep(3)
    await load.stop()
    await verify("SIGKILL scoring mid-batch", env.dsn, load, env.receiver)


async def test_sigkill_alerts_with_deliveries_pending(env: FaultEnv) -> None:
    env.receiver.status = 500  # the care team's endpoint fails: deliveries pile up as retrying
    load = await _cohort(env, "kill-alerts")
    before = len(env.receiver.requests)
    load.red_flag(load.patients[:5])
    await poll(lambda: _true(len({r["json"]["id"] for r in env.receiver.requests[before:]}) >= 5), timeout_s=40)
    env.services.stop("alerts", signal.SIGKILL)
    env.receiver.status = 200
    await asyncio.sleep(1)
    env.services.start("alerts")
    await asyncio.to_thread(env.services.wait_ready, ("alerts",))
    await asyncio.sleep(2)
    await load.stop()
    await verify("SIGKILL alerts, deliveries pending", env.dsn, load, env.receiver)


async def test_sigkill_ingest_with_requests_in_flight(env: FaultEnv) -> None:
    load = await _cohort(env, "kill-ingest")
    load.red_flag(load.patients[:5])
    await asyncio.sleep(3)
    acked_before = len(load.acked)
    env.services.stop("ingest", signal.SIGKILL)  # requests in flight get a connection error
    killed_at = time.monotonic()
    await asyncio.sleep(1)
    env.services.start("ingest")
    await asyncio.to_thread(env.services.wait_ready, ("ingest",))
    await asyncio.sleep(3)
    await load.stop()
    assert load.conn_errors > 0 and any(a.at > killed_at for a in load.acked.values())
    await verify(
        "SIGKILL ingest, requests in flight",
        env.dsn,
        load,
        env.receiver,
        note=f"acked before kill {acked_before}; clients retried {load.conn_errors} connection errors",
    )


async def _positive(value: object) -> bool:
    return bool(await value)  # type: ignore[misc]


async def _true(value: bool) -> bool:
    return value
