"""Unit tests of the synthetic cohort simulator and its evaluation math (pure, no network)."""

from __future__ import annotations

import argparse
import importlib.util
import itertools
import json
import math
import re
import statistics
import sys
import uuid
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

# Until `simulator*` is in the package list of pyproject.toml, make the repo root importable.
if importlib.util.find_spec("simulator") is None:  # pragma: no cover
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from schemas.activity import ActivityBatch
from schemas.alerts import Alert
from schemas.checkins import CheckIn
from schemas.common import INSTRUMENT_RANGES, PATIENT_ID_PATTERN, FunctionInstrument
from schemas.patients import PatientIn
from simulator.archetypes import (
    ABNORMAL_ARCHETYPES,
    ALL_ARCHETYPES,
    NORMAL_ARCHETYPES,
    SimPatient,
    generate_cohort,
    validate_patient,
)
from simulator.cli import REPORT_BEGIN, REPORT_END, add_arguments, run, write_report
from simulator.client import chunked, retry_after_seconds, windows
from simulator.evaluate import (
    Truth,
    _parse_page,
    check_targets,
    duplicate_counts,
    evaluate,
    percentile,
    render_markdown,
    to_dict,
    truths_from_cohort,
)

END = datetime(2026, 11, 20, 13, 30, tzinfo=UTC)
CTX = {"now": END + timedelta(minutes=1)}
SEED = 20261120


@pytest.fixture(scope="module")
def cohort() -> list[SimPatient]:
    return generate_cohort(4, SEED, END)


@pytest.fixture(scope="module")
def new_cohort() -> list[SimPatient]:
    """More patients of the new archetypes, for the ground-truth checks."""
    return generate_cohort(12, SEED + 1, END, archetypes=NEW_ARCHETYPES)


NEW_ARCHETYPES = (
    "slow_steady_improver",
    "stall_moderate",
    "flare_unsettled",
    "flare_settled",
    "early_recurrence",
    "postop_dip",
    "nerve_repair",
    "typical_ctr",
)
RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")
DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
DATETIME_KEYS = frozenset({"recorded_at", "ended_at", "start", "end"})
DATE_KEYS = frozenset({"onset_date", "procedure_date"})
NUMBER_KEYS = frozenset(
    {
        "current",
        "worst_24h",
        "tingling",
        "numbness",
        "weakness",
        "pain",
        "night_wakings",
        "grip_strength_kg",
        "score",
        "analgesic_doses_24h",
        "value",
        "daily_steps",
        "repair_distance_mm",
    }
)
WEIGHTS = {"pain": 0.35, "tingling": 0.2, "numbness": 0.25, "weakness": 0.2}


def _dt(s: str) -> datetime:
    return datetime.fromisoformat(s)


def _by(cohort: list[SimPatient]) -> dict[str, list[SimPatient]]:
    out: dict[str, list[SimPatient]] = defaultdict(list)
    for p in cohort:
        out[p.label.archetype].append(p)
    return out


def _params(p: SimPatient) -> dict[str, Any]:
    params = p.label.detail["params"]
    assert isinstance(params, dict)
    return params


def _day(p: SimPatient, instant: datetime) -> int:
    """History day index of an instant (local date of the patient)."""
    assert p.label.history_start is not None
    tz = ZoneInfo(p.patient["timezone"])
    first = p.label.history_start.astimezone(tz).date()
    return (instant.astimezone(tz).date() - first).days


def _first_date(p: SimPatient) -> date:
    assert p.label.history_start is not None
    return p.label.history_start.astimezone(ZoneInfo(p.patient["timezone"])).date()


def _index(row: dict[str, float]) -> float:
    return sum(w * row[s] for s, w in WEIGHTS.items())


def _med5(values: list[float]) -> list[float]:
    """5-day running medians: a transient post-therapy soreness or flare is not a level."""
    return [statistics.median(values[max(0, i - 2) : i + 3]) for i in range(len(values))]


def _walk_types(obj: Any, path: str = "") -> None:
    """Numbers are JSON numbers (never strings or booleans); date-times RFC 3339 with an offset."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            if k in NUMBER_KEYS and not isinstance(v, dict):
                assert type(v) in (int, float), f"{path}.{k} is {type(v).__name__}"
                assert math.isfinite(v)
            if k in DATETIME_KEYS:
                assert isinstance(v, str) and RFC3339.match(v), f"{path}.{k}={v!r}"
                assert _dt(v).utcoffset() is not None
            if k in DATE_KEYS:
                assert isinstance(v, str) and DATE.match(v), f"{path}.{k}={v!r}"
            _walk_types(v, f"{path}.{k}")
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            _walk_types(v, f"{path}[{i}]")


# --------------------------------------------------------------------------------------------
# Generation


def test_deterministic_by_seed() -> None:
    a = generate_cohort(2, 7, END)
    b = generate_cohort(2, 7, END)
    assert [p.patient for p in a] == [p.patient for p in b]
    assert [[(x.at, x.kind, x.payload) for x in p.posts] for p in a] == [
        [(x.at, x.kind, x.payload) for x in p.posts] for p in b
    ]
    assert [p.label for p in a] == [p.label for p in b]
    assert [p.latent for p in a] == [p.latent for p in b]
    c = generate_cohort(2, 8, END)
    assert {p.patient_id for p in a}.isdisjoint({p.patient_id for p in c})
    ids_a = {x.payload["event_id"] for p in a for x in p.posts if x.kind == "checkin"}
    ids_c = {x.payload["event_id"] for p in c for x in p.posts if x.kind == "checkin"}
    assert ids_a.isdisjoint(ids_c)


def test_patient_independent_of_other_archetypes() -> None:
    full = {p.patient_id: p for p in generate_cohort(2, 3, END)}
    only = generate_cohort(2, 3, END, archetypes=["regression", "red_flag", "nerve_repair"])
    assert len(only) == 6
    for p in only:
        assert p.posts == full[p.patient_id].posts
        assert p.label == full[p.patient_id].label


def test_unknown_archetype_rejected() -> None:
    with pytest.raises(ValueError, match="unknown"):
        generate_cohort(1, 1, END, archetypes=["nope"])
    with pytest.raises(ValueError):
        generate_cohort(1, 1, END.replace(tzinfo=None))


def test_every_payload_validates_strictly(cohort: list[SimPatient], new_cohort: list[SimPatient]) -> None:
    """Every archetype: every payload passes the contract models in strict JSON mode."""
    assert {p.label.archetype for p in cohort} == set(ALL_ARCHETYPES)
    for p in cohort + new_cohort:
        _walk_types(p.patient)
        patient = PatientIn.model_validate_json(json.dumps(p.patient), strict=True, context=CTX)
        assert patient.patient_id == p.patient_id
        for post in p.posts:
            _walk_types(post.payload)
            if post.kind == "checkin":
                ci = CheckIn.model_validate_json(json.dumps(post.payload), strict=True, context=CTX)
                assert ci.patient_id == p.patient_id
            else:
                batch = ActivityBatch.model_validate_json(json.dumps(post.payload), strict=True, context=CTX)
                assert batch.patient_id == p.patient_id
                assert 1 <= len(batch.samples) <= 5000
        assert validate_patient(p, CTX["now"])[0] == len(p.checkins)


def test_webhook_care_team() -> None:
    (p,) = generate_cohort(1, 5, END, archetypes=["red_flag"], webhook_url="http://127.0.0.1:9999/hook")
    model = PatientIn.model_validate(p.patient)
    assert len(model.care_team) == 1
    assert str(model.care_team[0].notify.webhook_url) == "http://127.0.0.1:9999/hook"
    (q,) = generate_cohort(1, 5, END, archetypes=["red_flag"])
    assert "care_team" not in q.patient


def test_ids_and_event_ids(cohort: list[SimPatient]) -> None:
    seen: set[str] = set()
    for p in cohort:
        assert re.fullmatch(PATIENT_ID_PATTERN.strip("^$"), p.patient_id)
        assert p.patient_id.startswith(f"sim-{p.label.archetype}-") and p.patient_id.endswith(f"-{SEED}")
        for post in p.posts:
            ids = (
                [post.payload["event_id"]]
                if post.kind == "checkin"
                else [s["event_id"] for s in post.payload["samples"]]
            )
            for i in ids:
                assert uuid.UUID(i).version == 4
                assert i not in seen
                seen.add(i)


def test_nothing_in_the_future_and_posts_ordered(cohort: list[SimPatient]) -> None:
    for p in cohort:
        ats = [x.at for x in p.posts]
        assert ats == sorted(ats)
        for post in p.posts:
            assert post.at <= END
            if post.kind == "checkin":
                rec = _dt(post.payload["recorded_at"])
                assert rec <= END
                assert post.at >= rec
                pt = post.payload.get("pt_session")
                if pt:
                    ended = _dt(pt["ended_at"])
                    assert ended < rec
                    assert ended.astimezone(ZoneInfo(p.patient["timezone"])).hour in range(9, 20)
            else:
                for s in post.payload["samples"]:
                    assert _dt(s["end"]) <= post.at <= END


def test_local_times_and_offsets(cohort: list[SimPatient]) -> None:
    zones = {p.patient["timezone"] for p in cohort}
    assert len(zones) >= 8
    for p in cohort:
        tz = ZoneInfo(p.patient["timezone"])
        for ci in p.checkins:
            rec = _dt(ci["recorded_at"])
            local = rec.astimezone(tz)
            assert rec.utcoffset() == local.utcoffset()  # offset is the patient's own at that instant
            assert 5 <= local.hour <= 23


def test_realism_of_check_in_stream(cohort: list[SimPatient]) -> None:
    late = 0
    total = 0
    for p in cohort:
        tz = ZoneInfo(p.patient["timezone"])
        days = sorted({_dt(c["recorded_at"]).astimezone(tz).date() for c in p.checkins})
        span = (days[-1] - days[0]).days + 1
        assert 56 <= p.label.history_days <= 100
        if p.label.archetype != "disengagement":
            gaps = [(b - a).days for a, b in itertools.pairwise(days)]
            assert max(gaps) <= 3, "at most two missed days in a row"
            assert 1 - len(days) / span <= 0.5
            stamps = sorted(_dt(c["recorded_at"]) for c in p.checkins)
            # Never silent for the 4 days that make a disengagement alert.
            assert max(b - a for a, b in itertools.pairwise(stamps)) < timedelta(days=4)
        sessions = {c["pt_session"]["ended_at"] for c in p.checkins if "pt_session" in c}
        assert len(sessions) / (span / 7) <= 4.5
        for post in p.posts:
            if post.kind == "checkin":
                total += 1
                if post.at - _dt(post.payload["recorded_at"]) >= timedelta(days=1):
                    late += 1
    assert late / total <= 0.08


def test_function_instrument_fits_condition(cohort: list[SimPatient]) -> None:
    fitting = {
        "carpal_tunnel": {"bctq_sss", "bctq_fss", "quickdash"},
        "cubital_tunnel": {"quickdash"},
        "lumbar_radiculopathy": {"odi", "promis_pi"},
    }
    for p in cohort:
        for ci in p.checkins:
            f = ci.get("function")
            if f is None:
                continue
            low, high, _ = INSTRUMENT_RANGES[FunctionInstrument(f["instrument"])]
            assert low <= f["score"] <= high
            allowed = fitting.get(p.patient["condition"])
            if allowed:
                assert f["instrument"] in allowed
        if p.patient["condition"] in ("carpal_tunnel", "cubital_tunnel"):
            dyn = any(s["type"] == "grip_strength_kg" for b in p.activity_batches for s in b["samples"])
            assert dyn or any("grip_strength_kg" in c for c in p.checkins)
        if p.patient["treatment"] in ("surgical_decompression", "neurolysis", "nerve_repair"):
            proc = datetime.fromisoformat(p.patient["procedure_date"]).date()
            first = min(_dt(c["recorded_at"]) for c in p.checkins).astimezone(ZoneInfo(p.patient["timezone"]))
            assert 1 <= (first.date() - proc).days <= 45


def test_wearable_syncs_in_bursts(cohort: list[SimPatient]) -> None:
    multi_day = 0
    for p in cohort:
        for b in p.activity_batches:
            days = {s["start"][:10] for s in b["samples"] if s["type"] == "steps"}
            multi_day += len(days) > 1
    assert multi_day > 0


def test_labels_sane(cohort: list[SimPatient], new_cohort: list[SimPatient]) -> None:
    for p in cohort + new_cohort:
        lab = p.label
        assert lab.history_start is not None and lab.history_end == END
        assert len(p.latent) == lab.history_days
        params = _params(p)
        for key in ("reporter", "habits", "pre", "timing"):
            assert key in params
        json.dumps(lab.detail)  # parameters are plain data
        if lab.archetype in NORMAL_ARCHETYPES:
            assert lab.onset is None and lab.earliest is None and lab.due is None
            assert lab.expected_alert_kinds == frozenset()
        else:
            assert lab.archetype in ABNORMAL_ARCHETYPES
            assert lab.onset is not None
            assert lab.history_start <= lab.onset <= END
            assert len(lab.expected_alert_kinds) == 1
            assert not lab.expected_alert_kinds & lab.tolerated_alert_kinds
            if lab.earliest is not None:
                assert lab.earliest <= lab.onset
            if lab.due is not None:
                assert lab.onset <= lab.due <= END


def test_normal_courses_hide_no_plateau_or_worsening(cohort: list[SimPatient], new_cohort: list[SimPatient]) -> None:
    """On normal archetypes the latent course never sits flat for 21 days at moderate symptoms
    (except the expected latent phase after a nerve repair), and ends no worse than it began."""
    for p in cohort + new_cohort:
        if p.label.archetype not in NORMAL_ARCHETYPES or p.label.archetype == "nerve_repair":
            continue
        idx = _med5([_index(row) for row in p.latent])
        for i in range(21, len(idx)):
            if idx[i] >= 2.8:
                assert idx[i - 21] - idx[i] >= 0.3, (p.patient_id, i)
        assert statistics.mean(idx[-7:]) <= statistics.mean(idx[:7]) + 0.3, p.patient_id


def _series(p: SimPatient, key: str) -> list[tuple[datetime, int]]:
    return sorted((_dt(c["recorded_at"]), c[key]) for c in p.checkins if key in c)


def _pain(p: SimPatient) -> list[tuple[datetime, int]]:
    return sorted((_dt(c["recorded_at"]), c["pain"]["current"]) for c in p.checkins)


def test_archetype_ground_truth_is_visible_in_data(cohort: list[SimPatient]) -> None:
    by = _by(cohort)
    for p in by["red_flag"]:
        flagged = [c for c in p.checkins if c.get("red_flags")]
        assert len(flagged) == 1
        assert _dt(flagged[0]["recorded_at"]) == p.label.onset == p.label.red_flag_recorded_at
        assert flagged[0]["event_id"] == p.label.red_flag_event_id
    for arch in ALL_ARCHETYPES:
        if arch != "red_flag":
            assert all(not c.get("red_flags") for p in by[arch] for c in p.checkins)
    for p in by["spreading_numbness"]:
        spread = sorted(_dt(c["recorded_at"]) for c in p.checkins if c.get("numbness_spreading"))
        assert spread and spread[0] == p.label.onset
        after = [c for c in p.checkins if _dt(c["recorded_at"]) >= spread[0]]
        assert all(c.get("numbness_spreading") is True for c in after)
        d0 = _day(p, spread[0])
        assert p.latent[min(d0 + 10, len(p.latent) - 1)]["numbness"] - p.latent[max(d0 - 1, 0)]["numbness"] >= 1.5
        assert p.label.expected_alert_kinds == {"spreading_symptoms"}
    for arch in ALL_ARCHETYPES:
        if arch != "spreading_numbness":
            assert all(not c.get("numbness_spreading") for p in by[arch] for c in p.checkins)
    for p in by["disengagement"]:
        assert p.label.onset is not None
        resumed = sorted(_dt(c["recorded_at"]) for c in p.checkins if _dt(c["recorded_at"]) > p.label.onset)
        gap_end = resumed[0] if resumed else END
        assert gap_end - p.label.onset >= timedelta(days=7)
    for p in by["activity_decline"]:
        assert p.label.onset is not None
        steps = [
            (_dt(s["start"]), s["value"]) for b in p.activity_batches for s in b["samples"] if s["type"] == "steps"
        ]
        before = [v for t, v in steps if t < p.label.onset]
        declined = [v for t, v in steps if t >= p.label.onset]
        assert len(declined) >= 10
        assert statistics.median(declined) <= 0.65 * statistics.median(before[:14])
    for p in by["regression"]:
        assert p.label.onset is not None
        d = _day(p, p.label.onset)
        rise = max(
            p.latent[min(d + 2, len(p.latent) - 1)][s] - p.latent[max(d - 3, 0)][s] for s in ("pain", "numbness")
        )
        assert rise >= 1.8
        pain = _pain(p)
        numb = _series(p, "numbness")
        seen = 0.0
        for series in (pain, numb):
            pre = [v for t, v in series if p.label.onset - timedelta(days=7) <= t < p.label.onset - timedelta(days=1)]
            post = [v for t, v in series if t >= p.label.onset + timedelta(days=2)]
            if pre and post:
                seen = max(seen, statistics.median(post) - statistics.median(pre))
        assert seen >= 1.5
    for p in by["persistent_flare"]:
        assert p.label.onset is not None
        te = _dt(p.label.detail["flare_session_end"])
        assert p.label.onset - te >= timedelta(hours=72)
        during = [v for t, v in _pain(p) if te + timedelta(hours=72) <= t <= te + timedelta(days=5)]
        pre = [v for t, v in _pain(p) if te - timedelta(days=6) <= t < te]
        assert during and statistics.mean(during) - statistics.mean(pre) >= 1.2


def _flat_checks(p: SimPatient, level: tuple[float, float]) -> None:
    lab = p.label
    assert lab.earliest is not None and lab.onset is not None and lab.due is not None
    flat0 = _day(p, lab.earliest) + 1  # earliest is a day before the flat period starts
    window = p.latent[flat0 + 1 : flat0 + 22]
    assert len(window) == 21
    for s in ("pain", "tingling", "numbness", "weakness"):
        values = _med5([row[s] for row in p.latent])[flat0 + 1 : flat0 + 22]
        assert max(values) - min(values) <= 0.6, (p.patient_id, s)
    assert level[0] - 0.3 <= statistics.mean(r["pain"] for r in window) <= level[1] + 0.3
    # It was a real improvement that stopped, not a patient who never improved.
    assert p.latent[0]["pain"] - window[0]["pain"] >= 1.5
    # Reports agree: the first and third flat weeks have about the same median pain.
    pain = _pain(p)
    start = lab.earliest + timedelta(days=1)
    wk1 = [v for t, v in pain if start <= t < start + timedelta(days=7)]
    wk3 = [v for t, v in pain if start + timedelta(days=14) <= t < start + timedelta(days=21)]
    assert wk1 and wk3 and abs(statistics.median(wk1) - statistics.median(wk3)) <= 1.5
    assert lab.onset - start >= timedelta(days=20)
    assert lab.due - lab.onset == timedelta(days=7)


def test_plateau_and_stall_are_flat_for_21_days(cohort: list[SimPatient], new_cohort: list[SimPatient]) -> None:
    by = _by(cohort + new_cohort)
    for p in by["plateau"]:
        _flat_checks(p, (3.8, 5.5))
    assert len(by["stall_moderate"]) >= 12
    for p in by["stall_moderate"]:
        _flat_checks(p, (3.0, 4.0))
        assert p.label.earliest is not None
        flat0 = _day(p, p.label.earliest) + 1
        row = p.latent[flat0 + 5]
        assert 1.7 <= row["tingling"] <= 3.3
        # 5-6 weeks after the procedure, else after symptom onset.
        anchor = date.fromisoformat(p.patient.get("procedure_date") or p.patient["onset_date"])
        flat_date = _first_date(p) + timedelta(days=flat0)
        assert 34 <= (flat_date - anchor).days <= 44


def test_flares_unsettled_and_settled(new_cohort: list[SimPatient]) -> None:
    by = _by(new_cohort)
    for p in by["flare_unsettled"]:
        lab = p.label
        te = _dt(lab.detail["flare_session_end"])
        assert lab.onset is not None and lab.due == te + timedelta(days=5)
        assert te + timedelta(hours=72) <= lab.onset <= lab.due
        reported = [c for c in p.checkins if "pt_session" in c and _dt(c["pt_session"]["ended_at"]) == te]
        assert reported and reported[0]["pt_session"]["intensity"] == "vigorous"
        d = _day(p, te)
        before = statistics.mean(row["pain"] for row in p.latent[max(0, d - 3) : d])
        at72 = p.latent[d + 3]["pain"] if (te + timedelta(hours=72)).hour <= 12 else p.latent[d + 4]["pain"]
        assert at72 - before >= 1.8, p.patient_id
        during = [v for t, v in _pain(p) if te + timedelta(hours=72) <= t <= lab.due]
        pre = [v for t, v in _pain(p) if te - timedelta(days=6) <= t < te]
        assert during and statistics.mean(during) - statistics.mean(pre) >= 1.0
    for p in by["flare_settled"]:
        flares = _params(p)["flares"]
        assert flares
        for f in flares:
            assert f["settled_h"] < 72
            te = _dt(f["session_end"])
            d = _day(p, te)
            if d + 4 < len(p.latent) and d >= 1:
                assert p.latent[d + 4]["pain"] <= p.latent[d - 1]["pain"] + 1.0


def test_early_recurrence_returns_to_pre_op_level(new_cohort: list[SimPatient]) -> None:
    for p in _by(new_cohort)["early_recurrence"]:
        lab = p.label
        assert p.patient["condition"] in ("carpal_tunnel", "cubital_tunnel")
        assert p.patient["treatment"] == "surgical_decompression"
        assert lab.onset is not None and lab.earliest is not None and lab.due == lab.onset + timedelta(days=3)
        proc = date.fromisoformat(p.patient["procedure_date"])
        assert 30 <= (lab.onset.astimezone(ZoneInfo(p.patient["timezone"])).date() - proc).days <= 50
        pre = _params(p)["pre"]
        turn = _day(p, lab.earliest) + 1
        back = _day(p, lab.onset)
        before, after = p.latent[turn - 1], p.latent[min(back + 1, len(p.latent) - 1)]
        assert before["pain"] <= pre["pain"] - 2.5  # it had recovered
        assert after["pain"] >= pre["pain"] - 0.5  # and is back to the pre-operative level
        assert after["weakness"] - before["weakness"] >= 1.8
        assert before["grip_kg"] - after["grip_kg"] >= 4.5
        reported = [v for t, v in _pain(p) if lab.onset <= t <= lab.onset + timedelta(days=3)]
        assert reported and statistics.median(reported) >= pre["pain"] - 1.5


def test_postop_dip_then_recovery(new_cohort: list[SimPatient]) -> None:
    rises = 0
    for p in _by(new_cohort)["postop_dip"]:
        proc = date.fromisoformat(p.patient["procedure_date"])
        assert 1 <= (_first_date(p) - proc).days <= 6
        pain = [row["pain"] for row in p.latent]
        rises += max(pain[:10]) > pain[0] + 0.2
        if "grip_kg" in p.latent[0]:
            pre = _params(p)["grip"]["pre"]
            assert min(row["grip_kg"] for row in p.latent[:21]) <= 0.85 * pre
            assert p.latent[-1]["grip_kg"] >= 0.98 * pre
        assert statistics.mean(pain[-7:]) <= statistics.mean(pain[:7])
    assert rises >= 6  # most patients are seen getting worse in their first days


def test_nerve_repair_latent_phase(new_cohort: list[SimPatient]) -> None:
    ps = _by(new_cohort)["nerve_repair"]
    given = [p for p in ps if "repair_distance_mm" in p.patient]
    assert 0 < len(given) < len(ps)  # sometimes set, sometimes not
    for p in ps:
        assert p.patient["treatment"] == "nerve_repair"
        nr = _params(p)["nerve_repair"]
        assert nr["latent_days"] == pytest.approx(
            nr["delay_days"] + nr["distance_mm"] / nr["regrowth_mm_per_day"], 0.01
        )
        end_latent = _dt(p.label.detail["latent_phase_end"])
        assert p.label.history_start is not None
        rows = [r for d, r in enumerate(p.latent) if p.label.history_start + timedelta(days=d + 1) <= end_latent]
        numb = [r["numbness"] for r in rows]
        assert min(numb) >= 5.5 and max(numb) - min(numb) <= 0.6
        ting = [r["tingling"] for r in rows]
        pain = _med5([r["pain"] for r in rows])
        assert max(pain) - min(pain) <= 1.3 and max(pain) <= pain[0] + 0.6
        if len(rows) >= 40:
            assert max(ting) - ting[0] >= 1.0  # the Tinel sign advances


def test_typical_ctr_follows_published_figures(new_cohort: list[SimPatient]) -> None:
    ps = _by(new_cohort)["typical_ctr"]
    ratio6, ratio12, pre_grips = [], [], []
    for p in ps:
        assert p.patient["condition"] == "carpal_tunnel" and p.patient["treatment"] == "surgical_decompression"
        proc = date.fromisoformat(p.patient["procedure_date"])
        lag = (_first_date(p) - proc).days

        def at(days: int, p: SimPatient = p, lag: int = lag) -> dict[str, float]:
            return p.latent[days - lag]

        pre = _params(p)["ctr"]["pre"]
        assert at(14)["tingling"] <= max(1.6, 0.3 * pre["tingling"])  # settles in 1-2 weeks
        assert at(56)["numbness"] <= max(2.2, 0.45 * pre["numbness"])  # over 6-8 weeks
        assert at(10)["numbness"] >= at(56)["numbness"] + 0.5
        night = [
            c["night_wakings"]
            for c in p.checkins
            if "night_wakings" in c and _day(p, _dt(c["recorded_at"])) + lag >= 18
        ]
        assert not night or statistics.mean(night) <= 1.0
        g_pre = _params(p)["ctr"]["grip"]["pre"]
        pre_grips.append(g_pre)
        ratio6.append(at(42)["grip_kg"] / g_pre)
        ratio12.append(at(84)["grip_kg"] / g_pre)
    assert statistics.mean(ratio6) == pytest.approx(13.0 / 14.8, abs=0.05)
    assert statistics.mean(ratio12) == pytest.approx(16.2 / 14.8, abs=0.05)
    assert 11.0 <= statistics.mean(pre_grips) <= 18.5


def test_slow_steady_improver_is_slow_and_steady(new_cohort: list[SimPatient]) -> None:
    for p in _by(new_cohort)["slow_steady_improver"]:
        rate = p.label.detail["pain_rate_per_week"]
        assert 0.25 <= rate <= 0.6
        pain = _med5([r["pain"] for r in p.latent])
        for i in range(21, len(pain)):
            assert 0.2 <= pain[i - 21] - pain[i] < 2.0, (p.patient_id, i)  # improving, below 1 MCID / 3 weeks
        reported = _pain(p)
        t0 = reported[0][0]
        xs = [(t - t0).total_seconds() / 86400 / 7 for t, _ in reported]
        slopes = [
            (reported[j][1] - reported[i][1]) / (xs[j] - xs[i])
            for i in range(0, len(xs), 3)
            for j in range(i + 1, len(xs), 3)
            if xs[j] - xs[i] > 1
        ]
        assert -0.9 <= statistics.median(slopes) <= -0.1


def test_parameters_spread_and_differ_by_seed() -> None:
    a = generate_cohort(20, 1, END, archetypes=["steady_recovery"])
    b = generate_cohort(20, 2, END, archetypes=["steady_recovery"])
    kinds = {_params(p)["recovery"]["shape"]["kind"] for p in a}
    assert len(kinds) >= 4
    t90 = [_params(p)["recovery"]["t90_days"] for p in a]
    assert statistics.pstdev(t90) >= 8
    sds = [_params(p)["reporter"]["sd"] for p in a]
    assert max(sds) - min(sds) >= 0.3
    assert len({_params(p)["habits"]["slot"] for p in a}) >= 3
    assert len({p.patient["timezone"] for p in a}) >= 8
    assert len({p.patient["condition"] for p in a}) >= 4
    assert 0 < sum("baseline" in p.patient for p in a) < len(a)
    assert 0 < sum(p.label.detail["wearable"] for p in a) < len(a)
    # Same patient index, other seed: a visibly different course.
    for x, y in zip(a, b, strict=True):
        assert max(abs(r["pain"] - s["pain"]) for r, s in zip(x.latent, y.latent, strict=False)) >= 0.5
    mixed = generate_cohort(10, 3, END)
    assert {_params(p)["reporter"]["kind"] for p in mixed} == {"gaussian", "noisy"}


# --------------------------------------------------------------------------------------------
# Evaluation math on hand-made alerts

T0 = datetime(2026, 10, 1, 8, 0, tzinfo=UTC)


def _alert(
    pid: str,
    kind: str,
    event_time: datetime,
    severity: str | None = None,
    *,
    opened: datetime | None = None,
    resolved: datetime | None = None,
    aid: str | None = None,
) -> Alert:
    sev = severity or {
        "red_flag": "critical",
        "regression": "high",
        "spreading_symptoms": "high",
        "persistent_flare": "medium",
        "plateau": "medium",
    }.get(kind, "low")
    opened = opened or event_time + timedelta(minutes=5)
    return Alert.model_validate(
        {
            "id": aid or f"al_{uuid.uuid4().hex[:10]}",
            "patient_id": pid,
            "kind": kind,
            "severity": sev,
            "status": "resolved" if resolved else "open",
            "summary": "x",
            "event_time": event_time.isoformat(),
            "opened_at": opened.isoformat(),
            "updated_at": opened.isoformat(),
            "resolved_at": resolved.isoformat() if resolved else None,
            "resolution": "auto" if resolved else None,
        }
    )


def _truths() -> list[Truth]:
    return [
        Truth("r1", "regression", T0, frozenset({"regression"}), frozenset({"persistent_flare"}), 90),
        Truth("r2", "regression", T0, frozenset({"regression"}), frozenset({"persistent_flare"}), 90),
        Truth("r3", "regression", T0, frozenset({"regression"}), frozenset({"persistent_flare"}), 90),
        Truth("f1", "red_flag", T0, frozenset({"red_flag"}), history_days=60, red_flag_recorded_at=T0),
        Truth("f2", "red_flag", T0, frozenset({"red_flag"}), history_days=60, red_flag_recorded_at=T0),
        Truth("s1", "steady_recovery", None, frozenset(), history_days=90),
        Truth("s2", "steady_recovery", None, frozenset(), history_days=90),
        Truth("p1", "plateau", T0, frozenset({"plateau"}), history_days=80),
        Truth("p2", "plateau", T0, frozenset({"plateau"}), history_days=80),
    ]


def test_evaluate_detection_delays_and_false_alerts() -> None:
    alerts = [
        _alert("r1", "regression", T0 + timedelta(days=2)),
        _alert("r1", "regression", T0 + timedelta(days=9), opened=T0 + timedelta(days=30)),  # later duplicate
        _alert("r2", "regression", T0 - timedelta(days=3)),  # premature -> false, not a detection
        _alert("r2", "regression", T0 + timedelta(days=4)),
        _alert("r2", "persistent_flare", T0 + timedelta(days=1)),  # tolerated
        _alert("r3", "plateau", T0 + timedelta(days=1)),  # false, medium
        _alert("f1", "red_flag", T0),
        _alert("f2", "red_flag", T0 + timedelta(seconds=1)),
        _alert("s1", "regression", T0),  # false high
        _alert("s1", "activity_decline", T0),  # false low
        _alert("p1", "plateau", T0 + timedelta(days=5)),  # within 7 days of the (21st flat day) onset
        _alert("p2", "plateau", T0 + timedelta(days=35)),
        _alert("stranger", "red_flag", T0),  # not in this run
    ]
    ev = evaluate(_truths(), alerts)
    ks = {(k.archetype, k.kind): k for k in ev.kinds}
    reg = ks[("regression", "regression")]
    assert (reg.patients, reg.detected) == (3, 2)
    assert reg.delays_days == [2.0, 4.0]
    assert reg.median_days == 3.0 and reg.p90_days == 4.0
    rf = ks[("red_flag", "red_flag")]
    assert (rf.patients, rf.detected, rf.exact_event_time) == (2, 2, 1)
    pl = ks[("plateau", "plateau")]
    assert (pl.detected, pl.within_window) == (2, 1)

    f_reg = ev.false["regression"]
    assert f_reg.premature == 1 and f_reg.tolerated == 1
    assert f_reg.by_severity == {"low": 0, "medium": 1, "high": 1, "critical": 0}
    assert f_reg.patient_months == 9.0
    f_steady = ev.false["steady_recovery"]
    assert f_steady.total == 2 and f_steady.high_critical == 1
    assert f_steady.per_pm(f_steady.high_critical) == pytest.approx(1 / 6)
    assert f_steady.per_pm(f_steady.total) == pytest.approx(2 / 6)
    assert f_steady.by_kind == {"regression": 1, "activity_decline": 1}
    assert ev.false["red_flag"].total == 0
    assert ev.ignored_alerts == 1
    assert ev.alerts_total == 12
    assert ev.alerts_by_kind["regression"] == 5

    targets = {t.name: t for t in check_targets(ev)}
    assert targets["red_flag: red_flag detected"].passed
    assert not targets["red_flag: red_flag event_time = check-in recorded_at"].passed
    assert not targets["regression: regression detected in time"].passed  # 2/3
    assert not targets["regression: regression median delay (days)"].passed  # 3.0 > 2
    assert not targets["plateau: plateau detected within 7 days of the 21st flat day"].passed  # 1/2
    assert not targets["steady_recovery: false high+critical per patient-month"].passed  # 0.167 > 0.1
    assert not targets["steady_recovery: false alerts (any severity) per patient-month"].passed  # 0.33 > 0.3
    assert not any("persistent_flare" in name for name in targets)  # kind not in this run

    md = render_markdown(ev, list(targets.values()), {"seed": 1})
    assert "| Target | Measured | Required | Result |" in md
    assert "**FAIL**" in md and "PASS" in md
    assert "r1" not in md  # no patient ids in the report
    d = to_dict(ev, list(targets.values()), {"seed": 1})
    assert json.loads(json.dumps(d, default=str))["passed"] is False


def test_false_alarm_threshold_fails() -> None:
    truths = [Truth("n1", "noisy_reporter", None, frozenset(), history_days=30)]
    ev = evaluate(truths, [_alert("n1", "plateau", T0)])
    targets = {t.name: t for t in check_targets(ev)}
    assert targets["noisy_reporter: false high+critical per patient-month"].passed
    assert not targets["noisy_reporter: false alerts (any severity) per patient-month"].passed


def test_undetected_kind_fails_delay_targets() -> None:
    truths = [Truth("x", "spreading_numbness", T0, frozenset({"spreading_symptoms"}), history_days=80)]
    targets = {t.name: t for t in check_targets(evaluate(truths, []))}
    assert not targets["spreading_numbness: spreading_symptoms detected in time"].passed
    assert targets["spreading_numbness: spreading_symptoms median delay (days)"].measured is None
    assert not targets["spreading_numbness: spreading_symptoms median delay (days)"].passed


def test_deadlines_earliest_and_low_only_target() -> None:
    session = T0 - timedelta(days=3)
    truths = [
        # Unsettled flare: onset at 72 h, due 5 days after the session.
        Truth(
            "u1",
            "flare_unsettled",
            T0,
            frozenset({"persistent_flare"}),
            history_days=60,
            due=session + timedelta(days=5),
        ),
        Truth(
            "u2",
            "flare_unsettled",
            T0,
            frozenset({"persistent_flare"}),
            history_days=60,
            due=session + timedelta(days=5),
        ),
        # Stall: onset is the 21st flat day; alerts from the flat start on are not premature.
        Truth(
            "m1",
            "stall_moderate",
            T0,
            frozenset({"plateau"}),
            history_days=80,
            earliest=T0 - timedelta(days=22),
            due=T0 + timedelta(days=7),
        ),
        Truth("c1", "typical_ctr", None, frozenset(), history_days=90),
        Truth("c2", "typical_ctr", None, frozenset(), history_days=90),
    ]
    alerts = [
        _alert("u1", "persistent_flare", T0 + timedelta(days=1)),  # in time
        _alert("u2", "persistent_flare", T0 + timedelta(days=3)),  # detected, but after the deadline
        _alert("m1", "plateau", T0 - timedelta(days=5)),  # early but after the flat start: a detection
        _alert("c1", "activity_decline", T0),  # low
    ]
    ev = evaluate(truths, alerts)
    ks = {(k.archetype, k.kind): k for k in ev.kinds}
    fl = ks[("flare_unsettled", "persistent_flare")]
    assert (fl.detected, fl.within_window) == (2, 1)
    st = ks[("stall_moderate", "plateau")]
    assert (st.detected, st.within_window, st.delays_days) == (1, 1, [-5.0])
    assert ev.false["stall_moderate"].premature == 0
    targets = {t.name: t for t in check_targets(ev)}
    assert not targets["flare_unsettled: persistent_flare detected in time"].passed
    assert targets["flare_unsettled: persistent_flare median delay (days)"].passed  # median 2.0
    assert targets["stall_moderate: plateau detected within 7 days of the 21st flat day"].passed
    assert targets["typical_ctr: alerts above low severity"].passed
    assert targets["typical_ctr: false alerts (any severity) per patient-month"].passed  # 1/6
    ev2 = evaluate(truths, [*alerts, _alert("c2", "plateau", T0)])
    targets2 = {t.name: t for t in check_targets(ev2)}
    assert not targets2["typical_ctr: alerts above low severity"].passed


def test_duplicates() -> None:
    a = _alert("d", "regression", T0, opened=T0, aid="a")
    b = _alert("d", "regression", T0 + timedelta(days=1), opened=T0 + timedelta(hours=1), aid="b")  # overlaps a
    c = _alert("d", "regression", T0, opened=T0 + timedelta(days=5), aid="c")  # identical to a, also overlaps
    d = _alert("e", "plateau", T0, opened=T0, resolved=T0 + timedelta(days=1), aid="d")
    e = _alert("e", "plateau", T0 + timedelta(days=3), opened=T0 + timedelta(days=3), aid="e")  # after resolve
    f = _alert("e", "regression", T0, opened=T0, aid="f")  # other kind
    dup = duplicate_counts([a, b, c, d, e, f])
    assert dup.overlapping == 2
    assert dup.identical == 1


def test_percentile_nearest_rank() -> None:
    assert percentile([], 90) is None
    assert percentile([5.0], 90) == 5.0
    assert percentile([float(i) for i in range(1, 11)], 90) == 9.0
    assert percentile([float(i) for i in range(1, 21)], 90) == 18.0
    assert percentile([3.0, 1.0, 2.0], 50) == 2.0


def test_truths_from_cohort_round_trip(cohort: list[SimPatient]) -> None:
    truths = truths_from_cohort(cohort)
    assert len(truths) == len(cohort)
    # Perfect alerts at onset (red flags at the exact check-in time) pass every detection target.
    alerts = [_alert(t.patient_id, kind, t.onset) for t in truths for kind in t.expected if t.onset is not None]
    ev = evaluate(truths, alerts)
    assert all(k.rate == 1.0 for k in ev.kinds)
    assert all(t.passed for t in check_targets(ev))


def test_parse_page_skips_invalid_items() -> None:
    good = _alert("ok", "plateau", T0).model_dump(mode="json")
    items, cursor, bad = _parse_page({"items": [good, {"id": "broken"}], "next_cursor": "c2"})
    assert [a.patient_id for a in items] == ["ok"] and cursor == "c2" and bad == 1
    items, cursor, bad = _parse_page({"items": [good], "next_cursor": None})
    assert len(items) == 1 and cursor is None and bad == 0


# --------------------------------------------------------------------------------------------
# Client helpers and CLI (no network)


def test_retry_after_parsing() -> None:
    now = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
    assert retry_after_seconds("5", 1.0, 30.0) == 5.0
    assert retry_after_seconds("120", 1.0, 30.0) == 30.0
    assert retry_after_seconds(None, 2.0, 30.0) == 2.0
    assert retry_after_seconds("soon", 2.0, 30.0) == 2.0
    assert retry_after_seconds("Fri, 20 Nov 2026 12:00:10 GMT", 1.0, 30.0, now=now) == pytest.approx(10.0)
    assert retry_after_seconds("Fri, 20 Nov 2026 11:00:00 GMT", 1.0, 30.0, now=now) == 0.0


def test_windows_and_chunks(cohort: list[SimPatient]) -> None:
    posts = [x for p in cohort for x in p.posts]
    groups = windows(posts, timedelta(days=1))
    assert sum(len(g) for g in groups) == len(posts)
    flat = [x.at for g in groups for x in g]
    assert flat == sorted(flat)
    for g in groups:
        assert g[-1].at - g[0].at < timedelta(days=1)
    assert [len(c) for c in chunked(list(range(1201)), 500)] == [500, 500, 201]


def test_write_report_replaces_marked_section(tmp_path: Path) -> None:
    doc = tmp_path / "dq.md"
    doc.write_text(f"# Title\n\nProse.\n\n{REPORT_BEGIN}\nold\n{REPORT_END}\n\nMore prose.\n")
    write_report(doc, "## New report\n")
    text = doc.read_text()
    assert "old" not in text and "## New report" in text
    assert text.startswith("# Title") and text.rstrip().endswith("More prose.")
    fresh = tmp_path / "new" / "r.md"
    write_report(fresh, "## R\n")
    assert REPORT_BEGIN in fresh.read_text()


async def test_cli_dry_run(capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(
        [
            "--dry-run",
            "--per-archetype",
            "1",
            "--seed",
            "99",
            "--archetypes",
            "red_flag,steady_recovery",
            "--api-key",
            "",
        ]
    )
    assert await run(args) == 0
    out = capsys.readouterr().out
    assert "seed=99" in out and "| red_flag | 1 |" in out
    bad = parser.parse_args(["--dry-run", "--archetypes", "nope"])
    assert await run(bad) == 2
