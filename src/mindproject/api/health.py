"""Liveness (`/healthz`: the process answers) and readiness (`/readyz`: storage answers too)."""

from __future__ import annotations

import asyncio

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from mindproject import lifecycle
from mindproject.api import params
from mindproject.errors import StorageUnavailable

READINESS_TIMEOUT_SECONDS = 3.0


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    if lifecycle.draining.is_set():
        raise StorageUnavailable("shutting down: finishing in-flight requests")
    try:
        await asyncio.wait_for(params.storage(request).check(), READINESS_TIMEOUT_SECONDS)
    except TimeoutError:
        raise StorageUnavailable("storage did not answer in time") from None
    return JSONResponse({"status": "ready"})


routes = [Route("/healthz", healthz, methods=["GET"]), Route("/readyz", readyz, methods=["GET"])]
