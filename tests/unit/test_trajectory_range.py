"""The trajectory's date range (`services.scoring.trajectory_range`): defaults, bounds, problems,
and the per-day index equal to the engine's."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from nervewatch.problems import ProblemError
from services.scoring.model import DayRecord
from services.scoring.profile import profile_for
from services.scoring.trajectory_range import DEFAULT_DAYS, DateRange, api_days, parse_range

TODAY = date(2026, 12, 3)


def test_default_is_the_last_120_local_days() -> None:
    assert parse_range({}, TODAY) == DateRange(TODAY - timedelta(days=DEFAULT_DAYS - 1), TODAY)


def test_one_end_given() -> None:
    assert parse_range({"since": "2026-11-01"}, TODAY) == DateRange(date(2026, 11, 1), TODAY)
    assert parse_range({"until": "2026-06-30"}, TODAY) == DateRange(date(2026, 3, 3), date(2026, 6, 30))
    # a since after today: that day alone rather than a reversed range
    assert parse_range({"since": "2027-01-05"}, TODAY) == DateRange(date(2027, 1, 5), date(2027, 1, 5))
    assert parse_range({"until": "0001-01-10"}, TODAY) == DateRange(date.min, date(1, 1, 10))


def test_both_ends_inclusive() -> None:
    got = parse_range({"since": "2026-12-01", "until": "2026-12-01"}, TODAY)
    assert got == DateRange(date(2026, 12, 1), date(2026, 12, 1))


@pytest.mark.parametrize(
    ("query", "name"),
    [
        ({"since": "2026-13-01"}, "since"),
        ({"since": "2026-02-30"}, "since"),
        ({"since": "yesterday"}, "since"),
        ({"since": "2026-12-01T00:00:00Z"}, "since"),
        ({"since": "20261201"}, "since"),
        ({"since": "\u0662\u0660\u0662\u0666-\u0661\u0662-\u0660\u0661"}, "since"),  # Arabic-Indic digits
        ({"until": ""}, "until"),
        ({"until": "2026-12-1"}, "until"),
        ({"since": "2026-12-02", "until": "2026-12-01"}, "since"),
    ],
)
def test_bad_ranges_are_400_naming_the_parameter(query: dict[str, str], name: str) -> None:
    with pytest.raises(ProblemError) as err:
        parse_range(query, TODAY)
    assert err.value.status == 400
    detail = str(err.value.detail)
    assert f"'{name}'" in detail
    assert all(v not in detail for v in query.values() if v)


def test_any_range_of_valid_dates_is_accepted() -> None:
    got = parse_range({"since": "0001-01-01", "until": "9999-12-31"}, TODAY)
    assert got == DateRange(date.min, date.max)


def test_api_days_keep_days_with_data_and_index_them_like_the_engine() -> None:
    clinical = profile_for("carpal_tunnel", "conservative")
    days = [
        DayRecord(date=date(2026, 11, 1), pain=6.0, tingling=4.0, numbness=2.0, weakness=1.0, checkins=1),
        DayRecord(date=date(2026, 11, 2)),  # nothing reported: not shown
        DayRecord(date=date(2026, 11, 3), steps=4200),
        DayRecord(date=date(2026, 11, 4), pain=3.0, checkins=1, grip_strength_kg=None, device_grip_strength_kg=21.5),
    ]
    got = api_days(days, clinical)
    assert [d.date for d in got] == [date(2026, 11, 1), date(2026, 11, 3), date(2026, 11, 4)]
    w = clinical.weights()
    expected = round(10 * (w[0] * 6 + w[1] * 4 + w[2] * 2 + w[3] * 1) / sum(w), 1)
    assert got[0].symptom_index == expected
    assert got[1].symptom_index is None and got[1].steps == 4200
    assert got[2].grip_strength_kg == 21.5 and got[2].symptom_index == 30.0
