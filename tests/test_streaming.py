"""Streaming proof: a 1 GiB file goes up and comes back (raw and base64) through a running
server whose resident memory grows by less than 100 MiB, with the sha256 intact."""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import peak_rss_bytes, rss_bytes, run_server

pytestmark = [pytest.mark.slow, pytest.mark.server]

GiB = 1024**3
MiB = 1024**2
BLOCK = MiB


def blocks() -> Iterator[bytes]:
    """1 GiB of deterministic, incompressible-enough bytes, made block by block."""
    seed = hashlib.sha256(b"telemetry").digest() * (BLOCK // 32)
    for index in range(GiB // BLOCK):
        yield index.to_bytes(8, "big") + seed[8:]


def expected_sha256() -> str:
    digest = hashlib.sha256()
    for block in blocks():
        digest.update(block)
    return digest.hexdigest()


def multipart_body(boundary: str) -> Iterator[bytes]:
    yield (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.bin"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    yield from blocks()
    yield f"\r\n--{boundary}--\r\n".encode()


@pytest.mark.parametrize("backend", ["file", pytest.param("s3", marks=pytest.mark.s3)])
def test_one_gib_up_and_down_in_bounded_memory(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    if backend == "file":
        storage, env = f"file://{tmp_path / 'data'}", {}
    else:
        storage = f"s3://{request.getfixturevalue('s3_bucket')}/big"
        env = request.getfixturevalue("s3_env")
    want = expected_sha256()
    with (
        run_server(tmp_path, storage, env=env) as server,
        server.client(timeout=600) as client,
    ):
        # Warm up every code path once, then take the baseline.
        client.put("/api/devices/warm", files={"file": ("w", b"w" * 100_000)})
        client.get("/api/devices/warm")
        client.get("/api/devices/warm", params={"encoding": "raw"})
        baseline = rss_bytes(server.pid)

        boundary = "mindproject-boundary-0123456789"
        response = client.put(
            "/api/devices/big",
            content=multipart_body(boundary),
            headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
        )
        assert response.status_code == 200, response.text
        assert response.json()["sha256"] == want
        assert response.json()["size"] == GiB

        raw = hashlib.sha256()
        with client.stream("GET", "/api/devices/big", params={"encoding": "raw"}) as stream:
            assert stream.status_code == 200
            for chunk in stream.iter_bytes():
                raw.update(chunk)
        assert raw.hexdigest() == want

        decoded = hashlib.sha256()
        carry = b""
        with client.stream("GET", "/api/devices/big") as stream:
            assert int(stream.headers["content-length"]) == 4 * ((GiB + 2) // 3)
            for chunk in stream.iter_bytes():
                data = carry + chunk
                cut = len(data) - len(data) % 4
                decoded.update(base64.b64decode(data[:cut]))
                carry = data[cut:]
        decoded.update(base64.b64decode(carry))
        assert decoded.hexdigest() == want

        growth = peak_rss_bytes(server.pid) - baseline
        assert growth < 100 * MiB, f"server memory grew by {growth / MiB:.1f} MiB"


RESUMABLE_CHUNK = 64 * MiB
# On S3 every byte crosses the local Ceph server twice (the chunks, then the version assembled
# from them): 2 GiB there costs minutes of the suite, so it runs 512 MiB, past where memory
# settles; MINDPROJECT_TEST_RESUMABLE_S3_MIB=2048 runs the full 2 GiB (passed: < 64 MiB).
RESUMABLE_MIB = {"file": 2048, "s3": int(os.environ.get("MINDPROJECT_TEST_RESUMABLE_S3_MIB", 512))}


def resumable_blocks(total: int) -> Iterator[bytes]:
    """`total` bytes, block by block, each block numbered."""
    seed = hashlib.sha256(b"resumable").digest() * (BLOCK // 32)
    for index in range(total // BLOCK):
        yield index.to_bytes(8, "big") + seed[8:]


@pytest.mark.parametrize("backend", ["file", pytest.param("s3", marks=pytest.mark.s3)])
def test_large_resumable_upload_in_bounded_memory(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """A 2 GiB tus upload (512 MiB on S3, see above) in 64 MiB chunks: server memory grows by
    less than 64 MiB, and the sha256 the service computed across the chunks is the file's."""
    total = RESUMABLE_MIB[backend] * MiB
    if backend == "file":
        storage, env = f"file://{tmp_path / 'data'}", {}
    else:
        storage = f"s3://{request.getfixturevalue('s3_bucket')}/big"
        env = request.getfixturevalue("s3_env")
    env = {**env, "MINDPROJECT_MAX_UPLOAD_BYTES": str(4 * GiB)}
    tus = {"Tus-Resumable": "1.0.0"}
    chunk_headers = {**tus, "Content-Type": "application/offset+octet-stream"}
    with (
        run_server(tmp_path, storage, env=env) as server,
        server.client(timeout=600) as client,
    ):
        warm = client.post(
            "/api/devices/warm/resumable", headers={**tus, "Upload-Length": str(2 * MiB)}
        )
        client.patch(
            warm.headers["location"],
            content=b"w" * 2 * MiB,
            headers={**chunk_headers, "Upload-Offset": "0"},
        )
        baseline = rss_bytes(server.pid)

        created = client.post(
            "/api/devices/big-resumable/resumable",
            headers={**tus, "Upload-Length": str(total)},
        )
        assert created.status_code == 201, created.text
        location = created.headers["location"]
        want = hashlib.sha256()
        blocks_left = resumable_blocks(total)
        for offset in range(0, total, RESUMABLE_CHUNK):
            chunk = [next(blocks_left) for _ in range(RESUMABLE_CHUNK // BLOCK)]
            for block in chunk:
                want.update(block)
            response = client.patch(
                location,
                content=iter(chunk),
                headers={**chunk_headers, "Upload-Offset": str(offset)},
            )
            assert response.status_code == 204, response.text
        version = response.headers["x-version"]
        stored = client.get("/api/devices/big-resumable/uploads").json()["uploads"][0]
        assert stored["version"] == version
        assert stored["size"] == total
        assert stored["sha256"] == want.hexdigest()

        growth = peak_rss_bytes(server.pid) - baseline
        assert growth < 64 * MiB, f"server memory grew by {growth / MiB:.1f} MiB"
