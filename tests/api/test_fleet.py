"""The fleet view's routes, in-process on the file backend: rows, paging, sort, silence, summary,
activity, roles, parameter errors in the one error shape; whoami; S3-only answers (memory)."""

from __future__ import annotations

import asyncio
import base64
import itertools
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from obstore.store import MemoryStore

from mindproject.identifiers import encode_cursor, new_version_id
from mindproject.storage.objectstore import ObjectStorage
from tests.helpers import AppServer, app_server, assert_error, make_token, measured

OPERATOR = make_token("operator")


def _upload(client: httpx.Client, device: str, data: bytes, name: str = "r.bin") -> Any:
    response = client.put(
        f"/api/devices/{device}",
        content=data,
        headers={"Content-Type": "application/octet-stream", "X-Filename": name},
    )
    assert response.status_code == 200, response.text
    return response.json()


def _walk(client: httpx.Client, **query: str) -> list[str]:
    seen: list[str] = []
    cursor = None
    while True:
        params = {**query, **({"cursor": cursor} if cursor else {})}
        body = client.get("/api/fleet/devices", params=params).json()
        seen += [row["device_id"] for row in body["devices"]]
        cursor = body["next_cursor"]
        if cursor is None:
            return seen


def _backdate(server: AppServer, device: str, data: bytes, seconds_ago: float) -> None:
    """An upload made `seconds_ago` (its version id says when), through the app's storage."""
    storage = server.app.state.storage
    version = new_version_id(int((time.time() - seconds_ago) * 1e6))

    async def save() -> None:
        await storage.save(device, version, measured(data), filename=None, content_type=None)

    asyncio.run_coroutine_threadsafe(save(), server._loop).result(timeout=60)


def test_rows_paging_and_sorts(server: AppServer) -> None:
    admin = server.client()
    first = _upload(admin, "fleet-a", b"12345", "a.bin")
    _upload(admin, "fleet-a", b"123")
    _backdate(server, "fleet-b", b"old", seconds_ago=3 * 86400)
    _backdate(server, "fleet-c", b"older", seconds_ago=5 * 86400)
    admin.put("/api/revocations/fleet-c")

    with server.client(OPERATOR) as operator:
        body = operator.get("/api/fleet/devices", params={"prefix": "fleet-"}).json()
        rows = {row["device_id"]: row for row in body["devices"]}
        assert list(rows) == ["fleet-a", "fleet-b", "fleet-c"]
        a = rows["fleet-a"]
        assert (a["uploads"], a["bytes"], a["last_size"], a["revoked"]) == (2, 8, 3, False)
        # The same ISO 8601 form as uploaded_at; the newest upload's time.
        assert len(a["last_upload_at"]) == len(first["uploaded_at"])
        assert a["last_upload_at"].endswith("Z") and a["last_upload_at"] >= first["uploaded_at"]
        assert rows["fleet-c"]["revoked"] is True and rows["fleet-c"]["revoked_at"]

        assert _walk(operator, prefix="fleet-", limit="1") == ["fleet-a", "fleet-b", "fleet-c"]
        assert _walk(operator, prefix="fleet-", limit="1", sort="last_upload_at") == [
            "fleet-c",
            "fleet-b",
            "fleet-a",
        ]
        assert _walk(operator, prefix="fleet-", silent_for="4d") == ["fleet-c"]
        assert _walk(operator, prefix="fleet-", silent_for="1d", sort="last_upload_at") == [
            "fleet-c",
            "fleet-b",
        ]


def test_summary_counts_and_silent_threshold(server: AppServer) -> None:
    admin = server.client()
    _upload(admin, "s-1", b"x" * 10)
    _backdate(server, "s-2", b"y" * 7, seconds_ago=2 * 3600)
    _backdate(server, "s-3", b"z", seconds_ago=3 * 86400)
    admin.put("/api/revocations/s-3")
    with server.client(OPERATOR) as operator:
        summary = operator.get("/api/fleet/summary").json()
        assert summary["silent_for"] == "24h"
        assert (summary["devices"], summary["silent_devices"], summary["revoked_devices"]) == (
            3,
            1,
            1,
        )
        assert (summary["uploads_last_hour"], summary["bytes_last_hour"]) == (1, 10)
        assert (summary["uploads_last_day"], summary["bytes_last_day"]) == (2, 17)
        assert operator.get("/api/fleet/summary?silent_for=1h").json()["silent_devices"] == 2

    # A delete is in the figures at once: the same transaction.
    admin.delete("/api/devices/s-1")
    summary = admin.get("/api/fleet/summary").json()
    assert (summary["devices"], summary["uploads_last_hour"]) == (2, 0)


def test_activity_buckets(server: AppServer) -> None:
    admin = server.client()
    _upload(admin, "act", b"abc")
    _backdate(server, "act", b"12345", seconds_ago=2 * 86400)
    body = admin.get("/api/devices/act/activity").json()
    assert body["bucket"] == "1h"
    buckets = body["buckets"]
    assert len(buckets) in (168, 169)  # 7 days of hours, the first one aligned down
    assert sum(b["uploads"] for b in buckets) == 2 and sum(b["bytes"] for b in buckets) == 8
    assert all(b["start"].endswith(":00:00.000000Z") for b in buckets)
    assert buckets[-1]["uploads"] == 1
    starts = [datetime.fromisoformat(b["start"]) for b in buckets]
    assert all(
        later - earlier == starts[1] - starts[0] for earlier, later in itertools.pairwise(starts)
    )

    day = datetime.now(UTC).strftime("%Y-%m-%d")
    daily = admin.get(
        "/api/devices/act/activity",
        params={"bucket": "1d", "from": f"{day}T00:00:00Z", "to": f"{day}T23:59:59+00:00"},
    ).json()["buckets"]
    assert [(b["uploads"], b["bytes"]) for b in daily] == [(1, 3)]
    assert_error(admin.get("/api/devices/nobody/activity"), 404, "device_not_found")


@pytest.mark.parametrize(
    ("path", "query"),
    [
        ("/api/fleet/devices", {"sort": "newest"}),
        ("/api/fleet/devices", {"silent_for": "-1h"}),
        ("/api/fleet/devices", {"silent_for": "6"}),
        ("/api/fleet/devices", {"cursor": "!!"}),
        ("/api/fleet/devices", {"sort": "last_upload_at", "cursor": encode_cursor("x")}),
        ("/api/fleet/devices", {"cursor": encode_cursor("12/a")}),
        ("/api/fleet/summary", {"silent_for": "1y"}),
        ("/api/devices/d/activity", {"bucket": "0h"}),
        ("/api/devices/d/activity", {"bucket": "1m"}),  # 7 days of minutes: over 1,000 buckets
        ("/api/devices/d/activity", {"from": "2026-13-01"}),
        ("/api/devices/d/activity", {"to": "2020-01-01T00:00:00Z", "from": "2021-01-01"}),
    ],
)
def test_bad_parameters_are_400(server: AppServer, path: str, query: dict[str, str]) -> None:
    assert_error(server.client().get(path, params=query), 400, "invalid_parameter")


def test_device_tokens_and_anonymous_callers_are_refused(server: AppServer) -> None:
    device = server.client(make_token("device", "d-1"))
    _upload(device, "d-1", b"mine")
    for path in ("/api/fleet/devices", "/api/fleet/summary", "/api/devices/d-1/activity"):
        assert_error(device.get(path), 403, "forbidden")
        assert_error(server.client(None).get(path), 401, "unauthorized")


def test_whoami_names_the_role(server: AppServer) -> None:
    assert server.client().get("/api/whoami").json()["role"] == "admin"
    assert server.client(OPERATOR).get("/api/whoami").json() == {
        "role": "operator",
        "device_id": None,
        "expires_at": None,
    }
    device = server.client(make_token("device", "d-9", ttl=600)).get("/api/whoami").json()
    assert (device["role"], device["device_id"]) == ("device", "d-9")
    assert device["expires_at"].endswith("Z")
    assert_error(server.client(None).get("/api/whoami"), 401, "unauthorized")


def test_s3_only_mode_answers_what_it_can(tmp_path: Path) -> None:
    """memory:// stands in for S3-only storage: the id-sorted list, with marker times, and
    activity; summary, the time order and the silent filter are 501 with a clear message."""
    with app_server("memory://", backend=ObjectStorage(MemoryStore())) as running:
        admin = running.client()
        _upload(admin, "m-1", b"abc")
        rows = admin.get("/api/fleet/devices").json()["devices"]
        assert [row["device_id"] for row in rows] == ["m-1"]
        assert rows[0]["uploads"] is None and rows[0]["last_upload_at"].endswith("Z")
        activity = admin.get("/api/devices/m-1/activity").json()["buckets"]
        assert sum(b["uploads"] for b in activity) == 1
        for path in (
            "/api/fleet/summary",
            "/api/fleet/devices?sort=last_upload_at",
            "/api/fleet/devices?silent_for=1h",
        ):
            response = admin.get(path)
            assert_error(response, 501, "not_supported_by_storage")
            assert "index" in response.json()["error"]["message"]


def test_cursor_is_opaque(server: AppServer) -> None:
    admin = server.client()
    for device in ("c-1", "c-2"):
        _upload(admin, device, b"x")
    body = admin.get("/api/fleet/devices", params={"limit": "1", "sort": "last_upload_at"}).json()
    raw = base64.urlsafe_b64decode(body["next_cursor"] + "==").decode()
    assert raw.endswith("/c-1")  # a time and an id, not something a client builds
