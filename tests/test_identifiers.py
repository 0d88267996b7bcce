"""Device ids, version ids and cursors."""

from __future__ import annotations

import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mindproject.errors import InvalidDeviceId, InvalidParameter, InvalidVersionId
from mindproject.identifiers import (
    check_device_id,
    check_version_id,
    decode_cursor,
    encode_cursor,
    new_version_id,
    version_time,
)

ALLOWED = string.ascii_letters + string.digits + "._:-"


@given(st.text(alphabet=ALLOWED, min_size=1, max_size=128).filter(lambda s: s[0] != "."))
def test_valid_ids_pass(device: str) -> None:
    assert check_device_id(device) == device


@given(st.text(min_size=0, max_size=200))
def test_anything_else_is_refused(device: str) -> None:
    valid = 1 <= len(device) <= 128 and device[0] != "." and all(c in ALLOWED for c in device)
    if valid:
        assert check_device_id(device) == device
    else:
        with pytest.raises(InvalidDeviceId):
            check_device_id(device)


@pytest.mark.parametrize(
    "bad", ["", ".", "..", ".x", "a/b", "a\\b", "a\x00", "a\n", "é", "x" * 129]
)
def test_hostile_ids(bad: str) -> None:
    with pytest.raises(InvalidDeviceId):
        check_device_id(bad)


def test_versions_sort_newest_first_and_carry_their_time() -> None:
    older = new_version_id(now_us=1_700_000_000_000_000)
    newer = new_version_id(now_us=1_700_000_000_000_001)
    assert newer < older
    assert check_version_id(older) == older
    assert version_time(older).timestamp() == 1_700_000_000.0
    with pytest.raises(InvalidVersionId):
        check_version_id("../" + older)


@given(st.text(alphabet=ALLOWED, min_size=1, max_size=128))
def test_cursor_round_trip_is_url_safe(last: str) -> None:
    cursor = encode_cursor(last)
    assert set(cursor) <= set(string.ascii_letters + string.digits + "-_")
    assert decode_cursor(cursor) == last


def test_garbage_cursor_is_refused() -> None:
    with pytest.raises(InvalidParameter):
        decode_cursor("%%%")
