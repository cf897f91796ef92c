#!/usr/bin/env python3
"""Container health probe for the NerveWatch image (installed as `nervewatch-healthcheck`).

Usage: nervewatch-healthcheck [PORT [PATH]]

With a port, probe http://127.0.0.1:PORT/PATH (PATH defaults to /healthz). Without one, probe
the three service ports (NERVEWATCH_INGEST_PORT, NERVEWATCH_SCORING_PORT, NERVEWATCH_ALERTS_PORT,
defaults 8080-8082) and succeed if any answers: a container runs exactly one service.
Exit 0 when healthy, 1 otherwise. Standard library only, so it needs nothing but python.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request

DEFAULT_PORTS = (
    ("NERVEWATCH_INGEST_PORT", 8080),
    ("NERVEWATCH_SCORING_PORT", 8081),
    ("NERVEWATCH_ALERTS_PORT", 8082),
)


def probe(port: int, path: str, timeout: float = 3.0) -> bool:
    url = f"http://127.0.0.1:{port}{path}"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return 200 <= int(response.status) < 300
    except (urllib.error.URLError, OSError, ValueError):
        return False


def main(argv: list[str]) -> int:
    path = argv[1] if len(argv) > 1 else "/healthz"
    ports = [int(argv[0])] if argv else [int(os.environ.get(name, default)) for name, default in DEFAULT_PORTS]
    return 0 if any(probe(port, path) for port in ports) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
