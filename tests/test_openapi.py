"""The OpenAPI description covers every route, and /api/ renders it without the internet."""

from __future__ import annotations

import re

from starlette.routing import Route

from mindproject.api import devices, health, metrics, revocations, uploads
from mindproject.openapi import openapi_document
from tests.helpers import AppServer


def test_every_api_route_is_described() -> None:
    paths = openapi_document()["paths"]
    for route in [
        *devices.routes,
        *uploads.routes,
        *health.routes,
        *revocations.routes,
        *metrics.routes,
    ]:
        assert isinstance(route, Route)
        assert route.path in paths, route.path
        for method in route.methods or ():
            if method != "HEAD":
                assert method.lower() in paths[route.path], (method, route.path)


def test_docs_page_and_assets_are_served_locally(server: AppServer) -> None:
    with server.client() as client:
        page = client.get("/api/")
        assert page.status_code == 200
        sources = re.findall(r'(?:src|href)="([^"]+)"', page.text)
        assert sources and all(src.startswith("/") for src in sources), sources
        for src in sources:
            assert client.get(src).status_code == 200, src
        spec = client.get("/api/openapi.json").json()
        assert spec["openapi"].startswith("3.")
