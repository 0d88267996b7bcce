"""The fleet view for operators: device summaries, fleet-wide counts, a device's activity over
time; and `whoami`, which tells a page what its token may do. Operators and admins only (device
tokens get 403), except whoami, which answers any valid token."""

from __future__ import annotations

import math
import re
import time
from datetime import UTC, datetime

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from mindproject.api import caller, params, state
from mindproject.api.operation import Answer, ApiRoute, Operation, Parameter
from mindproject.auth.access import Action
from mindproject.errors import InvalidDeviceId, InvalidParameter
from mindproject.identifiers import check_device_id, decode_cursor, encode_cursor, format_time
from mindproject.storage.base import DeviceSummary

PAGE_SIZE = 100
MAX_BUCKETS = 1000
DEFAULT_SILENT_FOR = "24h"
DEFAULT_BUCKET = "1h"
DEFAULT_ACTIVITY_SECONDS = 7 * 86400
SORTS = ("device_id", "last_upload_at")

_DURATION = re.compile(r"([1-9][0-9]{0,6})([smhd])")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
DURATION_SCHEMA = {"type": "string", "pattern": f"^{_DURATION.pattern}$"}
# The cursor of the last_upload_at order: the microsecond time and the id of the page's last row.
_TIME_CURSOR = re.compile(r"([0-9]{1,17})/(.+)")


def _when(epoch: float | None) -> str | None:
    return None if epoch is None else format_time(datetime.fromtimestamp(epoch, tz=UTC))


def duration(request: Request, name: str, default: str) -> tuple[int, str]:
    """A duration such as 30s, 15m, 6h or 7d: (seconds, as written)."""
    raw = request.query_params.get(name) or default
    match = _DURATION.fullmatch(raw)
    if match is None:
        raise InvalidParameter(f"{name} must be a duration such as 30s, 15m, 6h or 7d")
    return int(match[1]) * _UNIT_SECONDS[match[2]], raw


def moment(request: Request, name: str) -> float | None:
    """An ISO 8601 time (as uploaded_at is written; without an offset it is UTC)."""
    raw = request.query_params.get(name)
    if not raw:
        return None
    try:
        parsed = datetime.fromisoformat(raw)
    except ValueError:
        raise InvalidParameter(
            f"{name} must be an ISO 8601 time such as 2026-12-02T10:00:00Z"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def sort(request: Request) -> str:
    raw = request.query_params.get("sort") or "device_id"
    if raw not in SORTS:
        raise InvalidParameter(f"sort must be one of {', '.join(SORTS)}")
    return raw


def fleet_cursor(request: Request, order: str) -> str | None:
    """The storage's Page.last for this order, from the opaque cursor; 400 if not ours."""
    raw = request.query_params.get("cursor")
    if not raw:
        return None
    last = decode_cursor(raw)
    try:
        if order == "device_id":
            return check_device_id(last)
        match = _TIME_CURSOR.fullmatch(last)
        if match is None:
            raise InvalidDeviceId("not a cursor")
        check_device_id(match[2])
        return last
    except InvalidDeviceId:
        raise InvalidParameter(
            "cursor is not one this service issued (for this sort order)"
        ) from None


def _row(summary: DeviceSummary) -> dict[str, object]:
    return {
        "device_id": summary.device_id,
        "last_upload_at": _when(summary.last_upload_at),
        "uploads": summary.uploads,
        "bytes": summary.bytes,
        "last_size": summary.last_size,
        "revoked": summary.revoked_at is not None,
        "revoked_at": _when(summary.revoked_at),
    }


SILENT_FOR_PARAM = Parameter(
    "silent_for",
    "query",
    DURATION_SCHEMA,
    "Devices whose last upload is older than this (30s, 15m, 6h, 7d) are silent",
)
SORT_PARAM = Parameter(
    "sort",
    "query",
    {"type": "string", "enum": list(SORTS), "default": "device_id"},
    "device_id (ascending) or last_upload_at (oldest first: the most silent devices first)",
)

FLEET_DEVICES = Operation(
    operation_id="fleetDevices",
    summary="Device summaries: last upload, uploads, bytes, revoked (operator, admin; paginated)",
    description=(
        "S3-only storage answers only sort=device_id without silent_for (uploads, bytes and "
        "last_size are null there); the rest needs an index: 501."
    ),
    parameters=(
        params.limit_param(PAGE_SIZE),
        params.CURSOR_PARAM,
        params.PREFIX_PARAM,
        SILENT_FOR_PARAM,
        SORT_PARAM,
    ),
    answers={200: Answer("A page of device summaries", schema="FleetDevices")},
    errors=frozenset({400, 401, 403, 501, 503}),
)


async def fleet_devices(request: Request) -> Response:
    await caller.authorize(request, Action.LIST_DEVICES)
    order = sort(request)
    after = fleet_cursor(request, order)
    silent_before = None
    if request.query_params.get("silent_for"):
        seconds, _ = duration(request, "silent_for", DEFAULT_SILENT_FOR)
        silent_before = time.time() - seconds
    page = await state.storage(request).fleet_devices(
        prefix=params.prefix(request),
        after=after,
        limit=params.limit(request, default=PAGE_SIZE),
        sort=order,
        silent_before=silent_before,
    )
    cursor = encode_cursor(page.last) if page.last else None
    return JSONResponse({"devices": [_row(row) for row in page.items], "next_cursor": cursor})


FLEET_SUMMARY = Operation(
    operation_id="fleetSummary",
    summary="Fleet-wide counts: devices, silent, revoked, uploads and bytes (operator, admin)",
    description="Needs an index (file backend, MINDPROJECT_INDEX): 501 on S3-only storage.",
    parameters=(SILENT_FOR_PARAM,),
    answers={200: Answer("The fleet's counts now", schema="FleetSummary")},
    errors=frozenset({400, 401, 403, 501, 503}),
)


async def fleet_summary(request: Request) -> Response:
    await caller.authorize(request, Action.LIST_DEVICES)
    seconds, written = duration(request, "silent_for", DEFAULT_SILENT_FOR)
    now = time.time()
    summary = await state.storage(request).fleet_summary(now=now, silent_before=now - seconds)
    return JSONResponse(
        {
            "devices": summary.devices,
            "silent_devices": summary.silent_devices,
            "revoked_devices": summary.revoked_devices,
            "uploads_last_hour": summary.uploads_last_hour,
            "bytes_last_hour": summary.bytes_last_hour,
            "uploads_last_day": summary.uploads_last_day,
            "bytes_last_day": summary.bytes_last_day,
            "silent_for": written,
            "at": _when(now),
        }
    )


DEVICE_ACTIVITY = Operation(
    operation_id="deviceActivity",
    summary="Uploads and bytes per time bucket, zeros included (operator, admin)",
    description=(
        f"Default: the last 7 days in 1h buckets. Buckets start at multiples of their width "
        f"(UTC); at most {MAX_BUCKETS} a call."
    ),
    parameters=(
        Parameter("bucket", "query", DURATION_SCHEMA, "Bucket width (30s, 15m, 1h, 1d); 1h"),
        Parameter("from", "query", {"type": "string", "format": "date-time"}, "Start (ISO 8601)"),
        Parameter("to", "query", {"type": "string", "format": "date-time"}, "End (ISO 8601)"),
    ),
    answers={200: Answer("The device's activity", schema="DeviceActivity")},
    errors=frozenset({400, 401, 403, 404, 501, 503}),
)


async def device_activity(request: Request) -> Response:
    device_id = params.device_id(request)
    await caller.authorize(request, Action.LIST_DEVICES)
    width, written = duration(request, "bucket", DEFAULT_BUCKET)
    end = moment(request, "to")
    end = time.time() if end is None else end
    start = moment(request, "from")
    start = end - DEFAULT_ACTIVITY_SECONDS if start is None else start
    if start >= end:
        raise InvalidParameter("from must be before to")
    first = (start // width) * width
    if math.ceil((end - first) / width) > MAX_BUCKETS:
        raise InvalidParameter(
            f"at most {MAX_BUCKETS} buckets a call: widen the bucket or shorten the range"
        )
    buckets = await state.storage(request).device_activity(
        device_id, bucket_seconds=width, start=start, end=end
    )
    return JSONResponse(
        {
            "device_id": device_id,
            "bucket": written,
            "from": _when(start),
            "to": _when(end),
            "buckets": [
                {"start": _when(b.start), "uploads": b.uploads, "bytes": b.bytes} for b in buckets
            ],
        }
    )


WHOAMI = Operation(
    operation_id="whoami",
    summary="The role (and device) of the calling token: what a page may offer",
    answers={200: Answer("Who is calling", schema="Whoami")},
    errors=frozenset({401}),
)


async def whoami(request: Request) -> Response:
    principal = await caller.identify(request)
    return JSONResponse(
        {
            "role": principal.role.value,
            "device_id": principal.device_id,
            "expires_at": _when(principal.expires_at),
        }
    )


routes = [
    ApiRoute("/api/fleet/devices", "GET", fleet_devices, FLEET_DEVICES),
    ApiRoute("/api/fleet/summary", "GET", fleet_summary, FLEET_SUMMARY),
    ApiRoute("/api/devices/{device_id}/activity", "GET", device_activity, DEVICE_ACTIVITY),
    ApiRoute("/api/whoami", "GET", whoami, WHOAMI),
]
