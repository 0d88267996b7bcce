"""The streaming multipart reader, on well-formed and hostile forms split at any byte."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mindproject.errors import BadRequest, MalformedBody, MissingFileField
from mindproject.multipart import MAX_PARTS, MultipartFile, boundary_of, clean_filename
from tests.helpers import split_at


def form(parts: list[tuple[str, bytes, str | None]], boundary: str = "BOUNDARY") -> bytes:
    body = b""
    for name, data, filename in parts:
        disposition = f'form-data; name="{name}"'
        if filename is not None:
            disposition += f'; filename="{filename}"'
        body += (
            f"--{boundary}\r\nContent-Disposition: {disposition}\r\n\r\n".encode() + data + b"\r\n"
        )
    return body + f"--{boundary}--\r\n".encode()


def read(body: bytes, cuts: list[int] | None = None) -> tuple[bytes, MultipartFile]:
    async def run() -> tuple[bytes, MultipartFile]:
        reader = MultipartFile(split_at(body, cuts or []), b"BOUNDARY")
        await reader.start()
        return b"".join([c async for c in reader]), reader

    return asyncio.run(run())


@given(data=st.binary(max_size=3000), cuts=st.lists(st.integers(0, 4000), max_size=8))
@settings(max_examples=150)
def test_file_bytes_survive_any_chunking(data: bytes, cuts: list[int]) -> None:
    body = form([("note", b"hello", None), ("file", data, "a.bin"), ("after", b"x", None)])
    got, reader = read(body, cuts)
    assert got == data
    assert reader.filename == "a.bin"


def test_missing_file_field() -> None:
    with pytest.raises(MissingFileField):
        read(form([("other", b"x", "f")]))


def test_duplicate_file_field() -> None:
    with pytest.raises(BadRequest):
        read(form([("file", b"1", "a"), ("file", b"2", "b")]))


@given(cut=st.integers(3, 80))
def test_truncated_bodies_are_malformed(cut: int) -> None:
    # Cutting only the final CRLF leaves a complete close-delimiter (RFC 2046): cut more.
    body = form([("file", b"0123456789" * 5, "a")])[:-cut]
    with pytest.raises((MalformedBody, MissingFileField)):
        read(body)


def test_boundary_is_required() -> None:
    with pytest.raises(MalformedBody):
        boundary_of("multipart/form-data")
    assert boundary_of('multipart/form-data; boundary="abc"') == b"abc"


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        (b"../../etc/passwd", "passwd"),
        (b"C:\\Users\\x\\log.txt", "log.txt"),
        (b"ok.bin", "ok.bin"),
        (b"", None),
        (b"bad\x00\x07name", "badname"),
        ("é".encode() * 300, "é" * 127),
    ],
)
def test_filenames_are_cleaned(raw: bytes, clean: str | None) -> None:
    assert clean_filename(raw) == clean


def test_many_empty_parts_are_refused_early() -> None:
    """A chunked form of 1,000,000 empty parts once cost 12.6 s of CPU; the count is bounded."""
    parts = b"--BOUNDARY\r\n\r\n\r\n" * 1_000_000 + b"--BOUNDARY--\r\n"
    pieces = [parts[i : i + 65536] for i in range(0, len(parts), 65536)]
    fed = 0

    async def body() -> AsyncIterator[bytes]:
        nonlocal fed
        for piece in pieces:
            fed += 1
            yield piece

    async def run() -> None:
        await MultipartFile(body(), b"BOUNDARY").start()

    with pytest.raises(MalformedBody, match=f"more than {MAX_PARTS} parts"):
        asyncio.run(run())
    assert fed == 1  # refused within the first network chunk, not after 49 MiB


def test_part_headers_count_against_the_bytes_before_the_file() -> None:
    # Within python-multipart's own per-part bounds (header count and line size), but 25 parts
    # of 3 KiB of headers each: 75 KiB before the file, over the 64 KiB allowed.
    padding = b"".join(b"X-Pad-%d: " % i + b"p" * 1000 + b"\r\n" for i in range(3))
    part = b'--BOUNDARY\r\nContent-Disposition: form-data; name="n"\r\n' + padding
    body = (part + b"\r\nv\r\n") * 25 + form([("file", b"data", "a")])
    with pytest.raises(MalformedBody, match="part headers"):
        read(body)


def test_a_form_within_the_bounds_still_reads() -> None:
    fields = [(f"field{i}", b"v" * 100, None) for i in range(MAX_PARTS - 1)]
    got, _ = read(form([*fields, ("file", b"the file", "f.txt")]))
    assert got == b"the file"
