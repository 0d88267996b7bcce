"""The client's own exceptions. They do not derive from the server's `MindProjectError`: a
program using the SDK never imports the server's modules, and a server error seen over HTTP is
a different thing from one raised inside the service."""

from __future__ import annotations

from typing import Any


class ClientError(Exception):
    """Base of every error the SDK raises."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ApiError(ClientError):
    """The server answered with an error status (after any retries the policy allows).

    `code` is the server's machine code (`device_not_found`, ...) when the answer had the API's
    JSON error shape, else `http_<status>` (an HTML page from a proxy, say)."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        request_id: str | None,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.request_id = request_id
        self.details = details

    def __str__(self) -> str:
        rid = f", request {self.request_id}" if self.request_id else ""
        return f"{self.status} {self.code}: {self.message}{rid}"


class NetworkError(ClientError):
    """Gave up after the retries: connection refused, DNS, timeouts, connections cut."""


class VerificationError(ClientError):
    """The bytes are not what the server says they are: sha256 or size mismatch."""


class ResponseError(ClientError):
    """A successful status whose body is not what the API promises (not JSON, fields missing)."""
