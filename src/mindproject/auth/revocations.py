"""The revocation list, kept in storage so every replica sees it, cached briefly per replica.

A replica re-reads it at most every `revocation_refresh_seconds` (default 5 s), so a revocation
takes effect everywhere within that time. If storage cannot be read, the last list is kept.
"""

from __future__ import annotations

import asyncio
import logging
import time

from mindproject.errors import MindProjectError
from mindproject.storage import Storage

log = logging.getLogger("mindproject.auth")


class Revocations:
    def __init__(self, storage: Storage, refresh_seconds: float) -> None:
        self._storage = storage
        self._refresh_seconds = refresh_seconds
        self._revoked: dict[str, float] = {}
        self._next_refresh = 0.0
        self._lock = asyncio.Lock()

    async def revoked_at(self, device_id: str) -> float | None:
        if time.monotonic() >= self._next_refresh:
            await self.refresh()
        return self._revoked.get(device_id)

    async def refresh(self) -> None:
        async with self._lock:
            if time.monotonic() < self._next_refresh:
                return  # another request refreshed it while we waited
            try:
                self._revoked = await self._storage.list_revocations()
                self._next_refresh = time.monotonic() + self._refresh_seconds
            except MindProjectError as exc:
                log.warning("could not refresh revocations, keeping the last list: %s", exc)
                self._next_refresh = time.monotonic() + 1.0

    def forget_cache(self) -> None:
        self._next_refresh = 0.0
