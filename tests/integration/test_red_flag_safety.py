"""Red flags always page, through real processes (docs/safety.md H1; issue defects 1 and 2).

Defect 1: a cauda equina red flag after an earlier, resolved red flag inside the 72 h window
paged nobody. Defect 2: a new, different red flag on an open red-flag alert paged nobody. Both
run here as a user would: enrol, post check-ins through ingest, resolve through alerts, and
watch the care team's webhook receiver.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest

from tests.support import Receiver, Services, Tenant, get_json, poll, webhook_receiver

pytestmark = pytest.mark.integration


def patient(pid: str, url: str) -> dict[str, Any]:
    return {
        "patient_id": pid,
        "condition": "lumbar_radiculopathy",
        "side": "left",
        "treatment": "conservative",
        "timezone": "America/New_York",
        "care_team": [
            {"member_id": "oncall", "role": "on_call", "min_severity": "critical", "notify": {"webhook_url": url}}
        ],
    }


async def post_checkin(
    http: aiohttp.ClientSession, ingest: str, tenant: Tenant, pid: str, at: datetime, flags: list[str]
) -> dict[str, Any]:
    body = {
        "event_id": str(uuid.uuid4()),
        "patient_id": pid,
        "recorded_at": at.replace(microsecond=0).isoformat(),
        "pain": {"current": 8},
        "red_flags": flags,
    }
    async with http.post(f"{ingest}/v1/checkins", json=body, headers=tenant.headers) as resp:
        assert resp.status == 202, await resp.text()
    return body


async def red_flag_alerts(http: aiohttp.ClientSession, alerts: str, tenant: Tenant, pid: str) -> list[dict[str, Any]]:
    _, page = await get_json(http, f"{alerts}/v1/alerts?patient_id={pid}&kind=red_flag", tenant.headers)
    return page["items"]  # type: ignore[no-any-return]


def is_page(r: dict[str, Any], pid: str) -> bool:
    """A page of the patient's (not an informational acknowledged/resolved webhook)."""
    return bool(r["json"].get("patient_id") == pid and r["json"].get("change") not in ("acknowledged", "resolved"))


def pages_for(rx: Receiver, pid: str) -> list[dict[str, Any]]:
    return [r["json"] for r in rx.requests if is_page(r, pid)]


async def test_new_red_flag_after_a_resolved_one_pages(services: Services, tenant: Tenant) -> None:
    """Defect 1, exactly as reported: fever 48 h ago pages and is resolved; saddle anaesthesia
    and bowel/bladder dysfunction reported now must open a new alert and page."""
    ingest, alerts, scoring = services.url("ingest"), services.url("alerts"), services.url("scoring")
    pid = f"pt-cauda-{uuid.uuid4().hex[:6]}"
    async with webhook_receiver() as rx, aiohttp.ClientSession() as http:
        async with http.post(f"{ingest}/v1/patients", json=patient(pid, rx.url), headers=tenant.headers) as resp:
            assert resp.status == 201, await resp.text()
        await post_checkin(http, ingest, tenant, pid, datetime.now(UTC) - timedelta(hours=48), ["fever"])
        [first] = await poll(lambda: red_flag_alerts(http, alerts, tenant, pid))
        await poll(lambda: asyncio.sleep(0, result=len(pages_for(rx, pid)) >= 1))
        async with http.post(
            f"{alerts}/v1/alerts/{first['id']}/resolve", json={"by": "oncall"}, headers=tenant.headers
        ) as resp:
            assert resp.status == 200, await resp.text()

        await post_checkin(
            http, ingest, tenant, pid, datetime.now(UTC), ["saddle_anesthesia", "bowel_bladder_dysfunction"]
        )

        async def reopened() -> list[dict[str, Any]]:
            return [a for a in await red_flag_alerts(http, alerts, tenant, pid) if a["status"] == "open"]

        [second] = await poll(reopened)
        assert second["id"] != first["id"] and not second["retrospective"]
        assert {"saddle_anesthesia", "bowel_bladder_dysfunction"} <= set(second["red_flags"])
        await poll(lambda: asyncio.sleep(0, result=len(pages_for(rx, pid)) >= 2))
        page = pages_for(rx, pid)[-1]
        assert page["id"] == second["id"] and "saddle_anesthesia" in page["red_flags"]
        _, trajectory = await get_json(http, f"{scoring}/v1/patients/{pid}/trajectory", tenant.headers)
        assert trajectory["state"] == "red_flag"


async def test_new_flags_on_an_open_red_flag_alert_repage(services: Services, tenant: Tenant) -> None:
    """Defect 2: a different red flag while the alert is open re-pages it (new delivery, the new
    flags in the body, audit `repaged`); the same check-in posted twice pages once."""
    ingest, alerts = services.url("ingest"), services.url("alerts")
    pid = f"pt-repage-{uuid.uuid4().hex[:6]}"
    async with webhook_receiver() as rx, aiohttp.ClientSession() as http:
        async with http.post(f"{ingest}/v1/patients", json=patient(pid, rx.url), headers=tenant.headers) as resp:
            assert resp.status == 201, await resp.text()
        fever = await post_checkin(http, ingest, tenant, pid, datetime.now(UTC) - timedelta(hours=2), ["fever"])
        [alert] = await poll(lambda: red_flag_alerts(http, alerts, tenant, pid))
        await poll(lambda: asyncio.sleep(0, result=len(pages_for(rx, pid)) >= 1))
        async with http.post(
            f"{alerts}/v1/alerts/{alert['id']}/acknowledge", json={"by": "oncall"}, headers=tenant.headers
        ) as r:
            assert r.status == 200

        # The same check-in again: stored once, pages nobody.
        async with http.post(f"{ingest}/v1/checkins", json=fever, headers=tenant.headers) as resp:
            assert resp.status == 202
        await post_checkin(http, ingest, tenant, pid, datetime.now(UTC) - timedelta(hours=1), ["foot_drop"])

        async def repaged() -> bool:
            _, audit = await get_json(http, f"{alerts}/v1/alerts/{alert['id']}/audit", tenant.headers)
            return any(a["action"] == "repaged" for a in audit["items"])

        await poll(repaged)
        await poll(lambda: asyncio.sleep(0, result=len(pages_for(rx, pid)) >= 2))
        await asyncio.sleep(1.0)  # nothing more may arrive
        pages = pages_for(rx, pid)
        assert len(pages) == 2, [p["red_flags"] for p in pages]
        assert pages[1]["id"] == alert["id"] and set(pages[1]["red_flags"]) == {"fever", "foot_drop"}
        assert pages[1]["status"] == "open"  # a re-page asks for a new acknowledgement
        deliveries = {r["headers"]["NerveWatch-Delivery"] for r in rx.requests if is_page(r, pid)}
        assert len(deliveries) == 2
        [current] = await red_flag_alerts(http, alerts, tenant, pid)
        assert current["status"] == "open" and current["acknowledged_by"] is None
