"""`nervewatch bench`: throughput and latency of the whole pipeline on this machine, next to raw ceilings.

Everything runs against a private stack: embedded PostgreSQL and broker (or the configured ones,
with a fresh database), the three services as child processes on free ports. Phases, in order:
1. ceilings: a plain aiokafka producer and consumer on a private topic, a PostgreSQL COPY; then
   the cost of ingest's event-digest statement (`INSERT ... ON CONFLICT`, new and reposted events)
   next to a COPY of the same rows;
2. ingest alone (scoring and alerts not running yet): single check-ins closed loop (max
   throughput) and open loop (fixed offered rate, latency from the scheduled send time), batches,
   FHIR Bundles (ratio to the JSON batches);
3. scoring and alerts start with the scoring group moved past the ingest phases' check-ins;
   end to end: red-flag check-ins for distinct patients at fixed rates, POST to alert row;
4. scoring consumer: check-in events published straight to the topic, until the scoring group has
   committed past them; the same on patients with 30/180/720 days of prior history (seeded through
   the scoring shell in this process) and with 10% of the events 1-14 days late; scoring RSS;
5. alerts consumer: trajectory events published straight to the topic, until all are committed;
6. memory of each service;
7. `rescore` over stored observations (seeded with COPY; a dry and a real run, in the CLI process).
`--smoke` runs tiny phases and never fails on speed; only a harness error gives a non-zero exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import secrets
import sys
import time
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import asyncpg
from aiohttp import web
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from nervewatch.settings import Settings
from schemas.events import Topics
from tooling.bench import fhir as bench_fhir
from tooling.bench import load
from tooling.bench import rescore as bench_rescore
from tooling.bench import scoring as bench_scoring
from tooling.bench.proc import BenchEnv, close_env, cpu_seconds, machine_description, open_env, rss_mib
from tooling.devstack import create_tenant_key, free_port

KEEP_MARKER = "<!-- bench: text below this line is kept when the report is rewritten -->"


@dataclass(frozen=True)
class Sizes:
    raw_messages: int
    copy_rows: int
    warmup_s: float
    phase_s: float
    concurrency: int
    open_rate: float
    batch_size: int
    batch_concurrency: int
    e2e_rates: tuple[float, ...]
    e2e_s: float
    load_patients: int
    scoring_events: int
    alerts_events: int
    consumer_timeout_s: float
    webhook_rate: float
    webhook_s: float
    history_patients: int  # scoring with prior history: patients per row
    history_days: tuple[int, ...]  # days of prior history per patient, one row each (the first: in-order base)
    history_new_days: int  # measured new days per patient on top of the history
    rescore_patients: int = 5000
    rescore_days: int = 200


FULL = Sizes(
    raw_messages=100_000,
    copy_rows=100_000,
    warmup_s=2.0,
    phase_s=10.0,
    concurrency=64,
    open_rate=1000.0,
    batch_size=500,
    batch_concurrency=3,  # 3 x ~300 KB bodies fit in ingest's default 1 MiB in-flight admission
    e2e_rates=(200.0, 1000.0),
    e2e_s=5.0,
    load_patients=300,
    scoring_events=20_000,
    alerts_events=20_000,
    consumer_timeout_s=240.0,
    webhook_rate=500.0,
    webhook_s=5.0,
    history_patients=60,
    history_days=(30, 180, 720),
    history_new_days=100,
)
SMOKE = Sizes(
    raw_messages=2000,
    copy_rows=2000,
    warmup_s=0.3,
    phase_s=1.5,
    concurrency=16,
    open_rate=200.0,
    batch_size=100,
    batch_concurrency=2,
    e2e_rates=(50.0,),
    e2e_s=1.0,
    load_patients=40,
    scoring_events=400,
    alerts_events=400,
    consumer_timeout_s=60.0,
    webhook_rate=50.0,
    webhook_s=1.0,
    history_patients=4,
    history_days=(3, 6, 12),
    history_new_days=4,
    rescore_patients=20,
    rescore_days=40,
)


@dataclass
class Row:
    name: str
    result: str
    ceiling: str = ""
    ratio: str = ""
    target: str = ""
    status: str = ""
    note: str = ""


@dataclass
class Report:
    smoke: bool
    command: str
    started: datetime = field(default_factory=lambda: datetime.now(UTC))
    machine: list[tuple[str, str]] = field(default_factory=list)
    rows: list[Row] = field(default_factory=list)
    cpu: list[tuple[str, dict[str, float]]] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    duration_s: float = 0.0

    def add(self, row: Row) -> None:
        if self.smoke and row.status:
            row.status = "(smoke)"  # a smoke run checks the harness, never the speed
        self.rows.append(row)
        print(f"  {row.name}: {row.result}" + (f"  [{row.status}]" if row.status else ""), flush=True)

    def markdown(self) -> str:
        lines = [
            "# NerveWatch performance" + (" (smoke run: sizes too small to mean anything)" if self.smoke else ""),
            "",
            f"Measured {self.started:%Y-%m-%d %H:%M} UTC with `{self.command}` (took {self.duration_s:.0f} s).",
            "",
            "| Machine | |",
            "|---|---|",
            *(f"| {k} | {v} |" for k, v in self.machine),
            "",
            "## Results",
            "",
            "| Measurement | Result | Ceiling (same run) | Ratio | Target | Status | Notes |",
            "|---|---|---|---|---|---|---|",
            *(
                f"| {r.name} | {r.result} | {r.ceiling} | {r.ratio} | {r.target} | {r.status} | {r.note} |"
                for r in self.rows
            ),
        ]
        if self.cpu:
            parts = sorted({p for _, usage in self.cpu for p in usage})
            lines += [
                "",
                "CPU used per phase, in % of one core (wall-clock average over the phase):",
                "",
                "| Phase | " + " | ".join(parts) + " |",
                "|---|" + "---|" * len(parts),
                *(f"| {phase} | " + " | ".join(_pct(usage.get(p)) for p in parts) + " |" for phase, usage in self.cpu),
            ]
        if self.failures:
            lines += ["", "## Harness errors", "", *(f"- {f}" for f in self.failures)]
        return "\n".join(lines) + "\n"

    def table(self) -> str:
        header = ("Measurement", "Result", "Ceiling", "Ratio", "Target", "Status")
        body = [(r.name, r.result, r.ceiling, r.ratio, r.target, r.status) for r in self.rows]
        widths = [max(len(x[i]) for x in [header, *body]) for i in range(len(header))]
        fmt = "  ".join(f"{{:{w}}}" for w in widths)
        return "\n".join([fmt.format(*header), fmt.format(*("-" * w for w in widths)), *(fmt.format(*b) for b in body)])


def _pct(v: float | None) -> str:
    return "" if v is None else f"{v:.0f}"


def _rate(v: float, unit: str) -> str:
    return f"{v:,.0f} {unit}" if math.isfinite(v) else "n/a"


def _ratio(v: float, ceiling: float) -> str:
    if not (ceiling > 0 and math.isfinite(v) and math.isfinite(ceiling)):
        return ""
    r = v / ceiling
    return f"{r:.0%}" if r >= 0.1 else f"{r:.1%}" if r >= 0.001 else f"{r:.2%}"


def _ms(v: float) -> str:
    return f"{v * 1000:,.1f} ms" if math.isfinite(v) else "n/a"


def _status(ok: bool) -> str:
    return "met" if ok else "MISSED"


class Bench:
    def __init__(self, settings: Settings, sizes: Sizes, report: Report) -> None:
        self.settings = settings
        self.sizes = sizes
        self.report = report
        self.env: BenchEnv | None = None
        self.watch: load.GroupWatch | None = None
        self.key = ""
        self.produce_ceiling = float("nan")
        self.consume_ceiling = float("nan")
        self.copy_ceiling = float("nan")
        self.digest_us = float("nan")  # µs per new event of the digest statement
        self.batch_rate = float("nan")
        self.history_rates: dict[int, float] = {}
        self.scoring_rss_start: float | None = None
        self.scoring_events_done = 0
        self.load_patients = [f"pt-{i:05d}" for i in range(sizes.load_patients)]
        self.webhook_port = free_port()
        self.webhook_url = f"http://127.0.0.1:{self.webhook_port}/hook"
        self.webhook_patients = [f"wh-{i:06d}" for i in range(int(sizes.webhook_rate * sizes.webhook_s))]
        # Red-flag patients of each end-to-end row, keyed by _e2e_key(rate, scoring processes).
        runs = [(rate, 1) for rate in sizes.e2e_rates] + [(max(sizes.e2e_rates), 2)]
        self.e2e_patients = {
            _e2e_key(rate, n): [f"rf-{_e2e_key(rate, n)}-{i:06d}" for i in range(int(rate * sizes.e2e_s))]
            for rate, n in runs
        }

    # -- helpers ---------------------------------------------------------------------------------

    @property
    def e(self) -> BenchEnv:
        assert self.env is not None
        return self.env

    @property
    def w(self) -> load.GroupWatch:
        assert self.watch is not None
        return self.watch

    async def phase(self, name: str, fn: Callable[[], Awaitable[None]]) -> None:
        """Run one phase, recording CPU per component; a failure is reported and the next phase runs."""
        print(f"[bench] {name}", flush=True)
        pids = self.e.pids()
        before = {k: cpu_seconds(v, reaped=k == "postgres") for k, v in pids.items()}
        started = time.monotonic()
        try:
            await fn()
        except Exception as exc:
            self.report.failures.append(f"{name}: {type(exc).__name__}: {exc}")
            traceback.print_exc()
        elapsed = max(time.monotonic() - started, 1e-9)
        after = {k: cpu_seconds(v, reaped=k == "postgres") for k, v in self.e.pids().items()}
        self.report.cpu.append(
            (name, {k: 100 * (after[k] - before[k]) / elapsed for k in before if k in after and before[k] <= after[k]})
        )
        self.e.check_services()

    async def _tenant(self) -> None:
        _, self.key = await create_tenant_key(self.e.dsn, load.TENANT, "Benchmark clinic")

    async def _create_topic(self, name: str) -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=self.e.stack.bootstrap)
        await admin.start()
        try:
            await admin.create_topics([NewTopic(name, self.e.partitions, 1)])
        finally:
            await admin.close()

    async def _quiesce(self, timeout_s: float) -> bool:
        scoring = await self.w.wait_caught_up(
            "nervewatch-scoring", [Topics.patients, Topics.checkins, Topics.activity], timeout_s
        )
        alerts = await self.w.wait_caught_up("nervewatch-alerts", [Topics.patients, Topics.trajectories], timeout_s)
        return scoring and alerts

    # -- phases ----------------------------------------------------------------------------------

    async def ceilings(self) -> None:
        s = self.sizes
        topic = f"nervewatch.bench.raw.{secrets.token_hex(3)}"
        await self._create_topic(topic)
        self.produce_ceiling = await load.produce_ceiling(
            self.e.stack.bootstrap, self.settings.kafka_linger_ms, topic, s.raw_messages
        )
        self.report.add(
            Row("Ceiling: plain producer (acks=all), check-in events", _rate(self.produce_ceiling, "msg/s"))
        )
        self.consume_ceiling = await load.consume_ceiling(self.e.stack.bootstrap, topic, s.raw_messages + 1000)
        self.report.add(Row("Ceiling: plain consumer, same messages", _rate(self.consume_ceiling, "msg/s")))
        hop = await load.hop_latency(
            self.e.stack.bootstrap,
            self.settings.kafka_linger_ms,
            self.settings.kafka_fetch_max_wait_ms,
            topic,
            100,
            s.e2e_s,
        )
        self.report.add(
            Row(
                "Floor: one broker hop (send to plain consumer) at 100 msg/s, p50 / p99",
                f"{_ms(load.percentile(hop, 50))} / {_ms(load.percentile(hop, 99))}",
                note=f"{len(hop)} messages; the end-to-end path has two hops (check-ins, trajectories)",
            )
        )
        copy = self.copy_ceiling = await load.copy_ceiling(self.e.dsn, s.copy_rows)
        self.report.add(Row("Ceiling: PostgreSQL COPY, check-in-like rows", _rate(copy, "rows/s")))

    async def digest_check(self) -> None:
        """The statement every ingest request runs to refuse conflicting reposts, against a COPY."""
        s = self.sizes
        cost = await load.digest_cost(self.e.dsn, s.copy_rows, s.batch_size)
        self.digest_us = 1e6 / cost.new_per_s
        self.report.add(
            Row(
                f"Event digest check: INSERT ... ON CONFLICT, {s.batch_size} new events per statement",
                _rate(cost.new_per_s, "events/s"),
                _rate(cost.copy_per_s, "rows/s"),
                _ratio(cost.new_per_s, cost.copy_per_s),
                note=f"{self.digest_us:.1f} µs/event new, {1e6 / cost.repost_per_s:.1f} µs/event when all are "
                f"reposts ({cost.repost_per_s:,.0f} events/s); ceiling: COPY of the same rows "
                f"({1e6 / cost.copy_per_s:.1f} µs/row); {s.copy_rows:,} events",
            )
        )

    async def setup_ingest(self) -> None:
        self.e.start_services(("ingest",))
        await self._tenant()
        everyone = self.load_patients + [p for ps in self.e2e_patients.values() for p in ps]
        started = time.monotonic()
        await load.enrol(self.key, f"{self.e.url('ingest')}/v1/patients", everyone)
        await load.enrol(
            self.key, f"{self.e.url('ingest')}/v1/patients", self.webhook_patients, webhook_url=self.webhook_url
        )
        print(f"  enrolled {len(everyone)} patients in {time.monotonic() - started:.1f} s", flush=True)

    async def ingest_closed(self) -> None:
        s, pts = self.sizes, self.load_patients
        res = await load.closed_loop(
            self.key,
            f"{self.e.url('ingest')}/v1/checkins",
            lambda i: load.checkin_body(pts[i % len(pts)], seq=i),
            concurrency=s.concurrency,
            duration_s=s.phase_s,
            warmup_s=s.warmup_s,
        )
        rate = res.ok / res.elapsed
        self.report.add(
            Row(
                f"Ingest single check-in, closed loop ({s.concurrency} clients)",
                _rate(rate, "req/s"),
                _rate(self.produce_ceiling, "msg/s"),
                _ratio(rate, self.produce_ceiling),
                ">= 3,000 req/s",
                _status(rate >= 3000),
                f"p50 {_ms(load.percentile(res.latencies, 50))}, p99 {_ms(load.percentile(res.latencies, 99))}; "
                f"errors: {res.error_text()}",
            )
        )

    async def ingest_open(self) -> None:
        s, pts = self.sizes, self.load_patients
        res = await load.open_loop(
            self.key,
            f"{self.e.url('ingest')}/v1/checkins",
            lambda i: load.checkin_body(pts[i % len(pts)], seq=i),
            rate=s.open_rate,
            duration_s=s.phase_s,
        )
        p50, p99 = load.percentile(res.latencies, 50), load.percentile(res.latencies, 99)
        self.report.add(
            Row(
                f"Ingest single check-in, open loop at {s.open_rate:,.0f} req/s, p50 / p99",
                f"{_ms(p50)} / {_ms(p99)}",
                target="p99 < 25 ms at 1,000 req/s",
                status=_status(p99 < 0.025 and s.open_rate >= 1000),
                note=f"{res.ok} of {res.sent} accepted, achieved {res.ok / res.elapsed:,.0f} req/s, "
                f"sender max behind {_ms(res.max_lag_s)}, max {_ms(load.percentile(res.latencies, 100))}; "
                f"errors: {res.error_text()}",
            )
        )

    async def ingest_batch(self) -> None:
        s, pts = self.sizes, self.load_patients
        # Bodies built up front (distinct event ids; reused only after the pool is exhausted) so that
        # the client, which shares the CPUs with the services, does not spend the phase encoding JSON.
        pool = 40 if self.report.smoke else 400
        bodies = [load.batch_body(pts, s.batch_size, i * s.batch_size) for i in range(pool)]
        res = await load.closed_loop(
            self.key,
            f"{self.e.url('ingest')}/v1/checkins/batch",
            lambda i: bodies[i % pool],
            concurrency=s.batch_concurrency,
            duration_s=s.phase_s,
            warmup_s=s.warmup_s,
        )
        rate = res.ok * s.batch_size / res.elapsed
        self.batch_rate = rate
        self.report.add(
            Row(
                f"Ingest batch of {s.batch_size}, closed loop ({s.batch_concurrency} clients), digest check included",
                _rate(rate, "events/s"),
                _rate(self.produce_ceiling, "msg/s"),
                _ratio(rate, self.produce_ceiling),
                ">= 50% of producer",
                _status(rate >= 0.5 * self.produce_ceiling),
                f"{res.ok} requests, p50 {_ms(load.percentile(res.latencies, 50))} per request; the digest "
                f"statement costs {self.digest_us:.1f} µs of the {1e6 / rate if rate > 0 else float('nan'):.1f} µs "
                f"per event; errors: {res.error_text()}",
            )
        )

    async def ingest_fhir_bundle(self) -> None:
        """FHIR `batch` Bundles of check-in Observations, as a ratio to the JSON batch path of this run."""
        s, pts = self.sizes, self.load_patients
        pool = 20 if self.report.smoke else 200
        bodies = [bench_fhir.bundle_body(pts, s.batch_size, i * s.batch_size) for i in range(pool)]
        # as many clients as ingest's in-flight byte budget admits at once (the JSON row's rule)
        clients = max(1, min(s.batch_concurrency, self.settings.ingest_max_in_flight_bytes // len(bodies[0])))
        res = await load.closed_loop(
            self.key,
            f"{self.e.url('ingest')}/fhir/r4",
            lambda i: bodies[i % pool],
            concurrency=clients,
            duration_s=s.phase_s,
            warmup_s=s.warmup_s,
        )
        rate = res.ok * s.batch_size / res.elapsed
        self.report.add(
            Row(
                f"Ingest FHIR Bundle of {s.batch_size} Observations, closed loop ({clients} clients)",
                _rate(rate, "events/s"),
                _rate(self.batch_rate, "events/s"),
                _ratio(rate, self.batch_rate),
                ">= 50% of JSON batch",
                _status(rate >= 0.5 * self.batch_rate),
                f"{res.ok} requests of {len(bodies[0]) // 1024} KiB, p50 {_ms(load.percentile(res.latencies, 50))} "
                f"per request; errors: {res.error_text()}",
            )
        )

    async def start_consumers(self) -> None:
        # The ingest phases' check-ins would be a backlog of tens of thousands of events: skip them.
        await self.w.skip_to_end("nervewatch-scoring", Topics.checkins)
        self.e.start_services(("scoring", "alerts"))
        if not await self._quiesce(self.sizes.consumer_timeout_s):
            raise TimeoutError("scoring/alerts did not catch up with the enrolments")

    async def end_to_end(self, rate: float, scoring_processes: int = 1) -> None:
        s = self.sizes
        patients = self.e2e_patients[_e2e_key(rate, scoring_processes)]
        procs = f", {scoring_processes} scoring processes" if scoring_processes > 1 else ""
        sent_at: dict[str, float] = {}
        res = await load.open_loop(
            self.key,
            f"{self.e.url('ingest')}/v1/checkins",
            lambda i: load.checkin_body(patients[i], red_flag=True),
            rate=rate,
            duration_s=s.e2e_s,
            on_scheduled=lambda i, wall: sent_at.__setitem__(patients[i], wall),
        )
        conn = await asyncpg.connect(self.e.dsn)
        rows: list[asyncpg.Record] = []
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                rows = await conn.fetch(
                    """SELECT patient_id, opened_at FROM alerts.alerts
                       WHERE tenant_id = $1 AND kind = 'red_flag' AND patient_id = ANY($2::text[])""",
                    load.TENANT,
                    patients,
                )
                if len(rows) >= res.ok:
                    break
                await asyncio.sleep(0.2)
        finally:
            await conn.close()
        lat = [r["opened_at"].timestamp() - sent_at[r["patient_id"]] for r in rows]
        p50, p99 = load.percentile(lat, 50), load.percentile(lat, 99)
        self.report.add(
            Row(
                f"End to end at {rate:,.0f}/s{procs}: check-in POST to alert row, p50 / p99",
                f"{_ms(p50)} / {_ms(p99)}",
                target="p99 < 500 ms at 1,000/s",
                status=_status(p99 < 0.5 and len(rows) == len(patients)) if rate >= 1000 else "",
                note=f"{len(rows)} alerts for {len(patients)} red-flag check-ins ({res.ok} accepted), "
                f"POST p99 {_ms(load.percentile(res.latencies, 99))}, max {_ms(load.percentile(lat, 100))}; "
                f"errors: {res.error_text()}",
            )
        )
        if len(rows) < res.ok:  # an accepted red flag without its alert; a shed (503) one was never accepted
            self.report.failures.append(
                f"end to end at {rate:,.0f}/s: only {len(rows)} alerts for {res.ok} accepted red flags"
            )
        await self._quiesce(s.consumer_timeout_s)

    async def webhook_latency(self) -> None:
        """Trajectory event on the log to the first webhook attempt, red-flag events at a fixed rate."""
        s = self.sizes
        arrived: dict[str, float] = {}
        all_arrived = asyncio.Event()

        async def hook(request: web.Request) -> web.Response:
            body = await request.json()
            arrived.setdefault(body["patient_id"], time.time())
            if len(arrived) >= len(self.webhook_patients):
                all_arrived.set()
            return web.Response(status=204)

        app = web.Application()
        app.router.add_post("/hook", hook)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", self.webhook_port).start()
        prod = load.producer(self.e.stack.bootstrap, self.settings.kafka_linger_ms)
        await prod.start()
        scheduled: dict[str, float] = {}
        try:
            t0 = time.monotonic()
            wall0 = time.time()
            pending = []
            for i, patient in enumerate(self.webhook_patients):
                due = t0 + i / s.webhook_rate
                delay = due - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                scheduled[patient] = wall0 + i / s.webhook_rate
                key, value = load.red_flag_trajectory(patient, datetime.now(UTC))
                pending.append(await prod.send(Topics.trajectories, key=key, value=value))
            await asyncio.gather(*pending)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(all_arrived.wait(), timeout=60)
        finally:
            await prod.stop()
            await runner.cleanup()
        lat = [arrived[p] - scheduled[p] for p in scheduled if p in arrived]
        p50, p99 = load.percentile(lat, 50), load.percentile(lat, 99)
        self.report.add(
            Row(
                f"Trajectory event to first webhook attempt at {s.webhook_rate:,.0f}/s, p50 / p99",
                f"{_ms(p50)} / {_ms(p99)}",
                target="p99 < 250 ms at 500/s",
                status=_status(p99 < 0.25 and len(lat) == len(scheduled)) if s.webhook_rate >= 500 else "",
                note=f"{len(lat)} of {len(scheduled)} webhooks received; latency from the scheduled publish time",
            )
        )
        if len(lat) < len(scheduled):
            self.report.failures.append(f"webhook latency: only {len(lat)} of {len(scheduled)} webhooks arrived")
        await self._quiesce(s.consumer_timeout_s)

    async def _consume_checkins(self, records: list[tuple[bytes, bytes]]) -> tuple[int, float, float]:
        """Publish check-in events straight to the topic and wait until the scoring group's committed
        offsets have advanced past as many records (stored, scored and published; polling them costs
        the database nothing, and it does not rely on the broker's end offsets, which the embedded
        broker may report behind the committed ones). The group must be caught up before.
        Returns (events done, seconds, seconds spent publishing)."""
        s = self.sizes
        tps = list(await self.w.end_offsets([Topics.checkins]))
        before = await self.w.committed("nervewatch-scoring", tps)
        prod = load.producer(self.e.stack.bootstrap, self.settings.kafka_linger_ms)
        await prod.start()
        try:
            started = time.monotonic()
            await load.publish(prod, Topics.checkins, records)
            published = time.monotonic() - started
        finally:
            await prod.stop()
        done = 0
        while time.monotonic() - started < s.consumer_timeout_s:
            committed = await self.w.committed("nervewatch-scoring", tps)
            done = sum(max(0, committed[tp] - before[tp]) for tp in tps)
            if done >= len(records):
                break
            await asyncio.sleep(0.1)
        elapsed = time.monotonic() - started
        self.scoring_events_done += done
        return done, elapsed, published

    def _scoring_target(self) -> tuple[float, str]:
        """The scoring consumer's target: 20,000 events/s or 25% of the run's COPY ceiling, whichever is lower."""
        quarter = 0.25 * self.copy_ceiling
        if math.isnan(quarter) or quarter >= 20_000:
            return 20_000.0, ">= 20,000 events/s"
        return quarter, f">= {quarter:,.0f} events/s (25% of COPY)"

    async def scoring_throughput(self) -> None:
        s = self.sizes
        scoring = self.e.procs.get("scoring")
        self.scoring_rss_start = rss_mib(scoring.pid) if scoring is not None else None
        records = load.checkin_events(self.load_patients, s.scoring_events, datetime.now(UTC))
        done, elapsed, published = await self._consume_checkins(records)
        rate = done / elapsed
        timed_out = done < s.scoring_events
        target, label = self._scoring_target()
        self.report.add(
            Row(
                f"Scoring consumer: {s.scoring_events:,} check-in events, {len(self.load_patients)} patients",
                _rate(rate, "events/s"),
                _rate(self.copy_ceiling, "rows/s COPY"),
                _ratio(rate, self.copy_ceiling),
                label,
                _status(rate >= target),
                f"{done:,} committed in {elapsed:.1f} s (publishing took {published:.1f} s); plain consumer ceiling "
                f"{_rate(self.consume_ceiling, 'msg/s')} ({_ratio(rate, self.consume_ceiling)})"
                + ("; TIMED OUT, rate is of the part done" if timed_out else ""),
            )
        )
        if not await self._quiesce(s.consumer_timeout_s):
            self.report.failures.append("consumers did not catch up after the scoring phase")

    async def _history_workload(self, prefix: str, history: int, late_fraction: float) -> tuple[float, str]:
        """Enrol patients through the patients topic, seed `history` days each through the scoring
        shell in this process, then measure the service on `history_new_days` new days each
        (with `late_fraction` of them 1-14 days late). Returns (events/s, note)."""
        s = self.sizes
        patients = bench_scoring.patient_ids(prefix, s.history_patients)
        now = datetime.now(UTC)
        prod = load.producer(self.e.stack.bootstrap, self.settings.kafka_linger_ms)
        await prod.start()
        try:
            await load.publish(prod, Topics.patients, [bench_scoring.patient_event(p, now) for p in patients])
        finally:
            await prod.stop()
        conn = await asyncpg.connect(self.e.dsn)
        try:

            async def enrolled() -> bool:
                n = await conn.fetchval(
                    "SELECT count(*) FROM scoring.patients WHERE tenant_id = $1 AND patient_id LIKE $2",
                    load.TENANT,
                    f"{prefix}-%",
                )
                return int(n) >= len(patients)

            deadline = time.monotonic() + s.consumer_timeout_s
            while not await enrolled():
                if time.monotonic() > deadline:
                    raise TimeoutError(f"scoring did not store the {prefix} enrolments")
                await asyncio.sleep(0.1)
        finally:
            await conn.close()
        seeded = 0
        seed_s = 0.0
        new_from = now - timedelta(days=s.history_new_days)
        if history:
            seeded, seed_s = await bench_scoring.seed_history(self.e.dsn, patients, history, new_from, enrol=False)
        events = bench_scoring.series_events(
            patients, s.history_new_days, now, late_fraction=late_fraction, seed=history + 7
        )
        expected = len(events)
        done, elapsed, _published = await self._consume_checkins(bench_scoring.records(events))
        if done < expected:
            self.report.failures.append(f"scoring {prefix}: only {done} of {expected} events scored in time")
        if not await self._quiesce(s.consumer_timeout_s):
            self.report.failures.append(f"consumers did not catch up after the {prefix} phase")
        note = (
            f"{len(patients)} patients x {history} days seeded in-process ({seeded:,} events, {seed_s:.0f} s), then "
            f"{done:,} new events through the broker in {elapsed:.1f} s"
        )
        return done / elapsed, note

    async def scoring_history(self) -> None:
        """Cost per event against the length of prior history: the same new days on 30/180/720 days."""
        s = self.sizes
        target, label = self._scoring_target()
        first = s.history_days[0]
        for history in s.history_days:
            rate, note = await self._history_workload(f"h{history}", history, 0.0)
            self.history_rates[history] = rate
            last = history == s.history_days[-1]
            base = self.history_rates.get(first, float("nan"))
            self.report.add(
                Row(
                    f"Scoring consumer with {history} days of prior history per patient",
                    _rate(rate, "events/s"),
                    _rate(self.copy_ceiling, "rows/s COPY"),
                    _ratio(rate, self.copy_ceiling),
                    f"{label}; within 20% of the {first}-day rate" if last else label,
                    _status(rate >= target and (not last or rate >= 0.8 * base)),
                    note + (f"; {_ratio(rate, base)} of the {first}-day rate" if history != first else ""),
                )
            )

    async def scoring_late(self) -> None:
        """10% of events 1-14 days late, on the shortest history, against the in-order rate."""
        s = self.sizes
        first = s.history_days[0]
        rate, note = await self._history_workload("late", first, 0.1)
        base = self.history_rates.get(first, float("nan"))
        self.report.add(
            Row(
                f"Scoring consumer, late data: 10% of events 1-14 days late, {first} days of prior history",
                _rate(rate, "events/s"),
                _rate(base, "events/s in order"),
                _ratio(rate, base),
                ">= 25% of the in-order rate",
                _status(not math.isnan(base) and rate >= 0.25 * base),
                note,
            )
        )

    async def scoring_two_processes(self) -> None:
        """A second scoring process joins the group: the in-order history row and the top end-to-end
        rate again, then the second process leaves (the later phases run as before)."""
        s = self.sizes
        first = s.history_days[0]
        self.e.start_replica("scoring", "scoring-2")
        try:
            await self._wait_assigned(("scoring", "scoring-2"), s.consumer_timeout_s)
            rate, note = await self._history_workload("x2", first, 0.0)
            base = self.history_rates.get(first, float("nan"))
            target, label = self._scoring_target()
            self.report.add(
                Row(
                    f"Scoring consumer with {first} days of prior history per patient, 2 scoring processes",
                    _rate(rate, "events/s"),
                    _rate(self.copy_ceiling, "rows/s COPY"),
                    _ratio(rate, self.copy_ceiling),
                    label,
                    _status(rate >= target),
                    note + f"; {_ratio(rate, base)} of the 1-process rate",
                )
            )
            await self.end_to_end(max(s.e2e_rates), scoring_processes=2)
        finally:
            self.e.stop_replica("scoring-2")
        await self._quiesce(s.consumer_timeout_s)

    async def _wait_assigned(self, names: tuple[str, ...], timeout_s: float) -> None:
        """Block until every process in `names` reports a check-ins partition of its own (the group
        has rebalanced onto them)."""
        marker = f'topic="{Topics.checkins}"'
        deadline = time.monotonic() + timeout_s
        async with aiohttp.ClientSession() as http:
            while True:
                owners = 0
                for name in names:
                    with contextlib.suppress(aiohttp.ClientError):
                        async with http.get(f"{self.e.url(name)}/metrics") as resp:
                            text = await resp.text()
                        owners += any(
                            line.startswith("nervewatch_consumer_lag_messages{") and marker in line
                            for line in text.splitlines()
                        )
                if owners == len(names):
                    return
                if time.monotonic() > deadline:
                    raise TimeoutError(f"the check-in partitions were not spread over {', '.join(names)}")
                await asyncio.sleep(0.5)

    def scoring_memory(self) -> None:
        """Scoring RSS after the events it consumed here, extrapolated linearly to 1 million events."""
        proc = self.e.procs.get("scoring")
        rss = rss_mib(proc.pid) if proc is not None else None
        start = self.scoring_rss_start
        n = self.scoring_events_done
        if rss is None or start is None or n <= 0:
            self.report.add(Row("Scoring RSS after the scoring phases", "n/a"))
            return
        per_million = max(0.0, rss - start) / n * 1_000_000
        projected = rss + per_million
        self.report.add(
            Row(
                f"Scoring RSS after {n:,} scoring-phase events",
                f"{rss:,.0f} MiB",
                "",
                "",
                "< 200 MB at 1M events",
                _status(projected < 200 * 1e6 / 2**20),
                f"{start:,.0f} MiB before the scoring phases; linear extrapolation of the growth to 1M more events: "
                f"{projected:,.0f} MiB (an upper bound: RSS also grows with caches that level off)",
            )
        )

    async def alerts_throughput(self) -> None:
        s = self.sizes
        every = 20
        records = load.trajectory_events(self.load_patients, s.alerts_events, datetime.now(UTC), every)
        prod = load.producer(self.e.stack.bootstrap, self.settings.kafka_linger_ms)
        await prod.start()
        try:
            started = time.monotonic()
            await load.publish(prod, Topics.trajectories, records)
            published = time.monotonic() - started
        finally:
            await prod.stop()
        ends = await self.w.end_offsets([Topics.trajectories])
        base = sum(ends.values()) - s.alerts_events
        done = 0
        while time.monotonic() - started < s.consumer_timeout_s:
            committed = await self.w.committed("nervewatch-alerts", list(ends))
            done = sum(min(committed[tp], end) for tp, end in ends.items()) - base
            if done >= s.alerts_events:
                break
            await asyncio.sleep(0.1)
        elapsed = time.monotonic() - started
        rate = done / elapsed
        self.report.add(
            Row(
                f"Alerts consumer: {s.alerts_events:,} trajectory events (1 in {every} a red flag)",
                _rate(rate, "events/s"),
                _rate(self.consume_ceiling, "msg/s"),
                _ratio(rate, self.consume_ceiling),
                ">= 10,000 events/s",
                _status(rate >= 10_000),
                f"{done:,} committed in {elapsed:.1f} s (publishing took {published:.1f} s)"
                + ("; TIMED OUT, rate is of the part done" if done < s.alerts_events else ""),
            )
        )

    async def rescore_throughput(self) -> None:
        """`rescore` over stored observations (tooling/bench/rescore.py), dry and real run."""
        s = self.sizes
        f = await bench_rescore.measure(self.e.dsn, s.rescore_patients, s.rescore_days)
        runs = (("dry run", f.dry_rate, f.dry_s, f.dry_cpu_s), ("real run", f.real_rate, f.real_s, f.real_cpu_s))
        for label, rate, secs, cpu in runs:
            self.report.add(
                Row(
                    f"Rescore ({label}): {f.observations:,} stored observations, {f.patients:,} patients",
                    _rate(rate, "events/s"),
                    _rate(self.copy_ceiling, "rows/s"),
                    _ratio(rate, self.copy_ceiling),
                    "report (issue 11)",
                    "",
                    f"{secs:.1f} s ({cpu:.1f} s CPU in the CLI process); fold from Engine.initial() per patient"
                    + (f"; {f.events:,} retrospective events queued" if label == "real run" else "; writes nothing"),
                )
            )

    def memory(self) -> None:
        for name, proc in self.e.procs.items():
            rss = rss_mib(proc.pid)
            self.report.add(Row(f"Memory: {name} RSS at the end", f"{rss:,.0f} MiB" if rss is not None else "n/a"))

    async def run(self) -> None:
        self.env = await open_env(self.settings, self.settings.topic_partitions)
        try:
            self.watch = load.GroupWatch(self.e.stack.bootstrap)
            self.report.machine = await machine_description(self.e, self.settings)
            await self.phase("ceilings", self.ceilings)
            await self.phase("event digest statement", self.digest_check)
            await self.phase("enrol (ingest only)", self.setup_ingest)
            if "ingest" not in self.e.procs:
                raise RuntimeError("ingest did not start")
            await self.phase("ingest closed loop", self.ingest_closed)
            await self.phase("ingest open loop", self.ingest_open)
            await self.phase("ingest batch", self.ingest_batch)
            await self.phase("ingest FHIR bundle", self.ingest_fhir_bundle)
            await self.phase("start scoring + alerts", self.start_consumers)
            for rate in self.sizes.e2e_rates:
                await self.phase(f"end to end {rate:,.0f}/s", lambda r=rate: self.end_to_end(r))  # type: ignore[misc]
            await self.phase("trajectory to webhook", self.webhook_latency)
            await self.phase("scoring consumer", self.scoring_throughput)
            await self.phase("scoring with prior history", self.scoring_history)
            await self.phase("scoring with late data", self.scoring_late)
            await self.phase("scoring, 2 processes", self.scoring_two_processes)
            await self.phase("alerts consumer", self.alerts_throughput)
            self.scoring_memory()
            self.memory()
            await self.phase("rescore", self.rescore_throughput)
        finally:
            try:
                if self.watch is not None:
                    await self.watch.close()
            finally:
                await close_env(self.e)


def run_bench(settings: Settings, *, smoke: bool, write: Path | None) -> int:
    """Run the benchmark, print the table, optionally write the markdown report; 0 unless the harness failed."""
    command = "nervewatch bench" + (" --smoke" if smoke else "") + (f" --write {write}" if write else "")
    report = Report(smoke=smoke, command=command)
    for noisy in ("pgserver", "nervewatch.db", "aiokafka"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger(noisy).getEffectiveLevel()))
    bench = Bench(settings, SMOKE if smoke else FULL, report)
    started = time.monotonic()
    try:
        asyncio.run(bench.run())
    except Exception as exc:
        report.failures.append(f"{type(exc).__name__}: {exc}")
        traceback.print_exc()
    report.duration_s = time.monotonic() - started
    print()
    print(report.table())
    for f in report.failures:
        print(f"harness error: {f}", file=sys.stderr)
    if write is not None:
        keep = ""
        if write.exists():
            old = write.read_text()
            if KEEP_MARKER in old:
                keep = old.split(KEEP_MARKER, 1)[1]
        write.parent.mkdir(parents=True, exist_ok=True)
        write.write_text(report.markdown() + "\n" + KEEP_MARKER + keep if keep else report.markdown())
        print(f"report written to {write}")
    return 1 if report.failures else 0


def _e2e_key(rate: float, scoring_processes: int) -> str:
    return f"{int(rate)}" + (f"x{scoring_processes}" if scoring_processes > 1 else "")
