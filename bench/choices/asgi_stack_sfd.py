"""Candidate 2: Starlette + streaming-form-data (Cython parser) with a counting target."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from streaming_form_data import StreamingFormDataParser
from streaming_form_data.targets import BaseTarget


class CountingTarget(BaseTarget):
    """Counts and discards the part's bytes (stand-in for a storage writer)."""

    def __init__(self) -> None:
        super().__init__()
        self.size = 0
        self.seen = False

    def on_start(self) -> None:
        self.seen = True

    def on_data_received(self, chunk: bytes) -> None:
        self.size += len(chunk)


async def upload(request: Request) -> Response:
    try:
        parser = StreamingFormDataParser({"Content-Type": request.headers.get("content-type", "")})
    except Exception:
        return JSONResponse({"error": "expected multipart/form-data"}, status_code=400)
    target = CountingTarget()
    parser.register("file", target)
    async for chunk in request.stream():
        if chunk:
            parser.data_received(chunk)
    if not target.seen:
        return JSONResponse({"error": "missing field 'file'"}, status_code=400)
    return JSONResponse({"size": target.size})


app = Starlette(routes=[Route("/upload", upload, methods=["PUT", "POST"])])
