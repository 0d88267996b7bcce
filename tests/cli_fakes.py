"""A hostile or slow stand-in for the server, for the CLI's error paths and its progress bar:
answers the two calls a download makes (the history's first page, the raw bytes) the way it is
told to, on 127.0.0.1."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

VERSION = "8203800125195228-ce21db11"


class FakeServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, mode: str, data: bytes, piece: int, pause: float) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.mode = mode
        self.data = data
        self.piece = piece
        self.pause = pause

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # a client that hangs up mid-body is what some tests do

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    server: FakeServer

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _send(self, status: int, body: bytes, content_type: str, **headers: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers.items():
            self.send_header(name.replace("_", "-"), value)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        fake = self.server
        if fake.mode == "html":
            page = b"<html><body><h1>502 Bad Gateway</h1>nginx</body></html>"
            self._send(502, page, "text/html")
            return
        data = fake.data
        real = hashlib.sha256(data).hexdigest()
        said = hashlib.sha256(b"other").hexdigest() if fake.mode == "wrong-sha" else real
        if "/uploads?" in self.path or self.path.endswith("/uploads"):
            record = {
                "device_id": "d",
                "version": VERSION,
                "size": len(data),
                "sha256": said,
                "uploaded_at": "2026-12-02T08:00:00Z",
                "filename": "f.bin",
                "content_type": "application/octet-stream",
            }
            body = json.dumps({"device_id": "d", "uploads": [record], "next_cursor": None})
            self._send(200, body.encode(), "application/json")
            return
        # The bytes: no X-Content-SHA256, so only the digest of what arrives can tell.
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        sent = data[: len(data) // 2] if fake.mode == "truncated" else data
        for start in range(0, len(sent), fake.piece):
            self.wfile.write(sent[start : start + fake.piece])
            self.wfile.flush()
            if fake.pause:
                time.sleep(fake.pause)
        if fake.mode == "truncated":
            self.close_connection = True


@contextmanager
def fake_server(
    mode: str, data: bytes = b"telemetry" * 1000, piece: int = 65536, pause: float = 0.0
) -> Iterator[FakeServer]:
    """mode: "html" (every answer a proxy's HTML 502), "truncated" (the body stops halfway),
    "wrong-sha" (the record's sha256 is not the bytes'), "ok" (honest; `pause` between pieces
    makes it slow)."""
    server = FakeServer(mode, data, piece, pause)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
