"""The group-commit batcher on its own: windows, byte budgets, failures (no S3, no database)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from mindproject.errors import StorageUnavailable
from mindproject.identifiers import new_version_id
from mindproject.storage.base import UploadInfo
from mindproject.storage.segments import PendingUpload, SegmentBatcher

pytestmark = pytest.mark.anyio


def pending(device: str, size: int) -> PendingUpload:
    info = UploadInfo(device, new_version_id(), size, "0" * 64, None, None)
    return PendingUpload(info, b"x" * size, None)


class Recorder:
    """A write function that records each batch; it fails while `failure` is set."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.failure: Exception | None = None
        self.gate: asyncio.Event | None = None

    async def __call__(self, batch: Sequence[PendingUpload]) -> list[UploadInfo | Exception]:
        if self.gate is not None:
            await self.gate.wait()
        if self.failure is not None:
            raise self.failure
        self.batches.append([upload.info.device_id for upload in batch])
        return [
            StorageUnavailable("this one alone") if upload.info.device_id == "lone" else upload.info
            for upload in batch
        ]


async def test_uploads_in_one_window_share_one_batch() -> None:
    write = Recorder()
    batcher = SegmentBatcher(write, window_seconds=0.05, max_bytes=1 << 20)
    results = await asyncio.gather(*(batcher.submit(pending(f"d{i}", 100)) for i in range(20)))
    assert [r.device_id for r in results] == [f"d{i}" for i in range(20)]
    assert write.batches == [[f"d{i}" for i in range(20)]]


async def test_the_window_closes_a_batch() -> None:
    write = Recorder()
    batcher = SegmentBatcher(write, window_seconds=0.01, max_bytes=1 << 20)
    await batcher.submit(pending("first", 10))
    await batcher.submit(pending("second", 10))
    assert write.batches == [["first"], ["second"]]


async def test_max_bytes_closes_a_batch_before_the_window() -> None:
    write = Recorder()
    # A window no test would wait for: only the byte budget can close these batches.
    batcher = SegmentBatcher(write, window_seconds=3600, max_bytes=1000)
    tasks = [asyncio.create_task(batcher.submit(pending(f"d{i}", 400))) for i in range(5)]
    await asyncio.gather(*tasks[:4])
    # 400 + 400 fit, a third would pass 1000: it opens the next batch.
    assert write.batches == [["d0", "d1"], ["d2", "d3"]]
    assert not tasks[4].done()  # waits for its window (or close())
    await batcher.close()
    assert (await tasks[4]).device_id == "d4"


async def test_an_upload_of_the_budget_alone_goes_at_once() -> None:
    write = Recorder()
    batcher = SegmentBatcher(write, window_seconds=3600, max_bytes=1000)
    await batcher.submit(pending("whole", 1000))
    assert write.batches == [["whole"]]


async def test_a_failed_write_fails_every_upload_of_the_batch() -> None:
    write = Recorder()
    write.failure = StorageUnavailable("object storage is unavailable; retry later")
    batcher = SegmentBatcher(write, window_seconds=0.02, max_bytes=1 << 20)
    results = await asyncio.gather(
        *(batcher.submit(pending(f"d{i}", 10)) for i in range(8)), return_exceptions=True
    )
    assert all(isinstance(r, StorageUnavailable) for r in results), results
    assert write.batches == []  # nothing was recorded: none of them is visible
    write.failure = None
    assert (await batcher.submit(pending("after", 10))).device_id == "after"


async def test_a_cancelled_waiter_does_not_cancel_its_batch() -> None:
    write = Recorder()
    write.gate = asyncio.Event()
    batcher = SegmentBatcher(write, window_seconds=0.01, max_bytes=1 << 20)
    gone = asyncio.create_task(batcher.submit(pending("gone", 10)))
    stays = asyncio.create_task(batcher.submit(pending("stays", 10)))
    await asyncio.sleep(0.05)
    gone.cancel()
    write.gate.set()
    assert (await stays).device_id == "stays"
    with pytest.raises(asyncio.CancelledError):
        await gone
    assert write.batches == [["gone", "stays"]]


async def test_batches_are_written_concurrently() -> None:
    write = Recorder()
    write.gate = asyncio.Event()
    batcher = SegmentBatcher(write, window_seconds=0.01, max_bytes=1 << 20)
    first = asyncio.create_task(batcher.submit(pending("a", 10)))
    await asyncio.sleep(0.05)  # the first batch is being written (held at the gate)
    second = asyncio.create_task(batcher.submit(pending("b", 10)))
    await asyncio.sleep(0.05)
    write.gate.set()
    await asyncio.gather(first, second)
    assert sorted(write.batches) == [["a"], ["b"]]


async def test_close_writes_what_is_gathered() -> None:
    write = Recorder()
    batcher = SegmentBatcher(write, window_seconds=3600, max_bytes=1 << 20)
    waiting = asyncio.create_task(batcher.submit(pending("late", 10)))
    await asyncio.sleep(0)
    await batcher.close()
    assert (await waiting).device_id == "late"


async def test_one_upload_can_fail_alone() -> None:
    write = Recorder()
    batcher = SegmentBatcher(write, window_seconds=0.01, max_bytes=1 << 20)
    results = await asyncio.gather(
        *(batcher.submit(pending(device, 10)) for device in ("a", "lone", "b")),
        return_exceptions=True,
    )
    assert isinstance(results[1], StorageUnavailable)
    assert [r.device_id for r in (results[0], results[2]) if isinstance(r, UploadInfo)] == [
        "a",
        "b",
    ]
