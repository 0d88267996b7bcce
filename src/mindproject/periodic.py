"""The loop every replica's background jobs run in (sweepers, the compactor)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from mindproject.errors import MindProjectError


async def run_every(
    interval_seconds: float, job: Callable[[], Awaitable[None]], what: str, log: logging.Logger
) -> None:
    """Run `job` every `interval_seconds`, for ever. A failed round is logged and the next one
    tries again: storage down (a warning), or a bug (its trace), which must not end the job for
    good on this replica."""
    while True:
        await asyncio.sleep(interval_seconds)
        try:
            await job()
        except MindProjectError as exc:
            log.warning("%s failed: %s", what, exc.message)
        except Exception:
            log.exception("%s failed unexpectedly; trying again next round", what)
