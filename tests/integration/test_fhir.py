"""FHIR R4 round trip through the real services: Bundle in at ingest, Flag/Communication/Observation out.

FHIR writes keep the JSON API's safety rules (issue #10): the plausibility floor, `409` for an
identifier reposted with other content (a `batch` rejects the entry, a `transaction` publishes
nothing), identical reposts stored once, and a body limit of its own for Bundles.
"""

from __future__ import annotations

import asyncio
import copy
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from nervewatch.http import MAX_BODY
from schemas.events import Topics
from schemas.fhir import codes as c
from schemas.fhir.inbound import MAX_ENTRIES
from services.ingest.fhir_api import BUNDLE_MAX_BODY
from tests.support import Services, Tenant, enrol, get_json, poll, wait_alert, webhook_receiver
from tests.unit import fhir_examples as ex
from tooling.devstack import EmbeddedStack

pytestmark = pytest.mark.integration
FHIR = {"Content-Type": c.FHIR_JSON}
NOTE = "PRIVATE-FHIR-NOTE"
EPOCH = "1970-01-01T00:00:00Z"


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


# --- the JSON API's safety rules on FHIR writes ----------------------------------------------------


async def log_end(bootstrap: str) -> int:
    """Sum of the end offsets of the check-ins and activity topics.

    Any publish moves it, so "unchanged" proves nothing was published; it is no count of records
    (the embedded broker reports the end of a multi-record batch as its base offset + 1 until the
    next batch is written), so positive counts are taken from what scoring stored."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        await consumer._client.force_metadata_update()
        tps = [
            TopicPartition(t, p)
            for t in (Topics.checkins, Topics.activity)
            for p in (consumer.partitions_for_topic(t) or set())
        ]
        return int(sum((await consumer.end_offsets(tps)).values()))
    finally:
        await consumer.stop()


def obs_event_id(tenant: Tenant, ident: str, system: str = "urn:example:app") -> uuid.UUID:
    return c.derive_event_id(tenant.tenant_id, "Observation", f"identifier\n{system}|{ident}")


def steps_of(pid: str, rid: str, value: int, now: datetime) -> dict[str, Any]:
    steps = ex.steps_observation(value)
    steps["id"] = rid
    steps["subject"] = {"reference": f"Patient/{pid}"}
    steps["effectivePeriod"] = {
        "start": (now - timedelta(hours=3)).isoformat(),
        "end": (now - timedelta(hours=2)).isoformat(),
    }
    return steps


def statuses(body: dict[str, Any]) -> list[str]:
    return [e["response"]["status"] for e in body["entry"]]


async def stored_checkins(db: asyncpg.Connection, tenant: Tenant, pid: str, n: int, timeout_s: float = 30) -> bool:
    """Wait until scoring stored at least `n` check-ins of the patient; then whether they are exactly `n`."""

    async def count() -> int:
        return int(
            await db.fetchval(
                "SELECT count(*) FROM scoring.checkins WHERE tenant_id = $1 AND patient_id = $2", tenant.tenant_id, pid
            )
        )

    await poll(lambda: _at_least(count, n), timeout_s=timeout_s)
    return await count() == n


async def _at_least(count: Any, n: int) -> bool:
    return bool(await count() >= n)


async def test_the_plausibility_floor_rejects_the_epoch_on_every_fhir_write(
    services: Services, stack: EmbeddedStack, tenant: Tenant, db: asyncpg.Connection
) -> None:
    ingest = services.url("ingest")
    pid = f"pt-fhirf-{uuid.uuid4().hex[:6]}"
    now = datetime.now(UTC)
    old = ex.pain_observation(3, ident=f"{pid}-1970", patient=pid, at=EPOCH)
    old_steps = steps_of(pid, f"steps-{pid}-1970", 1200, now)
    old_steps["effectivePeriod"] = {"start": EPOCH, "end": "1970-01-01T01:00:00Z"}
    old_qr = ex.questionnaire_response(ident=f"{pid}-qr-1970", patient=pid)
    old_qr["authored"] = EPOCH
    good = ex.pain_observation(3, ident=f"{pid}-now", patient=pid, at=(now - timedelta(hours=1)).isoformat())
    async with aiohttp.ClientSession() as http:
        await enrol(http, ingest, tenant, pid, [])
        before = await log_end(stack.bootstrap)

        status, body, _ = await post(http, f"{ingest}/fhir/r4/Observation", old, tenant)
        assert status == 422 and body["resourceType"] == "OperationOutcome", body
        (issue,) = body["issue"]
        assert issue["expression"] == ["Observation.effectiveDateTime"] and "plausibility floor" in issue["diagnostics"]
        status, body, _ = await post(http, f"{ingest}/fhir/r4/QuestionnaireResponse", old_qr, tenant)
        assert status == 422 and body["issue"][0]["expression"] == ["QuestionnaireResponse.authored"], body
        status, body, _ = await post(http, f"{ingest}/fhir/r4", ex.bundle("transaction", [good, old]), tenant)
        assert status == 422 and body["issue"][0]["expression"] == ["Bundle.entry[1].resource.effectiveDateTime"]
        status, body, _ = await post(http, f"{ingest}/fhir/r4", ex.bundle("batch", [old, old_steps, old_qr]), tenant)
        assert status == 422, body
        floors = [i for i in body["issue"] if "plausibility floor" in i["diagnostics"]]
        assert {i["expression"][0].split(".")[1] for i in floors} == {"entry[0]", "entry[1]", "entry[2]"}, body
        assert await log_end(stack.bootstrap) == before, "an event before the floor reached the log"

        status, body, _ = await post(http, f"{ingest}/fhir/r4", ex.bundle("batch", [old, good, old_steps]), tenant)
        assert status == 202 and statuses(body) == [
            "422 Unprocessable Entity",
            "202 Accepted",
            "422 Unprocessable Entity",
        ]
        assert await log_end(stack.bootstrap) > before
    assert await stored_checkins(db, tenant, pid, 1)


async def test_fhir_reposts_identical_are_stored_once_and_conflicting_are_409(
    services: Services, stack: EmbeddedStack, tenant: Tenant, db: asyncpg.Connection
) -> None:
    ingest = services.url("ingest")
    pid = f"pt-fhirc-{uuid.uuid4().hex[:6]}"
    now = datetime.now(UTC).replace(microsecond=0)
    at = (now - timedelta(hours=1)).isoformat()
    first = ex.pain_observation(3, ident=f"{pid}-a", patient=pid, at=at)
    first["note"] = [{"text": NOTE}]
    changed = copy.deepcopy(first)
    changed["valueInteger"] = 9
    fresh = ex.pain_observation(4, ident=f"{pid}-b", patient=pid, at=at)
    steps = steps_of(pid, f"steps-{pid}", 4100, now)
    steps_changed = steps_of(pid, f"steps-{pid}", 999, now)
    async with aiohttp.ClientSession() as http:
        await enrol(http, ingest, tenant, pid, [])
        url = f"{ingest}/fhir/r4"

        # single resource: identical repost 202, other content under the same identifier 409
        assert (await post(http, f"{url}/Observation", first, tenant))[0] == 202
        assert (await post(http, f"{url}/Observation", first, tenant))[0] == 202
        status, body, ctype = await post(http, f"{url}/Observation", changed, tenant)
        assert status == 409 and ctype == c.FHIR_JSON and body["resourceType"] == "OperationOutcome", body
        (issue,) = body["issue"]
        assert (issue["code"], issue["expression"]) == ("conflict", ["Observation.identifier"])
        assert NOTE not in json.dumps(body) and f"{pid}-a" not in json.dumps(body)

        # batch: the conflicting entry is 409, the others accepted (an identical repost among them)
        status, body, _ = await post(http, url, ex.bundle("batch", [changed, fresh, first, steps]), tenant)
        assert status == 202, body
        assert statuses(body) == ["409 Conflict", "202 Accepted", "202 Accepted", "202 Accepted"]
        outcome = body["entry"][0]["response"]["outcome"]
        assert outcome["issue"][0]["code"] == "conflict"
        assert outcome["issue"][0]["expression"] == ["Bundle.entry[0].resource.identifier"]
        assert NOTE not in json.dumps(body)
        status, body, _ = await post(http, url, ex.bundle("batch", [steps_changed]), tenant)
        assert status == 409 and body["issue"][0]["code"] == "conflict", body

        # transaction: one conflicting entry fails the Bundle; nothing is published, nothing recorded
        fresh2 = ex.pain_observation(5, ident=f"{pid}-c", patient=pid, at=at)
        steps2 = steps_of(pid, f"steps2-{pid}", 2000, now)
        before = await log_end(stack.bootstrap)
        status, body, _ = await post(http, url, ex.bundle("transaction", [fresh2, steps2, changed]), tenant)
        assert status == 409 and body["resourceType"] == "OperationOutcome", body
        assert [(i["code"], i["expression"]) for i in body["issue"]] == [
            ("conflict", ["Bundle.entry[2].resource.identifier"])
        ]
        assert await log_end(stack.bootstrap) == before, "a failed transaction published events"
        recorded = await db.fetchval(
            "SELECT count(*) FROM ingest.event_digests WHERE tenant_id = $1 AND event_id = ANY($2::uuid[])",
            tenant.tenant_id,
            [obs_event_id(tenant, f"{pid}-c"), c.derive_event_id(tenant.tenant_id, "Observation", f"id\nsteps2-{pid}")],
        )
        assert recorded == 0, "a failed transaction left digests behind"
        # so the corrected entries are new events, not conflicts
        fresh2["valueInteger"] = 6
        steps2["valueQuantity"]["value"] = 2100
        status, body, _ = await post(http, url, ex.bundle("transaction", [fresh2, steps2, first]), tenant)
        assert status == 202 and statuses(body) == ["202 Accepted"] * 3, body

    async def stored(event_id: uuid.UUID) -> list[Any]:
        return list(await db.fetch("SELECT data FROM scoring.checkins WHERE event_id = $1", event_id))

    assert await stored_checkins(db, tenant, pid, 3)  # a (posted five times), b and c: each once
    rows = await stored(obs_event_id(tenant, f"{pid}-a"))
    assert len(rows) == 1 and json.loads(rows[0]["data"])["pain"]["current"] == 3
    assert json.loads((await stored(obs_event_id(tenant, f"{pid}-c")))[0]["data"])["pain"]["current"] == 6
    # the refused versions never reached the log, so scoring saw no conflict
    assert not await db.fetchval(
        "SELECT count(*) FROM scoring.event_conflicts WHERE event_id = $1", obs_event_id(tenant, f"{pid}-a")
    )


async def test_a_bundle_of_1000_full_panels_is_accepted_and_bundles_have_their_own_body_limit(
    services: Services, stack: EmbeddedStack, tenant: Tenant, db: asyncpg.Connection
) -> None:
    ingest = services.url("ingest")
    pid = f"pt-fhirb-{uuid.uuid4().hex[:6]}"
    now = datetime.now(UTC)
    panels = [ex.full_panel(i, pid, now, red_flag=None) for i in range(MAX_ENTRIES)]
    raw = json.dumps(ex.bundle("batch", panels)).encode()
    assert MAX_BODY < len(raw) < BUNDLE_MAX_BODY
    headers = {**tenant.headers, **FHIR}
    async with aiohttp.ClientSession() as http:
        await enrol(http, ingest, tenant, pid, [])
        before = await log_end(stack.bootstrap)
        async with http.post(f"{ingest}/fhir/r4", data=raw, headers=headers) as resp:
            body = await resp.json(content_type=None)
            assert resp.status == 202, body
        assert statuses(body) == ["202 Accepted"] * MAX_ENTRIES
        assert await log_end(stack.bootstrap) > before

        # the limit is the Bundle route's, by Content-Length and without it (chunked)
        small = json.dumps(
            ex.bundle("batch", [ex.pain_observation(2, ident=f"{pid}-s", patient=pid, at=now.isoformat())])
        )
        at_limit = small.encode() + b" " * (BUNDLE_MAX_BODY - len(small))
        async with http.post(f"{ingest}/fhir/r4", data=at_limit, headers=headers) as resp:
            assert resp.status == 202, await resp.text()
        async with http.post(f"{ingest}/fhir/r4", data=at_limit + b" ", headers=headers) as resp:
            outcome = await resp.json(content_type=None)
            assert resp.status == 413 and resp.content_type == c.FHIR_JSON, outcome
            assert outcome["issue"][0]["code"] == "too-costly"
            assert str(BUNDLE_MAX_BODY) in outcome["issue"][0]["diagnostics"]

        async def chunks() -> AsyncIterator[bytes]:
            data = at_limit + b" "
            for i in range(0, len(data), 256 * 1024):
                yield data[i : i + 256 * 1024]

        async with http.post(f"{ingest}/fhir/r4", data=chunks(), headers=headers) as resp:
            assert resp.request_info.headers.get("Transfer-Encoding") == "chunked"
            assert resp.status == 413 and (await resp.json(content_type=None))["issue"][0]["code"] == "too-costly"

        # the single-resource endpoint and the JSON API keep the app-wide 1 MiB
        one = json.dumps(ex.pain_observation(2, ident=f"{pid}-o", patient=pid, at=now.isoformat())).encode()
        padded = one + b" " * (MAX_BODY + 1 - len(one))
        async with http.post(f"{ingest}/fhir/r4/Observation", data=padded, headers=headers) as resp:
            outcome = await resp.json(content_type=None)
            assert resp.status == 413 and outcome["issue"][0]["code"] == "too-costly", outcome
            assert str(MAX_BODY) in outcome["issue"][0]["diagnostics"]
        batch = json.dumps({"items": []}).encode()
        padded = batch[:-1] + b" " * (MAX_BODY + 1 - len(batch)) + b"}"
        json_headers = {**tenant.headers, "Content-Type": "application/json"}
        async with http.post(f"{ingest}/v1/checkins/batch", data=padded, headers=json_headers) as resp:
            assert resp.status == 413 and resp.content_type == "application/problem+json"

    # every panel and the Bundle at the limit, each stored once
    assert await stored_checkins(db, tenant, pid, MAX_ENTRIES + 1, timeout_s=120)
