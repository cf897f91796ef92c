"""Pure alert timers, run by the shell's periodic sweep in processing time.

Escalation, reminders and disengagement depend on time passing rather than on a new event, so the
shell calls these with its clock `now` (aware). No I/O, no wall clock, deterministic: the same
arguments always give the same decisions. See docs/alerting.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from schemas.alerts import DEFAULT_SEVERITY, AlertKind, AlertStatus
from schemas.common import Reason, Role, Severity
from services.alerts.model import (
    AlertPolicy,
    AlertState,
    Escalate,
    Member,
    OpenAlert,
    Recipient,
    Remind,
    ResolveAlert,
    SnoozeState,
    TimerDecision,
)
from services.alerts.rules import (
    NEVER_ESCALATED,
    RESOLVED_CHECKIN,
    member_recipients,
    require_aware,
    route,
    unique_recipients,
)


def _due_escalation(alert: AlertState, policy: AlertPolicy, now: datetime) -> Escalate | None:
    chain = policy.escalation.get(alert.severity, ())
    level = max(alert.escalation_level, 0)
    elapsed = now - alert.escalation_base
    roles: list[Role] = []
    while level < len(chain) and elapsed >= chain[level].after:
        roles.extend(r for r in chain[level].roles if r not in roles)
        level += 1
    if level == max(alert.escalation_level, 0):
        return None
    return Escalate(alert_id=alert.id, level=level, roles=tuple(roles))


def sweep(active: Sequence[AlertState], policy: AlertPolicy, now: datetime) -> list[TimerDecision]:
    """Escalations and reminders due at `now`, at most one decision per alert.

    Only alerts with status open that are not retrospective take part; acknowledged (and
    resolved) alerts neither escalate nor remind, nor do kinds in `rules.NEVER_ESCALATED`
    (data days at risk: whatever the tenant's chain for its severity, docs/safety.md H20). For
    each such alert, with `chain = policy.escalation[alert.severity]` (none: no escalation):
      - if `chain[alert.escalation_level].after` has elapsed since `escalation_base` (the opening,
        or the last re-page of a red flag) (>=, so exactly
        15 min escalates), `Escalate(level=k, roles=...)` where k is one past the furthest
        consecutive overdue step and roles are the union, in chain order, of the roles of every
        step passed now (normally one step: level + 1 and that step's roles; after an outage
        several at once, nobody skipped);
      - otherwise, if `last_notified_at` is set and `now - last_notified_at >= repeat_interval`,
        `Remind`. An alert never notified (nobody routed, or still deferred) gets no reminder.
    Escalation resets nothing: the shell sets `escalation_level = level` and `last_notified_at`.
    Output order: by (opened_at, id), independent of the input order.
    """
    require_aware(now, "now")
    out: list[TimerDecision] = []
    for alert in sorted(active, key=lambda a: (a.opened_at, a.id)):
        if alert.status is not AlertStatus.open or alert.retrospective or alert.kind in NEVER_ESCALATED:
            continue
        escalate = _due_escalation(alert, policy, now)
        if escalate is not None:
            out.append(escalate)
        elif alert.last_notified_at is not None and now - alert.last_notified_at >= policy.repeat_interval:
            out.append(Remind(alert_id=alert.id))
    return out


def escalation_recipients(roles: Sequence[Role], members: Sequence[Member], severity: Severity) -> list[Recipient]:
    """Members whose role is in `roles` and whose `min_severity` admits `severity`, on each
    channel they have.

    A member's `min_severity` is never overridden, not even by escalation: a care team that wants
    a role escalated to for high alerts gives that member `min_severity` high or lower. Members
    keep their order; repeats of (member, channel) are dropped. Empty when no member qualifies
    (the shell then records the audit action "escalation_unrouted").
    """
    wanted = set(roles)
    out: list[Recipient] = []
    for m in members:
        if m.role in wanted and severity.rank >= m.min_severity.rank:
            out.extend(member_recipients(m))
    return unique_recipients(out)


def reminder_recipients(alert: AlertState, members: Sequence[Member], policy: AlertPolicy) -> list[Recipient]:
    """Who a `Remind` goes to: the initial route for the alert's severity plus every role its
    escalation has reached so far (steps below `alert.escalation_level`), without repeats."""
    chain = policy.escalation.get(alert.severity, ())
    reached = [r for step in chain[: max(alert.escalation_level, 0)] for r in step.roles]
    return unique_recipients(route(alert.severity, members) + escalation_recipients(reached, members, alert.severity))


def _age_text(age: timedelta) -> str:
    days = age // timedelta(days=1)
    if days >= 1:
        return f"{days} day" if days == 1 else f"{days} days"
    hours = age // timedelta(hours=1)
    return f"{hours} hour" if hours == 1 else f"{hours} hours"


def disengagement(
    patient_id: str,
    last_checkin_at: datetime | None,
    active: AlertState | None,
    policy: AlertPolicy,
    now: datetime,
    *,
    snoozes: Sequence[SnoozeState] = (),
    red_flag_active: bool = False,
    resolved_through: datetime | None = None,
    last_seen_at: datetime | None = None,
) -> OpenAlert | ResolveAlert | None:
    """Open or resolve one patient's disengagement alert.

    `last_checkin_at` is the event time (`recorded_at`) of the patient's newest check-in;
    `active` the patient's unresolved disengagement alert, if any (another kind or patient:
    ValueError). Returns:
      - `ResolveAlert("check-in received")` when `active` exists and `last_checkin_at` is newer
        than its `event_time` (evaluate does the same on a trajectory update);
      - `OpenAlert(disengagement, low, event_time=last_checkin_at, summary "No check-in for N
        days")` when there is no active alert and `now - last_checkin_at >=
        policy.disengagement_after`;
      - None otherwise, and also when: the patient never checked in (not enrolled long enough to
        judge; enrolment age is the shell's knowledge, not this function's), a disengagement
        snooze is active (`until > now`), `red_flag_active` (an unresolved, non-retrospective
        red-flag alert inhibits it), or `last_checkin_at <= resolved_through` (the newest
        `event_time` of a resolved disengagement alert: that silence was already handled, so a
        manual resolve does not re-open it on the next sweep), or while the patient's data stream is
        still active: `last_seen_at` (processing time of the newest update for the patient) within
        `policy.disengagement_quiet`, so a backfill of old check-ins does not read as silence.
    """
    require_aware(now, "now")
    if active is not None and (active.kind is not AlertKind.disengagement or active.patient_id != patient_id):
        raise ValueError("active must be this patient's disengagement alert")
    if last_checkin_at is None:
        return None
    if active is not None:
        if last_checkin_at > active.event_time:
            return ResolveAlert(alert_id=active.id, reason=RESOLVED_CHECKIN)
        return None
    age = now - last_checkin_at
    if last_seen_at is not None and now - last_seen_at < policy.disengagement_quiet:
        return None  # data for this patient is still arriving (e.g. a backfill): not silent
    if age < policy.disengagement_after:
        return None
    if resolved_through is not None and last_checkin_at <= resolved_through:
        return None
    if red_flag_active or any(s.kind is AlertKind.disengagement and s.until > now for s in snoozes):
        return None
    when = last_checkin_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return OpenAlert(
        kind=AlertKind.disengagement,
        severity=DEFAULT_SEVERITY[AlertKind.disengagement],
        summary=f"No check-in for {_age_text(age)}",
        reasons=(Reason(code="no_recent_checkin", detail=f"last check-in at {when}, {_age_text(age)} ago"),),
        trajectory_state=None,
        event_time=last_checkin_at,
        retrospective=False,
    )
