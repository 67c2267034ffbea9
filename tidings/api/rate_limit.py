"""A token bucket per API key, kept in the API process's memory.

With several API processes behind a load balancer each one has its own buckets, so a key's
effective limit is the configured rate times the number of processes. That is deliberate: a
shared counter would put a database write in front of every request, and the limit is there to
stop a runaway client, not to meter exactly.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field


@dataclass
class _Bucket:
    tokens: float
    updated: float = field(default_factory=time.monotonic)


class RateLimiter:
    def __init__(self, per_second: float, burst: int) -> None:
        self._rate = per_second
        self._burst = float(burst)
        self._buckets: dict[str, _Bucket] = {}

    def take(self, key: str) -> int:
        """0 when the request may go ahead; otherwise the whole seconds until it may (Retry-After)."""
        now = time.monotonic()
        bucket = self._buckets.setdefault(key, _Bucket(self._burst, now))
        bucket.tokens = min(self._burst, bucket.tokens + (now - bucket.updated) * self._rate)
        bucket.updated = now
        if bucket.tokens >= 1:
            bucket.tokens -= 1
            return 0
        return max(1, math.ceil((1 - bucket.tokens) / self._rate))
