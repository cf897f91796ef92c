"""Value types of the pure alerting core: alert state and policy in, decisions out.

No I/O. All datetimes are timezone-aware UTC. The service shell maps rows to these types and
applies the returned decisions in one database transaction.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from schemas.alerts import AlertKind, AlertStatus, Channel
from schemas.common import Reason, Role, Severity
from schemas.trajectory import TrajectoryState


@dataclass(frozen=True, slots=True)
class AlertState:
    """One alert row as the pure core sees it (the rules are given the unresolved ones).

    `paged_flags` are the red flags this alert has paged so far (red-flag alerts only); `paged_at`
    is when it last paged as new (opening or re-page): escalation counts from it.
    """

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
    # The stored evidence. `UpdateAlert` replaces these wholesale and `evaluate` compares against
    # them to recognise no-op events, so the shell must load them from the alert row.
    summary: str = ""
    reasons: tuple[Reason, ...] = ()
    trajectory_state: TrajectoryState | None = None
    acknowledged_by: str | None = None
    resolved_at: datetime | None = None
    resolution: str | None = None
    paged_flags: frozenset[str] = frozenset()
    paged_at: datetime | None = None
    # What produced the trajectory update that opened the alert (None: opened by a timer, a billing
    # event, an update without versions, or before versions were recorded). Never changed after.
    engine_version: str | None = None
    profile_version: str | None = None

    @property
    def escalation_base(self) -> datetime:
        """The instant escalation steps count from: the last opening or re-page."""
        return self.paged_at or self.opened_at

    @classmethod
    def opened(cls, decision: OpenAlert, alert_id: str, patient_id: str, now: datetime) -> AlertState:
        """The state of the alert an `OpenAlert` decision creates (what the store writes)."""
        return cls(
            id=alert_id,
            patient_id=patient_id,
            kind=decision.kind,
            severity=decision.severity,
            status=AlertStatus.open,
            opened_at=now,
            updated_at=now,
            event_time=decision.event_time,
            retrospective=decision.retrospective,
            summary=decision.summary,
            reasons=decision.reasons,
            trajectory_state=decision.trajectory_state,
            paged_flags=frozenset() if decision.retrospective else decision.paged_flags,
            paged_at=None if decision.retrospective else now,
            engine_version=decision.engine_version,
            profile_version=decision.profile_version,
        )


@dataclass(frozen=True, slots=True)
class SnoozeState:
    """An active hold on one alert kind for one patient until `until` (processing time)."""

    kind: AlertKind
    until: datetime
    id: str = ""


@dataclass(frozen=True, slots=True)
class RedFlagSeen:
    """A red-flag observation the rules have handled: paged, or covered by an alert that paged
    those flags already, or recorded as backfill. Keyed by event id in `RedFlagLedger`."""

    recorded_at: datetime
    flags: frozenset[str]


#: Event id -> the red flags of that observation already handled. An observation whose flags are
#: not all in here is new and pages (see `rules.evaluate`).
RedFlagLedger = Mapping[str, RedFlagSeen]


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
    # Disengagement is judged only once the patient's data stream has been quiet this long, so a
    # patient whose history is being backfilled (old event times, arriving now) is not "silent".
    disengagement_quiet: timedelta = timedelta(hours=1)
    # Snoozes may not reach further ahead than this (a longer hold is a mute in disguise).
    max_snooze: timedelta = timedelta(days=30)


@dataclass(frozen=True, slots=True)
class OpenAlert:
    """A new alert. `engine_version` and `profile_version` are the trajectory's that decided it
    (None when the decision did not come from a trajectory update, or the update had none)."""

    kind: AlertKind
    severity: Severity
    summary: str
    reasons: tuple[Reason, ...]
    trajectory_state: TrajectoryState | None
    event_time: datetime
    retrospective: bool
    # Red flags only: the flags this opening pages, and the observations it handles.
    paged_flags: frozenset[str] = frozenset()
    red_flags_seen: Mapping[str, RedFlagSeen] = field(default_factory=dict)
    # The re-scoring run whose event decided this (audited), None for live updates.
    rescore_run: str | None = None
    engine_version: str | None = None
    profile_version: str | None = None


@dataclass(frozen=True, slots=True)
class UpdateAlert:
    """New evidence on an active alert; the shell overwrites the alert's fields with these.

    `renotify` is true only when severity rose or a retrospective alert was promoted.
    `clear_since` is the new value (None clears a pending clearance). `retrospective` is the new
    value of the flag, or None to leave it unchanged (only ever False: promotion to paging).
    Red flags: `repage` means new flags arrived that this alert has not paged: it pages again as
    new (initial route, audit `repaged`, status back to open, escalation from now); `paged_flags`
    is then the new set. `red_flags_seen` are the observations this update handles.
    """

    alert_id: str
    severity: Severity
    summary: str
    reasons: tuple[Reason, ...]
    trajectory_state: TrajectoryState | None
    event_time: datetime
    renotify: bool
    clear_since: datetime | None
    retrospective: bool | None = None
    repage: bool = False
    paged_flags: frozenset[str] | None = None
    red_flags_seen: Mapping[str, RedFlagSeen] = field(default_factory=dict)
    rescore_run: str | None = None


@dataclass(frozen=True, slots=True)
class ResolveAlert:
    alert_id: str
    reason: str
    rescore_run: str | None = None


class SuppressReason(StrEnum):
    """Why an alert was not opened. A `str`, so it fits `Suppressed.why`."""

    snoozed = "snoozed"
    inhibited_by_red_flag = "inhibited_by_red_flag"
    flare_window = "flare_window"
    already_resolved = "already_resolved"


@dataclass(frozen=True, slots=True)
class Suppressed:
    """A condition that would have opened an alert but was held back; `why` is a `SuppressReason`.

    Informational only: the shell changes no alert state for it (a metric or log is enough).
    It repeats on every event while the hold lasts, so it must not be counted as an incident.
    """

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


# --- Per-tenant policy configuration (JSON) -------------------------------------------------

POLICY_KEYS = frozenset(
    {
        "escalation",
        "repeat_interval_minutes",
        "quiet_hours",
        "timezone",
        "hysteresis_hours",
        "disengagement_days",
        "disengagement_quiet_minutes",
        "max_snooze_days",
    }
)
MIN_REPEAT_INTERVAL = timedelta(minutes=5)
_HHMM = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"alert policy: {where} must be a finite number")
    return float(value)


def _hhmm(value: Any, where: str) -> time:
    match = _HHMM.match(value) if isinstance(value, str) else None
    if match is None:
        raise ValueError(f"alert policy: {where} must be a 24-hour time 'HH:MM'")
    return time(int(match.group(1)), int(match.group(2)))


def _chain(value: Any, where: str) -> tuple[EscalationStep, ...]:
    if not isinstance(value, Sequence) or isinstance(value, str):
        raise ValueError(f"alert policy: {where} must be a list of steps")
    steps: list[EscalationStep] = []
    for i, raw in enumerate(value):
        at = f"{where}[{i}]"
        if not isinstance(raw, Mapping):
            raise ValueError(f"alert policy: {at} must be an object with after_minutes and roles")
        extra = sorted(set(raw) - {"after_minutes", "roles"})
        if extra:
            raise ValueError(f"alert policy: {at} has unknown keys {extra}")
        if "after_minutes" not in raw or "roles" not in raw:
            raise ValueError(f"alert policy: {at} needs after_minutes and roles")
        minutes = _number(raw["after_minutes"], f"{at}.after_minutes")
        if minutes <= 0:
            raise ValueError(f"alert policy: {at}.after_minutes must be greater than 0")
        after = timedelta(minutes=minutes)
        if steps and after <= steps[-1].after:
            raise ValueError(
                f"alert policy: {at}.after_minutes must be greater than the previous step's "
                "(steps count from the alert's opening, in increasing order)"
            )
        roles_raw = raw["roles"]
        if not isinstance(roles_raw, Sequence) or isinstance(roles_raw, str) or not roles_raw:
            raise ValueError(f"alert policy: {at}.roles must be a non-empty list of roles")
        roles: list[Role] = []
        for name in roles_raw:
            try:
                role = Role(name)
            except ValueError:
                allowed = ", ".join(r.value for r in Role)
                raise ValueError(f"alert policy: {at}.roles has unknown role {name!r} (one of {allowed})") from None
            if role in roles:
                raise ValueError(f"alert policy: {at}.roles lists {role.value} twice")
            roles.append(role)
        steps.append(EscalationStep(after, tuple(roles)))
    return tuple(steps)


def policy_from_dict(d: Mapping[str, Any]) -> AlertPolicy:
    """Build a tenant's `AlertPolicy` from its stored JSON configuration.

    Every key is optional; a missing key keeps the product default. Keys (see docs/alerting.md):
    `escalation` ({severity: [{"after_minutes": n, "roles": [...]}, ...]}, merged per severity
    over the default chains; `[]` disables a severity's chain), `repeat_interval_minutes` (>= 5),
    `quiet_hours` ({"start": "HH:MM", "end": "HH:MM"} local, may wrap midnight; null disables),
    `timezone` (IANA name), `hysteresis_hours` (>= 0), `disengagement_days` (>= 1).
    The 72-hour retrospective threshold is fixed by the public contract and not configurable.

    Raises ValueError naming the offending key on unknown keys or invalid values.
    """
    if not isinstance(d, Mapping):
        raise ValueError("alert policy: configuration must be a JSON object")
    unknown = sorted(str(k) for k in d if k not in POLICY_KEYS)
    if unknown:
        raise ValueError(f"alert policy: unknown keys {unknown} (allowed: {sorted(POLICY_KEYS)})")
    defaults = AlertPolicy()
    escalation = dict(defaults.escalation)
    if "escalation" in d:
        raw = d["escalation"]
        if not isinstance(raw, Mapping):
            raise ValueError("alert policy: escalation must be an object keyed by severity")
        for name, chain in raw.items():
            try:
                severity = Severity(name)
            except ValueError:
                allowed = ", ".join(s.value for s in Severity)
                raise ValueError(f"alert policy: escalation has unknown severity {name!r} (one of {allowed})") from None
            steps = _chain(chain, f"escalation.{severity.value}")
            if steps:
                escalation[severity] = steps
            else:
                escalation.pop(severity, None)
    repeat = defaults.repeat_interval
    if "repeat_interval_minutes" in d:
        repeat = timedelta(minutes=_number(d["repeat_interval_minutes"], "repeat_interval_minutes"))
        if repeat < MIN_REPEAT_INTERVAL:
            raise ValueError("alert policy: repeat_interval_minutes must be at least 5")
    start, end = defaults.quiet_hours_start, defaults.quiet_hours_end
    if "quiet_hours" in d:
        qh = d["quiet_hours"]
        if qh is None:
            start = end = None
        elif isinstance(qh, Mapping) and set(qh) == {"start", "end"}:
            start, end = _hhmm(qh["start"], "quiet_hours.start"), _hhmm(qh["end"], "quiet_hours.end")
            if start == end:
                raise ValueError("alert policy: quiet_hours.start and quiet_hours.end must differ")
        else:
            raise ValueError('alert policy: quiet_hours must be null or {"start": "HH:MM", "end": "HH:MM"}')
    timezone = defaults.timezone
    if "timezone" in d:
        timezone = d["timezone"]
        if not isinstance(timezone, str) or not timezone:
            raise ValueError("alert policy: timezone must be an IANA time zone name")
        try:
            ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a tzdata directory, a name too long
            raise ValueError(f"alert policy: timezone {timezone!r} is not a known IANA time zone") from None
    hysteresis = defaults.hysteresis
    if "hysteresis_hours" in d:
        hours = _number(d["hysteresis_hours"], "hysteresis_hours")
        if hours < 0:
            raise ValueError("alert policy: hysteresis_hours must not be negative")
        hysteresis = timedelta(hours=hours)
    disengagement = defaults.disengagement_after
    if "disengagement_days" in d:
        days = _number(d["disengagement_days"], "disengagement_days")
        if days < 1:
            raise ValueError("alert policy: disengagement_days must be at least 1")
        disengagement = timedelta(days=days)
    quiet_stream = defaults.disengagement_quiet
    if "disengagement_quiet_minutes" in d:
        minutes = _number(d["disengagement_quiet_minutes"], "disengagement_quiet_minutes")
        if minutes < 0:
            raise ValueError("alert policy: disengagement_quiet_minutes must not be negative")
        quiet_stream = timedelta(minutes=minutes)
    max_snooze = defaults.max_snooze
    if "max_snooze_days" in d:
        days = _number(d["max_snooze_days"], "max_snooze_days")
        if not 1 <= days <= 90:
            raise ValueError("alert policy: max_snooze_days must be between 1 and 90")
        max_snooze = timedelta(days=days)
    return AlertPolicy(
        escalation=escalation,
        repeat_interval=repeat,
        quiet_hours_start=start,
        quiet_hours_end=end,
        timezone=timezone,
        hysteresis=hysteresis,
        retrospective_after=defaults.retrospective_after,
        disengagement_after=disengagement,
        disengagement_quiet=quiet_stream,
        max_snooze=max_snooze,
    )


def _plain(value: timedelta, unit: timedelta) -> int | float:
    amount = value / unit
    return int(amount) if amount == int(amount) else amount


def policy_to_dict(policy: AlertPolicy) -> dict[str, Any]:
    """The JSON configuration of `policy`, every key explicit; `policy_from_dict` reads it back.

    Severities without a chain are written as `[]` so the result does not depend on defaults.
    """
    quiet: dict[str, str] | None = None
    if policy.quiet_hours_start is not None and policy.quiet_hours_end is not None:
        quiet = {
            "start": policy.quiet_hours_start.strftime("%H:%M"),
            "end": policy.quiet_hours_end.strftime("%H:%M"),
        }
    return {
        "escalation": {
            s.value: [
                {"after_minutes": _plain(step.after, timedelta(minutes=1)), "roles": [r.value for r in step.roles]}
                for step in policy.escalation.get(s, ())
            ]
            for s in Severity
        },
        "repeat_interval_minutes": _plain(policy.repeat_interval, timedelta(minutes=1)),
        "quiet_hours": quiet,
        "timezone": policy.timezone,
        "hysteresis_hours": _plain(policy.hysteresis, timedelta(hours=1)),
        "disengagement_days": _plain(policy.disengagement_after, timedelta(days=1)),
        "disengagement_quiet_minutes": _plain(policy.disengagement_quiet, timedelta(minutes=1)),
        "max_snooze_days": _plain(policy.max_snooze, timedelta(days=1)),
    }
