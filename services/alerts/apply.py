"""Applying alert decisions: each writes the row, audit, notifications and lifecycle event together.

Shared by the consumer (trajectory decisions) and the sweeper (timer decisions). Callers hold
the transaction; notifications are only queued here (the dispatcher sends them).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from nervewatch import metrics
from schemas.common import Severity
from schemas.events import TriggerRef
from services.alerts import rules
from services.alerts.model import AlertPolicy, Member, OpenAlert, Recipient, ResolveAlert, UpdateAlert
from services.alerts.store import AlertWriter, new_alert_id


async def page(
    w: AlertWriter,
    tenant: str,
    alert_id: str,
    severity: Severity,
    recipients: Sequence[Recipient],
    reason: str,
    policy: AlertPolicy,
    now: datetime,
) -> int:
    """Queue notifications, deferred to the end of the tenant's quiet hours for low and medium alerts."""
    not_before = rules.quiet_hours_delay(severity, policy, now) or now
    return await w.notify(tenant, alert_id, recipients, reason, not_before)


async def open_alert(
    w: AlertWriter,
    tenant: str,
    pid: str,
    d: OpenAlert,
    members: Sequence[Member],
    policy: AlertPolicy,
    now: datetime,
    trigger: TriggerRef | None,
) -> int:
    alert_id = new_alert_id(now)
    inserted = await w.conn.fetchval(
        """INSERT INTO alerts.alerts (id, tenant_id, patient_id, kind, severity, status, summary, reasons,
                                      trajectory_state, event_time, opened_at, updated_at, retrospective)
           VALUES ($1, $2, $3, $4, $5, 'open', $6, $7, $8, $9, $10, $10, $11)
           ON CONFLICT (tenant_id, patient_id, kind) WHERE status <> 'resolved' DO NOTHING
           RETURNING id""",
        alert_id,
        tenant,
        pid,
        d.kind.value,
        d.severity.value,
        d.summary,
        [r.model_dump() for r in d.reasons],
        d.trajectory_state.value if d.trajectory_state else None,
        d.event_time,
        now,
        d.retrospective,
    )
    if inserted is None:
        return 0
    metrics.ALERTS_OPENED.labels(d.kind.value, d.severity.value).inc()
    if trigger is not None:
        metrics.END_TO_END_LATENCY.labels("alert_opened", "received_at").observe(
            (now - trigger.received_at).total_seconds()
        )
    metrics.END_TO_END_LATENCY.labels("alert_opened", "recorded_at").observe((now - d.event_time).total_seconds())
    await w.audit(
        alert_id,
        "system",
        "opened",
        {"kind": d.kind.value, "severity": d.severity.value, "retrospective": d.retrospective},
    )
    queued = 0
    if d.retrospective:
        await w.audit(alert_id, "system", "not_paged", {"why": "retrospective"})
    else:
        recipients = rules.route(d.severity, members)
        queued = await page(w, tenant, alert_id, d.severity, recipients, "initial", policy, now)
        if not recipients:
            await w.audit(alert_id, "system", "unrouted", {"severity": d.severity.value})
    await w.publish(tenant, alert_id, "opened", "system")
    return queued


async def update_alert(
    w: AlertWriter, tenant: str, d: UpdateAlert, members: Sequence[Member], policy: AlertPolicy, now: datetime
) -> int:
    retrospective = await w.conn.fetchval(
        """UPDATE alerts.alerts SET severity = $2, summary = $3, reasons = $4, trajectory_state = $5,
                                    event_time = $6, clear_since = $7, updated_at = $8,
                                    retrospective = coalesce($9, retrospective)
           WHERE id = $1
           RETURNING retrospective""",
        d.alert_id,
        d.severity.value,
        d.summary,
        [r.model_dump() for r in d.reasons],
        d.trajectory_state.value if d.trajectory_state else None,
        d.event_time,
        d.clear_since,
        now,
        d.retrospective,
    )
    await w.audit(
        d.alert_id,
        "system",
        "updated",
        {"severity": d.severity.value, "clearing_since": d.clear_since.isoformat() if d.clear_since else None},
    )
    queued = 0
    if d.renotify and rules.should_page(bool(retrospective)):
        recipients = rules.route(d.severity, members)
        queued = await page(w, tenant, d.alert_id, d.severity, recipients, "severity_raised", policy, now)
    await w.publish(tenant, d.alert_id, "updated", "system")
    return queued


async def resolve_alert(w: AlertWriter, d: ResolveAlert, now: datetime) -> None:
    row = await w.conn.fetchrow(
        """UPDATE alerts.alerts SET status = 'resolved', resolution = 'auto', resolved_at = $2, updated_at = $2
           WHERE id = $1 AND status <> 'resolved' RETURNING kind, tenant_id""",
        d.alert_id,
        now,
    )
    if row is None:
        return
    kind = row["kind"]
    metrics.ALERTS_RESOLVED.labels(kind, "auto").inc()
    await w.audit(d.alert_id, "system", "resolved", {"resolution": "auto", "reason": d.reason})
    await w.publish(row["tenant_id"], d.alert_id, "resolved", "system")
