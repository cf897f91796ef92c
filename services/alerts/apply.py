"""Persisting the effects planned by the pure core (`services.alerts.book`), in bulk.

Shared by the consumer (trajectory decisions), the sweeper (timers, disengagement) and the API
(acknowledge, resolve). Callers collect the effects of any number of patients with `add` and
write them with one `flush` inside their transaction: everything commits together or not at all.
Notifications are only queued (the dispatcher sends them); lifecycle events go to the outbox
(the caller drains it after the commit).

`flush` issues a fixed number of statements whatever the batch size: one multi-row insert and
one multi-row update of alert rows (each alert coalesced to its final state), one insert each for
audit entries, notifications and lifecycle events, one update of red-flag ledgers, one select and
one insert for the informational webhooks of acknowledged and resolved changes
(`services.alerts.lifecycle`: to the members whose webhooks were paged, in the same transaction
as the change, so that a crash neither loses nor doubles them), and one `pg_notify` per 7 kB of
changes ([tenant id, alert id, change]) for the live streams. Order: alert rows first, so every
foreign key finds its alert. An insert refused by the one-unresolved-alert-per-kind index (a
concurrent writer got there first) drops every other effect on that alert id; an update that
finds no row raises (the row was loaded under lock: a miss is a bug, never ignored).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

import asyncpg

from nervewatch import metrics
from nervewatch.outbox import Outbox
from schemas.events import AlertChanged, Topics, TriggerRef, event_key
from services.alerts import lifecycle
from services.alerts.book import Audit, Effect, Publish, QueueNotifications, RecordRedFlags, StoreAlert
from services.alerts.model import AlertState
from services.alerts.store import ALERT_COLUMNS, NOTIFY_CHANNEL, alerts_from_rows, ledger_to_json

_COLUMNS = (
    "id, tenant_id, patient_id, kind, severity, status, summary, reasons, trajectory_state, event_time, opened_at, "
    "updated_at, retrospective, acknowledged_by, acknowledged_at, resolved_at, resolution, escalation_level, "
    "last_notified_at, clear_since, paged_flags, paged_at, engine_version, profile_version"
)
_UNNEST = """unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[],
    $9::text[], $10::timestamptz[], $11::timestamptz[], $12::timestamptz[], $13::bool[], $14::text[],
    $15::timestamptz[], $16::timestamptz[], $17::text[], $18::int[], $19::timestamptz[], $20::timestamptz[],
    $21::text[], $22::timestamptz[], $23::text[], $24::text[])"""
_SELECT = (
    """SELECT id, tenant_id, patient_id, kind, severity, status, summary, reasons::jsonb AS reasons,
        trajectory_state, event_time, opened_at, updated_at, retrospective, acknowledged_by, acknowledged_at,
        resolved_at, resolution,
        escalation_level, last_notified_at, clear_since, paged_flags::text[] AS paged_flags, paged_at,
        engine_version, profile_version
    FROM """
    + _UNNEST
    + " AS u("
    + _COLUMNS
    + ")"
)
_INSERT = f"""INSERT INTO alerts.alerts ({_COLUMNS}) {_SELECT}
    ON CONFLICT (tenant_id, patient_id, kind) WHERE status <> 'resolved' DO NOTHING
    RETURNING id"""
# `engine_version` and `profile_version` are written by the insert only: what opened an alert never changes.
_UPDATE = f"""UPDATE alerts.alerts a SET opened_at = u.opened_at, severity = u.severity, status = u.status,
        summary = u.summary, reasons = u.reasons, trajectory_state = u.trajectory_state, event_time = u.event_time,
        updated_at = u.updated_at, retrospective = u.retrospective, acknowledged_by = u.acknowledged_by,
        acknowledged_at = u.acknowledged_at, resolved_at = u.resolved_at, resolution = u.resolution,
        escalation_level = u.escalation_level, last_notified_at = u.last_notified_at, clear_since = u.clear_since,
        paged_flags = u.paged_flags, paged_at = u.paged_at
    FROM ({_SELECT}) AS u
    WHERE a.id = u.id AND a.tenant_id = u.tenant_id AND a.patient_id = u.patient_id AND a.kind = u.kind
    RETURNING a.id"""
NOTIFY_PAYLOAD_BYTES = 7000  # pg_notify payloads must stay under 8000 bytes


@dataclass
class _Patient:
    tenant: str
    patient_id: str
    effects: list[Effect]
    trigger: TriggerRef | None


@dataclass
class EffectWriter:
    """Collects effects of many patients (`add`) and writes them in one go (`flush`)."""

    outbox: Outbox
    pending: list[_Patient] = field(default_factory=list)

    def add(self, tenant: str, patient_id: str, effects: Sequence[Effect], trigger: TriggerRef | None = None) -> None:
        if effects:
            self.pending.append(_Patient(tenant, patient_id, list(effects), trigger))

    async def flush(self, conn: asyncpg.Connection, now: datetime) -> tuple[int, int]:
        """Write everything added since the last flush inside the caller's transaction.

        Returns (notifications queued, lifecycle events queued): the caller wakes the dispatcher
        and drains the outbox after its commit when they are > 0."""
        pending, self.pending = self.pending, []
        if not pending:
            return 0, 0
        rows: dict[str, tuple[str, StoreAlert]] = {}
        first_new: dict[str, bool] = {}
        triggers: dict[str, TriggerRef | None] = {}
        for p in pending:
            for e in p.effects:
                if isinstance(e, StoreAlert):
                    first_new.setdefault(e.state.id, e.new)
                    rows[e.state.id] = (p.tenant, e)
                    triggers.setdefault(e.state.id, p.trigger)
        new = [(t, s.state) for i, (t, s) in rows.items() if first_new[i]]
        old = [(t, s.state) for i, (t, s) in rows.items() if not first_new[i]]
        refused: set[str] = set()
        if new:
            inserted = {r["id"] for r in await conn.fetch(_INSERT, *_columns(new))}
            refused = {a.id for _, a in new} - inserted
            for _, a in new:
                if a.id not in inserted:
                    continue
                metrics.ALERTS_OPENED.labels(a.kind.value, a.severity.value).inc()
                trigger = triggers.get(a.id)
                if trigger is not None:
                    metrics.END_TO_END_LATENCY.labels("alert_opened", "received_at").observe(
                        (now - trigger.received_at).total_seconds()
                    )
                metrics.END_TO_END_LATENCY.labels("alert_opened", "recorded_at").observe(
                    (now - a.event_time).total_seconds()
                )
        if old:
            updated = {r["id"] for r in await conn.fetch(_UPDATE, *_columns(old))}
            missing = {a.id for _, a in old} - updated
            if missing:
                raise RuntimeError(f"{len(missing)} alert(s) loaded under lock were not found for update")
        kinds = {i: s.state.kind.value for i, (_, s) in rows.items()}
        audits: list[tuple[str, str, str, dict[str, object]]] = []
        notes: list[tuple[uuid.UUID, str, str, str, str, str, str, datetime]] = []
        publishes: list[tuple[str, Publish]] = []
        ledgers: list[tuple[str, str, dict[str, object]]] = []
        for p in pending:
            for e in p.effects:
                if getattr(e, "alert_id", None) in refused:
                    continue
                if isinstance(e, Audit):
                    audits.append((e.alert_id, e.actor, e.action, dict(e.detail)))
                    _count(e, kinds)
                elif isinstance(e, QueueNotifications):
                    notes.extend(
                        (
                            uuid.uuid4(),
                            e.alert_id,
                            p.tenant,
                            r.member_id,
                            r.channel.value,
                            r.target,
                            e.reason,
                            e.not_before,
                        )
                        for r in e.recipients
                    )
                elif isinstance(e, Publish):
                    publishes.append((p.tenant, e))
                elif isinstance(e, RecordRedFlags):
                    ledgers.append((p.tenant, p.patient_id, ledger_to_json(e.ledger)))
        if audits:
            await conn.execute(
                """INSERT INTO alerts.audit (alert_id, actor, action, detail)
                   SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::jsonb[])""",
                *map(list, zip(*audits, strict=True)),
            )
        if notes:
            await conn.execute(
                """INSERT INTO alerts.notifications (delivery_id, alert_id, tenant_id, member_id, channel, target,
                                                     reason, next_attempt_at)
                   SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
                                        $7::text[], $8::timestamptz[])""",
                *map(list, zip(*notes, strict=True)),
            )
        if ledgers:
            await conn.execute(
                """UPDATE alerts.patients p SET red_flags_seen = u.ledger
                   FROM unnest($1::text[], $2::text[], $3::jsonb[]) AS u(t, pid, ledger)
                   WHERE p.tenant_id = u.t AND p.patient_id = u.pid""",
                *map(list, zip(*ledgers, strict=True)),
            )
        informed = await self._inform(conn, publishes, now)
        await self._publish(conn, publishes, now)
        return len(notes) + informed, len(publishes)

    async def _inform(self, conn: asyncpg.Connection, publishes: list[tuple[str, Publish]], now: datetime) -> int:
        """Queue the informational webhooks of the acknowledged and resolved changes among
        `publishes` (after this flush's pages, so that those count); returns how many."""
        changes = [(t, e) for t, e in publishes if lifecycle.informs(e.action)]
        if not changes:
            return 0
        rows = await conn.fetch(
            """SELECT alert_id, member_id, channel, target, reason, status, next_attempt_at
               FROM alerts.notifications WHERE alert_id = ANY($1::text[]) ORDER BY id""",
            list({e.alert_id for _, e in changes}),
        )
        by_alert: dict[str, list[lifecycle.Notified]] = {}
        for r in rows:
            by_alert.setdefault(r["alert_id"], []).append(
                lifecycle.Notified(
                    r["member_id"], r["channel"], r["target"], r["reason"], r["status"], r["next_attempt_at"]
                )
            )
        queued = [
            (uuid.uuid4(), e.alert_id, tenant, w.member_id, "webhook", w.target, e.action, w.not_before)
            for tenant, e in changes
            for w in lifecycle.recipients(by_alert.get(e.alert_id, []), now)
        ]
        if queued:
            await conn.execute(
                """INSERT INTO alerts.notifications (delivery_id, alert_id, tenant_id, member_id, channel, target,
                                                     reason, next_attempt_at)
                   SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
                                        $7::text[], $8::timestamptz[])""",
                *map(list, zip(*queued, strict=True)),
            )
        return len(queued)

    async def _publish(self, conn: asyncpg.Connection, publishes: list[tuple[str, Publish]], now: datetime) -> None:
        """Lifecycle events (outbox, one insert) and stream notices (pg_notify) for the stored rows."""
        if not publishes:
            return
        ids = list(dict.fromkeys(e.alert_id for _, e in publishes))
        loaded = await conn.fetch(f"SELECT {ALERT_COLUMNS} FROM alerts.alerts WHERE id = ANY($1::text[])", ids)
        alerts = {a.id: a for a in await alerts_from_rows(conn, loaded)}
        records = []
        for tenant, e in publishes:
            alert = alerts[e.alert_id]
            event = AlertChanged(
                tenant_id=tenant, event_id=uuid.uuid4(), action=e.action, actor=e.actor, at=now, alert=alert
            )
            records.append((Topics.alerts, event_key(tenant, alert.patient_id), event.model_dump_json().encode()))
        await self.outbox.add(conn, records)
        changes = list(dict.fromkeys((t, e.alert_id, e.action) for t, e in publishes))
        for chunk in _chunks(changes):
            await conn.execute("SELECT pg_notify($1, $2)", NOTIFY_CHANNEL, json.dumps(chunk))


def _columns(alerts: Sequence[tuple[str, AlertState]]) -> list[list[object]]:
    """Column arrays of the alert rows, in `_COLUMNS` order."""
    cols: list[list[object]] = [[] for _ in range(24)]
    for tenant, a in alerts:
        row = (
            a.id,
            tenant,
            a.patient_id,
            a.kind.value,
            a.severity.value,
            a.status.value,
            a.summary,
            json.dumps([r.model_dump() for r in a.reasons]),  # jsonb arrays of lists go as text
            a.trajectory_state.value if a.trajectory_state else None,
            a.event_time,
            a.opened_at,
            a.updated_at,
            a.retrospective,
            a.acknowledged_by,
            a.acknowledged_at,
            a.resolved_at,
            a.resolution,
            a.escalation_level,
            a.last_notified_at,
            a.clear_since,
            "{" + ",".join(sorted(a.paged_flags)) + "}",
            a.paged_at,
            a.engine_version,
            a.profile_version,
        )
        for col, value in zip(cols, row, strict=True):
            col.append(value)
    return cols


def _count(e: Audit, kinds: dict[str, str]) -> None:
    if e.action == "resolved":
        metrics.ALERTS_RESOLVED.labels(kinds.get(e.alert_id, "unknown"), str(e.detail.get("resolution", ""))).inc()
    elif e.action == "repaged":
        metrics.RED_FLAG_REPAGES.inc()
    elif e.action == "escalated":
        metrics.ESCALATIONS.labels(str(e.detail.get("severity", ""))).inc()


def _chunks(changes: list[tuple[str, str, str]]) -> list[list[tuple[str, str, str]]]:
    """`changes` ([tenant id, alert id, change] each) in pg_notify payloads under the size limit."""
    out: list[list[tuple[str, str, str]]] = [[]]
    size = 2
    for change in changes:
        item = len(change[0]) + len(change[1]) + len(change[2]) + 14  # quotes, brackets, ", " separators
        if out[-1] and size + item > NOTIFY_PAYLOAD_BYTES:
            out.append([])
            size = 2
        out[-1].append(change)
        size += item
    return out
