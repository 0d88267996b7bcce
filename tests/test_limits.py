"""Per-device limits: request rate (429 + Retry-After), uploads in flight, header size (431),
slow bodies (408)."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mindproject.errors import TooManyRequests
from mindproject.limits import RateLimiter, UploadSlots
from tests.helpers import RunningServer, assert_error, make_token, run_server


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


@pytest.fixture
def strict_server(tmp_path: Path) -> Iterator[RunningServer]:
    env = {
        "MINDPROJECT_RATE_LIMIT_PER_MINUTE": "6",
        "MINDPROJECT_RATE_LIMIT_BURST": "3",
        "MINDPROJECT_MAX_CONCURRENT_UPLOADS_PER_DEVICE": "1",
        "MINDPROJECT_BODY_TIMEOUT_SECONDS": "1",
    }
    with run_server(tmp_path, f"file://{tmp_path}/data", env=env) as server:
        yield server


def test_device_over_its_rate_gets_429_with_retry_after(strict_server: RunningServer) -> None:
    with strict_server.client(make_token("device", "chatty")) as device:
        statuses = [device.get("/api/devices/chatty").status_code for _ in range(4)]
        assert statuses[:3] == [404, 404, 404]
        refused = device.get("/api/devices/chatty")
        assert_error(refused, 429, "too_many_requests")
        assert int(refused.headers["retry-after"]) >= 1
    with strict_server.client(make_token("device", "quiet")) as other:
        assert other.get("/api/devices/quiet").status_code == 404


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


def test_second_upload_in_flight_for_a_device_gets_429(strict_server: RunningServer) -> None:
    token = make_token("device", "busy")
    with raw_connection(strict_server) as slow:
        slow.sendall(
            b"PUT /api/devices/busy HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: application/octet-stream\r\nAuthorization: Bearer "
            + token.encode()
            + b"\r\nContent-Length: 10\r\n\r\nabc"
        )
        time.sleep(0.3)  # the first upload is now in flight, waiting for 7 more bytes
        with strict_server.client(token) as device:
            second = device.put("/api/devices/busy", files={"file": ("f", b"x")})
            assert_error(second, 429, "too_many_requests")
        slow.sendall(b"defghij")
        assert read_reply(slow).startswith(b"HTTP/1.1 200")


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
    assert list((Path(strict_server.log_path).parent / "data" / "tmp").iterdir()) == []


def test_oversized_headers_get_431(server: RunningServer) -> None:
    with server.client() as client:
        response = client.get(
            "/api/devices/", headers={f"X-Pad-{i}": "v" * 1000 for i in range(20)}
        )
        assert_error(response, 431, "headers_too_large")
