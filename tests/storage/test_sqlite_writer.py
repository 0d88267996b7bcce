"""Group commit: jobs share transactions, and one failing job does not undo the others."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
import time
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


def test_worker_processes_opening_a_fresh_index_together(tmp_path: Path) -> None:
    # Worker processes start at the same moment on a new data folder: each must open it.
    script = (
        "import sys, time; from pathlib import Path; "
        "from mindproject.storage.filesystem import FileStorage; "
        "time.sleep(max(0.0, float(sys.argv[2]) - time.time())); FileStorage(Path(sys.argv[1]))"
    )
    start_together = str(time.time() + 2.0)  # after every interpreter has started
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(tmp_path / "data"), start_together],
            stderr=subprocess.PIPE,
        )
        for _ in range(6)
    ]
    for process in processes:
        _, err = process.communicate(timeout=60)
        assert process.returncode == 0, err.decode()
