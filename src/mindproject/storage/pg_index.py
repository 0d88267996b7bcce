"""The fleet mode's index in PostgreSQL: schema and queries (asyncpg; docs/decisions.md).

Every object holding version bytes in S3 has a `segments` row (a shared segment of small
uploads, or the single object of a large one); every version a `versions` row naming its object
and, inside a segment, its offset. `devices` keeps each device's running figures in the same
transaction as each upload and delete, so the fleet view is an index range scan.

Text columns holding ids are `COLLATE "C"`: pages come out in byte order, as the other backends
list them, whatever the database's default collation.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from mindproject.errors import CommitOutcomeUnknown, StorageUnavailable
from mindproject.storage.base import (
    ActivityBucket,
    DeviceSummary,
    FleetSummary,
    UploadInfo,
    bucket_series,
)

log = logging.getLogger("mindproject.storage")
# What a pool hands out (a proxy of a connection, with the same methods).
Connection = PoolConnectionProxy

# A dead or unreachable database must answer 503 within seconds, not hang requests.
CONNECT_TIMEOUT_SECONDS = 3.0
COMMAND_TIMEOUT_SECONDS = 5.0
POOL_SIZE = 10
DEADLOCK_RETRIES = 3
SCHEMA_LOCK = 0x6D696E64  # advisory lock taken while one replica creates the schema
COMPACTOR_LOCK = 0x6D696E65  # held by the one replica compacting (compactor.py)
# Device ids are A-Z a-z 0-9 . _ : - (identifiers.py): "~" sorts after every one of them, so
# `prefix || '~'` bounds a prefix's range scan.
PREFIX_END = "~"

# The compactor's candidates are a range of this expression (index segments_live_share), not a
# walk over every segment: -1 for a segment of empty uploads, which goes once nothing uses it.
LIVE_SHARE = "CASE WHEN size = 0 THEN -1 ELSE live_bytes::float8 / size END"

SCHEMA = f"""
CREATE TABLE IF NOT EXISTS segments (
    key text COLLATE "C" PRIMARY KEY,
    size bigint NOT NULL,
    live_bytes bigint NOT NULL,
    created_at double precision NOT NULL
);
CREATE TABLE IF NOT EXISTS versions (
    device_id text COLLATE "C" NOT NULL,
    version text COLLATE "C" NOT NULL,
    size bigint NOT NULL,
    sha256 text NOT NULL,
    filename text,
    content_type text,
    idempotency_key text,
    object_key text COLLATE "C" NOT NULL,
    "offset" bigint,
    uploaded_at double precision NOT NULL,
    PRIMARY KEY (device_id, version)
);
CREATE UNIQUE INDEX IF NOT EXISTS versions_idempotency
    ON versions (device_id, idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE INDEX IF NOT EXISTS versions_object ON versions (object_key);
CREATE INDEX IF NOT EXISTS versions_uploaded_at ON versions (uploaded_at) INCLUDE (size);
CREATE TABLE IF NOT EXISTS devices (
    device_id text COLLATE "C" PRIMARY KEY,
    last_upload_at double precision,
    uploads bigint NOT NULL,
    bytes bigint NOT NULL,
    last_size bigint
);
CREATE INDEX IF NOT EXISTS devices_last_upload ON devices (last_upload_at, device_id);
CREATE TABLE IF NOT EXISTS revocations (
    device_id text COLLATE "C" PRIMARY KEY,
    revoked_at double precision NOT NULL
);
CREATE TABLE IF NOT EXISTS retired_objects (
    key text COLLATE "C" PRIMARY KEY,
    retired_at double precision NOT NULL
);
CREATE INDEX IF NOT EXISTS segments_live_share ON segments (({LIVE_SHARE}));
CREATE TABLE IF NOT EXISTS compactor_state (
    name text COLLATE "C" PRIMARY KEY,
    value text NOT NULL
);
"""

VERSION_COLUMNS = 'version, size, sha256, filename, content_type, object_key, "offset"'

# One statement, one round trip, one transaction: the versions (a key already used for the
# device keeps its first version: ON CONFLICT DO NOTHING, also between rows of one batch), the
# object's segment row counting the bytes actually inserted, and the devices' running figures.
COMMIT_OBJECT = """
WITH input AS (
    SELECT * FROM unnest($1::text[], $2::text[], $3::int8[], $4::text[], $5::text[], $6::text[],
                         $7::text[], $8::int8[], $9::float8[])
        AS t(device_id, version, size, sha256, filename, content_type, idempotency_key,
             "offset", uploaded_at)
), ins AS (
    INSERT INTO versions (device_id, version, size, sha256, filename, content_type,
                          idempotency_key, object_key, "offset", uploaded_at)
    SELECT device_id, version, size, sha256, filename, content_type, idempotency_key, $10,
           "offset", uploaded_at
    FROM input
    ON CONFLICT DO NOTHING
    RETURNING device_id, version, size, uploaded_at
), seg AS (
    INSERT INTO segments (key, size, live_bytes, created_at)
    SELECT $10, $11, coalesce(sum(size), 0), $12 FROM ins
    ON CONFLICT (key) DO UPDATE SET live_bytes = segments.live_bytes + excluded.live_bytes
), dev AS (
    INSERT INTO devices AS d (device_id, last_upload_at, uploads, bytes, last_size)
    SELECT device_id, max(uploaded_at), count(*), sum(size), (array_agg(size ORDER BY version))[1]
    FROM ins GROUP BY device_id ORDER BY device_id
    ON CONFLICT (device_id) DO UPDATE SET
        uploads = d.uploads + excluded.uploads,
        bytes = d.bytes + excluded.bytes,
        last_size = CASE WHEN d.last_upload_at IS NULL
                           OR excluded.last_upload_at >= d.last_upload_at
                         THEN excluded.last_size ELSE d.last_size END,
        last_upload_at = greatest(d.last_upload_at, excluded.last_upload_at)
)
SELECT device_id, version FROM ins
"""

# After versions of a device were deleted (same transaction, its devices row locked first).
REFRESH_DEVICE = """
UPDATE devices d SET
    uploads = d.uploads - $2,
    bytes = d.bytes - $3,
    last_upload_at = newest.uploaded_at,
    last_size = newest.size
FROM (SELECT NULL) AS one
LEFT JOIN LATERAL (
    SELECT uploaded_at, size FROM versions WHERE device_id = $1 ORDER BY version LIMIT 1
) AS newest ON true
WHERE d.device_id = $1
RETURNING d.uploads
"""

FREE_BYTES = """
UPDATE segments s SET live_bytes = s.live_bytes - freed.bytes
FROM (SELECT * FROM unnest($1::text[], $2::int8[]) AS t(key, bytes)) AS freed
WHERE s.key = freed.key
"""


@dataclass(frozen=True, slots=True)
class Row:
    """What save() hands the index for one version."""

    info: UploadInfo
    idempotency_key: str | None
    offset: int | None  # inside its segment; None: the object is the version's alone
    uploaded_at: float


@dataclass(frozen=True, slots=True)
class LiveRow:
    """A version still in a segment, as the compactor moves it."""

    device_id: str
    version: str
    object_key: str
    offset: int
    size: int


def locator(object_key: str, offset: int | None) -> str:
    """Where a version's bytes are: `key` (a whole object) or `key@offset` (in a segment).
    Object keys never hold "@" (layout: segment and blob keys of device ids and hex)."""
    return object_key if offset is None else f"{object_key}@{offset}"


def parse_locator(value: str) -> tuple[str, int | None]:
    key, at, offset = value.rpartition("@")
    return (key, int(offset)) if at else (value, None)


def _info(device_id: str, record: asyncpg.Record) -> UploadInfo:
    version, size, sha256, filename, content_type, object_key, offset = record
    return UploadInfo(
        device_id, version, size, sha256, filename, content_type, locator(object_key, offset)
    )


def _unavailable(exc: BaseException) -> StorageUnavailable:
    log.warning(
        "index database call failed",
        extra={"error_type": type(exc).__name__, "detail": str(exc)[:2000]},
    )
    return StorageUnavailable("the index database is unavailable; retry later")


# Failures of a statement already sent that do not say whether it committed: the connection lost,
# the server shutting down (it may have committed just before: its answer and the FATAL message
# can arrive together), a client-side timeout (the server may still finish). A statement's own
# errors (a deadlock, a constraint) arrive before its commit: those are certain failures.
OUTCOME_UNKNOWN = (
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    asyncpg.PostgresConnectionError,  # class 08: the connection lost
    OSError,
    TimeoutError,
)


def _outcome_unknown(exc: BaseException) -> CommitOutcomeUnknown:
    log.warning(
        "index commit outcome unknown",
        extra={"error_type": type(exc).__name__, "detail": str(exc)[:2000]},
    )
    return CommitOutcomeUnknown(
        "the index database went away during the commit: the upload may have been stored; "
        "retry with the same Idempotency-Key"
    )


@contextlib.contextmanager
def _db_errors() -> Iterator[None]:
    """Connection loss, timeouts and server errors as StorageUnavailable (503): nothing here is
    the client's fault (constraint conflicts are handled by the statements themselves).
    InternalClientError too (asyncpg's protocol-state errors, and its TargetServerAttribute-
    NotMatched when no connection attempt succeeds): around a server shutdown they would
    otherwise answer 500."""
    try:
        yield
    except StorageUnavailable:
        raise
    except (
        asyncpg.PostgresError,
        asyncpg.InterfaceError,
        asyncpg.InternalClientError,
        OSError,
        TimeoutError,
    ) as exc:
        raise _unavailable(exc) from exc


class PgIndex:
    """A connection pool and the statements the fleet mode runs. The pool is made at first use
    (on the running event loop) and again after a failure to make it."""

    def __init__(self, dsn: str, *, pool_size: int = POOL_SIZE) -> None:
        self._dsn = dsn
        self._pool_size = pool_size
        self._pool: asyncpg.Pool | None = None
        self._opening: asyncio.Lock | None = None

    async def _get_pool(self) -> asyncpg.Pool:
        if self._pool is not None:
            return self._pool
        if self._opening is None:
            self._opening = asyncio.Lock()
        async with self._opening:
            if self._pool is None:
                with _db_errors():
                    pool = await asyncio.wait_for(
                        asyncpg.create_pool(
                            self._dsn,  # a password may come from PGPASSWORD (libpq's variable)
                            min_size=1,
                            max_size=self._pool_size,
                            timeout=CONNECT_TIMEOUT_SECONDS,
                            command_timeout=COMMAND_TIMEOUT_SECONDS,
                            server_settings={"application_name": "mindproject"},
                        ),
                        CONNECT_TIMEOUT_SECONDS * 2,
                    )
                    try:
                        async with pool.acquire() as conn, conn.transaction():
                            await conn.execute("SELECT pg_advisory_xact_lock($1)", SCHEMA_LOCK)
                            await conn.execute(SCHEMA)
                    except BaseException:
                        pool.terminate()
                        raise
                self._pool = pool
        return self._pool

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[Connection]:
        pool = await self._get_pool()
        with _db_errors():
            conn = await pool.acquire(timeout=CONNECT_TIMEOUT_SECONDS)
        try:
            with _db_errors():
                yield conn
        finally:
            try:
                await pool.release(conn)
            except Exception as exc:
                # By now the block's outcome is known, a commit included. A server shutting
                # down right after answering leaves a connection the pool cannot reset (asyncpg
                # raises, and discards it): that must not turn a done commit into a 503, which
                # would tell clients their stored uploads failed (the twin's PostgreSQL-down
                # test saw it).
                log.warning(
                    "index connection discarded on release",
                    extra={"error_type": type(exc).__name__, "detail": str(exc)[:2000]},
                )

    async def close(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            with contextlib.suppress(Exception):
                await asyncio.wait_for(pool.close(), COMMAND_TIMEOUT_SECONDS)
            pool.terminate()

    async def check(self) -> None:
        async with self.connection() as conn:
            await conn.fetchval("SELECT 1")

    # writes --------------------------------------------------------------------------------
    async def commit_object(
        self, object_key: str, object_size: int, rows: Sequence[Row], now: float
    ) -> set[tuple[str, str]]:
        """Index `rows`, all in object `object_key`, with its segment row and the devices'
        figures, in one transaction. The (device, version) pairs inserted; a row left out lost
        to an idempotency key (or a version) already in the index."""
        columns: list[list[Any]] = [[] for _ in range(9)]
        for row in rows:
            info = row.info
            for column, value in zip(
                columns,
                (
                    info.device_id,
                    info.version,
                    info.size,
                    info.sha256,
                    info.filename,
                    info.content_type,
                    row.idempotency_key,
                    row.offset,
                    row.uploaded_at,
                ),
                strict=True,
            ):
                column.append(value)
        for attempt in range(DEADLOCK_RETRIES):
            try:
                async with self.connection() as conn:
                    try:
                        records = await conn.fetch(
                            COMMIT_OBJECT, *columns, object_key, object_size, now
                        )
                    except OUTCOME_UNKNOWN as exc:
                        raise _outcome_unknown(exc) from exc
                return {(record[0], record[1]) for record in records}
            except CommitOutcomeUnknown:
                raise
            except StorageUnavailable as exc:
                # Two batches locking the same devices' rows in turn: PostgreSQL aborts one.
                if not isinstance(exc.__cause__, asyncpg.DeadlockDetectedError) or (
                    attempt == DEADLOCK_RETRIES - 1
                ):
                    raise
        raise AssertionError("unreachable")

    async def delete_version(self, device_id: str, version: str) -> bool:
        async with self.connection() as conn, conn.transaction():
            await conn.execute("SELECT 1 FROM devices WHERE device_id = $1 FOR UPDATE", device_id)
            deleted = await conn.fetch(
                "DELETE FROM versions WHERE device_id = $1 AND version = $2 "
                "RETURNING object_key, size",
                device_id,
                version,
            )
            await self._forget_versions(conn, device_id, deleted)
        return bool(deleted)

    async def delete_device(self, device_id: str) -> int:
        async with self.connection() as conn, conn.transaction():
            await conn.execute("SELECT 1 FROM devices WHERE device_id = $1 FOR UPDATE", device_id)
            deleted = await conn.fetch(
                "DELETE FROM versions WHERE device_id = $1 RETURNING object_key, size", device_id
            )
            await self._forget_versions(conn, device_id, deleted)
        return len(deleted)

    @staticmethod
    async def _forget_versions(conn: Connection, device_id: str, deleted: Sequence[Any]) -> None:
        """Segments' live bytes and the device's figures after deleting `deleted` (the same
        transaction: the space is counted free at once, the compactor reclaims it later)."""
        if not deleted:
            return
        freed: dict[str, int] = {}
        for object_key, size in deleted:
            freed[object_key] = freed.get(object_key, 0) + size
        await conn.execute(FREE_BYTES, list(freed), list(freed.values()))
        left = await conn.fetchval(
            REFRESH_DEVICE, device_id, len(deleted), sum(size for _, size in deleted)
        )
        if left is not None and left <= 0:
            await conn.execute("DELETE FROM devices WHERE device_id = $1", device_id)

    # reads ---------------------------------------------------------------------------------
    async def latest(self, device_id: str) -> UploadInfo | None:
        async with self.connection() as conn:
            record = await conn.fetchrow(
                f"SELECT {VERSION_COLUMNS} FROM versions WHERE device_id = $1 "
                "ORDER BY version LIMIT 1",
                device_id,
            )
        return None if record is None else _info(device_id, record)

    async def get(self, device_id: str, version: str) -> UploadInfo | None:
        async with self.connection() as conn:
            record = await conn.fetchrow(
                f"SELECT {VERSION_COLUMNS} FROM versions WHERE device_id = $1 AND version = $2",
                device_id,
                version,
            )
        return None if record is None else _info(device_id, record)

    async def find_by_key(self, device_id: str, key: str) -> UploadInfo | None:
        async with self.connection() as conn:
            record = await conn.fetchrow(
                f"SELECT {VERSION_COLUMNS} FROM versions "
                "WHERE device_id = $1 AND idempotency_key = $2",
                device_id,
                key,
            )
        return None if record is None else _info(device_id, record)

    async def list_uploads(self, device_id: str, after: str | None, limit: int) -> list[UploadInfo]:
        async with self.connection() as conn:
            records = await conn.fetch(
                f"SELECT {VERSION_COLUMNS} FROM versions "
                "WHERE device_id = $1 AND version > $2 ORDER BY version LIMIT $3",
                device_id,
                after or "",
                limit,
            )
        return [_info(device_id, record) for record in records]

    async def list_devices(self, prefix: str, after: str | None, limit: int) -> list[str]:
        async with self.connection() as conn:
            records = await conn.fetch(
                "SELECT device_id FROM devices WHERE device_id >= $1 AND device_id < $2 "
                "AND device_id > $3 AND starts_with(device_id, $1) ORDER BY device_id LIMIT $4",
                prefix,
                prefix + PREFIX_END,
                after or "",
                limit,
            )
        return [record[0] for record in records]

    # revocations ---------------------------------------------------------------------------
    async def list_revocations(self) -> dict[str, float]:
        async with self.connection() as conn:
            records = await conn.fetch("SELECT device_id, revoked_at FROM revocations")
        return {record[0]: record[1] for record in records}

    async def set_revocation(self, device_id: str, revoked_at: float | None) -> None:
        async with self.connection() as conn:
            if revoked_at is None:
                await conn.execute("DELETE FROM revocations WHERE device_id = $1", device_id)
            else:
                await conn.execute(
                    "INSERT INTO revocations (device_id, revoked_at) VALUES ($1, $2) "
                    "ON CONFLICT (device_id) DO UPDATE SET revoked_at = excluded.revoked_at",
                    device_id,
                    revoked_at,
                )

    # fleet view ----------------------------------------------------------------------------
    async def fleet_devices(
        self,
        *,
        prefix: str,
        after: str | None,
        limit: int,
        sort: str,
        silent_before: float | None,
    ) -> list[DeviceSummary]:
        columns = (
            "d.device_id, d.last_upload_at, d.uploads, d.bytes, d.last_size, r.revoked_at "
            "FROM devices d LEFT JOIN revocations r ON r.device_id = d.device_id"
        )
        silent = math.inf if silent_before is None else silent_before
        async with self.connection() as conn:
            if sort == "last_upload_at":
                after_time, after_device = _time_cursor(after)
                records = await conn.fetch(
                    f"SELECT {columns} WHERE (d.last_upload_at, d.device_id) > ($1::float8, $2) "
                    "AND d.last_upload_at < $3::float8 AND starts_with(d.device_id, $4) "
                    "ORDER BY d.last_upload_at, d.device_id LIMIT $5",
                    after_time,
                    after_device,
                    silent,
                    prefix,
                    limit,
                )
            else:
                records = await conn.fetch(
                    f"SELECT {columns} WHERE d.device_id >= $1 AND d.device_id < $2 "
                    "AND d.device_id > $3 AND starts_with(d.device_id, $1) "
                    "AND d.last_upload_at < $4::float8 ORDER BY d.device_id LIMIT $5",
                    prefix,
                    prefix + PREFIX_END,
                    after or "",
                    silent,
                    limit,
                )
        return [DeviceSummary(*record) for record in records]

    async def fleet_summary(self, *, now: float, silent_before: float) -> FleetSummary:
        async with self.connection() as conn:
            record = await conn.fetchrow(
                """
                SELECT
                  (SELECT count(*) FROM devices),
                  (SELECT count(*) FROM devices WHERE last_upload_at < $2::float8),
                  (SELECT count(*) FROM revocations),
                  hour.n, hour.bytes, day.n, day.bytes
                FROM
                  (SELECT count(*) AS n, coalesce(sum(size), 0) AS bytes FROM versions
                   WHERE uploaded_at >= $1::float8 - 3600 AND uploaded_at <= $1::float8) AS hour,
                  (SELECT count(*) AS n, coalesce(sum(size), 0) AS bytes FROM versions
                   WHERE uploaded_at >= $1::float8 - 86400 AND uploaded_at <= $1::float8) AS day
                """,
                now,
                silent_before,
            )
        assert record is not None
        return FleetSummary(*(int(value) for value in record))

    async def device_activity(
        self, device_id: str, *, bucket_seconds: int, start: float, end: float
    ) -> list[ActivityBucket] | None:
        """Per-bucket counts, or None when the device has no version."""
        first = math.floor(start / bucket_seconds) * bucket_seconds
        async with self.connection() as conn:
            known = await conn.fetchval("SELECT 1 FROM devices WHERE device_id = $1", device_id)
            if known is None:
                return None
            # Versions sort newest first and carry their time: the range of the primary key.
            records = await conn.fetch(
                "SELECT floor(uploaded_at / $4::float8)::bigint, count(*), sum(size) FROM versions "
                "WHERE device_id = $1 AND version >= $2 AND version < $3 "
                "AND uploaded_at >= $5::float8 AND uploaded_at < $6::float8 GROUP BY 1",
                device_id,
                _version_bound(end),
                _version_bound(start) + "~",
                float(bucket_seconds),
                start,
                end,
            )
        offset = first // bucket_seconds  # the query's bucket numbers count from the epoch
        totals = {int(r[0]) - offset: (int(r[1]), int(r[2])) for r in records}
        return bucket_series(totals, bucket_seconds=bucket_seconds, first=first, end=end)

    # compaction ----------------------------------------------------------------------------
    async def sparse_segments(self, threshold: float, limit: int) -> list[tuple[str, int, int]]:
        """Segments whose live bytes fell below `threshold` of their size: (key, size, live)."""
        async with self.connection() as conn:
            # An empty segment (of empty uploads) is done once no version points into it.
            records = await conn.fetch(
                f"SELECT key, size, live_bytes FROM segments s WHERE {LIVE_SHARE} < $1::float8 "
                "AND (size > 0 OR NOT EXISTS "
                "(SELECT 1 FROM versions v WHERE v.object_key = s.key)) "
                "ORDER BY created_at LIMIT $2",
                threshold,
                limit,
            )
        return [(record[0], record[1], record[2]) for record in records]

    async def live_rows(self, key: str) -> list[LiveRow]:
        async with self.connection() as conn:
            records = await conn.fetch(
                'SELECT device_id, version, object_key, "offset", size FROM versions '
                "WHERE object_key = $1 "
                'ORDER BY "offset"',
                key,
            )
        return [LiveRow(*record) for record in records]

    async def move_rows(
        self,
        old_keys: Sequence[str],
        new_key: str,
        new_size: int,
        moves: Sequence[tuple[LiveRow, int]],
        now: float,
    ) -> None:
        """Point `moves` (row, new offset) at `new_key`, register it, retire `old_keys`: one
        transaction. A row deleted meanwhile is simply not moved (its bytes stay unused)."""
        async with self.connection() as conn, conn.transaction():
            moved = await conn.fetch(
                """
                UPDATE versions v SET object_key = $1, "offset" = m.new_offset
                FROM (SELECT * FROM unnest($2::text[], $3::text[], $4::text[], $5::int8[],
                                           $6::int8[])
                      AS t(device_id, version, old_key, old_offset, new_offset)) AS m
                WHERE v.device_id = m.device_id AND v.version = m.version
                  AND v.object_key = m.old_key AND v."offset" = m.old_offset
                RETURNING v.size
                """,
                new_key,
                [row.device_id for row, _ in moves],
                [row.version for row, _ in moves],
                [row.object_key for row, _ in moves],
                [row.offset for row, _ in moves],
                [offset for _, offset in moves],
            )
            if moves:
                await conn.execute(
                    "INSERT INTO segments (key, size, live_bytes, created_at) "
                    "VALUES ($1, $2, $3, $4)",
                    new_key,
                    new_size,
                    sum(record[0] for record in moved),
                    now,
                )
            await self._retire(conn, old_keys, now)

    async def retire_empty(self, key: str, now: float) -> bool:
        """Retire a segment nobody uses any more; False if a row still points into it."""
        async with self.connection() as conn, conn.transaction():
            used = await conn.fetchval("SELECT 1 FROM versions WHERE object_key = $1 LIMIT 1", key)
            if used is not None:
                return False
            await self._retire(conn, [key], now)
        return True

    @staticmethod
    async def _retire(conn: Connection, keys: Sequence[str], now: float) -> None:
        await conn.execute("DELETE FROM segments WHERE key = ANY($1::text[])", list(keys))
        await conn.execute(
            "INSERT INTO retired_objects (key, retired_at) SELECT k, $2 FROM unnest($1::text[]) k "
            "ON CONFLICT (key) DO NOTHING",
            list(keys),
            now,
        )

    async def sweep_cursor(self) -> str:
        """Where the orphan sweep's walk over older segment keys goes on ("": from the start)."""
        async with self.connection() as conn:
            value = await conn.fetchval(
                "SELECT value FROM compactor_state WHERE name = 'sweep_after'"
            )
        return "" if value is None else str(value)

    async def set_sweep_cursor(self, key: str) -> None:
        async with self.connection() as conn:
            await conn.execute(
                "INSERT INTO compactor_state (name, value) VALUES ('sweep_after', $1) "
                "ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                key,
            )

    async def retired_before(self, moment: float, limit: int) -> list[str]:
        async with self.connection() as conn:
            records = await conn.fetch(
                "SELECT key FROM retired_objects WHERE retired_at < $1::float8 ORDER BY retired_at "
                "LIMIT $2",
                moment,
                limit,
            )
        return [record[0] for record in records]

    async def forget_retired(self, keys: Sequence[str]) -> None:
        async with self.connection() as conn:
            await conn.execute("DELETE FROM retired_objects WHERE key = ANY($1::text[])", keys)

    async def known_objects(self, keys: Sequence[str]) -> set[str]:
        """Which of `keys` the index knows (a segment, or retired and not yet deleted)."""
        async with self.connection() as conn:
            records = await conn.fetch(
                "SELECT key FROM segments WHERE key = ANY($1::text[]) "
                "UNION ALL SELECT key FROM retired_objects WHERE key = ANY($1::text[])",
                list(keys),
            )
        return {record[0] for record in records}

    @contextlib.asynccontextmanager
    async def exclusive(self, lock: int) -> AsyncIterator[bool]:
        """Hold a session advisory lock while the block runs, if no other session holds it:
        yields False at once otherwise. The lock dies with the connection (a killed replica
        never keeps it)."""
        async with self.connection() as conn:
            with _db_errors():
                got = await conn.fetchval("SELECT pg_try_advisory_lock($1)", lock)
            try:
                yield bool(got)
            finally:
                if got:
                    with contextlib.suppress(Exception):
                        await conn.execute("SELECT pg_advisory_unlock($1)", lock)


def _time_cursor(after: str | None) -> tuple[float, str]:
    """The `last_upload_at` sort's cursor, "<microseconds>/<device id>" (the form the API
    checks, as the file backend's). Times are stored as microseconds / 10**6, so dividing
    again gives the very float stored, and the row comparison is exact."""
    if not after:
        return -math.inf, ""
    micros, _, device_id = after.partition("/")
    return int(micros) / 1_000_000, device_id


def time_cursor(summary: DeviceSummary) -> str:
    assert summary.last_upload_at is not None  # the sort lists devices with a version only
    return f"{round(summary.last_upload_at * 1_000_000)}/{summary.device_id}"


def _version_bound(moment: float) -> str:
    """The 16-digit time part of a version id made at `moment` (identifiers.new_version_id)."""
    micros = math.floor(moment * 1_000_000)
    return f"{10**16 - micros:016d}"
