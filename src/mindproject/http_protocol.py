"""uvicorn's httptools protocol, with a bound on everything a client can make a connection hold.

httptools gathers each header (and trailer) line whole before it reports it, and uvicorn keeps
reading, and throwing away, a request body after the app has answered, restarting its keep-alive
timer with every byte. Left so, one client without a token could grow memory without limit or
hold a connection forever. Here, per connection (docs/security.md, "Attacks and their bounds"):

- The header block is counted as it arrives, and again from its parsed parts when it ends; past
  `max_header_bytes` the answer is 431 and the connection closes.
- Bytes inside a body that are not body data (trailers, chunk framing) are counted since the last
  body byte, against the same budget; past it the connection closes (431 if nothing was answered
  yet). Trailer fields are dropped unread: the API uses none.
- A transfer coding other than chunked is answered 501; malformed framing 400, in the API's JSON
  error shape (uvicorn's own answer is plain text).
- An answer sent before its request body was read whole (401, 413, 408, ...) says
  `Connection: close`; what still arrives is discarded unparsed for at most LINGER_SECONDS, time
  for the client to read the answer (closing at once could reset the connection under it), then
  the connection closes, however bytes trickle in.
- Near the process's file descriptor limit (one per connection) a warning is logged.

Limits come from the Settings the app's lifespan hands over in its state.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import time
from http import HTTPStatus
from typing import Any, ClassVar, cast

import httptools
from uvicorn._types import ASGISendEvent
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

from mindproject.config import Settings, load_settings
from mindproject.error_response import render
from mindproject.errors import (
    HeadersTooLarge,
    MalformedRequest,
    MindProjectError,
    UnsupportedTransferCoding,
)
from mindproject.middleware.header_limit import CHECKED_ON_THE_WIRE, header_block_bytes
from mindproject.observability import new_request_id

log = logging.getLogger("mindproject.connections")

# Long enough for a client to read an early answer; never longer than the body timeout.
LINGER_SECONDS = 2.0
# A warning when connections hold this share of the descriptor limit, at most once a minute.
FD_WARNING_SHARE = 0.8
FD_WARNING_INTERVAL_SECONDS = 60.0


class _Refused(Exception):
    """Raised in a parser callback to stop parsing: the connection was answered and closed."""


class BoundedProtocol(HttpToolsProtocol):
    _last_fd_warning: ClassVar[float] = float("-inf")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        settings = self.app_state.get("settings")
        if not isinstance(settings, Settings):  # the lifespan did not run: read them here
            settings = load_settings()
        self._max_header_bytes = settings.max_header_bytes
        self._linger_seconds = min(LINGER_SECONDS, settings.body_timeout_seconds)
        self._in_headers = False
        self._in_body = False
        self._header_bytes = 0
        self._body_bytes = 0
        self._stray_bytes = 0
        self._lingering = False

    # connection ----------------------------------------------------------------------------
    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        self._warn_near_fd_limit()

    def data_received(self, data: bytes) -> None:
        if self._lingering:
            return  # answered already; the linger timer closes the connection
        self._unset_keepalive_if_required()
        started_in_headers = self._in_headers
        body_before = self._body_bytes
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            if isinstance(exc.__context__, _Refused):
                return
            self._answer_and_close(MalformedRequest("malformed HTTP request"))
            return
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return
        except httptools.HttpParserError as exc:
            self._answer_and_close(MalformedRequest(f"malformed HTTP request: {exc}"))
            return
        if self.transport.is_closing():
            return
        if started_in_headers and self._in_headers:
            self._header_bytes += len(data)
            if self._header_bytes > self._max_header_bytes:
                self._answer_and_close(self._headers_too_large("headers"))
        elif self._in_body:
            if self._body_bytes > body_before:
                self._stray_bytes = 0
            else:  # a read without body data: chunk framing or trailers
                self._stray_bytes += len(data)
                if self._stray_bytes > self._max_header_bytes:
                    self._answer_and_close(self._headers_too_large("trailers"))

    # parser callbacks ------------------------------------------------------------------------
    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_headers = True
        self._in_body = False
        self._header_bytes = 0
        self._stray_bytes = 0

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._in_body:
            return  # a trailer field: dropped, its bytes are bounded in data_received
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_headers = False
        size = header_block_bytes(self.parser.get_method(), self.url, self.headers)
        if max(size, self._header_bytes) > self._max_header_bytes:
            self._refuse(self._headers_too_large("headers"))
        for name, value in self.headers:
            if name == b"transfer-encoding" and any(
                coding.strip().lower() not in (b"chunked", b"") for coding in value.split(b",")
            ):
                self._refuse(
                    UnsupportedTransferCoding(
                        "the only transfer coding accepted is chunked; send other codings as "
                        "Content-Encoding of the file, or not at all"
                    )
                )
        self._in_body = True
        cast(dict[str, Any], self.scope)[CHECKED_ON_THE_WIRE] = True  # the app skips its count
        super().on_headers_complete()
        self._close_early_answers(self.cycle)

    def on_body(self, body: bytes) -> None:
        self._body_bytes += len(body)
        super().on_body(body)

    def on_message_complete(self) -> None:
        self._in_body = False
        super().on_message_complete()

    def on_response_complete(self) -> None:
        if self._lingering:
            self.server_state.total_requests += 1
            return
        super().on_response_complete()

    # early answers ---------------------------------------------------------------------------
    def _close_early_answers(self, cycle: RequestResponseCycle) -> None:
        """A response that starts before its request body is whole says `Connection: close`
        (uvicorn adds it when keep_alive is off), and the close that follows lingers."""
        cycle.transport = _LingeringClose(self.transport, self, cycle)  # type: ignore[assignment]
        send = cycle.send

        async def send_closing_early(message: ASGISendEvent) -> None:
            if message["type"] == "http.response.start" and cycle.more_body:
                cycle.keep_alive = False
            await send(message)

        cycle.send = send_closing_early  # type: ignore[method-assign]

    def linger_then_close(self) -> None:
        """Discard what still arrives, unparsed, for a moment, then close."""
        if self._lingering or self.transport.is_closing():
            return
        self._lingering = True
        self._unset_keepalive_if_required()
        self.flow.resume_reading()
        self.timeout_keep_alive_task = self.loop.call_later(self._linger_seconds, self._close)

    # answers ---------------------------------------------------------------------------------
    def _headers_too_large(self, part: str) -> HeadersTooLarge:
        return HeadersTooLarge(f"request {part} exceed the limit of {self._max_header_bytes} bytes")

    def _refuse(self, error: MindProjectError) -> None:
        self._answer_and_close(error)
        raise _Refused

    def _answer_and_close(self, error: MindProjectError) -> None:
        """Answer with the JSON error unless a response is under way, then close."""
        cycle = self.cycle
        if cycle is None or not cycle.response_started or cycle.response_complete:
            request_id = new_request_id()
            response = render(error, request_id)
            head = [
                f"HTTP/1.1 {error.status} {HTTPStatus(error.status).phrase}\r\n".encode(),
                b"content-type: application/json\r\n",
                b"content-length: %d\r\n" % len(response.body),
                b"x-request-id: " + request_id.encode() + b"\r\n",
                b"connection: close\r\n\r\n",
            ]
            self.transport.write(b"".join(head) + bytes(response.body))
            log.info(
                "request refused on the wire",
                extra={"status": error.status, "code": error.code, "request_id": request_id},
            )
        if cycle is not None and not cycle.response_complete:
            # The app may still be reading the body: it sees a disconnect and stores nothing.
            cycle.disconnected = True
            cycle.message_event.set()
        self._close()

    def _close(self) -> None:
        if not self.transport.is_closing():
            self.transport.close()

    def _warn_near_fd_limit(self) -> None:
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        held = len(self.connections)
        if soft == resource.RLIM_INFINITY or held < soft * FD_WARNING_SHARE:
            return
        now = time.monotonic()
        if now - BoundedProtocol._last_fd_warning < FD_WARNING_INTERVAL_SECONDS:
            return
        BoundedProtocol._last_fd_warning = now
        log.warning(
            "open connections are near the file descriptor limit: at the limit new connections "
            "fail; add replicas, or raise the limit (ulimit -n)",
            extra={"connections": held, "fd_limit": soft},
        )


class _LingeringClose:
    """The transport as one request's cycle sees it: its close() lingers while that request's
    body may still be arriving, and closes at once otherwise."""

    def __init__(
        self, transport: asyncio.Transport, protocol: BoundedProtocol, cycle: RequestResponseCycle
    ) -> None:
        self._transport = transport
        self._protocol = protocol
        self._cycle = cycle

    def write(self, data: bytes) -> None:
        self._transport.write(data)

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def close(self) -> None:
        if self._cycle.more_body:
            self._protocol.linger_then_close()
        else:
            self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)
