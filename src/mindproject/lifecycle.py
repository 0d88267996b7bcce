"""Process lifecycle: on SIGTERM, readiness turns red first, then the server drains and exits.

uvicorn already handles SIGTERM gracefully (closes the listener, lets in-flight requests finish
within `timeout_graceful_shutdown`, then exits). We chain onto its handler: `/readyz` answers 503
from the first moment, and for `shutdown_drain_seconds` the listener stays open (new requests
are still served) so that a load balancer polling readiness sees red and stops sending before
connections are refused. Then uvicorn's shutdown runs. A second signal skips the wait.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from types import FrameType

log = logging.getLogger("mindproject.lifecycle")

draining = threading.Event()


def watch_for_shutdown(drain_seconds: float) -> None:
    """Chain the readiness flag and the drain delay onto the server's SIGTERM/SIGINT handlers."""
    if threading.current_thread() is not threading.main_thread():
        return  # in-process test clients run the app in a side thread: no signals there
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        previous = signal.getsignal(sig)

        def handler(signum: int, frame: FrameType | None, previous: object = previous) -> None:
            if not callable(previous):
                return
            if draining.is_set() or drain_seconds <= 0:
                draining.set()
                previous(signum, frame)
                return
            draining.set()
            log.info(
                "shutting down: readiness is red; closing the listener in %s s, then finishing "
                "in-flight requests",
                drain_seconds,
                extra={"signal": signal.Signals(signum).name},
            )
            # call_soon_threadsafe is the signal-safe way into the loop.
            loop.call_soon_threadsafe(loop.call_later, drain_seconds, previous, signum, frame)

        signal.signal(sig, handler)
