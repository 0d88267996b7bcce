"""CPU and resident memory of process trees, read from /proc (Linux only).

A server is measured as its whole tree (master, workers, their children), so that a
pre-forking server and a single process compare fairly.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
MiB = 1024 * 1024


def _children_map() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        kids.setdefault(ppid, []).append(int(entry))
    return kids


def tree_pids(roots: list[int]) -> list[int]:
    kids = _children_map()
    out: list[int] = []
    todo = list(roots)
    while todo:
        pid = todo.pop()
        if Path(f"/proc/{pid}").exists():
            out.append(pid)
        todo.extend(kids.get(pid, []))
    return out


def cpu_seconds(pids: list[int]) -> float:
    """utime+stime (+ reaped children's) of the given processes, in seconds."""
    ticks = 0
    for pid in pids:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        ticks += sum(int(x) for x in fields[11:15])  # utime stime cutime cstime
    return ticks / CLK_TCK


def rss_bytes(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        try:
            total += int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE
        except OSError:
            continue
    return total


class Meter:
    """CPU and memory of a set of process trees over a measured interval."""

    def __init__(self, roots: Callable[[], list[int]], interval: float = 0.02) -> None:
        self.roots = roots
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.idle_rss = 0
        self.cpu0 = 0.0
        self.cpu = 0.0

    def __enter__(self) -> Meter:
        pids = tree_pids(self.roots())
        self.idle_rss = rss_bytes(pids)
        self.peak = self.idle_rss
        self.cpu0 = cpu_seconds(pids)
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        n = 0
        pids = tree_pids(self.roots())
        while not self._stop.wait(self.interval):
            n += 1
            if n % 25 == 0:
                pids = tree_pids(self.roots())
            self.peak = max(self.peak, rss_bytes(pids))

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join()
        pids = tree_pids(self.roots())
        self.peak = max(self.peak, rss_bytes(pids))
        self.cpu = cpu_seconds(pids) - self.cpu0

    @property
    def peak_above_idle(self) -> int:
        return self.peak - self.idle_rss
