"""The RTM billing rules: device-supply periods, data days, management minutes and codes.

Pure and deterministic: no I/O, the clock (`now`) and the patient's time zone are arguments.
The rules and their sources are in docs/billing.md; in short:

- A data day is a distinct local calendar day (patient's time zone) with at least one counted
  data point (check-ins, and wearable samples when the tenant counts them).
- Device-supply periods are 30 consecutive local days, the first starting on the first counted
  data day (`monitoring_started`), each next one the day after the previous ends. 16-30 data days
  → 98977, 2-15 → 98985, else none (mutually exclusive). A period is closed once its last local
  day has ended in the patient's time zone.
- A closed period's figures are recorded as versions: the first computation after it closed is
  version 1, and any later difference (late data, a settings or time-zone change) is a new
  version; old versions are kept. Once a period has closed, `monitoring_started` is frozen too,
  so later backfill before it cannot shift the periods already recorded.
- Management time per calendar month (local, by each entry's start): 10-19 minutes → 98979,
  20-39 → 98980, 40-59 → 98980 + 98981, each further 20 → one more 98981; nothing without a
  real-time interactive communication (a `patient_call` or `patient_video` entry marked
  `interactive`) in the month.
- 98975 (set-up, once per episode): eligible when a period reaches at least 2 data days.

Disabled codes are never reported; 98981 is an add-on of 98980 and is not reported without it.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, date, datetime, time, timedelta, tzinfo

from services.scoring.billing.model import (
    MGMT_ADDON_MINUTES,
    MGMT_FIRST_MINUTES,
    MGMT_LOW_MIN_MINUTES,
    PERIOD_DAYS,
    SETUP_MIN_DAYS,
    SUPPLY_HIGH_MIN_DAYS,
    SUPPLY_LOW_MIN_DAYS,
    BillingSettings,
    BillingSummary,
    Code,
    DataDay,
    DataDaysRisk,
    Month,
    MonthFigures,
    Period,
    PeriodsResult,
    PeriodVersion,
    RiskStatus,
    TimeEntry,
    VersionReason,
)

# -- time -----------------------------------------------------------------------------------------


def local_date(instant: datetime, tz: tzinfo) -> date:
    """The patient's local calendar date of an aware instant."""
    return instant.astimezone(tz).date()


def local_midnight(day: date, tz: tzinfo) -> datetime:
    """The instant (UTC) `day` begins in `tz`. Where midnight falls in a DST gap (a zone that
    springs forward at 00:00), the day begins at the transition: zoneinfo reads the missing local
    time with the offset before the gap (PEP 495, fold=0), which is the instant of the jump."""
    return datetime.combine(day, time(0)).replace(tzinfo=tz).astimezone(UTC)


def month_of(instant: datetime, tz: tzinfo) -> Month:
    """The local calendar month of an instant: management time counts in the month it started."""
    return Month.of(local_date(instant, tz))


def month_bounds(month: Month, tz: tzinfo) -> tuple[datetime, datetime]:
    """[start, end) instants of a local calendar month."""
    return local_midnight(month.first_day, tz), local_midnight(month.next().first_day, tz)


def month_closes_at(month: Month, tz: tzinfo, grace_days: int) -> datetime:
    """When a month's time entries stop being editable: local midnight `grace_days` days after
    the month's last day ended (grace 0: the month's own end)."""
    return local_midnight(month.next().first_day + timedelta(days=grace_days), tz)


def month_is_open(month: Month, tz: tzinfo, now: datetime, grace_days: int) -> bool:
    """Whether time entries of `month` may still be added, corrected or deleted at `now`."""
    return now < month_closes_at(month, tz, grace_days)


# -- codes ----------------------------------------------------------------------------------------


def supply_code(data_days: int, settings: BillingSettings) -> Code | None:
    """98977 for 16-30 data days, 98985 for 2-15, else None; a disabled code is None."""
    if data_days >= SUPPLY_HIGH_MIN_DAYS:
        return Code.supply_16_30 if settings.enabled(Code.supply_16_30) else None
    if data_days >= SUPPLY_LOW_MIN_DAYS:
        return Code.supply_2_15 if settings.enabled(Code.supply_2_15) else None
    return None


def management_codes(minutes: int, interactive: bool, settings: BillingSettings) -> tuple[Code, ...]:
    """The month's treatment-management codes for `minutes` of time (see the module docstring)."""
    if not interactive or minutes < MGMT_LOW_MIN_MINUTES:
        return ()
    if minutes < MGMT_FIRST_MINUTES:
        return (Code.management_10,) if settings.enabled(Code.management_10) else ()
    if not settings.enabled(Code.management_20):
        return ()
    addons = (minutes - MGMT_FIRST_MINUTES) // MGMT_ADDON_MINUTES
    if not settings.enabled(Code.management_addon):
        addons = 0
    return (Code.management_20,) + (Code.management_addon,) * addons


# -- periods --------------------------------------------------------------------------------------


def counted_days(
    data_days: Iterable[DataDay], settings: BillingSettings, enrolled_on: date | None = None
) -> dict[date, datetime]:
    """The data days that count under `settings`: local date → when its first counted point was stored.

    Days before `enrolled_on` count only when the tenant counts data from before enrolment."""
    out: dict[date, datetime] = {}
    for d in data_days:
        if not settings.counts(d.source):
            continue
        if enrolled_on is not None and d.day < enrolled_on and not settings.count_data_before_enrolment:
            continue
        prev = out.get(d.day)
        if prev is None or d.known_since < prev:
            out[d.day] = d.known_since
    return out


def data_days_risk(
    dates: Sequence[date], start: date, end: date, today: date, lead_days: int
) -> tuple[int, DataDaysRisk]:
    """(data_days_possible, risk) of an open period with data on `dates` (sorted, in the period).

    Remaining days are the period's days from today on (today included) that have no data yet;
    the period can still reach `data_days + remaining`. It is at risk when it can reach 16 data
    days only with data on all but at most `lead_days` of the remaining days (lead 0: only if the
    patient reports on every remaining day)."""
    have = set(dates)
    first = max(today, start)
    remaining = sum(1 for i in range((end - first).days + 1) if first + timedelta(days=i) not in have)
    possible = len(dates) + remaining
    needed = max(0, SUPPLY_HIGH_MIN_DAYS - len(dates))
    slack = remaining - needed
    if needed == 0:
        status = RiskStatus.reached
    elif slack < 0:
        status = RiskStatus.unreachable
    elif slack <= lead_days:
        status = RiskStatus.at_risk
    else:
        status = RiskStatus.on_track
    return possible, DataDaysRisk(status=status, needed=needed, remaining=remaining, slack=slack)


def _version_reason(
    prev: PeriodVersion | None, dates: tuple[date, ...], counted: Mapping[date, datetime], settings: BillingSettings
) -> VersionReason:
    if prev is None:
        return VersionReason.initial
    old, new = set(prev.data_dates), set(dates)
    if prev.data_days_from is not settings.data_days_from or not old < new:
        return VersionReason.recomputed
    if all(counted[d] > prev.recorded_at for d in new - old):
        return VersionReason.late_data
    return VersionReason.recomputed


def compute_periods(
    data_days: Iterable[DataDay],
    *,
    settings: BillingSettings,
    now: datetime,
    tz: tzinfo,
    anchor: date | None = None,
    stored: Mapping[date, Sequence[PeriodVersion]] | None = None,
    enrolled_on: date | None = None,
) -> PeriodsResult:
    """A patient's device-supply periods at `now`.

    `anchor` is the frozen `monitoring_started` (None until the first period closed); `stored` the
    recorded versions by period start. The result says what to persist: `freeze_anchor` and
    `new_versions` (a closed period without a version, or whose figures differ from its current
    version). Periods run from the anchor up to the one holding today (or the newest data day, if
    later)."""
    counted = counted_days(data_days, settings, enrolled_on)
    if anchor is None and not counted:
        return PeriodsResult(None, (), False, None)
    start = anchor if anchor is not None else min(counted)
    today = local_date(now, tz)
    dates = sorted(counted)
    before = bisect_left(dates, start)
    last = max(today, dates[-1]) if dates else today
    history = stored or {}
    periods: list[Period] = []
    new_versions: list[PeriodVersion] = []
    while start <= last:
        end = start + timedelta(days=PERIOD_DAYS - 1)
        inside = tuple(dates[bisect_left(dates, start) : bisect_right(dates, end)])
        code = supply_code(len(inside), settings)
        if end < today:
            versions = sorted(history.get(start, ()), key=lambda v: v.version)
            current = versions[-1] if versions else None
            if current is None or current.data_dates != inside or current.supply_code != code:
                version = PeriodVersion(
                    start=start,
                    version=current.version + 1 if current else 1,
                    data_dates=inside,
                    supply_code=code,
                    recorded_at=now,
                    reason=_version_reason(current, inside, counted, settings),
                    data_days_from=settings.data_days_from,
                )
                new_versions.append(version)
                previous = tuple(versions)
                current = version
            else:
                previous = tuple(versions[:-1])
            periods.append(
                Period(
                    start=start,
                    end=end,
                    data_days=current.data_days,
                    supply_code=current.supply_code,
                    closed=True,
                    version=current,
                    previous_versions=previous,
                )
            )
        else:
            possible, risk = data_days_risk(inside, start, end, today, settings.at_risk_lead_days)
            periods.append(
                Period(
                    start=start,
                    end=end,
                    data_days=len(inside),
                    supply_code=code,
                    closed=False,
                    data_days_possible=possible,
                    risk=risk if settings.enabled(Code.supply_16_30) else None,
                )
            )
        start = end + timedelta(days=1)
    monitoring_started = periods[0].start if periods else anchor
    setup = next((p.start for p in periods if p.data_days >= SETUP_MIN_DAYS), None)
    eligible = setup is not None and settings.enabled(Code.setup)
    any_closed = any(p.closed for p in periods)
    return PeriodsResult(
        monitoring_started=monitoring_started,
        periods=tuple(periods),
        setup_code_eligible=eligible,
        setup_period_start=setup if eligible else None,
        freeze_anchor=monitoring_started if anchor is None and any_closed else None,
        new_versions=tuple(new_versions),
        data_days_before_start=before,
    )


# -- months ---------------------------------------------------------------------------------------


def month_figures(
    entries: Iterable[TimeEntry], month: Month, *, tz: tzinfo, now: datetime, settings: BillingSettings
) -> MonthFigures:
    """Minutes, the interactive requirement and the management codes of one local month."""
    mine = [e for e in entries if month_of(e.started_at, tz) == month]
    minutes = sum(e.minutes for e in mine)
    interactive = any(e.counts_as_interactive for e in mine)
    return MonthFigures(
        month=month,
        minutes=minutes,
        interactive=interactive,
        management_codes=management_codes(minutes, interactive, settings),
        closed=not month_is_open(month, tz, now, settings.grace_days),
    )


def months_of(
    entries: Sequence[TimeEntry], *, tz: tzinfo, now: datetime, settings: BillingSettings
) -> tuple[MonthFigures, ...]:
    """Figures of every month with time entries, and of the current local month, oldest first."""
    months = {month_of(e.started_at, tz) for e in entries} | {month_of(now, tz)}
    return tuple(month_figures(entries, m, tz=tz, now=now, settings=settings) for m in sorted(months))


def summarize(
    patient_id: str,
    *,
    data_days: Iterable[DataDay],
    entries: Sequence[TimeEntry],
    settings: BillingSettings,
    now: datetime,
    tz: tzinfo,
    anchor: date | None = None,
    stored: Mapping[date, Sequence[PeriodVersion]] | None = None,
    enrolled_on: date | None = None,
) -> BillingSummary:
    """Everything `GET /v1/patients/{id}/billing` reports for one patient."""
    periods = compute_periods(
        data_days, settings=settings, now=now, tz=tz, anchor=anchor, stored=stored, enrolled_on=enrolled_on
    )
    return BillingSummary(
        patient_id=patient_id,
        as_of=now,
        settings=settings,
        periods=periods,
        months=months_of(entries, tz=tz, now=now, settings=settings),
    )


def periods_closing_in(result: PeriodsResult, month: Month) -> tuple[Period, ...]:
    """The periods whose last day falls in `month` (the report's rows)."""
    return tuple(p for p in result.periods if month.contains(p.end))
