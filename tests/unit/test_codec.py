from __future__ import annotations

from datetime import UTC, date, datetime

from services.scoring.codec import day_from_json, day_to_json
from services.scoring.model import DayRecord


def test_day_record_round_trips_through_json() -> None:
    day = DayRecord(
        date=date(2026, 11, 20),
        checkins=2,
        pain=4.5,
        red_flags=("foot_drop",),
        red_flag_recorded_at=datetime(2026, 11, 20, 13, 0, tzinfo=UTC),
        red_flag_event_id="e1",
        steps=5000,
    )
    assert day_from_json(day_to_json(day)) == day
