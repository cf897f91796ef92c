"""Plain data of the RTM billing engine: tenant settings, inputs read from scoring's tables, results.

Pure, immutable values (frozen dataclasses); no I/O. Rules and their sources: docs/billing.md.
Dates are local calendar dates in the patient's time zone; instants are aware datetimes (UTC).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from enum import StrEnum

from schemas.billing import BillingCode, TimeEntryActivity
from schemas.billing import DataDaySource as DataDaySource
from schemas.billing import VersionReason as VersionReason

PERIOD_DAYS = 30  # a device-supply period: 30 consecutive local days
SUPPLY_HIGH_MIN_DAYS = 16  # 98977: 16-30 data days
SUPPLY_LOW_MIN_DAYS = 2  # 98985: 2-15 data days
SETUP_MIN_DAYS = 2  # 98975: at least 2 data days in a 30-day period
MGMT_LOW_MIN_MINUTES = 10  # 98979: 10-19 minutes
MGMT_FIRST_MINUTES = 20  # 98980: the first 20 minutes
MGMT_ADDON_MINUTES = 20  # 98981: each further 20 minutes


# The contract's enums (schemas/billing.py) are the engine's too.
Code = BillingCode
Activity = TimeEntryActivity
ALL_CODES = frozenset(Code)


class Source(StrEnum):
    """Where a data point came from."""

    checkin = "checkin"
    wearable = "wearable"


# Real-time interactive communication (synchronous audio, optionally with video) with the patient.
INTERACTIVE_ACTIVITIES = frozenset({Activity.patient_call, Activity.patient_video})


@dataclass(frozen=True, slots=True)
class BillingSettings:
    """A tenant's billing settings; the defaults apply when a tenant stored none.

    `grace_days`: a calendar month's time entries can be added, corrected and deleted until
    `grace_days` local days after the month ended (docs/billing.md, "Open months").
    `at_risk_lead_days`: the open period is at risk when the days left minus the data days still
    needed for 16 is at most this.
    `count_data_before_enrolment`: whether data recorded on local days before the patient's
    enrolment count (off: a backfill of history from before NerveWatch monitored the patient is
    not RTM by this practice).
    """

    data_days_from: DataDaySource = DataDaySource.checkins
    enabled_codes: frozenset[Code] = ALL_CODES
    grace_days: int = 7
    at_risk_lead_days: int = 2
    count_data_before_enrolment: bool = False

    def enabled(self, code: Code) -> bool:
        return code in self.enabled_codes

    def counts(self, source: Source) -> bool:
        return source is Source.checkin or self.data_days_from is DataDaySource.checkins_and_wearables


_MONTH = re.compile(r"([0-9]{4})-(0[1-9]|1[0-2])")


@dataclass(frozen=True, slots=True, order=True)
class Month:
    """A calendar month (`YYYY-MM`)."""

    year: int
    month: int

    @classmethod
    def parse(cls, text: str) -> Month:
        """`YYYY-MM` (years 2000-9998); else ValueError."""
        m = _MONTH.fullmatch(text)
        if m is None or not 2000 <= int(m.group(1)) <= 9998:
            raise ValueError("must be a month YYYY-MM")
        return cls(int(m.group(1)), int(m.group(2)))

    @classmethod
    def of(cls, day: date) -> Month:
        return cls(day.year, day.month)

    @property
    def first_day(self) -> date:
        return date(self.year, self.month, 1)

    def next(self) -> Month:
        return Month(self.year + 1, 1) if self.month == 12 else Month(self.year, self.month + 1)

    def contains(self, day: date) -> bool:
        return day.year == self.year and day.month == self.month

    def __str__(self) -> str:
        return f"{self.year:04d}-{self.month:02d}"


# -- inputs ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DataDay:
    """A local day with at least one data point of `source`; `known_since` is when the first such
    point reached scoring's store (used to tell late data from a recomputation: a day that was
    already known when a version was recorded but is new in the next one was not late)."""

    day: date
    source: Source
    known_since: datetime


@dataclass(frozen=True, slots=True)
class TimeEntry:
    """Management time as the engine sees it (no note)."""

    id: str
    member_id: str
    started_at: datetime
    minutes: int
    activity: Activity
    interactive: bool

    @property
    def counts_as_interactive(self) -> bool:
        return self.interactive and self.activity in INTERACTIVE_ACTIVITIES


@dataclass(frozen=True, slots=True)
class PeriodVersion:
    """Recorded figures of a closed period. Versions of one period are numbered 1, 2, ...; a new
    version never replaces an old one."""

    start: date
    version: int
    data_dates: tuple[date, ...]
    supply_code: Code | None
    recorded_at: datetime
    reason: VersionReason
    data_days_from: DataDaySource

    @property
    def end(self) -> date:
        return self.start + timedelta(days=PERIOD_DAYS - 1)

    @property
    def data_days(self) -> int:
        return len(self.data_dates)


# -- results --------------------------------------------------------------------------------------


class RiskStatus(StrEnum):
    reached = "reached"  # 16 data days already
    on_track = "on_track"  # more slack than the lead
    at_risk = "at_risk"  # days left - days needed <= lead
    unreachable = "unreachable"  # fewer days left than needed


@dataclass(frozen=True, slots=True)
class DataDaysRisk:
    status: RiskStatus
    needed: int  # data days still needed for 16
    remaining: int  # days of the period still without data, today included
    slack: int  # remaining - needed


@dataclass(frozen=True, slots=True)
class Period:
    start: date
    end: date
    data_days: int
    supply_code: Code | None
    closed: bool
    data_days_possible: int | None = None  # open periods only
    risk: DataDaysRisk | None = None  # open periods only
    version: PeriodVersion | None = None  # closed periods: the current version
    previous_versions: tuple[PeriodVersion, ...] = ()


@dataclass(frozen=True, slots=True)
class MonthFigures:
    month: Month
    minutes: int
    interactive: bool
    management_codes: tuple[Code, ...]
    closed: bool


@dataclass(frozen=True, slots=True)
class PeriodsResult:
    """Periods of one patient and what the shell must persist: the anchor to freeze (when the first
    period has closed and none is frozen yet) and the new versions of closed periods."""

    monitoring_started: date | None
    periods: tuple[Period, ...]
    setup_code_eligible: bool
    setup_period_start: date | None
    freeze_anchor: date | None = None
    new_versions: tuple[PeriodVersion, ...] = ()
    data_days_before_start: int = 0  # counted data days before a frozen anchor (late backfill)


@dataclass(frozen=True, slots=True)
class BillingSummary:
    patient_id: str
    as_of: datetime
    settings: BillingSettings
    periods: PeriodsResult
    months: tuple[MonthFigures, ...] = field(default=())
