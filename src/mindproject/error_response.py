"""The one JSON error shape, `{"error": {"code", "message", "request_id"}}` (plus `details` for
the few errors a client recovers from with facts, such as the offset of a resumable upload).

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
    request_id: str,
    status: int,
    code: str,
    message: str,
    headers: dict[str, str] | None = None,
    details: dict[str, object] | None = None,
) -> JSONResponse:
    error: dict[str, object] = {"code": code, "message": message, "request_id": request_id}
    if details:
        error["details"] = details  # only where a client needs facts to recover (docs/api.md)
    return JSONResponse({"error": error}, status_code=status, headers=headers)


def render(exc: MindProjectError, request_id: str) -> JSONResponse:
    if exc.status >= 500:
        log.warning("request failed: %s: %s", exc.code, exc.message)
    return error_response(request_id, exc.status, exc.code, exc.message, exc.headers, exc.details)
