"""The embedded default backend: files on local disk, indexed by SQLite.

Layout under the root folder (see docs/storage.md):
    index.sqlite3            devices and versions (metadata), WAL mode
    blobs/<device>/<version> the bytes of each version
    tmp/<version>.<device>.part   uploads in progress

An upload is written to tmp/, flushed (fsync), renamed into blobs/ and its directory flushed,
and only then recorded in the index: the index row is the moment it becomes visible, so readers
see a whole upload or none. Any failure removes the temp file before the error propagates.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import BinaryIO, TypeVar

from mindproject.errors import (
    DeviceNotFound,
    InsufficientStorage,
    StorageUnavailable,
    UploadNotFound,
)
from mindproject.storage.base import CHUNK_BYTES, Page, Storage, UploadInfo, UploadSource

R = TypeVar("R")
# Bytes gathered in memory before one write() in a worker thread: fewer thread hops per upload.
WRITE_BATCH = 1024 * 1024
STALE_TEMP_SECONDS = 24 * 3600

_SCHEMA = """
CREATE TABLE IF NOT EXISTS uploads (
    device_id TEXT NOT NULL,
    version TEXT NOT NULL,
    size INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    filename TEXT,
    content_type TEXT,
    PRIMARY KEY (device_id, version)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS devices (
    device_id TEXT PRIMARY KEY,
    uploads INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS revocations (
    device_id TEXT PRIMARY KEY,
    revoked_at REAL NOT NULL
) WITHOUT ROWID;
"""
_COLUMNS = "device_id, version, size, sha256, filename, content_type"


def _os_error(exc: OSError) -> Exception:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return InsufficientStorage("the storage volume is full")
    return StorageUnavailable(f"file storage failed: {exc.strerror or exc}")


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_all(fd: int, data: bytes | bytearray | memoryview) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _open_blob(path: Path) -> BinaryIO | None:
    try:
        return path.open("rb")
    except FileNotFoundError:
        return None  # deleted since its index row was read


class FileStorage(Storage):
    def __init__(self, root: Path, *, fsync: bool = True) -> None:
        self.root = root
        self.fsync = fsync
        self._blobs = root / "blobs"
        self._tmp = root / "tmp"
        self._pool = ThreadPoolExecutor(max_workers=16, thread_name_prefix="file-storage")
        self._db_lock = threading.Lock()
        try:
            self._blobs.mkdir(parents=True, exist_ok=True)
            self._tmp.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(
                root / "index.sqlite3", check_same_thread=False, isolation_level=None, timeout=30
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(f"PRAGMA synchronous={'FULL' if fsync else 'OFF'}")
            self._db.executescript(_SCHEMA)
        except OSError as exc:
            raise _os_error(exc) from exc
        self._remove_stale_temp_files()

    def _remove_stale_temp_files(self) -> None:
        # Leftovers of a crashed process; age-based so other live workers' uploads survive.
        cutoff = time.time() - STALE_TEMP_SECONDS
        for entry in os.scandir(self._tmp):
            if entry.name.endswith(".part") and entry.stat().st_mtime < cutoff:
                Path(entry.path).unlink(missing_ok=True)

    async def _run(self, fn: Callable[..., R], *args: object) -> R:
        try:
            return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)
        except OSError as exc:
            raise _os_error(exc) from exc
        except sqlite3.OperationalError as exc:
            raise StorageUnavailable(f"file storage index failed: {exc}") from exc

    def _query(self, sql: str, params: tuple[object, ...]) -> list[tuple[object, ...]]:
        with self._db_lock:
            return self._db.execute(sql, params).fetchall()

    # writes --------------------------------------------------------------------------------
    async def save(
        self,
        device_id: str,
        version: str,
        source: UploadSource,
        *,
        filename: str | None,
        content_type: str | None,
    ) -> UploadInfo:
        tmp = self._tmp / f"{version}.{device_id}.part"
        fd: int | None = None
        pending = bytearray()
        try:
            async for chunk in source:
                pending += chunk
                if len(pending) >= WRITE_BATCH:
                    if fd is None:
                        fd = await self._run(self._open_temp, tmp)
                    await self._run(_write_all, fd, pending)
                    pending = bytearray()
            info = UploadInfo(
                device_id, version, source.size, source.sha256, filename, content_type
            )
            await self._run(self._commit, fd, tmp, bytes(pending), info)
            fd = None  # closed by _commit
            return info
        except BaseException:
            if fd is not None:
                os.close(fd)
            tmp.unlink(missing_ok=True)
            raise

    @staticmethod
    def _open_temp(tmp: Path) -> int:
        return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o640)

    def _commit(self, fd: int | None, tmp: Path, tail: bytes, info: UploadInfo) -> None:
        if fd is None:
            fd = self._open_temp(tmp)
        try:
            _write_all(fd, tail)
            if self.fsync:
                os.fsync(fd)
        finally:
            os.close(fd)
        device_dir = self._blobs / info.device_id
        for attempt in range(3):  # a concurrent delete may remove the device folder meanwhile
            created = not device_dir.exists()
            device_dir.mkdir(exist_ok=True)
            if created and self.fsync:
                _fsync_dir(self._blobs)
            try:
                tmp.rename(device_dir / info.version)
                break
            except FileNotFoundError:
                if attempt == 2:
                    raise
        if self.fsync:
            _fsync_dir(device_dir)
        with self._db_lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.execute(
                    f"INSERT INTO uploads ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)",
                    (
                        info.device_id,
                        info.version,
                        info.size,
                        info.sha256,
                        info.filename,
                        info.content_type,
                    ),
                )
                self._db.execute(
                    "INSERT INTO devices VALUES (?, 1) "
                    "ON CONFLICT (device_id) DO UPDATE SET uploads = uploads + 1",
                    (info.device_id,),
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                (device_dir / info.version).unlink(missing_ok=True)
                raise

    async def delete_device(self, device_id: str) -> int:
        versions = await self._run(self._delete_rows, device_id, None)
        if not versions:
            raise DeviceNotFound(f"no uploads for device {device_id}")
        await self._run(self._remove_blobs, device_id, versions)
        return len(versions)

    async def delete_upload(self, device_id: str, version: str) -> None:
        if not await self._run(self._delete_rows, device_id, version):
            raise UploadNotFound(f"device {device_id} has no upload {version}")
        await self._run(self._remove_blobs, device_id, [version])

    def _delete_rows(self, device_id: str, version: str | None) -> list[str]:
        where = "device_id = ?" + ("" if version is None else " AND version = ?")
        params: tuple[str, ...] = (device_id,) if version is None else (device_id, version)
        with self._db_lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                rows = self._db.execute(f"SELECT version FROM uploads WHERE {where}", params)
                versions = [row[0] for row in rows]
                if versions:
                    self._db.execute(f"DELETE FROM uploads WHERE {where}", params)
                    self._db.execute(
                        "UPDATE devices SET uploads = uploads - ? WHERE device_id = ?",
                        (len(versions), device_id),
                    )
                    self._db.execute(
                        "DELETE FROM devices WHERE uploads <= 0 AND device_id = ?", (device_id,)
                    )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return versions

    def _remove_blobs(self, device_id: str, versions: list[str]) -> None:
        device_dir = self._blobs / device_id
        for version in versions:
            (device_dir / version).unlink(missing_ok=True)
        with contextlib.suppress(OSError):  # not empty: other versions remain, or one is landing
            device_dir.rmdir()

    # reads ---------------------------------------------------------------------------------
    def _info(self, row: tuple[object, ...]) -> UploadInfo:
        device_id, version, size, sha256, filename, content_type = row
        assert isinstance(size, int)
        assert filename is None or isinstance(filename, str)
        assert content_type is None or isinstance(content_type, str)
        return UploadInfo(str(device_id), str(version), size, str(sha256), filename, content_type)

    async def latest(self, device_id: str) -> UploadInfo:
        rows = await self._run(
            self._query,
            f"SELECT {_COLUMNS} FROM uploads WHERE device_id = ? ORDER BY version LIMIT 1",
            (device_id,),
        )
        if not rows:
            raise DeviceNotFound(f"no uploads for device {device_id}")
        return self._info(rows[0])

    async def get(self, device_id: str, version: str) -> UploadInfo:
        rows = await self._run(
            self._query,
            f"SELECT {_COLUMNS} FROM uploads WHERE device_id = ? AND version = ?",
            (device_id, version),
        )
        if not rows:
            raise UploadNotFound(f"device {device_id} has no upload {version}")
        return self._info(rows[0])

    async def list_devices(self, *, prefix: str, after: str | None, limit: int) -> Page[str]:
        # Ids are ASCII below 0x7f, so prefix + DEL bounds every id that starts with prefix.
        rows = await self._run(
            self._query,
            "SELECT device_id FROM devices WHERE device_id > ? AND device_id >= ? "
            "AND device_id < ? ORDER BY device_id LIMIT ?",
            (after or "", prefix, prefix + "\x7f", limit + 1),
        )
        ids = [str(row[0]) for row in rows]
        return Page(ids[:limit], ids[limit - 1] if len(ids) > limit else None)

    async def list_uploads(
        self, device_id: str, *, after: str | None, limit: int
    ) -> Page[UploadInfo]:
        rows = await self._run(
            self._query,
            f"SELECT {_COLUMNS} FROM uploads WHERE device_id = ? AND version > ? "
            "ORDER BY version LIMIT ?",
            (device_id, after or "", limit + 1),
        )
        if not rows and after is None:
            raise DeviceNotFound(f"no uploads for device {device_id}")
        infos = [self._info(row) for row in rows]
        return Page(infos[:limit], infos[limit - 1].version if len(infos) > limit else None)

    async def read(
        self, info: UploadInfo, start: int = 0, end: int | None = None
    ) -> AsyncIterator[bytes]:
        end = info.size if end is None else end
        path = self._blobs / info.device_id / info.version
        handle = await self._run(_open_blob, path)
        if handle is None:
            raise UploadNotFound(f"device {info.device_id} has no upload {info.version}")
        try:
            position = start
            if start:
                await self._run(handle.seek, start)
            while position < end:
                chunk = await self._run(handle.read, min(CHUNK_BYTES, end - position))
                if not chunk:
                    break
                position += len(chunk)
                yield chunk
        finally:
            handle.close()

    async def list_revocations(self) -> dict[str, float]:
        rows = await self._run(self._query, "SELECT device_id, revoked_at FROM revocations", ())
        return {str(device): float(at) for device, at in rows}  # type: ignore[arg-type]

    async def set_revocation(self, device_id: str, revoked_at: float | None) -> None:
        if revoked_at is None:
            await self._run(
                self._query, "DELETE FROM revocations WHERE device_id = ?", (device_id,)
            )
        else:
            await self._run(
                self._query,
                "INSERT INTO revocations VALUES (?, ?) "
                "ON CONFLICT (device_id) DO UPDATE SET revoked_at = excluded.revoked_at",
                (device_id, revoked_at),
            )

    async def check(self) -> None:
        await self._run(self._check)

    def _check(self) -> None:
        if not os.access(self._tmp, os.W_OK):
            raise StorageUnavailable(f"{self._tmp} is not writable")
        self._query("SELECT 1", ())

    async def close(self) -> None:
        self._pool.shutdown(wait=True)
        with self._db_lock:
            self._db.close()
