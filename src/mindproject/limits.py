"""Per-device limits kept in each replica's memory: request rate and uploads in flight.

They are per replica (N replicas allow N times the rate), which bounds what one device can cost
a replica without shared state; fleet-wide quotas belong to the load balancer or WAF.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager

from mindproject.errors import TooManyRequests

_MAX_TRACKED = 100_000


class RateLimiter:
    """Token bucket per key: `burst` requests at once, refilled at `per_minute` a minute."""

    def __init__(self, per_minute: int, burst: int) -> None:
        self.enabled = per_minute > 0
        self._rate = per_minute / 60.0
        self._burst = float(burst)
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def check(self, key: str) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        tokens, last = self._buckets.pop(key, (self._burst, now))
        tokens = min(self._burst, tokens + (now - last) * self._rate)
        if tokens < 1.0:
            self._buckets[key] = (tokens, now)
            retry_after = math.ceil((1.0 - tokens) / self._rate)
            raise TooManyRequests(f"device {key} is over its request rate", retry_after=retry_after)
        self._buckets[key] = (tokens - 1.0, now)
        if len(self._buckets) > _MAX_TRACKED:
            self._buckets.popitem(last=False)  # the longest-idle device: its bucket is full anyway


class UploadSlots:
    """At most `per_device` uploads in flight per device (0: no cap)."""

    def __init__(self, per_device: int) -> None:
        self._cap = per_device
        self._in_flight: dict[str, int] = {}

    @contextmanager
    def hold(self, device_id: str) -> Iterator[None]:
        count = self._in_flight.get(device_id, 0)
        if self._cap and count >= self._cap:
            raise TooManyRequests(
                f"device {device_id} already has {count} uploads in flight", retry_after=1
            )
        self._in_flight[device_id] = count + 1
        try:
            yield
        finally:
            remaining = self._in_flight[device_id] - 1
            if remaining:
                self._in_flight[device_id] = remaining
            else:
                del self._in_flight[device_id]
