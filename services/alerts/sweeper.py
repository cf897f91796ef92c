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

from nervewatch.outbox import Outbox
from schemas.alerts import AlertKind
from services.alerts import rules, timers
from services.alerts.apply import EffectWriter
from services.alerts.book import PatientBook, apply_decisions, apply_timers
from services.alerts.model import AlertState, Member, SnoozeState
from services.alerts.policy import PolicyCache
from services.alerts.store import ALERT_COLUMNS, members_from_json, new_alert_id, state_from_row

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
            w = EffectWriter(self.outbox)
            applied += await self._escalations(conn, w, now)
            applied += await self._disengagement(conn, w, now)
            _, changed = await w.flush(conn, now)
        if applied:
            self.wake.set()
        if changed:
            await self.outbox.drain()
        return applied

    async def _escalations(self, conn: asyncpg.Connection, w: EffectWriter, now: datetime) -> int:
        rows = await conn.fetch(
            f"""SELECT {ALERT_COLUMNS} FROM alerts.alerts
                WHERE status = 'open' AND NOT retrospective AND kind <> ALL($2::text[])
                ORDER BY opened_at LIMIT $1 FOR UPDATE SKIP LOCKED""",
            SWEEP_LIMIT,
            sorted(k.value for k in rules.NEVER_ESCALATED),
        )
        by_patient: dict[tuple[str, str], dict[str, AlertState]] = defaultdict(dict)
        for r in rows:
            by_patient[(r["tenant_id"], r["patient_id"])][r["id"]] = state_from_row(r)
        teams = await _care_teams(conn, list(by_patient))
        applied = 0
        for (tenant, pid), alerts in by_patient.items():
            policy = await self.policies.get(conn, tenant)
            decisions = timers.sweep(list(alerts.values()), policy, now)
            if not decisions:
                continue
            book = PatientBook(tenant, pid, alerts=alerts, members=tuple(teams.get((tenant, pid), [])))
            _, effects = apply_timers(book, decisions, policy, now)
            w.add(tenant, pid, effects)
            applied += len(decisions)
        return applied

    async def _disengagement(self, conn: asyncpg.Connection, w: EffectWriter, now: datetime) -> int:
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
                SnoozeState(kind=AlertKind(s["kind"]), until=s["until"], id=s["id"])
                for s in await conn.fetch(
                    """SELECT id, kind, until FROM alerts.snoozes WHERE tenant_id = $1 AND patient_id = $2
                       AND kind = 'disengagement' AND until > $3 AND ended_at IS NULL""",
                    tenant,
                    pid,
                    now,
                )
            ]
            active = state_from_row(active_row) if active_row else None
            decision = timers.disengagement(
                pid,
                r["last_checkin_at"],
                active,
                policy,
                now,
                snoozes=snoozes,
                red_flag_active=r["red_flag_active"],
                resolved_through=r["resolved_through"],
                last_seen_at=r["last_seen_at"],
            )
            if decision is None:
                continue
            book = PatientBook(
                tenant,
                pid,
                alerts={active.id: active} if active else {},
                members=tuple(members_from_json(r["care_team"] or [])),
            )
            _, effects = apply_decisions(book, [decision], policy, now, lambda: new_alert_id(now))
            w.add(tenant, pid, effects)
            applied += 1
        return applied


async def _care_teams(conn: asyncpg.Connection, keys: list[tuple[str, str]]) -> dict[tuple[str, str], list[Member]]:
    rows = await conn.fetch(
        """SELECT p.tenant_id, p.patient_id, p.care_team FROM alerts.patients p
           JOIN unnest($1::text[], $2::text[]) AS k(t, pid) ON p.tenant_id = k.t AND p.patient_id = k.pid""",
        [k[0] for k in keys],
        [k[1] for k in keys],
    )
    return {(r["tenant_id"], r["patient_id"]): members_from_json(r["care_team"] or []) for r in rows}
