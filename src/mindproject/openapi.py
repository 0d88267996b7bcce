"""The OpenAPI 3.1 description of the HTTP API, served at /api/openapi.json and rendered at /api/.

Written out by hand, next to the routes it describes; tests check that every route is in it and
schemathesis checks the running service against it.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from mindproject import __version__

_DEVICE_ID_PATTERN = r"^[A-Za-z0-9_:\-][A-Za-z0-9._:\-]{0,127}$"
_VERSION_PATTERN = r"^[0-9]{16}-[0-9a-f]{8}$"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*statuses: int) -> dict[str, Any]:
    texts = {
        400: "Invalid input (device id, parameter, body, checksum)",
        401: "Missing, invalid, expired or revoked bearer token",
        403: "The token's role may not do this, or not on this device",
        404: "No such device or upload",
        408: "The request body stopped arriving",
        409: "Idempotency-Key already used for different bytes",
        411: "Neither Content-Length nor chunked encoding",
        413: "Upload larger than the configured maximum",
        415: "Body is neither multipart/form-data nor application/octet-stream",
        416: "Range outside the file",
        429: "Over the device's request rate or uploads in flight (see Retry-After)",
        431: "Request headers too large",
        503: "Storage unavailable",
        507: "Storage full",
    }
    return {str(s): {"$ref": f"#/components/responses/E{s}"} for s in statuses if s in texts} | {
        "default": {"$ref": "#/components/responses/Error"}
    }


# Every call under /api/devices/ and /api/revocations/ is authenticated and may be refused so.
_AUTH = (401, 403, 429, 431)


def _bytes_response(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "headers": {
            "ETag": {"schema": {"type": "string"}},
            "X-Content-SHA256": {"schema": {"type": "string"}},
        },
        "content": {"application/octet-stream": {"schema": {"type": "string"}}},
    }


_DOWNLOAD_PARAMS = [
    {"$ref": "#/components/parameters/encoding"},
    {
        "name": "Range",
        "in": "header",
        "required": False,
        "schema": {"type": "string"},
        "description": "bytes=START-END (raw encoding only)",
    },
]


def _download(summary: str, operation_id: str) -> dict[str, Any]:
    return {
        "summary": summary,
        "operationId": operation_id,
        "parameters": _DOWNLOAD_PARAMS,
        "responses": {
            "200": _bytes_response("The file, base64-encoded or raw"),
            "206": _bytes_response("Part of the raw file"),
            "304": {"description": "Not modified (If-None-Match)"},
        }
        | _errors(400, *_AUTH, 404, 416, 503),
    }


@cache
def openapi_document() -> dict[str, Any]:
    device = {"$ref": "#/components/parameters/device_id"}
    version = {"$ref": "#/components/parameters/version"}
    paths: dict[str, Any] = {
        "/api/devices/": {
            "get": {
                "summary": "List device ids (sorted, paginated)",
                "operationId": "listDevices",
                "parameters": [
                    {"$ref": "#/components/parameters/limit"},
                    {"$ref": "#/components/parameters/cursor"},
                    {
                        "name": "prefix",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "string", "pattern": _DEVICE_ID_PATTERN},
                    },
                ],
                "responses": {"200": _json(_ref("DeviceList"), "A page of device ids")}
                | _errors(400, *_AUTH, 503),
            }
        },
        "/api/devices/{device_id}": {
            "parameters": [device],
            "put": {
                "summary": "Upload a telemetry file (multipart field `file`, or a raw body)",
                "operationId": "upload",
                "parameters": [
                    {
                        "name": "Content-Digest",
                        "in": "header",
                        "required": False,
                        "schema": {"type": "string"},
                        "description": "sha-256=:<base64>: (RFC 9530)",
                    },
                    {
                        "name": "Content-MD5",
                        "in": "header",
                        "required": False,
                        "schema": {"type": "string"},
                    },
                    {
                        "name": "Idempotency-Key",
                        "in": "header",
                        "required": False,
                        "schema": {"type": "string", "pattern": _DEVICE_ID_PATTERN},
                        "description": "A retry with the same key stores nothing new and "
                        "answers the earlier version (replayed: true); other bytes are a 409",
                    },
                ],
                "requestBody": {
                    "required": True,
                    "content": {
                        "multipart/form-data": {
                            "schema": {
                                "type": "object",
                                "required": ["file"],
                                "properties": {"file": {"type": "string", "format": "binary"}},
                            }
                        },
                        "application/octet-stream": {
                            "schema": {"type": "string", "format": "binary"}
                        },
                    },
                },
                "responses": {"200": _json(_ref("UploadResult"), "Stored, durably")}
                | _errors(400, *_AUTH, 408, 409, 411, 413, 415, 503, 507),
            },
            "get": _download(
                "Download the latest upload (base64 by default, or raw)", "downloadLatest"
            ),
            "delete": {
                "summary": "Delete every upload of a device",
                "operationId": "deleteDevice",
                "responses": {"200": _json(_ref("DeviceDeleted"), "Deleted")}
                | _errors(400, *_AUTH, 404, 503),
            },
        },
        "/api/devices/{device_id}/uploads": {
            "parameters": [device],
            "get": {
                "summary": "List a device's uploads, newest first",
                "operationId": "listUploads",
                "parameters": [
                    {"$ref": "#/components/parameters/limit"},
                    {"$ref": "#/components/parameters/cursor"},
                ],
                "responses": {"200": _json(_ref("UploadList"), "A page of uploads")}
                | _errors(400, *_AUTH, 404, 503),
            },
        },
        "/api/devices/{device_id}/uploads/{version}": {
            "parameters": [device, version],
            "get": _download("Download one upload", "downloadUpload"),
            "delete": {
                "summary": "Delete one upload",
                "operationId": "deleteUpload",
                "responses": {"200": _json(_ref("UploadDeleted"), "Deleted")}
                | _errors(400, *_AUTH, 404, 503),
            },
        },
        "/api/revocations/": {
            "get": {
                "summary": "List revoked devices (admin)",
                "operationId": "listRevocations",
                "responses": {"200": _json(_ref("RevocationList"), "Revoked devices")}
                | _errors(*_AUTH, 503),
            }
        },
        "/api/revocations/{device_id}": {
            "parameters": [device],
            "put": {
                "summary": "Revoke every token of a device issued until now (admin)",
                "operationId": "revokeDevice",
                "responses": {"200": _json(_ref("Revocation"), "Revoked")}
                | _errors(400, *_AUTH, 503),
            },
            "delete": {
                "summary": "Lift a device's revocation (admin)",
                "operationId": "unrevokeDevice",
                "responses": {"200": _json(_ref("Revocation"), "Lifted")}
                | _errors(400, *_AUTH, 503),
            },
        },
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics (text format)",
                "operationId": "metrics",
                "security": [],
                "responses": {
                    "200": {
                        "description": "Metrics",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    }
                },
            }
        },
        "/healthz": {
            "get": {
                "summary": "Liveness: the process answers",
                "operationId": "healthz",
                "security": [],
                "responses": {"200": _json(_ref("Status"), "Alive")},
            }
        },
        "/readyz": {
            "get": {
                "summary": "Readiness: storage answers and the process is not shutting down",
                "operationId": "readyz",
                "security": [],
                "responses": {"200": _json(_ref("Status"), "Ready")} | _errors(503),
            }
        },
    }
    upload_info = {
        "type": "object",
        "required": ["device_id", "version", "size", "sha256", "uploaded_at"],
        "properties": {
            "device_id": {"type": "string"},
            "version": {"type": "string", "pattern": _VERSION_PATTERN},
            "size": {"type": "integer", "minimum": 0},
            "sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
            "uploaded_at": {"type": "string", "format": "date-time"},
            "filename": {"type": ["string", "null"]},
            "content_type": {"type": ["string", "null"]},
        },
    }
    error_response = _json(_ref("Error"), "Error")
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "MindProject telemetry upload API",
            "version": __version__,
            "description": "Devices upload telemetry files; operators list and download them.",
        },
        "paths": paths,
        "security": [{"bearer": []}],
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
            },
            "parameters": {
                "device_id": {
                    "name": "device_id",
                    "in": "path",
                    "required": True,
                    "schema": {"type": "string", "pattern": _DEVICE_ID_PATTERN},
                },
                "version": {
                    "name": "version",
                    "in": "path",
                    "required": True,
                    "schema": {"type": "string", "pattern": _VERSION_PATTERN},
                },
                "limit": {
                    "name": "limit",
                    "in": "query",
                    "required": False,
                    "schema": {"type": "integer", "minimum": 1, "maximum": 1000},
                },
                "cursor": {
                    "name": "cursor",
                    "in": "query",
                    "required": False,
                    "schema": {"type": "string"},
                    "description": "next_cursor of the previous page",
                },
                "encoding": {
                    "name": "encoding",
                    "in": "query",
                    "required": False,
                    "schema": {"type": "string", "enum": ["base64", "raw"]},
                },
            },
            "responses": {
                f"E{s}": error_response
                for s in (400, 401, 403, 404, 408, 409, 411, 413, 415, 416, 429, 431, 503, 507)
            }
            | {"Error": error_response},
            "schemas": {
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
                        "TelemetryDataDownloads": {"type": "array", "items": {"type": "string"}},
                        "next_cursor": {"type": ["string", "null"]},
                    },
                },
                "UploadList": {
                    "type": "object",
                    "required": ["device_id", "uploads", "next_cursor"],
                    "properties": {
                        "device_id": {"type": "string"},
                        "uploads": {"type": "array", "items": _ref("UploadInfo")},
                        "next_cursor": {"type": ["string", "null"]},
                    },
                },
                "DeviceDeleted": {
                    "type": "object",
                    "required": ["device_id", "deleted_uploads"],
                    "properties": {
                        "device_id": {"type": "string"},
                        "deleted_uploads": {"type": "integer"},
                    },
                },
                "UploadDeleted": {
                    "type": "object",
                    "required": ["device_id", "version", "deleted"],
                    "properties": {
                        "device_id": {"type": "string"},
                        "version": {"type": "string"},
                        "deleted": {"type": "boolean"},
                    },
                },
                "Status": {"type": "object", "properties": {"status": {"type": "string"}}},
                "Revocation": {
                    "type": "object",
                    "required": ["device_id", "revoked_at"],
                    "properties": {
                        "device_id": {"type": "string"},
                        "revoked_at": {"type": ["string", "null"], "format": "date-time"},
                    },
                },
                "RevocationList": {
                    "type": "object",
                    "required": ["revocations"],
                    "properties": {"revocations": {"type": "array", "items": _ref("Revocation")}},
                },
            },
        },
    }
