"""A storage wrapper that times every operation and counts its failures (docs/metrics.md)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

from mindproject.errors import MindProjectError, NotSupportedByStorage
from mindproject.metrics import STORAGE_ERRORS, STORAGE_SECONDS
from mindproject.storage.base import (
    ActivityBucket,
    DeviceSummary,
    DirectUploadTicket,
    FleetSummary,
    Page,
    ResumableUpload,
    Storage,
    UploadInfo,
    UploadSource,
)

R = TypeVar("R")


class InstrumentedStorage(Storage):
    """Times every storage operation and counts its failures; delegates the work."""

    def __init__(self, inner: Storage) -> None:
        self.inner = inner

    async def _timed(self, operation: str, call: Callable[[], Awaitable[R]]) -> R:
        started = time.perf_counter()
        try:
            return await call()
        except MindProjectError as exc:
            # A backend that cannot do something (501) has not failed: not a storage error.
            if exc.status >= 500 and not isinstance(exc, NotSupportedByStorage):
                STORAGE_ERRORS.labels(operation, exc.code).inc()
            raise
        finally:
            STORAGE_SECONDS.labels(operation).observe(time.perf_counter() - started)

    async def save(
        self,
        device_id: str,
        version: str,
        source: UploadSource,
        *,
        filename: str | None,
        content_type: str | None,
        idempotency_key: str | None = None,
    ) -> UploadInfo:
        return await self._timed(
            "save",
            lambda: self.inner.save(
                device_id,
                version,
                source,
                filename=filename,
                content_type=content_type,
                idempotency_key=idempotency_key,
            ),
        )

    async def find_by_key(self, device_id: str, idempotency_key: str) -> UploadInfo | None:
        return await self._timed(
            "find_by_key", lambda: self.inner.find_by_key(device_id, idempotency_key)
        )

    async def latest(self, device_id: str) -> UploadInfo:
        return await self._timed("latest", lambda: self.inner.latest(device_id))

    async def get(self, device_id: str, version: str) -> UploadInfo:
        return await self._timed("get", lambda: self.inner.get(device_id, version))

    async def read(
        self, info: UploadInfo, start: int = 0, end: int | None = None
    ) -> AsyncIterator[bytes]:
        started = time.perf_counter()
        try:
            async for chunk in self.inner.read(info, start, end):
                yield chunk
        except MindProjectError as exc:
            if exc.status >= 500:  # as for every other operation: a 404 is not a storage failure
                STORAGE_ERRORS.labels("read", exc.code).inc()
            raise
        finally:
            STORAGE_SECONDS.labels("read").observe(time.perf_counter() - started)

    async def list_devices(self, *, prefix: str, after: str | None, limit: int) -> Page[str]:
        return await self._timed(
            "list_devices", lambda: self.inner.list_devices(prefix=prefix, after=after, limit=limit)
        )

    async def list_uploads(
        self, device_id: str, *, after: str | None, limit: int
    ) -> Page[UploadInfo]:
        return await self._timed(
            "list_uploads", lambda: self.inner.list_uploads(device_id, after=after, limit=limit)
        )

    async def delete_device(self, device_id: str) -> int:
        return await self._timed("delete_device", lambda: self.inner.delete_device(device_id))

    async def delete_upload(self, device_id: str, version: str) -> None:
        await self._timed("delete_upload", lambda: self.inner.delete_upload(device_id, version))

    async def list_revocations(self) -> dict[str, float]:
        return await self._timed("list_revocations", self.inner.list_revocations)

    async def set_revocation(self, device_id: str, revoked_at: float | None) -> None:
        await self._timed(
            "set_revocation", lambda: self.inner.set_revocation(device_id, revoked_at)
        )

    async def fleet_devices(
        self,
        *,
        prefix: str,
        after: str | None,
        limit: int,
        sort: str,
        silent_before: float | None,
    ) -> Page[DeviceSummary]:
        return await self._timed(
            "fleet_devices",
            lambda: self.inner.fleet_devices(
                prefix=prefix, after=after, limit=limit, sort=sort, silent_before=silent_before
            ),
        )

    async def fleet_summary(self, *, now: float, silent_before: float) -> FleetSummary:
        return await self._timed(
            "fleet_summary",
            lambda: self.inner.fleet_summary(now=now, silent_before=silent_before),
        )

    async def device_activity(
        self, device_id: str, *, bucket_seconds: int, start: float, end: float
    ) -> list[ActivityBucket]:
        return await self._timed(
            "device_activity",
            lambda: self.inner.device_activity(
                device_id, bucket_seconds=bucket_seconds, start=start, end=end
            ),
        )

    async def create_resumable(self, upload: ResumableUpload, *, max_per_device: int) -> None:
        await self._timed(
            "create_resumable",
            lambda: self.inner.create_resumable(upload, max_per_device=max_per_device),
        )

    async def resumable(self, device_id: str, upload_id: str) -> ResumableUpload:
        return await self._timed("resumable", lambda: self.inner.resumable(device_id, upload_id))

    async def append_resumable(
        self,
        device_id: str,
        upload_id: str,
        offset: int,
        chunk: UploadSource,
        *,
        length: int | None,
        expires_at: float,
        version: str,
    ) -> ResumableUpload:
        return await self._timed(
            "append_resumable",
            lambda: self.inner.append_resumable(
                device_id,
                upload_id,
                offset,
                chunk,
                length=length,
                expires_at=expires_at,
                version=version,
            ),
        )

    async def delete_resumable(self, device_id: str, upload_id: str) -> None:
        await self._timed(
            "delete_resumable", lambda: self.inner.delete_resumable(device_id, upload_id)
        )

    async def remove_expired_resumable(self, now: float) -> int:
        return await self._timed(
            "remove_expired_resumable", lambda: self.inner.remove_expired_resumable(now)
        )

    async def check(self) -> None:
        await self._timed("check", self.inner.check)

    async def close(self) -> None:
        await self.inner.close()

    # direct uploads ----------------------------------------------------------------------------
    async def presign_direct_upload(
        self,
        device_id: str,
        staging_id: str,
        *,
        size: int,
        sha256: str,
        filename: str | None,
        content_type: str | None,
        expires_at: float,
    ) -> DirectUploadTicket:
        return await self._timed(
            "presign_direct_upload",
            lambda: self.inner.presign_direct_upload(
                device_id,
                staging_id,
                size=size,
                sha256=sha256,
                filename=filename,
                content_type=content_type,
                expires_at=expires_at,
            ),
        )

    async def complete_direct_upload(
        self, device_id: str, staging_id: str, version: str, *, now: float
    ) -> UploadInfo:
        return await self._timed(
            "complete_direct_upload",
            lambda: self.inner.complete_direct_upload(device_id, staging_id, version, now=now),
        )

    async def remove_expired_direct_uploads(self, now: float) -> int:
        return await self._timed(
            "remove_expired_direct_uploads", lambda: self.inner.remove_expired_direct_uploads(now)
        )
