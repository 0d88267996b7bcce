"""Test helpers: free ports, a real `mindproject serve` process, and reading its memory."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent


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


@dataclass
class RunningServer:
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path
    auth_headers: dict[str, str]

    def client(self, token: str | None = "admin", **kwargs: object) -> httpx.Client:
        """An HTTP client for this server, sending an admin token unless told otherwise."""
        headers = dict(self.auth_headers) if token == "admin" else {}
        if token not in (None, "admin"):
            headers = {"Authorization": f"Bearer {token}"}
        kwargs.setdefault("timeout", 60)
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
    port = free_port()
    log_path = tmp_path / f"server-{port}.log"
    environment = {**os.environ, "MINDPROJECT_SECRET_KEY": TEST_SECRET_KEY, **(env or {})}
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
