"""The consumer-service scaffold: one `BatchConsumer` with its outbox, background loops and HTTP app.

Scoring and alerts are both "consume topics, write state and an outbox, serve HTTP reads". This
module writes that once. `consumer_app(rt, spec)` returns the service's app (with the shared
readiness checks, the consumer's included) and its consumer; the service adds its routes.

Start-up (the app's `on_startup`): the consumer joins its group, then the outbox relay and each
background loop of `spec.background` are spawned on the runtime. Shutdown (`on_cleanup`): the
consumer finishes and commits its batch in flight, the runtime cancels the background loops and
closes the producer and the pool, then each `spec.on_close` runs, in order.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from aiohttp import web
from aiokafka import ConsumerRecord

from nervewatch.kafka import BatchConsumer, Decoded
from nervewatch.outbox import Outbox
from nervewatch.runtime import Runtime

T = TypeVar("T")


@dataclass(frozen=True)
class ConsumerSpec(Generic[T]):
    """What a consumer service is: its name, group, topics, decoder, handler and outbox.

    `handle` must run the batch in one database transaction and commit it before returning; it
    queues outgoing events in `outbox`, which the commit path drains (see `nervewatch.kafka.consumer`).
    `background` loops (name, factory) run from start-up until shutdown."""

    service: str
    group_id: str
    topics: Sequence[str]
    decode: Callable[[ConsumerRecord], T]
    handle: Callable[[list[Decoded[T]]], Awaitable[None]]
    outbox: Outbox
    background: Sequence[tuple[str, Callable[[], Awaitable[None]]]] = ()
    on_close: Sequence[Callable[[], Awaitable[None]]] = ()


def consumer_app(rt: Runtime, spec: ConsumerSpec[T]) -> tuple[web.Application, BatchConsumer[T]]:
    """Build the service's app and consumer and register their start-up and shutdown (see module docstring)."""
    consumer: BatchConsumer[T] = BatchConsumer(
        settings=rt.settings,
        group_id=spec.group_id,
        topics=spec.topics,
        decode=spec.decode,
        handle=spec.handle,
        dead_letters=rt.dead_letters,
        outbox=spec.outbox,
    )
    app = rt.create_app(spec.service, consumer)

    async def start(_: web.Application) -> None:
        await consumer.start()
        rt.spawn(spec.outbox.relay(), f"{spec.service}-outbox-relay")
        for name, loop in spec.background:
            rt.spawn(loop(), name)

    async def stop(_: web.Application) -> None:
        await consumer.stop()
        await rt.close()
        for close in spec.on_close:
            await close()

    app.on_startup.append(start)
    app.on_cleanup.append(stop)
    return app, consumer
