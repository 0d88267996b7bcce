"""Background uploaders and the integrity check shared by the fault tests."""

from __future__ import annotations

import hashlib
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import httpx


@dataclass
class Attempt:
    device: str
    sha256: str
    size: int
    started: float
    finished: float = 0.0
    status: int | None = None  # None: no HTTP answer (connection cut, timeout)
    body: Any = None
    error: str = ""

    @property
    def acked(self) -> bool:
        return self.status == 200


class Uploader:
    """Threads that each upload fresh random payloads to fresh device ids until stopped.

    Bounded: at most `limit` uploads in all and `max_seconds` of running time.
    """

    def __init__(
        self,
        base_url: str,
        headers: dict[str, str],
        prefix: str,
        threads: int = 4,
        limit: int = 2000,
        max_seconds: float = 120,
        sizes: tuple[int, ...] = (1024, 4096, 65536),
    ) -> None:
        self.base_url = base_url
        self.headers = headers
        self.prefix = prefix
        self.threads = threads
        self.limit = limit
        self.max_seconds = max_seconds
        self.sizes = sizes
        self.attempts: list[Attempt] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._workers: list[threading.Thread] = []
        self._count = 0

    def __enter__(self) -> Uploader:
        deadline = time.monotonic() + self.max_seconds
        for t in range(self.threads):
            worker = threading.Thread(target=self._run, args=(t, deadline), daemon=True)
            worker.start()
            self._workers.append(worker)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        for worker in self._workers:
            worker.join(timeout=120)

    def _next(self) -> int | None:
        with self._lock:
            if self._count >= self.limit:
                return None
            self._count += 1
            return self._count

    def _run(self, tid: int, deadline: float) -> None:
        with httpx.Client(base_url=self.base_url, headers=self.headers, timeout=60) as client:
            while not self._stop.is_set() and time.monotonic() < deadline:
                n = self._next()
                if n is None:
                    return
                payload = os.urandom(self.sizes[n % len(self.sizes)])
                attempt = Attempt(
                    f"{self.prefix}-{n:05d}",
                    hashlib.sha256(payload).hexdigest(),
                    len(payload),
                    time.monotonic(),
                )
                try:
                    resp = client.put(
                        f"/api/devices/{attempt.device}", files={"file": ("t.bin", payload)}
                    )
                    attempt.status = resp.status_code
                    try:
                        attempt.body = resp.json()
                    except ValueError:
                        attempt.body = resp.text[:300]
                except httpx.HTTPError as exc:
                    attempt.error = repr(exc)
                attempt.finished = time.monotonic()
                with self._lock:
                    self.attempts.append(attempt)

    def snapshot(self) -> list[Attempt]:
        with self._lock:
            return list(self.attempts)

    def acked_count(self) -> int:
        return sum(1 for a in self.snapshot() if a.acked)

    def failures_since(self, t: float) -> list[Attempt]:
        return [a for a in self.snapshot() if a.started >= t and not a.acked]

    def acked_since(self, t: float) -> int:
        return sum(1 for a in self.snapshot() if a.started > t and a.acked)


def error_shape(body: object) -> bool:
    """The API's one JSON error shape: {"error": {"code", "message", "request_id"}}."""
    if not isinstance(body, dict) or not isinstance(body.get("error"), dict):
        return False
    return {"code", "message", "request_id"} <= set(body["error"])


def _outcome_unknown(a: Attempt) -> bool:
    """Answered "commit_outcome_unknown": the index went away after the commit was sent, so the
    upload may be stored, as the answer says (only a retry with its key settles it)."""
    error = a.body.get("error") if isinstance(a.body, dict) else None
    return isinstance(error, dict) and error.get("code") == "commit_outcome_unknown"


def verify_integrity(
    base_url: str, headers: dict[str, str], attempts: list[Attempt], *, strict: bool = False
) -> None:
    """Every acknowledged upload downloads with its sha256; an unacknowledged one is either
    absent (404) or complete (the answer was lost after the commit): never partial. `strict`:
    one answered with an error is absent too (the client was told it failed; only an upload
    whose answer never came, or that was answered commit_outcome_unknown, may have been
    stored)."""

    def check(client: httpx.Client, a: Attempt) -> str | None:
        if a.acked and a.body["sha256"] != a.sha256:
            return f"{a.device}: acknowledged with sha256 {a.body['sha256']}, sent {a.sha256}"
        resp = client.get(f"/api/devices/{a.device}", params={"encoding": "raw"})
        if resp.status_code == 200:
            if hashlib.sha256(resp.content).hexdigest() != a.sha256:
                return f"{a.device}: stored {len(resp.content)} B whose sha256 differs"
            if strict and not a.acked and a.status is not None and not _outcome_unknown(a):
                return f"{a.device}: answered {a.status}, yet stored and visible"
        elif a.acked or resp.status_code != 404:
            return f"{a.device}: acked={a.acked} but GET answered {resp.status_code}"
        return None

    with (
        httpx.Client(base_url=base_url, headers=headers, timeout=60) as client,
        ThreadPoolExecutor(8) as pool,
    ):
        problems = [p for p in pool.map(lambda a: check(client, a), attempts) if p]
    assert not problems, "\n".join(problems[:20])


def summarize(attempts: list[Attempt]) -> dict[str, int]:
    out: dict[str, int] = {}
    for a in attempts:
        key = str(a.status) if a.status is not None else a.error.split("(")[0] or "error"
        out[key] = out.get(key, 0) + 1
    return out
