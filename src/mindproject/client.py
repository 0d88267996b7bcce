"""A small Python SDK for the HTTP API (standard library only). The CLI uses it too: it speaks
to the server over HTTP only, never to storage."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from mindproject.errors import MindProjectError

DEFAULT_URL = "http://127.0.0.1:5000"


class ApiError(MindProjectError):
    """The server answered with an error; `status` and `code` are the server's."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class Client:
    def __init__(
        self, base_url: str = DEFAULT_URL, token: str | None = None, timeout: float = 60
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.timeout = timeout

    def _call(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        headers: dict[str, str] | None = None,
        query: dict[str, str] | None = None,
    ) -> bytes:
        url = self.base_url + path + ("?" + urllib.parse.urlencode(query) if query else "")
        request = urllib.request.Request(url, data=body, method=method, headers=headers or {})  # noqa: S310 - the operator's own server URL
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310
                return bytes(response.read())
        except urllib.error.HTTPError as exc:
            try:
                error = json.loads(exc.read())["error"]
                raise ApiError(exc.code, error["code"], error["message"]) from None
            except (ValueError, KeyError, TypeError):
                raise ApiError(exc.code, "http_error", str(exc)) from None

    def _json(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        result: dict[str, Any] = json.loads(self._call(method, path, **kwargs))
        return result

    def upload(self, device_id: str, file: Path) -> dict[str, Any]:
        """Upload a file as a raw body (streamed from disk)."""
        with file.open("rb") as handle:
            headers = {
                "Content-Type": "application/octet-stream",
                "Content-Length": str(file.stat().st_size),
                "X-Filename": file.name,
            }
            return self._json("PUT", f"/api/devices/{device_id}", body=handle, headers=headers)

    def list_devices(self, prefix: str = "") -> list[str]:
        devices: list[str] = []
        cursor = None
        while True:
            query = {"prefix": prefix} | ({"cursor": cursor} if cursor else {})
            page = self._json("GET", "/api/devices/", query=query)
            devices.extend(page["TelemetryDataDownloads"])
            cursor = page["next_cursor"]
            if not cursor:
                return devices

    def download(self, device_id: str, version: str | None = None) -> bytes:
        path = f"/api/devices/{device_id}" + (f"/uploads/{version}" if version else "")
        return self._call("GET", path, query={"encoding": "raw"})

    def revoke(self, device_id: str) -> dict[str, Any]:
        return self._json("PUT", f"/api/revocations/{device_id}")

    def unrevoke(self, device_id: str) -> dict[str, Any]:
        return self._json("DELETE", f"/api/revocations/{device_id}")
