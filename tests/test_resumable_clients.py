"""Resumable uploads from a real tus client (tuspy, from PyPI) to a real `mindproject serve` on
the file backend; and a server killed with SIGKILL in the middle of a PATCH.

tuspy 1.1 always sends Upload-Length, so deferred lengths are tested by hand
(tests/api/test_resumable.py::test_deferred_length, and below over a real socket).
"""

from __future__ import annotations

import hashlib
import io
import os
import signal
import socket
import sqlite3
import time
import uuid
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import httpx
import pytest
from tusclient.client import TusClient
from tusclient.storage.filestorage import FileStorage as UrlStorage
from tusclient.uploader.uploader import Uploader

from tests.helpers import RunningServer, make_token, run_server, s3_client

pytestmark = pytest.mark.server

KiB, MiB = 1024, 1024 * 1024
ENV = {
    "MINDPROJECT_SHUTDOWN_DRAIN_SECONDS": "0",
    # Every PATCH is a request: small chunks would meet the per-device rate limit first.
    "MINDPROJECT_RATE_LIMIT_PER_MINUTE": "0",
}


@pytest.fixture(scope="module", params=["file", pytest.param("s3", marks=pytest.mark.s3)])
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    """A real server on the file backend, and one on the local S3 server (Ceph)."""
    tmp_path = tmp_path_factory.mktemp("tus")
    if request.param == "file":
        storage, env = f"file://{tmp_path / 'data'}", ENV
    else:
        s3_env: dict[str, str] = request.getfixturevalue("s3_env")
        bucket = f"tus-{uuid.uuid4().hex[:12]}"
        s3_client(s3_env).create_bucket(Bucket=bucket)
        storage, env = f"s3://{bucket}/telemetry", {**ENV, **s3_env}
    with run_server(tmp_path, storage, env=env) as running:
        yield running


def tus_client(server_url: str, device: str) -> TusClient:
    token = make_token("device", device)
    return TusClient(
        f"{server_url}/api/devices/{device}/resumable",
        headers={"Authorization": f"Bearer {token}"},
    )


def uploader(
    client: TusClient, data: bytes, chunk_size: int, path: Path | None = None, **kwargs: object
) -> Uploader:
    if path is not None:  # tuspy's url storage fingerprints a file (and closes a stream)
        path.write_bytes(data)
    return Uploader(
        file_path=None if path is None else str(path),
        file_stream=io.BytesIO(data) if path is None else None,
        client=client,
        chunk_size=chunk_size,
        # latin-1 carries the raw digest bytes through tuspy's str metadata unchanged.
        metadata={
            "filename": "telemetry.bin",
            "filetype": "application/x-telemetry",
            "sha256": hashlib.sha256(data).digest().decode("latin-1"),
        },
        metadata_encoding="latin-1",
        upload_checksum=True,  # tuspy sends sha1 per chunk
        **kwargs,  # type: ignore[arg-type]
    )


def stored(server: RunningServer, device: str) -> tuple[bytes, dict[str, object]]:
    with server.client() as admin:
        latest = admin.get(f"/api/devices/{device}", params={"encoding": "raw"})
        assert latest.status_code == 200, latest.text
        history = admin.get(f"/api/devices/{device}/uploads").json()["uploads"]
    return latest.content, history[0]


@pytest.mark.parametrize(
    ("chunk_size", "size"),
    [(64 * KiB, 2 * MiB + 11), (1 * MiB, 5 * MiB + 7), (8 * MiB, 20 * MiB + 3)],
    ids=["64KiB", "1MiB", "8MiB"],
)
def test_tuspy_uploads_in_chunks(server: RunningServer, chunk_size: int, size: int) -> None:
    device = f"tuspy-{chunk_size}"
    data = os.urandom(size)
    upload = uploader(tus_client(server.url, device), data, chunk_size)
    upload.upload()
    assert upload.offset == size
    content, info = stored(server, device)
    assert content == data
    assert info["sha256"] == hashlib.sha256(data).hexdigest()
    assert info["size"] == size
    assert info["filename"] == "telemetry.bin"
    assert info["content_type"] == "application/x-telemetry"


def test_a_client_stopped_midway_resumes_from_head(server: RunningServer, tmp_path: Path) -> None:
    """The client keeps its upload URLs in a file (tuspy's url storage); a new client process,
    finding the URL there, asks the server for the offset and sends only the rest."""
    device = "tuspy-resumed"
    data = os.urandom(3 * MiB + 5)
    urls, source = tmp_path / "tus-urls.json", tmp_path / "telemetry.bin"
    first = uploader(
        tus_client(server.url, device),
        data,
        256 * KiB,
        source,
        store_url=True,
        url_storage=UrlStorage(str(urls)),
    )
    first.upload(stop_at=MiB)  # then the device loses power
    assert first.offset == MiB
    with server.client() as admin:
        assert admin.get(f"/api/devices/{device}").status_code == 404
    again = uploader(
        tus_client(server.url, device),
        data,
        256 * KiB,
        source,
        store_url=True,
        url_storage=UrlStorage(str(urls)),
    )
    assert again.url == first.url
    assert again.offset == MiB  # from HEAD
    again.upload()
    content, info = stored(server, device)
    assert content == data
    assert info["sha256"] == hashlib.sha256(data).hexdigest()


def test_deferred_length_over_a_real_socket(server: RunningServer) -> None:
    device = "deferred"
    data = os.urandom(2 * MiB + 1)
    tus = {"Tus-Resumable": "1.0.0"}
    chunk = {**tus, "Content-Type": "application/offset+octet-stream"}
    token = make_token("device", device)
    with server.client(token) as http:
        created = http.post(
            f"/api/devices/{device}/resumable", headers={**tus, "Upload-Defer-Length": "1"}
        )
        url = created.headers["location"]
        first = http.patch(url, content=data[:MiB], headers={**chunk, "Upload-Offset": "0"})
        assert first.status_code == 204
        last = http.patch(
            url,
            content=data[MiB:],
            headers={**chunk, "Upload-Offset": str(MiB), "Upload-Length": str(len(data))},
        )
        assert last.status_code == 204 and last.headers["x-version"]
    content, _ = stored(server, device)
    assert content == data


def _committed(data_dir: Path) -> list[tuple[object, ...]]:
    with closing(sqlite3.connect(data_dir / "index.sqlite3")) as db:
        return db.execute("SELECT received FROM resumable").fetchall()


def test_a_server_killed_mid_patch_resumes_at_the_last_durable_offset(tmp_path: Path) -> None:
    device = "killed"
    data = os.urandom(6 * MiB + 3)
    data_dir = tmp_path / "data"
    storage = f"file://{data_dir}"
    token = make_token("device", device)
    with run_server(tmp_path, storage, env=ENV) as first:
        upload = uploader(tus_client(first.url, device), data, MiB)
        upload.upload(stop_at=2 * MiB)
        assert upload.offset == 2 * MiB
        assert upload.url is not None
        url_path = httpx.URL(upload.url).path
        part = data_dir / "resumable" / f"{url_path.rpartition('/')[2]}.part"
        # A PATCH of 3 MiB at 2 MiB, of which 2.5 MiB are sent, then nothing: the server is
        # mid-append, with bytes past the committed offset in the part file.
        port = httpx.URL(first.url).port
        assert port is not None
        with socket.create_connection(("127.0.0.1", port)) as sock:
            head = (
                f"PATCH {url_path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                f"Authorization: Bearer {token}\r\nTus-Resumable: 1.0.0\r\n"
                "Content-Type: application/offset+octet-stream\r\n"
                f"Upload-Offset: {2 * MiB}\r\nContent-Length: {3 * MiB}\r\n\r\n"
            )
            sock.sendall(head.encode() + data[2 * MiB : 2 * MiB + 5 * MiB // 2])
            for _ in range(3000):  # bounded by count: until the server has written some
                if part.stat().st_size > 2 * MiB:
                    break
                time.sleep(0.01)
            assert part.stat().st_size > 2 * MiB
            first.process.send_signal(signal.SIGKILL)
            first.process.wait()
    assert _committed(data_dir) == [(2 * MiB,)]
    with run_server(tmp_path, storage, env=ENV) as second:
        head_answer = httpx.head(
            f"{second.url}{url_path}",
            headers={"Tus-Resumable": "1.0.0", "Authorization": f"Bearer {token}"},
        )
        assert head_answer.status_code == 200
        assert head_answer.headers["upload-offset"] == str(2 * MiB)
        resumed = uploader(tus_client(second.url, device), data, MiB, url=f"{second.url}{url_path}")
        assert resumed.offset == 2 * MiB
        resumed.upload()
        content, info = stored(second, device)
    assert content == data
    assert info["sha256"] == hashlib.sha256(data).hexdigest()
    assert not part.exists()


def test_worker_processes_share_uploads(tmp_path: Path) -> None:
    """Two worker processes on one data folder, sharing nothing else: tuspy opens a connection
    per request, so its chunks may land on either worker (which one is not asserted: the kernel
    chooses; tests/storage/test_filesystem.py drives two storages on one folder by hand)."""
    device = "two-workers"
    data = os.urandom(MiB + 9)
    with run_server(
        tmp_path, f"file://{tmp_path / 'data'}", env=ENV, args=("--workers", "2")
    ) as server:
        upload = uploader(tus_client(server.url, device), data, 32 * KiB)
        upload.upload()
        content, info = stored(server, device)
    assert content == data
    assert info["sha256"] == hashlib.sha256(data).hexdigest()
