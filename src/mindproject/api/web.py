"""The operators' fleet page at `/`: static files shipped inside the package (mindproject/web),
no CDN, no build step. It talks to the API like any client (docs/api.md); its stricter
Content-Security-Policy is set by middleware/security_headers.py."""

from __future__ import annotations

from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Route

WEB = Path(__file__).resolve().parent.parent / "web"
ASSETS = {"app.js": "text/javascript", "app.css": "text/css"}


async def page(request: Request) -> Response:
    # Not cached: a new release's page must pick up its own scripts.
    return FileResponse(WEB / "index.html", headers={"Cache-Control": "no-cache"})


async def asset(request: Request) -> Response:
    name = request.url.path.rpartition("/")[2]
    return FileResponse(WEB / name, media_type=ASSETS[name], headers={"Cache-Control": "no-cache"})


# The page is not an operation of the API: not in the OpenAPI document.
routes = [
    Route("/", page, methods=["GET"], include_in_schema=False),
    *(Route(f"/web/{name}", asset, methods=["GET"], include_in_schema=False) for name in ASSETS),
]
