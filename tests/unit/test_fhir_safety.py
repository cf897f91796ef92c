"""FHIR writes keep the JSON API's safety rules (issue #10 through issue #15's mapping; pure parts).

The plausibility floor reaches every mapped check-in and sample through the validation context;
a conflicting repost is a `409 conflict` at the identifier, never naming content; the Bundle body
limit fits the documented maximum of fully populated check-in panels.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from typing import Any

import pytest

from nervewatch.http import MAX_BODY
from schemas.checkins import CheckIn
from schemas.common import FLOOR_CONTEXT, NOW_CONTEXT, event_time_floor
from schemas.fhir import codes as c
from schemas.fhir import inbound
from schemas.fhir.inbound import FhirInputError, ValidSample
from services.ingest.fhir_api import BUNDLE_MAX_BODY
from tests.unit import fhir_examples as ex

NOW = datetime(2026, 11, 22, tzinfo=UTC)
TENANT = "clinic-a"
EPOCH = "1970-01-01T00:00:00Z"


def context(onset: date | None = None) -> dict[str, Any]:
    return {NOW_CONTEXT: NOW, FLOOR_CONTEXT: event_time_floor(date(2000, 1, 1), onset, "UTC")}


def issues(resource: dict[str, Any], ctx: dict[str, Any]) -> list[inbound.Issue]:
    mapped = inbound.MAPPERS[resource["resourceType"]](resource, TENANT, resource["resourceType"])
    with pytest.raises(FhirInputError) as info:
        inbound.to_contract(mapped, ctx)
    return info.value.issues


def accepted(resource: dict[str, Any], ctx: dict[str, Any]) -> Any:
    mapped = inbound.MAPPERS[resource["resourceType"]](resource, TENANT, resource["resourceType"])
    return inbound.to_contract(mapped, ctx)


def floor_issue(found: list[inbound.Issue], where: str) -> None:
    (issue,) = found
    assert (issue.code, issue.status, issue.expression) == ("value", 422, where)
    assert "plausibility floor" in issue.diagnostics


def test_the_floor_rejects_the_epoch_on_an_observation() -> None:
    floor_issue(issues(ex.pain_observation(at=EPOCH), context()), "Observation.effectiveDateTime")


def test_the_floor_rejects_the_epoch_on_a_questionnaire_response() -> None:
    qr = ex.questionnaire_response()
    qr["authored"] = EPOCH
    floor_issue(issues(qr, context()), "QuestionnaireResponse.authored")


def test_the_floor_reaches_a_nested_time_of_the_panel() -> None:
    panel = ex.checkin_panel()
    for comp in panel["component"]:
        if comp["code"]["coding"][0]["code"] == c.PT_SESSION_ENDED:
            comp["valueDateTime"] = EPOCH
    (issue,) = issues(panel, context())
    assert issue.code == "value" and "plausibility floor" in issue.diagnostics
    assert issue.expression.startswith("Observation.component[")


@pytest.mark.parametrize("bound", ["start", "end"])
def test_the_floor_rejects_the_epoch_on_a_sample(bound: str) -> None:
    steps = ex.steps_observation()
    steps["effectivePeriod"] = {"start": EPOCH, "end": "1970-01-02T00:00:00Z"}
    if bound == "end":
        steps["effectivePeriod"]["start"] = "1999-12-31T00:00:00Z"
    found = issues(steps, context())
    assert found and all("plausibility floor" in i.diagnostics for i in found)
    assert all(i.expression.startswith("Observation.effectivePeriod") for i in found)


def test_the_floor_reaches_back_a_year_before_an_old_onset() -> None:
    old = ex.pain_observation(at="1989-06-01T08:00:00Z")
    assert isinstance(accepted(old, context(onset=date(1990, 3, 1))), CheckIn)
    floor_issue(issues(old, context(onset=date(1991, 3, 1))), "Observation.effectiveDateTime")
    floor_issue(issues(old, context()), "Observation.effectiveDateTime")
    grip = ex.grip_observation()
    grip["effectiveDateTime"] = "1989-06-01T08:00:00Z"
    assert isinstance(accepted(grip, context(onset=date(1990, 3, 1))), ValidSample)


def test_a_context_without_the_floor_is_refused_not_silently_floorless() -> None:
    mapped = inbound.map_observation(ex.pain_observation(at=EPOCH), TENANT)
    for ctx in ({NOW_CONTEXT: NOW}, {}, {FLOOR_CONTEXT: context()[FLOOR_CONTEXT]}):
        with pytest.raises(ValueError, match="validation context"):
            inbound.to_contract(mapped, ctx)


def test_conflict_issue_is_409_at_the_identifier_and_names_no_content() -> None:
    secret = "Ann-Smith-555-0100"
    panel = ex.checkin_panel(ident=secret)
    panel["note"] = [{"text": secret}]
    for resource, where in (
        (panel, "Observation.identifier"),
        (ex.questionnaire_response(ident=secret), "QuestionnaireResponse.identifier"),
        (ex.steps_observation(), "Observation.identifier"),
    ):
        mapped = inbound.MAPPERS[resource["resourceType"]](resource, TENANT, resource["resourceType"])
        issue = inbound.conflict_issue(mapped)
        assert (issue.code, issue.status, issue.expression) == ("conflict", 409, where)
        assert secret not in issue.diagnostics
        located = issue.under("Bundle.entry[7].resource")
        assert located.expression == "Bundle.entry[7].resource.identifier" and located.status == 409


def test_the_bundle_body_limit_fits_the_maximum_bundle_of_full_panels() -> None:
    panels = [ex.full_panel(i, "pt-0123456789abcdef", NOW) for i in range(inbound.MAX_ENTRIES)]
    assert isinstance(accepted(panels[0], context()), CheckIn)
    compact = json.dumps(ex.bundle("batch", panels), separators=(",", ":")).encode()
    spaced = json.dumps(ex.bundle("batch", panels)).encode()  # json.dumps' default separators
    assert MAX_BODY < len(compact) < len(spaced) < BUNDLE_MAX_BODY
