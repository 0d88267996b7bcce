"""Liveness (`/healthz`: the process answers) and readiness (`/readyz`: storage answers too)."""

from __future__ import annotations

import asyncio

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from mindproject import lifecycle
from mindproject.api import state
from mindproject.api.operation import Answer, ApiRoute, Operation
from mindproject.errors import StorageUnavailable

READINESS_TIMEOUT_SECONDS = 3.0

HEALTHZ = Operation(
    operation_id="healthz",
    summary="Liveness: the process answers",
    answers={200: Answer("Alive", schema="Status")},
    errors=frozenset(),
    authenticated=False,
)


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


READYZ = Operation(
    operation_id="readyz",
    summary="Readiness: storage answers and the process is not shutting down",
    answers={200: Answer("Ready", schema="Status")},
    errors=frozenset({503}),
    authenticated=False,
)


async def readyz(request: Request) -> Response:
    if lifecycle.draining.is_set():
        raise StorageUnavailable("shutting down: finishing in-flight requests")
    try:
        await asyncio.wait_for(state.storage(request).check(), READINESS_TIMEOUT_SECONDS)
    except TimeoutError:
        raise StorageUnavailable("storage did not answer in time") from None
    return JSONResponse({"status": "ready"})


routes = [
    ApiRoute("/healthz", "GET", healthz, HEALTHZ),
    ApiRoute("/readyz", "GET", readyz, READYZ),
]
