"""The one JSON error shape, `{"error": {"code", "message", "request_id"}}`, as a response.

It sits below everything that answers with errors: the app's exception handlers (api/errors.py),
the middleware (observability.py) and the wire-level protocol (http_protocol.py), which answers
some requests before the app sees them.
"""

from __future__ import annotations

import logging

from starlette.responses import JSONResponse

from mindproject.errors import MindProjectError

log = logging.getLogger("mindproject.errors")


def error_response(
    request_id: str, status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    body = {"error": {"code": code, "message": message, "request_id": request_id}}
    return JSONResponse(body, status_code=status, headers=headers)


def render(exc: MindProjectError, request_id: str) -> JSONResponse:
    if exc.status >= 500:
        log.warning("request failed: %s: %s", exc.code, exc.message)
    return error_response(request_id, exc.status, exc.code, exc.message, exc.headers)
