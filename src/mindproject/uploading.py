"""Storing an upload, or replaying the earlier one its Idempotency-Key stands for.

A device that lost the answer to an upload retries it with the same `Idempotency-Key`: the
retry's bytes are read and checked, nothing new is stored, and the earlier version is answered
again. The same key with different bytes is a conflict (409), never a silent overwrite.
"""

from __future__ import annotations

from dataclasses import dataclass

from mindproject.errors import IdempotencyConflict
from mindproject.identifiers import new_version_id
from mindproject.storage import Storage, UploadInfo
from mindproject.streams import MeasuredStream


@dataclass(frozen=True)
class Stored:
    info: UploadInfo
    replayed: bool


async def store_upload(
    storage: Storage,
    device_id: str,
    source: MeasuredStream,
    *,
    filename: str | None,
    content_type: str | None,
    idempotency_key: str | None,
) -> Stored:
    if idempotency_key is not None:
        earlier = await storage.find_by_key(device_id, idempotency_key)
        if earlier is not None:
            async for _ in source:  # read (and verify) the retry's bytes; keep none of them
                pass
            return _replay(earlier, source, idempotency_key)
    version = new_version_id()
    info = await storage.save(
        device_id,
        version,
        source,
        filename=filename,
        content_type=content_type,
        idempotency_key=idempotency_key,
    )
    if idempotency_key is not None and info.version != version:  # a concurrent twin won
        return _replay(info, source, idempotency_key)
    return Stored(info, replayed=False)


def _replay(earlier: UploadInfo, source: MeasuredStream, key: str) -> Stored:
    if earlier.sha256 != source.sha256:
        raise IdempotencyConflict(
            f"Idempotency-Key {key} was used for different bytes (version {earlier.version}); "
            "use a new key for new data"
        )
    return Stored(earlier, replayed=True)
