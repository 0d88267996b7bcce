"""The small HTTP client the scenarios use besides wrk and curl: loopback only, one request per
connection, so no client-side pooling blurs what the server does."""

from __future__ import annotations

import http.client
import socket


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http_call(
    port: int,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 30,
) -> tuple[int, bytes]:
    status, _, answer = http_exchange(port, method, path, body, headers, timeout)
    return status, answer


def http_exchange(
    port: int,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 30,
) -> tuple[int, dict[str, str], bytes]:
    """One request; the status, the response headers (lower-case names) and the body."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        answer = resp.read()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, answer
    finally:
        conn.close()


def multipart(payload: bytes, boundary: str = "mindprojectbench") -> tuple[bytes, str]:
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
        f'filename="telemetry.bin"\r\nContent-Type: application/octet-stream\r\n\r\n'
    ).encode()
    return head + payload + f"\r\n--{boundary}--\r\n".encode(), (
        f"multipart/form-data; boundary={boundary}"
    )
