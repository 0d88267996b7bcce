"""The OpenAPI document says what the routes do, in both directions, in-process.

- routes <-> operations: every route of `create_app().routes` is an operation of the document
  and back, and the set of operations is the agreed one (a deleted or added route fails here);
- parameters: each operation lists exactly the query and header parameters its route reads
  (recorded while the route runs, so a renamed parameter fails here);
- statuses: each operation is called once for every status it lists (storage failures included),
  and answers exactly that status, with the headers the document requires (there is no
  catch-all `default`);
- patterns and limits: the ones of identifiers.py and params.py, valid in Python and in
  ECMA-262 (JSON Schema's regex dialect).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import shutil
import subprocess
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import obstore
import pytest
from obstore.store import MemoryStore
from starlette.datastructures import Headers, QueryParams
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.testclient import TestClient

from mindproject.api.operation import ApiRoute
from mindproject.api.params import MAX_LIMIT
from mindproject.app import ROUTES, create_app
from mindproject.config import Settings
from mindproject.errors import (
    InsufficientStorage,
    InvalidDeviceId,
    MindProjectError,
    NotSupportedByStorage,
    StorageUnavailable,
    TooManyRequests,
)
from mindproject.identifiers import (
    CURSOR_PATTERN,
    DEVICE_ID_MAX,
    DEVICE_ID_PATTERN,
    VERSION_PATTERN,
    check_device_id,
    encode_cursor,
)
from mindproject.limits import RateLimiter
from mindproject.openapi import UndescribedRoute, openapi_document
from mindproject.storage import Storage
from mindproject.storage.filesystem import FileStorage
from mindproject.storage.objectstore import ObjectStorage
from tests.helpers import TEST_SECRET_KEY, make_token

# The API's operations: a contract with devices and the SDK. Adding or removing one is a
# deliberate change, made here too.
AGREED_OPERATIONS = {
    ("GET", "/api/devices/"): "listDevices",
    ("PUT", "/api/devices/{device_id}"): "upload",
    ("GET", "/api/devices/{device_id}"): "downloadLatest",
    ("DELETE", "/api/devices/{device_id}"): "deleteDevice",
    ("GET", "/api/devices/{device_id}/uploads"): "listUploads",
    ("GET", "/api/devices/{device_id}/uploads/{version}"): "downloadUpload",
    ("DELETE", "/api/devices/{device_id}/uploads/{version}"): "deleteUpload",
    ("GET", "/api/revocations/"): "listRevocations",
    ("PUT", "/api/revocations/{device_id}"): "revokeDevice",
    ("DELETE", "/api/revocations/{device_id}"): "unrevokeDevice",
    ("OPTIONS", "/api/devices/{device_id}/resumable"): "discoverResumable",
    ("POST", "/api/devices/{device_id}/resumable"): "createResumable",
    ("HEAD", "/api/devices/{device_id}/resumable/{upload_id}"): "resumableStatus",
    ("PATCH", "/api/devices/{device_id}/resumable/{upload_id}"): "appendResumable",
    ("DELETE", "/api/devices/{device_id}/resumable/{upload_id}"): "terminateResumable",
    ("POST", "/api/devices/{device_id}/direct-uploads"): "createDirectUpload",
    ("POST", "/api/devices/{device_id}/direct-uploads/{direct_upload_id}/complete"): (
        "completeDirectUpload"
    ),
    ("GET", "/api/fleet/devices"): "fleetDevices",
    ("GET", "/api/fleet/summary"): "fleetSummary",
    ("GET", "/api/devices/{device_id}/activity"): "deviceActivity",
    ("GET", "/api/whoami"): "whoami",
    ("GET", "/healthz"): "healthz",
    ("GET", "/readyz"): "readyz",
    ("GET", "/metrics"): "metrics",
}

MAX_UPLOAD_BYTES = 1000
SETTINGS = Settings(
    storage="memory://",
    secret_key=TEST_SECRET_KEY,
    max_upload_bytes=MAX_UPLOAD_BYTES,
)


class RefuseDevices(RateLimiter):
    """Every device token is over its rate: a 429 without depending on a clock."""

    def check(self, key: str) -> None:
        raise TooManyRequests(f"device {key} is over its request rate", retry_after=1)


def _document() -> dict[str, Any]:
    return openapi_document(ROUTES)


def _operations(document: Mapping[str, Any]) -> dict[str, tuple[str, str, dict[str, Any]]]:
    """operationId -> (METHOD, path, operation)."""
    return {
        op["operationId"]: (method.upper(), path, op)
        for path, item in document["paths"].items()
        for method, op in item.items()
    }


def _resolve(document: Mapping[str, Any], item: Mapping[str, Any]) -> Mapping[str, Any]:
    ref = item.get("$ref")
    if ref is None:
        return item
    node: Any = document
    for part in ref.removeprefix("#/").split("/"):
        node = node[part]
    return dict(node)


# Routes <-> operations.


def test_every_route_is_an_operation_and_every_operation_a_route() -> None:
    app = create_app(SETTINGS)
    routed: set[tuple[str, str]] = set()
    for route in app.routes:
        if isinstance(route, Route) and route.include_in_schema:
            assert isinstance(route, ApiRoute), f"{route.path} has no Operation"
            # Starlette adds HEAD to every GET route: only a route for HEAD alone is its own.
            methods = route.methods or set()
            routed |= {(m, route.path) for m in methods if m != "HEAD" or methods == {"HEAD"}}
    with TestClient(app) as client:
        served = client.get("/api/openapi.json").json()
    described = {(method, path) for method, path, _ in _operations(served).values()}
    assert routed == described
    assert served == openapi_document(app.routes)


def test_the_operations_are_the_agreed_ones() -> None:
    described = {
        (method, path): op_id for op_id, (method, path, _) in _operations(_document()).items()
    }
    assert described == AGREED_OPERATIONS


async def _undescribed(request: Request) -> Response:
    return JSONResponse({})


def test_a_route_without_an_operation_stops_the_document() -> None:
    with pytest.raises(UndescribedRoute, match="/api/undescribed"):
        openapi_document([*ROUTES, Route("/api/undescribed", _undescribed, methods=["GET"])])


def test_path_parameters_are_those_of_the_path() -> None:
    for method, path, op in _operations(_document()).values():
        in_path = [p["name"] for p in op["parameters"] if p["in"] == "path"]
        assert in_path == re.findall(r"{(\w+)}", path), (method, path)


# Statuses and parameters: each operation called once per status it lists.


@dataclass(frozen=True)
class Call:
    """One request to an operation and the status it must get."""

    status: int
    token: str = "admin"  # admin, operator, device (sensor-1: over its rate), other-device, none
    path: Mapping[str, str] = field(default_factory=dict)  # path parameters, over the defaults
    query: Mapping[str, str] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)
    content: bytes | None = None
    form: bytes | None = None  # the multipart field `file`
    without_length: bool = False  # neither Content-Length nor chunked
    unsupported: bool = False  # the storage cannot do direct uploads (as the file backend),
    # nor answer the fleet view (as S3-only storage)


SEED = b"reading, stored before each operation's calls"
SEED_SHA256 = hashlib.sha256(SEED).hexdigest()
RAW = {"Content-Type": "application/octet-stream"}


JSON = {"Content-Type": "application/json"}


def _direct(size: int = len(SEED), sha256: str = SEED_SHA256, **more: object) -> bytes:
    return json.dumps({"size": size, "sha256": sha256, **more}).encode()


# Direct uploads the test stages before completeDirectUpload's calls (ids fixed here, as the
# calls are): the declared bytes, other bytes, and none at all. They expire in a day.
_EXPIRES = int(time.time()) + 86400
STAGED, OTHER_BYTES, NOT_RECEIVED, NEVER_CREATED = (f"{_EXPIRES}-{digit * 32}" for digit in "abcf")


def _digest(data: bytes) -> str:
    return f"sha-256=:{base64.b64encode(hashlib.sha256(data).digest()).decode()}:"


TUS = {"Tus-Resumable": "1.0.0"}
CHUNK = {**TUS, "Content-Type": "application/offset+octet-stream"}
TEN = b"0123456789"
AT_20 = {"Upload-Offset": "20"}
_SHA1 = f"sha1 {base64.b64encode(hashlib.sha1(TEN).digest()).decode()}"
_BAD = f"sha1 {base64.b64encode(hashlib.sha1(b'other').digest()).decode()}"
_B64_NAME = base64.b64encode(b"a.bin").decode()
# tus requests carry Tus-Resumable (even a 401 is only a 401 with it; without it, 412).
TUS_OPERATIONS = {
    "discoverResumable",
    "createResumable",
    "resumableStatus",
    "appendResumable",
    "terminateResumable",
}

_DOWNLOAD_CALLS = [
    Call(200),
    Call(200, query={"encoding": "raw"}),
    Call(206, query={"encoding": "raw"}, headers={"Range": "bytes=0-3"}),
    Call(304, headers={"If-None-Match": f'"{SEED_SHA256}-b64"'}),
    Call(416, query={"encoding": "raw"}, headers={"Range": "bytes=100000-"}),
    Call(400, query={"encoding": "zip"}),
    Call(400, path={"device_id": ".hidden"}),
    Call(404, path={"device_id": "ghost"}),
    Call(403, token="other-device"),
    Call(429, token="device"),
]

CALLS: dict[str, list[Call]] = {
    "listDevices": [
        Call(200),
        Call(200, query={"limit": "1", "cursor": encode_cursor("a"), "prefix": "sensor"}),
        Call(400, query={"limit": str(MAX_LIMIT + 1)}),
        Call(400, query={"prefix": ".hidden"}),
        Call(403, token="device"),
    ],
    "upload": [
        Call(200, form=b"multipart"),
        Call(200, content=b"raw", headers={**RAW, "X-Filename": "r.bin", "Idempotency-Key": "k"}),
        Call(200, content=b"raw", headers={**RAW, "Idempotency-Key": "k"}),  # replayed
        Call(409, content=b"other", headers={**RAW, "Idempotency-Key": "k"}),
        Call(200, content=b"checked", headers={**RAW, "Content-Digest": _digest(b"checked")}),
        Call(400, content=b"checked", headers={**RAW, "Content-Digest": _digest(b"other")}),
        Call(400, content=b"x", headers={**RAW, "Content-MD5": "not base64!"}),
        Call(400, content=b"x", headers={**RAW, "Idempotency-Key": ".hidden"}),
        Call(400, path={"device_id": ".hidden"}, content=b"x", headers=RAW),
        Call(411, content=b"x", headers=RAW, without_length=True),
        Call(413, content=b"x" * (MAX_UPLOAD_BYTES + 1), headers=RAW),
        Call(415, content=b"x", headers={"Content-Type": "multipart/mixed; boundary=x"}),
        Call(200, content=b"x", headers={"Content-Type": "application/x-www-form-urlencoded"}),
        Call(403, token="other-device", content=b"x", headers=RAW),
        Call(429, token="device", content=b"x", headers=RAW),
    ],
    "downloadLatest": _DOWNLOAD_CALLS,
    "deleteDevice": [
        Call(400, path={"device_id": ".hidden"}),
        Call(404, path={"device_id": "ghost"}),
        Call(403, token="operator"),
        Call(200),
    ],
    "listUploads": [
        Call(200),
        Call(200, query={"limit": "1"}),
        Call(400, query={"cursor": "not a cursor"}),
        Call(404, path={"device_id": "ghost"}),
        Call(403, token="other-device"),
        Call(429, token="device"),
    ],
    "downloadUpload": [
        *_DOWNLOAD_CALLS,
        Call(400, path={"version": "1"}),
        Call(404, path={"version": "0000000000000000-00000000"}),
    ],
    "deleteUpload": [
        Call(400, path={"version": "1"}),
        Call(404, path={"version": "0000000000000000-00000000"}),
        Call(403, token="operator"),
        Call(200),
    ],
    "listRevocations": [Call(200), Call(403, token="operator")],
    "revokeDevice": [
        Call(200),
        Call(400, path={"device_id": ".hidden"}),
        Call(403, token="operator"),
    ],
    "unrevokeDevice": [
        Call(200),
        Call(400, path={"device_id": ".hidden"}),
        Call(403, token="operator"),
    ],
    "discoverResumable": [
        Call(204, token="none"),
        Call(400, token="none", path={"device_id": ".hidden"}),
    ],
    "createResumable": [
        Call(
            201, headers={**TUS, "Upload-Length": "10", "Upload-Metadata": f"filename {_B64_NAME}"}
        ),
        Call(201, content=TEN, headers={**CHUNK, "Upload-Length": "10", "Upload-Checksum": _SHA1}),
        Call(201, headers={**TUS, "Upload-Defer-Length": "1"}),
        Call(400, headers=TUS),
        Call(400, headers={**TUS, "Upload-Length": "10", "Upload-Metadata": "filename !"}),
        Call(400, path={"device_id": ".hidden"}, headers={**TUS, "Upload-Length": "10"}),
        Call(412, headers={"Upload-Length": "10"}),
        Call(413, headers={**TUS, "Upload-Length": str(MAX_UPLOAD_BYTES + 1)}),
        Call(
            415, content=TEN, headers={**TUS, "Upload-Length": "10", "Content-Type": "text/plain"}
        ),
        Call(460, content=TEN, headers={**CHUNK, "Upload-Length": "10", "Upload-Checksum": _BAD}),
        Call(403, token="other-device", headers={**TUS, "Upload-Length": "10"}),
        Call(429, token="device", headers={**TUS, "Upload-Length": "10"}),
    ],
    "resumableStatus": [
        Call(200, headers=TUS),
        Call(400, path={"device_id": ".hidden"}, headers=TUS),
        Call(404, path={"upload_id": "0" * 32}, headers=TUS),
        Call(412),
        Call(403, token="other-device", headers=TUS),
        Call(429, token="device", headers=TUS),
    ],
    "appendResumable": [  # the upload is 100 bytes long
        Call(204, content=TEN, headers={**CHUNK, "Upload-Offset": "0", "Upload-Checksum": _SHA1}),
        Call(204, content=TEN, headers={**CHUNK, "Upload-Offset": "10", "Upload-Length": "100"}),
        Call(409, content=TEN, headers={**CHUNK, "Upload-Offset": "0"}),
        Call(400, content=TEN, headers=CHUNK),
        Call(404, path={"upload_id": "0" * 32}, content=TEN, headers={**CHUNK, **AT_20}),
        Call(411, content=TEN, headers={**CHUNK, **AT_20}, without_length=True),
        Call(412, content=TEN, headers={"Content-Type": CHUNK["Content-Type"], **AT_20}),
        Call(413, content=b"x" * 81, headers={**CHUNK, **AT_20}),
        Call(415, content=TEN, headers={**TUS, "Content-Type": "text/plain", **AT_20}),
        Call(460, content=TEN, headers={**CHUNK, **AT_20, "Upload-Checksum": _BAD}),
        Call(403, token="other-device", content=TEN, headers={**CHUNK, **AT_20}),
        Call(429, token="device", content=TEN, headers={**CHUNK, **AT_20}),
    ],
    "terminateResumable": [
        Call(412),
        Call(400, path={"device_id": ".hidden"}, headers=TUS),
        Call(404, path={"upload_id": "0" * 32}, headers=TUS),
        Call(403, token="other-device", headers=TUS),
        Call(429, token="device", headers=TUS),
        Call(204, headers=TUS),
        Call(404, headers=TUS),
    ],
    "createDirectUpload": [
        Call(200, content=_direct(), headers=JSON),
        Call(200, content=_direct(filename="a/b.bin", content_type="text/csv"), headers=JSON),
        Call(400, content=b"{not json", headers=JSON),
        Call(400, content=b"[]", headers=JSON),
        Call(400, content=_direct(size=0), headers=JSON),
        Call(400, content=_direct(sha256="abc"), headers=JSON),
        Call(400, content=_direct(colour="blue"), headers=JSON),
        Call(400, content=_direct(content_type="no type"), headers=JSON),
        Call(400, path={"device_id": ".hidden"}, content=_direct(), headers=JSON),
        Call(413, content=_direct(size=MAX_UPLOAD_BYTES + 1), headers=JSON),
        Call(413, content=b" " * 5000 + _direct(), headers=JSON),
        Call(415, content=_direct(), headers={"Content-Type": "text/plain"}),
        Call(403, token="other-device", content=_direct(), headers=JSON),
        Call(403, token="operator", content=_direct(), headers=JSON),
        Call(429, token="device", content=_direct(), headers=JSON),
        Call(501, content=_direct(), headers=JSON, unsupported=True),
    ],
    "completeDirectUpload": [
        Call(200),
        Call(200),  # completed again: the same version, replayed
        Call(400, path={"direct_upload_id": OTHER_BYTES}),
        Call(400, path={"direct_upload_id": NOT_RECEIVED}),
        Call(400, path={"device_id": ".hidden"}),
        Call(404, path={"direct_upload_id": NEVER_CREATED}),
        Call(404, path={"direct_upload_id": "not-an-id"}),
        Call(404, path={"device_id": "sensor-2"}),  # another device's path: not its upload
        Call(403, token="other-device"),
        Call(429, token="device"),
        Call(501, unsupported=True),
    ],
    "fleetDevices": [
        Call(200),
        Call(200, query={"limit": "1", "prefix": "sensor", "sort": "last_upload_at"}),
        Call(200, query={"silent_for": "6h", "cursor": encode_cursor("a")}),
        Call(400, query={"sort": "colour"}),
        Call(400, query={"silent_for": "6 hours"}),
        Call(400, query={"sort": "last_upload_at", "cursor": encode_cursor("a")}),
        Call(400, query={"prefix": ".hidden"}),
        Call(400, query={"limit": "0"}),
        Call(403, token="device"),
        Call(501, unsupported=True),
    ],
    "fleetSummary": [
        Call(200),
        Call(200, query={"silent_for": "30s"}),
        Call(400, query={"silent_for": "0h"}),
        Call(403, token="device"),
        Call(501, unsupported=True),
    ],
    "deviceActivity": [
        Call(200),
        Call(200, query={"bucket": "1d", "from": "2026-01-01T00:00:00Z", "to": "2026-02-01"}),
        Call(400, query={"bucket": "1w"}),
        Call(400, query={"from": "yesterday"}),
        Call(400, query={"to": "2026-01-01T00:00:00Z", "from": "2026-02-01T00:00:00Z"}),
        Call(400, query={"bucket": "1s", "from": "2026-01-01T00:00:00Z"}),  # too many buckets
        Call(400, path={"device_id": ".hidden"}),
        Call(404, path={"device_id": "ghost"}),
        Call(403, token="device"),
        Call(501, unsupported=True),
    ],
    "whoami": [Call(200), Call(200, token="device"), Call(200, token="operator")],
    "healthz": [Call(200)],
    "readyz": [Call(200)],
    "metrics": [Call(200)],
}

# Listed but not provoked here: a client that stops sending its body needs a real socket and
# time (tests/test_limits.py); a busy resumable upload (423) needs another request holding it
# (tests/api/test_resumable.py).
NOT_PROVOKED_HERE = {408, 423}

WRITES = (
    "save",
    "delete_device",
    "delete_upload",
    "set_revocation",
    "create_resumable",
    "append_resumable",
    "delete_resumable",
)
# Only object stores do direct uploads, and they are never full (507): these fail as unavailable.
DIRECT_UPLOADS = ("presign_direct_upload", "complete_direct_upload")
FLEET = ("fleet_devices", "fleet_summary", "device_activity")
# The fleet view's operations run on the file backend here: S3-only storage (and memory, which
# stands in for it) answers only part of them (tests/storage/test_fleet_objectstore.py).
FLEET_OPERATIONS = {"fleetDevices", "fleetSummary", "deviceActivity"}
READS = (
    "resumable",
    "find_by_key",
    "latest",
    "get",
    "list_devices",
    "list_uploads",
    "list_revocations",
    "check",
    *FLEET,
)


def _failing(error: MindProjectError) -> Callable[..., Awaitable[Any]]:
    async def fail(*args: Any, **kwargs: Any) -> Any:
        raise error

    return fail


def _break(storage: Storage, methods: tuple[str, ...], error: MindProjectError) -> None:
    """From now on these storage calls fail with `error` (the app holds this very object)."""
    for name in methods:
        setattr(storage, name, _failing(error))


# Request headers the route reads that are described elsewhere than in `parameters`: the
# security scheme, the request body, HTTP framing.
DESCRIBED_ELSEWHERE = {"authorization", "content-type", "content-length", "transfer-encoding"}


def _request_of(call: Call) -> dict[str, Any]:
    """The call's request, without its status."""
    return {name: value for name, value in vars(call).items() if name != "status"}


class SigningMemoryStorage(ObjectStorage):
    """memory:// cannot presign URLs (501); this one hands out a URL nobody serves, and the test
    writes the "uploaded" bytes into the store itself, where a device's PUT would put them."""

    def __init__(self) -> None:
        super().__init__(MemoryStore())
        self._presigns = True

    async def _sign_put(self, key: str, expires_in: timedelta) -> str:
        return f"http://127.0.0.1:9/{key}?X-Amz-Signature=test"

    async def stage(self, device_id: str, staging_id: str, data: bytes | None) -> None:
        await self.presign_direct_upload(
            device_id,
            staging_id,
            size=len(SEED),
            sha256=SEED_SHA256,
            filename="direct.bin",
            content_type=None,
            expires_at=_EXPIRES,
        )
        if data is not None:
            key = self._layout.direct_staging_key(device_id, staging_id)
            await obstore.put_async(self._store, key, data)


def _calls(op_id: str, authenticated: bool) -> list[Call]:
    every = [Call(431, headers={"X-Padding": "x" * (SETTINGS.max_header_bytes + 1)})]
    if authenticated:
        every.append(Call(401, token="none", headers=TUS if op_id in TUS_OPERATIONS else {}))
    return [*CALLS[op_id], *every]


@dataclass
class Reads:
    """The query and header names a request handler asked for."""

    query: set[str] = field(default_factory=set)
    headers: set[str] = field(default_factory=set)


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> Reads:
    """Records every query parameter and request header a route reads, however it reads them."""
    seen = Reads()

    def record_query(method: Any) -> Any:
        def recorded(self: QueryParams, key: Any, *args: Any) -> Any:
            seen.query.add(key)
            return method(self, key, *args)

        return recorded

    def record_header(method: Any) -> Any:
        def recorded(self: Headers, key: Any, *args: Any) -> Any:
            if type(self) is Headers:  # a request's headers, not a response's MutableHeaders
                seen.headers.add(key.lower())
            return method(self, key, *args)

        return recorded

    for name in ("__getitem__", "__contains__", "getlist"):
        monkeypatch.setattr(QueryParams, name, record_query(getattr(QueryParams, name)))
        monkeypatch.setattr(Headers, name, record_header(getattr(Headers, name)))
    return seen


class StagingFileStorage(FileStorage):
    """The file backend, for the fleet view's operations (it cannot stage direct uploads)."""

    async def stage(self, device_id: str, staging_id: str, data: bytes | None) -> None:
        pass


@pytest.fixture
def storage(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[SigningMemoryStorage | StagingFileStorage]:
    callspec = getattr(request.node, "callspec", None)
    if callspec is not None and callspec.params.get("op_id") in FLEET_OPERATIONS:
        yield StagingFileStorage(tmp_path / "data", fsync=False)
    else:
        yield SigningMemoryStorage()


@pytest.fixture
def client(storage: Storage) -> Iterator[TestClient]:
    app = create_app(SETTINGS, storage=storage)
    app.state.rate_limiter = RefuseDevices(per_minute=1, burst=1)
    with TestClient(app) as test_client:
        yield test_client


def _token_headers(token: str) -> dict[str, str]:
    tokens = {
        "admin": make_token("admin"),
        "operator": make_token("operator"),
        "device": make_token("device", "sensor-1"),
        "other-device": make_token("device", "sensor-2"),
    }
    return {"Authorization": f"Bearer {tokens[token]}"} if token in tokens else {}


def _send(client: TestClient, method: str, path: str, call: Call) -> Any:
    headers = {**_token_headers(call.token), **call.headers}
    files = {"file": ("reading.bin", call.form)} if call.form is not None else None
    request = client.build_request(
        method, path, params=dict(call.query), headers=headers, content=call.content, files=files
    )
    if call.without_length:
        del request.headers["Content-Length"]
    return client.send(request)


@pytest.mark.parametrize("op_id", sorted(AGREED_OPERATIONS.values()))
def test_each_status_listed_is_answered_and_each_parameter_read(
    op_id: str, client: TestClient, storage: SigningMemoryStorage | StagingFileStorage, reads: Reads
) -> None:
    document = _document()
    method, template, op = _operations(document)[op_id]
    stored = client.put("/api/devices/sensor-1", content=SEED, headers=_token_headers("admin"))
    assert stored.status_code == 200, stored.text
    for staging_id, data in ((STAGED, SEED), (OTHER_BYTES, b"x" + SEED[1:]), (NOT_RECEIVED, None)):
        client.portal.call(storage.stage, "sensor-1", staging_id, data)  # type: ignore[union-attr]
    defaults = {
        "device_id": "sensor-1",
        "version": stored.json()["version"],
        "direct_upload_id": STAGED,
    }
    if op_id in TUS_OPERATIONS:
        created = client.post(
            "/api/devices/sensor-1/resumable",
            headers={**_token_headers("admin"), **TUS, "Upload-Length": "100"},
        )
        assert created.status_code == 201, created.text
        defaults["upload_id"] = created.headers["location"].rpartition("/")[2]
    reads.query.clear()
    reads.headers.clear()

    listed = {int(status) for status in op["responses"]}
    answered: set[int] = set()

    def check(call: Call) -> None:
        path = template.format(**{**defaults, **call.path})
        if call.unsupported:
            _break(storage, DIRECT_UPLOADS + FLEET, NotSupportedByStorage("needs another store"))
        try:
            response = _send(client, method, path, call)
        finally:
            for name in DIRECT_UPLOADS + FLEET if call.unsupported else ():
                delattr(storage, name)  # the class's own methods again
        assert response.status_code == call.status, (call, response.text)
        assert response.status_code in listed, f"{op_id} answered {call.status}, not listed"
        answered.add(response.status_code)
        described = _resolve(document, op["responses"][str(response.status_code)])
        for name, header in described.get("headers", {}).items():
            if header["required"]:
                assert name in response.headers, (op_id, call, name)

    calls = _calls(op_id, authenticated=op.get("security") != [])
    for call in calls:
        check(call)
    # Then the storage fails: full (writes fail), then unavailable (every call fails). An
    # operation that does not list the status does not touch storage that way: it still works.
    ok = next(call for call in calls if 200 <= call.status < 300)
    working = _request_of(ok)
    _break(storage, WRITES, InsufficientStorage("full"))
    check(Call(507 if 507 in listed else ok.status, **working))
    _break(storage, WRITES + READS + DIRECT_UPLOADS, StorageUnavailable("down"))
    check(Call(503 if 503 in listed else ok.status, **working))
    assert listed - answered <= NOT_PROVOKED_HERE, f"{op_id}: never answered {listed - answered}"

    parameters = {(p["in"], p["name"]) for p in op["parameters"]}
    assert reads.query == {name for where, name in parameters if where == "query"}
    documented_headers = {name.lower() for where, name in parameters if where == "header"}
    assert reads.headers - DESCRIBED_ELSEWHERE == documented_headers


def test_every_operation_has_its_calls() -> None:
    assert set(CALLS) == set(AGREED_OPERATIONS.values())


def test_no_catch_all_responses() -> None:
    for op_id, (_, _, op) in _operations(_document()).items():
        assert all(status.isdigit() for status in op["responses"]), op_id


# Patterns and limits.


def test_patterns_and_limits_are_the_code_s() -> None:
    ops = _operations(_document())
    params = {p["name"]: p["schema"] for _, _, op in ops.values() for p in op["parameters"]}
    assert params["device_id"]["pattern"] == f"^{DEVICE_ID_PATTERN}$"
    assert params["device_id"]["maxLength"] == DEVICE_ID_MAX
    assert params["prefix"]["pattern"] == f"^{DEVICE_ID_PATTERN}$"
    assert params["Idempotency-Key"]["pattern"] == f"^{DEVICE_ID_PATTERN}$"
    assert params["version"]["pattern"] == f"^{VERSION_PATTERN}$"
    assert params["cursor"]["pattern"] == f"^{CURSOR_PATTERN}$"
    assert params["limit"]["maximum"] == MAX_LIMIT
    defaults = {op_id: _limit_default(op) for op_id, (_, _, op) in ops.items()}
    assert defaults["listDevices"] == 1000
    assert defaults["listUploads"] == 100


def _limit_default(op: Mapping[str, Any]) -> int | None:
    for p in op["parameters"]:
        if p["name"] == "limit":
            return int(p["schema"]["default"])
    return None


def _patterns(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "pattern" and isinstance(value, str):
                yield value
            else:
                yield from _patterns(value)
    elif isinstance(node, list):
        for value in node:
            yield from _patterns(value)


DEVICE_IDS = [
    "sensor-42",
    "a",
    "A:b_c.d-e",
    "_x",
    "x" * DEVICE_ID_MAX,
    "x" * (DEVICE_ID_MAX + 1),
    ".hidden",
    "a/b",
    "a b",
    "",
    "é",
    "a\n",
    "a\\b",
]


def _accepted_by_code(value: str) -> bool:
    try:
        check_device_id(value)
    except InvalidDeviceId:
        return False
    return True


def test_every_pattern_is_python_regex() -> None:
    for pattern in _patterns(_document()):
        re.compile(pattern)


@pytest.mark.skipif(shutil.which("node") is None, reason="needs Node.js for ECMA-262 regexes")
def test_every_pattern_is_ecma_regex_and_means_what_the_code_checks() -> None:
    """JSON Schema patterns are ECMA-262 regexes: compile each in Node.js (with the `u` flag, as
    JSON Schema validators do) and check the device id pattern accepts exactly what the code
    accepts."""
    patterns = sorted(set(_patterns(_document())))
    script = """
    const input = JSON.parse(require("fs").readFileSync(0, "utf8"));
    for (const p of input.patterns) new RegExp(p, "u");
    const device = new RegExp(input.device, "u");
    console.log(JSON.stringify(input.samples.map((s) => device.test(s))));
    """
    stdin = {"patterns": patterns, "device": f"^{DEVICE_ID_PATTERN}$", "samples": DEVICE_IDS}
    ran = subprocess.run(
        ["node", "-e", script],
        input=json.dumps(stdin),
        capture_output=True,
        text=True,
        check=False,
    )
    assert ran.returncode == 0, ran.stderr
    ecma = json.loads(ran.stdout)
    assert ecma == [_accepted_by_code(sample) for sample in DEVICE_IDS]


# The documentation pages.


def test_docs_page_and_assets_are_served_locally(client: TestClient) -> None:
    page = client.get("/api/")
    assert page.status_code == 200
    sources = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert sources and all(src.startswith("/") for src in sources), sources
    for src in sources:
        assert client.get(src).status_code == 200, src
    spec = client.get("/api/openapi.json").json()
    assert spec["openapi"].startswith("3.")


def test_docs_serve_only_the_files_the_page_uses_and_keep_no_token(client: TestClient) -> None:
    """The bundle's stock pages (inline scripts, their own config) are not served, and Swagger
    does not keep the pasted bearer token in localStorage."""
    for stock in ("index.html", "oauth2-redirect.html", "swagger-initializer.js", "index.j2"):
        assert client.get(f"/api/docs-assets/{stock}").status_code == 404, stock
    script = client.get("/api/docs.js").text
    assert "persistAuthorization: false" in script
    assert "localStorage" not in script
