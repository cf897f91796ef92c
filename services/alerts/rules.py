"""Pure alert rules: a trajectory event and the patient's alert state in, decisions out.

Nothing here does I/O, logs, reads the wall clock or draws random numbers: every function's
result depends only on its arguments (`now`, the processing clock, is always passed in). The
service shell applies the returned decisions in one transaction. The rules are described in
docs/alerting.md; the contract of each function is in its docstring.

Time bases: the trajectory's `as_of` and a signal's `event_time` are event time (when the patient
or device observed something); `now` and `trigger.received_at` are processing time. Hysteresis is
measured in event time, snoozes and quiet hours in processing time.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from schemas.alerts import DEFAULT_SEVERITY, AlertKind, AlertStatus, Channel
from schemas.common import Reason, Severity
from schemas.events import DataDaysAtRisk, DataDaysRiskEnded, TrajectoryUpdated, TriggerRef
from schemas.trajectory import Signal, SignalCode, TrajectoryState
from services.alerts.model import (
    AlertPolicy,
    AlertState,
    Decision,
    Member,
    OpenAlert,
    Recipient,
    RedFlagLedger,
    RedFlagSeen,
    ResolveAlert,
    SnoozeState,
    Suppressed,
    SuppressReason,
    UpdateAlert,
)

#: Deterministic order of decisions: the declaration order of `AlertKind` (most severe first).
KIND_ORDER: tuple[AlertKind, ...] = tuple(AlertKind)

#: Signal codes that drive an alert kind. `flare_window` drives none; it only inhibits regression.
SIGNAL_KINDS: dict[SignalCode, AlertKind] = {
    SignalCode.red_flag: AlertKind.red_flag,
    SignalCode.regression: AlertKind.regression,
    SignalCode.spreading_symptoms: AlertKind.spreading_symptoms,
    SignalCode.persistent_flare: AlertKind.persistent_flare,
    SignalCode.plateau: AlertKind.plateau,
    SignalCode.activity_decline: AlertKind.activity_decline,
}

#: Fixed summaries: short, no patient free text, no numbers (those live in `reasons`).
SUMMARIES: dict[AlertKind, str] = {
    AlertKind.red_flag: "Red-flag symptom reported; needs prompt clinical review",
    AlertKind.regression: "Symptoms or strength have regressed",
    AlertKind.spreading_symptoms: "Numbness is spreading beyond the usual nerve territory",
    AlertKind.persistent_flare: "A post-therapy flare has not settled in the expected window",
    AlertKind.plateau: "Recovery has plateaued while still symptomatic",
    AlertKind.activity_decline: "Daily activity has dropped against the patient's own baseline",
    AlertKind.disengagement: "No recent check-in",
    AlertKind.data_days_at_risk: "Few data days left to reach 16 in this 30-day period",
}

#: Kinds that trajectory updates never decide (opened and resolved by their own events or timers).
NOT_FROM_TRAJECTORIES = frozenset({AlertKind.data_days_at_risk})

#: Kinds that never escalate and are never reminded: a billing nudge pages nobody beyond its one
#: notification, which quiet hours defer like every low one (docs/safety.md H20).
NEVER_ESCALATED = frozenset({AlertKind.data_days_at_risk})

#: `ResolveAlert.reason` values.
RESOLVED_CLEARED = "condition cleared"
RESOLVED_CHECKIN = "check-in received"


def require_aware(value: datetime, name: str) -> None:
    """Raise ValueError if `value` is a naive datetime (every instant here is offset-aware)."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware")


def _higher(a: Severity, b: Severity) -> Severity:
    return b if b.rank > a.rank else a


@dataclass(frozen=True, slots=True)
class Evidence:
    """All signals of one code in one event, merged.

    `event_time` is the newest signal's; `reasons` are every signal's reasons, oldest signal
    first, duplicates (same code and detail) dropped.
    """

    event_time: datetime
    reasons: tuple[Reason, ...]


def collect_evidence(signals: Sequence[Signal]) -> dict[AlertKind, Evidence]:
    """Merge the event's signals per alert kind (the scoring engine may emit one red-flag signal
    per reporting day, and one alert covers them all)."""
    grouped: dict[AlertKind, list[Signal]] = {}
    for signal in signals:
        kind = SIGNAL_KINDS.get(signal.code)
        if kind is not None:
            grouped.setdefault(kind, []).append(signal)
    merged: dict[AlertKind, Evidence] = {}
    for kind, group in grouped.items():
        group.sort(key=lambda s: (s.event_time, s.event_id or ""))
        reasons: list[Reason] = []
        seen: set[tuple[str, str]] = set()
        for signal in group:
            for reason in signal.reasons:
                if (reason.code, reason.detail) not in seen:
                    seen.add((reason.code, reason.detail))
                    reasons.append(reason)
        merged[kind] = Evidence(event_time=group[-1].event_time, reasons=tuple(reasons))
    return merged


def is_retrospective(event_time: datetime, trigger: TriggerRef | None, policy: AlertPolicy) -> bool:
    """Whether evidence observed at `event_time` is backfill that must not page anyone.

    True only when the update's trigger exists and both were already older than
    `policy.retrospective_after` (72 h) when the trigger arrived:
    `trigger.received_at - event_time > limit` and `trigger.received_at - trigger.recorded_at > limit`.
    When the triggering observation is the one that raised the signal (the usual case) this is
    exactly "the triggering observation was older than 72 h on arrival". When a fresh observation
    triggered the update, the condition is known to hold on current data, so it is not backfill
    (e.g. an older signal opening now because a snooze expired still pages). Exactly 72 h is
    not retrospective. No trigger (a recomputation without new data): not retrospective.
    """
    if trigger is None:
        return False
    limit = policy.retrospective_after
    return trigger.received_at - event_time > limit and trigger.received_at - trigger.recorded_at > limit


def should_page(alert_retrospective: bool) -> bool:
    """Whether an alert's notifications (initial, renotify, reminders, escalation) go out at all.

    Retrospective alerts are recorded and listed but page no one, so the shell does not call
    `route` for them.
    """
    return not alert_retrospective


def _index_active(active: Sequence[AlertState], patient_id: str) -> dict[AlertKind, AlertState]:
    by_kind: dict[AlertKind, AlertState] = {}
    # Defensive and deterministic if the store ever holds two unresolved alerts of one kind:
    # the oldest one is the patient's alert of that kind, the others are left alone.
    for alert in sorted(active, key=lambda a: (a.opened_at, a.id)):
        if alert.patient_id != patient_id:
            raise ValueError(f"alert {alert.id} belongs to another patient than the event")
        if alert.status is AlertStatus.resolved:
            continue
        by_kind.setdefault(alert.kind, alert)
    return by_kind


def _open(kind: AlertKind, evidence: Evidence, event: TrajectoryUpdated, policy: AlertPolicy) -> OpenAlert:
    return OpenAlert(
        kind=kind,
        severity=DEFAULT_SEVERITY[kind],
        summary=SUMMARIES[kind],
        reasons=evidence.reasons,
        trajectory_state=event.trajectory.state,
        event_time=evidence.event_time,
        retrospective=is_retrospective(evidence.event_time, event.trigger, policy),
        engine_version=event.trajectory.engine_version,
        profile_version=event.trajectory.profile_version,
    )


def _update(alert: AlertState, evidence: Evidence, event: TrajectoryUpdated, policy: AlertPolicy) -> UpdateAlert | None:
    """The condition holds and the alert exists: refresh evidence, cancel a pending clearance."""
    as_of = event.trajectory.as_of
    if alert.clear_since is not None and as_of < alert.clear_since:
        return None  # a stale event (older than the one that started the clearance)
    state: TrajectoryState | None
    if evidence.event_time >= alert.event_time:
        summary, reasons = SUMMARIES[alert.kind], evidence.reasons
        state, event_time = event.trajectory.state, evidence.event_time
    else:  # older evidence than the alert already holds (late or replayed event): keep the newer
        summary, reasons = alert.summary, alert.reasons
        state, event_time = alert.trajectory_state, alert.event_time
    severity = _higher(alert.severity, DEFAULT_SEVERITY[alert.kind])
    promote = alert.retrospective and not is_retrospective(evidence.event_time, event.trigger, policy)
    unchanged = (
        severity == alert.severity
        and summary == alert.summary
        and reasons == alert.reasons
        and state == alert.trajectory_state
        and event_time == alert.event_time
        and alert.clear_since is None
        and not promote
    )
    if unchanged:
        return None
    return UpdateAlert(
        alert_id=alert.id,
        severity=severity,
        summary=summary,
        reasons=reasons,
        trajectory_state=state,
        event_time=event_time,
        renotify=severity.rank > alert.severity.rank or promote,
        clear_since=None,
        retrospective=False if promote else None,
    )


def _clear(alert: AlertState, event: TrajectoryUpdated, policy: AlertPolicy) -> Decision | None:
    """The condition no longer holds: start the clearance, or resolve once it has lasted."""
    if alert.kind is AlertKind.red_flag:
        return None  # red flags are resolved by a person, never automatically
    as_of = event.trajectory.as_of
    if alert.clear_since is None:
        return UpdateAlert(
            alert_id=alert.id,
            severity=alert.severity,
            summary=alert.summary,
            reasons=alert.reasons,
            trajectory_state=alert.trajectory_state,
            event_time=alert.event_time,
            renotify=False,
            clear_since=as_of,
        )
    if as_of - alert.clear_since >= policy.hysteresis:
        return ResolveAlert(alert_id=alert.id, reason=RESOLVED_CLEARED)
    return None  # still inside the hysteresis window, or a stale event


def evaluate(
    event: TrajectoryUpdated,
    active: Sequence[AlertState],
    snoozes: Sequence[SnoozeState],
    policy: AlertPolicy,
    now: datetime,
    *,
    resolved_through: Mapping[AlertKind, datetime] | None = None,
    red_flags_seen: RedFlagLedger | None = None,
) -> list[Decision]:
    """Decide what one trajectory update does to one patient's alerts.

    Arguments: `active` is the patient's unresolved alerts (open or acknowledged; resolved ones
    are ignored, another patient's raise ValueError); `snoozes` the patient's snoozes (expired
    ones, `until <= now`, are ignored); `now` the processing clock (aware). `resolved_through`
    maps a kind to the newest `event_time` among the patient's resolved alerts of that kind:
    evidence no newer than that was already handled and does not re-open the kind (without it, a
    red flag resolved by hand re-opens on the next update while the scoring engine still
    reports it). It is not used for red flags, which go by `red_flags_seen` (see below).

    Red flags (the safety rule, docs/safety.md H1): every `red_flag` signal is one observation
    (event id, recorded_at, received_at, flags). An observation whose flags are not all in
    `red_flags_seen[event_id]` is *new*; it is backfill when it arrived more than
    `policy.retrospective_after` after it was recorded. With new observations:
      - no unresolved red-flag alert: `OpenAlert`, paging unless every new one is backfill,
        whatever was resolved or acknowledged before;
      - an unresolved one: `UpdateAlert(repage=True)` when a new non-backfill observation brings
        flags the alert has not paged (or the alert is retrospective: promotion), else an
        `UpdateAlert` that records them. Red flags are never snoozed, inhibited or auto-resolved.
    Every red-flag decision lists the observations it handled in `red_flags_seen`, which the
    shell adds to the patient's ledger; the same observation delivered twice pages once.

    Per kind, at most one decision, in `KIND_ORDER`:
      - signal, no alert: `OpenAlert` (default severity), unless held back, then `Suppressed`
        with the first applicable `SuppressReason`: already_resolved, inhibited_by_red_flag
        (not for red_flag), flare_window (regression only), snoozed (not for red_flag).
      - signal and alert: `UpdateAlert` with the new evidence and `clear_since=None`, or nothing
        when that changes nothing (so a redelivered event is a no-op).
      - no signal, alert: first `UpdateAlert(clear_since=as_of)`; `ResolveAlert` once
        `as_of - clear_since >= policy.hysteresis`. Never for red_flag.
      - disengagement: only `ResolveAlert` when `event.last_checkin_at` is newer than the
        alert's `event_time` (opening is `timers.disengagement`).
      - data_days_at_risk: nothing (`billing_risk` decides it from the billing topic).
    Every `OpenAlert` carries the event trajectory's `engine_version` and `profile_version`.
    """
    require_aware(now, "now")
    handled = resolved_through or {}
    current = _index_active(active, event.trajectory.patient_id)
    evidence = collect_evidence(event.signals)
    snoozed = {s.kind for s in snoozes if s.until > now}
    flare_window = any(s.code is SignalCode.flare_window for s in event.signals)

    if event.rescore_run is not None:
        # A re-scoring is retrospective as a whole: decide as live, then strip every page.
        return retrospective_only(
            evaluate(
                event.model_copy(update={"rescore_run": None}),
                active,
                snoozes,
                policy,
                now,
                resolved_through=resolved_through,
                red_flags_seen=red_flags_seen,
            ),
            event.rescore_run,
        )
    decisions: dict[AlertKind, Decision] = {}
    # The red flag is decided first: whether it pages decides whether it inhibits the others.
    for kind in sorted(KIND_ORDER, key=lambda k: k is not AlertKind.red_flag):
        alert, ev = current.get(kind), evidence.get(kind)
        decision: Decision | None = None
        if kind in NOT_FROM_TRAJECTORIES:
            continue
        if kind is AlertKind.disengagement:
            last = event.last_checkin_at
            if alert is not None and last is not None and last > alert.event_time:
                decision = ResolveAlert(alert_id=alert.id, reason=RESOLVED_CHECKIN)
        elif kind is AlertKind.red_flag:
            decision = _red_flag(alert, ev, event, policy, red_flags_seen or {})
        elif ev is None:
            decision = _clear(alert, event, policy) if alert is not None else None
        elif alert is not None:
            decision = _update(alert, ev, event, policy)
        else:
            why = _hold_back(kind, ev, handled, snoozed, flare_window, _red_flag_pages(current, decisions))
            decision = Suppressed(kind=kind, why=why) if why is not None else _open(kind, ev, event, policy)
        if decision is not None:
            decisions[kind] = decision
    return [decisions[k] for k in KIND_ORDER if k in decisions]


def retrospective_only(decisions: Sequence[Decision], run: str) -> list[Decision]:
    """The decisions of a re-scoring event (`TrajectoryUpdated.rescore_run`): they page nobody.

    Safety rule H18 (docs/safety.md): an opening is retrospective (no page, no paged flags); an
    update never re-notifies, re-pages or promotes a retrospective alert to paging; each carries
    `run` for the audit. Red-flag observations a re-scoring surfaces are *not* recorded in the
    red-flag ledger: a re-scoring must never mark an observation as handled, so one it is the
    first to see still pages when a live update reports it (H1). Resolutions (after hysteresis)
    and suppressions are kept. Pure.
    """
    out: list[Decision] = []
    for d in decisions:
        if isinstance(d, OpenAlert):
            out.append(replace(d, retrospective=True, paged_flags=frozenset(), red_flags_seen={}, rescore_run=run))
        elif isinstance(d, UpdateAlert):
            out.append(
                replace(
                    d,
                    renotify=False,
                    repage=False,
                    retrospective=None,
                    paged_flags=None,
                    red_flags_seen={},
                    rescore_run=run,
                )
            )
        elif isinstance(d, ResolveAlert):
            out.append(replace(d, rescore_run=run))
        else:
            out.append(d)
    return out


@dataclass(frozen=True, slots=True)
class RedFlagObservation:
    """One red-flag observation as carried by a `red_flag` signal."""

    key: str
    recorded_at: datetime
    received_at: datetime | None
    flags: frozenset[str]

    def backfill(self, trigger: TriggerRef | None, policy: AlertPolicy) -> bool:
        """Older than `retrospective_after` when it arrived (without its own arrival time: judged
        as any evidence, against the update's trigger)."""
        if self.received_at is not None:
            return self.received_at - self.recorded_at > policy.retrospective_after
        return is_retrospective(self.recorded_at, trigger, policy)


#: The flag name used for a red-flag signal that names no flags (events of an older scoring).
UNNAMED_RED_FLAG = "red_flag"


def red_flag_observations(signals: Sequence[Signal]) -> list[RedFlagObservation]:
    """The observations behind an event's `red_flag` signals, oldest first; one per (event id,
    flags). A signal without an event id is keyed by its event time."""
    out: dict[tuple[str, frozenset[str]], RedFlagObservation] = {}
    for s in signals:
        if s.code is not SignalCode.red_flag:
            continue
        key = s.event_id or f"@{s.event_time.isoformat()}"
        flags = frozenset(s.flags) or frozenset({UNNAMED_RED_FLAG})
        prior = out.get((key, flags))
        if prior is None or (s.event_time, s.received_at or s.event_time) > (
            prior.recorded_at,
            prior.received_at or prior.recorded_at,
        ):
            out[(key, flags)] = RedFlagObservation(key, s.event_time, s.received_at, flags)
    return sorted(out.values(), key=lambda o: (o.recorded_at, o.key, sorted(o.flags)))


def _seen(observations: Sequence[RedFlagObservation], ledger: RedFlagLedger) -> dict[str, RedFlagSeen]:
    """Ledger entries that record `observations` (merged with what the ledger has for them)."""
    out: dict[str, RedFlagSeen] = {}
    for o in observations:
        prior = out.get(o.key) or ledger.get(o.key)
        flags = o.flags | (prior.flags if prior else frozenset())
        at = max(o.recorded_at, prior.recorded_at) if prior else o.recorded_at
        out[o.key] = RedFlagSeen(recorded_at=at, flags=flags)
    return out


def _red_flag(
    alert: AlertState | None,
    evidence: Evidence | None,
    event: TrajectoryUpdated,
    policy: AlertPolicy,
    ledger: RedFlagLedger,
) -> Decision | None:
    """The red-flag decision of one event (see `evaluate`)."""
    observations = red_flag_observations(event.signals)
    new = [o for o in observations if not o.flags <= (ledger[o.key].flags if o.key in ledger else frozenset())]
    if evidence is None or not observations:
        return None  # no red flag in the window; red-flag alerts are never resolved automatically
    live = [o for o in new if not o.backfill(event.trigger, policy)]
    if alert is None:
        if not new:
            return Suppressed(kind=AlertKind.red_flag, why=SuppressReason.already_resolved)
        trigger = live or new
        return OpenAlert(
            kind=AlertKind.red_flag,
            severity=DEFAULT_SEVERITY[AlertKind.red_flag],
            summary=SUMMARIES[AlertKind.red_flag],
            reasons=evidence.reasons,
            trajectory_state=event.trajectory.state,
            event_time=max(o.recorded_at for o in trigger),
            retrospective=not live,
            paged_flags=frozenset().union(*(o.flags for o in live)),
            red_flags_seen=_seen(new, ledger),
            engine_version=event.trajectory.engine_version,
            profile_version=event.trajectory.profile_version,
        )
    if not new:
        return None  # nothing it has not handled: a replayed or repeated event changes nothing
    live_flags = frozenset().union(*(o.flags for o in live))
    repage = bool(live) and (alert.retrospective or not live_flags <= alert.paged_flags)
    severity = _higher(alert.severity, DEFAULT_SEVERITY[AlertKind.red_flag])
    update = UpdateAlert(
        alert_id=alert.id,
        severity=severity,
        summary=SUMMARIES[AlertKind.red_flag],
        reasons=evidence.reasons,
        trajectory_state=event.trajectory.state,
        event_time=max(alert.event_time, *(o.recorded_at for o in new)),
        renotify=severity.rank > alert.severity.rank and not alert.retrospective and not repage,
        clear_since=None,
        red_flags_seen=_seen(new, ledger),
    )
    if repage:
        # New flags, or a backfilled alert confirmed by a live report: page as new. Promotion of a
        # retrospective red flag is always a re-page, driven by the observations' own arrival times.
        return replace(update, retrospective=False, repage=True, paged_flags=alert.paged_flags | live_flags)
    return update


def _red_flag_pages(current: Mapping[AlertKind, AlertState], decisions: Mapping[AlertKind, Decision]) -> bool:
    """Whether a red flag is paging someone: an unresolved non-retrospective red-flag alert, or
    one this event opens or promotes. Only then does it inhibit lower alerts; a red flag that
    paged no one must not silence the rest."""
    decided = decisions.get(AlertKind.red_flag)
    if isinstance(decided, OpenAlert):
        return not decided.retrospective
    if isinstance(decided, UpdateAlert) and decided.retrospective is False:
        return True
    alert = current.get(AlertKind.red_flag)
    return alert is not None and not alert.retrospective


def _hold_back(
    kind: AlertKind,
    evidence: Evidence,
    handled: Mapping[AlertKind, datetime],
    snoozed: set[AlertKind],
    flare_window: bool,
    red_flag_pages: bool,
) -> SuppressReason | None:
    done = handled.get(kind)
    if done is not None and evidence.event_time <= done:
        return SuppressReason.already_resolved
    if red_flag_pages:
        return SuppressReason.inhibited_by_red_flag
    if kind is AlertKind.regression and flare_window:
        return SuppressReason.flare_window
    if kind in snoozed:
        return SuppressReason.snoozed
    return None


# --- Billing: data days at risk ----------------------------------------------------------------


def billing_risk(
    event: DataDaysAtRisk | DataDaysRiskEnded,
    active: AlertState | None,
    snoozes: Sequence[SnoozeState],
    now: datetime,
    *,
    resolved_through: datetime | None = None,
) -> Decision | None:
    """Decide what one billing event does to the patient's `data_days_at_risk` alert.

    `active` is the patient's unresolved alert of that kind (another kind or patient: ValueError);
    `resolved_through` the newest `event_time` of a resolved one. The alert's `event_time` is the
    raise's `raised_at`, which identifies the period's raise (scoring raises once per period).
      - `DataDaysAtRisk`, no alert: `OpenAlert` (low, never retrospective), unless that raise was
        already handled (`raised_at <= resolved_through`: a redelivery after an automatic or
        manual resolve) or the kind is snoozed (`Suppressed`). With an alert: nothing (one per
        period; a redelivery is a no-op).
      - `DataDaysRiskEnded`: `ResolveAlert` when the alert is this raise's or an older one
        (`event_time <= raised_at`); else nothing (a redelivered end of an earlier period never
        resolves the next period's alert).
    """
    require_aware(now, "now")
    if active is not None and (active.kind is not AlertKind.data_days_at_risk or active.patient_id != event.patient_id):
        raise ValueError("active must be this patient's data_days_at_risk alert")
    kind = AlertKind.data_days_at_risk
    if isinstance(event, DataDaysRiskEnded):
        if active is not None and active.event_time <= event.raised_at:
            return ResolveAlert(alert_id=active.id, reason=f"data days: {event.reason}")
        return None
    if active is not None:
        return None
    if resolved_through is not None and event.raised_at <= resolved_through:
        return Suppressed(kind=kind, why=SuppressReason.already_resolved)
    if any(s.kind is kind and s.until > now for s in snoozes):
        return Suppressed(kind=kind, why=SuppressReason.snoozed)
    remaining = event.data_days_possible - event.data_days
    detail = (
        f"{event.data_days} data days in the period {event.period_start.isoformat()} to "
        f"{event.period_end.isoformat()}; {event.needed} more needed for 16 with {remaining} days left"
    )
    return OpenAlert(
        kind=kind,
        severity=DEFAULT_SEVERITY[kind],
        summary=SUMMARIES[kind],
        reasons=(Reason(code="data_days_at_risk", detail=detail),),
        trajectory_state=None,
        event_time=event.raised_at,
        retrospective=False,
    )


# --- Routing ----------------------------------------------------------------------------------


def member_recipients(member: Member) -> list[Recipient]:
    """One recipient per channel the member has: webhook first, then e-mail."""
    out: list[Recipient] = []
    if member.webhook_url:
        out.append(Recipient(member.member_id, Channel.webhook, member.webhook_url))
    if member.email:
        out.append(Recipient(member.member_id, Channel.email, member.email))
    return out


def unique_recipients(recipients: Sequence[Recipient]) -> list[Recipient]:
    """Drop repeats of (member, channel), keeping the first; order otherwise preserved."""
    seen: set[tuple[str, Channel]] = set()
    out: list[Recipient] = []
    for r in recipients:
        if (r.member_id, r.channel) not in seen:
            seen.add((r.member_id, r.channel))
            out.append(r)
    return out


def route(severity: Severity, members: Sequence[Member]) -> list[Recipient]:
    """Initial recipients: every member whose `min_severity` admits the alert, on each channel.

    A member admits a severity when `severity.rank >= member.min_severity.rank`. Members keep
    their order; a member listed twice is notified once per channel. Members without any channel
    are skipped. Empty result: nobody to notify (the shell records that). Not called for
    retrospective alerts (see `should_page`).
    """
    out: list[Recipient] = []
    for m in members:
        if severity.rank >= m.min_severity.rank:
            out.extend(member_recipients(m))
    return unique_recipients(out)


def quiet_hours_delay(severity: Severity, policy: AlertPolicy, now: datetime) -> datetime | None:
    """When a notification sent at `now` must be deferred to, or None to send it now.

    Only low and medium notifications are deferred, and only while `now`, read on the wall clock
    of `policy.timezone`, is inside [quiet_hours_start, quiet_hours_end) (the window may wrap
    midnight; no window when either bound is None or they are equal). The result is the UTC
    instant the window ends: deferred, never dropped. High and critical: always None. Around
    DST changes the end is the first instant after `now` whose local wall time is the end time
    (a non-existent end time, in the spring gap, falls one hour later in local time).
    """
    require_aware(now, "now")
    start, end = policy.quiet_hours_start, policy.quiet_hours_end
    if severity.rank >= Severity.high.rank or start is None or end is None or start == end:
        return None
    zone = ZoneInfo(policy.timezone)
    local = now.astimezone(zone)
    wall = local.time()
    end_day: date = local.date()
    if start < end:
        inside = start <= wall < end
    else:
        inside = wall >= start or wall < end
        if wall >= start:
            end_day += timedelta(days=1)
    if not inside:
        return None
    for fold in (0, 1):
        resume = datetime.combine(end_day, end, tzinfo=zone).replace(fold=fold).astimezone(UTC)
        if resume > now:
            return resume
    return None
