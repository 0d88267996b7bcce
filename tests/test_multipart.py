"""The streaming multipart reader, on well-formed and hostile forms split at any byte."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mindproject.errors import BadRequest, MalformedBody, MissingFileField
from mindproject.multipart import MultipartFile, boundary_of, clean_filename
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
