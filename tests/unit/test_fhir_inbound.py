"""FHIR R4 in: HL7 examples, hand-made good and bad resources -> check-in and activity payloads."""

from __future__ import annotations

import copy
from datetime import UTC, date, datetime
from typing import Any

import pytest
from fhir.resources.R4B import get_fhir_model_class

from schemas.checkins import CheckIn
from schemas.common import FLOOR_CONTEXT, NOW_CONTEXT, event_time_floor
from schemas.fhir import codes as c
from schemas.fhir import inbound
from schemas.fhir.inbound import FhirInputError, MappedCheckIn, MappedSample, ValidSample
from tests.unit import fhir_examples as ex

NOW = datetime(2026, 11, 22, tzinfo=UTC)
CTX = {NOW_CONTEXT: NOW, FLOOR_CONTEXT: event_time_floor(date(2000, 1, 1))}
TENANT = "clinic-a"


def issues_of(fn: Any, *args: Any) -> list[inbound.Issue]:
    with pytest.raises(FhirInputError) as info:
        fn(*args)
    return info.value.issues


def contract(resource: dict[str, Any]) -> Any:
    mapper = inbound.MAPPERS[resource["resourceType"]]
    return inbound.to_contract(mapper(resource, TENANT, resource["resourceType"]), CTX)


def test_hand_made_examples_are_valid_r4_resources() -> None:
    for r in (
        ex.pain_observation(),
        ex.checkin_panel(),
        ex.steps_observation(),
        ex.grip_observation(),
        ex.sleep_observation(),
        ex.questionnaire_response(),
        ex.bundle("batch", [ex.pain_observation()]),
    ):
        get_fhir_model_class(r["resourceType"]).model_validate(r)


# --- HL7 specification examples ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "observation-example.json",
        "observation-example-bloodpressure.json",
        "bundle-transaction.json",
        "questionnaireresponse-example.json",
        "flag-example.json",
        "communication-example.json",
        "operationoutcome-example.json",
    ],
)
def test_hl7_examples_parse_with_the_library(name: str) -> None:
    resource = ex.hl7(name)
    get_fhir_model_class(resource["resourceType"]).model_validate(resource)


@pytest.mark.parametrize("name", ["observation-example.json", "observation-example-bloodpressure.json"])
def test_hl7_observations_with_codes_nervewatch_does_not_know_are_rejected(name: str) -> None:
    (issue,) = issues_of(inbound.map_observation, ex.hl7(name), TENANT)
    assert (issue.code, issue.expression, issue.status) == ("code-invalid", "Observation.code", 422)


def test_hl7_questionnaire_response_of_another_questionnaire_is_rejected() -> None:
    (issue,) = issues_of(inbound.map_questionnaire_response, ex.hl7("questionnaireresponse-example.json"), TENANT)
    assert (issue.code, issue.expression) == ("code-invalid", "QuestionnaireResponse.questionnaire")


def test_hl7_transaction_bundle_reports_every_entry() -> None:
    parsed = inbound.parse_bundle(ex.hl7("bundle-transaction.json"))
    assert parsed.type == "transaction"
    assert len(parsed.resources) == 10
    assert set(parsed.entry_issues) == set(range(10))  # Patients, PUT/DELETE/GET entries: none accepted
    assert all(i.expression.startswith(f"Bundle.entry[{n}]") for n, v in parsed.entry_issues.items() for i in v)


# --- check-ins ---------------------------------------------------------------------------------------


def test_pain_observation_is_a_check_in() -> None:
    checkin = contract(ex.pain_observation(4))
    assert isinstance(checkin, CheckIn)
    assert checkin.pain.current == 4
    assert checkin.patient_id == "pt-1"
    assert checkin.recorded_at == datetime(2026, 11, 20, 13, 30, tzinfo=UTC)


def test_check_in_panel_maps_every_component() -> None:
    checkin = contract(ex.checkin_panel())
    assert isinstance(checkin, CheckIn)
    assert checkin.pain.current == 6 and checkin.pain.worst_24h == 8
    assert [q.value for q in checkin.pain.quality] == ["burning", "tingling"]
    assert (checkin.tingling, checkin.numbness, checkin.weakness, checkin.night_wakings) == (5, 4, 3, 2)
    assert checkin.numbness_spreading is False and checkin.home_exercises_done is True
    assert checkin.function is not None and (checkin.function.instrument.value, checkin.function.score) == ("odi", 42)
    assert checkin.pt_session is not None and checkin.pt_session.intensity.value == "vigorous"
    assert [f.value for f in checkin.red_flags] == ["foot_drop"]
    assert checkin.analgesic_doses_24h == 1
    assert checkin.notes == "private words of the patient"


def test_questionnaire_response_is_a_check_in() -> None:
    checkin = contract(ex.questionnaire_response())
    assert isinstance(checkin, CheckIn)
    assert (checkin.pain.current, checkin.tingling, checkin.numbness) == (5, 3, 2)
    assert [f.value for f in checkin.red_flags] == ["saddle_anesthesia", "bowel_bladder_dysfunction"]
    assert checkin.grip_strength_kg == 17.5
    assert checkin.function is not None and checkin.function.instrument.value == "bctq_sss"
    assert checkin.notes == "free text"


def test_promis_by_loinc_code() -> None:
    panel = ex.checkin_panel()
    panel["component"] = [
        {"code": ex.loinc(c.PAIN_SEVERITY), "valueInteger": 3},
        {"code": ex.loinc(c.PROMIS_PI_TSCORE), "valueQuantity": ex.qty(61.2, "{score}")},
    ]
    checkin = contract(panel)
    assert checkin.function.instrument.value == "promis_pi" and checkin.function.score == 61.2


def test_event_id_is_derived_from_tenant_and_identifier() -> None:
    a = inbound.map_observation(ex.pain_observation(4), TENANT)
    again = inbound.map_observation(ex.pain_observation(7), TENANT)  # same identifier, other content
    other_tenant = inbound.map_observation(ex.pain_observation(4), "clinic-b")
    other_ident = inbound.map_observation(ex.pain_observation(4, ident="obs-2"), TENANT)
    assert a.payload["event_id"] == again.payload["event_id"]
    assert len({a.payload["event_id"], other_tenant.payload["event_id"], other_ident.payload["event_id"]}) == 3
    without_identifier = ex.pain_observation()
    del without_identifier["identifier"]
    without_identifier["id"] = "local-7"
    by_id = inbound.map_observation(without_identifier, TENANT)
    assert by_id.payload["event_id"] == str(c.derive_event_id(TENANT, "Observation", "id\nlocal-7"))
    del without_identifier["id"]
    (issue,) = issues_of(inbound.map_observation, without_identifier, TENANT)
    assert issue.code == "required" and issue.expression == "Observation.identifier"


def test_patient_by_tenant_identifier() -> None:
    obs = ex.pain_observation()
    obs["subject"] = {"identifier": {"system": c.patient_identifier_system(TENANT), "value": "pt_9"}}
    assert inbound.map_observation(obs, TENANT).patient_id == "pt_9"
    (issue,) = issues_of(inbound.map_observation, obs, "clinic-b")  # another tenant's system
    assert issue.expression == "Observation.subject.identifier"


# --- activity samples -----------------------------------------------------------------------------


def test_steps_in_24_hours_is_a_step_sample() -> None:
    mapped = inbound.map_observation(ex.steps_observation(6240), TENANT)
    assert isinstance(mapped, MappedSample)
    result = inbound.to_contract(mapped, CTX)
    assert isinstance(result, ValidSample)
    assert (result.sample.type.value, result.sample.value, result.device.id) == ("steps", 6240, "watch-88f1")


def test_step_count_unit_must_be_a_count() -> None:
    contract(ex.steps_observation(500, code=c.STEPS, unit="{steps}"))
    (issue,) = issues_of(inbound.map_observation, ex.steps_observation(500, code=c.STEPS, unit="/d"), TENANT)
    assert issue.code == "value" and "unit mismatch" in issue.diagnostics


def test_sleep_hours_become_minutes() -> None:
    result = contract(ex.sleep_observation(7.5))
    assert (result.sample.type.value, result.sample.value) == ("sleep_minutes", 450)


def test_grip_strength_in_pound_force_becomes_kg() -> None:
    result = contract(ex.grip_observation(40, "[lbf_av]"))
    assert result.sample.type.value == "grip_strength_kg"
    assert result.sample.value == pytest.approx(18.144, abs=0.001)
    assert result.device.kind.value == "dynamometer"
    assert contract(ex.grip_observation(18, "kg")).sample.value == 18


@pytest.mark.parametrize("unit", ["[lb_av]", "g", "mm[Hg]"])
def test_grip_strength_unit_mismatch_is_rejected(unit: str) -> None:
    (issue,) = issues_of(inbound.map_observation, ex.grip_observation(40, unit), TENANT)
    assert issue.code == "value" and issue.expression == "Observation.valueQuantity.code"


def test_grip_strength_without_ucum_system_is_a_unit_mismatch() -> None:
    obs = ex.grip_observation(18, "kg")
    del obs["valueQuantity"]["system"]
    (issue,) = issues_of(inbound.map_observation, obs, TENANT)
    assert "unit mismatch" in issue.diagnostics


def test_grip_strength_of_the_unaffected_side_is_rejected() -> None:
    right = inbound.map_observation(ex.grip_observation(code=c.GRIP_RIGHT), TENANT)
    assert inbound.side_issue(right, "right") is None
    assert inbound.side_issue(right, "bilateral") is None
    issue = inbound.side_issue(right, "left")
    assert issue is not None and issue.code == "business-rule"


# --- bad input ---------------------------------------------------------------------------------------


def test_wrong_resource_type() -> None:
    (issue,) = issues_of(inbound.map_observation, {"resourceType": "Patient"}, TENANT)
    assert (issue.code, issue.status) == ("invalid", 400)
    (issue,) = issues_of(inbound.parse_bundle, ex.pain_observation())
    assert (issue.code, issue.status) == ("invalid", 400)


def test_missing_subject() -> None:
    obs = ex.pain_observation()
    del obs["subject"]
    (issue,) = issues_of(inbound.map_observation, obs, TENANT)
    assert (issue.code, issue.expression, issue.status) == ("required", "Observation.subject", 422)


@pytest.mark.parametrize("reference", ["Patient/a b", "Group/pt-1", "https://other.example/Patient/pt-1"])
def test_subject_must_reference_a_patient_id(reference: str) -> None:
    obs = ex.pain_observation()
    obs["subject"] = {"reference": reference}
    (issue,) = issues_of(inbound.map_observation, obs, TENANT)
    assert issue.expression == "Observation.subject.reference"


def test_value_out_of_range_is_rejected_by_the_contract_model() -> None:
    (issue,) = issues_of(contract, ex.pain_observation(11))
    assert (issue.code, issue.expression) == ("value", "Observation")  # the pain value of the resource itself
    panel = ex.checkin_panel()
    panel["component"][4]["valueInteger"] = 12  # tingling
    (issue,) = issues_of(contract, panel)
    assert issue.expression == "Observation.component[4]"


def test_function_score_out_of_range() -> None:
    panel = ex.checkin_panel()
    panel["component"][9]["valueQuantity"]["value"] = 140  # ODI is 0-100
    (issue,) = issues_of(contract, panel)
    assert "between 0 and 100" in issue.diagnostics


def test_unknown_code_is_an_error_never_dropped() -> None:
    panel = ex.checkin_panel()
    panel["component"].append({"code": ex.loinc("8867-4"), "valueQuantity": ex.qty(70, "/min")})
    (issue,) = issues_of(inbound.map_observation, panel, TENANT)
    assert (issue.code, issue.expression) == (
        "code-invalid",
        f"Observation.component[{len(panel['component']) - 1}].code",
    )
    qr = ex.questionnaire_response()
    qr["item"].append({"linkId": "mood", "answer": [{"valueInteger": 3}]})
    (issue,) = issues_of(inbound.map_questionnaire_response, qr, TENANT)
    assert issue.code == "code-invalid" and issue.expression.endswith(".linkId")


def test_unknown_red_flag_code() -> None:
    (issue,) = issues_of(inbound.map_observation, ex.checkin_panel(red_flag="headache"), TENANT)
    assert issue.code == "code-invalid"


def test_check_in_item_alone_is_rejected_with_the_reason() -> None:
    obs = ex.pain_observation()
    obs["code"] = ex.nw(c.TINGLING)
    (issue,) = issues_of(inbound.map_observation, obs, TENANT)
    assert issue.code == "not-supported" and "pain score" in issue.diagnostics


def test_panel_without_pain_is_rejected() -> None:
    panel = ex.checkin_panel()
    panel["component"] = panel["component"][1:]
    (issue,) = issues_of(inbound.map_observation, panel, TENANT)
    assert issue.code == "required"


@pytest.mark.parametrize("value", ["4", 4.5, True, None])
def test_pain_must_be_a_json_integer(value: Any) -> None:
    obs = ex.pain_observation()
    obs["valueInteger"] = value
    issues = issues_of(contract, obs)
    assert issues and all("4" not in i.diagnostics for i in issues if isinstance(value, str))


def test_data_absent_reason_is_not_a_value() -> None:
    obs = ex.pain_observation()
    del obs["valueInteger"]
    obs["dataAbsentReason"] = {
        "coding": [{"system": "http://terminology.hl7.org/CodeSystem/data-absent-reason", "code": "asked-declined"}]
    }
    (issue,) = issues_of(inbound.map_observation, obs, TENANT)
    assert issue.code == "required"


def test_element_that_is_not_r4_is_a_structure_error() -> None:
    obs = ex.pain_observation()
    obs["valueIntegr"] = 4
    (issue,) = issues_of(inbound.map_observation, obs, TENANT)
    assert (issue.code, issue.status) == ("structure", 400)


def test_date_without_time_zone_is_rejected() -> None:
    for at in ("2026-11-20", "2026-11-20T08:30:00"):
        issues = issues_of(contract, ex.pain_observation(at=at))
        assert issues[0].expression == "Observation.effectiveDateTime"


def test_future_check_in_is_rejected() -> None:
    issues = issues_of(contract, ex.pain_observation(at="2026-11-22T08:30:00+00:00"))
    assert "future" in issues[0].diagnostics


def test_status_must_be_final() -> None:
    obs = ex.pain_observation()
    obs["status"] = "entered-in-error"
    (issue,) = issues_of(inbound.map_observation, obs, TENANT)
    assert issue.code == "not-supported" and issue.expression == "Observation.status"


def test_issues_never_echo_submitted_text() -> None:
    secret = "my neighbour Ann Smith 555-0100"
    panel = ex.checkin_panel()
    panel["note"] = [{"text": secret}]
    panel["component"][0]["valueInteger"] = 99
    panel["identifier"][0]["value"] = secret
    for issue in issues_of(contract, panel):
        assert secret not in issue.diagnostics and secret not in issue.expression


# --- Bundles -------------------------------------------------------------------------------------------


def test_bundle_of_1000_entries_is_accepted_1001_is_not() -> None:
    obs = [ex.pain_observation(ident=f"o-{i}") for i in range(1001)]
    assert len(inbound.parse_bundle(ex.bundle("batch", obs[:1000])).resources) == 1000
    (issue,) = issues_of(inbound.parse_bundle, ex.bundle("batch", obs))
    assert (issue.code, issue.expression) == ("too-costly", "Bundle.entry")


def test_bundle_types() -> None:
    for kind in ("collection", "document", "searchset"):
        (issue,) = issues_of(inbound.parse_bundle, ex.bundle(kind, [ex.pain_observation()]))
        assert issue.expression == "Bundle.type" and issue.status == 400


def test_entry_needs_post_to_the_resource_type() -> None:
    b = ex.bundle("batch", [ex.pain_observation(), ex.pain_observation(ident="o-2")])
    b["entry"][0]["request"] = {"method": "PUT", "url": "Observation/x"}
    b["entry"][1]["request"]["url"] = "QuestionnaireResponse"
    parsed = inbound.parse_bundle(b)
    assert parsed.entry_issues[0][0].expression == "Bundle.entry[0].request.method"
    assert parsed.entry_issues[1][0].expression == "Bundle.entry[1].request.url"


def test_entry_issues_are_located_in_the_bundle() -> None:
    bad = ex.pain_observation()
    del bad["subject"]
    b = ex.bundle("transaction", [ex.pain_observation(), bad])
    parsed = inbound.parse_bundle(b)
    assert isinstance(inbound.map_entry(parsed.resources[0], TENANT, 0), MappedCheckIn)
    (issue,) = issues_of(inbound.map_entry, parsed.resources[1], TENANT, 1)
    assert issue.expression == "Bundle.entry[1].resource.subject"


def test_contract_issue_inside_a_bundle_entry() -> None:
    item = inbound.map_entry(copy.deepcopy(ex.pain_observation(11)), TENANT, 3)
    with pytest.raises(FhirInputError) as info:
        inbound.to_contract(item, CTX)
    assert info.value.issues[0].under("Bundle.entry[3].resource").expression == "Bundle.entry[3].resource"
