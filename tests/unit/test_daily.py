"""Unit tests of services.scoring.daily: local-day assignment and per-day aggregation."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from services.scoring.daily import activity_day, aggregate_day, local_day
from services.scoring.model import ActivityObs, CheckinObs

NY = ZoneInfo("America/New_York")
DAY = date(2026, 11, 20)


def ci(eid: str, hh: int, mm: int = 0, pain: int = 4, **kw: object) -> CheckinObs:
    at = datetime(2026, 11, 20, hh, mm, tzinfo=NY).astimezone(UTC)
    return CheckinObs(event_id=eid, recorded_at=at, received_at=at + timedelta(minutes=1), pain=pain, **kw)  # type: ignore[arg-type]


def sample(eid: str, kind: str, start: datetime, end: datetime, value: float, device: str = "watch") -> ActivityObs:
    return ActivityObs(event_id=eid, type=kind, start=start, end=end, value=value, device_id=device, received_at=end)


def test_local_day_late_evening_new_york_is_same_local_date() -> None:
    ts = datetime(2026, 11, 20, 23, 30, tzinfo=NY)
    assert ts.astimezone(UTC).date() == date(2026, 11, 21)
    assert local_day(ts.astimezone(UTC), NY) == date(2026, 11, 20)


def test_local_day_dst_change() -> None:
    # 2026-03-08 is the spring-forward day in New York; 04:30 UTC is 23:30 local on the 7th.
    assert local_day(datetime(2026, 3, 8, 4, 30, tzinfo=UTC), NY) == date(2026, 3, 7)
    assert local_day(datetime(2026, 3, 8, 7, 30, tzinfo=UTC), NY) == date(2026, 3, 8)


def test_activity_day_uses_midpoint_for_samples_spanning_midnight() -> None:
    sleep = sample(
        "s", "sleep_minutes", datetime(2026, 11, 19, 23, 0, tzinfo=NY), datetime(2026, 11, 20, 7, 0, tzinfo=NY), 480
    )
    assert activity_day(sleep, NY) == date(2026, 11, 20)
    late = sample("l", "steps", datetime(2026, 11, 20, 22, 0, tzinfo=NY), datetime(2026, 11, 21, 1, 0, tzinfo=NY), 300)
    assert activity_day(late, NY) == date(2026, 11, 20)


def test_multiple_checkins_use_median_and_newest_last() -> None:
    rec = aggregate_day(
        DAY,
        [ci("a", 8, pain=6, tingling=2), ci("b", 20, pain=2, tingling=4), ci("c", 13, pain=3)],
        [],
    )
    assert rec.checkins == 3
    assert rec.pain == 3.0
    assert rec.tingling == 3.0  # mean of the two reported values
    assert rec.last_event_id == "b"
    assert rec.last_recorded_at == datetime(2026, 11, 20, 20, tzinfo=NY)


def test_contradictory_checkins_and_worst_values() -> None:
    rec = aggregate_day(
        DAY,
        [ci("a", 8, pain=9, pain_worst=9, night_wakings=3), ci("b", 20, pain=1, pain_worst=4, night_wakings=0)],
        [],
    )
    assert rec.pain == 5.0
    assert rec.pain_worst == 9.0
    assert rec.night_wakings == 3.0


def test_red_flag_and_spreading_keep_first_reporting_checkin() -> None:
    cs = [
        ci("late", 21, red_flags=("fever",), numbness_spreading=True),
        ci("first", 9, red_flags=("foot_drop",)),
        ci("mid", 15, numbness_spreading=True),
        ci("none", 7),
    ]
    rec = aggregate_day(DAY, cs, [])
    assert rec.red_flags == ("fever", "foot_drop")
    assert rec.red_flag_event_id == "first"
    assert rec.red_flag_recorded_at == datetime(2026, 11, 20, 9, tzinfo=NY)
    assert rec.numbness_spreading
    assert rec.spreading_event_id == "mid"
    assert rec.last_event_id == "late"


def test_aggregation_is_order_independent_and_dedupes_event_ids() -> None:
    cs = [ci(f"e{i}", 6 + i, pain=i % 7, grip_strength_kg=10.0 + i) for i in range(8)]
    acts = [
        sample(f"s{h}", "steps", datetime(2026, 11, 20, h, tzinfo=NY), datetime(2026, 11, 20, h + 1, tzinfo=NY), 100)
        for h in range(6, 18)
    ]
    expected = aggregate_day(DAY, cs, acts)
    rng = random.Random(7)
    for _ in range(5):
        c2, a2 = cs + cs[:3], acts + acts[:4]
        rng.shuffle(c2)
        rng.shuffle(a2)
        assert aggregate_day(DAY, c2, a2) == expected
    assert expected.steps == 1200


def test_overlapping_devices_take_max_not_sum() -> None:
    start, end = datetime(2026, 11, 20, 0, tzinfo=NY), datetime(2026, 11, 21, 0, tzinfo=NY)
    rec = aggregate_day(
        DAY, [], [sample("w", "steps", start, end, 6240, "watch"), sample("p", "steps", start, end, 5900, "phone")]
    )
    assert rec.steps == 6240


def test_same_device_day_total_and_hourly_not_double_counted() -> None:
    start = datetime(2026, 11, 20, 0, tzinfo=NY)
    hourly = [
        sample(f"h{h}", "steps", start + timedelta(hours=h), start + timedelta(hours=h + 1), 250) for h in range(24)
    ]
    total = sample("t", "steps", start, start + timedelta(days=1), 6240)
    rec = aggregate_day(DAY, [], [*hourly, total])
    assert rec.steps == 6240
    rec2 = aggregate_day(DAY, [], [*hourly, sample("t2", "steps", start, start + timedelta(days=1), 5000)])
    assert rec2.steps == 6000


def test_grip_from_checkin_and_dynamometer_kept_apart() -> None:
    t = datetime(2026, 11, 20, 9, tzinfo=NY)
    acts = [
        sample("g1", "grip_strength_kg", t, t + timedelta(seconds=5), 18.1, "dyn"),
        sample("g2", "grip_strength_kg", t + timedelta(minutes=1), t + timedelta(minutes=1, seconds=5), 19.0, "dyn"),
    ]
    rec = aggregate_day(DAY, [ci("a", 8, grip_strength_kg=17.5), ci("b", 19, grip_strength_kg=16.0)], acts)
    assert rec.grip_strength_kg == 17.5
    assert rec.device_grip_strength_kg == 19.0
    assert rec.device_grip_recorded_at == t + timedelta(minutes=1, seconds=5)
    assert rec.last_sample_end == t + timedelta(minutes=1, seconds=5)


def test_function_newest_and_pt_session_latest() -> None:
    s1 = datetime(2026, 11, 19, 16, tzinfo=NY)
    s2 = datetime(2026, 11, 20, 12, tzinfo=NY)
    rec = aggregate_day(
        DAY,
        [
            ci(
                "a", 8, function_instrument="bctq_sss", function_score=2.5, pt_session_ended_at=s1, pt_intensity="light"
            ),
            ci(
                "b",
                20,
                function_instrument="bctq_sss",
                function_score=2.1,
                pt_session_ended_at=s2,
                pt_intensity="vigorous",
            ),
            ci("c", 21),
        ],
        [],
    )
    assert rec.function_score == 2.1
    assert rec.pt_session and rec.pt_session_ended_at == s2 and rec.pt_intensity == "vigorous"


def test_empty_day() -> None:
    rec = aggregate_day(DAY, [], [])
    assert rec.checkins == 0 and rec.pain is None and rec.steps is None and rec.last_event_id is None
