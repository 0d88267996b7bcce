"""The `mindproject` command's start-up: the admin token is shown once, when the key is made."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import jwt
import pytest

from mindproject.cli import _prepare_keys, main, parse_ttl
from mindproject.config import load_settings
from tests.helpers import TEST_SECRET_KEY

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


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("3600", 3600),
        ("15m", 900),
        ("12h", 43200),
        ("30d", 2592000),
        ("none", None),
        ("Never", None),
    ],
)
def test_ttl_values(text: str, seconds: int | None) -> None:
    assert parse_ttl(text) == seconds


@pytest.mark.parametrize("text", ["0", "0d", "", "-5", "1w", "forever"])
def test_ttl_refuses_zero_and_garbage(text: str) -> None:
    """`--ttl 0` used to mean "never expires", silently: "never" must be said."""
    with pytest.raises(argparse.ArgumentTypeError):
        parse_ttl(text)


@pytest.mark.parametrize(
    ("flags", "lifetime"),
    [
        (["--role", "admin"], 30 * 86400),
        (["--role", "admin", "--ttl", "none"], None),
        (["--role", "operator", "--ttl", "12h"], 12 * 3600),
        (["--device", "d1"], None),
        (["--device", "d1", "--ttl", "1d"], 86400),
    ],
)
def test_token_lifetimes(
    flags: list[str],
    lifetime: int | None,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("MINDPROJECT_SECRET_KEY", TEST_SECRET_KEY)
    assert main(["token", "create", *flags]) == 0
    claims = jwt.decode(capsys.readouterr().out.strip(), options={"verify_signature": False})
    assert claims.get("exp") == (None if lifetime is None else claims["iat"] + lifetime)
