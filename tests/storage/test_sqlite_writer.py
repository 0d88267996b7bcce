"""Group commit: jobs share transactions, and one failing job does not undo the others."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from mindproject.storage.sqlite_writer import SqliteWriter

pytestmark = pytest.mark.anyio


async def test_concurrent_jobs_commit_and_a_failure_stays_its_own(tmp_path: Path) -> None:
    writer = SqliteWriter(tmp_path / "db.sqlite3", synchronous="FULL")
    writer.run_now(lambda db: db.execute("CREATE TABLE t (k INTEGER PRIMARY KEY)"))

    def insert(key: int) -> Callable[[sqlite3.Connection], int]:
        def job(db: sqlite3.Connection) -> int:
            db.execute("INSERT INTO t VALUES (?)", (key,))
            return key

        return job

    jobs = [writer.submit(insert(k)) for k in range(200)]
    jobs.append(writer.submit(insert(5)))  # a duplicate key: this job fails, alone
    results = await asyncio.gather(*jobs, return_exceptions=True)
    assert results[:200] == list(range(200))
    assert isinstance(results[200], sqlite3.IntegrityError)
    writer.close()
    with sqlite3.connect(tmp_path / "db.sqlite3") as db:
        assert db.execute("SELECT count(*) FROM t").fetchone() == (200,)
