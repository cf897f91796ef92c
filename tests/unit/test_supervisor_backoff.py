"""Supervisor restart policy with a real child that exits at once: backoff doubles up to the cap,
resets after the child stayed up `stable_after_s`; stop leaves no child running."""

from __future__ import annotations

import subprocess
import sys

from tooling.supervisor import Supervisor


class _Crashing(Supervisor):
    def _spawn(self, service: str) -> subprocess.Popen[bytes]:
        return subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])


def test_backoff_doubles_to_cap_then_resets() -> None:
    sup = _Crashing(("ingest",), {}, backoff_initial_s=1.0, backoff_max_s=4.0, stable_after_s=100.0)
    sup.start()
    child = sup.children["ingest"]
    child.proc.wait()
    now = 0.0
    delays = []
    for _ in range(4):
        sup.tick(now)  # notices the exit, schedules the restart
        assert child.restart_at is not None
        delays.append(child.restart_at - now)
        sup.tick(now + 0.5 * delays[-1])
        assert child.restart_at is not None  # not yet
        now = child.restart_at
        sup.tick(now)  # restarts
        child.proc.wait()
    assert delays == [1.0, 2.0, 4.0, 4.0]
    assert sup.restarts("ingest") == 4
    child.proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    child.started = now
    sup.tick(now + 100.0)
    assert child.backoff_s == 1.0
    sup.stop()
    assert child.proc.poll() is not None
