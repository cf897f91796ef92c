"""Value types of the pure alerting core: alert state and policy in, decisions out.

No I/O. All datetimes are timezone-aware UTC. The service shell maps rows to these types and
applies the returned decisions in one database transaction.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, time, timedelta

from schemas.alerts import AlertKind, AlertStatus, Channel
from schemas.common import Reason, Role, Severity
from schemas.trajectory import TrajectoryState


@dataclass(frozen=True, slots=True)
class AlertState:
    """An alert that is not resolved (status open or acknowledged)."""

    id: str
    patient_id: str
    kind: AlertKind
    severity: Severity
    status: AlertStatus
    opened_at: datetime
    updated_at: datetime
    event_time: datetime
    retrospective: bool = False
    escalation_level: int = 0
    last_notified_at: datetime | None = None
    clear_since: datetime | None = None
    acknowledged_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class SnoozeState:
    kind: AlertKind
    until: datetime


@dataclass(frozen=True, slots=True)
class Member:
    """A care-team member as enrolled on the patient."""

    member_id: str
    role: Role
    min_severity: Severity
    webhook_url: str | None = None
    email: str | None = None


@dataclass(frozen=True, slots=True)
class EscalationStep:
    """After `after` without acknowledgement (counted from the alert's opening), page `roles`."""

    after: timedelta
    roles: tuple[Role, ...]


def _default_chain() -> dict[Severity, tuple[EscalationStep, ...]]:
    return {
        Severity.critical: (
            EscalationStep(timedelta(minutes=15), (Role.on_call,)),
            EscalationStep(timedelta(minutes=30), (Role.physician, Role.surgeon)),
        ),
        Severity.high: (EscalationStep(timedelta(hours=4), (Role.physician,)),),
    }


@dataclass(frozen=True, slots=True)
class AlertPolicy:
    """Per-tenant alerting configuration (defaults are the product defaults)."""

    escalation: dict[Severity, tuple[EscalationStep, ...]] = field(default_factory=_default_chain)
    repeat_interval: timedelta = timedelta(hours=4)
    quiet_hours_start: time | None = time(21, 0)
    quiet_hours_end: time | None = time(7, 0)
    timezone: str = "UTC"
    hysteresis: timedelta = timedelta(hours=48)
    retrospective_after: timedelta = timedelta(hours=72)
    disengagement_after: timedelta = timedelta(days=4)


@dataclass(frozen=True, slots=True)
class OpenAlert:
    kind: AlertKind
    severity: Severity
    summary: str
    reasons: tuple[Reason, ...]
    trajectory_state: TrajectoryState | None
    event_time: datetime
    retrospective: bool


@dataclass(frozen=True, slots=True)
class UpdateAlert:
    """New evidence on an active alert. `renotify` is true only when severity rose."""

    alert_id: str
    severity: Severity
    summary: str
    reasons: tuple[Reason, ...]
    trajectory_state: TrajectoryState | None
    event_time: datetime
    renotify: bool
    clear_since: datetime | None


@dataclass(frozen=True, slots=True)
class ResolveAlert:
    alert_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class Suppressed:
    """A condition that would have opened an alert but was held back (snooze or inhibition)."""

    kind: AlertKind
    why: str


Decision = OpenAlert | UpdateAlert | ResolveAlert | Suppressed


@dataclass(frozen=True, slots=True)
class Recipient:
    member_id: str
    channel: Channel
    target: str


@dataclass(frozen=True, slots=True)
class Escalate:
    alert_id: str
    level: int
    roles: tuple[Role, ...]


@dataclass(frozen=True, slots=True)
class Remind:
    alert_id: str


TimerDecision = Escalate | Remind
