"""A client that disconnects halfway leaves no version, no temp file and no unfinished S3
multipart upload behind."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.helpers import RunningServer, run_server, s3_client, wait_for

pytestmark = pytest.mark.server

MiB = 1024**2


def send_half_and_vanish(
    server: RunningServer,
    device: str,
    total: int,
    multipart: bool,
    storing: Callable[[], object],
) -> None:
    """Send half of an upload (authorized, so the server stores it), wait until `storing()`
    shows the server storing it, then reset the connection."""
    host, port = server.url.removeprefix("http://").split(":")
    if multipart:
        head = b'--B\r\nContent-Disposition: form-data; name="file"; filename="x"\r\n\r\n'
        content_type = b"multipart/form-data; boundary=B"
    else:
        head, content_type = b"", b"application/octet-stream"
    with socket.create_connection((host, int(port))) as sock:
        sock.sendall(
            b"PUT /api/devices/"
            + device.encode()
            + b" HTTP/1.1\r\nHost: x\r\n"
            + f"Authorization: {server.auth_headers['Authorization']}\r\n".encode()
            + b"Content-Type: "
            + content_type
            + b"\r\nContent-Length: "
            + str(total).encode()
            + b"\r\n\r\n"
            + head
        )
        sent = len(head)
        block = os.urandom(MiB)
        while sent < total // 2:
            sock.sendall(block)
            sent += len(block)
        wait_for(storing, "the server to start storing the upload")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")


@pytest.mark.parametrize("multipart", [True, False], ids=["multipart", "raw"])
def test_disconnect_on_file_backend_leaves_nothing(tmp_path: Path, multipart: bool) -> None:
    data = tmp_path / "data"
    with run_server(tmp_path, f"file://{data}") as server:
        send_half_and_vanish(
            server, "flaky", 40 * MiB, multipart, lambda: list((data / "tmp").iterdir())
        )
        wait_for(lambda: not list((data / "tmp").iterdir()), "temp files to be removed")
        assert not (data / "blobs" / "flaky").exists() or not list(
            (data / "blobs" / "flaky").iterdir()
        )
        with server.client() as client:
            assert client.get("/api/devices/flaky").status_code == 404
            assert client.get("/api/devices/").json()["TelemetryDataDownloads"] == []
            # The server is fine afterwards.
            assert client.put("/api/devices/flaky", files={"file": ("f", b"ok")}).status_code == 200


@pytest.mark.s3
@pytest.mark.parametrize("multipart", [True, False], ids=["multipart", "raw"])
def test_disconnect_on_s3_leaves_no_multipart_upload(
    tmp_path: Path, s3_env: dict[str, str], s3_bucket: str, multipart: bool
) -> None:
    s3 = s3_client(s3_env)
    with run_server(tmp_path, f"s3://{s3_bucket}/t", env=s3_env) as server:

        def multipart_uploads() -> object:
            return s3.list_multipart_uploads(Bucket=s3_bucket).get("Uploads")

        # 20 MiB sent: more than one 8 MiB part, so a multipart upload is under way.
        send_half_and_vanish(server, "flaky", 40 * MiB, multipart, multipart_uploads)
        wait_for(lambda: not multipart_uploads(), "unfinished multipart uploads to be aborted")
        wait_for(
            lambda: not s3.list_objects_v2(Bucket=s3_bucket).get("Contents"),
            "objects in the bucket to be removed",
        )
        with server.client() as client:
            assert client.get("/api/devices/flaky").status_code == 404
