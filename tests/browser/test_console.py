"""The care-coordinator console in a real Chromium against the real services (issue 13, item 3).

Each test signs in through the form, as a coordinator would; data is posted through the public
API. Waits are on page state (selectors, the console's test hook `window.__nwConsole`), never on
elapsed time.
"""

from __future__ import annotations

import secrets
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest

from tests.support import Services, Tenant, enrol, get_json, poll, post_red_flag, wait_alert

pytestmark = pytest.mark.integration

TEAM = [
    {
        "member_id": "coord-1",
        "role": "care_coordinator",
        "min_severity": "low",
        "notify": {"email": "coord-1@example.org"},
    }
]


async def sign_in(page: Any, console_url: str, key: str, member: str = "coord-1") -> None:
    await page.goto(f"{console_url}/console/")
    await page.fill("#signin-key", key)
    await page.fill("#signin-member", member)
    await page.click("#signin-form button[type=submit]")
    await page.wait_for_selector("#inbox-table")
    await page.wait_for_function("() => window.__nwConsole.inbox !== null")


async def wait_live(page: Any) -> None:
    await page.wait_for_function("() => window.__nwConsole.live === 'connected'")


async def issue_care_key(http: aiohttp.ClientSession, services: Services, tenant: Tenant) -> dict[str, Any]:
    """A new key of `tenant` with the `care` scope only (its `key` and `key_id`)."""
    url = f"{services.url('ingest')}/v1/admin/keys"
    async with http.post(url, json={"scopes": ["care"]}, headers=tenant.headers) as resp:
        assert resp.status == 201, await resp.text()
        issued: dict[str, Any] = await resp.json()
    return issued


def _pid(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(4)}"


async def test_sign_in_live_red_flag_acknowledge_and_audit(
    page: Any, browser: Any, console_url: str, services: Services, tenant: Tenant
) -> None:
    pid = _pid("br-live")
    other_context = await browser.new_context()  # a second coordinator's console
    other = await other_context.new_page()
    async with aiohttp.ClientSession() as http:
        await enrol(http, services.url("ingest"), tenant, pid, TEAM)
        await sign_in(page, console_url, tenant.key)
        assert await page.title() == "NerveWatch console — Inbox"
        await sign_in(other, console_url, tenant.key, "coord-2")
        await wait_live(page)
        await wait_live(other)
        await post_red_flag(http, services.url("ingest"), tenant, pid)
        alert = await wait_alert(http, services.url("alerts"), tenant, pid)

    row = page.locator(f'#inbox-table tr[data-alert-id="{alert["id"]}"]')
    await row.wait_for()  # arrived over the stream: the page was not reloaded
    assert await row.get_attribute("data-severity") == "critical"
    assert pid in await row.inner_text()
    banner = page.locator("#banner")
    await banner.wait_for(state="visible")
    assert "New critical alert" in await banner.inner_text()
    await page.wait_for_function(
        "() => document.getElementById('announce-assertive').textContent.startsWith('New critical alert')"
    )
    # No patient data in the URL, the title or storage.
    assert pid not in page.url and alert["id"] not in page.url
    storage = await page.evaluate("() => JSON.stringify([{...localStorage}, {...sessionStorage}, document.cookie])")
    assert tenant.key not in storage and pid not in storage

    await row.locator("td:nth-child(2) button").click()
    await page.wait_for_selector("#audit")
    assert await page.title() == "NerveWatch console — Alert"
    assert (
        "foot drop" in (await page.locator("#reasons").inner_text()).lower()
        or await page.locator("#reasons li").count() >= 1
    )
    await page.click("#ack-btn")
    await page.wait_for_selector('#audit tr[data-action="acknowledged"]')
    assert (await page.locator("#alert-status").inner_text()).strip() == "acknowledged"
    assert "coord-1" in await page.locator('#audit tr[data-action="acknowledged"]').inner_text()
    # The other open console shows the change live.
    await other.wait_for_selector(f'#inbox-table tr[data-alert-id="{alert["id"]}"][data-status="acknowledged"]')

    await page.fill("#resolve-note", "called the patient; seen in clinic today")
    await page.click("#resolve-btn")
    await page.wait_for_selector('#audit tr[data-action="resolved"]')
    assert (await page.locator("#alert-status").inner_text()).strip() == "resolved"
    # A resolved alert leaves every open inbox.
    await other.wait_for_selector(f'#inbox-table tr[data-alert-id="{alert["id"]}"]', state="detached")
    await other_context.close()


async def test_patient_plot_points_and_markers_match_the_posted_data(
    page: Any, console_url: str, services: Services, tenant: Tenant
) -> None:
    pid = _pid("br-plot")
    ingest = services.url("ingest")
    today = datetime.now(UTC).replace(hour=12, minute=0, second=0, microsecond=0)
    pains = [6, 5, 6, 4, 5, 3, 4, 3]
    posted: dict[str, int] = {}
    async with aiohttp.ClientSession() as http:
        await enrol(http, ingest, tenant, pid, TEAM)
        for i, pain in enumerate(pains):
            at = today - timedelta(days=len(pains) - i)
            body: dict[str, Any] = {
                "event_id": str(uuid.uuid4()),
                "patient_id": pid,
                "recorded_at": at.isoformat(),
                "pain": {"current": pain},
                "tingling": 3,
                "numbness": 2,
                "weakness": 1,
                "grip_strength_kg": 20.0 + i,
                "notes": f"note {i}",
            }
            if i in (2, 5):
                body["pt_session"] = {"ended_at": (at - timedelta(hours=2)).isoformat(), "intensity": "moderate"}
            async with http.post(f"{ingest}/v1/checkins", json=body, headers=tenant.headers) as resp:
                assert resp.status == 202, await resp.text()
            posted[at.date().isoformat()] = pain
        await post_red_flag(http, ingest, tenant, pid)
        alert = await wait_alert(http, services.url("alerts"), tenant, pid)
        traj_url = f"{services.url('scoring')}/v1/patients/{pid}/trajectory"

        async def scored() -> Any:
            status, body = await get_json(http, traj_url, tenant.headers)
            days = body.get("days", []) if status == 200 else []
            return body if sum(d["checkins"] for d in days) >= len(pains) + 1 else None

        trajectory = await poll(scored)
        care_key = (await issue_care_key(http, services, tenant))["key"]

    await sign_in(page, console_url, care_key)  # a coordinator's key: scope care only
    await page.click('.navbtn[data-view="patients"]')
    await page.fill("#p-q", pid)
    await page.locator(f'#patients-table tr[data-patient-id="{pid}"] button').click()
    await page.wait_for_selector("#patient-charts .chart")
    assert await page.title() == "NerveWatch console — Patient"
    plot = await page.evaluate("() => window.__nwConsole.plot")

    plotted = dict(zip([d["date"] for d in plot["days"]], plot["series"]["pain"], strict=True))
    for date, pain in posted.items():
        assert plotted[date] == pain, date
    api_days = {d["date"]: d for d in trajectory["days"]}
    assert set(plotted) == set(api_days)
    assert plot["series"]["grip_strength_kg"] == [api_days[d["date"]].get("grip_strength_kg") for d in plot["days"]]
    assert len(plot["x"]) == len(plot["days"]) == int(await page.get_attribute("#patient-charts", "data-points") or 0)

    markers = plot["markers"]
    alert_markers = [m for m in markers if m["type"] == "alert"]
    assert [m["id"] for m in alert_markers] == [alert["id"]]
    assert alert_markers[0]["severity"] == "critical"
    sessions = sorted(m["date"] for m in markers if m["type"] == "pt_session")
    assert sessions == sorted(d for d, day in api_days.items() if day["pt_session"])
    assert len(sessions) == 2

    # Notes are listed; zoom changes the shared time axis.
    await page.click("text=Show all") if await page.locator("text=Show all").count() else None
    assert "note 3" in await page.locator("#checkins").inner_text()
    await page.click('.zoom button[data-zoom="2w"]')
    zoom = await page.evaluate("() => window.__nwConsole.plot.zoom")
    assert zoom["choice"] == "2w" and zoom["max"] - zoom["min"] == 14 * 86400


async def test_another_tenants_key_sees_none_of_it(
    page: Any, console_url: str, services: Services, tenant: Tenant, other_tenant: Tenant
) -> None:
    pid = _pid("br-iso")
    async with aiohttp.ClientSession() as http:
        await enrol(http, services.url("ingest"), tenant, pid, TEAM)
        await post_red_flag(http, services.url("ingest"), tenant, pid)
        alert = await wait_alert(http, services.url("alerts"), tenant, pid)
        async with http.get(f"{console_url}/v1/patients/{pid}", headers=other_tenant.headers) as resp:
            assert resp.status == 404  # through the console's proxy, as the browser asks

    await sign_in(page, console_url, other_tenant.key, "coord-b")
    ids = await page.evaluate("() => window.__nwConsole.inbox.ids")
    assert alert["id"] not in ids
    assert pid not in await page.locator("main").inner_text()
    await page.click('.navbtn[data-view="patients"]')
    await page.wait_for_selector("#patients-table")
    await page.wait_for_function("() => !document.querySelector('[role=status]').textContent.startsWith('Loading')")
    assert await page.locator(f'#patients-table tr[data-patient-id="{pid}"]').count() == 0
    assert pid not in await page.locator("main").inner_text()


async def test_a_revoked_key_is_signed_out(page: Any, console_url: str, services: Services, tenant: Tenant) -> None:
    async with aiohttp.ClientSession() as http:
        issued = await issue_care_key(http, services, tenant)
        await sign_in(page, console_url, issued["key"])
        await wait_live(page)
        async with http.delete(
            f"{services.url('ingest')}/v1/admin/keys/{issued['key_id']}", headers=tenant.headers
        ) as resp:
            assert resp.status == 204

    await page.wait_for_selector("#signin", state="visible")
    assert "signed out" in (await page.locator("#signin-error").inner_text()).lower()
    assert await page.evaluate("() => window.__nwConsole.signedIn") is False
    assert await page.locator("#view").is_hidden()


async def test_wrong_key_is_refused_at_sign_in(page: Any, console_url: str) -> None:
    await page.goto(f"{console_url}/console/")
    await page.fill("#signin-key", "nw_not_a_key")
    await page.fill("#signin-member", "coord-1")
    await page.keyboard.press("Enter")
    await page.wait_for_selector("#signin-error", state="visible")
    assert "not valid" in await page.locator("#signin-error").inner_text()
