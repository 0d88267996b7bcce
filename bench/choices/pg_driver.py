#!/usr/bin/env python3
"""Pick the PostgreSQL driver of the fleet mode's index by measurement: asyncpg or psycopg 3.

The script starts its own throwaway PostgreSQL (``scripts/postgres.sh``), runs each
(driver, test) pair in a fresh subprocess on uvloop, prints a markdown table and stops the
server. Client-process CPU (``time.process_time``) per operation; the server's CPU is the same
work for both and is not counted.

- ``batch64_unnest``: 1,000 transactions, each ONE statement inserting 64 rows passed as
  arrays (``INSERT … SELECT FROM unnest($1::text[], …)``): the group commit's hot path.
- ``batch64_many``: the same rows through the driver's executemany (pipelined by both).
- ``select1``: 5,000 single-row selects by primary key (a read's index lookup).

    make bench-choices CHOICES=pg_driver          (or run it with a venv holding both drivers)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PG_SCRIPT = ROOT / "scripts" / "postgres.sh"
DRIVERS = ("asyncpg", "psycopg")
TESTS = ("batch64_unnest", "batch64_many", "select1")
BATCHES = 1000
ROWS = 64
SELECTS = 5000

SCHEMA = """
DROP TABLE IF EXISTS bench_versions;
CREATE TABLE bench_versions (
    device_id text COLLATE "C" NOT NULL,
    version text COLLATE "C" NOT NULL,
    size bigint NOT NULL,
    sha256 text NOT NULL,
    object_key text NOT NULL,
    "offset" bigint,
    PRIMARY KEY (device_id, version)
)
"""
UNNEST = (
    'INSERT INTO bench_versions (device_id, version, size, sha256, object_key, "offset") '
    "SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::text[], $5::text[], "
    "$6::bigint[])"
)
MANY = (
    'INSERT INTO bench_versions (device_id, version, size, sha256, object_key, "offset") '
    "VALUES ($1, $2, $3, $4, $5, $6)"
)
SELECT = (
    'SELECT size, sha256, object_key, "offset" FROM bench_versions '
    "WHERE device_id = $1 AND version = $2"
)


def rows(batch: int) -> list[tuple[str, str, int, str, str, int]]:
    return [
        (f"dev-{i:05d}", f"{batch:08d}-{i:04d}", 1024, "ab" * 32, f"seg/{batch}", i * 1024)
        for i in range(ROWS)
    ]


async def run_asyncpg(dsn: str, test: str) -> float:
    import asyncpg

    conn = await asyncpg.connect(dsn)
    await conn.execute(SCHEMA)
    batches = [rows(b) for b in range(BATCHES)]
    started = time.process_time()
    if test == "batch64_unnest":
        for batch in batches:
            await conn.execute(UNNEST, *(list(column) for column in zip(*batch, strict=True)))
    elif test == "batch64_many":
        for batch in batches:
            async with conn.transaction():
                await conn.executemany(MANY, batch)
    else:
        for batch in batches[:100]:
            await conn.execute(UNNEST, *(list(column) for column in zip(*batch, strict=True)))
        started = time.process_time()
        for i in range(SELECTS):
            await conn.fetchrow(SELECT, f"dev-{i % ROWS:05d}", f"{i % 100:08d}-{i % ROWS:04d}")
    used = time.process_time() - started
    await conn.close()
    return used


async def run_psycopg(dsn: str, test: str) -> float:
    import psycopg

    def pg(sql: str) -> str:  # psycopg's placeholders
        for n in range(6, 0, -1):
            sql = sql.replace(f"${n}", "%s")
        return sql

    conn = await psycopg.AsyncConnection.connect(dsn, autocommit=True, prepare_threshold=0)
    await conn.execute(SCHEMA, prepare=False)
    batches = [rows(b) for b in range(BATCHES)]
    unnest = pg(UNNEST)
    started = time.process_time()
    if test == "batch64_unnest":
        for batch in batches:
            await conn.execute(unnest, [list(column) for column in zip(*batch, strict=True)])
    elif test == "batch64_many":
        for batch in batches:
            async with conn.transaction(), conn.cursor() as cursor:
                await cursor.executemany(pg(MANY), batch)
    else:
        for batch in batches[:100]:
            await conn.execute(unnest, [list(column) for column in zip(*batch, strict=True)])
        started = time.process_time()
        select = pg(SELECT)
        for i in range(SELECTS):
            cursor = await conn.execute(
                select, (f"dev-{i % ROWS:05d}", f"{i % 100:08d}-{i % ROWS:04d}")
            )
            await cursor.fetchone()
    used = time.process_time() - started
    await conn.close()
    return used


def child(driver: str, test: str, dsn: str) -> None:
    import uvloop

    runner = run_asyncpg if driver == "asyncpg" else run_psycopg
    used = uvloop.run(runner(dsn, test))
    count = SELECTS if test == "select1" else BATCHES
    print(json.dumps({"driver": driver, "test": test, "ms_per_op": used * 1000 / count}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--child", nargs=3, metavar=("DRIVER", "TEST", "DSN"))
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    with tempfile.TemporaryDirectory() as workdir:
        started = subprocess.run(
            ["bash", str(PG_SCRIPT), "start", workdir], capture_output=True, text=True, check=True
        )
        dsn = started.stdout.strip().split("=", 1)[1]
        results: dict[tuple[str, str], list[float]] = {}
        try:
            for _ in range(args.rounds):
                for driver in DRIVERS:
                    for test in TESTS:
                        out = subprocess.run(
                            [sys.executable, __file__, "--child", driver, test, dsn],
                            capture_output=True,
                            text=True,
                            check=True,
                            env=os.environ,
                        )
                        figure = json.loads(out.stdout)["ms_per_op"]
                        results.setdefault((driver, test), []).append(figure)
        finally:
            subprocess.run(["bash", str(PG_SCRIPT), "stop", workdir, "--purge"], check=False)
    print("| driver | " + " | ".join(f"{t}: client CPU ms per op" for t in TESTS) + " |")
    print("|---|" + "---:|" * len(TESTS))
    for driver in DRIVERS:
        cells = []
        for test in TESTS:
            figures = sorted(results[(driver, test)])
            cells.append(" / ".join(f"{f:.3f}" for f in figures))
        print(f"| {driver} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
