"""Uploads over HTTP: multipart and raw bodies, checksums, versions, downloads, deletes."""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.helpers import AppServer, app_server


@pytest.fixture
def client(server: AppServer) -> Iterator[httpx.Client]:
    with server.client() as http:
        yield http


def put_file(client: httpx.Client, device: str, data: bytes, **kwargs: object) -> httpx.Response:
    return client.put(f"/api/devices/{device}", files={"file": ("f.bin", data)}, **kwargs)  # type: ignore[arg-type]


def test_upload_answers_the_seed_message_and_metadata(client: httpx.Client) -> None:
    data = os.urandom(5000)
    response = put_file(client, "dev-1", data)
    assert response.status_code == 200
    body = response.json()
    assert body["message"] == "File uploaded for Device ID - dev-1"
    assert body["device_id"] == "dev-1"
    assert body["size"] == 5000
    assert body["sha256"] == hashlib.sha256(data).hexdigest()
    assert body["uploaded_at"].endswith("Z")
    assert body["version"]
    assert response.headers["x-request-id"]


def test_raw_body_upload(client: httpx.Client) -> None:
    data = os.urandom(70_000)
    response = client.put(
        "/api/devices/raw-dev", content=data, headers={"Content-Type": "application/octet-stream"}
    )
    assert response.status_code == 200, response.text
    raw = client.get("/api/devices/raw-dev", params={"encoding": "raw"})
    assert raw.content == data
    assert raw.headers["content-length"] == "70000"


def test_base64_download_streams_whole_file(client: httpx.Client) -> None:
    data = os.urandom(1_000_001)
    put_file(client, "b64", data)
    response = client.get("/api/devices/b64")
    assert response.headers["content-type"] == "application/octet-stream"
    assert int(response.headers["content-length"]) == len(response.content)
    assert base64.b64decode(response.content) == data


def test_content_digest_is_verified(client: httpx.Client) -> None:
    data = b"telemetry" * 100
    good = base64.b64encode(hashlib.sha256(data).digest()).decode()
    ok = put_file(client, "dig", data, headers={"Content-Digest": f"sha-256=:{good}:"})
    assert ok.status_code == 200
    bad = base64.b64encode(hashlib.sha256(b"other").digest()).decode()
    rejected = client.put(
        "/api/devices/dig2",
        content=data,
        headers={"Content-Type": "application/octet-stream", "Content-Digest": f"sha-256=:{bad}:"},
    )
    assert rejected.status_code == 400
    assert rejected.json()["error"]["code"] == "checksum_mismatch"
    assert client.get("/api/devices/dig2").status_code == 404


def test_content_md5_is_verified(client: httpx.Client) -> None:
    data = b"abc" * 1000
    md5 = base64.b64encode(hashlib.md5(data).digest()).decode()
    assert put_file(client, "md5", data, headers={"Content-MD5": md5}).status_code == 200
    wrong = put_file(client, "md5-bad", data, headers={"Content-MD5": md5[::-1]})
    assert wrong.status_code == 400
    assert client.get("/api/devices/md5-bad").status_code == 404


def test_versions_history_fetch_and_delete(client: httpx.Client) -> None:
    payloads = [f"version {i}".encode() for i in range(3)]
    versions = [put_file(client, "hist", p).json()["version"] for p in payloads]
    listed = client.get("/api/devices/hist/uploads").json()
    assert [u["version"] for u in listed["uploads"]] == versions[::-1]
    assert listed["uploads"][0]["filename"] == "f.bin"
    assert listed["uploads"][0]["sha256"] == hashlib.sha256(payloads[-1]).hexdigest()

    first_page = client.get("/api/devices/hist/uploads", params={"limit": 2}).json()
    assert len(first_page["uploads"]) == 2
    rest = client.get("/api/devices/hist/uploads", params={"cursor": first_page["next_cursor"]})
    assert [u["version"] for u in rest.json()["uploads"]] == [versions[0]]

    old = client.get(f"/api/devices/hist/uploads/{versions[0]}", params={"encoding": "raw"})
    assert old.content == payloads[0]
    assert client.delete(f"/api/devices/hist/uploads/{versions[2]}").status_code == 200
    assert client.get("/api/devices/hist", params={"encoding": "raw"}).content == payloads[1]
    gone = client.get(f"/api/devices/hist/uploads/{versions[2]}")
    assert gone.status_code == 404 and gone.json()["error"]["code"] == "upload_not_found"
    deleted = client.delete("/api/devices/hist")
    assert deleted.json() == {"device_id": "hist", "deleted_uploads": 2}
    assert client.get("/api/devices/hist").status_code == 404
    assert client.get("/api/devices/").json()["TelemetryDataDownloads"] == []


def test_raw_download_range_etag_and_not_modified(client: httpx.Client) -> None:
    data = bytes(range(256)) * 100
    put_file(client, "rng", data)
    full = client.get("/api/devices/rng", params={"encoding": "raw"})
    etag = full.headers["etag"]
    assert etag == f'"{hashlib.sha256(data).hexdigest()}"'
    assert full.headers["accept-ranges"] == "bytes"
    part = client.get(
        "/api/devices/rng", params={"encoding": "raw"}, headers={"Range": "bytes=100-199"}
    )
    assert part.status_code == 206
    assert part.content == data[100:200]
    assert part.headers["content-range"] == f"bytes 100-199/{len(data)}"
    suffix = client.get(
        "/api/devices/rng", params={"encoding": "raw"}, headers={"Range": "bytes=-10"}
    )
    assert suffix.content == data[-10:]
    cached = client.get(
        "/api/devices/rng", params={"encoding": "raw"}, headers={"If-None-Match": etag}
    )
    assert cached.status_code == 304 and cached.content == b""
    outside = client.get(
        "/api/devices/rng", params={"encoding": "raw"}, headers={"Range": f"bytes={len(data)}-"}
    )
    assert outside.status_code == 416
    assert outside.json()["error"]["code"] == "range_not_satisfiable"
    assert outside.headers["content-range"] == f"bytes */{len(data)}"


def test_device_list_pagination_and_prefix(client: httpx.Client) -> None:
    for device in ["zeta", "alpha", "alpine", "beta"]:
        put_file(client, device, b"x")
    page = client.get("/api/devices/", params={"limit": 2}).json()
    assert page["TelemetryDataDownloads"] == ["alpha", "alpine"]
    rest = client.get("/api/devices/", params={"limit": 2, "cursor": page["next_cursor"]}).json()
    assert rest["TelemetryDataDownloads"] == ["beta", "zeta"]
    assert rest["next_cursor"] is None
    assert client.get("/api/devices/", params={"prefix": "alp"}).json()[
        "TelemetryDataDownloads"
    ] == ["alpha", "alpine"]


def test_fifty_concurrent_uploads_to_one_device_are_fifty_intact_versions(tmp_path: Path) -> None:
    # The per-device cap on uploads in flight (default 8) is raised: this is about storage.
    with (
        app_server(f"file://{tmp_path / 'data'}", max_concurrent_uploads_per_device=64) as server,
        server.client() as client,
    ):
        _fifty_concurrent_uploads(client, server)


def _fifty_concurrent_uploads(client: httpx.Client, server: AppServer) -> None:
    payloads = [os.urandom(1024 + i) for i in range(50)]

    def upload(data: bytes) -> str:
        with server.client() as own:
            response = put_file(own, "crowd", data)
            assert response.status_code == 200, response.text
            return str(response.json()["version"])

    with ThreadPoolExecutor(max_workers=50) as pool:
        versions = list(pool.map(upload, payloads))
    assert len(set(versions)) == 50
    listed = client.get("/api/devices/crowd/uploads", params={"limit": 100}).json()["uploads"]
    assert len(listed) == 50
    for version, data in zip(versions, payloads, strict=True):
        got = client.get(f"/api/devices/crowd/uploads/{version}", params={"encoding": "raw"})
        assert got.content == data


def test_retry_with_idempotency_key_replays_the_first_upload(client: httpx.Client) -> None:
    data = os.urandom(3000)
    headers = {"Idempotency-Key": "boot-42:reading-7"}
    first = put_file(client, "idem", data, headers=headers)
    assert first.status_code == 200 and first.json()["replayed"] is False
    retry = put_file(client, "idem", data, headers=headers)
    assert retry.status_code == 200
    assert retry.headers["idempotent-replayed"] == "true"
    assert retry.json() | {"replayed": False} == first.json()
    assert len(client.get("/api/devices/idem/uploads").json()["uploads"]) == 1

    other_bytes = put_file(client, "idem", b"something else", headers=headers)
    assert other_bytes.status_code == 409
    assert other_bytes.json()["error"]["code"] == "idempotency_conflict"
    bad_key = put_file(client, "idem", data, headers={"Idempotency-Key": "../x"})
    assert bad_key.status_code == 400
    assert len(client.get("/api/devices/idem/uploads").json()["uploads"]) == 1
    # Without a key every upload is a new version, as in the seed.
    put_file(client, "idem", data)
    assert len(client.get("/api/devices/idem/uploads").json()["uploads"]) == 2
