"""Unit tests of the pure alert timers (services/alerts/timers.py): escalation, reminders, disengagement."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from schemas.alerts import AlertKind, AlertStatus, Channel
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
    policy_from_dict,
)
from services.alerts.timers import disengagement, escalation_recipients, reminder_recipients, sweep

T0 = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
POLICY = AlertPolicy()
MIN = timedelta(minutes=1)
SEC = timedelta(seconds=1)
H = timedelta(hours=1)
DAY = timedelta(days=1)


def alert(severity: Severity = Severity.critical, **changes: Any) -> AlertState:
    base = AlertState(
        id="al-1",
        patient_id="pt-1",
        kind=AlertKind.red_flag,
        severity=severity,
        status=AlertStatus.open,
        opened_at=T0,
        updated_at=T0,
        event_time=T0 - MIN,
        last_notified_at=T0,
    )
    return dataclasses.replace(base, **changes)


# --- Escalation -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("elapsed", "expected"),
    [
        (15 * MIN - SEC, []),
        (15 * MIN, [Escalate("al-1", 1, (Role.on_call,))]),
        (20 * MIN, [Escalate("al-1", 1, (Role.on_call,))]),
    ],
)
def test_critical_escalates_to_on_call_at_exactly_15_minutes(elapsed: timedelta, expected: list[Escalate]) -> None:
    assert sweep([alert()], POLICY, T0 + elapsed) == expected


@pytest.mark.parametrize(
    ("elapsed", "expected"),
    [(30 * MIN - SEC, []), (30 * MIN, [Escalate("al-1", 2, (Role.physician, Role.surgeon))])],
)
def test_critical_second_step_at_30_minutes_from_opening(elapsed: timedelta, expected: list[Escalate]) -> None:
    assert sweep([alert(escalation_level=1)], POLICY, T0 + elapsed) == expected


def test_chain_exhausted_means_no_further_escalation() -> None:
    assert sweep([alert(escalation_level=2, last_notified_at=T0 + 30 * MIN)], POLICY, T0 + 2 * H) == []


def test_several_overdue_steps_jump_to_the_furthest_with_every_role() -> None:
    assert sweep([alert()], POLICY, T0 + 45 * MIN) == [
        Escalate("al-1", 2, (Role.on_call, Role.physician, Role.surgeon))
    ]


@pytest.mark.parametrize(
    ("elapsed", "expected"),
    [(4 * H - SEC, []), (4 * H, [Escalate("al-1", 1, (Role.physician,))])],
)
def test_high_escalates_to_physician_at_exactly_4_hours(elapsed: timedelta, expected: list[Escalate]) -> None:
    a = alert(Severity.high, last_notified_at=T0 + elapsed)  # no reminder due, isolate escalation
    assert sweep([a], POLICY, T0 + elapsed) == expected


@pytest.mark.parametrize("severity", [Severity.low, Severity.medium])
def test_low_and_medium_have_no_default_chain(severity: Severity) -> None:
    assert sweep([alert(severity, last_notified_at=T0 + 1000 * H)], POLICY, T0 + 1000 * H) == []


@pytest.mark.parametrize("status", [AlertStatus.acknowledged, AlertStatus.resolved])
def test_acknowledged_and_resolved_alerts_neither_escalate_nor_remind(status: AlertStatus) -> None:
    assert sweep([alert(status=status)], POLICY, T0 + 1000 * H) == []


def test_retrospective_alerts_neither_escalate_nor_remind() -> None:
    assert sweep([alert(retrospective=True)], POLICY, T0 + 1000 * H) == []


def test_tenant_chain_applies() -> None:
    policy = policy_from_dict(
        {"escalation": {"medium": [{"after_minutes": 60, "roles": ["care_coordinator"]}], "critical": []}}
    )
    assert sweep([alert(Severity.medium, last_notified_at=T0 + H)], policy, T0 + H) == [
        Escalate("al-1", 1, (Role.care_coordinator,))
    ]
    assert sweep([alert(Severity.critical, last_notified_at=T0 + H)], policy, T0 + H) == []


# --- Reminders -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("since", "reminds"), [(4 * H - SEC, False), (4 * H, True), (9 * H, True)])
def test_reminder_after_repeat_interval(since: timedelta, reminds: bool) -> None:
    a = alert(Severity.medium, last_notified_at=T0)
    assert sweep([a], POLICY, T0 + since) == ([Remind("al-1")] if reminds else [])


def test_never_notified_alert_gets_no_reminder() -> None:
    assert sweep([alert(Severity.low, last_notified_at=None)], POLICY, T0 + 100 * H) == []


def test_escalation_takes_precedence_over_a_due_reminder() -> None:
    a = alert(Severity.high, last_notified_at=T0)
    assert sweep([a], POLICY, T0 + 4 * H) == [Escalate("al-1", 1, (Role.physician,))]
    escalated = dataclasses.replace(a, escalation_level=1, last_notified_at=T0 + 4 * H)
    assert sweep([escalated], POLICY, T0 + 8 * H) == [Remind("al-1")]


def test_tenant_repeat_interval_applies() -> None:
    policy = policy_from_dict({"repeat_interval_minutes": 30})
    assert sweep([alert(Severity.low)], policy, T0 + 30 * MIN) == [Remind("al-1")]


def test_sweep_output_is_ordered_by_opening_whatever_the_input_order() -> None:
    a = alert(Severity.low, id="b", opened_at=T0 - H, last_notified_at=T0 - 10 * H)
    b = alert(Severity.low, id="a", opened_at=T0 - H, last_notified_at=T0 - 10 * H)
    c = alert(Severity.critical, id="c", opened_at=T0 - 2 * H, escalation_level=2, last_notified_at=T0 - 10 * H)
    expected = [Remind("c"), Remind("a"), Remind("b")]
    assert sweep([a, b, c], POLICY, T0) == expected
    assert sweep([c, b, a], POLICY, T0) == expected


def test_sweep_rejects_a_naive_clock() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        sweep([], POLICY, datetime(2026, 1, 1))


# --- Escalation recipients ------------------------------------------------------------------------------

MEMBERS = [
    Member("pt-7", Role.physical_therapist, Severity.medium, webhook_url="https://h/pt", email="pt@example.org"),
    Member("oncall", Role.on_call, Severity.critical, webhook_url="https://h/oncall"),
    Member("doc", Role.physician, Severity.critical, email="doc@example.org"),
    Member("surg", Role.surgeon, Severity.critical),
]


def test_escalation_recipients_by_role_and_min_severity() -> None:
    crit = Severity.critical
    assert escalation_recipients((Role.physician, Role.surgeon), MEMBERS, crit) == [
        Recipient("doc", Channel.email, "doc@example.org")
    ]
    assert escalation_recipients((Role.physical_therapist,), MEMBERS, crit) == [
        Recipient("pt-7", Channel.webhook, "https://h/pt"),
        Recipient("pt-7", Channel.email, "pt@example.org"),
    ]


def test_escalation_never_overrides_a_members_min_severity() -> None:
    # The physician takes critical alerts only: a high alert's escalation to physicians reaches nobody.
    assert escalation_recipients((Role.physician,), MEMBERS, Severity.high) == []
    assert escalation_recipients((Role.physical_therapist,), MEMBERS, Severity.low) == []


def test_escalation_recipients_empty_when_no_member_has_the_role() -> None:
    assert escalation_recipients((Role.care_coordinator,), MEMBERS, Severity.critical) == []
    assert escalation_recipients((), MEMBERS, Severity.critical) == []
    assert escalation_recipients((Role.surgeon,), MEMBERS, Severity.critical) == []  # has the role, but no channel


def test_escalation_recipients_collapse_duplicates() -> None:
    assert escalation_recipients((Role.on_call,), [MEMBERS[1], MEMBERS[1]], Severity.critical) == [
        Recipient("oncall", Channel.webhook, "https://h/oncall")
    ]


def test_reminder_recipients_include_roles_reached_by_escalation() -> None:
    a = alert(Severity.high, escalation_level=0)
    assert [r.member_id for r in reminder_recipients(a, MEMBERS, POLICY)] == ["pt-7", "pt-7"]
    escalated = dataclasses.replace(a, escalation_level=1)
    # The physician reached by escalation takes critical alerts only: a high alert's reminder skips them.
    assert [r.member_id for r in reminder_recipients(escalated, MEMBERS, POLICY)] == ["pt-7", "pt-7"]
    doc_high = [dataclasses.replace(m, min_severity=Severity.high) if m.member_id == "doc" else m for m in MEMBERS]
    assert [r.member_id for r in reminder_recipients(escalated, doc_high, POLICY)] == ["pt-7", "pt-7", "doc"]


# --- Disengagement -----------------------------------------------------------------------------------------


def dis_alert(event_time: datetime, **changes: Any) -> AlertState:
    return alert(
        Severity.low, id="al-dis", kind=AlertKind.disengagement, event_time=event_time, patient_id="pt-1", **changes
    )


def test_no_checkin_ever_is_not_judged() -> None:
    assert disengagement("pt-1", None, None, POLICY, T0) is None


@pytest.mark.parametrize(("age", "opens"), [(4 * DAY - SEC, False), (4 * DAY, True), (9 * DAY + 5 * H, True)])
def test_disengagement_opens_after_4_days_without_checkin(age: timedelta, opens: bool) -> None:
    last = T0 - age
    result = disengagement("pt-1", last, None, POLICY, T0)
    if not opens:
        assert result is None
        return
    days = age // DAY
    assert result == OpenAlert(
        kind=AlertKind.disengagement,
        severity=Severity.low,
        summary=f"No check-in for {days} days",
        reasons=(
            Reason(
                code="no_recent_checkin",
                detail=f"last check-in at {last.strftime('%Y-%m-%dT%H:%M:%SZ')}, {days} days ago",
            ),
        ),
        trajectory_state=None,
        event_time=last,
        retrospective=False,
    )


def test_disengagement_summary_for_short_tenant_windows() -> None:
    short = dataclasses.replace(POLICY, disengagement_after=H)
    one_day = disengagement("pt-1", T0 - DAY, None, short, T0)
    assert isinstance(one_day, OpenAlert)
    assert one_day.summary == "No check-in for 1 day"
    hours = disengagement("pt-1", T0 - 5 * H, None, short, T0)
    assert isinstance(hours, OpenAlert)
    assert hours.summary == "No check-in for 5 hours"


def test_newer_checkin_resolves_disengagement() -> None:
    active = dis_alert(T0 - 5 * DAY)
    assert disengagement("pt-1", T0 - H, active, POLICY, T0) == ResolveAlert("al-dis", "check-in received")


@pytest.mark.parametrize("last", [T0 - 5 * DAY, T0 - 6 * DAY])
def test_existing_disengagement_without_newer_checkin_is_left_alone(last: datetime) -> None:
    assert disengagement("pt-1", last, dis_alert(T0 - 5 * DAY), POLICY, T0) is None


def test_active_snooze_holds_back_disengagement() -> None:
    last = T0 - 5 * DAY
    assert disengagement("pt-1", last, None, POLICY, T0, snoozes=[SnoozeState(AlertKind.disengagement, T0 + H)]) is None
    expired = [SnoozeState(AlertKind.disengagement, T0)]
    assert isinstance(disengagement("pt-1", last, None, POLICY, T0, snoozes=expired), OpenAlert)
    other = [SnoozeState(AlertKind.plateau, T0 + H)]
    assert isinstance(disengagement("pt-1", last, None, POLICY, T0, snoozes=other), OpenAlert)


def test_paging_red_flag_inhibits_disengagement() -> None:
    assert disengagement("pt-1", T0 - 5 * DAY, None, POLICY, T0, red_flag_active=True) is None


def test_handled_silence_does_not_reopen() -> None:
    last = T0 - 5 * DAY
    assert disengagement("pt-1", last, None, POLICY, T0, resolved_through=last) is None
    assert isinstance(disengagement("pt-1", last, None, POLICY, T0, resolved_through=last - DAY), OpenAlert)


def test_tenant_disengagement_days_apply() -> None:
    policy = policy_from_dict({"disengagement_days": 7})
    assert disengagement("pt-1", T0 - 5 * DAY, None, policy, T0) is None
    assert isinstance(disengagement("pt-1", T0 - 7 * DAY, None, policy, T0), OpenAlert)


def test_disengagement_rejects_a_wrong_active_alert() -> None:
    with pytest.raises(ValueError, match="disengagement alert"):
        disengagement("pt-1", T0, alert(), POLICY, T0)
    with pytest.raises(ValueError, match="disengagement alert"):
        disengagement("pt-2", T0, dis_alert(T0), POLICY, T0)


def test_disengagement_is_deterministic() -> None:
    first = disengagement("pt-1", T0 - 5 * DAY, None, POLICY, T0)
    assert all(disengagement("pt-1", T0 - 5 * DAY, None, POLICY, T0) == first for _ in range(3))


def test_disengagement_waits_for_a_quiet_stream() -> None:
    """A backfill of old check-ins (old event time, arriving now) is not silence."""
    from datetime import UTC, datetime, timedelta

    from services.alerts.model import AlertPolicy, OpenAlert
    from services.alerts.timers import disengagement

    now = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
    policy = AlertPolicy()
    old = now - timedelta(days=30)
    assert disengagement("p", old, None, policy, now, last_seen_at=now - timedelta(minutes=5)) is None
    assert disengagement("p", old, None, policy, now, last_seen_at=now - policy.disengagement_quiet) is not None
    assert isinstance(disengagement("p", old, None, policy, now, last_seen_at=None), OpenAlert)
