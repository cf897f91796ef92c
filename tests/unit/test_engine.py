"""Unit tests of services.scoring.engine: each trajectory state at its edges, signals and their event
times, the incremental API (step, fold, snapshots, serialisation, versions).

Series are built with every 0-10 item equal to index/10, so a day's symptom index is the value given.
Defaults (carpal tunnel, conservative): baseline 60 -> index MCID 18, deterioration MCID 7.2.
The clinical scenarios (slow improver, stall, flares, recurrence, nerve repair, typical release)
are in test_engine_course.py; the batching/late-data property in test_engine_property.py.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterable, Mapping
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta

import pytest

from schemas.trajectory import SignalCode, TrajectoryState
from services.scoring.engine import (
    ENGINE_VERSION,
    Engine,
    History,
    IncompatibleState,
    OutOfOrderDay,
    Snapshots,
    StateVersionError,
    from_json,
    score,
    symptom_index,
    to_json,
)
from services.scoring.model import Assessment, Baseline, DayRecord, PatientProfile, RedFlagObs
from services.scoring.profile import profile_for
from services.scoring.state import STATE_SCHEMA_VERSION

START = date(2026, 1, 5)
PROFILE = PatientProfile(
    patient_id="pt-1", condition="carpal_tunnel", side="right", treatment="conservative", timezone="UTC"
)


def at(n: int, hour: int = 20) -> datetime:
    d = START + timedelta(days=n)
    return datetime(d.year, d.month, d.day, hour, tzinfo=UTC)


def day(n: int, idx: float | None, **kw: object) -> DayRecord:
    v = None if idx is None else idx / 10.0
    fields: dict[str, object] = {
        "date": START + timedelta(days=n),
        "checkins": 1,
        "pain": v,
        "tingling": v,
        "numbness": v,
        "weakness": v,
        "last_event_id": f"e{n}",
        "last_recorded_at": at(n),
        "last_received_at": at(n),
    }
    fields.update(kw)
    return DayRecord(**fields)  # type: ignore[arg-type]


def pt(n: int) -> dict[str, object]:
    return {"pt_session": True, "pt_session_ended_at": at(n, 16)}


def series(
    values: Iterable[tuple[int, float]], extra: Mapping[int, Mapping[str, object]] | None = None
) -> list[DayRecord]:
    more = extra or {}
    return [day(n, v, **more.get(n, {})) for n, v in values]


def step_to(level: float, until: int) -> list[tuple[int, float]]:
    """Days 0-6 at 60, then `level` through day `until`."""
    return [(n, 60.0 if n < 7 else level) for n in range(until + 1)]


def run(days: list[DayRecord], profile: PatientProfile = PROFILE) -> Assessment:
    as_of = max(d.last_recorded_at for d in days if d.last_recorded_at is not None)
    return score(profile, days, as_of)


def codes(a: Assessment) -> set[SignalCode]:
    return {s.code for s in a.signals}


def signal(a: Assessment, code: SignalCode) -> object:
    return next(s for s in a.signals if s.code is code)


def upto(days: list[DayRecord], n: int) -> list[DayRecord]:
    return [d for d in days if d.date <= START + timedelta(days=n)]


# ----- index and config --------------------------------------------------------------------------


def test_symptom_index_weights_and_missing_items() -> None:
    assert symptom_index(DayRecord(date=START)) is None
    assert symptom_index(DayRecord(date=START, pain=10)) == 100.0
    assert symptom_index(DayRecord(date=START, pain=10, tingling=0, numbness=0, weakness=0)) == 35.0
    assert symptom_index(DayRecord(date=START, pain=4, tingling=4, numbness=4, weakness=4)) == 40.0


def test_profile_per_condition() -> None:
    assert profile_for("carpal_tunnel", "conservative").review_after_days == 28
    assert profile_for("cubital_tunnel", "conservative").review_after_days == 84
    assert profile_for("lumbar_radiculopathy", "conservative").review_after_days == 84
    assert profile_for("peripheral_nerve_injury", "conservative").review_after_days == 91
    ctr = profile_for("carpal_tunnel", "surgical_decompression")
    assert ctr.review_after_days == 28 and ctr.postop_window_days == 42
    assert ctr.function_mcid("bctq_sss") == 1.45 and ctr.function_mcid("quickdash") == 18.7
    assert profile_for("carpal_tunnel", "conservative").function_mcid("bctq_sss") == 1.0
    assert profile_for("carpal_tunnel", "conservative").postop_pain_allowance == ()
    repair = profile_for("peripheral_nerve_injury", "nerve_repair")
    assert repair.weight_tingling == 0.0 and repair.regen_default_distance_mm == 150.0
    cp = profile_for("carpal_tunnel", "conservative")
    assert cp.index_mcid(60.0) == 18.0 and cp.deterioration_mcid(18.0) == 7.2
    assert cp.deterioration_mcid(12.0) == 7.0  # the floor
    assert cp.index_mcid(20.0) == 12.0 and cp.index_mcid(90.0) == 20.0


def test_nerve_repair_index_leaves_out_tingling() -> None:
    repair = profile_for("peripheral_nerve_injury", "nerve_repair")
    d = DayRecord(date=START, pain=4, tingling=9, numbness=4, weakness=4)
    assert symptom_index(d, repair) == 40.0
    assert symptom_index(DayRecord(date=START, tingling=9), repair) is None


# ----- insufficient data, determinism, reasons ---------------------------------------------------


def test_insufficient_data_below_min_days_and_improving_at_min() -> None:
    vals = [60.0, 50.0, 40.0, 35.0, 30.0]
    four = run(series(enumerate(vals[:4])))
    assert four.state is TrajectoryState.insufficient_data
    assert any(r.code == "insufficient_data" for r in four.reasons)
    five = run(series(enumerate(vals)))
    assert five.state is TrajectoryState.improving
    assert five.baseline_symptom_index == 40.0
    assert five.slope_per_week is not None and five.slope_per_week < 0


def test_no_days_at_all() -> None:
    a = score(PROFILE, [], at(0))
    assert a.state is TrajectoryState.insufficient_data and a.reasons and a.symptom_index is None


def test_deterministic_under_shuffle_and_duplicates() -> None:
    days = series(step_to(30.0, 50), {41: pt(41), 42: {"steps": 9000}})
    days = [d if d.date.toordinal() % 9 else replace(d, pain=None) for d in days]
    expected = run(days)
    rng = random.Random(3)
    for _ in range(5):
        shuffled = days + rng.sample(days, 10)
        rng.shuffle(shuffled)
        assert run(shuffled) == expected


def test_every_assessment_has_reasons_with_numbers() -> None:
    a = run(series(step_to(30.0, 20)))
    assert a.reasons
    pain = next(r for r in a.reasons if r.code == "pain_improved_mcid")
    assert pain.detail == "pain 6 -> 3 over 20 days (MCID 2)"
    assert a.day_index[START] == 60.0
    assert a.baseline_symptom_index == 60.0


def test_enrolment_baseline_is_used() -> None:
    prof = replace(PROFILE, baseline=Baseline(pain=8, tingling=8, numbness=8, weakness=8))
    a = run(series(step_to(50.0, 10)), prof)
    assert a.baseline_symptom_index == 80.0
    assert any("enrolment baseline" in r.detail for r in a.reasons)


def test_sparse_series_every_third_day() -> None:
    days = series((n, 70.0 - n) for n in range(0, 45, 3))
    a = run(days)
    assert a.state is TrajectoryState.improving
    assert a.slope_per_week == -7.0


# ----- red flag ---------------------------------------------------------------------------------


def test_red_flag_overrides_and_event_time_is_reporting_checkin() -> None:
    flag_at = at(10, 9)
    days = series(
        step_to(30.0, 10),
        {10: {"red_flags": ("foot_drop",), "red_flag_event_id": "rf-1", "red_flag_recorded_at": flag_at}},
    )
    a = run(days)
    assert a.state is TrajectoryState.red_flag
    sig = signal(a, SignalCode.red_flag)
    assert sig.event_time == flag_at and sig.event_id == "rf-1" and sig.since == START + timedelta(days=10)  # type: ignore[attr-defined]
    one = score(PROFILE, [day(0, 20.0, red_flags=("fever",), red_flag_event_id="x", red_flag_recorded_at=at(0))], at(0))
    assert one.state is TrajectoryState.red_flag


def test_red_flag_window_edges() -> None:
    flag_at = at(10, 9)
    days = series(
        step_to(30.0, 10), {10: {"red_flags": ("fever",), "red_flag_event_id": "rf", "red_flag_recorded_at": flag_at}}
    )
    inside = score(PROFILE, days, flag_at + timedelta(hours=72))
    outside = score(PROFILE, days, flag_at + timedelta(hours=72, seconds=1))
    assert inside.state is TrajectoryState.red_flag
    assert outside.state is not TrajectoryState.red_flag
    assert SignalCode.red_flag not in codes(outside)


# ----- worsening / regression ---------------------------------------------------------------------


def test_regression_detected_on_second_elevated_day_not_before() -> None:
    days = series(step_to(30.0, 40) + [(n, 45.0) for n in range(41, 50)])
    assert SignalCode.regression not in codes(run(upto(days, 41)))
    a = run(upto(days, 42))
    assert a.state is TrajectoryState.worsening
    sig = signal(a, SignalCode.regression)
    assert sig.event_time == at(42) and sig.event_id == "e42" and sig.since == START + timedelta(days=41)  # type: ignore[attr-defined]
    later = run(days)
    assert SignalCode.regression in codes(later)
    assert signal(later, SignalCode.regression).event_time == at(42)  # type: ignore[attr-defined]


def test_regression_edge_at_deterioration_mcid() -> None:
    # Reference 30, deterioration MCID 7.2: +7 for ever is not a regression, +7.5 is (on its second day).
    below = series(step_to(30.0, 40) + [(n, 37.0) for n in range(41, 60)])
    a = run(below)
    assert SignalCode.regression not in codes(a)
    assert a.state is not TrajectoryState.worsening
    above = series(step_to(30.0, 40) + [(n, 37.5) for n in range(41, 60)])
    assert SignalCode.regression not in codes(run(upto(above, 41)))
    assert SignalCode.regression in codes(run(upto(above, 42)))


def test_noisy_patient_needs_a_rise_beyond_its_own_noise() -> None:
    # Day-to-day swings of +-8 (robust SD about 11): two days at +12 are within the noise, three at +30 are not.
    noise = [0, 8, -8, 8, -8, 8, -8, 0, 8, -8]
    base = step_to(30.0, 20) + [(n, 30.0 + noise[n % 10]) for n in range(21, 50)]
    assert SignalCode.regression not in codes(run(series([*base, (50, 42.0), (51, 42.0)])))
    assert SignalCode.regression in codes(run(series([*base, (50, 60.0), (51, 60.0), (52, 60.0)])))


def test_noisy_reporter_stable_is_not_regression() -> None:
    noise = [0, 8, -8, 6, -6, 8, -4, 0, 8, -8]
    days = series(step_to(30.0, 20) + [(n, 30.0 + noise[n % 10]) for n in range(21, 90)])
    for n in range(25, 90, 3):
        assert SignalCode.regression not in codes(run(upto(days, n))), n


def test_back_to_baseline_is_regression_even_after_pt() -> None:
    days = series(step_to(20.0, 40) + [(n, 58.0) for n in range(41, 50)], {40: pt(40)})
    a = run(upto(days, 43))
    assert SignalCode.regression in codes(a)
    assert SignalCode.flare_window not in codes(a)
    assert any(r.code == "back_to_baseline" for r in a.reasons)


# ----- flares ----------------------------------------------------------------------------------


def flare_days(after: list[float]) -> list[DayRecord]:
    return series(step_to(30.0, 41) + [(42 + k, v) for k, v in enumerate(after)], {41: pt(41)})


def test_pt_flare_that_settles() -> None:
    days = flare_days([50.0, 45.0, 30.0] + [30.0] * 12)
    for n in (42, 43, 44):
        a = run(upto(days, n))
        assert a.state is TrajectoryState.flare, n
        assert SignalCode.flare_window in codes(a)
        assert not codes(a) & {SignalCode.regression, SignalCode.persistent_flare}
    for n in range(45, 57):
        a = run(upto(days, n))
        assert not codes(a) & {SignalCode.regression, SignalCode.persistent_flare, SignalCode.flare_window}, n
    assert run(days).state is TrajectoryState.plateau  # flat at 30 since day 10; the flare did not reset it


def test_pt_flare_that_does_not_settle_is_persistent() -> None:
    # Session day 41 at 16:00, check-ins at 20:00: the first check-in at least 72 h later is day 44's.
    days = flare_days([50.0] * 15)
    assert run(upto(days, 43)).state is TrajectoryState.flare
    a = run(upto(days, 44))
    assert a.state is TrajectoryState.worsening
    sig = signal(a, SignalCode.persistent_flare)
    assert sig.since == START + timedelta(days=44) and sig.event_time == at(44)  # type: ignore[attr-defined]
    assert SignalCode.flare_window not in codes(a)
    assert SignalCode.regression in codes(run(days))


def test_flare_judged_72_hours_after_the_session_not_before() -> None:
    # Morning check-ins: day 44 at 08:00 is 64 h after the session, day 45 at 08:00 is 88 h.
    days = series(step_to(30.0, 41) + [(42 + k, 50.0) for k in range(6)], {41: pt(41)})
    days = [
        replace(d, last_recorded_at=at((d.date - START).days, 8)) if d.date > START + timedelta(days=41) else d
        for d in days
    ]
    assert run(upto(days, 44)).state is TrajectoryState.flare
    assert SignalCode.persistent_flare in codes(run(upto(days, 45)))


def test_flare_vs_regression_same_rise_without_trigger() -> None:
    with_pt = flare_days([55.0] * 4)
    without = series(step_to(30.0, 41) + [(42 + k, 55.0) for k in range(4)])
    assert run(upto(with_pt, 43)).state is TrajectoryState.flare
    a = run(upto(without, 43))
    assert a.state is TrajectoryState.worsening and SignalCode.regression in codes(a)
    assert SignalCode.flare_window not in codes(a)


def test_unusually_active_day_triggers_flare() -> None:
    steps = {n: {"steps": 5000} for n in range(0, 41)}
    steps[41] = {"steps": 9000}
    days = series([*step_to(30.0, 41), (42, 50.0), (43, 48.0)], steps)
    a = run(days)
    assert a.state is TrajectoryState.flare
    assert "unusually active day" in signal(a, SignalCode.flare_window).reasons[0].detail  # type: ignore[attr-defined]


def test_flare_with_spreading_numbness_is_not_a_flare() -> None:
    extra: dict[int, dict[str, object]] = {
        41: pt(41),
        42: {"numbness_spreading": True, "spreading_event_id": "sp", "spreading_recorded_at": at(42, 8)},
    }
    days = series([*step_to(30.0, 41), (42, 50.0), (43, 48.0)], extra)
    a = run(days)
    assert a.state is TrajectoryState.worsening
    assert SignalCode.flare_window not in codes(a)
    assert SignalCode.spreading_symptoms in codes(a)


# ----- post-operative dip -------------------------------------------------------------------------


def test_postop_dip_is_not_worsening_but_later_rise_is() -> None:
    prof = replace(PROFILE, treatment="surgical_decompression", procedure_date=START + timedelta(days=20))
    vals = [(n, 60.0) for n in range(20)] + [(n, 75.0) for n in range(20, 30)]
    vals += [(n, max(25.0, 75.0 - 3 * (n - 30))) for n in range(30, 70)] + [(n, 45.0) for n in range(70, 80)]
    days = series(vals)
    for n in range(21, 62, 2):
        a = run(upto(days, n), prof)
        assert a.state is not TrajectoryState.worsening, n
        assert SignalCode.regression not in codes(a), n
    assert any(r.code == "postop_recovery_window" for r in run(upto(days, 25), prof).reasons)
    assert SignalCode.regression in codes(run(days, prof))


def test_postop_spreading_numbness_still_counts() -> None:
    prof = replace(PROFILE, treatment="surgical_decompression", procedure_date=START + timedelta(days=20))
    extra: dict[int, dict[str, object]] = {
        25: {"numbness_spreading": True, "spreading_event_id": "sp", "spreading_recorded_at": at(25, 7)}
    }
    days = series([(n, 60.0) for n in range(26)], extra)
    a = run(days, prof)
    assert a.state is TrajectoryState.worsening
    assert signal(a, SignalCode.spreading_symptoms).event_time == at(25, 7)  # type: ignore[attr-defined]


# ----- plateau, recovered --------------------------------------------------------------------------


def test_plateau_after_21_days_confirmed_on_3() -> None:
    # Enrolled at 60, already at 30 (improved) and flat from the first check-in: the condition holds
    # from day 21 (21 days of data), the signal is raised on its third consecutive day.
    prof = replace(PROFILE, baseline=Baseline(pain=6, tingling=6, numbness=6, weakness=6))
    days = series((n, 30.0) for n in range(40))
    assert run(upto(days, 20), prof).state is not TrajectoryState.plateau
    at21 = run(upto(days, 21), prof)
    assert at21.state is TrajectoryState.plateau and SignalCode.plateau not in codes(at21)
    assert any(r.code == "plateau_confirming" for r in at21.reasons)
    assert SignalCode.plateau not in codes(run(upto(days, 22), prof))
    a = run(upto(days, 23), prof)
    sig = signal(a, SignalCode.plateau)
    assert sig.since == START + timedelta(days=2) and sig.event_time == at(23)  # type: ignore[attr-defined]
    assert signal(run(days, prof), SignalCode.plateau).event_time == at(23)  # type: ignore[attr-defined]


def test_plateau_not_reported_for_mild_residual_symptoms() -> None:
    prof = replace(PROFILE, baseline=Baseline(pain=6, tingling=6, numbness=6, weakness=6))
    a = run(series((n, 18.0) for n in range(40)), prof)
    assert a.state is TrajectoryState.plateau and SignalCode.plateau not in codes(a)
    assert any(r.code == "plateau_mild_symptoms" for r in a.reasons)


def test_slow_steady_improvement_is_not_plateau() -> None:
    days = series((n, 60.0 - 0.4 * n) for n in range(80))
    for n in range(30, 80, 5):
        assert SignalCode.plateau not in codes(run(upto(days, n))), n


def test_no_improvement_yet_waits_for_review_window() -> None:
    days = series((n, 60.0) for n in range(40))
    early = run(upto(days, 20))
    assert early.state is TrajectoryState.insufficient_data
    assert any(r.code == "trend_not_established" for r in early.reasons)
    before_review = run(upto(days, 27))
    assert before_review.state is TrajectoryState.plateau and SignalCode.plateau not in codes(before_review)
    assert any(r.code == "plateau_within_expected_recovery_time" for r in before_review.reasons)
    a = run(days)
    assert a.state is TrajectoryState.plateau and SignalCode.plateau in codes(a)
    assert signal(a, SignalCode.plateau).event_time == at(28)  # type: ignore[attr-defined]
    cubital = replace(PROFILE, condition="cubital_tunnel")
    b = run(days, cubital)
    assert b.state is TrajectoryState.plateau and SignalCode.plateau not in codes(b)


def test_recovered_after_14_days_not_13() -> None:
    days = series(step_to(10.0, 30))
    assert run(upto(days, 22)).state is TrajectoryState.improving
    assert run(upto(days, 23)).state is TrajectoryState.recovered


def test_recovered_requires_acceptable_function_score() -> None:
    days = series(step_to(10.0, 30), {30: {"function_instrument": "bctq_sss", "function_score": 1.8}})
    assert run(days).state is not TrajectoryState.recovered
    ok = series(step_to(10.0, 30), {30: {"function_instrument": "bctq_sss", "function_score": 1.7}})
    a = run(ok)
    assert a.state is TrajectoryState.recovered
    assert any(r.code == "function_acceptable_state" for r in a.reasons)


# ----- spreading, grip, activity -----------------------------------------------------------------


def test_spreading_numbness_signal_and_clearing() -> None:
    extra: dict[int, dict[str, object]] = {
        30: {"numbness_spreading": True, "spreading_event_id": "sp", "spreading_recorded_at": at(30, 8)}
    }
    days = series(step_to(30.0, 40), extra)
    a = run(upto(days, 30))
    sig = signal(a, SignalCode.spreading_symptoms)
    assert sig.event_time == at(30, 8) and sig.event_id == "sp" and sig.since == START + timedelta(days=30)  # type: ignore[attr-defined]
    assert a.state is TrajectoryState.worsening
    assert SignalCode.spreading_symptoms in codes(run(upto(days, 32)))
    assert SignalCode.spreading_symptoms not in codes(run(upto(days, 33)))


def test_grip_drop_of_one_mcid_is_regression() -> None:
    grip = {n: {"grip_strength_kg": 20.0} for n in range(41)} | {n: {"grip_strength_kg": 14.0} for n in range(41, 46)}
    days = series(step_to(30.0, 45), grip)
    assert SignalCode.regression not in codes(run(upto(days, 41)))
    a = run(upto(days, 42))
    assert a.state is TrajectoryState.worsening
    assert any(r.code == "grip_drop" for r in signal(a, SignalCode.regression).reasons)  # type: ignore[attr-defined]
    small = {n: {"grip_strength_kg": 20.0} for n in range(41)} | {n: {"grip_strength_kg": 15.5} for n in range(41, 46)}
    assert SignalCode.regression not in codes(run(series(step_to(30.0, 45), small)))


def test_device_grip_preferred_and_dip_suppresses_grip_drop() -> None:
    prof = replace(PROFILE, treatment="surgical_decompression", procedure_date=START + timedelta(days=41))
    grip = {n: {"device_grip_strength_kg": 20.0, "grip_strength_kg": 5.0} for n in range(41)}
    grip |= {n: {"device_grip_strength_kg": 12.0} for n in range(41, 46)}
    days = series(step_to(30.0, 45), grip)
    assert SignalCode.regression not in codes(run(upto(days, 40)))
    assert SignalCode.regression not in codes(run(days, prof))


def test_activity_decline_is_supporting_evidence_only() -> None:
    steps = {n: {"steps": 6000} for n in range(41)} | {n: {"steps": 3500} for n in range(41, 50)}
    days = series((n, 60.0 - n) for n in range(50))
    days = [replace(d, **steps.get((d.date - START).days, {})) for d in days]  # type: ignore[arg-type]
    assert SignalCode.activity_decline not in codes(run(upto(days, 45)))
    a = run(upto(days, 46))
    assert SignalCode.activity_decline in codes(a)
    assert a.state is TrajectoryState.improving and SignalCode.regression not in codes(a)
    small = [replace(d, steps=4500) if d.steps == 3500 else d for d in days]
    assert SignalCode.activity_decline not in codes(run(small))


def test_activity_decline_reason_on_regression() -> None:
    steps = {n: {"steps": 6000} for n in range(41)} | {n: {"steps": 3000} for n in range(41, 50)}
    days = series(step_to(30.0, 40) + [(n, 45.0) for n in range(41, 50)], steps)
    a = run(days)
    reg = signal(a, SignalCode.regression)
    assert any(r.code == "activity_declined" for r in reg.reasons)  # type: ignore[attr-defined]


# ----- timezone and performance --------------------------------------------------------------------


def test_as_of_local_date_in_patient_timezone() -> None:
    prof = replace(PROFILE, timezone="America/New_York")
    days = series(step_to(30.0, 10))
    as_of = datetime(2026, 1, 16, 3, 30, tzinfo=UTC)  # 22:30 on 2026-01-15 in New York (= day 10)
    future = day(11, 90.0)
    a = score(prof, [*days, future], as_of)
    assert START + timedelta(days=11) not in a.day_index
    assert a.day_index[START + timedelta(days=10)] == 30.0


def test_score_long_history_is_deterministic() -> None:
    """A 194-day sparse history scores identically on repeated calls (speed is measured by `make bench`)."""
    rng = random.Random(1)
    vals = [(n, max(0.0, 60.0 - n / 3 + rng.uniform(-8, 8))) for n in range(194) if rng.random() > 0.2]
    extra = {n: {**pt(n), "steps": 5000 + rng.randint(-900, 900), "grip_strength_kg": 20.0} for n in range(0, 194, 3)}
    days = series(vals, extra)
    assert run(days) == run(list(reversed(days)))


# ----- incremental API: step, fold, versions, serialisation, snapshots --------------------------------


def rich_days() -> list[DayRecord]:
    rng = random.Random(5)
    extra: dict[int, dict[str, object]] = {
        n: {**pt(n), "steps": 5000 + rng.randint(-900, 900), "grip_strength_kg": 20.0 + rng.uniform(-1, 1)}
        for n in range(0, 90, 3)
    }
    extra[50] = {"numbness_spreading": True, "spreading_event_id": "sp", "spreading_recorded_at": at(50, 7)}
    extra[60] = {"red_flags": ("fever",), "red_flag_event_id": "rf", "red_flag_recorded_at": at(60, 9)}
    extra[33] = {"function_instrument": "bctq_sss", "function_score": 2.4}
    vals = [(n, max(0.0, 60.0 - n / 2 + rng.uniform(-6, 6))) for n in range(90) if rng.random() > 0.15]
    return series(vals, extra)


def test_fold_equals_score_and_carries_versions() -> None:
    days = rich_days()
    eng = Engine.of(PROFILE)
    state = eng.fold(eng.initial(), days)
    a = eng.assess(state, at(89))
    assert a == score(PROFILE, days, at(89))
    assert (
        a.engine_version == ENGINE_VERSION and a.profile_version == profile_for("carpal_tunnel", "conservative").version
    )
    assert state.last_date == days[-1].date and state.schema_version == STATE_SCHEMA_VERSION


def test_step_rejects_a_day_not_after_the_state() -> None:
    days = rich_days()
    eng = Engine.of(PROFILE)
    state = eng.fold(eng.initial(), days[:10])
    with pytest.raises(OutOfOrderDay):
        eng.step(state, days[9])
    with pytest.raises(OutOfOrderDay):
        eng.step(state, days[3])


def test_state_of_another_profile_is_refused() -> None:
    eng = Engine.of(PROFILE)
    state = eng.fold(eng.initial(), rich_days()[:5])
    other = Engine.of(PROFILE, profile_for("carpal_tunnel", "conservative").model_copy(update={"plateau_days": 28}))
    assert not other.compatible(state)
    with pytest.raises(IncompatibleState):
        other.step(state, day(200, 30.0))


def test_state_round_trips_through_json_at_every_day() -> None:
    eng = Engine.of(PROFILE)
    state = eng.initial()
    for d in rich_days():
        state = eng.step(state, d)
        doc = json.loads(json.dumps(to_json(state)))
        back = from_json(doc)
        assert back == state
        assert eng.assess(back, at(90)) == eng.assess(state, at(90))


def test_unknown_state_version_raises_a_clear_error() -> None:
    doc = to_json(Engine.of(PROFILE).initial())
    with pytest.raises(StateVersionError, match="schema_version 99 is not supported"):
        from_json({**doc, "schema_version": 99})
    with pytest.raises(StateVersionError, match="malformed"):
        from_json({**doc, "symptoms": {"n": "many"}})
    with pytest.raises(StateVersionError):
        from_json([1, 2])


def test_snapshots_rewind_to_the_day_before_a_late_day() -> None:
    days = rich_days()
    eng = Engine.of(PROFILE)
    states = eng.fold_states(eng.initial(), days)
    snaps = Snapshots(keep_days=35).with_states(states)
    assert all(s.last_date is not None and s.last_date > days[-1].date - timedelta(days=35) for s in snaps.states)
    late = days[-5].date
    base = snaps.before(late)
    assert base is not None and base.last_date is not None and base.last_date < late
    replayed = eng.fold(base, [d for d in days if base.last_date is not None and d.date > base.last_date])
    assert replayed == states[-1]
    assert snaps.before(days[0].date) is None  # older than every snapshot: replay from the start


def test_history_ingests_late_and_changed_days() -> None:
    days = rich_days()
    eng = Engine.of(PROFILE)
    h = History.start(eng)
    h = h.ingest(days[:40]).ingest(days[60:]).ingest(days[40:60])
    assert h.state == eng.fold(eng.initial(), days)
    changed = replace(days[70], pain=9.0, checkins=2)  # a second check-in the same day
    h2 = h.ingest([changed])
    expected = [changed if d.date == changed.date else d for d in days]
    assert h2.state == eng.fold(eng.initial(), expected)
    very_late = day(-3, 40.0)  # before every snapshot: a full replay
    h3 = h2.ingest([very_late])
    assert h3.state == eng.fold(eng.initial(), [very_late, *expected])


def test_red_flag_signal_per_observation_with_arrival_time() -> None:
    obs = (
        RedFlagObs("rf-a", at(10, 8), at(10, 8), ("fever",)),
        RedFlagObs("rf-b", at(10, 9), at(12, 9), ("fever", "foot_drop")),
    )
    days = series(step_to(30.0, 10), {10: {"red_flags": ("fever", "foot_drop"), "red_flag_obs": obs}})
    a = score(PROFILE, days, at(10, 21))
    sigs = [s for s in a.signals if s.code is SignalCode.red_flag]
    assert [(s.event_id, s.event_time, s.received_at, s.flags) for s in sigs] == [
        ("rf-a", at(10, 8), at(10, 8), ["fever"]),
        ("rf-b", at(10, 9), at(12, 9), ["fever", "foot_drop"]),
    ]
    assert all(s.since == START + timedelta(days=10) for s in sigs)
    # 72 h after the first observation it is out of the window, the second is still in.
    later = score(PROFILE, days, at(10, 8) + timedelta(hours=72, seconds=1))
    assert [s.event_id for s in later.signals if s.code is SignalCode.red_flag] == ["rf-b"]
