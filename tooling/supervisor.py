"""Start, watch, restart and stop service processes: one implementation for `nervewatch run`, bench and tests.

`spawn_service` starts `nervewatch serve NAME` as a child process; `stop_process` sends a signal and waits
(escalating to SIGKILL after `timeout_s`); `wait_ready` blocks until `/readyz` URLs answer 200.
`Supervisor.run` blocks until SIGINT/SIGTERM (or `request_stop`), restarting a child that exits with
exponential backoff (`backoff_initial_s` doubling to `backoff_max_s`, reset once a child stayed up for
`stable_after_s`), and on return has stopped every child (SIGTERM, then SIGKILL after `stop_timeout_s`).
"""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

log = logging.getLogger("nervewatch.supervisor")


def serve_command(service: str) -> list[str]:
    """The argv that runs one service in the foreground with this interpreter."""
    return [sys.executable, "-m", "tooling.cli", "serve", service]


def spawn_service(service: str, env: Mapping[str, str], log_path: Path | None = None) -> subprocess.Popen[bytes]:
    """Start `nervewatch serve SERVICE`; stdout/stderr appended to `log_path` (inherited when None)."""
    out: IO[bytes] | None = None
    if log_path is not None:
        out = open(log_path, "ab")  # noqa: SIM115  (owned by the child; closed below in the parent)
    try:
        return subprocess.Popen(serve_command(service), env=dict(env), stdout=out, stderr=out)
    finally:
        if out is not None:
            out.close()


def stop_process(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout_s: float = 30.0) -> int:
    """Signal `proc` (if still running) and wait; SIGKILL after `timeout_s`. Returns the exit code."""
    if proc.poll() is None:
        proc.send_signal(sig)
    try:
        return proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait()


def stop_all(procs: Sequence[subprocess.Popen[bytes]], timeout_s: float = 30.0) -> None:
    """SIGTERM every running process first, then wait for each (SIGKILL after `timeout_s`)."""
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
        stop_process(proc, timeout_s=timeout_s)


def wait_ready(urls: Sequence[str], timeout_s: float = 90.0) -> None:
    """Block until every `/readyz` URL answers 200; TimeoutError naming the first URL still pending."""
    end = time.monotonic() + timeout_s
    pending = list(urls)
    while pending:
        url = pending[0]
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:  # noqa: S310  (local http URL)
                if resp.status == 200:
                    pending.pop(0)
                    continue
        except OSError:
            pass
        if time.monotonic() > end:
            raise TimeoutError(f"not ready: {url}")
        time.sleep(0.2)


@dataclass
class _Child:
    service: str
    proc: subprocess.Popen[bytes]
    started: float
    backoff_s: float
    restart_at: float | None = None
    restarts: int = 0


@dataclass
class Supervisor:
    """Keeps one process per service alive until stopped. Not thread-safe except `request_stop`."""

    services: Sequence[str]
    env: Mapping[str, str]
    log_dir: Path | None = None
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 30.0
    stable_after_s: float = 30.0
    stop_timeout_s: float = 30.0
    poll_s: float = 0.2
    children: dict[str, _Child] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)

    def _spawn(self, service: str) -> subprocess.Popen[bytes]:
        path = self.log_dir / f"{service}.log" if self.log_dir is not None else None
        return spawn_service(service, self.env, path)

    def start(self) -> None:
        """Start every service (no readiness wait)."""
        now = time.monotonic()
        for s in self.services:
            self.children[s] = _Child(s, self._spawn(s), now, self.backoff_initial_s)

    def request_stop(self) -> None:
        self._stop.set()

    def pid(self, service: str) -> int:
        return self.children[service].proc.pid

    def restarts(self, service: str) -> int:
        return self.children[service].restarts

    def tick(self, now: float) -> None:
        """One watch step: schedule restarts for exited children, restart those whose backoff elapsed."""
        for child in self.children.values():
            code = child.proc.poll()
            if code is None:
                if now - child.started >= self.stable_after_s:
                    child.backoff_s = self.backoff_initial_s
                continue
            if child.restart_at is None:
                child.restart_at = now + child.backoff_s
                log.warning(
                    "service exited; restarting",
                    extra={"service": child.service, "exit_code": code, "backoff_s": child.backoff_s},
                )
                print(f"{child.service} exited with {code}; restarting in {child.backoff_s:.1f} s", file=sys.stderr)
            elif now >= child.restart_at:
                child.proc = self._spawn(child.service)
                child.started = now
                child.restart_at = None
                child.restarts += 1
                child.backoff_s = min(child.backoff_s * 2, self.backoff_max_s)

    def run(self, install_signals: bool = True) -> None:
        """Block watching the children until SIGINT/SIGTERM or `request_stop`; then stop them all."""
        if install_signals:
            signal.signal(signal.SIGINT, lambda *_: self._stop.set())
            signal.signal(signal.SIGTERM, lambda *_: self._stop.set())
        try:
            while not self._stop.wait(self.poll_s):
                self.tick(time.monotonic())
        finally:
            self.stop()

    def stop(self) -> None:
        stop_all([c.proc for c in self.children.values()], self.stop_timeout_s)
