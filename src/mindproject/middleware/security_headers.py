"""Headers every response carries: no sniffing, no framing, no referrer, a strict CSP.

The fleet page (`/` and its `/web/` files) gets a stricter policy than the API's: scripts,
styles and connections from this origin only, nothing inline, no plugins, no <base>, and no form
posting anywhere. The API's own policy (and Swagger's at /api/) is unchanged.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

_COMMON = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
]
SECURITY_HEADERS = [
    *_COMMON,
    (
        b"content-security-policy",
        b"default-src 'self'; img-src 'self' data:; style-src 'self'; frame-ancestors 'none'",
    ),
]
PAGE_CSP = (
    b"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    b"connect-src 'self'; base-uri 'none'; form-action 'self'; object-src 'none'; "
    b"frame-ancestors 'none'"
)
PAGE_HEADERS = [*_COMMON, (b"content-security-policy", PAGE_CSP)]


def is_page(path: str) -> bool:
    return path == "/" or path.startswith("/web/")


class SecurityHeaders:
    def __init__(
        self,
        app: ASGIApp,
        headers: list[tuple[bytes, bytes]] = SECURITY_HEADERS,
        page_headers: list[tuple[bytes, bytes]] = PAGE_HEADERS,
    ) -> None:
        self.app = app
        self.headers = headers
        self.page_headers = page_headers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = self.page_headers if is_page(scope["path"]) else self.headers

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), *headers]
            await send(message)

        await self.app(scope, receive, send_with_headers)
