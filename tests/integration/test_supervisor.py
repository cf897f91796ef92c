"""The process supervisor behind `nervewatch run`: a killed service comes back, Ctrl-C stops every child.

Real processes: one ingest service against the session's PostgreSQL and broker, SIGKILLed under the
supervisor; it is restarted (new pid, ready again) and `request_stop` leaves no child running.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest

from tests.support import service_env
from tooling.devstack import EmbeddedStack, free_port
from tooling.supervisor import Supervisor, wait_ready

pytestmark = pytest.mark.integration


def test_killed_child_is_restarted_and_stop_ends_all(stack: EmbeddedStack, database_url: str, workdir: Path) -> None:
    port = free_port()
    env = service_env(
        stack.__class__(database_url=database_url, bootstrap=stack.bootstrap),
        {"ingest": port, "scoring": free_port(), "alerts": free_port()},
    )
    sup = Supervisor(("ingest",), env, log_dir=workdir, backoff_initial_s=0.2, stop_timeout_s=15)
    sup.start()
    runner = threading.Thread(target=sup.run, kwargs={"install_signals": False}, daemon=True)
    runner.start()
    try:
        ready = f"http://127.0.0.1:{port}/readyz"
        wait_ready([ready], timeout_s=60)
        first = sup.pid("ingest")
        os.kill(first, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while sup.restarts("ingest") < 1 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert sup.restarts("ingest") == 1
        assert sup.pid("ingest") != first
        wait_ready([ready], timeout_s=60)
    finally:
        sup.request_stop()
        runner.join(timeout=30)
    assert not runner.is_alive()
    assert all(c.proc.poll() is not None for c in sup.children.values())
