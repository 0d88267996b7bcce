"""HeaderLimit: counts the header block itself unless `mindproject serve`'s protocol did."""

from __future__ import annotations

import json
from typing import Any

import pytest

from mindproject.middleware.header_limit import CHECKED_ON_THE_WIRE, HeaderLimit

pytestmark = pytest.mark.anyio


async def call(scope: dict[str, Any]) -> list[dict[str, Any]]:
    reached: list[dict[str, Any]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        reached.append({"type": "app"})

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Any) -> None:
        reached.append(message)

    await HeaderLimit(app, max_header_bytes=1024)(scope, receive, send)
    return reached


def scope_with(header_bytes: int, **extra: Any) -> dict[str, Any]:
    return {
        "type": "http",
        "method": "GET",
        "path": "/healthz",
        "raw_path": b"/healthz",
        "query_string": b"",
        "headers": [(b"x-big", b"a" * header_bytes)],
        **extra,
    }


async def test_an_oversized_header_block_gets_431_in_the_json_shape() -> None:
    start, body = await call(scope_with(2000))
    assert start["status"] == 431
    assert json.loads(body["body"])["error"]["code"] == "headers_too_large"


async def test_a_block_the_server_counted_already_is_not_counted_again() -> None:
    assert await call(scope_with(2000, **{CHECKED_ON_THE_WIRE: True})) == [{"type": "app"}]
    assert await call(scope_with(100)) == [{"type": "app"}]
