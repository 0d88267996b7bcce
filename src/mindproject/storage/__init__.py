"""Storage backends behind one interface, chosen by a URL (`MINDPROJECT_STORAGE`)."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from mindproject.errors import ConfigurationError
from mindproject.storage.base import Page, Storage, UploadInfo, UploadSource

if TYPE_CHECKING:
    from obstore.store import ClientConfig, RetryConfig, S3Config, S3Store

__all__ = ["Page", "Storage", "UploadInfo", "UploadSource", "open_storage"]


def open_storage(
    url: str,
    *,
    fsync: bool = True,
    resumable_takeover_seconds: float | None = None,
    index: str | None = None,
    index_pool_size: int = 10,
    segment_window_ms: int = 50,
    segment_max_bytes: int = 8 * 1024 * 1024,
    segment_max_upload_bytes: int = 256 * 1024,
) -> Storage:
    """`file:///abs/path` or `file://./relative`, `s3://bucket/prefix`, or `memory://`.

    `resumable_takeover_seconds` (object stores): how long a dead replica's claim on a resumable
    upload holds it before another replica may take over (the file backend's locks die with
    their process and need no such wait).

    `index` (`postgresql://…`, with an object store): the fleet mode, bytes in the store and the
    index in PostgreSQL, small uploads group-committed into segments (storage/indexed.py);
    `index_pool_size` connections to it at most.
    """
    takeover = (
        {}
        if resumable_takeover_seconds is None
        else {"takeover_seconds": resumable_takeover_seconds}
    )
    parts = urlsplit(url)
    if index is not None:
        if parts.scheme not in ("s3", "memory"):
            raise ConfigurationError(
                "MINDPROJECT_INDEX needs object storage: MINDPROJECT_STORAGE=s3://bucket/prefix"
            )
        from mindproject.storage.indexed import IndexedStorage
        from mindproject.storage.pg_index import PgIndex

        if parts.scheme == "memory":
            from obstore.store import MemoryStore

            store: object = MemoryStore()
            prefix = parts.netloc + parts.path
        else:
            store, prefix = s3_store(parts.netloc), parts.path
        return IndexedStorage(
            store,
            prefix,
            PgIndex(index, pool_size=index_pool_size),
            segment_window_seconds=segment_window_ms / 1000,
            segment_max_bytes=segment_max_bytes,
            segment_max_upload_bytes=segment_max_upload_bytes,
            **takeover,
        )
    if parts.scheme == "file":
        from mindproject.storage.filesystem import FileStorage

        return FileStorage(Path(parts.netloc + parts.path).resolve(), fsync=fsync)
    if parts.scheme == "memory":
        from obstore.store import MemoryStore

        from mindproject.storage.objectstore import ObjectStorage

        return ObjectStorage(MemoryStore(), parts.netloc + parts.path, **takeover)
    if parts.scheme == "s3":
        from mindproject.storage.objectstore import ObjectStorage

        return ObjectStorage(s3_store(parts.netloc), parts.path, **takeover)
    raise ConfigurationError(f"MINDPROJECT_STORAGE: unknown scheme in {url!r}")


def s3_store(bucket: str) -> S3Store:
    """An S3 store honouring the standard AWS variables (AWS_ENDPOINT_URL, keys, region, ECS
    task role). Retries are bounded so a dead endpoint fails a request within seconds."""
    from obstore.store import S3Store

    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    config: S3Config = {"region": region}
    if endpoint:
        config["endpoint"] = endpoint
        config["virtual_hosted_style_request"] = False
    client_options: ClientConfig = {
        "allow_http": bool(endpoint and endpoint.startswith("http://")),
        "connect_timeout": timedelta(seconds=2),
        "timeout": timedelta(seconds=60),
        "pool_idle_timeout": timedelta(seconds=30),
    }
    retry_config: RetryConfig = {
        "max_retries": 2,
        "retry_timeout": timedelta(seconds=5),
        "backoff": {
            "init_backoff": timedelta(milliseconds=100),
            "max_backoff": timedelta(seconds=1),
            "base": 2,
        },
    }
    return S3Store(bucket, config=config, client_options=client_options, retry_config=retry_config)
