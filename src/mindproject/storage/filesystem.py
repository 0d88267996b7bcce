"""The embedded default backend: files on local disk, indexed by SQLite.

Layout under the root folder (see docs/storage.md):
    index.sqlite3                 devices, versions (metadata; small files' bytes), revocations
    blobs/<device>/<version>      the bytes of each larger version
    tmp/<version>.<device>.part   larger uploads in progress, each locked (flock) by its writer
    resumable/<upload_id>.part    the bytes of an unfinished resumable (tus) upload

Small uploads (up to INLINE_MAX bytes) are stored in their index row: one SQLite commit makes
them durable and visible at once, and concurrent uploads share commits (sqlite_writer.py), so
the cost of durability does not grow with the request rate. Larger uploads are streamed to
tmp/, flushed (fsync), renamed into blobs/ and their directory flushed, and only then recorded:
the index row is always the moment an upload becomes visible, so readers see a whole upload or
none. Any failure removes the temp file before the error propagates; the temp files of a process
that died (kill -9, power loss) are recognised by their lock, which died with it, and removed at
start-up and every SWEEP_INTERVAL_SECONDS, while other workers' live uploads keep theirs.

Resumable uploads keep their state in the `resumable` table and their bytes in a part file.
An append holds an exclusive non-blocking flock on the part file (held elsewhere: UploadBusy),
truncates it to the committed offset (dropping the bytes of an append that died), streams the
chunk in, flushes, and then commits the new offset with the running sha256 in one SQLite write:
that commit is the moment the chunk counts. Any worker process can serve any request, and a
process that dies mid-append leaves nothing that blocks the upload (its lock dies with it).

The folder holds every device's data, so it is private to the service's user: created 0700 (and
tightened, with a warning, when found open to others), its files 0600.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import logging
import os
import sqlite3
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import BinaryIO, TypeVar

from mindproject.errors import (
    BadRequest,
    ChecksumMismatch,
    DeviceNotFound,
    InsufficientStorage,
    MindProjectError,
    NotSupportedByStorage,
    OffsetMismatch,
    PayloadTooLarge,
    ResumableNotFound,
    StorageUnavailable,
    TooManyRequests,
    UploadBusy,
    UploadNotFound,
)
from mindproject.identifiers import VERSION_EPOCH
from mindproject.resumable_hash import ResumableSha256
from mindproject.storage.base import (
    CHUNK_BYTES,
    ActivityBucket,
    DeviceSummary,
    DirectUploadTicket,
    FleetSummary,
    Page,
    ResumableUpload,
    Storage,
    UploadInfo,
    UploadSource,
    activity_buckets,
)
from mindproject.storage.sqlite_writer import SqliteWriter

R = TypeVar("R")
# Uploads up to this size live in the index itself (one commit, no file, no directory fsync).
INLINE_MAX = 256 * 1024
# Bytes gathered in memory before one write() in a worker thread: fewer thread hops per upload.
WRITE_BATCH = 1024 * 1024
SWEEP_INTERVAL_SECONDS = 600
# A part file without a live upload row is removed only after this long: a creation writes the
# file before its row, and must not lose it to a sweep in between.
ORPHAN_GRACE_SECONDS = 60
INDEX_NAME = "index.sqlite3"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS uploads (
    device_id TEXT NOT NULL,
    version TEXT NOT NULL,
    size INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    filename TEXT,
    content_type TEXT,
    data BLOB,
    PRIMARY KEY (device_id, version)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS devices (
    device_id TEXT PRIMARY KEY,
    uploads INTEGER NOT NULL,
    last_us INTEGER,
    bytes INTEGER NOT NULL DEFAULT 0,
    last_size INTEGER
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS idempotency (
    device_id TEXT NOT NULL,
    key TEXT NOT NULL,
    version TEXT NOT NULL,
    PRIMARY KEY (device_id, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS revocations (
    device_id TEXT PRIMARY KEY,
    revoked_at REAL NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS resumable (
    upload_id TEXT PRIMARY KEY,
    device_id TEXT NOT NULL,
    length INTEGER,
    received INTEGER NOT NULL,
    filename TEXT,
    content_type TEXT,
    expected_sha256 TEXT,
    hash_state BLOB NOT NULL,
    expires_at REAL NOT NULL,
    version TEXT
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS resumable_by_device ON resumable (device_id, version);
CREATE INDEX IF NOT EXISTS resumable_by_expiry ON resumable (expires_at);
"""
_RESUMABLE_COLUMNS = (
    "device_id, upload_id, length, received, filename, content_type, expected_sha256, "
    "expires_at, version, hash_state"
)
_COLUMNS = "device_id, version, size, sha256, filename, content_type"


log = logging.getLogger("mindproject.storage")


def _os_error(exc: OSError) -> MindProjectError:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return InsufficientStorage("the storage volume is full")
    return StorageUnavailable(f"file storage failed: {exc.strerror or exc}")


def _db_error(exc: sqlite3.Error) -> MindProjectError:
    if isinstance(exc, sqlite3.OperationalError) and "full" in str(exc):
        return InsufficientStorage("the storage volume is full")
    return StorageUnavailable(f"file storage index failed: {exc}")


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


def _make_private(root: Path) -> None:
    """Only the service's user may enter the data folder or read the index (inline uploads)."""
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    mode = root.stat().st_mode & 0o777
    if mode & 0o077:
        root.chmod(0o700)
        log.warning(
            "the data folder was open to other users: tightened to 0700",
            extra={"path": str(root), "mode": oct(mode)},
        )
    index = root / INDEX_NAME
    # SQLite gives the WAL and shared-memory files the mode of the database file.
    os.close(os.open(index, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600))
    for name in (INDEX_NAME, f"{INDEX_NAME}-wal", f"{INDEX_NAME}-shm", f"{INDEX_NAME}.lock"):
        path = root / name
        with contextlib.suppress(FileNotFoundError):
            if path.stat().st_mode & 0o077:
                path.chmod(0o600)


# Uploads and bytes per minute of upload time across the fleet, kept with each upload and delete:
# the fleet's last hour and day are 60 and 1,440 rows of it (plus the uploads of the one minute
# cut by the window's start), whatever the upload rate.
MINUTE_US = 60_000_000
_UPLOAD_MINUTES = """
CREATE TABLE upload_minutes (
    minute INTEGER PRIMARY KEY,
    uploads INTEGER NOT NULL,
    bytes INTEGER NOT NULL
) WITHOUT ROWID
"""
# The fleet view's indexes (made after the columns they cover exist in older index files):
# devices by last upload (oldest first, silent filter), and every version by upload time across
# devices (version ids encode it), covering size, for the fleet's last hour and day.
_FLEET_INDEXES = """
CREATE INDEX IF NOT EXISTS devices_by_last_upload ON devices (last_us, device_id);
CREATE INDEX IF NOT EXISTS uploads_by_time ON uploads (version, size);
"""


def _migrate(db: sqlite3.Connection) -> None:
    db.executescript(_SCHEMA)
    columns = {row[1] for row in db.execute("PRAGMA table_info(uploads)")}
    if "data" not in columns:  # indexes made before small uploads were stored inline
        db.execute("ALTER TABLE uploads ADD COLUMN data BLOB")
    # The fleet view's figures are filled in one transaction: a start that dies half-way leaves
    # the index as it was, and the next start fills them again.
    db.execute("BEGIN IMMEDIATE")
    try:
        _add_fleet_figures(db)
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")
    db.executescript(_FLEET_INDEXES)


def _add_fleet_figures(db: sqlite3.Connection) -> None:
    """Per-device figures and per-minute counts for index files made before the fleet view,
    counted once from the uploads table (the only walk over it, at the upgrade)."""
    tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if "upload_minutes" not in tables:
        db.execute(_UPLOAD_MINUTES)
        db.execute(
            "INSERT INTO upload_minutes SELECT "
            f"({VERSION_EPOCH} - CAST(substr(version, 1, 16) AS INTEGER)) / {MINUTE_US}, "
            "COUNT(*), SUM(size) FROM uploads GROUP BY 1"
        )
    device_columns = {row[1] for row in db.execute("PRAGMA table_info(devices)")}
    if "last_us" not in device_columns:
        db.execute("ALTER TABLE devices ADD COLUMN last_us INTEGER")
        db.execute("ALTER TABLE devices ADD COLUMN bytes INTEGER NOT NULL DEFAULT 0")
        db.execute("ALTER TABLE devices ADD COLUMN last_size INTEGER")
        db.execute(
            "UPDATE devices SET "
            "uploads = (SELECT COUNT(*) FROM uploads u WHERE u.device_id = devices.device_id), "
            "bytes = (SELECT COALESCE(SUM(size), 0) FROM uploads u "
            "WHERE u.device_id = devices.device_id)"
        )
        db.execute("DELETE FROM devices WHERE uploads <= 0")
        rows = db.execute("SELECT device_id FROM devices").fetchall()
        for (device_id,) in rows:
            _refresh_latest(db, str(device_id))


def _version_us(version: str) -> int:
    """Microseconds since the epoch at which a version was uploaded (from its id)."""
    return VERSION_EPOCH - int(version[:16])


def _version_bound(epoch_us: int) -> str:
    """The version-id bound of a moment: versions uploaded at or after it sort before it ('.'
    sorts after the '-' that follows the 16 digits of every version id)."""
    return f"{VERSION_EPOCH - epoch_us:016d}."


def _refresh_latest(db: sqlite3.Connection, device_id: str) -> None:
    """Set a device's last upload time and size from its newest version (one index seek)."""
    row = db.execute(
        "SELECT version, size FROM uploads WHERE device_id = ? ORDER BY version LIMIT 1",
        (device_id,),
    ).fetchone()
    if row is not None:
        db.execute(
            "UPDATE devices SET last_us = ?, last_size = ? WHERE device_id = ?",
            (_version_us(str(row[0])), row[1], device_id),
        )


class FileStorage(Storage):
    def __init__(self, root: Path, *, fsync: bool = True) -> None:
        self.root = root
        self.fsync = fsync
        self._blobs = root / "blobs"
        self._tmp = root / "tmp"
        self._parts = root / "resumable"
        self._pool = ThreadPoolExecutor(max_workers=16, thread_name_prefix="file-storage")
        try:
            _make_private(root)
            self._blobs.mkdir(mode=0o700, exist_ok=True)
            self._tmp.mkdir(mode=0o700, exist_ok=True)
            self._parts.mkdir(mode=0o700, exist_ok=True)
            index = root / INDEX_NAME
            self._writer = SqliteWriter(index, synchronous="FULL" if fsync else "OFF")
            self._writer.run_now(_migrate)
            # Reads run on the event loop thread: they are short range scans of an indexed table,
            # cheaper in place than a thread hop, and WAL readers never wait for the writer.
            # That loop's thread need not be the one that opened the storage (a test client runs
            # the app in a thread of its own): one thread at a time uses it, never two.
            self._reader = sqlite3.connect(
                index, isolation_level=None, timeout=5, check_same_thread=False
            )
        except OSError as exc:
            raise _os_error(exc) from exc
        except sqlite3.Error as exc:
            raise _db_error(exc) from exc
        self._next_sweep = time.monotonic() + SWEEP_INTERVAL_SECONDS
        self.remove_dead_temp_files()

    def remove_dead_temp_files(self) -> int:
        """Remove temp files whose writer is gone (their lock is free); the number removed."""
        removed = 0
        for entry in os.scandir(self._tmp):
            if not entry.name.endswith(".part"):
                continue
            try:
                fd = os.open(entry.path, os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                continue  # landed or removed meanwhile
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # a live upload
            else:
                Path(entry.path).unlink(missing_ok=True)
                removed += 1
            finally:
                os.close(fd)
        if removed:
            log.warning("removed temp files of dead uploads", extra={"files": removed})
        return removed

    async def _run(self, fn: Callable[..., R], *args: object) -> R:
        try:
            return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)
        except OSError as exc:
            raise _os_error(exc) from exc

    async def _write(self, job: Callable[[sqlite3.Connection], R]) -> R:
        try:
            return await self._writer.submit(job)
        except sqlite3.Error as exc:
            raise _db_error(exc) from exc

    def _query(self, sql: str, params: tuple[object, ...]) -> list[tuple[object, ...]]:
        try:
            return self._reader.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise _db_error(exc) from exc

    # writes --------------------------------------------------------------------------------
    async def save(
        self,
        device_id: str,
        version: str,
        source: UploadSource,
        *,
        filename: str | None,
        content_type: str | None,
        idempotency_key: str | None = None,
    ) -> UploadInfo:
        if time.monotonic() >= self._next_sweep:
            self._next_sweep = time.monotonic() + SWEEP_INTERVAL_SECONDS
            await self._run(self.remove_dead_temp_files)
        tmp = self._tmp / f"{version}.{device_id}.part"
        blob = self._blobs / device_id / version
        fd: int | None = None
        pending = bytearray()
        try:
            async for chunk in source:
                pending += chunk
                if len(pending) >= (WRITE_BATCH if fd is not None else INLINE_MAX + 1):
                    if fd is None:
                        fd = await self._run(self._open_temp, tmp)
                    await self._run(_write_all, fd, pending)
                    pending = bytearray()
            info = UploadInfo(
                device_id, version, source.size, source.sha256, filename, content_type
            )
            if fd is None:
                data = bytes(pending)
                return await self._write(lambda db: self._insert(db, info, data, idempotency_key))
            landing, fd = fd, None  # _land_file closes it, whatever happens
            await self._run(self._land_file, landing, tmp, bytes(pending), info)
            kept = await self._write(lambda db: self._insert(db, info, None, idempotency_key))
            if kept.version != info.version:  # the key's earlier version stands: drop this copy
                blob.unlink(missing_ok=True)
            return kept
        except BaseException:
            if fd is not None:
                os.close(fd)
            tmp.unlink(missing_ok=True)
            blob.unlink(missing_ok=True)
            raise

    @staticmethod
    def _open_temp(tmp: Path) -> int:
        while True:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            # Held until the file is landed or removed; it dies with the process (the sweep).
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                if tmp.stat().st_ino == os.fstat(fd).st_ino:
                    return fd
            except FileNotFoundError:
                pass
            os.close(fd)  # a sweep took it between open and lock: make it again

    def _land_file(self, fd: int, tmp: Path, tail: bytes, info: UploadInfo) -> None:
        """Write the tail, flush, close, and move the temp file to its blob path (flushed)."""
        try:
            _write_all(fd, tail)
            if self.fsync:
                os.fsync(fd)
        finally:
            os.close(fd)
        self._into_blobs(info, tmp.rename)

    def _into_blobs(self, info: UploadInfo, place: Callable[[Path], object]) -> None:
        """Put a version's bytes at blobs/<device>/<version> with `place(target)` (a rename or
        a hard link), and flush the directory entries."""
        device_dir = self._blobs / info.device_id
        for attempt in range(3):  # a concurrent delete may remove the device folder meanwhile
            created = not device_dir.exists()
            device_dir.mkdir(mode=0o700, exist_ok=True)
            if created and self.fsync:
                _fsync_dir(self._blobs)
            try:
                place(device_dir / info.version)
                break
            except FileNotFoundError:
                if attempt == 2:
                    raise
        if self.fsync:
            _fsync_dir(device_dir)

    @classmethod
    def _insert(
        cls, db: sqlite3.Connection, info: UploadInfo, data: bytes | None, key: str | None
    ) -> UploadInfo:
        """Record a version, unless its idempotency key already stands for one: return that."""
        if key is not None:
            earlier = cls._keyed_version(db, info.device_id, key)
            if earlier is not None:
                return earlier
            db.execute(
                "INSERT OR REPLACE INTO idempotency VALUES (?, ?, ?)",
                (info.device_id, key, info.version),
            )
        db.execute(
            f"INSERT INTO uploads ({_COLUMNS}, data) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                info.device_id,
                info.version,
                info.size,
                info.sha256,
                info.filename,
                info.content_type,
                data,
            ),
        )
        # The device's running figures, in this same transaction. A version is newer than the
        # device's last one unless its id was made earlier (a slow upload that finished late).
        uploaded_us = _version_us(info.version)
        db.execute(
            "INSERT INTO devices (device_id, uploads, last_us, bytes, last_size) "
            "VALUES (?, 1, ?, ?, ?) ON CONFLICT (device_id) DO UPDATE SET "
            "uploads = uploads + 1, bytes = bytes + excluded.bytes, "
            "last_size = CASE WHEN excluded.last_us >= COALESCE(last_us, 0) "
            "THEN excluded.last_size ELSE last_size END, "
            "last_us = MAX(COALESCE(last_us, 0), excluded.last_us)",
            (info.device_id, uploaded_us, info.size, info.size),
        )
        db.execute(
            "INSERT INTO upload_minutes VALUES (?, 1, ?) ON CONFLICT (minute) DO UPDATE SET "
            "uploads = uploads + 1, bytes = bytes + excluded.bytes",
            (uploaded_us // MINUTE_US, info.size),
        )
        return info

    @classmethod
    def _keyed_version(cls, db: sqlite3.Connection, device_id: str, key: str) -> UploadInfo | None:
        row = db.execute(
            f"SELECT {', '.join('u.' + c for c in _COLUMNS.split(', '))} FROM idempotency i "
            "JOIN uploads u ON u.device_id = i.device_id AND u.version = i.version "
            "WHERE i.device_id = ? AND i.key = ?",
            (device_id, key),
        ).fetchone()
        return cls._info(row) if row else None

    async def find_by_key(self, device_id: str, idempotency_key: str) -> UploadInfo | None:
        try:
            return self._keyed_version(self._reader, device_id, idempotency_key)
        except sqlite3.Error as exc:
            raise _db_error(exc) from exc

    async def delete_device(self, device_id: str) -> int:
        removed = await self._write(lambda db: self._delete_rows(db, device_id, None))
        if not removed:
            raise DeviceNotFound(f"no uploads for device {device_id}")
        await self._run(self._remove_blobs, device_id, removed)
        return len(removed)

    async def delete_upload(self, device_id: str, version: str) -> None:
        removed = await self._write(lambda db: self._delete_rows(db, device_id, version))
        if not removed:
            raise UploadNotFound(f"device {device_id} has no upload {version}")
        await self._run(self._remove_blobs, device_id, removed)

    @staticmethod
    def _delete_rows(
        db: sqlite3.Connection, device_id: str, version: str | None
    ) -> list[tuple[str, bool]]:
        """Delete index rows; returns (version, bytes are in a blob file) for each."""
        where = "device_id = ?" + ("" if version is None else " AND version = ?")
        params: tuple[str, ...] = (device_id,) if version is None else (device_id, version)
        rows = db.execute(
            f"SELECT version, data IS NULL, size FROM uploads WHERE {where}", params
        ).fetchall()
        found = [(str(row[0]), bool(row[1])) for row in rows]
        if found:
            db.execute(f"DELETE FROM uploads WHERE {where}", params)
            db.execute(f"DELETE FROM idempotency WHERE {where}", params)
            db.execute(
                "UPDATE devices SET uploads = uploads - ?, bytes = bytes - ? WHERE device_id = ?",
                (len(found), sum(int(row[2]) for row in rows), device_id),
            )
            db.execute("DELETE FROM devices WHERE uploads <= 0 AND device_id = ?", (device_id,))
            db.executemany(
                "UPDATE upload_minutes SET uploads = uploads - 1, bytes = bytes - ? "
                "WHERE minute = ?",
                [(int(row[2]), _version_us(str(row[0])) // MINUTE_US) for row in rows],
            )
            _refresh_latest(db, device_id)  # the newest version may have been among them
        return found

    def _remove_blobs(self, device_id: str, removed: list[tuple[str, bool]]) -> None:
        device_dir = self._blobs / device_id
        for version, in_file in removed:
            if in_file:
                (device_dir / version).unlink(missing_ok=True)
        with contextlib.suppress(OSError):  # not empty: other versions remain, or one is landing
            device_dir.rmdir()

    # reads ---------------------------------------------------------------------------------
    @staticmethod
    def _info(row: tuple[object, ...]) -> UploadInfo:
        device_id, version, size, sha256, filename, content_type = row
        assert isinstance(size, int)
        assert filename is None or isinstance(filename, str)
        assert content_type is None or isinstance(content_type, str)
        return UploadInfo(str(device_id), str(version), size, str(sha256), filename, content_type)

    async def latest(self, device_id: str) -> UploadInfo:
        rows = self._query(
            f"SELECT {_COLUMNS} FROM uploads WHERE device_id = ? ORDER BY version LIMIT 1",
            (device_id,),
        )
        if not rows:
            raise DeviceNotFound(f"no uploads for device {device_id}")
        return self._info(rows[0])

    async def get(self, device_id: str, version: str) -> UploadInfo:
        rows = self._query(
            f"SELECT {_COLUMNS} FROM uploads WHERE device_id = ? AND version = ?",
            (device_id, version),
        )
        if not rows:
            raise UploadNotFound(f"device {device_id} has no upload {version}")
        return self._info(rows[0])

    async def list_devices(self, *, prefix: str, after: str | None, limit: int) -> Page[str]:
        # Ids are ASCII below 0x7f, so prefix + DEL bounds every id that starts with prefix.
        rows = self._query(
            "SELECT device_id FROM devices WHERE device_id > ? AND device_id >= ? "
            "AND device_id < ? ORDER BY device_id LIMIT ?",
            (after or "", prefix, prefix + "\x7f", limit + 1),
        )
        ids = [str(row[0]) for row in rows]
        return Page(ids[:limit], ids[limit - 1] if len(ids) > limit else None)

    async def list_uploads(
        self, device_id: str, *, after: str | None, limit: int
    ) -> Page[UploadInfo]:
        rows = self._query(
            f"SELECT {_COLUMNS} FROM uploads WHERE device_id = ? AND version > ? "
            "ORDER BY version LIMIT ?",
            (device_id, after or "", limit + 1),
        )
        if not rows and after is None:
            raise DeviceNotFound(f"no uploads for device {device_id}")
        infos = [self._info(row) for row in rows]
        return Page(infos[:limit], infos[limit - 1].version if len(infos) > limit else None)

    # fleet view: each an index range scan (devices by id or by last upload; uploads by time)
    async def fleet_devices(
        self,
        *,
        prefix: str,
        after: str | None,
        limit: int,
        sort: str,
        silent_before: float | None,
    ) -> Page[DeviceSummary]:
        # One lower bound on the id, so SQLite seeks to it (given two, it may seek to the prefix
        # and filter every row up to the cursor).
        if sort == "device_id" and after is not None and after >= prefix:
            where = ["d.device_id > ?", "d.device_id < ?"]
            params: list[object] = [after, prefix + "\x7f"]
        else:
            where = ["d.device_id >= ?", "d.device_id < ?"]
            params = [prefix, prefix + "\x7f"]
        if silent_before is not None:
            where.append("d.last_us < ?")
            params.append(int(silent_before * 1_000_000))
        source = "devices d"
        if sort == "last_upload_at":
            order = "d.last_us, d.device_id"
            if not prefix:
                # Walk the time index and stop at the page's end. (With a prefix, the planner's
                # id range, sorted, costs the devices that match it: better when they are few.)
                source = "devices d INDEXED BY devices_by_last_upload"
            if after is not None:
                last_us, _, device_id = after.partition("/")
                where.append("(d.last_us, d.device_id) > (?, ?)")
                params += [int(last_us), device_id]
        else:
            order = "d.device_id"
            if after is not None and after < prefix:
                where.append("d.device_id > ?")  # below the prefix: the prefix bound decides
                params.append(after)
        rows = self._query(
            "SELECT d.device_id, d.last_us, d.uploads, d.bytes, d.last_size, r.revoked_at "
            f"FROM {source} LEFT JOIN revocations r ON r.device_id = d.device_id "
            f"WHERE {' AND '.join(where)} ORDER BY {order} LIMIT ?",
            (*params, limit + 1),
        )
        items = [self._summary(row) for row in rows[:limit]]
        last = None
        if len(rows) > limit:
            tail = items[-1]
            last = (
                f"{rows[limit - 1][1]}/{tail.device_id}"
                if sort == "last_upload_at"
                else tail.device_id
            )
        return Page(items, last)

    @staticmethod
    def _summary(row: tuple[object, ...]) -> DeviceSummary:
        device_id, last_us, uploads, size, last_size, revoked_at = row
        assert isinstance(uploads, int) and isinstance(size, int)
        assert last_us is None or isinstance(last_us, int)
        assert last_size is None or isinstance(last_size, int)
        assert revoked_at is None or isinstance(revoked_at, int | float)
        return DeviceSummary(
            device_id=str(device_id),
            last_upload_at=None if last_us is None else last_us / 1_000_000,
            uploads=uploads,
            bytes=size,
            last_size=last_size,
            revoked_at=None if revoked_at is None else float(revoked_at),
        )

    async def fleet_summary(self, *, now: float, silent_before: float) -> FleetSummary:
        now_us = int(now * 1_000_000)

        def since(seconds: int) -> tuple[int, int]:
            # Whole minutes from the rollup; the minute the window's start cuts, from the index.
            start_us = now_us - seconds * 1_000_000
            first_whole = start_us // MINUTE_US + 1
            whole = self._query(
                "SELECT COALESCE(SUM(uploads), 0), COALESCE(SUM(bytes), 0) FROM upload_minutes "
                "WHERE minute >= ? AND minute <= ?",
                (first_whole, now_us // MINUTE_US),
            )[0]
            edge = self._query(
                "SELECT COUNT(*), COALESCE(SUM(size), 0) FROM uploads INDEXED BY uploads_by_time "
                "WHERE version < ? AND version >= ?",
                (_version_bound(start_us), _version_bound(first_whole * MINUTE_US)),
            )[0]
            return (
                int(whole[0]) + int(edge[0]),  # type: ignore[call-overload]
                int(whole[1]) + int(edge[1]),  # type: ignore[call-overload]
            )

        devices, silent = self._query(
            "SELECT (SELECT COUNT(*) FROM devices), "
            "(SELECT COUNT(*) FROM devices WHERE last_us < ?)",
            (int(silent_before * 1_000_000),),
        )[0]
        revoked = self._query("SELECT COUNT(*) FROM revocations", ())[0][0]
        hour, day = since(3600), since(86400)
        return FleetSummary(
            devices=int(devices),  # type: ignore[call-overload]
            silent_devices=int(silent),  # type: ignore[call-overload]
            revoked_devices=int(revoked),  # type: ignore[call-overload]
            uploads_last_hour=hour[0],
            bytes_last_hour=hour[1],
            uploads_last_day=day[0],
            bytes_last_day=day[1],
        )

    async def device_activity(
        self, device_id: str, *, bucket_seconds: int, start: float, end: float
    ) -> list[ActivityBucket]:
        if not self._query("SELECT 1 FROM devices WHERE device_id = ?", (device_id,)):
            raise DeviceNotFound(f"no uploads for device {device_id}")
        first = int(start // bucket_seconds) * bucket_seconds
        rows = self._query(
            "SELECT version, size FROM uploads WHERE device_id = ? AND version < ? "
            "AND version >= ?",
            (device_id, _version_bound(int(first * 1_000_000)), _version_bound(int(end * 1e6))),
        )
        return activity_buckets(
            ((_version_us(str(v)) / 1_000_000, int(size)) for v, size in rows),  # type: ignore[call-overload]
            bucket_seconds=bucket_seconds,
            first=first,
            end=end,
        )

    async def read(
        self, info: UploadInfo, start: int = 0, end: int | None = None
    ) -> AsyncIterator[bytes]:
        end = info.size if end is None else end
        rows = self._query(
            "SELECT data FROM uploads WHERE device_id = ? AND version = ?",
            (info.device_id, info.version),
        )
        if not rows:
            raise UploadNotFound(f"device {info.device_id} has no upload {info.version}")
        inline = rows[0][0]
        if isinstance(inline, bytes):
            view = memoryview(inline)
            for offset in range(start, end, CHUNK_BYTES):
                yield bytes(view[offset : min(end, offset + CHUNK_BYTES)])
            return
        handle = await self._run(_open_blob, self._blobs / info.device_id / info.version)
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
        rows = self._query("SELECT device_id, revoked_at FROM revocations", ())
        return {str(device): float(at) for device, at in rows}  # type: ignore[arg-type]

    async def set_revocation(self, device_id: str, revoked_at: float | None) -> None:
        def change(db: sqlite3.Connection) -> None:
            if revoked_at is None:
                db.execute("DELETE FROM revocations WHERE device_id = ?", (device_id,))
            else:
                db.execute(
                    "INSERT INTO revocations VALUES (?, ?) ON CONFLICT (device_id) "
                    "DO UPDATE SET revoked_at = excluded.revoked_at",
                    (device_id, revoked_at),
                )

        await self._write(change)

    # resumable uploads ---------------------------------------------------------------------
    def _part(self, upload_id: str) -> Path:
        return self._parts / f"{upload_id}.part"

    @staticmethod
    def _state(row: tuple[object, ...]) -> tuple[ResumableUpload, bytes]:
        device_id, upload_id, length, received, filename, content_type, expected = row[:7]
        expires_at, version, hash_state = row[7:]
        assert isinstance(received, int) and isinstance(hash_state, bytes)
        assert length is None or isinstance(length, int)
        assert isinstance(expires_at, int | float)
        upload = ResumableUpload(
            device_id=str(device_id),
            upload_id=str(upload_id),
            length=length,
            offset=received,
            filename=filename if isinstance(filename, str) else None,
            content_type=content_type if isinstance(content_type, str) else None,
            expected_sha256=expected if isinstance(expected, str) else None,
            expires_at=float(expires_at),
            version=version if isinstance(version, str) else None,
        )
        return upload, hash_state

    def _load(self, device_id: str, upload_id: str) -> tuple[ResumableUpload, bytes]:
        """The live state (not expired) and its hash state, or ResumableNotFound."""
        rows = self._query(
            f"SELECT {_RESUMABLE_COLUMNS} FROM resumable WHERE upload_id = ? AND device_id = ?",
            (upload_id, device_id),
        )
        if not rows:
            raise ResumableNotFound(f"device {device_id} has no resumable upload {upload_id}")
        upload, hash_state = self._state(rows[0])
        if upload.expires_at <= time.time():  # expired even if the sweep has not run yet
            raise ResumableNotFound(f"resumable upload {upload_id} has expired")
        return upload, hash_state

    async def create_resumable(self, upload: ResumableUpload, *, max_per_device: int) -> None:
        part = self._part(upload.upload_id)
        # The part file exists before its row, so an append never finds a row without a file.
        await self._run(self._create_part, part)

        def insert(db: sqlite3.Connection) -> None:
            now = time.time()
            if max_per_device:
                count, soonest = db.execute(
                    "SELECT COUNT(*), MIN(expires_at) FROM resumable "
                    "WHERE device_id = ? AND version IS NULL AND expires_at > ?",
                    (upload.device_id, now),
                ).fetchone()
                if count >= max_per_device:
                    raise TooManyRequests(
                        f"device {upload.device_id} already has {count} unfinished resumable "
                        "uploads: finish or terminate one first",
                        retry_after=int(soonest - now) + 1,
                    )
            db.execute(
                f"INSERT INTO resumable ({_RESUMABLE_COLUMNS}) "
                "VALUES (?, ?, ?, 0, ?, ?, ?, ?, NULL, ?)",
                (
                    upload.device_id,
                    upload.upload_id,
                    upload.length,
                    upload.filename,
                    upload.content_type,
                    upload.expected_sha256,
                    upload.expires_at,
                    ResumableSha256().state(),
                ),
            )

        try:
            await self._write(insert)
        except BaseException:
            part.unlink(missing_ok=True)
            raise

    def _create_part(self, part: Path) -> None:
        os.close(os.open(part, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600))
        if self.fsync:
            _fsync_dir(self._parts)

    async def resumable(self, device_id: str, upload_id: str) -> ResumableUpload:
        return self._load(device_id, upload_id)[0]

    @staticmethod
    def _lock_part(part: Path) -> int | None:
        """Open the part file and take its lock: UploadBusy if another append holds it (in any
        process); None if the file is gone (completed, terminated, or being landed)."""
        while True:
            try:
                fd = os.open(part, os.O_RDWR | os.O_CLOEXEC)
            except FileNotFoundError:
                return None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise UploadBusy("another request is appending to this upload") from None
            try:
                if part.stat().st_ino == os.fstat(fd).st_ino:
                    return fd
            except FileNotFoundError:
                pass
            os.close(fd)  # unlinked or landed while we waited for the lock: look again

    @staticmethod
    def _write_hashed(fd: int, data: bytes | bytearray, hasher: ResumableSha256) -> None:
        _write_all(fd, data)
        hasher.update(data)  # in this thread too: OpenSSL releases the GIL, the loop stays free

    async def append_resumable(
        self,
        device_id: str,
        upload_id: str,
        offset: int,
        chunk: UploadSource,
        *,
        length: int | None,
        expires_at: float,
        version: str,
    ) -> ResumableUpload:
        part = self._part(upload_id)
        fd = await self._run(self._lock_part, part)
        try:
            upload, hash_state = self._load(device_id, upload_id)
            if fd is None or upload.complete:
                return await self._append_to_finished(upload, offset, chunk)
            if length is not None:
                if upload.length is not None and upload.length != length:
                    raise BadRequest(f"the upload's length is already {upload.length}")
                if length < upload.offset:
                    raise BadRequest(f"length {length} is below the offset {upload.offset}")
            total = upload.length if upload.length is not None else length
            if offset != upload.offset:
                raise OffsetMismatch(
                    f"the upload is at offset {upload.offset}, not {offset}", offset=upload.offset
                )
            # Bytes past the committed offset are those of an append that died: drop them.
            await self._run(os.ftruncate, fd, upload.offset)
            await self._run(os.lseek, fd, upload.offset, os.SEEK_SET)
            hasher = ResumableSha256(hash_state)
            received = upload.offset
            pending = bytearray()
            try:
                async for data in chunk:
                    received += len(data)
                    if total is not None and received > total:
                        raise PayloadTooLarge(f"the chunk goes past the upload's length {total}")
                    pending += data
                    if len(pending) >= WRITE_BATCH:
                        await self._run(self._write_hashed, fd, pending, hasher)
                        pending = bytearray()
                await self._run(self._write_hashed, fd, pending, hasher)
                if self.fsync:
                    await self._run(os.fsync, fd)
            except BaseException:
                with contextlib.suppress(OSError):  # the next append truncates anyway
                    os.ftruncate(fd, upload.offset)
                raise
            if total is not None and received == total:
                return await self._complete(upload, fd, hasher, total, expires_at, version)
            return await self._commit_append(upload, received, hasher, length, expires_at)
        finally:
            if fd is not None:
                os.close(fd)  # releases the lock, after the commit

    async def _append_to_finished(
        self, upload: ResumableUpload, offset: int, chunk: UploadSource
    ) -> ResumableUpload:
        """An append to an upload that is complete, or whose part file is missing."""
        if not upload.complete:
            # Every step removes the row before the file and creates the file before the row, so
            # only a hand in the data folder gets here: the bytes are lost, the client restarts.
            log.warning(
                "resumable upload without its part file", extra={"upload_id": upload.upload_id}
            )
            raise ResumableNotFound(f"resumable upload {upload.upload_id} lost its bytes")
        if offset != upload.offset:
            raise OffsetMismatch(
                f"the upload is complete at offset {upload.offset}", offset=upload.offset
            )
        async for data in chunk:
            if data:
                raise PayloadTooLarge("the upload is complete: no more bytes fit")
        return upload

    async def _commit_append(
        self,
        upload: ResumableUpload,
        received: int,
        hasher: ResumableSha256,
        length: int | None,
        expires_at: float,
    ) -> ResumableUpload:
        state = hasher.state()

        def commit(db: sqlite3.Connection) -> None:
            updated = db.execute(
                "UPDATE resumable SET received = ?, hash_state = ?, expires_at = ?, "
                "length = COALESCE(length, ?) "
                "WHERE upload_id = ? AND received = ? AND version IS NULL",
                (received, state, expires_at, length, upload.upload_id, upload.offset),
            ).rowcount
            if updated != 1:  # terminated or expired meanwhile
                raise ResumableNotFound(f"resumable upload {upload.upload_id} is gone")

        await self._write(commit)
        return self._load(upload.device_id, upload.upload_id)[0]

    async def _complete(
        self,
        upload: ResumableUpload,
        fd: int,
        hasher: ResumableSha256,
        total: int,
        expires_at: float,
        version: str,
    ) -> ResumableUpload:
        """The last byte is in: the part file becomes a version, as a large save() lands one."""
        sha256 = hasher.hexdigest()
        part = self._part(upload.upload_id)
        if upload.expected_sha256 is not None and sha256 != upload.expected_sha256:
            await self._write(
                lambda db: db.execute(
                    "DELETE FROM resumable WHERE upload_id = ?", (upload.upload_id,)
                )
            )
            part.unlink(missing_ok=True)
            raise ChecksumMismatch(
                f"the file's sha256 is {sha256}, not the {upload.expected_sha256} declared "
                "in Upload-Metadata: the upload is removed"
            )
        info = UploadInfo(
            upload.device_id, version, total, sha256, upload.filename, upload.content_type
        )
        data: bytes | None = None
        blob = self._blobs / upload.device_id / version
        if total <= INLINE_MAX:
            data = await self._run(os.pread, fd, total, 0)
        else:
            # A hard link, not a rename: until the commit the part file stays where a retry of
            # this last chunk finds it (a crash here leaves at worst an unlisted blob).
            await self._run(self._link_blob, part, info)
        state = hasher.state()

        def commit(db: sqlite3.Connection) -> None:
            updated = db.execute(
                "UPDATE resumable SET received = ?, hash_state = ?, expires_at = ?, "
                "length = ?, version = ? WHERE upload_id = ? AND received = ? AND version IS NULL",
                (total, state, expires_at, total, version, upload.upload_id, upload.offset),
            ).rowcount
            if updated != 1:
                raise ResumableNotFound(f"resumable upload {upload.upload_id} is gone")
            self._insert(db, info, data, None)

        try:
            await self._write(commit)
        except BaseException:
            blob.unlink(missing_ok=True)
            raise
        part.unlink(missing_ok=True)
        return self._load(upload.device_id, upload.upload_id)[0]

    def _link_blob(self, part: Path, info: UploadInfo) -> None:
        def link(target: Path) -> None:
            try:
                os.link(part, target)
            except FileNotFoundError:
                if not part.exists():  # terminated or expired meanwhile (we hold its lock)
                    raise ResumableNotFound("the resumable upload is gone") from None
                raise  # the device folder went: _into_blobs makes it again

        self._into_blobs(info, link)

    async def delete_resumable(self, device_id: str, upload_id: str) -> None:
        def delete(db: sqlite3.Connection) -> int:
            return db.execute(
                "DELETE FROM resumable WHERE upload_id = ? AND device_id = ? AND expires_at > ?",
                (upload_id, device_id, time.time()),
            ).rowcount

        if not await self._write(delete):
            raise ResumableNotFound(f"device {device_id} has no resumable upload {upload_id}")
        # An append under way finds its row gone at its commit, and fails: no lock needed here.
        await self._run(self._part(upload_id).unlink, True)

    async def remove_expired_resumable(self, now: float) -> int:
        rows = self._query("SELECT upload_id FROM resumable WHERE expires_at <= ?", (now,))
        removed = 0
        for (upload_id,) in rows:
            part = self._part(str(upload_id))
            try:
                fd = await self._run(self._lock_part, part)
            except UploadBusy:
                continue  # an append is under way: it moves the expiry, or the next sweep runs
            try:
                removed += await self._write(self._delete_expired(str(upload_id), now))
                if fd is not None:
                    part.unlink(missing_ok=True)
            finally:
                if fd is not None:
                    os.close(fd)
        live = {
            str(row[0])
            for row in self._query("SELECT upload_id FROM resumable WHERE version IS NULL", ())
        }
        await self._run(self._remove_orphan_parts, live)
        return removed

    @staticmethod
    def _delete_expired(upload_id: str, now: float) -> Callable[[sqlite3.Connection], int]:
        def delete(db: sqlite3.Connection) -> int:
            return db.execute(
                "DELETE FROM resumable WHERE upload_id = ? AND expires_at <= ?", (upload_id, now)
            ).rowcount

        return delete

    def _remove_orphan_parts(self, live: set[str]) -> None:
        """Part files without an unfinished upload (a crash between two steps): removed."""
        for entry in os.scandir(self._parts):
            upload_id = entry.name.removesuffix(".part")
            if upload_id in live or not entry.name.endswith(".part"):
                continue
            with contextlib.suppress(FileNotFoundError):
                if entry.stat().st_mtime > time.time() - ORPHAN_GRACE_SECONDS:
                    continue  # a creation between its file and its row
                part = Path(entry.path)
                with contextlib.suppress(UploadBusy):
                    fd = self._lock_part(part)
                    if fd is not None:
                        part.unlink(missing_ok=True)
                        os.close(fd)

    async def check(self) -> None:
        if not os.access(self._tmp, os.W_OK):
            log.warning("data folder is not writable", extra={"path": str(self._tmp)})
            raise StorageUnavailable("the data folder is not writable")
        self._query("SELECT 1", ())

    async def close(self) -> None:
        self._pool.shutdown(wait=True)
        self._writer.close()
        self._reader.close()

    # direct uploads: they need an object store that presigns URLs; local files have no URL a
    # device could write to without passing through this service.
    async def presign_direct_upload(
        self,
        device_id: str,
        staging_id: str,
        *,
        size: int,
        sha256: str,
        filename: str | None,
        content_type: str | None,
        expires_at: float,
    ) -> DirectUploadTicket:
        raise NotSupportedByStorage(NO_DIRECT_UPLOADS)

    async def complete_direct_upload(
        self, device_id: str, staging_id: str, version: str, *, now: float
    ) -> UploadInfo:
        raise NotSupportedByStorage(NO_DIRECT_UPLOADS)

    async def remove_expired_direct_uploads(self, now: float) -> int:
        return 0


NO_DIRECT_UPLOADS = (
    "direct uploads need S3 storage (MINDPROJECT_STORAGE=s3://…); this server stores on the "
    "file backend: upload with PUT /api/devices/<id> instead"
)
