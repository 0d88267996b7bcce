"""One behavioural suite for the storage interface, run against every backend.

memory:// and file:// run everywhere; s3:// runs against the real Ceph RADOS Gateway that the
session starts on loopback (tests/conftest.py).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator

import pytest

from mindproject.errors import (
    ChecksumMismatch,
    DeviceNotFound,
    PayloadTooLarge,
    UploadNotFound,
)
from mindproject.identifiers import new_version_id
from mindproject.storage import Storage, UploadInfo, open_storage
from mindproject.streams import ExpectedDigests
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
async def storage(storage_url: str) -> AsyncIterator[Storage]:
    backend = open_storage(storage_url)
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
