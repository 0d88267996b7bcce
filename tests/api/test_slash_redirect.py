"""Trailing-slash redirects are relative: a forged Host header cannot send a client elsewhere."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from mindproject.app import create_app
from mindproject.config import Settings

pytestmark = pytest.mark.anyio


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(Settings(storage="memory://", auth="off"))
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client,
    ):
        yield client


@pytest.mark.parametrize(
    ("path", "location"),
    [
        ("/api/devices", "/api/devices/"),
        ("/api/devices?limit=5", "/api/devices/?limit=5"),
        ("/api", "/api/"),
        ("/healthz/", "/healthz"),
        ("/api/revocations", "/api/revocations/"),
    ],
)
async def test_redirect_location_is_relative(
    http: httpx.AsyncClient, path: str, location: str
) -> None:
    response = await http.get(path, headers={"Host": "evil.example"})
    assert response.status_code == 307
    assert response.headers["location"] == location


@pytest.mark.parametrize("path", ["//evil.example/api/devices", "/nothing-here", "/api/nope/"])
async def test_no_redirect_without_a_route(http: httpx.AsyncClient, path: str) -> None:
    response = await http.get(f"http://127.0.0.1{path}")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
