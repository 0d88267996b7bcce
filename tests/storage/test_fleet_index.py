"""The file backend's fleet view: per-device figures kept in the index with each upload, delete
and resumable completion; pages by id and by last upload; fleet counts; activity buckets; and
the migration of an index made before the figures existed."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from mindproject.errors import DeviceNotFound
from mindproject.identifiers import new_version_id
from mindproject.storage.base import DeviceSummary
from mindproject.storage.filesystem import INDEX_NAME, INLINE_MAX, FileStorage
from tests.helpers import measured
from tests.storage.test_contract import append, new_resumable

pytestmark = pytest.mark.anyio

HOUR_US = 3600 * 1_000_000


def _at(seconds_ago: float) -> str:
    """A version id made `seconds_ago` seconds before now."""
    return new_version_id(int((time.time() - seconds_ago) * 1_000_000))


async def _save(storage: FileStorage, device: str, data: bytes, seconds_ago: float = 0) -> str:
    info = await storage.save(
        device, _at(seconds_ago), measured(data), filename="f.bin", content_type=None
    )
    return info.version


async def _row(storage: FileStorage, device: str) -> DeviceSummary:
    page = await storage.fleet_devices(
        prefix=device, after=None, limit=1, sort="device_id", silent_before=None
    )
    assert page.items and page.items[0].device_id == device
    return page.items[0]


async def test_figures_follow_uploads_and_deletes(tmp_path: Path) -> None:
    storage = FileStorage(tmp_path, fsync=False)
    old = await _save(storage, "d", b"a" * 10, seconds_ago=7200)
    large = b"b" * (INLINE_MAX + 5)
    newest = await _save(storage, "d", large, seconds_ago=60)
    row = await _row(storage, "d")
    assert (row.uploads, row.bytes, row.last_size) == (2, 10 + len(large), len(large))
    assert row.last_upload_at == pytest.approx(time.time() - 60, abs=5)
    assert row.revoked_at is None

    await storage.delete_upload("d", newest)  # the newest goes: the older one is last again
    row = await _row(storage, "d")
    assert (row.uploads, row.bytes, row.last_size) == (1, 10, 10)
    assert row.last_upload_at == pytest.approx(time.time() - 7200, abs=5)

    await storage.delete_upload("d", old)
    page = await storage.fleet_devices(
        prefix="", after=None, limit=10, sort="device_id", silent_before=None
    )
    assert page.items == []
    await _save(storage, "d", b"again")
    await storage.delete_device("d")
    summary = await storage.fleet_summary(now=time.time(), silent_before=time.time())
    assert summary.devices == 0 and summary.uploads_last_day == 0
    await storage.close()


async def test_a_late_upload_with_an_older_id_does_not_move_the_last_upload(
    tmp_path: Path,
) -> None:
    storage = FileStorage(tmp_path, fsync=False)
    await _save(storage, "d", b"new", seconds_ago=10)
    await _save(storage, "d", b"older one", seconds_ago=100)  # its id was made earlier
    row = await _row(storage, "d")
    assert (row.uploads, row.bytes, row.last_size) == (2, 12, 3)
    assert row.last_upload_at == pytest.approx(time.time() - 10, abs=5)
    await storage.close()


@pytest.mark.parametrize("size", [100, INLINE_MAX + 100])
async def test_resumable_completion_counts(tmp_path: Path, size: int) -> None:
    storage = FileStorage(tmp_path, fsync=False)
    upload = new_resumable("tus-1", length=size)
    await storage.create_resumable(upload, max_per_device=0)
    await append(storage, upload, 0, b"x" * (size // 2))
    assert (
        await storage.fleet_devices(
            prefix="tus", after=None, limit=5, sort="device_id", silent_before=None
        )
    ).items == []  # unfinished: not a version yet
    await append(storage, upload, size // 2, b"x" * (size - size // 2))
    row = await _row(storage, "tus-1")
    assert (row.uploads, row.bytes, row.last_size) == (1, size, size)
    summary = await storage.fleet_summary(now=time.time(), silent_before=0)
    assert (summary.uploads_last_hour, summary.bytes_last_hour) == (1, size)
    await storage.close()


async def test_pages_by_id_and_by_last_upload_with_prefix_and_silence(tmp_path: Path) -> None:
    storage = FileStorage(tmp_path, fsync=False)
    ages = {"s-a": 50, "s-b": 10, "s-c": 30, "s-d": 30, "other": 40}
    for device, hours in ages.items():
        await _save(storage, device, b"x", seconds_ago=hours * 3600)
    await storage.set_revocation("s-c", time.time())

    async def walk(sort: str, silent_before: float | None = None, prefix: str = "s-") -> list[str]:
        seen: list[str] = []
        after = None
        while True:
            page = await storage.fleet_devices(
                prefix=prefix, after=after, limit=2, sort=sort, silent_before=silent_before
            )
            seen += [row.device_id for row in page.items]
            if page.last is None:
                return seen
            after = page.last

    assert await walk("device_id") == ["s-a", "s-b", "s-c", "s-d"]
    assert await walk("last_upload_at") == ["s-a", "s-c", "s-d", "s-b"]  # oldest first, ties by id
    assert await walk("last_upload_at", prefix="") == ["s-a", "other", "s-c", "s-d", "s-b"]
    day_ago = time.time() - 24 * 3600
    assert await walk("device_id", silent_before=day_ago) == ["s-a", "s-c", "s-d"]
    assert await walk("last_upload_at", silent_before=day_ago) == ["s-a", "s-c", "s-d"]
    revoked = (await _row(storage, "s-c")).revoked_at
    assert revoked == pytest.approx(time.time(), abs=5)

    summary = await storage.fleet_summary(now=time.time(), silent_before=day_ago)
    assert summary.devices == 5
    assert summary.silent_devices == 4  # s-a, other, s-c, s-d
    assert summary.revoked_devices == 1
    assert summary.uploads_last_hour == 0
    assert (summary.uploads_last_day, summary.bytes_last_day) == (1, 1)  # s-b, 10 h ago
    await storage.close()


async def test_activity_buckets_include_zeros(tmp_path: Path) -> None:
    storage = FileStorage(tmp_path, fsync=False)
    now = time.time()
    end = (now // 3600 + 1) * 3600
    start = end - 5 * 3600
    await _save(storage, "d", b"12345", seconds_ago=now - (start + 10))  # first bucket
    await _save(storage, "d", b"1", seconds_ago=now - (start + 20))  # first bucket
    await _save(storage, "d", b"123", seconds_ago=now - (start + 3 * 3600 + 5))  # fourth
    await _save(storage, "d", b"old", seconds_ago=now - (start - 10))  # before the range
    buckets = await storage.device_activity("d", bucket_seconds=3600, start=start, end=end)
    assert [b.start for b in buckets] == [start + i * 3600 for i in range(5)]
    assert [(b.uploads, b.bytes) for b in buckets] == [(2, 6), (0, 0), (0, 0), (1, 3), (0, 0)]
    with pytest.raises(DeviceNotFound):
        await storage.device_activity("ghost", bucket_seconds=3600, start=start, end=end)
    await storage.close()


async def test_an_index_made_before_the_fleet_view_is_migrated(tmp_path: Path) -> None:
    storage = FileStorage(tmp_path, fsync=False)
    await _save(storage, "d", b"old", seconds_ago=7200)
    await _save(storage, "d", b"newer", seconds_ago=60)
    await _save(storage, "e", b"e")
    await storage.close()
    with sqlite3.connect(tmp_path / INDEX_NAME) as db:  # the devices table as it was before
        db.executescript(
            "DROP INDEX devices_by_last_upload; DROP INDEX uploads_by_time;"
            "DROP TABLE upload_minutes;"
            "CREATE TABLE old_devices (device_id TEXT PRIMARY KEY, uploads INTEGER NOT NULL) "
            "WITHOUT ROWID;"
            "INSERT INTO old_devices SELECT device_id, uploads FROM devices;"
            "DROP TABLE devices; ALTER TABLE old_devices RENAME TO devices;"
        )
    db.close()
    again = FileStorage(tmp_path, fsync=False)
    row = await _row(again, "d")
    assert (row.uploads, row.bytes, row.last_size) == (2, 8, 5)
    assert row.last_upload_at == pytest.approx(time.time() - 60, abs=5)
    summary = await again.fleet_summary(now=time.time(), silent_before=time.time() - 3600)
    assert (summary.devices, summary.silent_devices, summary.uploads_last_hour) == (2, 0, 2)
    assert (summary.uploads_last_day, summary.bytes_last_day) == (3, 9)
    await again.close()


async def test_windows_cut_inside_a_minute_count_exactly(tmp_path: Path) -> None:
    """The hour and day come from per-minute counts, plus the uploads of the minute the
    window's start falls in, counted one by one: a window is exact to the microsecond."""
    storage = FileStorage(tmp_path, fsync=False)
    now = (time.time() // 60) * 60 + 30  # half a minute into the current minute
    for seconds_ago in (3600 + 20, 3600 - 20, 3600 - 40, 30 * 60, 86400 + 5, 86400 - 5):
        version = new_version_id(int((now - seconds_ago) * 1_000_000))
        await storage.save("w", version, measured(b"x" * 10), filename=None, content_type=None)
    summary = await storage.fleet_summary(now=now, silent_before=0)
    assert (summary.uploads_last_hour, summary.bytes_last_hour) == (3, 30)
    assert (summary.uploads_last_day, summary.bytes_last_day) == (5, 50)
    newest = (await storage.list_uploads("w", after=None, limit=1)).items[0]
    await storage.delete_upload("w", newest.version)
    summary = await storage.fleet_summary(now=now, silent_before=0)
    assert (summary.uploads_last_hour, summary.uploads_last_day) == (2, 4)
    await storage.close()


async def test_fleet_reads_are_index_range_scans(tmp_path: Path) -> None:
    """The query plans name an index for every fleet read: no full scan of uploads."""
    storage = FileStorage(tmp_path, fsync=False)
    await _save(storage, "d", b"x")
    await storage.close()
    plans = []
    with sqlite3.connect(tmp_path / INDEX_NAME) as db:
        for sql, params in [
            (
                "SELECT device_id FROM devices WHERE last_us < ? AND device_id >= ? "
                "AND device_id < ? AND (last_us, device_id) > (?, ?) "
                "ORDER BY last_us, device_id LIMIT 5",
                (1, "", "\x7f", 0, ""),
            ),
            (
                "SELECT COUNT(*), SUM(size) FROM uploads WHERE version < ? AND version >= ?",
                ("b", "a"),
            ),
            ("SELECT COUNT(*) FROM devices WHERE last_us < ?", (1,)),
        ]:
            plan = " ".join(str(row[-1]) for row in db.execute(f"EXPLAIN QUERY PLAN {sql}", params))
            plans.append(plan)
    db.close()
    assert "devices_by_last_upload" in plans[0] and "TEMP B-TREE" not in plans[0], plans[0]
    assert "uploads_by_time" in plans[1], plans[1]
    assert "devices_by_last_upload" in plans[2], plans[2]
