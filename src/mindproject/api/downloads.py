"""Responses that stream a stored version: base64 (the seed's default) or raw bytes.

Raw downloads support `Range` (one range, 206), `ETag` (the sha256) and `If-None-Match` (304).
"""

from __future__ import annotations

import re

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from mindproject.api.operation import Answer, Header, Operation, Parameter
from mindproject.errors import InvalidParameter, RangeNotSatisfiable
from mindproject.identifiers import VERSION_PATTERN
from mindproject.storage import Storage, UploadInfo
from mindproject.streams import base64_chunks, base64_length

_RANGE = re.compile(r"bytes=([0-9]*)-([0-9]*)")
# A refused Range is quoted back in the error message, at most this long.
_QUOTED_RANGE_CHARS = 64

ENCODING = Parameter(
    "encoding",
    "query",
    {"type": "string", "enum": ["base64", "raw"], "default": "base64"},
    "base64: the file as base64 text (the seed's answer); raw: the bytes",
)
RANGE = Parameter(
    "Range",
    "header",
    {"type": "string"},
    "bytes=START-END, START- or -LENGTH (raw only; one range)",
)
IF_NONE_MATCH = Parameter(
    "If-None-Match", "header", {"type": "string"}, "An ETag from an earlier download: 304 if same"
)


def _etag(info: UploadInfo, encoding: str) -> str:
    return f'"{info.sha256}"' if encoding == "raw" else f'"{info.sha256}-b64"'


def _not_modified(request: Request, etag: str) -> bool:
    header = request.headers.get(IF_NONE_MATCH.name)
    if not header:
        return False
    tags = {tag.strip().removeprefix("W/") for tag in header.split(",")}
    return "*" in tags or etag in tags


def _byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """[start, end) of a single `bytes=` range, None for the whole file (absent or multi-range)."""
    if not header or "," in header:
        return None
    match = _RANGE.fullmatch(header.strip())
    if not match or match.group(1) == match.group(2) == "":
        return None  # not a byte range we understand: RFC 9110 lets us ignore it
    # Positions past any possible file are capped before int(): Python refuses to parse numbers
    # of more than 4,300 digits, and nothing that large can be inside a file anyway.
    first, last = (text if len(text) <= 18 else "9" * 18 for text in match.groups())
    if first == "":
        start, end = max(0, size - int(last)), size
    else:
        start = int(first)
        end = min(size, int(last) + 1) if last else size
    if start >= size or end <= start:
        raise RangeNotSatisfiable(
            f"range {header[:_QUOTED_RANGE_CHARS]} is outside 0-{size - 1}",
            headers={"Content-Range": f"bytes */{size}"},
        )
    return start, end


def download(request: Request, storage: Storage, info: UploadInfo) -> Response:
    encoding = request.query_params.get(ENCODING.name, "base64")
    if encoding not in ("base64", "raw"):
        raise InvalidParameter("encoding must be base64 or raw")
    etag = _etag(info, encoding)
    headers = {
        "ETag": etag,
        "X-Version": info.version,
        "X-Content-SHA256": info.sha256,
        "Cache-Control": "private, no-cache",
    }
    if _not_modified(request, etag):
        return Response(status_code=304, headers=headers)
    if encoding == "base64":
        headers["Content-Length"] = str(base64_length(info.size))
        return StreamingResponse(
            base64_chunks(storage.read(info)),
            media_type="application/octet-stream",
            headers=headers,
        )
    headers["Accept-Ranges"] = "bytes"
    if info.filename:
        headers["Content-Disposition"] = _attachment(info.filename)
    span = _byte_range(request.headers.get(RANGE.name), info.size)
    status = 200
    start, end = 0, info.size
    if span is not None:
        start, end = span
        status = 206
        headers["Content-Range"] = f"bytes {start}-{end - 1}/{info.size}"
    headers["Content-Length"] = str(end - start)
    return StreamingResponse(
        storage.read(info, start, end),
        status_code=status,
        media_type="application/octet-stream",
        headers=headers,
    )


def _attachment(filename: str) -> str:
    from urllib.parse import quote

    ascii_name = filename.encode("ascii", "replace").decode().replace('"', "_").replace("\\", "_")
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(filename)}"


# What download() answers, for the operations that use it.
_ALWAYS = (
    Header("ETag", {"type": "string"}, "The sha256 in quotes (with -b64 for base64)"),
    Header("X-Version", {"type": "string", "pattern": f"^{VERSION_PATTERN}$"}, "The version id"),
    Header("X-Content-SHA256", {"type": "string", "pattern": "^[0-9a-f]{64}$"}, "Of the file"),
    Header("Cache-Control", {"type": "string"}, "private, no-cache"),
)
_RAW_ONLY = (
    Header("Accept-Ranges", {"type": "string"}, "bytes (raw only)", required=False),
    Header(
        "Content-Disposition",
        {"type": "string"},
        "attachment with the upload's file name (raw, when it has one)",
        required=False,
    ),
)
_CONTENT_RANGE = Header("Content-Range", {"type": "string"}, "bytes START-END/SIZE")


def download_operation(operation_id: str, summary: str) -> Operation:
    return Operation(
        operation_id=operation_id,
        summary=summary,
        parameters=(ENCODING, RANGE, IF_NONE_MATCH),
        answers={
            200: Answer(
                "The file, base64 or raw",
                media_type="application/octet-stream",
                headers=(*_ALWAYS, *_RAW_ONLY),
            ),
            206: Answer(
                "Part of the raw file",
                media_type="application/octet-stream",
                headers=(*_ALWAYS, *_RAW_ONLY, _CONTENT_RANGE),
            ),
            304: Answer("Not modified (If-None-Match)", media_type=None, headers=_ALWAYS),
        },
        errors=frozenset({400, 401, 403, 404, 416, 429, 503}),
    )
