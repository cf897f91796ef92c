"""HTTP handlers of the ingest service (contract: shared/CONTRACT.md, "Ingest service").

A 202 means the event is durably in the log (`acks=all`). When the log cannot take it the
answer is 503 with `Retry-After` and nothing was accepted (a retry with the same `event_id` is
harmless). Validation errors list every bad field and never echo the submitted values.

Backpressure: at most `ingest_max_in_flight` POSTs, and at most `ingest_max_in_flight_bytes` of
request bodies (by Content-Length; one request is always admitted), are served at once; one more
is answered 503 + `Retry-After` at once, before its body is read. Memory stays bounded and what
is admitted completes within the produce timeout, so overload is shed rather than queued.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from aiokafka import AIOKafkaProducer
from pydantic import ValidationError

from nervewatch import metrics
from nervewatch.http import MAX_BODY, authenticate, json_response
from nervewatch.kafka import produce_many
from nervewatch.problems import ProblemError, item_errors, not_found, read_json, validation_problem
from nervewatch.settings import Settings
from schemas.activity import ActivityEnvelope, ActivitySample, Device
from schemas.checkins import BatchResult, CheckIn, CheckInBatch, ItemError, RejectedItem
from schemas.common import PATIENT_ID_PATTERN
from schemas.events import ActivityRecorded, CheckInRecorded, Topics, event_key
from schemas.patients import PatientIn
from services.ingest.patients import PatientRegistry

log = logging.getLogger(__name__)

ACTIVITY_CHUNK = 1000
RETRY_AFTER_S = "2"
OVERLOAD_RETRY_AFTER_S = "1"
_PATIENT_ID = re.compile(PATIENT_ID_PATTERN)


class IngestHandlers:
    def __init__(self, settings: Settings, registry: PatientRegistry, producer: AIOKafkaProducer) -> None:
        self.settings = settings
        self.registry = registry
        self.producer = producer
        self.in_flight = 0
        self.in_flight_bytes = 0

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/v1/patients", self._admitted(self.upsert_patient)),
            web.get("/v1/patients/{patient_id}", self.get_patient),
            web.post("/v1/checkins", self._admitted(self.post_checkin)),
            web.post("/v1/checkins/batch", self._admitted(self.post_checkin_batch)),
            web.post("/v1/activity", self._admitted(self.post_activity)),
        ]

    def _admitted(
        self, handler: Callable[[web.Request], Awaitable[web.Response]]
    ) -> Callable[[web.Request], Awaitable[web.Response]]:
        """Shed load: answer 503 + Retry-After without reading the body when the cap is reached."""

        async def admitted(request: web.Request) -> web.Response:
            # Weighted by size, so that what is admitted finishes well inside the produce timeout:
            # a request without Content-Length counts as the largest body allowed.
            size = request.content_length if request.content_length is not None else MAX_BODY
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

    async def _require_patient(self, tenant_id: str, patient_id: str, endpoint: str) -> None:
        if not await self.registry.known(tenant_id, [patient_id]):
            metrics.VALIDATION_REJECTIONS.labels(endpoint, "unknown_patient").inc()
            raise ProblemError(404, "Unknown patient", "enrol the patient first", slug="unknown-patient")

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
        principal = await authenticate(request, "ingest")
        patient_id = request.match_info["patient_id"]
        patient = await self.registry.get(principal.tenant_id, patient_id) if _valid_id(patient_id) else None
        if patient is None:
            raise not_found("patient")
        return json_response(patient.model_dump_json())

    # -- check-ins ---------------------------------------------------------------------------

    async def post_checkin(self, request: web.Request) -> web.Response:
        principal = await authenticate(request, "ingest")
        body = await read_json(request)
        now = datetime.now(UTC)
        try:
            checkin = CheckIn.model_validate(body, context={"now": now})
        except ValidationError as exc:
            self._reject("checkins", item_errors(exc))
            return validation_problem(exc)
        await self._require_patient(principal.tenant_id, checkin.patient_id, "checkins")
        event = CheckInRecorded(tenant_id=principal.tenant_id, received_at=now, checkin=checkin)
        await self._publish(
            "checkin",
            [(Topics.checkins, event_key(principal.tenant_id, checkin.patient_id), event.model_dump_json().encode())],
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
        valid: list[tuple[int, CheckIn]] = []
        rejected: list[RejectedItem] = []
        for index, item in enumerate(batch.items):
            try:
                valid.append((index, CheckIn.model_validate(item, context={"now": now})))
            except ValidationError as exc:
                errors = item_errors(exc, ["items", index])
                self._reject("checkins_batch", errors)
                rejected.append(RejectedItem(index=index, event_id=_event_id_of(item), errors=errors))
        known = await self.registry.known(principal.tenant_id, {c.patient_id for _, c in valid})
        accepted: list[CheckIn] = []
        for index, checkin in valid:
            if checkin.patient_id in known:
                accepted.append(checkin)
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
        rejected.sort(key=lambda r: r.index)
        if not accepted:
            raise ProblemError(
                422,
                "Validation failed",
                "no item of the batch was accepted",
                slug="validation",
                errors=[e for r in rejected for e in r.errors],
                rejected=rejected,
            )
        records = [
            (
                Topics.checkins,
                event_key(principal.tenant_id, c.patient_id),
                CheckInRecorded(tenant_id=principal.tenant_id, received_at=now, checkin=c).model_dump_json().encode(),
            )
            for c in accepted
        ]
        await self._publish("checkin", records)
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
        samples: list[ActivitySample] = []
        rejected: list[RejectedItem] = []
        for index, item in enumerate(raw_samples):
            try:
                samples.append(ActivitySample.model_validate(item, context={"now": now}))
            except ValidationError as exc:
                errors = item_errors(exc, ["samples", index])
                self._reject("activity", errors)
                rejected.append(RejectedItem(index=index, event_id=_event_id_of(item), errors=errors))
        await self._require_patient(principal.tenant_id, patient_id, "activity")
        if not samples:
            raise ProblemError(
                422,
                "Validation failed",
                "no sample was accepted",
                slug="validation",
                errors=[e for r in rejected for e in r.errors],
                rejected=rejected,
            )
        key = event_key(principal.tenant_id, patient_id)
        records = [
            (
                Topics.activity,
                key,
                ActivityRecorded(
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
        await self._publish("activity", records)
        metrics.INGEST_ACCEPTED.labels("activity_sample").inc(len(samples))
        return web.json_response(
            {
                "accepted": len(samples),
                "rejected": len(rejected),
                "errors": [r.model_dump(mode="json") for r in rejected],
            },
            status=202,
        )


def _valid_id(patient_id: str) -> bool:
    return _PATIENT_ID.fullmatch(patient_id) is not None


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
