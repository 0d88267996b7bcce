"""The fleet mode's compactor: reclaims the space of deleted versions and removes orphans.

One replica at a time (a PostgreSQL session advisory lock, released if the replica dies; no
second coordinator). Each run:

1. deletes the objects retired more than the grace period ago (a reader that looked up a
   version's old location just before a rewrite still finds the bytes during the grace period,
   and looks the version up again on a 404 after it);
2. rewrites segments whose live bytes fell below the threshold: their live versions are copied
   into one new segment (one GET per old segment, one PUT), then ONE transaction points the rows
   at it and retires the old segments. A run killed between the PUT and the commit leaves the
   old segments in use and the new one unknown to the index: an orphan;
3. removes orphans: objects under segments/ older than the grace period that the index does not
   know (a crash between a segment's PUT and its commit, or a compaction killed mid-rewrite).
   Segment keys start with their hour: each run lists the last day's hours whole (a fresh
   orphan goes at the first run past its grace period), and OLDER_PER_RUN keys of the older
   hours from where the previous run stopped (a cursor in the index), starting over once past
   them. So an orphan of any age goes within one cycle over the older keys (an index or a
   compactor down for days; a late resumable upload, whose object is keyed by its version's
   hour), and no run lists the whole bucket.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from mindproject.periodic import run_every
from mindproject.storage.indexed import IndexedStorage
from mindproject.storage.pg_index import COMPACTOR_LOCK, LiveRow

if TYPE_CHECKING:
    from obstore import ObjectMeta

log = logging.getLogger("mindproject.compactor")

SEGMENTS_PER_RUN = 200
RETIRED_PER_RUN = 10_000
ORPHAN_LOOKBACK_SECONDS = 86400.0
# Keys of the hours before the lookback listed per run: five LIST pages. At the default interval
# (300 s) a cycle over a million older segments takes about 17 hours.
OLDER_PER_RUN = 5000
KNOWN_BATCH = 1000


@dataclass(slots=True)
class CompactionReport:
    rewritten: int = 0  # old segments whose live versions moved to new ones
    retired: int = 0  # old segments (rewritten or empty) retired
    deleted: int = 0  # retired objects deleted after the grace period
    orphans: int = 0  # unindexed objects removed
    moved_bytes: int = 0


class Compactor:
    def __init__(
        self,
        storage: IndexedStorage,
        *,
        threshold: float = 0.5,
        grace_seconds: float = 600.0,
        max_segment_bytes: int = 8 * 1024 * 1024,
        before_commit: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self._storage = storage
        self._index = storage.index
        self._threshold = threshold
        self._grace = grace_seconds
        self._max_bytes = max_segment_bytes
        # A seam for the tests: runs between a rewrite's PUT and its commit.
        self._before_commit = before_commit

    async def run(self, now: float | None = None) -> CompactionReport | None:
        """One pass; None when another replica holds the lock."""
        now = time.time() if now is None else now
        async with self._index.exclusive(COMPACTOR_LOCK) as mine:
            if not mine:
                return None
            report = CompactionReport()
            await self._delete_retired(now, report)
            await self._rewrite_sparse(now, report)
            await self._remove_orphans(now, report)
            return report

    async def _delete_retired(self, now: float, report: CompactionReport) -> None:
        keys = await self._index.retired_before(now - self._grace, RETIRED_PER_RUN)
        if keys:
            await self._storage.delete_objects(keys)
            await self._index.forget_retired(keys)
            report.deleted += len(keys)

    async def _rewrite_sparse(self, now: float, report: CompactionReport) -> None:
        old_keys: list[str] = []
        moves: list[tuple[LiveRow, int]] = []
        parts: list[bytes] = []
        size = 0

        async def flush() -> None:
            nonlocal old_keys, moves, parts, size
            if not old_keys:
                return
            name = time.strftime("%Y%m%dT%H%M%S", time.gmtime(now)) + "-c" + secrets.token_hex(8)
            key = self._storage.layout.segment_key(now, name)
            await self._storage.put_object(key, b"".join(parts))
            if self._before_commit is not None:
                await self._before_commit()
            await self._index.move_rows(old_keys, key, size, moves, now)
            report.rewritten += len(old_keys)
            report.retired += len(old_keys)
            report.moved_bytes += size
            old_keys, moves, parts, size = [], [], [], 0

        for key, _, _ in await self._index.sparse_segments(self._threshold, SEGMENTS_PER_RUN):
            rows = await self._index.live_rows(key)
            if not rows:
                if await self._index.retire_empty(key, now):
                    report.retired += 1
                continue
            if any(row.offset is None for row in rows):
                continue  # an object of one version is never partly live
            data = await self._storage.get_object(key)
            if size and size + sum(row.size for row in rows) > self._max_bytes:
                await flush()
            for row in rows:
                moves.append((row, size))
                parts.append(data[row.offset : row.offset + row.size])
                size += row.size
            old_keys.append(key)
        await flush()

    async def _remove_orphans(self, now: float, report: CompactionReport) -> None:
        cutoff = now - self._grace
        since = cutoff - ORPHAN_LOOKBACK_SECONDS
        await self._remove_unknown(await self._storage.segment_objects(since, cutoff), report)
        # The older hours, a slice per run; keys up to the lookback's first hour (exclusive: a
        # key there is "<hour>/<name>", after "<hour>").
        start_after = await self._index.sweep_cursor()
        metas, last = await self._storage.segment_walk(
            start_after, self._storage.layout.segments_hour(since), cutoff, OLDER_PER_RUN
        )
        await self._remove_unknown(metas, report)
        await self._index.set_sweep_cursor(last or "")

    async def _remove_unknown(self, metas: list[ObjectMeta], report: CompactionReport) -> None:
        for start in range(0, len(metas), KNOWN_BATCH):
            keys = [meta["path"] for meta in metas[start : start + KNOWN_BATCH]]
            known = await self._index.known_objects(keys)
            orphans = [key for key in keys if key not in known]
            if orphans:
                await self._storage.delete_objects(orphans)
                report.orphans += len(orphans)


async def compact_forever(compactor: Compactor, interval_seconds: float) -> None:
    """Each replica tries every interval; the advisory lock lets one of them work at a time."""

    async def compact() -> None:
        report = await compactor.run()
        if report is not None and (report.retired or report.deleted or report.orphans):
            log.info(
                "compacted",
                extra={
                    "rewritten": report.rewritten,
                    "retired": report.retired,
                    "deleted": report.deleted,
                    "orphans": report.orphans,
                    "moved_bytes": report.moved_bytes,
                },
            )

    await run_every(interval_seconds, compact, "compaction", log)
