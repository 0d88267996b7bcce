"""The local twin behaves like one service: any replica serves what any other stored."""

from __future__ import annotations

import base64
import os

import pytest

from tests.cluster.conftest import Cluster, sha256, wait_until

pytestmark = [pytest.mark.cluster, pytest.mark.s3]


def test_upload_through_the_balancer_is_downloadable_through_every_replica(twin: Cluster) -> None:
    payload = os.urandom(10_000)
    with twin.client() as lb:
        resp = lb.put("/api/devices/twin-one", files={"file": ("t.bin", payload)})
    assert resp.status_code == 200, resp.text
    assert resp.json()["sha256"] == sha256(payload)
    for url in twin.replica_urls:
        with twin.client(url) as replica:
            raw = replica.get("/api/devices/twin-one", params={"encoding": "raw"})
            b64 = replica.get("/api/devices/twin-one")
        assert raw.status_code == 200, (url, raw.text)
        assert raw.content == payload, url
        assert b64.status_code == 200, (url, b64.text)
        assert base64.b64decode(b64.content) == payload, url


def test_device_history_is_the_same_from_every_replica(twin: Cluster) -> None:
    sent = [os.urandom(2000 + i) for i in range(5)]
    with twin.client() as lb:  # round-robin spreads these over the replicas
        for payload in sent:
            resp = lb.put("/api/devices/twin-history", files={"file": ("h.bin", payload)})
            assert resp.status_code == 200, resp.text
    histories = []
    for url in twin.replica_urls:
        with twin.client(url) as replica:
            resp = replica.get("/api/devices/twin-history/uploads")
        assert resp.status_code == 200, (url, resp.text)
        histories.append(resp.json()["uploads"])
    assert all(h == histories[0] for h in histories), histories
    assert [u["sha256"] for u in histories[0]] == [sha256(p) for p in reversed(sent)]


def test_device_list_is_the_same_from_every_replica(twin: Cluster) -> None:
    with twin.client() as lb:
        for i in range(3):
            resp = lb.put(f"/api/devices/twin-list-{i}", files={"file": ("l.bin", b"x")})
            assert resp.status_code == 200, resp.text
    lists = []
    for url in twin.replica_urls:
        with twin.client(url) as replica:
            resp = replica.get("/api/devices/", params={"prefix": "twin-list-"})
        assert resp.status_code == 200, (url, resp.text)
        lists.append(resp.json()["TelemetryDataDownloads"])
    assert all(lst == lists[0] for lst in lists), lists
    assert [d if isinstance(d, str) else d.get("device_id") for d in lists[0]] == [
        "twin-list-0",
        "twin-list-1",
        "twin-list-2",
    ]


def test_the_balancer_health_checks_and_round_robins_over_all_replicas(twin: Cluster) -> None:
    wait_until(
        lambda: set(twin.haproxy_servers().values()) == {"UP"}, 20, "every replica UP in HAProxy"
    )
    seen: set[str] = set()
    with twin.client() as lb:
        for _ in range(3 * twin.replicas):
            resp = lb.get("/healthz", headers={"Connection": "close"})
            assert resp.status_code == 200
    for row in twin.haproxy_stat():
        name = row.get("svname", "")
        used = int(row.get("lbtot") or 0) > 0
        if row.get("pxname") == "replicas" and name.startswith("replica-") and used:
            seen.add(name)
    assert seen == {f"replica-{n}" for n in range(1, twin.replicas + 1)}
