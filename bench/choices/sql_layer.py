#!/usr/bin/env python3
"""One SQL layer for the SQLite and PostgreSQL indexes? The file path's cost, by measurement.

The file backend's index work as it runs today (``FileStorage._insert`` and the reads' SQL, on
stdlib sqlite3) against the same work through the candidate shared layers, each (candidate,
round) in a fresh subprocess on a fresh index file, rounds interleaved:

- ``today``: ``storage/filesystem.py``'s own code and statements.
- ``shared_text``: candidate (b), SQL text written once with named placeholders (``:device``)
  and translated at import to each driver's style (``?`` here, ``$1`` for asyncpg), executed
  by sqlite3 with positional tuples. The statements are the file backend's own; only where the
  text lives changes, so any difference from ``today`` is the noise floor.
- ``sqlalchemy``: candidate (a), SQLAlchemy Core statements built once at import (bound
  parameters, so its compiled-statement cache hits on every call after the first), executed
  through a held ``Connection`` on the pysqlite dialect: the way a shared Core layer would run.
  Upserts have no dialect-neutral form in Core (``sqlite.insert(...).on_conflict_do_update``
  here, ``postgresql.insert`` there).

Figures: client CPU (``time.process_time``) in µs per operation, median over the rounds:

- ``upload``: one upload's index transaction as the group-commit writer runs it alone
  (BEGIN IMMEDIATE, SAVEPOINT, idempotency look-up and row, version row, device figures upsert,
  per-minute rollup upsert, RELEASE, COMMIT); ``synchronous=OFF`` so the fsync is not counted.
- ``latest``: a device's newest version (one row). ``history``: a page of 100 versions.

    make bench-choices CHOICES=sql_layer SQL_LAYER_ARGS="--rounds 9"   (docs/decisions.md)
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "src"))

from mindproject.identifiers import VERSION_EPOCH  # noqa: E402
from mindproject.storage.base import UploadInfo  # noqa: E402
from mindproject.storage.filesystem import (  # noqa: E402
    _COLUMNS,
    MINUTE_US,
    FileStorage,
    _migrate,
)

CANDIDATES = ("today", "shared_text", "sqlalchemy")
DEVICES = 500
PREFILL_PER_DEVICE = 40
UPLOADS = 3000
READS = 3000
PAGE = 100
WARMUP = 200


# (b) a shared statement module: one text, placeholders translated at import ----------------
_NAMED = re.compile(r"(?<![:\w]):([a-z_][a-z0-9_]*)")


def for_sqlite(sql: str) -> tuple[str, tuple[str, ...]]:
    """`:name` placeholders to `?`, with the names in order (the caller passes a tuple)."""
    names = tuple(_NAMED.findall(sql))
    return _NAMED.sub("?", sql), names


def for_asyncpg(sql: str) -> tuple[str, tuple[str, ...]]:
    """`:name` placeholders to `$n`, one number per distinct name (asyncpg reuses them)."""
    names: list[str] = []

    def number(match: re.Match[str]) -> str:
        if match[1] not in names:
            names.append(match[1])
        return f"${names.index(match[1]) + 1}"

    return _NAMED.sub(number, sql), tuple(names)


SHARED = {
    "keyed": (
        "SELECT u.device_id, u.version, u.size, u.sha256, u.filename, u.content_type "
        "FROM idempotency i JOIN uploads u ON u.device_id = i.device_id "
        "AND u.version = i.version WHERE i.device_id = :device AND i.key = :key"
    ),
    "key_row": "INSERT OR REPLACE INTO idempotency VALUES (:device, :key, :version)",
    "version_row": (
        f"INSERT INTO uploads ({_COLUMNS}, data) "
        "VALUES (:device, :version, :size, :sha256, :filename, :content_type, :data)"
    ),
    "device_figures": (
        "INSERT INTO devices (device_id, uploads, last_us, bytes, last_size) "
        "VALUES (:device, 1, :last_us, :size, :last_size) ON CONFLICT (device_id) DO UPDATE SET "
        "uploads = uploads + 1, bytes = bytes + excluded.bytes, "
        "last_size = CASE WHEN excluded.last_us >= COALESCE(last_us, 0) "
        "THEN excluded.last_size ELSE last_size END, "
        "last_us = MAX(COALESCE(last_us, 0), excluded.last_us)"
    ),
    "minute": (
        "INSERT INTO upload_minutes VALUES (:minute, 1, :size) ON CONFLICT (minute) DO UPDATE "
        "SET uploads = uploads + 1, bytes = bytes + excluded.bytes"
    ),
    "latest": (
        f"SELECT {_COLUMNS} FROM uploads WHERE device_id = :device ORDER BY version LIMIT 1"
    ),
    "history": (
        f"SELECT {_COLUMNS} FROM uploads WHERE device_id = :device AND version > :after "
        "ORDER BY version LIMIT :limit"
    ),
}
SQLITE = {name: for_sqlite(text)[0] for name, text in SHARED.items()}


def shared_insert(
    db: sqlite3.Connection, info: UploadInfo, data: bytes | None, key: str | None
) -> UploadInfo:
    """FileStorage._insert with the statements from the shared module."""
    if key is not None:
        row = db.execute(SQLITE["keyed"], (info.device_id, key)).fetchone()
        if row is not None:
            return FileStorage._info(row)
        db.execute(SQLITE["key_row"], (info.device_id, key, info.version))
    db.execute(
        SQLITE["version_row"],
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
    uploaded_us = VERSION_EPOCH - int(info.version[:16])
    db.execute(SQLITE["device_figures"], (info.device_id, uploaded_us, info.size, info.size))
    db.execute(SQLITE["minute"], (uploaded_us // MINUTE_US, info.size))
    return info


# (a) SQLAlchemy Core ----------------------------------------------------------------------
def sqlalchemy_layer(path: Path) -> tuple[Any, Callable[..., UploadInfo], Callable[..., Any]]:
    """A held connection, the insert, and the two reads, as a Core layer would have them."""
    from sqlalchemy import (
        BigInteger,
        Column,
        LargeBinary,
        MetaData,
        Table,
        Text,
        and_,
        bindparam,
        case,
        create_engine,
        func,
        select,
    )
    from sqlalchemy.dialects import sqlite as sqlite_dialect
    from sqlalchemy.pool import StaticPool

    meta = MetaData()
    uploads = Table(
        "uploads",
        meta,
        Column("device_id", Text, primary_key=True),
        Column("version", Text, primary_key=True),
        Column("size", BigInteger),
        Column("sha256", Text),
        Column("filename", Text),
        Column("content_type", Text),
        Column("data", LargeBinary),
    )
    devices = Table(
        "devices",
        meta,
        Column("device_id", Text, primary_key=True),
        Column("uploads", BigInteger),
        Column("last_us", BigInteger),
        Column("bytes", BigInteger),
        Column("last_size", BigInteger),
    )
    idempotency = Table(
        "idempotency",
        meta,
        Column("device_id", Text, primary_key=True),
        Column("key", Text, primary_key=True),
        Column("version", Text),
    )
    minutes = Table(
        "upload_minutes",
        meta,
        Column("minute", BigInteger, primary_key=True),
        Column("uploads", BigInteger),
        Column("bytes", BigInteger),
    )
    columns = [uploads.c[name] for name in _COLUMNS.split(", ")]
    keyed = (
        select(*columns)
        .select_from(
            idempotency.join(
                uploads,
                and_(
                    uploads.c.device_id == idempotency.c.device_id,
                    uploads.c.version == idempotency.c.version,
                ),
            )
        )
        .where(
            idempotency.c.device_id == bindparam("device"), idempotency.c.key == bindparam("key")
        )
    )
    key_row = (
        sqlite_dialect.insert(idempotency)
        .prefix_with("OR REPLACE")
        .values(device_id=bindparam("device"), key=bindparam("key"), version=bindparam("ver"))
    )
    version_row = uploads.insert().values(
        device_id=bindparam("device"),
        version=bindparam("ver"),
        size=bindparam("size"),
        sha256=bindparam("sha"),
        filename=bindparam("fname"),
        content_type=bindparam("ctype"),
        data=bindparam("data"),
    )
    figures = sqlite_dialect.insert(devices).values(
        device_id=bindparam("device"),
        uploads=1,
        last_us=bindparam("last_us"),
        bytes=bindparam("size"),
        last_size=bindparam("size"),
    )
    figures = figures.on_conflict_do_update(
        index_elements=[devices.c.device_id],
        set_={
            "uploads": devices.c.uploads + 1,
            "bytes": devices.c.bytes + figures.excluded.bytes,
            "last_size": case(
                (
                    figures.excluded.last_us >= func.coalesce(devices.c.last_us, 0),
                    figures.excluded.last_size,
                ),
                else_=devices.c.last_size,
            ),
            "last_us": func.max(func.coalesce(devices.c.last_us, 0), figures.excluded.last_us),
        },
    )
    minute = sqlite_dialect.insert(minutes).values(
        minute=bindparam("minute"), uploads=1, bytes=bindparam("size")
    )
    minute = minute.on_conflict_do_update(
        index_elements=[minutes.c.minute],
        set_={
            "uploads": minutes.c.uploads + 1,
            "bytes": minutes.c.bytes + minute.excluded.bytes,
        },
    )
    latest = (
        select(*columns)
        .where(uploads.c.device_id == bindparam("device"))
        .order_by(uploads.c.version)
        .limit(1)
    )
    history = (
        select(*columns)
        .where(uploads.c.device_id == bindparam("device"), uploads.c.version > bindparam("after"))
        .order_by(uploads.c.version)
        .limit(bindparam("limit"))
    )
    engine = create_engine(f"sqlite:///{path}", poolclass=StaticPool, isolation_level="AUTOCOMMIT")
    conn = engine.connect()

    def insert(_: object, info: UploadInfo, data: bytes | None, key: str | None) -> UploadInfo:
        if key is not None:
            row = conn.execute(keyed, {"device": info.device_id, "key": key}).first()
            if row is not None:
                return FileStorage._info(tuple(row))
            conn.execute(key_row, {"device": info.device_id, "key": key, "ver": info.version})
        conn.execute(
            version_row,
            {
                "device": info.device_id,
                "ver": info.version,
                "size": info.size,
                "sha": info.sha256,
                "fname": info.filename,
                "ctype": info.content_type,
                "data": data,
            },
        )
        uploaded_us = VERSION_EPOCH - int(info.version[:16])
        conn.execute(figures, {"device": info.device_id, "last_us": uploaded_us, "size": info.size})
        conn.execute(minute, {"minute": uploaded_us // MINUTE_US, "size": info.size})
        return info

    def read(which: str, device: str) -> list[UploadInfo]:
        if which == "latest":
            rows = conn.execute(latest, {"device": device}).all()
        else:
            rows = conn.execute(history, {"device": device, "after": "", "limit": PAGE}).all()
        return [FileStorage._info(tuple(row)) for row in rows]

    return conn, insert, read


# the child: one candidate, one round ------------------------------------------------------
def version_id(us: int, n: int) -> str:
    return f"{VERSION_EPOCH - us:016d}-{n:08x}"


def upload_info(device: str, version: str) -> UploadInfo:
    return UploadInfo(device, version, 2048, "ab" * 32, "log.bin", "application/octet-stream")


def child(candidate: str, workdir: str) -> dict[str, float]:
    path = Path(workdir) / "index.sqlite3"
    raw = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    raw.execute("PRAGMA journal_mode=WAL")
    raw.execute("PRAGMA synchronous=OFF")
    _migrate(raw)
    now_us = int(time.time() * 1_000_000)
    rng = random.Random(7)
    devices = [f"dev-{i:05d}" for i in range(DEVICES)]
    data = b"x" * 2048
    raw.execute("BEGIN")
    for i in range(DEVICES * PREFILL_PER_DEVICE):
        FileStorage._insert(
            raw, upload_info(devices[i % DEVICES], version_id(now_us - i * 1000, i)), data, None
        )
    raw.execute("COMMIT")

    if candidate == "sqlalchemy":
        raw.close()
        conn, insert_fn, read_fn = sqlalchemy_layer(path)
        conn.exec_driver_sql("PRAGMA synchronous=OFF")

        def sql(text: str) -> None:
            conn.exec_driver_sql(text)

        def insert(info: UploadInfo, key: str) -> None:
            insert_fn(None, info, data, key)

        def read(which: str, device: str) -> object:
            return read_fn(which, device)

    else:
        body = FileStorage._insert if candidate == "today" else shared_insert
        latest_sql = (
            f"SELECT {_COLUMNS} FROM uploads WHERE device_id = ? ORDER BY version LIMIT 1"
            if candidate == "today"
            else SQLITE["latest"]
        )
        history_sql = (
            f"SELECT {_COLUMNS} FROM uploads WHERE device_id = ? AND version > ? "
            "ORDER BY version LIMIT ?"
            if candidate == "today"
            else SQLITE["history"]
        )

        def sql(text: str) -> None:
            raw.execute(text)

        def insert(info: UploadInfo, key: str) -> None:
            body(raw, info, data, key)

        def read(which: str, device: str) -> object:
            if which == "latest":
                rows = raw.execute(latest_sql, (device,)).fetchall()
            else:
                rows = raw.execute(history_sql, (device, "", PAGE)).fetchall()
            return [FileStorage._info(row) for row in rows]

    def upload(n: int) -> None:
        # The writer's transaction for a batch of one (sqlite_writer.SqliteWriter._run_batch).
        device = devices[rng.randrange(DEVICES)]
        sql("BEGIN IMMEDIATE")
        sql("SAVEPOINT job")
        insert(upload_info(device, version_id(now_us + n * 1000, n)), f"key-{n}")
        sql("RELEASE job")
        sql("COMMIT")

    for n in range(WARMUP):
        upload(n)
        read("latest", devices[n % DEVICES])
        read("history", devices[n % DEVICES])
    figures: dict[str, float] = {}
    started = time.process_time()
    for n in range(WARMUP, WARMUP + UPLOADS):
        upload(n)
    figures["upload"] = (time.process_time() - started) * 1e6 / UPLOADS
    for which in ("latest", "history"):
        started = time.process_time()
        for n in range(READS):
            read(which, devices[n % DEVICES])
        figures[which] = (time.process_time() - started) * 1e6 / READS
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--child", nargs=2, metavar=("CANDIDATE", "WORKDIR"))
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", type=Path, help="also write the raw figures here")
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(*args.child)))
        return
    results: dict[str, dict[str, list[float]]] = {c: {} for c in CANDIDATES}
    for round_ in range(args.rounds):
        # A different order each round: no candidate always runs first (or right after another).
        order = CANDIDATES[round_ % 3 :] + CANDIDATES[: round_ % 3]
        for candidate in order:
            with tempfile.TemporaryDirectory() as workdir:
                out = subprocess.run(
                    [sys.executable, __file__, "--child", candidate, workdir],
                    capture_output=True,
                    text=True,
                    check=True,
                    env=os.environ,
                )
            for test, value in json.loads(out.stdout).items():
                results[candidate].setdefault(test, []).append(value)
    tests = ("upload", "latest", "history")
    print(f"SQLite index, client CPU µs per operation, median of {args.rounds} rounds")
    print("(each cell: median, then x today's median; min-max of the rounds in brackets)\n")
    print("| candidate | " + " | ".join(tests) + " |")
    print("|---|" + "---:|" * len(tests))
    base = {test: statistics.median(results["today"][test]) for test in tests}
    for candidate in CANDIDATES:
        cells = []
        for test in tests:
            values = results[candidate][test]
            median = statistics.median(values)
            cells.append(
                f"{median:.1f} (x{median / base[test]:.2f}) [{min(values):.1f}-{max(values):.1f}]"
            )
        print(f"| {candidate} | " + " | ".join(cells) + " |")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
