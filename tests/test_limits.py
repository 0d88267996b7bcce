"""Per-device limits: request rate (429 + Retry-After), uploads in flight, header size (431),
slow bodies (408)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from mindproject.errors import TooManyRequests
from mindproject.limits import RateLimiter, UploadSlots
from mindproject.storage.filesystem import INLINE_MAX
from tests.helpers import (
    RunningServer,
    app_server,
    assert_error,
    make_token,
    run_server,
    wait_for,
)


def test_token_bucket_allows_a_burst_then_the_rate() -> None:
    limiter = RateLimiter(per_minute=60, burst=3)
    for _ in range(3):
        limiter.check("d")
    with pytest.raises(TooManyRequests) as refused:
        limiter.check("d")
    assert refused.value.headers["Retry-After"] == "1"
    limiter.check("other")  # buckets are per device


def test_rate_limit_off() -> None:
    limiter = RateLimiter(per_minute=0, burst=1)
    for _ in range(100):
        limiter.check("d")


def test_upload_slots_cap_and_release() -> None:
    slots = UploadSlots(per_device=2)
    with slots.hold("d"), slots.hold("d"):
        with pytest.raises(TooManyRequests), slots.hold("d"):
            pass
        with slots.hold("e"):
            pass
    with slots.hold("d"), slots.hold("d"):
        pass


def test_device_over_its_rate_gets_429_with_retry_after(tmp_path: Path) -> None:
    with (
        app_server(f"file://{tmp_path}/data", rate_limit_per_minute=6, rate_limit_burst=3) as app,
        app.client(make_token("device", "chatty")) as device,
    ):
        statuses = [device.get("/api/devices/chatty").status_code for _ in range(4)]
        assert statuses[:3] == [404, 404, 404]
        refused = device.get("/api/devices/chatty")
        assert_error(refused, 429, "too_many_requests")
        assert int(refused.headers["retry-after"]) >= 1
        with app.client(make_token("device", "quiet")) as other:
            assert other.get("/api/devices/quiet").status_code == 404


# What follows depends on the wire (bytes trickling in, header bytes): a real server process,
# shared by the module; each test has its own device.
@pytest.fixture(scope="module")
def strict_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    tmp_path = tmp_path_factory.mktemp("limits")
    env = {
        "MINDPROJECT_MAX_CONCURRENT_UPLOADS_PER_DEVICE": "1",
        "MINDPROJECT_BODY_TIMEOUT_SECONDS": "1",
    }
    with run_server(tmp_path, f"file://{tmp_path}/data", env=env) as server:
        yield server


def temp_files(server: RunningServer) -> list[Path]:
    return list((Path(server.log_path).parent / "data" / "tmp").iterdir())


def raw_connection(server: RunningServer) -> socket.socket:
    host, port = server.url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=30)


def read_reply(sock: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data or not data.rstrip().endswith(b"}"):
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


@pytest.mark.server
def test_second_upload_in_flight_for_a_device_gets_429(strict_server: RunningServer) -> None:
    token = make_token("device", "busy")
    # More than the file backend keeps in memory, so a temp file shows the upload in flight.
    first_part = b"a" * (INLINE_MAX + 1)
    with raw_connection(strict_server) as slow:
        slow.sendall(
            b"PUT /api/devices/busy HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: application/octet-stream\r\nAuthorization: Bearer "
            + token.encode()
            + f"\r\nContent-Length: {len(first_part) + 7}\r\n\r\n".encode()
            + first_part
        )
        wait_for(lambda: temp_files(strict_server), "the first upload to be in flight")
        with strict_server.client(token) as device:
            second = device.put("/api/devices/busy", files={"file": ("f", b"x")})
            assert_error(second, 429, "too_many_requests")
        slow.sendall(b"defghij")
        assert read_reply(slow).startswith(b"HTTP/1.1 200")
    with strict_server.client() as admin:
        stored = admin.get("/api/devices/busy", params={"encoding": "raw"}).content
        assert stored == first_part + b"defghij"


@pytest.mark.server
def test_trickling_client_is_cut_off_with_408_and_nothing_stored(
    strict_server: RunningServer,
) -> None:
    with raw_connection(strict_server) as sock:
        sock.sendall(
            b"PUT /api/devices/slow HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: application/octet-stream\r\n"
            + f"Authorization: {strict_server.auth_headers['Authorization']}\r\n".encode()
            + b"Content-Length: 1000\r\n\r\nfirst bytes"
        )
        reply = read_reply(sock)  # the server gives up after 1 s of silence
    assert reply.startswith(b"HTTP/1.1 408")
    assert b'"code":"request_timeout"' in reply
    with strict_server.client() as admin:
        assert admin.get("/api/devices/slow").status_code == 404
    assert temp_files(strict_server) == []


@pytest.mark.server
def test_oversized_headers_get_431(strict_server: RunningServer) -> None:
    with strict_server.client() as client:
        response = client.get(
            "/api/devices/", headers={f"X-Pad-{i}": "v" * 1000 for i in range(20)}
        )
        assert_error(response, 431, "headers_too_large")
