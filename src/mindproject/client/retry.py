"""The retry policy: which answers are worth another try, and how long to wait before it."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

DEFAULT_RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter (a random wait in [0, min(max_delay, base_delay *
    2**n)] before try n+1), so a fleet that lost its server does not come back in lockstep.

    `attempts` counts tries, the first included: `attempts=1` never retries. Connection errors and
    timeouts are always retried; answers with a status in `retry_statuses` too. A `Retry-After`
    header is honoured as the least wait; one longer than `max_delay` is not waited out: the
    error is raised at once, as the server asked for more patience than the policy has."""

    attempts: int = 5
    base_delay: float = 0.5
    max_delay: float = 30.0
    retry_statuses: frozenset[int] = field(default=DEFAULT_RETRY_STATUSES)

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("attempts must be at least 1")
        if self.base_delay < 0 or self.max_delay < 0:
            raise ValueError("delays must not be negative")

    def backoff(self, failures: int, retry_after: float | None = None) -> float | None:
        """Seconds to wait after `failures` failed tries in a row (1 after the first), or None
        to give up."""
        if failures >= self.attempts:
            return None
        ceiling = min(self.max_delay, self.base_delay * 2 ** (failures - 1))
        delay = random.uniform(0, ceiling)  # noqa: S311 - jitter, not secrecy
        if retry_after is not None:
            if retry_after > self.max_delay:
                return None
            delay = max(delay, retry_after)
        return delay


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds from a `Retry-After` header (delta-seconds or an HTTP date); None if absent or
    unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())
