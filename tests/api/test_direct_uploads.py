"""Direct uploads through the API: create, PUT the bytes straight to the local Ceph S3 server with
the presigned URL, complete. Every error row: its status, the one JSON error shape, and nothing
made visible (checked through the API and, from outside the service, with boto3).

In-process (httpx's ASGITransport) where no socket to the service is needed; the bytes always go
over a real socket to S3 on loopback. The 2 GiB run uses a real server process, to measure it.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from mindproject.app import create_app
from mindproject.config import Settings
from mindproject.direct_upload_sweeper import GRACE_SECONDS, sweep_direct_uploads_forever
from tests.helpers import (
    TEST_SECRET_KEY,
    make_token,
    peak_rss_bytes,
    rss_bytes,
    run_server,
    s3_client,
)

pytestmark = pytest.mark.anyio

DATA = b"one reading per line, straight to S3\n" * 3000
SHA = hashlib.sha256(DATA).hexdigest()
PREFIX = "telemetry"
MAX_UPLOAD_BYTES = 1_000_000
ADMIN = {"Authorization": f"Bearer {make_token('admin')}"}
DEVICE = {"Authorization": f"Bearer {make_token('device', 'sensor-1')}"}
OTHER_DEVICE = {"Authorization": f"Bearer {make_token('device', 'sensor-2')}"}
OPERATOR = {"Authorization": f"Bearer {make_token('operator')}"}
CREATE = "/api/devices/sensor-1/direct-uploads"


SIZE = len(DATA)


def _declared(size: Any = SIZE, sha256: str = SHA, **more: Any) -> dict[str, Any]:
    return {"size": size, "sha256": sha256, **more}


class Api:
    """The service in-process, and a look at its bucket from outside."""

    def __init__(self, http: httpx.AsyncClient, env: dict[str, str], bucket: str) -> None:
        self.http = http
        self.env = env
        self.bucket = bucket

    async def create(self, body: Any = None, headers: dict[str, str] = DEVICE) -> httpx.Response:
        return await self.http.post(
            CREATE, json=_declared() if body is None else body, headers=headers
        )

    async def ticket(self, **declared: Any) -> dict[str, Any]:
        created = await self.create(_declared(**declared))
        assert created.status_code == 200, created.text
        ticket: dict[str, Any] = created.json()
        return ticket

    async def complete(self, ticket: dict[str, Any], headers: dict[str, str] = DEVICE) -> Any:
        return await self.http.post(ticket["complete_url"], headers=headers)

    def keys(self, under: str = "") -> list[str]:
        listed = s3_client(self.env).list_objects_v2(Bucket=self.bucket, Prefix=f"{PREFIX}/{under}")
        return [item["Key"] for item in listed.get("Contents", [])]

    async def nothing_visible(self) -> None:
        """No version, no device, nothing of one in the bucket (staging state aside)."""
        assert (await self.http.get("/api/devices/sensor-1", headers=ADMIN)).status_code == 404
        listed = await self.http.get("/api/devices/", headers=ADMIN)
        assert listed.json()["TelemetryDataDownloads"] == []
        for under in ("uploads/", "blobs/", "devices/", "idempotency/"):
            assert self.keys(under) == [], under


async def _counted(http: httpx.AsyncClient, outcome: str) -> float:
    """mindproject_uploads_total{path="direct", outcome=...} as /metrics shows it now."""
    text = (await http.get("/metrics", headers=ADMIN)).text
    wanted = {"path": "direct", "outcome": outcome}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "mindproject_uploads_total" and sample.labels == wanted:
                return sample.value
    return 0.0


async def _put(url: str, data: bytes, headers: dict[str, str] | None = None) -> httpx.Response:
    """The device's PUT, straight to S3 (not through the service)."""
    async with httpx.AsyncClient() as client:
        return await client.put(url, content=data, headers=headers)


def _is_error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {
        "error": {
            "code": code,
            "message": response.json()["error"]["message"],
            "request_id": response.headers["x-request-id"],
        }
    }
    assert response.json()["error"]["message"]


async def _app(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings)
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 40000))
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:5000") as http,
    ):
        yield http


@pytest.fixture
async def api(s3_env: dict[str, str], s3_bucket: str) -> AsyncIterator[Api]:
    settings = Settings(
        storage=f"s3://{s3_bucket}/{PREFIX}",
        secret_key=TEST_SECRET_KEY,
        max_upload_bytes=MAX_UPLOAD_BYTES,
    )
    async for http in _app(settings):
        yield Api(http, s3_env, s3_bucket)


@pytest.mark.s3
async def test_direct_upload_becomes_a_version_like_any_other(api: Api) -> None:
    created = await api.create(_declared(filename="run-7.csv", content_type="text/csv"))
    assert created.status_code == 200, created.text
    ticket = created.json()
    assert set(ticket) == {"upload_url", "method", "headers", "expires_at", "complete_url"}
    assert ticket["upload_url"].startswith("http://127.0.0.1:")  # S3 on loopback, not us
    assert ticket["method"] == "PUT"
    assert ticket["headers"] == {"Content-Length": str(len(DATA))}
    assert ticket["complete_url"].startswith("/api/devices/sensor-1/direct-uploads/")

    put = await _put(ticket["upload_url"], DATA, ticket["headers"])
    assert put.status_code == 200, put.text
    stored_before = await _counted(api.http, "stored")
    completed = await api.complete(ticket)
    assert completed.status_code == 200, completed.text
    answer = completed.json()
    assert answer["message"] == "File uploaded for Device ID - sensor-1"
    assert (answer["size"], answer["sha256"], answer["replayed"]) == (len(DATA), SHA, False)
    assert (answer["filename"], answer["content_type"]) == ("run-7.csv", "text/csv")
    assert completed.headers["x-version"] == answer["version"]

    raw = await api.http.get("/api/devices/sensor-1", params={"encoding": "raw"}, headers=DEVICE)
    assert raw.content == DATA
    assert raw.headers["x-version"] == answer["version"]
    one = await api.http.get(f"/api/devices/sensor-1/uploads/{answer['version']}", headers=ADMIN)
    assert one.status_code == 200
    listed = await api.http.get("/api/devices/sensor-1/uploads", headers=ADMIN)
    assert [u["version"] for u in listed.json()["uploads"]] == [answer["version"]]
    assert api.keys("direct/") == [
        f"{PREFIX}/direct/sensor-1/{ticket['complete_url'].split('/')[-2]}.json"
    ]

    # A device that lost the answer completes again: the same version, nothing new.
    again = await api.complete(ticket)
    assert again.status_code == 200, again.text
    assert again.json()["version"] == answer["version"]
    assert again.json()["replayed"] is True
    assert again.headers["idempotent-replayed"] == "true"
    assert await _counted(api.http, "stored") == stored_before + 1
    assert await _counted(api.http, "replayed") >= 1
    listed = await api.http.get("/api/devices/sensor-1/uploads", headers=ADMIN)
    assert len(listed.json()["uploads"]) == 1

    deleted = await api.http.delete(
        f"/api/devices/sensor-1/uploads/{answer['version']}", headers=ADMIN
    )
    assert deleted.status_code == 200
    await api.nothing_visible()


@pytest.mark.s3
@pytest.mark.parametrize(
    ("sent", "code"),
    [
        (DATA[:-1] + b"?", "checksum_mismatch"),
        (DATA + b"?", "size_mismatch"),
        (DATA[:-1], "size_mismatch"),
    ],
    ids=["other-bytes", "longer", "shorter"],
)
async def test_bytes_other_than_declared_are_a_400_and_deleted(
    api: Api, sent: bytes, code: str
) -> None:
    ticket = await api.ticket()
    assert (await _put(ticket["upload_url"], sent)).status_code == 200
    staged = api.keys("direct/")
    assert len(staged) == 2  # state and bytes
    _is_error(await api.complete(ticket), 400, code)
    await api.nothing_visible()
    assert api.keys("direct/") == [key for key in staged if key.endswith(".json")]


@pytest.mark.s3
async def test_completing_before_uploading_is_a_400(api: Api) -> None:
    ticket = await api.ticket()
    _is_error(await api.complete(ticket), 400, "direct_upload_not_received")
    await api.nothing_visible()
    # The upload stays open: the bytes may still come, then completion works.
    assert (await _put(ticket["upload_url"], DATA)).status_code == 200
    assert (await api.complete(ticket)).status_code == 200


@pytest.mark.s3
@pytest.mark.parametrize(
    "path",
    [
        "/api/devices/sensor-1/direct-uploads/9999999999-" + "0" * 32 + "/complete",
        "/api/devices/sensor-1/direct-uploads/not-an-id/complete",
        "/api/devices/sensor-1/direct-uploads/" + "1" * 10 + "-" + "A" * 32 + "/complete",
    ],
    ids=["never-created", "malformed", "upper-case"],
)
async def test_completing_an_unknown_upload_is_a_404(api: Api, path: str) -> None:
    _is_error(await api.http.post(path, headers=DEVICE), 404, "direct_upload_not_found")
    await api.nothing_visible()


@pytest.mark.s3
async def test_only_the_device_itself_may_use_its_direct_uploads(api: Api) -> None:
    _is_error(await api.create(headers=OTHER_DEVICE), 403, "forbidden")
    _is_error(await api.create(headers=OPERATOR), 403, "forbidden")
    _is_error(await api.create(headers={}), 401, "unauthorized")
    assert api.keys() == []

    ticket = await api.ticket()
    assert (await _put(ticket["upload_url"], DATA)).status_code == 200
    _is_error(await api.complete(ticket, headers=OTHER_DEVICE), 403, "forbidden")
    _is_error(await api.complete(ticket, headers=OPERATOR), 403, "forbidden")
    _is_error(await api.complete(ticket, headers={}), 401, "unauthorized")
    # Another device's path with this id: not that device's upload.
    other_path = ticket["complete_url"].replace("sensor-1", "sensor-2")
    _is_error(await api.http.post(other_path, headers=OTHER_DEVICE), 404, "direct_upload_not_found")
    await api.nothing_visible()
    assert (await api.complete(ticket, headers=ADMIN)).status_code == 200


@pytest.mark.s3
async def test_the_presigned_url_grants_its_one_key_only(api: Api) -> None:
    ticket = await api.ticket()
    url = ticket["upload_url"]
    staging_id = ticket["complete_url"].split("/")[-2]
    path, _, query = url.partition("?")
    for other in (
        url.replace(staging_id, "9999999999-" + "0" * 32),
        url.replace("/sensor-1/", "/sensor-2/"),
        f"{path}.json?{query}",  # its own state
        url.replace(f"direct/sensor-1/{staging_id}", "uploads/sensor-1/forged"),
        f"{url}&partNumber=1&uploadId=forged",
    ):
        refused = await _put(other, DATA)
        assert refused.status_code == 403, (other, refused.text)
    assert api.keys("direct/") == [f"{PREFIX}/direct/sensor-1/{staging_id}.json"]
    await api.nothing_visible()


BAD_REQUESTS = [
    pytest.param(b"{not json", 400, "malformed_body", id="malformed-json"),
    pytest.param(b"\xff\xfe", 400, "malformed_body", id="not-utf8"),
    pytest.param(b"[1, 2]", 400, "malformed_body", id="not-an-object"),
    pytest.param(_declared(size=0), 400, "invalid_parameter", id="size-0"),
    pytest.param(_declared(size=-5), 400, "invalid_parameter", id="size-negative"),
    pytest.param(_declared(size="12"), 400, "invalid_parameter", id="size-string"),
    pytest.param(_declared(size=True), 400, "invalid_parameter", id="size-bool"),
    pytest.param(_declared(size=1.5), 400, "invalid_parameter", id="size-float"),
    pytest.param({"sha256": SHA}, 400, "invalid_parameter", id="size-missing"),
    pytest.param({"size": 1}, 400, "invalid_parameter", id="sha-missing"),
    pytest.param(_declared(sha256="ab" * 31), 400, "invalid_parameter", id="sha-short"),
    pytest.param(_declared(sha256="zz" * 32), 400, "invalid_parameter", id="sha-not-hex"),
    pytest.param(_declared(filename=7), 400, "invalid_parameter", id="filename-number"),
    pytest.param(_declared(filename="x" * 1025), 400, "invalid_parameter", id="filename-long"),
    pytest.param(_declared(content_type="text"), 400, "invalid_parameter", id="type-no-slash"),
    pytest.param(_declared(content_type="a/" + "b" * 99), 400, "invalid_parameter", id="type-long"),
    pytest.param(
        _declared(content_type="text/\u00e9"), 400, "invalid_parameter", id="type-non-ascii"
    ),
    pytest.param(_declared(colour="blue"), 400, "invalid_parameter", id="unknown-field"),
    pytest.param(_declared(size=MAX_UPLOAD_BYTES + 1), 413, "payload_too_large", id="too-large"),
    pytest.param(b" " * 5000, 413, "payload_too_large", id="body-too-long"),
]


@pytest.mark.s3
@pytest.mark.parametrize(("body", "status", "code"), BAD_REQUESTS)
async def test_bad_requests_create_nothing(api: Api, body: Any, status: int, code: str) -> None:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    response = await api.http.post(
        CREATE, content=content, headers={**DEVICE, "Content-Type": "application/json"}
    )
    _is_error(response, status, code)
    assert api.keys() == []  # no state, no staging key, nothing
    await api.nothing_visible()


@pytest.mark.s3
@pytest.mark.parametrize("media_type", ["text/plain", "application/x-www-form-urlencoded", None])
async def test_create_takes_json_only(api: Api, media_type: str | None) -> None:
    headers = {**DEVICE, **({"Content-Type": media_type} if media_type else {})}
    response = await api.http.post(CREATE, content=json.dumps(_declared()), headers=headers)
    _is_error(response, 415, "unsupported_media_type")
    assert api.keys() == []


@pytest.mark.s3
async def test_bad_device_id_is_a_400(api: Api) -> None:
    response = await api.http.post(
        "/api/devices/.hidden/direct-uploads", json=_declared(), headers=ADMIN
    )
    _is_error(response, 400, "invalid_device_id")
    assert api.keys() == []


@pytest.mark.parametrize("backend", ["file", "memory"])
async def test_storage_without_presigning_answers_501(backend: str, tmp_path: Path) -> None:
    storage = f"file://{tmp_path / 'data'}" if backend == "file" else "memory://"
    settings = Settings(storage=storage, secret_key=TEST_SECRET_KEY)
    async for http in _app(settings):
        created = await http.post(CREATE, json=_declared(), headers=DEVICE)
        _is_error(created, 501, "not_supported_by_storage")
        assert "need S3 storage" in created.json()["error"]["message"]
        path = "/api/devices/sensor-1/direct-uploads/9999999999-" + "0" * 32 + "/complete"
        _is_error(await http.post(path, headers=DEVICE), 501, "not_supported_by_storage")
        assert (await http.get("/api/devices/", headers=ADMIN)).json()[
            "TelemetryDataDownloads"
        ] == []


class RecordingStorage:
    """Stands in for storage in the sweeper: records when it was asked to remove uploads."""

    def __init__(self) -> None:
        self.asked: list[float] = []
        self.done = asyncio.Event()

    async def remove_expired_direct_uploads(self, now: float) -> int:
        self.asked.append(now)
        self.done.set()
        return 1


async def test_the_sweeper_removes_with_a_grace_period(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("mindproject.direct_upload_sweeper.time.time", lambda: 10_000.0)
    storage = RecordingStorage()
    sweeping = asyncio.create_task(sweep_direct_uploads_forever(storage, 1))  # type: ignore[arg-type]
    await storage.done.wait()
    sweeping.cancel()
    assert storage.asked[0] == 10_000.0 - GRACE_SECONDS


# The 2 GiB run: the bytes go to S3 without passing through the server; the server only copies
# them (server-side) and reads them back once to verify the sha256, in bounded chunks.
GiB = 1024**3
MiB = 1024**2
BIG = 2 * GiB


def _big_blocks() -> Iterator[bytes]:
    seed = hashlib.sha256(b"direct").digest() * (MiB // 32)
    for index in range(BIG // MiB):
        yield index.to_bytes(8, "big") + seed[8:]


@pytest.mark.server
@pytest.mark.slow
@pytest.mark.server
@pytest.mark.s3
def test_two_gib_direct_upload_in_bounded_server_memory(
    tmp_path: Path, s3_env: dict[str, str], s3_bucket: str
) -> None:
    digest = hashlib.sha256()
    for block in _big_blocks():
        digest.update(block)
    want = digest.hexdigest()
    token = make_token("device", "big")
    with (
        run_server(tmp_path, f"s3://{s3_bucket}/{PREFIX}", env=s3_env) as server,
        server.client(token=token, timeout=600) as client,
        httpx.Client(timeout=600) as s3,
    ):

        def direct(size: int, sha256: str, blocks: Iterator[bytes]) -> httpx.Response:
            created = client.post("/api/devices/big/direct-uploads", json=_declared(size, sha256))
            assert created.status_code == 200, created.text
            ticket = created.json()
            put = s3.put(ticket["upload_url"], content=blocks, headers=ticket["headers"])
            assert put.status_code == 200, put.text
            started = time.perf_counter()
            completed = client.post(ticket["complete_url"])
            print(f"completing {size} bytes took {time.perf_counter() - started:.1f} s")
            return completed

        warm = b"w" * 100_000  # every code path once, then the baseline
        assert direct(len(warm), hashlib.sha256(warm).hexdigest(), iter([warm])).status_code == 200
        baseline = rss_bytes(server.pid)

        completed = direct(BIG, want, _big_blocks())
        assert completed.status_code == 200, completed.text
        assert (completed.json()["size"], completed.json()["sha256"]) == (BIG, want)
        growth = peak_rss_bytes(server.pid) - baseline
        print(f"2 GiB direct upload: server peak RSS {growth / MiB:.1f} MiB above baseline")
        assert growth < 64 * MiB, f"server memory grew by {growth / MiB:.1f} MiB"


class BrokenOnceStorage(RecordingStorage):
    async def remove_expired_direct_uploads(self, now: float) -> int:
        if not self.asked:
            self.asked.append(now)
            raise RuntimeError("a bug")
        return await super().remove_expired_direct_uploads(now)


async def test_the_sweeper_keeps_sweeping_after_an_unexpected_error() -> None:
    storage = BrokenOnceStorage()
    sweeping = asyncio.create_task(sweep_direct_uploads_forever(storage, 0.01))  # type: ignore[arg-type]
    try:
        await asyncio.wait_for(storage.done.wait(), 30)
    finally:
        sweeping.cancel()
    assert len(storage.asked) >= 2
