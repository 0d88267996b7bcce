"""What routes take from a request's path, query and headers, checked before any storage call,
and how the OpenAPI document describes each of them."""

from __future__ import annotations

from starlette.requests import Request

from mindproject.api.operation import Parameter
from mindproject.errors import InvalidDeviceId, InvalidParameter, InvalidVersionId
from mindproject.identifiers import (
    CURSOR_PATTERN,
    DEVICE_ID_MAX,
    DEVICE_ID_PATTERN,
    VERSION_PATTERN,
    check_device_id,
    check_version_id,
    decode_cursor,
)

MAX_LIMIT = 1000


def device_id(request: Request) -> str:
    # An encoded slash or backslash would be decoded into the path before routing: refuse it.
    raw_path = request.scope.get("raw_path", b"").lower()
    if b"%2f" in raw_path or b"%5c" in raw_path:
        raise InvalidDeviceId("device ids cannot contain slashes")
    return check_device_id(request.path_params["device_id"])


def version_id(request: Request) -> str:
    return check_version_id(request.path_params["version"])


def limit(request: Request, default: int) -> int:
    raw = request.query_params.get("limit")
    if raw is None:
        return default
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 4) or not 1 <= int(raw) <= MAX_LIMIT:
        raise InvalidParameter(f"limit must be an integer from 1 to {MAX_LIMIT}")
    return int(raw)


def device_cursor(request: Request) -> str | None:
    raw = request.query_params.get("cursor")
    if not raw:
        return None
    try:
        return check_device_id(decode_cursor(raw))
    except InvalidDeviceId:
        raise InvalidParameter("cursor is not one this service issued") from None


def version_cursor(request: Request) -> str | None:
    raw = request.query_params.get("cursor")
    if not raw:
        return None
    try:
        return check_version_id(decode_cursor(raw))
    except InvalidVersionId:
        raise InvalidParameter("cursor is not one this service issued") from None


def idempotency_key(request: Request) -> str | None:
    raw = request.headers.get("idempotency-key")
    if raw is None:
        return None
    try:
        return check_device_id(raw.strip('"'))  # the same safe alphabet as device ids
    except InvalidDeviceId:
        raise InvalidParameter(
            f"Idempotency-Key must be 1-{DEVICE_ID_MAX} characters of A-Z a-z 0-9 . _ : - "
            "(not starting with a dot)"
        ) from None


def prefix(request: Request) -> str:
    raw = request.query_params.get("prefix", "")
    if raw:
        check_device_id(raw)
    return raw


# The parameters above as the OpenAPI document describes them. tests/test_openapi.py checks that
# each route reads exactly the query and header parameters its operation lists.
_DEVICE_ID_SCHEMA = {
    "type": "string",
    "minLength": 1,
    "maxLength": DEVICE_ID_MAX,
    "pattern": f"^{DEVICE_ID_PATTERN}$",
}
DEVICE_ID_PARAM = Parameter(
    "device_id",
    "path",
    _DEVICE_ID_SCHEMA,
    f"1-{DEVICE_ID_MAX} characters of A-Z a-z 0-9 . _ : -, not starting with a dot",
)
VERSION_PARAM = Parameter(
    "version", "path", {"type": "string", "pattern": f"^{VERSION_PATTERN}$"}, "A version id"
)
CURSOR_PARAM = Parameter(
    "cursor",
    "query",
    {"type": "string", "pattern": f"^{CURSOR_PATTERN}$"},
    "next_cursor of the previous page (opaque)",
)
PREFIX_PARAM = Parameter(
    "prefix", "query", _DEVICE_ID_SCHEMA, "Only device ids that start with this"
)
IDEMPOTENCY_KEY_PARAM = Parameter(
    "Idempotency-Key",
    "header",
    _DEVICE_ID_SCHEMA,
    "A retry with the same key stores nothing new and answers the earlier version "
    "(replayed: true, Idempotent-Replayed: true); other bytes under the same key are a 409",
)


def limit_param(default: int) -> Parameter:
    return Parameter(
        "limit",
        "query",
        {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": default},
        "Page size",
    )
