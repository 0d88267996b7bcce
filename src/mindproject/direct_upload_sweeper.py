"""Removes direct uploads never completed (staged bytes and state), from every replica.

Like resumable_sweeper.py: every replica runs this loop, and removing an expired upload twice
is harmless, so replicas need no coordination. An upload is removed GRACE_SECONDS after it
expires: a completion that began just before expiry still finds its staged bytes.
"""

from __future__ import annotations

import logging
import time

from mindproject.periodic import run_every
from mindproject.resumable_sweeper import sweep_interval
from mindproject.storage import Storage

log = logging.getLogger("mindproject.direct_uploads")

GRACE_SECONDS = 60.0


async def sweep_direct_uploads_forever(storage: Storage, expiry_seconds: float) -> None:
    async def sweep() -> None:
        removed = await storage.remove_expired_direct_uploads(time.time() - GRACE_SECONDS)
        if removed:
            log.info("removed expired direct uploads", extra={"uploads": removed})

    await run_every(sweep_interval(expiry_seconds), sweep, "removing expired direct uploads", log)
