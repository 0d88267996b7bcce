"""Turn an upload request into a measured byte stream: multipart field `file` or a raw body."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass

from starlette.requests import Request

from mindproject.api.operation import Parameter
from mindproject.errors import (
    BadRequest,
    ClientDisconnected,
    LengthRequired,
    PayloadTooLarge,
    RequestTimeout,
    UnsupportedMediaType,
)
from mindproject.multipart import (
    FILE_FIELD,
    MAX_OTHER_FIELDS_BYTES,
    MultipartFile,
    boundary_of,
    clean_filename,
)
from mindproject.streams import ExpectedDigests, MeasuredStream

RAW_TYPE = "application/octet-stream"
# What `curl --data-binary @f` and `wget --body-file=f` send by default: never the file's own type.
FORM_DEFAULT_TYPES = ("application/x-www-form-urlencoded",)
MEDIA_TYPE = re.compile(r"[a-z0-9][a-z0-9!#$&^_.+-]{0,63}/[a-z0-9][a-z0-9!#$&^_.+-]{0,63}")

CONTENT_DIGEST = Parameter(
    "Content-Digest",
    "header",
    {"type": "string"},
    "sha-256=:<base64>: or sha-512=:<base64>: (RFC 9530), of the file: verified, 400 if not",
)
CONTENT_MD5 = Parameter(
    "Content-MD5", "header", {"type": "string"}, "base64 MD5 of the file: verified, 400 if not"
)
X_FILENAME = Parameter(
    "X-Filename", "header", {"type": "string"}, "The file's name, for a raw (not multipart) body"
)
# The body as the OpenAPI document describes it.
UPLOAD_BODY = {
    "required": True,
    "description": "The file: a multipart form with a `file` field, or the raw bytes in any "
    "other media type (kept as the version's content type; X-Filename names it)",
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": [FILE_FIELD],
                "properties": {FILE_FIELD: {"type": "string", "format": "binary"}},
            }
        },
        "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
        "*/*": {"schema": {"type": "string", "format": "binary"}},
    },
}
# A multipart body is the file plus boundaries, part headers and small fields: the exact limit is
# enforced on the file bytes while streaming; Content-Length is checked with this much slack.
ENVELOPE_ALLOWANCE = MAX_OTHER_FIELDS_BYTES + 16 * 1024


@dataclass
class UploadBody:
    stream: MeasuredStream
    filename: str | None
    content_type: str | None


async def socket_chunks(request: Request, idle_seconds: float) -> AsyncIterator[bytes]:
    """The body as it arrives; a client silent for `idle_seconds` mid-body is cut off (408)."""
    receive = request.receive
    while True:
        try:
            async with asyncio.timeout(idle_seconds):
                message = await receive()
        except TimeoutError:
            raise RequestTimeout(f"no body bytes for {idle_seconds:g} s") from None
        if message["type"] == "http.disconnect":
            raise ClientDisconnected("the client disconnected during the upload")
        chunk = message.get("body", b"")
        if chunk:
            yield chunk
        if not message.get("more_body", False):
            return


def declared_length(request: Request, max_bytes: int) -> int | None:
    """The Content-Length, refused early when even the envelope cannot make it fit."""
    raw = request.headers.get("content-length")
    if raw is None:
        if "chunked" not in request.headers.get("transfer-encoding", "").lower():
            raise LengthRequired("send Content-Length or Transfer-Encoding: chunked")
        return None
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 19):
        raise BadRequest("Content-Length must be a non-negative integer of at most 19 digits")
    length = int(raw)
    if length > max_bytes:
        raise PayloadTooLarge(f"upload exceeds the maximum of {max_bytes} bytes")
    return length


async def read_upload(request: Request, max_bytes: int, body_timeout: float) -> UploadBody:
    """Check the request's headers and start reading its body; nothing is stored here."""
    content_type = request.headers.get("content-type", "")
    media_type = content_type.partition(";")[0].strip().lower()
    is_form = media_type == "multipart/form-data"
    length = declared_length(request, max_bytes + (ENVELOPE_ALLOWANCE if is_form else 0))
    expected = ExpectedDigests.from_headers(
        request.headers.get(CONTENT_DIGEST.name), request.headers.get(CONTENT_MD5.name)
    )
    if is_form:
        form = MultipartFile(socket_chunks(request, body_timeout), boundary_of(content_type))
        await form.start()
        # The size limit applies to the file; the form's envelope adds a few hundred bytes.
        stream = MeasuredStream(form, max_bytes=max_bytes, expected=expected)
        return UploadBody(stream, form.filename, form.content_type)
    if media_type.startswith("multipart/"):
        # An envelope around parts, not a file: storing it would keep the boundaries.
        raise UnsupportedMediaType(
            "send multipart/form-data with a 'file' field, or the file itself as the body"
        )
    stream = MeasuredStream(
        socket_chunks(request, body_timeout),
        max_bytes=max_bytes,
        expected=expected,
        declared_length=length,
    )
    filename = request.headers.get(X_FILENAME.name, "").encode("latin-1", errors="replace")
    return UploadBody(stream, clean_filename(filename), stored_type(media_type))


def stored_type(media_type: str) -> str | None:
    """The content type kept for a raw body: as sent when it is a plain `type/subtype`, but
    `application/octet-stream` for a form default or anything malformed."""
    if not media_type:
        return None
    if media_type in FORM_DEFAULT_TYPES or not MEDIA_TYPE.fullmatch(media_type):
        return RAW_TYPE
    return media_type
