"""Unit tests of the pure alert rules (services/alerts/rules.py) and the tenant policy parser."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, time, timedelta
from typing import Any, Literal
from uuid import UUID

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.alerts import DEFAULT_SEVERITY, AlertKind, AlertStatus, Channel
from schemas.common import Reason, Role, Severity
from schemas.events import TrajectoryUpdated, TriggerRef
from schemas.trajectory import Signal, SignalCode, Trajectory, TrajectoryState
from services.alerts.book import PatientBook, StoreAlert, apply_decisions
from services.alerts.model import (
    AlertPolicy,
    AlertState,
    Decision,
    EscalationStep,
    Member,
    OpenAlert,
    Recipient,
    RedFlagSeen,
    ResolveAlert,
    SnoozeState,
    Suppressed,
    SuppressReason,
    UpdateAlert,
    policy_from_dict,
    policy_to_dict,
)
from services.alerts.rules import (
    KIND_ORDER,
    RESOLVED_CHECKIN,
    RESOLVED_CLEARED,
    SIGNAL_KINDS,
    SUMMARIES,
    UNNAMED_RED_FLAG,
    collect_evidence,
    evaluate,
    is_retrospective,
    quiet_hours_delay,
    route,
    should_page,
)

T0 = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
PID = "pt-0042"
POLICY = AlertPolicy()
H = timedelta(hours=1)
CODE_OF = {kind: code for code, kind in SIGNAL_KINDS.items()}
SIGNAL_DRIVEN = tuple(k for k in KIND_ORDER if k in CODE_OF)  # not disengagement, not data_days_at_risk
LOWER = tuple(k for k in SIGNAL_DRIVEN if k is not AlertKind.red_flag)


def reason(code: str = "r", detail: str = "d") -> Reason:
    return Reason(code=code, detail=detail)


def sig(
    code: SignalCode | AlertKind,
    at: datetime = T0,
    reasons: Sequence[Reason] = (),
    event_id: str | None = None,
) -> Signal:
    sc = code if isinstance(code, SignalCode) else CODE_OF[code]
    rs = list(reasons) or [reason(f"{sc.value}_reason", f"{sc.value} detail")]
    return Signal(code=sc, event_time=at, event_id=event_id, reasons=rs)


def ev(
    *signals: Signal,
    as_of: datetime = T0,
    state: TrajectoryState = TrajectoryState.worsening,
    trigger: TriggerRef | Literal["fresh"] | None = "fresh",
    last_checkin_at: datetime | None = None,
    engine_version: str | None = None,
    profile_version: str | None = None,
) -> TrajectoryUpdated:
    if trigger == "fresh":
        trigger = TriggerRef(event_id="obs-1", recorded_at=as_of, received_at=as_of + timedelta(minutes=1))
    return TrajectoryUpdated(
        tenant_id="t1",
        event_id=UUID(int=1),
        trajectory=Trajectory(
            patient_id=PID,
            state=state,
            as_of=as_of,
            engine_version=engine_version,
            profile_version=profile_version,
        ),
        state_changed=False,
        signals=list(signals),
        trigger=trigger,
        last_checkin_at=last_checkin_at,
        computed_at=as_of + timedelta(minutes=1),
    )


def stored(decision: OpenAlert, now: datetime = T0, alert_id: str | None = None) -> AlertState:
    """What the shell stores for an OpenAlert."""
    return AlertState.opened(decision, alert_id or f"al-{decision.kind.value}", PID, now)


def alert_for(kind: AlertKind, event: TrajectoryUpdated, **changes: Any) -> AlertState:
    """The stored alert that `event` would have opened for `kind`, with `changes` applied."""
    decisions = evaluate(event, [], [], POLICY, T0)
    opened = next(d for d in decisions if isinstance(d, OpenAlert) and d.kind is kind)
    return dataclasses.replace(stored(opened), **changes)


def apply(active: Sequence[AlertState], decisions: Iterable[Decision], now: datetime) -> list[AlertState]:
    """A minimal stand-in for the shell: apply decisions to the stored alerts."""
    by_id = {a.id: a for a in active}
    for d in decisions:
        if isinstance(d, OpenAlert):
            a = stored(d, now)
            by_id[a.id] = a
        elif isinstance(d, UpdateAlert):
            a = by_id[d.alert_id]
            by_id[a.id] = dataclasses.replace(
                a,
                severity=d.severity,
                summary=d.summary,
                reasons=d.reasons,
                trajectory_state=d.trajectory_state,
                event_time=d.event_time,
                clear_since=d.clear_since,
                retrospective=a.retrospective if d.retrospective is None else d.retrospective,
                updated_at=now,
                paged_flags=d.paged_flags if d.paged_flags is not None else a.paged_flags,
            )
        elif isinstance(d, ResolveAlert):
            del by_id[d.alert_id]
    return list(by_id.values())


def kinds(decisions: Sequence[Decision]) -> list[AlertKind]:
    out: list[AlertKind] = []
    for d in decisions:
        if isinstance(d, OpenAlert | Suppressed):
            out.append(d.kind)
    return out


# --- Opening ------------------------------------------------------------------------------------


def test_no_signals_and_no_alerts_decides_nothing() -> None:
    assert evaluate(ev(), [], [], POLICY, T0) == []


def test_flare_window_alone_opens_nothing() -> None:
    assert evaluate(ev(sig(SignalCode.flare_window)), [], [], POLICY, T0) == []


@pytest.mark.parametrize("kind", SIGNAL_DRIVEN)
def test_signal_without_alert_opens_with_default_severity(kind: AlertKind) -> None:
    r = reason("x", "pain 3 -> 6 since 2026-11-14")
    at = T0 - 2 * H
    event = ev(sig(kind, at=at, reasons=[r]), state=TrajectoryState.plateau)
    red = kind is AlertKind.red_flag
    key = f"@{at.isoformat()}"
    assert evaluate(event, [], [], POLICY, T0) == [
        OpenAlert(
            kind=kind,
            severity=DEFAULT_SEVERITY[kind],
            summary=SUMMARIES[kind],
            reasons=(r,),
            trajectory_state=TrajectoryState.plateau,
            event_time=at,
            retrospective=False,
            paged_flags=frozenset({UNNAMED_RED_FLAG}) if red else frozenset(),
            red_flags_seen={key: RedFlagSeen(at, frozenset({UNNAMED_RED_FLAG}))} if red else {},
        )
    ]


@pytest.mark.parametrize("kind", SIGNAL_DRIVEN)
@pytest.mark.parametrize("run", [None, "run-1"])
def test_openings_record_the_trajectory_engine_and_profile_versions(kind: AlertKind, run: str | None) -> None:
    event = ev(sig(kind, at=T0 - H), engine_version="engine-7", profile_version="prof-abc")
    [d] = evaluate(event.model_copy(update={"rescore_run": run}), [], [], POLICY, T0)
    assert isinstance(d, OpenAlert)
    assert (d.engine_version, d.profile_version) == ("engine-7", "prof-abc")
    state = stored(d)
    assert (state.engine_version, state.profile_version) == ("engine-7", "prof-abc")
    # An update without versions opens alerts without them.
    [bare] = evaluate(ev(sig(kind, at=T0 - H)), [], [], POLICY, T0)
    assert isinstance(bare, OpenAlert) and bare.engine_version is None and bare.profile_version is None


def test_later_updates_keep_the_versions_of_the_opening() -> None:
    kind = AlertKind.regression
    first = ev(sig(kind, at=T0 - 2 * H), as_of=T0 - 2 * H, engine_version="engine-7", profile_version="prof-a")
    book = PatientBook(tenant_id="t1", patient_id=PID)
    book, _ = apply_decisions(book, evaluate(first, [], [], POLICY, T0 - 2 * H), POLICY, T0 - 2 * H, lambda: "al-1")
    later = ev(sig(kind, at=T0, reasons=[reason("new")]), engine_version="engine-8", profile_version="prof-b")
    [d] = evaluate(later, book.active(), [], POLICY, T0)
    assert isinstance(d, UpdateAlert)
    book, effects = apply_decisions(book, [d], POLICY, T0, lambda: "al-2")
    [alert] = book.active()
    assert alert.reasons == (reason("new"),) and alert.updated_at == T0
    assert (alert.engine_version, alert.profile_version) == ("engine-7", "prof-a")
    assert all(
        (e.state.engine_version, e.state.profile_version) == ("engine-7", "prof-a")
        for e in effects
        if isinstance(e, StoreAlert)
    )


def test_summaries_are_short_fixed_sentences() -> None:
    for kind in KIND_ORDER:
        assert 0 < len(SUMMARIES[kind]) <= 80
        assert "\n" not in SUMMARIES[kind]


def test_several_signals_of_one_code_open_one_alert_with_merged_evidence() -> None:
    a, b, c = reason("red_flag_reported", "foot_drop"), reason("red_flag_reported", "fever"), reason("x", "y")
    event = ev(
        sig(SignalCode.red_flag, at=T0 - H, reasons=[b, c]),
        sig(SignalCode.red_flag, at=T0 - 30 * H, reasons=[a, c]),
    )
    [decision] = evaluate(event, [], [], POLICY, T0)
    assert isinstance(decision, OpenAlert)
    assert decision.event_time == T0 - H  # the newest observation
    assert decision.reasons == (a, c, b)  # oldest signal first, duplicates dropped


def test_collect_evidence_ignores_flare_window_and_breaks_ties_by_event_id() -> None:
    e = collect_evidence(
        [
            sig(SignalCode.flare_window),
            sig(SignalCode.plateau, reasons=[reason("b")], event_id="2"),
            sig(SignalCode.plateau, reasons=[reason("a")], event_id="1"),
        ]
    )
    assert set(e) == {AlertKind.plateau}
    assert [r.code for r in e[AlertKind.plateau].reasons] == ["a", "b"]


def test_decisions_follow_kind_order_whatever_the_signal_order() -> None:
    signals = [sig(k) for k in reversed(LOWER)]
    decisions = evaluate(ev(*signals), [], [], POLICY, T0)
    assert kinds(decisions) == list(LOWER)


# --- Updating and no-ops ----------------------------------------------------------------------


def test_same_evidence_again_is_a_no_op() -> None:
    event = ev(sig(AlertKind.regression))
    alert = alert_for(AlertKind.regression, event)
    assert evaluate(event, [alert], [], POLICY, T0 + H) == []


def test_redelivered_event_after_applying_its_decisions_is_a_no_op() -> None:
    event = ev(sig(AlertKind.regression), sig(AlertKind.plateau), sig(AlertKind.activity_decline))
    first = evaluate(event, [], [], POLICY, T0)
    assert len(first) == 3
    active = apply([], first, T0)
    assert evaluate(event, active, [], POLICY, T0 + H) == []


def test_new_reasons_update_without_renotify() -> None:
    alert = alert_for(AlertKind.regression, ev(sig(AlertKind.regression)))
    newer = reason("pain_regressed", "pain 3 -> 7 since 2026-11-14")
    later = T0 + 24 * H
    event = ev(sig(AlertKind.regression, at=later, reasons=[newer]), as_of=later)
    assert evaluate(event, [alert], [], POLICY, later) == [
        UpdateAlert(
            alert_id=alert.id,
            severity=Severity.high,
            summary=SUMMARIES[AlertKind.regression],
            reasons=(newer,),
            trajectory_state=TrajectoryState.worsening,
            event_time=later,
            renotify=False,
            clear_since=None,
        )
    ]


def test_trajectory_state_change_alone_updates() -> None:
    alert = alert_for(AlertKind.plateau, ev(sig(AlertKind.plateau), state=TrajectoryState.plateau))
    event = ev(sig(AlertKind.plateau), state=TrajectoryState.worsening)
    [d] = evaluate(event, [alert], [], POLICY, T0)
    assert isinstance(d, UpdateAlert)
    assert d.trajectory_state is TrajectoryState.worsening
    assert d.renotify is False


def test_acknowledged_alert_is_updated_like_an_open_one() -> None:
    alert = alert_for(AlertKind.plateau, ev(sig(AlertKind.plateau)), status=AlertStatus.acknowledged)
    [d] = evaluate(ev(sig(AlertKind.plateau, reasons=[reason("new")])), [alert], [], POLICY, T0)
    assert isinstance(d, UpdateAlert)


def test_older_evidence_than_stored_does_not_overwrite() -> None:
    newest = T0 + 10 * H
    alert = alert_for(AlertKind.regression, ev(sig(AlertKind.regression, at=newest), as_of=newest))
    late = ev(sig(AlertKind.regression, at=T0, reasons=[reason("old")]), state=TrajectoryState.plateau)
    assert evaluate(late, [alert], [], POLICY, newest + H) == []


def test_older_evidence_still_cancels_a_pending_clearance_but_keeps_stored_evidence() -> None:
    newest = T0 + 10 * H
    alert = alert_for(
        AlertKind.regression, ev(sig(AlertKind.regression, at=newest), as_of=newest), clear_since=T0 + 12 * H
    )
    event = ev(sig(AlertKind.regression, at=T0, reasons=[reason("old")]), as_of=T0 + 20 * H)
    [d] = evaluate(event, [alert], [], POLICY, T0 + 21 * H)
    assert isinstance(d, UpdateAlert)
    assert d.clear_since is None
    assert (d.reasons, d.event_time, d.trajectory_state) == (alert.reasons, newest, alert.trajectory_state)


def test_condition_back_during_hysteresis_cancels_clearance() -> None:
    alert = alert_for(AlertKind.regression, ev(sig(AlertKind.regression)), clear_since=T0 + 5 * H)
    event = ev(sig(AlertKind.regression), as_of=T0 + 6 * H)
    [d] = evaluate(event, [alert], [], POLICY, T0 + 6 * H)
    assert isinstance(d, UpdateAlert)
    assert d.clear_since is None
    assert d.renotify is False


def test_signal_in_an_event_older_than_the_clearance_is_ignored() -> None:
    alert = alert_for(AlertKind.regression, ev(sig(AlertKind.regression)), clear_since=T0 + 5 * H)
    stale = ev(sig(AlertKind.regression), as_of=T0 + 4 * H)
    assert evaluate(stale, [alert], [], POLICY, T0 + 6 * H) == []


def test_severity_below_default_rises_and_renotifies() -> None:
    alert = alert_for(AlertKind.regression, ev(sig(AlertKind.regression)), severity=Severity.medium)
    [d] = evaluate(ev(sig(AlertKind.regression)), [alert], [], POLICY, T0)
    assert isinstance(d, UpdateAlert)
    assert (d.severity, d.renotify) == (Severity.high, True)


def test_severity_is_never_lowered() -> None:
    alert = alert_for(AlertKind.regression, ev(sig(AlertKind.regression)), severity=Severity.critical)
    assert evaluate(ev(sig(AlertKind.regression)), [alert], [], POLICY, T0) == []
    [d] = evaluate(ev(sig(AlertKind.regression, reasons=[reason("n")])), [alert], [], POLICY, T0)
    assert isinstance(d, UpdateAlert)
    assert (d.severity, d.renotify) == (Severity.critical, False)


# --- Clearing, hysteresis, resolving --------------------------------------------------------------


def test_first_event_without_the_signal_starts_the_clearance() -> None:
    alert = alert_for(AlertKind.plateau, ev(sig(AlertKind.plateau)))
    as_of = T0 + 24 * H
    [d] = evaluate(ev(as_of=as_of, state=TrajectoryState.improving), [alert], [], POLICY, as_of)
    assert d == UpdateAlert(
        alert_id=alert.id,
        severity=alert.severity,
        summary=alert.summary,
        reasons=alert.reasons,
        trajectory_state=alert.trajectory_state,
        event_time=alert.event_time,
        renotify=False,
        clear_since=as_of,
    )


@pytest.mark.parametrize(
    ("after", "resolves"),
    [(timedelta(0), False), (48 * H - timedelta(seconds=1), False), (48 * H, True), (100 * H, True)],
)
def test_hysteresis_boundary_is_48_hours_of_event_time(after: timedelta, resolves: bool) -> None:
    cleared = T0 + 24 * H
    alert = alert_for(AlertKind.plateau, ev(sig(AlertKind.plateau)), clear_since=cleared)
    decisions = evaluate(ev(as_of=cleared + after), [alert], [], POLICY, T0 + 1000 * H)
    assert decisions == ([ResolveAlert(alert.id, RESOLVED_CLEARED)] if resolves else [])


def test_hysteresis_counts_event_time_not_processing_time() -> None:
    cleared = T0 + 24 * H
    alert = alert_for(AlertKind.plateau, ev(sig(AlertKind.plateau)), clear_since=cleared)
    assert evaluate(ev(as_of=cleared + H), [alert], [], POLICY, cleared + 500 * H) == []


def test_stale_event_without_the_signal_does_not_resolve() -> None:
    alert = alert_for(AlertKind.plateau, ev(sig(AlertKind.plateau)), clear_since=T0 + 100 * H)
    assert evaluate(ev(as_of=T0 + H), [alert], [], POLICY, T0 + 200 * H) == []


def test_zero_hysteresis_resolves_on_the_second_clear_event() -> None:
    policy = policy_from_dict({"hysteresis_hours": 0})
    alert = alert_for(AlertKind.plateau, ev(sig(AlertKind.plateau)), clear_since=T0 + H)
    assert evaluate(ev(as_of=T0 + H), [alert], [], policy, T0 + H) == [ResolveAlert(alert.id, RESOLVED_CLEARED)]


@pytest.mark.parametrize("clear_since", [None, T0])
def test_red_flag_never_auto_resolves(clear_since: datetime | None) -> None:
    alert = alert_for(AlertKind.red_flag, ev(sig(AlertKind.red_flag)), clear_since=clear_since)
    assert evaluate(ev(as_of=T0 + 1000 * H, state=TrajectoryState.improving), [alert], [], POLICY, T0) == []


def test_acknowledged_alert_resolves_when_cleared() -> None:
    alert = alert_for(
        AlertKind.activity_decline,
        ev(sig(AlertKind.activity_decline)),
        status=AlertStatus.acknowledged,
        clear_since=T0,
    )
    assert evaluate(ev(as_of=T0 + 48 * H), [alert], [], POLICY, T0) == [ResolveAlert(alert.id, RESOLVED_CLEARED)]


# --- Disengagement in evaluate ----------------------------------------------------------------------


def disengaged(last: datetime) -> AlertState:
    return AlertState(
        id="al-dis",
        patient_id=PID,
        kind=AlertKind.disengagement,
        severity=Severity.low,
        status=AlertStatus.open,
        opened_at=last + 100 * H,
        updated_at=last + 100 * H,
        event_time=last,
    )


def test_new_checkin_resolves_disengagement() -> None:
    alert = disengaged(T0 - 100 * H)
    assert evaluate(ev(last_checkin_at=T0), [alert], [], POLICY, T0) == [ResolveAlert("al-dis", RESOLVED_CHECKIN)]


@pytest.mark.parametrize("last", [None, T0 - 100 * H, T0 - 200 * H])
def test_disengagement_stays_without_a_newer_checkin(last: datetime | None) -> None:
    alert = disengaged(T0 - 100 * H)
    assert evaluate(ev(last_checkin_at=last), [alert], [], POLICY, T0) == []


def test_disengagement_is_not_driven_by_signals() -> None:
    # No signal ever "holds" for disengagement, yet evaluate never starts a clearance for it.
    alert = disengaged(T0 - 100 * H)
    assert evaluate(ev(sig(AlertKind.plateau)), [alert], [], POLICY, T0) == [
        d for d in evaluate(ev(sig(AlertKind.plateau)), [], [], POLICY, T0)
    ]


# --- Snoozes -------------------------------------------------------------------------------------------


def test_active_snooze_suppresses_opening() -> None:
    snooze = SnoozeState(AlertKind.plateau, until=T0 + H)
    assert evaluate(ev(sig(AlertKind.plateau)), [], [snooze], POLICY, T0) == [
        Suppressed(AlertKind.plateau, SuppressReason.snoozed)
    ]
    assert Suppressed(AlertKind.plateau, "snoozed") == Suppressed(AlertKind.plateau, SuppressReason.snoozed)


@pytest.mark.parametrize("until", [T0, T0 - H])
def test_expired_snooze_is_ignored(until: datetime) -> None:
    [d] = evaluate(ev(sig(AlertKind.plateau)), [], [SnoozeState(AlertKind.plateau, until)], POLICY, T0)
    assert isinstance(d, OpenAlert)


def test_snooze_of_another_kind_does_not_apply() -> None:
    [d] = evaluate(ev(sig(AlertKind.plateau)), [], [SnoozeState(AlertKind.regression, T0 + H)], POLICY, T0)
    assert isinstance(d, OpenAlert)


def test_red_flag_is_never_snoozed() -> None:
    [d] = evaluate(ev(sig(AlertKind.red_flag)), [], [SnoozeState(AlertKind.red_flag, T0 + H)], POLICY, T0)
    assert isinstance(d, OpenAlert)


def test_snooze_does_not_stop_updates_or_resolution_of_an_existing_alert() -> None:
    snooze = SnoozeState(AlertKind.plateau, until=T0 + 1000 * H)
    alert = alert_for(AlertKind.plateau, ev(sig(AlertKind.plateau)))
    [d] = evaluate(ev(sig(AlertKind.plateau, reasons=[reason("n")])), [alert], [snooze], POLICY, T0)
    assert isinstance(d, UpdateAlert)
    cleared = dataclasses.replace(alert, clear_since=T0)
    assert evaluate(ev(as_of=T0 + 48 * H), [cleared], [snooze], POLICY, T0) == [
        ResolveAlert(alert.id, RESOLVED_CLEARED)
    ]


# --- Inhibition -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [AlertStatus.open, AlertStatus.acknowledged])
def test_active_red_flag_alert_inhibits_opening_lower_alerts(status: AlertStatus) -> None:
    red = alert_for(AlertKind.red_flag, ev(sig(AlertKind.red_flag)), status=status)
    decisions = evaluate(ev(*(sig(k) for k in LOWER)), [red], [], POLICY, T0)
    assert decisions == [Suppressed(k, SuppressReason.inhibited_by_red_flag) for k in LOWER]


def test_red_flag_signal_in_the_same_event_inhibits_lower_alerts() -> None:
    decisions = evaluate(ev(*(sig(k) for k in SIGNAL_DRIVEN)), [], [], POLICY, T0)
    assert isinstance(decisions[0], OpenAlert)
    assert decisions[0].kind is AlertKind.red_flag
    assert decisions[1:] == [Suppressed(k, SuppressReason.inhibited_by_red_flag) for k in LOWER]


def test_inhibition_does_not_block_updating_or_resolving_lower_alerts() -> None:
    red = alert_for(AlertKind.red_flag, ev(sig(AlertKind.red_flag)))
    plateau = alert_for(AlertKind.plateau, ev(sig(AlertKind.plateau)), clear_since=T0)
    regression = alert_for(AlertKind.regression, ev(sig(AlertKind.regression)))
    event = ev(sig(AlertKind.regression, reasons=[reason("n")]), as_of=T0 + 48 * H)
    decisions = evaluate(event, [red, plateau, regression], [], POLICY, T0)
    assert [type(d) for d in decisions] == [UpdateAlert, ResolveAlert]


def test_retrospective_red_flag_does_not_inhibit() -> None:
    # A red flag that paged nobody must not silence the alerts that would.
    red = alert_for(AlertKind.red_flag, ev(sig(AlertKind.red_flag)), retrospective=True)
    [d] = evaluate(ev(sig(AlertKind.plateau)), [red], [], POLICY, T0)
    assert isinstance(d, OpenAlert)
    backfill = TriggerRef(event_id="old", recorded_at=T0 - 80 * H, received_at=T0)
    decisions = evaluate(
        ev(sig(AlertKind.red_flag, at=T0 - 80 * H), sig(AlertKind.plateau), trigger=backfill), [], [], POLICY, T0
    )
    assert [(type(d), d.kind) for d in decisions if isinstance(d, OpenAlert)] == [
        (OpenAlert, AlertKind.red_flag),
        (OpenAlert, AlertKind.plateau),
    ]


def test_flare_window_holds_back_regression_only() -> None:
    event = ev(sig(SignalCode.flare_window), sig(AlertKind.regression), sig(AlertKind.persistent_flare))
    decisions = evaluate(event, [], [], POLICY, T0)
    assert decisions[0] == Suppressed(AlertKind.regression, SuppressReason.flare_window)
    assert isinstance(decisions[1], OpenAlert)
    assert decisions[1].kind is AlertKind.persistent_flare


def test_flare_window_does_not_touch_an_existing_regression() -> None:
    alert = alert_for(AlertKind.regression, ev(sig(AlertKind.regression)))
    event = ev(sig(SignalCode.flare_window), sig(AlertKind.regression, reasons=[reason("n")]))
    [d] = evaluate(event, [alert], [], POLICY, T0)
    assert isinstance(d, UpdateAlert)
    cleared = dataclasses.replace(alert, clear_since=T0)
    assert evaluate(ev(sig(SignalCode.flare_window), as_of=T0 + 48 * H), [cleared], [], POLICY, T0) == [
        ResolveAlert(alert.id, RESOLVED_CLEARED)
    ]


def test_hold_back_precedence() -> None:
    snooze = [SnoozeState(AlertKind.regression, T0 + H)]
    both = ev(sig(SignalCode.flare_window), sig(AlertKind.regression))
    assert evaluate(both, [], snooze, POLICY, T0) == [Suppressed(AlertKind.regression, SuppressReason.flare_window)]
    red = alert_for(AlertKind.red_flag, ev(sig(AlertKind.red_flag)))
    assert evaluate(both, [red], snooze, POLICY, T0) == [
        Suppressed(AlertKind.regression, SuppressReason.inhibited_by_red_flag)
    ]
    handled = {AlertKind.regression: T0}
    assert evaluate(both, [red], snooze, POLICY, T0, resolved_through=handled) == [
        Suppressed(AlertKind.regression, SuppressReason.already_resolved)
    ]


# --- Already-handled evidence ---------------------------------------------------------------------------


def test_resolved_red_flag_is_not_reopened_by_the_same_report() -> None:
    event = ev(sig(AlertKind.red_flag, at=T0 - H, event_id="rf-1"), sig(AlertKind.plateau))
    seen = {"rf-1": RedFlagSeen(T0 - H, frozenset({UNNAMED_RED_FLAG}))}
    decisions = evaluate(event, [], [], POLICY, T0, red_flags_seen=seen)
    assert decisions[0] == Suppressed(AlertKind.red_flag, SuppressReason.already_resolved)
    # ...and a handled red flag no longer inhibits the others.
    assert isinstance(decisions[1], OpenAlert)


def test_newer_evidence_reopens_a_resolved_kind() -> None:
    [d] = evaluate(ev(sig(AlertKind.plateau, at=T0)), [], [], POLICY, T0, resolved_through={AlertKind.plateau: T0 - H})
    assert isinstance(d, OpenAlert)


# --- Red flags: every observation pages once (docs/safety.md H1) ---------------------------------------


def red(at: datetime, event_id: str, *flags: str, received: datetime | None = None) -> Signal:
    return Signal(
        code=SignalCode.red_flag,
        event_time=at,
        event_id=event_id,
        flags=list(flags),
        received_at=received or at,
        reasons=[reason("red_flag_reported", ", ".join(flags))],
    )


def seen_of(*decisions: Decision) -> dict[str, RedFlagSeen]:
    out: dict[str, RedFlagSeen] = {}
    for d in decisions:
        if isinstance(d, OpenAlert | UpdateAlert):
            out.update(d.red_flags_seen)
    return out


def test_new_red_flag_after_a_resolved_one_pages_even_inside_the_72h_window() -> None:
    """Defect 1: fever 48 h ago paged and was resolved; saddle anaesthesia now must page."""
    fever = red(T0 - 48 * H, "c-fever", "fever")
    [first] = evaluate(ev(fever, as_of=T0 - 48 * H), [], [], POLICY, T0 - 48 * H)
    assert isinstance(first, OpenAlert) and not first.retrospective
    # The clinician resolved it; both check-ins are in the window of the new event.
    cauda = red(T0, "c-cauda", "bowel_bladder_dysfunction", "saddle_anesthesia")
    decisions = evaluate(
        ev(fever, cauda),
        [],
        [],
        POLICY,
        T0,
        resolved_through={AlertKind.red_flag: T0 - 48 * H},
        red_flags_seen=seen_of(first),
    )
    [d] = [d for d in decisions if isinstance(d, OpenAlert)]
    assert d.kind is AlertKind.red_flag and not d.retrospective
    assert d.paged_flags == {"bowel_bladder_dysfunction", "saddle_anesthesia"}
    assert d.event_time == T0
    assert set(d.red_flags_seen) == {"c-cauda"}


def test_new_flags_on_an_open_red_flag_alert_repage_it() -> None:
    """Defect 2: a different red flag while the alert is open pages again."""
    fever = red(T0 - 5 * H, "c-fever", "fever")
    [opened] = evaluate(ev(fever), [], [], POLICY, T0 - 5 * H)
    assert isinstance(opened, OpenAlert)
    alert = stored(opened, T0 - 5 * H)
    for status in (AlertStatus.open, AlertStatus.acknowledged):
        cur = dataclasses.replace(alert, status=status)
        drop = red(T0, "c-drop", "foot_drop")
        [d] = evaluate(ev(fever, drop), [cur], [], POLICY, T0, red_flags_seen=seen_of(opened))
        assert isinstance(d, UpdateAlert) and d.repage
        assert d.paged_flags == frozenset({"fever", "foot_drop"})
        assert set(d.red_flags_seen) == {"c-drop"}


def test_same_flags_again_on_an_open_alert_record_without_paging() -> None:
    fever = red(T0 - 5 * H, "c-1", "fever")
    [opened] = evaluate(ev(fever), [], [], POLICY, T0 - 5 * H)
    assert isinstance(opened, OpenAlert)
    again = red(T0, "c-2", "fever")
    [d] = evaluate(ev(fever, again), [stored(opened)], [], POLICY, T0, red_flags_seen=seen_of(opened))
    assert isinstance(d, UpdateAlert) and not d.repage and not d.renotify
    assert set(d.red_flags_seen) == {"c-2"}


def test_the_same_red_flag_delivered_twice_pages_once() -> None:
    fever = red(T0, "c-1", "fever")
    [opened] = evaluate(ev(fever), [], [], POLICY, T0)
    assert isinstance(opened, OpenAlert)
    assert evaluate(ev(fever), [stored(opened)], [], POLICY, T0, red_flags_seen=seen_of(opened)) == []


def test_a_conflicting_version_with_other_flags_pages() -> None:
    """The same event id reposted with a red flag the first version did not have."""
    v1 = red(T0 - H, "c-1", "fever")
    [opened] = evaluate(ev(v1), [], [], POLICY, T0 - H)
    assert isinstance(opened, OpenAlert)
    v2 = red(T0 - H, "c-1", "saddle_anesthesia")
    decisions = evaluate(ev(v1, v2), [], [], POLICY, T0, red_flags_seen=seen_of(opened))
    [d] = [d for d in decisions if isinstance(d, OpenAlert)]
    assert d.paged_flags == {"saddle_anesthesia"}
    assert d.red_flags_seen["c-1"].flags == {"fever", "saddle_anesthesia"}


def test_backfilled_red_flag_opens_retrospectively_and_a_live_one_promotes_it() -> None:
    old = red(T0 - 80 * H, "c-old", "fever", received=T0)
    [d] = evaluate(ev(old, as_of=T0 - 80 * H), [], [], POLICY, T0)
    assert isinstance(d, OpenAlert) and d.retrospective and d.paged_flags == frozenset()
    live = red(T0, "c-new", "fever")
    [u] = evaluate(ev(live), [stored(d)], [], POLICY, T0, red_flags_seen=seen_of(d))
    assert (
        isinstance(u, UpdateAlert) and u.repage and u.retrospective is False and u.paged_flags == frozenset({"fever"})
    )


# --- Retrospective ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("age", "expected"),
    [(72 * H - timedelta(seconds=1), False), (72 * H, False), (72 * H + timedelta(seconds=1), True)],
)
def test_retrospective_boundary_is_strictly_older_than_72_hours(age: timedelta, expected: bool) -> None:
    observed = T0 - age
    trigger = TriggerRef(event_id="obs", recorded_at=observed, received_at=T0)
    [d] = evaluate(ev(sig(AlertKind.regression, at=observed, event_id="obs"), trigger=trigger), [], [], POLICY, T0)
    assert isinstance(d, OpenAlert)
    assert d.retrospective is expected


def test_no_trigger_is_not_retrospective() -> None:
    [d] = evaluate(ev(sig(AlertKind.plateau, at=T0 - 500 * H), trigger=None), [], [], POLICY, T0)
    assert isinstance(d, OpenAlert)
    assert d.retrospective is False


def test_old_signal_confirmed_by_a_fresh_observation_is_not_retrospective() -> None:
    # e.g. a snooze expired: the plateau was raised days ago but still holds on today's check-in.
    trigger = TriggerRef(event_id="today", recorded_at=T0, received_at=T0 + timedelta(minutes=1))
    assert is_retrospective(T0 - 200 * H, trigger, POLICY) is False
    backfill = TriggerRef(event_id="old", recorded_at=T0 - 100 * H, received_at=T0)
    assert is_retrospective(T0 - 100 * H, backfill, POLICY) is True
    assert is_retrospective(T0 - 100 * H, None, POLICY) is False


def test_retrospective_alert_is_promoted_when_fresh_data_confirms_it() -> None:
    alert = alert_for(AlertKind.regression, ev(sig(AlertKind.regression)), retrospective=True)
    [d] = evaluate(ev(sig(AlertKind.regression)), [alert], [], POLICY, T0)
    assert isinstance(d, UpdateAlert)
    assert (d.retrospective, d.renotify) == (False, True)


def test_retrospective_alert_with_more_backfill_stays_retrospective() -> None:
    old = T0 - 100 * H
    backfill = TriggerRef(event_id="old", recorded_at=old, received_at=T0)
    alert = alert_for(AlertKind.regression, ev(sig(AlertKind.regression, at=old)), retrospective=True)
    assert evaluate(ev(sig(AlertKind.regression, at=old), trigger=backfill), [alert], [], POLICY, T0) == []


def test_promoted_red_flag_inhibits() -> None:
    red = alert_for(AlertKind.red_flag, ev(sig(AlertKind.red_flag)), retrospective=True)
    decisions = evaluate(ev(sig(AlertKind.red_flag), sig(AlertKind.plateau)), [red], [], POLICY, T0)
    assert isinstance(decisions[0], UpdateAlert)
    assert decisions[1] == Suppressed(AlertKind.plateau, SuppressReason.inhibited_by_red_flag)


@pytest.mark.parametrize(("retro", "expected"), [(True, False), (False, True)])
def test_should_page(retro: bool, expected: bool) -> None:
    assert should_page(retro) is expected


# --- Input handling and determinism ------------------------------------------------------------------


def test_alert_of_another_patient_is_rejected() -> None:
    alert = dataclasses.replace(alert_for(AlertKind.plateau, ev(sig(AlertKind.plateau))), patient_id="other")
    with pytest.raises(ValueError, match="another patient"):
        evaluate(ev(), [alert], [], POLICY, T0)


def test_naive_now_is_rejected() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        evaluate(ev(), [], [], POLICY, datetime(2026, 1, 1))


def test_resolved_alert_in_active_is_ignored() -> None:
    gone = alert_for(AlertKind.plateau, ev(sig(AlertKind.plateau)), status=AlertStatus.resolved)
    [d] = evaluate(ev(sig(AlertKind.plateau)), [gone], [], POLICY, T0)
    assert isinstance(d, OpenAlert)


def test_duplicate_active_alerts_of_a_kind_use_the_oldest() -> None:
    base = alert_for(AlertKind.plateau, ev(sig(AlertKind.plateau)))
    older = dataclasses.replace(base, id="b-older", opened_at=T0 - H)
    newer = dataclasses.replace(base, id="a-newer", opened_at=T0)
    for active in ([older, newer], [newer, older]):
        [d] = evaluate(ev(as_of=T0 + H), active, [], POLICY, T0)
        assert isinstance(d, UpdateAlert)
        assert d.alert_id == "b-older"


def test_same_inputs_in_any_order_give_identical_decisions() -> None:
    red = alert_for(AlertKind.red_flag, ev(sig(AlertKind.red_flag)), retrospective=True)
    plateau = alert_for(AlertKind.plateau, ev(sig(AlertKind.plateau)), clear_since=T0 - 50 * H)
    signals = [sig(AlertKind.regression), sig(AlertKind.spreading_symptoms), sig(AlertKind.red_flag, at=T0 - 2 * H)]
    snoozes = [SnoozeState(AlertKind.spreading_symptoms, T0 + H), SnoozeState(AlertKind.plateau, T0 + H)]
    first = evaluate(ev(*signals), [red, plateau], snoozes, POLICY, T0)
    for _ in range(3):
        assert evaluate(ev(*signals), [red, plateau], snoozes, POLICY, T0) == first
    assert evaluate(ev(*reversed(signals)), [plateau, red], list(reversed(snoozes)), POLICY, T0) == first


# --- Property: one alert per kind ------------------------------------------------------------------------

offsets = st.integers(min_value=-200, max_value=200).map(lambda h: T0 + h * H)


@st.composite
def scenarios(
    draw: st.DrawFn,
) -> tuple[TrajectoryUpdated, list[AlertState], list[SnoozeState], dict[AlertKind, datetime]]:
    codes = draw(st.lists(st.sampled_from(list(SignalCode)), max_size=10))
    signals = [
        sig(
            c,
            at=draw(offsets),
            reasons=[reason(c.value, draw(st.sampled_from(["a", "b"])))],
            event_id=draw(st.sampled_from([None, "e1", "e2"])),
        )
        for c in codes
    ]
    as_of = draw(offsets)
    trigger = draw(
        st.one_of(
            st.none(),
            st.builds(
                lambda rec, delay: TriggerRef(event_id="e1", recorded_at=rec, received_at=rec + delay * H),
                offsets,
                st.integers(min_value=0, max_value=150),
            ),
        )
    )
    active: list[AlertState] = []
    for i, kind in enumerate(draw(st.lists(st.sampled_from(list(AlertKind)), max_size=9))):
        active.append(
            AlertState(
                id=f"al-{i}",
                patient_id=PID,
                kind=kind,
                severity=draw(st.sampled_from(list(Severity))),
                status=draw(st.sampled_from(list(AlertStatus))),
                opened_at=draw(offsets),
                updated_at=T0,
                event_time=draw(offsets),
                retrospective=draw(st.booleans()),
                clear_since=draw(st.one_of(st.none(), offsets)),
                summary=SUMMARIES[kind],
                reasons=tuple(draw(st.lists(st.sampled_from([reason("a"), reason("b")]), max_size=2))),
                trajectory_state=draw(st.one_of(st.none(), st.sampled_from(list(TrajectoryState)))),
            )
        )
    snoozes = [SnoozeState(k, draw(offsets)) for k in draw(st.lists(st.sampled_from(list(AlertKind)), max_size=4))]
    handled = draw(st.dictionaries(st.sampled_from(list(AlertKind)), offsets, max_size=3))
    event = ev(
        *signals,
        as_of=as_of,
        trigger=trigger,
        last_checkin_at=draw(st.one_of(st.none(), offsets)),
        state=draw(st.sampled_from(list(TrajectoryState))),
    )
    return event, active, snoozes, handled


@settings(max_examples=400, deadline=None)
@given(scenarios())
def test_property_never_two_alerts_of_a_kind(
    scenario: tuple[TrajectoryUpdated, list[AlertState], list[SnoozeState], dict[AlertKind, datetime]],
) -> None:
    event, active, snoozes, handled = scenario
    decisions = evaluate(event, active, snoozes, POLICY, T0, resolved_through=handled)
    unresolved = {a.kind for a in active if a.status is not AlertStatus.resolved}
    opened = [d.kind for d in decisions if isinstance(d, OpenAlert)]
    assert len(opened) == len(set(opened))
    assert not set(opened) & unresolved
    assert AlertKind.disengagement not in opened
    # At most one decision per kind, in kind order.
    order = {k: i for i, k in enumerate(KIND_ORDER)}
    by_id = {a.id: a.kind for a in active}
    decided = [d.kind if isinstance(d, OpenAlert | Suppressed) else by_id[d.alert_id] for d in decisions]
    assert decided == sorted(set(decided), key=order.__getitem__)
    # Deterministic, whatever the input order.
    assert evaluate(event, list(reversed(active)), list(reversed(snoozes)), POLICY, T0, resolved_through=handled) == (
        decisions
    )
    # Red flags are never auto-resolved, snoozed or inhibited.
    red_ids = {a.id for a in active if a.kind is AlertKind.red_flag}
    assert not any(isinstance(d, ResolveAlert) and d.alert_id in red_ids for d in decisions)
    assert all(
        d.why == SuppressReason.already_resolved
        for d in decisions
        if isinstance(d, Suppressed) and d.kind is AlertKind.red_flag
    )
    # Applying the decisions and replaying the same event changes nothing more.
    current = [a for a in active if a.status is not AlertStatus.resolved]
    firsts: dict[AlertKind, AlertState] = {}
    for a in sorted(current, key=lambda a: (a.opened_at, a.id)):
        firsts.setdefault(a.kind, a)
    after = apply(list(firsts.values()), decisions, T0)
    replay = evaluate(event, after, snoozes, POLICY, T0, resolved_through=handled, red_flags_seen=seen_of(*decisions))
    assert all(isinstance(d, Suppressed) for d in replay), (decisions, replay, after)


# --- Routing --------------------------------------------------------------------------------------------

MEMBERS = [
    Member("m-low", Role.care_coordinator, Severity.low, webhook_url="https://h/low", email="low@example.org"),
    Member("m-med", Role.physical_therapist, Severity.medium, email="med@example.org"),
    Member("m-high", Role.physician, Severity.high, webhook_url="https://h/high"),
    Member("m-crit", Role.on_call, Severity.critical, webhook_url="https://h/crit", email="crit@example.org"),
    Member("m-none", Role.surgeon, Severity.low),
]


@pytest.mark.parametrize(
    ("severity", "members"),
    [
        (Severity.low, ["m-low"]),
        (Severity.medium, ["m-low", "m-med"]),
        (Severity.high, ["m-low", "m-med", "m-high"]),
        (Severity.critical, ["m-low", "m-med", "m-high", "m-crit"]),
    ],
)
def test_route_by_min_severity(severity: Severity, members: list[str]) -> None:
    assert sorted({r.member_id for r in route(severity, MEMBERS)}) == sorted(members)


def test_route_uses_every_channel_of_a_member_in_order() -> None:
    assert route(Severity.critical, MEMBERS) == [
        Recipient("m-low", Channel.webhook, "https://h/low"),
        Recipient("m-low", Channel.email, "low@example.org"),
        Recipient("m-med", Channel.email, "med@example.org"),
        Recipient("m-high", Channel.webhook, "https://h/high"),
        Recipient("m-crit", Channel.webhook, "https://h/crit"),
        Recipient("m-crit", Channel.email, "crit@example.org"),
    ]


def test_route_without_members_or_channels_is_empty_and_duplicates_collapse() -> None:
    assert route(Severity.critical, []) == []
    assert route(Severity.critical, [MEMBERS[4]]) == []
    assert route(Severity.low, [MEMBERS[0], MEMBERS[0]]) == route(Severity.low, [MEMBERS[0]])


# --- Quiet hours ------------------------------------------------------------------------------------------

NIGHT = AlertPolicy()  # 21:00-07:00 UTC


@pytest.mark.parametrize("severity", [Severity.high, Severity.critical])
def test_quiet_hours_never_delay_high_and_critical(severity: Severity) -> None:
    assert quiet_hours_delay(severity, NIGHT, datetime(2026, 11, 20, 23, 0, tzinfo=UTC)) is None


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        (datetime(2026, 11, 20, 20, 59, 59, tzinfo=UTC), None),
        (datetime(2026, 11, 20, 21, 0, tzinfo=UTC), datetime(2026, 11, 21, 7, 0, tzinfo=UTC)),
        (datetime(2026, 11, 20, 23, 30, tzinfo=UTC), datetime(2026, 11, 21, 7, 0, tzinfo=UTC)),
        (datetime(2026, 11, 21, 0, 0, tzinfo=UTC), datetime(2026, 11, 21, 7, 0, tzinfo=UTC)),
        (datetime(2026, 11, 21, 6, 59, 59, tzinfo=UTC), datetime(2026, 11, 21, 7, 0, tzinfo=UTC)),
        (datetime(2026, 11, 21, 7, 0, tzinfo=UTC), None),
        (datetime(2026, 11, 21, 12, 0, tzinfo=UTC), None),
    ],
)
@pytest.mark.parametrize("severity", [Severity.low, Severity.medium])
def test_quiet_hours_wrapping_midnight(severity: Severity, now: datetime, expected: datetime | None) -> None:
    assert quiet_hours_delay(severity, NIGHT, now) == expected


def test_quiet_hours_are_read_in_the_tenant_timezone() -> None:
    ny = policy_from_dict({"timezone": "America/New_York"})
    # 03:00Z = 22:00 EST: quiet until 07:00 EST = 12:00Z.
    assert quiet_hours_delay(Severity.low, ny, datetime(2026, 11, 20, 3, 0, tzinfo=UTC)) == datetime(
        2026, 11, 20, 12, 0, tzinfo=UTC
    )
    # 23:00Z = 18:00 EST: not quiet in New York although it is in UTC.
    assert quiet_hours_delay(Severity.low, ny, datetime(2026, 11, 20, 23, 0, tzinfo=UTC)) is None
    # A non-UTC `now` is the same instant.
    from zoneinfo import ZoneInfo

    local = datetime(2026, 11, 19, 22, 0, tzinfo=ZoneInfo("America/New_York"))
    assert quiet_hours_delay(Severity.low, ny, local) == datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


def test_quiet_hours_not_wrapping_midnight() -> None:
    policy = policy_from_dict({"quiet_hours": {"start": "13:00", "end": "15:30"}})
    assert quiet_hours_delay(Severity.low, policy, datetime(2026, 11, 20, 12, 59, tzinfo=UTC)) is None
    assert quiet_hours_delay(Severity.low, policy, datetime(2026, 11, 20, 14, 0, tzinfo=UTC)) == datetime(
        2026, 11, 20, 15, 30, tzinfo=UTC
    )
    assert quiet_hours_delay(Severity.low, policy, datetime(2026, 11, 20, 15, 30, tzinfo=UTC)) is None


def test_quiet_hours_disabled() -> None:
    now = datetime(2026, 11, 20, 23, 0, tzinfo=UTC)
    assert quiet_hours_delay(Severity.low, policy_from_dict({"quiet_hours": None}), now) is None
    same = AlertPolicy(quiet_hours_start=time(22, 0), quiet_hours_end=time(22, 0))
    assert quiet_hours_delay(Severity.low, same, now) is None


def test_quiet_hours_across_daylight_saving_changes() -> None:
    # New York falls back on 2026-11-01 (02:00 EDT -> 01:00 EST): 01:30 happens twice.
    policy = AlertPolicy(quiet_hours_start=time(0, 0), quiet_hours_end=time(1, 30), timezone="America/New_York")
    first = datetime(2026, 11, 1, 5, 15, tzinfo=UTC)  # 01:15 EDT
    second = datetime(2026, 11, 1, 6, 15, tzinfo=UTC)  # 01:15 EST
    assert quiet_hours_delay(Severity.low, policy, first) == datetime(2026, 11, 1, 5, 30, tzinfo=UTC)
    assert quiet_hours_delay(Severity.low, policy, second) == datetime(2026, 11, 1, 6, 30, tzinfo=UTC)
    # Springs forward on 2026-03-08 (02:00 EST -> 03:00 EDT): 02:30 does not exist.
    gap = AlertPolicy(quiet_hours_start=time(22, 0), quiet_hours_end=time(2, 30), timezone="America/New_York")
    resume = quiet_hours_delay(Severity.medium, gap, datetime(2026, 3, 8, 6, 0, tzinfo=UTC))  # 01:00 EST
    assert resume == datetime(2026, 3, 8, 7, 30, tzinfo=UTC)  # 03:30 EDT


# --- Tenant policy JSON ------------------------------------------------------------------------------------


def test_empty_config_is_the_product_default() -> None:
    assert policy_from_dict({}) == AlertPolicy()


def test_full_config() -> None:
    policy = policy_from_dict(
        {
            "escalation": {
                "critical": [{"after_minutes": 10, "roles": ["on_call", "surgeon"]}],
                "medium": [{"after_minutes": 1440, "roles": ["care_coordinator"]}],
                "high": [],
            },
            "repeat_interval_minutes": 90,
            "quiet_hours": {"start": "22:30", "end": "06:45"},
            "timezone": "Europe/Berlin",
            "hysteresis_hours": 24.5,
            "disengagement_days": 7,
        }
    )
    assert policy.escalation == {
        Severity.critical: (EscalationStep(timedelta(minutes=10), (Role.on_call, Role.surgeon)),),
        Severity.medium: (EscalationStep(timedelta(days=1), (Role.care_coordinator,)),),
    }
    assert policy.repeat_interval == timedelta(minutes=90)
    assert (policy.quiet_hours_start, policy.quiet_hours_end) == (time(22, 30), time(6, 45))
    assert policy.timezone == "Europe/Berlin"
    assert policy.hysteresis == timedelta(hours=24, minutes=30)
    assert policy.disengagement_after == timedelta(days=7)
    assert policy.retrospective_after == timedelta(hours=72)


def test_escalation_merges_per_severity_over_the_defaults() -> None:
    policy = policy_from_dict({"escalation": {"critical": [{"after_minutes": 5, "roles": ["on_call"]}]}})
    assert policy.escalation[Severity.high] == AlertPolicy().escalation[Severity.high]
    assert policy.escalation[Severity.critical] == (EscalationStep(timedelta(minutes=5), (Role.on_call,)),)


@pytest.mark.parametrize(
    "policy",
    [
        AlertPolicy(),
        AlertPolicy(quiet_hours_start=None, quiet_hours_end=None, hysteresis=timedelta(minutes=90)),
        policy_from_dict({"escalation": {"high": [], "low": [{"after_minutes": 0.5, "roles": ["physician"]}]}}),
    ],
)
def test_policy_round_trips_through_json(policy: AlertPolicy) -> None:
    import json

    assert policy_from_dict(json.loads(json.dumps(policy_to_dict(policy)))) == policy


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ([], "must be a JSON object"),
        ({"repeat_interval": 5}, "unknown keys"),
        ({"retrospective_after_hours": 24}, "unknown keys"),
        ({"escalation": []}, "escalation must be an object"),
        ({"escalation": {"urgent": []}}, "unknown severity 'urgent'"),
        ({"escalation": {"high": "physician"}}, "escalation.high must be a list"),
        ({"escalation": {"high": ["x"]}}, r"escalation.high\[0\] must be an object"),
        ({"escalation": {"high": [{"roles": ["physician"]}]}}, "needs after_minutes and roles"),
        ({"escalation": {"high": [{"after_minutes": 5, "roles": ["physician"], "x": 1}]}}, "unknown keys"),
        ({"escalation": {"high": [{"after_minutes": 0, "roles": ["physician"]}]}}, "greater than 0"),
        ({"escalation": {"high": [{"after_minutes": -5, "roles": ["physician"]}]}}, "greater than 0"),
        ({"escalation": {"high": [{"after_minutes": "5", "roles": ["physician"]}]}}, "finite number"),
        ({"escalation": {"high": [{"after_minutes": True, "roles": ["physician"]}]}}, "finite number"),
        ({"escalation": {"high": [{"after_minutes": math.inf, "roles": ["physician"]}]}}, "finite number"),
        ({"escalation": {"high": [{"after_minutes": 5, "roles": []}]}}, "non-empty list of roles"),
        ({"escalation": {"high": [{"after_minutes": 5, "roles": "physician"}]}}, "non-empty list of roles"),
        ({"escalation": {"high": [{"after_minutes": 5, "roles": ["nurse"]}]}}, "unknown role 'nurse'"),
        ({"escalation": {"high": [{"after_minutes": 5, "roles": ["on_call", "on_call"]}]}}, "twice"),
        (
            {
                "escalation": {
                    "high": [{"after_minutes": 30, "roles": ["on_call"]}, {"after_minutes": 30, "roles": ["surgeon"]}]
                }
            },
            r"escalation.high\[1\].after_minutes must be greater than the previous",
        ),
        ({"repeat_interval_minutes": 4}, "at least 5"),
        ({"repeat_interval_minutes": math.nan}, "finite number"),
        ({"quiet_hours": {"start": "7:00", "end": "21:00"}}, "quiet_hours.start must be a 24-hour time"),
        ({"quiet_hours": {"start": "21:00", "end": "24:00"}}, "quiet_hours.end must be a 24-hour time"),
        ({"quiet_hours": {"start": "21:00", "end": 7}}, "quiet_hours.end"),
        ({"quiet_hours": {"start": "21:00", "end": "21:00"}}, "must differ"),
        ({"quiet_hours": {"start": "21:00"}}, "quiet_hours must be null or"),
        ({"quiet_hours": "21:00-07:00"}, "quiet_hours must be null or"),
        ({"timezone": "Mars/Olympus_Mons"}, "not a known IANA time zone"),
        ({"timezone": "../etc/passwd"}, "not a known IANA time zone"),
        ({"timezone": ""}, "timezone must be"),
        ({"timezone": 5}, "timezone must be"),
        ({"hysteresis_hours": -1}, "must not be negative"),
        ({"disengagement_days": 0.5}, "at least 1"),
        ({"disengagement_days": None}, "finite number"),
    ],
)
def test_invalid_policy_config_raises_a_clear_value_error(config: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        policy_from_dict(config)
