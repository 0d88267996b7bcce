"""Runs the app under uvicorn (uvloop + httptools, headers bounded while they arrive), one or
more worker processes.

On SIGTERM (what ECS sends on every deploy) readiness turns red at once (see lifecycle.py), the
listener closes, in-flight requests get up to `shutdown_grace_seconds` to finish, then it exits.
"""

from __future__ import annotations

import logging
import os
import resource
import tempfile
from typing import cast

import uvicorn
from pydantic import SecretStr

from mindproject.config import Settings
from mindproject.http_protocol import BoundedProtocol

log = logging.getLogger("mindproject.server")


def serve(settings: Settings) -> None:
    _raise_fd_limit()
    # Worker processes build their own app from the environment: pass the settings through it.
    for name, value in settings.model_dump().items():
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        if value is not None:
            os.environ[f"MINDPROJECT_{name.upper()}"] = str(value)
    if settings.workers > 1:
        # Each worker records its metrics in files here; /metrics in any worker adds them up.
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="mindproject-metrics-")
    uvicorn.run(
        "mindproject.app:create_app",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        loop="uvloop",
        http=BoundedProtocol,
        lifespan="on",
        access_log=False,
        log_config=None,
        server_header=False,
        # Annotated int, but awaited with asyncio.wait_for, which takes fractions of a second.
        timeout_graceful_shutdown=cast(int, settings.shutdown_grace_seconds),
        timeout_keep_alive=settings.keepalive_seconds,
    )


def _raise_fd_limit() -> None:
    """Each connection holds a file descriptor: allow as many as the hard limit lets us."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):
            return
    log.info("file descriptor limit", extra={"fd_limit": hard})
