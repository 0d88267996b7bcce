"""One behavioural suite for the storage interface, run against every backend.

memory:// and file:// run everywhere; s3:// runs against the real Ceph RADOS Gateway that the
session starts on loopback (tests/conftest.py), and the fleet mode against it plus a real
PostgreSQL (scripts/postgres.sh) as its index.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from collections.abc import AsyncIterator

import pytest

from mindproject.errors import (
    BadRequest,
    ChecksumMismatch,
    ClientDisconnected,
    DeviceNotFound,
    OffsetMismatch,
    PayloadTooLarge,
    ResumableNotFound,
    TooManyRequests,
    UploadBusy,
    UploadNotFound,
)
from mindproject.identifiers import new_upload_id, new_version_id
from mindproject.storage import Storage, UploadInfo, open_storage
from mindproject.storage.base import ResumableUpload
from mindproject.streams import ExpectedDigests, MeasuredStream
from tests.helpers import measured

pytestmark = pytest.mark.anyio


async def save(
    storage: Storage, device: str, data: bytes, *, key: str | None = None, **kwargs: object
) -> UploadInfo:
    return await storage.save(
        device,
        new_version_id(),
        measured(data, **kwargs),
        filename="t.bin",
        content_type="application/octet-stream",
        idempotency_key=key,
    )


async def read_all(
    storage: Storage, info: UploadInfo, start: int = 0, end: int | None = None
) -> bytes:
    return b"".join([chunk async for chunk in storage.read(info, start, end)])


@pytest.fixture
async def storage(storage_url: str, storage_index: str | None) -> AsyncIterator[Storage]:
    # A short group-commit window in the fleet mode: these tests mostly save one at a time.
    backend = open_storage(storage_url, index=storage_index, segment_window_ms=5)
    try:
        yield backend
    finally:
        await backend.close()


async def test_save_then_read_back(storage: Storage) -> None:
    data = os.urandom(300_000)
    info = await save(storage, "dev-1", data)
    assert info.size == len(data)
    assert info.sha256 == hashlib.sha256(data).hexdigest()
    assert await read_all(storage, info) == data
    latest = await storage.latest("dev-1")
    assert latest == info
    assert await storage.get("dev-1", info.version) == info
    assert latest.filename == "t.bin"


async def test_empty_upload_is_a_version(storage: Storage) -> None:
    info = await save(storage, "empty", b"")
    assert info.size == 0
    assert await read_all(storage, info) == b""


async def test_large_upload_streams_through(storage: Storage) -> None:
    # Larger than one S3 part (8 MiB), so the object-store backend takes its multipart path.
    data = os.urandom(20 * 1024 * 1024 + 17)
    info = await save(storage, "big", data)
    assert info.sha256 == hashlib.sha256(data).hexdigest()
    assert hashlib.sha256(await read_all(storage, info)).hexdigest() == info.sha256
    assert (
        await read_all(storage, info, 9 * 1024 * 1024, 9 * 1024 * 1024 + 10)
        == data[9 * 1024 * 1024 : 9 * 1024 * 1024 + 10]
    )


async def test_byte_ranges(storage: Storage) -> None:
    data = bytes(range(256)) * 40
    info = await save(storage, "ranges", data)
    assert await read_all(storage, info, 10, 20) == data[10:20]
    assert await read_all(storage, info, len(data) - 5) == data[-5:]


async def test_latest_is_newest_and_history_is_newest_first(storage: Storage) -> None:
    infos = [await save(storage, "hist", f"v{i}".encode()) for i in range(5)]
    assert (await storage.latest("hist")).version == infos[-1].version
    page = await storage.list_uploads("hist", after=None, limit=3)
    assert [i.version for i in page.items] == [i.version for i in reversed(infos)][:3]
    assert page.last == page.items[-1].version
    rest = await storage.list_uploads("hist", after=page.last, limit=3)
    assert [i.version for i in rest.items] == [infos[1].version, infos[0].version]
    assert rest.last is None


async def test_unknown_device_and_version(storage: Storage) -> None:
    with pytest.raises(DeviceNotFound):
        await storage.latest("ghost")
    with pytest.raises(DeviceNotFound):
        await storage.list_uploads("ghost", after=None, limit=10)
    await save(storage, "real", b"x")
    with pytest.raises(UploadNotFound):
        await storage.get("real", new_version_id())


async def test_list_devices_sorted_paginated_and_prefixed(storage: Storage) -> None:
    empty = await storage.list_devices(prefix="", after=None, limit=10)
    assert empty.items == [] and empty.last is None
    ids = ["b-2", "a:1", "a.0", "c_3", "ab", "a", "B"]
    for device in ids:
        await save(storage, device, b"x")
    await save(storage, "ab", b"second version does not duplicate the device")
    everything = await storage.list_devices(prefix="", after=None, limit=100)
    assert everything.items == sorted(ids)
    first = await storage.list_devices(prefix="", after=None, limit=3)
    assert first.items == sorted(ids)[:3]
    second = await storage.list_devices(prefix="", after=first.last, limit=3)
    assert second.items == sorted(ids)[3:6]
    assert (await storage.list_devices(prefix="a", after=None, limit=10)).items == [
        "a",
        "a.0",
        "a:1",
        "ab",
    ]
    assert (await storage.list_devices(prefix="ab", after=None, limit=10)).items == ["ab"]
    assert (await storage.list_devices(prefix="a", after="a.0", limit=10)).items == ["a:1", "ab"]


async def test_delete_upload_and_device(storage: Storage) -> None:
    first = await save(storage, "del", b"one")
    second = await save(storage, "del", os.urandom(9 * 1024 * 1024))
    await storage.delete_upload("del", second.version)
    assert (await storage.latest("del")).version == first.version
    with pytest.raises(UploadNotFound):
        await storage.delete_upload("del", second.version)
    assert await storage.delete_device("del") == 1
    with pytest.raises(DeviceNotFound):
        await storage.latest("del")
    assert (await storage.list_devices(prefix="", after=None, limit=10)).items == []
    with pytest.raises(DeviceNotFound):
        await storage.delete_device("del")


async def test_deleting_last_version_unlists_device(storage: Storage) -> None:
    only = await save(storage, "solo", b"x")
    await storage.delete_upload("solo", only.version)
    assert (await storage.list_devices(prefix="", after=None, limit=10)).items == []


@pytest.mark.parametrize("size", [1000, 12 * 1024 * 1024])
async def test_failed_upload_leaves_nothing(storage: Storage, size: int) -> None:
    data = os.urandom(size)
    with pytest.raises(PayloadTooLarge):
        await save(storage, "limit", data, max_bytes=size - 1)
    bad = ExpectedDigests({"sha256": hashlib.sha256(b"other").digest()})
    with pytest.raises(ChecksumMismatch):
        await save(storage, "limit", data, expected=bad)
    with pytest.raises(DeviceNotFound):
        await storage.latest("limit")
    assert (await storage.list_devices(prefix="", after=None, limit=10)).items == []


async def test_concurrent_saves_to_one_device_all_survive(storage: Storage) -> None:
    payloads = [os.urandom(2000 + i) for i in range(20)]
    infos = await asyncio.gather(*(save(storage, "busy", p) for p in payloads))
    assert len({i.version for i in infos}) == 20
    page = await storage.list_uploads("busy", after=None, limit=100)
    assert {i.sha256 for i in page.items} == {hashlib.sha256(p).hexdigest() for p in payloads}


async def test_check_passes_when_reachable(storage: Storage) -> None:
    await storage.check()


async def test_idempotency_key_keeps_one_version(storage: Storage) -> None:
    first = await save(storage, "idem", b"reading", key="k-1")
    assert await storage.find_by_key("idem", "k-1") == first
    again = await save(storage, "idem", b"reading", key="k-1")
    assert again == first
    other = await save(storage, "idem", b"reading", key="k-2")
    assert other.version != first.version
    page = await storage.list_uploads("idem", after=None, limit=10)
    assert [i.version for i in page.items] == [other.version, first.version]
    assert await storage.find_by_key("idem", "unknown") is None


async def test_concurrent_saves_with_one_key_leave_one_version(storage: Storage) -> None:
    big = os.urandom(9 * 1024 * 1024)  # the S3 backend's multipart path too
    results = await asyncio.gather(
        *(save(storage, "race", data, key="same") for data in (b"x" * 10, b"x" * 10, big, big))
    )
    assert len({info.version for info in results}) == 1
    page = await storage.list_uploads("race", after=None, limit=10)
    assert len(page.items) == 1


async def test_idempotency_key_of_a_deleted_version_is_free_again(storage: Storage) -> None:
    first = await save(storage, "gone", b"a", key="k")
    await storage.delete_upload("gone", first.version)
    assert await storage.find_by_key("gone", "k") is None
    second = await save(storage, "gone", b"a", key="k")
    assert second.version != first.version
    assert await storage.find_by_key("gone", "k") == second


# Resumable (tus) uploads -------------------------------------------------------------------------

# Like every test here, these run on every backend (the storage_url fixture's parameters).

EXPIRY = 3600.0


def new_resumable(
    device: str = "tus-1",
    *,
    length: int | None = None,
    expected_sha256: str | None = None,
    expires_at: float | None = None,
) -> ResumableUpload:
    return ResumableUpload(
        device_id=device,
        upload_id=new_upload_id(),
        length=length,
        offset=0,
        filename="big.bin",
        content_type="application/x-telemetry",
        expected_sha256=expected_sha256,
        expires_at=time.time() + EXPIRY if expires_at is None else expires_at,
    )


async def append(
    storage: Storage,
    upload: ResumableUpload,
    offset: int,
    data: bytes | MeasuredStream,
    *,
    length: int | None = None,
) -> ResumableUpload:
    chunk = measured(data) if isinstance(data, bytes) else data
    return await storage.append_resumable(
        upload.device_id,
        upload.upload_id,
        offset,
        chunk,
        length=length,
        expires_at=time.time() + EXPIRY,
        version=new_version_id(),
    )


async def test_resumable_create_and_get(storage: Storage) -> None:
    upload = new_resumable(length=10)
    await storage.create_resumable(upload, max_per_device=0)
    assert await storage.resumable("tus-1", upload.upload_id) == upload
    with pytest.raises(ResumableNotFound):
        await storage.resumable("tus-1", new_upload_id())
    with pytest.raises(ResumableNotFound):  # another device's upload is not this device's
        await storage.resumable("tus-2", upload.upload_id)


@pytest.mark.parametrize("size", [1000, 3 * 1024 * 1024 + 5])  # inline and file versions
async def test_resumable_appends_in_order_and_completes_as_a_version(
    storage: Storage, size: int
) -> None:
    data = os.urandom(size)
    upload = new_resumable(length=size, expected_sha256=hashlib.sha256(data).hexdigest())
    await storage.create_resumable(upload, max_per_device=0)
    third = size // 3
    state = await append(storage, upload, 0, data[:third])
    assert (state.offset, state.complete) == (third, False)
    assert state.expires_at > upload.expires_at - 1
    state = await append(storage, upload, third, data[third : 2 * third])
    assert (await storage.resumable("tus-1", upload.upload_id)).offset == 2 * third
    with pytest.raises(DeviceNotFound):  # nothing visible before the last byte
        await storage.latest("tus-1")
    done = await append(storage, upload, 2 * third, data[2 * third :])
    assert done.complete and done.offset == size and done.version is not None
    info = await storage.latest("tus-1")
    assert info.version == done.version
    assert (info.size, info.sha256) == (size, hashlib.sha256(data).hexdigest())
    assert (info.filename, info.content_type) == ("big.bin", "application/x-telemetry")
    assert await read_all(storage, info) == data
    assert (await storage.list_devices(prefix="", after=None, limit=10)).items == ["tus-1"]
    # A client that lost the last answer asks again: the state says it is done.
    again = await storage.resumable("tus-1", upload.upload_id)
    assert again.complete and again.offset == size and again.version == done.version
    # Appending nothing at the end is harmless; a stale offset learns where the end is.
    assert (await append(storage, upload, size, b"")).version == done.version
    with pytest.raises(OffsetMismatch) as stale:
        await append(storage, upload, third, data[third:])
    assert stale.value.details == {"offset": size}
    assert len((await storage.list_uploads("tus-1", after=None, limit=10)).items) == 1


async def test_resumable_offset_mismatch_says_where_to_resume(storage: Storage) -> None:
    upload = new_resumable(length=100)
    await storage.create_resumable(upload, max_per_device=0)
    await append(storage, upload, 0, b"a" * 40)
    for wrong in (0, 39, 41, 100):
        with pytest.raises(OffsetMismatch) as refused:
            await append(storage, upload, wrong, b"b" * 10)
        assert refused.value.offset == 40
        assert refused.value.details == {"offset": 40}
        assert refused.value.status == 409
    assert (await storage.resumable("tus-1", upload.upload_id)).offset == 40


class Gate:
    """A chunk source that signals when the storage starts reading it, then waits to be let go."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.started = asyncio.Event()
        self.release = asyncio.Event()

    async def chunks(self) -> AsyncIterator[bytes]:
        self.started.set()
        await self.release.wait()
        for start in range(0, len(self.data), 4096):
            yield self.data[start : start + 4096]
            await asyncio.sleep(0)


async def test_racing_appends_store_exactly_one(storage: Storage) -> None:
    upload = new_resumable(length=200_000)
    await storage.create_resumable(upload, max_per_device=0)
    first, second = Gate(b"1" * 50_000), Gate(b"2" * 50_000)

    def start(gate: Gate) -> asyncio.Task[ResumableUpload]:
        stream = MeasuredStream(gate.chunks(), max_bytes=200_000)
        return asyncio.create_task(append(storage, upload, 0, stream))

    one = start(first)
    await first.started.wait()
    two = start(second)
    # The second append either fails at once (busy) or starts reading its body as well.
    started = asyncio.create_task(second.started.wait())
    await asyncio.wait([two, started], return_when=asyncio.FIRST_COMPLETED)
    started.cancel()
    first.release.set()
    second.release.set()
    results = await asyncio.gather(one, two, return_exceptions=True)
    stored = [r for r in results if isinstance(r, ResumableUpload)]
    refused = [r for r in results if isinstance(r, BaseException)]
    assert len(stored) == 1 and len(refused) == 1, results
    assert isinstance(refused[0], UploadBusy | OffsetMismatch), refused
    assert stored[0].offset == 50_000
    winner = b"1" if results[0] is stored[0] else b"2"
    rest = os.urandom(150_000)
    done = await append(storage, upload, 50_000, rest)
    info = await storage.get("tus-1", str(done.version))
    assert await read_all(storage, info) == winner * 50_000 + rest


async def failing_after(data: bytes) -> AsyncIterator[bytes]:
    yield data
    raise ClientDisconnected("the client went away")


async def test_a_chunk_that_fails_midway_appends_nothing(storage: Storage) -> None:
    data = os.urandom(300_000)
    upload = new_resumable(length=len(data))
    await storage.create_resumable(upload, max_per_device=0)
    await append(storage, upload, 0, data[:100_000])
    broken = MeasuredStream(failing_after(b"x" * 150_000), max_bytes=200_000)
    with pytest.raises(ClientDisconnected):
        await append(storage, upload, 100_000, broken)
    assert (await storage.resumable("tus-1", upload.upload_id)).offset == 100_000
    done = await append(storage, upload, 100_000, data[100_000:])
    info = await storage.get("tus-1", str(done.version))
    assert info.sha256 == hashlib.sha256(data).hexdigest()
    assert await read_all(storage, info) == data


async def test_resumable_whole_file_checksum_mismatch_leaves_no_version(storage: Storage) -> None:
    upload = new_resumable(length=1000, expected_sha256=hashlib.sha256(b"other").hexdigest())
    await storage.create_resumable(upload, max_per_device=0)
    await append(storage, upload, 0, b"a" * 500)
    with pytest.raises(ChecksumMismatch):
        await append(storage, upload, 500, b"b" * 500)
    with pytest.raises(DeviceNotFound):
        await storage.latest("tus-1")
    with pytest.raises(ResumableNotFound):
        await storage.resumable("tus-1", upload.upload_id)


async def test_resumable_deferred_length(storage: Storage) -> None:
    data = os.urandom(700_000)
    upload = new_resumable(length=None)
    await storage.create_resumable(upload, max_per_device=0)
    state = await append(storage, upload, 0, data[:300_000])
    assert state.length is None and state.offset == 300_000
    with pytest.raises(BadRequest):  # shorter than what is already stored
        await append(storage, upload, 300_000, b"", length=100)
    state = await append(storage, upload, 300_000, data[300_000:600_000], length=len(data))
    assert state.length == len(data) and not state.complete
    with pytest.raises(BadRequest):  # declared once; another length later is refused
        await append(storage, upload, 600_000, data[600_000:], length=len(data) + 1)
    done = await append(storage, upload, 600_000, data[600_000:])
    info = await storage.get("tus-1", str(done.version))
    assert await read_all(storage, info) == data


async def test_resumable_length_exceeded_appends_nothing(storage: Storage) -> None:
    upload = new_resumable(length=1000)
    await storage.create_resumable(upload, max_per_device=0)
    await append(storage, upload, 0, b"a" * 600)
    # The API layer measures each chunk against what is left of the length.
    with pytest.raises(PayloadTooLarge):
        await append(storage, upload, 600, measured(b"b" * 401, max_bytes=400))
    assert (await storage.resumable("tus-1", upload.upload_id)).offset == 600
    done = await append(storage, upload, 600, b"c" * 400)
    info = await storage.get("tus-1", str(done.version))
    assert await read_all(storage, info) == b"a" * 600 + b"c" * 400


async def test_resumable_delete(storage: Storage) -> None:
    upload = new_resumable(length=1000)
    await storage.create_resumable(upload, max_per_device=0)
    await append(storage, upload, 0, b"a" * 600)
    await storage.delete_resumable("tus-1", upload.upload_id)
    with pytest.raises(ResumableNotFound):
        await storage.resumable("tus-1", upload.upload_id)
    with pytest.raises(ResumableNotFound):
        await append(storage, upload, 600, b"b" * 400)
    with pytest.raises(ResumableNotFound):
        await storage.delete_resumable("tus-1", upload.upload_id)
    with pytest.raises(DeviceNotFound):
        await storage.latest("tus-1")


async def test_resumable_expiry(storage: Storage) -> None:
    live = new_resumable(length=1000)
    await storage.create_resumable(live, max_per_device=0)
    await append(storage, live, 0, b"a" * 600)
    stale = new_resumable(length=1000, expires_at=time.time() - 1)
    await storage.create_resumable(stale, max_per_device=0)
    with pytest.raises(ResumableNotFound):  # expired: gone even before any sweep
        await storage.resumable("tus-1", stale.upload_id)
    with pytest.raises(ResumableNotFound):
        await append(storage, stale, 0, b"x")
    assert await storage.remove_expired_resumable(time.time()) == 1
    assert (await storage.resumable("tus-1", live.upload_id)).offset == 600
    assert await storage.remove_expired_resumable(time.time() + 2 * EXPIRY) == 1
    with pytest.raises(ResumableNotFound):
        await storage.resumable("tus-1", live.upload_id)
    assert await storage.remove_expired_resumable(time.time() + 2 * EXPIRY) == 0


async def test_resumable_uploads_per_device_are_capped(storage: Storage) -> None:
    first, second = new_resumable(length=3), new_resumable(length=3)
    await storage.create_resumable(first, max_per_device=2)
    await storage.create_resumable(second, max_per_device=2)
    with pytest.raises(TooManyRequests):
        await storage.create_resumable(new_resumable(length=3), max_per_device=2)
    await storage.create_resumable(new_resumable("tus-2", length=3), max_per_device=2)
    # Finished, terminated and expired uploads do not count.
    await append(storage, first, 0, b"abc")
    await storage.create_resumable(new_resumable(length=3), max_per_device=2)
    await storage.delete_resumable("tus-1", second.upload_id)
    await storage.create_resumable(
        new_resumable(length=3, expires_at=time.time() - 1), max_per_device=2
    )
    await storage.create_resumable(new_resumable(length=3), max_per_device=2)
    with pytest.raises(TooManyRequests):
        await storage.create_resumable(new_resumable(length=3), max_per_device=2)


async def test_revocations_set_replace_and_lift(storage: Storage) -> None:
    assert await storage.list_revocations() == {}
    await storage.set_revocation("lost-1", 1_700_000_000.25)
    await storage.set_revocation("lost-2", 1_700_000_100.5)
    assert await storage.list_revocations() == {
        "lost-1": 1_700_000_000.25,
        "lost-2": 1_700_000_100.5,
    }
    # Revoking again moves the time (a later token leaked too): one entry, the new time.
    await storage.set_revocation("lost-1", 1_700_000_200.75)
    assert await storage.list_revocations() == {
        "lost-1": 1_700_000_200.75,
        "lost-2": 1_700_000_100.5,
    }
    await storage.set_revocation("lost-1", None)
    assert await storage.list_revocations() == {"lost-2": 1_700_000_100.5}
    await storage.set_revocation("never-revoked", None)  # lifting nothing is not an error
    assert await storage.list_revocations() == {"lost-2": 1_700_000_100.5}


async def test_revocation_times_keep_microseconds(storage: Storage) -> None:
    # Tokens are compared with the revocation time: it must come back as stored, to the µs.
    await storage.set_revocation("precise", 1_733_000_000.123456)
    assert await storage.list_revocations() == {
        "precise": pytest.approx(1_733_000_000.123456, abs=1e-6)
    }


async def test_revocations_are_not_devices_and_outlive_their_data(storage: Storage) -> None:
    await storage.set_revocation("banned", 1_700_000_000.0)
    assert (await storage.list_devices(prefix="", after=None, limit=10)).items == []
    await save(storage, "banned", b"x")
    assert await storage.delete_device("banned") == 1
    # Deleting a device's uploads does not lift its revocation: its old tokens stay refused.
    assert await storage.list_revocations() == {"banned": 1_700_000_000.0}
