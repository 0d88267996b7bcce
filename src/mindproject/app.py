"""Builds the ASGI application: routes, error rendering, request context, storage lifecycle."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.middleware import Middleware

from mindproject.api import devices, docs, health, uploads
from mindproject.api.errors import HANDLERS
from mindproject.config import Settings, load_settings
from mindproject.lifecycle import watch_for_shutdown
from mindproject.observability import RequestContext, configure_logging
from mindproject.storage import Storage, open_storage

log = logging.getLogger("mindproject")

SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (
        b"content-security-policy",
        b"default-src 'self'; img-src 'self' data:; style-src 'self'; frame-ancestors 'none'",
    ),
]


def create_app(settings: Settings | None = None, storage: Storage | None = None) -> Starlette:
    """The app. Without arguments (as uvicorn's factory) settings come from the environment."""
    settings = settings or load_settings()
    configure_logging(settings.log_level)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        app.state.storage = storage or open_storage(settings.storage, fsync=settings.fsync)
        watch_for_shutdown()
        log.info("ready to serve", extra={"storage": settings.storage})
        try:
            yield
        finally:
            await app.state.storage.close()

    app = Starlette(
        routes=[
            *health.routes,
            *docs.routes,
            *devices.routes,
            *uploads.routes,
            *devices.fallback_routes,
        ],
        exception_handlers=HANDLERS,
        middleware=[Middleware(RequestContext, extra_headers=SECURITY_HEADERS)],
        lifespan=lifespan,
    )
    app.state.settings = settings
    return app
