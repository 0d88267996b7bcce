"""The fleet mode: bytes in S3, index in PostgreSQL (`MINDPROJECT_INDEX`; docs/storage.md).

Small uploads are group-committed (segments.py): one segment object in S3 for the whole batch,
then one PostgreSQL transaction indexing all of them, then each upload is acknowledged. Larger
ones get an object each (ObjectStorage's multipart path), indexed the same way. Resumable and
direct uploads reuse ObjectStorage's machinery (their state stays in S3); only the moment a
version becomes visible differs: a row in PostgreSQL instead of a version object
(`ObjectStorage._publish`). Reads are one index lookup and one (ranged) GET.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import obstore

from mindproject.errors import BadRequest, DeviceNotFound, StorageUnavailable, UploadNotFound
from mindproject.identifiers import VERSION_EPOCH
from mindproject.storage.base import (
    CHUNK_BYTES,
    ActivityBucket,
    DeviceSummary,
    FleetSummary,
    Page,
    UploadInfo,
)
from mindproject.storage.layout import Layout
from mindproject.storage.objectstore import STALE_APPEND_SECONDS, ObjectStorage, _store_errors
from mindproject.storage.pg_index import PgIndex, Row, locator, parse_locator, time_cursor
from mindproject.storage.segments import PendingUpload, SegmentBatcher

if TYPE_CHECKING:
    from obstore import GetOptions, ObjectMeta

KiB = 1024
MiB = 1024 * KiB
DEFAULT_WINDOW_SECONDS = 0.05
DEFAULT_SEGMENT_MAX_BYTES = 8 * MiB
DEFAULT_SEGMENT_MAX_UPLOAD_BYTES = 256 * KiB


def uploaded_at(version: str) -> float:
    """Epoch seconds a version id carries (identifiers.new_version_id)."""
    return (VERSION_EPOCH - int(version[:16])) / 1_000_000


class IndexedStorage(ObjectStorage):
    def __init__(
        self,
        store: Any,
        prefix: str,
        index: PgIndex,
        *,
        segment_window_seconds: float = DEFAULT_WINDOW_SECONDS,
        segment_max_bytes: int = DEFAULT_SEGMENT_MAX_BYTES,
        segment_max_upload_bytes: int = DEFAULT_SEGMENT_MAX_UPLOAD_BYTES,
        takeover_seconds: float = STALE_APPEND_SECONDS,
    ) -> None:
        super().__init__(store, prefix, takeover_seconds=takeover_seconds)
        self.index = index
        self._max_small = segment_max_upload_bytes
        self.batcher = SegmentBatcher(
            self._write_segment, window_seconds=segment_window_seconds, max_bytes=segment_max_bytes
        )

    @property
    def layout(self) -> Layout:
        return self._layout

    # writes --------------------------------------------------------------------------------
    def _blob_key(self, device_id: str, version: str) -> str:
        # Named by the version, so a resumable completion redone by another replica writes the
        # same key; under the version's hour, so the orphan sweep finds it.
        return self._layout.segment_key(uploaded_at(version), f"v{version}.{device_id}")

    async def _publish(
        self, info: UploadInfo, blob: str | None, body: bytes, idempotency_key: str | None
    ) -> UploadInfo:
        if blob is None and len(body) <= self._max_small:
            return await self.batcher.submit(PendingUpload(info, body, idempotency_key))
        if blob is None:
            blob = self._blob_key(info.device_id, info.version)
            await self.put_object(blob, body)
        row = Row(info, idempotency_key, None, uploaded_at(info.version))
        inserted = await self.index.commit_object(blob, info.size, [row], time.time())
        if inserted:
            return replace(info, locator=blob)
        # The key names an earlier version (this object stays unused: its segment row counts
        # no live bytes, and the compactor removes it), or this very version was indexed by a
        # completion done twice.
        return await self._standing(info, idempotency_key)

    async def _drop_unpublished(self, blob: str) -> None:
        # Kept: the index may hold it (a commit whose answer was lost). Under segments/, the
        # orphan sweep removes it after the grace period if the index does not know it.
        return

    async def _standing(self, info: UploadInfo, idempotency_key: str | None) -> UploadInfo:
        if idempotency_key is not None:
            earlier = await self.index.find_by_key(info.device_id, idempotency_key)
        else:
            earlier = await self.index.get(info.device_id, info.version)
        if earlier is None:  # deleted again in the instant between: the caller may retry
            raise StorageUnavailable("the upload raced a delete of its idempotency key; retry")
        return earlier

    async def _write_segment(self, batch: Sequence[PendingUpload]) -> list[UploadInfo | Exception]:
        """One PUT of every upload's bytes, then one transaction indexing them all. A failure of
        either fails the whole batch. A segment whose commit failed is not removed here (the
        commit may have happened with its answer lost): the orphan sweep removes it once the
        index does not know it."""
        now = time.time()
        name = time.strftime("%Y%m%dT%H%M%S", time.gmtime(now)) + "-" + secrets.token_hex(8)
        key = self._layout.segment_key(now, name)
        rows = []
        offset = 0
        for upload in batch:
            rows.append(
                Row(upload.info, upload.idempotency_key, offset, uploaded_at(upload.info.version))
            )
            offset += len(upload.data)
        await self.put_object(key, b"".join(upload.data for upload in batch))
        inserted = await self.index.commit_object(key, offset, rows, now)
        results: list[UploadInfo | Exception] = []
        for row in rows:
            info = row.info
            if (info.device_id, info.version) in inserted:
                results.append(replace(info, locator=locator(key, row.offset)))
                continue
            try:  # lost to an earlier version of its idempotency key: that one stands
                results.append(await self._standing(info, row.idempotency_key))
            except StorageUnavailable as exc:  # this upload's answer only; the others stand
                results.append(exc)
        return results

    async def close(self) -> None:
        await self.batcher.close()
        await self.index.close()
        await super().close()

    async def delete_upload(self, device_id: str, version: str) -> None:
        # The bytes stay in their segment until the compactor rewrites it (docs/storage.md).
        if not await self.index.delete_version(device_id, version):
            raise UploadNotFound(f"device {device_id} has no upload {version}")

    async def delete_device(self, device_id: str) -> int:
        deleted = await self.index.delete_device(device_id)
        if not deleted:
            raise DeviceNotFound(f"no uploads for device {device_id}")
        return deleted

    # reads ---------------------------------------------------------------------------------
    async def find_by_key(self, device_id: str, idempotency_key: str) -> UploadInfo | None:
        return await self.index.find_by_key(device_id, idempotency_key)

    async def latest(self, device_id: str) -> UploadInfo:
        info = await self.index.latest(device_id)
        if info is None:
            raise DeviceNotFound(f"no uploads for device {device_id}")
        return info

    async def get(self, device_id: str, version: str) -> UploadInfo:
        info = await self.index.get(device_id, version)
        if info is None:
            raise UploadNotFound(f"device {device_id} has no upload {version}")
        return info

    async def list_devices(self, *, prefix: str, after: str | None, limit: int) -> Page[str]:
        ids = await self.index.list_devices(prefix, after, limit + 1)
        return Page(ids[:limit], ids[limit - 1] if len(ids) > limit else None)

    async def list_uploads(
        self, device_id: str, *, after: str | None, limit: int
    ) -> Page[UploadInfo]:
        infos = await self.index.list_uploads(device_id, after, limit + 1)
        if not infos and after is None:
            raise DeviceNotFound(f"no uploads for device {device_id}")
        return Page(infos[:limit], infos[limit - 1].version if len(infos) > limit else None)

    async def read(
        self, info: UploadInfo, start: int = 0, end: int | None = None
    ) -> AsyncIterator[bytes]:
        end = info.size if end is None else end
        if start >= end:
            return
        where = info.locator or (await self.get(info.device_id, info.version)).locator
        assert where is not None
        for attempt in range(2):
            key, offset = parse_locator(where)
            options: GetOptions = {}
            if offset is not None or start > 0 or end < info.size:
                base = offset or 0
                options["range"] = (base + start, base + end)
            try:
                with _store_errors():
                    result = await obstore.get_async(self._store, key, options=options)
            except FileNotFoundError:
                # The compactor moved the version and removed its old segment after the grace
                # period: look it up once more.
                fresh = await self.index.get(info.device_id, info.version)
                if attempt or fresh is None or fresh.locator == where:
                    raise UploadNotFound(
                        f"device {info.device_id} has no upload {info.version}"
                    ) from None
                assert fresh.locator is not None
                where = fresh.locator
                continue
            with _store_errors():
                async for chunk in result.stream(min_chunk_size=CHUNK_BYTES):
                    yield bytes(chunk)
            return

    async def list_revocations(self) -> dict[str, float]:
        return await self.index.list_revocations()

    async def set_revocation(self, device_id: str, revoked_at: float | None) -> None:
        await self.index.set_revocation(device_id, revoked_at)

    async def check(self) -> None:
        await self.index.check()
        await super().check()

    # fleet view ----------------------------------------------------------------------------
    async def fleet_devices(
        self,
        *,
        prefix: str,
        after: str | None,
        limit: int,
        sort: str,
        silent_before: float | None,
    ) -> Page[DeviceSummary]:
        if sort not in ("device_id", "last_upload_at"):
            raise BadRequest(f"unknown sort {sort!r}: device_id or last_upload_at")
        if sort == "last_upload_at" and after is not None:
            micros, slash, _ = after.partition("/")
            if not (slash and micros.isascii() and micros.isdigit()):
                raise BadRequest("malformed cursor")
        rows = await self.index.fleet_devices(
            prefix=prefix, after=after, limit=limit + 1, sort=sort, silent_before=silent_before
        )
        last = None
        if len(rows) > limit:
            edge = rows[limit - 1]
            last = edge.device_id if sort == "device_id" else time_cursor(edge)
        return Page(rows[:limit], last)

    async def fleet_summary(self, *, now: float, silent_before: float) -> FleetSummary:
        return await self.index.fleet_summary(now=now, silent_before=silent_before)

    async def device_activity(
        self, device_id: str, *, bucket_seconds: int, start: float, end: float
    ) -> list[ActivityBucket]:
        if bucket_seconds <= 0:
            raise BadRequest("the bucket width must be positive")
        buckets = await self.index.device_activity(
            device_id, bucket_seconds=bucket_seconds, start=start, end=end
        )
        if buckets is None:
            raise DeviceNotFound(f"no uploads for device {device_id}")
        return buckets

    # objects, for the compactor ------------------------------------------------------------
    async def put_object(self, key: str, body: bytes) -> None:
        try:
            await self._call(obstore.put_async(self._store, key, body))
        except FileNotFoundError as exc:  # no such bucket: the store is not usable
            raise StorageUnavailable("object storage is unavailable; retry later") from exc

    async def get_object(self, key: str) -> bytes:
        return await self._get_bytes(key)

    async def delete_objects(self, keys: Sequence[str]) -> None:
        for start in range(0, len(keys), 1000):
            await self._call(obstore.delete_async(self._store, list(keys[start : start + 1000])))

    async def segment_objects(self, since: float, before: float) -> list[ObjectMeta]:
        """Objects under segments/ made in the hours from `since` on, and last modified before
        `before` (one LIST walk from that hour; hours are in key order)."""
        start = self._layout.segments_hour(since)
        found, _ = await self.segment_walk(start, self._layout.segments_hour(before) + "~", before)
        return found

    async def segment_walk(
        self, start_after: str, stop: str, before: float, limit: int | None = None
    ) -> tuple[list[ObjectMeta], str | None]:
        """Objects under segments/ with keys after `start_after` up to `stop`, last modified
        before `before`, listing `limit` objects at most: (those found, the last key listed
        when the limit cut the walk short, else None)."""
        segments = self._layout.segments_dir + "/"
        found: list[ObjectMeta] = []
        listed = 0
        with _store_errors():
            async for batch in obstore.list(
                self._store, prefix=segments, offset=start_after or None
            ):
                self.requests += 1
                for meta in batch:
                    if meta["path"] > stop:
                        return found, None
                    if meta["last_modified"].timestamp() < before:
                        found.append(meta)
                    listed += 1
                    if limit is not None and listed >= limit:
                        return found, meta["path"]
        return found, None
