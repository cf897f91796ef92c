"""`nervewatch soak`: a long run through the whole stack with the memory of every service sampled.

Against a private stack (as `nervewatch bench`): the three services run as child processes; check-ins
are posted to ingest in batches of `BATCH` by `CLIENTS` clients until `events` were accepted (one a day per
patient, days advancing, one in 20 a late second check-in: `_body`), flow
through scoring (trajectories) and alerts; the run ends when scoring has stored every check-in and
its outbox is empty (or at `timeout_s`). The RSS of every service is sampled every `interval_s`;
the report gives, per service, the RSS at the end of warm-up (the first `WARMUP_SHARE` of the
run's time: the consumers lag behind ingest), at the end and at its peak, and the growth after
warm-up. Blocking: runs to completion.
`make soak` runs 1 million events; it is not part of `make test`.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg

from nervewatch.settings import Settings
from tooling.bench import load
from tooling.bench.proc import close_env, open_env, rss_mib
from tooling.devstack import create_tenant_key

BATCH = 500
CLIENTS = 3
PATIENTS = 1000
WARMUP_SHARE = 0.2
RSS_TARGET_MIB = 200.0
FLAT_MIB = 20.0  # growth after warm-up below this counts as flat
SERVICES = ("ingest", "scoring", "alerts")
MARK_BEGIN = "<!-- soak: begin -->"
MARK_END = "<!-- soak: end -->"


@dataclass
class Samples:
    """RSS samples (elapsed seconds, accepted events so far, MiB per service)."""

    rows: list[tuple[float, int, dict[str, float]]] = field(default_factory=list)


def _body(patients: list[str], start: int, days: int, now: datetime) -> bytes:
    """Events `start`..`start + BATCH - 1` of the soak, as a batch body.

    Event j is patient j mod P's check-in of history day j div P (P patients, `days` days of history
    ending today): every patient checks in once a day, the days advancing through the run, as a
    platform posting its patients' daily check-ins does. One event in 20 is instead a second
    check-in of a day 1-7 days earlier, arriving late."""
    items = []
    for j in range(start, start + BATCH):
        day = j // len(patients)
        if j % 20 == 7:
            day = max(0, day - 1 - j % 7)
        recorded = now - timedelta(days=days - day) + timedelta(hours=7 + j % 13, minutes=j % 60)
        items.append(load.checkin_dict(patients[j % len(patients)], min(recorded, now), seq=j))
    return json.dumps({"items": items}).encode()


async def _sampler(pids: dict[str, int], samples: Samples, accepted: list[int], interval_s: float) -> None:
    started = time.monotonic()
    while True:
        rss = {name: rss_mib(pid) or 0.0 for name, pid in pids.items()}
        samples.rows.append((time.monotonic() - started, accepted[0], rss))
        print(
            f"  {samples.rows[-1][0]:7.0f} s  {accepted[0]:>9,} events  "
            + "  ".join(f"{n} {v:.0f} MiB" for n, v in rss.items()),
            flush=True,
        )
        await asyncio.sleep(interval_s)


def report(samples: Samples, events: int, elapsed_s: float, stored: int) -> str:
    """The markdown section of a soak run."""
    lines = [
        MARK_BEGIN,
        f"## Soak: {events:,} check-ins through the stack (`nervewatch soak --events {events}`)",
        "",
        f"{stored:,} check-ins stored by scoring in {elapsed_s:,.0f} s; RSS sampled every "
        f"{_interval(samples):.0f} s ({len(samples.rows)} samples). "
        f"Warm-up: the first {WARMUP_SHARE:.0%} of the run's time.",
        "",
        "| service | RSS after warm-up | RSS at the end | peak | growth after warm-up | target |",
        "|---|---|---|---|---|---|",
    ]
    total_s = samples.rows[-1][0] if samples.rows else 0.0
    warm_at = next((i for i, (t, _, _) in enumerate(samples.rows) if t >= WARMUP_SHARE * total_s), 0)
    for name in SERVICES:
        series = [rss[name] for _, _, rss in samples.rows if name in rss]
        if not series:
            continue
        warm, end, peak = series[min(warm_at, len(series) - 1)], series[-1], max(series)
        growth = end - warm
        ok = peak < RSS_TARGET_MIB and growth < FLAT_MIB
        lines.append(
            f"| {name} | {warm:.0f} MiB | {end:.0f} MiB | {peak:.0f} MiB | {growth:+.0f} MiB | "
            f"below {RSS_TARGET_MIB:.0f} MiB, flat (< {FLAT_MIB:.0f} MiB): {'met' if ok else 'MISSED'} |"
        )
    lines += ["", MARK_END]
    return "\n".join(lines) + "\n"


def _interval(samples: Samples) -> float:
    rows = samples.rows
    return (rows[-1][0] - rows[0][0]) / (len(rows) - 1) if len(rows) > 1 else 0.0


def write_section(path: Path, section: str) -> None:
    """Replace the soak section of `path` (between the markers), or append it."""
    text = path.read_text() if path.exists() else ""
    if MARK_BEGIN in text and MARK_END in text:
        head, rest = text.split(MARK_BEGIN, 1)
        text = head + section.rstrip("\n") + rest.split(MARK_END, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.write_text(text)


async def soak(settings: Settings, events: int, interval_s: float, timeout_s: float) -> tuple[str, bool]:
    env = await open_env(settings, settings.topic_partitions)
    try:
        env.start_services(SERVICES)
        pool = await asyncpg.create_pool(env.dsn, min_size=1, max_size=2)
        try:
            _, key = await create_tenant_key(env.dsn, load.TENANT, "Soak clinic")
            patients = [f"soak-{i:05d}" for i in range(PATIENTS)]
            await load.enrol(key, f"{env.url('ingest')}/v1/patients", patients)
            pids = {name: env.procs[name].pid for name in SERVICES}
            samples, accepted = Samples(), [0]
            sampler = asyncio.create_task(_sampler(pids, samples, accepted, interval_s))
            started = time.monotonic()
            url = f"{env.url('ingest')}/v1/checkins/batch"
            now = datetime.now(UTC)
            days = -(-events // PATIENTS)
            next_start = iter(range(0, events, BATCH))
            async with load.session_for(key, CLIENTS) as session:

                async def client() -> None:
                    res = load.HttpResult()
                    for start in next_start:
                        while not await load._post(session, url, _body(patients, start, days, now), res, 202):
                            env.check_services()
                            await asyncio.sleep(0.5)  # 503 under backpressure: retry the same batch
                        accepted[0] += BATCH

                await asyncio.gather(*(client() for _ in range(CLIENTS)))
            stored = 0
            while time.monotonic() - started < timeout_s:
                env.check_services()
                stored = int(await pool.fetchval("SELECT count(*) FROM scoring.checkins") or 0)
                pending = int(await pool.fetchval("SELECT count(*) FROM scoring.outbox") or 0)
                if stored >= events and pending == 0:
                    break
                await asyncio.sleep(2)
            elapsed = time.monotonic() - started
            await asyncio.sleep(min(interval_s, 10))  # one more sample after the pipeline drained
            sampler.cancel()
            text = report(samples, events, elapsed, stored)
            return text, stored >= events
        finally:
            await pool.close()
    finally:
        await close_env(env)


def run_soak(settings: Settings, *, events: int, interval_s: float, timeout_s: float, write: Path | None) -> int:
    """Run the soak, print its report (and write it into `write`); 1 when not every event was stored."""
    text, complete = asyncio.run(soak(settings, events, interval_s, timeout_s))
    print(text)
    if write is not None:
        write_section(write, text)
    return 0 if complete else 1
