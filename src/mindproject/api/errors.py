"""The app's exception handlers: every exception a route raises becomes the one JSON error shape
(mindproject.error_response)."""

from __future__ import annotations

import logging

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from mindproject.error_response import error_response, render
from mindproject.errors import MindProjectError

log = logging.getLogger("mindproject.errors")

_HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 400: "bad_request"}


def request_id_of(request: Request) -> str:
    return str(request.scope.get("state", {}).get("request_id", ""))


async def mindproject_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, MindProjectError)
    return render(exc, request_id_of(request))


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = _HTTP_CODES.get(exc.status_code, "http_error")
    message = {404: "no such route", 405: "method not allowed on this route"}.get(
        exc.status_code, str(exc.detail)
    )
    headers = dict(exc.headers or {})
    return error_response(request_id_of(request), exc.status_code, code, message, headers)


async def unexpected_error(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error", exc_info=exc)
    return error_response(
        request_id_of(request), 500, "internal_error", "internal error; see the server log"
    )


HANDLERS = {
    MindProjectError: mindproject_error,
    HTTPException: http_error,
    Exception: unexpected_error,
}
