"""The seed's calls: upload, list devices, download the latest upload; and deleting a device."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from mindproject.api import caller, params, state
from mindproject.api.downloads import download, download_operation
from mindproject.api.operation import Answer, ApiRoute, Header, Operation
from mindproject.api.request_body import (
    CONTENT_DIGEST,
    CONTENT_MD5,
    UPLOAD_BODY,
    X_FILENAME,
    read_upload,
)
from mindproject.api.upload_json import upload_json
from mindproject.auth.access import Action
from mindproject.errors import InvalidDeviceId
from mindproject.identifiers import DEVICE_ID_MAX, encode_cursor
from mindproject.metrics import UPLOADS, upload_outcome
from mindproject.uploading import store_upload

PAGE_SIZE = 1000  # the seed answered every device id at once; pages keep that size by default

UPLOAD = Operation(
    operation_id="upload",
    summary="Upload a telemetry file (multipart field `file`, or a raw body)",
    parameters=(CONTENT_DIGEST, CONTENT_MD5, X_FILENAME, params.IDEMPOTENCY_KEY_PARAM),
    request_body=UPLOAD_BODY,
    answers={
        200: Answer(
            "Stored, durably (or, with a known Idempotency-Key, the version stored before)",
            schema="UploadResult",
            headers=(
                Header(
                    "Idempotent-Replayed",
                    {"type": "string", "enum": ["true"]},
                    "Present when the answer replays an earlier upload with the same key",
                    required=False,
                ),
            ),
        )
    },
    errors=frozenset({400, 401, 403, 408, 409, 411, 413, 415, 429, 503, 507}),
)


async def upload(request: Request) -> Response:
    device_id = params.device_id(request)
    await caller.authorize(request, Action.UPLOAD, device_id)
    settings = request.app.state.settings
    idempotency_key = params.idempotency_key(request)
    try:
        with request.app.state.upload_slots.hold(device_id):
            body = await read_upload(
                request, settings.max_upload_bytes, settings.body_timeout_seconds
            )
            stored = await store_upload(
                state.storage(request),
                device_id,
                body.stream,
                filename=body.filename,
                content_type=body.content_type,
                idempotency_key=idempotency_key,
            )
    except BaseException as exc:
        UPLOADS.labels("put", upload_outcome(exc)).inc()
        raise
    UPLOADS.labels("put", "replayed" if stored.replayed else "stored").inc()
    return JSONResponse(
        {
            "message": f"File uploaded for Device ID - {device_id}",
            **upload_json(stored.info),
            "replayed": stored.replayed,
        },
        headers={"Idempotent-Replayed": "true"} if stored.replayed else None,
    )


LIST_DEVICES = Operation(
    operation_id="listDevices",
    summary="List device ids (sorted, paginated)",
    parameters=(params.limit_param(PAGE_SIZE), params.CURSOR_PARAM, params.PREFIX_PARAM),
    answers={200: Answer("A page of device ids", schema="DeviceList")},
    errors=frozenset({400, 401, 403, 503}),
)


async def list_devices(request: Request) -> Response:
    await caller.authorize(request, Action.LIST_DEVICES)
    page = await state.storage(request).list_devices(
        prefix=params.prefix(request),
        after=params.device_cursor(request),
        limit=params.limit(request, default=PAGE_SIZE),
    )
    cursor = encode_cursor(page.last) if page.last else None
    return JSONResponse({"TelemetryDataDownloads": page.items, "next_cursor": cursor})


DOWNLOAD_LATEST = download_operation(
    "downloadLatest", "Download the latest upload (base64 by default, or raw)"
)


async def download_latest(request: Request) -> Response:
    device_id = params.device_id(request)
    await caller.authorize(request, Action.READ, device_id)
    storage = state.storage(request)
    return download(request, storage, await storage.latest(device_id))


DELETE_DEVICE = Operation(
    operation_id="deleteDevice",
    summary="Delete every upload of a device (admin)",
    answers={200: Answer("Deleted", schema="DeviceDeleted")},
    errors=frozenset({400, 401, 403, 404, 503, 507}),
)


async def delete_device(request: Request) -> Response:
    device_id = params.device_id(request)
    await caller.authorize(request, Action.DELETE, device_id)
    deleted = await state.storage(request).delete_device(device_id)
    return JSONResponse({"device_id": device_id, "deleted_uploads": deleted})


async def invalid_path(request: Request) -> Response:
    raise InvalidDeviceId(
        f"not a valid device path: device ids are 1-{DEVICE_ID_MAX} characters of "
        "A-Z a-z 0-9 . _ : -"
    )


routes = [
    ApiRoute("/api/devices/", "GET", list_devices, LIST_DEVICES),
    ApiRoute("/api/devices/{device_id}", "PUT", upload, UPLOAD),
    ApiRoute("/api/devices/{device_id}", "GET", download_latest, DOWNLOAD_LATEST),
    ApiRoute("/api/devices/{device_id}", "DELETE", delete_device, DELETE_DEVICE),
]
# Anything else under /api/devices/ (encoded slashes, traversal, empty ids) is a bad device id:
# not an operation of its own, so not in the OpenAPI document.
fallback_routes = [
    Route(
        "/api/devices/{rest:path}",
        invalid_path,
        methods=["GET", "PUT", "DELETE"],
        include_in_schema=False,
    ),
]
