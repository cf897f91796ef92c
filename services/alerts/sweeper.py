"""Timer sweep in processing time: escalations, reminders and disengagement.

Each sweep locks the open alerts it looks at (`FOR UPDATE SKIP LOCKED`, so concurrent alerts
processes share the work), lets the pure timer rules decide, and applies the decisions in the
same transaction. Notifications are queued in the outbox and the dispatcher is woken.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import asyncpg

from nervewatch import metrics
from nervewatch.outbox import Outbox
from schemas.alerts import AlertKind
from services.alerts import apply, timers
from services.alerts.model import Escalate, Member, OpenAlert, Remind, ResolveAlert, SnoozeState
from services.alerts.policy import PolicyCache
from services.alerts.store import ALERT_COLUMNS, AlertWriter, members_from_json, state_from_row

log = logging.getLogger(__name__)
SWEEP_LIMIT = 1000
MIN_SILENCE = timedelta(days=1)


class Sweeper:
    def __init__(
        self,
        pool: asyncpg.Pool,
        outbox: Outbox,
        policies: PolicyCache,
        wake_dispatcher: asyncio.Event,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.pool = pool
        self.outbox = outbox
        self.policies = policies
        self.wake = wake_dispatcher
        self.clock = clock or (lambda: datetime.now(UTC))

    async def run(self, interval_s: float) -> None:
        while True:
            try:
                await self.sweep_once()
            except Exception as exc:
                log.warning("sweep failed", extra={"error": type(exc).__name__})
            await asyncio.sleep(interval_s)

    async def sweep_once(self) -> int:
        """One pass; returns the number of decisions applied."""
        now = self.clock()
        applied = 0
        async with self.pool.acquire() as conn, conn.transaction():
            w = AlertWriter(conn, self.outbox)
            applied += await self._escalations(conn, w, now)
            applied += await self._disengagement(conn, w, now)
            changed = bool(w.changed)
        if applied:
            self.wake.set()
        if changed:
            await self.outbox.drain()
        return applied

    async def _members(self, conn: asyncpg.Connection, tenant: str, pid: str) -> list[Member]:
        team = await conn.fetchval(
            "SELECT care_team FROM alerts.patients WHERE tenant_id = $1 AND patient_id = $2", tenant, pid
        )
        return members_from_json(team or [])

    async def _escalations(self, conn: asyncpg.Connection, w: AlertWriter, now: datetime) -> int:
        rows = await conn.fetch(
            f"""SELECT {ALERT_COLUMNS} FROM alerts.alerts
                WHERE status = 'open' AND NOT retrospective ORDER BY opened_at LIMIT $1 FOR UPDATE SKIP LOCKED""",
            SWEEP_LIMIT,
        )
        by_tenant: dict[str, list[asyncpg.Record]] = defaultdict(list)
        for r in rows:
            by_tenant[r["tenant_id"]].append(r)
        applied = 0
        for tenant, tenant_rows in by_tenant.items():
            policy = await self.policies.get(conn, tenant)
            states = {r["id"]: state_from_row(r) for r in tenant_rows}
            for d in timers.sweep(list(states.values()), policy, now):
                alert = states[d.alert_id]
                members = await self._members(conn, tenant, alert.patient_id)
                if isinstance(d, Escalate):
                    await conn.execute(
                        "UPDATE alerts.alerts SET escalation_level = $2, updated_at = $3 WHERE id = $1",
                        d.alert_id,
                        d.level,
                        now,
                    )
                    recipients = timers.escalation_recipients(d.roles, members)
                    await w.audit(
                        d.alert_id,
                        "system",
                        "escalated" if recipients else "escalation_unrouted",
                        {"level": d.level, "roles": [r.value for r in d.roles], "recipients": len(recipients)},
                    )
                    await apply.page(w, tenant, d.alert_id, alert.severity, recipients, "escalation", policy, now)
                    metrics.ESCALATIONS.labels(alert.severity.value).inc()
                    await w.publish(tenant, d.alert_id, "escalated", "system")
                elif isinstance(d, Remind):
                    recipients = timers.reminder_recipients(alert, members, policy)
                    await apply.page(w, tenant, d.alert_id, alert.severity, recipients, "reminder", policy, now)
                    await w.audit(d.alert_id, "system", "reminded", {"recipients": len(recipients)})
                applied += 1
        return applied

    async def _disengagement(self, conn: asyncpg.Connection, w: AlertWriter, now: datetime) -> int:
        rows = await conn.fetch(
            """SELECT p.tenant_id, p.patient_id, p.last_checkin_at, p.last_seen_at, p.care_team,
                      (SELECT max(event_time) FROM alerts.alerts a WHERE a.tenant_id = p.tenant_id
                          AND a.patient_id = p.patient_id AND a.kind = 'disengagement' AND a.status = 'resolved')
                          AS resolved_through,
                      EXISTS (SELECT 1 FROM alerts.alerts a WHERE a.tenant_id = p.tenant_id
                          AND a.patient_id = p.patient_id AND a.kind = 'red_flag' AND a.status <> 'resolved'
                          AND NOT a.retrospective) AS red_flag_active
               FROM alerts.patients p
               WHERE p.last_checkin_at < $1
                  OR EXISTS (SELECT 1 FROM alerts.alerts a WHERE a.tenant_id = p.tenant_id
                             AND a.patient_id = p.patient_id AND a.kind = 'disengagement' AND a.status <> 'resolved')
               LIMIT $2""",
            now - MIN_SILENCE,
            SWEEP_LIMIT,
        )
        applied = 0
        for r in rows:
            tenant, pid = r["tenant_id"], r["patient_id"]
            policy = await self.policies.get(conn, tenant)
            active_row = await conn.fetchrow(
                f"""SELECT {ALERT_COLUMNS} FROM alerts.alerts WHERE tenant_id = $1 AND patient_id = $2
                    AND kind = 'disengagement' AND status <> 'resolved' FOR UPDATE SKIP LOCKED""",
                tenant,
                pid,
            )
            snoozes = [
                SnoozeState(kind=AlertKind(s["kind"]), until=s["until"])
                for s in await conn.fetch(
                    """SELECT kind, until FROM alerts.snoozes WHERE tenant_id = $1 AND patient_id = $2
                       AND kind = 'disengagement' AND until > $3""",
                    tenant,
                    pid,
                    now,
                )
            ]
            decision = timers.disengagement(
                pid,
                r["last_checkin_at"],
                state_from_row(active_row) if active_row else None,
                policy,
                now,
                snoozes=snoozes,
                red_flag_active=r["red_flag_active"],
                resolved_through=r["resolved_through"],
                last_seen_at=r["last_seen_at"],
            )
            if isinstance(decision, OpenAlert):
                members = members_from_json(r["care_team"] or [])
                await apply.open_alert(w, tenant, pid, decision, members, policy, now, None)
                applied += 1
            elif isinstance(decision, ResolveAlert):
                await apply.resolve_alert(w, decision, now)
                applied += 1
        return applied
