"""Daily series in event time: assign observations to the patient's local days and aggregate.

Pure functions; no I/O, no clock. (Skeleton version: to be refined by the scoring issue.)
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from datetime import date, datetime
from zoneinfo import ZoneInfo

from services.scoring.model import ActivityObs, CheckinObs, DayRecord


def local_day(ts: datetime, tz: ZoneInfo) -> date:
    """The patient's local calendar date of an event-time instant."""
    return ts.astimezone(tz).date()


def activity_day(sample: ActivityObs, tz: ZoneInfo) -> date:
    """A sample counts on the local day that holds its midpoint."""
    return local_day(sample.start + (sample.end - sample.start) / 2, tz)


def _median(values: Sequence[float | int | None]) -> float | None:
    present = [float(v) for v in values if v is not None]
    return statistics.median(present) if present else None


def aggregate_day(day: date, checkins: Sequence[CheckinObs], activity: Sequence[ActivityObs]) -> DayRecord:
    """Aggregate one local day. Input order does not matter (sorted by event time here)."""
    cs = sorted(checkins, key=lambda c: (c.recorded_at, c.event_id))
    flagged = [c for c in cs if c.red_flags]
    steps = [a.value for a in activity if a.type == "steps"]
    last = cs[-1] if cs else None
    return DayRecord(
        date=day,
        checkins=len(cs),
        pain=_median([c.pain for c in cs]),
        tingling=_median([c.tingling for c in cs]),
        numbness=_median([c.numbness for c in cs]),
        weakness=_median([c.weakness for c in cs]),
        red_flags=tuple(sorted({f for c in flagged for f in c.red_flags})),
        red_flag_event_id=flagged[0].event_id if flagged else None,
        red_flag_recorded_at=flagged[0].recorded_at if flagged else None,
        pt_session=any(c.pt_session_ended_at is not None for c in cs),
        steps=int(sum(steps)) if steps else None,
        last_event_id=last.event_id if last else None,
        last_recorded_at=last.recorded_at if last else None,
        last_received_at=last.received_at if last else None,
    )
