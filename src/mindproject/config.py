"""Settings, read from `MINDPROJECT_*` environment variables (and `mindproject serve` flags).

Every setting is documented in the README's settings table; a test fails when one is not.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
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
    keepalive_seconds: int = Field(
        default=75,
        ge=1,
        le=4000,
        description="How long an idle keep-alive connection stays open; keep it above the load "
        "balancer's idle timeout so the balancer closes first",
    )
    shutdown_drain_seconds: float = Field(
        default=2.0,
        ge=0,
        le=300,
        description="On SIGTERM, how long readiness answers 503 while requests are still "
        "accepted, before the listener closes",
    )
    shutdown_grace_seconds: float = Field(
        default=30.0, ge=0, le=3600, description="How long in-flight requests may finish on SIGTERM"
    )

    # Identity and access (docs/security.md).
    auth: Literal["token", "off"] = Field(
        default="token", description="token: bearer tokens required; off: open, loopback only"
    )
    secret_key: SecretStr | None = Field(
        default=None, description="Token signing key (32+ characters); environment only"
    )
    previous_secret_keys: SecretStr | None = Field(
        default=None, description="Comma-separated old keys still accepted during a rotation"
    )
    secret_key_file: Path | None = Field(
        default=None,
        description="File of keys, one per line, the first signs; default <data>/secret.key "
        "for file:// storage when no key is set",
    )
    allow_open_nonlocal: bool = Field(
        default=False, description="With auth off, allow listening on a non-loopback address"
    )
    cors_origins: str = Field(
        default="", description="Comma-separated origins allowed by CORS; empty: CORS off"
    )

    # Limits against abuse (docs/security.md).
    rate_limit_per_minute: int = Field(
        default=600, ge=0, description="Requests per device per minute, per replica; 0: off"
    )
    rate_limit_burst: int = Field(
        default=60, ge=1, description="Requests a device may send at once before the rate applies"
    )
    max_concurrent_uploads_per_device: int = Field(
        default=8, ge=0, description="Uploads in flight per device, per replica; 0: no cap"
    )
    max_header_bytes: int = Field(
        default=16384, ge=1024, description="Largest total size of a request's headers"
    )
    body_timeout_seconds: float = Field(
        default=30.0, gt=0, description="Longest wait for the next piece of a request body"
    )
    revocation_refresh_seconds: float = Field(
        default=5.0, gt=0, le=300, description="How often each replica re-reads the revocations"
    )

    # Resumable uploads (tus, docs/api.md).
    resumable_expiry_seconds: int = Field(
        default=86400,
        ge=1,
        description="An unfinished resumable upload untouched this long expires; its bytes and "
        "state are removed",
    )
    resumable_takeover_seconds: float = Field(
        default=60.0,
        ge=1,
        le=3600,
        description="Object storage: a resumable upload held by a replica that died mid-chunk "
        "may be taken over by another replica after this long (423 until then)",
    )
    max_resumable_per_device: int = Field(
        default=16, ge=0, description="Unfinished resumable uploads per device; 0: no cap"
    )

    # Direct-to-S3 uploads (presigned URLs, docs/api.md).
    direct_upload_expiry_seconds: int = Field(
        default=900,
        ge=1,
        le=7 * 86400,  # SigV4 presigned URLs live at most 7 days
        description="How long a direct upload's presigned URL and completion stay valid; "
        "staged bytes never completed are removed after that",
    )

    # The fleet mode: bytes in S3, index in PostgreSQL (docs/storage.md#fleet-mode).
    index: str | None = Field(
        default=None,
        description="PostgreSQL URL of the fleet mode's index (postgresql://user@host:port/db), "
        "with s3:// storage; the password may come from PGPASSWORD",
    )
    index_pool_size: int = Field(
        default=10,
        ge=1,
        description="Fleet mode: PostgreSQL connections each worker process may hold at once "
        "(size it so replicas x workers x this stays under the server's max_connections)",
    )
    segment_window_ms: int = Field(
        default=50,
        ge=1,
        le=10_000,
        description="Fleet mode: how long small uploads are gathered into one segment at most",
    )
    segment_max_bytes: int = Field(
        default=8 * 1024 * 1024,
        ge=1024,
        le=5 * GiB,
        description="Fleet mode: a segment is written as soon as it holds this many bytes",
    )
    segment_max_upload_bytes: int = Field(
        default=256 * 1024,
        ge=0,
        description="Fleet mode: uploads up to this size are group-committed into segments; "
        "larger ones get an object each",
    )
    compaction_interval_seconds: float = Field(
        default=300.0,
        gt=0,
        le=86400,
        description="Fleet mode: how often a replica tries to compact (one at a time, through "
        "a PostgreSQL advisory lock)",
    )
    compaction_threshold: float = Field(
        default=0.5,
        ge=0,
        le=1,
        description="Fleet mode: segments whose live bytes fall below this share of their size "
        "are rewritten",
    )
    compaction_grace_seconds: float = Field(
        default=600.0,
        ge=0,
        description="Fleet mode: how long a rewritten segment stays for readers that looked it "
        "up before, and how old an unindexed segment must be to be removed as an orphan",
    )

    @field_validator("storage")
    @classmethod
    def _known_scheme(cls, value: str) -> str:
        if not value.startswith(("file://", "s3://", "memory://")):
            raise ValueError("must start with file://, s3:// or memory://")
        if value.startswith("s3://") and not value.removeprefix("s3://").split("/", 1)[0]:
            raise ValueError("s3:// needs a bucket name, e.g. s3://telemetry/uploads")
        return value

    @field_validator("index")
    @classmethod
    def _postgresql_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("postgresql://", "postgres://")):
            raise ValueError("must be a postgresql:// URL")
        return value or None

    @model_validator(mode="after")
    def _index_needs_object_storage(self) -> Settings:
        if self.index is not None and not self.storage.startswith(("s3://", "memory://")):
            raise ValueError(
                "MINDPROJECT_INDEX (the fleet mode) needs MINDPROJECT_STORAGE=s3://bucket/prefix"
            )
        if self.segment_max_upload_bytes > self.segment_max_bytes:
            raise ValueError(
                "MINDPROJECT_SEGMENT_MAX_UPLOAD_BYTES must not exceed MINDPROJECT_SEGMENT_MAX_BYTES"
            )
        return self

    @model_validator(mode="after")
    def _open_mode_stays_local(self) -> Settings:
        loopback = self.host in ("127.0.0.1", "localhost", "::1") or self.host.startswith("127.")
        if self.auth == "off" and not loopback and not self.allow_open_nonlocal:
            raise ValueError(
                f"MINDPROJECT_AUTH=off refuses to listen on {self.host}: anyone could read and "
                "write every device's data. Use 127.0.0.1, or set MINDPROJECT_ALLOW_OPEN_NONLOCAL"
                "=true if you really mean it"
            )
        return self

    @property
    def cors_origin_list(self) -> list[str]:
        return [origin.strip() for origin in self.cors_origins.split(",") if origin.strip()]


def load_settings(**overrides: object) -> Settings:
    """Build settings from the environment plus explicit overrides (CLI flags).

    Raises ConfigurationError naming each bad setting, so start-up stops with a clear message.
    """
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            if error["loc"]:
                name = "MINDPROJECT_" + str(error["loc"][0]).upper()
                problems.append(f"{name}: {error['msg']} (got {error.get('input')!r})")
            else:
                problems.append(str(error["msg"]).removeprefix("Value error, "))
        raise ConfigurationError("invalid settings: " + "; ".join(problems)) from None
