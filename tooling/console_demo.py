"""`nervewatch screenshots` and `nervewatch console-timings`: the console in headless Chromium
against a throw-away stack (embedded PostgreSQL and broker, or the server of `DATABASE_URL` /
`KAFKA_BOOTSTRAP_SERVERS`, in a fresh database), with data posted through the public API.

- screenshots: a small simulator cohort (its public `generate_cohort` / `replay`), then PNGs of the
  inbox and of one patient view;
- timings: 500 patients with an open red-flag alert each and one patient with 365 days of
  check-ins; prints the time, measured in the browser with `performance.now()`, from submitting
  the sign-in form until the inbox shows all 500 open alerts, and from opening the patient until
  its view has drawn every day.

Blocking: each command runs minutes at most and stops everything it started (services, stack),
also on error. It posts only to 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp

from tooling.browser import CHROMIUM_ARGS, find_chromium
from tooling.devstack import create_tenant_key, free_port, fresh_database, start_embedded
from tooling.supervisor import spawn_service, stop_all, wait_ready

SERVICES = ("ingest", "scoring", "alerts", "console")
MEMBER = "coord-demo"


@dataclass
class DemoStack:
    urls: dict[str, str]
    key: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}


@contextlib.contextmanager
def demo_stack(log_dir: Path) -> Iterator[DemoStack]:
    """Stack + the four services on free ports; everything is stopped on exit."""
    stack = start_embedded(
        log_dir / "stack",
        os.environ.get("DATABASE_URL"),
        os.environ.get("KAFKA_BOOTSTRAP_SERVERS"),
        pg_cleanup="delete",
    )
    procs = []
    try:
        dsn = asyncio.run(fresh_database(stack.database_url, "nwdemo"))
        _, key = asyncio.run(create_tenant_key(dsn, "demo-clinic", "Demo clinic"))
        ports = {s: free_port() for s in SERVICES}
        env = {k: v for k, v in os.environ.items() if not k.startswith("NERVEWATCH_")}
        env.update(
            DATABASE_URL=dsn,
            KAFKA_BOOTSTRAP_SERVERS=stack.bootstrap,
            NERVEWATCH_TOPIC_PARTITIONS="3",
            NERVEWATCH_DISPATCHER_POLL_S="0.2",
            NERVEWATCH_SHUTDOWN_TIMEOUT_S="5",
            NERVEWATCH_LOG_LEVEL="WARNING",
            NERVEWATCH_RATE_LIMIT_PER_KEY_RPS="0",
            **{f"NERVEWATCH_{s.upper()}_PORT": str(p) for s, p in ports.items()},
        )
        for s in SERVICES:
            procs.append(spawn_service(s, env, log_dir / f"{s}.log"))
        urls = {s: f"http://127.0.0.1:{p}" for s, p in ports.items()}
        wait_ready([f"{u}/readyz" for u in urls.values()], 120)
        yield DemoStack(urls, key)
    finally:
        stop_all(procs, 15)
        stack.stop()


@contextlib.asynccontextmanager
async def chromium_page(path: str, width: int = 1366, height: int = 900) -> AsyncIterator[Any]:
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=path, headless=True, args=CHROMIUM_ARGS)
        try:
            context = await browser.new_context(viewport={"width": width, "height": height})
            page = await context.new_page()
            page.set_default_timeout(120_000)
            yield page
        finally:
            await browser.close()


async def sign_in(page: Any, console: str, key: str) -> None:
    await page.goto(f"{console}/console/")
    await page.fill("#signin-key", key)
    await page.fill("#signin-member", MEMBER)
    await page.click("#signin-form button[type=submit]")


async def _open_alerts(http: aiohttp.ClientSession, stack: DemoStack) -> int:
    async with http.get(
        f"{stack.urls['alerts']}/v1/alerts/counts?group_by=severity&status=open", headers=stack.headers
    ) as r:
        body = await r.json()
    return sum(sum(c["severity"].values()) for c in body.get("counts", []))


async def _settle(
    http: aiohttp.ClientSession, stack: DemoStack, want: int | None = None, timeout_s: float = 180
) -> int:
    """Wait until the open-alert count reaches `want` (or stops changing for 5 polls); returns it."""
    end = time.monotonic() + timeout_s
    last, same = -1, 0
    while time.monotonic() < end:
        n = await _open_alerts(http, stack)
        if want is not None and n >= want:
            return n
        same = same + 1 if n == last else 0
        if want is None and same >= 5 and n > 0:
            return n
        last = n
        await asyncio.sleep(1)
    return last


# --- screenshots ------------------------------------------------------------------------------


def _chromium() -> str:
    path, reason = find_chromium()
    if path is None:
        raise SystemExit(f"no Chromium: {reason}")
    return path


async def _screenshots(stack: DemoStack, chromium: str, out: Path, per_archetype: int, seed: int) -> list[Path]:
    from simulator.archetypes import generate_cohort
    from simulator.client import replay

    archetypes = [
        "steady_recovery",
        "regression",
        "red_flag",
        "persistent_flare",
        "plateau",
        "activity_decline",
        "disengagement",
        "spreading_numbness",
        "typical_ctr",
    ]
    cohort = generate_cohort(per_archetype, seed, datetime.now(UTC), archetypes)
    async with aiohttp.ClientSession() as http:
        # The cohort's history is a backfill from before enrolment: count it, so the billing panel has figures.
        settings = {"count_data_before_enrolment": True}
        await _put(http, f"{stack.urls['scoring']}/v1/admin/billing-settings", settings, stack.headers)
    await replay(cohort, stack.urls["ingest"], stack.key, progress=False)
    async with aiohttp.ClientSession() as http:
        await _settle(http, stack)
    shots = [out / "console-inbox.png", out / "console-patient.png"]
    async with chromium_page(chromium) as page:
        await sign_in(page, stack.urls["console"], stack.key)
        await page.wait_for_selector("#inbox-table tbody tr")
        await page.screenshot(path=str(shots[0]))
        row = page.locator('#inbox-table tr[data-severity="high"] td:nth-child(3) button').first
        if not await row.count():
            row = page.locator("#inbox-table tbody tr td:nth-child(3) button").first
        await row.click()
        await page.wait_for_selector("#patient-charts .chart")
        await page.click('.zoom button[data-zoom="all"]')
        await page.screenshot(path=str(shots[1]), full_page=True, clip={"x": 0, "y": 0, "width": 1366, "height": 1400})
    return shots


def screenshots(out: Path, per_archetype: int = 1, seed: int = 11) -> int:
    """Entry of `nervewatch screenshots`: writes console-inbox.png and console-patient.png to `out`."""
    chromium = _chromium()
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="nwshots-") as tmp, demo_stack(Path(tmp)) as stack:
        shots = asyncio.run(_screenshots(stack, chromium, out, per_archetype, seed))
    for s in shots:
        print(f"wrote {s}")
    return 0


# --- timings ----------------------------------------------------------------------------------


def _checkin(pid: str, at: datetime, **extra: Any) -> dict[str, Any]:
    return {"event_id": str(uuid.uuid4()), "patient_id": pid, "recorded_at": at.isoformat(), **extra}


async def _put(http: aiohttp.ClientSession, url: str, body: Any, headers: dict[str, str]) -> None:
    async with http.put(url, json=body, headers=headers) as r:
        if r.status >= 300:
            raise RuntimeError(f"PUT {url}: {r.status}")


async def _post(http: aiohttp.ClientSession, url: str, body: Any, headers: dict[str, str]) -> None:
    for _ in range(20):
        async with http.post(url, json=body, headers=headers) as r:
            if r.status in (200, 201, 202):
                return
            if r.status != 503:
                raise RuntimeError(f"POST {url.rsplit('/', 1)[-1]}: {r.status}")
        await asyncio.sleep(0.5)
    raise RuntimeError("ingest stayed unavailable")


async def _seed_timings(stack: DemoStack, alerts: int, days: int) -> str:
    ingest = stack.urls["ingest"]
    tag = secrets.token_hex(3)
    now = datetime.now(UTC)
    team = [
        {
            "member_id": MEMBER,
            "role": "care_coordinator",
            "min_severity": "critical",
            "notify": {"email": "demo@example.org"},
        }
    ]
    base = {"condition": "carpal_tunnel", "treatment": "conservative", "timezone": "UTC", "care_team": team}
    sem = asyncio.Semaphore(16)
    async with aiohttp.ClientSession() as http:

        async def enrol(pid: str, onset: date | None = None) -> None:
            async with sem:
                body = {"patient_id": pid, **base, **({"onset_date": onset.isoformat()} if onset else {})}
                await _post(http, f"{ingest}/v1/patients", body, stack.headers)

        pids = [f"load-{tag}-{i:04d}" for i in range(alerts)]
        await asyncio.gather(*(enrol(p) for p in pids))
        flags = [_checkin(p, now - timedelta(minutes=5), pain={"current": 8}, red_flags=["foot_drop"]) for p in pids]
        for i in range(0, len(flags), 500):
            await _post(http, f"{ingest}/v1/checkins/batch", {"items": flags[i : i + 500]}, stack.headers)
        long_pid = f"year-{tag}"
        first = (now - timedelta(days=days)).replace(hour=12, minute=0, second=0, microsecond=0)
        await enrol(long_pid, first.date() - timedelta(days=14))
        items = [
            _checkin(
                long_pid,
                first + timedelta(days=d),
                pain={"current": 3 + (d * 7) % 5},
                tingling=(d * 3) % 7,
                numbness=(d * 5) % 6,
                weakness=(d * 2) % 4,
                grip_strength_kg=15 + (d % 20) / 2,
                function={"instrument": "bctq_sss", "score": 1 + (d % 30) / 10},
                **(
                    {
                        "pt_session": {
                            "ended_at": (first + timedelta(days=d, hours=-3)).isoformat(),
                            "intensity": "moderate",
                        }
                    }
                    if d % 7 == 0
                    else {}
                ),
            )
            for d in range(days)
        ]
        for i in range(0, len(items), 500):
            await _post(http, f"{ingest}/v1/checkins/batch", {"items": items[i : i + 500]}, stack.headers)
        await _settle(http, stack, want=alerts)
        traj = f"{stack.urls['scoring']}/v1/patients/{long_pid}/trajectory?since={first.date().isoformat()}"
        end = time.monotonic() + 180
        while time.monotonic() < end:
            async with http.get(traj, headers=stack.headers) as r:
                body = await r.json()
            if sum(d.get("checkins", 0) for d in body.get("days", [])) >= days or len(body.get("days", [])) >= days:
                break
            await asyncio.sleep(1)
    return long_pid


async def _measure(stack: DemoStack, chromium: str, long_pid: str, alerts: int) -> dict[str, float]:
    async with chromium_page(chromium) as page:
        await sign_in(page, stack.urls["console"], stack.key)
        await page.wait_for_function(f"() => (window.__nwConsole.inbox || {{}}).rows >= {alerts}")
        inbox_ms = await page.evaluate(
            "() => performance.getEntriesByName('nw:inbox-rendered').slice(-1)[0].startTime"
            " - performance.getEntriesByName('nw:signin')[0].startTime"
        )
        rows = await page.evaluate("() => window.__nwConsole.inbox.rows")
        await page.click('.navbtn[data-view="patients"]')
        await page.fill("#p-q", long_pid)
        await page.evaluate("() => performance.mark('nw:patient-open')")
        await page.locator(f'#patients-table tr[data-patient-id="{long_pid}"] button').click()
        await page.wait_for_selector("#patient-charts .chart")
        patient_ms = await page.evaluate(
            "() => performance.getEntriesByName('nw:patient-rendered').slice(-1)[0].startTime"
            " - performance.getEntriesByName('nw:patient-open').slice(-1)[0].startTime"
        )
        days = await page.evaluate("() => window.__nwConsole.plot.days.length")
        scored = await page.evaluate("() => window.__nwConsole.plot.days.filter((d) => d.source !== 'checkins').length")
    return {
        "inbox_ms": inbox_ms,
        "inbox_rows": rows,
        "patient_ms": patient_ms,
        "patient_days": days,
        "scored_days": scored,
    }


def console_timings(alerts: int = 500, days: int = 365) -> int:
    """Entry of `nervewatch console-timings`: prints the two browser-measured figures."""
    chromium = _chromium()
    with tempfile.TemporaryDirectory(prefix="nwtime-") as tmp, demo_stack(Path(tmp)) as stack:
        long_pid = asyncio.run(_seed_timings(stack, alerts, days))
        figures = asyncio.run(_measure(stack, chromium, long_pid, alerts))
    print(
        f"console: inbox showing {figures['inbox_rows']:.0f} open alerts {figures['inbox_ms']:.0f} ms after sign-in; "
        f"patient view drawn with {figures['patient_days']:.0f} days "
        f"({figures['scored_days']:.0f} from the trajectory) "
        f"{figures['patient_ms']:.0f} ms after opening it "
        "(performance.now in headless Chromium)"
    )
    if figures["patient_days"] < days:
        print(f"note: the trajectory answered {figures['patient_days']:.0f} of {days} days", file=sys.stderr)
    return 0
