"""The data-days-at-risk sweep of the scoring service (imperative shell of `risk.py`).

Every `billing_risk_interval_s` seconds, per tenant in one transaction: read the tenant's billing
settings, enrolled patients, data days and frozen anchors; compute each patient's periods with
the pure engine (nothing is persisted: closed-period versions are still recorded by reads, as
docs/billing.md says); let `risk.plan` decide; record each raise or end in `scoring.billing_risk`
and queue its event (`nervewatch.billing.v1`) in scoring's outbox in the same transaction. An
insert or update that finds the row already written (a concurrent sweep of another scoring
process) queues nothing, so each period is raised, and its raise ended, exactly once. After the
commit the outbox is drained (a broker error leaves the rows to the outbox relay).

The clock is injected; `today` is each patient's local date at `now`. Logs carry counts only.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg

from nervewatch import metrics
from nervewatch.outbox import Outbox
from schemas.events import DataDaysAtRisk, DataDaysRiskEnded, Topics, event_key
from services.scoring.billing import engine, store
from services.scoring.billing.model import BillingSettings
from services.scoring.billing.risk import End, RiskAction, plan

log = logging.getLogger(__name__)
_NAMESPACE = uuid.UUID("6f1d2a8e-3c1b-4f0e-9b7a-5d2c8e4f1a90")


def _event_id(tenant_id: str, patient_id: str, period: str, what: str) -> uuid.UUID:
    """Deterministic event ids: a redelivered or republished event keeps its id."""
    return uuid.uuid5(_NAMESPACE, f"{tenant_id}\x1f{patient_id}\x1f{period}\x1f{what}")


@dataclass(frozen=True, slots=True)
class SweepResult:
    raised: int = 0
    ended: int = 0


class RiskSweeper:
    def __init__(self, pool: asyncpg.Pool, outbox: Outbox, clock: Callable[[], datetime] | None = None) -> None:
        self.pool = pool
        self.outbox = outbox
        self.clock = clock or (lambda: datetime.now(UTC))

    async def run(self, interval_s: float) -> None:
        """Sweep every `interval_s` seconds (the first after one interval) until cancelled; a failed
        sweep is logged and retried next time."""
        while True:
            await asyncio.sleep(interval_s)
            try:
                await self.sweep_once()
            except Exception as exc:
                log.warning("billing risk sweep failed", extra={"error": type(exc).__name__})

    async def sweep_once(self, tenants: list[str] | None = None) -> SweepResult:
        """One pass over `tenants` (default: every tenant with enrolled patients); returns what it
        queued. Each tenant commits on its own; the outbox is drained after the last commit."""
        now = self.clock()
        started = time.perf_counter()
        raised = ended = 0
        if tenants is None:
            async with self.pool.acquire() as conn:
                tenants = await store.billing_tenants(conn)
        for tenant_id in tenants:
            async with self.pool.acquire() as conn, conn.transaction():
                r, e = await self._tenant(conn, tenant_id, now)
            raised, ended = raised + r, ended + e
        metrics.BILLING_COMPUTE_LATENCY.labels("at_risk_sweep").observe(time.perf_counter() - started)
        if raised or ended:
            log.info("billing risk sweep", extra={"raised": raised, "ended": ended})
            await self.outbox.drain()
        return SweepResult(raised, ended)

    async def _tenant(self, conn: asyncpg.Connection, tenant_id: str, now: datetime) -> tuple[int, int]:
        settings = await store.load_settings(conn, tenant_id)
        patients = await store.patients(conn, tenant_id)
        if not patients:
            return 0, 0
        days = await store.data_days(conn, tenant_id, None, settings.data_days_from)
        frozen = await store.anchors(conn, tenant_id)
        # Raises of periods that ended more than two days ago (any time zone) matter no more.
        unended, starts = await store.risks(conn, tenant_id, now.date() - timedelta(days=2))
        records: list[tuple[str, bytes, bytes]] = []
        raised = ended = 0
        for pid, info in sorted(patients.items()):
            today = engine.local_date(now, info.tz)
            figures = engine.compute_periods(
                days.get(pid, ()),
                settings=settings,
                now=now,
                tz=info.tz,
                anchor=frozen.get(pid),
                enrolled_on=info.enrolled_on,
            )
            actions = plan(figures, today, settings, unended.get(pid, ()), frozenset(starts.get(pid, ())))
            for action in actions:
                done = await _record(conn, tenant_id, pid, action, settings, now)
                if done is None:
                    continue
                label, event = done
                records.append((Topics.billing, event_key(tenant_id, pid), event.model_dump_json().encode()))
                metrics.BILLING_AT_RISK.labels(label).inc()
                if isinstance(action, End):
                    ended += 1
                else:
                    raised += 1
        await self.outbox.add(conn, records)
        return raised, ended


async def _record(
    conn: asyncpg.Connection,
    tenant_id: str,
    pid: str,
    action: RiskAction,
    settings: BillingSettings,
    now: datetime,
) -> tuple[str, DataDaysAtRisk | DataDaysRiskEnded] | None:
    """Write `action` (a raise or its end) in `scoring.billing_risk`; its `BILLING_AT_RISK` label
    (`raised` or the end's reason) and event, or None when the row was already written (nothing
    to queue)."""
    if isinstance(action, End):
        r = action.raised
        if not await store.end_raise(conn, tenant_id, pid, r.period_start, action.reason.value, now):
            return None
        return action.reason.value, DataDaysRiskEnded(
            tenant_id=tenant_id,
            event_id=_event_id(tenant_id, pid, r.period_start.isoformat(), "ended"),
            patient_id=pid,
            period_start=r.period_start,
            period_end=r.period_end,
            raised_at=r.raised_at,
            reason=action.reason.value,
            ended_at=now,
        )
    risk = action.risk
    if not await store.insert_raise(conn, tenant_id, pid, risk, now):
        return None
    return "raised", DataDaysAtRisk(
        tenant_id=tenant_id,
        event_id=_event_id(tenant_id, pid, risk.period_start.isoformat(), "raised"),
        patient_id=pid,
        period_start=risk.period_start,
        period_end=risk.period_end,
        data_days=risk.data_days,
        data_days_possible=risk.data_days_possible,
        needed=risk.needed,
        lead_days=settings.at_risk_lead_days,
        raised_at=now,
    )
