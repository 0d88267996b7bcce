"""`/metrics` in the Prometheus text format (docs/metrics.md)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from mindproject.api.operation import Answer, ApiRoute, Operation
from mindproject.metrics import exposition

METRICS = Operation(
    operation_id="metrics",
    summary="Prometheus metrics (text format)",
    answers={200: Answer("Metrics", media_type="text/plain")},
    errors=frozenset(),
    authenticated=False,
)


async def metrics(request: Request) -> Response:
    body, content_type = exposition()
    return Response(body, media_type=content_type)


routes = [ApiRoute("/metrics", "GET", metrics, METRICS)]
