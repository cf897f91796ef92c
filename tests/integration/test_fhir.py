"""FHIR R4 round trip through the real services: Bundle in at ingest, Flag/Communication/Observation out."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import asyncpg
import pytest

from schemas.fhir import codes as c
from tests.support import Services, Tenant, enrol, get_json, poll, wait_alert, webhook_receiver
from tests.unit import fhir_examples as ex

pytestmark = pytest.mark.integration
FHIR = {"Content-Type": c.FHIR_JSON}


def red_flag_bundle(pid: str, kind: str = "transaction") -> dict[str, Any]:
    now = datetime.now(UTC)
    panel = ex.checkin_panel(ident=f"panel-{pid}", patient=pid, red_flag="foot_drop")
    panel["effectiveDateTime"] = (now - timedelta(minutes=5)).isoformat()
    panel["component"] = [c for c in panel["component"] if c["code"]["coding"][0]["code"] != "pt-session-ended"]
    panel["component"] = [c for c in panel["component"] if c["code"]["coding"][0]["code"] != "pt-session-intensity"]
    steps = ex.steps_observation(4100)
    steps["id"] = f"steps-{pid}"
    steps["subject"] = {"reference": f"Patient/{pid}"}
    steps["effectivePeriod"] = {
        "start": (now - timedelta(hours=3)).isoformat(),
        "end": (now - timedelta(hours=1)).isoformat(),
    }
    return ex.bundle(kind, [panel, steps])


async def post(http: aiohttp.ClientSession, url: str, body: Any, tenant: Tenant) -> tuple[int, Any, str]:
    async with http.post(url, json=body, headers={**tenant.headers, **FHIR}) as resp:
        return resp.status, await resp.json(content_type=None), resp.content_type


async def test_red_flag_bundle_opens_the_critical_alert_and_reads_back_as_flag(
    services: Services, tenant: Tenant, other_tenant: Tenant, db: asyncpg.Connection
) -> None:
    pid = f"pt-fhir-{uuid.uuid4().hex[:6]}"
    ingest, alerts, scoring = services.url("ingest"), services.url("alerts"), services.url("scoring")
    async with webhook_receiver() as rx, aiohttp.ClientSession() as http:
        member = {
            "member_id": "oncall",
            "role": "on_call",
            "min_severity": "critical",
            "notify": {"webhook_url": rx.url},
        }
        await enrol(http, ingest, tenant, pid, [member])
        bundle = red_flag_bundle(pid)

        status, body, ctype = await post(http, f"{ingest}/fhir/r4", bundle, tenant)
        assert status == 202, body
        assert ctype == c.FHIR_JSON
        assert body["type"] == "transaction-response"
        assert [e["response"]["status"] for e in body["entry"]] == ["202 Accepted", "202 Accepted"]

        alert = await wait_alert(http, alerts, tenant, pid)
        assert (alert["kind"], alert["severity"]) == ("red_flag", "critical")
        await rx.wait_for(1)

        status, flags = await get_json(http, f"{alerts}/fhir/r4/Flag?patient=Patient/{pid}", tenant.headers)
        assert status == 200, flags
        assert flags["resourceType"] == "Bundle" and flags["type"] == "searchset"
        (entry,) = flags["entry"]
        flag = entry["resource"]
        assert flag["resourceType"] == "Flag" and flag["status"] == "active"
        assert flag["identifier"][0]["value"] == alert["id"]
        assert flag["code"]["coding"][0]["code"] == "alert-red_flag"
        assert flag["subject"]["reference"] == f"Patient/{pid}"
        _, inactive = await get_json(http, f"{alerts}/fhir/r4/Flag?patient={pid}&status=inactive", tenant.headers)
        assert inactive.get("entry", []) == []

        # another tenant sees nothing, and cannot post for this patient
        status, outcome = await get_json(http, f"{alerts}/fhir/r4/Flag?patient={pid}", other_tenant.headers)
        assert status == 404 and outcome["resourceType"] == "OperationOutcome"
        status, outcome = await get_json(http, f"{scoring}/fhir/r4/Observation?patient={pid}", other_tenant.headers)
        assert status == 404 and outcome["resourceType"] == "OperationOutcome"
        status, outcome, _ = await post(http, f"{ingest}/fhir/r4", bundle, other_tenant)
        assert status == 404 and outcome["issue"][0]["code"] == "not-found"

        # reposting the same Bundle changes nothing: same alert, no second page
        status, _, _ = await post(http, f"{ingest}/fhir/r4", bundle, tenant)
        assert status == 202

        async def scored_twice() -> bool:
            _, page = await get_json(
                http, f"{scoring}/fhir/r4/Observation?patient={pid}&code={c.LOINC}|{c.PAIN_SEVERITY}", tenant.headers
            )
            return bool(page.get("entry"))

        await poll(scored_twice)
        await asyncio.sleep(3)  # time for a duplicate to travel ingest -> scoring -> alerts, were it not deduplicated
        _, listed = await get_json(http, f"{alerts}/v1/alerts?patient_id={pid}", tenant.headers)
        assert [a["id"] for a in listed["items"]] == [alert["id"]]
        assert len(rx.requests) == 1
        _, audit = await get_json(http, f"{alerts}/v1/alerts/{alert['id']}/audit", tenant.headers)
        assert not any(a["action"] == "repaged" for a in audit["items"])

        # the page as a Communication, the day as Observations
        status, comms = await get_json(http, f"{alerts}/fhir/r4/Communication?subject=Patient/{pid}", tenant.headers)
        assert status == 200 and len(comms["entry"]) == 1
        assert comms["entry"][0]["resource"]["about"][0]["reference"] == f"Flag/{flag['id']}"
        _, obs = await get_json(http, f"{scoring}/fhir/r4/Observation?patient={pid}", tenant.headers)
        by_code = {e["resource"]["code"]["coding"][0]["code"]: e["resource"] for e in obs["entry"]}
        assert by_code[c.PAIN_SEVERITY]["valueQuantity"]["value"] == 6
        assert by_code[c.STEPS_24H]["valueQuantity"]["value"] == 4100

        async def audited() -> bool:
            routes = await db.fetch(
                "SELECT DISTINCT route FROM identity.access_log WHERE tenant_id = $1 AND patient_id = $2",
                tenant.tenant_id,
                pid,
            )
            return {r["route"] for r in routes} >= {"/fhir/r4/Flag", "/fhir/r4/Communication", "/fhir/r4/Observation"}

        await poll(audited)  # every FHIR read of the patient's data is in the access audit, with the patient


async def test_observation_search_pages_with_links(services: Services, tenant: Tenant) -> None:
    pid = f"pt-fhirp-{uuid.uuid4().hex[:6]}"
    ingest, scoring = services.url("ingest"), services.url("scoring")
    async with aiohttp.ClientSession() as http:
        await enrol(http, ingest, tenant, pid, [])
        now = datetime.now(UTC)
        resources = []
        for d in range(3):
            o = ex.pain_observation(3 + d, ident=f"{pid}-{d}", patient=pid, at=(now - timedelta(days=d)).isoformat())
            o["component"] = [{"code": ex.nw(c.TINGLING), "valueInteger": 2}]
            resources.append(o)
        status, body, _ = await post(http, f"{ingest}/fhir/r4", ex.bundle("batch", resources), tenant)
        assert status == 202, body

        async def three_days() -> Any:
            _, page = await get_json(http, f"{scoring}/fhir/r4/Observation?patient={pid}&_count=500", tenant.headers)
            return page if len(page.get("entry", [])) == 6 else None

        full = await poll(three_days)
        seen: list[str] = []
        url: str | None = f"{scoring}/fhir/r4/Observation?patient={pid}&_count=4"
        while url:
            status, page = await get_json(http, url, tenant.headers)
            assert status == 200, page
            seen += [e["resource"]["id"] for e in page.get("entry", [])]
            url = next((link["url"] for link in page["link"] if link["relation"] == "next"), None)
        assert seen == [e["resource"]["id"] for e in full["entry"]]
        today = now.date().isoformat()
        _, page = await get_json(
            http, f"{scoring}/fhir/r4/Observation?patient={pid}&date=lt{today}&code={c.TINGLING}", tenant.headers
        )
        assert len(page["entry"]) == 2


async def test_errors_are_operation_outcomes(services: Services, tenant: Tenant) -> None:
    ingest, alerts, scoring = services.url("ingest"), services.url("alerts"), services.url("scoring")
    pid = f"pt-fhire-{uuid.uuid4().hex[:6]}"
    async with aiohttp.ClientSession() as http:
        await enrol(http, ingest, tenant, pid, [])
        for base in (ingest, alerts, scoring):
            status, statement = await get_json(http, f"{base}/fhir/r4/metadata", {})
            assert status == 200 and statement["resourceType"] == "CapabilityStatement"
            status, outcome = await get_json(http, f"{base}/fhir/r4/Patient", tenant.headers)
            assert status == 404 and outcome["resourceType"] == "OperationOutcome"
        async with http.post(f"{ingest}/fhir/r4", json={}, headers=FHIR) as resp:
            assert resp.status == 401 and (await resp.json(content_type=None))["resourceType"] == "OperationOutcome"

        good = ex.pain_observation(5, ident=f"{pid}-ok", patient=pid, at=datetime.now(UTC).isoformat())
        bad = ex.pain_observation(11, ident=f"{pid}-bad", patient=pid, at=datetime.now(UTC).isoformat())
        status, body, _ = await post(http, f"{ingest}/fhir/r4", ex.bundle("batch", [good, bad]), tenant)
        assert status == 202 and body["type"] == "batch-response"
        assert [e["response"]["status"] for e in body["entry"]] == ["202 Accepted", "422 Unprocessable Entity"]
        status, body, _ = await post(http, f"{ingest}/fhir/r4", ex.bundle("transaction", [good, bad]), tenant)
        assert status == 422 and body["issue"][0]["expression"] == ["Bundle.entry[1].resource"]
        status, body, _ = await post(http, f"{ingest}/fhir/r4/Observation", good, tenant)
        assert status == 202 and body["resourceType"] == "OperationOutcome"
        status, body, _ = await post(http, f"{ingest}/fhir/r4/QuestionnaireResponse", good, tenant)
        assert status == 400 and body["issue"][0]["code"] == "invalid"
        qr = ex.questionnaire_response(ident=f"{pid}-qr", patient=pid)
        qr["authored"] = datetime.now(UTC).isoformat()
        status, body, _ = await post(http, f"{ingest}/fhir/r4/QuestionnaireResponse", qr, tenant)
        assert status == 202, body
        status, body = await get_json(http, f"{alerts}/fhir/r4/Flag?patient={pid}&date=2026", tenant.headers)
        assert status == 400 and body["resourceType"] == "OperationOutcome"
