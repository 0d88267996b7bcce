"""Streaming reader for the seed's upload form: multipart/form-data with one field `file`.

Built on python-multipart's push parser: network chunks go in, the `file` part's bytes come out
as they arrive, and nothing is buffered beyond one network chunk. Other fields are skipped, their
number and their bytes (part headers included) bounded; a second `file` field or a truncated
body is an error.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from mindproject.errors import BadRequest, MalformedBody, MissingFileField

FILE_FIELD = "file"
MAX_OTHER_FIELDS_BYTES = 64 * 1024
# Parts in one form, the file's included: the seed's form has one, browsers add a few.
MAX_PARTS = 32
MAX_FILENAME_BYTES = 255


def boundary_of(content_type: str) -> bytes:
    _, params = parse_options_header(content_type)
    boundary = params.get(b"boundary")
    if not boundary or len(boundary) > 200:
        raise MalformedBody("multipart/form-data needs a boundary parameter (1-200 characters)")
    return boundary


def clean_filename(raw: bytes | None) -> str | None:
    """The base name of a client-supplied file name, without directories, bounded in length."""
    if not raw:
        return None
    name = raw.decode("utf-8", errors="replace").replace("\\", "/").rpartition("/")[2]
    if not name.isprintable():
        name = "".join(ch for ch in name if ch.isprintable())
    while len(name.encode()) > MAX_FILENAME_BYTES:
        name = name[:-1]
    return name or None


class MultipartFile:
    """Drive the parser until the `file` part starts, then stream that part's bytes."""

    def __init__(self, body: AsyncIterator[bytes], boundary: bytes) -> None:
        self._body = body
        self._pending: list[bytes] = []
        self._header_name = b""
        self._header_value = b""
        self._headers: dict[bytes, bytes] = {}
        self._in_file = False
        self._file_started = False
        self._file_done = False
        self._duplicate = False
        self._ended = False
        self._other_bytes = 0
        self._parts = 0
        self.filename: str | None = None
        self.content_type: str | None = None
        self._parser = MultipartParser(
            boundary,
            {
                "on_part_begin": self._on_part_begin,
                "on_header_field": self._on_header_field,
                "on_header_value": self._on_header_value,
                "on_header_end": self._on_header_end,
                "on_headers_finished": self._on_headers_finished,
                "on_part_data": self._on_part_data,
                "on_part_end": self._on_part_end,
                "on_end": self._on_end,
            },
        )

    # python-multipart callbacks -------------------------------------------------------------
    def _on_part_begin(self) -> None:
        self._headers = {}
        self._in_file = False
        self._parts += 1
        if self._parts > MAX_PARTS:
            raise MalformedBody(f"the form has more than {MAX_PARTS} parts")

    def _on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._count_other(end - start)
        self._header_name += data[start:end]

    def _on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._count_other(end - start)
        self._header_value += data[start:end]

    def _count_other(self, size: int) -> None:
        """Bytes that are not the file's: part headers, other fields, the epilogue."""
        self._other_bytes += size
        if self._other_bytes > MAX_OTHER_FIELDS_BYTES:
            raise MalformedBody(
                f"part headers and fields other than '{FILE_FIELD}' exceed "
                f"{MAX_OTHER_FIELDS_BYTES} bytes"
            )

    def _on_header_end(self) -> None:
        self._headers[self._header_name.lower()] = self._header_value
        self._header_name = self._header_value = b""

    def _on_headers_finished(self) -> None:
        _, params = parse_options_header(self._headers.get(b"content-disposition", b""))
        if params.get(b"name") != FILE_FIELD.encode():
            return
        if self._file_started:
            self._duplicate = True
            return
        self._in_file = self._file_started = True
        self.filename = clean_filename(params.get(b"filename"))
        part_type = self._headers.get(b"content-type")
        self.content_type = part_type.decode("latin-1")[:100] if part_type else None

    def _on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self._in_file:
            self._pending.append(data[start:end])
            return
        self._count_other(end - start)

    def _on_part_end(self) -> None:
        if self._in_file:
            self._in_file = False
            self._file_done = True

    def _on_end(self) -> None:
        self._ended = True

    # driving -------------------------------------------------------------------------------
    async def _feed(self) -> bool:
        """Feed one network chunk to the parser; False once the body has ended."""
        chunk = await anext(self._body, None)
        try:
            if chunk is None:
                self._parser.finalize()
                return False
            self._parser.write(chunk)
        except MultipartParseError as exc:
            raise MalformedBody(f"malformed multipart body: {exc}") from None
        return True

    async def start(self) -> None:
        """Read until the `file` part's headers are parsed; raise if the form has none."""
        while not self._file_started:
            if not await self._feed():
                raise MissingFileField(f"the form has no '{FILE_FIELD}' field")

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._file_bytes()

    async def _file_bytes(self) -> AsyncIterator[bytes]:
        while True:
            if self._pending:
                chunk = b"".join(self._pending) if len(self._pending) > 1 else self._pending[0]
                self._pending.clear()
                yield chunk
            if self._file_done:
                break
            if not await self._feed():
                raise MalformedBody("body ended inside the file part")
        while not self._ended and await self._feed():
            pass
        if not self._ended:
            raise MalformedBody("multipart body ended without its closing boundary")
        # Read the body to its end (the epilogue, ignored, but bounded): until the client has sent
        # everything it declared, the upload is not whole; a client that stops short is caught
        # here as a disconnect, and nothing is stored.
        async for epilogue in self._body:
            self._other_bytes += len(epilogue)
            if self._other_bytes > MAX_OTHER_FIELDS_BYTES:
                raise MalformedBody("too many bytes after the multipart body's closing boundary")
        if self._duplicate:
            raise BadRequest(f"the form has more than one '{FILE_FIELD}' field")
