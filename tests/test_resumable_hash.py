"""The resumable sha256 matches hashlib across any split, through saved states."""

from __future__ import annotations

import hashlib
import pickle

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mindproject.resumable_hash import STATE_BYTES, ResumableSha256


@given(data=st.binary(max_size=5000), cuts=st.lists(st.integers(0, 5000), max_size=6))
@settings(max_examples=200)
def test_saved_states_resume_to_the_same_digest(data: bytes, cuts: list[int]) -> None:
    running = ResumableSha256()
    last = 0
    for cut in sorted(set(cuts)):
        if cut > len(data):
            break
        running.update(data[last:cut])
        # Each chunk may be handled by another process: only the state's bytes travel.
        running = ResumableSha256(pickle.loads(pickle.dumps(running.state())))
        last = cut
    running.update(memoryview(data[last:]))
    assert running.hexdigest() == hashlib.sha256(data).hexdigest()


def test_digest_can_be_read_midway_and_hashing_goes_on() -> None:
    running = ResumableSha256()
    running.update(b"abc")
    assert running.hexdigest() == hashlib.sha256(b"abc").hexdigest()
    running.update(bytearray(b"def"))
    assert running.hexdigest() == hashlib.sha256(b"abcdef").hexdigest()


def test_a_foreign_state_is_refused() -> None:
    with pytest.raises(ValueError, match="state"):
        ResumableSha256(b"x" * (STATE_BYTES - 1))
