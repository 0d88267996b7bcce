"""Revoking a device: every token it holds stops working, on every replica within seconds."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from mindproject.api import caller, params, state
from mindproject.api.operation import Answer, ApiRoute, Operation
from mindproject.auth.access import Action
from mindproject.identifiers import format_time


def _when(epoch: float) -> str:
    return format_time(datetime.fromtimestamp(epoch, tz=UTC))


LIST_REVOCATIONS = Operation(
    operation_id="listRevocations",
    summary="List revoked devices (admin)",
    answers={200: Answer("Revoked devices", schema="RevocationList")},
    errors=frozenset({401, 403, 503}),
)


async def list_revocations(request: Request) -> Response:
    await caller.authorize(request, Action.MANAGE_REVOCATIONS)
    revoked = await state.storage(request).list_revocations()
    return JSONResponse(
        {
            "revocations": [
                {"device_id": device, "revoked_at": _when(at)}
                for device, at in sorted(revoked.items())
            ]
        }
    )


REVOKE = Operation(
    operation_id="revokeDevice",
    summary="Revoke every token of a device issued until now (admin)",
    answers={200: Answer("Revoked", schema="Revocation")},
    errors=frozenset({400, 401, 403, 503, 507}),
)


async def revoke(request: Request) -> Response:
    device_id = params.device_id(request)
    await caller.authorize(request, Action.MANAGE_REVOCATIONS)
    revoked_at = time.time()
    await state.storage(request).set_revocation(device_id, revoked_at)
    request.app.state.authenticator.revocations.forget_cache()
    return JSONResponse({"device_id": device_id, "revoked_at": _when(revoked_at)})


UNREVOKE = Operation(
    operation_id="unrevokeDevice",
    summary="Lift a device's revocation (admin)",
    answers={200: Answer("Lifted", schema="Revocation")},
    errors=frozenset({400, 401, 403, 503, 507}),
)


async def unrevoke(request: Request) -> Response:
    device_id = params.device_id(request)
    await caller.authorize(request, Action.MANAGE_REVOCATIONS)
    await state.storage(request).set_revocation(device_id, None)
    request.app.state.authenticator.revocations.forget_cache()
    return JSONResponse({"device_id": device_id, "revoked_at": None})


routes = [
    ApiRoute("/api/revocations/", "GET", list_revocations, LIST_REVOCATIONS),
    ApiRoute("/api/revocations/{device_id}", "PUT", revoke, REVOKE),
    ApiRoute("/api/revocations/{device_id}", "DELETE", unrevoke, UNREVOKE),
]
