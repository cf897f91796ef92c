"""Property: however a patient's days arrive (any split into batches, late days in any order, days
re-sent with another check-in, state persisted as JSON between batches), the final trajectory and
signals equal one fold over the sorted series."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.scoring.engine import Engine, History, Snapshots, dedupe, from_json, to_json
from services.scoring.model import Baseline, DayRecord, PatientProfile, RedFlagObs
from services.scoring.state import to_json_text

START = date(2026, 1, 5)


@st.composite
def day_records(draw: st.DrawFn) -> list[DayRecord]:
    n = draw(st.integers(min_value=1, max_value=40))
    offsets = sorted(draw(st.sets(st.integers(min_value=0, max_value=90), min_size=n, max_size=n)))
    out: list[DayRecord] = []
    for k in offsets:
        d = START + timedelta(days=k)
        at = datetime(d.year, d.month, d.day, draw(st.integers(6, 22)), tzinfo=UTC)
        has_checkin = draw(st.booleans()) or k % 5
        level = draw(st.integers(0, 10))

        def item(level: int = level, has_checkin: bool = bool(has_checkin)) -> float | None:
            return float(min(10, max(0, level + draw(st.integers(-2, 2))))) if has_checkin else None

        flags = draw(st.sampled_from(((), (), (), ("fever",), ("foot_drop", "fever"))))
        pt = draw(st.booleans())
        out.append(
            DayRecord(
                date=d,
                checkins=1 if has_checkin else 0,
                pain=item(),
                tingling=item(),
                numbness=item(),
                weakness=item(),
                numbness_spreading=bool(has_checkin) and draw(st.integers(0, 12)) == 0,
                spreading_event_id=f"s{k}",
                spreading_recorded_at=at,
                red_flags=flags,
                red_flag_obs=(RedFlagObs(f"r{k}", at, at, flags),) if flags else (),
                pt_session=pt,
                pt_session_ended_at=at - timedelta(hours=draw(st.integers(1, 30))) if pt else None,
                steps=draw(st.one_of(st.none(), st.integers(1000, 15000))),
                grip_strength_kg=draw(st.one_of(st.none(), st.floats(5, 40))),
                function_instrument="quickdash" if k % 7 == 0 else None,
                function_score=float(draw(st.integers(0, 100))) if k % 7 == 0 else None,
                last_event_id=f"e{k}" if has_checkin else None,
                last_recorded_at=at if has_checkin else None,
                last_received_at=at if has_checkin else None,
                last_sample_end=at,
            )
        )
    return out


PROFILES = st.sampled_from(
    (
        PatientProfile("p", "carpal_tunnel", "right", "conservative", "UTC"),
        PatientProfile(
            "p",
            "carpal_tunnel",
            "right",
            "surgical_decompression",
            "America/New_York",
            procedure_date=START + timedelta(days=10),
            baseline=Baseline(pain=7, tingling=6, numbness=5, weakness=3, grip_strength_kg=15.0, daily_steps=6000),
        ),
        PatientProfile(
            "p",
            "peripheral_nerve_injury",
            "left",
            "nerve_repair",
            "Australia/Sydney",
            procedure_date=START,
            repair_distance_mm=40.0,
        ),
    )
)


def _persisted(h: History) -> History:
    """What the shell would reload: state and snapshots through JSON."""
    state = from_json(json.loads(json.dumps(to_json(h.state))))
    snaps = [from_json(json.loads(json.dumps(to_json(s)))) for s in h.snapshots.states]
    return replace(h, state=state, snapshots=Snapshots(h.snapshots.keep_days, tuple(snaps), h.snapshots.every))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    days=day_records(),
    profile=PROFILES,
    data=st.data(),
    keep=st.sampled_from((3, 10, 35)),
    every=st.sampled_from((1, 3, 7)),
)
def test_any_batching_and_late_order_equals_one_fold(
    days: list[DayRecord], profile: PatientProfile, data: st.DataObject, keep: int, every: int
) -> None:
    eng = Engine.of(profile)
    revised = data.draw(st.sets(st.integers(0, len(days) - 1), min_size=min(1, len(days)), max_size=5), label="re-sent")
    versions = [*days, *(replace(days[i], checkins=2, pain=float(i % 11), last_event_id=f"v{i}") for i in revised)]
    order = data.draw(st.permutations(list(range(len(versions)))), label="arrival order")
    cuts = sorted(data.draw(st.sets(st.integers(0, len(versions)), max_size=6), label="batch cuts"))
    batches: list[list[DayRecord]] = []
    prev = 0
    for c in [*cuts, len(versions)]:
        batches.append([versions[i] for i in order[prev:c]])
        prev = c
    days = dedupe(versions)
    h = History.start(eng, keep_days=keep, every=every)
    for batch in batches:
        h = _persisted(h.ingest(batch))
    expected = eng.fold(eng.initial(), days)
    assert h.state == expected
    as_of = max(d.last_sample_end for d in days if d.last_sample_end is not None) + timedelta(hours=1)
    got, want = eng.assess(h.state, as_of), eng.assess(expected, as_of)
    assert got.state == want.state and got.signals == want.signals and got.reasons == want.reasons


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(days=day_records(), profile=PROFILES)
def test_state_json_text_reads_back(days: list[DayRecord], profile: PatientProfile) -> None:
    state = Engine.of(profile).fold(Engine.of(profile).initial(), days)
    text = to_json_text(state)
    assert json.loads(text) == to_json(state)
    assert from_json(json.loads(text)) == state
