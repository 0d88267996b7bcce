"""Byte streams between the socket and storage: checksums, size limits and base64.

Everything here works chunk by chunk, so memory does not grow with the size of a file.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass, field

from mindproject.errors import (
    BadRequest,
    ChecksumMismatch,
    ChunkChecksumMismatch,
    IncompleteBody,
    MindProjectError,
    PayloadTooLarge,
)

# Digest algorithms a client may ask us to verify, by their RFC 9530 names.
_DIGESTS = {"sha-256": "sha256", "sha-512": "sha512"}
# The tus checksum extension's algorithms (Upload-Checksum), by their tus (= hashlib) names.
TUS_CHECKSUM_ALGORITHMS = ("sha1", "md5", "sha256")


@dataclass
class ExpectedDigests:
    """Checksums the client sent with the upload: hashlib name -> expected raw digest."""

    digests: dict[str, bytes] = field(default_factory=dict)
    # What a mismatch raises: 400 for a whole upload, tus's 460 for one chunk of a resumable one.
    mismatch: type[MindProjectError] = ChecksumMismatch

    @classmethod
    def from_upload_checksum(cls, value: str | None) -> ExpectedDigests:
        """The tus `Upload-Checksum: <algorithm> <base64 digest>` of one chunk."""
        if value is None:
            return cls()
        algorithm, _, digest = value.strip().partition(" ")
        if algorithm not in TUS_CHECKSUM_ALGORITHMS:
            raise BadRequest(
                f"Upload-Checksum algorithm {algorithm!r} not supported; use one of "
                f"{', '.join(TUS_CHECKSUM_ALGORITHMS)}"
            )
        raw = _b64(digest.strip(), "Upload-Checksum")
        if len(raw) != hashlib.new(algorithm).digest_size:
            raise BadRequest(f"Upload-Checksum is not a {algorithm} digest")
        return cls({algorithm: raw}, mismatch=ChunkChecksumMismatch)

    @classmethod
    def from_headers(cls, content_digest: str | None, content_md5: str | None) -> ExpectedDigests:
        expected: dict[str, bytes] = {}
        if content_digest:
            expected.update(_parse_content_digest(content_digest))
        if content_md5:
            expected["md5"] = _b64(content_md5.strip(), "Content-MD5")
        return cls(expected)


def _parse_content_digest(value: str) -> dict[str, bytes]:
    """Parse an RFC 9530 `Content-Digest` (a structured-field dictionary of byte sequences)."""
    found: dict[str, bytes] = {}
    unknown: list[str] = []
    for member in value.split(","):
        name, sep, raw = member.strip().partition("=")
        name = name.strip().lower()
        raw = raw.strip()
        if not sep or len(raw) < 2 or raw[0] != ":" or raw[-1] != ":":
            raise BadRequest("Content-Digest must look like sha-256=:<base64>:")
        if name in _DIGESTS:
            found[_DIGESTS[name]] = _b64(raw[1:-1], "Content-Digest")
        else:
            unknown.append(name)
    if not found:
        raise BadRequest(
            f"Content-Digest algorithm(s) {', '.join(unknown)} not supported; "
            f"use one of {', '.join(_DIGESTS)}"
        )
    return found


def _b64(value: str, header: str) -> bytes:
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise BadRequest(f"{header} is not valid base64") from None


class MeasuredStream:
    """Passes chunks through while hashing them and enforcing the size limit.

    When the source ends it checks the client's digests and the declared length, raising
    before the storage backend commits anything. After that, `size` and `sha256` are final.
    """

    def __init__(
        self,
        source: AsyncIterable[bytes],
        *,
        max_bytes: int,
        expected: ExpectedDigests | None = None,
        declared_length: int | None = None,
        sha256: bool = True,
    ) -> None:
        """`sha256=False`: no sha256 of this stream (unless a digest to verify needs it) — a
        resumable chunk's storage keeps the whole file's running hash instead, and hashing each
        chunk twice cost a quarter of a chunk's CPU."""
        self._source = source
        self._max_bytes = max_bytes
        self._declared_length = declared_length
        self._expected = expected.digests if expected else {}
        self._mismatch = expected.mismatch if expected else ChecksumMismatch
        self._sha256 = hashlib.sha256() if sha256 or "sha256" in self._expected else None
        self._extra = {name: hashlib.new(name) for name in self._expected if name != "sha256"}
        self.size = 0

    @property
    def sha256(self) -> str:
        if self._sha256 is None:
            raise RuntimeError("this stream was measured without its sha256")
        return self._sha256.hexdigest()

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._chunks()

    async def _chunks(self) -> AsyncIterator[bytes]:
        async for chunk in self._source:
            if not chunk:
                continue
            self.size += len(chunk)
            if self.size > self._max_bytes:
                raise PayloadTooLarge(f"upload exceeds the maximum of {self._max_bytes} bytes")
            if self._sha256 is not None:
                self._sha256.update(chunk)
            for digest in self._extra.values():
                digest.update(chunk)
            yield chunk
        self._verify()

    def _verify(self) -> None:
        if self._declared_length is not None and self.size != self._declared_length:
            raise IncompleteBody(
                f"body has {self.size} bytes but Content-Length said {self._declared_length}"
            )
        for name, want in self._expected.items():
            digest = self._sha256 if name == "sha256" else self._extra[name]
            assert digest is not None  # made whenever "sha256" is expected
            got = digest.digest()
            if got != want:
                raise self._mismatch(f"{name} of the received bytes does not match the header")


def base64_length(size: int) -> int:
    return 4 * ((size + 2) // 3)


async def base64_chunks(source: AsyncIterable[bytes]) -> AsyncIterator[bytes]:
    """Encode a byte stream as one continuous base64 text, chunk by chunk."""
    carry = b""
    async for chunk in source:
        data = carry + chunk if carry else chunk
        cut = len(data) - len(data) % 3
        carry = data[cut:]
        if cut:
            yield base64.b64encode(data[:cut])
    if carry:
        yield base64.b64encode(carry)
