"""The SDK's own behaviour, without the service: retries, backoff, Retry-After and idempotency
keys against httpx.MockTransport (the behaviour under test is the client's, so a scripted
server is enough), hostile answers from a tiny HTTP server on 127.0.0.1, and the promise that
the client never imports the server's modules."""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from mindproject.client import (
    ApiError,
    AsyncClient,
    Client,
    ClientError,
    NetworkError,
    ResponseError,
    RetryPolicy,
    VerificationError,
)
from mindproject.client.retry import parse_retry_after

FAST = RetryPolicy(attempts=4, base_delay=0, max_delay=1)


VERSION = "8203800170107982-5b08afbd"


def version_json(data: bytes, version: str = VERSION, **extra: object) -> dict[str, object]:
    return {
        "device_id": "d",
        "version": version,
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "uploaded_at": "2026-12-02T08:00:00.000000Z",
        "filename": "f",
        "content_type": "application/octet-stream",
        **extra,
    }


def mock_client(handler: Callable[[httpx.Request], httpx.Response], tmp_path: Path, **kw) -> Client:
    kw.setdefault("retry", FAST)
    return Client(
        "http://sdk.test", "t", state_dir=tmp_path, transport=httpx.MockTransport(handler), **kw
    )


# --- the retry policy --------------------------------------------------------------------------
def test_backoff_is_full_jitter_under_an_exponential_ceiling() -> None:
    policy = RetryPolicy(attempts=6, base_delay=0.5, max_delay=3)
    for failures, ceiling in [(1, 0.5), (2, 1.0), (3, 2.0), (4, 3.0), (5, 3.0)]:
        delays = [policy.backoff(failures) for _ in range(200)]
        assert all(d is not None and 0 <= d <= ceiling for d in delays)
        assert max(d for d in delays if d is not None) > ceiling / 2  # jitter spans the range
    assert policy.backoff(6) is None  # six tries made: give up
    assert policy.backoff(1, retry_after=2.5) == 2.5  # at least what the server asked
    assert policy.backoff(1, retry_after=10) is None  # more patience than the policy has
    with pytest.raises(ValueError, match="attempts"):
        RetryPolicy(attempts=0)


def test_retry_after_in_seconds_or_as_a_date() -> None:
    now = datetime(2026, 12, 2, 8, 0, tzinfo=UTC)
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(format_datetime(now + timedelta(seconds=30), usegmt=True), now) == 30
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None


def test_503_then_success_honours_retry_after(tmp_path: Path, monkeypatch) -> None:
    slept: list[float] = []
    monkeypatch.setattr("mindproject.client.sync.time.sleep", slept.append)
    answers = iter(
        [
            httpx.Response(503, headers={"Retry-After": "1"}, json={"error": {}}),
            httpx.Response(429, headers={"Retry-After": "0"}, json={"error": {}}),
            httpx.Response(200, json={"uploads": [version_json(b"x")], "next_cursor": None}),
        ]
    )
    client = mock_client(lambda request: next(answers), tmp_path)
    assert client.latest("d").size == 1
    assert slept[0] >= 1 and len(slept) == 2


def test_gives_up_with_the_last_api_error(tmp_path: Path) -> None:
    calls: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        error = {"code": "storage_unavailable", "message": "down", "request_id": "r1"}
        return httpx.Response(503, json={"error": error})

    with pytest.raises(ApiError) as raised:
        mock_client(handler, tmp_path).latest("d")
    assert len(calls) == FAST.attempts
    error = raised.value
    assert (error.status, error.code, error.message, error.request_id) == (
        503,
        "storage_unavailable",
        "down",
        "r1",
    )


def test_client_errors_are_not_retried(tmp_path: Path) -> None:
    calls: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(404, json={"error": {"code": "device_not_found", "message": "m"}})

    with pytest.raises(ApiError):
        mock_client(handler, tmp_path).latest("d")
    assert len(calls) == 1


def test_connection_errors_become_network_error_after_the_retries(tmp_path: Path) -> None:
    calls: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        raise httpx.ConnectError("connection refused", request=request)

    with pytest.raises(NetworkError, match="gave up after 4 tries") as raised:
        mock_client(handler, tmp_path).devices_page()
    assert isinstance(raised.value, ClientError) and len(calls) == 4


def test_a_retried_upload_sends_the_same_idempotency_key(tmp_path: Path) -> None:
    """The first answer is lost (a read timeout after the server stored it): the retry carries
    the same key, so the server answers the first version, replayed, instead of a second one."""
    data = b"reading 42"
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        assert request.read() == data
        if len(seen) == 1:
            raise httpx.ReadTimeout("lost answer", request=request)
        return httpx.Response(200, json=version_json(data, replayed=True))

    stored = mock_client(handler, tmp_path).upload("d", io.BytesIO(data))
    assert stored.replayed
    keys = {request.headers["idempotency-key"] for request in seen}
    assert len(seen) == 2 and len(keys) == 1
    digest = seen[0].headers["content-digest"]
    assert digest.startswith("sha-256=:") and seen[0].headers["content-length"] == str(len(data))


def test_a_stored_checksum_that_differs_is_a_verification_error(tmp_path: Path) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=version_json(b"something else"))

    with pytest.raises(VerificationError):
        mock_client(handler, tmp_path).upload("d", io.BytesIO(b"reading"))


def test_html_where_json_was_promised_is_a_response_error(tmp_path: Path) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, html="<html><body>Welcome to nginx</body></html>")

    with pytest.raises(ResponseError, match="expected JSON"):
        mock_client(handler, tmp_path).devices_page()


# --- a hostile server on a real socket ---------------------------------------------------------
class Hostile(BaseHTTPRequestHandler):
    """Answers the history with a record of `RECORD`, and the download as `behaviour` says."""

    behaviour = "ok"
    body = b"0123456789" * 1000
    record_sha = hashlib.sha256(body).hexdigest()

    def log_message(self, *args: object) -> None:
        pass

    def _send(self, status: int, body: bytes, content_type: str, length: int | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body) if length is None else length))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        if self.path.startswith("/api/devices/d/uploads?"):
            record = version_json(self.body) | {"sha256": self.record_sha}
            page = {"device_id": "d", "uploads": [record], "next_cursor": None}
            self._send(200, json.dumps(page).encode(), "application/json")
        elif self.behaviour == "html":
            self._send(502, b"<html><h1>502 Bad Gateway</h1></html>", "text/html")
        elif self.behaviour == "truncated":
            self._send(200, self.body[:100], "application/octet-stream", length=len(self.body))
            self.close_connection = True
        else:
            self._send(200, self.body, "application/octet-stream")


@pytest.fixture
def hostile() -> Iterator[tuple[str, type[Hostile]]]:
    handler = type("HostileHandler", (Hostile,), {})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", handler
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_hostile_html_error_page_is_a_clean_api_error(hostile, tmp_path: Path) -> None:
    url, handler = hostile
    handler.behaviour = "html"
    client = Client(url, retry=RetryPolicy(attempts=2, base_delay=0), state_dir=tmp_path)
    with pytest.raises(ApiError) as raised:
        client.download("d", tmp_path / "out")
    assert (raised.value.status, raised.value.code) == (502, "http_502")
    assert "Bad Gateway" in raised.value.message
    assert not (tmp_path / "out").exists()


def test_hostile_truncated_body_is_retried_then_a_network_error(hostile, tmp_path: Path) -> None:
    url, handler = hostile
    handler.behaviour = "truncated"
    client = Client(url, retry=RetryPolicy(attempts=3, base_delay=0), state_dir=tmp_path)
    with pytest.raises(NetworkError, match="stopped at byte"):
        client.download("d", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_hostile_wrong_sha256_is_a_verification_error(hostile, tmp_path: Path) -> None:
    url, handler = hostile
    handler.record_sha = "0" * 64
    client = Client(url, state_dir=tmp_path)
    with pytest.raises(VerificationError):
        client.download("d", tmp_path / "out")
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out.*"))
    with pytest.raises(VerificationError):
        b"".join(client.iter_bytes("d"))
    handler.record_sha = Hostile.record_sha
    assert b"".join(client.iter_bytes("d")) == Hostile.body


# --- no server modules -------------------------------------------------------------------------
def test_the_client_imports_no_server_module() -> None:
    script = (
        "import sys, mindproject.client\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
        "{'starlette', 'uvicorn', 'obstore', 'uvloop', 'pydantic', 'pydantic_settings', 'jwt'} "
        "or m in {'mindproject.app', 'mindproject.server', 'mindproject.errors'} "
        "or m.startswith(('mindproject.api', 'mindproject.storage')))\n"
        "print(bad)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.strip() == "[]"


def test_a_body_that_does_not_decode_is_a_response_error(tmp_path: Path) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"Content-Encoding": "gzip"}, content=b"not gzip")

    with pytest.raises(ResponseError, match="unreadable"):
        mock_client(handler, tmp_path).devices_page()


@pytest.mark.anyio
async def test_async_client_retries_and_resumes_a_download_with_range(tmp_path: Path) -> None:
    """The async driver runs the same core: a 503, then a body cut after 4 bytes, then the rest
    asked for with Range."""
    data = b"0123456789"
    ranges: list[str | None] = []
    answers = {"history": 0}

    async def cut_body() -> AsyncIterator[bytes]:
        yield data[:4]
        raise httpx.ReadError("connection reset")

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/uploads"):
            answers["history"] += 1
            if answers["history"] == 1:
                return httpx.Response(503)
            return httpx.Response(200, json={"uploads": [version_json(data)], "next_cursor": None})
        ranges.append(request.headers.get("range"))
        headers = {"X-Content-SHA256": hashlib.sha256(data).hexdigest()}
        if len(ranges) == 1:
            return httpx.Response(200, headers=headers, content=cut_body())
        headers["Content-Range"] = f"bytes 4-9/{len(data)}"
        return httpx.Response(206, headers=headers, content=data[4:])

    transport = httpx.MockTransport(handler)
    async with AsyncClient(
        "http://sdk.test", "t", retry=FAST, state_dir=tmp_path, transport=transport
    ) as client:
        sink = io.BytesIO()
        stored = await client.download("d", sink)
    assert sink.getvalue() == data and stored.size == len(data)
    assert ranges == [None, "bytes=4-"]


def test_a_url_without_scheme_is_refused_at_once(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="http://"):
        Client("127.0.0.1:5000", state_dir=tmp_path)
