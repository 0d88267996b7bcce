"""The OpenAPI 3.1 description of the HTTP API, served at /api/openapi.json and rendered at /api/.

Built from the app's routes: each `ApiRoute` carries its `Operation` (declared beside the
endpoint, in mindproject/api/), so a route deleted or added changes the document with it, and a
route that has no operation stops the document, and so the app, from being built. Path
parameters come from the route's path; patterns and limits from identifiers.py and params.py.
This module adds what is common to every operation (the error body, X-Request-ID, bearer auth)
and the JSON schemas of the answers.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from starlette.routing import BaseRoute, Mount, Route

from mindproject import __version__
from mindproject.api import direct_uploads, params
from mindproject.api.operation import Answer, ApiRoute, Header, Operation, Parameter
from mindproject.identifiers import UPLOAD_ID_PATTERN, VERSION_PATTERN


class UndescribedRoute(Exception):
    """A route that is neither an ApiRoute nor marked include_in_schema=False."""


# Path parameters by the name routes give them in their paths.
UPLOAD_ID_PARAM = Parameter(
    "upload_id",
    "path",
    {"type": "string", "pattern": f"^{UPLOAD_ID_PATTERN}$"},
    "A resumable upload's id (from the Location of its creation)",
)
PATH_PARAMETERS: dict[str, Parameter] = {
    param.name: param
    for param in (
        params.DEVICE_ID_PARAM,
        params.VERSION_PARAM,
        UPLOAD_ID_PARAM,
        direct_uploads.DIRECT_UPLOAD_ID_PARAM,
    )
}

# Any request may be refused for its header size (middleware.header_limit, and on the wire
# http_protocol.BoundedProtocol) before it reaches a route. The protocol's other wire-level
# answers (400 malformed framing, 501 transfer codings) are in docs/security.md.
EVERY_REQUEST_ERRORS = frozenset({431})

REQUEST_ID = Header("X-Request-ID", {"type": "string"}, "Also in error bodies and the log lines")

# What each error status means, and the headers it carries beyond X-Request-ID.
ERRORS: dict[int, tuple[str, tuple[Header, ...]]] = {
    400: ("Invalid input (device id, version, parameter, body, checksum)", ()),
    401: (
        "Missing, invalid, expired or revoked bearer token",
        (Header("WWW-Authenticate", {"type": "string"}, 'Bearer realm="mindproject", …'),),
    ),
    403: ("The token's role may not do this, or not on this device", ()),
    404: (
        "No such device, upload, direct upload or resumable upload (terminated, expired)",
        (),
    ),
    408: ("The request body stopped arriving", ()),
    409: (
        "Idempotency-Key already used for different bytes; or a chunk sent for another offset "
        "than the resumable upload's (error.details.offset says where to resume)",
        (
            Header(
                "Upload-Offset",
                {"type": "string"},
                "Resumable uploads: the offset to resume at",
                required=False,
            ),
        ),
    ),
    411: ("Neither Content-Length nor chunked encoding", ()),
    412: (
        "Tus-Resumable missing or not 1.0.0",
        (Header("Tus-Version", {"type": "string"}, "1.0.0"),),
    ),
    413: ("Upload larger than the configured maximum (or a chunk past the upload's length)", ()),
    415: (
        "Body of another media type than the operation takes (uploads: multipart/form-data or "
        "application/octet-stream; resumable chunks: application/offset+octet-stream)",
        (),
    ),
    416: (
        "Range outside the file",
        (Header("Content-Range", {"type": "string"}, "bytes */SIZE"),),
    ),
    429: (
        "Over the device's request rate or uploads in flight",
        (Header("Retry-After", {"type": "string", "pattern": "^[0-9]+$"}, "Seconds to wait"),),
    ),
    423: ("Another request is appending to this resumable upload right now", ()),
    431: ("Request headers too large", ()),
    460: ("The chunk's Upload-Checksum does not match its bytes: nothing was appended", ()),
    501: (
        "The storage backend cannot do this (direct uploads need S3 storage; the fleet view's "
        "counts and orders need an index: the file backend or MINDPROJECT_INDEX)",
        (),
    ),
    503: ("Storage unavailable (or, for /readyz, shutting down)", ()),
    507: ("Storage full", ()),
}


def _headers(headers: Iterable[Header]) -> dict[str, Any]:
    return {header.name: header.to_openapi() for header in (*headers, REQUEST_ID)}


def _answer(answer: Answer) -> dict[str, Any]:
    described: dict[str, Any] = {
        "description": answer.description,
        "headers": _headers(answer.headers),
    }
    if answer.media_type is not None:
        schema = (
            {"$ref": f"#/components/schemas/{answer.schema}"}
            if answer.schema
            else {"type": "string"}
        )
        described["content"] = {answer.media_type: {"schema": schema}}
    return described


def _operation(route: ApiRoute) -> dict[str, Any]:
    operation: Operation = route.operation
    path_parameters = [PATH_PARAMETERS[name] for name in route.param_convertors]
    responses = {str(status): _answer(answer) for status, answer in operation.answers.items()}
    for status in sorted(operation.errors | EVERY_REQUEST_ERRORS):
        if status not in ERRORS:
            raise UndescribedRoute(f"{route.method} {route.path}: no description of {status}")
        responses[str(status)] = {"$ref": f"#/components/responses/E{status}"}
    described: dict[str, Any] = {
        "operationId": operation.operation_id,
        "summary": operation.summary,
        "parameters": [p.to_openapi() for p in (*path_parameters, *operation.parameters)],
        "responses": responses,
    }
    if operation.description:
        described["description"] = operation.description
    if operation.request_body is not None:
        described["requestBody"] = dict(operation.request_body)
    if not operation.authenticated:
        described["security"] = []
    return described


def _paths(routes: Iterable[BaseRoute]) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    operation_ids: set[str] = set()
    for route in routes:
        if isinstance(route, ApiRoute):
            item = paths.setdefault(route.path_format, {})
            method = route.method.lower()
            if method in item:
                raise UndescribedRoute(f"{route.method} {route.path} is routed twice")
            if route.operation.operation_id in operation_ids:
                raise UndescribedRoute(f"operationId {route.operation.operation_id} used twice")
            operation_ids.add(route.operation.operation_id)
            item[method] = _operation(route)
        elif isinstance(route, Route) and not route.include_in_schema:
            continue  # deliberately not an operation (the docs pages, the fallback route)
        elif isinstance(route, Mount) and not route.routes:
            continue  # static files (the docs' assets)
        else:
            raise UndescribedRoute(
                f"{route!r} has no Operation: make it an ApiRoute with one, or mark it "
                "include_in_schema=False"
            )
    return paths


def _error_response(status: int) -> dict[str, Any]:
    description, headers = ERRORS[status]
    return {
        "description": description,
        "headers": _headers(headers),
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


def openapi_document(routes: Iterable[BaseRoute]) -> dict[str, Any]:
    """The document for these routes (an app's `routes`)."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "MindProject telemetry upload API",
            "version": __version__,
            "description": "Devices upload telemetry files; operators list and download them. "
            "Every answer carries X-Request-ID (a sane incoming X-Request-ID is kept).",
        },
        "paths": _paths(routes),
        "security": [{"bearer": []}],
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
            },
            "responses": {f"E{status}": _error_response(status) for status in ERRORS},
            "schemas": _schemas(),
        },
    }


# The fleet summary's counts (api/fleet.py), each a non-negative integer.
_SUMMARY_COUNTS = (
    "devices",
    "silent_devices",
    "revoked_devices",
    "uploads_last_hour",
    "bytes_last_hour",
    "uploads_last_day",
    "bytes_last_day",
)


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _schemas() -> dict[str, Any]:
    device_id = {"type": "string", "pattern": params.DEVICE_ID_PARAM.schema["pattern"]}
    version = {"type": "string", "pattern": f"^{VERSION_PATTERN}$"}
    upload_info = {
        "type": "object",
        "required": ["device_id", "version", "size", "sha256", "uploaded_at"],
        "properties": {
            "device_id": device_id,
            "version": version,
            "size": {"type": "integer", "minimum": 0},
            "sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
            "uploaded_at": {"type": "string", "format": "date-time"},
            "filename": {"type": ["string", "null"]},
            "content_type": {"type": ["string", "null"]},
        },
    }
    return {
        "Error": {
            "type": "object",
            "required": ["error"],
            "properties": {
                "error": {
                    "type": "object",
                    "required": ["code", "message", "request_id"],
                    "properties": {
                        "code": {"type": "string"},
                        "message": {"type": "string"},
                        "request_id": {"type": "string"},
                        "details": {
                            "type": "object",
                            "description": "Facts to recover with (offset_mismatch: offset)",
                        },
                    },
                }
            },
        },
        "UploadInfo": upload_info,
        "UploadResult": {
            "allOf": [
                upload_info,
                {
                    "type": "object",
                    "required": ["message", "replayed"],
                    "properties": {
                        "message": {"type": "string"},
                        "replayed": {"type": "boolean"},
                    },
                },
            ]
        },
        "DeviceList": {
            "type": "object",
            "required": ["TelemetryDataDownloads", "next_cursor"],
            "properties": {
                "TelemetryDataDownloads": {"type": "array", "items": device_id},
                "next_cursor": {"type": ["string", "null"]},
            },
        },
        "UploadList": {
            "type": "object",
            "required": ["device_id", "uploads", "next_cursor"],
            "properties": {
                "device_id": device_id,
                "uploads": {"type": "array", "items": _ref("UploadInfo")},
                "next_cursor": {"type": ["string", "null"]},
            },
        },
        "DeviceDeleted": {
            "type": "object",
            "required": ["device_id", "deleted_uploads"],
            "properties": {
                "device_id": device_id,
                "deleted_uploads": {"type": "integer", "minimum": 0},
            },
        },
        "UploadDeleted": {
            "type": "object",
            "required": ["device_id", "version", "deleted"],
            "properties": {
                "device_id": device_id,
                "version": version,
                "deleted": {"type": "boolean"},
            },
        },
        "Status": {
            "type": "object",
            "required": ["status"],
            "properties": {"status": {"type": "string"}},
        },
        "Revocation": {
            "type": "object",
            "required": ["device_id", "revoked_at"],
            "properties": {
                "device_id": device_id,
                "revoked_at": {"type": ["string", "null"], "format": "date-time"},
            },
        },
        "DirectUploadTicket": {
            "type": "object",
            "required": ["upload_url", "method", "headers", "expires_at", "complete_url"],
            "properties": {
                "upload_url": {"type": "string", "format": "uri"},
                "method": {"type": "string", "enum": ["PUT"]},
                "headers": {"type": "object", "additionalProperties": {"type": "string"}},
                "expires_at": {"type": "string", "format": "date-time"},
                "complete_url": {"type": "string"},
            },
        },
        "RevocationList": {
            "type": "object",
            "required": ["revocations"],
            "properties": {"revocations": {"type": "array", "items": _ref("Revocation")}},
        },
        "FleetDevice": {
            "type": "object",
            "required": [
                "device_id",
                "last_upload_at",
                "uploads",
                "bytes",
                "last_size",
                "revoked",
                "revoked_at",
            ],
            "properties": {
                "device_id": device_id,
                "last_upload_at": {"type": ["string", "null"], "format": "date-time"},
                "uploads": {"type": ["integer", "null"], "description": "null on S3-only"},
                "bytes": {"type": ["integer", "null"], "description": "null on S3-only"},
                "last_size": {"type": ["integer", "null"], "description": "null on S3-only"},
                "revoked": {"type": "boolean"},
                "revoked_at": {"type": ["string", "null"], "format": "date-time"},
            },
        },
        "FleetDevices": {
            "type": "object",
            "required": ["devices", "next_cursor"],
            "properties": {
                "devices": {"type": "array", "items": _ref("FleetDevice")},
                "next_cursor": {"type": ["string", "null"]},
            },
        },
        "FleetSummary": {
            "type": "object",
            "required": [*_SUMMARY_COUNTS, "silent_for", "at"],
            "properties": {
                **{name: {"type": "integer", "minimum": 0} for name in _SUMMARY_COUNTS},
                "silent_for": {"type": "string"},
                "at": {"type": "string", "format": "date-time"},
            },
        },
        "DeviceActivity": {
            "type": "object",
            "required": ["device_id", "bucket", "from", "to", "buckets"],
            "properties": {
                "device_id": device_id,
                "bucket": {"type": "string"},
                "from": {"type": "string", "format": "date-time"},
                "to": {"type": "string", "format": "date-time"},
                "buckets": {
                    "type": "array",
                    "maxItems": 1000,
                    "items": {
                        "type": "object",
                        "required": ["start", "uploads", "bytes"],
                        "properties": {
                            "start": {"type": "string", "format": "date-time"},
                            "uploads": {"type": "integer", "minimum": 0},
                            "bytes": {"type": "integer", "minimum": 0},
                        },
                    },
                },
            },
        },
        "Whoami": {
            "type": "object",
            "required": ["role", "device_id", "expires_at"],
            "properties": {
                "role": {"type": "string", "enum": ["device", "operator", "admin"]},
                "device_id": {"anyOf": [device_id, {"type": "null"}]},
                "expires_at": {"type": ["string", "null"], "format": "date-time"},
            },
        },
    }
