"""Builds the ASGI application: routes, error rendering, request context, storage lifecycle."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.routing import BaseRoute

from mindproject.api import (
    devices,
    direct_uploads,
    docs,
    fleet,
    health,
    metrics,
    resumable,
    revocations,
    uploads,
    web,
)
from mindproject.api.errors import HANDLERS
from mindproject.api.slash_redirect import SlashRedirect
from mindproject.auth.authenticator import Authenticator
from mindproject.auth.keys import load_keys
from mindproject.auth.revocations import Revocations
from mindproject.auth.tokens import TokenVerifier
from mindproject.config import Settings, load_settings
from mindproject.direct_upload_sweeper import sweep_direct_uploads_forever
from mindproject.lifecycle import watch_for_shutdown
from mindproject.limits import RateLimiter, UploadSlots
from mindproject.middleware.access_log import AccessLog
from mindproject.middleware.header_limit import HeaderLimit
from mindproject.middleware.request_id import RequestId
from mindproject.middleware.request_metrics import RequestMetrics
from mindproject.middleware.security_headers import SecurityHeaders
from mindproject.observability import configure_logging
from mindproject.openapi import openapi_document
from mindproject.resumable_sweeper import sweep_forever
from mindproject.storage import Storage, open_storage
from mindproject.storage.instrumented import InstrumentedStorage

log = logging.getLogger("mindproject")
# A segment PUT to its index commit: pool wait, statement timeouts, a few retries: under a
# minute. A shorter compaction grace lets the orphan sweep race a slow commit.
SAFE_GRACE_SECONDS = 60

# The router tries routes in order: the devices' calls (nearly every request) come first. No
# two patterns overlap, so the order changes nothing else; the fallbacks stay last.
ROUTES: list[BaseRoute] = [
    *devices.routes,
    *uploads.routes,
    *resumable.routes,
    *revocations.routes,
    *direct_uploads.routes,
    *fleet.routes,
    *health.routes,
    *metrics.routes,
    *docs.routes,
    *web.routes,
    *devices.fallback_routes,
]


def create_app(settings: Settings | None = None, storage: Storage | None = None) -> Starlette:
    """The app. Without arguments (as uvicorn's factory) settings come from the environment."""
    settings = settings or load_settings()
    configure_logging(settings.log_level)
    verifier = TokenVerifier(load_keys(settings)) if settings.auth == "token" else None

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, object]]:
        inner = storage or open_storage(
            settings.storage,
            fsync=settings.fsync,
            resumable_takeover_seconds=settings.resumable_takeover_seconds,
            index=settings.index,
            index_pool_size=settings.index_pool_size,
            segment_window_ms=settings.segment_window_ms,
            segment_max_bytes=settings.segment_max_bytes,
            segment_max_upload_bytes=settings.segment_max_upload_bytes,
        )
        backend = InstrumentedStorage(inner)
        app.state.storage = backend
        app.state.authenticator = Authenticator(
            verifier,
            Revocations(backend, settings.revocation_refresh_seconds),
            allow_open_nonlocal=settings.allow_open_nonlocal,
        )
        watch_for_shutdown(settings.shutdown_drain_seconds)
        if verifier is None:
            log.warning(
                "AUTH IS OFF (MINDPROJECT_AUTH=off): anyone who can reach %s:%s can read, write "
                "and delete every device's data. For local experiments only.",
                settings.host,
                settings.port,
            )
        # Logged before uvicorn binds its socket: readiness is /readyz, not this line.
        log.info("app started", extra={"storage": settings.storage, "auth": settings.auth})
        sweeper = asyncio.create_task(sweep_forever(backend, settings.resumable_expiry_seconds))
        direct_sweeper = asyncio.create_task(
            sweep_direct_uploads_forever(backend, settings.direct_upload_expiry_seconds)
        )
        background = [sweeper, direct_sweeper]
        # Imported here: the fleet mode's modules load its PostgreSQL driver.
        from mindproject.storage.compactor import Compactor, compact_forever
        from mindproject.storage.indexed import IndexedStorage

        if isinstance(inner, IndexedStorage):  # the fleet mode reclaims deleted bytes
            if settings.compaction_grace_seconds < SAFE_GRACE_SECONDS:
                log.warning(
                    "MINDPROJECT_COMPACTION_GRACE_SECONDS=%g is below %d s: the orphan sweep may "
                    "remove a segment whose index commit is still under way (docs/storage.md)",
                    settings.compaction_grace_seconds,
                    SAFE_GRACE_SECONDS,
                )
            compactor = Compactor(
                inner,
                threshold=settings.compaction_threshold,
                grace_seconds=settings.compaction_grace_seconds,
                max_segment_bytes=settings.segment_max_bytes,
            )
            background.append(
                asyncio.create_task(
                    compact_forever(compactor, settings.compaction_interval_seconds)
                )
            )
        try:
            # Lifespan state reaches the connection protocol too (http_protocol.py: its limits).
            yield {"settings": settings}
        finally:
            for task in background:
                task.cancel()
            for task in background:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await backend.close()

    middleware = [
        Middleware(RequestId),
        Middleware(AccessLog),
        Middleware(RequestMetrics),
        Middleware(SecurityHeaders),
        Middleware(HeaderLimit, max_header_bytes=settings.max_header_bytes),
    ]
    if settings.cors_origin_list:
        middleware.append(
            Middleware(
                CORSMiddleware,
                allow_origins=settings.cors_origin_list,
                allow_methods=["GET", "HEAD", "PUT", "POST", "PATCH", "DELETE", "OPTIONS"],
                allow_headers=[
                    "Authorization",
                    "Content-Type",
                    "Content-Digest",
                    "Content-MD5",
                    "X-Filename",
                    "X-Request-ID",
                    "Range",
                    "If-None-Match",
                    "Idempotency-Key",
                    # tus (api/resumable.py): browser clients (tus-js-client, Uppy) send these
                    "Tus-Resumable",
                    "Upload-Length",
                    "Upload-Defer-Length",
                    "Upload-Metadata",
                    "Upload-Offset",
                    "Upload-Checksum",
                ],
                expose_headers=[
                    "X-Request-ID",
                    "ETag",
                    "Content-Range",
                    "X-Version",
                    "Idempotent-Replayed",
                    # tus answers a browser client must be able to read
                    "Location",
                    "Upload-Offset",
                    "Upload-Length",
                    "Upload-Defer-Length",
                    "Upload-Expires",
                    "Tus-Resumable",
                    "Tus-Version",
                    "Tus-Extension",
                    "Tus-Max-Size",
                    "Tus-Checksum-Algorithm",
                ],
                allow_credentials=False,
                max_age=600,
            )
        )

    app = Starlette(
        routes=ROUTES,
        exception_handlers=HANDLERS,
        middleware=middleware,
        lifespan=lifespan,
    )
    app.router.redirect_slashes = False
    app.router.default = SlashRedirect(app.router)
    app.state.settings = settings
    # Built from the routes themselves: a route without an operation stops start-up here.
    app.state.openapi = openapi_document(app.routes)
    app.state.rate_limiter = RateLimiter(settings.rate_limit_per_minute, settings.rate_limit_burst)
    app.state.upload_slots = UploadSlots(settings.max_concurrent_uploads_per_device)
    return app
