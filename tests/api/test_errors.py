"""Every rejection: the right status, the one JSON error shape, and nothing stored."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.helpers import AppServer, RunningServer, app_server, assert_error, free_port, run_server


def nothing_stored(client: httpx.Client) -> None:
    assert client.get("/api/devices/").json()["TelemetryDataDownloads"] == []


@pytest.fixture
def client(server: AppServer) -> Iterator[httpx.Client]:
    with server.client() as http:
        yield http


@pytest.mark.parametrize(
    "path",
    [
        "/api/devices/..%2F..%2Fetc%2Fpasswd",
        "/api/devices/a%2Fb",
        "/api/devices/a%5Cb",
        "/api/devices/.hidden",
        "/api/devices/%2E%2E",
        "/api/devices/" + "x" * 129,
        "/api/devices/caf%C3%A9",
        "/api/devices/nul%00byte",
        "/api/devices/tab%09",
        "/api/devices/sp%20ace",
        "/api/devices/a/b/c/d",
    ],
)
def test_bad_device_ids_are_400_and_store_nothing(client: httpx.Client, path: str) -> None:
    assert_error(client.put(path, files={"file": ("f", b"data")}), 400, "invalid_device_id")
    assert_error(client.get(path), 400, "invalid_device_id")
    nothing_stored(client)


def test_longest_valid_id_is_accepted(client: httpx.Client) -> None:
    device = "A" * 128
    assert client.put(f"/api/devices/{device}", files={"file": ("f", b"x")}).status_code == 200


def test_missing_file_field_says_so(client: httpx.Client) -> None:
    response = client.put("/api/devices/d", files={"document": ("f", b"data")})
    assert_error(response, 400, "missing_file_field")
    assert "'file'" in response.json()["error"]["message"]
    nothing_stored(client)


def test_duplicate_file_fields_rejected(client: httpx.Client) -> None:
    files = [("file", ("a", b"one")), ("file", ("b", b"two"))]
    assert_error(client.put("/api/devices/d", files=files), 400, "bad_request")
    nothing_stored(client)


def test_truncated_multipart_rejected(client: httpx.Client) -> None:
    body = b'--XyZ\r\nContent-Disposition: form-data; name="file"; filename="a"\r\n\r\npartial data'
    response = client.put(
        "/api/devices/d",
        content=body,
        headers={"Content-Type": "multipart/form-data; boundary=XyZ"},
    )
    assert_error(response, 400, "malformed_body")
    nothing_stored(client)


def test_multipart_without_boundary_rejected(client: httpx.Client) -> None:
    response = client.put(
        "/api/devices/d", content=b"x", headers={"Content-Type": "multipart/form-data"}
    )
    assert_error(response, 400, "malformed_body")


@pytest.mark.parametrize(
    ("content_type", "stored"),
    [
        ("application/json", "application/json"),
        ("text/plain; charset=utf-8", "text/plain"),
        # curl --data-binary and wget --body-file send this by default: not the file's type.
        ("application/x-www-form-urlencoded", "application/octet-stream"),
        ("not a type", "application/octet-stream"),
    ],
)
def test_any_non_multipart_body_is_the_file(
    client: httpx.Client, content_type: str, stored: str
) -> None:
    response = client.put(
        "/api/devices/d", content=b"a=1&b=2", headers={"Content-Type": content_type}
    )
    assert response.status_code == 200, response.text
    assert response.json()["content_type"] == stored
    assert client.get("/api/devices/d?encoding=raw").content == b"a=1&b=2"


def test_multipart_other_than_form_data_is_415(client: httpx.Client) -> None:
    """An envelope of parts is not a file: kept as one, it would hold the boundaries."""
    response = client.put(
        "/api/devices/d", content=b"--x--", headers={"Content-Type": "multipart/mixed; boundary=x"}
    )
    assert_error(response, 415, "unsupported_media_type")
    nothing_stored(client)


def test_unknown_device_and_version_are_404(client: httpx.Client) -> None:
    assert_error(client.get("/api/devices/ghost"), 404, "device_not_found")
    assert_error(client.get("/api/devices/ghost/uploads"), 404, "device_not_found")
    assert_error(client.delete("/api/devices/ghost"), 404, "device_not_found")
    client.put("/api/devices/real", files={"file": ("f", b"x")})
    missing = "0000000000000000-00000000"
    assert_error(client.get(f"/api/devices/real/uploads/{missing}"), 404, "upload_not_found")
    assert_error(client.get("/api/devices/real/uploads/not-a-version"), 400, "invalid_version_id")


def test_unknown_route_404_and_wrong_method_405(client: httpx.Client) -> None:
    assert_error(client.get("/nothing-here"), 404, "not_found")
    assert_error(client.post("/api/devices/d"), 405, "method_not_allowed")
    assert_error(client.patch("/api/devices/"), 405, "method_not_allowed")


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"limit": "0"}, "invalid_parameter"),
        ({"limit": "1001"}, "invalid_parameter"),
        ({"limit": "ten"}, "invalid_parameter"),
        ({"cursor": "!!!"}, "invalid_parameter"),
        ({"cursor": "Li4vZXRj"}, "invalid_parameter"),  # base64 of "../etc"
        ({"prefix": "../"}, "invalid_device_id"),
    ],
)
def test_bad_list_parameters(client: httpx.Client, params: dict[str, str], code: str) -> None:
    assert_error(client.get("/api/devices/", params=params), 400, code)


def test_bad_encoding_and_digest_headers(client: httpx.Client) -> None:
    client.put("/api/devices/d", files={"file": ("f", b"x")})
    assert_error(client.get("/api/devices/d", params={"encoding": "hex"}), 400, "invalid_parameter")
    for header in ("sha-256=nocolons", "crc32=:AAAA:", "sha-256=:not base64!:"):
        response = client.put(
            "/api/devices/e", files={"file": ("f", b"x")}, headers={"Content-Digest": header}
        )
        assert_error(response, 400, "bad_request")
    assert client.get("/api/devices/e").status_code == 404


def raw_request(url: str, request: bytes) -> bytes:
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(request)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
            if b"\r\n\r\n" in b"".join(chunks) and b"}}" in chunk:
                break
        return b"".join(chunks)


@pytest.mark.server
def test_no_length_and_no_chunking_is_411(live_server: RunningServer) -> None:
    # On the wire: an HTTP client always frames its body, so the bytes are written by hand.
    reply = raw_request(
        live_server.url,
        b"PUT /api/devices/d HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\n"
        b"Authorization: " + live_server.auth_headers["Authorization"].encode() + b"\r\n"
        b"Connection: close\r\n\r\n",
    )
    assert reply.startswith(b"HTTP/1.1 411")
    assert b'"code":"length_required"' in reply


@pytest.fixture
def small_server(tmp_path: Path) -> Iterator[AppServer]:
    with app_server(f"file://{tmp_path / 'data'}", max_upload_bytes=1000) as s:
        yield s


def test_too_large_is_413_declared_or_streamed(small_server: AppServer) -> None:
    with small_server.client() as client:
        declared = client.put(
            "/api/devices/d",
            content=b"x" * 1001,
            headers={"Content-Type": "application/octet-stream"},
        )
        assert_error(declared, 413, "payload_too_large")

        def chunked() -> Iterator[bytes]:
            for _ in range(20):
                yield b"y" * 100

        streamed = client.put(
            "/api/devices/d",
            content=chunked(),
            headers={"Content-Type": "application/octet-stream"},
        )
        assert_error(streamed, 413, "payload_too_large")
        multipart = client.put("/api/devices/d", files={"file": ("f", b"z" * 1001)})
        assert_error(multipart, 413, "payload_too_large")
        assert client.put("/api/devices/d", files={"file": ("f", b"z" * 1000)}).status_code == 200
        assert client.get("/api/devices/d/uploads").json()["uploads"][0]["size"] == 1000
    assert small_server.data is not None
    assert list((small_server.data / "tmp").iterdir()) == []


@pytest.mark.server
def test_unreachable_storage_is_503_and_not_ready(tmp_path: Path) -> None:
    # Nothing listens on this port: the S3 client cannot connect, as when S3 is down.
    env = {
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}",
        "AWS_ACCESS_KEY_ID": "k",
        "AWS_SECRET_ACCESS_KEY": "s",
        "AWS_REGION": "us-east-1",
    }
    with (
        run_server(tmp_path, "s3://nowhere/x", env=env) as server,
        server.client() as client,
    ):
        ready = client.get("/readyz")
        assert_error(ready, 503, "storage_unavailable")
        # The endpoint, bucket and client internals go to the log, not to the client.
        assert "127.0.0.1" not in ready.text and "nowhere" not in ready.text
        assert "127.0.0.1" in server.log()
        assert_error(
            client.put("/api/devices/d", files={"file": ("f", b"x")}), 503, "storage_unavailable"
        )
        assert_error(client.get("/api/devices/d"), 503, "storage_unavailable")
        assert_error(client.get("/api/devices/"), 503, "storage_unavailable")
        assert client.get("/healthz").status_code == 200
