"""uvicorn's httptools protocol with the header size limit applied while headers arrive.

httptools collects a request's headers whole before the app sees them, so a limit checked in
the app (RequestContext) comes too late for a header that never ends: it would sit in memory.
Here the bytes of an unfinished header block are counted as they arrive, and past
MINDPROJECT_MAX_HEADER_BYTES (plus at most one read) the connection gets a 431 and is closed.
"""

from __future__ import annotations

import os
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from mindproject.api.errors import render
from mindproject.errors import HeadersTooLarge
from mindproject.observability import new_request_id

DEFAULT_MAX_HEADER_BYTES = 16384


class BoundedHeadersProtocol(HttpToolsProtocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Read here, not at import: `serve` exports the settings before workers build this.
        self._limit = int(os.environ.get("MINDPROJECT_MAX_HEADER_BYTES", DEFAULT_MAX_HEADER_BYTES))
        self._in_headers = True
        self._header_bytes = 0

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_headers = True
        self._header_bytes = 0

    def on_headers_complete(self) -> None:
        self._in_headers = False
        super().on_headers_complete()

    def data_received(self, data: bytes) -> None:
        if self._in_headers:
            self._header_bytes += len(data)
        super().data_received(data)
        if (
            self._in_headers
            and self._header_bytes > self._limit
            and not self.transport.is_closing()
        ):
            self._refuse()

    def _refuse(self) -> None:
        request_id = new_request_id()
        response = render(
            HeadersTooLarge(f"request headers exceed the limit of {self._limit} bytes"), request_id
        )
        head = (
            b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
            b"content-type: application/json\r\n"
            b"content-length: " + str(len(response.body)).encode() + b"\r\n"
            b"x-request-id: " + request_id.encode() + b"\r\n"
            b"connection: close\r\n\r\n"
        )
        self.transport.write(head + bytes(response.body))
        self.transport.close()
