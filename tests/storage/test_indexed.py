"""The fleet mode against a real PostgreSQL and the real Ceph S3 server: group commit, the
index's figures, idempotency races between replicas, faults, the fleet view.

(The storage contract suite runs against this mode too: test_contract.py, "fleet".)
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import time
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest

from mindproject.errors import (
    CommitOutcomeUnknown,
    DeviceNotFound,
    StorageUnavailable,
    UploadNotFound,
)
from mindproject.identifiers import new_direct_upload_id, new_upload_id, new_version_id
from mindproject.storage import open_storage
from mindproject.storage.base import ResumableUpload, UploadInfo
from mindproject.storage.indexed import IndexedStorage
from mindproject.storage.pg_index import PgIndex, Row, _db_errors, parse_locator
from tests.helpers import app_server, free_port, measured, s3_client

pytestmark = [pytest.mark.anyio, pytest.mark.s3, pytest.mark.pg]

PREFIX = "fleet"


def open_fleet(bucket: str, index: str, **options: Any) -> IndexedStorage:
    storage = open_storage(f"s3://{bucket}/{PREFIX}", index=index, **options)
    assert isinstance(storage, IndexedStorage)
    return storage


@pytest.fixture
async def fleet(s3_bucket: str, pg_index_url: str) -> AsyncIterator[IndexedStorage]:
    storage = open_fleet(s3_bucket, pg_index_url)
    try:
        yield storage
    finally:
        await storage.close()


async def save(
    storage: IndexedStorage, device: str, data: bytes, key: str | None = None
) -> UploadInfo:
    return await storage.save(
        device,
        new_version_id(),
        measured(data),
        filename="t.bin",
        content_type="application/octet-stream",
        idempotency_key=key,
    )


async def read_all(storage: IndexedStorage, info: UploadInfo) -> bytes:
    return b"".join([chunk async for chunk in storage.read(info)])


def objects(s3_env: dict[str, str], bucket: str) -> dict[str, int]:
    listed = s3_client(s3_env).list_objects_v2(Bucket=bucket, Prefix=f"{PREFIX}/segments/")
    return {item["Key"]: item["Size"] for item in listed.get("Contents", [])}


async def fetch(index_url: str, sql: str, *args: object) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(index_url)
    try:
        return await conn.fetch(sql, *args)
    finally:
        await conn.close()


async def test_small_uploads_from_many_devices_share_one_segment(
    fleet: IndexedStorage, s3_bucket: str, s3_env: dict[str, str], pg_index_url: str
) -> None:
    payloads = {f"dev-{i:03d}": os.urandom(1024 + i) for i in range(64)}
    infos = await asyncio.gather(*(save(fleet, device, data) for device, data in payloads.items()))
    stored = objects(s3_env, s3_bucket)
    assert len(stored) == 1  # one PUT for 64 uploads
    (segment,) = stored
    assert stored[segment] == sum(len(data) for data in payloads.values())
    for info in infos:
        key, offset = parse_locator(str(info.locator))
        assert key == segment and offset is not None
        assert await read_all(fleet, await fleet.latest(info.device_id)) == payloads[info.device_id]
    rows = await fetch(pg_index_url, "SELECT size, live_bytes FROM segments")
    assert [(r["size"], r["live_bytes"]) for r in rows] == [(stored[segment], stored[segment])]


async def test_uploads_above_the_segment_limit_get_an_object_each(
    s3_bucket: str, s3_env: dict[str, str], pg_index_url: str
) -> None:
    storage = open_fleet(s3_bucket, pg_index_url, segment_max_upload_bytes=4096)
    try:
        small, large = os.urandom(4096), os.urandom(4097)
        first, second = await asyncio.gather(save(storage, "a", small), save(storage, "b", large))
        assert parse_locator(str(first.locator))[1] is not None
        assert parse_locator(str(second.locator)) == (str(second.locator), None)
        assert len(objects(s3_env, s3_bucket)) == 2
        assert await read_all(storage, await storage.latest("b")) == large
        huge = os.urandom(9 * 1024 * 1024)  # ObjectStorage's multipart path
        info = await save(storage, "c", huge)
        got = await storage.latest("c")
        assert got.locator == info.locator
        assert hashlib.sha256(await read_all(storage, got)).hexdigest() == info.sha256
    finally:
        await storage.close()


async def test_max_segment_bytes_splits_batches(
    s3_bucket: str, s3_env: dict[str, str], pg_index_url: str
) -> None:
    storage = open_fleet(s3_bucket, pg_index_url, segment_max_bytes=10_000, segment_window_ms=200)
    try:
        await asyncio.gather(*(save(storage, f"d{i}", os.urandom(3000)) for i in range(9)))
        assert sorted(objects(s3_env, s3_bucket).values()) == [9000, 9000, 9000]
    finally:
        await storage.close()


async def test_device_figures_follow_uploads_and_deletes(
    fleet: IndexedStorage, pg_index_url: str
) -> None:
    first = await save(fleet, "sum", b"a" * 100)
    second = await save(fleet, "sum", b"b" * 300)
    (summary,) = (
        await fleet.fleet_devices(
            prefix="", after=None, limit=10, sort="device_id", silent_before=None
        )
    ).items
    assert (summary.uploads, summary.bytes, summary.last_size) == (2, 400, 300)
    assert summary.last_upload_at == pytest.approx(second.uploaded_at.timestamp(), abs=1e-6)
    await fleet.delete_upload("sum", second.version)
    (summary,) = (
        await fleet.fleet_devices(
            prefix="", after=None, limit=10, sort="device_id", silent_before=None
        )
    ).items
    assert (summary.uploads, summary.bytes, summary.last_size) == (1, 100, 100)
    assert summary.last_upload_at == pytest.approx(first.uploaded_at.timestamp(), abs=1e-6)
    # The deleted bytes are counted free in the same transaction.
    live = await fetch(pg_index_url, "SELECT sum(live_bytes) AS n FROM segments")
    assert live[0]["n"] == 100
    await fleet.delete_device("sum")
    assert (
        await fleet.fleet_devices(
            prefix="", after=None, limit=10, sort="device_id", silent_before=None
        )
    ).items == []


async def test_fleet_view(fleet: IndexedStorage) -> None:
    for device in ("b-1", "a-1", "a-2", "c-1"):
        await save(fleet, device, device.encode() * 10)
    await fleet.set_revocation("a-2", 1_700_000_000.5)
    by_id = await fleet.fleet_devices(
        prefix="a", after=None, limit=1, sort="device_id", silent_before=None
    )
    assert [s.device_id for s in by_id.items] == ["a-1"] and by_id.last == "a-1"
    rest = await fleet.fleet_devices(
        prefix="a", after=by_id.last, limit=1, sort="device_id", silent_before=None
    )
    assert [s.device_id for s in rest.items] == ["a-2"] and rest.last is None
    assert rest.items[0].revoked_at == 1_700_000_000.5
    # Oldest first: the order they were saved in, paged with the opaque cursor.
    page = await fleet.fleet_devices(
        prefix="", after=None, limit=3, sort="last_upload_at", silent_before=None
    )
    assert [s.device_id for s in page.items] == ["b-1", "a-1", "a-2"]
    more = await fleet.fleet_devices(
        prefix="", after=page.last, limit=3, sort="last_upload_at", silent_before=None
    )
    assert [s.device_id for s in more.items] == ["c-1"] and more.last is None
    # Silent devices: last upload before the moment given.
    newest = await fleet.latest("c-1")
    silent = await fleet.fleet_devices(
        prefix="",
        after=None,
        limit=10,
        sort="last_upload_at",
        silent_before=newest.uploaded_at.timestamp(),
    )
    assert [s.device_id for s in silent.items] == ["b-1", "a-1", "a-2"]
    now = time.time()
    summary = await fleet.fleet_summary(now=now, silent_before=newest.uploaded_at.timestamp())
    assert (summary.devices, summary.silent_devices, summary.revoked_devices) == (4, 3, 1)
    assert (summary.uploads_last_hour, summary.bytes_last_hour) == (4, 120)
    assert (summary.uploads_last_day, summary.bytes_last_day) == (4, 120)
    later = await fleet.fleet_summary(now=now + 7200, silent_before=now)
    assert (later.uploads_last_hour, later.uploads_last_day) == (0, 4)


async def test_device_activity_buckets(fleet: IndexedStorage) -> None:
    infos = [await save(fleet, "act", b"x" * n) for n in (10, 20, 30)]
    moments = [info.uploaded_at.timestamp() for info in infos]
    start = moments[0] - 120
    buckets = await fleet.device_activity("act", bucket_seconds=60, start=start, end=start + 600)
    assert len(buckets) in (10, 11)  # aligned to whole minutes
    assert all(b.start % 60 == 0 for b in buckets)
    assert [b.start for b in buckets] == sorted(b.start for b in buckets)
    assert sum(b.uploads for b in buckets) == 3 and sum(b.bytes for b in buckets) == 60
    empty = await fleet.device_activity("act", bucket_seconds=60, start=0, end=600)
    assert [b.uploads for b in empty] == [0] * 10
    with pytest.raises(DeviceNotFound):
        await fleet.device_activity("ghost", bucket_seconds=60, start=0, end=600)


async def test_one_key_twice_in_one_batch_keeps_one_version(
    fleet: IndexedStorage, s3_bucket: str, s3_env: dict[str, str]
) -> None:
    results = await asyncio.gather(*(save(fleet, "race", b"same", key="k") for _ in range(5)))
    assert len(objects(s3_env, s3_bucket)) == 1  # they were one batch
    assert len({info.version for info in results}) == 1
    assert len((await fleet.list_uploads("race", after=None, limit=10)).items) == 1
    summary = (
        await fleet.fleet_devices(
            prefix="", after=None, limit=10, sort="device_id", silent_before=None
        )
    ).items[0]
    assert summary.uploads == 1


async def test_one_key_on_two_replicas_at_once_keeps_one_version(
    s3_bucket: str, pg_index_url: str
) -> None:
    replicas = [open_fleet(s3_bucket, pg_index_url) for _ in range(2)]
    try:
        for round_ in range(5):
            big = os.urandom(300 * 1024)  # above the segment limit: an object each
            data = [b"small", b"small", big, big]
            results = await asyncio.gather(
                *(
                    save(replicas[i % 2], "twin", data[i], key=f"k-{round_}")
                    for i in range(len(data))
                ),
                return_exceptions=True,
            )
            versions = {r.version for r in results if isinstance(r, UploadInfo)}
            assert len(versions) == 1, results
        page = await replicas[0].list_uploads("twin", after=None, limit=100)
        assert len(page.items) == 5
    finally:
        for replica in replicas:
            await replica.close()


async def test_s3_down_during_a_batch_fails_all_and_shows_none(
    s3_bucket: str, pg_index_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The endpoint of an S3 server that is not there (connection refused), the index alive.
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    storage = open_fleet(s3_bucket, pg_index_url)
    try:
        results = await asyncio.gather(
            *(save(storage, f"down-{i}", b"x" * 100) for i in range(6)), return_exceptions=True
        )
        assert all(isinstance(r, StorageUnavailable) for r in results), results
        for i in range(6):
            with pytest.raises(DeviceNotFound):
                await storage.latest(f"down-{i}")
    finally:
        await storage.close()
    assert await fetch(pg_index_url, "SELECT * FROM versions") == []


async def test_index_down_answers_unavailable_within_seconds(s3_bucket: str) -> None:
    dead = f"postgresql://postgres@127.0.0.1:{free_port()}/mindproject"
    storage = open_fleet(s3_bucket, dead)
    try:
        started = time.monotonic()
        with pytest.raises(StorageUnavailable):
            await save(storage, "dev", b"x")
        with pytest.raises(StorageUnavailable):
            await storage.latest("dev")
        with pytest.raises(StorageUnavailable):
            await storage.check()
        assert time.monotonic() - started < 60  # a hang would be far longer than this bound
    finally:
        await storage.close()


async def test_a_failed_commit_leaves_an_orphan_segment_and_no_version(
    fleet: IndexedStorage, s3_bucket: str, s3_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    async def crash(*args: object, **kwargs: object) -> set[tuple[str, str]]:
        raise StorageUnavailable("the index database is unavailable; retry later")

    monkeypatch.setattr(fleet.index, "commit_object", crash)
    results = await asyncio.gather(
        *(save(fleet, f"o-{i}", b"y" * 10) for i in range(3)), return_exceptions=True
    )
    assert all(isinstance(r, StorageUnavailable) for r in results)
    monkeypatch.undo()
    assert len(objects(s3_env, s3_bucket)) == 1  # the segment PUT happened: an orphan
    for i in range(3):
        with pytest.raises(DeviceNotFound):
            await fleet.latest(f"o-{i}")


async def test_delete_then_get_is_gone(fleet: IndexedStorage) -> None:
    info = await save(fleet, "gone", b"z" * 10)
    await fleet.delete_upload("gone", info.version)
    with pytest.raises(UploadNotFound):
        await fleet.get("gone", info.version)


def test_readyz_is_red_and_uploads_503_when_the_index_is_down(s3_bucket: str) -> None:
    dead = f"postgresql://postgres@127.0.0.1:{free_port()}/mindproject"
    with app_server(f"s3://{s3_bucket}/{PREFIX}", index=dead) as server:
        client: httpx.Client = server.client()
        assert client.get("/readyz").status_code == 503
        put = client.put("/api/devices/dev-1", content=b"telemetry")
        assert put.status_code == 503
        assert put.json()["error"]["code"] == "storage_unavailable"
        assert client.get("/api/devices/dev-1").status_code == 503


async def test_direct_upload_completes_into_the_index(
    fleet: IndexedStorage, pg_index_url: str
) -> None:
    data = os.urandom(70_000)
    staging_id = new_direct_upload_id(int(time.time()) + 900)
    ticket = await fleet.presign_direct_upload(
        "direct-1",
        staging_id,
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        filename="d.bin",
        content_type=None,
        expires_at=time.time() + 900,
    )
    async with httpx.AsyncClient() as client:
        put = await client.put(ticket.url, content=data, headers=ticket.headers)
    assert put.status_code == 200, put.text
    version = new_version_id()
    info = await fleet.complete_direct_upload("direct-1", staging_id, version, now=time.time())
    assert await fleet.latest("direct-1") == info
    assert await read_all(fleet, info) == data
    again = await fleet.complete_direct_upload("direct-1", staging_id, new_version_id(), now=0)
    assert again.version == version
    rows = await fetch(pg_index_url, "SELECT idempotency_key FROM versions")
    assert [r["idempotency_key"] for r in rows] == [f"direct-upload:{staging_id}"]


class Relay:
    """A TCP relay in front of PostgreSQL: stop() cuts every connection and refuses new ones,
    as a database that went away; start() brings it back on the same port."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.port = free_port()
        self.server: asyncio.Server | None = None
        self.writers: list[asyncio.StreamWriter] = []

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()
        for writer in self.writers:
            writer.transport.abort()
        self.writers.clear()
        await self.server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target)
        self.writers += [writer, up_writer]

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except OSError:
                pass
            finally:
                dst.transport.abort()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))


async def test_index_going_away_answers_unavailable_and_recovers(
    s3_bucket: str, pg_index_url: str
) -> None:
    target = int(pg_index_url.split("@127.0.0.1:")[1].split("/")[0])
    relay = Relay(target)
    await relay.start()
    storage = open_fleet(s3_bucket, pg_index_url.replace(f":{target}/", f":{relay.port}/"))
    try:
        before = await save(storage, "pg-flap", b"before")
        await relay.stop()
        with pytest.raises(StorageUnavailable):
            await save(storage, "pg-flap", b"during")
        with pytest.raises(StorageUnavailable):
            await storage.latest("pg-flap")
        with pytest.raises(StorageUnavailable):
            await storage.check()
        await relay.start()
        after = await save(storage, "pg-flap", b"after")
        await storage.check()
        page = await storage.list_uploads("pg-flap", after=None, limit=10)
        assert [i.version for i in page.items] == [after.version, before.version]
        assert await read_all(storage, page.items[1]) == b"before"
    finally:
        await storage.close()
        await relay.stop()


def test_asyncpg_protocol_state_errors_are_unavailable_not_internal_errors() -> None:
    with pytest.raises(StorageUnavailable), _db_errors():
        raise asyncpg.InternalClientError("cannot switch to state 15; another operation (2) ...")


class _ReleaseFails:
    """A pool whose release raises as asyncpg's did on the twin when PostgreSQL shut down just
    after answering a commit (tests/cluster/test_fleet.py stops the real server)."""

    def __init__(self) -> None:
        self.released = 0

    async def acquire(self, **options: float) -> object:
        return object()

    async def release(self, conn: object) -> None:
        self.released += 1
        raise asyncpg.InternalClientError("cannot switch to state 15; another operation (2) ...")


async def test_a_connection_the_pool_cannot_reset_does_not_fail_a_finished_block() -> None:
    index = PgIndex("postgresql://unused@127.0.0.1:1/none")
    pool = _ReleaseFails()
    index._pool = pool  # type: ignore[assignment]
    async with index.connection():
        done = True  # e.g. a commit whose result came back
    assert done and pool.released == 1
    with pytest.raises(StorageUnavailable):  # the block's own failure still surfaces
        async with index.connection():
            raise asyncpg.ConnectionDoesNotExistError("connection was closed in the middle")
    assert pool.released == 2


class _CommitLost:
    """A connection whose statement is sent and then lost, as when PostgreSQL shuts down in the
    middle of a commit; or one whose statement fails on its own (a deadlock)."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    async def fetch(self, *args: object) -> list[object]:
        raise self.error


class _OnePool:
    def __init__(self, conn: object) -> None:
        self.conn = conn

    async def acquire(self, **options: float) -> object:
        return self.conn

    async def release(self, conn: object) -> None:
        return None


@pytest.mark.parametrize(
    "error",
    [
        asyncpg.ConnectionDoesNotExistError("connection was closed in the middle of operation"),
        asyncpg.AdminShutdownError("terminating connection due to administrator command"),
        TimeoutError(),
    ],
    ids=["connection-lost", "admin-shutdown", "timeout"],
)
async def test_a_commit_lost_after_it_was_sent_says_its_outcome_is_unknown(
    error: Exception,
) -> None:
    index = PgIndex("postgresql://unused@127.0.0.1:1/none")
    index._pool = _OnePool(_CommitLost(error))  # type: ignore[assignment]
    info = UploadInfo("dev", new_version_id(), 3, "0" * 64, None, None)
    with pytest.raises(CommitOutcomeUnknown) as raised:
        await index.commit_object("segments/x", 3, [Row(info, None, 0, 0.0)], 0.0)
    assert raised.value.status == 503 and "Idempotency-Key" in raised.value.message


async def test_a_statement_that_failed_on_its_own_is_a_plain_unavailable() -> None:
    index = PgIndex("postgresql://unused@127.0.0.1:1/none")
    index._pool = _OnePool(_CommitLost(asyncpg.SerializationError("could not serialize")))  # type: ignore[assignment]
    info = UploadInfo("dev", new_version_id(), 3, "0" * 64, None, None)
    with pytest.raises(StorageUnavailable) as raised:
        await index.commit_object("segments/x", 3, [Row(info, None, 0, 0.0)], 0.0)
    assert not isinstance(raised.value, CommitOutcomeUnknown)


def test_the_api_is_unchanged_for_clients(s3_bucket: str, pg_index_url: str) -> None:
    """The seed's calls and the later ones, through the app, in the fleet mode."""
    data = os.urandom(5000)
    with app_server(f"s3://{s3_bucket}/{PREFIX}", index=pg_index_url) as server:
        client: httpx.Client = server.client()
        assert client.get("/readyz").status_code == 200
        put = client.put("/api/devices/sensor-42", files={"file": ("t.bin", data)})
        assert put.status_code == 200, put.text
        assert put.json()["message"] == "File uploaded for Device ID - sensor-42"
        again = client.put(
            "/api/devices/sensor-42", content=data, headers={"Idempotency-Key": "k-1"}
        )
        replay = client.put(
            "/api/devices/sensor-42", content=data, headers={"Idempotency-Key": "k-1"}
        )
        assert replay.json()["version"] == again.json()["version"]
        assert replay.json().get("replayed") is True
        devices = client.get("/api/devices/").json()
        assert devices["TelemetryDataDownloads"] == ["sensor-42"]
        latest = client.get("/api/devices/sensor-42")
        assert latest.status_code == 200
        assert base64.b64decode(latest.content) == data
        raw = client.get("/api/devices/sensor-42", params={"encoding": "raw"})
        assert raw.content == data
        ranged = client.get(
            "/api/devices/sensor-42", params={"encoding": "raw"}, headers={"Range": "bytes=10-19"}
        )
        assert ranged.status_code == 206 and ranged.content == data[10:20]
        cached = client.get(
            "/api/devices/sensor-42",
            params={"encoding": "raw"},
            headers={"If-None-Match": raw.headers["ETag"]},
        )
        assert cached.status_code == 304
        history = client.get("/api/devices/sensor-42/uploads").json()["uploads"]
        assert [u["version"] for u in history] == [again.json()["version"], put.json()["version"]]
        # The fleet view, paged one device at a time in each order, with the API's cursors.
        assert client.put("/api/devices/sensor-7", content=b"later").status_code == 200
        for order, expected in (
            ("device_id", ["sensor-42", "sensor-7"]),
            ("last_upload_at", ["sensor-42", "sensor-7"]),
        ):
            seen, cursor = [], None
            while True:
                params = {"sort": order, "limit": "1", **({"cursor": cursor} if cursor else {})}
                page = client.get("/api/fleet/devices", params=params)
                assert page.status_code == 200, page.text
                seen += [row["device_id"] for row in page.json()["devices"]]
                cursor = page.json()["next_cursor"]
                if cursor is None:
                    break
            assert seen == expected, order
        summary = client.get("/api/fleet/summary").json()
        assert (summary["devices"], summary["uploads_last_hour"]) == (2, 3)
        activity = client.get("/api/devices/sensor-42/activity", params={"bucket": "1h"})
        assert sum(b["uploads"] for b in activity.json()["buckets"]) == 2
        assert client.delete("/api/devices/sensor-7").status_code == 200
        first = put.json()["version"]
        assert client.delete(f"/api/devices/sensor-42/uploads/{first}").status_code == 200
        assert client.get(f"/api/devices/sensor-42/uploads/{first}").status_code == 404
        assert client.delete("/api/devices/sensor-42").status_code == 200
        assert client.get("/api/devices/sensor-42").status_code == 404


async def test_a_large_resumable_upload_completes_into_the_index(
    fleet: IndexedStorage, s3_bucket: str, s3_env: dict[str, str]
) -> None:
    data = os.urandom(9 * 1024 * 1024 + 5)  # assembled by multipart upload
    upload = ResumableUpload(
        device_id="tus-big",
        upload_id=new_upload_id(),
        length=len(data),
        offset=0,
        filename="big.bin",
        content_type=None,
        expected_sha256=hashlib.sha256(data).hexdigest(),
        expires_at=time.time() + 3600,
    )
    await fleet.create_resumable(upload, max_per_device=0)
    half = len(data) // 2
    for start, end in ((0, half), (half, len(data))):
        state = await fleet.append_resumable(
            "tus-big",
            upload.upload_id,
            start,
            measured(data[start:end]),
            length=None,
            expires_at=time.time() + 3600,
            version=new_version_id(),
        )
    assert state.version is not None
    info = await fleet.latest("tus-big")
    assert info.version == state.version
    assert hashlib.sha256(await read_all(fleet, info)).hexdigest() == info.sha256
    assert list(objects(s3_env, s3_bucket)) == [info.locator]  # its own object, indexed
    summary = await fleet.fleet_summary(now=time.time(), silent_before=0)
    assert (summary.devices, summary.bytes_last_hour) == (1, len(data))
