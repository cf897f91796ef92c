"""The engine judged against the expected course, on seeded cohorts of clinical scenarios.

Each scenario (tests/unit/course_cases.py) draws its parameters from wide ranges: curve shapes and
rates, noise, missed days, check-in times, time zones, PT schedules, timing of the event. Every
patient is replayed live (stepped and assessed day by day). Rates are asserted where the data
themselves can hide the event (noise, missed check-ins); everything else holds for every patient.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import datetime, timedelta

import pytest

from schemas.trajectory import SignalCode
from services.scoring.model import Assessment
from tests.unit import course_cases as cc

N = 40


def cohort(name: str, make: Callable[[random.Random, int], cc.Case], n: int = N) -> list[cc.Case]:
    return [make(random.Random(f"test-{name}/{i}"), i) for i in range(n)]


def months(case: cc.Case) -> float:
    return max(1.0, (case.days[-1].date - case.days[0].date).days) / 30.4


def first(assessments: list[Assessment], code: SignalCode, after: datetime | None = None) -> datetime | None:
    for a in assessments:
        if after is not None and a.as_of < after:
            continue
        for s in a.signals:
            if s.code is code:
                return s.event_time
    return None


def checkins_from(case: cc.Case, t: datetime) -> list[datetime]:
    return sorted(d.last_recorded_at for d in case.days if d.last_recorded_at is not None and d.last_recorded_at >= t)


def test_slow_steady_improver_is_not_a_plateau() -> None:
    """About 0.4 points better a week (0.3-0.5 in pain, 0-0.5 in the others): below one MCID per
    three weeks, never flat. The old engine flagged 17-19 of 20."""
    flagged = [c.name for c in cohort("slow", cc.slow_improver) if first(cc.live(c), SignalCode.plateau)]
    assert len(flagged) <= N // 20, flagged


def test_slow_improver_noisy_reporter_rarely_flagged() -> None:
    cases = cohort("slow-noisy", lambda r, i: cc.slow_improver(r, i, noisy=True))
    alerts = sum(len(cc.alerts(cc.live(c))) for c in cases)
    assert alerts / sum(months(c) for c in cases) <= 0.3


def test_true_stall_at_moderate_symptoms_is_a_plateau_within_7_days_of_the_21st_flat_day() -> None:
    late, early = [], []
    for c in cohort("stall", cc.stall):
        flat = c.t0 + timedelta(days=c.truth["flat_start"])
        raised = first(cc.live(c), SignalCode.plateau)
        if raised is None or raised > flat + timedelta(days=28):
            late.append(c.name)
        elif raised < flat + timedelta(days=13):
            # Engine 2.1 no longer takes the approach's tail for a steady improvement: the course
            # may be called flat once 21 days of levels sit within half an MCID, which can be a
            # little before the 14th flat day when the approach flattened early (13.5 days in 1
            # of 40). Before the 13th flat day is early.
            early.append(c.name)
    assert not early, early
    assert len(late) <= N // 10, late  # >= 90% within 7 days of the 21st flat day


def test_flare_still_there_after_72_hours_is_persistent_within_5_days() -> None:
    """Raised no later than 5 days after the session, or at the first check-in 72 h after it when
    the patient did not check in before then."""
    failed = []
    for c in cohort("flare-p", lambda r, i: cc.flare(r, i, persistent=True)):
        session = c.t0 + timedelta(days=c.truth["session"])
        raised = first(cc.live(c), SignalCode.persistent_flare, after=session)
        judged = checkins_from(c, session + timedelta(hours=72))
        deadline = max(session + timedelta(days=5), judged[0])
        if raised is None or raised > deadline:
            failed.append(c.name)
    assert len(failed) <= N // 20, failed


def test_flare_settled_within_72_hours_raises_nothing() -> None:
    for c in cohort("flare-s", lambda r, i: cc.flare(r, i, persistent=False)):
        session = c.t0 + timedelta(days=c.truth["session"])
        a = cc.live(c)
        assert first(a, SignalCode.persistent_flare, after=session) is None, c.name
        assert first(a, SignalCode.regression, after=session) is None, c.name


def test_early_recurrence_after_release_is_a_regression_within_3_days() -> None:
    late = []
    for c in cohort("recur", cc.recurrence):
        start = c.t0 + timedelta(days=c.truth["start"])
        back = c.t0 + timedelta(days=c.truth["return"])
        a = cc.live(c)
        before = [x for x in a if x.as_of < start]
        assert not cc.alerts(before), (c.name, [s.code for s in cc.alerts(before)])  # the normal dip is quiet
        raised = first(a, SignalCode.regression, after=start)
        assert raised is not None, c.name
        if raised > back + timedelta(days=3):
            late.append(c.name)
            assert raised <= checkins_from(c, back)[1], c.name  # missed check-ins: the second one after
    assert len(late) <= N // 20, late


def test_typical_release_course_raises_nothing_above_low() -> None:
    """Tingling and night symptoms settling in 1-2 weeks, numbness over 6-8 weeks, incision and
    pillar pain, grip 14.8 -> 13.0 kg at 6 weeks -> 16.2 kg at 3 months (scaled per patient)."""
    flagged = [(c.name, [s.code.value for s in cc.alerts(cc.live(c))]) for c in cohort("ctr", cc.typical_release)]
    flagged = [f for f in flagged if f[1]]
    assert len(flagged) <= N // 40, flagged


def test_typical_release_noisy_reporters_within_false_alert_budget() -> None:
    cases = cohort("ctr-noisy", lambda r, i: cc.typical_release(r, i, noisy=True))
    lives = [cc.live(c) for c in cases]
    pm = sum(months(c) for c in cases)
    assert sum(len(cc.alerts(a)) for a in lives) / pm <= 0.3
    assert sum(len(cc.alerts(a, cc.HIGH)) for a in lives) / pm <= 0.1


def test_nerve_repair_latent_phase_is_not_a_plateau_or_regression() -> None:
    regenerating = 0
    for c in cohort("repair", cc.nerve_repair):
        a = cc.live(c)
        for code in (SignalCode.plateau, SignalCode.regression, SignalCode.persistent_flare):
            assert first(a, code) is None, (c.name, code)
        last = a[-1]
        assert any(r.code == "regeneration_latent_phase" for r in last.reasons), c.name
        regenerating += any(r.code == "tingling_regeneration" for r in last.reasons)
    assert regenerating >= N // 2  # rising tingling with stable pain is named as regeneration


@pytest.mark.parametrize("distance", [40.0, 120.0, 300.0])
def test_nerve_repair_plateau_possible_once_regrowth_is_due(distance: float) -> None:
    """After the expected regrowth time a flat course at moderate symptoms is a plateau again."""
    rng = random.Random(f"repair-due/{distance}")
    due = 28 + distance + 14

    def latent(t: float) -> cc.Levels:
        return {"pain": 4.0, "tingling": 3.0, "numbness": 6.0, "weakness": 5.0}

    case = cc.build(
        rng,
        "repair-due",
        condition="peripheral_nerve_injury",
        treatment="nerve_repair",
        latent=latent,
        first_day=1,
        last_day=int(due) + 30,
        pre={"pain": 7.0, "tingling": 1.0, "numbness": 9.0, "weakness": 8.0},
        enrol_p=1.0,
        repair_distance_mm=distance,
        missing_p=0.0,
    )
    raised = first(cc.live(case), SignalCode.plateau)
    assert raised is not None and raised >= case.t0 + timedelta(days=due - 1)
