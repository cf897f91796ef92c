"""Model-based safety test of the pure decision pipeline (docs/safety.md, "Model-based test").

A hypothesis `RuleBasedStateMachine` drives two patients of two tenants (with the same patient id)
through random sequences of check-ins (with and without red flags, late, duplicated, conflicting),
activity, acknowledges, resolves, snoozes and their ends, clock advances with escalations,
reminders and disengagement, under a random tenant policy (quiet hours, escalation chain). Each
step runs what the live shell runs, minus the I/O: daily aggregation and the scoring engine
(`services.scoring`), the alert rules and timers, and the alert book (`services.alerts.book`)
that turns decisions into effects. After every step it checks the safety invariants:

- I1 every live red-flag observation (arrived within 72 h of being recorded) whose flags the
  patient had not reported under that event id before is paged in that step, unless an
  unresolved, paging red-flag alert had already paged all its flags; afterwards an unresolved
  red-flag alert covers its flags;
- I2 red flags are never snoozed, inhibited, delayed by quiet hours or resolved automatically;
- I3 at most one unresolved alert per patient and kind; no effect concerns another patient's or
  tenant's alerts or care team;
- I4 a snooze never outlives its `until` (nothing is held back as snoozed without an active one);
- I5 no notification goes to a member whose `min_severity` excludes the alert's severity; low and
  medium pages inside quiet hours are deferred to their end, never dropped.

`test_the_model_finds_the_old_red_flag_defect` runs the same machine against the pre-fix rule
(one red-flag signal carrying the first report in the window, suppressed when not newer than a
resolved alert): the machine must find the missed page by itself.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, assume, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from schemas.alerts import DEFAULT_SEVERITY, AlertKind, AlertStatus
from schemas.common import RedFlag, Role, Severity
from schemas.events import TrajectoryUpdated, TriggerRef
from schemas.trajectory import Signal, SignalCode, Trajectory
from services.alerts import book as alert_book
from services.alerts import rules, snooze_rules, timers
from services.alerts.book import Effect, PatientBook, QueueNotifications, StoreAlert
from services.alerts.model import (
    AlertPolicy,
    Decision,
    EscalationStep,
    Member,
    RedFlagSeen,
    ResolveAlert,
    SnoozeState,
    Suppressed,
    SuppressReason,
)
from services.scoring import daily, engine
from services.scoring.model import ActivityObs, CheckinObs, DayRecord, PatientProfile, RedFlagObs

T0 = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
WINDOW = timedelta(hours=72)
FLAGS = [f.value for f in RedFlag]
LOWER_KINDS = [k for k in AlertKind if k is not AlertKind.red_flag]
Evaluate = Callable[..., list[Decision]]


def _members(tenant: str) -> tuple[Member, ...]:
    """A care team with every severity threshold; targets name the tenant (to catch mixing)."""
    return (
        Member("physio", Role.physical_therapist, Severity.medium, webhook_url=f"https://{tenant}.example/physio"),
        Member("coord", Role.care_coordinator, Severity.low, email=f"coord@{tenant}.example"),
        Member("doc", Role.physician, Severity.high, webhook_url=f"https://{tenant}.example/doc"),
        Member("oncall", Role.on_call, Severity.critical, webhook_url=f"https://{tenant}.example/oncall"),
    )


@dataclass
class Patient:
    """One patient's data as scoring stores it, and its alert book as the alerts service keeps it."""

    tenant: str
    profile: PatientProfile
    book: PatientBook
    checkins: dict[str, CheckinObs] = field(default_factory=dict)
    conflicts: list[RedFlagObs] = field(default_factory=list)
    activity: list[ActivityObs] = field(default_factory=list)
    # What the patient has reported, per event id, as red flags (the model's own ledger).
    reported: dict[str, set[str]] = field(default_factory=dict)
    ended_snoozes: set[str] = field(default_factory=set)
    last_checkin: datetime | None = None

    def days(self) -> list[DayRecord]:
        by_day: dict[date, tuple[list[CheckinObs], list[ActivityObs], list[RedFlagObs]]] = {}
        for c in self.checkins.values():
            by_day.setdefault(c.recorded_at.date(), ([], [], []))[0].append(c)
        for a in self.activity:
            by_day.setdefault(daily.activity_day(a, UTC_ZONE), ([], [], []))[1].append(a)
        for o in self.conflicts:
            by_day.setdefault(o.recorded_at.date(), ([], [], []))[2].append(o)
        return [daily.aggregate_day(d, cs, acts, conf) for d, (cs, acts, conf) in sorted(by_day.items())]


from zoneinfo import ZoneInfo  # noqa: E402  (kept next to its only use)

UTC_ZONE = ZoneInfo("UTC")


def assess(profile: PatientProfile, days: Sequence[DayRecord], as_of: datetime) -> list[Signal]:
    """The scoring engine's signals for the patient as of `as_of` (what the shell publishes)."""
    return list(engine.score(profile, days, as_of).signals)


def legacy_evaluate(
    event: TrajectoryUpdated,
    active: Sequence[Any],
    snoozes: Sequence[SnoozeState],
    policy: AlertPolicy,
    now: datetime,
    *,
    resolved_through: Mapping[AlertKind, datetime],
    red_flags_seen: Mapping[str, RedFlagSeen],
) -> list[Decision]:
    """The rule before the fix: one red-flag signal carrying the *first* report of the 72 h
    window, held back when it is not newer than a resolved red-flag alert."""
    reds = sorted((s for s in event.signals if s.code is SignalCode.red_flag), key=lambda s: s.event_time)
    if not reds:
        return rules.evaluate(event, active, snoozes, policy, now, resolved_through=resolved_through)
    first = reds[0]
    flags = sorted({f for s in reds for f in s.flags})
    merged = Signal(
        code=SignalCode.red_flag,
        event_time=first.event_time,
        event_id="legacy",
        reasons=[r for s in reds for r in s.reasons],
        flags=flags,
    )
    signals = [s for s in event.signals if s.code is not SignalCode.red_flag] + [merged]
    done = resolved_through.get(AlertKind.red_flag)
    handled = {"legacy": RedFlagSeen(first.event_time, frozenset(flags))}
    open_red = any(a.kind is AlertKind.red_flag for a in active)
    seen = handled if open_red or (done is not None and first.event_time <= done) else {}
    return rules.evaluate(
        event.model_copy(update={"signals": signals}),
        active,
        snoozes,
        policy,
        now,
        resolved_through=resolved_through,
        red_flags_seen=seen,
    )


def defect1_evaluate(
    event: TrajectoryUpdated,
    active: Sequence[Any],
    snoozes: Sequence[SnoozeState],
    policy: AlertPolicy,
    now: datetime,
    *,
    resolved_through: Mapping[AlertKind, datetime],
    red_flags_seen: Mapping[str, RedFlagSeen],
) -> list[Decision]:
    """Today's rule with defect 1 alone put back: with no unresolved red-flag alert, the red flags
    of the window are held back when the *first* of them is not newer than a resolved alert."""
    reds = [s for s in event.signals if s.code is SignalCode.red_flag]
    done = resolved_through.get(AlertKind.red_flag)
    open_red = any(a.kind is AlertKind.red_flag for a in active)
    if reds and not open_red and done is not None and min(s.event_time for s in reds) <= done:
        event = event.model_copy(update={"signals": [s for s in event.signals if s.code is not SignalCode.red_flag]})
    return rules.evaluate(
        event, active, snoozes, policy, now, resolved_through=resolved_through, red_flags_seen=red_flags_seen
    )


policies = st.builds(
    lambda quiet, start, length, esc: AlertPolicy(
        escalation={
            Severity.critical: (EscalationStep(timedelta(minutes=esc), (Role.on_call,)),),
            Severity.high: (EscalationStep(timedelta(hours=4), (Role.physician,)),),
            Severity.medium: (EscalationStep(timedelta(hours=8), (Role.physician, Role.on_call)),),
        },
        quiet_hours_start=time(start) if quiet else None,
        quiet_hours_end=time((start + length) % 24) if quiet else None,
        timezone="America/New_York",
        repeat_interval=timedelta(hours=4),
    ),
    st.booleans(),
    st.integers(0, 23),
    st.integers(1, 12),
    st.integers(5, 60),
)


class SafetyMachine(RuleBasedStateMachine):
    """See the module docstring. `evaluate` is the rule under test (a class attribute so the
    legacy rule can be swapped in)."""

    evaluate: Evaluate = staticmethod(rules.evaluate)

    def __init__(self) -> None:
        super().__init__()
        self.now = T0
        self.seq = 0
        self.policy = AlertPolicy()
        self.patients: list[Patient] = []

    @initialize(policy=policies)
    def setup(self, policy: AlertPolicy) -> None:
        self.policy = policy
        for tenant in ("clinic-a", "clinic-b"):
            profile = PatientProfile(
                patient_id="pt-1",
                condition="lumbar_radiculopathy",
                side="left",
                treatment="conservative",
                timezone="UTC",
            )
            self.patients.append(Patient(tenant, profile, PatientBook(tenant, "pt-1", members=_members(tenant))))

    # --- helpers ---------------------------------------------------------------------------

    def new_id(self) -> str:
        self.seq += 1
        return f"al-{self.seq:05d}"

    def apply(self, p: Patient, effects: list[Effect], before: PatientBook) -> None:
        """I3: effects concern only this patient's alerts (those of `before`, its book before the
        change, or created by it) and care team."""
        own = set(before.alerts)
        targets = {m.webhook_url for m in p.book.members} | {m.email for m in p.book.members}
        for e in effects:
            if isinstance(e, StoreAlert):
                assert e.state.patient_id == p.book.patient_id
                assert e.new or e.state.id in own or e.state.id in self.created
                if e.new:
                    self.created.add(e.state.id)
            if isinstance(e, QueueNotifications):
                assert all(r.target in targets for r in e.recipients), "a page went to another patient's team"

    def run_event(self, p: Patient, trigger: TriggerRef | None) -> list[Effect]:
        """What the shell does after storing new data: score, decide, apply."""
        days = p.days()
        stamps = [t for d in days for t in (d.last_recorded_at, d.last_sample_end) if t is not None]
        as_of = max(stamps)
        signals = assess(p.profile, days, as_of)
        event = TrajectoryUpdated(
            tenant_id=p.tenant,
            event_id=uuid.UUID(int=self.seq + 1),
            trajectory=Trajectory(patient_id="pt-1", state="insufficient_data", as_of=as_of),
            state_changed=False,
            signals=signals,
            trigger=trigger,
            last_checkin_at=p.last_checkin,
            computed_at=self.now,
        )
        b = p.book
        decisions = type(self).evaluate(
            event,
            b.active(),
            b.snoozes,
            self.policy,
            self.now,
            resolved_through=b.resolved_through,
            red_flags_seen=b.red_flags_seen,
        )
        self.check_decisions(p, decisions)
        self.created: set[str] = set()
        p.book, effects = alert_book.apply_decisions(b, decisions, self.policy, self.now, self.new_id)
        self.apply(p, effects, b)
        return effects

    def check_decisions(self, p: Patient, decisions: Sequence[Decision]) -> None:
        active_snoozes = {s.kind for s in p.book.snoozes if s.until > self.now and s.id not in p.ended_snoozes}
        for d in decisions:
            if isinstance(d, Suppressed):
                # I2: red flags are never held back by a snooze, another alert or a flare window.
                assert not (d.kind is AlertKind.red_flag and d.why != SuppressReason.already_resolved), d
                # I4: held back as snoozed only while a snooze of that kind is active.
                assert d.why != SuppressReason.snoozed or d.kind in active_snoozes, d
            if isinstance(d, ResolveAlert):
                alert = p.book.alerts.get(d.alert_id)
                assert alert is None or alert.kind is not AlertKind.red_flag, "red flag resolved automatically"

    def check_pages(self, effects: Sequence[Effect], p: Patient) -> None:
        """I2/I5 on every queued notification."""
        alerts = {**{a.id: a for a in p.book.alerts.values()}}
        for e in effects:
            if isinstance(e, StoreAlert):
                alerts[e.state.id] = e.state
        members = {m.member_id: m for m in p.book.members}
        for n in alert_book.notifications(effects):
            severity = Severity(n.severity)
            for r in n.recipients:
                assert severity.rank >= members[r.member_id].min_severity.rank, (n, r)
            delay = rules.quiet_hours_delay(severity, self.policy, self.now)
            if severity.rank >= Severity.high.rank or alerts[n.alert_id].kind is AlertKind.red_flag:
                assert n.not_before == self.now, "a high or critical page was delayed"
            else:
                assert n.not_before == (delay or self.now), "a quiet-hours page was not deferred to the window end"

    def check_red_flag_paged(
        self, p: Patient, key: str, flags: set[str], live: bool, before: PatientBook, effects: Sequence[Effect]
    ) -> None:
        """I1 for one observation that arrived in this step."""
        new_flags = flags - p.reported.get(key, set())
        p.reported.setdefault(key, set()).update(flags)
        if not live or not new_flags:
            return
        prior = before.of_kind(AlertKind.red_flag)
        covered = prior is not None and not prior.retrospective and new_flags <= prior.paged_flags
        paged = any(
            p.book.alerts.get(n.alert_id) is not None and p.book.alerts[n.alert_id].kind is AlertKind.red_flag
            for n in alert_book.notifications(effects)
        )
        assert covered or paged, f"red flags {sorted(new_flags)} of {key} were not paged"
        now_alert = p.book.of_kind(AlertKind.red_flag)
        assert now_alert is not None and not now_alert.retrospective and new_flags <= now_alert.paged_flags, (
            f"red flags {sorted(new_flags)} of {key} are not covered by a paging alert"
        )

    # --- rules -----------------------------------------------------------------------------

    @rule(
        which=st.integers(0, 1),
        hours_ago=st.one_of(st.integers(0, 6), st.integers(0, 100)),
        flags=st.one_of(st.just([]), st.lists(st.sampled_from(FLAGS), min_size=1, max_size=3, unique=True)),
        pain=st.integers(0, 10),
        numbness=st.integers(0, 10),
        spreading=st.booleans(),
        pt=st.booleans(),
    )
    def checkin(
        self, which: int, hours_ago: int, flags: list[str], pain: int, numbness: int, spreading: bool, pt: bool
    ) -> None:
        p = self.patients[which]
        recorded = self.now - timedelta(hours=hours_ago)
        key = str(uuid.UUID(int=10_000 + len(p.checkins) + 100_000 * which))
        obs = CheckinObs(
            event_id=key,
            recorded_at=recorded,
            received_at=self.now,
            pain=pain,
            numbness=numbness,
            numbness_spreading=spreading,
            pt_session_ended_at=recorded - timedelta(hours=2) if pt else None,
            pt_intensity="vigorous" if pt else None,
            red_flags=tuple(flags),
        )
        p.checkins[key] = obs
        p.last_checkin = recorded if p.last_checkin is None else max(p.last_checkin, recorded)
        before = p.book
        effects = self.run_event(p, TriggerRef(event_id=key, recorded_at=recorded, received_at=self.now))
        self.check_pages(effects, p)
        if flags:
            self.check_red_flag_paged(p, key, set(flags), self.now - recorded <= WINDOW, before, effects)

    @precondition(lambda self: any(p.checkins for p in self.patients))
    @rule(which=st.integers(0, 1), pick=st.integers(0, 10_000))
    def repost_identical(self, which: int, pick: int) -> None:
        """The same event delivered again: scoring stores it once and publishes nothing new."""
        p = self.patients[which]
        assume(p.checkins)
        key = sorted(p.checkins)[pick % len(p.checkins)]
        assert key in p.checkins  # stored once: nothing to evaluate, nothing pages

    @precondition(lambda self: any(p.checkins for p in self.patients))
    @rule(
        which=st.integers(0, 1),
        pick=st.integers(0, 10_000),
        flags=st.lists(st.sampled_from(FLAGS), min_size=1, max_size=3, unique=True),
    )
    def repost_conflicting(self, which: int, pick: int, flags: list[str]) -> None:
        """An event id reposted with other content carrying red flags (a conflict that reached
        scoring): its red flags join the day and must page."""
        p = self.patients[which]
        assume(p.checkins)
        key = sorted(p.checkins)[pick % len(p.checkins)]
        first = p.checkins[key]
        p.conflicts.append(RedFlagObs(key, first.recorded_at, self.now, tuple(sorted(flags))))
        before = p.book
        effects = self.run_event(p, TriggerRef(event_id=key, recorded_at=first.recorded_at, received_at=self.now))
        self.check_pages(effects, p)
        self.check_red_flag_paged(p, key, set(flags), self.now - first.recorded_at <= WINDOW, before, effects)

    @rule(which=st.integers(0, 1), steps=st.integers(0, 20_000), hours_ago=st.integers(0, 48))
    def activity(self, which: int, steps: int, hours_ago: int) -> None:
        p = self.patients[which]
        end = self.now - timedelta(hours=hours_ago)
        eid = str(uuid.UUID(int=500_000 + len(p.activity) + 100_000 * which))
        p.activity.append(ActivityObs(eid, "steps", end - timedelta(hours=1), end, float(steps), "watch", self.now))
        trigger = None  # a wearable sync: the shell's trigger is the newest check-in, absent here
        effects = self.run_event(p, trigger) if p.checkins else []
        self.check_pages(effects, p)

    @precondition(lambda self: any(p.book.alerts for p in self.patients))
    @rule(which=st.integers(0, 1), pick=st.integers(0, 10_000), resolve=st.booleans())
    def act(self, which: int, pick: int, resolve: bool) -> None:
        p = self.patients[which]
        assume(p.book.alerts)
        alert_id = sorted(p.book.alerts)[pick % len(p.book.alerts)]
        change = alert_book.resolve if resolve else alert_book.acknowledge
        self.created = set()
        before = p.book
        p.book, effects = change(before, alert_id, "physio", None, self.now)
        self.apply(p, effects, before)
        assert not alert_book.notifications(effects)

    @rule(which=st.integers(0, 1), kind=st.sampled_from(list(AlertKind)), hours=st.integers(-48, 24 * 40))
    def snooze(self, which: int, kind: AlertKind, hours: int) -> None:
        p = self.patients[which]
        until = self.now + timedelta(hours=hours)
        problem = snooze_rules.check(kind, until, self.policy, self.now)
        allowed = kind is not AlertKind.red_flag and self.now < until <= self.now + self.policy.max_snooze
        assert (problem is None) == allowed, (kind, hours, problem)
        if problem is None:
            self.seq += 1
            kept = tuple(s for s in p.book.snoozes if s.kind is not kind)  # a new snooze replaces the current one
            p.book = replace(p.book, snoozes=(*kept, SnoozeState(kind, until, id=f"sn-{self.seq}")))

    @precondition(lambda self: any(p.book.snoozes for p in self.patients))
    @rule(which=st.integers(0, 1), pick=st.integers(0, 10_000))
    def end_snooze(self, which: int, pick: int) -> None:
        p = self.patients[which]
        assume(p.book.snoozes)
        gone = p.book.snoozes[pick % len(p.book.snoozes)]
        p.book = replace(p.book, snoozes=tuple(s for s in p.book.snoozes if s.id != gone.id))

    @rule(minutes=st.one_of(st.integers(1, 90), st.integers(60, 60 * 24 * 3)))
    def advance(self, minutes: int) -> None:
        """Processing time passes: escalations, reminders and disengagement run."""
        self.now += timedelta(minutes=minutes)
        for p in self.patients:
            decisions = timers.sweep(p.book.active(), self.policy, self.now)
            self.created = set()
            before = p.book
            p.book, effects = alert_book.apply_timers(before, decisions, self.policy, self.now)
            self.apply(p, effects, before)
            self.check_pages(effects, p)
            dis = p.book.of_kind(AlertKind.disengagement)
            red = p.book.of_kind(AlertKind.red_flag)
            d = timers.disengagement(
                "pt-1",
                p.last_checkin,
                dis,
                self.policy,
                self.now,
                snoozes=p.book.snoozes,
                red_flag_active=red is not None and not red.retrospective,
                resolved_through=p.book.resolved_through.get(AlertKind.disengagement),
            )
            if d is not None:
                before = p.book
                p.book, effects = alert_book.apply_decisions(before, [d], self.policy, self.now, self.new_id)
                self.apply(p, effects, before)
                self.check_pages(effects, p)

    # --- invariants ------------------------------------------------------------------------

    @invariant()
    def one_unresolved_alert_per_kind(self) -> None:
        for p in self.patients:
            kinds = [a.kind for a in p.book.alerts.values()]
            assert len(kinds) == len(set(kinds)), kinds
            assert all(a.status is not AlertStatus.resolved for a in p.book.alerts.values())
            assert all(a.patient_id == "pt-1" for a in p.book.alerts.values())

    @invariant()
    def alert_ids_are_not_shared_between_tenants(self) -> None:
        if len(self.patients) == 2:
            assert not set(self.patients[0].book.alerts) & set(self.patients[1].book.alerts)

    @invariant()
    def severities_are_defaults(self) -> None:
        for p in self.patients:
            for a in p.book.alerts.values():
                assert a.severity.rank >= DEFAULT_SEVERITY[a.kind].rank


SETTINGS = settings(
    max_examples=400,
    stateful_step_count=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    database=None,  # every run explores afresh (and times the same on a clean clone)
)


def test_safety_invariants_hold_over_random_histories() -> None:
    run_state_machine_as_test(SafetyMachine, settings=SETTINGS)


class LegacySafetyMachine(SafetyMachine):
    evaluate: Evaluate = staticmethod(legacy_evaluate)


class Defect1SafetyMachine(SafetyMachine):
    evaluate: Evaluate = staticmethod(defect1_evaluate)


def test_the_model_finds_the_old_red_flag_rule() -> None:
    """Against the pre-fix rule the machine must find, by itself, a red flag that paged nobody."""
    with pytest.raises(AssertionError, match="were not paged"):
        run_state_machine_as_test(LegacySafetyMachine, settings=settings(SETTINGS, max_examples=300))


def test_the_model_finds_defect_1_by_itself() -> None:
    """Defect 1 alone (a new red flag after a resolved one, inside the 72 h window, suppressed):
    the machine must find it: a check-in with a red flag, a resolve, a newer red-flag check-in."""
    with pytest.raises(AssertionError, match="were not paged") as failure:
        run_state_machine_as_test(
            Defect1SafetyMachine, settings=settings(SETTINGS, max_examples=1000, phases=[Phase.generate])
        )
    steps = "\n".join(getattr(failure.value, "__notes__", []))
    assert "resolve=True" in steps, steps
