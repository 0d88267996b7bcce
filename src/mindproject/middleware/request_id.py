"""The request id that ties a response to its log lines.

Taken from a sane incoming `X-Request-ID` or made here; put in the scope's state (the error
renderer reads it), in the context of every log line (observability.current_request_id) and in
the `X-Request-ID` response header.
"""

from __future__ import annotations

import re

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mindproject.observability import current_request_id, new_request_id

_INCOMING_ID = re.compile(rb"[A-Za-z0-9._\-]{8,64}")


def request_id_of(scope: Scope) -> str:
    for name, value in scope["headers"]:
        if name == b"x-request-id" and _INCOMING_ID.fullmatch(value):
            return bytes(value).decode()
    return new_request_id()


class RequestId:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = request_id_of(scope)
        scope.setdefault("state", {})["request_id"] = request_id
        current_request_id.set(request_id)
        header = (b"x-request-id", request_id.encode())

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), header]
            await send(message)

        await self.app(scope, receive, send_with_id)
