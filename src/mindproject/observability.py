"""Logs as one JSON object per line, and the request id that ties a response to its log lines.

The request id comes from a sane incoming `X-Request-ID` or is made here; it is returned in the
`X-Request-ID` response header, put in every error body, and logged with the access line.
"""

from __future__ import annotations

import contextvars
import itertools
import json
import logging
import re
import secrets
import sys
import time
from datetime import UTC, datetime
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mindproject.api.errors import render
from mindproject.errors import HeadersTooLarge
from mindproject.metrics import observe_request

access_log = logging.getLogger("mindproject.access")
_INCOMING_ID = re.compile(rb"[A-Za-z0-9._\-]{8,64}")
_STANDARD_ATTRS = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message"}


# The id of the request being handled, so that every log line it causes carries it.
current_request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "request_id", default=None
)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, tz=UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if (request_id := current_request_id.get()) is not None:
            entry["request_id"] = request_id
        for key, value in record.__dict__.items():
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    logging.getLogger("uvicorn.access").disabled = True  # our access line replaces it


class RequestContext:
    """ASGI middleware: request id, security headers, the header size limit (431), request
    metrics, and one access log line per request."""

    def __init__(
        self, app: ASGIApp, extra_headers: list[tuple[bytes, bytes]], max_header_bytes: int
    ) -> None:
        self.app = app
        self.extra_headers = extra_headers
        self.max_header_bytes = max_header_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _request_id(scope)
        scope.setdefault("state", {})["request_id"] = request_id
        current_request_id.set(request_id)
        started = time.perf_counter()
        status = 0
        sent = 0
        received = 0
        header = [(b"x-request-id", request_id.encode()), *self.extra_headers]

        async def send_with_id(message: Message) -> None:
            nonlocal status, sent
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), *header]
            elif message["type"] == "http.response.body":
                sent += len(message.get("body", b""))
            await send(message)

        async def receive_counted() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            return message

        try:
            header_bytes = sum(len(name) + len(value) for name, value in scope["headers"])
            if header_bytes > self.max_header_bytes:
                too_large = HeadersTooLarge(
                    f"request headers total {header_bytes} bytes; the limit is "
                    f"{self.max_header_bytes}"
                )
                await render(too_large, request_id)(scope, receive, send_with_id)
                return
            await self.app(scope, receive_counted, send_with_id)
        finally:
            duration = time.perf_counter() - started
            route = scope.get("route")
            template = getattr(route, "path", "unmatched")
            observe_request(template, scope["method"], status, duration, received, sent)
            if access_log.isEnabledFor(logging.INFO):
                access_log.info(
                    "request",
                    extra={
                        "request_id": request_id,
                        "method": scope["method"],
                        "path": scope["path"],
                        "status": status,
                        "duration_ms": round(duration * 1000, 3),
                        "bytes_sent": sent,
                        "client": (scope.get("client") or ("", 0))[0],
                    },
                )


# Request ids only need to be unique: a random per-process prefix and a counter, instead of a
# getrandom() call per request.
_ID_PREFIX = secrets.token_hex(6)
_id_counter = itertools.count()


def new_request_id() -> str:
    return f"{_ID_PREFIX}{next(_id_counter):010x}"


def _request_id(scope: Scope) -> str:
    for name, value in scope["headers"]:
        if name == b"x-request-id" and _INCOMING_ID.fullmatch(value):
            return bytes(value).decode()
    return new_request_id()
