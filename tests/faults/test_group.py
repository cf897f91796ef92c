"""Two scoring instances in one consumer group; one is SIGKILLed while the group rebalances.

A second instance joins the group (the coordinator starts a rebalance and the first instance must
rejoin); right after the newcomer is ready the first instance is killed, so the rebalance in
progress loses a member holding uncommitted batches. The survivor must end up with every
partition (after the dead member's session times out) and re-process what was not committed:
every acknowledged event stored once, in per-patient order, one red-flag alert per patient.
"""

from __future__ import annotations

import asyncio
import signal
import time

import pytest

from tests.faults.conftest import FaultEnv
from tests.faults.load import verify
from tests.faults.test_crashes import _cohort
from tooling.devstack import free_port
from tooling.supervisor import wait_ready

pytestmark = [pytest.mark.integration, pytest.mark.timeout(150)]


async def test_two_scoring_instances_one_killed_during_rebalance(env: FaultEnv) -> None:
    load = await _cohort(env, "rebalance")
    await asyncio.sleep(2)
    port = free_port()
    env.start_instance("scoring-2", "scoring", port)
    await asyncio.to_thread(wait_ready, [f"http://127.0.0.1:{port}/readyz"], 60)
    load.red_flag(load.patients[:5])
    await asyncio.sleep(0.5)  # the newcomer has joined; the first instance is being asked to rejoin
    env.services.stop("scoring", signal.SIGKILL)
    killed_at = time.monotonic()
    await asyncio.sleep(15)  # the dead member's 10 s session expires; the survivor takes every partition
    await load.stop()
    after_kill = len(load.acked_ids(after=killed_at))
    await verify(
        "two scoring instances, one SIGKILLed during a rebalance",
        env.dsn,
        load,
        env.receiver,
        note=f"acked after the kill {after_kill}",
    )
