"""Engine results as the contract's payloads (schemas/billing.py), the report's CSV, and settings
to and from their stored JSON. Pure.

CSV (`GET /v1/billing/report`, `Accept: text/csv`): one row per patient, like the JSON; the
period columns hold the periods closing in the month separated by `;` (two periods can close in
one 31-day month). Every cell is a code, a number, a date, `true`/`false` or a patient id
(`[A-Za-z0-9._-]`, which cannot hold a formula's `=`, `+`, `@`, parentheses or quotes).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping
from datetime import date, datetime
from typing import Any

from schemas.billing import (
    BillingMonth,
    BillingPeriod,
    BillingReport,
    BillingReportRow,
    BillingSettingsIn,
    BillingSettingsOut,
    PatientBilling,
    PeriodVersionInfo,
)
from services.scoring.billing.model import (
    ALL_CODES,
    BillingSettings,
    BillingSummary,
    Code,
    MonthFigures,
    Period,
    PeriodsResult,
    PeriodVersion,
    RiskStatus,
)

CSV_COLUMNS = (
    "patient_id",
    "month",
    "monitoring_started",
    "period_start",
    "period_end",
    "data_days",
    "supply_code",
    "period_closed",
    "period_version",
    "minutes",
    "interactive",
    "management_codes",
    "month_closed",
    "setup_code_eligible",
)
CODE_ORDER = tuple(Code)


def version_info(v: PeriodVersion) -> PeriodVersionInfo:
    return PeriodVersionInfo(
        version=v.version,
        data_days=v.data_days,
        supply_code=v.supply_code,
        reason=v.reason,
        data_days_from=v.data_days_from,
        recorded_at=v.recorded_at,
    )


def period_view(p: Period) -> BillingPeriod:
    return BillingPeriod(
        start=p.start,
        end=p.end,
        data_days=p.data_days,
        supply_code=p.supply_code,
        closed=p.closed,
        data_days_possible=p.data_days_possible,
        data_days_at_risk=(p.risk.status is RiskStatus.at_risk) if p.risk is not None else None,
        version=p.version.version if p.version else None,
        version_reason=p.version.reason if p.version else None,
        recorded_at=p.version.recorded_at if p.version else None,
        previous_versions=[version_info(v) for v in p.previous_versions],
    )


def month_view(m: MonthFigures) -> BillingMonth:
    return BillingMonth(
        month=str(m.month),
        minutes=m.minutes,
        interactive=m.interactive,
        management_codes=list(m.management_codes),
        closed=m.closed,
    )


def patient_billing(summary: BillingSummary) -> PatientBilling:
    periods = summary.periods
    return PatientBilling(
        patient_id=summary.patient_id,
        monitoring_started=periods.monitoring_started,
        periods=[period_view(p) for p in periods.periods],
        months=[month_view(m) for m in summary.months],
        setup_code_eligible=periods.setup_code_eligible,
        data_days_from=summary.settings.data_days_from,
        as_of=summary.as_of,
    )


def report_row(
    patient_id: str, periods: PeriodsResult, closing: Iterable[Period], month: MonthFigures
) -> BillingReportRow:
    return BillingReportRow(
        patient_id=patient_id,
        monitoring_started=periods.monitoring_started,
        periods=[period_view(p) for p in closing],
        minutes=month.minutes,
        interactive=month.interactive,
        management_codes=list(month.management_codes),
        month_closed=month.closed,
        setup_code_eligible=periods.setup_code_eligible,
    )


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, date | datetime):
        return value.isoformat()
    return str(value)


def report_csv(report: BillingReport) -> str:
    """The report as CSV (RFC 4180, CRLF line ends, a header row)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for row in report.items:

        def joined(values: Iterable[object]) -> str:
            return ";".join(_cell(v) for v in values)

        writer.writerow(
            [
                row.patient_id,
                report.month,
                _cell(row.monitoring_started),
                joined(p.start for p in row.periods),
                joined(p.end for p in row.periods),
                joined(p.data_days for p in row.periods),
                joined(p.supply_code for p in row.periods),
                joined(p.closed for p in row.periods),
                joined(p.version for p in row.periods),
                row.minutes,
                _cell(row.interactive),
                " ".join(row.management_codes),
                _cell(row.month_closed),
                _cell(row.setup_code_eligible),
            ]
        )
    return out.getvalue()


# -- settings -------------------------------------------------------------------------------------


def settings_out(s: BillingSettings) -> BillingSettingsOut:
    return BillingSettingsOut(
        data_days_from=s.data_days_from,
        enabled_codes=[c for c in CODE_ORDER if c in s.enabled_codes],
        grace_days=s.grace_days,
        at_risk_lead_days=s.at_risk_lead_days,
        count_data_before_enrolment=s.count_data_before_enrolment,
    )


def settings_from_input(body: BillingSettingsIn) -> BillingSettings:
    """The settings a `PUT` body asks for; absent keys take the defaults."""
    d = BillingSettings()
    return BillingSettings(
        data_days_from=body.data_days_from or d.data_days_from,
        enabled_codes=frozenset(body.enabled_codes) if body.enabled_codes is not None else ALL_CODES,
        grace_days=body.grace_days if body.grace_days is not None else d.grace_days,
        at_risk_lead_days=body.at_risk_lead_days if body.at_risk_lead_days is not None else d.at_risk_lead_days,
        count_data_before_enrolment=(
            body.count_data_before_enrolment
            if body.count_data_before_enrolment is not None
            else d.count_data_before_enrolment
        ),
    )


def settings_from_stored(raw: Mapping[str, Any] | None) -> BillingSettings:
    """Stored settings (JSON of `BillingSettingsOut`); the defaults when none are stored."""
    if not raw:
        return BillingSettings()
    return settings_from_input(BillingSettingsIn.model_validate(raw))
