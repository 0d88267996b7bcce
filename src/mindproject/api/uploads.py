"""A device's upload history: list versions, fetch or delete one."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from mindproject.api import params
from mindproject.api.downloads import download
from mindproject.auth.access import Action
from mindproject.identifiers import encode_cursor


async def list_uploads(request: Request) -> Response:
    device_id = params.device_id(request)
    await params.authorize(request, Action.READ, device_id)
    page = await params.storage(request).list_uploads(
        device_id, after=params.version_cursor(request), limit=params.limit(request, default=100)
    )
    cursor = encode_cursor(page.last) if page.last else None
    return JSONResponse(
        {
            "device_id": device_id,
            "uploads": [info.to_json() for info in page.items],
            "next_cursor": cursor,
        }
    )


async def get_upload(request: Request) -> Response:
    device_id, version = params.device_id(request), params.version_id(request)
    await params.authorize(request, Action.READ, device_id)
    storage = params.storage(request)
    return download(request, storage, await storage.get(device_id, version))


async def delete_upload(request: Request) -> Response:
    device_id, version = params.device_id(request), params.version_id(request)
    await params.authorize(request, Action.DELETE, device_id)
    await params.storage(request).delete_upload(device_id, version)
    return JSONResponse({"device_id": device_id, "version": version, "deleted": True})


routes = [
    Route("/api/devices/{device_id}/uploads", list_uploads, methods=["GET"]),
    Route("/api/devices/{device_id}/uploads/{version}", get_upload, methods=["GET"]),
    Route("/api/devices/{device_id}/uploads/{version}", delete_upload, methods=["DELETE"]),
]
