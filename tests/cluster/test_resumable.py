"""Resumable (tus) uploads on the local twin: S3 storage, replicas behind HAProxy, no stickiness.

Every request of an upload may reach any replica: chunks alternate replicas, a replica killed in
the middle of a chunk leaves the last durable offset for another replica to resume from, and two
chunks racing for one offset through two replicas store exactly one. Finished files are compared
byte for byte with their sources.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.cluster.conftest import Cluster, ClusterFactory, process_gone, sha256, wait_until

pytestmark = [pytest.mark.cluster, pytest.mark.s3]

TUS = {"Tus-Resumable": "1.0.0"}
CHUNK_TYPE = {"Content-Type": "application/offset+octet-stream"}
KiB = 1024
MiB = 1024 * KiB


def create(client: httpx.Client, device: str, length: int) -> str:
    response = client.post(
        f"/api/devices/{device}/resumable",
        headers={**TUS, "Upload-Length": str(length), "Upload-Metadata": "filename Y29yZS5iaW4="},
    )
    assert response.status_code == 201, response.text
    location = response.headers["location"]
    assert location.startswith(f"/api/devices/{device}/resumable/")
    return location


def offset_of(client: httpx.Client, location: str) -> int:
    response = client.head(location, headers=TUS)
    assert response.status_code == 200, response.status_code
    assert response.headers["cache-control"] == "no-store"
    return int(response.headers["upload-offset"])


def patch(client: httpx.Client, location: str, offset: int, body: object) -> httpx.Response:
    return client.patch(
        location,
        content=body,  # type: ignore[arg-type]
        headers={**TUS, **CHUNK_TYPE, "Upload-Offset": str(offset)},
    )


def downloaded(cluster: Cluster, device: str) -> bytes:
    with cluster.client() as client:
        response = client.get(f"/api/devices/{device}", params={"encoding": "raw"})
        assert response.status_code == 200, response.text
        return response.content


@pytest.fixture(scope="module")
def cluster(start_cluster_module: ClusterFactory) -> Cluster:
    return start_cluster_module(storage="s3", replicas=2)


@pytest.fixture(scope="module")
def start_cluster_module(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterFactory]:
    factory = ClusterFactory(tmp_path_factory)
    try:
        yield factory
    finally:
        factory.stop_all()


@pytest.mark.parametrize("chunk", [64 * KiB, 1 * MiB, 6 * MiB], ids=["64KiB", "1MiB", "6MiB"])
def test_chunks_alternate_replicas(cluster: Cluster, chunk: int) -> None:
    data = os.urandom(3 * chunk + chunk // 3)  # a short last chunk
    device = f"alternating-{chunk}"
    replicas = [cluster.client(url) for url in cluster.replica_urls]
    try:
        location = create(replicas[0], device, len(data))
        offset = 0
        for n, start in enumerate(range(0, len(data), chunk)):
            client = replicas[n % 2]
            assert offset_of(client, location) == offset
            response = patch(client, location, offset, data[start : start + chunk])
            assert response.status_code == 204, response.text
            offset = int(response.headers["upload-offset"])
        assert offset == len(data)
        assert response.headers["x-version"]
        # A client that lost the last answer asks again, on the other replica: done.
        assert offset_of(replicas[1], location) == len(data)
    finally:
        for client in replicas:
            client.close()
    stored = downloaded(cluster, device)
    assert sha256(stored) == sha256(data)


def test_a_replica_killed_mid_chunk_leaves_a_durable_offset_to_resume_from(
    start_cluster: ClusterFactory,
) -> None:
    # The dead replica's claim holds the upload (423) this long, then the other takes over.
    cluster = start_cluster(
        storage="s3", replicas=2, env={"MINDPROJECT_RESUMABLE_TAKEOVER_SECONDS": "3"}
    )
    data = os.urandom(24 * MiB)
    device = "killed-mid-chunk"
    first, second = (cluster.client(url) for url in cluster.replica_urls)
    location = create(first, device, len(data))
    assert patch(first, location, 0, data[: 8 * MiB]).status_code == 204

    sent = threading.Event()

    def slow_chunk() -> Iterator[bytes]:
        chunk = data[8 * MiB : 16 * MiB]
        for start in range(0, len(chunk), 256 * KiB):
            yield chunk[start : start + 256 * KiB]
            if start >= 4 * MiB:
                sent.set()
                time.sleep(0.2)  # the rest trickles: the replica dies meanwhile

    pid = cluster.replica_pid(1)
    with ThreadPoolExecutor(max_workers=1) as pool:
        attempt = pool.submit(patch, first, location, 8 * MiB, slow_chunk())
        assert sent.wait(60)
        cluster.signal_replica(1, signal.SIGKILL)
        wait_until(lambda: process_gone(pid), 30, "replica 1 to die")
        with pytest.raises(httpx.TransportError):
            attempt.result(timeout=120)
    first.close()

    # Another replica tells the last durable offset: the killed chunk counts for nothing.
    resumed_at = offset_of(second, location)
    assert resumed_at == 8 * MiB
    for start in range(resumed_at, len(data), 8 * MiB):
        for _ in range(100):  # as tus clients do: retry while the dead replica's claim holds
            response = patch(second, location, start, data[start : start + 8 * MiB])
            if response.status_code != 423:
                break
            time.sleep(0.2)
        assert response.status_code == 204, response.text
    second.close()
    assert sha256(downloaded(cluster, device)) == sha256(data)


def test_two_chunks_racing_through_two_replicas_store_exactly_one(cluster: Cluster) -> None:
    data = os.urandom(4 * MiB)
    device = "racing"
    first, second = (cluster.client(url) for url in cluster.replica_urls)
    location = create(first, device, len(data))
    go = threading.Barrier(2)

    def racer(client: httpx.Client, fill: bytes) -> httpx.Response:
        def body() -> Iterator[bytes]:
            go.wait(30)
            for _ in range(8):
                yield fill * (128 * KiB)
                time.sleep(0.05)

        return patch(client, location, 0, body())

    # Two different bodies for the same first 1 MiB: if both were stored the bytes would mix.
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(racer, (first, second), (b"A", b"B")))
    statuses = sorted(r.status_code for r in results)
    assert statuses[0] == 204 and statuses[1] in (409, 423), [r.text for r in results]
    winner = b"A" if results[0].status_code == 204 else b"B"
    loser = results[1] if results[0].status_code == 204 else results[0]
    assert loser.json()["error"]["code"] in ("offset_mismatch", "upload_busy")

    offset = offset_of(second, location)
    assert offset == 1 * MiB
    rest = data[1 * MiB :]
    assert patch(second, location, offset, rest).status_code == 204
    first.close()
    second.close()
    stored = downloaded(cluster, device)
    assert stored == winner * MiB + rest
