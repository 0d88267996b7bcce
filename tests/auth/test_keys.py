"""Signing keys: strength checks, the default key file, rotation from the environment."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from mindproject.auth.keys import ensure_key_file, load_keys
from mindproject.config import load_settings
from mindproject.errors import ConfigurationError


@pytest.mark.parametrize("key", ["short", "changeme" * 5, "a" * 40, "secret-123"])
def test_weak_keys_are_refused(key: str) -> None:
    with pytest.raises(ConfigurationError, match="MINDPROJECT_SECRET_KEY"):
        load_keys(load_settings(secret_key=key))


def test_previous_keys_join_the_ring() -> None:
    current = "current-key-0123456789-abcdefghijklmnopq"
    old = "previous-key-9876543210-zyxwvutsrqponmlk"
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
    path.write_text("k" * 10 + "0123456789abcdefghijklmnopqrstuv\n")
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
