"""Unit tests of the synthetic cohort simulator and its evaluation math (pure, no network)."""

from __future__ import annotations

import argparse
import importlib.util
import itertools
import json
import re
import statistics
import sys
import uuid
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
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


def _dt(s: str) -> datetime:
    return datetime.fromisoformat(s)


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
    c = generate_cohort(2, 8, END)
    assert {p.patient_id for p in a}.isdisjoint({p.patient_id for p in c})
    ids_a = {x.payload["event_id"] for p in a for x in p.posts if x.kind == "checkin"}
    ids_c = {x.payload["event_id"] for p in c for x in p.posts if x.kind == "checkin"}
    assert ids_a.isdisjoint(ids_c)


def test_patient_independent_of_other_archetypes() -> None:
    full = {p.patient_id: p for p in generate_cohort(2, 3, END)}
    only = generate_cohort(2, 3, END, archetypes=["regression", "red_flag"])
    assert len(only) == 4
    for p in only:
        assert p.posts == full[p.patient_id].posts
        assert p.label == full[p.patient_id].label


def test_unknown_archetype_rejected() -> None:
    with pytest.raises(ValueError, match="unknown"):
        generate_cohort(1, 1, END, archetypes=["nope"])
    with pytest.raises(ValueError):
        generate_cohort(1, 1, END.replace(tzinfo=None))


def test_every_payload_validates(cohort: list[SimPatient]) -> None:
    assert {p.label.archetype for p in cohort} == set(ALL_ARCHETYPES)
    for p in cohort:
        patient = PatientIn.model_validate(p.patient, context=CTX)
        assert patient.patient_id == p.patient_id
        for post in p.posts:
            if post.kind == "checkin":
                ci = CheckIn.model_validate(post.payload, context=CTX)
                assert ci.patient_id == p.patient_id
            else:
                batch = ActivityBatch.model_validate(post.payload, context=CTX)
                assert batch.patient_id == p.patient_id
                assert 1 <= len(batch.samples) <= 5000


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
                    assert ended.astimezone(ZoneInfo(p.patient["timezone"])).hour in range(13, 18)
            else:
                for s in post.payload["samples"]:
                    assert _dt(s["end"]) <= post.at <= END


def test_local_times_and_offsets(cohort: list[SimPatient]) -> None:
    zones = {p.patient["timezone"] for p in cohort}
    assert len(zones) >= 4
    for p in cohort:
        tz = ZoneInfo(p.patient["timezone"])
        for ci in p.checkins:
            rec = _dt(ci["recorded_at"])
            local = rec.astimezone(tz)
            assert rec.utcoffset() == local.utcoffset()  # offset is the patient's own at that instant
            assert 7 <= local.hour <= 21


def test_realism_of_check_in_stream(cohort: list[SimPatient]) -> None:
    late = 0
    total = 0
    for p in cohort:
        tz = ZoneInfo(p.patient["timezone"])
        days = sorted({_dt(c["recorded_at"]).astimezone(tz).date() for c in p.checkins})
        span = (days[-1] - days[0]).days + 1
        assert 68 <= p.label.history_days <= 90
        if p.label.archetype != "disengagement":
            gaps = [(b - a).days for a, b in itertools.pairwise(days)]
            assert max(gaps) <= 3, "at most two missed days in a row"
            assert 0.02 <= 1 - len(days) / span <= 0.3
        sessions = {c["pt_session"]["ended_at"] for c in p.checkins if "pt_session" in c}
        assert 1.0 <= len(sessions) / (span / 7) <= 3.5
        for post in p.posts:
            if post.kind == "checkin":
                total += 1
                if post.at - _dt(post.payload["recorded_at"]) >= timedelta(days=1):
                    late += 1
    assert 0.005 <= late / total <= 0.08


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
            assert any("grip_strength_kg" in c for c in p.checkins)
        if p.patient["treatment"] in ("surgical_decompression", "neurolysis", "nerve_repair"):
            proc = datetime.fromisoformat(p.patient["procedure_date"]).date()
            first = min(_dt(c["recorded_at"]) for c in p.checkins).astimezone(ZoneInfo(p.patient["timezone"]))
            assert 7 <= (first.date() - proc).days <= 15


def test_wearable_syncs_in_bursts(cohort: list[SimPatient]) -> None:
    multi_day = 0
    for p in cohort:
        for b in p.activity_batches:
            days = {s["start"][:10] for s in b["samples"] if s["type"] == "steps"}
            multi_day += len(days) > 1
    assert multi_day > 0


def test_labels_sane(cohort: list[SimPatient]) -> None:
    for p in cohort:
        lab = p.label
        assert lab.history_start is not None and lab.history_end == END
        if lab.archetype in NORMAL_ARCHETYPES:
            assert lab.onset is None
            assert lab.expected_alert_kinds == frozenset()
        else:
            assert lab.archetype in ABNORMAL_ARCHETYPES
            assert lab.onset is not None
            assert lab.history_start <= lab.onset <= END
            assert len(lab.expected_alert_kinds) == 1
            assert not lab.expected_alert_kinds & lab.tolerated_alert_kinds


def _series(p: SimPatient, key: str) -> list[tuple[datetime, int]]:
    return sorted((_dt(c["recorded_at"]), c[key]) for c in p.checkins if key in c)


def _pain(p: SimPatient) -> list[tuple[datetime, int]]:
    return sorted((_dt(c["recorded_at"]), c["pain"]["current"]) for c in p.checkins)


def test_archetype_ground_truth_is_visible_in_data(cohort: list[SimPatient]) -> None:
    by = defaultdict(list)
    for p in cohort:
        by[p.label.archetype].append(p)
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
        numb = _series(p, "numbness")
        pre = [v for t, v in numb if t < spread[0]][-7:]
        post = [v for t, v in numb if spread[0] + timedelta(days=7) <= t <= spread[0] + timedelta(days=12)]
        assert statistics.median(post) - statistics.median(pre) >= 1
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
        assert statistics.median(declined) <= 0.6 * statistics.median(before[:14])
    for p in by["regression"]:
        assert p.label.onset is not None
        pain = _pain(p)
        numb = _series(p, "numbness")
        rise = 0.0
        for series in (pain, numb):
            pre = [v for t, v in series if p.label.onset - timedelta(days=7) <= t < p.label.onset - timedelta(days=1)]
            post = [v for t, v in series if t >= p.label.onset + timedelta(days=2)]
            if pre and post:
                rise = max(rise, statistics.median(post) - statistics.median(pre))
        assert rise >= 2
    for p in by["plateau"]:
        assert p.label.onset is not None
        flat = [v for t, v in _pain(p) if t >= p.label.onset]
        assert (END - p.label.onset) >= timedelta(days=28)
        assert 3.5 <= statistics.mean(flat) <= 6
        assert p.label.history_start is not None
        first = [v for t, v in _pain(p) if t < p.label.history_start + timedelta(days=5)]
        assert statistics.mean(first) - statistics.mean(flat) >= 1.5
    for p in by["persistent_flare"]:
        assert p.label.onset is not None
        te = _dt(p.label.detail["flare_session_end"])
        assert p.label.onset - te >= timedelta(hours=72)
        during = [v for t, v in _pain(p) if te + timedelta(hours=72) <= t <= te + timedelta(days=5)]
        pre = [v for t, v in _pain(p) if te - timedelta(days=6) <= t < te]
        assert during and statistics.mean(during) - statistics.mean(pre) >= 1.5
    for p in by["steady_recovery"] + by["settled_flares"]:
        values = [v for _, v in _pain(p)]  # in recorded order
        assert statistics.mean(values[-10:]) <= statistics.mean(values[:5]) - 2


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
        _alert("p1", "plateau", T0 + timedelta(days=21)),
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
    assert targets["red_flag detected"].passed
    assert not targets["red_flag event_time = check-in recorded_at"].passed
    assert not targets["regression detected"].passed  # 2/3
    assert targets["regression median onset-to-detection (days)"].passed
    assert targets["regression p90 onset-to-detection (days)"].passed
    assert not targets["plateau detected within 28 days of its start"].passed  # 1/2
    assert targets["steady_recovery: false high+critical per patient-month"].passed  # 0.167 <= 0.2
    assert targets["steady_recovery: false alerts (any severity) per patient-month"].passed
    assert "persistent_flare detected" not in targets  # kind not in this run

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
    assert not targets["spreading_symptoms detected"].passed
    assert targets["spreading_symptoms median onset-to-detection (days)"].measured is None
    assert not targets["spreading_symptoms median onset-to-detection (days)"].passed


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
