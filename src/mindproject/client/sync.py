"""`Client`: the blocking driver of the shared core."""

from __future__ import annotations

import time
from collections.abc import Generator, Iterator
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO

import httpx

from mindproject.client.core import (
    Close,
    Core,
    Emit,
    MiB,
    Op,
    PathSink,
    Progress,
    Read,
    Send,
    Sleep,
    Source,
    Streamed,
    T,
)
from mindproject.client.errors import ResponseError
from mindproject.client.models import DevicePage, Version, VersionPage
from mindproject.client.resumable import default_state_dir
from mindproject.client.retry import RetryPolicy


class Client:
    """The MindProject API over HTTP, blocking. Retries, resumable uploads and verified
    downloads are on by default; `retry` tunes them (`RetryPolicy(attempts=1)`: no retries)."""

    def __init__(
        self,
        url: str,
        token: str | None = None,
        *,
        retry: RetryPolicy | None = None,
        timeout: float = 60.0,
        resumable_threshold: int = 8 * MiB,
        chunk_size: int = 8 * MiB,
        state_dir: Path | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._core = Core(
            url,
            token,
            retry or RetryPolicy(),
            resumable_threshold,
            chunk_size,
            state_dir or default_state_dir(),
        )
        # No redirects: an upload body must not be re-sent somewhere the caller did not name.
        self._http = httpx.Client(timeout=timeout, transport=transport, follow_redirects=False)

    @property
    def url(self) -> str:
        return self._core.base_url

    # -- the driver --
    def _drive(self, op: Op[T]) -> Generator[bytes, None, T]:
        opened: list[Streamed] = []
        value: Any = None
        error: BaseException | None = None
        try:
            while True:
                try:
                    step = op.throw(error) if error is not None else op.send(value)
                except StopIteration as stop:
                    return stop.value  # type: ignore[no-any-return]
                value, error = None, None
                try:
                    if isinstance(step, Send):
                        value = self._send(step, opened)
                    elif isinstance(step, Read):
                        value = next(step.streamed.chunks, b"")
                    elif isinstance(step, Close):
                        step.streamed.response.close()
                        if step.streamed in opened:
                            opened.remove(step.streamed)
                    elif isinstance(step, Sleep):
                        time.sleep(step.seconds)
                    elif isinstance(step, Emit):
                        yield step.data
                except httpx.TransportError as exc:
                    error = exc  # the core decides: retry, resume or give up
                except httpx.HTTPError as exc:  # e.g. a body that does not decode
                    error = ResponseError(f"unreadable answer: {exc}")
        finally:
            op.close()
            for streamed in opened:
                streamed.response.close()

    def _send(self, step: Send, opened: list[Streamed]) -> httpx.Response | Streamed:
        content = step.body.slices() if step.body is not None else None
        request = httpx.Request(step.method, step.url, headers=step.headers, content=content)
        if not step.stream:
            return self._http.send(request)
        response = self._http.send(request, stream=True)
        streamed = Streamed(response, response.iter_bytes())
        opened.append(streamed)
        return streamed

    def _run(self, op: Op[T]) -> T:
        driver = self._drive(op)
        while True:
            try:
                next(driver)
            except StopIteration as stop:
                return stop.value  # type: ignore[no-any-return]

    # -- the API --
    def upload(
        self,
        device: str,
        source: Source,
        *,
        filename: str | None = None,
        content_type: str | None = None,
        progress: Progress | None = None,
    ) -> Version:
        """Upload a file (a path, or a binary file object from its current position). Up to
        `resumable_threshold` bytes: one PUT with an Idempotency-Key; above: tus, resumed from
        the server's offset after any failure, a restart of this process included."""
        return self._run(self._core.upload(device, source, filename, content_type, progress))

    def download(
        self,
        device: str,
        to: str | Path | BinaryIO,
        *,
        version: str | None = None,
        progress: Progress | None = None,
    ) -> Version:
        """Download the latest version (or `version`) into a path or a binary file object,
        resuming with Range after a failure; the sha256 is verified (VerificationError)."""
        if isinstance(to, str | Path):
            sink = PathSink(Path(to))
            try:
                info = self._run(self._core.download(device, version, sink.write, progress))
            except BaseException:
                sink.abort()
                raise
            sink.commit()
            return info
        return self._run(self._core.download(device, version, to.write, progress))

    def iter_bytes(self, device: str, *, version: str | None = None) -> Iterator[bytes]:
        """The version's bytes as they arrive. The sha256 is checked at the end: the last step
        of the iteration raises VerificationError if they were not the server's."""
        driver = self._drive(self._core.download(device, version, None, None))
        try:
            yield from driver
        finally:
            driver.close()

    def latest(self, device: str) -> Version:
        return self._run(self._core.latest(device))

    def get(self, device: str, version: str) -> Version:
        return self._run(self._core.get(device, version))

    def devices_page(
        self, prefix: str = "", cursor: str | None = None, limit: int | None = None
    ) -> DevicePage:
        return self._run(self._core.devices_page(prefix, cursor, limit))

    def devices(self, prefix: str = "") -> Iterator[str]:
        cursor: str | None = None
        while True:
            page = self.devices_page(prefix, cursor)
            yield from page.devices
            if not page.next_cursor:
                return
            cursor = page.next_cursor

    def history_page(
        self, device: str, cursor: str | None = None, limit: int | None = None
    ) -> VersionPage:
        return self._run(self._core.history_page(device, cursor, limit))

    def history(self, device: str) -> Iterator[Version]:
        cursor: str | None = None
        while True:
            page = self.history_page(device, cursor)
            yield from page.versions
            if not page.next_cursor:
                return
            cursor = page.next_cursor

    def delete_device(self, device: str) -> int:
        return self._run(self._core.delete_device(device))

    def delete_version(self, device: str, version: str) -> None:
        self._run(self._core.delete_version(device, version))

    def revoke(self, device: str) -> dict[str, Any]:
        return self._run(self._core.revocation("PUT", device))

    def unrevoke(self, device: str) -> dict[str, Any]:
        return self._run(self._core.revocation("DELETE", device))

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
