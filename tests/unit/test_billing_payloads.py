"""RTM billing payloads: strict time-entry bodies, the contract's billing shape, CSV, `Accept`."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from schemas.billing import BillingReport, BillingSettingsIn, PatientBilling, TimeEntryIn, TimeEntryPatch
from services.scoring.billing import engine, views
from services.scoring.billing.api import new_entry_id, wants_csv
from services.scoring.billing.model import (
    ALL_CODES,
    Activity,
    BillingSettings,
    BillingSummary,
    Code,
    DataDay,
    DataDaySource,
    Month,
    Source,
    TimeEntry,
)

ENTRY: dict[str, Any] = {
    "member_id": "pt-therapist-7",
    "started_at": "2026-11-20T08:30:00-05:00",
    "minutes": 20,
    "activity": "patient_call",
    "interactive": True,
    "note": "discussed the home programme",
}


def test_the_contract_time_entry_validates_and_is_utc() -> None:
    e = TimeEntryIn.model_validate(ENTRY)
    assert e.started_at == datetime(2026, 11, 20, 13, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("minutes", "20"),
        ("minutes", 0),
        ("minutes", -5),
        ("minutes", 241),
        ("minutes", 20.5),
        ("minutes", True),
        ("interactive", "true"),
        ("interactive", 1),
        ("started_at", "2026-11-20T08:30:00"),  # no offset
        ("started_at", 1789000000),
        ("activity", "phone"),
        ("member_id", 7),
        ("note", "x" * 2001),
        ("note", 5),
    ],
)
def test_time_entry_fields_are_strict(field: str, value: object) -> None:
    with pytest.raises(ValidationError) as exc:
        TimeEntryIn.model_validate({**ENTRY, field: value})
    assert exc.value.errors()[0]["loc"][0] == field


def test_time_entry_refuses_unknown_fields_and_the_error_has_no_note() -> None:
    with pytest.raises(ValidationError) as exc:
        TimeEntryIn.model_validate({**ENTRY, "minutes": 999, "note": "PRIVATE NOTE TEXT", "extra": 1})
    assert "PRIVATE" not in json.dumps(exc.value.errors(include_input=False, include_url=False))


def test_patch_needs_a_field_and_only_the_note_may_be_null() -> None:
    with pytest.raises(ValidationError):
        TimeEntryPatch.model_validate({"by": "m1"})
    with pytest.raises(ValidationError):
        TimeEntryPatch.model_validate({"by": "m1", "minutes": None})
    assert TimeEntryPatch.model_validate({"by": "m1", "note": None}).changes() == {"note": None}
    assert TimeEntryPatch.model_validate({"by": "m1", "minutes": 30}).changes() == {"minutes": 30}
    with pytest.raises(ValidationError):
        TimeEntryPatch.model_validate({"minutes": 30})  # who corrects it


def test_billing_settings_bounds() -> None:
    with pytest.raises(ValidationError):
        BillingSettingsIn.model_validate({"grace_days": 32})
    with pytest.raises(ValidationError):
        BillingSettingsIn.model_validate({"enabled_codes": ["99999"]})
    with pytest.raises(ValidationError):
        BillingSettingsIn.model_validate({"data_days_from": "wearables"})
    s = views.settings_from_input(BillingSettingsIn.model_validate({"enabled_codes": ["98977"]}))
    assert s.enabled_codes == frozenset({Code.supply_16_30}) and s.grace_days == 7
    assert views.settings_from_stored(views.settings_out(s).model_dump(mode="json")) == s
    assert views.settings_from_stored(None) == BillingSettings()


def contract_summary() -> BillingSummary:
    data = [
        DataDay(date(2026, 10, 2) + timedelta(days=i), Source.checkin, datetime(2026, 10, 1, tzinfo=UTC))
        for i in range(17)
    ]
    data += [
        DataDay(date(2026, 11, 1) + timedelta(days=2 * i), Source.checkin, datetime(2026, 11, 1, tzinfo=UTC))
        for i in range(9)
    ]
    now = datetime(2026, 11, 19, 20, 0, tzinfo=UTC)
    tz = ZoneInfo("America/New_York")
    call = TimeEntry("te_1", "m1", datetime(2026, 11, 3, 15, tzinfo=UTC), 27, Activity.patient_call, True)
    return engine.summarize("pt-0042", data_days=data, entries=[call], settings=BillingSettings(), now=now, tz=tz)


def test_patient_billing_has_the_contract_shape() -> None:
    body = json.loads(views.patient_billing(contract_summary()).model_dump_json())
    assert body["patient_id"] == "pt-0042"
    assert body["monitoring_started"] == "2026-10-02"
    closed, open_ = body["periods"]
    assert {k: closed[k] for k in ("start", "end", "data_days", "supply_code", "closed")} == {
        "start": "2026-10-02",
        "end": "2026-10-31",
        "data_days": 17,
        "supply_code": "98977",
        "closed": True,
    }
    assert "data_days_possible" not in closed and closed["version"] == 1
    assert open_ == {
        "start": "2026-11-01",
        "end": "2026-11-30",
        "data_days": 9,
        "supply_code": "98985",
        "closed": False,
        "data_days_possible": 21,
        "data_days_at_risk": False,
    }
    assert body["months"] == [
        {"month": "2026-11", "minutes": 27, "interactive": True, "management_codes": ["98980"], "closed": False}
    ]
    assert body["setup_code_eligible"] is True
    PatientBilling.model_validate(body)


def test_a_period_without_a_code_says_null() -> None:
    s = contract_summary()
    period = views.period_view(s.periods.periods[0])
    body = json.loads(period.model_copy(update={"supply_code": None}).model_dump_json())
    assert body["supply_code"] is None


def test_report_csv() -> None:
    s = contract_summary()
    month = Month(2026, 10)
    figures = engine.month_figures([], month, tz=UTC, now=s.as_of, settings=s.settings)
    row = views.report_row("pt-0042", s.periods, engine.periods_closing_in(s.periods, month), figures)
    report = BillingReport(month="2026-10", data_days_from=DataDaySource.checkins, as_of=s.as_of, items=[row])
    text = views.report_csv(report)
    assert text.endswith("\r\n")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert rows == [
        {
            "patient_id": "pt-0042",
            "month": "2026-10",
            "monitoring_started": "2026-10-02",
            "period_start": "2026-10-02",
            "period_end": "2026-10-31",
            "data_days": "17",
            "supply_code": "98977",
            "period_closed": "true",
            "period_version": "1",
            "minutes": "0",
            "interactive": "false",
            "management_codes": "",
            "month_closed": "true",
            "setup_code_eligible": "true",
        }
    ]


@pytest.mark.parametrize(
    ("accept", "csv_wanted"),
    [
        ("", False),
        ("text/csv", True),
        ("application/json", False),
        ("*/*", False),
        ("text/csv, application/json", False),  # a tie: JSON
        ("text/csv, application/json;q=0.5", True),
        ("application/json;q=0.9, text/csv", True),
        ("text/*", True),
        ("text/csv;q=0", False),
        ("text/csv;q=abc", False),
        ("text/html", False),
    ],
)
def test_accept_negotiation(accept: str, csv_wanted: bool) -> None:
    assert wants_csv(accept) is csv_wanted


def test_entry_ids_are_time_ordered_and_match_the_pattern() -> None:
    import re

    from schemas.billing import ENTRY_ID_PATTERN

    a = new_entry_id(datetime(2026, 11, 20, tzinfo=UTC))
    b = new_entry_id(datetime(2026, 11, 21, tzinfo=UTC))
    assert re.fullmatch(ENTRY_ID_PATTERN, a) and a < b


def test_all_codes_are_reported_in_contract_order() -> None:
    assert views.settings_out(BillingSettings(enabled_codes=ALL_CODES)).enabled_codes == list(Code)
