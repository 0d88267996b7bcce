"""The `mindproject` command's start-up: the admin token is shown once, when the key is made."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mindproject.cli import _prepare_keys
from mindproject.config import load_settings

JWT = re.compile(r"eyJ[\w-]+\.[\w-]+\.[\w-]+")


def test_admin_token_is_printed_only_when_the_key_is_created(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Nine starts printed nine live 24-hour admin tokens: a container's logs would collect
    one per restart."""
    settings = load_settings(storage=f"file://{tmp_path / 'data'}")
    _prepare_keys(settings)
    first = capsys.readouterr().err
    assert JWT.search(first)
    assert "created now" in first
    for _ in range(3):
        _prepare_keys(settings)
        later = capsys.readouterr().err
        assert "TOKEN=" not in later
        assert JWT.search(later) is None
        assert "mindproject token create --role admin" in later
