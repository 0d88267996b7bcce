"""431 for a request whose header block exceeds `max_header_bytes`.

`mindproject serve` enforces this limit on the wire while headers arrive (http_protocol.py), so
this only acts when the app runs under another server; both count the same bytes.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from mindproject.error_response import render
from mindproject.errors import HeadersTooLarge

# Set in the scope by `mindproject serve`'s protocol once it has counted the same bytes.
CHECKED_ON_THE_WIRE = "mindproject.header_block_checked"


def header_block_bytes(method: bytes, target: bytes, headers: list[tuple[bytes, bytes]]) -> int:
    """A request's header block on the wire, separators counted at their minimum:
    `METHOD target HTTP/1.1` CRLF, `name:value` CRLF per field, CRLF."""
    return len(method) + len(target) + 12 + sum(len(n) + len(v) + 3 for n, v in headers) + 2


class HeaderLimit:
    def __init__(self, app: ASGIApp, max_header_bytes: int) -> None:
        self.app = app
        self.max_header_bytes = max_header_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not scope.get(CHECKED_ON_THE_WIRE):
            target = scope.get("raw_path", b"") + b"?" + scope.get("query_string", b"")
            size = header_block_bytes(scope["method"].encode(), target, scope["headers"])
            if size > self.max_header_bytes:
                too_large = HeadersTooLarge(
                    f"request headers exceed the limit of {self.max_header_bytes} bytes"
                )
                request_id = str(scope.get("state", {}).get("request_id", ""))
                await render(too_large, request_id)(scope, receive, send)
                return
        await self.app(scope, receive, send)
