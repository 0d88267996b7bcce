"""Prometheus metrics, named for what they count (docs/metrics.md lists each one).

With several worker processes, `serve` points PROMETHEUS_MULTIPROC_DIR at a fresh folder before
the workers start, and /metrics adds up every worker's values.
"""

from __future__ import annotations

import os
from typing import Any

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
    "Uploads by path (put, resumable, direct) and outcome: stored, replayed (an "
    "Idempotency-Key's earlier version), rejected (4xx), aborted (client gone), failed (5xx)",
    ["path", "outcome"],
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
