"""Device ids, version ids and pagination cursors: what is valid, and how versions are made.

Checked before any storage call, so hostile ids (path traversal, encoded slashes, control
characters) never reach a file path or an object key.
"""

from __future__ import annotations

import base64
import binascii
import random
import re
import secrets
import time
from datetime import UTC, datetime

from mindproject.errors import (
    DirectUploadNotFound,
    InvalidDeviceId,
    InvalidParameter,
    InvalidVersionId,
    ResumableNotFound,
)

# The patterns are written in the syntax Python's `re` and JSON Schema (ECMA-262) share, so the
# OpenAPI document uses them as they are (anchored there: JSON Schema patterns search).
DEVICE_ID_MAX = 128
DEVICE_ID_PATTERN = rf"[A-Za-z0-9_:\-][A-Za-z0-9._:\-]{{0,{DEVICE_ID_MAX - 1}}}"
_DEVICE_ID = re.compile(DEVICE_ID_PATTERN)

# A version id is 16 digits of (10**16 - microseconds since the epoch) and 8 hex digits of
# randomness: ids sort newest first as plain strings, so a backend that lists keys in order
# (S3, SQLite) gives "latest" and "newest first" without sorting, and concurrent uploads in the
# same microsecond still get distinct ids.
VERSION_PATTERN = r"[0-9]{16}-[0-9a-f]{8}"
_VERSION = re.compile(VERSION_PATTERN)
VERSION_EPOCH = 10**16


def check_device_id(value: str) -> str:
    if not _DEVICE_ID.fullmatch(value):
        raise InvalidDeviceId(
            f"device id must be 1-{DEVICE_ID_MAX} characters of A-Z a-z 0-9 . _ : - and not start "
            "with a dot"
        )
    return value


def check_version_id(value: str) -> str:
    if not _VERSION.fullmatch(value):
        raise InvalidVersionId("version id is not one this service issued")
    return value


# Seeded once from the OS: a version id's suffix only has to differ, not be secret, and calling
# getrandom() per upload showed up in profiles.
_suffixes = random.Random(secrets.randbits(128))  # noqa: S311 - uniqueness, not secrecy


def new_version_id(now_us: int | None = None) -> str:
    micros = time.time_ns() // 1000 if now_us is None else now_us
    return f"{VERSION_EPOCH - micros:016d}-{_suffixes.getrandbits(32):08x}"


# A resumable upload's id: 128 random bits in hex. It appears in URLs, so it must be unguessable
# as well as unique (the device's token is still required to use it).
UPLOAD_ID_PATTERN = r"[0-9a-f]{32}"
_UPLOAD_ID = re.compile(UPLOAD_ID_PATTERN)


def new_upload_id() -> str:
    return secrets.token_hex(16)


def check_upload_id(value: str) -> str:
    if not _UPLOAD_ID.fullmatch(value):
        # 404, not 400: to a tus client an unknown upload URL means "start a new upload".
        raise ResumableNotFound("no such resumable upload")
    return value


def version_time(version: str) -> datetime:
    micros = VERSION_EPOCH - int(version[:16])
    return datetime.fromtimestamp(micros / 1_000_000, tz=UTC)


def format_time(moment: datetime) -> str:
    return moment.isoformat(timespec="microseconds").replace("+00:00", "Z")


def encode_cursor(last: str) -> str:
    """An opaque, URL-safe cursor naming the last item of a page."""
    return base64.urlsafe_b64encode(last.encode()).decode().rstrip("=")


CURSOR_PATTERN = r"[A-Za-z0-9_\-]{1,400}"
_CURSOR = re.compile(CURSOR_PATTERN)


def decode_cursor(cursor: str) -> str:
    if not _CURSOR.fullmatch(cursor):
        raise InvalidParameter("cursor is not one this service issued")
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        return raw.decode("ascii")
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise InvalidParameter("cursor is not one this service issued") from None


# A direct upload's id: its expiry in epoch seconds (10 digits), a dash, 128 random bits in hex.
# The expiry in the id lets the sweeper find expired uploads from one LIST of their keys, without
# reading each one's state; the random part makes the id (it appears in URLs) unguessable.
DIRECT_UPLOAD_ID_PATTERN = r"[0-9]{10}-[0-9a-f]{32}"
_DIRECT_UPLOAD_ID = re.compile(DIRECT_UPLOAD_ID_PATTERN)


def new_direct_upload_id(expires_at: int) -> str:
    return f"{expires_at:010d}-{secrets.token_hex(16)}"


def check_direct_upload_id(value: str) -> str:
    if not _DIRECT_UPLOAD_ID.fullmatch(value):
        raise DirectUploadNotFound("no such direct upload")
    return value


def direct_upload_expiry(staging_id: str) -> int:
    """When a direct upload expires (epoch seconds), read from its id."""
    return int(staging_id[:10])
