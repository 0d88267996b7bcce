"""Test helpers: the app in-process, a real `mindproject serve` process, bounded polls, the
error-shape assertion, an S3 inspector, the CLI, byte-stream splitters, a process' memory."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

if TYPE_CHECKING:
    from starlette.applications import Starlette

    from mindproject.storage import Storage
    from mindproject.streams import MeasuredStream

REPO = Path(__file__).resolve().parent.parent


# The test being run (set by tests/conftest.py): starting a server process or the CLI from a
# test not marked `server` fails, so that `-m "not server"` (make test-fast) stays in-process.
CURRENT_TEST: list[pytest.Item] = []


def require_server_marker(what: str) -> None:
    item = CURRENT_TEST[-1] if CURRENT_TEST else None
    if item is not None and item.get_closest_marker("server") is None:
        pytest.fail(f"{item.nodeid} starts {what} but is not marked `server`")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


TEST_SECRET_KEY = "test-signing-key-7f3a9c1e5b2d8f4a6c0e9b7d5f3a1c8e"


def make_token(role: str = "admin", device: str | None = None, ttl: int | None = None) -> str:
    """A token signed with the test key, as `mindproject token create` would make it."""
    from mindproject.auth.keys import KeyRing
    from mindproject.auth.tokens import Role, issue_token

    keys = KeyRing.of(TEST_SECRET_KEY, [], "test")
    return issue_token(keys, Role(role), device_id=device, ttl_seconds=ttl)


def _client_headers(auth_headers: dict[str, str], token: str | None) -> dict[str, str]:
    """token="admin": the server's admin headers; None: anonymous; else that bearer token."""
    if token == "admin":
        return dict(auth_headers)
    if token is None:
        return {}
    return {"Authorization": f"Bearer {token}"}


@dataclass
class RunningServer:
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path
    auth_headers: dict[str, str]

    def client(self, token: str | None = "admin", **kwargs: object) -> httpx.Client:
        """An HTTP client for this server, sending an admin token unless told otherwise."""
        kwargs.setdefault("timeout", 60)
        headers = _client_headers(self.auth_headers, token)
        return httpx.Client(base_url=self.url, headers=headers, **kwargs)  # type: ignore[arg-type]

    @property
    def pid(self) -> int:
        return self.process.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def wait_until_healthy(url: str, process: subprocess.Popen[bytes], log_path: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}:\n{log_path.read_text()}")
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"server did not become healthy:\n{log_path.read_text()}")


@contextmanager
def run_server(
    tmp_path: Path,
    storage: str,
    *,
    env: dict[str, str] | None = None,
    args: tuple[str, ...] = (),
) -> Iterator[RunningServer]:
    """Start `mindproject serve` as a real process on a free loopback port, with token auth on
    (the test signing key) unless `env` says otherwise."""
    require_server_marker("a server process")
    port = free_port()
    log_path = tmp_path / f"server-{port}.log"
    # Only what the test says: no MINDPROJECT_* from the caller's shell, and no 2 s shutdown
    # drain (production's default) unless the test sets one.
    environment = {
        **{k: v for k, v in os.environ.items() if not k.startswith("MINDPROJECT_")},
        "MINDPROJECT_SECRET_KEY": TEST_SECRET_KEY,
        "MINDPROJECT_SHUTDOWN_DRAIN_SECONDS": "0",
        **(env or {}),
    }
    open_mode = environment.get("MINDPROJECT_AUTH") == "off"
    auth_headers = {} if open_mode else {"Authorization": f"Bearer {make_token()}"}
    command = [
        sys.executable,
        "-m",
        "mindproject.cli",
        "serve",
        "--port",
        str(port),
        "--storage",
        storage,
        *args,
    ]
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=environment)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_healthy(url, process, log_path)
        yield RunningServer(url, process, log_path, auth_headers)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def peak_rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM")


# --- bounded polls -----------------------------------------------------------------------------
def wait_for(predicate: Callable[[], object], what: str, timeout: float = 20) -> None:
    """Poll `predicate` until it is true; fail the test if it is not within `timeout` seconds.
    A bound on a wait, never a claim about speed: the usual wait is a few milliseconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g} s waiting for: {what}")
        time.sleep(0.02)


# --- the one JSON error shape ------------------------------------------------------------------
def assert_error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "request_id"}
    assert body["error"]["code"] == code
    assert body["error"]["message"]
    assert body["error"]["request_id"] == response.headers["x-request-id"]


# --- the S3 server, seen from outside the service ----------------------------------------------
def s3_client(env: dict[str, str]) -> Any:
    """boto3, used only to inspect the S3 server from outside the service."""
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=env["AWS_ENDPOINT_URL"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        region_name=env.get("AWS_REGION", "us-east-1"),
        config=Config(s3={"addressing_style": "path"}),
    )


# --- the command line --------------------------------------------------------------------------
def run_cli(
    *args: str,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    check: bool = False,
    clean_env: bool = False,
) -> subprocess.CompletedProcess[str]:
    """`mindproject <args>` as a user runs it; `clean_env` drops every MINDPROJECT_* variable
    of this process first, `env` adds to (or replaces) the environment."""
    require_server_marker("the CLI")
    base = dict(os.environ)
    if clean_env:
        base = {k: v for k, v in base.items() if not k.startswith("MINDPROJECT_")}
    return subprocess.run(
        [sys.executable, "-m", "mindproject.cli", *args],
        env={**base, **(env or {})},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=check,
    )


# --- byte streams split into chunks ------------------------------------------------------------
async def chunks_of(data: bytes, size: int = 64 * 1024) -> AsyncIterator[bytes]:
    """`data` in chunks of `size`, yielding to the loop between them as a socket would."""
    for start in range(0, len(data), size):
        yield data[start : start + size]
        await asyncio.sleep(0)


async def split_at(data: bytes, cuts: list[int]) -> AsyncIterator[bytes]:
    """`data` cut at the given offsets (out-of-range and repeated cuts ignored)."""
    last = 0
    for cut in sorted(set(cuts)):
        if 0 < cut < len(data):
            yield data[last:cut]
            last = cut
    yield data[last:]


def measured(data: bytes, **kwargs: object) -> MeasuredStream:
    """An upload source over `data`, as the API hands it to storage."""
    from mindproject.streams import MeasuredStream

    return MeasuredStream(chunks_of(data), max_bytes=kwargs.pop("max_bytes", 1 << 40), **kwargs)  # type: ignore[arg-type]


# --- the app in-process ------------------------------------------------------------------------
# Route and behaviour tests need no socket: they drive `create_app(settings, storage=...)`
# through httpx's ASGITransport. The app runs on its own event loop (uvloop, as in `serve`) in a
# side thread, with its lifespan entered once, so the tests keep plain sync httpx clients and
# several clients (tokens, threads) share one app, one storage and one loop.
class _LoopTransport(httpx.BaseTransport):
    """A sync httpx transport that hands each request to the app's loop and waits for it."""

    def __init__(self, app: Starlette, loop: asyncio.AbstractEventLoop) -> None:
        # An unhandled error becomes the 500 a server would send, not an exception in the test.
        self._asgi = httpx.ASGITransport(app, raise_app_exceptions=False)
        self._loop = loop

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        # The ASGI transport reads bodies asynchronously: hand it the bytes, headers unchanged
        # (a generator body keeps its Transfer-Encoding: chunked and gets no Content-Length).
        body = request.read()
        forwarded = httpx.Request(
            request.method, request.url, headers=request.headers, stream=httpx.ByteStream(body)
        )
        future = asyncio.run_coroutine_threadsafe(self._send(forwarded), self._loop)
        return future.result(timeout=300)  # a hang guard, not a speed limit

    async def _send(self, request: httpx.Request) -> httpx.Response:
        response = await self._asgi.handle_async_request(request)
        content = b"".join([chunk async for chunk in response.stream])  # type: ignore[union-attr]
        return httpx.Response(
            response.status_code,
            headers=response.headers,
            stream=httpx.ByteStream(content),
            extensions=response.extensions,
        )


@dataclass
class AppServer:
    """The app in this process: `.client(token)` as on a RunningServer, no socket, no subprocess."""

    app: Starlette
    auth_headers: dict[str, str]
    data: Path | None  # the file backend's folder, when there is one
    _loop: asyncio.AbstractEventLoop = field(repr=False)
    url: str = "http://testserver"

    def client(self, token: str | None = "admin", **kwargs: object) -> httpx.Client:
        """An HTTP client for this app, sending an admin token unless told otherwise."""
        kwargs.pop("timeout", None)  # no socket to time out
        headers = _client_headers(self.auth_headers, token)
        transport = _LoopTransport(self.app, self._loop)
        return httpx.Client(base_url=self.url, headers=headers, transport=transport, **kwargs)  # type: ignore[arg-type]


@contextmanager
def app_server(
    storage: str, *, backend: Storage | None = None, **settings: Any
) -> Iterator[AppServer]:
    """`create_app` on `storage` (a URL, or `backend` when given) with token auth on (the test
    key) unless `auth="off"`; other keyword arguments are Settings fields."""
    import uvloop

    from mindproject.app import create_app
    from mindproject.config import Settings

    config = Settings(storage=storage, secret_key=TEST_SECRET_KEY, **settings)
    app = create_app(config, storage=backend)
    loop = uvloop.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="app-loop", daemon=True)
    thread.start()
    lifespan = contextlib.AsyncExitStack()

    def on_loop(coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, loop).result(timeout=300)

    async def start() -> None:
        await lifespan.enter_async_context(app.router.lifespan_context(app))

    try:
        on_loop(start())
        auth_headers = {} if config.auth == "off" else {"Authorization": f"Bearer {make_token()}"}
        data = Path(storage.removeprefix("file://")) if storage.startswith("file://") else None
        yield AppServer(app, auth_headers, data, loop)
    finally:
        try:
            on_loop(lifespan.aclose())
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join()
            loop.close()
