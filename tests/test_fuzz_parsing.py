"""Fuzzing the request parsing code in-process with hypothesis: whatever bytes or strings come
in, the parsers either answer or raise one of our documented errors, never anything else (which
the API would turn into a 500).

The well-formed cases live in test_multipart.py, test_streams.py and test_identifiers.py; here
the inputs are arbitrary or mutated.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from mindproject.api.downloads import _byte_range
from mindproject.auth.keys import KeyRing
from mindproject.auth.tokens import Principal, Role, TokenVerifier, issue_token
from mindproject.errors import (
    BadRequest,
    InvalidDeviceId,
    InvalidParameter,
    InvalidVersionId,
    MindProjectError,
    RangeNotSatisfiable,
    Unauthorized,
)
from mindproject.identifiers import check_device_id, check_version_id, decode_cursor
from mindproject.multipart import MultipartFile
from mindproject.streams import ExpectedDigests
from tests.helpers import TEST_SECRET_KEY, split_at

FUZZ = settings(
    max_examples=200, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)

# --- multipart ---------------------------------------------------------------------------------


def parse(body: bytes, boundary: bytes, cuts: list[int]) -> tuple[str, bytes | type]:
    """("ok", file bytes) or ("error", the MindProjectError class). Anything else propagates."""

    async def run() -> bytes:
        reader = MultipartFile(split_at(body, cuts), boundary)
        await reader.start()
        return b"".join([chunk async for chunk in reader])

    try:
        return "ok", asyncio.run(run())
    except MindProjectError as exc:
        return "error", type(exc)


boundaries = st.binary(min_size=1, max_size=70).filter(lambda b: b"\r" not in b and b"\n" not in b)
token_boundaries = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789'()+_,-./:=?",
    min_size=1,
    max_size=70,
).map(str.encode)
cut_lists = st.lists(st.integers(0, 600), max_size=10)


def form(boundary: bytes, parts: list[tuple[bytes, bytes]]) -> bytes:
    body = b""
    for disposition, data in parts:
        body += b"--" + boundary + b"\r\nContent-Disposition: " + disposition + b"\r\n\r\n"
        body += data + b"\r\n"
    return body + b"--" + boundary + b"--\r\n"


def check_success_is_a_part(body: bytes, boundary: bytes, got: bytes) -> None:
    """Whatever the reader returned sits in the body right after a part's blank line and right
    before a delimiter: it is one part's bytes, never bytes spliced from several places."""
    delimiter = b"\r\n--" + boundary
    start = body.find(b"\r\n\r\n" + got + delimiter)
    assert start >= 0, (body, got)


@given(body=st.binary(max_size=600), boundary=boundaries, cuts=cut_lists)
@FUZZ
def test_arbitrary_bytes_only_raise_our_errors(
    body: bytes, boundary: bytes, cuts: list[int]
) -> None:
    outcome, value = parse(body, boundary, cuts)
    if outcome == "ok":
        assert isinstance(value, bytes)
        check_success_is_a_part(body, boundary, value)


@st.composite
def mutated_forms(draw: st.DrawFn) -> tuple[bytes, bytes, bytes]:
    """A good form around a known file, then damaged: bytes flipped, cut, inserted, repeated."""
    boundary = draw(token_boundaries)
    data = draw(st.binary(max_size=200))
    parts = [(b'form-data; name="file"; filename="f"', data)]
    if draw(st.booleans()):
        parts.insert(0, (b'form-data; name="note"', draw(st.binary(max_size=50))))
    body = bytearray(form(boundary, parts))
    for _ in range(draw(st.integers(0, 4))):
        kind = draw(st.sampled_from(["flip", "cut", "insert", "delete", "repeat"]))
        at = draw(st.integers(0, max(0, len(body) - 1)))
        if kind == "flip" and body:
            body[at] = draw(st.integers(0, 255))
        elif kind == "cut":
            del body[at:]
        elif kind == "insert":
            body[at:at] = draw(st.sampled_from([b"\r\n", b"--", b"--" + boundary, b"\x00", b'"']))
        elif kind == "delete":
            del body[at : at + draw(st.integers(1, 8))]
        elif kind == "repeat":
            body[at:at] = body[at : at + draw(st.integers(1, 40))]
    return bytes(body), boundary, data


@given(case=mutated_forms(), cuts=cut_lists)
@FUZZ
def test_damaged_forms_only_raise_our_errors(
    case: tuple[bytes, bytes, bytes], cuts: list[int]
) -> None:
    body, boundary, _ = case
    outcome, value = parse(body, boundary, cuts)
    if outcome == "ok":
        assert isinstance(value, bytes)
        check_success_is_a_part(body, boundary, value)
    else:
        assert issubclass(value, BadRequest)  # type: ignore[arg-type]


@given(case=mutated_forms(), cuts=cut_lists)
@FUZZ
def test_chunking_never_changes_the_outcome(
    case: tuple[bytes, bytes, bytes], cuts: list[int]
) -> None:
    body, boundary, _ = case
    assert parse(body, boundary, cuts) == parse(body, boundary, [])


@given(
    boundary=token_boundaries,
    data=st.binary(max_size=400),
    before=st.lists(st.binary(max_size=40), max_size=3),
    cuts=cut_lists,
)
@FUZZ
def test_file_bytes_come_out_exactly(
    boundary: bytes, data: bytes, before: list[bytes], cuts: list[int]
) -> None:
    delimiter = b"\r\n--" + boundary
    # Data that contains its own delimiter is not representable in this form: skip only that.
    if any(delimiter in b"\r\n" + chunk + b"\r\n" for chunk in [data, *before]):
        return
    parts = [(f'form-data; name="n{i}"'.encode(), note) for i, note in enumerate(before)]
    parts.append((b'form-data; name="file"; filename="x"', data))
    assert parse(form(boundary, parts), boundary, cuts) == ("ok", data)


# --- digests -----------------------------------------------------------------------------------
digest_text = st.one_of(
    st.text(max_size=120),
    st.lists(
        st.tuples(
            st.sampled_from(["sha-256", "SHA-512", "md5", "crc32", "", " sha-256 "]),
            st.sampled_from(["=", "", "=="]),
            st.text(alphabet=":=+/ AZaz09,\x00é", max_size=100),
        ),
        max_size=4,
    ).map(lambda members: ",".join(n + s + v for n, s, v in members)),
)


@given(content_digest=st.none() | digest_text, content_md5=st.none() | st.text(max_size=60))
@FUZZ
@example(content_digest="sha-256=:" + "A" * 5000 + ":", content_md5=None)
@example(content_digest=None, content_md5="\x00")
def test_digest_headers_only_raise_bad_request(
    content_digest: str | None, content_md5: str | None
) -> None:
    try:
        expected = ExpectedDigests.from_headers(content_digest, content_md5)
    except BadRequest:
        return
    assert set(expected.digests) <= {"sha256", "sha512", "md5"}


# --- identifiers -------------------------------------------------------------------------------
@given(value=st.text(max_size=300) | st.binary(max_size=300).map(lambda b: b.decode("latin-1")))
@FUZZ
def test_device_and_version_ids_only_raise_their_errors(value: str) -> None:
    for check, error in ((check_device_id, InvalidDeviceId), (check_version_id, InvalidVersionId)):
        with contextlib.suppress(error):
            assert check(value) == value


@given(
    cursor=st.text(max_size=500)
    | st.text(
        alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_", max_size=410
    )
    | st.binary(max_size=300).map(lambda b: base64.urlsafe_b64encode(b).decode().rstrip("="))
)
@FUZZ
def test_cursors_only_raise_invalid_parameter(cursor: str) -> None:
    try:
        decoded = decode_cursor(cursor)
    except InvalidParameter:
        return
    assert decoded.isascii()


# --- Range headers -----------------------------------------------------------------------------
digits = st.text(alphabet="0123456789", min_size=0, max_size=25)
range_headers = st.one_of(
    st.none(),
    st.text(max_size=60),
    st.builds(lambda a, b: f"bytes={a}-{b}", digits, digits),
    st.builds(
        lambda u, a, b: f"{u}={a}-{b}", st.sampled_from(["bytes", "BYTES", "items"]), digits, digits
    ),
    st.builds(
        lambda a, b, ws: f"{ws}bytes={a}-{b}{ws}", digits, digits, st.sampled_from([" ", "\t"])
    ),
)


@given(header=range_headers, size=st.integers(0, 10**12))
@FUZZ
@example(header="bytes=0-", size=0)
@example(header="bytes=-0", size=10)
@example(header="bytes=-99999999999999999999", size=10)
@example(header="bytes=\u0660-\u0669", size=10)  # Arabic-Indic digits: \d matches them
def test_byte_range_is_none_or_inside_the_file(header: str | None, size: int) -> None:
    try:
        span = _byte_range(header, size)
    except RangeNotSatisfiable:
        return
    if span is not None:
        start, end = span
        assert 0 <= start < end <= size


def test_byte_range_with_huge_numbers() -> None:
    with pytest.raises(RangeNotSatisfiable):
        _byte_range("bytes=" + "9" * 5000 + "-", 10)


# --- tokens ------------------------------------------------------------------------------------
KEYS = KeyRing.of(TEST_SECRET_KEY, [], "test")
VERIFIER = TokenVerifier(KEYS)
GOOD = issue_token(KEYS, Role.DEVICE, device_id="sensor-1")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)


@st.composite
def token_like(draw: st.DrawFn) -> str:
    kind = draw(st.sampled_from(["text", "parts", "json-parts", "mutated"]))
    if kind == "text":
        return draw(st.text(max_size=300))
    if kind == "parts":
        parts = draw(st.lists(st.text(alphabet="ABCabc012-_=.+/", max_size=60), max_size=5))
        return ".".join(parts)
    if kind == "json-parts":
        header = draw(st.dictionaries(st.sampled_from(["alg", "kid", "typ", "crit"]), json_values))
        claims = draw(
            st.dictionaries(st.sampled_from(["role", "sub", "iat", "exp", "nbf"]), json_values)
        )
        raw = [
            json.dumps(header).encode(),
            json.dumps(claims).encode(),
            draw(st.binary(max_size=40)),
        ]
        return ".".join(_b64(part) for part in raw)
    at = draw(st.integers(0, len(GOOD) - 1))
    return GOOD[:at] + draw(st.text(max_size=3)) + GOOD[at + 1 :]


@given(token=token_like())
@FUZZ
def test_token_verification_only_raises_unauthorized(token: str) -> None:
    try:
        principal = VERIFIER.verify(token)
    except Unauthorized:
        return
    assert isinstance(principal, Principal)


@given(
    claims=st.dictionaries(
        st.sampled_from(["role", "sub", "iat", "exp", "nbf", "jti"]),
        json_values | st.sampled_from(["device", "admin", "operator"]),
    )
)
@FUZZ
@example(claims={"role": "device", "sub": "../x", "iat": 0})
@example(claims={"role": "admin", "iat": 0, "exp": 1e300})
@example(claims={"role": "admin", "iat": "1"})
def test_signed_tokens_with_any_claims_only_raise_unauthorized(claims: dict[str, object]) -> None:
    """Even claims signed with the right key (only an issuer can make these) never crash."""
    import jwt

    token = jwt.encode(
        claims, TEST_SECRET_KEY, algorithm="HS256", headers={"kid": KEYS.signing_kid}
    )
    try:
        principal = VERIFIER.verify(token)
    except Unauthorized:
        return
    assert principal.role in set(Role)
    assert (principal.device_id is not None) == (principal.role is Role.DEVICE)
