"""Fault-injection harness: its own embedded PostgreSQL and broker, database and service processes.

Everything here is package-scoped: the scenarios kill services, restart PostgreSQL and the
broker, so they never share anything with tests/integration, and all of it is torn down when
this package finishes. The figures of every scenario are printed at the end of the run (and
written to `$NERVEWATCH_FAULTS_REPORT` when set) for docs/reliability.md.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.faults.load import REPORT
from tests.support import (
    SERVICES,
    Receiver,
    Services,
    Tenant,
    create_tenant,
    service_env,
    webhook_receiver,
)
from tooling.devstack import EmbeddedStack, free_port, fresh_database, start_embedded
from tooling.supervisor import spawn_service

pytestmark = pytest.mark.integration

# Short thresholds so that recovery paths run within the scenarios' time bounds.
FAULT_SETTINGS = {
    "NERVEWATCH_CONSUMER_STALL_SECONDS": "5",
    "NERVEWATCH_INGEST_PRODUCE_TIMEOUT_S": "2",
    "NERVEWATCH_KAFKA_REQUEST_TIMEOUT_MS": "5000",
    "NERVEWATCH_CONSUMER_MAX_BATCH": "200",
    "NERVEWATCH_SHUTDOWN_TIMEOUT_S": "5",
}


@dataclass
class FaultEnv:
    stack: EmbeddedStack
    dsn: str
    services: Services
    tenant: Tenant
    receiver: Receiver

    def start_instance(self, name: str, service: str, port: int) -> None:
        """Another process of `service` under `name` (its own port and log), stoppable by name."""
        env = dict(self.services.env)
        env[f"NERVEWATCH_{service.upper()}_PORT"] = str(port)
        self.services.ports[name] = port
        self.services.procs[name] = spawn_service(service, env, self.services.log_dir / f"{name}.log")

    def heal(self) -> None:
        """Bring back whatever a previous scenario left down."""
        if self.stack.broker is None or self.stack.broker.poll() is not None:
            self.stack.start_broker()
        for name in list(self.services.procs):
            proc = self.services.procs[name]
            if proc.poll() is not None or name not in SERVICES:
                self.services.stop(name)
        for s in SERVICES:
            if s not in self.services.procs:
                self.services.start(s)
        self.services.wait_ready(timeout_s=90)
        self.receiver.status = 200
        self.receiver.delay_s = 0.0


@pytest.fixture(scope="package")
def fault_stack() -> Iterator[EmbeddedStack]:
    pytest.importorskip("pgserver")
    with tempfile.TemporaryDirectory(prefix="nwfaults-", dir="/tmp") as d:
        stack = start_embedded(Path(d) / "stack", None, None, pg_cleanup="delete")
        try:
            yield stack
        finally:
            stack.stop()


@pytest.fixture(scope="package")
async def faults(fault_stack: EmbeddedStack) -> AsyncIterator[FaultEnv]:
    dsn = await fresh_database(fault_stack.database_url, "nwfaults")
    tenant = await create_tenant(dsn, "faults-clinic")
    log_dir = Path(fault_stack.broker_log or "/tmp").parent
    ports = {s: free_port() for s in SERVICES}
    env = service_env(EmbeddedStack(database_url=dsn, bootstrap=fault_stack.bootstrap), ports, FAULT_SETTINGS)
    services = Services(env=env, ports=ports, log_dir=log_dir)
    async with webhook_receiver() as receiver:
        env_ = FaultEnv(fault_stack, dsn, services, tenant, receiver)
        services.start_all()
        try:
            yield env_
        finally:
            services.stop_all()
            services.keep_logs("faults-")


@pytest.fixture
def env(faults: FaultEnv) -> FaultEnv:
    """The fault environment, healthy at the start of each scenario."""
    faults.heal()
    return faults


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not REPORT:
        return
    terminalreporter.section("fault-injection figures")
    for row in REPORT:
        terminalreporter.write_line(" | ".join(f"{k}={v}" for k, v in row.items()))
    target = os.environ.get("NERVEWATCH_FAULTS_REPORT")
    if target:
        Path(target).write_text(json.dumps(REPORT, indent=2, default=str))
