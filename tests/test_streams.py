"""Checksum, size-limit and base64 streaming."""

from __future__ import annotations

import asyncio
import base64
import hashlib
from collections.abc import AsyncIterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mindproject.errors import BadRequest, ChecksumMismatch, IncompleteBody, PayloadTooLarge
from mindproject.streams import ExpectedDigests, MeasuredStream, base64_chunks, base64_length

pytestmark = pytest.mark.anyio


async def source(parts: list[bytes]) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


async def drain(stream: MeasuredStream) -> bytes:
    return b"".join([chunk async for chunk in stream])


@given(st.lists(st.binary(max_size=50), max_size=20))
@settings(max_examples=200)
def test_base64_of_chunks_equals_base64_of_whole(parts: list[bytes]) -> None:
    import asyncio

    async def encode() -> bytes:
        return b"".join([c async for c in base64_chunks(source(parts))])

    whole = b"".join(parts)
    encoded = asyncio.run(encode())
    assert encoded == base64.b64encode(whole)
    assert len(encoded) == base64_length(len(whole))


async def test_measures_size_and_sha256() -> None:
    stream = MeasuredStream(source([b"ab", b"", b"cd"]), max_bytes=10)
    assert await drain(stream) == b"abcd"
    assert stream.size == 4
    assert stream.sha256 == hashlib.sha256(b"abcd").hexdigest()


async def test_size_limit_applies_while_streaming() -> None:
    stream = MeasuredStream(source([b"12345", b"6"]), max_bytes=5)
    with pytest.raises(PayloadTooLarge):
        await drain(stream)


async def test_digests_verified_at_the_end() -> None:
    data = b"payload"
    good = ExpectedDigests.from_headers(
        "sha-256=:" + base64.b64encode(hashlib.sha256(data).digest()).decode() + ":",
        base64.b64encode(hashlib.md5(data).digest()).decode(),
    )
    assert await drain(MeasuredStream(source([data]), max_bytes=100, expected=good)) == data
    wrong = ExpectedDigests.from_headers(None, base64.b64encode(b"0" * 16).decode())
    with pytest.raises(ChecksumMismatch):
        await drain(MeasuredStream(source([data]), max_bytes=100, expected=wrong))


async def test_sha512_content_digest_supported() -> None:
    data = b"x" * 1000
    header = "sha-512=:" + base64.b64encode(hashlib.sha512(data).digest()).decode() + ":"
    expected = ExpectedDigests.from_headers(header, None)
    assert await drain(MeasuredStream(source([data]), max_bytes=10_000, expected=expected)) == data


async def test_short_body_against_declared_length() -> None:
    with pytest.raises(IncompleteBody):
        await drain(MeasuredStream(source([b"abc"]), max_bytes=100, declared_length=4))


@pytest.mark.parametrize("header", ["sha-256", "sha-256=abc", "md5=:AAAA:", "sha-256=:@@:"])
def test_bad_content_digest_headers(header: str) -> None:
    with pytest.raises(BadRequest):
        ExpectedDigests.from_headers(header, None)


def test_a_stream_measured_without_its_sha256_still_checks_an_expected_one() -> None:
    async def source() -> AsyncIterator[bytes]:
        yield b"chunk"

    async def drain(stream: MeasuredStream) -> bytes:
        return b"".join([c async for c in stream])

    plain = MeasuredStream(source(), max_bytes=100, sha256=False)
    assert asyncio.run(drain(plain)) == b"chunk"
    with pytest.raises(RuntimeError):
        _ = plain.sha256
    wrong = ExpectedDigests({"sha256": hashlib.sha256(b"other").digest()})
    checked = MeasuredStream(source(), max_bytes=100, expected=wrong, sha256=False)
    with pytest.raises(ChecksumMismatch):
        asyncio.run(drain(checked))
