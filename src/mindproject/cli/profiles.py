"""Profiles: where the server is and which token to send, in ~/.config/mindproject/config.toml.

    ["default"]
    url = "http://127.0.0.1:5000"
    token = "eyJ…"

One table per profile. `--url` / `--token` win over `MINDPROJECT_URL` / `MINDPROJECT_TOKEN`,
which win over the profile (`--profile NAME`, or `MINDPROJECT_PROFILE`, else `default`).
The file holds bearer tokens: it is written with mode 0600, atomically (a temporary file in the
same folder, then renamed), so a crash never leaves half a file or a readable one.
"""

from __future__ import annotations

import json
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path

from mindproject.cli.failures import UsageError

DEFAULT_URL = "http://127.0.0.1:5000"
DEFAULT_PROFILE = "default"


def config_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "mindproject" / "config.toml"


@dataclass(frozen=True)
class Target:
    url: str
    token: str | None
    profile: str


def read_profiles(path: Path | None = None) -> dict[str, dict[str, str]]:
    path = path or config_path()
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise UsageError(f"cannot read {path}: {exc}") from None
    return {
        name: {k: v for k, v in table.items() if isinstance(v, str)}
        for name, table in data.items()
        if isinstance(table, dict)
    }


def _toml_string(text: str) -> str:
    # A JSON string is a valid TOML basic string (the same escapes; json never writes `\/`).
    return json.dumps(text, ensure_ascii=False)


def render(profiles: dict[str, dict[str, str]]) -> str:
    lines = ["# Written by `mindproject login`; holds bearer tokens (mode 0600)."]
    for name in sorted(profiles):
        lines.append("")
        lines.append(f"[{_toml_string(name)}]")
        lines.extend(f"{key} = {_toml_string(value)}" for key, value in profiles[name].items())
    return "\n".join(lines) + "\n"


def write_profiles(profiles: dict[str, dict[str, str]], path: Path | None = None) -> Path:
    path = path or config_path()
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    # 0600 from the first byte: never a moment when another user could read the tokens.
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(render(profiles))
            handle.flush()
            os.fsync(handle.fileno())
        temporary.replace(path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return path


def save_profile(name: str, url: str, token: str | None, path: Path | None = None) -> Path:
    profiles = read_profiles(path)
    profiles[name] = {"url": url} | ({"token": token} if token else {})
    return write_profiles(profiles, path)


def resolve(url: str | None, token: str | None, profile: str | None) -> Target:
    """Flags, then environment, then the profile, then the local default server."""
    name = profile or os.environ.get("MINDPROJECT_PROFILE") or DEFAULT_PROFILE
    stored = read_profiles().get(name)
    if stored is None and profile:
        raise UsageError(f"no profile {name!r} in {config_path()}; add it with mindproject login")
    stored = stored or {}
    return Target(
        url=url or os.environ.get("MINDPROJECT_URL") or stored.get("url") or DEFAULT_URL,
        token=token or os.environ.get("MINDPROJECT_TOKEN") or stored.get("token"),
        profile=name,
    )
