"""Session fixtures: one embedded stack (or DATABASE_URL / KAFKA_BOOTSTRAP_SERVERS), migrated, with tenants."""

from __future__ import annotations

import os
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest

from nervewatch.kafka import workarounds
from tests.support import SERVICES, Services, Tenant, create_tenant, service_env
from tooling.devstack import EmbeddedStack, free_port, fresh_database, start_embedded


@pytest.fixture(scope="session", autouse=True)
def kafka_workarounds() -> None:
    """As `Runtime.start` does for a service process: the aiokafka workarounds, once, before any client."""
    workarounds.apply()


@pytest.fixture(scope="session")
def workdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="nwtest-", dir="/tmp") as d:
        yield Path(d)


@pytest.fixture(scope="session")
def stack(workdir: Path) -> Iterator[EmbeddedStack]:
    stack = start_embedded(
        workdir / "stack",
        os.environ.get("DATABASE_URL"),
        os.environ.get("KAFKA_BOOTSTRAP_SERVERS"),
        pg_cleanup="delete",
    )
    try:
        yield stack
    finally:
        stack.stop()


@pytest.fixture(scope="session")
async def database_url(stack: EmbeddedStack) -> str:
    """A fresh database per test session inside the (embedded or given) PostgreSQL server."""
    return await fresh_database(stack.database_url, "nwtest")


@pytest.fixture(scope="session")
async def tenant(database_url: str) -> Tenant:
    return await create_tenant(database_url, "clinic-a")


@pytest.fixture(scope="session")
async def other_tenant(database_url: str) -> Tenant:
    return await create_tenant(database_url, "clinic-b")


@pytest.fixture(scope="session")
async def ingest_only_tenant(database_url: str) -> Tenant:
    return await create_tenant(database_url, "platform-c", frozenset({"ingest"}))


@pytest.fixture(scope="session")
async def care_only_tenant(database_url: str) -> Tenant:
    return await create_tenant(database_url, "clinic-d", frozenset({"care"}))


@pytest.fixture(scope="session")
def services(stack: EmbeddedStack, database_url: str, workdir: Path) -> Iterator[Services]:
    ports = {s: free_port() for s in SERVICES}
    env = service_env(stack.__class__(database_url=database_url, bootstrap=stack.bootstrap), ports)
    svc = Services(env=env, ports=ports, log_dir=workdir)
    svc.start_all()
    try:
        yield svc
    finally:
        svc.stop_all()
        svc.keep_logs()


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(database_url)
    try:
        yield conn
    finally:
        await conn.close()
