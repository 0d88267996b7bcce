"""Object-store backend (S3 and in-memory) over obstore, Rust's object_store for Python.

Chosen by measurement over aiobotocore: see docs/decisions.md. Key layout: `layout.py`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

import obstore
from obstore.exceptions import AlreadyExistsError
from obstore.exceptions import BaseError as ObstoreError

from mindproject.errors import (
    DeviceNotFound,
    InvalidVersionId,
    MindProjectError,
    StorageUnavailable,
    UploadNotFound,
)
from mindproject.identifiers import check_version_id
from mindproject.storage.base import (
    CHUNK_BYTES,
    Page,
    ResumableUpload,
    Storage,
    UploadInfo,
    UploadSource,
)
from mindproject.storage.layout import BLOB, INLINE, Layout, device_list_offset

if TYPE_CHECKING:
    from obstore import GetOptions

R = TypeVar("R")
log = logging.getLogger("mindproject.storage")
# Uploads up to this size are sent in one PUT; larger ones by multipart upload, whose parts are
# this size too, with at most PARTS_IN_FLIGHT uploading at once: memory per upload stays bounded.
PART_BYTES = 8 * 1024 * 1024
PARTS_IN_FLIGHT = 4
# A claimed idempotency key whose version is still missing after this long was abandoned (the
# claim and the version write are two consecutive PUTs; the margin covers clock skew).
STALE_CLAIM_SECONDS = 120
CLAIM_ATTEMPTS = 60  # about 12 s of waiting for a concurrent claimer at most


class UploadAborted(Exception):
    """Handed to obstore in place of the next part, so that it aborts the multipart upload."""


def _store_error(exc: Exception) -> MindProjectError:
    """What the client is told (no endpoint, bucket or key: those go to the log only)."""
    if isinstance(exc, MindProjectError):
        return exc
    log.warning(
        "object storage call failed",
        extra={"error_type": type(exc).__name__, "detail": str(exc)[:2000]},
    )
    return StorageUnavailable("object storage is unavailable; retry later")


@contextlib.contextmanager
def _store_errors() -> Iterator[None]:
    """obstore's failures as StorageUnavailable. A missing object (FileNotFoundError) and a lost
    conditional create (AlreadyExistsError) pass through: callers expect and handle those."""
    try:
        yield
    except (FileNotFoundError, AlreadyExistsError):
        raise
    except (ObstoreError, OSError, RuntimeError) as exc:
        raise _store_error(exc) from exc


class ObjectStorage(Storage):
    def __init__(self, store: Any, prefix: str = "") -> None:
        self._store = store
        self._layout = Layout(prefix.strip("/"))

    async def _call(self, operation: Awaitable[R]) -> R:
        with _store_errors():
            return await operation

    async def _keys(self, prefix: str, offset: str | None, limit: int) -> list[str]:
        """Up to `limit` keys under `prefix` after `offset`, in order, one LIST page at a time."""
        keys: list[str] = []
        with _store_errors():
            stream = obstore.list(self._store, prefix=prefix, offset=offset, chunk_size=limit)
            async for batch in stream:
                keys.extend(meta["path"] for meta in batch)
                if len(keys) >= limit:
                    break
        return keys[:limit]

    # writes --------------------------------------------------------------------------------
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
        chunks = source.__aiter__()
        head = bytearray()
        ended = False
        while len(head) <= PART_BYTES:
            try:
                head += await anext(chunks)
            except StopAsyncIteration:
                ended = True
                break
        blob = None
        if not ended:
            blob = self._layout.blob_key(device_id, version)
            await self._put_large(blob, bytes(head), chunks)
        info = UploadInfo(device_id, version, source.size, source.sha256, filename, content_type)
        try:
            if idempotency_key is not None:
                earlier = await self._claim_key(device_id, idempotency_key, version)
                if earlier is not None:
                    if blob is not None:
                        await self._forget(blob)
                    return earlier
            await self._mark_device(device_id)
            # The version object makes the upload visible: inline bytes, or empty (see blobs/).
            key, body = (
                (self._layout.upload_key(info, INLINE, idempotency_key), bytes(head))
                if blob is None
                else (self._layout.upload_key(info, BLOB, idempotency_key), b"")
            )
            await self._call(obstore.put_async(self._store, key, body))
        except BaseException:
            if blob is not None:
                await self._forget(blob)
            raise
        return info

    async def _claim_key(self, device_id: str, key: str, version: str) -> UploadInfo | None:
        """Make `key` name `version`, unless it names a version that still exists: return that.

        A conditional create (If-None-Match: *) makes one of several concurrent claims win. The
        winner writes its version object right after claiming, so a key naming a version not
        there yet is waited for; only a key older than STALE_CLAIM_SECONDS whose version is gone
        (deleted, or a crash between claim and write) is removed and claimed anew. (Two retries
        racing to take over such a stale key could both win: S3-compatible servers without
        If-Match on PUT, such as Ceph 16, leave no cheaper way to prevent it.)
        """
        path = self._layout.idempotency_key(device_id, key)
        for attempt in range(CLAIM_ATTEMPTS):
            try:
                await self._call(
                    obstore.put_async(self._store, path, version.encode(), mode="create")
                )
                return None
            except AlreadyExistsError:
                pass
            try:
                result = await self._call(obstore.get_async(self._store, path))
                earlier = bytes(await self._call(result.bytes_async())).decode()
            except FileNotFoundError:
                continue  # deleted meanwhile: try to create it again
            try:
                return await self.get(device_id, check_version_id(earlier))
            except (UploadNotFound, InvalidVersionId):
                age = datetime.now(UTC) - result.meta["last_modified"]
                if age.total_seconds() > STALE_CLAIM_SECONDS:
                    await self._call(obstore.delete_async(self._store, path))
                else:  # its claimer is writing the version now
                    await asyncio.sleep(min(0.02 * (attempt + 1), 0.25))
        raise StorageUnavailable("could not settle an idempotency key under contention")

    async def find_by_key(self, device_id: str, idempotency_key: str) -> UploadInfo | None:
        path = self._layout.idempotency_key(device_id, idempotency_key)
        try:
            result = await self._call(obstore.get_async(self._store, path))
            earlier = bytes(await self._call(result.bytes_async())).decode()
            return await self.get(device_id, check_version_id(earlier))
        except (FileNotFoundError, UploadNotFound, InvalidVersionId):
            return None

    async def _mark_device(self, device_id: str) -> None:
        marker = self._layout.device_marker(device_id)
        await self._call(obstore.put_async(self._store, marker, b""))

    async def _put_large(self, key: str, head: bytes, rest: AsyncIterator[bytes]) -> None:
        """Multipart upload of `head` + `rest`, aborted (no leftover parts) whatever happens.

        obstore aborts the multipart upload when the iterator it reads raises, but not when the
        task awaiting it is cancelled (e.g. a forced shutdown). So the source is pumped through a
        queue by a task of our own, and on cancellation the queue hands obstore an error instead.
        """
        queue: asyncio.Queue[bytes | BaseException | None] = asyncio.Queue(maxsize=2)
        failure: list[BaseException] = []

        async def pump() -> None:
            try:
                async for chunk in rest:
                    await queue.put(chunk)
                await queue.put(None)
            except Exception as exc:  # the source's own errors: size limit, checksum, client gone
                failure.append(exc)
                await queue.put(exc)

        async def parts() -> AsyncIterator[bytes]:
            yield head
            while (item := await queue.get()) is not None:
                if isinstance(item, BaseException):
                    raise item
                yield item

        pumping = asyncio.ensure_future(pump())
        putting = asyncio.ensure_future(
            obstore.put_async(
                self._store, key, parts(), chunk_size=PART_BYTES, max_concurrency=PARTS_IN_FLIGHT
            )
        )
        try:
            await asyncio.shield(putting)
        except asyncio.CancelledError:
            pumping.cancel()
            while not queue.empty():
                queue.get_nowait()
            queue.put_nowait(UploadAborted("upload cancelled"))
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(putting, timeout=30)  # let obstore abort the upload
            await self._forget(key)
            raise
        except BaseException as exc:
            pumping.cancel()
            await self._forget(key)
            if failure:
                raise failure[0] from None
            if isinstance(exc, ObstoreError | OSError | RuntimeError):
                raise _store_error(exc) from exc
            raise
        finally:
            pumping.cancel()

    async def _forget(self, key: str) -> None:
        """Best-effort removal of a half-written object (shielded: runs even when cancelled)."""
        with contextlib.suppress(Exception):
            await asyncio.shield(obstore.delete_async(self._store, key))

    async def delete_device(self, device_id: str) -> int:
        uploads_dir = self._layout.uploads_dir(device_id)
        deleted = 0
        while True:
            keys = await self._keys(uploads_dir, None, 1000)
            if not keys:
                break
            await self._delete_versions(keys)
            deleted += len(keys)
        if not deleted:
            raise DeviceNotFound(f"no uploads for device {device_id}")
        while stale := await self._keys(self._layout.idempotency_dir(device_id), None, 1000):
            await self._call(obstore.delete_async(self._store, stale))
        marker = self._layout.device_marker(device_id)
        await self._call(obstore.delete_async(self._store, marker))
        # An upload may have landed meanwhile: it keeps its device listed.
        if await self._keys(uploads_dir, None, 1):
            await self._call(obstore.put_async(self._store, marker, b""))
        return deleted

    async def delete_upload(self, device_id: str, version: str) -> None:
        key, _ = await self._find(device_id, version)
        await self._delete_versions([key])
        if not await self._keys(self._layout.uploads_dir(device_id), None, 1):
            marker = self._layout.device_marker(device_id)
            await self._call(obstore.delete_async(self._store, marker))
            if await self._keys(self._layout.uploads_dir(device_id), None, 1):
                await self._call(obstore.put_async(self._store, marker, b""))

    async def _delete_versions(self, keys: list[str]) -> None:
        # The version object goes first: once it is gone the version is invisible.
        await self._call(obstore.delete_async(self._store, keys))
        leftovers = []  # blobs, and idempotency keys that named these versions
        for key in keys:
            info, kind, idempotency_key = self._layout.parse_upload_key(key)
            if kind == BLOB:
                leftovers.append(self._layout.blob_key(info.device_id, info.version))
            if idempotency_key is not None:
                leftovers.append(self._layout.idempotency_key(info.device_id, idempotency_key))
        if leftovers:
            await self._call(obstore.delete_async(self._store, leftovers))

    # reads ---------------------------------------------------------------------------------
    async def _find(self, device_id: str, version: str) -> tuple[str, UploadInfo]:
        uploads_dir = self._layout.uploads_dir(device_id)
        keys = await self._keys(uploads_dir, self._layout.upload_offset(device_id, version), 1)
        if keys:
            info = self._layout.parse_upload_key(keys[0]).info
            if info.version == version:
                return keys[0], info
        raise UploadNotFound(f"device {device_id} has no upload {version}")

    async def latest(self, device_id: str) -> UploadInfo:
        keys = await self._keys(self._layout.uploads_dir(device_id), None, 1)
        if not keys:
            raise DeviceNotFound(f"no uploads for device {device_id}")
        return self._layout.parse_upload_key(keys[0]).info

    async def get(self, device_id: str, version: str) -> UploadInfo:
        return (await self._find(device_id, version))[1]

    async def list_devices(self, *, prefix: str, after: str | None, limit: int) -> Page[str]:
        devices_dir = self._layout.devices_dir
        offset = device_list_offset(devices_dir, prefix, after)
        keys = await self._keys(devices_dir, offset, limit + 1)
        ids = [key.rpartition("/")[2] for key in keys]
        ids = [device for device in ids if device.startswith(prefix)]
        return Page(ids[:limit], ids[limit - 1] if len(ids) > limit else None)

    async def list_uploads(
        self, device_id: str, *, after: str | None, limit: int
    ) -> Page[UploadInfo]:
        uploads_dir = self._layout.uploads_dir(device_id)
        offset = self._layout.upload_offset_after(device_id, after) if after else None
        keys = await self._keys(uploads_dir, offset, limit + 1)
        if not keys and after is None:
            raise DeviceNotFound(f"no uploads for device {device_id}")
        infos = [self._layout.parse_upload_key(key).info for key in keys]
        return Page(infos[:limit], infos[limit - 1].version if len(infos) > limit else None)

    async def read(
        self, info: UploadInfo, start: int = 0, end: int | None = None
    ) -> AsyncIterator[bytes]:
        end = info.size if end is None else end
        if start >= end:
            return
        key = info.locator or (await self._find(info.device_id, info.version))[1].locator
        assert key is not None
        options: GetOptions = {}
        if start > 0 or end < info.size:
            options["range"] = (start, end)
        try:
            with _store_errors():
                result = await obstore.get_async(self._store, key, options=options)
                async for chunk in result.stream(min_chunk_size=CHUNK_BYTES):
                    yield bytes(chunk)
        except FileNotFoundError:
            raise UploadNotFound(f"device {info.device_id} has no upload {info.version}") from None

    async def list_revocations(self) -> dict[str, float]:
        revoked: dict[str, float] = {}
        for key in await self._keys(self._layout.revocations_dir, None, 100_000):
            device_id, revoked_at = self._layout.parse_revocation_key(key)
            revoked[device_id] = max(revoked_at, revoked.get(device_id, 0.0))
        return revoked

    async def set_revocation(self, device_id: str, revoked_at: float | None) -> None:
        old = await self._keys(self._layout.revocations_of(device_id), None, 1000)
        if revoked_at is not None:
            key = self._layout.revocation_key(device_id, revoked_at)
            await self._call(obstore.put_async(self._store, key, b""))
            old = [k for k in old if k != key]
        if old:
            await self._call(obstore.delete_async(self._store, old))

    # resumable uploads: being implemented (issue 10); placeholders keep the class whole -------
    async def create_resumable(self, upload: ResumableUpload, *, max_per_device: int) -> None:
        raise NotImplementedError

    async def resumable(self, device_id: str, upload_id: str) -> ResumableUpload:
        raise NotImplementedError

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
        raise NotImplementedError

    async def delete_resumable(self, device_id: str, upload_id: str) -> None:
        raise NotImplementedError

    async def remove_expired_resumable(self, now: float) -> int:
        return 0

    async def check(self) -> None:
        # A one-key LIST under our prefix: it needs only the permissions the service has anyway
        # (a HEAD of a missing key is a 403, not a 404, when ListBucket is limited by prefix).
        await self._keys(self._layout.devices_dir, None, 1)
