"""HTTP handlers of the ingest service (contract: shared/CONTRACT.md, "Ingest service").

A 202 means the event is durably in the log (`acks=all`). When the log cannot take it the
answer is 503 with `Retry-After` and nothing was accepted (a retry with the same `event_id` is
harmless). Validation errors list every bad field and never echo the submitted values.

A batch (check-ins, activity samples) is validated with one `TypeAdapter` call per distinct
validation context (`validate_items`), and accepted events are encoded without being validated
again (`model_construct`: their parts are validated models already).

Before an event is validated its patient is looked up (one query per request at most, see
`PatientRegistry.facts`) for the plausibility floor of its event times, passed to the models through
the validation context together with the clock. A valid event of an enrolled patient is then judged
against the record of accepted events' digests (`DigestStore.claim`; concurrent requests share one
statement per round): an `event_id` accepted before with other content is refused (`409`, problem
type `event-conflict`; in a batch or an activity post the item is rejected by index with error type
`event_conflict` and the rest accepted; 409 when nothing was accepted and something conflicted), an identical repost is
accepted and published again (harmless). When publishing fails, the digests this request recorded
are forgotten again. If the digest record cannot be consulted the answer is 503 (nothing accepted).

Backpressure: at most `ingest_max_in_flight` POSTs, and at most `ingest_max_in_flight_bytes` of
request bodies (by Content-Length, else the route's body limit; one request is always admitted),
are served at once; one more is answered 503 + `Retry-After` at once, before its body is read.
Memory stays bounded and what is admitted completes within the produce timeout, so overload is
shed rather than queued.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar
from uuid import UUID

from aiohttp import web
from aiokafka import AIOKafkaProducer
from pydantic import TypeAdapter, ValidationError

from nervewatch import metrics
from nervewatch.http import Handler, authenticate, authenticate_either, body_limit, json_response
from nervewatch.kafka import produce_many
from nervewatch.problems import ProblemError, item_error, item_errors, not_found, read_json, validation_problem
from nervewatch.settings import Settings
from schemas.activity import ActivityEnvelope, ActivitySample, Device
from schemas.checkins import BatchResult, CheckIn, CheckInBatch, ItemError, RejectedItem
from schemas.common import FLOOR_CONTEXT, NOW_CONTEXT, PATIENT_ID_PATTERN, event_time_floor
from schemas.digests import checkin_digest, sample_digest
from schemas.events import ActivityRecorded, CheckInRecorded, Topics, event_key
from schemas.patients import PatientIn, PatientRecord
from services.ingest.digests import Claim, DigestStore, Outcome
from services.ingest.patients import PatientFacts, PatientRegistry

log = logging.getLogger(__name__)
T = TypeVar("T")
_CHECKINS: TypeAdapter[list[CheckIn]] = TypeAdapter(list[CheckIn])
_SAMPLES: TypeAdapter[list[ActivitySample]] = TypeAdapter(list[ActivitySample])

ACTIVITY_CHUNK = 1000
RETRY_AFTER_S = "2"
OVERLOAD_RETRY_AFTER_S = "1"
_PATIENT_ID = re.compile(PATIENT_ID_PATTERN)
CONFLICT_MSG = "this event_id was accepted before with different content; send a new event_id for a new observation"


class IngestHandlers:
    def __init__(
        self, settings: Settings, registry: PatientRegistry, producer: AIOKafkaProducer, digests: DigestStore
    ) -> None:
        self.settings = settings
        self.registry = registry
        self.producer = producer
        self.digests = digests
        self.in_flight = 0
        self.in_flight_bytes = 0

    def handlers(self) -> dict[str, Handler]:
        """The handlers of this module's routes, by operation id (`schemas.openapi.bind` registers them)."""
        return {
            "upsertPatient": self._admitted(self.upsert_patient),
            "getPatient": self.get_patient,
            "postCheckin": self._admitted(self.post_checkin),
            "postCheckinBatch": self._admitted(self.post_checkin_batch),
            "postActivity": self._admitted(self.post_activity),
        }

    def _admitted(
        self, handler: Callable[[web.Request], Awaitable[web.Response]]
    ) -> Callable[[web.Request], Awaitable[web.Response]]:
        """Shed load: answer 503 + Retry-After without reading the body when the cap is reached."""

        async def admitted(request: web.Request) -> web.Response:
            # Weighted by size, so that what is admitted finishes well inside the produce timeout:
            # a request without Content-Length counts as the largest body its route allows.
            size = request.content_length if request.content_length is not None else body_limit(request)
            if self.in_flight >= self.settings.ingest_max_in_flight or (
                self.in_flight and self.in_flight_bytes + size > self.settings.ingest_max_in_flight_bytes
            ):
                metrics.INGEST_UNAVAILABLE.labels("overloaded").inc()
                raise ProblemError(
                    503,
                    "Overloaded",
                    "too many requests in progress; nothing was accepted, retry later",
                    slug="overloaded",
                    headers={"Retry-After": OVERLOAD_RETRY_AFTER_S},
                )
            self.in_flight += 1
            self.in_flight_bytes += size
            try:
                return await handler(request)
            finally:
                self.in_flight -= 1
                self.in_flight_bytes -= size

        return admitted

    # -- helpers -----------------------------------------------------------------------------

    @staticmethod
    def _reject(endpoint: str, errors: Sequence[ItemError]) -> None:
        for e in errors:
            metrics.VALIDATION_REJECTIONS.labels(endpoint, e.type).inc()

    def _unavailable(self, kind: str) -> ProblemError:
        metrics.INGEST_UNAVAILABLE.labels(kind).inc()
        return ProblemError(
            503,
            "Event log unavailable",
            "the event was not accepted; retry later",
            slug="log-unavailable",
            headers={"Retry-After": RETRY_AFTER_S},
        )

    async def _publish(self, kind: str, records: list[tuple[str, bytes, bytes]]) -> None:
        try:
            await asyncio.wait_for(produce_many(self.producer, records), self.settings.ingest_produce_timeout_s)
        except Exception as exc:
            log.warning("publish failed", extra={"kind": kind, "error": type(exc).__name__, "count": len(records)})
            raise self._unavailable(kind) from None
        metrics.INGEST_ACCEPTED.labels(kind).inc(len(records))

    def _unknown_patient(self, endpoint: str) -> ProblemError:
        metrics.VALIDATION_REJECTIONS.labels(endpoint, "unknown_patient").inc()
        return ProblemError(404, "Unknown patient", "enrol the patient first", slug="unknown-patient")

    def _floor(self, facts: PatientFacts | None) -> datetime:
        """The plausibility floor of a patient's event times (see `schemas.common.event_time_floor`)."""
        return event_time_floor(
            self.settings.event_time_floor,
            facts.onset_date if facts else None,
            facts.timezone if facts else None,
        )

    def _context(self, now: datetime, facts: PatientFacts | None) -> dict[str, Any]:
        """The validation context of one event: the clock and the patient's plausibility floor."""
        return {NOW_CONTEXT: now, FLOOR_CONTEXT: self._floor(facts)}

    async def _claim(self, tenant_id: str, kind: str, pairs: list[tuple[UUID, bytes]]) -> Claim:
        """Judge the events' digests against those accepted before (one statement); 503 if the
        record cannot be consulted (nothing was accepted)."""
        try:
            return await asyncio.wait_for(
                self.digests.claim(tenant_id, kind, pairs), self.settings.ingest_produce_timeout_s
            )
        except Exception as exc:
            log.warning("event digest check failed", extra={"kind": kind, "error": type(exc).__name__})
            metrics.INGEST_UNAVAILABLE.labels("event_digests").inc()
            raise ProblemError(
                503,
                "Event store unavailable",
                "the event was not accepted; retry later",
                slug="store-unavailable",
                headers={"Retry-After": RETRY_AFTER_S},
            ) from None

    async def _publish_claimed(
        self, kind: str, records: list[tuple[str, bytes, bytes]], tenant_id: str, claim: Claim
    ) -> None:
        """Publish; when that fails, forget the digests this request recorded, so that a retry with
        corrected content is not refused as a conflict."""
        try:
            await self._publish(kind, records)
        except (ProblemError, asyncio.CancelledError):
            await self.digests.release(tenant_id, claim.inserted)
            raise

    def _conflict(self, endpoint: str, kind: str, loc: list[str | int]) -> ItemError:
        metrics.INGEST_EVENT_CONFLICTS.labels(kind).inc()
        metrics.VALIDATION_REJECTIONS.labels(endpoint, "event_conflict").inc()
        return ItemError(loc=loc, msg=CONFLICT_MSG, type="event_conflict")

    # -- patients ----------------------------------------------------------------------------

    async def upsert_patient(self, request: web.Request) -> web.Response:
        principal = await authenticate(request, "ingest")
        body = await read_json(request)
        try:
            data = PatientIn.model_validate(body)
        except ValidationError as exc:
            self._reject("patients", item_errors(exc))
            return validation_problem(exc)
        try:
            patient, created = await asyncio.wait_for(
                self.registry.upsert(principal.tenant_id, data), self.settings.ingest_produce_timeout_s * 2
            )
        except Exception as exc:
            if isinstance(exc, ProblemError):
                raise
            log.warning("patient upsert failed", extra={"error": type(exc).__name__})
            raise self._unavailable("patient") from None
        metrics.INGEST_ACCEPTED.labels("patient").inc()
        return json_response(patient.model_dump_json(), status=201 if created else 200)

    async def get_patient(self, request: web.Request) -> web.Response:
        """The enrolment record as posted plus `created_at`, `enrolled_at` (the same instant) and
        `updated_at`. Scope `care` (the read is in the access log) or `ingest` (the platform that
        enrols); another tenant's or an unknown patient is a 404."""
        principal, _ = await authenticate_either(request, ("care", "ingest"))
        patient_id = request.match_info["patient_id"]
        patient = await self.registry.get(principal.tenant_id, patient_id) if _valid_id(patient_id) else None
        if patient is None:
            raise not_found("patient")
        record = PatientRecord(**dict(patient), enrolled_at=patient.created_at)
        return json_response(record.model_dump_json())

    # -- check-ins ---------------------------------------------------------------------------

    async def post_checkin(self, request: web.Request) -> web.Response:
        principal = await authenticate(request, "ingest")
        body = await read_json(request)
        now = datetime.now(UTC)
        pid = _patient_id_of(body)
        facts = await self.registry.facts(principal.tenant_id, [pid] if pid else [])
        try:
            checkin = CheckIn.model_validate(body, context=self._context(now, facts.get(pid or "")))
        except ValidationError as exc:
            self._reject("checkins", item_errors(exc))
            return validation_problem(exc)
        if checkin.patient_id not in facts:
            raise self._unknown_patient("checkins")
        claim = await self._claim(principal.tenant_id, "checkin", [(checkin.event_id, checkin_digest(checkin))])
        if claim.conflicts:
            raise ProblemError(
                409,
                "Conflict",
                "an event with this event_id was already accepted with different content; nothing was accepted",
                slug="event-conflict",
                errors=[self._conflict("checkins", "checkin", ["event_id"])],
            )
        event = CheckInRecorded.model_construct(tenant_id=principal.tenant_id, received_at=now, checkin=checkin)
        await self._publish_claimed(
            "checkin",
            [(Topics.checkins, event_key(principal.tenant_id, checkin.patient_id), event.model_dump_json().encode())],
            principal.tenant_id,
            claim,
        )
        return web.json_response({"event_id": str(checkin.event_id), "status": "accepted"}, status=202)

    async def post_checkin_batch(self, request: web.Request) -> web.Response:
        principal = await authenticate(request, "ingest")
        body = await read_json(request)
        now = datetime.now(UTC)
        try:
            batch = CheckInBatch.model_validate(body)
        except ValidationError as exc:
            self._reject("checkins_batch", item_errors(exc))
            return validation_problem(exc)
        pids = [_patient_id_of(item) for item in batch.items]
        facts = await self.registry.facts(principal.tenant_id, {p for p in pids if p})
        floor_of = {pid: self._floor(facts.get(pid or "")) for pid in set(pids)}
        valid, invalid = validate_items(_CHECKINS, batch.items, [floor_of[pid] for pid in pids], now, ["items"])
        rejected: list[RejectedItem] = []
        for index, errors in invalid:
            self._reject("checkins_batch", errors)
            rejected.append(RejectedItem(index=index, event_id=_event_id_of(batch.items[index]), errors=errors))
        candidates: list[tuple[int, CheckIn]] = []
        for index, checkin in valid:
            if checkin.patient_id in facts:
                candidates.append((index, checkin))
                continue
            metrics.VALIDATION_REJECTIONS.labels("checkins_batch", "unknown_patient").inc()
            rejected.append(
                RejectedItem(
                    index=index,
                    event_id=str(checkin.event_id),
                    errors=[
                        ItemError(
                            loc=["items", index, "patient_id"],
                            msg="unknown patient; enrol first",
                            type="unknown_patient",
                        )
                    ],
                )
            )
        claim = Claim([])
        if candidates:
            claim = await self._claim(
                principal.tenant_id, "checkin", [(c.event_id, checkin_digest(c)) for _, c in candidates]
            )
        accepted: list[CheckIn] = []
        conflicts = 0
        for (index, checkin), outcome in zip(candidates, claim.outcomes, strict=True):
            if outcome is not Outcome.conflict:
                accepted.append(checkin)
                continue
            conflicts += 1
            error = self._conflict("checkins_batch", "checkin", ["items", index, "event_id"])
            rejected.append(RejectedItem(index=index, event_id=str(checkin.event_id), errors=[error]))
        rejected.sort(key=lambda r: r.index)
        if not accepted:
            raise ProblemError(
                409 if conflicts else 422,
                "Conflict" if conflicts else "Validation failed",
                "no item of the batch was accepted"
                + (f"; {conflicts} item(s) reuse an event_id accepted before with other content" if conflicts else ""),
                slug="event-conflict" if conflicts else "validation",
                errors=[e for r in rejected for e in r.errors],
                rejected=rejected,
            )
        records = [
            (
                Topics.checkins,
                event_key(principal.tenant_id, c.patient_id),
                CheckInRecorded.model_construct(tenant_id=principal.tenant_id, received_at=now, checkin=c)
                .model_dump_json()
                .encode(),
            )
            for c in accepted
        ]
        await self._publish_claimed("checkin", records, principal.tenant_id, claim)
        result = BatchResult(
            accepted=len(accepted),
            rejected=len(rejected),
            accepted_event_ids=[c.event_id for c in accepted],
            errors=rejected,
        )
        return json_response(result.model_dump_json(), status=202)

    # -- activity ----------------------------------------------------------------------------

    async def post_activity(self, request: web.Request) -> web.Response:
        principal = await authenticate(request, "ingest")
        body = await read_json(request)
        now = datetime.now(UTC)
        patient_id, device, raw_samples = _activity_envelope(body)
        facts = await self.registry.facts(principal.tenant_id, [patient_id])
        floor = self._floor(facts.get(patient_id))
        valid, invalid = validate_items(_SAMPLES, raw_samples, [floor] * len(raw_samples), now, ["samples"])
        rejected: list[RejectedItem] = []
        for index, errors in invalid:
            self._reject("activity", errors)
            rejected.append(RejectedItem(index=index, event_id=_event_id_of(raw_samples[index]), errors=errors))
        if patient_id not in facts:
            raise self._unknown_patient("activity")
        claim = Claim([])
        if valid:
            claim = await self._claim(
                principal.tenant_id, "sample", [(s.event_id, sample_digest(s, patient_id, device.id)) for _, s in valid]
            )
        samples: list[ActivitySample] = []
        conflicts = 0
        for (index, sample), outcome in zip(valid, claim.outcomes, strict=True):
            if outcome is not Outcome.conflict:
                samples.append(sample)
                continue
            conflicts += 1
            error = self._conflict("activity", "sample", ["samples", index, "event_id"])
            rejected.append(RejectedItem(index=index, event_id=str(sample.event_id), errors=[error]))
        rejected.sort(key=lambda r: r.index)
        if not samples:
            raise ProblemError(
                409 if conflicts else 422,
                "Conflict" if conflicts else "Validation failed",
                "no sample was accepted"
                + (
                    f"; {conflicts} sample(s) reuse an event_id accepted before with other content" if conflicts else ""
                ),
                slug="event-conflict" if conflicts else "validation",
                errors=[e for r in rejected for e in r.errors],
                rejected=rejected,
            )
        key = event_key(principal.tenant_id, patient_id)
        records = [
            (
                Topics.activity,
                key,
                ActivityRecorded.model_construct(
                    tenant_id=principal.tenant_id,
                    received_at=now,
                    patient_id=patient_id,
                    device=device,
                    samples=samples[i : i + ACTIVITY_CHUNK],
                )
                .model_dump_json()
                .encode(),
            )
            for i in range(0, len(samples), ACTIVITY_CHUNK)
        ]
        await self._publish_claimed("activity", records, principal.tenant_id, claim)
        metrics.INGEST_ACCEPTED.labels("activity_sample").inc(len(samples))
        return web.json_response(
            {
                "accepted": len(samples),
                "rejected": len(rejected),
                "errors": [r.model_dump(mode="json") for r in rejected],
            },
            status=202,
        )


def validate_items(
    adapter: TypeAdapter[list[T]],
    items: Sequence[Any],
    floors: Sequence[datetime | None],
    now: datetime,
    prefix: list[str | int],
) -> tuple[list[tuple[int, T]], list[tuple[int, list[ItemError]]]]:
    """Validate `items` (item i against plausibility floor `floors[i]` and the clock `now`) with one
    `adapter` call per distinct floor (one for a batch whose patients share it, the usual case).

    Returns the valid (index, value) pairs and the invalid (index, errors) pairs, each by index;
    error locations start with `[*prefix, index]`, as if each item had been validated alone. When
    a group has invalid items its valid ones are validated once more, together (items are
    independent: a list validation has no cross-item rule)."""
    groups: dict[datetime | None, list[int]] = defaultdict(list)
    for index, floor in enumerate(floors):
        groups[floor].append(index)
    valid: list[tuple[int, T]] = []
    invalid: list[tuple[int, list[ItemError]]] = []
    for floor, indexes in groups.items():
        context = {NOW_CONTEXT: now, FLOOR_CONTEXT: floor}
        group = items if len(indexes) == len(items) else [items[i] for i in indexes]
        try:
            valid.extend(zip(indexes, adapter.validate_python(group, context=context), strict=True))
            continue
        except ValidationError as exc:
            errors: dict[int, list[ItemError]] = defaultdict(list)
            for e in exc.errors(include_input=False, include_url=False):
                position, *rest = e["loc"]
                assert isinstance(position, int)
                errors[position].append(item_error({**e, "loc": tuple(rest)}, [*prefix, indexes[position]]))
        invalid.extend((indexes[p], errs) for p, errs in errors.items())
        good = [i for p, i in enumerate(indexes) if p not in errors]
        if good:
            valid.extend(zip(good, adapter.validate_python([items[i] for i in good], context=context), strict=True))
    if len(groups) > 1:
        valid.sort(key=lambda pair: pair[0])
    invalid.sort(key=lambda pair: pair[0])
    return valid, invalid


def _valid_id(patient_id: str) -> bool:
    return _PATIENT_ID.fullmatch(patient_id) is not None


def _patient_id_of(item: Any) -> str | None:
    """The item's patient_id if it is a valid one (looked up before the item is validated)."""
    value = item.get("patient_id") if isinstance(item, dict) else None
    return value if isinstance(value, str) and _valid_id(value) else None


def _event_id_of(item: Any) -> str | None:
    """The item's event_id if it is a plausible UUID string (never echo arbitrary content)."""
    value = item.get("event_id") if isinstance(item, dict) else None
    if isinstance(value, str) and len(value) <= 36 and all(c in "0123456789abcdefABCDEF-" for c in value):
        return value
    return None


def _activity_envelope(body: Any) -> tuple[str, Device, list[Any]]:
    """Validate the envelope of an activity post (patient, device, sample list shape)."""
    try:
        env = ActivityEnvelope.model_validate(body)
    except ValidationError as exc:
        errors = item_errors(exc)
        IngestHandlers._reject("activity", errors)
        raise ProblemError(
            422, "Validation failed", f"{len(errors)} field(s) failed validation", slug="validation", errors=errors
        ) from None
    return env.patient_id, env.device, env.samples
