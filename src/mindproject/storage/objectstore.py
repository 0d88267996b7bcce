"""Object-store backend (S3 and in-memory) over obstore, Rust's object_store for Python.

Chosen by measurement over aiobotocore: see docs/decisions.md. Key layout: `layout.py`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Iterator
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

import obstore
from obstore.exceptions import AlreadyExistsError
from obstore.exceptions import BaseError as ObstoreError
from obstore.store import S3Store

from mindproject.errors import (
    ChecksumMismatch,
    DeviceNotFound,
    DirectUploadNotFound,
    DirectUploadNotReceived,
    InvalidVersionId,
    MindProjectError,
    NotSupportedByStorage,
    PayloadTooLarge,
    SizeMismatch,
    StorageUnavailable,
    UploadNotFound,
)
from mindproject.identifiers import check_version_id, direct_upload_expiry
from mindproject.storage.base import (
    CHUNK_BYTES,
    DirectUploadTicket,
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
    def __init__(self, store: Any, prefix: str = "") -> None:
        self._store = store
        self._layout = Layout(prefix.strip("/"))
        # Only S3 stores presign URLs here (obstore's MemoryStore cannot): direct uploads.
        self._presigns = isinstance(store, S3Store)

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
        blob = self._layout.blob_key(device_id, version)
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
            earlier = await self._claim_key(device_id, claim, version)
            if earlier is not None:  # a concurrent completion won: keep its version only
                await self._forget(blob)
                return earlier
            await self._mark_device(device_id)
            key = self._layout.upload_key(info, BLOB, claim)
            await self._call(obstore.put_async(self._store, key, b""))
        except (SizeMismatch, ChecksumMismatch):
            # Bytes that are not the declared ones are dropped; the URL stays valid until expiry,
            # so the device may PUT again and complete again.
            await self._forget(blob)
            await self._forget(staged)
            raise
        except BaseException:
            await self._forget(blob)
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


def direct_idempotency_key(staging_id: str) -> str:
    """The idempotency key a completed direct upload's version carries: one version per upload."""
    return f"direct-upload:{staging_id}"
