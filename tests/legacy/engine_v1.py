"""The pure scoring engine: profile, daily series and event-time clock in; assessment out.

Deterministic: the result depends only on the arguments (days are de-duplicated by date and
sorted, so input order does not matter). No I/O, no clock, no randomness. Work is linear in the
number of days apart from fixed-size windows. Definitions and sources: docs/clinical-logic.md.
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from schemas.common import Reason
from schemas.trajectory import Signal, SignalCode, TrajectoryState
from services.scoring.daily import local_day
from services.scoring.model import Assessment, Baseline, DayRecord, PatientProfile, RedFlagObs
from tests.legacy.config_v1 import ScoringConfig, config_for

_DEFAULT = ScoringConfig()
_ITEMS = ("pain", "tingling", "numbness", "weakness")


def symptom_index(day: DayRecord, config: ScoringConfig | None = None) -> float | None:
    """0-100 composite of the day's 0-10 symptom items, None if no item was reported.

    Weighted mean of pain, tingling, numbness and weakness (weights from `config`, renormalised
    over the items present), times 10, rounded to 0.1.
    """
    return _index(day.pain, day.tingling, day.numbness, day.weakness, config or _DEFAULT)


def _index(
    pain: float | None, tingling: float | None, numbness: float | None, weakness: float | None, cfg: ScoringConfig
) -> float | None:
    num = den = 0.0
    for value, weight in (
        (pain, cfg.weight_pain),
        (tingling, cfg.weight_tingling),
        (numbness, cfg.weight_numbness),
        (weakness, cfg.weight_weakness),
    ):
        if value is not None:
            num += weight * value
            den += weight
    return round(10.0 * num / den, 1) if den > 0 else None


def _median(values: Sequence[float]) -> float:
    s = sorted(values)
    n = len(s)
    mid = n // 2
    return s[mid] if n % 2 else (s[mid - 1] + s[mid]) / 2.0


def _theil_sen(xs: Sequence[int], ys: Sequence[float]) -> float | None:
    """Median of pairwise slopes (per day); None with fewer than two distinct x."""
    slopes = [
        (ys[j] - ys[i]) / (xs[j] - xs[i]) for i in range(len(xs)) for j in range(i + 1, len(xs)) if xs[j] != xs[i]
    ]
    return _median(slopes) if slopes else None


def _fmt(x: float) -> str:
    return f"{round(x, 1):g}"


def _zone(key: str) -> ZoneInfo:
    try:
        return ZoneInfo(key)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def _event_time(rec: DayRecord, fallback: datetime) -> datetime:
    return rec.last_recorded_at or rec.last_sample_end or rec.device_grip_recorded_at or fallback


@dataclass(slots=True)
class _Episode:
    """A windowed condition: detected on ordinal `detected` (scored-day position `pos`)."""

    start: int
    detected: int
    ref: float
    end: int | None = None
    detail: str = ""


@dataclass(slots=True)
class _Flare:
    trigger: int
    trigger_kind: str
    onset: int
    prior: float
    peak: float
    end: int | None = None
    persistent_on: int | None = None
    weakness_rise: bool = False
    judge_from: int = 0
    instant: datetime | None = None


class _Series:
    """Scored days, smoothed values and trailing levels of one patient."""

    def __init__(self, recs: list[DayRecord], cfg: ScoringConfig) -> None:
        self.recs = [r for r in recs if (r.pain, r.tingling, r.numbness, r.weakness) != (None, None, None, None)]
        self.ords = [r.date.toordinal() for r in self.recs]
        self.vals = [_index(r.pain, r.tingling, r.numbness, r.weakness, cfg) or 0.0 for r in self.recs]
        self.ewma: list[float] = []
        prev_o = 0
        e = 0.0
        for i, (o, x) in enumerate(zip(self.ords, self.vals, strict=True)):
            e = x if i == 0 else e + (1.0 - (1.0 - cfg.ewma_alpha) ** (o - prev_o)) * (x - e)
            self.ewma.append(e)
            prev_o = o
        self.first = self.ords[0] if self.ords else 0
        self.last = self.ords[-1] if self.ords else -1
        self._levels: list[float | None] = []
        lo = hi = 0
        w = cfg.level_window_days
        for o in range(self.first, self.last + 1):
            while hi < len(self.ords) and self.ords[hi] <= o:
                hi += 1
            while self.ords[lo] <= o - w:
                lo += 1
            self._levels.append(_median(self.vals[lo:hi]) if hi - lo >= cfg.level_min_days else None)

    def level(self, o: int) -> float | None:
        """Median index over the `level_window_days` ending on ordinal `o` (None if too few days)."""
        return self._levels[o - self.first] if self.first <= o <= self.last else None

    def window(self, lo: int, hi: int) -> tuple[int, int]:
        """Positions [a, b) of scored days with ordinals in [lo, hi]."""
        return bisect_left(self.ords, lo), bisect_right(self.ords, hi)


def _dedupe(days: Sequence[DayRecord], today: date) -> list[DayRecord]:
    best: dict[date, DayRecord] = {}
    for d in days:
        if d.date > today:
            continue
        cur = best.get(d.date)
        if cur is None or _rank(d) > _rank(cur):
            best[d.date] = d
    return [best[k] for k in sorted(best)]


def _rank(d: DayRecord) -> tuple[int, datetime, str, int]:
    floor = datetime.min.replace(tzinfo=ZoneInfo("UTC"))
    return (d.checkins, d.last_received_at or floor, d.last_event_id or "", d.steps or 0)


def score(
    profile: PatientProfile, days: Sequence[DayRecord], as_of: datetime, config: ScoringConfig | None = None
) -> Assessment:
    """Assess a patient as of event time `as_of` from their daily records.

    `days` may be in any order and overlap (de-duplicated by date, the record with most check-ins,
    then newest receipt, wins); days after the local date of `as_of` are ignored. `config` None means
    `config_for(profile.condition, profile.treatment)`. Every assessment carries at least one reason;
    signals are reported on every call while their condition holds.
    """
    cfg = config if config is not None else config_for(profile.condition, profile.treatment)
    return _Engine(profile, days, as_of, cfg).run()


class _Engine:
    def __init__(self, profile: PatientProfile, days: Sequence[DayRecord], as_of: datetime, cfg: ScoringConfig):
        self.p = profile
        self.cfg = cfg
        self.as_of = as_of
        self.tz = _zone(profile.timezone)
        self.today = local_day(as_of, self.tz)
        self.recs = _dedupe(days, self.today)
        self.by_ord = {r.date.toordinal(): r for r in self.recs}
        self.s = _Series(self.recs, cfg)
        self.proc = profile.procedure_date.toordinal() if profile.procedure_date else None
        self.reasons: list[Reason] = []
        self.signals: list[Signal] = []

    # ----- helpers -------------------------------------------------------------------------
    def in_dip(self, o: int) -> bool:
        return self.proc is not None and self.proc <= o < self.proc + self.cfg.postop_dip_days

    def date_of(self, o: int) -> date:
        return date.fromordinal(o)

    def signal(self, code: SignalCode, since: int, raised_on: int, reasons: list[Reason]) -> None:
        rec = self.by_ord.get(raised_on)
        event_time = _event_time(rec, self.as_of) if rec else self.as_of
        self.signals.append(
            Signal(
                code=code,
                since=self.date_of(since),
                event_time=event_time,
                event_id=rec.last_event_id if rec else None,
                reasons=reasons,
            )
        )

    # ----- baseline ----------------------------------------------------------------------------
    def baseline_index(self) -> tuple[float | None, str]:
        b = self.p.baseline
        if b is not None:
            bi = _index(b.pain, b.tingling, b.numbness, b.weakness, self.cfg)
            if bi is not None:
                return bi, "enrolment baseline"
        first = self.s.vals[: self.cfg.baseline_days]
        if not first:
            return None, "no data"
        return round(_median(first), 1), f"median of first {len(first)} scored days"

    def item_baseline(self, name: str) -> float | None:
        b: Baseline | None = self.p.baseline
        value = getattr(b, name) if b is not None else None
        if value is not None:
            return float(value)
        vals = [v for r in self.s.recs if (v := getattr(r, name)) is not None][: self.cfg.baseline_days]
        return _median(vals) if vals else None

    # ----- conditions --------------------------------------------------------------------------
    def red_flags(self) -> list[Signal]:
        """One `red_flag` signal per red-flag check-in version recorded within the window before
        `as_of` (0 <= as_of - recorded_at <= window), oldest first; empty when there is none.

        Each signal names its own observation (event id, recorded_at, received_at, flags), so the
        alert rules can page every observation exactly once whatever was paged or resolved before.
        Days stored before `red_flag_obs` existed fall back to the day's first reporting check-in.
        """
        window = timedelta(hours=self.cfg.red_flag_window_hours)
        out: list[Signal] = []
        for r in self.recs:
            if not r.red_flags:
                continue
            observed = r.red_flag_obs or (
                (RedFlagObs(r.red_flag_event_id or "", r.red_flag_recorded_at, r.red_flag_recorded_at, r.red_flags),)
                if r.red_flag_recorded_at is not None
                else ()
            )
            for o in observed:
                age = self.as_of - o.recorded_at
                if not timedelta(0) <= age <= window:
                    continue
                reason = Reason(
                    code="red_flag_reported",
                    detail=f"red flag reported: {', '.join(o.flags)} ({_fmt(age.total_seconds() / 3600.0)} h before "
                    f"as_of, window {_fmt(self.cfg.red_flag_window_hours)} h)",
                )
                out.append(
                    Signal(
                        code=SignalCode.red_flag,
                        since=r.date,
                        event_time=o.recorded_at,
                        event_id=o.event_id or None,
                        reasons=[reason],
                        flags=list(o.flags),
                        received_at=o.received_at,
                    )
                )
        return out

    def red_flag_reason(self, signals: Sequence[Signal]) -> Reason:
        """The state reason of `red_flag`: every flag in the window, hours since the newest report."""
        flags = sorted({f for sig in signals for f in sig.flags})
        newest = max(sig.event_time for sig in signals)
        hours = (self.as_of - newest).total_seconds() / 3600.0
        return Reason(
            code="red_flag_reported",
            detail=f"red flag reported: {', '.join(flags)} (latest {_fmt(hours)} h before as_of, window "
            f"{_fmt(self.cfg.red_flag_window_hours)} h)",
        )

    def spreading(self) -> tuple[_Episode | None, DayRecord | None]:
        """Open from the first day spreading is reported until `spreading_clear_days` later check-in
        days without it; the returned record is the episode's first reporting day."""
        active: DayRecord | None = None
        clear = 0
        for r in self.recs:
            if r.numbness_spreading:
                if active is None:
                    active = r
                clear = 0
            elif active is not None and r.checkins > 0:
                clear += 1
                if clear >= self.cfg.spreading_clear_days:
                    active, clear = None, 0
        if active is None:
            return None, None
        o = active.date.toordinal()
        return _Episode(start=o, detected=o, ref=0.0), active

    def triggers(self) -> list[tuple[int, str, datetime | None]]:
        """Flare triggers as (ordinal, kind, instant): a PT session on the local date it ended (its
        instant is `pt_session_ended_at`), or an unusually active day (no instant: the whole day)."""
        out: dict[int, tuple[str, datetime | None]] = {}
        steps = [(r.date.toordinal(), float(r.steps)) for r in self.recs if r.steps is not None]
        s_ords = [o for o, _ in steps]
        for r in self.recs:
            if r.pt_session:
                t = local_day(r.pt_session_ended_at, self.tz) if r.pt_session_ended_at else r.date
                out.setdefault(t.toordinal(), ("physical-therapy session", r.pt_session_ended_at))
        k = self.cfg.activity_reference_days
        for idx, (o, v) in enumerate(steps):
            a = bisect_left(s_ords, o - k)
            prior = [sv for _, sv in steps[a:idx]]
            if len(prior) >= 4 and v >= self.cfg.active_day_ratio * _median(prior) > 0:
                out.setdefault(o, ("unusually active day", None))
        return [(o, kind, instant) for o, (kind, instant) in sorted(out.items())]

    def before_trigger(self, i: int, t: int, instant: datetime | None) -> bool:
        """Whether scored day `i` was fully reported before trigger (`t`, `instant`) happened."""
        o = self.s.ords[i]
        if o != t:
            return o < t
        last = self.s.recs[i].last_recorded_at
        return instant is not None and last is not None and last <= instant

    def pre_trigger(self, t: int, instant: datetime | None, det: float) -> float | None:
        """The level a flare after trigger (`t`, `instant`) is measured from, or None when the trigger
        cannot explain a rise: too little data before it, or the rise had already begun.

        The level is the lower of the 7-day level of the day before the trigger and the median of
        the last 3 scored days reported before the trigger (within 7 days), so that a patient who is
        still improving is compared with where they are now rather than a week ago. If the newest
        scored day reported before the trigger (within `flare_trigger_days`) is already >= `det`
        above that level, or the newest two are both >= det/2 above it, the rise started before the
        trigger and is not a reaction to it.
        """
        s, cfg = self.s, self.cfg
        a, b = s.window(t - 7, t)
        before = [j for j in range(a, b) if self.before_trigger(j, t, instant)]
        level = s.level(t - 1)
        recent = _median([s.vals[j] for j in before[-3:]]) if len(before) >= 3 else None
        cands = [x for x in (level, recent) if x is not None]
        if not cands:
            return None
        prior = min(cands)
        near = [s.vals[j] for j in before if s.ords[j] >= t - cfg.flare_trigger_days]
        if near and near[-1] >= prior + det:
            return None
        if len(near) >= 2 and min(near[-2:]) >= prior + det / 2:
            return None
        return prior

    def flares(self, det: float) -> list[_Flare]:
        """Flare episodes: a rise of >= `det` on a scored day within `flare_trigger_days` of a trigger.

        An open episode ends (settles) when the median of its last 3 days' index is within det/2 of
        the pre-trigger level. It is persistent (not settled) when, from `judge_from` (onset + 3
        days, and for a PT session only on a day whose newest check-in is >= 72 h after the session
        ended), the last two scored days are both still >= det above that level, or when it is still
        more than det/2 above it `flare_window_days` after onset. A further trigger while the episode
        is open moves `judge_from` later, but never past onset + `flare_window_days`.
        """
        s, cfg = self.s, self.cfg
        trig = self.triggers()
        t_ords = [t for t, _, _ in trig]
        priors: dict[int, float | None] = {}
        episodes: list[_Flare] = []
        ep: _Flare | None = None
        for i, o in enumerate(s.ords):
            recent: tuple[int, str, datetime | None] | None = None
            k = bisect_right(t_ords, o) - 1
            while k >= 0 and t_ords[k] >= o - cfg.flare_trigger_days:
                if not self.before_trigger(i, trig[k][0], trig[k][2]):
                    recent = trig[k]
                    break
                k -= 1
            if ep is None:
                if recent is None:
                    continue
                if recent[0] not in priors:
                    priors[recent[0]] = self.pre_trigger(recent[0], recent[2], det)
                prior = priors[recent[0]]
                if prior is None or s.vals[i] < prior + det:
                    continue
                ep = _Flare(
                    trigger=recent[0], trigger_kind=recent[1], onset=o, prior=prior, peak=s.vals[i], instant=recent[2]
                )
                ep.judge_from = o + cfg.flare_judge_after_days
                ep.weakness_rise = self.weakness_rise(i, o)
                episodes.append(ep)
                continue
            ep.peak = max(ep.peak, s.vals[i])
            a, _ = s.window(max(o - 2, ep.onset), o)
            if _median(s.vals[a : i + 1]) <= ep.prior + det / 2:
                ep.end = o
                ep = None
                continue
            if ep.persistent_on is not None:
                continue
            if recent is not None and recent[0] > ep.trigger:
                ep.trigger, ep.trigger_kind, ep.instant = recent
                cap = ep.onset + cfg.flare_window_days
                ep.judge_from = min(cap, max(ep.judge_from, recent[0] + 1 + cfg.flare_judge_after_days))
            last = s.recs[i].last_recorded_at
            judged = ep.instant is None or (
                last is not None and last >= ep.instant + timedelta(days=cfg.flare_judge_after_days)
            )
            if o >= ep.judge_from and (judged or o >= ep.onset + cfg.flare_window_days):
                a2, _ = s.window(ep.judge_from - 1, o)
                last_two = s.vals[max(a2, i - 1) : i + 1]
                if len(last_two) == 2 and min(last_two) >= ep.prior + det:
                    ep.persistent_on = o
                    continue
            if o >= ep.onset + cfg.flare_window_days:
                a3, _ = s.window(o - 2, o)
                if _median(s.vals[a3 : i + 1]) > ep.prior + det / 2:
                    ep.persistent_on = o
        return episodes

    def weakness_rise(self, i: int, o: int) -> bool:
        """Weakness on the flare's onset day (and the next `flare_trigger_days`) up by the configured
        amount vs the median of the 7 scored days before onset: a new neurological sign."""
        s, cfg = self.s, self.cfg
        before = [v for r in s.recs[max(0, i - 7) : i] if (v := r.weakness) is not None]
        _, b = s.window(o, o + cfg.flare_trigger_days)
        during = [v for r in s.recs[i:b] if (v := r.weakness) is not None]
        return bool(before and during) and _median(during) >= _median(before) + cfg.flare_weakness_rise

    def reference(self, o: int) -> float | None:
        cfg = self.cfg
        levels = [
            lv
            for k in range(cfg.reference_weeks)
            if (lv := self.s.level(o - cfg.reference_gap_days - 7 * k)) is not None
        ]
        return min(levels) if levels else None

    def cover_end(self, fl: _Flare) -> int:
        """Last ordinal on which a rise is attributed to flare `fl` rather than to regression."""
        if fl.persistent_on is not None:
            return fl.persistent_on - 1
        if fl.end is not None:
            return fl.end + self.cfg.flare_grace_days
        return fl.onset + self.cfg.flare_cover_days

    def regression(
        self, det: float, mcid: float, baseline: float | None, flares: list[_Flare]
    ) -> tuple[_Episode | None, list[bool]]:
        """Sustained deterioration; also returns, per scored day, whether an episode was active.

        A day is elevated when its raw index is >= `det` above the best recent level (A), or it is
        back within det/2 of the baseline after an improvement of >= 1 MCID (B). An episode starts
        outside flare cover on an elevated day when the last `worsening_consecutive_days` scored
        days are all elevated (only for a patient whose day-to-day noise is at most
        det / `worsening_noise_ratio`), or when >= `worsening_min_days` of the last
        `worsening_last_days` scored days (within `worsening_window_days`) are; or, flare or not,
        when the last `worsening_min_days` scored days (within 5 days) are all B-days. It ends when
        the median of the last 3 scored days (within a week) is back within det/2 of the frozen
        reference.
        Nothing is assessed inside the post-procedure dip window.
        """
        s, cfg = self.s, self.cfg
        covers = [(fl.onset, self.cover_end(fl)) for fl in flares if not fl.weakness_rise]
        el_a = [False] * len(s.ords)
        el_b = [False] * len(s.ords)
        active_days = [False] * len(s.ords)
        ep: _Episode | None = None
        for i, o in enumerate(s.ords):
            if self.in_dip(o):
                ep = None
                continue
            if ep is not None:
                a3, _ = s.window(o - cfg.worsening_window_days + 1, o)
                cur = _median(s.vals[max(a3, i - 2) : i + 1])
                if cur < ep.ref + det / 2:
                    ep = None
                else:
                    active_days[i] = True
                    continue
            ref = self.reference(o)
            if ref is None:
                continue
            x = s.vals[i]
            el_a[i] = x >= ref + det and x >= ref + cfg.worsening_noise_z * self.noise(i)
            el_b[i] = baseline is not None and ref <= baseline - mcid and x >= baseline - det / 2
            if not (el_a[i] or el_b[i]):
                continue
            n = cfg.worsening_min_days
            a = max(s.window(o - cfg.worsening_window_days + 1, o)[0], i + 1 - cfg.worsening_last_days)
            back = i + 1 >= n and s.ords[i + 1 - n] > o - 5 and all(el_b[i + 1 - n : i + 1])
            covered = any(lo <= o <= hi for lo, hi in covers)
            both = [x or y for x, y in zip(el_a[a : i + 1], el_b[a : i + 1], strict=True)]
            flags = el_b[a : i + 1] if covered else both
            c = cfg.worsening_consecutive_days
            quick = not covered and i + 1 - a >= c and all(flags[-c:])
            count = sum(flags)
            if back or quick or (not covered and count >= n):
                first = len(flags) - c if quick and count < n else flags.index(True)
                start = s.ords[a + first]
                ep = _Episode(start=start, detected=o, ref=ref)
                ep.detail = (
                    f"index {_fmt(x)} vs best recent level {_fmt(ref)}, elevated on {count} of "
                    f"{i + 1 - a} days since {self.date_of(s.ords[a]).isoformat()} (deterioration MCID {_fmt(det)})"
                )
                active_days[i] = True
        return ep, active_days

    def noise(self, i: int) -> float:
        """The patient's day-to-day reporting noise before scored day `i`, as a standard deviation of
        the index: 1.4826 * median |change between consecutive scored days| / sqrt(2), over the
        `noise_window_days` before the day (pairs at most 3 days apart). Infinite with fewer than
        `noise_min_pairs` pairs, so a patient without enough history never gets the quick rule."""
        s, cfg = self.s, self.cfg
        o = s.ords[i]
        a, _ = s.window(o - cfg.noise_window_days, o - 1)
        diffs = [abs(s.vals[j] - s.vals[j - 1]) for j in range(max(a, 1), i) if s.ords[j] - s.ords[j - 1] <= 3]
        if len(diffs) < cfg.noise_min_pairs:
            return 0.0
        return 1.4826 * _median(diffs) / math.sqrt(2.0)

    def grip(self) -> tuple[_Episode | None, list[tuple[int, float]]]:
        cfg = self.cfg
        readings: list[tuple[int, float]] = []
        for r in self.recs:
            g = r.device_grip_strength_kg if r.device_grip_strength_kg is not None else r.grip_strength_kg
            if g is not None:
                readings.append((r.date.toordinal(), g))
        ords = [o for o, _ in readings]
        ep: _Episode | None = None
        for k, (o, _) in enumerate(readings):
            if self.in_dip(o):
                ep = None
                continue
            a = max(bisect_left(ords, o - 6), k + 1 - cfg.grip_readings)
            recent = [g for _, g in readings[a : k + 1]]
            if len(recent) < cfg.grip_min_readings:
                continue
            cur = _median(recent)
            if ep is not None:
                if cur >= ep.ref - cfg.grip_mcid_kg / 2:
                    ep = None
                continue
            weekly = []
            for w in range(cfg.reference_weeks):
                hi = o - cfg.reference_gap_days - 7 * w
                lo_i, hi_i = bisect_left(ords, hi - 6), bisect_right(ords, hi)
                if hi_i > lo_i:
                    weekly.append(_median([g for _, g in readings[lo_i:hi_i]]))
            if weekly and cur <= max(weekly) - cfg.grip_mcid_kg:
                ref = max(weekly)
                ep = _Episode(start=readings[a][0], detected=o, ref=ref)
                ep.detail = f"grip {_fmt(ref)} -> {_fmt(cur)} kg (MCID {_fmt(cfg.grip_mcid_kg)} kg)"
        return ep, readings

    def activity(self) -> tuple[_Episode | None, float | None, float | None]:
        cfg = self.cfg
        steps = [(r.date.toordinal(), float(r.steps)) for r in self.recs if r.steps is not None]
        if not steps:
            return None, None, None
        ords = [o for o, _ in steps]
        base: float | None
        if self.p.baseline is not None and self.p.baseline.daily_steps is not None:
            base = float(self.p.baseline.daily_steps)
        else:
            first = [v for o, v in steps if o < ords[0] + 14]
            base = _median(first) if len(first) >= 5 else None
        if not base:
            return None, base, None
        limit = (1.0 - cfg.activity_decline_pct / 100.0) * base
        ep: _Episode | None = None
        run_start: int | None = None
        run = 0
        recent_level: float | None = None
        for k, (o, _) in enumerate(steps):
            a = bisect_left(ords, o - cfg.activity_recent_days + 1)
            if k + 1 - a < cfg.activity_min_days:
                continue
            recent_level = _median([v for _, v in steps[a : k + 1]])
            if self.in_dip(o):
                ep, run, run_start = None, 0, None
                continue
            if ep is not None:
                if recent_level >= (1.0 - cfg.activity_decline_pct / 200.0) * base:
                    ep, run, run_start = None, 0, None
                continue
            if recent_level <= limit:
                run += 1
                run_start = o if run_start is None else run_start
                if run >= cfg.activity_sustain_days:
                    ep = _Episode(start=run_start, detected=o, ref=base)
                    pct = 100.0 * (base - recent_level) / base
                    ep.detail = (
                        f"daily steps {_fmt(base)} -> {_fmt(recent_level)} (7-day median, -{_fmt(pct)}%, "
                        f"threshold {_fmt(cfg.activity_decline_pct)}%)"
                    )
            else:
                run, run_start = 0, None
        return ep, base, recent_level

    # ----- measures ----------------------------------------------------------------------------
    def measure_reasons(self, span_days: int, readings: list[tuple[int, float]]) -> list[Reason]:
        s, cfg = self.s, self.cfg
        out: list[Reason] = []
        a, _ = s.window(s.last - cfg.level_window_days + 1, s.last)
        for name in _ITEMS:
            base = self.item_baseline(name)
            recent = [v for r in s.recs[a:] if (v := getattr(r, name)) is not None]
            if base is None or not recent:
                continue
            cur = _median(recent)
            mcid = max(cfg.item_mcid, cfg.item_mcid_pct / 100.0 * base)
            change = cur - base
            tail = f"{name} {_fmt(base)} -> {_fmt(cur)} over {span_days} days (MCID {_fmt(mcid)})"
            if change <= -mcid:
                out.append(Reason(code=f"{name}_improved_mcid", detail=tail))
            elif change >= max(1.0, mcid * cfg.deterioration_ratio):
                out.append(Reason(code=f"{name}_worsened", detail=tail))
            else:
                out.append(Reason(code=f"{name}_unchanged", detail=tail))
        if readings:
            b = self.p.baseline
            gb = b.grip_strength_kg if b is not None and b.grip_strength_kg is not None else None
            if gb is None:
                gb = _median([g for _, g in readings[: cfg.baseline_days]])
            cur = _median([g for _, g in readings[-cfg.grip_readings :]])
            tail = f"grip {_fmt(gb)} -> {_fmt(cur)} kg (MCID {_fmt(cfg.grip_mcid_kg)} kg)"
            if cur - gb >= cfg.grip_mcid_kg:
                out.append(Reason(code="grip_improved_mcid", detail=tail))
            elif gb - cur >= cfg.grip_mcid_kg:
                out.append(Reason(code="grip_declined_mcid", detail=tail))
            else:
                out.append(Reason(code="grip_unchanged", detail=tail))
        out.extend(self.function_reasons())
        return out

    def function_reasons(self) -> list[Reason]:
        cfg = self.cfg
        scored = [(r, r.function_instrument, r.function_score) for r in self.recs if r.function_score is not None]
        if not scored:
            return []
        _, inst, latest = scored[-1]
        if inst is None or latest is None:
            return []
        b = self.p.baseline
        base: float | None = None
        if b is not None and b.function_instrument == inst and b.function_score is not None:
            base = b.function_score
        else:
            same = [v for _, i, v in scored if i == inst and v is not None][: cfg.baseline_days]
            base = _median(same) if same else None
        out: list[Reason] = []
        mcid = cfg.function_mcid(inst)
        if base is not None and mcid is not None:
            better = base - latest if inst not in ("lefs", "psfs") else latest - base
            tail = f"{inst} {_fmt(base)} -> {_fmt(latest)} (MCID {_fmt(mcid)})"
            if better >= mcid:
                out.append(Reason(code="function_improved_mcid", detail=tail))
            elif better <= -mcid * cfg.deterioration_ratio:
                out.append(Reason(code="function_worsened", detail=tail))
            else:
                out.append(Reason(code="function_unchanged", detail=tail))
        cut = cfg.function_pass_threshold(inst)
        if cut is not None and latest < cut:
            out.append(
                Reason(
                    code="function_acceptable_state",
                    detail=f"{inst} {_fmt(latest)} below acceptable-state cut-off {_fmt(cut)}",
                )
            )
        return out

    def function_acceptable(self) -> bool:
        """False only if the newest function score (within 28 days) is at or above its PASS cut-off."""
        for r in reversed(self.recs):
            if r.function_score is not None:
                if r.date.toordinal() < self.s.last - 28:
                    return True
                cut = self.cfg.function_pass_threshold(r.function_instrument)
                return cut is None or r.function_score < cut
        return True

    # ----- plateau / recovered ----------------------------------------------------------------
    def plateau(
        self, mcid: float, baseline: float | None, regress_days: list[bool]
    ) -> tuple[int, int | None, float, float] | None:
        """(since, raised_on, level at since, current level) when the plateau condition holds.

        The condition holds on a scored day when, over the `plateau_days` before it (counted from
        the procedure, else the first check-in, and restarted by a regression episode), the 7-day
        level nowhere stood >= ½ MCID above the day's level, the Theil-Sen trend over those days
        projects less than `plateau_max_trend` MCID of improvement over `slope_long_days`, and the
        level is above the recovered threshold. A forward pass opens a plateau episode on the first
        such day that is also due: level >= `plateau_min_index`, outside the post-procedure window,
        and (for a patient who has not yet improved by ½ MCID) past the condition's review point.
        The episode, whose `raised_on` is that day, lasts until the level improves by ½ MCID on its
        opening level or a regression starts. `raised_on` is None while the condition holds without
        an open episode (not yet due, or mild residual symptoms).
        """
        s, cfg = self.s, self.cfg
        start = self.proc if self.proc is not None and self.proc <= s.last else s.first
        w = cfg.plateau_days
        clock = start
        best: float | None = None
        ep: tuple[int, int, float] | None = None  # (since, raised_on, level at opening)
        for i, o in enumerate(s.ords):
            if o < start:
                continue
            lv = s.level(o)
            if lv is None:
                continue
            best = lv if best is None else min(best, lv)
            if regress_days[i]:
                clock, ep = o, None
                continue
            if ep is not None and lv > ep[2] - mcid / 2:
                continue
            ep = None
            if lv < cfg.plateau_min_index or self.in_dip(o):
                continue
            if self.proc is not None and o < self.proc + cfg.postop_dip_days:
                continue
            improved_once = baseline is not None and best <= baseline - mcid / 2
            if not improved_once and o < start + cfg.review_after_days:
                continue
            if self.stalled(i, o, lv, mcid, clock):
                ep = (self.last_better(i, lv + mcid / 2, max(clock, o - w)), o, lv)
        cur = s.level(s.last)
        if cur is None or s.last - clock < w:
            return None
        if ep is not None:
            since, raised, _ = ep
            return since, raised, s.level(since) or cur, cur
        last_i = len(s.ords) - 1
        if not self.stalled(last_i, s.last, cur, mcid, clock):
            return None
        since = self.last_better(last_i, cur + mcid / 2, max(clock, s.last - w))
        return since, None, s.level(since) or cur, cur

    def stalled(self, i: int, o: int, lv: float, mcid: float, clock: int) -> bool:
        """No ½-MCID improvement over the `plateau_days` up to scored day `i` (see `plateau`)."""
        s, cfg = self.s, self.cfg
        w = cfg.plateau_days
        if o - clock < w or lv <= cfg.recovered_index:
            return False
        a, _ = s.window(o - w, o)
        window = [x for p in s.ords[a:i] if (x := s.level(p)) is not None]
        if any(x - lv >= mcid / 2 or lv - x >= mcid / 2 for x in window):
            return False  # improved meaningfully, or got meaningfully worse: not a plateau
        slope = _theil_sen(s.ords[a + 1 : i + 1], s.vals[a + 1 : i + 1])
        return slope is None or slope * cfg.slope_long_days > -mcid * cfg.plateau_max_trend

    def last_better(self, i: int, threshold: float, floor: int) -> int:
        """The newest scored day before position `i` whose level is >= `threshold`, at least `floor`."""
        s = self.s
        for j in range(i - 1, -1, -1):
            if s.ords[j] < floor:
                break
            x = s.level(s.ords[j])
            if x is not None and x >= threshold:
                return s.ords[j]
        return floor

    def recovered(self) -> int | None:
        s, cfg = self.s, self.cfg
        since: int | None = None
        for o in s.ords:
            lv = s.level(o)
            if lv is None:
                continue
            if lv > cfg.recovered_index:
                since = None
            elif since is None:
                since = o
        if since is None or s.last - since + 1 < cfg.recovered_days or s.ewma[-1] > cfg.recovered_index:
            return None
        return since if self.function_acceptable() else None

    # ----- main -----------------------------------------------------------------------------------
    def run(self) -> Assessment:
        s, cfg = self.s, self.cfg
        day_index = {r.date: v for r, v in zip(s.recs, s.vals, strict=True)}
        reds = self.red_flags()
        self.signals.extend(reds)
        red = self.red_flag_reason(reds) if reds else None
        spread_ep, spread_rec = self.spreading()
        if spread_ep is not None and spread_rec is not None:
            reason = Reason(
                code="numbness_spreading",
                detail=f"numbness beyond the usual nerve territory reported on {spread_rec.date.isoformat()}",
            )
            self.signals.append(
                Signal(
                    code=SignalCode.spreading_symptoms,
                    since=spread_rec.date,
                    event_time=spread_rec.spreading_recorded_at or _event_time(spread_rec, self.as_of),
                    event_id=spread_rec.spreading_event_id,
                    reasons=[reason],
                )
            )
        grip_ep, readings = self.grip()
        act_ep, _, _ = self.activity()

        if not s.ords:
            return self.without_checkins(day_index, red, spread_ep, grip_ep, act_ep)

        baseline, base_src = self.baseline_index()
        mcid = cfg.index_mcid(baseline)
        det = cfg.deterioration_mcid(mcid)
        flares = self.flares(det)
        reg_ep, reg_days = self.regression(det, mcid, baseline, flares)
        flares = [fl for fl in flares if not reg_days[bisect_left(s.ords, fl.onset)]]
        current = round(s.ewma[-1], 1)
        a, _ = s.window(s.last - cfg.slope_long_days + 1, s.last)
        slope = _theil_sen(s.ords[a:], s.vals[a:]) if len(s.ords) - a >= cfg.slope_min_points else None
        slope_week = round(7.0 * slope, 2) if slope is not None else None

        state_reasons: list[Reason] = []
        state: TrajectoryState | None = None
        if red is not None:
            state = TrajectoryState.red_flag
            state_reasons.append(red)
        neuro = spread_ep is not None or grip_ep is not None
        if state is None and neuro:
            state = TrajectoryState.worsening
            if spread_ep is not None:
                state_reasons.append(
                    Reason(code="numbness_spreading", detail="numbness spreading beyond one nerve territory")
                )
        # Regression signal: sustained index deterioration and/or grip drop.
        reg_reasons: list[Reason] = []
        reg_since: int | None = None
        reg_raised: int | None = None
        if reg_ep is not None:
            reg_reasons.append(Reason(code="sustained_worsening", detail=reg_ep.detail))
            if baseline is not None and s.vals[-1] >= baseline - det / 2:
                reg_reasons.append(
                    Reason(
                        code="back_to_baseline",
                        detail=f"index {_fmt(s.vals[-1])} back near baseline {_fmt(baseline)}",
                    )
                )
            reg_since, reg_raised = reg_ep.start, reg_ep.detected
        if grip_ep is not None:
            reg_reasons.append(Reason(code="grip_drop", detail=grip_ep.detail))
            if reg_raised is None or grip_ep.detected < reg_raised:
                reg_since, reg_raised = grip_ep.start, grip_ep.detected
        if act_ep is not None and reg_reasons:
            reg_reasons.append(Reason(code="activity_declined", detail=act_ep.detail))
        if reg_reasons and reg_since is not None and reg_raised is not None:
            self.signal(SignalCode.regression, reg_since, reg_raised, reg_reasons)
            if state is None:
                state = TrajectoryState.worsening
            state_reasons.extend(r for r in reg_reasons if r.code != "activity_declined")
        elif grip_ep is not None:
            state_reasons.append(Reason(code="grip_drop", detail=grip_ep.detail))

        fl = flares[-1] if flares else None
        fl_open = fl is not None and fl.end is None and s.last <= fl.onset + cfg.flare_cover_days
        if fl is not None and fl.persistent_on is not None and fl.end is None:
            detail = (
                f"flare after {fl.trigger_kind} on {self.date_of(fl.trigger).isoformat()}: index {_fmt(fl.prior)} -> "
                f"{_fmt(s.vals[-1])}, not settled after {s.last - fl.onset} days (deterioration MCID {_fmt(det)})"
            )
            self.signal(
                SignalCode.persistent_flare,
                fl.persistent_on,
                fl.persistent_on,
                [Reason(code="flare_not_settled", detail=detail)],
            )
            if state is None:
                state = TrajectoryState.worsening
                state_reasons.append(Reason(code="flare_not_settled", detail=detail))
        elif fl is not None and fl_open and not neuro and not fl.weakness_rise:
            detail = (
                f"index {_fmt(fl.prior)} -> {_fmt(fl.peak)} within {fl.onset - fl.trigger} days of "
                f"{fl.trigger_kind} on {self.date_of(fl.trigger).isoformat()}, expected to settle within 72 h"
            )
            reason = Reason(code="flare_after_activity", detail=detail)
            if s.last <= fl.trigger + cfg.flare_window_days and reg_ep is None:
                self.signal(SignalCode.flare_window, fl.onset, fl.onset, [reason])
            if state is None:
                state = TrajectoryState.flare
                state_reasons.append(reason)
        elif fl is not None and fl_open and fl.weakness_rise and state is None:
            state = TrajectoryState.worsening
            state_reasons.append(
                Reason(code="weakness_rise", detail="weakness rose with a post-activity flare (new neurological sign)")
            )

        if act_ep is not None:
            self.signal(
                SignalCode.activity_decline,
                act_ep.start,
                act_ep.detected,
                [Reason(code="activity_declined", detail=act_ep.detail)],
            )

        plateau = self.plateau(mcid, baseline, reg_days)
        plateau_mild = plateau is not None and plateau[3] < cfg.plateau_min_index
        if plateau is not None and plateau[1] is not None and reg_ep is None and not neuro and not plateau_mild:
            since, _, rec_level, cur_level = plateau
            detail = (
                f"7-day median index {_fmt(rec_level)} -> {_fmt(cur_level)} over {s.last - since} days since "
                f"{self.date_of(since).isoformat()}, less than half an MCID ({_fmt(mcid / 2)}) of improvement"
            )
            self.signal(SignalCode.plateau, since, plateau[1], [Reason(code="plateau", detail=detail)])

        n = len(s.ords)
        stale = (self.today.toordinal() - s.last) > cfg.stale_after_days
        improving = baseline is not None and (
            s.ewma[-1] <= baseline - mcid / 2 or (slope is not None and slope * cfg.slope_long_days <= -mcid / 2)
        )
        if state is None and n < cfg.min_scored_days:
            state = TrajectoryState.insufficient_data
            state_reasons.append(
                Reason(code="insufficient_data", detail=f"{n} scored days (need {cfg.min_scored_days})")
            )
        if state is None and stale:
            state = TrajectoryState.insufficient_data
            state_reasons.append(
                Reason(
                    code="no_recent_checkins",
                    detail=f"last check-in {self.today.toordinal() - s.last} days ago (limit {cfg.stale_after_days})",
                )
            )
        if state is None and self.in_dip(s.last):
            assert self.proc is not None
            state_reasons.append(
                Reason(
                    code="postop_recovery_window",
                    detail=f"day {s.last - self.proc} of the {cfg.postop_dip_days}-day expected post-procedure "
                    "recovery window; worsening vs best level not assessed",
                )
            )
            state = TrajectoryState.improving if improving else TrajectoryState.insufficient_data
        if state is None:
            rec_since = self.recovered()
            if rec_since is not None:
                state = TrajectoryState.recovered
                state_reasons.append(
                    Reason(
                        code="recovered",
                        detail=f"7-day median index at or below {_fmt(cfg.recovered_index)} for "
                        f"{s.last - rec_since + 1} days (need {cfg.recovered_days})",
                    )
                )
        if state is None and plateau is not None:
            state = TrajectoryState.plateau
            if plateau_mild:
                state_reasons.append(
                    Reason(
                        code="plateau_mild_symptoms",
                        detail=f"no meaningful improvement, but the 7-day median index {_fmt(plateau[3])} is below "
                        f"{_fmt(cfg.plateau_min_index)} (mild residual symptoms): not flagged for review",
                    )
                )
            elif not any(sig.code is SignalCode.plateau for sig in self.signals):
                state_reasons.append(
                    Reason(
                        code="plateau_within_expected_recovery_time",
                        detail=f"no meaningful improvement yet; review point is day {cfg.review_after_days}",
                    )
                )
            else:
                state_reasons.extend(next(sig for sig in self.signals if sig.code is SignalCode.plateau).reasons)
        if state is None and improving:
            state = TrajectoryState.improving
        if state is None:
            state = TrajectoryState.insufficient_data
            state_reasons.append(
                Reason(
                    code="trend_not_established",
                    detail=f"no meaningful change yet over {s.last - s.first + 1} days (plateau needs "
                    f"{cfg.plateau_days} days without improvement)",
                )
            )
        if state is TrajectoryState.improving and baseline is not None:
            state_reasons.append(
                Reason(
                    code="improving",
                    detail=f"smoothed index {_fmt(baseline)} -> {_fmt(current)} (index MCID {_fmt(mcid)}, "
                    f"slope {_fmt(slope_week) if slope_week is not None else 'n/a'} per week)",
                )
            )
        a14, _ = s.window(s.last - cfg.slope_short_days + 1, s.last)
        short = _theil_sen(s.ords[a14:], s.vals[a14:]) if len(s.ords) - a14 >= cfg.slope_min_points else None
        if slope is not None or short is not None:
            state_reasons.append(
                Reason(
                    code="trend",
                    detail=f"Theil-Sen slope {_fmt(7 * short) if short is not None else 'n/a'} per week over "
                    f"{cfg.slope_short_days} days, {_fmt(7 * slope) if slope is not None else 'n/a'} over "
                    f"{cfg.slope_long_days} days",
                )
            )
        if baseline is not None:
            state_reasons.append(
                Reason(code="baseline", detail=f"baseline index {_fmt(baseline)} ({base_src}), index MCID {_fmt(mcid)}")
            )
        state_reasons.extend(self.measure_reasons(s.last - s.first, readings))
        self.reasons = state_reasons
        change = round(100.0 * (current - baseline) / baseline, 1) if baseline else None
        return self.assessment(state, current, baseline, change, slope_week, day_index)

    def without_checkins(
        self,
        day_index: dict[date, float],
        red: Reason | None,
        spread_ep: _Episode | None,
        grip_ep: _Episode | None,
        act_ep: _Episode | None,
    ) -> Assessment:
        if act_ep is not None:
            reason = Reason(code="activity_declined", detail=act_ep.detail)
            self.signal(SignalCode.activity_decline, act_ep.start, act_ep.detected, [reason])
        if grip_ep is not None:
            reason = Reason(code="grip_drop", detail=grip_ep.detail)
            self.signal(SignalCode.regression, grip_ep.start, grip_ep.detected, [reason])
        if red is not None:
            state = TrajectoryState.red_flag
            self.reasons.append(red)
        elif spread_ep is not None or grip_ep is not None:
            state = TrajectoryState.worsening
            self.reasons.extend(
                r for sig in self.signals if sig.code is not SignalCode.activity_decline for r in sig.reasons
            )
        else:
            state = TrajectoryState.insufficient_data
        self.reasons.append(Reason(code="insufficient_data", detail=f"0 scored days (need {self.cfg.min_scored_days})"))
        return self.assessment(state, None, None, None, None, day_index)

    def assessment(
        self,
        state: TrajectoryState,
        current: float | None,
        baseline: float | None,
        change: float | None,
        slope_week: float | None,
        day_index: dict[date, float],
    ) -> Assessment:
        """Signals sorted by code so the output does not depend on evaluation order."""
        return Assessment(
            state=state,
            as_of=self.as_of,
            symptom_index=current,
            baseline_symptom_index=baseline,
            change_from_baseline_pct=change,
            slope_per_week=slope_week,
            reasons=tuple(self.reasons),
            signals=tuple(sorted(self.signals, key=lambda g: g.code.value)),
            day_index=day_index,
        )
