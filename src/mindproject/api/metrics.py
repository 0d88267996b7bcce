"""`/metrics` in the Prometheus text format (docs/metrics.md)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from mindproject.metrics import exposition


async def metrics(request: Request) -> Response:
    body, content_type = exposition()
    return Response(body, media_type=content_type)


routes = [Route("/metrics", metrics, methods=["GET"])]
