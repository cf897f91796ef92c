"""The alerts consumer shell: care teams from the patients topic, decisions from trajectories
and from the billing topic (data days at risk).

`handle(batch)` runs one transaction per batch: patient care teams are upserted, and for each
trajectory or billing event (in log order) the patient's active alerts are locked, the pure rules
decide (`rules.evaluate`, `rules.billing_risk`), and each decision is written with its audit
entry, notifications and lifecycle event (queued in the outbox). After the commit the dispatcher
is woken; the consumer's commit path then drains the outbox and commits offsets
(`nervewatch.kafka.consumer`). Billing events do not count as patient data (no last-seen update).
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime

import asyncpg
from aiokafka import ConsumerRecord
from pydantic import TypeAdapter

from nervewatch import metrics
from nervewatch.kafka import Decoded, decode_event
from nervewatch.outbox import Outbox
from schemas.alerts import AlertKind
from schemas.events import DataDaysAtRisk, DataDaysRiskEnded, PatientUpserted, TrajectoryUpdated
from services.alerts import rules
from services.alerts.apply import EffectWriter
from services.alerts.book import PatientBook, apply_decisions
from services.alerts.model import AlertState, SnoozeState, Suppressed
from services.alerts.policy import PolicyCache
from services.alerts.store import (
    ALERT_COLUMNS,
    ledger_from_json,
    members_from_json,
    new_alert_id,
    state_from_row,
)

AlertInput = PatientUpserted | TrajectoryUpdated | DataDaysAtRisk | DataDaysRiskEnded
BillingInput = DataDaysAtRisk | DataDaysRiskEnded
Key = tuple[str, str]
_adapter: TypeAdapter[AlertInput] = TypeAdapter(AlertInput)


def decode(record: ConsumerRecord) -> AlertInput:
    """Decode a patient, trajectory or billing event; raises DecodeError (dead-letter) for anything unusable."""
    return decode_event(record, _adapter)


class AlertsProcessor:
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
        self.wake_dispatcher = wake_dispatcher
        self.clock = clock or (lambda: datetime.now(UTC))

    async def handle(self, batch: list[Decoded[AlertInput]]) -> None:
        now = self.clock()
        notified = 0
        async with self.pool.acquire() as conn, conn.transaction():
            writer = EffectWriter(self.outbox)
            pending: list[TrajectoryUpdated | BillingInput] = []
            for item in batch:
                ev = item.value
                if isinstance(ev, PatientUpserted):
                    n, _ = await self._evaluate_all(conn, writer, pending, now)
                    notified += n
                    pending = []
                    await self._upsert_patient(conn, ev)
                else:
                    pending.append(ev)
            n, _ = await self._evaluate_all(conn, writer, pending, now)
            notified += n
        if notified:
            self.wake_dispatcher.set()

    async def _upsert_patient(self, conn: asyncpg.Connection, ev: PatientUpserted) -> None:
        p = ev.patient
        await conn.execute(
            """INSERT INTO alerts.patients (tenant_id, patient_id, care_team, timezone, version_at)
               VALUES ($1, $2, $3, $4, $5)
               ON CONFLICT (tenant_id, patient_id) DO UPDATE
               SET care_team = EXCLUDED.care_team, timezone = EXCLUDED.timezone, version_at = EXCLUDED.version_at
               WHERE alerts.patients.version_at <= EXCLUDED.version_at""",
            ev.tenant_id,
            p.patient_id,
            [m.model_dump(mode="json") for m in p.care_team],
            p.timezone,
            p.updated_at,
        )

    async def _evaluate_all(
        self,
        conn: asyncpg.Connection,
        w: EffectWriter,
        pending: list[TrajectoryUpdated | BillingInput],
        now: datetime,
    ) -> tuple[int, int]:
        """Evaluate the run's billing events, then its trajectory events, each in log order against
        the patients' books, loaded (and their alerts locked) once per kind of event; each event
        sees the effects of the ones before it. Billing events decide only `data_days_at_risk`,
        which trajectory events never touch, so the two kinds commute. Effects are written in bulk
        (one flush each); returns (notifications, lifecycle events)."""
        events = [e for e in pending if isinstance(e, TrajectoryUpdated)]
        billing = [e for e in pending if not isinstance(e, TrajectoryUpdated)]
        n, c = await self._evaluate_billing(conn, w, billing, now)
        if not events:
            return n, c
        last_checkin: dict[Key, datetime | None] = {}
        for ev in events:
            key = (ev.tenant_id, ev.trajectory.patient_id)
            seen = last_checkin.get(key)
            last_checkin[key] = max((t for t in (seen, ev.last_checkin_at) if t is not None), default=None)
        books = await load_books(conn, list(last_checkin), now, last_checkin)
        for ev in events:
            key = (ev.tenant_id, ev.trajectory.patient_id)
            book = books[key]
            policy = await self.policies.get(conn, ev.tenant_id)
            decisions = rules.evaluate(
                ev,
                book.active(),
                book.snoozes,
                policy,
                now,
                resolved_through=book.resolved_through,
                red_flags_seen=book.red_flags_seen,
            )
            for d in decisions:
                if isinstance(d, Suppressed):
                    metrics.ALERTS_SUPPRESSED.labels(d.kind.value, d.why).inc()
            if not decisions or all(isinstance(d, Suppressed) for d in decisions):
                continue
            books[key], effects = apply_decisions(book, decisions, policy, now, lambda: new_alert_id(now))
            w.add(key[0], key[1], effects, ev.trigger)
        n2, c2 = await w.flush(conn, now)
        return n + n2, c + c2

    async def _evaluate_billing(
        self, conn: asyncpg.Connection, w: EffectWriter, events: list[BillingInput], now: datetime
    ) -> tuple[int, int]:
        """Apply billing events in log order (`rules.billing_risk`) and flush their effects."""
        if not events:
            return 0, 0
        keys = list(dict.fromkeys((ev.tenant_id, ev.patient_id) for ev in events))
        books = await load_books(conn, keys, now)
        for ev in events:
            key = (ev.tenant_id, ev.patient_id)
            book = books[key]
            policy = await self.policies.get(conn, ev.tenant_id)
            decision = rules.billing_risk(
                ev,
                book.of_kind(AlertKind.data_days_at_risk),
                book.snoozes,
                now,
                resolved_through=book.resolved_through.get(AlertKind.data_days_at_risk),
            )
            if isinstance(decision, Suppressed):
                metrics.ALERTS_SUPPRESSED.labels(decision.kind.value, decision.why).inc()
                continue
            if decision is None:
                continue
            books[key], effects = apply_decisions(book, [decision], policy, now, lambda: new_alert_id(now))
            w.add(key[0], key[1], effects)
        return await w.flush(conn, now)


async def load_books(
    conn: asyncpg.Connection,
    keys: list[Key],
    now: datetime,
    last_checkin: dict[Key, datetime | None] | None = None,
) -> dict[Key, PatientBook]:
    """The books of `keys` (unknown patients get an empty row in alerts.patients), with their
    unresolved alerts locked `FOR UPDATE` until the caller's transaction ends. When
    `last_checkin` is given, each patient's newest check-in time and last-seen time are updated."""
    cols = ([k[0] for k in keys], [k[1] for k in keys])
    seen = last_checkin or {}
    patients = {
        (r["tenant_id"], r["patient_id"]): r
        for r in await conn.fetch(
            """INSERT INTO alerts.patients AS p (tenant_id, patient_id, care_team, timezone, version_at,
                                                 last_checkin_at, last_seen_at)
               SELECT t, pid, '[]', 'UTC', '-infinity', lc, $4
               FROM unnest($1::text[], $2::text[], $3::timestamptz[]) AS k(t, pid, lc)
               ON CONFLICT (tenant_id, patient_id) DO UPDATE
               SET last_checkin_at = greatest(p.last_checkin_at, EXCLUDED.last_checkin_at),
                   last_seen_at = CASE WHEN $5 THEN $4 ELSE p.last_seen_at END
               RETURNING tenant_id, patient_id, care_team, red_flags_seen""",
            *cols,
            [seen.get(k) for k in keys],
            now,
            last_checkin is not None,
        )
    }
    active: dict[Key, dict[str, AlertState]] = defaultdict(dict)
    for r in await conn.fetch(
        f"""SELECT {ALERT_COLUMNS} FROM alerts.alerts a
            JOIN unnest($1::text[], $2::text[]) AS k(t, pid) ON a.tenant_id = k.t AND a.patient_id = k.pid
            WHERE a.status <> 'resolved' ORDER BY a.id FOR UPDATE OF a""",
        *cols,
    ):
        active[(r["tenant_id"], r["patient_id"])][r["id"]] = state_from_row(r)
    snoozes: dict[Key, list[SnoozeState]] = defaultdict(list)
    for r in await conn.fetch(
        """SELECT s.id, s.tenant_id, s.patient_id, s.kind, s.until FROM alerts.snoozes s
           JOIN unnest($1::text[], $2::text[]) AS k(t, pid) ON s.tenant_id = k.t AND s.patient_id = k.pid
           WHERE s.until > $3 AND s.ended_at IS NULL""",
        *cols,
        now,
    ):
        snoozes[(r["tenant_id"], r["patient_id"])].append(
            SnoozeState(kind=AlertKind(r["kind"]), until=r["until"], id=r["id"])
        )
    handled: dict[Key, dict[AlertKind, datetime]] = defaultdict(dict)
    for r in await conn.fetch(
        """SELECT a.tenant_id, a.patient_id, a.kind, max(a.event_time) AS through FROM alerts.alerts a
           JOIN unnest($1::text[], $2::text[]) AS k(t, pid) ON a.tenant_id = k.t AND a.patient_id = k.pid
           WHERE a.status = 'resolved' GROUP BY a.tenant_id, a.patient_id, a.kind""",
        *cols,
    ):
        handled[(r["tenant_id"], r["patient_id"])][AlertKind(r["kind"])] = r["through"]
    return {
        k: PatientBook(
            tenant_id=k[0],
            patient_id=k[1],
            alerts=active[k],
            resolved_through=handled[k],
            red_flags_seen=ledger_from_json(patients[k]["red_flags_seen"]),
            snoozes=tuple(sorted(snoozes[k], key=lambda s: (s.kind.value, s.until, s.id))),
            members=tuple(members_from_json(patients[k]["care_team"])),
        )
        for k in keys
    }
