"""Progress bars for transfers (rich): on stderr, only when stderr is a terminal and not
`--quiet`, with the rate and the time left. Elsewhere a no-op, so logs and pipes stay clean."""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

Callback = Callable[[int, int], None]


class Bars:
    """One bar per transfer; the SDK's `progress(done, total)` callbacks drive them (from any
    thread: `--parallel` uploads report from worker threads)."""

    def __init__(self, progress: Any | None) -> None:
        self._progress = progress
        self._lock = threading.Lock()

    def say(self, line: str) -> None:
        """A result line (stdout). On a terminal with bars live, printed above them by rich, so
        the two do not overwrite each other."""
        if self._progress is not None and sys.stdout.isatty():
            self._progress.console.print(line, markup=False, highlight=False)
        else:
            sys.stdout.write(line + "\n")

    def callback(self, label: str) -> Callback | None:
        if self._progress is None:
            return None
        progress = self._progress
        with self._lock:
            task = progress.add_task(label, total=None)

        def update(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total if total >= 0 else None)

        return update


@contextmanager
def bars(quiet: bool) -> Iterator[Bars]:
    if quiet or not sys.stderr.isatty():
        yield Bars(None)
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(binary_units=True),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=False,
        # Our stdout is data (JSON, file bytes): never let rich reroute it.
        redirect_stdout=False,
        redirect_stderr=False,
    )
    with progress:
        yield Bars(progress)
