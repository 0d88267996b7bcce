"""S3 specifics, against the real Ceph RADOS Gateway: signatures are verified, and the key layout
is the one docs/storage.md describes."""

from __future__ import annotations

import pytest

from mindproject.errors import StorageUnavailable
from mindproject.identifiers import new_version_id
from mindproject.storage import open_storage
from tests.helpers import measured, s3_client

pytestmark = [pytest.mark.anyio, pytest.mark.s3]


async def test_wrong_secret_key_is_refused(s3_bucket: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret-key-at-all-0000000000")
    storage = open_storage(f"s3://{s3_bucket}/x")
    with pytest.raises(StorageUnavailable):
        await storage.check()
    with pytest.raises(StorageUnavailable):
        await storage.save("d", new_version_id(), measured(b"x"), filename=None, content_type=None)


async def test_keys_follow_the_documented_layout(s3_env: dict[str, str], s3_bucket: str) -> None:
    storage = open_storage(f"s3://{s3_bucket}/fleet")
    small = await storage.save(
        "dev:1", new_version_id(), measured(b"small"), filename="a.csv", content_type="text/csv"
    )
    big = await storage.save(
        "dev:1",
        new_version_id(),
        measured(b"x" * (9 * 1024 * 1024)),
        filename=None,
        content_type=None,
    )
    listed = s3_client(s3_env).list_objects_v2(Bucket=s3_bucket)
    keys = sorted(obj["Key"] for obj in listed["Contents"])
    assert keys == sorted(
        [
            "fleet/devices/dev:1",
            f"fleet/blobs/dev:1/{big.version}",
            f"fleet/uploads/dev:1/{big.version}.{big.sha256}.{big.size}.b.",
            next(k for k in keys if k.startswith(f"fleet/uploads/dev:1/{small.version}.")),
        ]
    )
    inline = next(k for k in keys if k.startswith(f"fleet/uploads/dev:1/{small.version}."))
    assert inline.startswith(f"fleet/uploads/dev:1/{small.version}.{small.sha256}.5.i.")


async def test_longest_metadata_fits_the_s3_key_limit(s3_bucket: str) -> None:
    storage = open_storage(f"s3://{s3_bucket}/a-fairly-long-prefix/for-telemetry")
    device = "d" * 128
    info = await storage.save(
        device,
        new_version_id(),
        measured(b"x"),
        filename="é" * 127,  # 254 bytes of UTF-8
        content_type="application/" + "x" * 88,
        idempotency_key="k" * 128,
    )
    assert (await storage.latest(device)).filename == "é" * 127
    assert await storage.find_by_key(device, "k" * 128) == info
    await storage.delete_device(device)


async def test_a_file_name_whose_escapes_overflow_the_key_limit_is_cut_not_refused(
    s3_bucket: str,
) -> None:
    """JSON escapes double a name of quotes: 255 of them are 510 bytes before base64. The name
    is cut until the key fits S3's 1,024 bytes; the answer and every later read agree on it."""
    storage = open_storage(f"s3://{s3_bucket}/a-fairly-long-prefix/for-telemetry")
    device = "q" * 128
    info = await storage.save(
        device,
        new_version_id(),
        measured(b"x"),
        filename='"' * 255,
        content_type="application/" + "x" * 88,
        idempotency_key="k" * 128,
    )
    assert info.filename and 0 < len(info.filename) < 255 and set(info.filename) == {'"'}
    assert (await storage.latest(device)).filename == info.filename
    assert await storage.find_by_key(device, "k" * 128) == info
    await storage.delete_device(device)
