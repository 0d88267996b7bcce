"""Group commit for SQLite: one writer thread runs queued write jobs in shared transactions.

Each upload must be durable before it is acknowledged, and a durable SQLite commit costs an
fsync. Uploads that arrive together are committed together: the writer takes every job waiting
in its queue, runs each inside its own SAVEPOINT (so one failing job does not undo the others)
and commits once. Latency stays one commit; throughput grows with concurrency.

Worker processes share the database. Their writers take turns through an exclusive `flock` on a
lock file beside it: the kernel wakes the next one the moment the lock is free. (SQLite's own
busy handler polls with sleeps of up to 100 ms, which under contention gave uploads a p99 of
over a second.)
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import queue
import sqlite3
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

R = TypeVar("R")
Job = Callable[[sqlite3.Connection], Any]
_MAX_BATCH = 512
_STOP = None


def _settle(future: asyncio.Future[Any], ok: bool, value: Any) -> None:
    if future.cancelled():
        return
    if ok:
        future.set_result(value)
    else:
        future.set_exception(value)


class SqliteWriter:
    def __init__(self, path: Path, *, synchronous: str) -> None:
        self._connection = sqlite3.connect(
            path, check_same_thread=False, isolation_level=None, timeout=30
        )
        self._lock_fd = os.open(f"{path}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        # Switching to WAL needs the database to itself, and SQLite answers "locked" at once
        # (no busy wait) when worker processes start together: take turns here too.
        with self._exclusive():
            self._connection.execute("PRAGMA journal_mode=WAL")
        self._connection.execute(f"PRAGMA synchronous={synchronous}")
        self._jobs: queue.SimpleQueue[
            tuple[Job, asyncio.AbstractEventLoop, asyncio.Future[Any]] | None
        ] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._work, name="sqlite-writer", daemon=True)
        self._thread.start()

    @contextlib.contextmanager
    def _exclusive(self) -> Iterator[None]:
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    def run_now(self, job: Callable[[sqlite3.Connection], R]) -> R:
        """Run a job synchronously before the writer is in use (schema set-up)."""
        with self._exclusive():
            return job(self._connection)

    async def submit(self, job: Callable[[sqlite3.Connection], R]) -> R:
        """Run `job` in the next group transaction; return once it is committed."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[R] = loop.create_future()
        self._jobs.put((job, loop, future))
        return await future

    def close(self) -> None:
        self._jobs.put(_STOP)
        self._thread.join(timeout=30)
        self._connection.close()
        os.close(self._lock_fd)

    def _work(self) -> None:
        while True:
            first = self._jobs.get()
            if first is _STOP:
                return
            batch = [first]
            stop = False
            while len(batch) < _MAX_BATCH:
                try:
                    item = self._jobs.get_nowait()
                except queue.Empty:
                    break
                if item is _STOP:
                    stop = True
                    break
                batch.append(item)
            self._commit(batch)
            if stop:
                return

    def _commit(
        self, batch: list[tuple[Job, asyncio.AbstractEventLoop, asyncio.Future[Any]]]
    ) -> None:
        with self._exclusive():
            outcomes = self._run_batch(self._connection, batch)
        for (_, loop, future), (ok, value) in zip(batch, outcomes, strict=True):
            with contextlib.suppress(RuntimeError):  # that event loop has closed: nobody waits
                loop.call_soon_threadsafe(_settle, future, ok, value)

    @staticmethod
    def _run_batch(
        db: sqlite3.Connection,
        batch: list[tuple[Job, asyncio.AbstractEventLoop, asyncio.Future[Any]]],
    ) -> list[tuple[bool, Any]]:
        """Each job in its own savepoint, one commit: (succeeded, result or exception) each."""
        outcomes: list[tuple[bool, Any]] = []
        try:
            db.execute("BEGIN IMMEDIATE")
            for job, _, _ in batch:
                db.execute("SAVEPOINT job")
                try:
                    outcomes.append((True, job(db)))
                    db.execute("RELEASE job")
                except Exception as exc:
                    db.execute("ROLLBACK TO job")
                    db.execute("RELEASE job")
                    outcomes.append((False, exc))
            db.execute("COMMIT")
        except Exception as exc:  # BEGIN or COMMIT failed (disk full, I/O error): all fail
            with contextlib.suppress(sqlite3.Error):
                db.execute("ROLLBACK")
            return [(False, exc)] * len(batch)
        return outcomes
