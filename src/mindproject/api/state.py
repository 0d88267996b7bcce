"""What routes take from the app's state (set up by app.py's lifespan), typed."""

from __future__ import annotations

from starlette.requests import Request

from mindproject.storage import Storage


def storage(request: Request) -> Storage:
    backend: Storage = request.app.state.storage
    return backend
