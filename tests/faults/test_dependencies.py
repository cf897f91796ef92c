"""PostgreSQL and broker restarts under load: the services recover by themselves.

PostgreSQL: consumers retry transient database errors (the partition waits), ingest answers
503/500 problems while it cannot authenticate or look up patients, then everything resumes.

Broker: the embedded broker keeps its log in memory only, so a restart loses every topic, event
and committed offset. Events acknowledged before the restart that scoring had not consumed yet
are lost *by that design* (a replicated Kafka cluster keeps them); this test asserts what the
design does guarantee: ingest answers 503 while the broker is down, recovers by itself, every
event acknowledged after recovery is scored, and nothing scored before the restart is stored twice.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.faults.conftest import FaultEnv
from tests.faults.load import verify
from tests.faults.test_crashes import _cohort

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


async def test_postgres_restart_under_load(env: FaultEnv) -> None:
    load = await _cohort(env, "pg-restart")
    load.red_flag(load.patients[:5])
    await asyncio.sleep(3)
    uri = env.stack.database_url
    await asyncio.to_thread(env.stack.stop_postgres)
    down_at = time.monotonic()
    await asyncio.sleep(3)
    await asyncio.to_thread(env.stack.start_postgres)
    assert env.stack._pg.get_uri() == uri  # same socket: clients reconnect to the same address
    up_at = time.monotonic()
    await asyncio.sleep(4)
    await load.stop()
    during = sum(1 for a in load.acked.values() if down_at <= a.at < up_at)
    non_202 = sum(n for s, n in load.statuses.items() if s != 202)
    assert set(load.statuses) <= {202, 500, 503}, load.statuses
    await asyncio.to_thread(env.services.wait_ready, timeout_s=60)
    await verify(
        "PostgreSQL restart (3 s down)",
        env.dsn,
        load,
        env.receiver,
        note=f"acked while down {during}; non-202 answers {non_202}",
    )


async def test_broker_restart_loses_only_unconsumed_events(env: FaultEnv) -> None:
    load = await _cohort(env, "broker-restart")
    await asyncio.sleep(3)
    await asyncio.to_thread(env.stack.stop_broker)
    down_at = time.monotonic()
    before = load.acked_ids(before=down_at)
    await asyncio.sleep(3)
    # While the broker is down ingest answers 503 + Retry-After, and accepts nothing.
    refused_while_down = load.statuses[503]
    assert refused_while_down > 0, load.statuses
    assert not load.acked_ids(after=down_at + 0.5)  # a 202 racing the stop may land just after it
    await asyncio.to_thread(env.stack.start_broker)
    up_at = time.monotonic()

    async def accepting() -> bool:
        return bool(load.acked_ids(after=up_at))

    from tests.support import poll

    await poll(accepting, timeout_s=60, interval_s=0.2)
    recovered_at = min(a.at for a in load.acked.values() if a.at >= up_at)
    load.red_flag(load.patients[:5])
    await asyncio.sleep(5)
    await load.stop()
    after = load.acked_ids(after=up_at)
    assert set(load.statuses) <= {202, 503}, load.statuses
    import asyncpg

    conn = await asyncpg.connect(env.dsn)
    try:
        stored_before = {
            str(r["event_id"])
            for r in await conn.fetch(
                "SELECT event_id FROM scoring.checkins WHERE tenant_id = $1 AND event_id = ANY($2::uuid[])",
                env.tenant.tenant_id,
                list(before),
            )
        }
    finally:
        await conn.close()
    await verify(
        "broker restart (memory-only broker, 3 s down)",
        env.dsn,
        load,
        env.receiver,
        must_store=after,
        lost_by_design=before - stored_before,
        note=(
            f"acked before restart {len(before)} (scored {len(stored_before)}); "
            f"503 while down {refused_while_down}; first 202 {recovered_at - up_at:.1f} s after restart"
        ),
    )
