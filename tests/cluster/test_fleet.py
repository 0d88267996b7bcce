"""The fleet mode (S3 + PostgreSQL index) on the local twin: faults (a replica killed mid-batch,
S3 down, PostgreSQL down, the compactor killed mid-rewrite) with a client-side record of every
acknowledged upload checked against what is readable afterwards, and one Idempotency-Key sent to
two replicas at once. Waits are bounded; nothing asserts speed."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

import asyncpg
import httpx
import pytest

from mindproject.storage.pg_index import COMPACTOR_LOCK
from tests.cluster.conftest import Cluster, ClusterFactory, process_gone, report, wait_until
from tests.cluster.uploads import Uploader, error_shape, summarize, verify_integrity
from tests.helpers import s3_client

pytestmark = [pytest.mark.cluster, pytest.mark.s3, pytest.mark.pg]


# The twin's compactor runs every second and removes orphans and retired objects 10 s old, so
# that the compactor test sees its orphan go within seconds. 10 s stays above the longest gap
# between a segment's PUT and its commit (a 3 s pool timeout plus a 5 s statement timeout):
# a shorter grace could sweep a segment whose commit is still on its way.
COMPACTION_GRACE_SECONDS = 10.0


@pytest.fixture(scope="module")
def fleet_twin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """One fleet-mode twin (two replicas, S3 and its own PostgreSQL) for this module: the
    idempotency test runs first, then the fault tests (each leaves both replicas running)."""
    factory = ClusterFactory(tmp_path_factory)
    try:
        # A longer window keeps batches open, so the kill lands in the middle of one.
        yield factory(
            storage="s3",
            replicas=2,
            env={
                "CLUSTER_INDEX": "pg",
                "MINDPROJECT_SEGMENT_WINDOW_MS": "100",
                "MINDPROJECT_COMPACTION_INTERVAL_SECONDS": "1",
                "MINDPROJECT_COMPACTION_GRACE_SECONDS": str(COMPACTION_GRACE_SECONDS),
            },
        )
    finally:
        factory.stop_all()


def test_one_idempotency_key_sent_to_two_replicas_at_once_keeps_one_version(
    fleet_twin: Cluster,
) -> None:
    cluster = fleet_twin
    for round_ in range(5):
        device = f"idem-{round_}"
        payload = os.urandom(2048)
        barrier = threading.Barrier(2)
        answers: list[httpx.Response] = []

        def send(
            url: str,
            payload: bytes = payload,
            device: str = device,
            barrier: threading.Barrier = barrier,
            answers: list[httpx.Response] = answers,
        ) -> None:
            with cluster.client(url) as client:
                barrier.wait()
                answers.append(
                    client.put(
                        f"/api/devices/{device}",
                        files={"file": ("t.bin", payload)},
                        headers={"Idempotency-Key": "same-key"},
                    )
                )

        threads = [threading.Thread(target=send, args=(url,)) for url in cluster.replica_urls]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert [a.status_code for a in answers] == [200, 200], [a.text for a in answers]
        assert len({a.json()["version"] for a in answers}) == 1
        with cluster.client() as client:
            history = client.get(f"/api/devices/{device}/uploads").json()
        assert len(history["uploads"]) == 1, history


def test_fleet_mode_loses_no_acknowledged_upload_through_a_replica_kill_and_an_s3_outage(
    fleet_twin: Cluster,
) -> None:
    cluster = fleet_twin
    assert cluster.env.get("MINDPROJECT_INDEX", "").startswith("postgresql://")
    with Uploader(cluster.url, cluster.headers, "fleet", threads=12, limit=4000) as up:
        wait_until(lambda: up.acked_count() >= 100, 60, "100 uploads acknowledged")
        cluster.signal_replica(1, signal.SIGKILL)
        killed_at = time.monotonic()
        wait_until(
            lambda: cluster.haproxy_servers().get("replica-1") == "DOWN",
            30,
            "HAProxy marks the killed replica DOWN",
        )
        wait_until(
            lambda: up.acked_since(killed_at) >= 100,
            60,
            "100 uploads acknowledged by the surviving replica",
        )
        cluster.script("replica-start", "1")
        cluster.script("s3-down")
        down_at = time.monotonic()
        wait_until(lambda: len(up.failures_since(down_at + 1)) >= 10, 60, "uploads failing")
        cluster.wait_ready(503, 30, "not ready")
        cluster.script("s3-up")
        up_at = time.monotonic()
        cluster.wait_ready(200, 60, "ready")
        wait_until(
            lambda: up.acked_since(up_at) >= 100,
            60,
            "100 uploads acknowledged after S3 returned",
        )
    attempts = up.snapshot()
    failed = [a for a in attempts if not a.acked]
    report(
        f"fleet mode, replica killed mid-batch then S3 down/up: {len(attempts) - len(failed)} "
        f"acknowledged, {summarize(failed)} failed; every acknowledged one readable"
    )
    during_outage = [a for a in failed if a.started > down_at + 1 and a.finished < up_at]
    assert all(a.status == 503 for a in during_outage), summarize(during_outage)
    verify_integrity(cluster.url, cluster.headers, attempts)


def test_postgresql_down_answers_503_and_recovers_without_restart(fleet_twin: Cluster) -> None:
    cluster = fleet_twin
    pids = [cluster.replica_pid(n) for n in range(1, cluster.replicas + 1)]
    with Uploader(cluster.url, cluster.headers, "pgdown", threads=6, limit=3000) as up:
        wait_until(lambda: up.acked_count() >= 50, 60, "50 uploads acknowledged before the stop")
        stored = next(a for a in up.snapshot() if a.acked)
        cluster.script("pg-down")  # the twin's own PostgreSQL, stopped for real (fast shutdown)
        try:
            down_at = time.monotonic()
            wait_until(lambda: len(up.failures_since(down_at + 1)) >= 10, 60, "uploads failing")
            cluster.wait_ready(503, 30, "not ready")
            with cluster.client() as client:
                reads = [
                    client.get(f"/api/devices/{stored.device}", params={"encoding": "raw"}),
                    client.get(f"/api/devices/{stored.device}/uploads"),
                    client.get("/api/devices/", params={"prefix": "pgdown-"}),
                ]
            assert [r.status_code for r in reads] == [503] * 3, [r.text for r in reads]
            assert all(error_shape(r.json()) for r in reads), [r.text for r in reads]
            live = [httpx.get(f"{u}/healthz", timeout=5).status_code for u in cluster.replica_urls]
            # Liveness stays green while the index is down: the balancer keeps the replicas.
            assert live == [200] * cluster.replicas, live
        finally:
            # Also after a failure above: the module's next test needs its index.
            cluster.script("pg-up")
        up_at = time.monotonic()
        cluster.wait_ready(200, 60, "ready again")
        wait_until(
            lambda: up.acked_since(up_at) >= 50,
            60,
            "50 uploads acknowledged after PostgreSQL returned",
        )
    attempts = up.snapshot()
    failed = [a for a in attempts if not a.acked]
    during = [a for a in failed if a.started > down_at and a.finished < up_at]
    slowest = max((a.finished - a.started for a in during), default=0.0)
    report(
        f"fleet mode, PostgreSQL down/up: {len(attempts) - len(failed)} acknowledged, "
        f"{summarize(failed)} failed (slowest failure during the outage {slowest:.1f} s); "
        "every acknowledged one readable, no failed one visible"
    )
    # The replicas stay up, so every upload got an answer: a 503 in the error shape, or 200.
    bad = [a for a in failed if a.status != 503 or not error_shape(a.body)]
    assert not bad, [(a.status, a.body, a.error) for a in bad[:5]]
    # "Within seconds": the pool's 3 s and the statements' 5 s timeouts answer, the uploads do
    # not hang until the balancer gives up (60 s). Generous, so that a slow machine passes.
    assert slowest < 30, f"an upload took {slowest:.1f} s to fail while PostgreSQL was down"
    assert pids == [cluster.replica_pid(n) for n in range(1, cluster.replicas + 1)]
    assert all(not process_gone(pid) for pid in pids), "a replica restarted or died"
    verify_integrity(cluster.url, cluster.headers, attempts, strict=True)


class PgSession:
    """One connection to the twin's index, driven synchronously from the test (its own event
    loop): to look at the index and to hold locks, as an operator's psql would."""

    def __init__(self, dsn: str) -> None:
        self._loop = asyncio.new_event_loop()
        self._conn: asyncpg.Connection = self._loop.run_until_complete(
            asyncpg.connect(dsn, timeout=10)
        )

    def __enter__(self) -> PgSession:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            self._loop.run_until_complete(self._conn.close(timeout=10))
        finally:
            self._loop.close()

    def execute(self, sql: str, *args: Any) -> None:
        self._loop.run_until_complete(self._conn.execute(sql, *args))

    def fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        return self._loop.run_until_complete(self._conn.fetch(sql, *args))

    def fetchval(self, sql: str, *args: Any) -> Any:
        return self._loop.run_until_complete(self._conn.fetchval(sql, *args))


def _all_replicas_running(cluster: Cluster) -> None:
    """Fail, with the log of each one that is not, unless every replica process is running."""
    dead = [n for n in range(1, cluster.replicas + 1) if process_gone(cluster.replica_pid(n))]
    logs = {n: (cluster.dir / "log" / f"replica-{n}.log").read_text()[-3000:] for n in dead}
    assert not dead, f"replicas {dead} are not running: {logs}"


def _replica_with_local_port(cluster: Cluster, port: int) -> int:
    """The replica whose process owns the TCP socket bound to 127.0.0.1:`port` (the client end
    of a PostgreSQL session, as pg_stat_activity.client_port shows it)."""
    _all_replicas_running(cluster)
    for n in range(1, cluster.replicas + 1):
        proc = Path(f"/proc/{cluster.replica_pid(n)}")
        inodes = set()
        for fd in (proc / "fd").iterdir():
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[len("socket:[") : -1])
        for table in ("tcp", "tcp6"):
            if not (proc / "net" / table).exists():  # a kernel without IPv6 has no tcp6
                continue
            for line in (proc / "net" / table).read_text().splitlines()[1:]:
                fields = line.split()
                if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[9] in inodes:
                    return n
    pytest.fail(f"no replica owns local port {port}")


# The compactor's commit of a rewrite (pg_index.PgIndex.move_rows), as pg_stat_activity shows it.
MOVE_ROWS = "%UPDATE versions v SET object_key%"
# A rewritten segment's name (compactor.py): its time, "-c", 16 hex digits.
REWRITE_NAME = re.compile(r"\d{8}T\d{6}-c[0-9a-f]{16}")


def test_compactor_killed_mid_rewrite_loses_nothing_and_its_orphan_is_swept(
    fleet_twin: Cluster,
) -> None:
    cluster = fleet_twin
    env = cluster.env
    s3 = s3_client({**env, "AWS_ENDPOINT_URL": env["AWS_GATEWAY_URL"]})
    bucket, prefix = env["CLUSTER_STORAGE_URL"].removeprefix("s3://").split("/", 1)

    def bucket_keys() -> set[str]:
        keys: set[str] = set()
        for page in s3.get_paginator("list_objects_v2").paginate(
            Bucket=bucket, Prefix=f"{prefix}/segments/"
        ):
            keys.update(item["Key"].removeprefix(f"{prefix}/") for item in page.get("Contents", []))
        return keys

    _all_replicas_running(cluster)
    with PgSession(env["MINDPROJECT_INDEX"]) as look, PgSession(env["MINDPROJECT_INDEX"]) as hold:
        # No replica compacts while the stage is set: the test holds the compactor's lock.
        hold.execute("SELECT pg_advisory_lock($1)", COMPACTOR_LOCK)
        with Uploader(cluster.url, cluster.headers, "compact", threads=8, limit=96) as up:
            wait_until(lambda: len(up.snapshot()) == 96, 60, "96 uploads answered")
        attempts = up.snapshot()
        assert all(a.acked for a in attempts), summarize([a for a in attempts if not a.acked])
        segments: dict[str, list[str]] = {}
        for device, key in look.fetch(
            "SELECT device_id, object_key FROM versions WHERE device_id LIKE 'compact-%' "
            'ORDER BY object_key, "offset"'
        ):
            segments.setdefault(key, []).append(device)
        sizes = {a.device: a.size for a in attempts}
        # Keep the largest upload of each segment of three or more and delete the others, unless
        # that leaves half its bytes or more live (the threshold is 0.5).
        sparse = {}
        for key, devices in segments.items():
            keep = max(devices, key=lambda d: sizes[d])
            if len(devices) >= 3 and 2 * sizes[keep] < sum(sizes[d] for d in devices):
                sparse[key] = keep
        assert sparse, f"no segment can be made sparse: {segments}"
        kept = sorted(sparse.values())
        deleted = [d for key in sparse for d in segments[key] if d != sparse[key]]
        with cluster.client() as client:
            for device in deleted:
                resp = client.delete(f"/api/devices/{device}")
                assert resp.status_code in (200, 204), resp.text
        # The kept rows are held, then the compactor is let go: its rewrite GETs the sparse
        # segments and PUTs the new one, then its commit waits for these rows.
        hold.execute("BEGIN")
        hold.execute("SELECT 1 FROM versions WHERE device_id = ANY($1::text[]) FOR UPDATE", kept)
        hold.execute("SELECT pg_advisory_unlock($1)", COMPACTOR_LOCK)

        def waiting_commit() -> list[asyncpg.Record]:
            return look.fetch(
                "SELECT pid, client_port FROM pg_stat_activity "
                "WHERE wait_event_type = 'Lock' AND query LIKE $1",
                MOVE_ROWS,
            )

        def unindexed_rewrites() -> set[str]:
            rewrites = {k for k in bucket_keys() if REWRITE_NAME.fullmatch(k.rsplit("/", 1)[1])}
            known = look.fetch(
                "SELECT key FROM segments WHERE key = ANY($1::text[]) "
                "UNION ALL SELECT key FROM retired_objects WHERE key = ANY($1::text[])",
                list(rewrites),
            )
            return rewrites - {r[0] for r in known}

        wait_until(lambda: bool(waiting_commit()), 30, "a rewrite's commit waiting on held rows")
        # In the window: the rewritten segment is in the bucket, unknown to the index, and the
        # transaction that would make it known is waiting.
        (orphan,) = unindexed_rewrites()
        ((backend, client_port),) = waiting_commit()
        n = _replica_with_local_port(cluster, client_port)
        pid = cluster.replica_pid(n)
        cluster.signal_replica(n, signal.SIGKILL)
        killed_at = time.monotonic()
        wait_until(lambda: process_gone(pid), 30, f"replica {n} gone")
        # The kill landed before the commit: the same statement is still waiting.
        assert [r["pid"] for r in waiting_commit()] == [backend], "the commit did not wait"
        hold.execute("ROLLBACK")
        wait_until(
            lambda: (
                look.fetchval("SELECT count(*) FROM pg_stat_activity WHERE pid = $1", backend) == 0
            ),
            30,
            "the killed replica's session ends (its transaction rolled back)",
        )
        assert orphan in unindexed_rewrites(), "the killed rewrite was committed after all"
        # The other replica's compactor takes the lock over and redoes the rewrite.
        survivor = cluster.replicas + 1 - n

        def rewritten() -> bool:
            rows = look.fetch(
                "SELECT v.object_key, s.key IS NOT NULL FROM versions v "
                "LEFT JOIN segments s ON s.key = v.object_key WHERE v.device_id = ANY($1::text[])",
                kept,
            )
            return len(rows) == len(kept) and all(
                key not in sparse and key != orphan and indexed for key, indexed in rows
            )

        wait_until(rewritten, 60, f"replica {survivor}'s compactor rewrites the sparse segments")
        still_used = look.fetchval(
            "SELECT count(*) FROM segments WHERE key = ANY($1::text[])", list(sparse)
        )
        assert still_used == 0, "the old segments were not retired"
        cluster.script("replica-start", str(n))
        # After the grace period: the orphan and the old segments leave the bucket.
        wait_until(
            lambda: not ({orphan, *sparse} & bucket_keys()),
            COMPACTION_GRACE_SECONDS + 60,
            "the orphaned rewrite and the old segments removed",
        )
        swept_after = time.monotonic() - killed_at
    with cluster.client() as client:
        gone = [client.get(f"/api/devices/{d}").status_code for d in deleted]
        listed = client.get("/api/devices/", params={"prefix": "compact-", "limit": 1000})
    report(
        f"fleet mode, compactor SIGKILLed mid-rewrite (new segment PUT, commit waiting): "
        f"{len(kept)} moved by replica {survivor}'s compactor instead, {len(deleted)} deleted "
        f"stay deleted; orphan swept {swept_after:.0f} s after the kill "
        f"(grace {COMPACTION_GRACE_SECONDS:.0f} s)"
    )
    assert gone == [404] * len(deleted), "a deleted upload came back"
    assert listed.status_code == 200, listed.text
    visible = set(listed.json()["TelemetryDataDownloads"])
    assert visible == {a.device for a in attempts} - set(deleted)
    verify_integrity(
        cluster.url, cluster.headers, [a for a in attempts if a.device not in set(deleted)]
    )
