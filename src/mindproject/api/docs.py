"""Interactive API documentation at `/api/` (Swagger UI, assets served by the app itself, no
CDN) and the OpenAPI description at `/api/openapi.json`."""

from __future__ import annotations

from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, Response
from starlette.routing import Route
from swagger_ui_bundle import swagger_ui_path

ASSETS = "/api/docs-assets"

_PAGE = f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>MindProject API</title>
<link rel="stylesheet" href="{ASSETS}/swagger-ui.css">
</head>
<body>
<div id="swagger-ui"></div>
<script src="{ASSETS}/swagger-ui-bundle.js"></script>
<script src="/api/docs.js"></script>
</body>
</html>
"""

# In a file of its own so that a strict Content-Security-Policy (no inline scripts) holds. The
# token pasted into "Authorize" stays in the page's memory: persistAuthorization would keep it in
# localStorage, readable by any script of this origin long after.
_INIT = """window.ui = SwaggerUIBundle({
  url: "/api/openapi.json",
  dom_id: "#swagger-ui",
  deepLinking: true,
  persistAuthorization: false
});
"""


async def page(request: Request) -> Response:
    return HTMLResponse(_PAGE)


async def init_script(request: Request) -> Response:
    return Response(_INIT, media_type="text/javascript")


# Only the files the page loads: the bundle's stock index.html and oauth2-redirect.html (with their
# inline scripts and their own configuration) are not served.
ASSET_FILES = ("swagger-ui.css", "swagger-ui-bundle.js")


async def asset(request: Request) -> Response:
    name = request.url.path.rpartition("/")[2]
    return FileResponse(Path(swagger_ui_path) / name)


async def openapi(request: Request) -> Response:
    # Built once, by create_app, from the app's own routes.
    return JSONResponse(request.app.state.openapi)


# The documentation itself is not an operation of the API: not in the document.
routes = [
    Route("/api/", page, methods=["GET"], include_in_schema=False),
    Route("/api/docs.js", init_script, methods=["GET"], include_in_schema=False),
    Route("/api/openapi.json", openapi, methods=["GET"], include_in_schema=False),
    *(
        Route(f"{ASSETS}/{name}", asset, methods=["GET"], include_in_schema=False)
        for name in ASSET_FILES
    ),
]
