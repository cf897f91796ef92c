"""Per-tenant alerting policy, read from `alerts.tenant_config` and cached briefly."""

from __future__ import annotations

import time
from collections import OrderedDict

import asyncpg

from services.alerts import model
from services.alerts.model import AlertPolicy

TTL_S = 30.0
MAX_TENANTS = 10_000


class PolicyCache:
    def __init__(self) -> None:
        self._cache: OrderedDict[str, tuple[float, AlertPolicy]] = OrderedDict()

    async def get(self, conn: asyncpg.Connection, tenant_id: str) -> AlertPolicy:
        """The tenant's policy (product defaults when it has none). Invalid stored config raises ValueError."""
        now = time.monotonic()
        hit = self._cache.get(tenant_id)
        if hit is not None and now - hit[0] < TTL_S:
            return hit[1]
        raw = await conn.fetchval("SELECT policy FROM alerts.tenant_config WHERE tenant_id = $1", tenant_id)
        policy = model.policy_from_dict(raw) if raw else AlertPolicy()
        self._cache[tenant_id] = (now, policy)
        self._cache.move_to_end(tenant_id)
        while len(self._cache) > MAX_TENANTS:
            self._cache.popitem(last=False)
        return policy
