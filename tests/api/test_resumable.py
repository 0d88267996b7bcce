"""tus 1.0.0 resumable uploads over HTTP, in-process on the file backend: every header, every
error row of docs/api.md, and that a refused request appends nothing and makes nothing visible.

tuspy, the real client, and a server killed mid-PATCH: tests/test_resumable_clients.py.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import os
import sqlite3
from collections.abc import AsyncIterator
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from pathlib import Path

import anyio
import httpx
import pytest

from mindproject.app import create_app
from mindproject.config import Settings
from tests.helpers import TEST_SECRET_KEY, make_token

pytestmark = pytest.mark.anyio

MAX_UPLOAD = 4 * 1024 * 1024
MAX_PER_DEVICE = 3
TUS = {"Tus-Resumable": "1.0.0"}
CHUNK = {**TUS, "Content-Type": "application/offset+octet-stream"}
DEVICE = "sensor-1"
COLLECTION = f"/api/devices/{DEVICE}/resumable"
ADMIN = {"Authorization": f"Bearer {make_token('admin')}"}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@dataclass
class Tus:
    http: httpx.AsyncClient
    root: Path  # the file backend's data folder

    async def create(self, length: int | None, metadata: str | None = None, **kw: object) -> str:
        headers = dict(TUS)
        if length is None:
            headers["Upload-Defer-Length"] = "1"
        else:
            headers["Upload-Length"] = str(length)
        if metadata is not None:
            headers["Upload-Metadata"] = metadata
        response = await self.http.post(COLLECTION, headers=headers, **kw)  # type: ignore[arg-type]
        assert response.status_code == 201, response.text
        return response.headers["location"]

    async def patch(self, url: str, offset: int, data: bytes, **headers: str) -> httpx.Response:
        extra = {name.replace("_", "-"): value for name, value in headers.items()}
        return await self.http.patch(
            url, content=data, headers={**CHUNK, "Upload-Offset": str(offset), **extra}
        )

    async def offset(self, url: str) -> int:
        response = await self.http.head(url, headers=TUS)
        assert response.status_code == 200, response.status_code
        return int(response.headers["upload-offset"])

    def rows(self) -> list[tuple[object, ...]]:
        with contextlib.closing(sqlite3.connect(self.root / "index.sqlite3")) as db:
            return db.execute("SELECT upload_id, received, version FROM resumable").fetchall()

    def parts(self) -> list[str]:
        return sorted(path.name for path in (self.root / "resumable").iterdir())

    async def nothing_visible(self) -> None:
        assert (await self.http.get(f"/api/devices/{DEVICE}")).status_code == 404
        listed = await self.http.get("/api/devices/", headers=ADMIN)
        assert DEVICE not in listed.json()["TelemetryDataDownloads"]


def settings_for(root: Path, **overrides: object) -> Settings:
    return Settings(
        storage=f"file://{root}",
        secret_key=TEST_SECRET_KEY,
        fsync=False,
        max_upload_bytes=MAX_UPLOAD,
        max_resumable_per_device=MAX_PER_DEVICE,
        rate_limit_per_minute=0,
        **overrides,  # type: ignore[arg-type]
    )


@contextlib.asynccontextmanager
async def serving(settings: Settings, token: str) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings)
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=transport, base_url="http://127.0.0.1:5000", headers=bearer(token)
        ) as http,
    ):
        yield http


@pytest.fixture
async def tus(tmp_path: Path) -> AsyncIterator[Tus]:
    root = tmp_path / "data"
    async with serving(settings_for(root), make_token("device", DEVICE)) as http:
        yield Tus(http, root)


def b64(value: bytes) -> str:
    return base64.b64encode(value).decode()


def assert_error(response: httpx.Response, status: int, code: str) -> dict[str, object]:
    assert response.status_code == status, response.text
    assert response.headers["tus-resumable"] == "1.0.0"
    if response.request.method == "HEAD":
        return {}  # an answer to HEAD has no body
    error = response.json()["error"]
    assert error["code"] == code
    assert error["message"] and error["request_id"] == response.headers["x-request-id"]
    return dict(error)


# Discovery, creation, status, appends, completion.


async def test_discovery_needs_no_token_nor_version(tus: Tus) -> None:
    response = await tus.http.options(COLLECTION, headers={"Authorization": ""})
    assert response.status_code == 204
    assert response.headers["tus-resumable"] == "1.0.0"
    assert response.headers["tus-version"] == "1.0.0"
    assert set(response.headers["tus-extension"].split(",")) == {
        "creation",
        "creation-with-upload",
        "creation-defer-length",
        "termination",
        "checksum",
        "expiration",
    }
    assert response.headers["tus-max-size"] == str(MAX_UPLOAD)
    assert set(response.headers["tus-checksum-algorithm"].split(",")) == {"sha1", "md5", "sha256"}


async def test_an_upload_in_chunks_becomes_a_version(tus: Tus) -> None:
    data = os.urandom(1_000_000)
    metadata = ",".join(
        [
            f"filename {b64(b'logs/day-1.bin')}",
            f"filetype {b64(b'application/x-telemetry')}",
            f"sha256 {b64(hashlib.sha256(data).digest())}",
            "unknown-key",
        ]
    )
    created = await tus.http.post(
        COLLECTION, headers={**TUS, "Upload-Length": str(len(data)), "Upload-Metadata": metadata}
    )
    assert created.status_code == 201, created.text
    url = created.headers["location"]
    assert url.startswith(f"{COLLECTION}/") and len(url.rpartition("/")[2]) == 32
    assert created.headers["upload-offset"] == "0"
    assert created.headers["tus-resumable"] == "1.0.0"
    assert parsedate_to_datetime(created.headers["upload-expires"]).tzinfo is not None

    head = await tus.http.head(url, headers=TUS)
    assert head.status_code == 200
    assert head.headers["upload-offset"] == "0"
    assert head.headers["upload-length"] == str(len(data))
    assert head.headers["cache-control"] == "no-store"
    assert head.headers["tus-resumable"] == "1.0.0"
    assert "upload-expires" in head.headers

    offset = 0
    for algorithm in ("sha1", "md5", "sha256"):
        piece = data[offset : offset + 300_000]
        checksum = f"{algorithm} {b64(hashlib.new(algorithm, piece).digest())}"
        response = await tus.patch(url, offset, piece, Upload_Checksum=checksum)
        assert response.status_code == 204, response.text
        offset += len(piece)
        assert response.headers["upload-offset"] == str(offset)
        assert response.headers["tus-resumable"] == "1.0.0"
        assert "x-version" not in response.headers
    await tus.nothing_visible()
    last = await tus.patch(url, offset, data[offset:])
    assert last.status_code == 204, last.text
    assert last.headers["upload-offset"] == str(len(data))
    version = last.headers["x-version"]

    raw = await tus.http.get(f"/api/devices/{DEVICE}", params={"encoding": "raw"})
    assert raw.content == data
    history = (await tus.http.get(f"/api/devices/{DEVICE}/uploads")).json()["uploads"]
    assert [(u["version"], u["size"], u["sha256"]) for u in history] == [
        (version, len(data), hashlib.sha256(data).hexdigest())
    ]
    assert history[0]["filename"] == "day-1.bin"  # the base name, as for every upload
    assert history[0]["content_type"] == "application/x-telemetry"
    listed = await tus.http.get("/api/devices/", headers=ADMIN)
    assert DEVICE in listed.json()["TelemetryDataDownloads"]
    # A client that lost the last answer asks again: done, nothing to resend.
    again = await tus.http.head(url, headers=TUS)
    assert again.headers["upload-offset"] == str(len(data))
    assert again.headers["x-version"] == version
    assert (await tus.patch(url, len(data), b"")).headers["x-version"] == version
    assert tus.parts() == []


async def test_creation_with_upload(tus: Tus) -> None:
    data = os.urandom(200_000)
    first = await tus.http.post(
        COLLECTION,
        content=data[:50_000],
        headers={**CHUNK, "Upload-Length": str(len(data))},
    )
    assert first.status_code == 201, first.text
    assert first.headers["upload-offset"] == "50000"
    assert "x-version" not in first.headers
    done = await tus.patch(first.headers["location"], 50_000, data[50_000:])
    assert done.status_code == 204
    whole = await tus.http.post(
        COLLECTION, content=data, headers={**CHUNK, "Upload-Length": str(len(data))}
    )
    assert whole.status_code == 201
    assert whole.headers["upload-offset"] == str(len(data))
    history = (await tus.http.get(f"/api/devices/{DEVICE}/uploads")).json()["uploads"]
    assert [u["version"] for u in history] == [
        whole.headers["x-version"],
        done.headers["x-version"],
    ]


async def test_an_empty_file_is_complete_at_creation(tus: Tus) -> None:
    created = await tus.http.post(COLLECTION, headers={**TUS, "Upload-Length": "0"})
    assert created.status_code == 201
    assert created.headers["upload-offset"] == "0" and created.headers["x-version"]
    assert (await tus.http.get(f"/api/devices/{DEVICE}", params={"encoding": "raw"})).content == b""


async def test_deferred_length(tus: Tus) -> None:
    """By hand: tuspy 1.1 always sends Upload-Length (tests/test_resumable_clients.py)."""
    data = os.urandom(300_000)
    url = await tus.create(None)
    head = await tus.http.head(url, headers=TUS)
    assert head.headers["upload-defer-length"] == "1" and "upload-length" not in head.headers
    assert (await tus.patch(url, 0, data[:100_000])).status_code == 204
    declared = await tus.patch(url, 100_000, data[100_000:200_000], Upload_Length=str(len(data)))
    assert declared.status_code == 204
    head = await tus.http.head(url, headers=TUS)
    assert head.headers["upload-length"] == str(len(data))
    assert "upload-defer-length" not in head.headers
    done = await tus.patch(url, 200_000, data[200_000:])
    assert done.headers["x-version"]
    raw = await tus.http.get(f"/api/devices/{DEVICE}", params={"encoding": "raw"})
    assert raw.content == data


async def test_terminate(tus: Tus) -> None:
    url = await tus.create(1000)
    assert (await tus.patch(url, 0, b"a" * 500)).status_code == 204
    terminated = await tus.http.delete(url, headers=TUS)
    assert terminated.status_code == 204
    assert terminated.headers["tus-resumable"] == "1.0.0"
    assert tus.rows() == [] and tus.parts() == []
    assert_error(await tus.http.head(url, headers=TUS), 404, "resumable_upload_not_found")
    assert_error(await tus.patch(url, 500, b"b" * 500), 404, "resumable_upload_not_found")
    assert_error(await tus.http.delete(url, headers=TUS), 404, "resumable_upload_not_found")
    await tus.nothing_visible()


# Every error row: status, JSON error, and nothing appended or made visible.


async def test_other_tus_versions_get_412(tus: Tus) -> None:
    url = await tus.create(1000)
    for version in ("0.2.2", None):
        headers = {"Upload-Length": "10"} | ({"Tus-Resumable": version} if version else {})
        refused = await tus.http.post(COLLECTION, headers=headers)
        assert_error(refused, 412, "tus_version_unsupported")
        assert refused.headers["tus-version"] == "1.0.0"
        patched = await tus.http.patch(
            url,
            content=b"x" * 10,
            headers={**CHUNK, "Upload-Offset": "0", "Tus-Resumable": version or "none"},
        )
        assert_error(patched, 412, "tus_version_unsupported")
    assert await tus.offset(url) == 0
    assert len(tus.rows()) == 1


async def test_wrong_offset_gets_409_with_the_offset(tus: Tus) -> None:
    url = await tus.create(1000)
    await tus.patch(url, 0, b"a" * 300)
    for wrong in (0, 299, 301, 1000):
        refused = await tus.patch(url, wrong, b"b" * 100)
        error = assert_error(refused, 409, "offset_mismatch")
        assert error["details"] == {"offset": 300}
        assert refused.headers["upload-offset"] == "300"
    assert await tus.offset(url) == 300


async def test_patch_with_another_content_type_gets_415(tus: Tus) -> None:
    url = await tus.create(1000)
    refused = await tus.http.patch(
        url,
        content=b"a" * 100,
        headers={**TUS, "Upload-Offset": "0", "Content-Type": "application/octet-stream"},
    )
    assert_error(refused, 415, "unsupported_media_type")
    assert await tus.offset(url) == 0


async def test_too_large_gets_413_at_creation_and_on_a_chunk(tus: Tus) -> None:
    refused = await tus.http.post(COLLECTION, headers={**TUS, "Upload-Length": str(MAX_UPLOAD + 1)})
    assert_error(refused, 413, "payload_too_large")
    assert tus.rows() == []
    url = await tus.create(1000)
    await tus.patch(url, 0, b"a" * 600)
    assert_error(await tus.patch(url, 600, b"b" * 401), 413, "payload_too_large")
    assert await tus.offset(url) == 600

    # Without a Content-Length the limit is found while streaming: the same answer.
    async def body() -> AsyncIterator[bytes]:
        for _ in range(5):
            yield b"c" * 100

    streamed = await tus.http.patch(url, content=body(), headers={**CHUNK, "Upload-Offset": "600"})
    assert_error(streamed, 413, "payload_too_large")
    assert await tus.offset(url) == 600
    deferred = await tus.create(None)
    declared = await tus.patch(deferred, 0, b"", Upload_Length=str(MAX_UPLOAD + 1))
    assert_error(declared, 413, "payload_too_large")
    await tus.nothing_visible()


async def test_chunk_checksum_mismatch_gets_460(tus: Tus) -> None:
    url = await tus.create(1000)
    wrong = f"sha256 {b64(hashlib.sha256(b'other').digest())}"
    refused = await tus.patch(url, 0, b"a" * 500, Upload_Checksum=wrong)
    assert_error(refused, 460, "checksum_mismatch")
    assert await tus.offset(url) == 0
    unknown = await tus.patch(url, 0, b"a" * 500, Upload_Checksum=f"crc32 {b64(b'1234')}")
    assert_error(unknown, 400, "bad_request")
    assert await tus.offset(url) == 0
    # A creation whose first chunk fails leaves nothing: the client has no URL to resume at.
    created = await tus.http.post(
        COLLECTION,
        content=b"a" * 500,
        headers={**CHUNK, "Upload-Length": "1000", "Upload-Checksum": wrong},
    )
    assert_error(created, 460, "checksum_mismatch")
    assert len(tus.rows()) == 1 and len(tus.parts()) == 1
    await tus.nothing_visible()


async def test_whole_file_sha256_mismatch_leaves_no_version(tus: Tus) -> None:
    url = await tus.create(1000, metadata=f"sha256 {b64(hashlib.sha256(b'other').digest())}")
    await tus.patch(url, 0, b"a" * 500)
    refused = await tus.patch(url, 500, b"b" * 500)
    assert_error(refused, 400, "checksum_mismatch")
    assert_error(await tus.http.head(url, headers=TUS), 404, "resumable_upload_not_found")
    assert tus.rows() == [] and tus.parts() == []
    await tus.nothing_visible()


@pytest.mark.parametrize(
    "headers",
    [
        {},  # neither length
        {"Upload-Length": "10", "Upload-Defer-Length": "1"},
        {"Upload-Defer-Length": "2"},
        {"Upload-Length": "-1"},
        {"Upload-Length": "10", "Upload-Metadata": "filename not-base64!"},
        {"Upload-Length": "10", "Upload-Metadata": "filename a,filename a"},
        {"Upload-Length": "10", "Upload-Metadata": "sha256 " + b64(b"short")},
        {"Upload-Length": "10", "Upload-Metadata": ","},
    ],
)
async def test_malformed_creations_get_400(tus: Tus, headers: dict[str, str]) -> None:
    assert_error(await tus.http.post(COLLECTION, headers={**TUS, **headers}), 400, "bad_request")
    assert tus.rows() == [] and tus.parts() == []


async def test_a_patch_needs_an_offset(tus: Tus) -> None:
    url = await tus.create(10)
    refused = await tus.http.patch(url, content=b"x", headers=CHUNK)
    assert_error(refused, 400, "bad_request")
    assert await tus.offset(url) == 0


async def test_busy_upload_gets_423(tus: Tus) -> None:
    """Another worker's append holds the part file's lock: held here, as that worker would."""
    url = await tus.create(1000)
    part = tus.root / "resumable" / f"{url.rpartition('/')[2]}.part"
    fd = os.open(part, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        busy = await tus.patch(url, 0, b"a" * 100)
        assert_error(busy, 423, "upload_busy")
        assert busy.headers["retry-after"] == "1"  # a live request holds it: try again soon
    finally:
        os.close(fd)
    assert await tus.offset(url) == 0
    assert (await tus.patch(url, 0, b"a" * 100)).status_code == 204


async def test_racing_patches_append_exactly_one(tus: Tus) -> None:
    """Two real PATCHes at one offset: the first holds the upload while its body trickles in;
    the second is refused (423) without a byte appended; the bytes never interleave."""
    url = await tus.create(2000)
    started, release = anyio.Event(), anyio.Event()

    async def slow_body() -> AsyncIterator[bytes]:
        yield b"1" * 500
        started.set()
        await release.wait()
        yield b"1" * 500

    async with anyio.create_task_group() as group:
        answers: list[httpx.Response] = []

        async def first() -> None:
            headers = {**CHUNK, "Upload-Offset": "0", "Content-Length": "1000"}
            answers.append(await tus.http.patch(url, content=slow_body(), headers=headers))

        group.start_soon(first)
        await started.wait()
        second = await tus.patch(url, 0, b"2" * 1000)
        release.set()
    assert_error(second, 423, "upload_busy")
    assert answers[0].status_code == 204 and answers[0].headers["upload-offset"] == "1000"
    late = await tus.patch(url, 0, b"2" * 1000)
    assert assert_error(late, 409, "offset_mismatch")["details"] == {"offset": 1000}
    done = await tus.patch(url, 1000, b"3" * 1000)
    assert done.status_code == 204
    raw = await tus.http.get(f"/api/devices/{DEVICE}", params={"encoding": "raw"})
    assert raw.content == b"1" * 1000 + b"3" * 1000


async def test_unknown_and_expired_uploads_get_404(tus: Tus) -> None:
    for upload_id in ("0" * 32, "not-an-id"):
        missing = await tus.http.head(f"{COLLECTION}/{upload_id}", headers=TUS)
        assert_error(missing, 404, "resumable_upload_not_found")
    url = await tus.create(1000)
    await tus.patch(url, 0, b"a" * 100)
    # Expired as far as the storage knows (no clock in tests): gone at once, before any sweep.
    with contextlib.closing(sqlite3.connect(tus.root / "index.sqlite3")) as db, db:
        db.execute("UPDATE resumable SET expires_at = 0")
    assert_error(await tus.http.head(url, headers=TUS), 404, "resumable_upload_not_found")
    assert_error(await tus.patch(url, 100, b"b" * 100), 404, "resumable_upload_not_found")


async def test_more_unfinished_uploads_than_allowed_get_429(tus: Tus) -> None:
    urls = [await tus.create(10) for _ in range(MAX_PER_DEVICE)]
    refused = await tus.http.post(COLLECTION, headers={**TUS, "Upload-Length": "10"})
    assert_error(refused, 429, "too_many_requests")
    assert int(refused.headers["retry-after"]) >= 1
    assert len(tus.rows()) == MAX_PER_DEVICE
    await tus.patch(urls[0], 0, b"x" * 10)  # a finished one no longer counts
    await tus.create(10)


async def test_another_device_s_token_gets_403(tus: Tus) -> None:
    url = await tus.create(1000)
    await tus.patch(url, 0, b"a" * 100)
    other = bearer(make_token("device", "sensor-2"))
    operator = bearer(make_token("operator"))
    for headers in (other, operator):
        calls = [
            tus.http.post(COLLECTION, headers={**TUS, "Upload-Length": "5", **headers}),
            tus.http.head(url, headers={**TUS, **headers}),
            tus.http.patch(
                url, content=b"b" * 100, headers={**CHUNK, "Upload-Offset": "100", **headers}
            ),
            tus.http.delete(url, headers={**TUS, **headers}),
        ]
        for call in calls:
            assert_error(await call, 403, "forbidden")
    assert await tus.offset(url) == 100
    assert len(tus.rows()) == 1
    # The same upload id under another device's path is not that device's either.
    elsewhere = url.replace(DEVICE, "sensor-2")
    assert (await tus.http.head(elsewhere, headers={**TUS, **ADMIN})).status_code == 404


async def test_no_token_gets_401(tus: Tus) -> None:
    refused = await tus.http.post(
        COLLECTION, headers={**TUS, "Upload-Length": "5", "Authorization": ""}
    )
    assert_error(refused, 401, "unauthorized")
    assert tus.rows() == []


# CORS and expiry: settings of their own.


async def test_cors_allows_and_exposes_the_tus_headers(tmp_path: Path) -> None:
    origin = "https://fleet.example"
    settings = settings_for(tmp_path / "data", cors_origins=origin)
    async with serving(settings, make_token("device", DEVICE)) as http:
        preflight = await http.options(
            COLLECTION,
            headers={
                "Origin": origin,
                "Access-Control-Request-Method": "PATCH",
                "Access-Control-Request-Headers": "tus-resumable,upload-offset,upload-checksum,"
                "upload-length,upload-defer-length,upload-metadata,content-type,authorization",
            },
        )
        assert preflight.status_code == 200, preflight.text
        assert "PATCH" in preflight.headers["access-control-allow-methods"]
        discovery = await http.options(COLLECTION, headers={"Origin": origin})
        assert discovery.status_code == 204
        assert discovery.headers["tus-version"] == "1.0.0"
        created = await http.post(
            COLLECTION, headers={**TUS, "Upload-Length": "5", "Origin": origin}
        )
        assert created.status_code == 201
        exposed = {
            h.strip().lower() for h in created.headers["access-control-expose-headers"].split(",")
        }
        assert {
            "location",
            "upload-offset",
            "upload-length",
            "upload-expires",
            "tus-resumable",
            "tus-version",
            "tus-extension",
            "tus-max-size",
            "tus-checksum-algorithm",
            "x-version",
        } <= exposed


async def test_abandoned_uploads_are_removed_without_any_request(tmp_path: Path) -> None:
    """With a one-second expiry the lifespan's sweeper removes the bytes and the state: looked
    for on disk, never asked for over HTTP."""
    root = tmp_path / "data"
    settings = settings_for(root, resumable_expiry_seconds=1)
    async with serving(settings, make_token("device", DEVICE)) as http:
        tus = Tus(http, root)
        created = await http.post(
            COLLECTION, content=b"a" * 1000, headers={**CHUNK, "Upload-Length": "5000"}
        )
        assert created.status_code == 201
        assert len(tus.rows()) == 1 and len(tus.parts()) == 1
        for _ in range(200):  # the sweeper runs every half second
            if not tus.rows() and not tus.parts():
                break
            await anyio.sleep(0.05)
        assert tus.rows() == [] and tus.parts() == []
