"""Pure alert rules: a trajectory event and the patient's active alerts in, decisions out.

Skeleton version: red flags only (the alerting issue completes every kind). Deterministic;
the clock is an argument.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from schemas.alerts import DEFAULT_SEVERITY, AlertKind, Channel
from schemas.common import Severity
from schemas.events import TrajectoryUpdated
from schemas.trajectory import SignalCode
from services.alerts.model import (
    AlertPolicy,
    AlertState,
    Decision,
    Member,
    OpenAlert,
    Recipient,
    SnoozeState,
    UpdateAlert,
)


def evaluate(
    event: TrajectoryUpdated,
    active: Sequence[AlertState],
    snoozes: Sequence[SnoozeState],
    policy: AlertPolicy,
    now: datetime,
) -> list[Decision]:
    decisions: list[Decision] = []
    by_kind = {a.kind: a for a in active}
    for signal in event.signals:
        if signal.code is not SignalCode.red_flag:
            continue
        kind = AlertKind.red_flag
        retrospective = (
            event.trigger is not None
            and event.trigger.received_at - signal.event_time > policy.retrospective_after
        )
        summary = "Red-flag symptom reported"
        existing = by_kind.get(kind)
        if existing is None:
            decisions.append(
                OpenAlert(
                    kind=kind,
                    severity=DEFAULT_SEVERITY[kind],
                    summary=summary,
                    reasons=tuple(signal.reasons),
                    trajectory_state=event.trajectory.state,
                    event_time=signal.event_time,
                    retrospective=retrospective,
                )
            )
        else:
            decisions.append(
                UpdateAlert(
                    alert_id=existing.id,
                    severity=existing.severity,
                    summary=summary,
                    reasons=tuple(signal.reasons),
                    trajectory_state=event.trajectory.state,
                    event_time=max(existing.event_time, signal.event_time),
                    renotify=False,
                    clear_since=None,
                )
            )
    return decisions


def route(severity: Severity, members: Sequence[Member]) -> list[Recipient]:
    """Initial recipients: every member whose `min_severity` admits the alert, on each channel."""
    out: list[Recipient] = []
    for m in members:
        if severity.rank < m.min_severity.rank:
            continue
        if m.webhook_url:
            out.append(Recipient(m.member_id, Channel.webhook, m.webhook_url))
        if m.email:
            out.append(Recipient(m.member_id, Channel.email, m.email))
    return out
