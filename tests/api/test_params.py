"""Query parameters are checked before any storage call: numbers are ASCII digits, bounded."""

from __future__ import annotations

import pytest
from starlette.requests import Request

from mindproject.api.params import MAX_LIMIT, limit
from mindproject.errors import InvalidParameter


def request_with(query: str) -> Request:
    return Request({"type": "http", "query_string": query.encode(), "headers": []})


@pytest.mark.parametrize(
    "raw",
    [
        "%C2%B2",
        "%C2%B9",
        "%C2%B3",
        "%E2%91%A0",
        "%D9%A1",
        "5" * 5000,
        "0",
        "-1",
        "1.5",
        "1e3",
        " 5",
        "1001",
        "",
        "%EF%BC%95",
    ],
    ids=lambda raw: raw[:12],
)
def test_limit_accepts_ascii_digits_only(raw: str) -> None:
    """`limit=²` passed str.isdigit() and then failed int(): a 500 with two tracebacks."""
    with pytest.raises(InvalidParameter, match="limit"):
        limit(request_with(f"limit={raw}"), default=100)


@pytest.mark.parametrize(("raw", "value"), [("1", 1), ("0042", 42), (str(MAX_LIMIT), MAX_LIMIT)])
def test_limit_in_range(raw: str, value: int) -> None:
    assert limit(request_with(f"limit={raw}"), default=100) == value


def test_limit_default() -> None:
    assert limit(request_with(""), default=100) == 100
