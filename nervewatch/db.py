"""PostgreSQL access: pool creation, migrations and pool metrics.

Each service owns one schema and a folder of numbered `.sql` migrations. `migrate` applies the
missing ones in order, each in its own transaction, under a cluster-wide advisory lock so that
concurrent starts are safe. Migrations are forward-only and never edited once released.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources
from typing import Any

import asyncpg

from nervewatch.metrics import DB_POOL

log = logging.getLogger(__name__)
MIGRATION_LOCK_KEY = 0x4E57_4D49  # "NWMI"


@dataclass(frozen=True)
class MigrationSet:
    """Migrations of one owner: `package` holds a `migrations/` folder of `NNN_name.sql` files."""

    owner: str
    package: str


def all_migration_sets() -> list[MigrationSet]:
    return [
        MigrationSet("identity", "nervewatch.identity"),
        MigrationSet("ingest", "services.ingest"),
        MigrationSet("scoring", "services.scoring"),
        MigrationSet("alerts", "services.alerts"),
    ]


def _migration_files(package: str) -> list[tuple[str, str]]:
    folder = resources.files(package).joinpath("migrations")
    files = sorted((p.name, p.read_text(encoding="utf-8")) for p in folder.iterdir() if p.name.endswith(".sql"))
    return files


async def migrate(dsn: str, sets: Iterable[MigrationSet] | None = None) -> list[str]:
    """Apply pending migrations; returns the names applied. Blocks other migrators meanwhile."""
    applied: list[str] = []
    conn: asyncpg.Connection = await asyncpg.connect(dsn)
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK_KEY)
        try:
            await conn.execute(
                """CREATE TABLE IF NOT EXISTS public.nervewatch_migrations (
                       owner text NOT NULL, name text NOT NULL,
                       applied_at timestamptz NOT NULL DEFAULT now(),
                       PRIMARY KEY (owner, name))"""
            )
            done = {(r["owner"], r["name"]) for r in await conn.fetch("SELECT owner, name FROM nervewatch_migrations")}
            for mset in sets if sets is not None else all_migration_sets():
                for name, sql in _migration_files(mset.package):
                    if (mset.owner, name) in done:
                        continue
                    async with conn.transaction():
                        await conn.execute(sql)
                        await conn.execute(
                            "INSERT INTO nervewatch_migrations (owner, name) VALUES ($1, $2)", mset.owner, name
                        )
                    applied.append(f"{mset.owner}/{name}")
                    log.info("migration applied", extra={"migration": f"{mset.owner}/{name}"})
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK_KEY)
    finally:
        await conn.close()
    return applied


async def _init_connection(conn: asyncpg.Connection) -> None:
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")
    await conn.set_type_codec("json", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Release without asyncpg's server-side reset (`RESET ALL; UNLISTEN *; CLOSE ALL; SELECT
    pg_advisory_unlock_all()`, one more round trip per acquire: 10% of ingest's single-event time
    under py-spy). asyncpg still rolls back an open transaction and drops listeners first."""


async def create_pool(dsn: str, min_size: int = 1, max_size: int = 10, **kwargs: Any) -> asyncpg.Pool:
    """A pool whose connections decode json/jsonb to Python objects.

    Contract for every user of the pool: leave no session state behind on a pooled connection
    (no plain `SET`, `LISTEN`, cursor outside a transaction, or session advisory lock still held
    at release; `SET LOCAL` and transaction-level locks are fine). Released connections are not
    reset server-side (`_keep_session`); LISTEN connections are opened on their own."""
    kwargs.setdefault("reset", _keep_session)
    pool: asyncpg.Pool = await asyncpg.create_pool(
        dsn, min_size=min_size, max_size=max_size, init=_init_connection, command_timeout=30, **kwargs
    )
    return pool


def record_pool_metrics(pool: asyncpg.Pool) -> None:
    size = pool.get_size()
    idle = pool.get_idle_size()
    DB_POOL.labels("in_use").set(size - idle)
    DB_POOL.labels("idle").set(idle)
    DB_POOL.labels("max").set(pool.get_max_size())


async def ping(pool: asyncpg.Pool) -> bool:
    try:
        async with pool.acquire(timeout=2) as conn:
            await conn.fetchval("SELECT 1")
        return True
    except Exception:  # any failure means not ready
        return False
