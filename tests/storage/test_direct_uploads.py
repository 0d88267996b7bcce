"""Direct uploads at the storage level: presign, the client's PUT straight to S3, completion,
expiry. On the local Ceph S3 server; the file and memory backends refuse them (501)."""

from __future__ import annotations

import asyncio
import hashlib
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from mindproject.errors import (
    ChecksumMismatch,
    DeviceNotFound,
    DirectUploadNotFound,
    DirectUploadNotReceived,
    NotSupportedByStorage,
    PayloadTooLarge,
    SizeMismatch,
)
from mindproject.identifiers import new_direct_upload_id, new_version_id
from mindproject.storage import Storage, open_storage
from mindproject.storage.objectstore import MAX_SINGLE_PUT_BYTES
from tests.helpers import s3_client

pytestmark = pytest.mark.anyio

DATA = b"telemetry sent straight to S3\n" * 1000
SHA = hashlib.sha256(DATA).hexdigest()
PREFIX = "telemetry"


async def _ticket(storage: Storage, *, size: int = len(DATA), sha256: str = SHA) -> Any:
    expires_at = int(time.time()) + 600
    staging_id = new_direct_upload_id(expires_at)
    ticket = await storage.presign_direct_upload(
        "sensor-1",
        staging_id,
        size=size,
        sha256=sha256,
        filename="t.bin",
        content_type="application/octet-stream",
        expires_at=expires_at,
    )
    return staging_id, ticket


async def _send(method: str, url: str, data: bytes, headers: dict[str, str] | None = None) -> Any:
    """What a device does with the URL: straight to S3, not through the service."""
    async with httpx.AsyncClient() as client:
        return await client.request(method, url, content=data, headers=headers)


def _keys(env: dict[str, str], bucket: str, under: str = "") -> list[str]:
    listed = s3_client(env).list_objects_v2(Bucket=bucket, Prefix=f"{PREFIX}/{under}")
    return [item["Key"] for item in listed.get("Contents", [])]


@pytest.fixture
async def s3(s3_bucket: str) -> Any:
    storage = open_storage(f"s3://{s3_bucket}/{PREFIX}")
    yield storage
    await storage.close()


@pytest.mark.s3
async def test_presigned_put_then_complete_makes_a_normal_version(
    s3: Storage, s3_env: dict[str, str], s3_bucket: str
) -> None:
    staging_id, ticket = await _ticket(s3)
    url = urlsplit(ticket.url)
    assert url.hostname == "127.0.0.1"  # the loopback S3 server, not the service
    assert url.path == f"/{s3_bucket}/{PREFIX}/direct/sensor-1/{staging_id}"
    # What obstore's signer signs: the method, the key and the expiry; no header but Host.
    assert parse_qs(url.query)["X-Amz-SignedHeaders"] == ["host"]
    assert ticket.method == "PUT"
    assert ticket.headers == {"Content-Length": str(len(DATA))}

    put = await _send("PUT", ticket.url, DATA, ticket.headers)
    assert put.status_code == 200, put.text

    version = new_version_id()
    info = await s3.complete_direct_upload("sensor-1", staging_id, version, now=time.time())
    assert (info.version, info.size, info.sha256) == (version, len(DATA), SHA)
    assert (info.filename, info.content_type) == ("t.bin", "application/octet-stream")
    assert await s3.latest("sensor-1") == info
    assert b"".join([chunk async for chunk in s3.read(info)]) == DATA
    assert _keys(s3_env, s3_bucket, "direct/") == [f"{PREFIX}/direct/sensor-1/{staging_id}.json"]
    assert f"{PREFIX}/blobs/sensor-1/{version}" in _keys(s3_env, s3_bucket, "blobs/")

    # Completing again answers the same version; no second one appears.
    again = await s3.complete_direct_upload("sensor-1", staging_id, new_version_id(), now=0)
    assert again == info
    assert [u.version for u in (await s3.list_uploads("sensor-1", after=None, limit=10)).items] == [
        version
    ]
    # A deleted version takes its claim along: completing again finds nothing staged.
    await s3.delete_upload("sensor-1", version)
    with pytest.raises(DirectUploadNotReceived):
        await s3.complete_direct_upload("sensor-1", staging_id, new_version_id(), now=0)


@pytest.mark.s3
@pytest.mark.parametrize(
    ("sent", "error"),
    [(DATA[:-1] + b"!", ChecksumMismatch), (DATA + b"!", SizeMismatch)],
    ids=["other-bytes", "other-size"],
)
async def test_bytes_that_are_not_the_declared_ones_leave_nothing(
    s3: Storage, s3_env: dict[str, str], s3_bucket: str, sent: bytes, error: type[Exception]
) -> None:
    staging_id, ticket = await _ticket(s3)
    assert (await _send("PUT", ticket.url, sent)).status_code == 200
    with pytest.raises(error):
        await s3.complete_direct_upload("sensor-1", staging_id, new_version_id(), now=time.time())
    # Staged object and copy gone, no version; the state stays until expiry, so the device may
    # PUT the right bytes to the same URL and complete again.
    assert _keys(s3_env, s3_bucket, "direct/") == [f"{PREFIX}/direct/sensor-1/{staging_id}.json"]
    assert _keys(s3_env, s3_bucket, "blobs/") == []
    assert _keys(s3_env, s3_bucket, "uploads/") == []
    assert _keys(s3_env, s3_bucket, "idempotency/") == []
    assert (await _send("PUT", ticket.url, DATA)).status_code == 200
    info = await s3.complete_direct_upload("sensor-1", staging_id, new_version_id(), now=0)
    assert info.sha256 == SHA


@pytest.mark.s3
async def test_concurrent_completions_make_one_version(
    s3: Storage, s3_env: dict[str, str], s3_bucket: str
) -> None:
    staging_id, ticket = await _ticket(s3)
    assert (await _send("PUT", ticket.url, DATA)).status_code == 200
    versions = [new_version_id() for _ in range(4)]
    infos = await asyncio.gather(
        *(s3.complete_direct_upload("sensor-1", staging_id, v, now=time.time()) for v in versions)
    )
    assert len({info.version for info in infos}) == 1
    listed = await s3.list_uploads("sensor-1", after=None, limit=10)
    assert [u.version for u in listed.items] == [infos[0].version]
    # The losers' copies are gone: one blob, the winner's.
    assert _keys(s3_env, s3_bucket, "blobs/") == [f"{PREFIX}/blobs/sensor-1/{infos[0].version}"]


@pytest.mark.s3
async def test_completing_what_was_never_uploaded_or_created(s3: Storage) -> None:
    staging_id, _ = await _ticket(s3)
    with pytest.raises(DirectUploadNotReceived):
        await s3.complete_direct_upload("sensor-1", staging_id, new_version_id(), now=time.time())
    with pytest.raises(DirectUploadNotFound):  # another device's path, same id
        await s3.complete_direct_upload("sensor-2", staging_id, new_version_id(), now=time.time())
    never = new_direct_upload_id(int(time.time()) + 600)
    with pytest.raises(DirectUploadNotFound):
        await s3.complete_direct_upload("sensor-1", never, new_version_id(), now=time.time())
    with pytest.raises(DeviceNotFound):
        await s3.latest("sensor-1")


@pytest.mark.s3
async def test_the_url_writes_its_one_key_only(
    s3: Storage, s3_env: dict[str, str], s3_bucket: str
) -> None:
    staging_id, ticket = await _ticket(s3)
    url = urlsplit(ticket.url)
    others = [
        url._replace(path=url.path.replace(staging_id, new_direct_upload_id(1))),
        url._replace(path=url.path.replace("sensor-1", "sensor-2")),
        url._replace(path=url.path + ".json"),  # its own state object
        url._replace(path=f"/{s3_bucket}/{PREFIX}/uploads/sensor-1/x"),
        url._replace(query=url.query + "&partNumber=1&uploadId=x"),
    ]
    for other in others:
        response = await _send("PUT", other.geturl(), DATA)
        assert response.status_code == 403, (other.geturl(), response.text)
    assert (await _send("POST", ticket.url, DATA)).status_code in (403, 405)
    assert _keys(s3_env, s3_bucket, "direct/") == [f"{PREFIX}/direct/sensor-1/{staging_id}.json"]


@pytest.mark.s3
async def test_expired_uploads_are_refused_then_removed(
    s3: Storage, s3_env: dict[str, str], s3_bucket: str
) -> None:
    staging_id, ticket = await _ticket(s3)
    assert (await _send("PUT", ticket.url, DATA)).status_code == 200
    _, idle = await _ticket(s3)  # never uploaded to
    kept_id_later = new_direct_upload_id(int(ticket.expires_at) + 3600)
    await s3.presign_direct_upload(
        "sensor-1",
        kept_id_later,
        size=1,
        sha256=SHA,
        filename=None,
        content_type=None,
        expires_at=ticket.expires_at + 3600,
    )
    with pytest.raises(DirectUploadNotFound):
        await s3.complete_direct_upload(
            "sensor-1", staging_id, new_version_id(), now=ticket.expires_at
        )
    assert await s3.remove_expired_direct_uploads(ticket.expires_at - 1) == 0
    removed = await s3.remove_expired_direct_uploads(max(ticket.expires_at, idle.expires_at))
    assert removed == 2  # the staged one (bytes and state) and the one never uploaded to
    assert _keys(s3_env, s3_bucket, "direct/") == [f"{PREFIX}/direct/sensor-1/{kept_id_later}.json"]
    assert await s3.remove_expired_direct_uploads(ticket.expires_at + 3600) == 1
    assert _keys(s3_env, s3_bucket) == []


@pytest.mark.s3
async def test_larger_than_one_put_is_refused(s3: Storage) -> None:
    with pytest.raises(PayloadTooLarge):
        await _ticket(s3, size=MAX_SINGLE_PUT_BYTES + 1)


@pytest.mark.parametrize("backend", ["memory", "file"])
async def test_backends_without_presigning_say_so(backend: str, tmp_path: Path) -> None:
    storage = open_storage("memory://" if backend == "memory" else f"file://{tmp_path}")
    try:
        with pytest.raises(NotSupportedByStorage, match="need S3 storage"):
            await _ticket(storage)
        with pytest.raises(NotSupportedByStorage, match="need S3 storage"):
            await storage.complete_direct_upload(
                "sensor-1", new_direct_upload_id(1), new_version_id(), now=0
            )
        assert await storage.remove_expired_direct_uploads(time.time()) == 0
    finally:
        await storage.close()
