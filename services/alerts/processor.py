"""The alerts consumer shell: care teams from the patients topic, decisions from trajectories.

`handle(batch)` runs one transaction per batch: patient care teams are upserted, and for each
trajectory event (in log order) the patient's active alerts are locked, the pure rules decide,
and each decision is written with its audit entry, notifications and lifecycle event. After the
commit the lifecycle outbox is drained and the dispatcher is woken.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import UTC, datetime

import asyncpg
from aiokafka import ConsumerRecord
from pydantic import TypeAdapter, ValidationError

from nervewatch import metrics
from nervewatch.kafka import Decoded, DecodeError
from nervewatch.outbox import Outbox
from nervewatch.problems import sanitized
from schemas.alerts import AlertKind
from schemas.events import PatientUpserted, TrajectoryUpdated
from services.alerts import apply, rules
from services.alerts.model import (
    OpenAlert,
    ResolveAlert,
    SnoozeState,
    Suppressed,
    UpdateAlert,
)
from services.alerts.policy import PolicyCache
from services.alerts.store import ALERT_COLUMNS, AlertWriter, members_from_json, state_from_row

AlertInput = PatientUpserted | TrajectoryUpdated
_adapter: TypeAdapter[AlertInput] = TypeAdapter(AlertInput)


def decode(record: ConsumerRecord) -> AlertInput:
    if record.value is None:
        raise DecodeError("empty_value", "record has no value")
    try:
        head = json.loads(record.value)
    except ValueError:
        raise DecodeError("invalid_json", "value is not JSON") from None
    if not isinstance(head, dict):
        raise DecodeError("invalid_envelope", "value is not a JSON object")
    if head.get("schema_version") != 1:
        raise DecodeError("unsupported_schema_version", f"schema_version {head.get('schema_version')!r:.20}")
    try:
        return _adapter.validate_python(head)
    except ValidationError as exc:
        raise DecodeError("schema_violation", sanitized(exc)) from None


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
            writer = AlertWriter(conn, self.outbox)
            for item in batch:
                ev = item.value
                if isinstance(ev, PatientUpserted):
                    await self._upsert_patient(conn, ev)
                else:
                    notified += await self._evaluate(conn, writer, ev, now)
            changed = bool(writer.changed)
        if notified:
            self.wake_dispatcher.set()
        if changed:
            await self.outbox.drain()

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

    async def _evaluate(self, conn: asyncpg.Connection, w: AlertWriter, ev: TrajectoryUpdated, now: datetime) -> int:
        tenant, pid = ev.tenant_id, ev.trajectory.patient_id
        patient = await conn.fetchrow(
            """INSERT INTO alerts.patients (tenant_id, patient_id, care_team, timezone, version_at, last_checkin_at)
               VALUES ($1, $2, '[]', 'UTC', '-infinity', $3)
               ON CONFLICT (tenant_id, patient_id) DO UPDATE
               SET last_checkin_at = greatest(alerts.patients.last_checkin_at, EXCLUDED.last_checkin_at)
               RETURNING care_team""",
            tenant,
            pid,
            ev.last_checkin_at,
        )
        assert patient is not None
        rows = await conn.fetch(
            f"""SELECT {ALERT_COLUMNS} FROM alerts.alerts
                WHERE tenant_id = $1 AND patient_id = $2 AND status <> 'resolved' FOR UPDATE""",
            tenant,
            pid,
        )
        active = [state_from_row(r) for r in rows]
        snoozes = [
            SnoozeState(kind=r["kind"], until=r["until"])
            for r in await conn.fetch(
                "SELECT kind, until FROM alerts.snoozes WHERE tenant_id = $1 AND patient_id = $2 AND until > $3",
                tenant,
                pid,
                now,
            )
        ]
        policy = await self.policies.get(conn, tenant)
        resolved_through = {
            AlertKind(r["kind"]): r["through"]
            for r in await conn.fetch(
                """SELECT kind, max(event_time) AS through FROM alerts.alerts
                   WHERE tenant_id = $1 AND patient_id = $2 AND status = 'resolved' GROUP BY kind""",
                tenant,
                pid,
            )
        }
        decisions = rules.evaluate(ev, active, snoozes, policy, now, resolved_through=resolved_through)
        members = members_from_json(patient["care_team"])
        queued = 0
        for d in decisions:
            if isinstance(d, OpenAlert):
                queued += await apply.open_alert(w, tenant, pid, d, members, policy, now, ev.trigger)
            elif isinstance(d, UpdateAlert):
                queued += await apply.update_alert(w, tenant, d, members, policy, now)
            elif isinstance(d, ResolveAlert):
                await apply.resolve_alert(w, d, now)
            elif isinstance(d, Suppressed):
                metrics.ALERTS_SUPPRESSED.labels(d.kind.value, d.why).inc()
        return queued
