"""Persisting the effects planned by the pure core (`services.alerts.book`).

Shared by the consumer (trajectory decisions), the sweeper (timers, disengagement) and the API
(acknowledge, resolve). The caller holds the transaction; everything `persist` writes commits
with it or not at all. Notifications are only queued here (the dispatcher sends them).

Order within one call: alert rows (coalesced per alert: one insert or update with the final
state), then audit entries, queued notifications, lifecycle events and the red-flag ledger, so
every foreign key finds its alert. An insert refused by the one-unresolved-alert-per-kind index
(a concurrent writer got there first) drops every other effect on that alert id.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from nervewatch import metrics
from schemas.events import TriggerRef
from services.alerts.book import Audit, Effect, Publish, QueueNotifications, RecordRedFlags, StoreAlert
from services.alerts.model import AlertState
from services.alerts.store import AlertWriter, ledger_to_json

_INSERT = """INSERT INTO alerts.alerts (id, tenant_id, patient_id, kind, severity, status, summary, reasons,
        trajectory_state, event_time, opened_at, updated_at, retrospective, acknowledged_by, acknowledged_at,
        resolved_at, resolution, escalation_level, last_notified_at, clear_since, paged_flags, paged_at)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22)
    ON CONFLICT (tenant_id, patient_id, kind) WHERE status <> 'resolved' DO NOTHING
    RETURNING id"""
_UPDATE = """UPDATE alerts.alerts SET opened_at = $11, severity = $5, status = $6, summary = $7, reasons = $8,
        trajectory_state = $9, event_time = $10, updated_at = $12, retrospective = $13, acknowledged_by = $14,
        acknowledged_at = $15, resolved_at = $16, resolution = $17, escalation_level = $18, last_notified_at = $19,
        clear_since = $20, paged_flags = $21, paged_at = $22
    WHERE id = $1 AND tenant_id = $2 AND patient_id = $3 AND kind = $4"""


def _row(tenant: str, a: AlertState) -> tuple[object, ...]:
    return (
        a.id,
        tenant,
        a.patient_id,
        a.kind.value,
        a.severity.value,
        a.status.value,
        a.summary,
        [r.model_dump() for r in a.reasons],
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
        sorted(a.paged_flags),
        a.paged_at,
    )


async def persist(
    w: AlertWriter,
    tenant: str,
    patient_id: str,
    effects: Sequence[Effect],
    now: datetime,
    trigger: TriggerRef | None = None,
) -> int:
    """Write `effects` of one patient inside the caller's transaction; returns how many
    notifications were queued (the caller wakes the dispatcher when > 0)."""
    stores: dict[str, StoreAlert] = {}
    for e in effects:
        if isinstance(e, StoreAlert):
            first = stores.get(e.state.id)
            stores[e.state.id] = StoreAlert(e.state, new=first.new if first is not None else e.new)
    refused: set[str] = set()
    for alert_id, store in stores.items():
        if store.new:
            if await w.conn.fetchval(_INSERT, *_row(tenant, store.state)) is None:
                refused.add(alert_id)
                continue
            metrics.ALERTS_OPENED.labels(store.state.kind.value, store.state.severity.value).inc()
            if trigger is not None:
                metrics.END_TO_END_LATENCY.labels("alert_opened", "received_at").observe(
                    (now - trigger.received_at).total_seconds()
                )
            metrics.END_TO_END_LATENCY.labels("alert_opened", "recorded_at").observe(
                (now - store.state.event_time).total_seconds()
            )
        elif await w.conn.execute(_UPDATE, *_row(tenant, store.state)) != "UPDATE 1":
            # The alert was loaded under lock in this transaction: a miss is a bug, never ignored.
            raise RuntimeError(f"alert {alert_id} was not found for update")
    kinds = {i: s.state.kind.value for i, s in stores.items()}
    queued = 0
    for e in effects:
        if isinstance(e, StoreAlert) or getattr(e, "alert_id", None) in refused:
            continue
        if isinstance(e, Audit):
            await w.audit(e.alert_id, e.actor, e.action, dict(e.detail))
            if e.action == "resolved":
                metrics.ALERTS_RESOLVED.labels(kinds.get(e.alert_id, "unknown"), e.detail.get("resolution", "")).inc()
            elif e.action == "repaged":
                metrics.RED_FLAG_REPAGES.inc()
            elif e.action == "escalated":
                metrics.ESCALATIONS.labels(e.detail.get("severity", "")).inc()
        elif isinstance(e, QueueNotifications):
            queued += await w.notify(tenant, e.alert_id, e.recipients, e.reason, e.not_before)
        elif isinstance(e, Publish):
            await w.publish(tenant, e.alert_id, e.action, e.actor)
        elif isinstance(e, RecordRedFlags):
            await w.conn.execute(
                "UPDATE alerts.patients SET red_flags_seen = $3 WHERE tenant_id = $1 AND patient_id = $2",
                tenant,
                patient_id,
                ledger_to_json(e.ledger),
            )
    return queued
