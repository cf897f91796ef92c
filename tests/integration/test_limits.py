"""Input limits, each tested at the limit (accepted) and just beyond it (rejected with a problem).

Also regression tests for the 500s the fuzzer and review found (see tests/integration/test_fuzz.py).
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest

from nervewatch.http import MAX_BODY, MAX_HEADER_FIELD, MAX_HEADERS, MAX_REQUEST_LINE
from nervewatch.problems import MAX_JSON_DEPTH
from schemas.activity import MAX_SAMPLES
from schemas.checkins import MAX_BATCH, MAX_NOTES
from tests.support import Services, Tenant, create_tenant, enrol

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
async def limits_tenant(services: Services, database_url: str) -> Tenant:
    return await create_tenant(database_url, f"limits-{uuid.uuid4().hex[:6]}")


@pytest.fixture(scope="module")
async def pid(services: Services, limits_tenant: Tenant) -> str:
    async with aiohttp.ClientSession() as http:
        await enrol(http, services.url("ingest"), limits_tenant, "lim-1", [])
    return "lim-1"


def checkin(pid: str, **patch: Any) -> dict[str, Any]:
    return {
        "event_id": str(uuid.uuid4()),
        "patient_id": pid,
        "recorded_at": (datetime.now(UTC) - timedelta(hours=1)).isoformat(),
        "pain": {"current": 3},
        **patch,
    }


def sample(**patch: Any) -> dict[str, Any]:
    start = datetime.now(UTC) - timedelta(days=2)
    return {
        "event_id": str(uuid.uuid4()),
        "type": "steps",
        "start": start.isoformat(),
        "end": (start + timedelta(minutes=1)).isoformat(),
        "value": 10,
        **patch,
    }


async def call(
    http: aiohttp.ClientSession,
    method: str,
    url: str,
    tenant: Tenant,
    body: Any = None,
    *,
    raw: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, str, Any]:
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    hdrs = {**tenant.headers, "Content-Type": "application/json", **(headers or {})}
    async with http.request(method, url, data=data, headers=hdrs) as resp:
        text = await resp.text()
        try:
            parsed = json.loads(text)
        except ValueError:
            parsed = text
        return resp.status, resp.content_type, parsed


def locs(problem: dict[str, Any]) -> list[list[str | int]]:
    return [e["loc"] for e in problem.get("errors", [])]


async def expect_rejected(result: tuple[int, str, Any], status: int, loc: list[str | int] | None = None) -> None:
    got, ctype, body = result
    assert got == status, body
    assert ctype == "application/problem+json"
    if loc is not None:
        assert loc in locs(body), locs(body)


async def test_batch_and_sample_counts(services: Services, limits_tenant: Tenant, pid: str) -> None:
    ingest = services.url("ingest")
    async with aiohttp.ClientSession() as http:
        full = {"items": [checkin(pid) for _ in range(MAX_BATCH)]}
        status, _, body = await call(http, "POST", f"{ingest}/v1/checkins/batch", limits_tenant, full)
        assert status == 202 and body["accepted"] == MAX_BATCH, body
        over = {"items": [checkin(pid) for _ in range(MAX_BATCH + 1)]}
        await expect_rejected(
            await call(http, "POST", f"{ingest}/v1/checkins/batch", limits_tenant, over), 422, ["items"]
        )

        envelope = {"patient_id": pid, "device": {"id": "w" * 128, "kind": "wrist"}}
        full_samples = {**envelope, "samples": [sample() for _ in range(MAX_SAMPLES)]}
        assert len(json.dumps(full_samples)) < MAX_BODY
        status, _, body = await call(http, "POST", f"{ingest}/v1/activity", limits_tenant, full_samples)
        assert status == 202 and body["accepted"] == MAX_SAMPLES, body
        over_samples = {**envelope, "samples": [{} for _ in range(MAX_SAMPLES + 1)]}
        await expect_rejected(
            await call(http, "POST", f"{ingest}/v1/activity", limits_tenant, over_samples), 422, ["samples"]
        )


async def test_free_string_lengths(services: Services, limits_tenant: Tenant, pid: str) -> None:
    ingest, alerts = services.url("ingest"), services.url("alerts")
    async with aiohttp.ClientSession() as http:
        ok = await call(http, "POST", f"{ingest}/v1/checkins", limits_tenant, checkin(pid, notes="n" * MAX_NOTES))
        assert ok[0] == 202, ok
        await expect_rejected(
            await call(http, "POST", f"{ingest}/v1/checkins", limits_tenant, checkin(pid, notes="n" * 2001)),
            422,
            ["notes"],
        )
        await expect_rejected(
            await call(http, "POST", f"{ingest}/v1/checkins", limits_tenant, checkin("p" * 65)), 422, ["patient_id"]
        )
        device = {"patient_id": pid, "device": {"id": "d" * 129, "kind": "ring"}, "samples": [sample()]}
        await expect_rejected(
            await call(http, "POST", f"{ingest}/v1/activity", limits_tenant, device), 422, ["device", "id"]
        )

        def patient(**patch: Any) -> dict[str, Any]:
            return {"patient_id": pid, "condition": "carpal_tunnel", "treatment": "conservative", "timezone": "UTC"} | (
                patch
            )

        def member(**patch: Any) -> dict[str, Any]:
            return {"member_id": "m" * 64, "role": "physician", "notify": {"email": "a@b.co"}} | patch

        ok = await call(http, "POST", f"{ingest}/v1/patients", limits_tenant, patient(care_team=[member()]))
        assert ok[0] == 200, ok
        rejected: list[tuple[dict[str, Any], list[str | int] | None]] = [
            (patient(care_team=[member(member_id="m" * 65)]), ["care_team", 0, "member_id"]),
            (patient(care_team=[member(notify={"email": "a" * 64 + "@" + "b" * 200 + ".org"})]), None),
            (
                patient(care_team=[member(notify={"webhook_url": "https://x.org/" + "a" * 2048})]),
                ["care_team", 0, "notify", "webhook_url"],
            ),
            (patient(timezone="Europe/" + "x" * 60), ["timezone"]),
            (patient(care_team=[member(member_id=f"m{i}") for i in range(51)]), ["care_team"]),
        ]
        for bad, loc in rejected:
            await expect_rejected(await call(http, "POST", f"{ingest}/v1/patients", limits_tenant, bad), 422, loc)

        action = f"{alerts}/v1/alerts/al_nonexistent/acknowledge"
        await expect_rejected(
            await call(http, "POST", action, limits_tenant, {"by": "m", "note": "x" * 2001}), 422, ["note"]
        )
        await expect_rejected(await call(http, "POST", action, limits_tenant, {"by": "m" * 65}), 422, ["by"])
        await expect_rejected(await call(http, "POST", action, limits_tenant, {"by": "m", "note": "x" * 2000}), 404)
        snooze = {"kind": "plateau", "until": "2030-01-01T00:00:00Z", "by": "m" * 65}
        await expect_rejected(
            await call(http, "POST", f"{alerts}/v1/patients/{pid}/snoozes", limits_tenant, snooze), 422, ["by"]
        )


def nested(depth: int) -> Any:
    """`depth` levels of arrays around a number."""
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


async def test_json_nesting_depth(services: Services, limits_tenant: Tenant, pid: str) -> None:
    url = f"{services.url('ingest')}/v1/checkins"
    async with aiohttp.ClientSession() as http:
        # The body object is one level: at the limit it is parsed and reaches validation (422); one level
        # deeper it does not (400).
        at_limit = checkin(pid, notes=nested(MAX_JSON_DEPTH - 1))
        await expect_rejected(await call(http, "POST", url, limits_tenant, at_limit), 422, ["notes"])
        too_deep = checkin(pid, notes=nested(MAX_JSON_DEPTH))
        status, _, body = await call(http, "POST", url, limits_tenant, too_deep)
        assert status == 400 and body["type"].endswith("/too-deep"), body
        # Far beyond the interpreter's recursion limit: still a 400, not a RecursionError (was a 500).
        status, _, body = await call(http, "POST", url, limits_tenant, raw=b"[" * 200_000)
        assert status == 400 and body["type"].endswith("/too-deep"), body


async def test_body_size(services: Services, limits_tenant: Tenant, pid: str) -> None:
    url = f"{services.url('ingest')}/v1/checkins"
    async with aiohttp.ClientSession() as http:
        body = json.dumps(checkin(pid, notes="x")).encode()
        padded = body[:-1] + b" " * (MAX_BODY - len(body)) + b"}"
        assert len(padded) == MAX_BODY
        assert (await call(http, "POST", url, limits_tenant, raw=padded))[0] == 202
        await expect_rejected(await call(http, "POST", url, limits_tenant, raw=padded + b" "), 413)


async def test_query_parameter_length(services: Services, limits_tenant: Tenant) -> None:
    url = f"{services.url('alerts')}/v1/alerts"
    async with aiohttp.ClientSession() as http:
        await expect_rejected(await call(http, "GET", f"{url}?cursor={'A' * 1025}", limits_tenant), 400)
        status, _, body = await call(http, "GET", f"{url}?cursor={'A' * 1024}", limits_tenant)
        assert status == 400 and body["type"].endswith("/invalid-cursor"), body
        status, _, _ = await call(http, "GET", f"{url}?status=open", limits_tenant)
        assert status == 200


async def test_http_line_and_header_limits(services: Services, limits_tenant: Tenant) -> None:
    """Refused by aiohttp's parser before any application code, answered by every service as
    414 / 431 problem+json that echo nothing; the logs hold nothing of the request but its size."""
    pid = f"pt-huge-{uuid.uuid4().hex[:8]}"
    prefix = limits_tenant.key[:8]
    paths = {
        "ingest": f"/v1/patients/{pid}",
        "scoring": f"/v1/patients/{pid}/trajectory",
        "alerts": f"/v1/alerts?patient_id={pid}",
    }
    async with aiohttp.ClientSession() as http:
        for service, path in paths.items():
            url = services.url(service) + path
            sep = "&" if "?" in path else "?"
            cases = [
                (f"{url}{sep}pad={'a' * 9000}", {}, 414),
                (f"{url}{sep}pad={'a' * (MAX_REQUEST_LINE + 1)}", {}, 414),
                (url, {"X-Context": f"{pid}-{prefix}-" + "a" * 9000}, 431),
                (url, {"X-Big": "a" * (MAX_HEADER_FIELD + 1)}, 431),
                (url, {f"X-H{i}": pid for i in range(MAX_HEADERS + 10)}, 431),
            ]
            for target, extra, want in cases:
                async with http.get(target, headers={**limits_tenant.headers, **extra}) as resp:
                    text = await resp.text()
                    assert resp.status == want, (service, resp.status, text[:200])
                    assert resp.content_type == "application/problem+json", service
                    assert json.loads(text)["status"] == want
                    assert pid not in text and prefix not in text and "aaaa" not in text, text[:200]
            async with http.get(url, headers=limits_tenant.headers) as resp:
                assert resp.status in (200, 404), service  # unharmed
    logs = services.logs()
    assert pid not in logs and prefix not in logs and limits_tenant.key not in logs
    refusals = [json.loads(line) for line in logs.splitlines() if "over the size limit" in line]
    assert refusals and all(r["level"] == "warning" and "exc" not in r for r in refusals)


async def test_unsupported_method_answers_405_with_allow(services: Services, limits_tenant: Tenant) -> None:
    cases = (
        ("ingest", "/v1/checkins", {"POST"}),
        ("scoring", "/v1/patients/p-1/trajectory", {"GET", "HEAD"}),
        ("alerts", "/v1/alerts", {"GET", "HEAD"}),
        ("alerts", "/healthz", {"GET", "HEAD"}),
    )
    async with aiohttp.ClientSession() as http:
        for service, path, allowed in cases:
            async with http.request("PATCH", services.url(service) + path, headers=limits_tenant.headers) as resp:
                assert resp.status == 405, (service, path)
                assert resp.content_type == "application/problem+json"
                assert set(resp.headers["Allow"].split(",")) == allowed, resp.headers["Allow"]
                problem = await resp.json(content_type=None)
                assert problem["status"] == 405 and "PATCH" not in problem.get("detail", "")


async def test_regressions_found_by_fuzzing(services: Services, limits_tenant: Tenant, pid: str) -> None:
    """Each of these was a 500 (or, for the check-in, a poison event accepted with 202)."""
    ingest, alerts, scoring = services.url("ingest"), services.url("alerts"), services.url("scoring")
    policy = f"{alerts}/v1/admin/alert-policy"
    async with aiohttp.ClientSession() as http:
        cases: list[tuple[str, str, Any, bytes | None, int]] = [
            # json.loads RecursionError, unpaired surrogate (unserialisable), NUL (PostgreSQL cannot store it)
            ("POST", f"{ingest}/v1/patients", None, b"{" * 5000, 400),
            ("POST", f"{ingest}/v1/checkins", None, json.dumps(checkin(pid, notes="a\ud800b")).encode(), 400),
            ("POST", f"{ingest}/v1/checkins", checkin(pid, notes="a\x00b"), None, 400),
            ("POST", f"{ingest}/v1/activity", {"patient_id": pid, "device": {"id": "\x00", "kind": "ring"}}, None, 400),
            # datetime overflow on conversion to UTC
            ("POST", f"{ingest}/v1/checkins", checkin(pid, recorded_at="0001-01-01T00:00:00+14:00"), None, 422),
            ("GET", f"{alerts}/v1/alerts?since=0001-01-01T00:00:00%2B14:00", None, None, 400),
            # a tzdata directory is not a time zone (IsADirectoryError)
            (
                "POST",
                f"{ingest}/v1/patients",
                {"patient_id": pid, "condition": "carpal_tunnel", "treatment": "conservative", "timezone": "Europe"},
                None,
                422,
            ),
            ("PUT", policy, {"timezone": "Europe"}, None, 422),
            ("PUT", policy, {"timezone": "x" * 5000}, None, 422),
            # durations beyond timedelta, and beyond a year
            ("PUT", policy, {"hysteresis_hours": 1e300}, None, 422),
            ("PUT", policy, {"repeat_interval_minutes": 1e12}, None, 422),
            # NUL in path ids reached PostgreSQL
            ("GET", f"{alerts}/v1/alerts/al_%00", None, None, 404),
            ("GET", f"{alerts}/v1/alerts/a%00/audit", None, None, 404),
            ("POST", f"{alerts}/v1/alerts/a%00/resolve", {"by": "m"}, None, 404),
            (
                "POST",
                f"{alerts}/v1/patients/p%00/snoozes",
                {"kind": "plateau", "until": "2030-01-01T00:00:00Z", "by": "m"},
                None,
                404,
            ),
            ("GET", f"{scoring}/v1/patients/p%00/trajectory", None, None, 404),
        ]
        for method, url, body, raw, status in cases:
            got = await call(http, method, url, limits_tenant, body, raw=raw)
            assert got[0] == status and got[1] == "application/problem+json", (method, url[:80], got)
            assert "\x00" not in json.dumps(got[2]) and "a\\ud800b" not in json.dumps(got[2])
