"""Settings, read from `MINDPROJECT_*` environment variables (and `mindproject serve` flags).

Every setting is documented in the README's settings table; a test fails when one is not.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from mindproject.errors import ConfigurationError

GiB = 1024**3


class Settings(BaseSettings):
    """Process settings. Field names map to `MINDPROJECT_<NAME>` environment variables."""

    model_config = SettingsConfigDict(env_prefix="MINDPROJECT_", extra="forbid", frozen=True)

    storage: str = Field(
        default="file://./data",
        description="Where uploads live: file:///path, s3://bucket/prefix or memory://",
    )
    host: str = Field(default="127.0.0.1", description="Address to listen on")
    port: int = Field(default=5000, ge=1, le=65535, description="TCP port to listen on")
    workers: int = Field(default=1, ge=1, le=64, description="Worker processes")
    max_upload_bytes: int = Field(
        default=5 * GiB, ge=1, description="Largest accepted upload, checked while streaming"
    )
    fsync: bool = Field(
        default=True,
        description="File backend: flush data and directory entries to disk before answering",
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        default="info", description="Minimum level of the JSON log lines"
    )
    shutdown_grace_seconds: float = Field(
        default=30.0, ge=0, le=3600, description="How long in-flight requests may finish on SIGTERM"
    )

    @field_validator("storage")
    @classmethod
    def _known_scheme(cls, value: str) -> str:
        if not value.startswith(("file://", "s3://", "memory://")):
            raise ValueError("must start with file://, s3:// or memory://")
        if value.startswith("s3://") and not value.removeprefix("s3://").split("/", 1)[0]:
            raise ValueError("s3:// needs a bucket name, e.g. s3://telemetry/uploads")
        return value


def load_settings(**overrides: object) -> Settings:
    """Build settings from the environment plus explicit overrides (CLI flags).

    Raises ConfigurationError naming each bad setting, so start-up stops with a clear message.
    """
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            name = "MINDPROJECT_" + str(error["loc"][0]).upper() if error["loc"] else "settings"
            problems.append(f"{name}: {error['msg']} (got {error.get('input')!r})")
        raise ConfigurationError("invalid settings: " + "; ".join(problems)) from None
