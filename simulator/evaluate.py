"""Evaluate the alerts the pipeline raised against the simulator's ground truth.

The math (`evaluate`, `check_targets`, `render_markdown`) is pure and works on `Truth` records and
`schemas.alerts.Alert` objects; fetching alerts over HTTP (`fetch_all_alerts`, `wait_for_settle`)
is separate.

Matching rules (see docs/detection-quality.md):
- An alert of a kind the patient's label expects, with `event_time >= earliest`, is a detection;
  `earliest` is the label's own (e.g. the start of a flat period for a plateau) or else
  `onset - 1 day` (the day of grace absorbs daily aggregation: a day's median may include the
  check-in just before the true onset). The earliest such alert gives the delay
  (`event_time - onset`, negative when the alert came before the reference onset). An
  expected-kind alert before `earliest` is *premature* and counts as false.
- A detection is *in time* when its `event_time <= due` (the label's deadline: e.g. 5 days after
  the session for an unsettled flare, 3 days after the return to the pre-operative level for a
  recurrence, 7 days after the 21st flat day for a plateau); without a deadline every detection
  is in time.
- An alert of a kind the label tolerates (a defensible side effect, e.g. regression during a flare
  that never settles) is counted separately, neither detection nor false alert.
- Any other alert is a false alert, counted per severity; rates are per patient-month
  (history days / 30).
- Duplicates: an alert opened while another alert of the same patient and kind was still
  unresolved ("overlapping"), and alerts identical in patient, kind and event_time ("identical").
"""

from __future__ import annotations

import asyncio
import logging
import math
import statistics
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from pydantic import ValidationError

from schemas.alerts import Alert, AlertPage
from schemas.common import Severity
from simulator.archetypes import ALL_ARCHETYPES, LOW_ONLY_ARCHETYPES, NORMAL_ARCHETYPES, SimPatient
from simulator.client import ApiClient

log = logging.getLogger(__name__)

DETECTION_GRACE = timedelta(days=1)
#: Plateau deadline when a label gives none: days after the (21st flat day) onset.
PLATEAU_WINDOW_DAYS = 7.0
SEVERITIES: tuple[str, ...] = tuple(s.value for s in Severity)
HIGH_SEVERITIES = frozenset({Severity.high.value, Severity.critical.value})
KIND_ORDER: tuple[str, ...] = (
    "red_flag",
    "regression",
    "spreading_symptoms",
    "persistent_flare",
    "plateau",
    "activity_decline",
    "disengagement",
)

# Targets (product requirements for detection quality, issue #11), checked per archetype.
TIMELY_KINDS: tuple[str, ...] = ("regression", "persistent_flare", "spreading_symptoms")
TIMELY_MIN_RATE = 0.95
TIMELY_MAX_MEDIAN_DAYS = 2.0
PLATEAU_MIN_RATE = 0.90
FALSE_MAX_HIGH_PER_PM = 0.1
FALSE_MAX_ANY_PER_PM = 0.3


@dataclass(frozen=True, slots=True)
class Truth:
    """The part of a patient's label that evaluation needs."""

    patient_id: str
    archetype: str
    onset: datetime | None
    expected: frozenset[str]
    tolerated: frozenset[str] = frozenset()
    history_days: float = 0.0
    red_flag_recorded_at: datetime | None = None
    earliest: datetime | None = None  # expected-kind alerts before this are premature
    due: datetime | None = None  # deadline of a timely detection

    def earliest_ok(self) -> datetime | None:
        if self.earliest is not None:
            return self.earliest
        return None if self.onset is None else self.onset - DETECTION_GRACE

    def deadline(self, kind: str) -> datetime | None:
        if self.due is not None:
            return self.due
        if kind == "plateau" and self.onset is not None:
            return self.onset + timedelta(days=PLATEAU_WINDOW_DAYS)
        return None


def truths_from_cohort(cohort: Iterable[SimPatient]) -> list[Truth]:
    return [
        Truth(
            patient_id=p.patient_id,
            archetype=p.label.archetype,
            onset=p.label.onset,
            expected=p.label.expected_alert_kinds,
            tolerated=p.label.tolerated_alert_kinds,
            history_days=float(p.label.history_days),
            red_flag_recorded_at=p.label.red_flag_recorded_at,
            earliest=p.label.earliest,
            due=p.label.due,
        )
        for p in cohort
    ]


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100.0 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


@dataclass(slots=True)
class KindStats:
    """Detection of one expected alert kind within one archetype."""

    archetype: str
    kind: str
    patients: int = 0
    detected: int = 0
    delays_days: list[float] = field(default_factory=list)
    exact_event_time: int = 0  # red_flag: alert event_time equals the check-in's recorded_at
    within_window: int = 0  # detected with event_time <= the label's deadline (or no deadline)

    @property
    def rate(self) -> float | None:
        return self.detected / self.patients if self.patients else None

    @property
    def in_time_rate(self) -> float | None:
        return self.within_window / self.patients if self.patients else None

    @property
    def median_days(self) -> float | None:
        return statistics.median(self.delays_days) if self.delays_days else None

    @property
    def p90_days(self) -> float | None:
        return percentile(self.delays_days, 90)

    def merge(self, other: KindStats) -> KindStats:
        return KindStats(
            archetype=self.archetype if self.archetype == other.archetype else "*",
            kind=self.kind,
            patients=self.patients + other.patients,
            detected=self.detected + other.detected,
            delays_days=self.delays_days + other.delays_days,
            exact_event_time=self.exact_event_time + other.exact_event_time,
            within_window=self.within_window + other.within_window,
        )


@dataclass(slots=True)
class FalseStats:
    """Alerts not explained by the ground truth, for one archetype."""

    archetype: str
    patients: int = 0
    history_days: float = 0.0
    by_severity: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SEVERITIES, 0))
    by_kind: dict[str, int] = field(default_factory=dict)
    premature: int = 0
    tolerated: int = 0

    @property
    def patient_months(self) -> float:
        return self.history_days / 30.0

    @property
    def total(self) -> int:
        return sum(self.by_severity.values())

    @property
    def high_critical(self) -> int:
        return sum(n for s, n in self.by_severity.items() if s in HIGH_SEVERITIES)

    def per_pm(self, count: int) -> float | None:
        return count / self.patient_months if self.patient_months > 0 else None


@dataclass(slots=True)
class DuplicateStats:
    overlapping: int = 0
    identical: int = 0


@dataclass(slots=True)
class Evaluation:
    kinds: list[KindStats]
    false: dict[str, FalseStats]
    duplicates: dict[str, DuplicateStats]
    alerts_total: int
    alerts_by_kind: dict[str, int]
    retrospective: int
    ignored_alerts: int  # alerts of patients outside the cohort


@dataclass(frozen=True, slots=True)
class TargetResult:
    name: str
    measured: float | None
    threshold: str
    passed: bool


def _days(delta: timedelta) -> float:
    return delta.total_seconds() / 86400.0


def duplicate_counts(alerts: Sequence[Alert]) -> DuplicateStats:
    """Overlapping open alerts per (patient, kind), and identical (patient, kind, event_time) copies."""
    groups: dict[tuple[str, str], list[Alert]] = defaultdict(list)
    for a in alerts:
        groups[(a.patient_id, a.kind.value)].append(a)
    out = DuplicateStats()
    for group in groups.values():
        group.sort(key=lambda a: (a.opened_at, a.id))
        for i, a in enumerate(group):
            for earlier in group[:i]:
                if earlier.resolved_at is None or earlier.resolved_at > a.opened_at:
                    out.overlapping += 1
                    break
    same = Counter((a.patient_id, a.kind.value, a.event_time) for a in alerts)
    out.identical = sum(n - 1 for n in same.values() if n > 1)
    return out


def evaluate(truths: Sequence[Truth], alerts: Sequence[Alert]) -> Evaluation:
    """Match alerts to ground truth. Alerts of patients not in `truths` are ignored (counted)."""
    by_patient: dict[str, list[Alert]] = defaultdict(list)
    known = {t.patient_id for t in truths}
    ignored = 0
    for a in alerts:
        if a.patient_id in known:
            by_patient[a.patient_id].append(a)
        else:
            ignored += 1

    kinds: dict[tuple[str, str], KindStats] = {}
    false: dict[str, FalseStats] = {}
    per_archetype_alerts: dict[str, list[Alert]] = defaultdict(list)
    for t in truths:
        fs = false.setdefault(t.archetype, FalseStats(t.archetype))
        fs.patients += 1
        fs.history_days += t.history_days
        mine = sorted(by_patient.get(t.patient_id, []), key=lambda a: (a.event_time, a.opened_at))
        per_archetype_alerts[t.archetype].extend(mine)
        matches: dict[str, list[Alert]] = defaultdict(list)
        for a in mine:
            kind = a.kind.value
            if kind in t.expected:
                earliest = t.earliest_ok()
                if earliest is not None and a.event_time < earliest:
                    fs.premature += 1
                    fs.by_severity[a.severity.value] += 1
                    fs.by_kind[kind] = fs.by_kind.get(kind, 0) + 1
                else:
                    matches[kind].append(a)
            elif kind in t.tolerated:
                fs.tolerated += 1
            else:
                fs.by_severity[a.severity.value] += 1
                fs.by_kind[kind] = fs.by_kind.get(kind, 0) + 1
        for kind in sorted(t.expected):
            ks = kinds.setdefault((t.archetype, kind), KindStats(t.archetype, kind))
            ks.patients += 1
            found = matches.get(kind, [])
            if not found:
                continue
            ks.detected += 1
            first = found[0]
            delay = _days(first.event_time - t.onset) if t.onset is not None else 0.0
            ks.delays_days.append(delay)
            deadline = t.deadline(kind)
            if deadline is None or first.event_time <= deadline:
                ks.within_window += 1
            if (
                kind == "red_flag"
                and t.red_flag_recorded_at is not None
                and any(a.event_time == t.red_flag_recorded_at for a in found)
            ):
                ks.exact_event_time += 1

    run_alerts = [a for group in by_patient.values() for a in group]
    duplicates = {arch: duplicate_counts(group) for arch, group in per_archetype_alerts.items()}
    order = {a: i for i, a in enumerate(ALL_ARCHETYPES)}
    kind_list = sorted(kinds.values(), key=lambda k: (order.get(k.archetype, 99), k.archetype, k.kind))
    return Evaluation(
        kinds=kind_list,
        false=dict(sorted(false.items(), key=lambda kv: (order.get(kv[0], 99), kv[0]))),
        duplicates=duplicates,
        alerts_total=len(run_alerts),
        alerts_by_kind=dict(Counter(a.kind.value for a in run_alerts)),
        retrospective=sum(1 for a in run_alerts if a.retrospective),
        ignored_alerts=ignored,
    )


def pooled(ev: Evaluation, kind: str) -> KindStats | None:
    """Detection stats of one kind over every archetype that expects it."""
    out: KindStats | None = None
    for ks in ev.kinds:
        if ks.kind == kind:
            out = ks if out is None else out.merge(ks)
    return out


def check_targets(ev: Evaluation) -> list[TargetResult]:
    """The product targets, per archetype, for the archetypes and kinds present in this run.

    - red_flag: every patient detected, on the red-flag check-in itself (event_time = recorded_at);
    - regression, persistent_flare, spreading_symptoms: >= 95% detected in time (by the label's
      deadline, if any) and a median delay <= 2 days;
    - plateau: >= 90% detected in time (within 7 days of the 21st flat day);
    - every normal archetype: <= 0.1 high+critical and <= 0.3 alerts of any severity per
      patient-month; on LOW_ONLY_ARCHETYPES (the typical course) no alert above low severity.
    """
    res: list[TargetResult] = []
    for ks in ev.kinds:
        if not ks.patients:
            continue
        arch, kind = ks.archetype, ks.kind
        if kind == "red_flag":
            res.append(TargetResult(f"{arch}: red_flag detected", ks.rate, "= 100%", ks.detected == ks.patients))
            res.append(
                TargetResult(
                    f"{arch}: red_flag event_time = check-in recorded_at",
                    ks.exact_event_time / ks.patients,
                    "= 100%",
                    ks.exact_event_time == ks.patients,
                )
            )
        elif kind in TIMELY_KINDS:
            rate = ks.in_time_rate or 0.0
            res.append(
                TargetResult(
                    f"{arch}: {kind} detected in time", rate, f">= {TIMELY_MIN_RATE:.0%}", rate >= TIMELY_MIN_RATE
                )
            )
            med = ks.median_days
            res.append(
                TargetResult(
                    f"{arch}: {kind} median delay (days)",
                    med,
                    f"<= {TIMELY_MAX_MEDIAN_DAYS:g}",
                    med is not None and med <= TIMELY_MAX_MEDIAN_DAYS,
                )
            )
        elif kind == "plateau":
            rate = ks.in_time_rate or 0.0
            res.append(
                TargetResult(
                    f"{arch}: plateau detected within {PLATEAU_WINDOW_DAYS:g} days of the 21st flat day",
                    rate,
                    f">= {PLATEAU_MIN_RATE:.0%}",
                    rate >= PLATEAU_MIN_RATE,
                )
            )
    for arch in NORMAL_ARCHETYPES:
        fs = ev.false.get(arch)
        if fs is None or not fs.patients:
            continue
        hc = fs.per_pm(fs.high_critical)
        anyr = fs.per_pm(fs.total)
        res.append(
            TargetResult(
                f"{arch}: false high+critical per patient-month",
                hc,
                f"<= {FALSE_MAX_HIGH_PER_PM:g}",
                hc is not None and hc <= FALSE_MAX_HIGH_PER_PM,
            )
        )
        res.append(
            TargetResult(
                f"{arch}: false alerts (any severity) per patient-month",
                anyr,
                f"<= {FALSE_MAX_ANY_PER_PM:g}",
                anyr is not None and anyr <= FALSE_MAX_ANY_PER_PM,
            )
        )
        if arch in LOW_ONLY_ARCHETYPES:
            above = fs.total - fs.by_severity.get(Severity.low.value, 0)
            res.append(TargetResult(f"{arch}: alerts above low severity", float(above), "= 0", above == 0))
    return res


# --------------------------------------------------------------------------------------------
# Output


def _fmt(x: float | None, pct: bool = False) -> str:
    if x is None:
        return "-"
    return f"{x:.1%}" if pct else f"{x:.2f}"


def to_dict(ev: Evaluation, targets: Sequence[TargetResult], run: Mapping[str, Any] | None = None) -> dict[str, Any]:
    return {
        "run": dict(run or {}),
        "detection": [
            {
                "archetype": k.archetype,
                "kind": k.kind,
                "patients": k.patients,
                "detected": k.detected,
                "rate": k.rate,
                "median_days": k.median_days,
                "p90_days": k.p90_days,
                "in_time": k.within_window,
                "in_time_rate": k.in_time_rate,
                "exact_event_time": k.exact_event_time if k.kind == "red_flag" else None,
                "within_window": k.within_window if k.kind == "plateau" else None,
            }
            for k in ev.kinds
        ],
        "false_alerts": {
            a: {
                "patients": f.patients,
                "patient_months": round(f.patient_months, 2),
                "by_severity": dict(f.by_severity),
                "by_kind": dict(f.by_kind),
                "high_critical_per_pm": f.per_pm(f.high_critical),
                "any_per_pm": f.per_pm(f.total),
                "premature": f.premature,
                "tolerated": f.tolerated,
            }
            for a, f in ev.false.items()
        },
        "duplicates": {a: {"overlapping": d.overlapping, "identical": d.identical} for a, d in ev.duplicates.items()},
        "alerts_total": ev.alerts_total,
        "alerts_by_kind": dict(ev.alerts_by_kind),
        "retrospective": ev.retrospective,
        "ignored_alerts": ev.ignored_alerts,
        "targets": [
            {"name": t.name, "measured": t.measured, "threshold": t.threshold, "passed": t.passed} for t in targets
        ],
        "passed": all(t.passed for t in targets),
    }


def render_markdown(ev: Evaluation, targets: Sequence[TargetResult], run: Mapping[str, Any] | None = None) -> str:
    lines: list[str] = []
    add = lines.append
    add("## Simulated cohort: detection quality")
    add("")
    if run:
        add("| Run | |")
        add("|---|---|")
        for key, value in run.items():
            add(f"| {key} | {value} |")
        add("")
    passed = sum(1 for t in targets if t.passed)
    add(f"### Targets: {passed}/{len(targets)} pass")
    add("")
    add("| Target | Measured | Required | Result |")
    add("|---|---:|---|---|")
    for t in targets:
        pct = t.threshold.endswith("%")
        add(f"| {t.name} | {_fmt(t.measured, pct)} | {t.threshold} | {'PASS' if t.passed else '**FAIL**'} |")
    add("")
    add("### Detection by archetype")
    add("")
    add(
        "| Archetype | Expected kind | Patients | Detected | Rate | In time | In-time rate | "
        "Median days | p90 days | Notes |"
    )
    add("|---|---|---:|---:|---:|---:|---:|---:|---:|---|")
    for k in ev.kinds:
        note = ""
        if k.kind == "red_flag":
            note = f"exact event_time {k.exact_event_time}/{k.patients}"
        add(
            f"| {k.archetype} | {k.kind} | {k.patients} | {k.detected} | {_fmt(k.rate, True)} | "
            f"{k.within_window} | {_fmt(k.in_time_rate, True)} | {_fmt(k.median_days)} | {_fmt(k.p90_days)} | {note} |"
        )
    add("")
    add("### False alerts (per patient-month)")
    add("")
    add(
        "| Archetype | Patients | Patient-months | low | medium | high | critical | High+critical /pm | "
        "Any /pm | Premature | Tolerated | False kinds |"
    )
    add("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for a, f in ev.false.items():
        sev = " | ".join(str(f.by_severity.get(s, 0)) for s in SEVERITIES)
        kinds = ", ".join(f"{k} {n}" for k, n in sorted(f.by_kind.items())) or "-"
        add(
            f"| {a} | {f.patients} | {f.patient_months:.1f} | {sev} | {_fmt(f.per_pm(f.high_critical))} | "
            f"{_fmt(f.per_pm(f.total))} | {f.premature} | {f.tolerated} | {kinds} |"
        )
    add("")
    add("### Duplicates")
    add("")
    add("| Archetype | Opened while same kind still open | Identical (patient, kind, event_time) |")
    add("|---|---:|---:|")
    tot = DuplicateStats()
    for a in ev.false:
        d = ev.duplicates.get(a, DuplicateStats())
        tot.overlapping += d.overlapping
        tot.identical += d.identical
        add(f"| {a} | {d.overlapping} | {d.identical} |")
    add(f"| **all** | {tot.overlapping} | {tot.identical} |")
    add("")
    add("### Alerts raised for this cohort")
    add("")
    add("| Kind | Alerts |")
    add("|---|---:|")
    for kind in KIND_ORDER:
        add(f"| {kind} | {ev.alerts_by_kind.get(kind, 0)} |")
    add(f"| **total** | {ev.alerts_total} |")
    add("")
    add(
        f"Retrospective (backfilled) alerts: {ev.retrospective} of {ev.alerts_total}. "
        f"Alerts of patients outside this run, ignored: {ev.ignored_alerts}."
    )
    add("")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# HTTP


def _parse_page(body: Any) -> tuple[list[Alert], str | None, int]:
    """Alerts of one page, next cursor, and how many items failed validation."""
    if not isinstance(body, dict):
        raise ValueError("alerts page is not a JSON object")
    try:
        page = AlertPage.model_validate(body)
        return page.items, page.next_cursor, 0
    except ValidationError:
        pass
    items: list[Alert] = []
    bad = 0
    for raw in body.get("items") or []:
        try:
            items.append(Alert.model_validate(raw))
        except ValidationError:
            bad += 1
    cursor = body.get("next_cursor")
    return items, cursor if isinstance(cursor, str) and cursor else None, bad


async def fetch_all_alerts(api: ApiClient, *, limit: int = 500, max_pages: int = 100_000) -> list[Alert]:
    """Every alert the key's tenant can see, following `next_cursor` to the end."""
    out: list[Alert] = []
    cursor: str | None = None
    seen: set[str] = set()
    bad_total = 0
    for _ in range(max_pages):
        params = {"limit": str(limit)}
        if cursor:
            params["cursor"] = cursor
        resp = await api.request("GET", "/v1/alerts", params=params)
        if resp.status != 200:
            raise RuntimeError(f"GET /v1/alerts returned {resp.status}")
        items, cursor, bad = _parse_page(resp.body)
        bad_total += bad
        out.extend(items)
        if not cursor or cursor in seen:
            break
        seen.add(cursor)
    if bad_total:
        log.warning("%d alerts failed schema validation and were skipped", bad_total)
    return out


async def wait_for_settle(
    api: ApiClient,
    patient_ids: set[str],
    *,
    stable_for: float = 15.0,
    timeout_s: float = 600.0,
    poll: float = 3.0,
    min_wait_empty: float = 60.0,
) -> tuple[list[Alert], bool]:
    """Poll until this run's alerts stop changing for `stable_for` seconds (or `timeout_s`).

    Stability is judged on (count, latest updated_at) of the run's alerts. While there are none
    yet, keep waiting at least `min_wait_empty` seconds (the pipeline may still be catching up).
    Returns the run's alerts and whether they settled before the timeout.
    """
    started = time.monotonic()
    last_sig: tuple[int, datetime | None] | None = None
    last_change = started
    while True:
        alerts = [a for a in await fetch_all_alerts(api) if a.patient_id in patient_ids]
        sig = (len(alerts), max((a.updated_at for a in alerts), default=None))
        now = time.monotonic()
        if sig != last_sig:
            last_sig, last_change = sig, now
            log.info("alerts for this run so far: %d", sig[0])
        elif now - last_change >= stable_for and (sig[0] > 0 or now - started >= min_wait_empty):
            return alerts, True
        if now - started >= timeout_s:
            log.warning("alerts did not settle within %.0f s; evaluating what is there", timeout_s)
            return alerts, False
        await asyncio.sleep(poll)
