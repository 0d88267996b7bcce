"""Process lifecycle: readiness turns red as soon as SIGTERM arrives.

uvicorn already handles SIGTERM gracefully (closes the listener, lets in-flight requests finish
within `timeout_graceful_shutdown`, then exits). We chain onto its handler so that `/readyz`
answers 503 from the first moment of the shutdown, in every worker process.
"""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType

log = logging.getLogger("mindproject.lifecycle")

draining = threading.Event()


def watch_for_shutdown() -> None:
    """Chain a readiness flag onto the current SIGTERM/SIGINT handlers (the server's)."""
    if threading.current_thread() is not threading.main_thread():
        return  # in-process test clients run the app in a side thread: no signals there
    for sig in (signal.SIGTERM, signal.SIGINT):
        previous = signal.getsignal(sig)

        def handler(signum: int, frame: FrameType | None, previous: object = previous) -> None:
            if not draining.is_set():
                draining.set()
                log.info(
                    "shutting down: readiness is red, finishing in-flight requests",
                    extra={"signal": signal.Signals(signum).name},
                )
            if callable(previous):
                previous(signum, frame)

        signal.signal(sig, handler)
