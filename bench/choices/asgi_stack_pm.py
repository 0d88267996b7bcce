"""Candidate 1 (and 4, 6): Starlette + python-multipart push parser.

PUT /upload with multipart/form-data; the part named ``file`` is counted and
discarded chunk by chunk as ``request.stream()`` yields it. Nothing is
buffered beyond the parser's own lookbehind.
"""

from __future__ import annotations

from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route


def _disposition_name(value: bytes) -> bytes | None:
    _, params = parse_options_header(value)
    return params.get(b"name")


async def upload(request: Request) -> Response:
    ctype, params = parse_options_header(request.headers.get("content-type", ""))
    boundary = params.get(b"boundary")
    if ctype != b"multipart/form-data" or not boundary:
        return JSONResponse({"error": "expected multipart/form-data"}, status_code=400)

    size = 0
    in_file = False
    found = False
    header_field = bytearray()
    header_value = bytearray()
    headers: dict[bytes, bytes] = {}

    def on_part_begin() -> None:
        nonlocal in_file
        in_file = False
        headers.clear()

    def on_header_field(data: bytes, start: int, end: int) -> None:
        header_field.extend(data[start:end])

    def on_header_value(data: bytes, start: int, end: int) -> None:
        header_value.extend(data[start:end])

    def on_header_end() -> None:
        headers[bytes(header_field).lower()] = bytes(header_value)
        header_field.clear()
        header_value.clear()

    def on_headers_finished() -> None:
        nonlocal in_file, found
        cd = headers.get(b"content-disposition")
        in_file = cd is not None and _disposition_name(cd) == b"file"
        found = found or in_file

    def on_part_data(data: bytes, start: int, end: int) -> None:
        nonlocal size
        if in_file:
            size += end - start  # a real handler would hand data[start:end] to storage

    parser = MultipartParser(
        boundary,
        {
            "on_part_begin": on_part_begin,
            "on_header_field": on_header_field,
            "on_header_value": on_header_value,
            "on_header_end": on_header_end,
            "on_headers_finished": on_headers_finished,
            "on_part_data": on_part_data,
        },
    )
    async for chunk in request.stream():
        if chunk:
            parser.write(chunk)
    parser.finalize()
    if not found:
        return JSONResponse({"error": "missing field 'file'"}, status_code=400)
    return JSONResponse({"size": size})


app = Starlette(routes=[Route("/upload", upload, methods=["PUT", "POST"])])
