"""Billing figures from the database: read scoring's tables, run the pure engine, record what must
be recorded (the frozen anchor, new versions of closed periods), all in the caller's transaction.

Concurrent readers may compute the same new version at once; the second insert finds the row and
that patient is computed again from what is now stored (at most `MAX_ATTEMPTS` rounds, then a
503 problem: the read is refused rather than answered with figures that were not recorded).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

import asyncpg

from nervewatch import metrics
from nervewatch.problems import ProblemError
from services.scoring.billing import engine, store
from services.scoring.billing.model import BillingSettings, PeriodsResult
from services.scoring.billing.store import PatientInfo

MAX_ATTEMPTS = 3


async def periods_of(
    conn: asyncpg.Connection,
    tenant_id: str,
    patients: Mapping[str, PatientInfo],
    settings: BillingSettings,
    now: datetime,
) -> dict[str, PeriodsResult]:
    """The device-supply periods of `patients` at `now`, their closed figures recorded.

    Must run inside a transaction (the records of one round commit together)."""
    pending = set(patients)
    results: dict[str, PeriodsResult] = {}
    whole_tenant = len(patients) > 50  # one tenant-wide read beats a long ANY() list
    for _ in range(MAX_ATTEMPTS):
        days = await store.data_days(conn, tenant_id, None if whole_tenant else pending, settings.data_days_from)
        anchors, stored = await store.recorded(conn, tenant_id, pending)
        computed = {
            pid: engine.compute_periods(
                days.get(pid, ()),
                settings=settings,
                now=now,
                tz=patients[pid].tz,
                anchor=anchors.get(pid),
                stored=stored.get(pid),
                enrolled_on=patients[pid].enrolled_on,
            )
            for pid in pending
        }
        lost = await store.persist(conn, tenant_id, computed)
        for pid, result in computed.items():
            if pid not in lost:
                results[pid] = result
                for v in result.new_versions:
                    metrics.BILLING_PERIOD_VERSIONS.labels(v.reason.value).inc()
        if not lost:
            return results
        metrics.BILLING_RECOMPUTES.inc(len(lost))
        pending = lost
        whole_tenant = False
    raise ProblemError(
        503,
        "Busy",
        "billing figures are being recorded concurrently; retry",
        slug="unavailable",
        headers={"Retry-After": "1"},
    )
