"""Data days at risk: the pure rule (services/scoring/billing/risk.py) and the alert it becomes
(services/alerts/rules.billing_risk, book, timers).

Boundaries: the lead (slack == lead raises, lead + 1 does not, slack < 0 is out of reach), the
period's last day and the day after it, DST (the patient's local date, not the UTC one), an
already safe period, one raise per period, and the alert: low, deferred by quiet hours, never
escalated or reminded, untouched by trajectory updates, resolved by the matching end only.
"""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.alerts import AlertKind, AlertStatus
from schemas.common import Role, Severity
from schemas.events import DataDaysAtRisk, DataDaysRiskEnded, TrajectoryUpdated
from schemas.trajectory import Trajectory, TrajectoryState
from services.alerts import rules, timers
from services.alerts.book import PatientBook, QueueNotifications, apply_decisions, notifications
from services.alerts.model import (
    AlertPolicy,
    AlertState,
    EscalationStep,
    Member,
    OpenAlert,
    ResolveAlert,
    SnoozeState,
    Suppressed,
)
from services.scoring.billing import engine
from services.scoring.billing.model import (
    ALL_CODES,
    BillingSettings,
    Code,
    DataDay,
    PeriodsResult,
    RiskStatus,
    Source,
)
from services.scoring.billing.risk import AtRisk, End, EndReason, Raise, Raised, at_risk, plan

NY = ZoneInfo("America/New_York")
START = date(2026, 11, 1)  # periods 2026-11-01..2026-11-30, then from 2026-12-01
END = date(2026, 11, 30)
DEFAULT = BillingSettings()
KNOWN = datetime(2026, 1, 1, tzinfo=UTC)


def figures(data: list[date], today: date, tz: ZoneInfo = NY, s: BillingSettings = DEFAULT) -> PeriodsResult:
    """The periods at 12:00 local on `today`, with data on `data`, anchored at START."""
    now = datetime.combine(today, time(12), tz).astimezone(UTC)
    days = [DataDay(d, Source.checkin, KNOWN) for d in data]
    return engine.compute_periods(days, settings=s, now=now, tz=tz, anchor=START)


def first_days(n: int) -> list[date]:
    return [START + timedelta(days=i) for i in range(n)]


def today_for_slack(data_days: int, slack: int) -> date:
    """The day on which a patient with data on the first `data_days` days (none since) has `slack`:
    possible = data_days + (30 - elapsed), slack = possible - 16."""
    elapsed = data_days + 30 - 16 - slack
    return START + timedelta(days=elapsed)


# -- the rule ----------------------------------------------------------------------------------


@pytest.mark.parametrize("lead", [0, 1, 2, 5])
def test_at_risk_from_slack_equal_to_the_lead_down_to_zero(lead: int) -> None:
    data = first_days(5)
    for slack in range(lead + 1):
        today = today_for_slack(5, slack)
        risk = at_risk(figures(data, today), today, lead)
        assert risk == AtRisk(START, END, 5, 16 + slack), (lead, slack)
        assert risk.needed == 11 and risk.slack == slack and risk.remaining == 11 + slack


@pytest.mark.parametrize("lead", [0, 2])
def test_more_slack_than_the_lead_is_not_at_risk(lead: int) -> None:
    today = today_for_slack(5, lead + 1)
    assert at_risk(figures(first_days(5), today), today, lead) is None


def test_out_of_reach_is_not_at_risk() -> None:
    today = today_for_slack(5, -1)
    result = figures(first_days(5), today)
    assert result.periods[-1].data_days_possible == 15
    assert at_risk(result, today, 2) is None


def test_lead_zero_means_only_when_every_remaining_day_is_needed() -> None:
    today = today_for_slack(5, 0)
    risk = at_risk(figures(first_days(5), today), today, 0)
    assert risk is not None and risk.needed == risk.remaining == 11


def test_a_negative_lead_is_refused() -> None:
    with pytest.raises(ValueError, match="lead"):
        at_risk(figures(first_days(5), START), START, -1)


def test_data_today_counts_and_does_not_change_the_slack() -> None:
    # Reporting today turns a remaining day into a data day: possible is unchanged.
    today = today_for_slack(5, 1)
    without = at_risk(figures(first_days(5), today), today, 2)
    with_today = at_risk(figures([*first_days(5), today], today), today, 2)
    assert without is not None and with_today is not None
    assert (with_today.data_days, with_today.data_days_possible) == (6, without.data_days_possible)


def test_the_last_day_of_the_period_and_the_day_after() -> None:
    data = [*first_days(15)[1:], START + timedelta(days=20)]  # 15 data days, none on the last day yet
    risk = at_risk(figures(data, END), END, 2)
    assert risk is not None and (risk.needed, risk.remaining, risk.slack) == (1, 1, 0)
    after = END + timedelta(days=1)
    next_figures = figures(data, after)
    assert next_figures.periods[0].closed and not next_figures.periods[1].closed
    assert at_risk(next_figures, after, 2) is None  # day 1 of the next period: 30 possible
    raised = Raised(START, END, datetime(2026, 11, 30, 17, tzinfo=UTC))
    assert plan(next_figures, after, DEFAULT, [raised]) == [End(raised, EndReason.period_closed)]


def test_the_local_date_decides_across_a_dst_change() -> None:
    # The period 2026-10-20..2026-11-18 spans the end of DST in New York (1 November). At
    # 23:30 EST on 17 November it is already 18 November in UTC: the patient still has two days
    # (17 and 18) and needs both; the period is 30 local days whatever the 25-hour day.
    start = date(2026, 10, 20)
    data = [start + timedelta(days=i) for i in range(14)]  # 14 data days, to 2 November
    now = datetime(2026, 11, 18, 4, 30, tzinfo=UTC)
    assert now.astimezone(NY).date() == date(2026, 11, 17)
    days = [DataDay(d, Source.checkin, KNOWN) for d in data]
    result = engine.compute_periods(days, settings=DEFAULT, now=now, tz=NY, anchor=start)
    today = engine.local_date(now, NY)
    p = result.periods[0]
    assert (p.start, p.end, p.closed) == (start, date(2026, 11, 18), False)
    risk = at_risk(result, today, 2)
    assert risk is not None and (risk.needed, risk.remaining, risk.slack) == (2, 2, 0)
    # Counted in UTC days, one day would be lost and the period out of reach.
    in_utc = engine.compute_periods(days, settings=DEFAULT, now=now, tz=UTC, anchor=start)
    assert at_risk(in_utc, now.date(), 2) is None


def test_an_already_safe_period_is_never_at_risk_and_ends_a_raise_as_reached() -> None:
    data = first_days(16)
    today = START + timedelta(days=27)
    result = figures(data, today)
    assert result.periods[-1].data_days == 16
    assert at_risk(result, today, 29) is None
    raised = Raised(START, END, datetime(2026, 11, 20, tzinfo=UTC))
    assert plan(result, today, DEFAULT, [raised]) == [End(raised, EndReason.reached)]


def test_plan_raises_once_per_period() -> None:
    today = today_for_slack(5, 1)
    result = figures(first_days(5), today)
    [action] = plan(result, today, DEFAULT, [])
    assert isinstance(action, Raise) and action.risk.period_start == START
    raised = Raised(START, END, datetime(2026, 11, 19, tzinfo=UTC))
    assert plan(result, today, DEFAULT, [raised]) == []  # stored: the next sweep does nothing
    # Ended earlier in this period (e.g. late data gave slack, then more days were missed): no new raise.
    assert plan(result, today, DEFAULT, [], frozenset({START})) == []


def test_a_raise_ends_when_slack_returns_the_period_is_lost_or_98977_is_disabled() -> None:
    raised = Raised(START, END, datetime(2026, 11, 18, tzinfo=UTC))
    today = today_for_slack(5, 1)
    late = figures(first_days(7), today)  # two late days arrived: slack 3
    assert plan(late, today, DEFAULT, [raised]) == [End(raised, EndReason.on_track)]
    lost_day = today_for_slack(5, -1)
    assert plan(figures(first_days(5), lost_day), lost_day, DEFAULT, [raised]) == [End(raised, EndReason.unreachable)]
    off = BillingSettings(enabled_codes=ALL_CODES - {Code.supply_16_30})
    result = figures(first_days(5), today, s=off)
    assert plan(result, today, off, [raised]) == [End(raised, EndReason.not_judged)]
    assert plan(result, today, off, []) == []


def test_a_larger_lead_setting_raises_earlier() -> None:
    today = today_for_slack(5, 4)
    result = figures(first_days(5), today)
    assert plan(result, today, DEFAULT, []) == []
    wide = BillingSettings(at_risk_lead_days=4)
    [action] = plan(result, today, wide, [])
    assert isinstance(action, Raise) and action.risk.slack == 4


@settings(max_examples=200, derandomize=True, deadline=None, database=None)
@given(
    st.sets(st.integers(min_value=0, max_value=29), max_size=30),
    st.integers(min_value=0, max_value=29),
    st.integers(min_value=0, max_value=6),
)
def test_at_risk_agrees_with_the_engines_risk_status(offsets: set[int], today_offset: int, lead: int) -> None:
    today = START + timedelta(days=today_offset)
    data = sorted(START + timedelta(days=i) for i in offsets if i <= today_offset)
    s = BillingSettings(at_risk_lead_days=lead)
    result = figures(data, today, s=s)
    p = result.periods[-1]
    assert p.risk is not None
    assert (at_risk(result, today, lead) is not None) == (p.risk.status is RiskStatus.at_risk)


# -- the alert ---------------------------------------------------------------------------------

T0 = datetime(2026, 11, 19, 22, 0, tzinfo=UTC)  # 22:00 UTC: inside the default quiet hours
KIND = AlertKind.data_days_at_risk
LOW_MEMBER = Member("coord-1", Role.care_coordinator, Severity.low, webhook_url="https://example.test/hook")


def raised_event(at: datetime = T0, pid: str = "pt-1") -> DataDaysAtRisk:
    return DataDaysAtRisk(
        tenant_id="t1",
        event_id=uuid.uuid4(),
        patient_id=pid,
        period_start=START,
        period_end=END,
        data_days=5,
        data_days_possible=17,
        needed=11,
        lead_days=2,
        raised_at=at,
    )


def ended_event(raised_at: datetime = T0, reason: str = "period_closed") -> DataDaysRiskEnded:
    return DataDaysRiskEnded(
        tenant_id="t1",
        event_id=uuid.uuid4(),
        patient_id="pt-1",
        period_start=START,
        period_end=END,
        raised_at=raised_at,
        reason=reason,
        ended_at=raised_at + timedelta(days=11),
    )


def opened(at: datetime = T0) -> AlertState:
    decision = rules.billing_risk(raised_event(at), None, [], at)
    assert isinstance(decision, OpenAlert)
    return AlertState.opened(decision, "al_1", "pt-1", at)


def test_a_raise_opens_one_low_alert_and_a_redelivery_changes_nothing() -> None:
    decision = rules.billing_risk(raised_event(), None, [], T0)
    assert isinstance(decision, OpenAlert)
    assert (decision.kind, decision.severity, decision.retrospective) == (KIND, Severity.low, False)
    assert decision.event_time == T0 and decision.trajectory_state is None
    assert "11 more needed" in decision.reasons[0].detail
    assert rules.billing_risk(raised_event(), opened(), [], T0) is None
    # After a resolve, the same raise redelivered does not re-open it.
    assert rules.billing_risk(raised_event(), None, [], T0, resolved_through=T0) == Suppressed(KIND, "already_resolved")


def test_a_snoozed_kind_is_held_back() -> None:
    snooze = SnoozeState(KIND, T0 + timedelta(days=3))
    assert rules.billing_risk(raised_event(), None, [snooze], T0) == Suppressed(KIND, "snoozed")


def test_the_end_of_its_raise_resolves_it_and_an_older_end_does_not() -> None:
    alert = opened()
    assert rules.billing_risk(ended_event(), alert, [], T0) == ResolveAlert(alert.id, "data days: period_closed")
    older = ended_event(raised_at=T0 - timedelta(days=30))
    assert rules.billing_risk(older, alert, [], T0) is None
    assert rules.billing_risk(ended_event(), None, [], T0) is None


def test_an_alert_of_another_kind_or_patient_is_refused() -> None:
    with pytest.raises(ValueError):
        rules.billing_risk(raised_event(pid="pt-2"), opened(), [], T0)


def test_data_days_at_risk_never_pages_out_of_hours() -> None:
    """H20: the one notification of the alert waits for the end of quiet hours (07:00 in the
    policy's time zone); it is never escalated and never reminded, whatever the tenant's chain
    for low alerts; trajectory updates never touch it."""
    policy = AlertPolicy(
        escalation={Severity.low: (EscalationStep(timedelta(minutes=1), (Role.on_call, Role.physician)),)},
        timezone="America/New_York",
        quiet_hours_start=time(21),
        quiet_hours_end=time(7),
    )
    on_call = Member("oncall-1", Role.on_call, Severity.low, webhook_url="https://example.test/oncall")
    book = PatientBook("t1", "pt-1", members=(LOW_MEMBER, on_call))
    for hour in (21, 23, 2, 6):  # local New York times inside quiet hours
        now = datetime.combine(date(2026, 11, 19), time(hour), NY).astimezone(UTC)
        if hour < 12:
            now += timedelta(days=1)
        decision = rules.billing_risk(raised_event(now), None, [], now)
        assert decision is not None
        after, effects = apply_decisions(book, [decision], policy, now, lambda: "al_1")
        queued = notifications(effects)
        assert queued, "the low alert is routed to the low members"
        for q in queued:
            assert isinstance(q, QueueNotifications)
            local = q.not_before.astimezone(NY)
            assert local.time() == time(7) and q.not_before > now, (hour, local)
        alert = after.alerts["al_1"]
        for later in (now + timedelta(minutes=1), now + timedelta(hours=5), now + timedelta(days=3)):
            assert timers.sweep([alert], policy, later) == []
        event = _trajectory_update(now + timedelta(days=5))
        assert rules.evaluate(event, [alert], [], policy, now + timedelta(days=5)) == []


def _trajectory_update(at: datetime) -> TrajectoryUpdated:
    return TrajectoryUpdated(
        tenant_id="t1",
        event_id=uuid.uuid4(),
        trajectory=Trajectory(patient_id="pt-1", state=TrajectoryState.improving, as_of=at),
        state_changed=False,
        computed_at=at,
    )


def test_inside_hours_it_is_sent_at_once_and_still_never_escalates() -> None:
    policy = AlertPolicy(escalation={Severity.low: (EscalationStep(timedelta(minutes=1), (Role.on_call,)),)})
    now = datetime(2026, 11, 19, 12, 0, tzinfo=UTC)
    decision = rules.billing_risk(raised_event(now), None, [], now)
    assert decision is not None
    after, effects = apply_decisions(
        PatientBook("t1", "pt-1", members=(LOW_MEMBER,)), [decision], policy, now, lambda: "a"
    )
    [q] = notifications(effects)
    assert q.not_before == now
    assert after.alerts["a"].status is AlertStatus.open
    assert timers.sweep(list(after.alerts.values()), policy, now + timedelta(hours=8)) == []
