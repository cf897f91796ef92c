"""Pure application of alert decisions to one patient's alert book.

The rules (`rules.evaluate`, `timers.sweep`, `timers.disengagement`) decide; this module turns
their decisions, and the care team's actions, into the patient's next `PatientBook` and the
ordered list of `Effect`s the shell must persist in one transaction (alert rows, audit entries,
queued notifications, lifecycle events, the red-flag ledger). Nothing here does I/O, reads a
clock or draws random numbers: `now` and the alert-id factory are passed in. The same functions
drive the live shell (`services.alerts.apply`), the offline replay and the model-based safety
test, so what is tested is what runs.

Paging: every queued notification goes to recipients chosen by `rules.route` (initial, re-page,
severity rise), `timers.escalation_recipients` or `timers.reminder_recipients`, all of which
honour each member's `min_severity`; retrospective alerts queue nothing; low and medium
notifications are deferred to the end of quiet hours, high and critical never.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from schemas.alerts import AlertKind, AlertStatus
from services.alerts import rules, timers
from services.alerts.model import (
    AlertPolicy,
    AlertState,
    Decision,
    Escalate,
    Member,
    OpenAlert,
    Recipient,
    RedFlagSeen,
    Remind,
    ResolveAlert,
    SnoozeState,
    Suppressed,
    TimerDecision,
    UpdateAlert,
)

#: Ledger entries older than this before the newest one are dropped: the scoring engine reports a
#: red flag for 72 h, so an observation this old can no longer arrive as a live signal.
LEDGER_KEEP = timedelta(days=14)

#: Notification reasons (the `reason` column of alerts.notifications).
INITIAL = "initial"
REPAGED = "repaged"
SEVERITY_RAISED = "severity_raised"
ESCALATION = "escalation"
REMINDER = "reminder"


@dataclass(frozen=True, slots=True)
class PatientBook:
    """What the pure core knows of one patient's alerts, as the shell loaded it under lock.

    `alerts` holds the unresolved alerts by id; `resolved_through` the newest event time of a
    resolved alert per kind; `red_flags_seen` the red-flag ledger (see `rules.evaluate`).
    """

    tenant_id: str
    patient_id: str
    alerts: Mapping[str, AlertState] = field(default_factory=dict)
    resolved_through: Mapping[AlertKind, datetime] = field(default_factory=dict)
    red_flags_seen: Mapping[str, RedFlagSeen] = field(default_factory=dict)
    snoozes: tuple[SnoozeState, ...] = ()
    members: tuple[Member, ...] = ()

    def active(self) -> list[AlertState]:
        """Unresolved alerts, oldest first."""
        return sorted(self.alerts.values(), key=lambda a: (a.opened_at, a.id))

    def of_kind(self, kind: AlertKind) -> AlertState | None:
        return next((a for a in self.active() if a.kind is kind), None)


# --- Effects ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StoreAlert:
    """Write the alert row as `state` (insert when `new`; the store's unique index may refuse a
    second unresolved alert of a kind, and then every later effect on this alert id is skipped)."""

    state: AlertState
    new: bool


@dataclass(frozen=True, slots=True)
class QueueNotifications:
    """One notification per recipient in the outbox, sent from `not_before`."""

    alert_id: str
    recipients: tuple[Recipient, ...]
    reason: str
    not_before: datetime
    severity: str


@dataclass(frozen=True, slots=True)
class Audit:
    alert_id: str
    actor: str
    action: str
    detail: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Publish:
    """The lifecycle event (alerts topic) and the live-stream notice for the alert's stored row."""

    alert_id: str
    action: str
    actor: str


@dataclass(frozen=True, slots=True)
class RecordRedFlags:
    """The patient's red-flag ledger after this change (already merged and pruned)."""

    ledger: Mapping[str, RedFlagSeen]


Effect = StoreAlert | QueueNotifications | Audit | Publish | RecordRedFlags


def merge_ledger(ledger: Mapping[str, RedFlagSeen], seen: Mapping[str, RedFlagSeen]) -> dict[str, RedFlagSeen]:
    """`ledger` with `seen` merged in (flags united per event id), pruned to `LEDGER_KEEP`."""
    out = dict(ledger)
    for key, entry in seen.items():
        prior = out.get(key)
        out[key] = (
            entry
            if prior is None
            else RedFlagSeen(max(prior.recorded_at, entry.recorded_at), prior.flags | entry.flags)
        )
    if not out:
        return out
    newest = max(e.recorded_at for e in out.values())
    return {k: e for k, e in out.items() if newest - e.recorded_at <= LEDGER_KEEP}


# --- Applying decisions ----------------------------------------------------------------------


@dataclass(slots=True)
class _Plan:
    """Mutable scratch state of one planning call (never escapes this module)."""

    alerts: dict[str, AlertState]
    resolved_through: dict[AlertKind, datetime]
    ledger: dict[str, RedFlagSeen]
    effects: list[Effect] = field(default_factory=list)
    ledger_changed: bool = False

    def book(self, base: PatientBook) -> PatientBook:
        return replace(
            base,
            alerts=dict(self.alerts),
            resolved_through=dict(self.resolved_through),
            red_flags_seen=dict(self.ledger),
        )

    def see(self, seen: Mapping[str, RedFlagSeen]) -> None:
        if seen:
            self.ledger = merge_ledger(self.ledger, seen)
            self.ledger_changed = True

    def page(
        self, state: AlertState, recipients: Sequence[Recipient], reason: str, policy: AlertPolicy, now: datetime
    ) -> AlertState:
        """Queue `recipients` (deferred by quiet hours for low/medium); the state with
        `last_notified_at` set when anyone was queued."""
        if not recipients:
            return state
        not_before = rules.quiet_hours_delay(state.severity, policy, now) or now
        self.effects.append(QueueNotifications(state.id, tuple(recipients), reason, not_before, state.severity.value))
        return replace(state, last_notified_at=now)


def _start(book: PatientBook) -> _Plan:
    return _Plan(dict(book.alerts), dict(book.resolved_through), dict(book.red_flags_seen))


def _finish(plan: _Plan, book: PatientBook) -> tuple[PatientBook, list[Effect]]:
    if plan.ledger_changed:
        plan.effects.append(RecordRedFlags(dict(plan.ledger)))
    return plan.book(book), plan.effects


def apply_decisions(
    book: PatientBook,
    decisions: Sequence[Decision],
    policy: AlertPolicy,
    now: datetime,
    new_id: Callable[[], str],
) -> tuple[PatientBook, list[Effect]]:
    """Apply `rules.evaluate` (or `timers.disengagement`) decisions; returns the new book and the
    effects to persist in order. `Suppressed` decisions change nothing (the shell counts them)."""
    rules.require_aware(now, "now")
    plan = _start(book)
    members = book.members
    for d in decisions:
        if isinstance(d, OpenAlert):
            _open(plan, book, d, members, policy, now, new_id())
        elif isinstance(d, UpdateAlert):
            _update(plan, d, members, policy, now)
        elif isinstance(d, ResolveAlert):
            run = {"rescore_run": d.rescore_run} if d.rescore_run is not None else {}
            _resolve(plan, d.alert_id, "system", "auto", {"reason": d.reason, **run}, now)
        elif isinstance(d, Suppressed):
            continue
        if isinstance(d, OpenAlert | UpdateAlert) and d.rescore_run is not None:
            _audit_run(plan, d.rescore_run)
    return _finish(plan, book)


def _audit_run(plan: _Plan, run: str) -> None:
    """Name the re-scoring run in the audit of the alert its decision just stored (if any)."""
    stored = next((e for e in reversed(plan.effects) if isinstance(e, StoreAlert)), None)
    if stored is not None:
        plan.effects.append(Audit(stored.state.id, "system", "rescored", {"rescore_run": run}))


def _open(
    plan: _Plan,
    book: PatientBook,
    d: OpenAlert,
    members: Sequence[Member],
    policy: AlertPolicy,
    now: datetime,
    alert_id: str,
) -> None:
    if any(a.kind is d.kind for a in plan.alerts.values()):
        return  # one unresolved alert per kind (the store's unique index says the same)
    state = AlertState.opened(d, alert_id, book.patient_id, now)
    plan.see(d.red_flags_seen)
    effects: list[Effect] = [
        Audit(
            alert_id,
            "system",
            "opened",
            {"kind": d.kind.value, "severity": d.severity.value, "retrospective": d.retrospective},
        ),
    ]
    if d.paged_flags:
        effects.append(Audit(alert_id, "system", "red_flags_paged", {"flags": sorted(d.paged_flags)}))
    plan.effects.append(StoreAlert(state, new=True))
    plan.effects.extend(effects)
    if d.retrospective:
        plan.effects.append(Audit(alert_id, "system", "not_paged", {"why": "retrospective"}))
    else:
        recipients = rules.route(d.severity, members)
        state = plan.page(state, recipients, INITIAL, policy, now)
        if not recipients:
            plan.effects.append(Audit(alert_id, "system", "unrouted", {"severity": d.severity.value}))
        else:
            plan.effects.append(StoreAlert(state, new=False))
    plan.alerts[alert_id] = state
    plan.effects.append(Publish(alert_id, "opened", "system"))


def _update(plan: _Plan, d: UpdateAlert, members: Sequence[Member], policy: AlertPolicy, now: datetime) -> None:
    cur = plan.alerts.get(d.alert_id)
    if cur is None:
        return
    plan.see(d.red_flags_seen)
    state = replace(
        cur,
        severity=d.severity,
        summary=d.summary,
        reasons=d.reasons,
        trajectory_state=d.trajectory_state,
        event_time=d.event_time,
        clear_since=d.clear_since,
        updated_at=now,
        retrospective=cur.retrospective if d.retrospective is None else d.retrospective,
    )
    if d.repage:
        new_flags = sorted((d.paged_flags or frozenset()) - cur.paged_flags)
        state = replace(
            state,
            status=AlertStatus.open,
            acknowledged_by=None,
            acknowledged_at=None,
            escalation_level=0,
            paged_at=now,
            paged_flags=d.paged_flags or cur.paged_flags,
        )
        plan.effects.append(StoreAlert(state, new=False))
        plan.effects.append(Audit(d.alert_id, "system", "repaged", {"new_flags": new_flags, "was": cur.status.value}))
        state = plan.page(state, rules.route(state.severity, members), REPAGED, policy, now)
        action = "repaged"
    else:
        plan.effects.append(StoreAlert(state, new=False))
        detail: dict[str, Any] = {
            "severity": d.severity.value,
            "clearing_since": d.clear_since.isoformat() if d.clear_since else None,
        }
        plan.effects.append(Audit(d.alert_id, "system", "updated", detail))
        if d.renotify and rules.should_page(state.retrospective):
            state = plan.page(state, rules.route(state.severity, members), SEVERITY_RAISED, policy, now)
        action = "updated"
    plan.effects.append(StoreAlert(state, new=False))
    plan.alerts[d.alert_id] = state
    plan.effects.append(Publish(d.alert_id, action, "system"))


def _resolve(
    plan: _Plan, alert_id: str, actor: str, resolution: str, detail: Mapping[str, Any], now: datetime
) -> AlertState | None:
    cur = plan.alerts.pop(alert_id, None)
    if cur is None:
        return None
    state = replace(
        cur, status=AlertStatus.resolved, resolution=resolution, resolved_at=now, updated_at=now, clear_since=None
    )
    done = plan.resolved_through.get(cur.kind)
    plan.resolved_through[cur.kind] = cur.event_time if done is None else max(done, cur.event_time)
    plan.effects.append(StoreAlert(state, new=False))
    plan.effects.append(Audit(alert_id, actor, "resolved", {"resolution": resolution, **detail}))
    plan.effects.append(Publish(alert_id, "resolved", actor))
    return state


# --- Timers ----------------------------------------------------------------------------------


def apply_timers(
    book: PatientBook, decisions: Sequence[TimerDecision], policy: AlertPolicy, now: datetime
) -> tuple[PatientBook, list[Effect]]:
    """Apply `timers.sweep` decisions (escalations, reminders) of this patient's alerts."""
    rules.require_aware(now, "now")
    plan = _start(book)
    for d in decisions:
        cur = plan.alerts.get(d.alert_id)
        if cur is None:
            continue
        if isinstance(d, Escalate):
            recipients = timers.escalation_recipients(d.roles, book.members, cur.severity)
            state = replace(cur, escalation_level=d.level, updated_at=now)
            plan.effects.append(StoreAlert(state, new=False))
            plan.effects.append(
                Audit(
                    d.alert_id,
                    "system",
                    "escalated" if recipients else "escalation_unrouted",
                    {
                        "level": d.level,
                        "roles": [r.value for r in d.roles],
                        "recipients": len(recipients),
                        "severity": cur.severity.value,
                    },
                )
            )
            state = plan.page(state, recipients, ESCALATION, policy, now)
            plan.effects.append(StoreAlert(state, new=False))
            plan.effects.append(Publish(d.alert_id, "escalated", "system"))
        elif isinstance(d, Remind):
            recipients = timers.reminder_recipients(cur, book.members, policy)
            state = plan.page(cur, recipients, REMINDER, policy, now)
            plan.effects.append(StoreAlert(state, new=False))
            plan.effects.append(Audit(d.alert_id, "system", "reminded", {"recipients": len(recipients)}))
        else:
            continue
        plan.alerts[d.alert_id] = state
    return _finish(plan, book)


# --- Care-team actions -----------------------------------------------------------------------


class ActionRefused(Exception):
    """A care-team action that the alert's state does not allow (the API answers 409)."""


def _action_detail(note: str | None) -> dict[str, Any]:
    """Audit detail of a care-team action: the care team's own note is kept in the audit."""
    return {"note_present": note is not None, **({"note": note} if note is not None else {})}


def acknowledge(
    book: PatientBook, alert_id: str, by: str, note: str | None, now: datetime
) -> tuple[PatientBook, list[Effect]]:
    """Acknowledge an open alert; acknowledging an acknowledged alert changes nothing.
    Raises ActionRefused for an alert not in the book (resolved)."""
    cur = book.alerts.get(alert_id)
    if cur is None:
        raise ActionRefused("the alert is already resolved")
    if cur.status is AlertStatus.acknowledged:
        return book, []
    plan = _start(book)
    state = replace(cur, status=AlertStatus.acknowledged, acknowledged_by=by, acknowledged_at=now, updated_at=now)
    plan.alerts[alert_id] = state
    plan.effects.append(StoreAlert(state, new=False))
    plan.effects.append(Audit(alert_id, by, "acknowledged", _action_detail(note)))
    plan.effects.append(Publish(alert_id, "acknowledged", by))
    return _finish(plan, book)


def resolve(
    book: PatientBook, alert_id: str, by: str, note: str | None, now: datetime
) -> tuple[PatientBook, list[Effect]]:
    """Resolve an alert by hand (any kind, red flags included). Raises ActionRefused when it is
    not in the book (already resolved)."""
    if alert_id not in book.alerts:
        raise ActionRefused("the alert is already resolved")
    plan = _start(book)
    _resolve(plan, alert_id, by, "manual", _action_detail(note), now)
    return _finish(plan, book)


def notifications(effects: Sequence[Effect]) -> list[QueueNotifications]:
    """The notifications among `effects` (what would page), in order."""
    return [e for e in effects if isinstance(e, QueueNotifications)]
