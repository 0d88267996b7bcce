"""What a client can make one connection hold, over raw sockets against a real server
(mindproject.http_protocol): trailers, bytes after an early answer, header blocks that arrive in
one read, transfer codings, malformed framing. Each test also checks that the server keeps
answering /healthz meanwhile and that nothing was stored.

Bounds are asserted as counts (bytes accepted, reads before the close, memory growth), never as
durations: the loops below stop by themselves after a fixed number of steps.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import httpx
import pytest

from tests.helpers import RunningServer, make_token, rss_bytes, run_server

T = TypeVar("T")
MiB = 1024 * 1024
pytestmark = pytest.mark.server
BODY_TIMEOUT = 1.0


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    tmp = tmp_path_factory.mktemp("protocol")
    env = {
        "MINDPROJECT_BODY_TIMEOUT_SECONDS": str(BODY_TIMEOUT),
        "MINDPROJECT_MAX_UPLOAD_BYTES": str(1 * MiB),
        "MINDPROJECT_SHUTDOWN_DRAIN_SECONDS": "0",
    }
    with run_server(tmp, f"file://{tmp / 'data'}", env=env) as running:
        yield running


def connect(server: RunningServer) -> socket.socket:
    host, port = server.url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=10)
    return sock


def read_until_closed(sock: socket.socket, limit: int = 1 << 20) -> bytes:
    received = b""
    while len(received) < limit:
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, TimeoutError):
            break
        if not chunk:
            break
        received += chunk
    return received


def parse_error(raw: bytes) -> tuple[int, dict[str, str], dict[str, object]]:
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines)}
    length = int(headers["content-length"])
    return int(status_line.split()[1]), headers, json.loads(body[:length])


def healthy(server: RunningServer) -> bool:
    return httpx.get(f"{server.url}/healthz", timeout=5).status_code == 200


def stored_devices(server: RunningServer) -> list[object]:
    with server.client() as client:
        listed: list[object] = client.get("/api/devices/").json()["TelemetryDataDownloads"]
        return listed


def during(server: RunningServer, attack: Callable[[], T]) -> T:
    """Run `attack` in a thread while asking /healthz on other connections: every ask must be
    answered (the event loop must not stall). The attack's own loop bounds the time."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        running = pool.submit(attack)
        while not running.done():
            assert healthy(server), "the server stopped answering during the attack"
            time.sleep(0.05)
        assert healthy(server)
        return running.result()


def send_until_refused(
    sock: socket.socket, piece: bytes, max_bytes: int, pause: float = 0.0
) -> int:
    """Send `piece` again and again (with a pause between) until the server closes; the bytes
    it took."""
    sent = 0
    while sent < max_bytes:
        try:
            sock.sendall(piece)
        except (BrokenPipeError, ConnectionResetError):
            return sent
        sent += len(piece)
        time.sleep(pause)
    return sent


# --- 1. trailers ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "trailer_piece",
    [b"a" * 65536, b"a:b\r\n" * 13107],
    ids=["one-endless-trailer-line", "many-tiny-trailer-fields"],
)
def test_trailers_are_bounded_and_the_connection_closed(
    server: RunningServer, trailer_piece: bytes
) -> None:
    before = rss_bytes(server.pid)
    with connect(server) as sock:
        sock.sendall(
            b"POST /healthz HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n"
        )
        # The 405 goes out at once; what follows is discarded unparsed until the connection
        # closes, within the linger time. 512 pieces 5 ms apart: before the fix the server took
        # all 32 MiB, parsing them into one growing trailer (and grew by more than that), and
        # stopped answering /healthz meanwhile.
        taken = during(
            server, lambda: send_until_refused(sock, trailer_piece, 32 * MiB, pause=0.005)
        )
        assert taken < 32 * MiB
    assert rss_bytes(server.pid) - before < 16 * MiB


def test_trailers_of_an_upload_are_bounded_and_nothing_is_stored(server: RunningServer) -> None:
    token = make_token("device", "trailer-dev")
    with connect(server) as sock:
        sock.sendall(
            b"PUT /api/devices/trailer-dev HTTP/1.1\r\nHost: x\r\n"
            b"Authorization: Bearer " + token.encode() + b"\r\n"
            b"Content-Type: application/octet-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"5\r\nhello\r\n0\r\n"
        )
        taken = during(
            server, lambda: send_until_refused(sock, b"x-trailer: " + b"v" * 65536, 64 * MiB)
        )
        assert taken < 16 * MiB
        raw = read_until_closed(sock)
    status, _, body = parse_error(raw)
    assert status == 431
    assert body["error"]["code"] == "headers_too_large"  # type: ignore[index]
    assert healthy(server)
    assert "trailer-dev" not in json.dumps(stored_devices(server))


def test_a_trailer_field_is_dropped_not_added_to_the_headers(server: RunningServer) -> None:
    """A small trailer is within the budget; its field does not reach the app as a header."""
    token = make_token("device", "small-trailer")
    with connect(server) as sock:
        sock.sendall(
            b"PUT /api/devices/small-trailer HTTP/1.1\r\nHost: x\r\n"
            b"Authorization: Bearer " + token.encode() + b"\r\n"
            b"Content-Type: application/octet-stream\r\nTransfer-Encoding: chunked\r\n"
            b"Connection: close\r\n\r\n5\r\nhello\r\n0\r\nX-Filename: from-trailer.txt\r\n\r\n"
        )
        raw = read_until_closed(sock)
    assert raw.startswith(b"HTTP/1.1 200"), raw[:200]
    with server.client() as client:
        uploads = client.get("/api/devices/small-trailer/uploads").json()["uploads"]
    assert [upload["filename"] for upload in uploads] == [None]


# --- 2. bytes after an early answer -----------------------------------------------------------
def trickle_until_closed(sock: socket.socket, steps: int, pause: float) -> tuple[bytes, int]:
    """Send one byte per step; return what the server answered and the steps until it closed."""
    answered = b""
    sock.settimeout(pause)
    for step in range(steps):
        try:
            sock.sendall(b"x")
        except (BrokenPipeError, ConnectionResetError):
            return answered, step
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            continue
        except ConnectionResetError:
            return answered, step
        if not chunk:
            return answered, step
        answered += chunk
    return answered, steps


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        (b"Content-Length: 100000\r\n", 401),  # no token
        (b"Authorization: Bearer {device}\r\nContent-Length: 2000000\r\n", 413),
        (b"Authorization: Bearer {device}\r\nContent-Length: 100000\r\n", 408),
    ],
    ids=["401", "413", "408"],
)
def test_an_early_answer_closes_the_connection_however_bytes_trickle(
    server: RunningServer, headers: bytes, status: int
) -> None:
    headers = headers.replace(b"{device}", make_token("device", "slow-dev").encode())
    with connect(server) as sock:
        sock.sendall(
            b"PUT /api/devices/slow-dev HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: application/octet-stream\r\n" + headers + b"\r\n"
        )
        # One byte every 0.25 s: before the fix each byte restarted the keep-alive timer and the
        # connection stayed open through all 200 steps (50 s). The body timeout is 1 s; for 408
        # the first pause (1.5 s) lets it pass.
        if status == 408:
            sock.sendall(b"partial")
            time.sleep(BODY_TIMEOUT * 1.5)
        answered, steps = during(server, lambda: trickle_until_closed(sock, steps=200, pause=0.25))
    assert answered.startswith(f"HTTP/1.1 {status}".encode()), answered[:200]
    assert steps < 200, "the server kept the connection open"
    assert healthy(server)
    assert "slow-dev" not in json.dumps(stored_devices(server))


def test_a_whole_request_keeps_its_connection_alive(server: RunningServer) -> None:
    """The close is only for answers sent before the body was read: keep-alive still works."""
    with connect(server) as sock:
        # A refused upload whose (small) body arrived whole, then another request, one socket.
        sock.sendall(
            b"PUT /api/devices/x HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"
            b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        raw = read_until_closed(sock)
    assert raw.startswith(b"HTTP/1.1 401")
    assert b"\r\n\r\nHTTP/1.1 200" in raw or b"}HTTP/1.1 200" in raw, raw


# --- 6. the header limit when the whole block arrives in one read ------------------------------
def test_header_limit_counts_wire_bytes_when_headers_arrive_in_one_read(
    server: RunningServer,
) -> None:
    fields = b"".join(b"a:b\r\n" for _ in range(8000))  # 40,000 bytes, 16,000 of names and values
    with connect(server) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + fields + b"\r\n")
        raw = read_until_closed(sock)
    status, headers, body = parse_error(raw)
    assert status == 431
    assert body["error"]["code"] == "headers_too_large"  # type: ignore[index]
    assert headers["connection"] == "close"
    assert healthy(server)


def test_headers_just_under_the_limit_pass_in_one_read(server: RunningServer) -> None:
    fields = b"".join(b"a:b\r\n" for _ in range(3000))  # 15,000 bytes of a 16 KiB budget
    with connect(server) as sock:
        sock.sendall(
            b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" + fields + b"\r\n"
        )
        raw = read_until_closed(sock)
    assert raw.startswith(b"HTTP/1.1 200"), raw[:200]


# --- transfer codings and malformed framing ---------------------------------------------------
@pytest.mark.parametrize("coding", [b"gzip, chunked", b"deflate,chunked", b"br, chunked"])
def test_transfer_codings_other_than_chunked_are_refused(
    server: RunningServer, coding: bytes
) -> None:
    token = make_token("device", "coded-dev")
    with connect(server) as sock:
        sock.sendall(
            b"PUT /api/devices/coded-dev HTTP/1.1\r\nHost: x\r\n"
            b"Authorization: Bearer " + token.encode() + b"\r\n"
            b"Content-Type: application/octet-stream\r\nTransfer-Encoding: " + coding + b"\r\n\r\n"
            b"5\r\nhello\r\n0\r\n\r\n"
        )
        raw = read_until_closed(sock)
    status, _, body = parse_error(raw)
    assert status == 501
    assert body["error"]["code"] == "unsupported_transfer_coding"  # type: ignore[index]
    assert "coded-dev" not in json.dumps(stored_devices(server))


def test_malformed_framing_gets_the_json_error_shape(server: RunningServer) -> None:
    with connect(server) as sock:
        sock.sendall(b"GET /api/devices/a\x00b HTTP/1.1\r\nHost: x\r\n\r\n")
        raw = read_until_closed(sock)
    status, headers, body = parse_error(raw)
    assert status == 400
    assert headers["content-type"] == "application/json"
    assert body["error"]["code"] == "malformed_request"  # type: ignore[index]
    assert body["error"]["request_id"] == headers["x-request-id"]  # type: ignore[index]


# --- 11. metric series ------------------------------------------------------------------------
def test_unknown_methods_do_not_mint_metric_series(server: RunningServer) -> None:
    """Each of the 35 methods the parser accepts used to get series of its own (508 -> 11,036
    series from 750 requests): unknown ones are counted as `other`."""
    odd = [b"PROPFIND", b"MKCOL", b"LOCK", b"SEARCH", b"PURGE"]
    for method in odd:
        with connect(server) as sock:
            sock.sendall(method + b" /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            assert read_until_closed(sock).startswith(b"HTTP/1.1 405")
    with server.client() as client:
        exposition = client.get("/metrics").text
    for method in odd:
        assert f'method="{method.decode()}"' not in exposition
    assert 'method="other"' in exposition
