"""Alert objects and care-coordinator API payloads."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field

from schemas.common import MemberId, PatientId, Reason, Severity, StrictModel, UtcDatetime
from schemas.trajectory import TrajectoryState


class AlertKind(StrEnum):
    red_flag = "red_flag"
    regression = "regression"
    spreading_symptoms = "spreading_symptoms"
    persistent_flare = "persistent_flare"
    plateau = "plateau"
    activity_decline = "activity_decline"
    disengagement = "disengagement"
    data_days_at_risk = "data_days_at_risk"


DEFAULT_SEVERITY: dict[AlertKind, Severity] = {
    AlertKind.red_flag: Severity.critical,
    AlertKind.regression: Severity.high,
    AlertKind.spreading_symptoms: Severity.high,
    AlertKind.persistent_flare: Severity.medium,
    AlertKind.plateau: Severity.medium,
    AlertKind.activity_decline: Severity.low,
    AlertKind.disengagement: Severity.low,
    # Billing, not clinical: never escalated or reminded, deferred by quiet hours (docs/safety.md H20).
    AlertKind.data_days_at_risk: Severity.low,
}


class AlertStatus(StrEnum):
    open = "open"
    acknowledged = "acknowledged"
    resolved = "resolved"


class Resolution(StrEnum):
    manual = "manual"
    auto = "auto"


class Channel(StrEnum):
    webhook = "webhook"
    email = "email"


class DeliveryStatus(StrEnum):
    pending = "pending"
    delivered = "delivered"
    retrying = "retrying"
    failed = "failed"
    suppressed = "suppressed"


class NotificationSummary(BaseModel):
    member_id: str
    channel: Channel
    status: DeliveryStatus
    attempts: int


class Alert(BaseModel):
    id: str
    patient_id: PatientId
    kind: AlertKind
    severity: Severity
    status: AlertStatus
    summary: str
    reasons: list[Reason] = Field(default_factory=list)
    trajectory_state: TrajectoryState | None = None
    event_time: UtcDatetime
    opened_at: UtcDatetime
    updated_at: UtcDatetime
    retrospective: bool = False
    acknowledged_by: str | None = None
    acknowledged_at: UtcDatetime | None = None
    resolved_at: UtcDatetime | None = None
    resolution: Resolution | None = None
    # Red-flag alerts: every red flag this alert has paged (a re-page adds the new ones).
    red_flags: list[str] = Field(default_factory=list)
    notifications: list[NotificationSummary] = Field(default_factory=list)
    # The scoring engine and clinical-profile version of the trajectory update that opened the alert
    # (`Trajectory.engine_version` / `profile_version`); null when it was opened by something else
    # (disengagement, data days at risk), by an update without them, or before they were recorded.
    engine_version: str | None = None
    profile_version: str | None = None


class AlertDelivery(Alert):
    """A webhook body and the `data` of a stream event: the alert as it is when sent, and the
    change this delivery reports (`opened`, `updated`, `escalated`, `reminded`, `acknowledged`,
    `resolved`, `repaged`). Additive to the alert object: a receiver that ignores `change` reads
    an alert; `status` is the alert's status when sent."""

    change: str | None = None


class AlertPage(BaseModel):
    items: list[Alert]
    next_cursor: str | None = None


class StreamTicket(BaseModel):
    """A single-use ticket for `GET /v1/alerts/stream?ticket=...` (valid until `expires_at`, 60 s)."""

    ticket: str
    expires_at: UtcDatetime


class AlertAction(StrictModel):
    """Body of acknowledge and resolve."""

    by: MemberId
    note: str | None = Field(default=None, max_length=2000)


class SnoozeIn(StrictModel):
    kind: AlertKind
    until: UtcDatetime
    by: MemberId


class Snooze(BaseModel):
    id: str
    patient_id: PatientId
    kind: AlertKind
    until: UtcDatetime
    by: str
    created_at: UtcDatetime


class SnoozePage(BaseModel):
    items: list[Snooze]


class SnoozeEnd(StrictModel):
    """Body of `DELETE /v1/patients/{patient_id}/snoozes/{id}`."""

    by: MemberId


class AuditEntry(BaseModel):
    at: datetime
    actor: str
    action: str
    detail: dict[str, Any] = Field(default_factory=dict)


class AuditPage(BaseModel):
    items: list[AuditEntry]
