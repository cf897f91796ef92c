"""The FHIR write pipeline of ingest (`services/ingest/fhir_api.py`) with in-memory fakes of the
registry, the digest record and the producer (the real ones: tests/integration/test_fhir.py).

- The validation context per patient: the floor from `PatientRegistry.facts` (settings floor, or a
  year before an old onset) reaches every mapped check-in and sample.
- Digests: check-ins and samples are claimed like JSON events; conflicts are flagged per event; a
  failed second claim forgets what the first recorded.
- Publishing: check-ins first; a failed check-in publish forgets every digest of the request, a
  failed sample publish (after the check-ins were acknowledged) only the samples'.
- The route's body limit: 413 before admission; a body without Content-Length weighs the route's limit.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any, cast
from uuid import UUID

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from nervewatch.http import MAX_BODY, body_limit, with_body_limit
from nervewatch.problems import ProblemError
from nervewatch.settings import Settings
from schemas.checkins import CheckIn
from schemas.events import Topics
from schemas.fhir import inbound
from schemas.fhir.inbound import Issue, Mapped, ValidSample
from services.ingest.digests import Claim, DigestStore, judge
from services.ingest.fhir_api import BUNDLE_MAX_BODY, FhirIngest
from services.ingest.handlers import IngestHandlers
from services.ingest.patients import PatientFacts, PatientRegistry
from tests.unit import fhir_examples as ex

TENANT = "clinic-a"
NOW = datetime.now(UTC).replace(microsecond=0)


class FakeRegistry:
    def __init__(self, facts: dict[str, PatientFacts]) -> None:
        self._facts = facts

    async def facts(self, tenant_id: str, patient_ids: Iterable[str]) -> dict[str, PatientFacts]:
        return {p: self._facts[p] for p in patient_ids if p in self._facts}


class MemoryDigests:
    """`DigestStore.claim`/`release` over a dict (same judgement, no concurrency)."""

    def __init__(self, fail_on_kind: str | None = None) -> None:
        self.rows: dict[UUID, bytes] = {}
        self.kinds: list[str] = []
        self.released: list[tuple[UUID, bytes]] = []
        self.fail_on_kind = fail_on_kind

    async def claim(self, tenant_id: str, kind: str, pairs: Sequence[tuple[UUID, bytes]]) -> Claim:
        self.kinds.append(kind)
        if kind == self.fail_on_kind:
            raise ConnectionError("database gone")
        inserted: list[tuple[UUID, bytes]] = []
        for event_id, digest in pairs:
            if event_id not in self.rows:
                self.rows[event_id] = digest
                inserted.append((event_id, digest))
        return Claim(judge(pairs, self.rows, {e for e, _ in inserted}), inserted)

    async def release(self, tenant_id: str, inserted: Sequence[tuple[UUID, bytes]]) -> None:
        self.released += inserted
        for event_id, digest in inserted:
            if self.rows.get(event_id) == digest:
                del self.rows[event_id]


class Producer:
    """Acknowledges every record, except those of `fail_topic`."""

    def __init__(self, fail_topic: str | None = None) -> None:
        self.sent: list[str] = []
        self.fail_topic = fail_topic

    async def send(self, topic: str, value: bytes, key: bytes) -> asyncio.Future[None]:
        if topic == self.fail_topic:
            raise ConnectionError("broker gone")
        self.sent.append(topic)
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


def fhir(
    facts: dict[str, PatientFacts] | None = None,
    digests: MemoryDigests | None = None,
    producer: Producer | None = None,
    **settings: Any,
) -> FhirIngest:
    handlers = IngestHandlers(
        Settings(ingest_produce_timeout_s=1.0, **settings),
        cast(PatientRegistry, FakeRegistry(facts if facts is not None else {"pt-1": PatientFacts(None, "UTC")})),
        cast(Any, producer or Producer()),
        cast(DigestStore, digests or MemoryDigests()),
    )
    return FhirIngest(handlers)


def mapped(resource: dict[str, Any], index: int) -> Mapped:
    return inbound.map_entry(resource, TENANT, index)


def recent(resource: dict[str, Any], hours: float = 1) -> dict[str, Any]:
    resource["effectiveDateTime"] = (NOW - timedelta(hours=hours)).isoformat()
    return resource


def steps(value: int, rid: str = "steps-1", patient: str = "pt-1") -> dict[str, Any]:
    s = ex.steps_observation(value)
    s["id"] = rid
    s["subject"] = {"reference": f"Patient/{patient}"}
    s["effectivePeriod"] = {
        "start": (NOW - timedelta(hours=3)).isoformat(),
        "end": (NOW - timedelta(hours=2)).isoformat(),
    }
    return s


async def accept(api: FhirIngest, resources: list[dict[str, Any]]) -> list[CheckIn | ValidSample]:
    results = await api._validate(TENANT, [mapped(r, i) for i, r in enumerate(resources)], NOW, [None] * len(resources))
    assert all(not isinstance(r, list) for r in results), results
    return cast(list[CheckIn | ValidSample], results)


# -- the validation context ---------------------------------------------------------------------------


async def test_validation_uses_each_patients_floor() -> None:
    api = fhir({"pt-old": PatientFacts(date(1990, 3, 1), "UTC"), "pt-new": PatientFacts(None, "UTC")})
    at = "1989-06-01T08:00:00Z"
    resources = [
        ex.pain_observation(ident="a", patient="pt-old", at=at),
        ex.pain_observation(ident="b", patient="pt-new", at=at),
        ex.pain_observation(ident="c", patient="pt-new", at="1970-01-01T00:00:00Z"),
        ex.pain_observation(ident="d", patient="pt-unknown", at=at),
    ]
    old_steps = steps(100, patient="pt-new")
    old_steps["effectivePeriod"] = {"start": "1970-01-01T00:00:00Z", "end": "1970-01-01T01:00:00Z"}
    resources.append(old_steps)
    prefixes = [f"Bundle.entry[{i}].resource" for i in range(len(resources))]
    results = await api._validate(TENANT, [mapped(r, i) for i, r in enumerate(resources)], NOW, prefixes)
    assert isinstance(results[0], CheckIn)
    for i in (1, 2):
        issues = cast(list[Issue], results[i])
        assert [x.expression for x in issues] == [f"Bundle.entry[{i}].resource.effectiveDateTime"]
        assert "plausibility floor" in issues[0].diagnostics
    assert cast(list[Issue], results[3])[0].status == 404
    sample_issues = cast(list[Issue], results[4])
    assert sample_issues and all("plausibility floor" in x.diagnostics for x in sample_issues)


# -- digests ------------------------------------------------------------------------------------------


async def test_identical_repost_is_accepted_and_other_content_conflicts() -> None:
    digests = MemoryDigests()
    api = fhir(digests=digests)
    first = await accept(api, [recent(ex.pain_observation(3, ident="a")), steps(4100)])
    conflicts, _ = await api._claim(TENANT, first)
    assert conflicts == [False, False] and digests.kinds == ["checkin", "sample"]
    again = await accept(api, [recent(ex.pain_observation(3, ident="a")), steps(4100)])
    assert (await api._claim(TENANT, again))[0] == [False, False]
    other = await accept(
        api, [recent(ex.pain_observation(9, ident="a")), steps(999), recent(ex.pain_observation(2, ident="b"))]
    )
    conflicts, claims = await api._claim(TENANT, other)
    assert conflicts == [True, True, False]
    assert [e for c in claims.values() for e, _ in c.inserted] == [cast(CheckIn, other[2]).event_id]


async def test_a_device_change_under_the_same_identifier_is_a_conflict() -> None:
    api = fhir()
    await api._claim(TENANT, await accept(api, [steps(4100)]))
    moved = steps(4100)
    moved["device"] = {"reference": "Device/another-watch"}
    assert (await api._claim(TENANT, await accept(api, [moved])))[0] == [True]


async def test_a_failed_second_claim_forgets_what_the_first_recorded() -> None:
    digests = MemoryDigests(fail_on_kind="sample")
    api = fhir(digests=digests)
    items = await accept(api, [recent(ex.pain_observation(3, ident="a")), steps(4100)])
    with pytest.raises(ProblemError) as info:
        await api._claim(TENANT, items)
    assert info.value.status == 503
    assert digests.released == [(cast(CheckIn, items[0]).event_id, digests.released[0][1])] and not digests.rows


# -- publishing ---------------------------------------------------------------------------------------


async def test_check_ins_are_published_first_then_samples() -> None:
    producer = Producer()
    api = fhir(producer=producer)
    items = await accept(api, [steps(4100), recent(ex.pain_observation(3, ident="a"))])
    _, claims = await api._claim(TENANT, items)
    await api._publish(TENANT, items, NOW, claims)
    assert producer.sent == [Topics.checkins, Topics.activity]


async def test_a_failed_check_in_publish_forgets_every_digest_of_the_request() -> None:
    digests = MemoryDigests()
    api = fhir(digests=digests, producer=Producer(fail_topic=Topics.checkins))
    items = await accept(api, [recent(ex.pain_observation(3, ident="a")), steps(4100)])
    _, claims = await api._claim(TENANT, items)
    with pytest.raises(ProblemError) as info:
        await api._publish(TENANT, items, NOW, claims)
    assert info.value.status == 503 and info.value.headers and "Retry-After" in info.value.headers
    assert len(digests.released) == 2 and not digests.rows


async def test_a_failed_sample_publish_after_the_check_ins_forgets_only_the_samples_digests() -> None:
    digests = MemoryDigests()
    producer = Producer(fail_topic=Topics.activity)
    api = fhir(digests=digests, producer=producer)
    items = await accept(api, [recent(ex.pain_observation(3, ident="a")), steps(4100)])
    _, claims = await api._claim(TENANT, items)
    with pytest.raises(ProblemError) as info:
        await api._publish(TENANT, items, NOW, claims)
    assert info.value.status == 503 and producer.sent == [Topics.checkins]
    checkin = cast(CheckIn, items[0])
    assert list(digests.rows) == [checkin.event_id]
    # the retry of the same request: the check-in is an identical repost, the sample new again
    conflicts, claims = await api._claim(TENANT, items)
    assert conflicts == [False, False] and [k for k, c in claims.items() if c.inserted] == ["sample"]


# -- the Bundle route's body limit ----------------------------------------------------------------------


async def _ok(request: web.Request) -> web.Response:
    return web.Response(text=str(body_limit(request)))


async def test_content_length_beyond_the_route_limit_is_413_before_the_handler() -> None:
    called = []

    async def handler(request: web.Request) -> web.Response:
        called.append(request)
        return web.Response()

    limited = with_body_limit(BUNDLE_MAX_BODY, handler)
    request = make_mocked_request("POST", "/fhir/r4", headers={"Content-Length": str(BUNDLE_MAX_BODY + 1)})
    with pytest.raises(ProblemError) as info:
        await limited(request)
    assert info.value.status == 413 and str(BUNDLE_MAX_BODY) in (info.value.detail or "") and not called
    ok = await with_body_limit(BUNDLE_MAX_BODY, _ok)(
        make_mocked_request("POST", "/fhir/r4", headers={"Content-Length": str(BUNDLE_MAX_BODY)})
    )
    assert ok.text == str(BUNDLE_MAX_BODY)
    assert (await _ok(make_mocked_request("POST", "/v1/checkins"))).text == str(MAX_BODY)


async def test_a_body_without_content_length_weighs_its_routes_limit_in_admission() -> None:
    api = fhir(ingest_max_in_flight_bytes=2 * MAX_BODY)
    h = api.h
    h.in_flight, h.in_flight_bytes = 1, 1000  # another request is being served
    json_route = h._admitted(_ok)
    bundle_route = with_body_limit(BUNDLE_MAX_BODY, h._admitted(_ok))
    assert (await json_route(make_mocked_request("POST", "/v1/checkins/batch"))).status == 200
    with pytest.raises(ProblemError) as info:
        await bundle_route(make_mocked_request("POST", "/fhir/r4"))
    assert info.value.status == 503 and info.value.slug == "overloaded"
    assert (h.in_flight, h.in_flight_bytes) == (1, 1000)
    h.in_flight, h.in_flight_bytes = 0, 0  # alone, a request is always admitted
    assert (await bundle_route(make_mocked_request("POST", "/fhir/r4"))).text == str(BUNDLE_MAX_BODY)
