"""Object-store backend (S3 and in-memory) over obstore, Rust's object_store for Python.

Chosen by measurement over aiobotocore: see docs/decisions.md. Key layout: `layout.py`.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import logging
import math
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

import obstore
from obstore.exceptions import AlreadyExistsError
from obstore.exceptions import BaseError as ObstoreError
from obstore.store import S3Store

from mindproject.errors import (
    BadRequest,
    ChecksumMismatch,
    DeviceNotFound,
    DirectUploadNotFound,
    DirectUploadNotReceived,
    InvalidVersionId,
    MindProjectError,
    NotSupportedByStorage,
    OffsetMismatch,
    PayloadTooLarge,
    ResumableNotFound,
    SizeMismatch,
    StorageError,
    StorageUnavailable,
    TooManyRequests,
    UploadBusy,
    UploadNotFound,
)
from mindproject.identifiers import VERSION_EPOCH, check_version_id, direct_upload_expiry
from mindproject.resumable_hash import ResumableSha256
from mindproject.storage.base import (
    CHUNK_BYTES,
    ActivityBucket,
    DeviceSummary,
    DirectUploadTicket,
    FleetSummary,
    Page,
    ResumableUpload,
    Storage,
    UploadInfo,
    UploadSource,
    activity_buckets,
)
from mindproject.storage.layout import BLOB, INLINE, Layout, device_list_offset

if TYPE_CHECKING:
    from obstore import GetOptions, ObjectMeta

R = TypeVar("R")
log = logging.getLogger("mindproject.storage")
# Uploads up to this size are sent in one PUT; larger ones by multipart upload, whose parts are
# this size too, with at most PARTS_IN_FLIGHT uploading at once: memory per upload stays bounded.
PART_BYTES = 8 * 1024 * 1024
PARTS_IN_FLIGHT = 4
ASSEMBLY_PARTS_IN_FLIGHT = 2
# A claimed idempotency key whose version is still missing after this long was abandoned (the
# claim and the version write are two consecutive PUTs; the margin covers clock skew).
STALE_CLAIM_SECONDS = 120
CLAIM_ATTEMPTS = 60  # about 12 s of waiting for a concurrent claimer at most
# A resumable chunk is stored as pieces of at most this size, each one plain PUT (memory per
# append stays bounded, and no multipart upload can be left behind by a killed replica).
PIECE_BYTES = PART_BYTES
# The default of MINDPROJECT_RESUMABLE_TAKEOVER_SECONDS: a claim older than this was left by a
# replica that died, and is taken over (an append refreshes its claim every quarter of it; the
# margin covers clock skew and slow PUTs).
STALE_APPEND_SECONDS = 60.0
SWEEP_READS_IN_FLIGHT = 16
STATE_HINTS = 10_000  # uploads whose latest state a replica remembers (about 1 KiB each)
DONE = b"done"  # the completion claim's body once the version was written


@dataclass(frozen=True, slots=True)
class _Record:
    """A resumable upload's state after one chunk (or at creation): the JSON of a log record."""

    length: int | None
    offset: int
    filename: str | None
    content_type: str | None
    expected_sha256: str | None
    expires_at: float
    version: str | None  # set in the last chunk's record: the version it becomes
    hash_state: bytes  # ResumableSha256.state() after `offset` bytes
    start: int | None  # where this record's chunk began (None: the creation record)
    nonce: str | None  # names this chunk's data pieces, told apart from a failed attempt's

    def encode(self) -> bytes:
        fields = {
            "length": self.length,
            "offset": self.offset,
            "filename": self.filename,
            "content_type": self.content_type,
            "expected_sha256": self.expected_sha256,
            "expires_at": self.expires_at,
            "version": self.version,
            "hash_state": base64.b64encode(self.hash_state).decode(),
            "start": self.start,
            "nonce": self.nonce,
        }
        return json.dumps(fields, separators=(",", ":")).encode()

    @classmethod
    def decode(cls, raw: bytes) -> _Record:
        fields = json.loads(raw)
        fields["hash_state"] = base64.b64decode(fields["hash_state"])
        return cls(**fields)

    def upload(self, device_id: str, upload_id: str, version: str | None) -> ResumableUpload:
        return ResumableUpload(
            device_id=device_id,
            upload_id=upload_id,
            length=self.length,
            offset=self.offset,
            filename=self.filename,
            content_type=self.content_type,
            expected_sha256=self.expected_sha256,
            expires_at=self.expires_at,
            version=version,
        )


def _check_append(record: _Record, offset: int, length: int | None) -> int | None:
    """Refuse an append that does not fit the state; the upload's length after it."""
    if record.version is not None:
        raise OffsetMismatch("the upload is already complete", offset=record.offset)
    if length is not None and record.length is not None and length != record.length:
        raise BadRequest(f"the upload's length is already {record.length}")
    if offset != record.offset:
        raise OffsetMismatch(
            f"the upload is at offset {record.offset}, not {offset}", offset=record.offset
        )
    new_length = record.length if record.length is not None else length
    if new_length is not None and new_length < offset:
        raise BadRequest(f"length {new_length} is below the upload's offset {offset}")
    return new_length


# A presigned URL is one PUT, and S3 refuses a single PUT beyond 5 GiB (multipart is no option:
# each part would need a URL of its own).
MAX_SINGLE_PUT_BYTES = 5 * 1024**3
# Reading staged bytes back to hash them, hashed off the event loop. Measured on a 2 GiB direct
# upload: 4 MiB chunks raised the server's peak RSS by 31 MiB, 1 MiB chunks by 9-11 MiB, in the
# same time (about 11 s for the copy and the read-back).
VERIFY_CHUNK_BYTES = 1024 * 1024


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
    def __init__(
        self, store: Any, prefix: str = "", *, takeover_seconds: float = STALE_APPEND_SECONDS
    ) -> None:
        self._store = store
        self._layout = Layout(prefix.strip("/"))
        # A claim not refreshed this long was left by a replica that died mid-append.
        self._takeover_seconds = takeover_seconds
        self._claim_refresh_seconds = takeover_seconds / 4
        # Store requests made (each call, each LIST batch; a multipart upload counts once): the
        # figure docs/storage.md quotes per resumable chunk comes from it.
        self.requests = 0
        # Per-replica hints, never trusted alone (see append_resumable and the sweep): the
        # latest state this replica saw of each upload, and records' expires_at.
        self._state_hints: dict[tuple[str, str], _Record] = {}
        self._expiry_hints: dict[str, float] = {}
        # Only S3 stores presign URLs here (obstore's MemoryStore cannot): direct uploads.
        self._presigns = isinstance(store, S3Store)

    async def _call(self, operation: Awaitable[R]) -> R:
        self.requests += 1
        with _store_errors():
            return await operation

    async def _get_bytes(self, key: str) -> bytes:
        """A small object's bytes: one GET (FileNotFoundError if missing)."""
        result = await self._call(obstore.get_async(self._store, key))
        with _store_errors():
            return bytes(await result.bytes_async())

    async def _keys(self, prefix: str, offset: str | None, limit: int) -> list[str]:
        """Up to `limit` keys under `prefix` after `offset`, in order, one LIST page at a time."""
        keys: list[str] = []
        with _store_errors():
            stream = obstore.list(self._store, prefix=prefix, offset=offset, chunk_size=limit)
            async for batch in stream:
                self.requests += 1
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
            blob = self._blob_key(device_id, version)
            await self._put_large(blob, bytes(head), chunks)
        info = UploadInfo(device_id, version, source.size, source.sha256, filename, content_type)
        try:
            return await self._publish(
                info, blob, bytes(head) if blob is None else b"", idempotency_key
            )
        except BaseException:
            if blob is not None:
                await self._drop_unpublished(blob)
            raise

    async def _drop_unpublished(self, blob: str) -> None:
        """A blob whose version could not be published (hook: the fleet mode keeps it for its
        orphan sweep, because a commit whose answer was lost may have indexed it)."""
        await self._forget(blob)

    def _blob_key(self, device_id: str, version: str) -> str:
        """Where the bytes of a version too large for one PUT go (hook: the fleet mode keeps
        its objects under segments/)."""
        return self._layout.blob_key(device_id, version)

    async def _publish(
        self, info: UploadInfo, blob: str | None, body: bytes, idempotency_key: str | None
    ) -> UploadInfo:
        """Make a version visible, its bytes either in `blob` (written already) or `body`.

        Returns the version that stands: `info`, or the earlier one that holds
        `idempotency_key` (then `blob` is removed). The hook where the fleet mode indexes the
        version in PostgreSQL instead of writing a version object (indexed.py).
        """
        if idempotency_key is not None:
            earlier = await self._claim_key(info.device_id, idempotency_key, info.version)
            if earlier is not None:
                if blob is not None:
                    await self._forget(blob)
                return earlier
        await self._mark_device(info.device_id)
        # The version object makes the upload visible: inline bytes, or empty (see blobs/).
        info, key = self._layout.fitting_upload_key(
            info, INLINE if blob is None else BLOB, idempotency_key
        )
        await self._call(obstore.put_async(self._store, key, body))
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

    async def _put_large(
        self,
        key: str,
        head: bytes,
        rest: AsyncIterator[bytes],
        *,
        parts_in_flight: int = PARTS_IN_FLIGHT,
    ) -> None:
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
                self._store, key, parts(), chunk_size=PART_BYTES, max_concurrency=parts_in_flight
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

    # fleet view: only what the key layout answers in a LIST or two. The device markers give ids
    # and the time of each device's last upload (every save writes its marker again); counts,
    # sizes, an order by time and fleet-wide sums would need a walk over every device: 501.
    async def fleet_devices(
        self,
        *,
        prefix: str,
        after: str | None,
        limit: int,
        sort: str,
        silent_before: float | None,
    ) -> Page[DeviceSummary]:
        if sort != "device_id" or silent_before is not None:
            raise NotSupportedByStorage(NEEDS_INDEX)
        devices_dir = self._layout.devices_dir
        offset = device_list_offset(devices_dir, prefix, after)
        metas = await self._metas(devices_dir, offset, limit + 1)
        revoked = await self.list_revocations()
        rows = []
        for meta in metas:
            device_id = meta["path"].rpartition("/")[2]
            if device_id.startswith(prefix):
                rows.append(
                    DeviceSummary(
                        device_id=device_id,
                        last_upload_at=meta["last_modified"].timestamp(),
                        uploads=None,
                        bytes=None,
                        last_size=None,
                        revoked_at=revoked.get(device_id),
                    )
                )
        last = rows[limit - 1].device_id if len(rows) > limit else None
        return Page(rows[:limit], last)

    async def fleet_summary(self, *, now: float, silent_before: float) -> FleetSummary:
        raise NotSupportedByStorage(NEEDS_INDEX)

    async def device_activity(
        self, device_id: str, *, bucket_seconds: int, start: float, end: float
    ) -> list[ActivityBucket]:
        # Version keys sort newest first and start with the version id, which encodes the upload
        # time: the range's versions are one run of keys, read in LIST pages from `end` back.
        first = int(start // bucket_seconds) * bucket_seconds
        uploads_dir = self._layout.uploads_dir(device_id)
        if not await self._keys(uploads_dir, None, 1):
            raise DeviceNotFound(f"no uploads for device {device_id}")
        offset = self._layout.upload_offset(device_id, f"{VERSION_EPOCH - int(end * 1e6):016d}~")
        found: list[tuple[float, int]] = []
        with _store_errors():
            stream = obstore.list(self._store, prefix=uploads_dir, offset=offset, chunk_size=1000)
            async for batch in stream:
                self.requests += 1
                for meta in batch:
                    info = self._layout.parse_upload_key(meta["path"]).info
                    moment = info.uploaded_at.timestamp()
                    if moment < first:
                        break
                    found.append((moment, info.size))
                else:
                    continue
                break
        return activity_buckets(found, bucket_seconds=bucket_seconds, first=first, end=end)

    async def _metas(self, prefix: str, offset: str | None, limit: int) -> list[ObjectMeta]:
        """Like `_keys`, with each object's metadata (its last-modified time)."""
        metas: list[ObjectMeta] = []
        with _store_errors():
            stream = obstore.list(self._store, prefix=prefix, offset=offset, chunk_size=limit)
            async for batch in stream:
                self.requests += 1
                metas.extend(batch)
                if len(metas) >= limit:
                    break
        return metas[:limit]

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

    # resumable uploads (tus) -------------------------------------------------------------------
    # Every replica reads an upload's state from the store; nothing is kept in memory between
    # requests. The commit point of a chunk is the conditional create (If-None-Match) of the log
    # record keyed by the chunk's start offset: of two appends at one offset exactly one can
    # create it, and a record, once created, is never rewritten (Ceph 16 refuses If-Match on PUT,
    # so nothing relies on conditional updates). See docs/storage.md.
    async def create_resumable(self, upload: ResumableUpload, *, max_per_device: int) -> None:
        device_id = upload.device_id
        if max_per_device:
            now = time.time()
            open_ones = [
                record
                for record in await self._device_records(device_id)
                if record.version is None and record.expires_at > now
            ]
            if len(open_ones) >= max_per_device:
                soonest = min(record.expires_at for record in open_ones)
                raise TooManyRequests(
                    f"device {device_id} already has {len(open_ones)} unfinished resumable uploads",
                    retry_after=math.ceil(soonest - now),
                )
        record = _Record(
            length=upload.length,
            offset=0,
            filename=upload.filename,
            content_type=upload.content_type,
            expected_sha256=upload.expected_sha256,
            expires_at=upload.expires_at,
            version=None,
            hash_state=ResumableSha256().state(),
            start=None,
            nonce=None,
        )
        key = self._layout.resumable_record(device_id, upload.upload_id, None)
        try:
            await self._call(obstore.put_async(self._store, key, record.encode(), mode="create"))
        except AlreadyExistsError:
            raise BadRequest(f"resumable upload {upload.upload_id} already exists") from None
        self._remember(device_id, upload.upload_id, record)

    async def resumable(self, device_id: str, upload_id: str) -> ResumableUpload:
        record = await self._live_record(device_id, upload_id)
        version = None
        if record.version is not None:
            version = await self._finish(device_id, upload_id, record, wait=False)
        return record.upload(device_id, upload_id, version)

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
        hint = self._state_hints.get((device_id, upload_id))
        if (
            hint is not None
            and hint.version is None
            and hint.offset == offset
            and hint.expires_at > time.time()
        ):
            # This replica's last view of the upload, and the client agrees on the offset: the
            # claim checks it (a claim at `offset` exists once anyone appended there; then the
            # state is read), and the record's conditional create guards the commit anyway.
            record = hint
        else:
            record = await self._live_record(device_id, upload_id)
            if record.version is not None:
                return await self._append_to_finished(device_id, upload_id, record, offset, chunk)
        try:
            _check_append(record, offset, length)
            nonce, record = await self._claim_append(device_id, upload_id, offset, record)
        except MindProjectError:
            self._state_hints.pop((device_id, upload_id), None)
            raise
        pieces: list[str] = []
        # A claim must stay where a record says something happened at `offset` (a length
        # declared there, or the upload removed): a replica appending from its remembered state
        # relies on meeting it, to read the state afresh.
        keep_claim = record.start == offset and record.nonce is None
        try:
            new_length = _check_append(record, offset, length)
            hasher = ResumableSha256(record.hash_state)
            size = await self._store_chunk(
                device_id, upload_id, offset, nonce, chunk, hasher, new_length, pieces
            )
            end = offset + size
            complete = new_length is not None and end == new_length
            if size == 0 and not complete:
                # No bytes: at most a length to declare, in a record of its own (the next
                # chunk's record, at this same offset, sorts before it). Its claim stays: the
                # next append sees the declaration is the latest record and takes it over.
                if new_length == record.length:
                    if not keep_claim:
                        await self._release_claim(device_id, upload_id, offset)
                    return record.upload(device_id, upload_id, None)
                await self._declare_length(device_id, upload_id, record, new_length, expires_at)
                record = replace(record, length=new_length, expires_at=expires_at)
                return record.upload(device_id, upload_id, None)
            sha256 = hasher.hexdigest()
            if complete and record.expected_sha256 and sha256 != record.expected_sha256:
                keep_claim = True
                await self._remove_upload(device_id, upload_id, offset)
                raise ChecksumMismatch(
                    "the sha256 of the uploaded file does not match the declared one"
                )
            new = replace(
                record,
                length=new_length,
                offset=end,
                expires_at=expires_at,
                version=version if complete else None,
                hash_state=hasher.state(),
                start=offset,
                nonce=nonce,
            )
            key = self._layout.resumable_record(device_id, upload_id, offset)
            try:
                await self._call(obstore.put_async(self._store, key, new.encode(), mode="create"))
            except AlreadyExistsError:
                # Another append committed at this offset first: one whose claim was taken over
                # as stale, or one whose claim completion removed (a remembered state gone old).
                latest = await self._latest_record(device_id, upload_id)
                if latest is None:
                    raise ResumableNotFound("no such resumable upload") from None
                raise OffsetMismatch(
                    "another append to this upload was stored first", offset=latest.offset
                ) from None
        except BaseException:
            self._state_hints.pop((device_id, upload_id), None)
            await self._forget_all(pieces)
            if not keep_claim:
                await self._release_claim(device_id, upload_id, offset)
            raise
        self._remember(device_id, upload_id, new)
        finished = None
        if complete:
            finished = await self._finish(device_id, upload_id, new, wait=True)
        # The claim at `offset` stays: offsets only grow, so nobody appends there again (it goes
        # with the upload's other keys), and not deleting it saves a request per chunk.
        return new.upload(device_id, upload_id, finished)

    async def _append_to_finished(
        self, device_id: str, upload_id: str, record: _Record, offset: int, chunk: UploadSource
    ) -> ResumableUpload:
        """Nothing more fits; an empty chunk at the end (a client that lost the last answer)
        learns the upload is done, as the file backend answers."""
        if offset != record.offset:
            raise OffsetMismatch(
                f"the upload is complete at offset {record.offset}", offset=record.offset
            )
        async for data in chunk:
            if data:
                raise PayloadTooLarge("the upload is complete: no more bytes fit")
        version = await self._finish(device_id, upload_id, record, wait=False)
        if version is None:
            raise UploadBusy("the upload is being completed by another request")
        return record.upload(device_id, upload_id, version)

    async def delete_resumable(self, device_id: str, upload_id: str) -> None:
        record = await self._live_record(device_id, upload_id)
        await self._remove_upload(
            device_id, upload_id, record.offset if record.version is None else None
        )

    async def remove_expired_resumable(self, now: float) -> int:
        # One walk over resumable/: each upload's first log key is its latest record. Records
        # are never rewritten, so a record's expiry read in an earlier sweep is still right:
        # only records new since then are read (a hint kept per replica; losing it costs GETs).
        uploads: dict[tuple[str, str], list[ObjectMeta]] = {}
        for meta in await self._all_keys(self._layout.resumable_root + "/"):
            uploads.setdefault(self._layout.parse_resumable_dir(meta["path"]), []).append(meta)
        latest: dict[tuple[str, str], str] = {}
        orphans: list[tuple[str, str]] = []
        for (device_id, upload_id), metas in uploads.items():
            log_dir = self._layout.resumable_log_dir(device_id, upload_id) + "/"
            records = [meta["path"] for meta in metas if meta["path"].startswith(log_dir)]
            tombstone = self._layout.resumable_tombstone(device_id, upload_id)
            if records and records[0] != tombstone:
                latest[(device_id, upload_id)] = records[0]
                continue
            # Removed already (or keys without a record): the keys an append under way may
            # still write, and the tombstone, go once nothing has changed for a while.
            newest = max(meta["last_modified"] for meta in metas)
            if (datetime.now(UTC) - newest).total_seconds() >= self._takeover_seconds:
                orphans.append((device_id, upload_id))
        unknown = [key for key in latest.values() if key not in self._expiry_hints]
        for start in range(0, len(unknown), SWEEP_READS_IN_FLIGHT):
            batch = unknown[start : start + SWEEP_READS_IN_FLIGHT]
            for key, record in zip(
                batch, await asyncio.gather(*(self._read_record(key) for key in batch)), strict=True
            ):
                # A record gone meanwhile belongs to an upload being removed: expired now.
                self._expiry_hints[key] = record.expires_at if record is not None else 0.0
        expired = [upload for upload, key in latest.items() if self._expiry_hints[key] <= now]
        self._expiry_hints = {
            key: self._expiry_hints[key] for upload, key in latest.items() if upload not in expired
        }
        for device_id, upload_id in expired:
            # No claim to add: an expired upload's expiry has passed in every replica's hint too.
            await self._remove_upload(device_id, upload_id, None)
        for device_id, upload_id in orphans:
            await self._delete_under(self._layout.resumable_dir(device_id, upload_id))
        return len(expired)

    # resumable helpers ---------------------------------------------------------------------
    async def _read_record(self, key: str) -> _Record | None:
        try:
            return _Record.decode(await self._get_bytes(key))
        except FileNotFoundError:
            return None

    async def _latest_record(self, device_id: str, upload_id: str) -> _Record | None:
        """The newest log record: the first key under log/ (one LIST and one GET)."""
        log_dir = self._layout.resumable_log_dir(device_id, upload_id)
        for _ in range(3):  # a record removed between the LIST and the GET: look again
            keys = await self._keys(log_dir + "/", None, 1)
            if not keys or keys[0] == self._layout.resumable_tombstone(device_id, upload_id):
                self._state_hints.pop((device_id, upload_id), None)
                return None
            record = await self._read_record(keys[0])
            if record is not None:
                self._remember(device_id, upload_id, record)
                return record
        return None

    def _remember(self, device_id: str, upload_id: str, record: _Record) -> None:
        hints = self._state_hints
        hints.pop((device_id, upload_id), None)
        hints[(device_id, upload_id)] = record
        if len(hints) > STATE_HINTS:
            del hints[next(iter(hints))]  # the least recently seen

    async def _live_record(self, device_id: str, upload_id: str) -> _Record:
        record = await self._latest_record(device_id, upload_id)
        if record is None or record.expires_at <= time.time():
            raise ResumableNotFound("no such resumable upload")
        return record

    async def _device_records(self, device_id: str) -> list[_Record]:
        self.requests += 1
        with _store_errors():
            listed = await obstore.list_with_delimiter_async(
                self._store, prefix=self._layout.resumable_device_dir(device_id) + "/"
            )
        found = await asyncio.gather(
            *(
                self._latest_record(*self._layout.parse_resumable_dir(prefix + "/"))
                for prefix in listed["common_prefixes"]
            )
        )
        return [record for record in found if record is not None]

    async def _declare_length(
        self,
        device_id: str,
        upload_id: str,
        record: _Record,
        length: int | None,
        expires_at: float,
    ) -> None:
        declared = replace(
            record, length=length, expires_at=expires_at, start=record.offset, nonce=None
        )
        key = self._layout.resumable_record(device_id, upload_id, record.offset, declaration=True)
        try:
            await self._call(obstore.put_async(self._store, key, declared.encode(), mode="create"))
        except AlreadyExistsError:
            latest = await self._latest_record(device_id, upload_id)
            if latest is None or latest.length != length:
                raise BadRequest("the upload's length was already declared otherwise") from None

    async def _claim_append(
        self, device_id: str, upload_id: str, offset: int, record: _Record
    ) -> tuple[str, _Record]:
        """Claim `offset` for this append (If-None-Match): UploadBusy while another holds it.

        Returns the claim's nonce and the state to append to. The claim only makes a concurrent
        append fail fast with 423; correctness rests on the record's conditional create. A claim
        not refreshed for the takeover time belongs to a replica that died mid-append, and
        one left by a length declaration (the latest record, at this offset) is done: both are
        taken over.
        """
        key = self._layout.resumable_claim(device_id, upload_id, offset)
        nonce = secrets.token_hex(8)
        wait = 1.0  # seconds until the claim seen may be taken over
        for _ in range(3):
            try:
                await self._call(obstore.put_async(self._store, key, nonce.encode(), mode="create"))
                return nonce, record
            except AlreadyExistsError:
                pass
            try:
                meta = await self._call(obstore.head_async(self._store, key))
            except FileNotFoundError:
                continue  # released meanwhile
            # The state may have moved since `record` was read (or remembered): read it now.
            record = await self._live_record(device_id, upload_id)
            if record.offset != offset or record.version is not None:
                raise OffsetMismatch(
                    f"the upload is at offset {record.offset}, not {offset}", offset=record.offset
                )
            age = (datetime.now(UTC) - meta["last_modified"]).total_seconds()
            declared = record.start == offset and record.nonce is None
            if age <= self._takeover_seconds and not declared:
                wait = self._takeover_seconds - age
                break
            await self._call(obstore.delete_async(self._store, key))
        raise UploadBusy("another request is appending to this upload", retry_after=math.ceil(wait))

    async def _release_claim(self, device_id: str, upload_id: str, offset: int) -> None:
        await self._forget(self._layout.resumable_claim(device_id, upload_id, offset))

    async def _store_chunk(
        self,
        device_id: str,
        upload_id: str,
        offset: int,
        nonce: str,
        chunk: UploadSource,
        hasher: ResumableSha256,
        length: int | None,
        pieces: list[str],
    ) -> int:
        """Stream a chunk into pieces of at most PIECE_BYTES, each one plain PUT; the size.

        Plain PUTs, not a multipart upload: a replica killed mid-chunk leaves only objects
        that listing the upload finds (an unfinished multipart upload would need
        ListMultipartUploads, which obstore does not offer). Keys go into `pieces` as written.
        """
        claim = self._layout.resumable_claim(device_id, upload_id, offset)

        async def flush(data: bytes | memoryview) -> None:
            key = self._layout.resumable_piece(device_id, upload_id, offset, nonce, len(pieces))
            pieces.append(key)
            await self._call(obstore.put_async(self._store, key, data))

        async with self._kept_fresh(claim, nonce.encode()):
            # The received blocks are kept as they are and joined once per piece (no growing
            # buffer to copy): about two pieces' worth of memory at the peak.
            blocks: list[bytes] = []
            buffered = size = 0
            async for data in chunk:
                size += len(data)
                if length is not None and offset + size > length:
                    raise PayloadTooLarge(f"the chunk goes past the upload's length {length}")
                hasher.update(data)
                blocks.append(data)
                buffered += len(data)
                if buffered >= PIECE_BYTES:
                    joined = memoryview(b"".join(blocks))
                    blocks.clear()
                    while len(joined) >= PIECE_BYTES:
                        await flush(joined[:PIECE_BYTES])
                        joined = joined[PIECE_BYTES:]
                    blocks.append(bytes(joined))
                    buffered = len(joined)
                    del joined
            if buffered:
                await flush(b"".join(blocks))
            return size

    @contextlib.asynccontextmanager
    async def _kept_fresh(self, claim: str, body: bytes) -> AsyncIterator[None]:
        """Rewrite `claim` every quarter of the takeover time while the block runs (a slow client's
        chunk, a long assembly), so that no other replica takes it for a dead one's."""

        async def refresh() -> None:
            while True:
                await asyncio.sleep(self._claim_refresh_seconds)
                with contextlib.suppress(MindProjectError):
                    await self._call(obstore.put_async(self._store, claim, body))

        refreshing = asyncio.ensure_future(refresh())
        try:
            yield
        finally:
            refreshing.cancel()
            # Waited for: a late refresh must not bring back a claim released after this.
            await asyncio.wait([refreshing])

    async def _forget_all(self, keys: list[str]) -> None:
        """Best-effort removal of objects (shielded: runs even when cancelled)."""
        if keys:
            with contextlib.suppress(Exception):
                await asyncio.shield(obstore.delete_async(self._store, keys))

    async def _all_keys(self, prefix: str) -> list[ObjectMeta]:
        metas: list[ObjectMeta] = []
        with _store_errors():
            async for batch in obstore.list(self._store, prefix=prefix):
                self.requests += 1
                metas.extend(batch)
        return metas

    async def _remove_upload(self, device_id: str, upload_id: str, offset: int | None) -> None:
        """Remove an upload's bytes and state. Idempotent.

        A tombstone goes first: from then on the upload reads as gone, even if an append under
        way commits a record later. The claims stay, and one is added at the current `offset`
        (when known), so that an append through a replica that still remembers the upload
        (append_resumable's hint) meets a claim, reads the state and is refused. The tombstone
        and claims go with the first sweep that finds the upload quiet for a minute.
        """
        tombstone = self._layout.resumable_tombstone(device_id, upload_id)
        await self._call(obstore.put_async(self._store, tombstone, b""))
        if offset is not None:
            claim = self._layout.resumable_claim(device_id, upload_id, offset)
            await self._call(obstore.put_async(self._store, claim, b""))
        self._state_hints.pop((device_id, upload_id), None)
        claims = self._layout.resumable_claims_dir(device_id, upload_id) + "/"
        await self._delete_under(
            self._layout.resumable_dir(device_id, upload_id),
            keep=lambda key: key == tombstone or key.startswith(claims),
        )

    async def _delete_under(
        self, directory: str, *, keep: Callable[[str], bool] = lambda key: False
    ) -> None:
        while keys := [
            meta["path"] for meta in await self._all_keys(directory + "/") if not keep(meta["path"])
        ]:
            for start in range(0, len(keys), 1000):
                await self._call(obstore.delete_async(self._store, keys[start : start + 1000]))

    async def _committed_pieces(
        self, device_id: str, upload_id: str, length: int
    ) -> list[tuple[str, int]]:
        """The data keys (and sizes) of the committed chunks, in order.

        Pieces left by failed or killed appends share a start offset with a committed chunk but
        not its nonce; only then is that chunk's record read to tell them apart.
        """
        records = await self._all_keys(self._layout.resumable_log_dir(device_id, upload_id) + "/")
        tombstone = self._layout.resumable_tombstone(device_id, upload_id)
        if any(meta["path"] == tombstone for meta in records):
            raise ResumableNotFound("the upload was removed")
        starts = sorted(  # a length declaration shares its offset with the next chunk
            {
                start
                for meta in records
                if (start := self._layout.parse_resumable_record(meta["path"])) is not None
            }
        )
        data = self._layout.resumable_data_dir(device_id, upload_id) + "/"
        groups: dict[int, dict[str, list[tuple[int, str, int]]]] = {}
        for meta in await self._all_keys(data):
            start, nonce, piece = self._layout.parse_resumable_piece(meta["path"])
            groups.setdefault(start, {}).setdefault(nonce, []).append(
                (piece, meta["path"], meta["size"])
            )
        ordered: list[tuple[str, int]] = []
        position = 0
        for start in starts:
            candidates = groups.get(start, {})
            if start != position:
                raise StorageError(f"resumable upload {upload_id}: chunks are not contiguous")
            if not candidates:
                continue  # the zero-byte chunk that declared the length
            if len(candidates) == 1:
                (pieces,) = candidates.values()
            else:
                record = await self._read_record(
                    self._layout.resumable_record(device_id, upload_id, start)
                )
                if record is None or record.nonce not in candidates:
                    raise StorageError(f"resumable upload {upload_id}: a chunk is missing")
                pieces = candidates[record.nonce]
            for _, key, size in sorted(pieces):
                ordered.append((key, size))
                position += size
        if position != length:
            raise StorageError(f"resumable upload {upload_id}: {position} of {length} bytes")
        return ordered

    async def _finish(
        self, device_id: str, upload_id: str, record: _Record, *, wait: bool
    ) -> str | None:
        """Make a complete upload's version exist; its id, or None while another replica does it.

        The last chunk's record says the upload is complete before the version exists, so a
        replica that dies in between leaves work any replica can finish (same keys, same bytes).
        The completion claim then stays, saying DONE: a version deleted since is not rebuilt.
        """
        assert record.version is not None and record.length is not None
        version = record.version
        try:
            await self.get(device_id, version)
            return version
        except UploadNotFound:
            pass
        claim = self._layout.resumable_completion_claim(device_id, upload_id)
        for _ in range(2):
            try:
                await self._call(obstore.put_async(self._store, claim, b"", mode="create"))
                break
            except AlreadyExistsError:
                pass
            try:
                result = await self._call(obstore.get_async(self._store, claim))
                with _store_errors():
                    done = bytes(await result.bytes_async()) == DONE
            except FileNotFoundError:
                continue
            if done:
                return version
            age = (datetime.now(UTC) - result.meta["last_modified"]).total_seconds()
            if age > self._takeover_seconds:
                await self._call(obstore.delete_async(self._store, claim))
                continue
            if not wait:
                return None
            # Another replica began a moment ago (a HEAD right after our commit): assembling
            # twice writes the same keys with the same bytes, and this request can answer.
            break
        try:
            async with self._kept_fresh(claim, b""):
                await self._assemble(device_id, upload_id, record)
        except Exception:
            # Another replica may have finished meanwhile (and removed the pieces we read).
            with contextlib.suppress(MindProjectError):
                await self.get(device_id, version)
                return version
            await self._forget(claim)
            raise
        except BaseException:
            await self._forget(claim)
            raise
        # The bytes now live in the version: drop the pieces and the claims. The records stay
        # (until expiry): the last one tells a client that lost the answer the upload is done,
        # and the older ones keep every committed offset taken, so an append at one of them
        # still fails at its commit whatever a replica believed.
        upload_dir = self._layout.resumable_dir(device_id, upload_id)
        log_dir = self._layout.resumable_log_dir(device_id, upload_id) + "/"
        leftovers = [
            meta["path"]
            for meta in await self._all_keys(upload_dir + "/")
            if not meta["path"].startswith(log_dir) and meta["path"] != claim
        ]
        await self._call(obstore.put_async(self._store, claim, DONE))
        for start in range(0, len(leftovers), 1000):
            await self._forget_all(leftovers[start : start + 1000])
        return version

    async def _assemble(self, device_id: str, upload_id: str, record: _Record) -> None:
        """Write the version of a complete upload from its pieces, streamed (bounded memory)."""
        assert record.version is not None and record.length is not None
        version = record.version
        sha256 = ResumableSha256(record.hash_state).hexdigest()
        pieces = await self._committed_pieces(device_id, upload_id, record.length)
        info = UploadInfo(
            device_id, version, record.length, sha256, record.filename, record.content_type
        )

        async def stream() -> AsyncIterator[bytes]:
            for key, _ in pieces:
                result = await self._call(obstore.get_async(self._store, key))
                with _store_errors():
                    async for data in result.stream(min_chunk_size=CHUNK_BYTES):
                        yield bytes(data)

        if record.length > PART_BYTES:
            # Reading the pieces while writing the parts: half the parts in flight keeps the two
            # together within the memory of one streamed PUT (2 GiB: < 64 MiB, test_streaming).
            blob = self._blob_key(device_id, version)
            await self._put_large(blob, b"", stream(), parts_in_flight=ASSEMBLY_PARTS_IN_FLIGHT)
            await self._publish(info, blob, b"", None)
        else:
            await self._publish(info, None, b"".join([d async for d in stream()]), None)

    async def check(self) -> None:
        # A one-key LIST under our prefix: it needs only the permissions the service has anyway
        # (a HEAD of a missing key is a 403, not a 404, when ListBucket is limited by prefix).
        await self._keys(self._layout.devices_dir, None, 1)

    # direct uploads (presigned PUT straight to S3) ---------------------------------------------
    # The client PUTs to direct/<device>/<id>; what it declared is in direct/<device>/<id>.json,
    # so any replica can complete it. Completion copies the staged bytes (server-side) to the
    # version's blob key *before* verifying them: the presigned URL stays valid until expiry, so
    # bytes verified in the staging key could be replaced before a copy made after verifying.
    # Of two completions of one upload, one version survives: the staging id is claimed as the
    # version's idempotency key, exactly as save() claims an Idempotency-Key.
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
        self._require_presigning()
        if size > MAX_SINGLE_PUT_BYTES:
            raise PayloadTooLarge(
                f"a direct upload is one PUT to S3, at most {MAX_SINGLE_PUT_BYTES} bytes"
            )
        staged = self._layout.direct_staging_key(device_id, staging_id)
        expires_in = timedelta(seconds=max(1.0, expires_at - time.time()))
        url = await self._sign_put(staged, expires_in)
        state = {
            "size": size,
            "sha256": sha256,
            "filename": filename,
            "content_type": content_type,
            "expires_at": expires_at,
        }
        key = self._layout.direct_state_key(device_id, staging_id)
        # A fresh random id: "create" only guards against ever overwriting another upload's state.
        body = json.dumps(state, ensure_ascii=False).encode()
        await self._call(obstore.put_async(self._store, key, body, mode="create"))
        # obstore's signer signs the method, the key and the expiry only: neither Content-Length
        # nor a checksum header can be part of the signature, so completion checks both.
        return DirectUploadTicket(url, "PUT", {"Content-Length": str(size)}, expires_at)

    def _require_presigning(self) -> None:
        if not self._presigns:
            raise NotSupportedByStorage(
                "direct uploads need S3 storage (MINDPROJECT_STORAGE=s3://…): the in-memory "
                "store cannot presign URLs"
            )

    async def _sign_put(self, key: str, expires_in: timedelta) -> str:
        with _store_errors():
            return await obstore.sign_async(self._store, "PUT", key, expires_in)

    async def complete_direct_upload(
        self, device_id: str, staging_id: str, version: str, *, now: float
    ) -> UploadInfo:
        self._require_presigning()
        declared = await self._direct_state(device_id, staging_id, now)
        claim = direct_idempotency_key(staging_id)
        earlier = await self.find_by_key(device_id, claim)
        if earlier is not None:  # completed before: the same version again
            return earlier
        staged = self._layout.direct_staging_key(device_id, staging_id)
        blob = self._blob_key(device_id, version)
        try:
            await self._call(obstore.copy_async(self._store, staged, blob))
        except FileNotFoundError:
            # Nothing staged, or a concurrent completion has just taken it: then it made a version.
            earlier = await self.find_by_key(device_id, claim)
            if earlier is not None:
                return earlier
            raise DirectUploadNotReceived(
                "nothing was uploaded to this direct upload's URL; PUT the bytes, then complete"
            ) from None
        info = UploadInfo(
            device_id,
            version,
            int(declared["size"]),
            str(declared["sha256"]),
            declared.get("filename"),
            declared.get("content_type"),
        )
        try:
            await self._verify(blob, info)
            published = await self._publish(info, blob, b"", claim)
            if published.version != version:  # a concurrent completion won: its version only
                return published
        except (SizeMismatch, ChecksumMismatch):
            # Bytes that are not the declared ones are dropped; the URL stays valid until expiry,
            # so the device may PUT again and complete again.
            await self._forget(blob)
            await self._forget(staged)
            raise
        except BaseException:
            await self._drop_unpublished(blob)
            raise
        await self._forget(staged)
        return info

    async def _direct_state(self, device_id: str, staging_id: str, now: float) -> dict[str, Any]:
        key = self._layout.direct_state_key(device_id, staging_id)
        try:
            result = await self._call(obstore.get_async(self._store, key))
            state: dict[str, Any] = json.loads(bytes(await self._call(result.bytes_async())))
        except FileNotFoundError:
            missing = "no such direct upload (never created, or expired)"
            raise DirectUploadNotFound(missing) from None
        if now >= float(state["expires_at"]):
            raise DirectUploadNotFound("this direct upload has expired; create a new one")
        return state

    async def _verify(self, key: str, declared: UploadInfo) -> None:
        """Size from a HEAD; sha256 by reading the object back, streamed (bounded memory).

        S3 checksums would spare the read, but obstore can neither sign a checksum header into
        the URL nor ask S3 for an object's checksum, and Ceph 16 keeps none.
        """
        meta = await self._call(obstore.head_async(self._store, key))
        if meta["size"] != declared.size:
            raise SizeMismatch(
                f"{meta['size']} bytes were uploaded, {declared.size} were declared; nothing was "
                "stored"
            )
        digest = hashlib.sha256()
        with _store_errors():
            result = await obstore.get_async(self._store, key)
            async for chunk in result.stream(min_chunk_size=VERIFY_CHUNK_BYTES):
                # hashlib releases the GIL: hashing gigabytes does not stall the event loop.
                await asyncio.to_thread(digest.update, chunk)
        if digest.hexdigest() != declared.sha256:
            raise ChecksumMismatch(
                "the uploaded bytes do not match the declared sha256; nothing was stored"
            )

    async def remove_expired_direct_uploads(self, now: float) -> int:
        removed: set[str] = set()
        doomed: list[str] = []
        with _store_errors():
            async for batch in obstore.list(self._store, prefix=self._layout.direct_dir):
                for meta in batch:
                    try:
                        _, staging_id = self._layout.parse_direct_key(meta["path"])
                        expires_at = direct_upload_expiry(staging_id)
                    except ValueError:
                        continue  # not ours: leave it alone
                    if expires_at <= now:
                        doomed.append(meta["path"])
                        removed.add(meta["path"].removesuffix(".json"))
        for start in range(0, len(doomed), 1000):
            await self._call(obstore.delete_async(self._store, doomed[start : start + 1000]))
        return len(removed)


NEEDS_INDEX = (
    "this needs an index of per-device figures, which S3-only storage does not keep: the file "
    "backend (file://) or an index (MINDPROJECT_INDEX) answers it; S3-only answers the device "
    "list sorted by id with each device's last upload time, and a device's activity"
)


def direct_idempotency_key(staging_id: str) -> str:
    """The idempotency key a completed direct upload's version carries: one version per upload."""
    return f"direct-upload:{staging_id}"
