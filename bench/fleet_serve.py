#!/usr/bin/env python3
"""`mindproject serve` for the fleet benchmark while the settings do not carry the index yet.

The storage layer takes `index=` (open_storage), but until `Settings` has `MINDPROJECT_INDEX`
and the `MINDPROJECT_SEGMENT_*` fields, `mindproject serve` cannot turn the mode on. This runs
the same uvicorn configuration as mindproject.server.serve (one worker) with an app whose
storage is opened from those environment variables. bench/fleet.py uses it only when
`Settings` lacks an `index` field; otherwise the replicas are plain `mindproject serve`.
"""

from __future__ import annotations

import os
import sys
from typing import Any, cast

import uvicorn

from mindproject.app import create_app
from mindproject.config import load_settings
from mindproject.http_protocol import BoundedProtocol
from mindproject.storage import open_storage


def app() -> Any:
    settings = load_settings()
    storage = open_storage(
        settings.storage,
        fsync=settings.fsync,
        resumable_takeover_seconds=settings.resumable_takeover_seconds,
        index=os.environ["MINDPROJECT_INDEX"],
        segment_window_ms=int(os.environ.get("MINDPROJECT_SEGMENT_WINDOW_MS", "50")),
        segment_max_bytes=int(os.environ.get("MINDPROJECT_SEGMENT_MAX_BYTES", str(8 << 20))),
        segment_max_upload_bytes=int(
            os.environ.get("MINDPROJECT_SEGMENT_MAX_UPLOAD_BYTES", str(256 << 10))
        ),
    )
    return create_app(settings, storage)


def main() -> int:
    settings = load_settings()
    uvicorn.run(
        "fleet_serve:app",
        factory=True,
        app_dir=os.path.dirname(os.path.abspath(__file__)),
        host=settings.host,
        port=settings.port,
        workers=1,
        loop="uvloop",
        http=BoundedProtocol,
        lifespan="on",
        access_log=False,
        log_config=None,
        server_header=False,
        timeout_graceful_shutdown=cast(int, settings.shutdown_grace_seconds),
        timeout_keep_alive=settings.keepalive_seconds,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
