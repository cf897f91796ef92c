"""Fuzzing the HTTP API from its OpenAPI description, against the real services.

Two parts:
- schema-driven: schemathesis builds requests for every operation of `schemas/openapi.py` (both
  schema-conforming and deliberately invalid: wrong types, missing fields, out-of-range values,
  invalid path and query parameters), sent with a valid key of a tenant of its own;
- hostile bodies and URLs the schema cannot express: malformed JSON, deep nesting, huge strings,
  NUL and unpaired surrogates, non-UTF-8 bytes, unicode, wrong media types, odd path ids.

Every answer must be below 500; every error must be `application/problem+json` with the documented
shape and must not echo free text; afterwards the services are ready, no process died, nothing new
was logged as an unhandled error, and every event the fuzz got accepted was processed by scoring
(nothing dead-lettered).

The admin operations are fuzzed like every other one, including the destructive ones, which must
never hit the key the fuzz itself sends. Key rotation and revocation take a `key_id` path parameter:
the generated ids (`key_` + 16 random hex digits) are unknown keys (404), and the steered half of the
cases is pointed at throwaway keys created for that purpose (`FuzzContext.spare_keys`, handed out
one per case), so the success (201/204) and conflict (409, an expired or revoked key) paths run too;
an id that happened to equal the fuzz's own key would be replaced as well. Webhook-secret rotation
changes only the fuzz tenant's signing secret, which no part of the fuzz uses (its patient has no
care team, so no webhook is sent); it cannot touch an API key. Creating keys only adds keys. After
the fuzz the test checks that its own key is neither revoked nor given an expiry and still works,
and that the throwaway keys really were rotated and revoked. `test_admin_operations_refuse_bad_input`
adds explicit negative inputs (ids, bodies, query values at the edges) that must be 4xx problems.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiohttp
import asyncpg
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.core.result import Ok

from nervewatch.http import MAX_REQUEST_LINE
from nervewatch.identity.store import IdentityStore, hash_key
from schemas.openapi import ROUTES, build, route_for
from schemas.problems import Problem
from tests.support import SERVICES, Services, Tenant, create_tenant, enrol, post_red_flag, wait_alert

pytestmark = pytest.mark.integration

EXAMPLES = 15  # per operation and generation mode (positive, negative)
SKIP = {("get", "/v1/alerts/stream")}  # endless; covered by test_stream_answers_and_closes
PATIENT = "fz-patient-1"
UNKNOWN_ENTRY = "te_000000000000000000000000"  # a well-formed time entry id that does not exist


SPARE_KEYS = 120  # throwaway keys for the steered rotate/revoke cases (one per case; the last is reused)


@dataclass
class FuzzContext:
    tenant: Tenant
    patient_id: str
    alert_id: str
    own_key_id: str
    spare_keys: list[str]
    _next_spare: int = 0

    def spare_key(self) -> str:
        """A throwaway key of the fuzz tenant (never the fuzz's own key)."""
        key_id = self.spare_keys[min(self._next_spare, len(self.spare_keys) - 1)]
        self._next_spare += 1
        return key_id


@dataclass
class Tally:
    requests: Counter[str] = field(default_factory=Counter)
    statuses: Counter[tuple[str, int]] = field(default_factory=Counter)
    accepted_checkins: set[str] = field(default_factory=set)
    accepted_samples: set[str] = field(default_factory=set)


@pytest.fixture(scope="module")
async def fuzz(services: Services, database_url: str) -> FuzzContext:
    """A tenant of its own (the fuzz changes its policy, keys and data), one enrolled patient, one
    alert, and throwaway keys for the rotate and revoke operations."""
    tenant = await create_tenant(database_url, f"fuzz-{uuid.uuid4().hex[:6]}")
    async with aiohttp.ClientSession() as http:
        await enrol(http, services.url("ingest"), tenant, PATIENT, [])
        await post_red_flag(http, services.url("ingest"), tenant, PATIENT)
        alert = await wait_alert(http, services.url("alerts"), tenant, PATIENT)
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
    try:
        own = await pool.fetchval("SELECT key_id FROM identity.api_keys WHERE key_hash = $1", hash_key(tenant.key))
        store = IdentityStore(pool)
        spare = [(await store.create_key(tenant.tenant_id, frozenset({"care"})))[0] for _ in range(SPARE_KEYS)]
    finally:
        await pool.close()
    assert own is not None and own not in spare
    return FuzzContext(tenant, PATIENT, alert["id"], str(own), spare)


def _base(services: Services, method: str, path: str) -> str:
    service = route_for(method, path).service
    return services.url("alerts" if service == "all" else service)


def _free_texts(body: Any) -> list[str]:
    """Free-text values of a request body that must never come back in an error."""
    out: list[str] = []
    if isinstance(body, dict):
        for key in ("notes", "note"):
            value = body.get(key)
            if isinstance(value, str) and len(value.strip()) >= 8:
                out.append(value)
        for value in body.values():
            if isinstance(value, dict | list):
                out.extend(_free_texts(value))
    elif isinstance(body, list):
        for value in body:
            out.extend(_free_texts(value))
    return out


def check_response(
    method: str, path: str, status: int, ctype: str, text: str, sent_texts: list[str], where: str
) -> None:
    assert status < 500, f"{where}: {status} {text[:300]}"
    route = route_for(method, path)
    if status >= 400:
        assert ctype == "application/problem+json", f"{where}: {status} {ctype} {text[:200]}"
        problem = Problem.model_validate_json(text)
        assert problem.status == status, where
        assert problem.title, where
        assert status in route.errors or status in route.responses or status == 405, f"{where}: undocumented {status}"
        for note in sent_texts:
            assert note not in text, f"{where}: free text echoed in a {status}"
        return
    assert status in route.responses, f"{where}: undocumented {status}"
    _, model = route.responses[status]
    if model is not None:
        model.model_validate_json(text)


def _steer(case: Any, ctx: FuzzContext, use_known: bool) -> Any:
    """Point part of the cases at things that exist, so the deeper code paths run too.

    A `key_id` path parameter (rotate, revoke) is only ever a throwaway key or a generated one,
    never the key the fuzz sends."""
    key_id = (case.path_parameters or {}).get("key_id")
    if key_id is not None and (use_known or key_id == ctx.own_key_id):
        case.path_parameters["key_id"] = ctx.spare_key()
    if not use_known:
        return case
    if isinstance(case.query, dict) and "key_id" in case.query:
        case.query["key_id"] = ctx.own_key_id  # a read-only filter of the access log
    if case.path_parameters:
        if "patient_id" in case.path_parameters:
            case.path_parameters["patient_id"] = ctx.patient_id
        if "alert_id" in case.path_parameters:
            case.path_parameters["alert_id"] = ctx.alert_id
    if isinstance(case.body, dict) and "patient_id" in case.body:
        case.body["patient_id"] = ctx.patient_id
        if "timezone" in case.body:
            case.body["timezone"] = "UTC"
        _plausible_times(case.body)
    return case


def _plausible_times(body: dict[str, Any]) -> None:
    """Move generated event times before 2000 (the default plausibility floor) into 2024, keeping
    their format, so that steered check-ins and samples can be accepted; later ones stay as they are."""

    def shift(value: Any) -> Any:
        if isinstance(value, str) and len(value) > 4 and value[:4].isdigit() and value[:4] < "2000":
            return "2024" + value[4:]  # 2024 is a leap year: every generated month and day stays valid
        return value

    if "recorded_at" in body:
        body["recorded_at"] = shift(body["recorded_at"])
    if isinstance(body.get("pt_session"), dict) and "ended_at" in body["pt_session"]:
        body["pt_session"]["ended_at"] = shift(body["pt_session"]["ended_at"])
    for sample in body.get("samples") or []:
        if isinstance(sample, dict):
            for key in ("start", "end"):
                if key in sample:
                    sample[key] = shift(sample[key])


def fuzz_operation(
    op: Any, mode: GenerationMode, services: Services, ctx: FuzzContext, tally: Tally, http: requests.Session
) -> None:
    method, path = op.method.lower(), op.path
    label = f"{method.upper()} {path}"
    route = route_for(method, path)

    @settings(
        max_examples=EXAMPLES,
        derandomize=True,
        deadline=None,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=op.as_strategy(generation_mode=mode), use_known=st.booleans())
    def one(case: Any, use_known: bool) -> None:
        case = _steer(case, ctx, use_known)
        resp = case.call(base_url=_base(services, method, path), session=http, headers=ctx.tenant.headers, timeout=15)
        if resp.status_code == 503 and 503 in route.errors and resp.headers.get("retry-after"):
            # The documented back-pressure answer of ingest (a busy machine can time a produce out):
            # retry as the contract tells clients to; the same event_id is harmless.
            time.sleep(1)
            resp = case.call(
                base_url=_base(services, method, path), session=http, headers=ctx.tenant.headers, timeout=15
            )
        tally.requests[label] += 1
        tally.statuses[(label, resp.status_code)] += 1
        ctype = (resp.headers.get("content-type") or [""])[0].split(";")[0].strip()
        if len(resp.request.url or "") > MAX_REQUEST_LINE - 64 and resp.status_code == 414:
            # aiohttp's HTTP parser refuses the request line before any application code; the answer
            # is still a problem (nervewatch.http_protocol) and echoes nothing
            assert ctype == "application/problem+json", resp.text[:200]
            assert Problem.model_validate_json(resp.text).status == 414
            assert "/v1/" not in resp.text, resp.text[:200]
            return
        where = f"{label} [{mode.value}] {case.as_curl_command()[:600]}"
        check_response(method, path, resp.status_code, ctype, resp.text, _free_texts(case.body), where)
        if resp.status_code == 202 and path == "/v1/checkins":
            tally.accepted_checkins.add(resp.json()["event_id"])
        if resp.status_code == 202 and path == "/v1/checkins/batch":
            tally.accepted_checkins.update(resp.json()["accepted_event_ids"])
        if resp.status_code == 202 and path == "/v1/activity" and isinstance(case.body, dict):
            rejected = {e["index"] for e in resp.json()["errors"]}
            samples = case.body.get("samples") or []
            tally.accepted_samples.update(str(s["event_id"]) for i, s in enumerate(samples) if i not in rejected)

    one()


def run_schema_fuzz(services: Services, ctx: FuzzContext, tally: Tally) -> None:
    schema = schemathesis.openapi.from_dict(build())
    http = requests.Session()
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), result
        op = result.ok()
        if (op.method.lower(), op.path) in SKIP:
            continue
        route = route_for(op.method, op.path)
        has_input = route.request is not None or bool(route.params)
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE) if has_input else (GenerationMode.POSITIVE,):
            fuzz_operation(op, mode, services, ctx, tally, http)


# -- hostile requests the schema cannot express -----------------------------------------------------


def _nested(depth: int) -> bytes:
    return b"[" * depth + b"1" + b"]" * depth


def hostile_bodies(pid: str) -> list[tuple[str, bytes, str]]:
    """(name, body, content type) for every JSON-body endpoint."""
    now = datetime.now(UTC).isoformat()
    checkin = {"event_id": str(uuid.uuid4()), "patient_id": pid, "recorded_at": now, "pain": {"current": 2}}
    return [
        ("empty", b"", "application/json"),
        ("not json", b"{'a': 1,}", "application/json"),
        ("truncated", b'{"patient_id": "p', "application/json"),
        ("NaN", b'{"pain": {"current": NaN}}', "application/json"),
        ("Infinity", b'{"grip_strength_kg": -Infinity}', "application/json"),
        ("huge int", b'{"tingling": ' + b"9" * 5000 + b"}", "application/json"),
        ("huge exponent", b'{"grip_strength_kg": 1e999999}', "application/json"),
        ("array", b"[1, 2, 3]", "application/json"),
        ("string", b'"hello"', "application/json"),
        ("null", b"null", "application/json"),
        ("number", b"42", "application/json"),
        ("nested 33", _nested(33), "application/json"),
        ("nested objects 40", b'{"a":' * 40 + b"1" + b"}" * 40, "application/json"),
        ("nested 100k", _nested(100_000), "application/json"),
        ("nested in field", json.dumps({**checkin, "notes": json.loads(_nested(40))}).encode(), "application/json"),
        ("latin-1", '{"notes": "café"}'.encode("latin-1"), "application/json"),
        ("utf-16", json.dumps(checkin).encode("utf-16"), "application/json"),
        ("bom", b"\xef\xbb\xbf" + json.dumps(checkin).encode(), "application/json"),
        ("lone surrogate", json.dumps({**checkin, "notes": "PRIVATE \ud800 NOTE"}).encode(), "application/json"),
        ("NUL", json.dumps({**checkin, "notes": "PRIVATE\x00NOTE"}).encode(), "application/json"),
        ("NUL key", json.dumps({**checkin, "no\x00tes": "x"}).encode(), "application/json"),
        ("huge note", json.dumps({**checkin, "notes": "PRIVATE NOTE " * 70_000}).encode(), "application/json"),
        ("over 1 MiB", json.dumps({**checkin, "notes": "x" * (1024 * 1024 + 1)}).encode(), "application/json"),
        ("many keys", json.dumps({f"k{i}": i for i in range(50_000)}).encode(), "application/json"),
        ("duplicate keys", b'{"patient_id": "a", "patient_id": "b"}', "application/json"),
        ("text/plain", json.dumps(checkin).encode(), "text/plain"),
        ("form", b"a=1&b=2", "application/x-www-form-urlencoded"),
        ("no content type", json.dumps(checkin).encode(), ""),
        ("bad content type", json.dumps(checkin).encode(), "application/json; charset=ebcdic; ;;;"),
        (
            "unicode fields",
            json.dumps({**checkin, "patient_id": "患者-١٢٣", "notes": "😀\u202e\u0301 مرحبا"}).encode(),
            "application/json",
        ),
        (
            "wrong types",
            json.dumps({**checkin, "pain": [], "event_id": 5, "recorded_at": True}).encode(),
            "application/json",
        ),
        ("items wrong", b'{"items": {"a": 1}}', "application/json"),
        ("items junk", json.dumps({"items": [None, 1, "x", [], {}, [[[]]]]}).encode(), "application/json"),
        (
            "samples junk",
            json.dumps(
                {"patient_id": pid, "device": {"id": "d", "kind": "wrist"}, "samples": [None, "x", {}]}
            ).encode(),
            "application/json",
        ),
    ]


BAD_IDS = [
    "%00",
    "a%00b",
    "x" * 5000,
    "%E2%80%AE%F0%9F%98%80",
    "..",
    "%2e%2e%2f%2e%2e",
    "a%2Fb",
    "%FF%FE",
    "%ud800",
    "al_%0d%0aX-Injected:%201",
    "' OR 1=1 --",
    "%25",
]


async def _send(
    http: aiohttp.ClientSession, method: str, url: str, headers: dict[str, str], body: bytes | None, ctype: str
) -> tuple[int, str, str]:
    hdrs = dict(headers)
    if ctype:
        hdrs["Content-Type"] = ctype
    for attempt in range(2):
        async with http.request(method, url, data=body, headers=hdrs, skip_auto_headers=["Content-Type"]) as resp:
            text = await resp.text(errors="replace")
            if resp.status == 503 and "Retry-After" in resp.headers and attempt == 0:
                await asyncio.sleep(1)  # documented back-pressure: retry once, as clients must
                continue
            return resp.status, resp.content_type, text
    raise AssertionError("unreachable")


async def run_hostile(services: Services, ctx: FuzzContext, tally: Tally) -> None:
    body_routes = [r for r in ROUTES if r.request is not None]
    id_routes = [r for r in ROUTES if r.params and r.params[0].where == "path"]
    async with aiohttp.ClientSession() as http:
        for route in body_routes:
            key_id = ctx.spare_key() if "{key_id}" in route.path else ""
            path = route.path.format(
                patient_id=ctx.patient_id,
                alert_id=ctx.alert_id,
                key_id=key_id,
                snooze_id="sn_unknown",
                entry_id=UNKNOWN_ENTRY,
                condition="carpal_tunnel",
                treatment="conservative",
            )
            url = services.url("alerts" if route.service == "all" else route.service) + path
            for name, body, ctype in hostile_bodies(ctx.patient_id):
                status, got_type, text = await _send(http, route.method, url, ctx.tenant.headers, body, ctype)
                label = f"{route.method.upper()} {route.path}"
                tally.requests[label] += 1
                tally.statuses[(label, status)] += 1
                check_response(route.method, route.path, status, got_type, text, ["PRIVATE"], f"{label} {name}")
        for route in id_routes:
            for bad in BAD_IDS:
                path = route.path.replace("{patient_id}", bad).replace("{alert_id}", bad).replace("{key_id}", bad)
                url = services.url(route.service) + path
                payload = (
                    b'{"by": "m-1", "kind": "plateau", "until": "2030-01-01T00:00:00Z"}' if route.request else None
                )
                status, got_type, text = await _send(
                    http, route.method, url, ctx.tenant.headers, payload, "application/json" if payload else ""
                )
                label = f"{route.method.upper()} {route.path}"
                tally.requests[label] += 1
                tally.statuses[(label, status)] += 1
                check_response(route.method, route.path, status, got_type, text, [], f"{label} id={bad[:40]}")


def _unhandled_errors(services: Services) -> list[str]:
    return [line for line in services.logs().splitlines() if "unhandled error" in line]


async def test_fuzz_the_api_from_its_openapi_description(
    services: Services, fuzz: FuzzContext, db: asyncpg.Connection
) -> None:
    started = time.monotonic()
    errors_before = len(_unhandled_errors(services))
    tally = Tally()
    await asyncio.to_thread(run_schema_fuzz, services, fuzz, tally)
    await run_hostile(services, fuzz, tally)
    elapsed = time.monotonic() - started
    total = sum(tally.requests.values())
    accepted = f"{len(tally.accepted_checkins)} check-ins, {len(tally.accepted_samples)} samples accepted"
    print(f"\nfuzz: {total} requests in {elapsed:.1f}s; {accepted}")
    for label, n in sorted(tally.requests.items()):
        codes = {s: c for (lbl, s), c in sorted(tally.statuses.items()) if lbl == label}
        print(f"  {label:45} {n:4} {codes}")

    # Every operation was exercised; some schema-valid requests got through the validation.
    expected = {f"{r.method.upper()} {r.path}" for r in ROUTES if (r.method, r.path) not in SKIP}
    assert expected <= set(tally.requests), expected - set(tally.requests)
    assert tally.accepted_checkins, "no fuzzed check-in was accepted: the generator only exercised rejections"

    # The destructive admin operations reached real (throwaway) keys, and never the fuzz's own key.
    rotated = tally.statuses[("POST /v1/admin/keys/{key_id}/rotate", 201)]
    revoked = tally.statuses[("DELETE /v1/admin/keys/{key_id}", 204)]
    assert rotated and revoked, "no throwaway key was rotated or revoked: the steering did not work"
    own = await db.fetchrow("SELECT revoked_at, expires_at FROM identity.api_keys WHERE key_id = $1", fuzz.own_key_id)
    assert own is not None and own["revoked_at"] is None and own["expires_at"] is None, dict(own or {})
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{services.url('ingest')}/v1/admin/keys", headers=fuzz.tenant.headers) as resp,
    ):
        assert resp.status == 200, await resp.text()

    # The services are alive and ready, and logged no unhandled error.
    for s in SERVICES:
        assert services.procs[s].poll() is None, f"{s} died"
    async with aiohttp.ClientSession() as http:
        for s in SERVICES:
            async with http.get(f"{services.url(s)}/readyz") as resp:
                assert resp.status == 200, (s, await resp.text())
    new_errors = _unhandled_errors(services)[errors_before:]
    assert not new_errors, f"a request or worker raised an unhandled error: {new_errors}"

    # Everything accepted was processed by scoring (nothing poisoned a consumer or was dead-lettered).
    async def processed() -> bool:
        got = await db.fetchval(
            "SELECT count(*) FROM scoring.checkins WHERE tenant_id = $1 AND event_id = ANY($2::uuid[])",
            fuzz.tenant.tenant_id,
            [uuid.UUID(e) for e in tally.accepted_checkins],
        )
        samples = await db.fetchval(
            "SELECT count(DISTINCT event_id) FROM scoring.activity WHERE tenant_id = $1 AND event_id = ANY($2::uuid[])",
            fuzz.tenant.tenant_id,
            [uuid.UUID(e) for e in tally.accepted_samples],
        )
        return bool(got == len(tally.accepted_checkins) and samples == len(tally.accepted_samples))

    deadline = time.monotonic() + 60
    while not await processed():
        assert time.monotonic() < deadline, "accepted fuzz events were not all processed by scoring"
        await asyncio.sleep(0.2)


async def test_admin_operations_refuse_bad_input(services: Services, fuzz: FuzzContext) -> None:
    """Explicit negative inputs for the admin operations, at the edges the generator rarely reaches:
    every one is a 4xx problem (never a 5xx) that echoes nothing, and the fuzz's key survives."""
    ingest = services.url("ingest")
    unknown = "key_" + "0" * 16
    spare = fuzz.spare_key()
    cases: list[tuple[str, str, Any, int]] = [
        # ids: unknown, malformed, the fuzz's own key with a bad body (validated before anything changes)
        ("POST", f"/v1/admin/keys/{unknown}/rotate", {}, 404),
        ("DELETE", f"/v1/admin/keys/{unknown}", None, 404),
        ("POST", "/v1/admin/keys/KEY_0123456789ABCDEF/rotate", {}, 404),
        ("DELETE", "/v1/admin/keys/key_0123", None, 404),
        ("DELETE", "/v1/admin/keys/" + "k" * 2000, None, 404),
        ("DELETE", "/v1/admin/keys/key_%00%00", None, 404),
        ("POST", f"/v1/admin/keys/{fuzz.own_key_id}/rotate", {"overlap_hours": -1}, 422),
        ("POST", f"/v1/admin/keys/{fuzz.own_key_id}/rotate", {"overlap_hours": "PRIVATE NOTE"}, 422),
        # bodies
        ("POST", "/v1/admin/keys", {"scopes": ["care"], "expires_in_days": 0}, 422),
        ("POST", "/v1/admin/keys", {"scopes": ["care"], "expires_in_days": 3651}, 422),
        ("POST", "/v1/admin/keys", {"scopes": ["care"], "expires_in_days": 1.5}, 422),
        ("POST", "/v1/admin/keys", {"scopes": ["care", "ingest", "admin", "care"]}, 422),
        ("POST", "/v1/admin/keys", {"scopes": "care"}, 422),
        ("POST", "/v1/admin/keys", [], 422),
        ("POST", "/v1/admin/keys", None, 422),  # no body: `{}`, which lacks `scopes`
        ("POST", f"/v1/admin/keys/{spare}/rotate", {"overlap_hours": 721}, 422),
        ("POST", f"/v1/admin/keys/{spare}/rotate", {"overlap_hours": [1]}, 422),
        ("POST", f"/v1/admin/keys/{spare}/rotate", b'{"overlap_hours": 1e999}', 422),
        ("POST", f"/v1/admin/keys/{spare}/rotate", b'{"overlap_hours": NaN}', 400),
        ("POST", f"/v1/admin/keys/{spare}/rotate", b"{", 400),
        ("POST", "/v1/admin/webhook-secret/rotate", {"overlap_hours": 1e308}, 422),
        ("POST", "/v1/admin/webhook-secret/rotate", {"overlap_hours": None}, 422),
        ("POST", "/v1/admin/webhook-secret/rotate", b'"PRIVATE NOTE"', 422),
        # a revoked key cannot be rotated
        ("DELETE", f"/v1/admin/keys/{spare}", None, 204),
        ("POST", f"/v1/admin/keys/{spare}/rotate", {}, 409),
        # access-log query values
        ("GET", "/v1/admin/access-log?cursor=99999999999999999999", None, 400),
        ("GET", "/v1/admin/access-log?cursor=%C2%B2", None, 400),  # "²": isdigit() but not int()
        ("GET", "/v1/admin/access-log?cursor=%D9%A1", None, 400),  # an Arabic-Indic digit
        ("GET", "/v1/admin/access-log?cursor=9999999999999999999", None, 200),  # beyond int8: empty page
        ("GET", "/v1/admin/access-log?since=9999-12-31T23:59:59-14:00", None, 400),
        ("GET", "/v1/admin/access-log?since=0001-01-01T00:00:00%2B14:00", None, 400),
        ("GET", "/v1/admin/access-log?since=2024-01-01T00:00:00", None, 400),
        ("GET", "/v1/admin/access-log?limit=1e3", None, 400),
        ("GET", "/v1/admin/access-log?limit=" + "9" * 5000, None, 400),
        ("GET", "/v1/admin/access-log?patient_id=PRIVATE%20NOTE", None, 400),
        ("GET", "/v1/admin/access-log?key_id=key_%00", None, 400),
    ]
    async with aiohttp.ClientSession() as http:
        for method, path, body, want in cases:
            raw = body if isinstance(body, bytes) else None if body is None else json.dumps(body).encode()
            status, ctype, text = await _send(
                http, method, ingest + path, fuzz.tenant.headers, raw, "application/json" if raw is not None else ""
            )
            where = f"{method} {path[:80]}"
            assert status == want, f"{where}: {status} {text[:300]}"
            if status >= 400:
                problem = Problem.model_validate_json(text)
                assert ctype == "application/problem+json" and problem.status == status, where
                assert "PRIVATE" not in text, f"{where}: request text echoed"
        async with http.get(f"{ingest}/v1/admin/keys", headers=fuzz.tenant.headers) as resp:
            assert resp.status == 200
            keys = {k["key_id"]: k for k in (await resp.json())["items"]}
    assert keys[fuzz.own_key_id]["revoked_at"] is None and keys[fuzz.own_key_id]["expires_at"] is None
    assert keys[spare]["revoked_at"] is not None


async def test_stream_answers_and_closes(services: Services, fuzz: FuzzContext) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{services.url('alerts')}/v1/alerts/stream", headers=fuzz.tenant.headers) as resp:
            assert resp.status == 200
            assert resp.content_type == "text/event-stream"
            assert (await resp.content.readline()).startswith(b": connected")
        async with http.get(f"{services.url('alerts')}/v1/alerts/stream?junk=%00") as resp:
            assert resp.status == 401
            assert resp.content_type == "application/problem+json"


async def test_openapi_is_served_by_every_service(services: Services) -> None:
    async with aiohttp.ClientSession() as http:
        for s in SERVICES:
            async with http.get(f"{services.url(s)}/openapi.json") as resp:
                assert resp.status == 200
                assert await resp.json() == build()
