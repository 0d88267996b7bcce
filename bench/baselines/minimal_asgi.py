"""The ASGI ceiling: the least an HTTP server under uvicorn can do per request.

Reads the request body to the end and discards it, then answers a small JSON body (a fixed
1 KiB payload for GET of a device, base64-encoded unless ``encoding=raw``). No framework, no
parsing, no storage: what it costs is the floor that uvicorn, httptools and the event loop set.
"""

from __future__ import annotations

import base64
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

RAW = bytes(range(256)) * 4
B64 = base64.b64encode(RAW)
OK = b'{"message":"ok"}'


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    body, ctype = OK, b"application/json"
    path: str = scope["path"]
    if scope["method"] == "GET" and path.startswith("/api/devices/") and path != "/api/devices/":
        body = RAW if b"encoding=raw" in scope["query_string"] else B64
        ctype = b"application/octet-stream"
    headers = [(b"content-type", ctype), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})
