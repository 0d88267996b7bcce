"""Direct uploads: the device PUTs its bytes straight to S3 through a presigned URL, so they never
pass through a replica; the service only hands out the URL and verifies the result.

    POST /api/devices/<id>/direct-uploads                          -> a presigned PUT URL
    POST /api/devices/<id>/direct-uploads/<direct_upload_id>/complete  -> a version, as an upload

The routes are thin: what the client declared is validated here, everything else (signing,
state, verification, moving the bytes into place) is the storage's (Storage.*_direct_upload).
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import time
from datetime import UTC, datetime
from typing import Any

from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response

from mindproject.api import caller, params, state
from mindproject.api.operation import Answer, ApiRoute, Header, Operation, Parameter
from mindproject.api.upload_json import upload_json
from mindproject.auth.access import Action
from mindproject.errors import (
    ClientDisconnected,
    InvalidParameter,
    MalformedBody,
    PayloadTooLarge,
    RequestTimeout,
    UnsupportedMediaType,
)
from mindproject.identifiers import (
    DIRECT_UPLOAD_ID_PATTERN,
    check_direct_upload_id,
    format_time,
    new_direct_upload_id,
    new_version_id,
)
from mindproject.metrics import UPLOADS
from mindproject.multipart import clean_filename

# The request body is a few small fields: anything much longer is not a direct upload request.
MAX_BODY_BYTES = 4096
MAX_FILENAME_CHARS = 1024  # then cut to 255 bytes, as every upload's file name
MAX_CONTENT_TYPE_CHARS = 100
FIELDS = {"size", "sha256", "filename", "content_type"}
_SHA256 = re.compile(r"[0-9a-fA-F]{64}")
# type/subtype and parameters, printable ASCII: it ends up in object keys and answers.
_CONTENT_TYPE = re.compile(r"[!-~]+/[!-~]+(?:;[ !-~]*)?")

DIRECT_UPLOAD_ID_PARAM = Parameter(
    "direct_upload_id",
    "path",
    {"type": "string", "pattern": f"^{DIRECT_UPLOAD_ID_PATTERN}$"},
    "From complete_url; unknown or expired ids are 404",
)

CREATE_BODY = {
    "required": True,
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "required": ["size", "sha256"],
                "additionalProperties": False,
                "properties": {
                    "size": {
                        "type": "integer",
                        "minimum": 1,
                        "description": "Exact byte count; above MINDPROJECT_MAX_UPLOAD_BYTES "
                        "(or 5 GiB, S3's limit for one PUT) is 413",
                    },
                    "sha256": {"type": "string", "pattern": "^[0-9a-fA-F]{64}$"},
                    "filename": {"type": ["string", "null"], "maxLength": MAX_FILENAME_CHARS},
                    "content_type": {
                        "type": ["string", "null"],
                        "maxLength": MAX_CONTENT_TYPE_CHARS,
                    },
                },
            }
        }
    },
}

CREATE = Operation(
    operation_id="createDirectUpload",
    summary="Start a direct upload: a presigned URL to PUT the bytes straight to S3",
    description="S3 storage only (501 on the file and memory backends). PUT the bytes to "
    "upload_url with the given method and headers before expires_at, then POST complete_url.",
    request_body=CREATE_BODY,
    answers={200: Answer("Where to send the bytes, and where to complete", "DirectUploadTicket")},
    errors=frozenset({400, 401, 403, 408, 413, 415, 429, 501, 503}),
)

COMPLETE = Operation(
    operation_id="completeDirectUpload",
    summary="Complete a direct upload: verify the bytes PUT to S3 and store them as a version",
    description="Answers as an upload does. Bytes whose size or sha256 is not the declared one "
    "are a 400, deleted, and nothing is stored; the URL may be used again until it expires. "
    "Completing again answers the same version (replayed: true) until the upload expires.",
    answers={
        200: Answer(
            "Stored (or, completed before, that same version)",
            schema="UploadResult",
            headers=(
                Header("X-Version", {"type": "string"}, "The version id"),
                Header(
                    "Idempotent-Replayed",
                    {"type": "string", "enum": ["true"]},
                    "Present when the upload was completed before",
                    required=False,
                ),
            ),
        )
    },
    errors=frozenset({400, 401, 403, 404, 429, 501, 503}),
)


async def create(request: Request) -> Response:
    device_id = params.device_id(request)
    await caller.authorize(request, Action.UPLOAD, device_id)
    settings = request.app.state.settings
    body = await _json_body(request, settings.body_timeout_seconds)
    size, sha256, filename, content_type = _declared(body, settings.max_upload_bytes)
    expires_at = math.ceil(time.time()) + settings.direct_upload_expiry_seconds
    staging_id = new_direct_upload_id(expires_at)
    ticket = await state.storage(request).presign_direct_upload(
        device_id,
        staging_id,
        size=size,
        sha256=sha256,
        filename=filename,
        content_type=content_type,
        expires_at=expires_at,
    )
    return JSONResponse(
        {
            "upload_url": ticket.url,
            "method": ticket.method,
            "headers": ticket.headers,
            "expires_at": format_time(datetime.fromtimestamp(ticket.expires_at, tz=UTC)),
            # A path, not a URL: the host a client reaches this service by is its own business.
            "complete_url": f"/api/devices/{device_id}/direct-uploads/{staging_id}/complete",
        }
    )


async def complete(request: Request) -> Response:
    device_id = params.device_id(request)
    await caller.authorize(request, Action.UPLOAD, device_id)
    staging_id = check_direct_upload_id(request.path_params["direct_upload_id"])
    version = new_version_id()
    info = await state.storage(request).complete_direct_upload(
        device_id, staging_id, version, now=time.time()
    )
    replayed = info.version != version  # completed before: its version, not a new one
    UPLOADS.labels("direct", "replayed" if replayed else "stored").inc()
    headers = {"X-Version": info.version}
    if replayed:
        headers["Idempotent-Replayed"] = "true"
    return JSONResponse(
        {
            "message": f"File uploaded for Device ID - {device_id}",
            **upload_json(info),
            "replayed": replayed,
        },
        headers=headers,
    )


async def _json_body(request: Request, timeout_seconds: float) -> Any:
    media_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if media_type != "application/json":
        raise UnsupportedMediaType("send the direct upload's fields as application/json")
    raw = request.headers.get("content-length")
    if raw is not None and raw.isascii() and raw.isdigit() and int(raw) > MAX_BODY_BYTES:
        raise PayloadTooLarge(f"the request body is limited to {MAX_BODY_BYTES} bytes")
    body = bytearray()
    try:
        async with asyncio.timeout(timeout_seconds):
            async for chunk in request.stream():
                body += chunk
                if len(body) > MAX_BODY_BYTES:
                    raise PayloadTooLarge(f"the request body is limited to {MAX_BODY_BYTES} bytes")
    except TimeoutError:
        raise RequestTimeout(f"the request body took longer than {timeout_seconds:g} s") from None
    except ClientDisconnect:
        raise ClientDisconnected("the client disconnected") from None
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise MalformedBody("the body is not valid JSON") from None


def _declared(body: Any, max_upload_bytes: int) -> tuple[int, str, str | None, str | None]:
    """size, sha256 (lower case), file name and content type, or 400 / 413 naming the field."""
    if not isinstance(body, dict):
        raise MalformedBody('the body must be a JSON object: {"size": …, "sha256": …}')
    if unknown := sorted(set(body) - FIELDS):
        raise InvalidParameter(f"unknown fields {unknown}; expected {sorted(FIELDS)}")
    size = body.get("size")
    # bool is an int in Python, not in JSON: true is not a size.
    if not isinstance(size, int) or isinstance(size, bool) or size < 1:
        raise InvalidParameter("size must be an integer of at least 1 (the exact byte count)")
    if size > max_upload_bytes:
        raise PayloadTooLarge(f"upload exceeds the maximum of {max_upload_bytes} bytes")
    sha256 = body.get("sha256")
    if not isinstance(sha256, str) or not _SHA256.fullmatch(sha256):
        raise InvalidParameter("sha256 must be the file's SHA-256 as 64 hex digits")
    filename = body.get("filename")
    if filename is not None:
        if not isinstance(filename, str) or len(filename) > MAX_FILENAME_CHARS:
            raise InvalidParameter(f"filename must be a string of at most {MAX_FILENAME_CHARS}")
        # A lone surrogate is valid JSON but not UTF-8: replaced, as in every upload's name.
        filename = clean_filename(filename.encode(errors="replace"))
    content_type = body.get("content_type")
    if content_type is not None and (
        not isinstance(content_type, str)
        or len(content_type) > MAX_CONTENT_TYPE_CHARS
        or not _CONTENT_TYPE.fullmatch(content_type)
    ):
        raise InvalidParameter(
            f"content_type must be a media type (type/subtype) of at most "
            f"{MAX_CONTENT_TYPE_CHARS} printable ASCII characters"
        )
    return size, sha256.lower(), filename, content_type


routes = [
    ApiRoute("/api/devices/{device_id}/direct-uploads", "POST", create, CREATE),
    ApiRoute(
        "/api/devices/{device_id}/direct-uploads/{direct_upload_id}/complete",
        "POST",
        complete,
        COMPLETE,
    ),
]
