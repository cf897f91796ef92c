"""The scoring engine: an incremental fold of a patient's daily series into an assessment.

Pure and deterministic: no I/O, no clock (the event-time `as_of` is an argument), no randomness.

    eng = Engine.of(profile)                 # the patient's enrolment + clinical profile
    state = eng.initial()
    state = eng.step(state, day)             # O(1) in the length of history
    state = eng.fold(state, days)            # days in strictly increasing date order
    a = eng.assess(state, as_of)             # trajectory state, reasons and signals as of as_of

Late data: a day may only be stepped after the state's `last_date`. A late or changed day rewinds
to the state before it and replays forward: `Snapshots` keeps bounded per-day states (what the
shell persists), `History.ingest` is the reference implementation of that loop in memory.
`to_json`/`from_json` (services.scoring.state) serialise a state; `ENGINE_VERSION` and the
profile's `version` are stamped on every state and assessment.

`score(profile, days, as_of)` is the whole-series compatibility entry point: a fold over the
de-duplicated days up to the local date of as_of. Definitions: docs/clinical-logic.md.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import date, datetime
from zoneinfo import ZoneInfo

from services.scoring import precedence
from services.scoring.daily import local_day
from services.scoring.detectors import DETECTORS
from services.scoring.detectors.base import AssessCtx, Finding, Patient, StepCtx, index_of
from services.scoring.detectors.symptoms import slope
from services.scoring.model import Assessment, DayRecord, PatientProfile
from services.scoring.profile import ENGINE_VERSION, ClinicalProfile, ProfileOverride, profile_for
from services.scoring.state import STATE_SCHEMA_VERSION, EngineState, StateVersionError, from_json, to_json

__all__ = [
    "ENGINE_VERSION",
    "Engine",
    "EngineState",
    "History",
    "IncompatibleState",
    "OutOfOrderDay",
    "Snapshots",
    "StateVersionError",
    "dedupe",
    "from_json",
    "score",
    "symptom_index",
    "thin",
    "to_json",
]

_UTC = ZoneInfo("UTC")
if tuple(f.name for f in fields(EngineState))[4:] != tuple(d.name for d in DETECTORS):
    raise RuntimeError("EngineState fields must follow DETECTORS order")
_FLOOR = datetime.min.replace(tzinfo=_UTC)


class OutOfOrderDay(ValueError):
    """A day stepped on or before the state's last date: rewind to a snapshot before it instead."""


class IncompatibleState(ValueError):
    """A state produced by another engine or profile version: re-fold the history instead."""


def symptom_index(day: DayRecord, clinical: ClinicalProfile | None = None) -> float | None:
    """0-100 composite of the day's 0-10 items with the profile's weights (default profile if None),
    None if no weighted item was reported."""
    w = (clinical or profile_for("", "")).weights()
    return index_of(day.pain, day.tingling, day.numbness, day.weakness, w)


@dataclass(frozen=True, slots=True)
class Engine:
    """The engine bound to one patient: enrolment profile and clinical profile (cheap to build)."""

    patient: Patient

    @staticmethod
    def of(
        profile: PatientProfile, clinical: ClinicalProfile | None = None, override: ProfileOverride | None = None
    ) -> Engine:
        """`clinical` None means `profile_for(condition, treatment, override)`."""
        cp = clinical if clinical is not None else profile_for(profile.condition, profile.treatment, override)
        return Engine(Patient.of(profile, cp))

    @property
    def profile_version(self) -> str:
        return self.patient.clinical.version

    def initial(self) -> EngineState:
        return EngineState(
            STATE_SCHEMA_VERSION,
            ENGINE_VERSION,
            self.profile_version,
            None,
            *(d.initial(self.patient) for d in DETECTORS),
        )

    def compatible(self, state: EngineState) -> bool:
        """Whether `state` was produced by this engine version with this clinical profile."""
        return state.engine_version == ENGINE_VERSION and state.profile_version == self.profile_version

    def step(self, state: EngineState, day: DayRecord) -> EngineState:
        """The state after `day`. Raises OutOfOrderDay unless day.date > state.last_date, and
        IncompatibleState for a state of another engine or profile version."""
        if state.last_date is not None and day.date <= state.last_date:
            raise OutOfOrderDay(f"day {day.date.isoformat()} is not after {state.last_date.isoformat()}")
        if not self.compatible(state):
            raise IncompatibleState(
                f"state of engine {state.engine_version} / profile {state.profile_version}, engine is "
                f"{ENGINE_VERSION} / {self.profile_version}"
            )
        ctx = StepCtx(self.patient, day, day.date.toordinal(), state)
        now = ctx.now
        for d in DETECTORS:
            now[d.name] = d.step(getattr(state, d.name), ctx)
        # EngineState's detector fields are in DETECTORS order (checked at import below).
        return EngineState(STATE_SCHEMA_VERSION, ENGINE_VERSION, state.profile_version, day.date, *now.values())

    def fold(self, state: EngineState, days: Iterable[DayRecord]) -> EngineState:
        """Step every day in order (dates strictly increasing, all after state.last_date)."""
        for day in days:
            state = self.step(state, day)
        return state

    def fold_states(self, state: EngineState, days: Iterable[DayRecord]) -> list[EngineState]:
        """The state after each day (for per-day snapshots)."""
        out: list[EngineState] = []
        for day in days:
            state = self.step(state, day)
            out.append(state)
        return out

    def findings(self, state: EngineState, as_of: datetime) -> list[Finding]:
        return self._findings(state, as_of)[0]

    def _findings(self, state: EngineState, as_of: datetime) -> tuple[list[Finding], AssessCtx]:
        cp = self.patient.clinical
        sym = state.symptoms
        ctx = AssessCtx(
            self.patient,
            as_of,
            local_day(as_of, self.patient.tz).toordinal(),
            state,
            slope(sym, cp.slope_short_days, cp.slope_min_points),
            slope(sym, cp.slope_long_days, cp.slope_min_points),
        )
        return [f for d in DETECTORS for f in d.findings(getattr(state, d.name), ctx)], ctx

    def assess(self, state: EngineState, as_of: datetime) -> Assessment:
        """The assessment as of event time `as_of` (aware) from the state. Signals are reported on
        every call while their condition holds, with stable since/event_time."""
        found, ctx = self._findings(state, as_of)
        traj_state, reasons = precedence.decide(found)
        sym = state.symptoms
        baseline, _ = sym.baseline(self.patient) if sym.last is not None else (None, "")
        current = round(sym.ewma, 1) if sym.ewma is not None else None
        long = ctx.slope_long
        change = round(100.0 * (current - baseline) / baseline, 1) if baseline and current is not None else None
        return Assessment(
            state=traj_state,
            as_of=as_of,
            symptom_index=current,
            baseline_symptom_index=baseline if sym.last is not None else None,
            change_from_baseline_pct=change,
            slope_per_week=round(7.0 * long, 2) if long is not None else None,
            reasons=reasons,
            signals=precedence.signals(found),
            day_index=dict(sym.tail),
            engine_version=ENGINE_VERSION,
            profile_version=state.profile_version,
        )


# ----- snapshots and rewinds -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Snapshots:
    """Per-day engine states of one patient, oldest first, covering at most `keep_days` days.

    `before(day)` is the state to rewind to when `day` (or a later one) changed: the newest
    snapshot whose last_date is before `day`; None when the change is older than every snapshot
    (replay the whole stored history from `Engine.initial()`). `with_states` records the states
    of a replay, dropping the snapshots it superseded. Serialise with `[to_json(s) for s in states]`.

    `every` thins the snapshots: oldest first, a state is kept only if it is at least `every` days
    after the previous kept one, and the newest state is always kept. With `every` k a rewind
    replays at most k - 1 days more than with per-day snapshots, and at most about keep_days / k + 2
    states are held.
    """

    keep_days: int = 35
    states: tuple[EngineState, ...] = ()
    every: int = 1

    def before(self, day: date) -> EngineState | None:
        for s in reversed(self.states):
            if s.last_date is not None and s.last_date < day:
                return s
        return None

    def with_states(self, states: Sequence[EngineState]) -> Snapshots:
        if not states:
            return self
        first = states[0].last_date
        kept = [s for s in self.states if first is None or (s.last_date is not None and s.last_date < first)]
        merged = [*kept, *states]
        newest = merged[-1].last_date
        if newest is not None:
            horizon = newest.toordinal() - self.keep_days
            merged = [s for s in merged if s.last_date is not None and s.last_date.toordinal() > horizon]
        keep = thin([s.last_date for s in merged], self.every)
        return Snapshots(self.keep_days, tuple(merged[i] for i in keep), self.every)


def thin(dates: Sequence[date | None], every: int) -> list[int]:
    """Indexes of the snapshots `Snapshots` keeps out of `dates` (oldest first): the first, every
    later one at least `every` days after the previous kept one, and always the newest."""
    if every <= 1 or len(dates) <= 1:
        return list(range(len(dates)))
    out: list[int] = []
    prev: int | None = None
    for i, d in enumerate(dates[:-1]):
        o = d.toordinal() if d is not None else None
        if o is None or prev is None or o - prev >= every:
            out.append(i)
            prev = o
    out.append(len(dates) - 1)
    return out


@dataclass(frozen=True, slots=True)
class History:
    """In-memory reference of the shell's incremental loop: stored days, snapshots, current state.

    `ingest` adds or replaces days (any batch, any order, late days included): when every new
    day is after the current state it steps forward; otherwise it rewinds to the snapshot before
    the earliest changed day (or to the initial state) and replays the stored days from there.
    The result equals one fold over the sorted days.
    """

    engine: Engine
    state: EngineState
    snapshots: Snapshots = field(default_factory=Snapshots)
    days: Mapping[date, DayRecord] = field(default_factory=dict)

    @staticmethod
    def start(engine: Engine, keep_days: int = 35, every: int = 1) -> History:
        return History(engine, engine.initial(), Snapshots(keep_days, (), every), {})

    def ingest(self, batch: Iterable[DayRecord]) -> History:
        new = dedupe(batch)
        if not new:
            return self
        days = dict(self.days)
        for d in new:
            cur = days.get(d.date)
            days[d.date] = d if cur is None or _rank(d) >= _rank(cur) else cur
        earliest = new[0].date
        last = self.state.last_date
        if last is None or earliest > last:
            base = self.state
        else:
            found = self.snapshots.before(earliest)
            base = found if found is not None else self.engine.initial()
        start = base.last_date
        replay = [days[k] for k in sorted(days) if start is None or k > start]
        states = self.engine.fold_states(base, replay)
        return History(
            self.engine,
            states[-1] if states else base,
            self.snapshots.with_states(states),
            days,
        )


# ----- whole-series compatibility ------------------------------------------------------------------


def _rank(d: DayRecord) -> tuple[int, datetime, str, int]:
    return (d.checkins, d.last_received_at or _FLOOR, d.last_event_id or "", d.steps or 0)


def dedupe(days: Iterable[DayRecord], until: date | None = None) -> list[DayRecord]:
    """One record per date (most check-ins, then newest receipt, wins), sorted, none after `until`."""
    best: dict[date, DayRecord] = {}
    for d in days:
        if until is not None and d.date > until:
            continue
        cur = best.get(d.date)
        if cur is None or _rank(d) > _rank(cur):
            best[d.date] = d
    return [best[k] for k in sorted(best)]


def score(
    profile: PatientProfile,
    days: Sequence[DayRecord],
    as_of: datetime,
    clinical: ClinicalProfile | None = None,
) -> Assessment:
    """Assess a patient as of event time `as_of` from their daily records (a fold from scratch).

    `days` may be in any order and overlap (de-duplicated by date: most check-ins, then newest
    receipt, wins); days after the local date of `as_of` are ignored. `clinical` None means the
    default profile for the patient's condition and treatment.
    """
    eng = Engine.of(profile, clinical)
    today = local_day(as_of, eng.patient.tz)
    return eng.assess(eng.fold(eng.initial(), dedupe(days, today)), as_of)
