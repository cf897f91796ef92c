"""The ingest app starts the access-audit and event-digest retention loops, once each, with their retentions."""

from __future__ import annotations

from collections.abc import Awaitable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, cast

from nervewatch.identity.store import IdentityStore
from nervewatch.runtime import Runtime
from nervewatch.settings import Settings
from services.ingest.app import build_app


@dataclass
class FakeRuntime:
    """Just what `build_app` touches; `spawn` records instead of running."""

    settings: Settings
    pool: Any = None
    producer: Any = None
    openapi: Any = None
    identity: IdentityStore = field(init=False)
    spawned: list[tuple[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.identity = IdentityStore(cast(Any, None))

    def spawn(self, coro: Awaitable[None], name: str) -> None:
        self.spawned.append((name, coro))

    create_app = Runtime.create_app  # the real wiring, on this fake's checks

    def observe_pool(self) -> None: ...

    async def db_ready(self) -> bool:
        return True

    async def kafka_ready(self) -> bool:
        return True


async def test_ingest_spawns_the_retention_loop_on_startup() -> None:
    rt = FakeRuntime(Settings(access_log_retention_days=30, event_digest_retention_days=12))
    app = build_app(cast(Runtime, rt))
    for hook in app.on_startup:
        await hook(app)
    try:
        names = [name for name, _ in rt.spawned]
        assert names == ["access-log-retention", "event-digest-retention"]
        for (_, coro), days in zip(rt.spawned, (30, 12), strict=True):
            frame = coro.cr_frame
            assert frame.f_locals["retention"] == timedelta(days=days)
            if "pool" in frame.f_locals:  # the access-log loop; the shared loop gets a purge closure instead
                assert frame.f_locals["pool"] is rt.pool
            else:
                assert frame.f_locals["what"] == "event_digests"
    finally:
        for _, coro in rt.spawned:
            coro.close()
        await rt.identity.access_log.stop()
