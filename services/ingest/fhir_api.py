"""FHIR R4 writes of the ingest service: `POST /fhir/r4` (Bundle), `.../Observation`, `.../QuestionnaireResponse`.

Same semantics as the JSON API, through the same admission and publish path of `IngestHandlers`:
a `202` means every accepted event is durably in the log; when the log cannot take them the
answer is `503` + `Retry-After` and the client retries (event ids are derived from the resources,
so a retry, or a repost of the same resource, is stored once). Mapping: `schemas.fhir.inbound`.

- `transaction`: every entry must be accepted, else nothing is published and the answer is the
  status of the first failing entry with an OperationOutcome listing every issue.
- `batch`: each entry on its own; `202` with a `batch-response` when at least one is accepted,
  else `422` with every issue.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from nervewatch import metrics
from nervewatch.fhir_http import BASE_PATH, fhir_response, install, read_fhir_json
from nervewatch.http import authenticate
from schemas.activity import ActivitySample, Device
from schemas.checkins import CheckIn
from schemas.events import ActivityRecorded, CheckInRecorded, Topics, event_key
from schemas.fhir import inbound, outbound
from schemas.fhir.inbound import FhirInputError, Issue, Mapped, ValidSample
from services.ingest.handlers import ACTIVITY_CHUNK, IngestHandlers

ENDPOINT = "fhir"

Accepted = CheckIn | ValidSample


class FhirIngest:
    def __init__(self, handlers: IngestHandlers) -> None:
        self.h = handlers

    def register(self, app: web.Application) -> None:
        install(
            app,
            "ingest",
            [
                web.post(BASE_PATH, self.h._admitted(self.post_bundle)),
                web.post(f"{BASE_PATH}/Observation", self.h._admitted(self.post_observation)),
                web.post(f"{BASE_PATH}/QuestionnaireResponse", self.h._admitted(self.post_questionnaire_response)),
            ],
        )

    # -- endpoints ---------------------------------------------------------------------------

    async def post_bundle(self, request: web.Request) -> web.Response:
        principal = await authenticate(request, "ingest")
        body = await read_fhir_json(request)
        now = datetime.now(UTC)
        tenant = principal.tenant_id
        try:
            parsed = inbound.parse_bundle(body)
        except FhirInputError as exc:
            self._count(exc.issues)
            raise
        mapped: list[Mapped | list[Issue]] = []
        for i, resource in enumerate(parsed.resources):
            if i in parsed.entry_issues:
                mapped.append(parsed.entry_issues[i])
                continue
            try:
                mapped.append(inbound.map_entry(resource, tenant, i))
            except FhirInputError as exc:
                mapped.append(exc.issues)
        results = await self._validate(tenant, mapped, now, [f"Bundle.entry[{i}].resource" for i in range(len(mapped))])
        failed = [r for r in results if isinstance(r, list)]
        for issues in failed:
            self._count(issues)
        if parsed.type == "transaction" and failed:
            raise FhirInputError([i for issues in failed for i in issues])
        accepted = [r for r in results if not isinstance(r, list)]
        if not accepted:
            raise FhirInputError([i for issues in failed for i in issues])
        await self._publish(tenant, accepted, now)
        entries = [r if isinstance(r, list) else None for r in results]
        return fhir_response(outbound.response_bundle(parsed.type, entries), 202)

    async def post_observation(self, request: web.Request) -> web.Response:
        return await self._post_one(request, inbound.map_observation)

    async def post_questionnaire_response(self, request: web.Request) -> web.Response:
        return await self._post_one(request, inbound.map_questionnaire_response)

    async def _post_one(self, request: web.Request, mapper: Any) -> web.Response:
        principal = await authenticate(request, "ingest")
        body = await read_fhir_json(request)
        now = datetime.now(UTC)
        try:
            item: Mapped = mapper(body, principal.tenant_id)
        except FhirInputError as exc:
            self._count(exc.issues)
            raise
        (result,) = await self._validate(principal.tenant_id, [item], now, [None])
        if isinstance(result, list):
            self._count(result)
            raise FhirInputError(result)
        await self._publish(principal.tenant_id, [result], now)
        event_id = result.event_id if isinstance(result, CheckIn) else result.sample.event_id
        return fhir_response(outbound.accepted_outcome(event_id), 202)

    # -- pipeline ----------------------------------------------------------------------------

    async def _validate(
        self, tenant: str, mapped: Sequence[Mapped | list[Issue]], now: datetime, prefixes: Sequence[str | None]
    ) -> list[Accepted | list[Issue]]:
        """Known patient (of this tenant), affected side of grip readings, then the contract's models."""
        pids = {m.patient_id for m in mapped if not isinstance(m, list)}
        known = await self.h.registry.known(tenant, pids) if pids else set()
        sided = {m.patient_id for m in mapped if not isinstance(m, list) and m.grip_side and m.patient_id in known}
        sides = await self._sides(tenant, sided) if sided else {}
        out: list[Accepted | list[Issue]] = []
        for m, prefix in zip(mapped, prefixes, strict=True):
            if isinstance(m, list):
                out.append(m)
                continue
            issues: list[Issue] = []
            if m.patient_id not in known:
                where = f"{prefix}.subject" if prefix else f"{m.resource_type}.subject"
                issues = [Issue("not-found", "unknown patient; enrol it first (POST /v1/patients)", where, 404)]
            else:
                side = inbound.side_issue(m, sides.get(m.patient_id))
                if side is not None:
                    issues = [side]
            if not issues:
                try:
                    out.append(inbound.to_contract(m, now))
                    continue
                except FhirInputError as exc:
                    issues = exc.issues
            out.append([i.under(prefix) for i in issues] if prefix else issues)
        return out

    async def _sides(self, tenant: str, patient_ids: set[str]) -> dict[str, str]:
        rows = await self.h.registry.pool.fetch(
            "SELECT patient_id, data->>'side' AS side FROM ingest.patients"
            " WHERE tenant_id = $1 AND patient_id = ANY($2::text[])",
            tenant,
            list(patient_ids),
        )
        return {r["patient_id"]: r["side"] for r in rows}

    async def _publish(self, tenant: str, accepted: Sequence[Accepted], now: datetime) -> None:
        """Publish through ingest's path (503 + Retry-After when the log cannot take them)."""
        checkins = [
            (
                Topics.checkins,
                event_key(tenant, a.patient_id),
                CheckInRecorded(tenant_id=tenant, received_at=now, checkin=a).model_dump_json().encode(),
            )
            for a in accepted
            if isinstance(a, CheckIn)
        ]
        groups: dict[tuple[str, str, str], list[ActivitySample]] = defaultdict(list)
        devices: dict[tuple[str, str, str], Device] = {}
        for a in accepted:
            if isinstance(a, ValidSample):
                key = (a.patient_id, a.device.id, a.device.kind.value)
                groups[key].append(a.sample)
                devices[key] = a.device
        samples = []
        for key, items in groups.items():
            for i in range(0, len(items), ACTIVITY_CHUNK):
                event = ActivityRecorded(
                    tenant_id=tenant,
                    received_at=now,
                    patient_id=key[0],
                    device=devices[key],
                    samples=items[i : i + ACTIVITY_CHUNK],
                )
                samples.append((Topics.activity, event_key(tenant, key[0]), event.model_dump_json().encode()))
        if samples:
            await self.h._publish("activity", samples)
            metrics.INGEST_ACCEPTED.labels("activity_sample").inc(sum(len(v) for v in groups.values()))
        if checkins:
            await self.h._publish("checkin", checkins)

    @staticmethod
    def _count(issues: Sequence[Issue]) -> None:
        for issue in issues:
            metrics.VALIDATION_REJECTIONS.labels(ENDPOINT, issue.code).inc()
