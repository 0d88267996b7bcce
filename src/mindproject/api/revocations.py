"""Revoking a device: every token it holds stops working, on every replica within seconds."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from mindproject.api import params
from mindproject.auth.access import Action
from mindproject.identifiers import format_time


def _when(epoch: float) -> str:
    return format_time(datetime.fromtimestamp(epoch, tz=UTC))


async def list_revocations(request: Request) -> Response:
    await params.authorize(request, Action.MANAGE_REVOCATIONS)
    revoked = await params.storage(request).list_revocations()
    return JSONResponse(
        {
            "revocations": [
                {"device_id": device, "revoked_at": _when(at)}
                for device, at in sorted(revoked.items())
            ]
        }
    )


async def revoke(request: Request) -> Response:
    device_id = params.device_id(request)
    await params.authorize(request, Action.MANAGE_REVOCATIONS)
    revoked_at = time.time()
    await params.storage(request).set_revocation(device_id, revoked_at)
    request.app.state.authenticator.revocations.forget_cache()
    return JSONResponse({"device_id": device_id, "revoked_at": _when(revoked_at)})


async def lift(request: Request) -> Response:
    device_id = params.device_id(request)
    await params.authorize(request, Action.MANAGE_REVOCATIONS)
    await params.storage(request).set_revocation(device_id, None)
    request.app.state.authenticator.revocations.forget_cache()
    return JSONResponse({"device_id": device_id, "revoked_at": None})


routes = [
    Route("/api/revocations/", list_revocations, methods=["GET"]),
    Route("/api/revocations/{device_id}", revoke, methods=["PUT"]),
    Route("/api/revocations/{device_id}", lift, methods=["DELETE"]),
]
