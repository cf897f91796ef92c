"""A re-scoring never pages (docs/safety.md H18): `rules.evaluate` on `TrajectoryUpdated.rescore_run`
events, applied with `book.apply_decisions` as the shell does."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import UUID

from schemas.alerts import AlertKind
from schemas.common import Role, Severity
from schemas.events import TrajectoryUpdated, TriggerRef
from schemas.trajectory import Signal, SignalCode, Trajectory, TrajectoryState
from services.alerts import book as bk
from services.alerts.model import AlertPolicy, Member, OpenAlert, ResolveAlert, UpdateAlert
from services.alerts.rules import evaluate, retrospective_only

T0 = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
PID = "pt-0042"
POLICY = AlertPolicy()
MEMBERS = (Member("m1", Role.physician, Severity.low, webhook_url="https://example.org/hook"),)
RUN = "rs-test-1"


def sig(code: SignalCode, at: datetime = T0, event_id: str | None = None, flags: list[str] | None = None) -> Signal:
    return Signal(code=code, event_time=at, event_id=event_id, flags=flags or [], received_at=at + timedelta(minutes=1))


def ev(*signals: Signal, run: str | None = RUN, as_of: datetime = T0) -> TrajectoryUpdated:
    return TrajectoryUpdated(
        tenant_id="t1",
        event_id=UUID(int=7),
        trajectory=Trajectory(patient_id=PID, state=TrajectoryState.worsening, as_of=as_of),
        state_changed=True,
        signals=list(signals),
        trigger=TriggerRef(event_id="obs-1", recorded_at=as_of, received_at=as_of + timedelta(minutes=1)),
        computed_at=as_of + timedelta(minutes=1),
        rescore_run=run,
    )


def run_event(
    book: bk.PatientBook, event: TrajectoryUpdated, now: datetime = T0
) -> tuple[bk.PatientBook, list[bk.Effect]]:
    decisions = evaluate(
        event, book.active(), book.snoozes, POLICY, now,
        resolved_through=book.resolved_through, red_flags_seen=book.red_flags_seen,
    )  # fmt: skip
    ids = iter(f"al-{i}" for i in range(100))
    return bk.apply_decisions(book, decisions, POLICY, now, lambda: next(ids))


def test_rescore_opens_retrospective_alerts_and_pages_nobody() -> None:
    book = bk.PatientBook("t1", PID, members=MEMBERS)
    _, live = run_event(book, ev(sig(SignalCode.regression), sig(SignalCode.plateau), run=None))
    assert bk.notifications(live), "the same event live pages (the test would prove nothing otherwise)"
    new_book, effects = run_event(book, ev(sig(SignalCode.regression), sig(SignalCode.plateau)))
    assert bk.notifications(effects) == []
    assert {a.kind for a in new_book.active()} == {AlertKind.regression, AlertKind.plateau}
    assert all(a.retrospective for a in new_book.active())
    audits = [e for e in effects if isinstance(e, bk.Audit)]
    rescored = [a for a in audits if a.action == "rescored"]
    assert {a.alert_id for a in rescored} == {a.id for a in new_book.active()}
    assert all(a.detail == {"rescore_run": RUN} for a in rescored)
    assert any(a.action == "not_paged" for a in audits)


def test_rescore_red_flag_pages_nobody_and_is_not_marked_handled() -> None:
    book = bk.PatientBook("t1", PID, members=MEMBERS)
    red = sig(SignalCode.red_flag, event_id="c-1", flags=["foot_drop"])
    after, effects = run_event(book, ev(red))
    assert bk.notifications(effects) == []
    (alert,) = after.active()
    assert alert.kind is AlertKind.red_flag and alert.retrospective and not alert.paged_flags
    assert after.red_flags_seen == {}, "a re-scoring must not record the observation as handled"
    # The live update that reports the same observation still pages it (H1).
    live_book, live = run_event(after, ev(red, run=None))
    assert bk.notifications(live)
    assert "c-1" in live_book.red_flags_seen


def test_rescore_never_promotes_renotifies_or_repages() -> None:
    book = bk.PatientBook("t1", PID, members=MEMBERS)
    opened, _ = run_event(book, ev(sig(SignalCode.plateau), sig(SignalCode.red_flag, event_id="c-1", flags=["a"])))
    # New evidence on retrospective alerts, new red flags: live this would promote and re-page.
    later = T0 + timedelta(days=1)
    event = ev(sig(SignalCode.plateau, later), sig(SignalCode.red_flag, later, "c-2", ["b"]), as_of=later)
    live_decisions = evaluate(event.model_copy(update={"rescore_run": None}), opened.active(), (), POLICY, later)
    assert any(isinstance(d, UpdateAlert) and (d.renotify or d.repage) for d in live_decisions)
    after, effects = run_event(opened, event, later)
    assert bk.notifications(effects) == []
    assert all(a.retrospective for a in after.active())


def test_retrospective_only_is_pure_and_keeps_resolutions() -> None:
    open_ = OpenAlert(
        AlertKind.plateau, Severity.medium, "s", (), None, T0, retrospective=False, paged_flags=frozenset({"x"})
    )
    resolve = ResolveAlert("al-1", "condition cleared")
    out = retrospective_only([open_, resolve], RUN)
    assert out == [
        OpenAlert(AlertKind.plateau, Severity.medium, "s", (), None, T0, retrospective=True, rescore_run=RUN),
        ResolveAlert("al-1", "condition cleared", rescore_run=RUN),
    ]
    assert open_.retrospective is False  # inputs untouched


def test_live_events_are_unchanged_by_the_field() -> None:
    event = ev(sig(SignalCode.regression), run=None)
    assert TrajectoryUpdated.model_validate_json(event.model_dump_json()).rescore_run is None
    (d,) = evaluate(event, [], [], POLICY, T0)
    assert isinstance(d, OpenAlert) and not d.retrospective and d.rescore_run is None
