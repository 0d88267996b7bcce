"""Prometheus metrics, named for what they count (docs/metrics.md lists each one).

With several worker processes, `serve` points PROMETHEUS_MULTIPROC_DIR at a fresh folder before
the workers start, and /metrics adds up every worker's values.
"""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client import values as _values
from prometheus_client.multiprocess import MultiProcessCollector

from mindproject.errors import MindProjectError
from mindproject.storage.base import Page, Storage, UploadInfo, UploadSource

R = TypeVar("R")

if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    # Multiprocess values ask the kernel for the process id on every update, to notice a fork;
    # uvicorn spawns its workers (no fork after this import), so the id is read once. Set before
    # the metrics below are made: they take their value class when created.
    _PID = os.getpid()
    _values.ValueClass = _values.MultiProcessValue(process_identifier=lambda: _PID)  # type: ignore[no-untyped-call]

REQUESTS = Counter(
    "mindproject_http_requests_total", "HTTP requests answered", ["route", "method", "status"]
)
REQUEST_SECONDS = Histogram(
    "mindproject_http_request_duration_seconds",
    "Time from request start to the end of the response",
    ["route", "method"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)
RECEIVED_BYTES = Counter(
    "mindproject_http_received_bytes_total", "Request body bytes received", ["route"]
)
SENT_BYTES = Counter("mindproject_http_sent_bytes_total", "Response body bytes sent", ["route"])
UPLOADS = Counter(
    "mindproject_uploads_total",
    "Uploads by outcome: stored, replayed (an Idempotency-Key's earlier version), "
    "rejected (4xx), aborted (client gone), failed (5xx)",
    ["outcome"],
)
STORAGE_SECONDS = Histogram(
    "mindproject_storage_operation_duration_seconds",
    "Time spent in storage operations",
    ["operation"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5, 30, 300),
)
STORAGE_ERRORS = Counter(
    "mindproject_storage_errors_total", "Storage operations that failed", ["operation", "code"]
)


def exposition() -> tuple[bytes, str]:
    """The text format of every metric, summed over worker processes when there are several."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


def upload_outcome(exc: BaseException | None) -> str:
    if exc is None:
        return "stored"
    if isinstance(exc, MindProjectError) and exc.status == 499:
        return "aborted"
    if isinstance(exc, MindProjectError) and exc.status < 500:
        return "rejected"
    return "failed"


class InstrumentedStorage(Storage):
    """Times every storage operation and counts its failures; delegates the work."""

    def __init__(self, inner: Storage) -> None:
        self.inner = inner

    async def _timed(self, operation: str, call: Callable[[], Awaitable[R]]) -> R:
        started = time.perf_counter()
        try:
            return await call()
        except MindProjectError as exc:
            if exc.status >= 500:
                STORAGE_ERRORS.labels(operation, exc.code).inc()
            raise
        finally:
            STORAGE_SECONDS.labels(operation).observe(time.perf_counter() - started)

    async def save(
        self,
        device_id: str,
        version: str,
        source: UploadSource,
        *,
        filename: str | None,
        content_type: str | None,
        idempotency_key: str | None = None,
    ) -> UploadInfo:
        return await self._timed(
            "save",
            lambda: self.inner.save(
                device_id,
                version,
                source,
                filename=filename,
                content_type=content_type,
                idempotency_key=idempotency_key,
            ),
        )

    async def find_by_key(self, device_id: str, idempotency_key: str) -> UploadInfo | None:
        return await self._timed(
            "find_by_key", lambda: self.inner.find_by_key(device_id, idempotency_key)
        )

    async def latest(self, device_id: str) -> UploadInfo:
        return await self._timed("latest", lambda: self.inner.latest(device_id))

    async def get(self, device_id: str, version: str) -> UploadInfo:
        return await self._timed("get", lambda: self.inner.get(device_id, version))

    async def read(
        self, info: UploadInfo, start: int = 0, end: int | None = None
    ) -> AsyncIterator[bytes]:
        started = time.perf_counter()
        try:
            async for chunk in self.inner.read(info, start, end):
                yield chunk
        except MindProjectError as exc:
            STORAGE_ERRORS.labels("read", exc.code).inc()
            raise
        finally:
            STORAGE_SECONDS.labels("read").observe(time.perf_counter() - started)

    async def list_devices(self, *, prefix: str, after: str | None, limit: int) -> Page[str]:
        return await self._timed(
            "list_devices", lambda: self.inner.list_devices(prefix=prefix, after=after, limit=limit)
        )

    async def list_uploads(
        self, device_id: str, *, after: str | None, limit: int
    ) -> Page[UploadInfo]:
        return await self._timed(
            "list_uploads", lambda: self.inner.list_uploads(device_id, after=after, limit=limit)
        )

    async def delete_device(self, device_id: str) -> int:
        return await self._timed("delete_device", lambda: self.inner.delete_device(device_id))

    async def delete_upload(self, device_id: str, version: str) -> None:
        await self._timed("delete_upload", lambda: self.inner.delete_upload(device_id, version))

    async def list_revocations(self) -> dict[str, float]:
        return await self._timed("list_revocations", self.inner.list_revocations)

    async def set_revocation(self, device_id: str, revoked_at: float | None) -> None:
        await self._timed(
            "set_revocation", lambda: self.inner.set_revocation(device_id, revoked_at)
        )

    async def check(self) -> None:
        await self._timed("check", self.inner.check)

    async def close(self) -> None:
        await self.inner.close()


# The `method` label takes these; the parser accepts some 35 more, folded into "other" so that a
# client cannot mint new series.
KNOWN_METHODS = frozenset({"GET", "HEAD", "PUT", "POST", "PATCH", "DELETE", "OPTIONS"})

# Labelled children, looked up once: `.labels()` costs more than the increment itself.
_request_children: dict[tuple[str, str, int], tuple[Any, Any, Any, Any]] = {}


def observe_request(
    route: str, method: str, status: int, seconds: float, received: int, sent: int
) -> None:
    if method not in KNOWN_METHODS:
        method = "other"
    key = (route, method, status)
    children = _request_children.get(key)
    if children is None:
        children = (
            REQUESTS.labels(route, method, str(status)),
            REQUEST_SECONDS.labels(route, method),
            RECEIVED_BYTES.labels(route),
            SENT_BYTES.labels(route),
        )
        _request_children[key] = children
    requests, latency, received_bytes, sent_bytes = children
    requests.inc()
    latency.observe(seconds)
    if received:
        received_bytes.inc(received)
    if sent:
        sent_bytes.inc(sent)
