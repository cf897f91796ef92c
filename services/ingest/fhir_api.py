"""FHIR R4 writes of the ingest service: `POST /fhir/r4` (Bundle), `.../Observation`, `.../QuestionnaireResponse`.

The JSON API's rules, through the same parts of `IngestHandlers` (mapping: `schemas.fhir.inbound`):

- Admission (`_admitted`: in-flight requests and body bytes) and strict JSON. `POST /fhir/r4` has its
  own body limit, `BUNDLE_MAX_BODY` (4 MiB: a Bundle of `MAX_ENTRIES` fully populated check-in
  panels is ~2.6-3.2 MB as compact JSON); the single-resource endpoints keep the app-wide 1 MiB.
  Beyond it: `413` OperationOutcome (`too-costly`), before admission when `Content-Length` says so.
- Validation by the JSON API's models with its validation context per patient (the clock and the
  plausibility floor: the earlier of `NERVEWATCH_EVENT_TIME_FLOOR` and a year before the patient's
  onset, `IngestHandlers._context` over `PatientRegistry.facts`), for every check-in and sample.
- Digests (`IngestHandlers._claim`, one statement per kind: check-ins, then samples with patient and
  device): the event id derived from a resource's identifier accepted before with other content is
  a `409 conflict` on its entry, never echoing content; an identical repost is accepted and
  published again (harmless: consumers deduplicate by event id). Within one request the first
  occurrence of an identifier is the one judged against the record (an identifier used for both a
  check-in and a sample: the check-in's). If the record cannot be consulted: `503`, nothing accepted.
- Publishing: `202` means every accepted event is durably in the log. Check-ins and samples go to
  the log in two publishes, check-ins first (their red flags reach the log first). A failure is
  `503` + `Retry-After`: when the check-ins' publish fails, the digests of every event of the
  request are forgotten (a corrected retry is not refused); when the samples' publish fails after
  the check-ins were acknowledged, the check-ins stay in the log with their digests and only the
  samples' digests are forgotten. Either way the client retries the same request: its check-ins
  are then identical reposts (accepted again, stored once) and its samples new, so the retry is
  idempotent. A `503` can thus leave part of a `transaction` in the log until the retry.

- `transaction`: every entry must be accepted, else nothing is published (and the digests this
  request recorded are forgotten); the answer has the status of the first failing entry (`409`
  when only conflicts fail it) with an OperationOutcome listing every issue.
- `batch`: each entry on its own; `202` with a `batch-response` when at least one is accepted
  (conflicting entries `409 Conflict`), else the status of the first failing entry with every issue.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from aiohttp import web

from nervewatch import metrics
from nervewatch.fhir_http import BASE_PATH, fhir_response, install, read_fhir_json
from nervewatch.http import authenticate, with_body_limit
from nervewatch.problems import ProblemError
from schemas.activity import ActivitySample, Device
from schemas.checkins import CheckIn
from schemas.digests import checkin_digest, sample_digest
from schemas.events import ActivityRecorded, CheckInRecorded, Topics, event_key
from schemas.fhir import inbound, outbound
from schemas.fhir.inbound import FhirInputError, Issue, Mapped, ValidSample
from services.ingest.digests import Claim, Outcome
from services.ingest.handlers import ACTIVITY_CHUNK, IngestHandlers

ENDPOINT = "fhir"
BUNDLE_MAX_BODY = 4 * 1024 * 1024

Accepted = CheckIn | ValidSample


class FhirIngest:
    def __init__(self, handlers: IngestHandlers) -> None:
        self.h = handlers

    def register(self, app: web.Application) -> None:
        install(
            app,
            "ingest",
            [
                web.post(BASE_PATH, with_body_limit(BUNDLE_MAX_BODY, self.h._admitted(self.post_bundle))),
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
        prefixes = [f"Bundle.entry[{i}].resource" for i in range(len(mapped))]
        results = await self._validate(tenant, mapped, now, prefixes)
        transaction = parsed.type == "transaction"
        failed = [r for r in results if isinstance(r, list)]
        for issues in failed:
            self._count(issues)
        if transaction and failed:
            raise FhirInputError([i for issues in failed for i in issues])
        candidates = [(i, r) for i, r in enumerate(results) if not isinstance(r, list)]
        if not candidates:
            raise FhirInputError([i for issues in failed for i in issues])
        conflicts, claims = await self._claim(tenant, [r for _, r in candidates])
        for (i, _), conflict in zip(candidates, conflicts, strict=True):
            if conflict:
                m = mapped[i]
                assert not isinstance(m, list)
                results[i] = [inbound.conflict_issue(m).under(prefixes[i])]
        accepted = [r for (_, r), conflict in zip(candidates, conflicts, strict=True) if not conflict]
        if any(conflicts) and (transaction or not accepted):
            await self._release(tenant, claims)
            raise FhirInputError([i for r in results if isinstance(r, list) for i in r])
        await self._publish(tenant, accepted, now, claims)
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
        tenant = principal.tenant_id
        try:
            item: Mapped = mapper(body, tenant)
        except FhirInputError as exc:
            self._count(exc.issues)
            raise
        (result,) = await self._validate(tenant, [item], now, [None])
        if isinstance(result, list):
            self._count(result)
            raise FhirInputError(result)
        (conflict,), claims = await self._claim(tenant, [result])
        if conflict:
            raise FhirInputError([inbound.conflict_issue(item)])
        await self._publish(tenant, [result], now, claims)
        event_id = result.event_id if isinstance(result, CheckIn) else result.sample.event_id
        return fhir_response(outbound.accepted_outcome(event_id), 202)

    # -- pipeline ----------------------------------------------------------------------------

    async def _validate(
        self, tenant: str, mapped: Sequence[Mapped | list[Issue]], now: datetime, prefixes: Sequence[str | None]
    ) -> list[Accepted | list[Issue]]:
        """Known patient (of this tenant), affected side of grip readings, then the contract's models
        with the patient's validation context (clock and plausibility floor, as the JSON API)."""
        pids = {m.patient_id for m in mapped if not isinstance(m, list)}
        facts = await self.h.registry.facts(tenant, pids) if pids else {}
        sided = {m.patient_id for m in mapped if not isinstance(m, list) and m.grip_side and m.patient_id in facts}
        sides = await self._sides(tenant, sided) if sided else {}
        contexts = {pid: self.h._context(now, f) for pid, f in facts.items()}
        out: list[Accepted | list[Issue]] = []
        for m, prefix in zip(mapped, prefixes, strict=True):
            if isinstance(m, list):
                out.append(m)
                continue
            issues: list[Issue] = []
            if m.patient_id not in facts:
                where = f"{prefix}.subject" if prefix else f"{m.resource_type}.subject"
                issues = [Issue("not-found", "unknown patient; enrol it first (POST /v1/patients)", where, 404)]
            else:
                side = inbound.side_issue(m, sides.get(m.patient_id))
                if side is not None:
                    issues = [side]
            if not issues:
                try:
                    out.append(inbound.to_contract(m, contexts[m.patient_id]))
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

    async def _claim(self, tenant: str, accepted: Sequence[Accepted]) -> tuple[list[bool], dict[str, Claim]]:
        """Judge the events' digests against the record, as the JSON API does: check-ins (kind
        `checkin`), then samples (kind `sample`, digest with patient and device), one statement per
        kind present. Returns per event whether it conflicts, and the claims by kind. A `503` (the
        record cannot be consulted) forgets what an earlier statement of this call recorded."""
        by_kind: dict[str, list[tuple[int, tuple[UUID, bytes]]]] = {"checkin": [], "sample": []}
        for i, a in enumerate(accepted):
            if isinstance(a, CheckIn):
                by_kind["checkin"].append((i, (a.event_id, checkin_digest(a))))
            else:
                by_kind["sample"].append((i, (a.sample.event_id, sample_digest(a.sample, a.patient_id, a.device.id))))
        conflicts = [False] * len(accepted)
        claims: dict[str, Claim] = {}
        try:
            for kind, pairs in by_kind.items():
                if not pairs:
                    continue
                claim = await self.h._claim(tenant, kind, [p for _, p in pairs])
                claims[kind] = claim
                for (i, _), outcome in zip(pairs, claim.outcomes, strict=True):
                    if outcome is Outcome.conflict:
                        conflicts[i] = True
                        metrics.INGEST_EVENT_CONFLICTS.labels(kind).inc()
                        metrics.VALIDATION_REJECTIONS.labels(ENDPOINT, "conflict").inc()
        except (ProblemError, asyncio.CancelledError):
            await self._release(tenant, claims)
            raise
        return conflicts, claims

    async def _release(self, tenant: str, claims: dict[str, Claim]) -> None:
        await self.h.digests.release(tenant, [p for c in claims.values() for p in c.inserted])

    async def _publish(
        self, tenant: str, accepted: Sequence[Accepted], now: datetime, claims: dict[str, Claim]
    ) -> None:
        """Publish through ingest's path, check-ins first, then samples (503 + Retry-After when the
        log cannot take them). Failure semantics in the module doc: a failed check-in publish forgets
        every digest of the request, a failed sample publish only the samples'."""
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
        sample_claim = claims.get("sample", Claim([]))
        if checkins:
            # Until the check-ins are acknowledged nothing of the request is known to be in the log.
            every = Claim([], [p for c in claims.values() for p in c.inserted])
            await self.h._publish_claimed("checkin", checkins, tenant, every)
        if samples:
            await self.h._publish_claimed("activity", samples, tenant, sample_claim)
            metrics.INGEST_ACCEPTED.labels("activity_sample").inc(sum(len(v) for v in groups.values()))

    @staticmethod
    def _count(issues: Sequence[Issue]) -> None:
        for issue in issues:
            metrics.VALIDATION_REJECTIONS.labels(ENDPOINT, issue.code).inc()
