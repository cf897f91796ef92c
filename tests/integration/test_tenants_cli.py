"""`nervewatch tenants create|list|disable` against the real PostgreSQL: the printed key authenticates
until the tenant is disabled; creating the same tenant twice fails without printing a key."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import asyncpg
import pytest

from nervewatch.identity.store import IdentityStore
from tooling.tenants import tenant_id_for

pytestmark = pytest.mark.integration


def _cli(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NERVEWATCH_")}
    env["DATABASE_URL"] = database_url
    return subprocess.run(
        [sys.executable, "-m", "tooling.cli", "tenants", *args], env=env, capture_output=True, text=True, timeout=60
    )


def test_tenant_id_for_slugs_names() -> None:
    assert tenant_id_for("  Clinic North / Leeds ") == "Clinic-North-Leeds"
    with pytest.raises(ValueError):
        tenant_id_for(" // ")


async def test_create_list_disable(database_url: str) -> None:
    name = f"clinic-cli-{uuid.uuid4().hex[:6]}"
    created = _cli(database_url, "create", name)
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip().splitlines()[-1]
    again = _cli(database_url, "create", name)
    assert (again.returncode == 1 and "nw_" not in again.stdout + again.stderr) or key not in again.stdout
    listed = _cli(database_url, "list")
    assert f"{name}\t{name}\t" in listed.stdout and "active_keys=1" in listed.stdout
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
    try:
        assert await IdentityStore(pool).authenticate(key) is not None
        disabled = _cli(database_url, "disable", name)
        assert disabled.returncode == 0, disabled.stderr
        assert "1 key(s) revoked" in disabled.stdout
        assert await IdentityStore(pool).authenticate(key) is None
    finally:
        await pool.close()
    assert _cli(database_url, "disable", f"missing-{uuid.uuid4().hex[:6]}").returncode == 1
