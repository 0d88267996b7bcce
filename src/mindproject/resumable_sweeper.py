"""Removes expired resumable uploads, from every replica, without anyone's help.

Each replica runs this loop; removing an expired upload twice is harmless (the storage's
removal is idempotent), so replicas need no coordination. It runs often enough that an upload
is gone within about half its expiry time after expiring (at most a minute later).
"""

from __future__ import annotations

import asyncio
import logging
import time

from mindproject.errors import MindProjectError
from mindproject.storage import Storage

log = logging.getLogger("mindproject.resumable")

MAX_INTERVAL_SECONDS = 60.0


def sweep_interval(expiry_seconds: float) -> float:
    return max(0.5, min(MAX_INTERVAL_SECONDS, expiry_seconds / 2))


async def sweep_forever(storage: Storage, expiry_seconds: float) -> None:
    interval = sweep_interval(expiry_seconds)
    while True:
        await asyncio.sleep(interval)
        try:
            removed = await storage.remove_expired_resumable(time.time())
        except MindProjectError as exc:  # storage down: try again next round
            log.warning("could not remove expired resumable uploads: %s", exc.message)
            continue
        except Exception:  # a bug must not end the sweeping for good
            log.exception("removing expired resumable uploads failed unexpectedly")
            continue
        if removed:
            log.info("removed expired resumable uploads", extra={"uploads": removed})
