"""Range handling of raw downloads: single byte ranges, 416 for ranges outside the file."""

from __future__ import annotations

import pytest

from mindproject.api.downloads import _byte_range
from mindproject.errors import RangeNotSatisfiable


def test_refused_range_is_quoted_briefly() -> None:
    """A 416 once echoed the whole Range header (kilobytes of it) back in its message."""
    header = "bytes=" + "9" * 8000 + "-"
    with pytest.raises(RangeNotSatisfiable) as refused:
        _byte_range(header, 10)
    assert len(refused.value.message) < 200
    assert refused.value.headers["Content-Range"] == "bytes */10"


@pytest.mark.parametrize(
    ("header", "span"),
    [("bytes=0-4", (0, 5)), ("bytes=5-", (5, 10)), ("bytes=-3", (7, 10)), ("bytes=a-b", None)],
)
def test_byte_ranges(header: str, span: tuple[int, int] | None) -> None:
    assert _byte_range(header, 10) == span


def test_non_ascii_digits_are_not_a_range() -> None:
    assert (
        _byte_range("bytes=\u0661-\u0663", 10) is None
    )  # Arabic-Indic digits: ignored, whole file
