"""Group commit of small uploads: many uploads, one segment object, one index transaction.

Uploads handed to `SegmentBatcher.submit` are gathered until the window closes (timed from the
first upload of a batch) or the batch reaches its byte budget; the batch is then written by the
`write` function given (indexed.py: one S3 PUT of the concatenated bytes, then one PostgreSQL
transaction indexing all of them), and only then does each `submit` return. A failure of the
write fails every upload of the batch. Batches are written concurrently: a slow commit does not
hold back the next window.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from mindproject.errors import StorageUnavailable
from mindproject.storage.base import UploadInfo


@dataclass(slots=True)
class PendingUpload:
    """One small upload waiting for its batch: its record, bytes and idempotency key."""

    info: UploadInfo
    data: bytes
    idempotency_key: str | None
    result: asyncio.Future[UploadInfo] | None = field(default=None, repr=False)


# The outcome of each upload of a batch, in order: its version, or what failed it alone.
WriteBatch = Callable[[Sequence[PendingUpload]], Awaitable[Sequence[UploadInfo | Exception]]]


def _consume(future: asyncio.Future[UploadInfo]) -> None:
    # A waiter cancelled (client gone) leaves its batch's outcome unread: not an error to log.
    if not future.cancelled():
        future.exception()


class SegmentBatcher:
    def __init__(self, write: WriteBatch, *, window_seconds: float, max_bytes: int) -> None:
        self._write = write
        self._window = window_seconds
        self._max_bytes = max_bytes
        self._batch: list[PendingUpload] = []
        self._bytes = 0
        self._timer: asyncio.TimerHandle | None = None
        self._writing: set[asyncio.Task[None]] = set()

    async def submit(self, upload: PendingUpload) -> UploadInfo:
        """Wait until the upload's batch is durable and indexed; the version that stands (an
        earlier one when its idempotency key was taken). A cancelled caller does not cancel the
        batch: the others in it still commit."""
        loop = asyncio.get_running_loop()
        upload.result = loop.create_future()
        upload.result.add_done_callback(_consume)
        if self._batch and self._bytes + len(upload.data) > self._max_bytes:
            self._flush()
        self._batch.append(upload)
        self._bytes += len(upload.data)
        if self._bytes >= self._max_bytes:
            self._flush()
        elif self._timer is None:
            self._timer = loop.call_later(self._window, self._flush)
        return await asyncio.shield(upload.result)

    def _flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        batch, self._batch, self._bytes = self._batch, [], 0
        if batch:
            task = asyncio.ensure_future(self._commit(batch))
            self._writing.add(task)
            task.add_done_callback(self._writing.discard)

    async def _commit(self, batch: list[PendingUpload]) -> None:
        try:
            results = await self._write(batch)
        except BaseException as exc:
            failure = (
                exc
                if isinstance(exc, Exception)
                else StorageUnavailable("the upload was interrupted; retry")
            )
            for upload in batch:
                assert upload.result is not None
                if not upload.result.done():
                    upload.result.set_exception(failure)
            if not isinstance(exc, Exception):
                raise
            return
        for upload, result in zip(batch, results, strict=True):
            assert upload.result is not None
            if upload.result.done():
                continue
            if isinstance(result, Exception):
                upload.result.set_exception(result)
            else:
                upload.result.set_result(result)

    async def close(self) -> None:
        """Write what is gathered now and wait for every batch under way."""
        self._flush()
        if self._writing:
            with contextlib.suppress(Exception):
                await asyncio.gather(*self._writing, return_exceptions=True)
