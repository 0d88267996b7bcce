"""The Python SDK of the MindProject API: `Client` (blocking) and `AsyncClient`, on httpx.

It speaks to the server over HTTP only and imports none of the server's modules (no Starlette,
uvicorn or obstore in a device's process). Guide: docs/client.md."""

from mindproject.client.aio import AsyncClient
from mindproject.client.core import MiB
from mindproject.client.errors import (
    ApiError,
    ClientError,
    NetworkError,
    ResponseError,
    VerificationError,
)
from mindproject.client.models import DevicePage, Version, VersionPage
from mindproject.client.retry import RetryPolicy
from mindproject.client.sync import Client

DEFAULT_URL = "http://127.0.0.1:5000"

__all__ = [
    "DEFAULT_URL",
    "ApiError",
    "AsyncClient",
    "Client",
    "ClientError",
    "DevicePage",
    "MiB",
    "NetworkError",
    "ResponseError",
    "RetryPolicy",
    "VerificationError",
    "Version",
    "VersionPage",
]
