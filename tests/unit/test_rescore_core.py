"""Pure parts of `nervewatch rescore` (tooling/rescore.py, services/scoring/rescore.py) and of the
tenant clinical-profile overrides (services/scoring/profiles_store.py)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from schemas.alerts import AlertKind
from schemas.patients import Patient
from schemas.trajectory import Signal, SignalCode, TrajectoryState
from services.scoring import profiles_store as ps
from services.scoring import rescore as core
from services.scoring.model import DayRecord
from services.scoring.profile import profile_for
from tooling.rescore import AlertDiff, RescoreError, Summary, alert_diff

T0 = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)


def sig(code: SignalCode) -> Signal:
    return Signal(code=code, event_time=T0)


def test_alert_diff_opens_closes_and_pairs_kind_changes() -> None:
    assert alert_diff([], []) == AlertDiff()
    assert alert_diff([], [sig(SignalCode.plateau)]) == AlertDiff(opened=(AlertKind.plateau,))
    assert alert_diff([sig(SignalCode.plateau)], []) == AlertDiff(closed=(AlertKind.plateau,))
    assert alert_diff([sig(SignalCode.regression)], [sig(SignalCode.plateau)]) == AlertDiff(
        changed=((AlertKind.regression, AlertKind.plateau),)
    )
    # flare_window drives no alert; an unchanged kind is no change.
    assert alert_diff([sig(SignalCode.plateau)], [sig(SignalCode.plateau), sig(SignalCode.flare_window)]) == AlertDiff()
    # A red flag never closes by itself (a person resolves it), so it is not paired either.
    assert alert_diff([sig(SignalCode.red_flag)], [sig(SignalCode.plateau)]) == AlertDiff(opened=(AlertKind.plateau,))


def test_summary_counts_by_transition_kind_and_severity() -> None:
    s = Summary()
    s.add(TrajectoryState.improving, TrajectoryState.plateau, [], [sig(SignalCode.plateau)], 40)
    s.add(TrajectoryState.improving, TrajectoryState.plateau, [], [sig(SignalCode.plateau)], 30)
    s.add(TrajectoryState.worsening, TrajectoryState.improving, [sig(SignalCode.regression)], [], 20)
    s.add(TrajectoryState.improving, TrajectoryState.improving, [], [], 10)
    s.add(None, TrajectoryState.insufficient_data, [], [], 1)
    assert (s.patients, s.days, s.changed) == (5, 101, 4)
    j = s.to_json()
    assert j["transitions"] == [
        {"from": "improving", "to": "plateau", "count": 2},
        {"from": "none", "to": "insufficient_data", "count": 1},
        {"from": "worsening", "to": "improving", "count": 1},
    ]
    assert j["alerts_open"] == [{"kind": "plateau", "severity": "medium", "count": 2}]
    assert j["alerts_close"] == [{"kind": "regression", "severity": "high", "count": 1}]
    text = "\n".join(s.lines())
    assert "improving -> plateau: 2" in text and "plateau medium: 2" in text and "regression high: 1" in text


def patient(condition: str = "carpal_tunnel", treatment: str = "conservative") -> Patient:
    return Patient.model_validate(
        {
            "patient_id": "pt-1",
            "condition": condition,
            "treatment": treatment,
            "timezone": "UTC",
            "care_team": [],
            "created_at": T0.isoformat(),
            "updated_at": T0.isoformat(),
        }
    )


def days(n: int, pain: float = 5.0) -> tuple[DayRecord, ...]:
    start = date(2026, 9, 1)
    return tuple(
        DayRecord(
            date=start + timedelta(days=i),
            checkins=1,
            pain=pain,
            tingling=4.0,
            numbness=4.0,
            weakness=2.0,
            last_event_id=f"e{i}",
            last_recorded_at=datetime.combine(start + timedelta(days=i), datetime.min.time(), UTC) + timedelta(hours=9),
        )
        for i in range(n)
    )


def test_replay_is_a_fold_under_the_tenant_profile() -> None:
    stored = core.Stored("pt-1", patient(), None, (), None, days(40))
    base = core.replay(stored, None)
    assert base is not None and base.assessment.profile_version == profile_for("carpal_tunnel", "conservative").version
    override = ps.override_of([("carpal_tunnel", "conservative", {"plateau_days": 14})])
    tuned = core.replay(stored, override)
    assert tuned is not None and tuned.assessment.profile_version != base.assessment.profile_version
    assert base.assessment.as_of == core.series_as_of(stored.days)
    assert core.replay(core.Stored("pt-1", patient(), None, (), None, ()), None) is None
    event = core.rescore_event("t1", base, "rs-1", T0)
    assert event.rescore_run == "rs-1" and event.trajectory.days == []


def test_check_override_is_strict_and_echoes_no_input() -> None:
    assert ps.check_override("carpal_tunnel", "conservative", {"plateau_days": 28, "item_mcid": 3}) == {
        "plateau_days": 28,
        "item_mcid": 3.0,
    }
    bad = [
        {"plateau_days": "28"},  # string for a number
        {"plateau_days": -3},  # negative window
        {"plateau_days": True},
        {"index_mcid_min": 30, "index_mcid_max": 20},  # inconsistent
        {"activity_decline_pct": 150},  # out of range
        {"secret patient note": 1},  # unknown field
        {"function_mcids": {"free text here": 1.0}},
    ]
    for body in bad:
        with pytest.raises(ps.OverrideRejected) as exc:
            ps.check_override("carpal_tunnel", "conservative", body)
        text = repr(exc.value.errors)
        assert "secret" not in text and "free text" not in text and "28'" not in text
    with pytest.raises(ps.OverrideRejected):
        ps.check_override("carpal_tunnel", "conservative", [1])
    with pytest.raises(ValueError):
        ps.check_override("not_a_condition", "conservative", {})


def test_profile_version_distinguishes_tenant_versions() -> None:
    default = profile_for("carpal_tunnel", "conservative").version
    v1 = profile_for(
        "carpal_tunnel", "conservative", ps.override_of([("carpal_tunnel", "conservative", {"plateau_days": 28})])
    )
    v2 = profile_for(
        "carpal_tunnel", "conservative", ps.override_of([("carpal_tunnel", "conservative", {"plateau_days": 35})])
    )
    assert len({default, v1.version, v2.version}) == 3
    other_pair = profile_for(
        "cubital_tunnel", "conservative", ps.override_of([("carpal_tunnel", "conservative", {"plateau_days": 28})])
    )
    assert other_pair.version == profile_for("cubital_tunnel", "conservative").version
    assert ps.override_of([("carpal_tunnel", "conservative", {})]) is None


def test_profile_file_shapes() -> None:
    o = ps.load_override_file('{"carpal_tunnel/conservative": {"plateau_days": 28}}')
    assert o.rules[0].set == {"plateau_days": 28}
    with pytest.raises(ValueError):
        ps.load_override_file('{"carpal_tunnel/conservative": {"plateau_days": -1}}')
    with pytest.raises(ValueError):
        ps.load_override_file('{"nowhere": {}}')


async def test_real_run_with_a_profile_file_is_refused() -> None:
    from tooling.rescore import run

    with pytest.raises(RescoreError):
        await run(None, "t1", profile_text="{}", dry_run=False)


def test_live_scoring_applies_the_tenant_override() -> None:
    """The processor's per-patient plan scores under the tenant's override (a new profile version)."""
    from services.scoring.processor import _plan, _Work

    p = patient("lumbar_radiculopathy")
    series_days = list(days(22))
    as_of = series_days[-1].last_recorded_at
    assert as_of is not None
    row = {"profile": p.model_dump(mode="json"), "prev": None, "prev_days": None, "engine_state": None}
    override = ps.override_of([("lumbar_radiculopathy", "conservative", {"review_after_days": 14, "plateau_days": 14})])
    results = []
    for o in (None, override):
        plan = _plan(row, _Work(), [series_days[-1].date], o)
        results.append(plan.engine.assess(plan.engine.fold(plan.base, series_days), as_of))
    plain, tuned = results
    assert [s.code for s in plain.signals] == []
    assert [s.code for s in tuned.signals] == [SignalCode.plateau]
    assert tuned.profile_version != plain.profile_version
