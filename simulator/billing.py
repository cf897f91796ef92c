"""Supply-code shares of a simulated cohort: the pure RTM billing engine over the generated series.

For each synthetic patient, the local dates of its check-ins (the default tenant setting: data
days from check-ins only) go through `services.scoring.billing.engine.compute_periods` at the end
of the histories; every **closed** 30-day period is one patient-period, counted under the supply
code it reaches (98977 for 16-30 data days, 98985 for 2-15, none). The open period at the end of a
history is left out (its figures are not final).

Adherence. The detection cohort's own missed days (`simulator.render.Habits`: at most ~35% of
days, never more than two in a row, so that normal archetypes never look disengaged) would make
almost every period reach 16 data days, which remote-monitoring programmes do not see. On top of
them each patient gets an adherence style, drawn per archetype from a random stream of its own
(seed and patient id), so the detection cohort itself is unchanged:

- `steady`: reports as generated;
- `weekday`: skips Saturdays and Sundays with probability 0.8, other days with 0.15;
- `fading`: skips a day with a probability rising linearly over the history from 0.05-0.2 to
  0.5-0.9 (patients who feel better report less);
- `sporadic`: skips any day with probability 0.35-0.6;
- `dropout`: stops reporting after day 15-60.

The weights per archetype are assumptions (symptomatic patients report more, improving ones
fade, a plateau discourages), not fitted to data; they are in `STYLE_WEIGHTS`.

Pure and deterministic: no clock, no I/O; the same cohort and seed give the same table.
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Literal
from zoneinfo import ZoneInfo

from services.scoring.billing import engine
from services.scoring.billing.model import BillingSettings, Code, DataDay, Source
from simulator.archetypes import SimPatient

Style = Literal["steady", "weekday", "fading", "sporadic", "dropout"]
STYLES: tuple[Style, ...] = ("steady", "weekday", "fading", "sporadic", "dropout")

_ENGAGED = (0.50, 0.15, 0.20, 0.10, 0.05)  # symptomatic: a worsening or unsettled course
_IMPROVING = (0.35, 0.15, 0.35, 0.10, 0.05)
_DISCOURAGED = (0.30, 0.15, 0.30, 0.15, 0.10)
_DEFAULT = (0.45, 0.15, 0.25, 0.10, 0.05)
STYLE_WEIGHTS: dict[str, tuple[float, float, float, float, float]] = {
    "steady_recovery": _IMPROVING,
    "slow_conservative": _DEFAULT,
    "settled_flares": _IMPROVING,
    "noisy_reporter": (0.30, 0.15, 0.20, 0.30, 0.05),
    "slow_steady_improver": _IMPROVING,
    "flare_settled": _IMPROVING,
    "postop_dip": _IMPROVING,
    "nerve_repair": _DEFAULT,
    "typical_ctr": _IMPROVING,
    "persistent_flare": _ENGAGED,
    "regression": _ENGAGED,
    "plateau": _DISCOURAGED,
    "red_flag": _ENGAGED,
    "spreading_numbness": _ENGAGED,
    "activity_decline": _DISCOURAGED,
    "disengagement": (0.20, 0.10, 0.30, 0.20, 0.20),
    "stall_moderate": _DISCOURAGED,
    "flare_unsettled": _ENGAGED,
    "early_recurrence": _ENGAGED,
}
CODES: tuple[Code | None, ...] = (Code.supply_16_30, Code.supply_2_15, None)


@dataclass(frozen=True, slots=True)
class Adherence:
    """A patient's adherence style and its parameters (probabilities, or the dropout day)."""

    style: Style
    param: float = 0.0
    until: float = 0.0  # fading: the skip probability on the history's last day

    def skips(self, day_index: int, n_days: int, day: date, rng: random.Random) -> bool:
        """Whether the patient skips local day `day`, the `day_index`-th of an `n_days` history."""
        if self.style == "steady":
            return False
        if self.style == "weekday":
            return rng.random() < (0.8 if day.weekday() >= 5 else 0.15)
        if self.style == "fading":
            return rng.random() < self.param + (self.until - self.param) * day_index / max(1, n_days - 1)
        if self.style == "sporadic":
            return rng.random() < self.param
        return day_index >= self.param  # dropout


def _rng(seed: int, patient_id: str) -> random.Random:
    return random.Random(f"adherence:{seed}:{patient_id}")


def draw_adherence(archetype: str, seed: int, patient_id: str) -> Adherence:
    """The patient's adherence style (its own random stream: the cohort is not changed)."""
    rng = _rng(seed, patient_id)
    style = rng.choices(STYLES, weights=STYLE_WEIGHTS.get(archetype, _DEFAULT))[0]
    if style == "fading":
        return Adherence(style, rng.uniform(0.05, 0.2), rng.uniform(0.5, 0.9))
    if style == "sporadic":
        return Adherence(style, rng.uniform(0.35, 0.6))
    if style == "dropout":
        return Adherence(style, float(rng.randint(15, 60)))
    return Adherence(style)


def checkin_days(p: SimPatient) -> list[date]:
    """The distinct local dates (enrolment time zone) of the patient's check-ins, sorted."""
    tz = ZoneInfo(p.patient["timezone"])
    return sorted({datetime.fromisoformat(c["recorded_at"]).astimezone(tz).date() for c in p.checkins})


def reported_days(p: SimPatient, seed: int, adherence: bool = True) -> list[date]:
    """The check-in days left after the patient's adherence style (all of them when off)."""
    days = checkin_days(p)
    if not adherence or not days:
        return days
    style = draw_adherence(p.label.archetype, seed, p.patient_id)
    rng = _rng(seed, p.patient_id + ":days")
    first, n = days[0], (days[-1] - days[0]).days + 1
    return [d for d in days if not style.skips((d - first).days, n, d, rng)]


def closed_period_codes(
    p: SimPatient, end: datetime, seed: int, adherence: bool = True, settings: BillingSettings | None = None
) -> list[Code | None]:
    """The supply code of each closed period of the patient at `end`."""
    tz = ZoneInfo(p.patient["timezone"])
    known = datetime(2000, 1, 1, tzinfo=UTC)
    days = [DataDay(d, Source.checkin, known) for d in reported_days(p, seed, adherence)]
    result = engine.compute_periods(days, settings=settings or BillingSettings(), now=end, tz=tz)
    return [period.supply_code for period in result.periods if period.closed]


@dataclass(frozen=True, slots=True)
class Shares:
    """Closed patient-periods of one archetype by supply code."""

    archetype: str
    patients: int
    periods: int
    by_code: dict[Code | None, int]
    styles: dict[str, int]

    def share(self, code: Code | None) -> float:
        return self.by_code.get(code, 0) / self.periods if self.periods else 0.0


def supply_shares(cohort: Sequence[SimPatient], end: datetime, seed: int, adherence: bool = True) -> list[Shares]:
    """Per archetype (cohort order), the share of closed patient-periods reaching each supply code."""
    codes: dict[str, Counter[Code | None]] = defaultdict(Counter)
    styles: dict[str, Counter[str]] = defaultdict(Counter)
    patients: Counter[str] = Counter()
    for p in cohort:
        a = p.label.archetype
        patients[a] += 1
        codes[a].update(closed_period_codes(p, end, seed, adherence))
        if adherence:
            styles[a][draw_adherence(a, seed, p.patient_id).style] += 1
    return [
        Shares(a, patients[a], sum(codes[a].values()), dict(codes[a]), dict(styles[a]))
        for a in dict.fromkeys(p.label.archetype for p in cohort)
    ]


def _pct(x: float) -> str:
    return f"{100 * x:.0f}%"


def _table(rows: Iterable[Shares], with_styles: bool) -> list[str]:
    head = "| Archetype | Patients | Closed periods | 98977 (16-30 days) | 98985 (2-15 days) | none (0-1) |"
    rule = "|---|---:|---:|---:|---:|---:|"
    if with_styles:
        head += " Adherence styles |"
        rule += "---|"
    lines = [head, rule]
    total = Counter[Code | None]()
    n_patients = n_periods = 0
    for s in rows:
        cells = [s.archetype, str(s.patients), str(s.periods), *(_pct(s.share(c)) for c in CODES)]
        if with_styles:
            cells.append(", ".join(f"{k} {v}" for k, v in sorted(s.styles.items(), key=lambda kv: STYLES.index(kv[0]))))
        lines.append("| " + " | ".join(cells) + " |")
        total.update(s.by_code)
        n_patients += s.patients
        n_periods += s.periods
    all_cells = [
        "**all**",
        str(n_patients),
        str(n_periods),
        *(_pct(total.get(c, 0) / n_periods if n_periods else 0.0) for c in CODES),
    ]
    if with_styles:
        all_cells.append("")
    lines.append("| " + " | ".join(all_cells) + " |")
    return lines


def render_markdown(
    cohort: Sequence[SimPatient], end: datetime, seed: int, run_info: dict[str, object] | None = None
) -> str:
    """The supply-code tables (with adherence styles, then habits only) as markdown."""
    info = run_info or {}
    lines = ["### Supply-code shares per archetype (simulated)", ""]
    if info:
        lines += [", ".join(f"{k}: {v}" for k, v in info.items()), ""]
    lines += [
        "Closed 30-day periods at the end of the histories, data days from check-ins (the default "
        "setting), codes as the billing engine reports them. With adherence styles:",
        "",
        *_table(supply_shares(cohort, end, seed, adherence=True), with_styles=True),
        "",
        "The detection cohort as generated (its habits only: at most two missed days in a row):",
        "",
        *_table(supply_shares(cohort, end, seed, adherence=False), with_styles=False),
    ]
    return "\n".join(lines) + "\n"
