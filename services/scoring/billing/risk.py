"""Data days at risk: when to raise, and when to end, the nudge of the open device-supply period.

Pure and deterministic: no I/O, `today` (the patient's local date) is an argument. The rule
(docs/billing.md, "Data days at risk"): the open period is at risk when it can still reach 16
data days (98977) but only with data on all but at most `lead` of its remaining days:
`0 <= data_days_possible - 16 <= lead`, where `data_days_possible` is the data days so far plus
the period's days from today on that have no data yet. A period is raised at most once; a raise
ends when the period closes or the rule no longer holds (reached 16, slack regained, out of
reach, or no longer judged). The shell (`risk_sweep.py`) stores what it raised and ended, so a
sweep that runs again emits nothing new.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum

from services.scoring.billing.model import SUPPLY_HIGH_MIN_DAYS, BillingSettings, Code, Period, PeriodsResult


@dataclass(frozen=True, slots=True)
class AtRisk:
    """The open period at risk: `needed` more data days for 16 with `remaining` days left."""

    period_start: date
    period_end: date
    data_days: int
    data_days_possible: int

    @property
    def needed(self) -> int:
        return SUPPLY_HIGH_MIN_DAYS - self.data_days

    @property
    def remaining(self) -> int:
        """Days of the period from today on without data yet."""
        return self.data_days_possible - self.data_days

    @property
    def slack(self) -> int:
        """Remaining days the patient may still miss and reach 16."""
        return self.data_days_possible - SUPPLY_HIGH_MIN_DAYS


def open_period(figures: PeriodsResult, today: date) -> Period | None:
    """The open period holding `today`, if any."""
    return next((p for p in figures.periods if not p.closed and p.start <= today <= p.end), None)


def at_risk(figures: PeriodsResult, today: date, lead: int) -> AtRisk | None:
    """The open period holding `today` when it is at risk with lead `lead` (>= 0), else None.

    None when there is no open period holding today, it has 16 data days already, it can no
    longer reach 16 (`data_days_possible < 16`), or it has more slack than `lead`."""
    if lead < 0:
        raise ValueError("lead must not be negative")
    p = open_period(figures, today)
    if p is None or p.data_days_possible is None or p.data_days >= SUPPLY_HIGH_MIN_DAYS:
        return None
    slack = p.data_days_possible - SUPPLY_HIGH_MIN_DAYS
    if not 0 <= slack <= lead:
        return None
    return AtRisk(p.start, p.end, p.data_days, p.data_days_possible)


class EndReason(StrEnum):
    """Why a raise ended (the `reason` of `DataDaysRiskEnded`)."""

    period_closed = "period_closed"
    reached = "reached"
    on_track = "on_track"
    unreachable = "unreachable"
    not_judged = "not_judged"  # 98977 disabled, or the period moved (data before the first period)


@dataclass(frozen=True, slots=True)
class Raised:
    """A stored raise that has not ended yet."""

    period_start: date
    period_end: date
    raised_at: datetime


@dataclass(frozen=True, slots=True)
class Raise:
    risk: AtRisk


@dataclass(frozen=True, slots=True)
class End:
    raised: Raised
    reason: EndReason


RiskAction = Raise | End


def _why_not(figures: PeriodsResult, r: Raised, today: date, settings: BillingSettings) -> EndReason:
    if r.period_end < today:
        return EndReason.period_closed
    p = open_period(figures, today)
    if p is None or p.start != r.period_start or not settings.enabled(Code.supply_16_30):
        return EndReason.not_judged
    if p.data_days >= SUPPLY_HIGH_MIN_DAYS:
        return EndReason.reached
    if p.data_days_possible is not None and p.data_days_possible < SUPPLY_HIGH_MIN_DAYS:
        return EndReason.unreachable
    return EndReason.on_track


def plan(
    figures: PeriodsResult,
    today: date,
    settings: BillingSettings,
    raised: Sequence[Raised],
    already_raised: frozenset[date] = frozenset(),
) -> list[RiskAction]:
    """What one sweep does for one patient: ends first (oldest period first), then a raise.

    `raised` are the patient's stored raises not ended yet; `already_raised` the period starts
    raised before (ended or not): a period is raised at most once, so a risk that ends and
    returns in the same period (late data, then more missed days) is not raised again. A raise
    stands while its period is open, is the period at risk now, and 98977 is enabled."""
    risk = at_risk(figures, today, settings.at_risk_lead_days) if settings.enabled(Code.supply_16_30) else None
    actions: list[RiskAction] = []
    for r in sorted(raised, key=lambda x: x.period_start):
        if risk is not None and r.period_start == risk.period_start and r.period_end >= today:
            continue
        actions.append(End(r, _why_not(figures, r, today, settings)))
    seen = already_raised | {r.period_start for r in raised}
    if risk is not None and risk.period_start not in seen:
        actions.append(Raise(risk))
    return actions
