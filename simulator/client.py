"""Replay a synthetic cohort through the public HTTP API (ingest service, Bearer key).

Patients are enrolled first (`POST /v1/patients`); then every scheduled post of every patient is
replayed in global posting-time order. Posts are grouped into windows of simulated time (a day by
default); windows go out one after another, requests inside a window run concurrently (bounded).
Check-ins of a window are sent through `POST /v1/checkins/batch` in chunks of at most 500 items,
each wearable sync is one `POST /v1/activity`.

503 and 429 are retried, honouring `Retry-After` (seconds or an HTTP date) up to a cap; connection
errors are retried with exponential backoff. Nothing here logs patient ids or notes above debug.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any

import aiohttp

from schemas.checkins import MAX_BATCH, BatchResult
from schemas.patients import PatientIn
from simulator.archetypes import ScheduledPost, SimPatient

log = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({429, 503})


@dataclass(slots=True)
class PostStats:
    """Counts of one replay. `posted`/`accepted`/`rejected` count items (check-ins and samples)."""

    patients: int = 0
    enrolled: int = 0
    enrol_failed: int = 0
    posted: int = 0
    posted_checkins: int = 0
    posted_samples: int = 0
    accepted: int = 0
    rejected: int = 0
    requests: int = 0
    retries: int = 0
    failed_requests: int = 0
    seconds: float = 0.0
    status_counts: dict[int, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["status_counts"] = {str(k): v for k, v in sorted(self.status_counts.items())}
        out["seconds"] = round(self.seconds, 2)
        return out


def retry_after_seconds(value: str | None, default: float, cap: float, now: datetime | None = None) -> float:
    """Seconds to wait per a `Retry-After` header (delta-seconds or HTTP date), within [0, cap]."""
    if value:
        value = value.strip()
        try:
            return max(0.0, min(cap, float(value)))
        except ValueError:
            pass
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            when = None
        if when is not None:
            if when.tzinfo is None:
                when = when.replace(tzinfo=UTC)
            delta = (when - (now or datetime.now(UTC))).total_seconds()
            return max(0.0, min(cap, delta))
    return max(0.0, min(cap, default))


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    body: Any  # parsed JSON, or None


class ApiClient:
    """A thin JSON client with retries; one per base URL."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        base_url: str,
        api_key: str,
        stats: PostStats | None = None,
        *,
        max_attempts: int = 8,
        retry_cap_s: float = 30.0,
        backoff_s: float = 0.5,
    ) -> None:
        self._session = session
        self._base = base_url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {api_key}", "Accept": "application/json"}
        self.stats = stats if stats is not None else PostStats()
        self._max_attempts = max_attempts
        self._cap = retry_cap_s
        self._backoff = backoff_s

    async def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, str] | None = None,
    ) -> Response:
        url = f"{self._base}{path}"
        attempt = 0
        while True:
            attempt += 1
            self.stats.requests += 1
            try:
                async with self._session.request(method, url, json=json, params=params, headers=self._headers) as resp:
                    status = resp.status
                    retry_after = resp.headers.get("Retry-After")
                    try:
                        body = await resp.json(content_type=None)
                    except (ValueError, aiohttp.ContentTypeError):
                        body = None
            except (aiohttp.ClientConnectionError, TimeoutError) as exc:
                if attempt >= self._max_attempts:
                    log.warning(
                        "request failed after %d attempts: %s %s (%s)",
                        attempt,
                        method,
                        path.split("?")[0],
                        type(exc).__name__,
                    )
                    self.stats.failed_requests += 1
                    return Response(0, None)
                self.stats.retries += 1
                await asyncio.sleep(min(self._cap, self._backoff * 2 ** (attempt - 1)))
                continue
            self.stats.status_counts[status] = self.stats.status_counts.get(status, 0) + 1
            if status in RETRY_STATUSES and attempt < self._max_attempts:
                self.stats.retries += 1
                await asyncio.sleep(retry_after_seconds(retry_after, self._backoff * 2 ** (attempt - 1), self._cap))
                continue
            if status in RETRY_STATUSES or status >= 500:
                self.stats.failed_requests += 1
            return Response(status, body)


def chunked(items: Sequence[Any], size: int) -> Iterable[Sequence[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def windows(posts: Sequence[ScheduledPost], width: timedelta) -> list[list[ScheduledPost]]:
    """Group time-ordered posts into consecutive windows of simulated time."""
    out: list[list[ScheduledPost]] = []
    ordered = sorted(posts, key=lambda p: p.at)
    if not ordered:
        return out
    start = ordered[0].at
    current: list[ScheduledPost] = []
    for p in ordered:
        if p.at - start >= width:
            out.append(current)
            current = []
            while p.at - start >= width:
                start += width
        current.append(p)
    if current:
        out.append(current)
    return out


class Replayer:
    def __init__(self, api: ApiClient, concurrency: int) -> None:
        self.api = api
        self.stats = api.stats
        self._sem = asyncio.Semaphore(max(1, concurrency))

    async def enrol(self, patient: Mapping[str, Any]) -> bool:
        body = PatientIn.model_validate(patient).model_dump(mode="json", exclude_none=True)
        async with self._sem:
            resp = await self.api.request("POST", "/v1/patients", json=body)
        ok = resp.status in (200, 201)
        if ok:
            self.stats.enrolled += 1
        else:
            self.stats.enrol_failed += 1
            log.debug("enrolment failed", extra={"status": resp.status})
        return ok

    async def post_checkins(self, items: Sequence[dict[str, Any]]) -> None:
        self.stats.posted += len(items)
        self.stats.posted_checkins += len(items)
        async with self._sem:
            resp = await self.api.request("POST", "/v1/checkins/batch", json={"items": list(items)})
        if resp.status in (200, 202) and isinstance(resp.body, dict):
            try:
                result = BatchResult.model_validate(resp.body)
            except ValueError:
                self.stats.accepted += len(items)
                return
            self.stats.accepted += result.accepted
            self.stats.rejected += result.rejected
            for err in result.errors[:3]:
                log.debug("check-in rejected at index %d: %s", err.index, [e.msg for e in err.errors])
        elif resp.status in (200, 202):
            self.stats.accepted += len(items)
        else:
            self.stats.rejected += len(items)
            log.debug("check-in batch of %d got status %s", len(items), resp.status)

    async def post_activity(self, batch: dict[str, Any]) -> None:
        n = len(batch.get("samples", []))
        self.stats.posted += n
        self.stats.posted_samples += n
        async with self._sem:
            resp = await self.api.request("POST", "/v1/activity", json=batch)
        if resp.status in (200, 201, 202):
            accepted = resp.body.get("accepted") if isinstance(resp.body, dict) else None
            acc = accepted if isinstance(accepted, int) else n
            self.stats.accepted += acc
            self.stats.rejected += max(0, n - acc)
        else:
            self.stats.rejected += n
            log.debug("activity batch of %d samples got status %s", n, resp.status)

    async def replay_window(self, window: Sequence[ScheduledPost]) -> None:
        checkins = [p.payload for p in window if p.kind == "checkin"]
        tasks = [self.post_checkins(chunk) for chunk in chunked(checkins, MAX_BATCH)]
        tasks += [self.post_activity(p.payload) for p in window if p.kind == "activity"]
        await asyncio.gather(*tasks)


async def replay(
    cohort: Sequence[SimPatient],
    ingest_url: str,
    api_key: str,
    *,
    concurrency: int = 16,
    window: timedelta = timedelta(days=1),
    session: aiohttp.ClientSession | None = None,
    progress: bool = True,
) -> PostStats:
    """Enrol the cohort and replay every post in global posting-time order."""
    started = time.monotonic()
    stats = PostStats(patients=len(cohort))
    own = session is None
    sess = session or aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60, connect=5))
    try:
        api = ApiClient(sess, ingest_url, api_key, stats)
        rp = Replayer(api, concurrency)
        ok = await asyncio.gather(*(rp.enrol(p.patient) for p in cohort))
        enrolled = {p.patient_id for p, good in zip(cohort, ok, strict=True) if good}
        if progress:
            log.info("enrolled %d/%d patients", len(enrolled), len(cohort))
        posts = [post for p in cohort if p.patient_id in enrolled for post in p.posts]
        skipped = [post for p in cohort if p.patient_id not in enrolled for post in p.posts]
        for post in skipped:
            n = len(post.payload.get("samples", [])) if post.kind == "activity" else 1
            stats.posted += n
            stats.rejected += n
        groups = windows(posts, window)
        for i, group in enumerate(groups, 1):
            await rp.replay_window(group)
            if progress and (i % 10 == 0 or i == len(groups)):
                log.info(
                    "replayed %d/%d windows: %d items accepted, %d rejected, %d retries",
                    i,
                    len(groups),
                    stats.accepted,
                    stats.rejected,
                    stats.retries,
                )
    finally:
        if own:
            await sess.close()
    stats.seconds = time.monotonic() - started
    return stats
