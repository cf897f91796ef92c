"""Rules for recording, correcting and deleting time entries. Pure; the clock is an argument.

An entry covers [started_at, started_at + minutes). It must have ended by now (an entry is time
spent, not planned: `started_at` and its end at most `MAX_FUTURE_SKEW` ahead of the clock, for
client clocks that run fast); `interactive` is only true for a call or a video (real-time
communication); its month must be open (`engine.month_is_open`), and when a correction moves it,
both its old and its new month. Entries of one member never overlap (checked by the shell, which
holds the data; `overlaps` is the rule).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo

from schemas.common import MAX_FUTURE_SKEW
from services.scoring.billing.engine import month_is_open, month_of
from services.scoring.billing.model import INTERACTIVE_ACTIVITIES, Activity


@dataclass(frozen=True, slots=True)
class EntryProblem:
    """Why an entry is refused: a 422 (with the field) or a 409 (the month is closed)."""

    status: int
    slug: str
    title: str
    detail: str
    loc: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class EntryFields:
    """The fields of an entry the rules judge."""

    member_id: str
    started_at: datetime
    minutes: int
    activity: Activity
    interactive: bool

    @property
    def ended_at(self) -> datetime:
        return self.started_at + timedelta(minutes=self.minutes)


def _invalid(loc: str, detail: str) -> EntryProblem:
    return EntryProblem(422, "validation", "Validation failed", detail, (loc,))


def month_closed(started_at: datetime, tz: tzinfo) -> EntryProblem:
    month = month_of(started_at, tz)
    return EntryProblem(
        409,
        "month-closed",
        "Month closed",
        f"time entries of {month} can no longer be added, corrected or deleted",
    )


def check_entry(entry: EntryFields, *, tz: tzinfo, now: datetime, grace_days: int) -> EntryProblem | None:
    """The first problem of a new or corrected entry at `now`, or None."""
    if entry.started_at - now > MAX_FUTURE_SKEW:
        return _invalid("started_at", "must not be in the future")
    if entry.ended_at - now > MAX_FUTURE_SKEW:
        return _invalid("minutes", "the entry must have ended: started_at plus minutes is in the future")
    if entry.interactive and entry.activity not in INTERACTIVE_ACTIVITIES:
        return _invalid("interactive", "only a patient_call or patient_video is an interactive communication")
    if not month_is_open(month_of(entry.started_at, tz), tz, now, grace_days):
        return month_closed(entry.started_at, tz)
    return None


def check_editable(started_at: datetime, *, tz: tzinfo, now: datetime, grace_days: int) -> EntryProblem | None:
    """Whether an existing entry (by its stored start) may still be corrected or deleted."""
    if not month_is_open(month_of(started_at, tz), tz, now, grace_days):
        return month_closed(started_at, tz)
    return None


def overlaps(a_start: datetime, a_minutes: int, b_start: datetime, b_minutes: int) -> bool:
    """Whether two entries' half-open intervals intersect (back to back is not an overlap)."""
    return a_start < b_start + timedelta(minutes=b_minutes) and b_start < a_start + timedelta(minutes=a_minutes)
