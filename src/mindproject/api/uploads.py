"""A device's upload history: list versions, fetch or delete one."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from mindproject.api import caller, params, state
from mindproject.api.downloads import download, download_operation
from mindproject.api.operation import Answer, ApiRoute, Operation
from mindproject.api.upload_json import upload_json
from mindproject.auth.access import Action
from mindproject.identifiers import encode_cursor

PAGE_SIZE = 100

LIST_UPLOADS = Operation(
    operation_id="listUploads",
    summary="List a device's uploads, newest first (paginated)",
    parameters=(params.limit_param(PAGE_SIZE), params.CURSOR_PARAM),
    answers={200: Answer("A page of uploads", schema="UploadList")},
    errors=frozenset({400, 401, 403, 404, 429, 503}),
)


async def list_uploads(request: Request) -> Response:
    device_id = params.device_id(request)
    await caller.authorize(request, Action.READ, device_id)
    page = await state.storage(request).list_uploads(
        device_id,
        after=params.version_cursor(request),
        limit=params.limit(request, default=PAGE_SIZE),
    )
    cursor = encode_cursor(page.last) if page.last else None
    return JSONResponse(
        {
            "device_id": device_id,
            "uploads": [upload_json(info) for info in page.items],
            "next_cursor": cursor,
        }
    )


GET_UPLOAD = download_operation("downloadUpload", "Download one upload (base64 by default, or raw)")


async def get_upload(request: Request) -> Response:
    device_id, version = params.device_id(request), params.version_id(request)
    await caller.authorize(request, Action.READ, device_id)
    storage = state.storage(request)
    return download(request, storage, await storage.get(device_id, version))


DELETE_UPLOAD = Operation(
    operation_id="deleteUpload",
    summary="Delete one upload (admin)",
    answers={200: Answer("Deleted", schema="UploadDeleted")},
    errors=frozenset({400, 401, 403, 404, 503, 507}),
)


async def delete_upload(request: Request) -> Response:
    device_id, version = params.device_id(request), params.version_id(request)
    await caller.authorize(request, Action.DELETE, device_id)
    await state.storage(request).delete_upload(device_id, version)
    return JSONResponse({"device_id": device_id, "version": version, "deleted": True})


routes = [
    ApiRoute("/api/devices/{device_id}/uploads", "GET", list_uploads, LIST_UPLOADS),
    ApiRoute("/api/devices/{device_id}/uploads/{version}", "GET", get_upload, GET_UPLOAD),
    ApiRoute("/api/devices/{device_id}/uploads/{version}", "DELETE", delete_upload, DELETE_UPLOAD),
]
