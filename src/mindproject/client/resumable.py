"""The tus side of uploads: metadata encoding, and the small local state file that remembers
each unfinished upload's URL so that a restarted process resumes instead of starting over."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import tempfile
import threading
from pathlib import Path
from typing import Any

TUS_VERSION = "1.0.0"
STATE_FILE = "resumable-uploads.json"
# Entries of uploads never finished are dropped after this long: the server forgets them after
# MINDPROJECT_RESUMABLE_EXPIRY_SECONDS (a day by default) anyway.
STATE_MAX_AGE_SECONDS = 7 * 24 * 3600
# Threads of one process (several clients, or one client from several threads) take turns on
# the file's read-modify-write; other processes may still race (see StateFile).
_STATE_LOCK = threading.Lock()


def default_state_dir() -> Path:
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "mindproject"


def encode_metadata(values: dict[str, str | bytes]) -> str:
    """tus `Upload-Metadata`: comma-separated `key base64(value)` pairs."""
    pairs = []
    for key, value in values.items():
        raw = value.encode() if isinstance(value, str) else value
        pairs.append(f"{key} {base64.b64encode(raw).decode()}")
    return ",".join(pairs)


def state_key(base_url: str, device: str, path: Path, size: int, mtime_ns: int) -> str:
    """Names one file's upload: a changed file (size or mtime) is a new upload."""
    raw = json.dumps([base_url, device, str(path.resolve()), size, mtime_ns])
    return hashlib.sha256(raw.encode()).hexdigest()


class StateFile:
    """{key: {"url": upload URL, "created": epoch}} in one JSON file, mode 0600, replaced
    atomically so a crash mid-write leaves the old file, never half of one. Processes sharing it
    may lose each other's entries when they write at the same moment; that costs a fresh upload,
    never a wrong one (the server checks offsets and the whole file's sha256)."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / STATE_FILE

    def _read(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def _write(self, data: dict[str, Any]) -> None:
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".state-", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w") as handle:  # mkstemp makes it 0600
                json.dump(data, handle)
                handle.flush()
                os.fsync(handle.fileno())
            Path(tmp).replace(self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                Path(tmp).unlink()
            raise

    def get(self, key: str) -> str | None:
        entry = self._read().get(key)
        url = entry.get("url") if isinstance(entry, dict) else None
        return url if isinstance(url, str) else None

    def put(self, key: str, url: str, now: float) -> None:
        with _STATE_LOCK:
            data = {
                k: v
                for k, v in self._read().items()
                if isinstance(v, dict) and now - float(v.get("created", 0)) < STATE_MAX_AGE_SECONDS
            }
            data[key] = {"url": url, "created": now}
            self._write(data)

    def forget(self, key: str) -> None:
        with _STATE_LOCK:
            data = self._read()
            if data.pop(key, None) is not None:
                self._write(data)
