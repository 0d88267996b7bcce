"""`AsyncClient`: the asyncio (or trio: anyio sleeps) driver of the shared core. File reads
and writes happen in the event loop, a chunk at a time; they are small beside the network."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO

import anyio
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


class _Result:
    value: Any = None


class AsyncClient:
    """The same API as `Client`, as coroutines and async iterators (`async with`)."""

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
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._core = Core(
            url,
            token,
            retry or RetryPolicy(),
            resumable_threshold,
            chunk_size,
            state_dir or default_state_dir(),
        )
        self._http = httpx.AsyncClient(timeout=timeout, transport=transport, follow_redirects=False)

    @property
    def url(self) -> str:
        return self._core.base_url

    # -- the driver --
    async def _drive(self, op: Op[Any], result: _Result) -> AsyncGenerator[bytes, None]:
        opened: list[Streamed] = []
        value: Any = None
        error: BaseException | None = None
        try:
            while True:
                try:
                    step = op.throw(error) if error is not None else op.send(value)
                except StopIteration as stop:
                    result.value = stop.value
                    return
                value, error = None, None
                try:
                    if isinstance(step, Send):
                        value = await self._send(step, opened)
                    elif isinstance(step, Read):
                        value = await anext(step.streamed.chunks, b"")
                    elif isinstance(step, Close):
                        await step.streamed.response.aclose()
                        if step.streamed in opened:
                            opened.remove(step.streamed)
                    elif isinstance(step, Sleep):
                        await anyio.sleep(step.seconds)
                    elif isinstance(step, Emit):
                        yield step.data
                except httpx.TransportError as exc:
                    error = exc  # the core decides: retry, resume or give up
                except httpx.HTTPError as exc:  # e.g. a body that does not decode
                    error = ResponseError(f"unreadable answer: {exc}")
        finally:
            op.close()
            for streamed in opened:
                await streamed.response.aclose()

    async def _send(self, step: Send, opened: list[Streamed]) -> httpx.Response | Streamed:
        content = step.body.aslices() if step.body is not None else None
        request = httpx.Request(step.method, step.url, headers=step.headers, content=content)
        if not step.stream:
            return await self._http.send(request)
        response = await self._http.send(request, stream=True)
        streamed = Streamed(response, response.aiter_bytes())
        opened.append(streamed)
        return streamed

    async def _run(self, op: Op[T]) -> T:
        result = _Result()
        async for _ in self._drive(op, result):
            pass  # only iter_bytes emits
        return result.value  # type: ignore[no-any-return]

    # -- the API --
    async def upload(
        self,
        device: str,
        source: Source,
        *,
        filename: str | None = None,
        content_type: str | None = None,
        progress: Progress | None = None,
    ) -> Version:
        return await self._run(self._core.upload(device, source, filename, content_type, progress))

    async def download(
        self,
        device: str,
        to: str | Path | BinaryIO,
        *,
        version: str | None = None,
        progress: Progress | None = None,
    ) -> Version:
        if isinstance(to, str | Path):
            sink = PathSink(Path(to))
            try:
                info = await self._run(self._core.download(device, version, sink.write, progress))
            except BaseException:
                sink.abort()
                raise
            sink.commit()
            return info
        return await self._run(self._core.download(device, version, to.write, progress))

    async def iter_bytes(self, device: str, *, version: str | None = None) -> AsyncIterator[bytes]:
        driver = self._drive(self._core.download(device, version, None, None), _Result())
        try:
            async for piece in driver:
                yield piece
        finally:
            await driver.aclose()

    async def latest(self, device: str) -> Version:
        return await self._run(self._core.latest(device))

    async def get(self, device: str, version: str) -> Version:
        return await self._run(self._core.get(device, version))

    async def devices_page(
        self, prefix: str = "", cursor: str | None = None, limit: int | None = None
    ) -> DevicePage:
        return await self._run(self._core.devices_page(prefix, cursor, limit))

    async def devices(self, prefix: str = "") -> AsyncIterator[str]:
        cursor: str | None = None
        while True:
            page = await self.devices_page(prefix, cursor)
            for device in page.devices:
                yield device
            if not page.next_cursor:
                return
            cursor = page.next_cursor

    async def history_page(
        self, device: str, cursor: str | None = None, limit: int | None = None
    ) -> VersionPage:
        return await self._run(self._core.history_page(device, cursor, limit))

    async def history(self, device: str) -> AsyncIterator[Version]:
        cursor: str | None = None
        while True:
            page = await self.history_page(device, cursor)
            for version in page.versions:
                yield version
            if not page.next_cursor:
                return
            cursor = page.next_cursor

    async def delete_device(self, device: str) -> int:
        return await self._run(self._core.delete_device(device))

    async def delete_version(self, device: str, version: str) -> None:
        await self._run(self._core.delete_version(device, version))

    async def revoke(self, device: str) -> dict[str, Any]:
        return await self._run(self._core.revocation("PUT", device))

    async def unrevoke(self, device: str) -> dict[str, Any]:
        return await self._run(self._core.revocation("DELETE", device))

    async def aclose(self) -> None:
        await self._http.aclose()

    async def close(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self._http.aclose()
