"""Post-activity flares: onset, settling, and persistence beyond the expected 72 h.

Triggers: a physical-therapy session (on the local date of `pt_session_ended_at`, at that instant)
or an unusually active day (activity detector; the whole day). The pre-trigger level is the 7-day level
of the day before the trigger, or for a patient improving by at least a quarter of a deterioration
MCID a week (14-day trend) the lower of that and the median of the last 5 scored days reported
before it (within a week), so that the flare is measured from where the patient is now; a rise
that had already begun before the trigger (a day or two before it that would have been an onset)
is not a flare (prior None). During a nerve repair's
regrowth phase the deterioration MCID is raised as for regression.

- Onset: a scored day reported after the trigger, within flare_trigger_days of it (or the first
  scored day after it, up to LATE_FIRST_DAYS later, or the second one within that reach), with the
  index >= max(1 deterioration MCID,
  flare_onset_noise_z x patient noise SD) above the pre-trigger level, or two such days in a row
  at ONSET_PAIR of that. No new flare while a regression or spreading numbness is active.
  A weakness rise >= flare_weakness_rise over the onset days is a new neurological sign instead.
- Settled: the median of the episode's last 3 days is within half a deterioration MCID of the prior.
- Persistent ("still there after 72 h"): from flare_judge_hours after the trigger (for a PT session,
  on a day whose newest check-in is at least that long after the session ended), the last two
  scored days are both >= max(flare_persist_det x det, flare_persist_noise_z x patient noise SD)
  above the prior (or pain flare_persist_pain points above the pre-trigger pain with the index at
  least det/2 up), or their mean is at that threshold with neither within det/2 of the prior; or
  flare_window_days after onset the median of the last 3 days is still > det/2 above it. The 72 h
  are counted from the trigger that opened the episode: a further session within them does not
  excuse a flare that has not settled.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from datetime import datetime

from schemas.trajectory import Signal, SignalCode
from services.scoring.detectors.base import (
    AssessCtx,
    Detector,
    Finding,
    Patient,
    StepCtx,
    day_of,
    fmt,
    median,
    reason,
)
from services.scoring.detectors.symptoms import Scored, SymptomState, slope
from services.scoring.model import DayRecord
from services.scoring.profile import ClinicalProfile

PT = "physical-therapy session"
#: A trigger also explains a rise on the first scored day after it up to this many days beyond
#: flare_trigger_days (the check-ins in between were missed).
LATE_FIRST_DAYS = 2
#: Two consecutive post-trigger days at this fraction of the onset threshold are an onset too.
ONSET_PAIR = 0.75
#: The pain rule of persistence applies up to this patient noise SD, in deterioration MCIDs.
PAIN_RULE_SIGMA = 0.75
ACTIVE_DAY = "unusually active day"


@dataclass(frozen=True, slots=True)
class Trigger:
    ord: int
    kind: str
    instant: float | None  # POSIX time the session ended; None: the whole day
    prior: float | None  # pre-trigger level; None: the trigger cannot explain a rise
    prior_pain: float | None = None  # median pain of the last scored days before the trigger
    seen: bool = False  # whether a scored day after the trigger has been judged


@dataclass(frozen=True, slots=True)
class FlareEpisode:
    trigger: int
    kind: str
    instant: float | None
    onset: int
    prior: float
    prior_pain: float | None
    det: float
    peak: float
    judge_from: int
    weak_before: float | None
    weak_during: tuple[float, ...]
    weakness_rise: bool
    onset_time: datetime | None
    onset_id: str | None
    end: int | None = None
    persistent_on: int | None = None
    persist_time: datetime | None = None
    persist_id: str | None = None

    def cover_end(self, grace: int, cover: int) -> int:
        """Last ordinal on which a rise is attributed to this flare rather than to regression."""
        if self.persistent_on is not None:
            return self.persistent_on - 1
        if self.end is not None:
            return self.end + grace
        return self.onset + cover


@dataclass(frozen=True, slots=True)
class FlareState:
    triggers: tuple[Trigger, ...] = ()  # triggers that can still explain a rise, oldest first
    episode: FlareEpisode | None = None  # the newest episode, open or settled

    def covers(self, o: int, patient: Patient) -> bool:
        """Whether a rise on ordinal `o` is attributed to a flare (no regression from A-days)."""
        ep = self.episode
        if ep is None or ep.weakness_rise:
            return False
        cp = patient.clinical
        return ep.onset <= o <= ep.cover_end(cp.flare_grace_days, cp.flare_cover_days)


def initial(patient: Patient) -> FlareState:
    return FlareState()


def _det(patient: Patient, baseline: float | None, o: int) -> float:
    """The deterioration MCID a flare is measured in; while a nerve repair's regrowth is on its way
    (dense numbness and weakness fluctuate near the top of their scales) at least
    regen_deterioration_mcids index MCIDs, as for regression."""
    cp = patient.clinical
    mcid = cp.index_mcid(baseline)
    det = cp.deterioration_mcid(mcid)
    if patient.course.regenerating(o):
        det = max(det, cp.regen_deterioration_mcids * mcid)
    return det


def _is_before(e_ord: int, e_ts: float, t: int, instant: float | None) -> bool:
    return e_ord < t or (e_ord == t and instant is not None and e_ts <= instant)


def _prior(sym: SymptomState, t: int, instant: float | None, det: float, patient: Patient) -> float | None:
    cp = patient.clinical
    before = [e for e in sym.recent if t - 7 <= e[0] <= t and _is_before(e[0], e[6], t, instant)]
    level = sym.level_between(t - cp.level_window_days, t - 1, cp.level_min_days)
    recent = median([e[1] for e in before[-5:]]) if len(before) >= 3 else None
    short = slope(sym, cp.slope_short_days, cp.slope_min_points)
    improving = short is not None and 7.0 * short <= -det / 4
    cands = [v for v in (level, recent if improving or level is None else None) if v is not None]
    if not cands:
        return None
    prior = min(cands)
    near = [e[1] for e in before if e[0] >= t - cp.flare_trigger_days]
    rise = max(det, cp.flare_onset_noise_z * sym.sigma)
    if near and near[-1] >= prior + rise:
        return None  # the rise had begun before the trigger: it would itself have been an onset
    if len(near) >= 2 and min(near[-2:]) >= prior + ONSET_PAIR * rise:
        return None
    return prior


def _prior_pain(sym: SymptomState, t: int, instant: float | None) -> float | None:
    pains = [e[2] for e in sym.recent if t - 7 <= e[0] <= t and _is_before(e[0], e[6], t, instant) and e[2] is not None]
    return median(pains[-5:]) if len(pains) >= 3 else None


def _second_after(sym: SymptomState, trig: Trigger) -> bool:
    """Whether the newest scored day is the second reported after the trigger (check-ins missed
    after it: the pair onset rule still applies to the first two reports)."""
    n = 0
    for e in reversed(sym.recent):
        if _is_before(e[0], e[6], trig.ord, trig.instant):
            break
        n += 1
        if n > 2:
            return False
    return n == 2


def _onset(sym: SymptomState, x: float, trig: Trigger, det: float, z: float) -> bool:
    """Today's rise is a flare onset: one day >= max(det, z sigma) above the prior, or today and the
    previous scored day after the trigger both >= max(ONSET_PAIR x det, ONSET_PAIR x z sigma)."""
    assert trig.prior is not None
    if x >= trig.prior + max(det, z * sym.sigma):
        return True
    if len(sym.recent) < 2:
        return False
    prev = sym.recent[-2]
    if _is_before(prev[0], prev[6], trig.ord, trig.instant):
        return False
    thr = trig.prior + ONSET_PAIR * max(det, z * sym.sigma)
    return x >= thr and prev[1] >= thr


def _new_triggers(rec: DayRecord, o: int, state: FlareState, ctx: StepCtx) -> list[tuple[int, str, float | None]]:
    out: list[tuple[int, str, float | None]] = []
    known = {t.ord for t in state.triggers}
    if rec.pt_session:
        ended = rec.pt_session_ended_at
        t = ended.astimezone(ctx.patient.tz).date().toordinal() if ended is not None else o
        if t not in known:
            out.append((t, PT, ended.timestamp() if ended is not None else None))
            known.add(t)
    if ctx.now["activity"].active_on == o and o not in known:
        out.append((o, ACTIVE_DAY, None))
    return out


def step(state: FlareState, ctx: StepCtx) -> FlareState:
    rec, cp, o, patient = ctx.rec, ctx.patient.clinical, ctx.o, ctx.patient
    ep0 = state.episode
    if (
        not state.triggers
        and not rec.pt_session
        and (ep0 is None or ep0.end is not None)
        and ctx.now["activity"].active_on != o
    ):
        return state  # nothing can start or change a flare today
    sym: SymptomState = ctx.now["symptoms"]
    triggers = state.triggers
    reach = cp.flare_trigger_days + LATE_FIRST_DAYS
    if triggers and triggers[0].ord < o - reach:
        triggers = tuple(t for t in triggers if t.ord >= o - reach)
    fresh = _new_triggers(rec, o, state, ctx)
    if fresh:
        baseline, _ = sym.baseline(patient)
        det = _det(patient, baseline, o)
        added = [
            Trigger(t, kind, instant, _prior(sym, t, instant, det, patient), _prior_pain(sym, t, instant))
            for t, kind, instant in fresh
        ]
        triggers = tuple(sorted((*triggers, *added), key=lambda t: t.ord))
    x = sym.x
    if x is None:
        return state if triggers is state.triggers else FlareState(triggers, state.episode)
    ts = sym.recent[-1][6]
    recent: Trigger | None = None
    for trig in reversed(triggers):
        near = (
            trig.ord >= o - cp.flare_trigger_days
            or (not trig.seen and trig.ord >= o - reach)
            or (trig.ord >= o - reach and _second_after(sym, trig))
        )
        if near and trig.ord <= o and not _is_before(o, ts, trig.ord, trig.instant):
            recent = trig
            break
    if any(not t.seen and t.ord <= o and not _is_before(o, ts, t.ord, t.instant) for t in triggers):
        triggers = tuple(
            Trigger(t.ord, t.kind, t.instant, t.prior, t.prior_pain, True)
            if not t.seen and not _is_before(o, ts, t.ord, t.instant)
            else t
            for t in triggers
        )
    judge_days = math.ceil(cp.flare_judge_hours / 24.0)
    ep = state.episode
    if ep is None or ep.end is not None:
        busy = ctx.prev.regression.episode is not None or ctx.now["spreading"].start is not None
        if busy or recent is None or recent.prior is None:
            return FlareState(triggers, ep)
        baseline, _ = sym.baseline(patient)
        det = _det(patient, baseline, o)
        if not _onset(sym, x, recent, det, cp.flare_onset_noise_z):
            return FlareState(triggers, ep)
        before = [e[5] for e in sym.recent[:-1] if e[5] is not None][-7:]
        weak_before = median(before) if before else None
        during0: tuple[float, ...] = (rec.weakness,) if rec.weakness is not None else ()
        rise = weak_before is not None and bool(during0) and median(during0) >= weak_before + cp.flare_weakness_rise
        new = FlareEpisode(
            trigger=recent.ord,
            kind=recent.kind,
            instant=recent.instant,
            onset=o,
            prior=recent.prior,
            prior_pain=recent.prior_pain,
            det=det,
            peak=x,
            judge_from=recent.ord + judge_days,
            weak_before=weak_before,
            weak_during=during0,
            weakness_rise=rise,
            onset_time=rec.last_recorded_at,
            onset_id=rec.last_event_id,
        )
        if _persists(new, sym, o, ts, cp):
            # Found only 72 h or more after the trigger (check-ins missed in between): the flare is
            # already known not to have settled.
            new = replace(new, persistent_on=o, persist_time=rec.last_recorded_at, persist_id=rec.last_event_id)
        return FlareState(triggers, new)
    # An open episode.
    during: tuple[float, ...] = ep.weak_during
    rise = ep.weakness_rise
    if o <= ep.onset + cp.flare_trigger_days and rec.weakness is not None:
        during = (*during, rec.weakness)
        rise = ep.weak_before is not None and median(during) >= ep.weak_before + cp.flare_weakness_rise
    peak = max(ep.peak, x)
    start = max(o - 2, ep.onset)
    last3 = [e[1] for e in sym.recent[-3:] if e[0] >= start]
    trigger, kind, instant, judge_from = ep.trigger, ep.kind, ep.instant, ep.judge_from
    end = ep.end
    persistent_on, p_time, p_id = ep.persistent_on, ep.persist_time, ep.persist_id
    if median(last3) <= ep.prior + ep.det / 2:
        end = o
    elif persistent_on is None:
        if _persists(ep, sym, o, ts, cp):
            persistent_on = o
        if persistent_on is None and o >= ep.onset + cp.flare_window_days and median(last3) > ep.prior + ep.det / 2:
            persistent_on = o
        if persistent_on is not None:
            p_time, p_id = rec.last_recorded_at, rec.last_event_id
    if (
        end is None
        and persistent_on is ep.persistent_on
        and peak == ep.peak
        and during is ep.weak_during
        and triggers is state.triggers
    ):
        return state  # nothing about the episode changed today
    new = FlareEpisode(
        trigger,
        kind,
        instant,
        ep.onset,
        ep.prior,
        ep.prior_pain,
        ep.det,
        peak,
        judge_from,
        ep.weak_before,
        during,
        rise,
        ep.onset_time,
        ep.onset_id,
        end,
        persistent_on,
        p_time,
        p_id,
    )
    return FlareState(triggers, new)


def _still_there(e: Scored, ep: FlareEpisode, sigma: float, cp: ClinicalProfile) -> bool:
    """Whether scored day `e` is still flared: the index >= max(flare_persist_det x det,
    flare_persist_noise_z x sigma) above the prior, or pain >= flare_persist_pain points above the
    pre-trigger pain with the index at least half a deterioration MCID up (a pain-led flare that
    the other items' noise dilutes in the composite; only for a patient whose noise SD is at most
    PAIN_RULE_SIGMA x det)."""
    if e[1] >= ep.prior + max(cp.flare_persist_det * ep.det, cp.flare_persist_noise_z * sigma):
        return True
    pain = e[2]
    return (
        sigma <= PAIN_RULE_SIGMA * ep.det  # not for noisy reporters: their pain alone swings that much
        and ep.prior_pain is not None
        and pain is not None
        and pain >= ep.prior_pain + cp.flare_persist_pain
        and e[1] >= ep.prior + ep.det / 2
    )


def _persists(ep: FlareEpisode, sym: SymptomState, o: int, ts: float, cp: ClinicalProfile) -> bool:
    """The 72 h rule on scored day o (newest check-in at POSIX time ts): judged from judge_from
    (for a PT session, once a check-in is flare_judge_hours after it ended), the last two scored
    days reported after the trigger are still flared, each or on average."""
    judged = ep.instant is None or ts >= ep.instant + cp.flare_judge_hours * 3600.0
    if o < ep.judge_from or not (judged or o >= ep.onset + cp.flare_window_days):
        return False
    last_two = [
        e for e in sym.recent if e[0] >= ep.judge_from - 1 and not _is_before(e[0], e[6], ep.trigger, ep.instant)
    ][-2:]
    return len(last_two) == 2 and (
        all(_still_there(e, ep, sym.sigma, cp) for e in last_two)
        or _still_there_on_average(last_two, ep, sym.sigma, cp)
    )


def _still_there_on_average(days: list[Scored], ep: FlareEpisode, sigma: float, cp: ClinicalProfile) -> bool:
    """Whether two scored days are still flared together: their mean index at the persistence
    threshold (max(flare_persist_det x det, flare_persist_noise_z x sigma) above the prior) and
    neither back within half a deterioration MCID of it (one low report of a noisy reporter does
    not settle a flare), and the mean more than half a deterioration MCID above the recovered
    threshold (not a wobble within mild residual symptoms)."""
    mean = sum(e[1] for e in days) / len(days)
    if mean <= cp.recovered_index + ep.det / 2:
        return False  # within mild residual symptoms
    return mean >= ep.prior + max(cp.flare_persist_det * ep.det, cp.flare_persist_noise_z * sigma) and all(
        e[1] >= ep.prior + ep.det / 2 for e in days
    )


def findings(state: FlareState, ctx: AssessCtx) -> tuple[Finding, ...]:
    ep = state.episode
    if ep is None or ep.end is not None:
        return ()
    reg = ctx.states.regression
    if reg.episode is not None and reg.episode.detected <= ep.onset:
        return ()  # the rise is a regression, not a reaction to the trigger
    cp = ctx.patient.clinical
    sym: SymptomState = ctx.states.symptoms
    last = sym.last if sym.last is not None else ep.onset
    when = day_of(ep.trigger).isoformat()
    if ep.persistent_on is not None:
        now = sym.recent[-1][1] if sym.recent else ep.peak
        detail = (
            f"flare after {ep.kind} on {when}: index {fmt(ep.prior)} -> {fmt(now)}, not settled after "
            f"{last - ep.onset} days (deterioration MCID {fmt(ep.det)})"
        )
        why = reason("flare_not_settled", detail)
        persisting = Signal(
            code=SignalCode.persistent_flare,
            since=day_of(ep.persistent_on),
            event_time=ep.persist_time or ctx.as_of,
            event_id=ep.persist_id,
            reasons=[why],
        )
        return (Finding("persistent_flare", (why,), persisting, ep.persistent_on),)
    if last > ep.onset + cp.flare_cover_days:
        return ()
    if ep.weakness_rise:
        why = reason("weakness_rise", "weakness rose with a post-activity flare (new neurological sign)")
        return (Finding("flare_weakness_rise", (why,)),)
    detail = (
        f"index {fmt(ep.prior)} -> {fmt(ep.peak)} within {ep.onset - ep.trigger} days of {ep.kind} on {when}, "
        f"expected to settle within {fmt(cp.flare_judge_hours)} h"
    )
    why = reason("flare_after_activity", detail)
    signal: Signal | None = None
    if last <= ep.trigger + cp.flare_window_days:
        signal = Signal(
            code=SignalCode.flare_window,
            since=day_of(ep.onset),
            event_time=ep.onset_time or ctx.as_of,
            event_id=ep.onset_id,
            reasons=[why],
        )
    return (Finding("flare", (why,), signal, ep.onset),)


DETECTOR: Detector[FlareState] = Detector("flare", initial, step, findings)
