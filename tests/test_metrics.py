"""/metrics: Prometheus text, named by convention, counting what it says, over all workers."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from tests.helpers import REPO, AppServer, make_token, run_server, wait_for


def samples(client: httpx.Client) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    found = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


def value(
    found: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float:
    return found.get((name, frozenset(labels.items())), 0.0)


def exercise(client: httpx.Client) -> None:
    assert client.put("/api/devices/m1", files={"file": ("f", b"x" * 1000)}).status_code == 200
    assert client.put("/api/devices/m1", files={"nofile": ("f", b"x")}).status_code == 400
    assert client.get("/api/devices/m1", params={"encoding": "raw"}).content == b"x" * 1000
    assert client.get("/api/devices/nope").status_code == 404


def test_counts_requests_uploads_bytes_and_storage(server: AppServer) -> None:
    with server.client() as client:
        before = samples(client)
        exercise(client)
        after = samples(client)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    route = "/api/devices/{device_id}"
    assert delta("mindproject_http_requests_total", route=route, method="PUT", status="200") == 1
    assert delta("mindproject_http_requests_total", route=route, method="PUT", status="400") == 1
    assert delta("mindproject_http_requests_total", route=route, method="GET", status="404") == 1
    assert delta("mindproject_uploads_total", path="put", outcome="stored") == 1
    assert delta("mindproject_uploads_total", path="put", outcome="rejected") == 1
    assert delta("mindproject_http_received_bytes_total", route=route) > 1000
    assert delta("mindproject_http_sent_bytes_total", route=route) >= 1000
    assert delta("mindproject_storage_operation_duration_seconds_count", operation="save") == 1
    assert delta("mindproject_http_request_duration_seconds_count", route=route, method="GET") == 2


def test_a_resumable_upload_is_counted_once_when_its_last_chunk_lands(server: AppServer) -> None:
    tus = {"Tus-Resumable": "1.0.0"}
    with server.client() as client:
        before = samples(client)
        created = client.post("/api/devices/m1/resumable", headers={**tus, "Upload-Length": "6"})
        assert created.status_code == 201, created.text
        where = created.headers["location"]
        chunk = {**tus, "Content-Type": "application/offset+octet-stream"}
        for offset, part in ((0, b"abc"), (3, b"def")):
            sent = client.patch(
                where, content=part, headers={**chunk, "Upload-Offset": str(offset)}
            )
            assert sent.status_code == 204, sent.text
        again = client.patch(where, content=b"", headers={**chunk, "Upload-Offset": "6"})
        assert again.status_code == 204, again.text  # a retry of the last answer: not new
        after = samples(client)
    counted = value(after, "mindproject_uploads_total", path="resumable", outcome="stored")
    assert (
        counted - value(before, "mindproject_uploads_total", path="resumable", outcome="stored")
        == 1
    )


LIST_ROUTE = {"route": "/api/devices/", "method": "GET", "status": "200"}


def served_per_worker(metrics_dir: Path) -> dict[int, float]:
    """pid -> device-list requests that worker counted, read from its own metrics file."""
    served = {}
    for path in metrics_dir.glob("counter_*.db"):
        pid = int(path.stem.removeprefix("counter_"))
        for family in MultiProcessCollector.merge([str(path)]):
            for sample in family.samples:
                if sample.name == "mindproject_http_requests_total" and sample.labels == LIST_ROUTE:
                    served[pid] = sample.value
    return served


def parent_pid(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat[stat.rindex(")") + 2 :].split()[1])


@pytest.mark.server
def test_metrics_add_up_over_worker_processes(tmp_path: Path) -> None:
    # `serve` makes the workers' metrics folder with mkdtemp: under TMPDIR, so the test can see
    # each worker's own file (named by its pid) next to the sum /metrics reports.
    temp = tmp_path / "tmp"
    temp.mkdir()
    env = {"TMPDIR": str(temp)}
    with run_server(tmp_path, f"file://{tmp_path}/d", args=("--workers", "2"), env=env) as server:
        (metrics_dir,) = temp.glob("mindproject-metrics-*")
        sent = 0
        # New connections until both workers have served some (the kernel picks the worker for
        # each connection; bounded, and a few dozen are plenty).
        while sent < 20 or len(served_per_worker(metrics_dir)) < 2:
            assert sent < 2000, f"one worker served everything: {served_per_worker(metrics_dir)}"
            with httpx.Client(base_url=server.url, headers=server.auth_headers) as fresh:
                assert fresh.get("/api/devices/").status_code == 200
            sent += 1
        with server.client() as client:
            # A request is counted just after its response is sent: poll (bounded).
            def total() -> float:
                return value(samples(client), "mindproject_http_requests_total", **LIST_ROUTE)

            wait_for(lambda: total() >= sent, f"/metrics to count {sent} requests")
            assert total() == sent
        per_worker = served_per_worker(metrics_dir)
        assert len(per_worker) == 2 and all(count > 0 for count in per_worker.values())
        assert sum(per_worker.values()) == sent
        # Two different processes, both workers of this server.
        assert {parent_pid(pid) for pid in per_worker} == {server.pid}


def test_every_metric_is_documented() -> None:
    documented = (REPO / "docs" / "metrics.md").read_text()
    source = (REPO / "src" / "mindproject" / "metrics.py").read_text()
    names = re.findall(r'"(mindproject_[a-z_]+)"', source)
    assert len(names) >= 7
    for name in names:
        assert f"`{name}`" in documented, name
        assert name.endswith(("_total", "_seconds", "_bytes")), name


def test_device_tokens_do_not_change_metrics_labels(server: AppServer) -> None:
    # Labels are route templates, never device ids: cardinality stays bounded.
    with server.client(make_token("device", "secret-device-name")) as device:
        device.get("/api/devices/secret-device-name")
    with server.client() as client:
        assert "secret-device-name" not in client.get("/metrics").text
