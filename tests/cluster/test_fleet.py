"""The fleet mode (S3 + PostgreSQL index) on the local twin: faults with a client-side record of
every acknowledged upload checked against what is readable afterwards, and one Idempotency-Key
sent to two replicas at once. Waits are bounded; nothing asserts speed."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable, Iterator

import httpx
import pytest

from tests.cluster.conftest import Cluster, ClusterFactory, report, wait_until
from tests.cluster.uploads import Uploader, summarize, verify_integrity

pytestmark = [pytest.mark.cluster, pytest.mark.s3, pytest.mark.pg]


def _ready_is(url: str, headers: dict[str, str], status: int) -> Callable[[], bool]:
    def check() -> bool:
        try:
            return httpx.get(f"{url}/readyz", headers=headers, timeout=5).status_code == status
        except httpx.HTTPError:
            return False

    return check


@pytest.fixture(scope="module")
def fleet_twin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """One fleet-mode twin (two replicas, S3 and PostgreSQL) for this module: the idempotency
    test runs first, the fault test (which kills and restarts a replica) last."""
    factory = ClusterFactory(tmp_path_factory)
    try:
        # A longer window keeps batches open, so the kill lands in the middle of one.
        yield factory(
            storage="s3",
            replicas=2,
            env={"CLUSTER_INDEX": "pg", "MINDPROJECT_SEGMENT_WINDOW_MS": "100"},
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
            lambda: sum(a.acked for a in up.snapshot() if a.started > killed_at) >= 100,
            60,
            "100 uploads acknowledged by the surviving replica",
        )
        cluster.script("replica-start", "1")
        cluster.script("s3-down")
        down_at = time.monotonic()
        wait_until(lambda: len(up.failures_since(down_at + 1)) >= 10, 60, "uploads failing")
        for url in cluster.replica_urls:
            wait_until(_ready_is(url, cluster.headers, 503), 30, f"{url} not ready")
        cluster.script("s3-up")
        up_at = time.monotonic()
        for url in cluster.replica_urls:
            wait_until(_ready_is(url, cluster.headers, 200), 60, f"{url} ready")
        wait_until(
            lambda: sum(a.acked for a in up.snapshot() if a.started > up_at) >= 100,
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
