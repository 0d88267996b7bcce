"""The one place errors become HTTP responses: `{"error": {"code", "message", "request_id"}}`."""

from __future__ import annotations

import logging

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from mindproject.errors import MindProjectError

log = logging.getLogger("mindproject.errors")

_HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 400: "bad_request"}


def request_id_of(request: Request) -> str:
    return str(request.scope.get("state", {}).get("request_id", ""))


def error_response(
    request_id: str, status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    body = {"error": {"code": code, "message": message, "request_id": request_id}}
    return JSONResponse(body, status_code=status, headers=headers)


def render(exc: MindProjectError, request_id: str) -> JSONResponse:
    if exc.status >= 500:
        log.warning("request failed: %s: %s", exc.code, exc.message)
    return error_response(request_id, exc.status, exc.code, exc.message, exc.headers)


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
