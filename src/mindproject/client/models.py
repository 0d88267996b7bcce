"""Typed results: what the API's JSON describes, as dataclasses."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mindproject.client.errors import ResponseError


@dataclass(frozen=True)
class Version:
    """One stored upload of a device."""

    device_id: str
    version: str
    size: int
    sha256: str
    uploaded_at: str
    filename: str | None
    content_type: str | None
    replayed: bool = False

    @classmethod
    def from_json(cls, data: Any) -> Version:
        try:
            return cls(
                device_id=str(data["device_id"]),
                version=str(data["version"]),
                size=int(data["size"]),
                sha256=str(data["sha256"]),
                uploaded_at=str(data["uploaded_at"]),
                filename=data.get("filename"),
                content_type=data.get("content_type"),
                replayed=bool(data.get("replayed", False)),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ResponseError(f"the server's version record is malformed: {exc!r}") from None


@dataclass(frozen=True)
class DevicePage:
    devices: list[str]
    next_cursor: str | None


@dataclass(frozen=True)
class VersionPage:
    versions: list[Version]
    next_cursor: str | None
