"""The seed's calls: upload, list devices, download the latest upload; and deleting a device."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from mindproject.api import params
from mindproject.api.downloads import download
from mindproject.api.request_body import read_upload
from mindproject.auth.access import Action
from mindproject.errors import InvalidDeviceId
from mindproject.identifiers import encode_cursor
from mindproject.metrics import UPLOADS, upload_outcome
from mindproject.uploading import store_upload


async def upload(request: Request) -> Response:
    device_id = params.device_id(request)
    await params.authorize(request, Action.UPLOAD, device_id)
    settings = request.app.state.settings
    idempotency_key = params.idempotency_key(request)
    try:
        with request.app.state.upload_slots.hold(device_id):
            body = await read_upload(
                request, settings.max_upload_bytes, settings.body_timeout_seconds
            )
            stored = await store_upload(
                params.storage(request),
                device_id,
                body.stream,
                filename=body.filename,
                content_type=body.content_type,
                idempotency_key=idempotency_key,
            )
    except BaseException as exc:
        UPLOADS.labels(upload_outcome(exc)).inc()
        raise
    UPLOADS.labels("replayed" if stored.replayed else "stored").inc()
    return JSONResponse(
        {
            "message": f"File uploaded for Device ID - {device_id}",
            **stored.info.to_json(),
            "replayed": stored.replayed,
        },
        headers={"Idempotent-Replayed": "true"} if stored.replayed else None,
    )


async def list_devices(request: Request) -> Response:
    await params.authorize(request, Action.LIST_DEVICES)
    page = await params.storage(request).list_devices(
        prefix=params.prefix(request),
        after=params.device_cursor(request),
        limit=params.limit(request, default=1000),
    )
    cursor = encode_cursor(page.last) if page.last else None
    return JSONResponse({"TelemetryDataDownloads": page.items, "next_cursor": cursor})


async def download_latest(request: Request) -> Response:
    device_id = params.device_id(request)
    await params.authorize(request, Action.READ, device_id)
    storage = params.storage(request)
    return download(request, storage, await storage.latest(device_id))


async def delete_device(request: Request) -> Response:
    device_id = params.device_id(request)
    await params.authorize(request, Action.DELETE, device_id)
    deleted = await params.storage(request).delete_device(device_id)
    return JSONResponse({"device_id": device_id, "deleted_uploads": deleted})


async def invalid_path(request: Request) -> Response:
    raise InvalidDeviceId(
        "not a valid device path: device ids are 1-128 characters of A-Z a-z 0-9 . _ : -"
    )


routes = [
    Route("/api/devices/", list_devices, methods=["GET"]),
    Route("/api/devices/{device_id}", upload, methods=["PUT"]),
    Route("/api/devices/{device_id}", download_latest, methods=["GET"]),
    Route("/api/devices/{device_id}", delete_device, methods=["DELETE"]),
]
# Anything else under /api/devices/ (encoded slashes, traversal, empty ids) is a bad device id.
fallback_routes = [
    Route("/api/devices/{rest:path}", invalid_path, methods=["GET", "PUT", "DELETE"]),
]
