"""S3-only mode answers what its keys answer cheaply: device ids with their marker times, and a
device's activity; the rest is a documented 501. On the in-memory store and on the real S3
server (Ceph RGW, marker s3)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import pytest
from obstore.store import MemoryStore

from mindproject.errors import DeviceNotFound, NotSupportedByStorage
from mindproject.identifiers import new_version_id
from mindproject.storage import open_storage
from mindproject.storage.base import Storage
from mindproject.storage.objectstore import ObjectStorage
from tests.helpers import measured

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["memory", pytest.param("s3", marks=pytest.mark.s3)])
async def storage(request: pytest.FixtureRequest) -> AsyncIterator[Storage]:
    if request.param == "memory":
        backend: Storage = ObjectStorage(MemoryStore())
    else:
        backend = open_storage(f"s3://{request.getfixturevalue('s3_bucket')}/fleet")
    try:
        yield backend
    finally:
        await backend.close()


async def test_device_list_with_marker_times_and_activity(storage: Storage) -> None:
    now = time.time()
    for device in ("b", "a", "c"):
        await storage.save(
            device, new_version_id(), measured(b"xy"), filename=None, content_type=None
        )
    await storage.set_revocation("b", now)
    page = await storage.fleet_devices(
        prefix="", after=None, limit=2, sort="device_id", silent_before=None
    )
    assert [row.device_id for row in page.items] == ["a", "b"]
    assert page.items[0].last_upload_at == pytest.approx(now, abs=30)  # the store's clock
    assert page.items[0].uploads is None and page.items[0].bytes is None
    assert page.items[1].revoked_at == pytest.approx(now, abs=1)
    rest = await storage.fleet_devices(
        prefix="", after=page.last, limit=2, sort="device_id", silent_before=None
    )
    assert [row.device_id for row in rest.items] == ["c"] and rest.last is None

    hour = 3600
    end = (now // hour + 1) * hour
    old = int((end - 3 * hour + 5) * 1e6)
    await storage.save("a", new_version_id(old), measured(b"old"), filename=None, content_type=None)
    await storage.save(
        "a",
        new_version_id(int((end - 9 * hour) * 1e6)),
        measured(b"x"),
        filename=None,
        content_type=None,
    )
    buckets = await storage.device_activity("a", bucket_seconds=hour, start=end - 4 * hour, end=end)
    assert [(b.uploads, b.bytes) for b in buckets] == [(0, 0), (1, 3), (0, 0), (1, 2)]
    with pytest.raises(DeviceNotFound):
        await storage.device_activity("ghost", bucket_seconds=hour, start=0, end=hour)


async def test_what_needs_an_index_is_501(storage: Storage) -> None:
    with pytest.raises(NotSupportedByStorage, match="index"):
        await storage.fleet_summary(now=time.time(), silent_before=0)
    for sort, silent in (("last_upload_at", None), ("device_id", 1.0)):
        with pytest.raises(NotSupportedByStorage):
            await storage.fleet_devices(
                prefix="", after=None, limit=5, sort=sort, silent_before=silent
            )
