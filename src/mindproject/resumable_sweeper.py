"""Removes expired resumable uploads, from every replica, without anyone's help.

Each replica runs this loop; removing an expired upload twice is harmless (the storage's
removal is idempotent), so replicas need no coordination. It runs often enough that an upload
is gone within about half its expiry time after expiring (at most a minute later).
"""

from __future__ import annotations

import logging
import time

from mindproject.periodic import run_every
from mindproject.storage import Storage

log = logging.getLogger("mindproject.resumable")

MAX_INTERVAL_SECONDS = 60.0


def sweep_interval(expiry_seconds: float) -> float:
    return max(0.5, min(MAX_INTERVAL_SECONDS, expiry_seconds / 2))


async def sweep_forever(storage: Storage, expiry_seconds: float) -> None:
    async def sweep() -> None:
        removed = await storage.remove_expired_resumable(time.time())
        if removed:
            log.info("removed expired resumable uploads", extra={"uploads": removed})

    await run_every(
        sweep_interval(expiry_seconds), sweep, "removing expired resumable uploads", log
    )
