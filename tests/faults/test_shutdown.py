"""SIGTERM of scoring under load: it stops within its deadline and commits exactly what it stored.

After a graceful stop the group's committed offsets must cover every event scoring stored and
nothing it did not: read the log up to the committed offsets while scoring is down and compare
with `scoring.checkins` for the cohort. A restart then finishes the rest (`verify`).
"""

from __future__ import annotations

import asyncio
import time

import asyncpg
import pytest

from schemas.events import Topics
from tests.faults.conftest import FAULT_SETTINGS, FaultEnv
from tests.faults.load import committed_offsets, logged_event_ids, verify
from tests.faults.test_crashes import _cohort

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


async def test_sigterm_scoring_under_load_commits_what_it_stored(env: FaultEnv) -> None:
    load = await _cohort(env, "sigterm")
    load.red_flag(load.patients[:5])
    await asyncio.sleep(3)
    started = time.monotonic()
    code = await asyncio.to_thread(env.services.stop, "scoring")  # SIGTERM
    took = time.monotonic() - started
    deadline = float(FAULT_SETTINGS["NERVEWATCH_SHUTDOWN_TIMEOUT_S"])
    assert code == 0, f"scoring exited with {code}"
    assert took < deadline, f"graceful stop took {took:.1f} s (deadline {deadline} s)"

    committed = await committed_offsets(env.stack.bootstrap, "nervewatch-scoring", Topics.checkins)
    below = await logged_event_ids(env.stack.bootstrap, Topics.checkins, committed) & load.offered
    conn = await asyncpg.connect(env.dsn)
    try:
        stored = {
            str(r["event_id"])
            for r in await conn.fetch(
                "SELECT event_id FROM scoring.checkins WHERE tenant_id = $1 AND patient_id = ANY($2::text[])",
                env.tenant.tenant_id,
                load.patients,
            )
        }
    finally:
        await conn.close()
    assert below, "nothing was committed before the stop"
    assert stored == below, (
        f"stored but not committed {len(stored - below)}; committed but not stored {len(below - stored)}"
    )

    env.services.start("scoring")
    await asyncio.to_thread(env.services.wait_ready, ("scoring",))
    await asyncio.sleep(2)
    await load.stop()
    await verify(
        "SIGTERM scoring under load",
        env.dsn,
        load,
        env.receiver,
        note=f"graceful stop {took:.2f} s (deadline {deadline:.0f} s); {len(stored)} stored = committed at stop",
    )
