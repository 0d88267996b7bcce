"""The one core shared by `Client` and `AsyncClient`: every operation is written once, as a
generator that yields steps (send this request, read the next piece of that body, sleep, hand
these bytes to the caller) and gets their outcome back. The sync and async drivers only perform
the steps, so retries, the tus protocol, Range resumes and verification cannot drift apart."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable, Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, TypeVar
from urllib.parse import quote

import httpx

from mindproject import __version__
from mindproject.client.errors import (
    ApiError,
    ClientError,
    NetworkError,
    ResponseError,
    VerificationError,
)
from mindproject.client.models import DevicePage, Version, VersionPage
from mindproject.client.resumable import (
    TUS_VERSION,
    StateFile,
    encode_metadata,
    state_key,
)
from mindproject.client.retry import RetryPolicy, parse_retry_after

MiB = 1024 * 1024
T = TypeVar("T")
Progress = Callable[[int, int], None]
Source = str | Path | BinaryIO

# A request body goes to the socket in slices this big, so progress moves while it is sent.
SEND_SLICE = 256 * 1024
# Downloads are read in pieces this big: memory stays flat whatever the file size.
READ_PIECE = 256 * 1024
# The server's page limit: walking a history needs as few calls as possible.
MAX_PAGE = 1000
# An error body is read at most this far (a hostile server may send an endless one).
ERROR_BODY_LIMIT = 64 * 1024
# Bounds for loops whose natural end is the server's answer.
MAX_PAGES = 1_000_000


# --- the steps ---------------------------------------------------------------------------------
class Body:
    """A request body held in memory (at most one chunk), sent in slices with progress."""

    def __init__(self, data: bytes, on_sent: Callable[[int], None] | None = None) -> None:
        self.data = data
        self.on_sent = on_sent

    def __len__(self) -> int:
        return len(self.data)

    def slices(self) -> Iterator[bytes]:
        sent = 0
        for start in range(0, len(self.data), SEND_SLICE):
            piece = self.data[start : start + SEND_SLICE]
            yield piece
            sent += len(piece)
            if self.on_sent:
                self.on_sent(sent)

    def release(self) -> None:
        """Drop the bytes once the request is over: the response keeps a reference to its
        request (and so to this body), and the next chunk must not join it in memory."""
        self.data = b""

    async def aslices(self) -> AsyncIterator[bytes]:
        for piece in self.slices():
            yield piece


@dataclass
class Send:
    """Send a request. Answers an `httpx.Response` with its body read, or a `Streamed` when
    `stream` is set; a transport error is thrown into the operation instead."""

    method: str
    url: str
    headers: dict[str, str]
    body: Body | None = None
    stream: bool = False


@dataclass
class Streamed:
    response: httpx.Response
    chunks: Any  # the driver's (sync or async) iterator over the body


@dataclass
class Read:
    """The next piece of a streamed body; b"" at its end."""

    streamed: Streamed


@dataclass
class Close:
    streamed: Streamed


@dataclass
class Sleep:
    seconds: float


@dataclass
class Emit:
    """Bytes for the caller of `iter_bytes`."""

    data: bytes


Step = Send | Read | Close | Sleep | Emit
Op = Generator[Step, Any, T]


# --- helpers -----------------------------------------------------------------------------------
def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if text != type(exc).__name__ else text


def api_error(response: httpx.Response, body: bytes) -> ApiError:
    """The server's JSON error, or a clean stand-in when the body is something else (an HTML
    page from a proxy, a truncated JSON)."""
    status = response.status_code
    request_id = response.headers.get("x-request-id")
    try:
        error = json.loads(body)["error"]
        details = error.get("details")
        return ApiError(
            status,
            str(error["code"]),
            str(error["message"]),
            error.get("request_id") or request_id,
            details if isinstance(details, dict) else None,
        )
    except (ValueError, KeyError, TypeError, AttributeError):
        snippet = " ".join(body[:200].decode("utf-8", "replace").split())
        message = f"HTTP {status} {response.reason_phrase}" + (f": {snippet}" if snippet else "")
        return ApiError(status, f"http_{status}", message, request_id)


def json_body(response: httpx.Response) -> dict[str, Any]:
    try:
        data = json.loads(response.content)
    except ValueError:
        kind = response.headers.get("content-type", "no content type")
        raise ResponseError(
            f"expected JSON from {response.request.method} {response.request.url.path}, "
            f"got {len(response.content)} bytes of {kind}"
        ) from None
    if not isinstance(data, dict):
        raise ResponseError("expected a JSON object")
    return data


def _field(data: dict[str, Any], name: str) -> Any:
    try:
        return data[name]
    except KeyError:
        raise ResponseError(f"the server's answer has no {name!r}") from None


class OpenSource:
    """What an upload reads from: a seekable handle, its size from the current position, and the
    path and mtime when it is a file on disk (they key the resumable state)."""

    def __init__(self, source: Source, spool_limit: int) -> None:
        self.path: Path | None = None
        self.mtime_ns: int | None = None
        self._owned: list[BinaryIO] = []
        if isinstance(source, str | Path):
            self.path = Path(source)
            handle: BinaryIO = self.path.open("rb")
            self._owned.append(handle)
            self.mtime_ns = os.fstat(handle.fileno()).st_mtime_ns
            self.name: str | None = self.path.name
        else:
            handle = source
            raw_name = getattr(source, "name", None)
            self.name = Path(raw_name).name if isinstance(raw_name, str) else None
            if not _seekable(handle):
                # A pipe or socket cannot be re-read for a retry: copy it aside first (to disk
                # beyond one chunk, so memory stays flat).
                spool = tempfile.SpooledTemporaryFile(max_size=spool_limit)  # noqa: SIM115
                self._owned.append(spool)  # type: ignore[arg-type]
                for piece in iter(lambda: handle.read(READ_PIECE), b""):
                    spool.write(piece)
                spool.seek(0)
                handle = spool  # type: ignore[assignment]
        self.handle = handle
        self.start = handle.tell()
        self.size = handle.seek(0, os.SEEK_END) - self.start
        handle.seek(self.start)

    def read_at(self, offset: int, length: int) -> bytes:
        self.handle.seek(self.start + offset)
        data = self.handle.read(length)
        if len(data) != length:
            raise ClientError("the file shrank while it was being uploaded")
        return data

    def sha256(self) -> bytes:
        digest = hashlib.sha256()
        self.handle.seek(self.start)
        for piece in iter(lambda: self.handle.read(MiB), b""):
            digest.update(piece)
        return digest.digest()

    def close(self) -> None:
        for handle in self._owned:
            handle.close()


def _seekable(handle: BinaryIO) -> bool:
    try:
        return bool(handle.seekable())
    except (AttributeError, OSError, ValueError):
        return False


def _multipart(data: bytes, filename: str, content_type: str) -> tuple[bytes, bytes, str]:
    """The envelope around a file for a one-field multipart form: (head, tail, Content-Type)."""
    boundary = uuid.uuid4().hex
    # A quoted-string, as the server's parser reads it; line breaks cannot be in a header.
    safe_name = filename.replace("\\", "\\\\").replace('"', '\\"')
    safe_name = safe_name.replace("\r", " ").replace("\n", " ")
    head = (
        f"--{boundary}\r\n"
        f'Content-Disposition: form-data; name="file"; filename="{safe_name}"\r\n'
        f"Content-Type: {content_type}\r\n\r\n"
    ).encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    return head, tail, f"multipart/form-data; boundary={boundary}"


# --- the core ----------------------------------------------------------------------------------
class Core:
    def __init__(
        self,
        url: str,
        token: str | None,
        retry: RetryPolicy,
        resumable_threshold: int,
        chunk_size: int,
        state_dir: Path,
    ) -> None:
        if chunk_size < 1:
            raise ValueError("chunk_size must be positive")
        if httpx.URL(url).scheme not in ("http", "https"):
            # Fail now, not after a round of retries of a request that can never be sent.
            raise ValueError(f"the server URL must start with http:// or https://, not {url!r}")
        self.base_url = url.rstrip("/")
        self.token = token
        self.retry = retry
        self.resumable_threshold = resumable_threshold
        self.chunk_size = chunk_size
        self.state = StateFile(state_dir)

    # -- requests --
    def url(self, path: str, params: dict[str, Any] | None = None) -> str:
        query = {k: v for k, v in (params or {}).items() if v is not None and v != ""}
        return str(httpx.URL(self.base_url + path, params=query or None))

    def headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        headers = {"User-Agent": f"mindproject-client/{__version__}"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        return headers | (extra or {})

    @staticmethod
    def device_path(device: str) -> str:
        return "/api/devices/" + quote(device, safe=":")

    def _retrying(self, make: Callable[[], Send]) -> Op[Any]:
        """Send until an answer that is not worth retrying, or the policy gives up."""
        failures = 0
        for _ in range(MAX_PAGES):
            step = make()
            try:
                result = yield step
            except httpx.TransportError as exc:
                failures += 1
                delay = self.retry.backoff(failures)
                if delay is None:
                    path = httpx.URL(step.url).path
                    raise NetworkError(
                        f"{step.method} {path}: {_describe(exc)} (gave up after {failures} tries)"
                    ) from exc
                yield Sleep(delay)
                continue
            response: httpx.Response = result.response if step.stream else result
            if response.status_code in self.retry.retry_statuses:
                failures += 1
                retry_after = parse_retry_after(response.headers.get("retry-after"))
                delay = self.retry.backoff(failures, retry_after)
                if delay is not None:
                    if step.stream:
                        yield Close(result)
                    yield Sleep(delay)
                    continue
            return result
        raise NetworkError("too many retries")  # unreachable: the policy gives up first

    def request(self, make: Callable[[], Send]) -> Op[httpx.Response]:
        """A retried request whose error answers raise `ApiError`."""
        response: httpx.Response = yield from self._retrying(make)
        if not response.is_success:
            raise api_error(response, response.content)
        return response

    def open(self, make: Callable[[], Send]) -> Op[Streamed]:
        """A retried streamed request; an error answer is read (bounded) and raised."""
        streamed: Streamed = yield from self._retrying(make)
        response = streamed.response
        if not response.is_success:
            body = b""
            try:
                while len(body) < ERROR_BODY_LIMIT:
                    piece = yield Read(streamed)
                    if not piece:
                        break
                    body += piece
            except httpx.TransportError:
                pass  # the status says enough
            yield Close(streamed)
            raise api_error(response, body)
        return streamed

    def call_json(
        self, method: str, path: str, params: dict[str, Any] | None = None
    ) -> Op[dict[str, Any]]:
        url = self.url(path, params)
        response = yield from self.request(lambda: Send(method, url, self.headers()))
        return json_body(response)

    # -- listing --
    def devices_page(
        self, prefix: str = "", cursor: str | None = None, limit: int | None = None
    ) -> Op[DevicePage]:
        params = {"prefix": prefix, "cursor": cursor, "limit": limit}
        data = yield from self.call_json("GET", "/api/devices/", params)
        devices = _field(data, "TelemetryDataDownloads")
        if not isinstance(devices, list):
            raise ResponseError("the device list is not a list")
        return DevicePage([str(d) for d in devices], data.get("next_cursor") or None)

    def history_page(
        self, device: str, cursor: str | None = None, limit: int | None = None
    ) -> Op[VersionPage]:
        params = {"cursor": cursor, "limit": limit}
        data = yield from self.call_json("GET", self.device_path(device) + "/uploads", params)
        uploads = _field(data, "uploads")
        if not isinstance(uploads, list):
            raise ResponseError("the upload list is not a list")
        return VersionPage([Version.from_json(u) for u in uploads], data.get("next_cursor") or None)

    def latest(self, device: str) -> Op[Version]:
        page = yield from self.history_page(device, limit=1)
        if not page.versions:
            raise ApiError(404, "device_not_found", f"no uploads for device {device}", None)
        return page.versions[0]

    def get(self, device: str, version: str) -> Op[Version]:
        """One version's record, from the history (the only place the API describes a version
        in full). Versions sort newest first as strings, so the walk stops at the first older
        one: a recent version is one call away."""
        cursor: str | None = None
        for _ in range(MAX_PAGES):
            page = yield from self.history_page(device, cursor, MAX_PAGE)
            for record in page.versions:
                if record.version == version:
                    return record
                if record.version > version:
                    cursor = None
                    break
            else:
                cursor = page.next_cursor
            if not cursor:
                break
        raise ApiError(404, "upload_not_found", f"no upload {version} for device {device}", None)

    # -- small changes --
    def delete_device(self, device: str) -> Op[int]:
        data = yield from self.call_json("DELETE", self.device_path(device))
        return int(_field(data, "deleted_uploads"))

    def delete_version(self, device: str, version: str) -> Op[None]:
        path = f"{self.device_path(device)}/uploads/{quote(version, safe='')}"
        yield from self.call_json("DELETE", path)

    def revocation(self, method: str, device: str) -> Op[dict[str, Any]]:
        return (yield from self.call_json(method, "/api/revocations/" + quote(device, safe=":")))

    # -- uploads --
    def upload(
        self,
        device: str,
        source: Source,
        filename: str | None,
        content_type: str | None,
        progress: Progress | None,
    ) -> Op[Version]:
        opened = OpenSource(source, self.chunk_size)
        try:
            name = filename if filename is not None else opened.name
            if opened.size > self.resumable_threshold:
                return (
                    yield from self._upload_resumable(device, opened, name, content_type, progress)
                )
            return (yield from self._upload_small(device, opened, name, content_type, progress))
        finally:
            opened.close()

    def _upload_small(
        self,
        device: str,
        source: OpenSource,
        name: str | None,
        content_type: str | None,
        progress: Progress | None,
    ) -> Op[Version]:
        """One PUT. The Idempotency-Key is the same on every retry, so a retry after a lost
        answer gets the first version back instead of storing a second one."""
        data = source.read_at(0, source.size)
        digest = hashlib.sha256(data)
        headers = {
            "Idempotency-Key": uuid.uuid4().hex,
            "Content-Digest": f"sha-256=:{base64.b64encode(digest.digest()).decode()}:",
        }
        header_safe = name is None or (name.isascii() and name.isprintable())
        if content_type or not header_safe:
            head, tail, form_type = _multipart(
                data, name or "file", content_type or "application/octet-stream"
            )
            payload = head + data + tail
            headers["Content-Type"] = form_type
        else:
            head, payload = b"", data
            headers["Content-Type"] = "application/octet-stream"
            if name:
                headers["X-Filename"] = name
        headers["Content-Length"] = str(len(payload))
        total = source.size

        def on_sent(sent: int) -> None:
            if progress:
                progress(max(0, min(total, sent - len(head))), total)

        url = self.url(self.device_path(device))
        response = yield from self.request(
            lambda: Send("PUT", url, self.headers(headers), Body(payload, on_sent))
        )
        version = Version.from_json(json_body(response))
        self._check_stored(version, total, digest.hexdigest())
        if progress:
            progress(total, total)
        return version

    @staticmethod
    def _check_stored(version: Version, size: int, sha256: str) -> None:
        if version.size != size or version.sha256 != sha256:
            raise VerificationError(
                f"the server stored {version.size} bytes with sha256 {version.sha256}, "
                f"the file is {size} bytes with sha256 {sha256}"
            )

    def _tus_headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        return self.headers({"Tus-Resumable": TUS_VERSION} | (extra or {}))

    def _tus_offset(self, upload_url: str) -> Op[tuple[int, str | None] | None]:
        """Where the server has the upload (offset, version once complete); None if it is gone."""
        response: httpx.Response = yield from self._retrying(
            lambda: Send("HEAD", upload_url, self._tus_headers())
        )
        if response.status_code in (404, 410):
            return None
        if not response.is_success:
            raise api_error(response, b"")
        try:
            offset = int(response.headers["upload-offset"])
        except (KeyError, ValueError):
            raise ResponseError("the upload's HEAD has no Upload-Offset") from None
        return offset, response.headers.get("x-version")

    def _tus_create(
        self, device: str, size: int, name: str | None, content_type: str | None, sha: bytes
    ) -> Op[str]:
        metadata: dict[str, str | bytes] = {"sha256": sha}
        if name:
            metadata["filename"] = name
        if content_type:
            metadata["filetype"] = content_type
        headers = self._tus_headers(
            {"Upload-Length": str(size), "Upload-Metadata": encode_metadata(metadata)}
        )
        url = self.url(self.device_path(device) + "/resumable")
        response = yield from self.request(lambda: Send("POST", url, headers))
        location = response.headers.get("location")
        if not location:
            raise ResponseError("the server created a resumable upload without a Location")
        return str(httpx.URL(self.base_url + "/").join(location))

    def _upload_resumable(
        self,
        device: str,
        source: OpenSource,
        name: str | None,
        content_type: str | None,
        progress: Progress | None,
    ) -> Op[Version]:
        """tus: create (or find again), then PATCH chunk after chunk; after any failure ask the
        server for its offset and go on from there."""
        size = source.size
        # The whole file's sha256 goes into the metadata: the server checks it at completion,
        # so a file that changed between two sessions fails cleanly instead of storing a mix.
        sha = source.sha256()
        key = None
        if source.path is not None and source.mtime_ns is not None:
            key = state_key(self.base_url, device, source.path, size, source.mtime_ns)
        upload_url = self.state.get(key) if key else None
        where = (yield from self._tus_offset(upload_url)) if upload_url else None
        if upload_url is None or where is None:
            if key and upload_url:
                self.state.forget(key)
            upload_url = yield from self._tus_create(device, size, name, content_type, sha)
            if key:
                self.state.put(key, upload_url, time.time())
            where = (0, None)
        offset, version_id = where
        failures = 0
        recreated = False
        # Each turn either moves the offset forward or counts a failure (bounded by the policy).
        for _ in range(MAX_PAGES):
            if offset >= size and version_id:
                break
            start = offset
            length = min(self.chunk_size, size - offset)
            body = Body(source.read_at(offset, length))
            checksum = base64.b64encode(hashlib.sha256(body.data).digest()).decode()
            headers = self._tus_headers(
                {
                    "Content-Type": "application/offset+octet-stream",
                    "Upload-Offset": str(offset),
                    "Upload-Checksum": f"sha256 {checksum}",
                    "Content-Length": str(length),
                }
            )

            def on_sent(sent: int, start: int = start) -> None:
                if progress:
                    progress(start + sent, size)

            body.on_sent = on_sent
            retry_after: float | None = None
            try:
                response = yield Send("PATCH", upload_url, headers, body)
            except httpx.TransportError as exc:
                body.release()
                error: BaseException = exc
            else:
                body.release()
                status = response.status_code
                if status == 204:
                    try:
                        offset = int(response.headers["upload-offset"])
                    except (KeyError, ValueError):
                        raise ResponseError("a PATCH answer has no Upload-Offset") from None
                    version_id = response.headers.get("x-version") or version_id
                    if offset > start:
                        failures = 0
                    continue
                problem = api_error(response, response.content)
                if status == 409 and problem.details and "offset" in problem.details:
                    # Another attempt (ours, whose answer was lost) got further: go on there.
                    offset = int(problem.details["offset"])
                    failures += 1
                    if self.retry.backoff(failures) is None:
                        raise problem
                    continue
                if status == 404 and not recreated:
                    # Expired or removed on the server: start once more from byte 0.
                    recreated = True
                    if key:
                        self.state.forget(key)
                    upload_url = yield from self._tus_create(device, size, name, content_type, sha)
                    if key:
                        self.state.put(key, upload_url, time.time())
                    offset, version_id = 0, None
                    continue
                if status not in self.retry.retry_statuses and status != 423:
                    if key and status in (400, 404):
                        self.state.forget(key)
                    raise problem
                error = problem
                retry_after = parse_retry_after(response.headers.get("retry-after"))
            failures += 1
            delay = self.retry.backoff(failures, retry_after)
            if delay is None:
                if isinstance(error, ClientError):
                    raise error
                raise NetworkError(
                    f"resumable upload stopped at byte {offset} of {size}: {_describe(error)} "
                    f"(gave up after {failures} tries)"
                ) from error
            yield Sleep(delay)
            where = yield from self._tus_offset(upload_url)
            if where is None:
                offset, version_id = 0, None  # gone: the next PATCH's 404 recreates it
                continue
            offset, version_id = where
        if not version_id:
            raise ResponseError("the upload completed without an X-Version")
        if key:
            self.state.forget(key)
        version = yield from self.get(device, version_id)
        self._check_stored(version, size, sha.hex())
        if progress:
            progress(size, size)
        return version

    # -- downloads --
    def download(
        self,
        device: str,
        version: str | None,
        write: Callable[[bytes], object] | None,
        progress: Progress | None,
    ) -> Op[Version]:
        """Stream a version's raw bytes to `write` (or to the caller, by Emit steps when
        `write` is None), resuming with Range after a failure, then check size and sha256."""
        info = yield from (self.get(device, version) if version else self.latest(device))
        url = self.url(f"{self.device_path(device)}/uploads/{info.version}", {"encoding": "raw"})
        digest = hashlib.sha256()
        received = 0
        failures = 0
        for _ in range(MAX_PAGES):
            # Identity: a Range and a length count bytes of the file, not of a compressed body.
            extra = {"Accept-Encoding": "identity"}
            if received:
                extra["Range"] = f"bytes={received}-"
            headers = self.headers(extra)
            streamed = yield from self.open(
                lambda headers=headers: Send("GET", url, headers, stream=True)  # type: ignore[misc]
            )
            response = streamed.response
            claimed = response.headers.get("x-content-sha256")
            if claimed is not None and claimed != info.sha256:
                yield Close(streamed)
                raise VerificationError(
                    f"the server sends sha256 {claimed} for version {info.version}, "
                    f"whose record says {info.sha256}"
                )
            skip = 0
            if response.status_code == 206:
                if not response.headers.get("content-range", "").startswith(f"bytes {received}-"):
                    yield Close(streamed)
                    raise ResponseError("the server answered another range than asked for")
            elif received:
                skip = received  # the whole file again: drop what we already have
            problem: BaseException | None = None
            try:
                for _ in range(MAX_PAGES * 64):
                    piece = yield Read(streamed)
                    if not piece:
                        break
                    if skip:
                        dropped = min(skip, len(piece))
                        piece, skip = piece[dropped:], skip - dropped
                        if not piece:
                            continue
                    if received + len(piece) > info.size:
                        yield Close(streamed)
                        raise VerificationError(
                            f"the server sends more than the {info.size} bytes of the version"
                        )
                    digest.update(piece)
                    received += len(piece)
                    if write is None:
                        yield Emit(piece)
                    else:
                        write(piece)
                    if progress:
                        progress(received, info.size)
            except httpx.TransportError as exc:
                problem = exc
            yield Close(streamed)
            if received == info.size and problem is None:
                break
            if problem is None:
                problem = ResponseError(f"the body ended after {received} of {info.size} bytes")
            failures += 1
            delay = self.retry.backoff(failures)
            if delay is None:
                raise NetworkError(
                    f"download of {info.version} stopped at byte {received} of {info.size}: "
                    f"{_describe(problem)} (gave up after {failures} tries)"
                ) from problem
            yield Sleep(delay)
        if digest.hexdigest() != info.sha256:
            raise VerificationError(
                f"the bytes received have sha256 {digest.hexdigest()}, "
                f"the server says {info.sha256}"
            )
        if progress and info.size == 0:
            progress(0, 0)
        return info


class PathSink:
    """A download into a path: written beside it and renamed into place once verified, so a
    failed download never leaves a file that looks complete."""

    def __init__(self, target: Path) -> None:
        self.target = target
        fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
        self.temp = Path(name)
        self.handle = os.fdopen(fd, "wb")

    def write(self, data: bytes) -> None:
        self.handle.write(data)

    def commit(self) -> None:
        self.handle.close()
        self.temp.replace(self.target)

    def abort(self) -> None:
        self.handle.close()
        with contextlib.suppress(OSError):
            self.temp.unlink()
