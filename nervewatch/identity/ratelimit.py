"""Per-key request rate limits: one token bucket per API key, in process memory.

Each bucket holds up to `burst` tokens and refills at `rate` tokens per second; a request takes
one. The buckets live in a bounded LRU (`max_keys`), so memory does not grow with the number of
keys seen: an evicted key simply starts again with a full bucket. Limits are per process: with
N replicas behind a load balancer a key gets at most N x `rate`.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable


class KeyRateLimiter:
    def __init__(
        self, rate: float, burst: int, max_keys: int = 10_000, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        self.rate = rate
        self.burst = float(burst)
        self.max_keys = max_keys
        self.clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # key -> (tokens, at)

    def __len__(self) -> int:
        return len(self._buckets)

    def acquire(self, key: str) -> float:
        """Take a token for `key`: 0.0 when allowed, else the seconds until a token is available."""
        now = self.clock()
        bucket = self._buckets.get(key)
        tokens = self.burst if bucket is None else min(self.burst, bucket[0] + (now - bucket[1]) * self.rate)
        if tokens >= 1.0:
            self._buckets[key] = (tokens - 1.0, now)
            wait = 0.0
        else:
            self._buckets[key] = (tokens, now)
            wait = (1.0 - tokens) / self.rate
        self._buckets.move_to_end(key)
        while len(self._buckets) > self.max_keys:
            self._buckets.popitem(last=False)
        return wait
