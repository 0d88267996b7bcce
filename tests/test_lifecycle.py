"""SIGTERM, as ECS sends on every deploy: readiness turns red first while requests are still
served, in-flight uploads finish, then the process exits cleanly."""

from __future__ import annotations

import signal
import socket
from pathlib import Path

import httpx
import pytest

from mindproject.storage.filesystem import INLINE_MAX
from tests.helpers import run_server, wait_for

pytestmark = pytest.mark.server


def test_sigterm_turns_readiness_red_then_drains_then_exits(tmp_path: Path) -> None:
    env = {"MINDPROJECT_SHUTDOWN_DRAIN_SECONDS": "3", "MINDPROJECT_SHUTDOWN_GRACE_SECONDS": "20"}
    data = tmp_path / "data"
    # More than the file backend keeps in memory: a temp file shows the upload is in flight.
    first_half = b"h" * (INLINE_MAX + 1)
    with run_server(tmp_path, f"file://{data}", env=env) as server:
        host, port = server.url.removeprefix("http://").split(":")
        auth = server.auth_headers["Authorization"].encode()
        with socket.create_connection((host, int(port)), timeout=30) as slow:
            slow.sendall(
                b"PUT /api/devices/slow HTTP/1.1\r\nHost: x\r\nAuthorization: " + auth + b"\r\n"
                b"Content-Type: application/octet-stream\r\n"
                + f"Content-Length: {len(first_half) + 5}\r\n\r\n".encode()
                + first_half
            )
            wait_for(lambda: list((data / "tmp").iterdir()), "the upload to be in flight")
            server.process.send_signal(signal.SIGTERM)
            # Still accepting during the drain window, but not ready.
            with httpx.Client(base_url=server.url, timeout=5) as client:
                wait_for(lambda: client.get("/readyz").status_code != 200, "readiness to turn red")
                ready = client.get("/readyz")
                assert ready.status_code == 503
                assert ready.json()["error"]["code"] == "storage_unavailable"
                assert "shutting down" in ready.json()["error"]["message"]
                assert client.get("/healthz").status_code == 200
            slow.sendall(b"done!")
            reply = slow.recv(65536)
            assert reply.startswith(b"HTTP/1.1 200"), reply
        # uvicorn re-raises the signal once its graceful shutdown is complete, so the exit status
        # is "terminated by SIGTERM" (143 in a shell; ECS treats it as a clean stop).
        assert server.process.wait(timeout=60) in (0, -signal.SIGTERM)
        assert "Application shutdown complete" in server.log()
    # The acknowledged upload is there after the restart.
    with run_server(tmp_path, f"file://{tmp_path}/data") as again, again.client() as client:
        stored = client.get("/api/devices/slow", params={"encoding": "raw"})
        assert stored.content == first_half + b"done!"
