"""Process runtime shared by the services: connect with retries, expose readiness, clean up.

Start-up applies the aiokafka workarounds (`nervewatch.kafka.workarounds.apply`), blocks until
PostgreSQL and the broker answer (retrying with backoff), creates the missing ones of the topics
the caller names (`EventLog`: plumbing knows no topic), starts the topic keeper (re-creates topics
a broker lost), then returns. `close()` stops the producer and the pool; consumers and background
tasks are stopped first by the service's own cleanup hooks (registered before this one).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import asyncpg
from aiohttp import web
from aiokafka import AIOKafkaProducer

from nervewatch import db
from nervewatch.http import BEFORE_SCRAPE, READY_CHECKS, create_app
from nervewatch.identity.store import IdentityStore
from nervewatch.kafka import BatchConsumer, DeadLetters, ensure_topics, keep_topics, make_producer, workarounds
from nervewatch.kafka.deadletters import Encode
from nervewatch.settings import Settings

log = logging.getLogger(__name__)
T = TypeVar("T")


async def retry_until_ready(what: str, attempt: Callable[[], Awaitable[T]], deadline_s: float = 120.0) -> T:
    """Call `attempt` until it succeeds or `deadline_s` passes (then re-raise)."""
    loop = asyncio.get_running_loop()
    end = loop.time() + deadline_s
    delay = 0.2
    while True:
        try:
            return await attempt()
        except Exception as exc:
            if loop.time() > end:
                raise
            log.warning("waiting for dependency", extra={"dependency": what, "error": type(exc).__name__})
            await asyncio.sleep(delay)
            delay = min(delay * 2, 3.0)


@dataclass(frozen=True)
class EventLog:
    """What the process needs to know of the event log, given by its caller (the CLI, from `schemas.events`).

    `topics` are created at start and kept; dead letters go to `dead_letter_topic`, encoded by
    `encode_dead_letter` (the topic's wire format)."""

    topics: Sequence[str]
    dead_letter_topic: str
    encode_dead_letter: Encode


@dataclass(frozen=True)
class ProcessSpec:
    """What a service process gets from its caller (the CLI) instead of importing it: the event log's
    topics and dead-letter format, and the OpenAPI document every app serves at `/openapi.json`."""

    log: EventLog
    openapi: Callable[[], bytes] | None = None


@dataclass
class Runtime:
    settings: Settings
    pool: asyncpg.Pool
    producer: AIOKafkaProducer
    identity: IdentityStore
    dead_letters: DeadLetters
    openapi: Callable[[], bytes] | None = None
    background: list[asyncio.Task[None]] = field(default_factory=list)

    @classmethod
    async def start(cls, settings: Settings, spec: ProcessSpec, *, pool_max: int | None = None) -> Runtime:
        """Connect (blocking until PostgreSQL and the broker answer), create topics, start the topic keeper."""
        if not settings.database_url:
            raise RuntimeError("DATABASE_URL is not set")
        workarounds.apply()
        dsn = settings.database_url
        pool = await retry_until_ready(
            "postgresql",
            lambda: db.create_pool(dsn, settings.db_pool_min, pool_max or settings.db_pool_max),
        )
        log_spec = spec.log
        topics = list(log_spec.topics)
        await retry_until_ready("kafka", lambda: ensure_topics(settings, topics))
        producer = make_producer(settings)
        await retry_until_ready("kafka", producer.start)
        runtime = cls(
            settings=settings,
            pool=pool,
            producer=producer,
            identity=IdentityStore(pool),
            dead_letters=DeadLetters(producer, log_spec.dead_letter_topic, log_spec.encode_dead_letter),
            openapi=spec.openapi,
        )
        runtime.spawn(keep_topics(settings, topics), "topic-keeper")
        return runtime

    def spawn(self, coro: Awaitable[None], name: str) -> None:
        """Run a background loop; it is cancelled on close."""

        async def wrapper() -> None:
            try:
                await coro
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("background task crashed", extra={"task": name})
                raise

        self.background.append(asyncio.create_task(wrapper(), name=name))

    def create_app(self, service: str, consumer: BatchConsumer[Any] | None = None) -> web.Application:
        """The service's app with the shared readiness checks (database, broker, and the consumer's
        progress when it has one) and the pool gauges refreshed before each scrape."""
        app = create_app(service, self.identity, openapi=self.openapi)
        app[BEFORE_SCRAPE].append(self.observe_pool)
        app[READY_CHECKS].update({"database": self.db_ready, "kafka": self.kafka_ready})
        if consumer is not None:
            app[READY_CHECKS]["consumer"] = consumer.ready
        return app

    def observe_pool(self) -> None:
        db.record_pool_metrics(self.pool)

    async def db_ready(self) -> bool:
        self.observe_pool()
        return await db.ping(self.pool)

    async def kafka_ready(self) -> bool:
        client = self.producer.client
        try:
            return bool(await asyncio.wait_for(client.ready(client.get_random_node() or 0), timeout=2))
        except Exception:
            return False

    async def close(self) -> None:
        for task in self.background:
            task.cancel()
        for task in self.background:
            with contextlib.suppress(BaseException):
                await task
        with contextlib.suppress(Exception):
            await self.producer.stop()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.pool.close(), timeout=10)
