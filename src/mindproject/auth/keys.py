"""Token signing keys: the current key signs, older keys still verify during a rotation.

Keys come from `MINDPROJECT_SECRET_KEY` (+ `MINDPROJECT_PREVIOUS_SECRET_KEYS`), or from a key file
(one key per line, the first signs). With neither, and files on local disk, a key file is made in
the data folder with 0600 permissions, so `make run` is secure without any setup.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from mindproject.auth.key_strength import MIN_BITS, estimated_bits
from mindproject.config import Settings
from mindproject.errors import ConfigurationError

MIN_KEY_CHARS = 32
KEY_FILE_NAME = "secret.key"
GENERATE_HINT = "make one with: python3 -c 'import secrets; print(secrets.token_urlsafe(32))'"


def key_id(key: bytes) -> str:
    """A short public name for a key, carried in each token's `kid` header."""
    return hashlib.sha256(key).hexdigest()[:12]


@dataclass(frozen=True)
class KeyRing:
    signing_kid: str
    keys: dict[str, bytes]

    @property
    def signing_key(self) -> bytes:
        return self.keys[self.signing_kid]

    @classmethod
    def of(cls, current: str, previous: list[str], source: str) -> KeyRing:
        for key in (current, *previous):
            _check_strength(key, source)
        ring = {key_id(k.encode()): k.encode() for k in (current, *previous)}
        return cls(key_id(current.encode()), ring)


def _check_strength(key: str, source: str) -> None:
    if len(key) < MIN_KEY_CHARS:
        raise ConfigurationError(
            f"{source}: signing keys need {MIN_KEY_CHARS}+ characters; {GENERATE_HINT}"
        )
    if estimated_bits(key) < MIN_BITS:
        raise ConfigurationError(
            f"{source}: refusing a guessable signing key (words, repeats or sequences: about "
            f"{estimated_bits(key):.0f} bits, {MIN_BITS} needed); {GENERATE_HINT}"
        )


def default_key_file(settings: Settings) -> Path | None:
    """Where the key file lives when none is configured: the file backend's data folder."""
    parts = urlsplit(settings.storage)
    if parts.scheme != "file":
        return None
    return Path(parts.netloc + parts.path).resolve() / KEY_FILE_NAME


def ensure_key_file(path: Path) -> bool:
    """Create a key file with a fresh random key unless it exists; True when created."""
    # Usually the data folder: private, whoever creates it first (it holds every upload).
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as handle:
        handle.write(secrets.token_urlsafe(48) + "\n")
    return True


def load_keys(settings: Settings) -> KeyRing:
    previous = (
        settings.previous_secret_keys.get_secret_value() if settings.previous_secret_keys else ""
    )
    old = [key.strip() for key in previous.split(",") if key.strip()]
    if settings.secret_key is not None:
        return KeyRing.of(settings.secret_key.get_secret_value(), old, "MINDPROJECT_SECRET_KEY")
    path = settings.secret_key_file or default_key_file(settings)
    if path is None:
        raise ConfigurationError(
            "MINDPROJECT_SECRET_KEY: required with s3:// storage (or MINDPROJECT_SECRET_KEY_FILE, "
            "or MINDPROJECT_AUTH=off for local experiments)"
        )
    try:
        lines = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    except OSError as exc:
        raise ConfigurationError(
            f"MINDPROJECT_SECRET_KEY_FILE: cannot read {path}: {exc}"
        ) from None
    if not lines:
        raise ConfigurationError(f"MINDPROJECT_SECRET_KEY_FILE: {path} holds no key")
    if path.stat().st_mode & 0o077:
        raise ConfigurationError(
            f"MINDPROJECT_SECRET_KEY_FILE: {path} is readable by others; chmod 600 it"
        )
    return KeyRing.of(lines[0], [*lines[1:], *old], "MINDPROJECT_SECRET_KEY_FILE")
