"""The scoring shell's incremental trajectory days (`series.merge_api_days`) equal the days of a
trajectory built from the whole series."""

from __future__ import annotations

from datetime import timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.scoring import series
from services.scoring.engine import Engine
from services.scoring.model import DayRecord, PatientProfile
from tests.unit.test_engine_property import day_records

PROFILE = PatientProfile("p", "carpal_tunnel", "right", "conservative", "UTC")


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(days=day_records(), data=st.data())
def test_merged_days_equal_the_whole_series(days: list[DayRecord], data: st.DataObject) -> None:
    eng = Engine.of(PROFILE)
    late = data.draw(st.sets(st.integers(0, len(days) - 1), min_size=1, max_size=6), label="late days")
    cut = data.draw(st.integers(0, len(days)), label="days after the previous trajectory")
    changed = {i for i in late} | set(range(cut, len(days)))
    before = [d for i, d in enumerate(days) if i not in changed]
    as_of = max(d.last_sample_end for d in days if d.last_sample_end is not None) + timedelta(hours=1)
    prev = series.to_trajectory("p", eng.assess(eng.fold(eng.initial(), before), as_of), before)
    a = eng.assess(eng.fold(eng.initial(), days), as_of)
    first = min(days[i].date for i in changed)
    replay = [d for d in days if d.date >= first]  # what a rewind replays: every stored day from the change on
    merged = series.merge_api_days([d.model_dump(mode="json") for d in prev.days], replay, a.day_index)
    assert merged == [d.model_dump(mode="json") for d in series.to_trajectory("p", a, days).days]
