"""The pure RTM billing engine (services/scoring/billing): every boundary of the 2026 codes.

Data days 1/2/15/16, minutes 9/10/19/20/39/40/59/60, periods straddling months, time zones and
DST, late data for a closed period (a new version, the old one kept), settings (check-ins only or
with wearables, data before enrolment), disabled codes, the open-month rule of time entries and
the "data days at risk" rule.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.scoring.billing import engine
from services.scoring.billing.entries import EntryFields, check_editable, check_entry, overlaps
from services.scoring.billing.model import (
    ALL_CODES,
    Activity,
    BillingSettings,
    Code,
    DataDay,
    DataDaySource,
    Month,
    PeriodVersion,
    RiskStatus,
    Source,
    TimeEntry,
    VersionReason,
)

NY = ZoneInfo("America/New_York")
TOKYO = ZoneInfo("Asia/Tokyo")
DEFAULT = BillingSettings()
FAST = settings(max_examples=200, derandomize=True, deadline=None, database=None)


def day(text: str) -> date:
    return date.fromisoformat(text)


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def checkin_days(first: date, n: int, *, step: int = 1, received: datetime | None = None) -> list[DataDay]:
    got = received or datetime(2000, 1, 1, tzinfo=UTC)
    return [DataDay(first + timedelta(days=i * step), Source.checkin, got) for i in range(n)]


def entry(
    started: str, minutes: int, activity: Activity = Activity.data_review, interactive: bool = False
) -> TimeEntry:
    return TimeEntry(f"te_{started}", "m1", at(started), minutes, activity, interactive)


CALL = entry("2026-11-03T10:00:00-05:00", 5, Activity.patient_call, True)

# -- supply codes: 1/2/15/16 data days ------------------------------------------------------------


@pytest.mark.parametrize(
    ("days", "code"),
    [
        (0, None),
        (1, None),
        (2, Code.supply_2_15),
        (15, Code.supply_2_15),
        (16, Code.supply_16_30),
        (30, Code.supply_16_30),
    ],
)
def test_supply_code_boundaries(days: int, code: Code | None) -> None:
    assert engine.supply_code(days, DEFAULT) == code


@pytest.mark.parametrize(
    ("days", "code"), [(1, None), (2, Code.supply_2_15), (15, Code.supply_2_15), (16, Code.supply_16_30)]
)
def test_a_closed_period_with_n_data_days(days: int, code: Code | None) -> None:
    result = engine.compute_periods(
        checkin_days(day("2026-10-02"), days), settings=DEFAULT, now=at("2026-11-10T12:00:00Z"), tz=UTC
    )
    first = result.periods[0]
    assert (first.start, first.end, first.closed) == (day("2026-10-02"), day("2026-10-31"), True)
    assert (first.data_days, first.supply_code) == (days, code)
    assert first.version is not None and first.version.supply_code == code
    assert result.setup_code_eligible is (days >= 2)


def test_disabled_supply_codes_are_never_reported_and_never_replaced_by_the_other() -> None:
    no_high = BillingSettings(enabled_codes=ALL_CODES - {Code.supply_16_30})
    no_low = BillingSettings(enabled_codes=ALL_CODES - {Code.supply_2_15})
    assert engine.supply_code(16, no_high) is None
    assert engine.supply_code(15, no_high) == Code.supply_2_15
    assert engine.supply_code(15, no_low) is None
    assert engine.supply_code(16, no_low) == Code.supply_16_30


# -- management codes: 9/10/19/20/39/40/59/60 minutes ---------------------------------------------


@pytest.mark.parametrize(
    ("minutes", "codes"),
    [
        (0, ()),
        (9, ()),
        (10, ("98979",)),
        (19, ("98979",)),
        (20, ("98980",)),
        (39, ("98980",)),
        (40, ("98980", "98981")),
        (59, ("98980", "98981")),
        (60, ("98980", "98981", "98981")),
        (79, ("98980", "98981", "98981")),
        (80, ("98980", "98981", "98981", "98981")),
    ],
)
def test_management_code_boundaries(minutes: int, codes: tuple[str, ...]) -> None:
    assert engine.management_codes(minutes, True, DEFAULT) == codes


@pytest.mark.parametrize("minutes", [10, 19, 20, 40, 60, 240])
def test_no_management_code_without_an_interactive_communication(minutes: int) -> None:
    assert engine.management_codes(minutes, False, DEFAULT) == ()


@FAST
@given(minutes=st.integers(0, 2000))
def test_management_codes_are_exclusive_and_add_one_98981_per_20_minutes(minutes: int) -> None:
    codes = engine.management_codes(minutes, True, DEFAULT)
    assert not (Code.management_10 in codes and Code.management_20 in codes)
    if minutes >= 20:
        assert codes.count(Code.management_20) == 1
        assert codes.count(Code.management_addon) == (minutes - 20) // 20
    else:
        assert Code.management_addon not in codes


def test_disabled_management_codes() -> None:
    no_98979 = BillingSettings(enabled_codes=ALL_CODES - {Code.management_10})
    no_98980 = BillingSettings(enabled_codes=ALL_CODES - {Code.management_20})
    no_98981 = BillingSettings(enabled_codes=ALL_CODES - {Code.management_addon})
    assert engine.management_codes(15, True, no_98979) == ()
    assert engine.management_codes(25, True, no_98979) == (Code.management_20,)
    # 98981 is an add-on of 98980: never alone, and 98979 does not stand in for 98980.
    assert engine.management_codes(65, True, no_98980) == ()
    assert engine.management_codes(15, True, no_98980) == (Code.management_10,)
    assert engine.management_codes(65, True, no_98981) == (Code.management_20,)


def test_month_minutes_and_the_interactive_requirement() -> None:
    entries = [
        entry("2026-11-02T09:00:00-05:00", 12),
        entry("2026-11-05T09:00:00-05:00", 15, Activity.program_change),
        entry("2026-12-01T09:00:00-05:00", 30),
    ]
    now = at("2026-12-02T12:00:00Z")
    nov = engine.month_figures(entries, Month(2026, 11), tz=NY, now=now, settings=DEFAULT)
    assert (nov.minutes, nov.interactive, nov.management_codes) == (27, False, ())
    with_call = engine.month_figures([*entries, CALL], Month(2026, 11), tz=NY, now=now, settings=DEFAULT)
    assert (with_call.minutes, with_call.interactive, with_call.management_codes) == (32, True, (Code.management_20,))


@pytest.mark.parametrize(
    ("activity", "interactive", "counts"),
    [
        (Activity.patient_call, True, True),
        (Activity.patient_video, True, True),
        (Activity.patient_call, False, False),  # e.g. a voicemail
        (Activity.message, True, False),  # a message is not real-time
        (Activity.data_review, True, False),
    ],
)
def test_only_a_call_or_video_marked_interactive_meets_the_requirement(
    activity: Activity, interactive: bool, counts: bool
) -> None:
    e = entry("2026-11-03T10:00:00-05:00", 25, activity, interactive)
    got = engine.month_figures([e], Month(2026, 11), tz=NY, now=at("2026-11-20T00:00:00Z"), settings=DEFAULT)
    assert got.interactive is counts
    assert got.management_codes == ((Code.management_20,) if counts else ())


def test_months_list_every_month_with_entries_and_the_current_one() -> None:
    entries = [entry("2026-09-10T10:00:00Z", 10), CALL]
    months = engine.months_of(entries, tz=NY, now=at("2027-01-05T12:00:00Z"), settings=DEFAULT)
    assert [str(m.month) for m in months] == ["2026-09", "2026-11", "2027-01"]
    assert [m.closed for m in months] == [True, True, False]


# -- periods --------------------------------------------------------------------------------------


def test_the_contract_example() -> None:
    """Monitoring from 2 October: 17 data days in the first period, 9 so far in the second."""
    data = checkin_days(day("2026-10-02"), 17) + checkin_days(day("2026-11-01"), 9, step=2)
    now = at("2026-11-19T15:00:00-05:00")
    result = engine.compute_periods(data, settings=DEFAULT, now=now, tz=NY)
    assert result.monitoring_started == day("2026-10-02")
    first, second = result.periods
    assert (first.start, first.end, first.data_days, first.supply_code, first.closed) == (
        day("2026-10-02"),
        day("2026-10-31"),
        17,
        Code.supply_16_30,
        True,
    )
    assert (second.start, second.end, second.data_days, second.supply_code, second.closed) == (
        day("2026-11-01"),
        day("2026-11-30"),
        9,
        Code.supply_2_15,
        False,
    )
    # data on 1, 3, ..., 17 November; today the 19th without data: 19..30 are 12 days still open
    assert second.data_days_possible == 21
    assert first.data_days_possible is None
    assert result.setup_code_eligible


def test_periods_are_30_consecutive_days_straddling_months_and_leap_february() -> None:
    result = engine.compute_periods(
        checkin_days(day("2028-01-20"), 1), settings=DEFAULT, now=at("2028-04-30T12:00:00Z"), tz=UTC
    )
    spans = [(p.start.isoformat(), p.end.isoformat()) for p in result.periods]
    assert spans == [
        ("2028-01-20", "2028-02-18"),
        ("2028-02-19", "2028-03-19"),  # 2028 is a leap year: 29 February is one of the 30 days
        ("2028-03-20", "2028-04-18"),
        ("2028-04-19", "2028-05-18"),
    ]
    assert [p.closed for p in result.periods] == [True, True, True, False]
    assert [p.data_days for p in result.periods] == [1, 0, 0, 0]


def test_no_data_no_periods() -> None:
    result = engine.compute_periods([], settings=DEFAULT, now=at("2026-11-19T12:00:00Z"), tz=NY)
    assert (result.monitoring_started, result.periods, result.setup_code_eligible) == (None, (), False)


def test_data_days_are_distinct_local_days() -> None:
    same_day = [DataDay(day("2026-11-02"), Source.checkin, at("2026-11-02T10:00:00Z"))] * 3
    result = engine.compute_periods(same_day, settings=DEFAULT, now=at("2026-11-19T12:00:00Z"), tz=NY)
    assert result.periods[0].data_days == 1


def test_a_period_closes_at_local_midnight_not_utc_midnight() -> None:
    data = checkin_days(day("2026-10-02"), 16)
    # 31 October 23:30 in New York is already 1 November in UTC: the period (ends 31 October) is open.
    before = engine.compute_periods(data, settings=DEFAULT, now=at("2026-10-31T23:30:00-04:00"), tz=NY)
    assert not before.periods[0].closed
    assert before.periods[0].data_days_possible == 17  # today, 31 October, still has no data
    after = engine.compute_periods(data, settings=DEFAULT, now=at("2026-11-01T00:00:00-04:00"), tz=NY)
    assert after.periods[0].closed
    # In Tokyo the same instant (1 November 04:00 UTC = 13:00 local) closed it hours ago.
    assert engine.compute_periods(data, settings=DEFAULT, now=at("2026-10-31T15:00:00Z"), tz=TOKYO).periods[0].closed


def test_checkin_at_2330_local_is_that_local_day() -> None:
    """The shell reads local dates (`recorded_at AT TIME ZONE tz`); `local_date` is the same rule."""
    recorded = at("2026-11-20T23:30:00-05:00")
    assert recorded.date() == day("2026-11-21")  # the UTC date
    assert engine.local_date(recorded, NY) == day("2026-11-20")


@pytest.mark.parametrize(
    ("tz", "first", "note"),
    [
        (NY, "2026-02-25", "spring forward: 8 March 2026 has 23 hours"),
        (NY, "2026-10-20", "fall back: 1 November 2026 has 25 hours"),
        (ZoneInfo("Europe/Berlin"), "2026-03-15", "29 March 2026 has 23 hours"),
        (ZoneInfo("America/Santiago"), "2026-08-25", "6 September 2026 begins at 01:00"),
    ],
)
def test_periods_across_dst_changes_are_30_local_days(tz: ZoneInfo, first: str, note: str) -> None:
    start = day(first)
    data = checkin_days(start, 30)
    end = start + timedelta(days=29)
    # one second before the period's end (local midnight after its last day): still open
    closes = engine.local_midnight(end + timedelta(days=1), tz)
    open_ = engine.compute_periods(data, settings=DEFAULT, now=closes - timedelta(seconds=1), tz=tz)
    assert (open_.periods[0].end, open_.periods[0].data_days, open_.periods[0].closed) == (end, 30, False), note
    shut = engine.compute_periods(data, settings=DEFAULT, now=closes, tz=tz)
    assert shut.periods[0].closed and shut.periods[0].data_days == 30, note


def test_local_midnight_on_dst_days() -> None:
    assert engine.local_midnight(day("2026-03-08"), NY) == at("2026-03-08T05:00:00Z")
    assert engine.local_midnight(day("2026-03-09"), NY) == at("2026-03-09T04:00:00Z")  # 23-hour day
    assert engine.local_midnight(day("2026-11-02"), NY) == at("2026-11-02T05:00:00Z")  # after a 25-hour day
    # Santiago springs forward at midnight: 6 September 2026 begins at the jump (00:00 -04 = 01:00 -03)
    assert engine.local_midnight(day("2026-09-06"), ZoneInfo("America/Santiago")) == at("2026-09-06T04:00:00Z")


# -- settings -------------------------------------------------------------------------------------


def test_wearable_days_count_only_when_the_tenant_says_so() -> None:
    got = at("2026-10-01T00:00:00Z")
    data = checkin_days(day("2026-10-02"), 10) + [
        DataDay(day("2026-10-02") + timedelta(days=i), Source.wearable, got) for i in range(5, 20)
    ]
    now = at("2026-11-10T12:00:00Z")
    only = engine.compute_periods(data, settings=DEFAULT, now=now, tz=UTC)
    both = engine.compute_periods(
        data, settings=BillingSettings(data_days_from=DataDaySource.checkins_and_wearables), now=now, tz=UTC
    )
    assert (only.periods[0].data_days, only.periods[0].supply_code) == (10, Code.supply_2_15)
    assert (both.periods[0].data_days, both.periods[0].supply_code) == (20, Code.supply_16_30)


def test_wearable_only_patient_has_no_periods_when_only_checkins_count() -> None:
    data = [DataDay(day("2026-10-02"), Source.wearable, at("2026-10-02T12:00:00Z"))]
    result = engine.compute_periods(data, settings=DEFAULT, now=at("2026-11-10T12:00:00Z"), tz=UTC)
    assert result.periods == ()


def test_data_before_enrolment_counts_only_when_the_tenant_says_so() -> None:
    data = checkin_days(day("2026-09-20"), 20)  # 20 September - 9 October
    now = at("2026-11-10T12:00:00Z")
    default = engine.compute_periods(data, settings=DEFAULT, now=now, tz=UTC, enrolled_on=day("2026-10-01"))
    assert default.monitoring_started == day("2026-10-01")
    assert default.periods[0].data_days == 9
    backfill = BillingSettings(count_data_before_enrolment=True)
    counted = engine.compute_periods(data, settings=backfill, now=now, tz=UTC, enrolled_on=day("2026-10-01"))
    assert counted.monitoring_started == day("2026-09-20")
    assert counted.periods[0].data_days == 20


def test_setup_code_needs_two_data_days_in_one_period_and_can_be_disabled() -> None:
    now = at("2026-12-20T12:00:00Z")
    one_each = [*checkin_days(day("2026-10-02"), 1), *checkin_days(day("2026-11-01"), 1)]
    assert not engine.compute_periods(one_each, settings=DEFAULT, now=now, tz=UTC).setup_code_eligible
    two = checkin_days(day("2026-10-02"), 2, step=29)  # 2 and 31 October: the same period
    result = engine.compute_periods(two, settings=DEFAULT, now=now, tz=UTC)
    assert result.setup_code_eligible and result.setup_period_start == day("2026-10-02")
    disabled = BillingSettings(enabled_codes=ALL_CODES - {Code.setup})
    assert not engine.compute_periods(two, settings=disabled, now=now, tz=UTC).setup_code_eligible


# -- closed periods are versioned ---------------------------------------------------------------


def stored_of(versions: tuple[PeriodVersion, ...]) -> dict[date, list[PeriodVersion]]:
    out: dict[date, list[PeriodVersion]] = {}
    for v in versions:
        out.setdefault(v.start, []).append(v)
    return out


def test_late_data_for_a_closed_period_makes_a_new_version_and_keeps_the_old() -> None:
    early = at("2026-10-20T00:00:00Z")
    data = checkin_days(day("2026-10-02"), 15, received=early)
    first_read = at("2026-11-02T12:00:00Z")
    v1 = engine.compute_periods(data, settings=DEFAULT, now=first_read, tz=UTC)
    assert v1.freeze_anchor == day("2026-10-02")
    (first,) = v1.new_versions
    assert (first.version, first.data_days, first.supply_code, first.reason) == (
        1,
        15,
        Code.supply_2_15,
        VersionReason.initial,
    )
    stored = stored_of(v1.new_versions)

    # Unchanged data: the recorded version stands, nothing new.
    again = engine.compute_periods(
        data, settings=DEFAULT, now=at("2026-11-03T12:00:00Z"), tz=UTC, anchor=day("2026-10-02"), stored=stored
    )
    assert again.new_versions == () and again.freeze_anchor is None
    assert again.periods[0].version == first

    # A phone syncs a check-in of 30 October on 4 November: 16 days, a new version, v1 kept.
    late = DataDay(day("2026-10-30"), Source.checkin, at("2026-11-04T08:00:00Z"))
    now = at("2026-11-04T09:00:00Z")
    v2 = engine.compute_periods(
        [*data, late], settings=DEFAULT, now=now, tz=UTC, anchor=day("2026-10-02"), stored=stored
    )
    (second,) = v2.new_versions
    assert (second.version, second.data_days, second.supply_code, second.reason, second.recorded_at) == (
        2,
        16,
        Code.supply_16_30,
        VersionReason.late_data,
        now,
    )
    period = v2.periods[0]
    assert (period.data_days, period.supply_code, period.version) == (16, Code.supply_16_30, second)
    assert period.previous_versions == (first,)


def test_a_changed_setting_or_lost_day_is_a_recomputed_version() -> None:
    data = checkin_days(day("2026-10-02"), 16)
    v1 = engine.compute_periods(data, settings=DEFAULT, now=at("2026-11-02T12:00:00Z"), tz=UTC)
    stored = stored_of(v1.new_versions)
    anchor = day("2026-10-02")
    now = at("2026-11-05T12:00:00Z")
    # a time-zone change re-dates a check-in out of the period: one day fewer
    fewer = engine.compute_periods(data[1:], settings=DEFAULT, now=now, tz=UTC, anchor=anchor, stored=stored)
    assert [(v.version, v.data_days, v.reason) for v in fewer.new_versions] == [(2, 15, VersionReason.recomputed)]
    # the tenant disables 98977: same days, another code
    no_high = BillingSettings(enabled_codes=ALL_CODES - {Code.supply_16_30})
    code = engine.compute_periods(data, settings=no_high, now=now, tz=UTC, anchor=anchor, stored=stored)
    assert [(v.version, v.supply_code, v.reason) for v in code.new_versions] == [(2, None, VersionReason.recomputed)]
    # wearables now count: more days, but not late data
    with_wear = BillingSettings(data_days_from=DataDaySource.checkins_and_wearables)
    worn = [*data, DataDay(day("2026-10-25"), Source.wearable, at("2026-11-04T00:00:00Z"))]
    more = engine.compute_periods(worn, settings=with_wear, now=now, tz=UTC, anchor=anchor, stored=stored)
    assert [(v.version, v.data_days, v.reason) for v in more.new_versions] == [(2, 17, VersionReason.recomputed)]


def test_the_anchor_freezes_when_the_first_period_closes_and_backfill_cannot_shift_it() -> None:
    data = checkin_days(day("2026-10-02"), 5)
    open_only = engine.compute_periods(data, settings=DEFAULT, now=at("2026-10-20T12:00:00Z"), tz=UTC)
    assert open_only.freeze_anchor is None and open_only.new_versions == ()
    # while nothing has closed, earlier data moves the start
    earlier = [*data, DataDay(day("2026-09-28"), Source.checkin, at("2026-10-20T00:00:00Z"))]
    moved = engine.compute_periods(earlier, settings=DEFAULT, now=at("2026-10-20T12:00:00Z"), tz=UTC)
    assert moved.monitoring_started == day("2026-09-28")
    # after the first period closed the anchor is frozen: the same backfill is reported, not applied
    closed = engine.compute_periods(data, settings=DEFAULT, now=at("2026-11-02T12:00:00Z"), tz=UTC)
    assert closed.freeze_anchor == day("2026-10-02")
    frozen = engine.compute_periods(
        earlier,
        settings=DEFAULT,
        now=at("2026-11-03T12:00:00Z"),
        tz=UTC,
        anchor=day("2026-10-02"),
        stored=stored_of(closed.new_versions),
    )
    assert frozen.monitoring_started == day("2026-10-02")
    assert frozen.new_versions == ()
    assert frozen.data_days_before_start == 1


def test_every_closed_period_gets_its_first_version_at_once() -> None:
    data = checkin_days(day("2026-07-01"), 100, step=1)
    result = engine.compute_periods(data, settings=DEFAULT, now=at("2026-11-20T12:00:00Z"), tz=UTC)
    assert [v.start for v in result.new_versions] == [p.start for p in result.periods if p.closed]
    assert all(v.version == 1 and v.reason is VersionReason.initial for v in result.new_versions)


@FAST
@given(
    offsets=st.sets(st.integers(0, 120), min_size=1, max_size=80),
    today=st.integers(0, 150),
    wear=st.sets(st.integers(0, 120), max_size=40),
)
def test_periods_partition_the_days_from_monitoring_start(offsets: set[int], today: int, wear: set[int]) -> None:
    base = day("2026-01-01")
    got = at("2025-12-31T00:00:00Z")
    data = [DataDay(base + timedelta(days=o), Source.checkin, got) for o in offsets]
    data += [DataDay(base + timedelta(days=o), Source.wearable, got) for o in wear]
    now = datetime.combine(base + timedelta(days=today), datetime.min.time(), UTC) + timedelta(hours=12)
    result = engine.compute_periods(data, settings=DEFAULT, now=now, tz=UTC)
    periods = result.periods
    assert periods[0].start == base + timedelta(days=min(offsets))
    for a, b in pairwise(periods):
        assert b.start == a.end + timedelta(days=1)
    for p in periods:
        assert (p.end - p.start).days == 29
        assert 0 <= p.data_days <= 30
        assert p.supply_code == engine.supply_code(p.data_days, DEFAULT)
        assert p.closed is (p.end < now.date())
        if not p.closed:
            assert p.data_days <= (p.data_days_possible or 0) <= 30
    assert sum(p.data_days for p in periods) == len(offsets)
    assert len([p for p in periods if not p.closed]) <= 1 or max(offsets) > today


# -- data days at risk ----------------------------------------------------------------------------


def risk_at(days_with_data: int, today_offset: int, lead: int = 0) -> tuple[int, RiskStatus, int]:
    """A period starting 1 November with data on its first `days_with_data` days, seen on day
    `today_offset` (0 = 1 November), before the day's data."""
    data = checkin_days(day("2026-11-01"), days_with_data)
    now = datetime(2026, 11, 1, 12, tzinfo=UTC) + timedelta(days=today_offset)
    result = engine.compute_periods(
        data, settings=BillingSettings(at_risk_lead_days=lead), now=now, tz=UTC, anchor=day("2026-11-01")
    )
    p = result.periods[-1]
    assert p.risk is not None and p.data_days_possible is not None
    return p.data_days_possible, p.risk.status, p.risk.slack


def test_at_risk_when_every_remaining_day_is_needed() -> None:
    # day 20 (21 November): 10 data days, 10 days left (21..30), 6 needed: slack 4
    assert risk_at(10, 20, lead=0) == (20, RiskStatus.on_track, 4)
    assert risk_at(10, 20, lead=4) == (20, RiskStatus.at_risk, 4)
    # day 24: 10 data days, 6 left, 6 needed: only by reporting every remaining day
    assert risk_at(10, 24, lead=0) == (16, RiskStatus.at_risk, 0)
    # day 25: 5 left, 6 needed: 16 is out of reach (98985 is what is left)
    assert risk_at(10, 25, lead=0) == (15, RiskStatus.unreachable, -1)
    assert risk_at(16, 20) == (26, RiskStatus.reached, 10)


def test_today_with_data_is_not_a_remaining_day() -> None:
    data = checkin_days(day("2026-11-01"), 10, step=2)  # 1, 3, ..., 19 November
    now = at("2026-11-19T20:00:00Z")
    p = engine.compute_periods(data, settings=DEFAULT, now=now, tz=UTC).periods[0]
    assert p.data_days_possible == 10 + 11  # 20..30 November
    assert p.risk is not None and p.risk.remaining == 11 and p.risk.needed == 6


def test_no_risk_without_98977() -> None:
    no_high = BillingSettings(enabled_codes=ALL_CODES - {Code.supply_16_30})
    data = checkin_days(day("2026-11-01"), 3)
    p = engine.compute_periods(data, settings=no_high, now=at("2026-11-25T12:00:00Z"), tz=UTC).periods[0]
    assert p.risk is None and p.data_days_possible == 3 + 6


# -- months: open, closed, time zones ---------------------------------------------------------------


def test_a_time_entry_counts_in_the_local_month_it_started() -> None:
    late_call = entry("2026-10-31T23:50:00-04:00", 25, Activity.patient_call, True)
    assert late_call.started_at.month == 11  # in UTC it is 1 November
    now = at("2026-11-02T12:00:00Z")
    october = engine.month_figures([late_call], Month(2026, 10), tz=NY, now=now, settings=DEFAULT)
    november = engine.month_figures([late_call], Month(2026, 11), tz=NY, now=now, settings=DEFAULT)
    assert (october.minutes, october.management_codes) == (25, (Code.management_20,))
    assert november.minutes == 0


@pytest.mark.parametrize(
    ("grace", "closes"),
    [
        (0, "2026-11-01T00:00:00-04:00"),  # October ends at local midnight (EDT)
        (7, "2026-11-08T00:00:00-05:00"),  # a week later, after the fall-back (EST)
    ],
)
def test_a_month_closes_grace_days_after_its_local_end(grace: int, closes: str) -> None:
    october = Month(2026, 10)
    assert engine.month_closes_at(october, NY, grace) == at(closes)
    assert engine.month_is_open(october, NY, at(closes) - timedelta(microseconds=1), grace)
    assert not engine.month_is_open(october, NY, at(closes), grace)


def test_month_bounds_across_dst() -> None:
    start, end = engine.month_bounds(Month(2026, 3), NY)
    assert (start, end) == (at("2026-03-01T00:00:00-05:00"), at("2026-04-01T00:00:00-04:00"))


@pytest.mark.parametrize("text", ["2026-1", "2026-13", "2026-00", "26-11", "1999-12", "2026-11-01", " 2026-11", ""])
def test_month_parse_refuses_anything_but_yyyy_mm(text: str) -> None:
    with pytest.raises(ValueError):
        Month.parse(text)


def test_month_parse_and_text() -> None:
    assert str(Month.parse("2026-11")) == "2026-11"
    assert Month.parse("2026-12").next() == Month(2027, 1)


# -- time entry rules -------------------------------------------------------------------------------

NOW = at("2026-11-20T15:00:00Z")


def fields(started: datetime, minutes: int = 20, activity: Activity = Activity.data_review, **kw: bool) -> EntryFields:
    return EntryFields("m1", started, minutes, activity, kw.get("interactive", False))


def test_entry_in_the_open_month_is_accepted() -> None:
    assert check_entry(fields(NOW - timedelta(hours=1)), tz=NY, now=NOW, grace_days=7) is None


def test_entry_in_the_future_or_not_ended_is_422() -> None:
    future = check_entry(fields(NOW + timedelta(minutes=11)), tz=NY, now=NOW, grace_days=7)
    assert future is not None and (future.status, future.loc) == (422, ("started_at",))
    running = check_entry(fields(NOW - timedelta(minutes=5), minutes=30), tz=NY, now=NOW, grace_days=7)
    assert running is not None and (running.status, running.loc) == (422, ("minutes",))
    skew = check_entry(fields(NOW - timedelta(minutes=10), minutes=20), tz=NY, now=NOW, grace_days=7)
    assert skew is None  # a client clock up to 10 minutes fast


def test_interactive_is_only_a_call_or_video() -> None:
    bad = check_entry(
        fields(NOW - timedelta(hours=1), activity=Activity.message, interactive=True), tz=NY, now=NOW, grace_days=7
    )
    assert bad is not None and (bad.status, bad.loc) == (422, ("interactive",))
    ok = fields(NOW - timedelta(hours=1), activity=Activity.patient_video, interactive=True)
    assert check_entry(ok, tz=NY, now=NOW, grace_days=7) is None


def test_entry_in_a_closed_month_is_409() -> None:
    october = at("2026-10-15T10:00:00Z")
    assert check_entry(fields(october), tz=NY, now=at("2026-11-07T12:00:00Z"), grace_days=7) is None
    closed = check_entry(fields(october), tz=NY, now=at("2026-11-08T05:00:00Z"), grace_days=7)
    assert closed is not None and (closed.status, closed.slug) == (409, "month-closed")
    assert "2026-10" in closed.detail
    assert check_editable(october, tz=NY, now=at("2026-11-08T05:00:00Z"), grace_days=7) is not None
    assert check_editable(october, tz=NY, now=at("2026-11-08T04:59:59Z"), grace_days=7) is None


def test_overlap_is_half_open() -> None:
    t = at("2026-11-20T10:00:00Z")
    assert overlaps(t, 30, t + timedelta(minutes=29), 10)
    assert overlaps(t, 30, t - timedelta(minutes=5), 10)
    assert overlaps(t, 30, t + timedelta(minutes=5), 5)  # inside
    assert not overlaps(t, 30, t + timedelta(minutes=30), 10)  # back to back
    assert not overlaps(t, 30, t - timedelta(minutes=10), 10)


def test_settings_are_plain_values() -> None:
    s = replace(DEFAULT, grace_days=0)
    assert s.grace_days == 0 and DEFAULT.grace_days == 7
    assert DEFAULT.data_days_from is DataDaySource.checkins
    assert DEFAULT.counts(Source.checkin) and not DEFAULT.counts(Source.wearable)
