"""A request for a path that exists only with (or without) a trailing slash is redirected to it.

Starlette's own redirect builds an absolute `Location` from the client's `Host` header, so a
forged Host would send the client elsewhere; this one is relative (the same path, a slash added
or removed, the query kept). 307 keeps the method and body. Paths starting with `//` are never
redirected: as a Location they would name another host.
"""

from __future__ import annotations

from urllib.parse import quote

from starlette.responses import RedirectResponse
from starlette.routing import Match, Router
from starlette.types import Receive, Scope, Send


class SlashRedirect:
    """The router's `default` (no route matched): redirect when the other spelling matches,
    else the router's 404."""

    def __init__(self, router: Router) -> None:
        self.router = router

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope["path"]
        if scope["type"] == "http" and path != "/" and not path.startswith("//"):
            other = path.rstrip("/") if path.endswith("/") else path + "/"
            other_scope = {**scope, "path": other}
            if any(route.matches(other_scope)[0] is not Match.NONE for route in self.router.routes):
                query = scope.get("query_string", b"").decode("latin-1")
                location = quote(scope.get("root_path", "") + other) + (
                    f"?{query}" if query else ""
                )
                await RedirectResponse(location, status_code=307)(scope, receive, send)
                return
        await self.router.not_found(scope, receive, send)
