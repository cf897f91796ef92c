"""Daily series in event time: assign observations to the patient's local days and aggregate.

Pure functions; no I/O, no clock. Aggregation rules (see docs/clinical-logic.md):

- Symptom items (pain, tingling, numbness, weakness): median of the day's check-ins (the mean of
  two), so the number of check-ins a day does not bias the index and one contradictory check-in
  cannot dominate.
- pain_worst, night_wakings, analgesic_doses: maximum (each already covers a 24 h / overnight span).
- Grip strength: maximum of the day's check-in readings (`grip_strength_kg`) and, separately, the
  maximum of dynamometer samples (`device_grip_strength_kg`); the engine prefers the device.
- Function score: the newest check-in that carries one.
- Red flags: union of the day's flags; event id/time of the FIRST check-in reporting one, and
  every reporting check-in in `red_flag_obs` (plus the red flags of conflicting versions of the
  day's event ids, which must page too). Spreading numbness: the first reporting check-in.
  `last_*`: the newest check-in.
- Wearable counts (steps, active/sleep minutes, sleep interruptions): summed per device without
  double counting overlapping samples of one device, then the maximum across devices.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date, datetime
from zoneinfo import ZoneInfo

from services.scoring.model import ActivityObs, CheckinObs, DayRecord, RedFlagObs

_COUNT_TYPES = ("steps", "active_minutes", "sleep_minutes", "sleep_interruptions")


def local_day(ts: datetime, tz: ZoneInfo) -> date:
    """The patient's local calendar date of an event-time instant (`ts` must be aware)."""
    return ts.astimezone(tz).date()


def activity_day(sample: ActivityObs, tz: ZoneInfo) -> date:
    """The local day a sample counts on: the day holding its midpoint (a sample is never split)."""
    return local_day(sample.start + (sample.end - sample.start) / 2, tz)


def _median(values: Iterable[float | int | None]) -> float | None:
    present = sorted(float(v) for v in values if v is not None)
    n = len(present)
    if n == 0:
        return None
    mid = n // 2
    return present[mid] if n % 2 else (present[mid - 1] + present[mid]) / 2.0


def _max(values: Iterable[float | int | None]) -> float | None:
    present = [float(v) for v in values if v is not None]
    return max(present) if present else None


def _device_total(samples: list[ActivityObs]) -> float:
    """Total of one device's samples of one type, counting overlapping samples once.

    Samples are grouped into clusters of time-overlapping intervals. A cluster counts the larger of
    its largest single sample and the sum of a greedy set of mutually disjoint samples (earliest end
    first), so a day total sent alongside hourly samples, or a re-sent sample, is not added twice.
    """
    samples.sort(key=lambda s: (s.start, s.end, s.event_id))
    total = 0.0
    cluster: list[ActivityObs] = []
    cluster_end: datetime | None = None
    for s in samples:
        if cluster_end is not None and (s.start < cluster_end or s.start == cluster[-1].start):
            cluster.append(s)
            cluster_end = max(cluster_end, s.end)
            continue
        total += _cluster_value(cluster)
        cluster = [s]
        cluster_end = s.end
    return total + _cluster_value(cluster)


def _cluster_value(cluster: list[ActivityObs]) -> float:
    if not cluster:
        return 0.0
    if len(cluster) == 1:
        return cluster[0].value
    disjoint = 0.0
    last_end: datetime | None = None
    for s in sorted(cluster, key=lambda s: (s.end, s.start, s.event_id)):
        if last_end is None or (s.start >= last_end and s.start != s.end):
            disjoint += s.value
            last_end = s.end
    return max(disjoint, max(s.value for s in cluster))


def replace_flags(obs: RedFlagObs) -> RedFlagObs:
    """`obs` with its flags sorted and de-duplicated (the canonical form compared by alerts)."""
    return RedFlagObs(obs.event_id, obs.recorded_at, obs.received_at, tuple(sorted(set(obs.flags))))


def _grip_key(a: ActivityObs) -> tuple[float, datetime, str]:
    return (a.value, a.end, a.event_id)


def aggregate_day(
    day: date,
    checkins: Sequence[CheckinObs],
    activity: Sequence[ActivityObs],
    conflicting_red_flags: Sequence[RedFlagObs] = (),
) -> DayRecord:
    """Aggregate the check-ins and samples the caller assigned to local day `day`.

    Input order does not matter; duplicate event ids count once. `conflicting_red_flags` are the
    red flags of other versions of event ids (a repost with different content): they add to
    `red_flag_obs` and `red_flags` but to nothing else. See the module docstring for the rule of
    each field.
    """
    cs = sorted({c.event_id: c for c in checkins}.values(), key=lambda c: (c.recorded_at, c.event_id))
    flagged = next((c for c in cs if c.red_flags), None)
    red_obs = {
        (o.event_id, o.flags): o
        for o in [
            *(
                RedFlagObs(c.event_id, c.recorded_at, c.received_at, tuple(sorted(set(c.red_flags))))
                for c in cs
                if c.red_flags
            ),
            *(replace_flags(o) for o in conflicting_red_flags if o.flags),
        ]
    }
    spreading = next((c for c in cs if c.numbness_spreading), None)
    with_function = [c for c in cs if c.function_instrument is not None and c.function_score is not None]
    function = with_function[-1] if with_function else None
    sessions = [(c.pt_session_ended_at, c.recorded_at, c) for c in cs if c.pt_session_ended_at is not None]
    session = max(sessions, key=lambda t: (t[0], t[1]))[2] if sessions else None
    last = cs[-1] if cs else None

    by_type_device: dict[tuple[str, str], list[ActivityObs]] = {}
    rhr: list[float] = []
    grip_sample: ActivityObs | None = None
    last_end: datetime | None = None
    for a in {a.event_id: a for a in activity}.values():
        last_end = a.end if last_end is None else max(last_end, a.end)
        if a.type in _COUNT_TYPES:
            by_type_device.setdefault((a.type, a.device_id), []).append(a)
        elif a.type == "resting_heart_rate":
            rhr.append(a.value)
        elif a.type == "grip_strength_kg" and (grip_sample is None or _grip_key(a) > _grip_key(grip_sample)):
            grip_sample = a
    counts: dict[str, float] = {}
    for (kind, _device), samples in sorted(by_type_device.items()):
        counts[kind] = max(counts.get(kind, 0.0), _device_total(samples))

    def count(kind: str) -> int | None:
        value = counts.get(kind)
        return round(value) if value is not None else None

    return DayRecord(
        date=day,
        checkins=len(cs),
        pain=_median(c.pain for c in cs),
        pain_worst=_max(c.pain_worst for c in cs),
        tingling=_median(c.tingling for c in cs),
        numbness=_median(c.numbness for c in cs),
        weakness=_median(c.weakness for c in cs),
        night_wakings=_max(c.night_wakings for c in cs),
        grip_strength_kg=_max(c.grip_strength_kg for c in cs),
        function_instrument=function.function_instrument if function else None,
        function_score=function.function_score if function else None,
        analgesic_doses=_max(c.analgesic_doses for c in cs),
        numbness_spreading=spreading is not None,
        spreading_event_id=spreading.event_id if spreading else None,
        spreading_recorded_at=spreading.recorded_at if spreading else None,
        red_flags=tuple(sorted({f for o in red_obs.values() for f in o.flags})),
        red_flag_event_id=flagged.event_id if flagged else None,
        red_flag_recorded_at=flagged.recorded_at if flagged else None,
        red_flag_obs=tuple(sorted(red_obs.values(), key=lambda o: (o.recorded_at, o.event_id, o.flags))),
        pt_session=session is not None,
        pt_session_ended_at=session.pt_session_ended_at if session else None,
        pt_intensity=session.pt_intensity if session else None,
        steps=count("steps"),
        active_minutes=count("active_minutes"),
        sleep_minutes=count("sleep_minutes"),
        sleep_interruptions=count("sleep_interruptions"),
        resting_heart_rate=_median(rhr),
        device_grip_strength_kg=grip_sample.value if grip_sample else None,
        device_grip_recorded_at=grip_sample.end if grip_sample else None,
        last_sample_end=last_end,
        last_event_id=last.event_id if last else None,
        last_recorded_at=last.recorded_at if last else None,
        last_received_at=last.received_at if last else None,
    )
