"""Resumable uploads over tus 1.0.0 (core, creation, creation-with-upload, creation-defer-length,
termination, checksum, expiration): https://tus.io/protocols/resumable-upload

Thin routes: they read the tus headers, authorize like uploads (a device token on its own device
only), measure each chunk against what is left of the upload, and hand on to the storage, which
keeps all of an upload's state, so any replica serves any request of any upload (docs/api.md).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import functools
import time
from email.utils import formatdate

from starlette.requests import Request
from starlette.responses import Response

from mindproject.api import caller, params, state
from mindproject.api.operation import Answer, ApiRoute, Endpoint, Header, Operation, Parameter
from mindproject.api.request_body import declared_length, socket_chunks
from mindproject.auth.access import Action
from mindproject.errors import (
    BadRequest,
    MindProjectError,
    PayloadTooLarge,
    TusVersionUnsupported,
    UnsupportedMediaType,
)
from mindproject.identifiers import check_upload_id, new_upload_id, new_version_id
from mindproject.metrics import UPLOADS
from mindproject.multipart import clean_filename
from mindproject.storage.base import ResumableUpload
from mindproject.streams import TUS_CHECKSUM_ALGORITHMS, ExpectedDigests, MeasuredStream

TUS_VERSION = "1.0.0"
TUS_EXTENSIONS = (
    "creation,creation-with-upload,creation-defer-length,termination,checksum,expiration"
)
CHUNK_TYPE = "application/offset+octet-stream"
MAX_METADATA_BYTES = 4096

# Request headers, as the OpenAPI document describes them.
_COUNT = {"type": "string", "pattern": "^[0-9]{1,19}$"}
TUS_RESUMABLE = Parameter(
    "Tus-Resumable", "header", {"type": "string", "enum": [TUS_VERSION]}, "Required: 412 if not"
)
UPLOAD_LENGTH = Parameter(
    "Upload-Length", "header", _COUNT, "The file's size in bytes (or Upload-Defer-Length)"
)
UPLOAD_DEFER_LENGTH = Parameter(
    "Upload-Defer-Length",
    "header",
    {"type": "string", "enum": ["1"]},
    "The size is not known yet: a later PATCH declares it with Upload-Length",
)
UPLOAD_METADATA = Parameter(
    "Upload-Metadata",
    "header",
    {"type": "string"},
    "Comma-separated `key base64value` pairs: filename, filetype, sha256 (the raw 32-byte digest "
    "of the whole file: checked when the last byte arrives)",
)
UPLOAD_OFFSET = Parameter(
    "Upload-Offset", "header", _COUNT, "Where this chunk starts: the upload's current offset"
)
UPLOAD_CHECKSUM = Parameter(
    "Upload-Checksum",
    "header",
    {"type": "string"},
    f"`<algorithm> <base64 digest>` of this chunk ({', '.join(TUS_CHECKSUM_ALGORITHMS)}): "
    "460 and nothing appended if it does not match",
)
DEFERRED_LENGTH_AT_PATCH = Parameter(
    "Upload-Length", "header", _COUNT, "Declares a deferred length (once)"
)
CHUNK_BODY = {
    "required": False,
    "content": {CHUNK_TYPE: {"schema": {"type": "string", "format": "binary"}}},
}

# Response headers.
_TUS_RESUMABLE_OUT = Header("Tus-Resumable", {"type": "string"}, "1.0.0")
_OFFSET_OUT = Header("Upload-Offset", {"type": "string"}, "Bytes stored durably so far")
_EXPIRES_OUT = Header(
    "Upload-Expires",
    {"type": "string"},
    "When the unfinished upload expires (RFC 9110 date); each chunk moves it",
)
_VERSION_OUT = Header(
    "X-Version", {"type": "string"}, "The version the upload became, once complete", False
)


def tus_endpoint(endpoint: Endpoint) -> Endpoint:
    """Checks the request's Tus-Resumable, and puts Tus-Resumable on every answer, errors too."""

    @functools.wraps(endpoint)
    async def wrapped(request: Request) -> Response:
        try:
            version = request.headers.get(TUS_RESUMABLE.name)
            if version != TUS_VERSION:
                raise TusVersionUnsupported(
                    f"this server speaks tus {TUS_VERSION}: send Tus-Resumable: {TUS_VERSION}",
                    headers={"Tus-Version": TUS_VERSION},
                )
            response = await endpoint(request)
        except MindProjectError as exc:
            exc.headers["Tus-Resumable"] = TUS_VERSION
            raise
        response.headers["Tus-Resumable"] = TUS_VERSION
        return response

    return wrapped


def _count(request: Request, name: str) -> int | None:
    raw = request.headers.get(name)
    if raw is None:
        return None
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 19):
        raise BadRequest(f"{name} must be a non-negative integer of at most 19 digits")
    return int(raw)


def _metadata(raw: str | None) -> dict[str, bytes]:
    """Upload-Metadata: comma-separated `key` or `key base64value` pairs."""
    if not raw:
        return {}
    if len(raw) > MAX_METADATA_BYTES:
        raise BadRequest(f"Upload-Metadata is longer than {MAX_METADATA_BYTES} characters")
    found: dict[str, bytes] = {}
    for pair in raw.split(","):
        key, _, value = pair.strip().partition(" ")
        if not key or not key.isascii() or not key.isprintable() or key in found:
            raise BadRequest("Upload-Metadata must be comma-separated `key base64value` pairs")
        try:
            found[key] = base64.b64decode(value.strip(), validate=True)
        except (binascii.Error, ValueError):
            raise BadRequest(f"Upload-Metadata value of {key!r} is not base64") from None
    return found


def _content_type(raw: bytes | None) -> str | None:
    if not raw:
        return None
    text = raw.decode("ascii", errors="replace")
    if len(text) > 255 or not text.isprintable() or "\ufffd" in text:
        raise BadRequest("Upload-Metadata filetype must be a printable ASCII media type")
    return text


def _expected_sha256(raw: bytes | None) -> str | None:
    if raw is None:
        return None
    if len(raw) != 32:
        raise BadRequest("Upload-Metadata sha256 must be the base64 of the raw 32-byte digest")
    return raw.hex()


def _expires(upload: ResumableUpload) -> str:
    return formatdate(upload.expires_at, usegmt=True)


def _state_headers(upload: ResumableUpload) -> dict[str, str]:
    headers = {"Upload-Offset": str(upload.offset), "Upload-Expires": _expires(upload)}
    if upload.version is not None:
        headers["X-Version"] = upload.version
    return headers


def _has_body(request: Request) -> bool:
    if "chunked" in request.headers.get("transfer-encoding", "").lower():
        return True
    return request.headers.get("content-length", "0") not in ("0", "")


def _chunk_type(request: Request) -> None:
    media_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if media_type != CHUNK_TYPE:
        raise UnsupportedMediaType(f"a chunk's Content-Type must be {CHUNK_TYPE}")


async def _append(
    request: Request, upload: ResumableUpload, offset: int, length: int | None
) -> ResumableUpload:
    """Stream the request body in as the chunk at `offset`, measured against what is left."""
    settings = request.app.state.settings
    # Measured from the stored offset, not the client's: a wrong one is a 409 (from the
    # storage, before any of the body is read), not a 413.
    total = upload.length if upload.length is not None else length
    room = settings.max_upload_bytes - upload.offset
    max_bytes = max(0, room if total is None else min(total - upload.offset, room))
    declared = declared_length(request, max_bytes)
    expected = ExpectedDigests.from_upload_checksum(request.headers.get(UPLOAD_CHECKSUM.name))
    with request.app.state.upload_slots.hold(upload.device_id):
        chunk = MeasuredStream(
            socket_chunks(request, settings.body_timeout_seconds),
            max_bytes=max_bytes,
            expected=expected,
            declared_length=declared,
            sha256=False,  # the storage hashes the whole file as chunks arrive
        )
        after = await state.storage(request).append_resumable(
            upload.device_id,
            upload.upload_id,
            offset,
            chunk,
            length=length,
            expires_at=time.time() + settings.resumable_expiry_seconds,
            version=new_version_id(),
        )
    if after.complete and not upload.complete:  # counted once: when this chunk completed it
        UPLOADS.labels("resumable", "stored").inc()
    return after


# OPTIONS: what this server supports ----------------------------------------------------------
DISCOVER = Operation(
    operation_id="discoverResumable",
    summary="tus discovery: the protocol version, extensions, maximum size and checksums",
    answers={
        204: Answer(
            "What this server supports",
            media_type=None,
            headers=(
                _TUS_RESUMABLE_OUT,
                Header("Tus-Version", {"type": "string"}, TUS_VERSION),
                Header("Tus-Extension", {"type": "string"}, TUS_EXTENSIONS),
                Header("Tus-Max-Size", {"type": "string"}, "MINDPROJECT_MAX_UPLOAD_BYTES"),
                Header(
                    "Tus-Checksum-Algorithm",
                    {"type": "string"},
                    ",".join(TUS_CHECKSUM_ALGORITHMS),
                ),
            ),
        )
    },
    errors=frozenset({400}),
    authenticated=False,
)


async def discover(request: Request) -> Response:
    params.device_id(request)
    return Response(
        status_code=204,
        headers={
            "Tus-Resumable": TUS_VERSION,
            "Tus-Version": TUS_VERSION,
            "Tus-Extension": TUS_EXTENSIONS,
            "Tus-Max-Size": str(request.app.state.settings.max_upload_bytes),
            "Tus-Checksum-Algorithm": ",".join(TUS_CHECKSUM_ALGORITHMS),
        },
    )


# POST: create (optionally with the first chunk) ----------------------------------------------
CREATE = Operation(
    operation_id="createResumable",
    summary="Start a resumable upload (tus creation; a body is its first chunk)",
    parameters=(
        TUS_RESUMABLE,
        UPLOAD_LENGTH,
        UPLOAD_DEFER_LENGTH,
        UPLOAD_METADATA,
        UPLOAD_CHECKSUM,
    ),
    request_body=CHUNK_BODY,
    answers={
        201: Answer(
            "Created; Location is the upload's URL",
            media_type=None,
            headers=(
                _TUS_RESUMABLE_OUT,
                Header("Location", {"type": "string"}, "/api/devices/<id>/resumable/<upload_id>"),
                _OFFSET_OUT,
                _EXPIRES_OUT,
                _VERSION_OUT,
            ),
        )
    },
    errors=frozenset({400, 401, 403, 408, 412, 413, 415, 429, 460, 503, 507}),
)


@tus_endpoint
async def create(request: Request) -> Response:
    device_id = params.device_id(request)
    await caller.authorize(request, Action.UPLOAD, device_id)
    settings = request.app.state.settings
    length = _count(request, UPLOAD_LENGTH.name)
    deferred = request.headers.get(UPLOAD_DEFER_LENGTH.name)
    if (length is None) == (deferred is None) or deferred not in (None, "1"):
        raise BadRequest("send either Upload-Length or Upload-Defer-Length: 1")
    if length is not None and length > settings.max_upload_bytes:
        raise PayloadTooLarge(f"upload exceeds the maximum of {settings.max_upload_bytes} bytes")
    metadata = _metadata(request.headers.get(UPLOAD_METADATA.name))
    with_body = _has_body(request)
    if with_body:
        _chunk_type(request)
    upload = ResumableUpload(
        device_id=device_id,
        upload_id=new_upload_id(),
        length=length,
        offset=0,
        filename=clean_filename(metadata.get("filename") or metadata.get("name")),
        content_type=_content_type(metadata.get("filetype") or metadata.get("type")),
        expected_sha256=_expected_sha256(metadata.get("sha256")),
        expires_at=time.time() + settings.resumable_expiry_seconds,
    )
    storage = state.storage(request)
    await storage.create_resumable(upload, max_per_device=settings.max_resumable_per_device)
    if with_body or length == 0:  # an empty file is complete at once
        try:
            upload = await _append(request, upload, 0, None)
        except BaseException:
            # The client has no URL to resume at: leave nothing behind, it starts again.
            # Already removed (a whole-file checksum mismatch), or else the sweep will.
            with contextlib.suppress(MindProjectError):
                await storage.delete_resumable(device_id, upload.upload_id)
            raise
    location = f"/api/devices/{device_id}/resumable/{upload.upload_id}"
    return Response(status_code=201, headers={"Location": location, **_state_headers(upload)})


# HEAD: where to resume ---------------------------------------------------------------------
_OFFSET_ANSWER = Answer(
    "The upload's state (no body)",
    media_type=None,
    headers=(
        _TUS_RESUMABLE_OUT,
        _OFFSET_OUT,
        Header("Upload-Length", {"type": "string"}, "Unless the length is deferred", False),
        Header("Upload-Defer-Length", {"type": "string"}, "1 while the length is deferred", False),
        _EXPIRES_OUT,
        Header("Cache-Control", {"type": "string"}, "no-store"),
        _VERSION_OUT,
    ),
)
STATUS = Operation(
    operation_id="resumableStatus",
    summary="The offset to resume at (tus HEAD); after completion, the full length",
    parameters=(TUS_RESUMABLE,),
    answers={200: _OFFSET_ANSWER},
    errors=frozenset({400, 401, 403, 404, 412, 429, 503}),
)


@tus_endpoint
async def status(request: Request) -> Response:
    device_id = params.device_id(request)
    upload_id = check_upload_id(request.path_params["upload_id"])
    await caller.authorize(request, Action.UPLOAD, device_id)
    upload = await state.storage(request).resumable(device_id, upload_id)
    headers = {**_state_headers(upload), "Cache-Control": "no-store"}
    if upload.length is None:
        headers["Upload-Defer-Length"] = "1"
    else:
        headers["Upload-Length"] = str(upload.length)
    return Response(status_code=200, headers=headers)


# PATCH: append a chunk ---------------------------------------------------------------------
APPEND = Operation(
    operation_id="appendResumable",
    summary="Append a chunk at Upload-Offset (tus PATCH); the last one makes the version",
    parameters=(TUS_RESUMABLE, UPLOAD_OFFSET, DEFERRED_LENGTH_AT_PATCH, UPLOAD_CHECKSUM),
    request_body={**CHUNK_BODY, "required": True},
    answers={
        204: Answer(
            "Stored durably; X-Version once the upload is complete",
            media_type=None,
            headers=(_TUS_RESUMABLE_OUT, _OFFSET_OUT, _EXPIRES_OUT, _VERSION_OUT),
        )
    },
    errors=frozenset({400, 401, 403, 404, 408, 409, 411, 412, 413, 415, 423, 429, 460, 503, 507}),
)


@tus_endpoint
async def append(request: Request) -> Response:
    device_id = params.device_id(request)
    upload_id = check_upload_id(request.path_params["upload_id"])
    await caller.authorize(request, Action.UPLOAD, device_id)
    _chunk_type(request)
    offset = _count(request, UPLOAD_OFFSET.name)
    if offset is None:
        raise BadRequest("send Upload-Offset: the upload's current offset (HEAD tells it)")
    length = _count(request, DEFERRED_LENGTH_AT_PATCH.name)
    if length is not None and length > request.app.state.settings.max_upload_bytes:
        raise PayloadTooLarge(
            f"upload exceeds the maximum of {request.app.state.settings.max_upload_bytes} bytes"
        )
    # The state gives the room left for this chunk; the storage checks the offset (409) before
    # it reads any of the body, under the upload's lock.
    upload = await state.storage(request).resumable(device_id, upload_id)
    upload = await _append(request, upload, offset, length)
    return Response(status_code=204, headers=_state_headers(upload))


# DELETE: terminate -------------------------------------------------------------------------
TERMINATE = Operation(
    operation_id="terminateResumable",
    summary="Terminate an upload (tus termination): its bytes and state are removed",
    parameters=(TUS_RESUMABLE,),
    answers={204: Answer("Terminated", media_type=None, headers=(_TUS_RESUMABLE_OUT,))},
    errors=frozenset({400, 401, 403, 404, 412, 429, 503, 507}),
)


@tus_endpoint
async def terminate(request: Request) -> Response:
    device_id = params.device_id(request)
    upload_id = check_upload_id(request.path_params["upload_id"])
    await caller.authorize(request, Action.UPLOAD, device_id)
    await state.storage(request).delete_resumable(device_id, upload_id)
    return Response(status_code=204)


_COLLECTION = "/api/devices/{device_id}/resumable"
_UPLOAD = "/api/devices/{device_id}/resumable/{upload_id}"
routes = [
    ApiRoute(_COLLECTION, "OPTIONS", discover, DISCOVER),
    ApiRoute(_COLLECTION, "POST", create, CREATE),
    ApiRoute(_UPLOAD, "HEAD", status, STATUS),
    ApiRoute(_UPLOAD, "PATCH", append, APPEND),
    ApiRoute(_UPLOAD, "DELETE", terminate, TERMINATE),
]
