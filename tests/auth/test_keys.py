"""Signing keys: strength checks, the default key file, rotation from the environment."""

from __future__ import annotations

import secrets
import stat
from collections.abc import Callable
from pathlib import Path

import pytest

from mindproject.auth.keys import ensure_key_file, load_keys
from mindproject.config import load_settings
from mindproject.errors import ConfigurationError


@pytest.mark.parametrize(
    "key",
    [
        "short",
        "changeme" * 5,
        "a" * 40,
        "secret-123",
        # Placeholders of 32+ characters that a length check alone let through.
        "replace-me-with-a-real-secret-key-please",
        "changeme-changeme-changeme-changeme1",
        "your-256-bit-secret-your-256-bit-secret",
        "abcdefgh" * 4,
        "01234567890123456789012345678901",
    ],
)
def test_weak_keys_are_refused(key: str) -> None:
    with pytest.raises(ConfigurationError, match="MINDPROJECT_SECRET_KEY") as refused:
        load_keys(load_settings(secret_key=key))
    assert "secrets.token_urlsafe" in refused.value.message  # says how to make a good one


@pytest.mark.parametrize("make", [secrets.token_hex, secrets.token_urlsafe])
def test_generated_keys_are_accepted(make: Callable[[int], str]) -> None:
    for _ in range(200):
        key = make(16) if make is secrets.token_hex else make(32)
        assert load_keys(load_settings(secret_key=key)).signing_key == key.encode()


def test_previous_keys_join_the_ring() -> None:
    current = "current-key-Vh4nQ8rT2mX6kP9wL3zB7cJ5dF1gS0yN"
    old = "previous-key-Ew3rK7tY1uI5oP9aS2dF6gH0jL4zX8cV"
    ring = load_keys(load_settings(secret_key=current, previous_secret_keys=old))
    assert len(ring.keys) == 2
    assert ring.signing_key == current.encode()


def test_default_key_file_is_private_and_reused(tmp_path: Path) -> None:
    settings = load_settings(storage=f"file://{tmp_path}/data")
    path = tmp_path / "data" / "secret.key"
    assert ensure_key_file(path) is True
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    first = load_keys(settings)
    assert ensure_key_file(path) is False
    assert load_keys(settings) == first


def test_key_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "keys"
    path.write_text("k" * 10 + "Tq8wE2rY6uI0oP4aS7dF1gH5jK9lZ3xC\n")
    path.chmod(0o644)
    with pytest.raises(ConfigurationError, match="chmod 600"):
        load_keys(load_settings(secret_key_file=str(path)))


def test_s3_without_a_key_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="MINDPROJECT_SECRET_KEY"):
        load_keys(load_settings(storage="s3://bucket/prefix"))


def test_open_mode_refuses_a_public_address() -> None:
    with pytest.raises(ConfigurationError, match="MINDPROJECT_AUTH=off"):
        load_settings(auth="off", host="0.0.0.0")
    assert load_settings(auth="off", host="0.0.0.0", allow_open_nonlocal=True).auth == "off"
