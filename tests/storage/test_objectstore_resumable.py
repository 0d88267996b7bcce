"""Resumable (tus) uploads on the object-store backends: memory, and S3 on the real Ceph RGW.

Two ObjectStorage instances over one bucket (or one MemoryStore) stand for two replicas: they
share nothing but the store.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import os
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import obstore
import pytest

from mindproject.errors import (
    BadRequest,
    ChecksumMismatch,
    DeviceNotFound,
    OffsetMismatch,
    PayloadTooLarge,
    ResumableNotFound,
    TooManyRequests,
    UploadBusy,
)
from mindproject.identifiers import new_upload_id, new_version_id
from mindproject.storage import open_storage
from mindproject.storage.base import ResumableUpload
from mindproject.storage.objectstore import ObjectStorage
from mindproject.streams import MeasuredStream
from tests.helpers import chunks_of, s3_client
from tests.storage.test_contract import read_all

pytestmark = pytest.mark.anyio

KiB = 1024
MiB = 1024 * 1024
DEVICE = "dev-r"


class Replicas:
    """Makes ObjectStorage instances over one store, and lists what is left in it."""

    def __init__(
        self,
        make: Callable[[], ObjectStorage],
        leftovers: Callable[[], tuple[list[str], int]],
    ) -> None:
        self.make = make
        self._leftovers = leftovers

    async def leftovers(self) -> tuple[list[str], int]:
        """Keys under resumable/, and unfinished multipart uploads (S3 only, else 0)."""
        return self._leftovers()


@pytest.fixture(params=["memory", pytest.param("s3", marks=pytest.mark.s3)])
def replicas(request: pytest.FixtureRequest) -> Iterator[Replicas]:
    if request.param == "memory":
        from obstore.store import MemoryStore

        store = MemoryStore()

        def memory_leftovers() -> tuple[list[str], int]:
            keys = [
                m["path"] for batch in obstore.list(store, prefix="t/resumable/") for m in batch
            ]
            return keys, 0

        yield Replicas(lambda: ObjectStorage(store, "t"), memory_leftovers)
        return
    bucket = request.getfixturevalue("s3_bucket")
    env = request.getfixturevalue("s3_env")
    client = s3_client(env)

    def s3_leftovers() -> tuple[list[str], int]:
        listed = client.list_objects_v2(Bucket=bucket, Prefix="t/resumable/")
        keys = [obj["Key"] for obj in listed.get("Contents", [])]
        multipart = client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
        return keys, len(multipart)

    made: list[ObjectStorage] = []

    def make() -> ObjectStorage:
        storage = open_storage(f"s3://{bucket}/t")
        assert isinstance(storage, ObjectStorage)
        made.append(storage)
        return storage

    yield Replicas(make, s3_leftovers)


def source(data: bytes, size: int = 64 * KiB) -> MeasuredStream:
    return MeasuredStream(chunks_of(data, size), max_bytes=1 << 40)


async def create(
    storage: ObjectStorage,
    length: int | None,
    *,
    sha256: str | None = None,
    expires_in: float = 3600,
) -> ResumableUpload:
    upload = ResumableUpload(
        device_id=DEVICE,
        upload_id=new_upload_id(),
        length=length,
        offset=0,
        filename="log.bin",
        content_type="application/octet-stream",
        expected_sha256=sha256,
        expires_at=time.time() + expires_in,
    )
    await storage.create_resumable(upload, max_per_device=0)
    return upload


async def append(
    storage: ObjectStorage,
    upload: ResumableUpload,
    offset: int,
    data: bytes,
    *,
    length: int | None = None,
    version: str | None = None,
) -> ResumableUpload:
    return await storage.append_resumable(
        upload.device_id,
        upload.upload_id,
        offset,
        source(data),
        length=length,
        expires_at=time.time() + 3600,
        version=version or new_version_id(),
    )


async def upload_in_chunks(
    storage: ObjectStorage, data: bytes, sizes: list[int], *, deferred: bool = False
) -> ResumableUpload:
    upload = await create(storage, None if deferred else len(data))
    offset = 0
    state = upload
    for index, size in enumerate(sizes):
        last = index == len(sizes) - 1
        state = await append(
            storage,
            upload,
            offset,
            data[offset : offset + size],
            length=len(data) if deferred and last else None,
        )
        offset += size
        assert state.offset == offset
        assert state.complete == last
    return state


async def assert_version(storage: ObjectStorage, state: ResumableUpload, data: bytes) -> None:
    assert state.version is not None
    info = await storage.get(DEVICE, state.version)
    assert info.size == len(data)
    assert info.sha256 == hashlib.sha256(data).hexdigest()
    assert info.filename == "log.bin"
    assert (await storage.latest(DEVICE)).version == state.version
    page = await storage.list_uploads(DEVICE, after=None, limit=10)
    assert state.version in [item.version for item in page.items]
    assert hashlib.sha256(await read_all(storage, info)).hexdigest() == info.sha256


async def assert_only_final_record(replicas: Replicas) -> None:
    """After completion: the records and the completion marker, no bytes, no other claim."""
    keys, multipart = await replicas.leftovers()
    assert multipart == 0
    assert keys[0].endswith("/claim/complete"), keys
    assert all("/log/" in key for key in keys[1:]), keys


async def assert_removed(replicas: Replicas, *, raced: bool = False) -> None:
    """A removed upload: its tombstone only (and what a racing append wrote after it), then
    nothing once a sweep finds it quiet."""
    keys, multipart = await replicas.leftovers()
    assert multipart == 0
    assert raced or all(key.endswith("/log/!removed") or "/claim/" in key for key in keys), keys
    assert not any("/data/" in key for key in keys) or raced, keys
    sweeper = replicas.make()
    sweeper._takeover_seconds = -1.0  # every claim counts as left by a dead replica
    assert await sweeper.remove_expired_resumable(time.time()) == 0
    assert await replicas.leftovers() == ([], 0)


@pytest.mark.parametrize(
    ("total", "sizes"),
    [
        (1 * MiB + 100, [64 * KiB] * 16 + [100]),
        (4 * MiB + 7, [1 * MiB] * 4 + [7]),
        (13 * MiB, [6 * MiB, 6 * MiB, 1 * MiB]),
        (10 * MiB + 3, [64 * KiB, 6 * MiB, 1 * MiB, 3, 3 * MiB - 64 * KiB]),
    ],
    ids=["64KiB", "1MiB", "6MiB", "mixed"],
)
async def test_chunks_of_any_size_make_the_exact_file(
    replicas: Replicas, total: int, sizes: list[int]
) -> None:
    assert sum(sizes) == total
    storage = replicas.make()
    data = os.urandom(total)
    state = await upload_in_chunks(storage, data, sizes)
    await assert_version(storage, state, data)
    again = await replicas.make().resumable(DEVICE, state.upload_id)
    assert again.complete and again.version == state.version and again.offset == total
    await assert_only_final_record(replicas)


async def test_deferred_length_keeps_a_small_final_chunk(replicas: Replicas) -> None:
    storage = replicas.make()
    data = os.urandom(12 * MiB + 1000)
    state = await upload_in_chunks(storage, data, [6 * MiB, 6 * MiB, 1000], deferred=True)
    await assert_version(storage, state, data)


async def test_deferred_length_declared_by_an_empty_last_chunk(replicas: Replicas) -> None:
    storage = replicas.make()
    data = os.urandom(300 * KiB)
    upload = await create(storage, None)
    state = await append(storage, upload, 0, data)
    assert state.offset == len(data) and state.length is None and not state.complete
    state = await append(storage, upload, len(data), b"", length=len(data))
    assert state.complete
    await assert_version(storage, state, data)


async def test_deferred_length_declared_early_then_enforced(replicas: Replicas) -> None:
    storage = replicas.make()
    upload = await create(storage, None)
    state = await append(storage, upload, 0, b"", length=10)
    assert state.length == 10 and state.offset == 0
    with pytest.raises(BadRequest):
        await append(storage, upload, 0, b"abc", length=11)
    with pytest.raises(PayloadTooLarge):
        await append(storage, upload, 0, b"x" * 11)
    assert (await storage.resumable(DEVICE, upload.upload_id)).offset == 0
    state = await append(storage, upload, 0, b"0123456789")
    assert state.complete


async def test_deferred_length_declared_midway_without_bytes(replicas: Replicas) -> None:
    storage = replicas.make()
    data = os.urandom(9 * MiB + 5)
    upload = await create(storage, None)
    await append(storage, upload, 0, data[: 6 * MiB])
    state = await append(replicas.make(), upload, 6 * MiB, b"", length=len(data))
    assert state.length == len(data) and state.offset == 6 * MiB
    assert (await storage.resumable(DEVICE, upload.upload_id)).length == len(data)
    final = await append(storage, upload, 6 * MiB, data[6 * MiB :])
    await assert_version(storage, final, data)
    await assert_only_final_record(replicas)


async def test_offset_mismatch_says_where_to_resume(replicas: Replicas) -> None:
    storage = replicas.make()
    upload = await create(storage, 100)
    await append(storage, upload, 0, b"a" * 40)
    for wrong in (0, 10, 41, 100):
        with pytest.raises(OffsetMismatch) as caught:
            await append(storage, upload, wrong, b"b" * 10)
        assert caught.value.offset == 40
    assert (await storage.resumable(DEVICE, upload.upload_id)).offset == 40


async def test_a_replica_behind_learns_the_offset_from_the_claim(replicas: Replicas) -> None:
    one, two = replicas.make(), replicas.make()
    upload = await create(one, None)
    await append(one, upload, 0, b"a" * 10)  # one remembers offset 10
    await append(two, upload, 10, b"b" * 10)
    with pytest.raises(OffsetMismatch) as caught:  # a client as far behind as `one`
        await append(one, upload, 10, b"c" * 10)
    assert caught.value.offset == 20
    await append(two, upload, 20, b"", length=25)  # declared through the other replica
    with pytest.raises(BadRequest):
        await append(one, upload, 20, b"d" * 5, length=30)
    final = await append(one, upload, 20, b"d" * 5)
    assert final.complete and final.length == 25
    info = await one.get(DEVICE, final.version or "")
    assert await read_all(one, info) == b"a" * 10 + b"b" * 10 + b"d" * 5


async def test_a_declared_length_survives_a_failed_append_for_replicas_behind(
    replicas: Replicas,
) -> None:
    one, two, three = replicas.make(), replicas.make(), replicas.make()
    upload = await create(one, None)
    await append(one, upload, 0, b"a" * 10)  # one remembers: offset 10, length unknown
    await append(two, upload, 10, b"", length=30)
    gate = Gate(b"x" * 8, fail=True)
    failing = asyncio.ensure_future(
        three.append_resumable(
            DEVICE,
            upload.upload_id,
            10,
            gate.stream(),
            length=None,
            expires_at=time.time() + 3600,
            version=new_version_id(),
        )
    )
    await gate.started.wait()
    gate.release.set()
    with pytest.raises(OSError):
        await failing
    with pytest.raises(BadRequest):  # the length declared through two still holds
        await append(one, upload, 10, b"b" * 10, length=20)
    state = await append(one, upload, 10, b"b" * 20)
    assert state.complete and state.length == 30


async def test_a_replica_behind_a_finished_upload_stores_nothing(replicas: Replicas) -> None:
    one, two = replicas.make(), replicas.make()
    data = os.urandom(3 * MiB)
    upload = await create(one, len(data))
    await append(one, upload, 0, data[: 1 * MiB])  # one remembers offset 1 MiB
    final = await append(two, upload, 1 * MiB, data[1 * MiB :])
    assert final.complete
    with pytest.raises(OffsetMismatch) as caught:
        await append(one, upload, 1 * MiB, os.urandom(2 * MiB))
    assert caught.value.offset == len(data)
    await assert_version(one, final, data)
    await assert_only_final_record(replicas)


async def test_a_large_chunk_is_streamed_in_bounded_memory() -> None:
    import tracemalloc

    from obstore.store import MemoryStore

    storage = ObjectStorage(MemoryStore(), "t")
    total = 64 * MiB
    # Length deferred, so that only the append is measured: while a version is assembled,
    # MemoryStore itself keeps every buffer obstore hands it (S3 sends them on).
    upload = await create(storage, None)
    digest = hashlib.sha256()

    async def generated() -> AsyncIterator[bytes]:
        for _ in range(total // (64 * KiB)):
            block = os.urandom(64 * KiB)
            digest.update(block)
            yield block

    tracemalloc.start()
    try:
        state = await storage.append_resumable(
            DEVICE,
            upload.upload_id,
            0,
            MeasuredStream(generated(), max_bytes=1 << 40),
            length=None,
            expires_at=time.time() + 3600,
            version=new_version_id(),
        )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert state.offset == total
    # About one 8 MiB piece being gathered and one on its way out, not the 64 MiB chunk.
    assert peak < 20 * MiB, peak
    final = await append(storage, upload, total, b"", length=total)
    assert final.version is not None
    assert (await storage.get(DEVICE, final.version)).sha256 == digest.hexdigest()


async def test_unknown_upload(replicas: Replicas) -> None:
    storage = replicas.make()
    with pytest.raises(ResumableNotFound):
        await storage.resumable(DEVICE, new_upload_id())
    with pytest.raises(ResumableNotFound):
        await append(storage, await_dummy(), 0, b"x")
    with pytest.raises(ResumableNotFound):
        await storage.delete_resumable(DEVICE, new_upload_id())


def await_dummy() -> ResumableUpload:
    return ResumableUpload(DEVICE, new_upload_id(), 1, 0, None, None, None, time.time() + 60)


class Gate:
    """A chunk source that stops after its first piece until released (or fails there)."""

    def __init__(self, data: bytes, *, fail: bool = False) -> None:
        self.data = data
        self.fail = fail
        self.started = asyncio.Event()
        self.release = asyncio.Event()

    async def chunks(self) -> AsyncIterator[bytes]:
        half = len(self.data) // 2
        yield self.data[:half]
        self.started.set()
        await self.release.wait()
        if self.fail:
            raise OSError("client gone")
        yield self.data[half:]

    def stream(self) -> MeasuredStream:
        return MeasuredStream(self.chunks(), max_bytes=1 << 40)


async def gated_append(storage: ObjectStorage, upload: ResumableUpload, gate: Gate) -> Any:
    return await storage.append_resumable(
        DEVICE,
        upload.upload_id,
        0,
        gate.stream(),
        length=None,
        expires_at=time.time() + 3600,
        version=new_version_id(),
    )


async def test_append_under_way_elsewhere_is_busy(replicas: Replicas) -> None:
    one, two = replicas.make(), replicas.make()
    data = os.urandom(2 * MiB)
    upload = await create(one, len(data) * 2)
    gate = Gate(data)
    first = asyncio.ensure_future(gated_append(one, upload, gate))
    await gate.started.wait()
    with pytest.raises(UploadBusy):
        await append(two, upload, 0, data)
    gate.release.set()
    state = await first
    assert state.offset == len(data)
    final = await append(two, upload, len(data), data)
    await assert_version(two, final, data + data)


async def test_racing_appends_on_two_replicas_store_exactly_one(replicas: Replicas) -> None:
    one, two = replicas.make(), replicas.make()
    a, b = os.urandom(3 * MiB), os.urandom(2 * MiB)
    upload = await create(one, None)
    for _ in range(3):  # a few rounds, each at the current offset
        offset = (await one.resumable(DEVICE, upload.upload_id)).offset
        results = await asyncio.gather(
            append(one, upload, offset, a), append(two, upload, offset, b), return_exceptions=True
        )
        won = [r for r in results if isinstance(r, ResumableUpload)]
        lost = [r for r in results if not isinstance(r, ResumableUpload)]
        assert len(won) == 1, results
        assert all(isinstance(r, UploadBusy | OffsetMismatch) for r in lost), results
    offset = (await two.resumable(DEVICE, upload.upload_id)).offset
    final = await append(two, upload, offset, b"end", length=offset + 3)
    assert final.version is not None
    info = await two.get(DEVICE, final.version)
    body = await read_all(two, info)
    # The file is a sequence of whole chunks, each one of the two candidates, never mixed.
    position = 0
    while position < len(body) - 3:
        piece = a if body[position : position + len(a)] == a else b
        assert body[position : position + len(piece)] == piece
        position += len(piece)
    assert body[position:] == b"end"
    assert info.sha256 == hashlib.sha256(body).hexdigest()
    await assert_only_final_record(replicas)


async def test_failed_append_moves_nothing_and_leaves_nothing(replicas: Replicas) -> None:
    storage = replicas.make()
    data = os.urandom(10 * MiB)
    upload = await create(storage, len(data))
    await append(storage, upload, 0, data[: 1 * MiB])
    gate = Gate(os.urandom(9 * MiB), fail=True)  # past one 8 MiB piece before failing
    failing = asyncio.ensure_future(
        storage.append_resumable(
            DEVICE,
            upload.upload_id,
            1 * MiB,
            gate.stream(),
            length=None,
            expires_at=time.time() + 3600,
            version=new_version_id(),
        )
    )
    await gate.started.wait()
    gate.release.set()
    with pytest.raises(OSError):
        await failing
    assert (await storage.resumable(DEVICE, upload.upload_id)).offset == 1 * MiB
    final = await append(replicas.make(), upload, 1 * MiB, data[1 * MiB :])
    await assert_version(storage, final, data)
    await assert_only_final_record(replicas)


async def test_killed_append_is_resumed_by_another_replica(replicas: Replicas) -> None:
    one, two = replicas.make(), replicas.make()
    data = os.urandom(20 * MiB)
    upload = await create(one, len(data))
    await append(one, upload, 0, data[: 5 * MiB])
    gate = Gate(data[5 * MiB :])
    task = asyncio.ensure_future(
        one.append_resumable(
            DEVICE,
            upload.upload_id,
            5 * MiB,
            gate.stream(),
            length=None,
            expires_at=time.time() + 3600,
            version=new_version_id(),
        )
    )
    await gate.started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    offset = (await two.resumable(DEVICE, upload.upload_id)).offset
    assert offset == 5 * MiB
    final = await append(two, upload, offset, data[offset:])
    await assert_version(two, final, data)
    await assert_only_final_record(replicas)


# A replica process that appends a chunk, stalls after its first 8 MiB piece is stored, and
# says so: the test then kills it (SIGKILL), as an orchestrator would a hung replica.
STALLING_REPLICA = """
import asyncio, sys, time
from mindproject.storage import open_storage
from mindproject.streams import MeasuredStream

async def body():
    for _ in range(9):
        yield bytes(range(256)) * 4096  # 1 MiB
    print("stalled", flush=True)
    await asyncio.sleep(3600)

async def main():
    storage = open_storage(sys.argv[1])
    await storage.append_resumable(
        "dev-r", sys.argv[2], int(sys.argv[3]), MeasuredStream(body(), max_bytes=1 << 40),
        length=None, expires_at=time.time() + 3600, version="unused",
    )

asyncio.run(main())
"""


@pytest.mark.s3
async def test_replica_process_killed_mid_chunk(
    s3_env: dict[str, str], s3_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"s3://{s3_bucket}/t"
    storage = open_storage(url)
    assert isinstance(storage, ObjectStorage)
    data = os.urandom(12 * MiB)
    upload = await create(storage, len(data))
    await append(storage, upload, 0, data[: 1 * MiB])
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        STALLING_REPLICA,
        url,
        upload.upload_id,
        str(1 * MiB),
        stdout=asyncio.subprocess.PIPE,
        env={**os.environ, **s3_env},
    )
    try:
        assert child.stdout is not None
        assert await child.stdout.readline() == b"stalled\n"
    finally:
        child.kill()  # SIGKILL: no cleanup runs in the replica
        await child.wait()
    # Another replica: the last durable offset, the dead one's claim still fresh, then stale.
    assert (await storage.resumable(DEVICE, upload.upload_id)).offset == 1 * MiB
    keys, _ = s3_leftovers_of(s3_env, s3_bucket)
    assert any("/data/" in key for key in keys)  # the dead append's 8 MiB piece
    with pytest.raises(UploadBusy) as busy:
        await append(storage, upload, 1 * MiB, data[1 * MiB :])
    # Retry-After: when the claim, unrefreshed, may be taken over (at most the takeover time).
    retry_after = int(busy.value.headers["Retry-After"])
    assert 1 <= retry_after <= math.ceil(storage._takeover_seconds)
    storage._takeover_seconds = -1.0  # time passes: the dead replica's claim is stale
    final = await append(storage, upload, 1 * MiB, data[1 * MiB :])
    assert final.version is not None
    info = await storage.get(DEVICE, final.version)
    assert info.sha256 == hashlib.sha256(data).hexdigest()
    assert await read_all(storage, info) == data
    keys, multipart = s3_leftovers_of(s3_env, s3_bucket)
    assert multipart == 0  # and only the records and the done marker: the dead piece is gone
    assert keys[0].endswith("/claim/complete") and all("/log/" in key for key in keys[1:])


def s3_leftovers_of(env: dict[str, str], bucket: str) -> tuple[list[str], int]:
    client = s3_client(env)
    listed = client.list_objects_v2(Bucket=bucket, Prefix="t/resumable/")
    multipart = client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    return [obj["Key"] for obj in listed.get("Contents", [])], len(multipart)


async def test_a_slow_append_keeps_its_claim_fresh(monkeypatch: pytest.MonkeyPatch) -> None:
    from obstore.store import MemoryStore

    storage = ObjectStorage(MemoryStore(), "t")
    storage._claim_refresh_seconds = 0.001
    upload = await create(storage, 10)
    gate = Gate(b"0123456789")
    appending = asyncio.ensure_future(gated_append(storage, upload, gate))
    await gate.started.wait()
    claim = storage._layout.resumable_claim(DEVICE, upload.upload_id, 0)
    first = (await obstore.head_async(storage._store, claim))["e_tag"]
    for _ in range(1000):  # until the claim has been rewritten (each PUT gives a new e_tag)
        await asyncio.sleep(0.001)
        if (await obstore.head_async(storage._store, claim))["e_tag"] != first:
            break
    else:
        pytest.fail("the claim was never refreshed")
    gate.release.set()
    assert (await appending).complete


async def test_claim_of_a_dead_replica_is_taken_over_when_stale(
    replicas: Replicas, monkeypatch: pytest.MonkeyPatch
) -> None:
    one, two = replicas.make(), replicas.make()
    data = os.urandom(300 * KiB)
    upload = await create(one, len(data))
    # What a replica killed mid-chunk leaves: its claim, and a piece no record names.
    layout = one._layout
    claim = layout.resumable_claim(DEVICE, upload.upload_id, 0)
    piece = layout.resumable_piece(DEVICE, upload.upload_id, 0, "deadbeefdeadbeef", 0)
    await obstore.put_async(one._store, claim, b"deadbeefdeadbeef", mode="create")
    await obstore.put_async(one._store, piece, os.urandom(1000))
    with pytest.raises(UploadBusy):
        await append(two, upload, 0, data)
    two._takeover_seconds = -1.0  # time passes: the dead replica's claim is stale
    final = await append(two, upload, 0, data)
    await assert_version(two, final, data)
    await assert_only_final_record(replicas)


async def test_completion_left_unfinished_is_finished_by_any_replica(replicas: Replicas) -> None:
    one, two = replicas.make(), replicas.make()
    data = os.urandom(9 * MiB)
    upload = await create(one, len(data))

    async def die(*args: object, **kwargs: object) -> None:
        raise OSError("replica killed before the version was written")

    one._assemble = die  # type: ignore[method-assign]
    with pytest.raises(OSError):
        await append(one, upload, 0, data)
    state = await two.resumable(DEVICE, upload.upload_id)
    assert state.offset == len(data)
    await assert_version(two, state, data)
    # The client that lost the answer sends nothing more at the end: it learns it is done.
    again = await append(one, upload, len(data), b"")
    assert again.version == state.version
    with pytest.raises(PayloadTooLarge):
        await append(one, upload, len(data), b"x")
    with pytest.raises(OffsetMismatch):
        await append(one, upload, 0, data)


async def test_finished_upload_whose_version_was_deleted_stays_finished(
    replicas: Replicas,
) -> None:
    storage = replicas.make()
    upload = await create(storage, 3)
    final = await append(storage, upload, 0, b"abc")
    assert final.version is not None
    await storage.delete_upload(DEVICE, final.version)
    state = await replicas.make().resumable(DEVICE, upload.upload_id)
    assert state.complete and state.version == final.version and state.offset == 3
    with pytest.raises(DeviceNotFound):
        await storage.latest(DEVICE)


async def test_declared_sha256_mismatch_keeps_no_version(replicas: Replicas) -> None:
    storage = replicas.make()
    data = os.urandom(1 * MiB)
    upload = await create(storage, len(data), sha256=hashlib.sha256(b"other").hexdigest())
    await append(storage, upload, 0, data[:1000])
    with pytest.raises(ChecksumMismatch):
        await append(storage, upload, 1000, data[1000:])
    with pytest.raises(DeviceNotFound):
        await storage.latest(DEVICE)
    with pytest.raises(ResumableNotFound):
        await storage.resumable(DEVICE, upload.upload_id)
    await assert_removed(replicas)


async def test_declared_sha256_match_is_accepted(replicas: Replicas) -> None:
    storage = replicas.make()
    data = os.urandom(1 * MiB)
    upload = await create(storage, len(data), sha256=hashlib.sha256(data).hexdigest())
    await append(storage, upload, 0, data[:1000])
    final = await append(replicas.make(), upload, 1000, data[1000:])
    await assert_version(storage, final, data)


async def test_delete_leaves_nothing(replicas: Replicas) -> None:
    storage = replicas.make()
    upload = await create(storage, 20 * MiB)
    await append(storage, upload, 0, os.urandom(9 * MiB))
    await replicas.make().delete_resumable(DEVICE, upload.upload_id)
    await assert_removed(replicas)
    with pytest.raises(ResumableNotFound):
        await storage.resumable(DEVICE, upload.upload_id)
    with pytest.raises(ResumableNotFound):
        await append(storage, upload, 9 * MiB, b"x")
    with pytest.raises(ResumableNotFound):
        await storage.delete_resumable(DEVICE, upload.upload_id)


async def test_append_racing_a_delete_does_not_bring_the_upload_back(
    replicas: Replicas,
) -> None:
    one, two = replicas.make(), replicas.make()
    data = os.urandom(1 * MiB)
    upload = await create(one, 2 * len(data))
    gate = Gate(data)
    appending = asyncio.ensure_future(gated_append(one, upload, gate))
    await gate.started.wait()
    await two.delete_resumable(DEVICE, upload.upload_id)
    gate.release.set()
    await appending  # it had the state before the delete: its record lands, behind the tombstone
    with pytest.raises(ResumableNotFound):
        await two.resumable(DEVICE, upload.upload_id)
    with pytest.raises(ResumableNotFound):
        await append(two, upload, len(data), data)
    await assert_removed(replicas, raced=True)


async def assert_removed_later(storage: ObjectStorage) -> None:
    """Tombstones go once the uploads are quiet (now, with no quiet time required)."""
    quiet_after = storage._takeover_seconds
    storage._takeover_seconds = -1.0
    try:
        await storage.remove_expired_resumable(time.time())
    finally:
        storage._takeover_seconds = quiet_after


async def test_a_replica_that_remembers_a_deleted_upload_refuses_appends(
    replicas: Replicas,
) -> None:
    one, two = replicas.make(), replicas.make()
    upload = await create(one, 100)
    await append(one, upload, 0, b"a" * 10)  # one remembers the upload at offset 10
    await append(two, upload, 10, b"b" * 10)
    await append(one, upload, 20, b"c" * 10)
    await two.delete_resumable(DEVICE, upload.upload_id)
    for offset in (30, 20, 10):  # the current offset, and offsets appended before
        with pytest.raises(ResumableNotFound):
            await append(one, upload, offset, b"d" * 10)
    await assert_removed(replicas)


async def test_expired_uploads_are_removed(replicas: Replicas) -> None:
    one, two = replicas.make(), replicas.make()
    stale = await create(one, 10 * MiB)
    await append(one, stale, 0, os.urandom(1 * MiB))
    fresh = await create(one, 10, expires_in=7200)
    done = await create(one, 3)
    await append(one, done, 0, b"abc")
    later = time.time() + 3601  # past the first's and the finished one's expiry, not the second's
    # Two replicas sweeping at once: both succeed, and each removes what it saw expired.
    swept = await asyncio.gather(
        one.remove_expired_resumable(later), two.remove_expired_resumable(later)
    )
    assert all(count <= 2 for count in swept) and sum(swept) >= 2
    assert await one.remove_expired_resumable(later) == 0
    with pytest.raises(ResumableNotFound):
        await one.resumable(DEVICE, stale.upload_id)
    assert (await one.resumable(DEVICE, fresh.upload_id)).offset == 0
    keys, multipart = await replicas.leftovers()
    assert multipart == 0
    assert keys and all(
        f"/{fresh.upload_id}/" in key or "/log/!removed" in key or "/claim/" in key for key in keys
    )
    assert not any("/data/" in key and f"/{fresh.upload_id}/" not in key for key in keys)
    assert (await one.latest(DEVICE)).size == 3  # the finished upload's version stays
    # A later sweep reads no record it has read before (records are never rewritten).
    await assert_removed_later(one)
    before = one.requests
    assert await one.remove_expired_resumable(later) == 0
    assert one.requests - before == 1  # one LIST page
    await append(one, fresh, 0, b"01234")  # a new record: read once, then known
    assert await one.remove_expired_resumable(time.time() + 3599) == 0
    assert await one.remove_expired_resumable(time.time() + 7201) == 1
    await assert_removed(replicas)


async def test_expired_upload_is_not_found(replicas: Replicas) -> None:
    storage = replicas.make()
    upload = await create(storage, 10, expires_in=-1)
    with pytest.raises(ResumableNotFound):
        await storage.resumable(DEVICE, upload.upload_id)
    with pytest.raises(ResumableNotFound):
        await append(storage, upload, 0, b"x")


async def test_unfinished_uploads_per_device_are_capped(replicas: Replicas) -> None:
    storage = replicas.make()
    uploads = []
    for _ in range(3):
        upload = ResumableUpload(
            DEVICE, new_upload_id(), 3, 0, None, None, None, time.time() + 3600
        )
        await storage.create_resumable(upload, max_per_device=3)
        uploads.append(upload)
    extra = ResumableUpload(DEVICE, new_upload_id(), 3, 0, None, None, None, time.time() + 3600)
    with pytest.raises(TooManyRequests):
        await storage.create_resumable(extra, max_per_device=3)
    await storage.create_resumable(
        ResumableUpload("other-device", new_upload_id(), 3, 0, None, None, None, time.time() + 60),
        max_per_device=3,
    )
    await append(storage, uploads[0], 0, b"abc")  # finished ones do not count
    await storage.create_resumable(extra, max_per_device=3)


@pytest.mark.parametrize("chunk", [1 * MiB, 5 * MiB, 8 * MiB])
async def test_store_requests_per_chunk(replicas: Replicas, chunk: int) -> None:
    storage = replicas.make()
    chunks = 4
    upload = await create(storage, chunk * (chunks + 2))  # not completed here
    data = os.urandom(chunk)
    before = storage.requests
    for index in range(chunks):
        await append(storage, upload, index * chunk, data)
    per_chunk = (storage.requests - before) / chunks
    print(f"store requests per {chunk // MiB} MiB chunk: {per_chunk}")
    # PUT the claim, PUT the piece (up to 8 MiB), PUT the record: the state is the one this
    # replica committed last, checked by the claim.
    assert per_chunk == 3
    # Through another replica each time: LIST + GET (the state) first.
    other = replicas.make()
    before = storage.requests + other.requests
    await append(other, upload, chunks * chunk, data[: chunk // 2])
    await append(storage, upload, chunks * chunk + chunk // 2, data[: chunk // 2])
    assert storage.requests + other.requests - before == 2 * 5


class CountingProxy:
    """A TCP relay in front of the S3 server that counts the HTTP requests going through it.

    It only frames requests (head, then Content-Length bytes): signatures stay valid, and what
    is counted is what the server receives, multipart parts included.
    """

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.requests: list[tuple[str, str]] = []
        self.port = 0
        self._server: asyncio.Server | None = None
        self._relays: list[asyncio.Task[None]] = []

    async def __aenter__(self) -> CountingProxy:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in self._relays:
            task.cancel()
        await asyncio.gather(*self._relays, return_exceptions=True)

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._relays.append(task)
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)

        async def answers() -> None:
            while data := await up_reader.read(1 << 16):
                writer.write(data)
                await writer.drain()

        answering = asyncio.ensure_future(answers())
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.split(b"\r\n")
                method, target, _ = lines[0].split(b" ", 2)
                fields = dict(line.split(b":", 1) for line in lines[1:] if b":" in line)
                fields = {name.strip().lower(): value.strip() for name, value in fields.items()}
                assert b"transfer-encoding" not in fields  # framing by Content-Length only
                self.requests.append((method.decode(), target.decode()))
                up_writer.write(head)
                remaining = int(fields.get(b"content-length", b"0"))
                while remaining:
                    data = await reader.read(min(remaining, 1 << 16))
                    if not data:
                        break
                    up_writer.write(data)
                    remaining -= len(data)
                await up_writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            answering.cancel()
            up_writer.close()
            writer.close()


@pytest.mark.s3
async def test_s3_requests_per_chunk_on_the_wire(
    s3_env: dict[str, str], s3_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = int(s3_env["AWS_ENDPOINT_URL"].rsplit(":", 1)[1])
    async with CountingProxy(target) as proxy:
        monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{proxy.port}")
        storage = open_storage(f"s3://{s3_bucket}/t")
        assert isinstance(storage, ObjectStorage)
        chunk, chunks = 5 * MiB, 8
        upload = await create(storage, chunk * chunks)
        data = os.urandom(chunk)
        before = len(proxy.requests)
        for index in range(chunks - 1):
            await append(storage, upload, index * chunk, data)
        middle = len(proxy.requests)
        final = await append(storage, upload, (chunks - 1) * chunk, data)
        after = len(proxy.requests)
    assert final.version is not None
    per_chunk = (middle - before) / (chunks - 1)
    print(
        f"HTTP requests: {per_chunk} per 5 MiB chunk; last chunk and completion "
        f"{after - middle}; {(after - before) / chunks:.2f} per chunk in all: "
        f"{proxy.requests[middle:after]}"
    )
    assert per_chunk == 3  # PUT claim, PUT piece, PUT record (the state as last committed)
    # Completion: LIST (version?), PUT claim, LIST log/ and data/, a GET per piece, the blob's
    # multipart upload (create, 5 parts, complete), marker and version PUTs, LIST, PUT done,
    # one bulk DELETE.
    assert after - middle == 3 + 24
