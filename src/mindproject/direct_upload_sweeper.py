"""Removes direct uploads never completed (staged bytes and state), from every replica.

Like resumable_sweeper.py: every replica runs this loop, and removing an expired upload twice
is harmless, so replicas need no coordination. An upload is removed GRACE_SECONDS after it
expires: a completion that began just before expiry still finds its staged bytes.
"""

from __future__ import annotations

import asyncio
import logging
import time

from mindproject.errors import MindProjectError
from mindproject.resumable_sweeper import sweep_interval
from mindproject.storage import Storage

log = logging.getLogger("mindproject.direct_uploads")

GRACE_SECONDS = 60.0


async def sweep_direct_uploads_forever(storage: Storage, expiry_seconds: float) -> None:
    interval = sweep_interval(expiry_seconds)
    while True:
        await asyncio.sleep(interval)
        try:
            removed = await storage.remove_expired_direct_uploads(time.time() - GRACE_SECONDS)
        except MindProjectError as exc:  # storage down: try again next round
            log.warning("could not remove expired direct uploads: %s", exc.message)
            continue
        except Exception:  # a bug must not end the sweeping for good
            log.exception("removing expired direct uploads failed unexpectedly")
            continue
        if removed:
            log.info("removed expired direct uploads", extra={"uploads": removed})
