"""The fleet-scale benchmark's logic, in-process: the counting proxy's classification and relay,
the merged latency quantiles, S3 requests per upload, the report's targets and the cost model's
arithmetic. bench/ is scripts, not a package: its modules are loaded from their files (standard
library only)."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import math
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


proxy = load("s3_proxy")
stats = load("fleet_stats")
report = load("fleet_report")
cost = load("costmodel")


# -- the counting proxy ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "target", "headers", "kind"),
    [
        ("PUT", "/bucket/data/dev/v1", {}, "put_object"),
        ("PUT", "/bucket/a/b", {"x-amz-copy-source": "/bucket/c"}, "copy_object"),
        ("GET", "/bucket/data/seg/1", {}, "get_object"),
        ("GET", "/bucket/data/seg/1", {"range": "bytes=0-1023"}, "get_ranged"),
        ("HEAD", "/bucket/data/seg/1", {}, "head"),
        ("DELETE", "/bucket/data/seg/1", {}, "delete"),
        ("GET", "/bucket?list-type=2&prefix=data%2F", {}, "list"),
        ("GET", "/bucket/?list-type=2&continuation-token=x", {}, "list"),
        ("GET", "/bucket", {}, "list"),
        ("GET", "/bucket?location", {}, "bucket_other"),
        ("POST", "/bucket?delete", {}, "delete_multi"),
        ("POST", "/bucket/big?uploads", {}, "multipart_create"),
        ("PUT", "/bucket/big?partNumber=2&uploadId=abc", {}, "multipart_part"),
        ("POST", "/bucket/big?uploadId=abc", {}, "multipart_complete"),
        ("DELETE", "/bucket/big?uploadId=abc", {}, "multipart_abort"),
        ("GET", "/", {}, "other"),
    ],
)
def test_classify(method: str, target: str, headers: dict[str, str], kind: str) -> None:
    assert proxy.classify(method, target, headers) == kind
    assert kind in proxy.KINDS


def test_parse_head_lowercases_field_names() -> None:
    head = b"PUT /b/k HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nRange: bytes=0-1\r\n\r\n"
    method, target, fields = proxy.parse_head(head)
    assert (method, target) == ("PUT", "/b/k")
    assert fields["content-length"] == "3" and fields["range"] == "bytes=0-1"


def test_proxy_relays_and_counts_by_kind() -> None:
    """Keep-alive requests (Content-Length and chunked bodies) reach the upstream unchanged and
    are counted once each; the control path answers the counts and is never forwarded."""

    async def scenario() -> tuple[list[bytes], list[bytes], dict[str, Any]]:
        received: list[bytes] = []

        async def upstream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                while True:
                    head = await reader.readuntil(b"\r\n\r\n")
                    _, _, fields = proxy.parse_head(head)
                    if fields.get("transfer-encoding") == "chunked":
                        body = b""
                        while True:
                            size = int((await reader.readuntil(b"\r\n")).strip(), 16)
                            chunk = await reader.readexactly(size + 2)
                            if size == 0:
                                break
                            body += chunk[:-2]
                    else:
                        body = await reader.readexactly(int(fields.get("content-length", "0")))
                    received.append(head.split(b"\r\n", 1)[0] + b" " + body)
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                    await writer.drain()
            except (asyncio.IncompleteReadError, ConnectionError):
                writer.close()

        up = await asyncio.start_server(upstream, "127.0.0.1", 0)
        up_port = up.sockets[0].getsockname()[1]
        relay = proxy.CountingProxy("127.0.0.1", up_port)
        front = await asyncio.start_server(relay.handle, "127.0.0.1", 0)
        port = front.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        answers: list[bytes] = []

        async def call(raw: bytes) -> None:
            writer.write(raw)
            await writer.drain()
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(
                proxy.parse_head(head.replace(b"HTTP/1.1 200", b"X / 200"))[2]["content-length"]
            )
            answers.append(await reader.readexactly(length))

        await call(b"PUT /b/k1 HTTP/1.1\r\nHost: s3\r\nContent-Length: 5\r\n\r\nhello")
        await call(
            b"PUT /b/k2 HTTP/1.1\r\nHost: s3\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"3\r\nabc\r\n0\r\n\r\n"
        )
        await call(b"GET /b/k1 HTTP/1.1\r\nHost: s3\r\nRange: bytes=0-1\r\n\r\n")
        await call(b"GET /b?list-type=2 HTTP/1.1\r\nHost: s3\r\n\r\n")
        await call(b"GET /__bench/counts HTTP/1.1\r\nHost: s3\r\n\r\n")
        counts = json.loads(answers[-1])
        await call(b"POST /__bench/reset HTTP/1.1\r\nHost: s3\r\n\r\n")
        after_reset = json.loads(answers[-1])
        writer.close()
        front.close()
        up.close()
        assert after_reset["total"] == 0
        return received, answers[:4], counts

    received, answers, counts = asyncio.run(scenario())
    assert received == [
        b"PUT /b/k1 HTTP/1.1 hello",
        b"PUT /b/k2 HTTP/1.1 abc",
        b"GET /b/k1 HTTP/1.1 ",
        b"GET /b?list-type=2 HTTP/1.1 ",
    ]
    assert answers == [b"ok"] * 4
    assert counts == {
        "kinds": {"put_object": 2, "get_ranged": 1, "list": 1},
        "methods": {"PUT": 2, "GET": 2},
        "total": 4,
    }


# -- wrk output, quantiles, per-upload figures ------------------------------------------------


def wrk_output(requests: int, grid: list[tuple[float, int]], status_errors: int = 0) -> str:
    doc = {
        "requests": requests,
        "duration_us": 2_000_000,
        "bytes": 0,
        "errors": {"connect": 0, "read": 0, "write": 0, "status": status_errors, "timeout": 1},
        "latency_us": {"p50": 50_000, "p90": 60_000, "p99": 90_000, "max": 100_000, "mean": 1.0},
    }
    return "noise\nWRKJSON " + json.dumps(doc) + "\nWRKQ " + json.dumps(grid) + "\n"


def test_parse_wrk() -> None:
    run = stats.parse_wrk(wrk_output(10, [(50, 50_000), (100, 90_000)], status_errors=2))
    assert (run.requests, run.non_2xx, run.errors) == (10, 2, 1)
    assert run.p99_ms == 90 and run.duration_s == 2
    assert run.grid == [(50.0, 50.0), (100.0, 90.0)]
    with pytest.raises(ValueError):
        stats.parse_wrk("nothing here")


def test_merged_percentile_weights_runs_by_requests() -> None:
    grid_fast = [(float(p), 10.0) for p in range(1, 101)]
    grid_slow = [(float(p), 100.0) for p in range(1, 101)]
    fast = stats.WrkRun(900, 1, 0, 0, 10, 10, grid_fast)
    slow = stats.WrkRun(100, 1, 0, 0, 100, 100, grid_slow)
    # 90 % of the requests took 10 ms, 10 % took 100 ms
    assert stats.merged_percentile([fast, slow], 50) == 10
    assert stats.merged_percentile([fast, slow], 90) == 10
    assert stats.merged_percentile([fast, slow], 99) == 100
    assert stats.merged_percentile([fast], 99) == 10
    assert math.isnan(stats.merged_percentile([], 99))


def test_s3_per_upload_and_billing_tiers() -> None:
    kinds = {"put_object": 10, "get_ranged": 4, "get_object": 1, "list": 5, "head": 2, "delete": 3}
    per = stats.s3_per_upload(kinds, 1000)
    assert per["s3_per_upload"] == pytest.approx(0.025)
    assert per["puts_per_upload"] == pytest.approx(0.010)
    assert per["gets_per_upload"] == pytest.approx(0.005)
    assert per["lists_per_upload"] == pytest.approx(0.005)
    assert per["put_tier_per_upload"] == pytest.approx(0.015)  # PUTs and LISTs
    assert per["get_tier_per_upload"] == pytest.approx(0.007)  # GETs and HEADs
    assert per["deletes_per_upload"] == pytest.approx(0.003)


def test_uploads_stored_from_metrics() -> None:
    page = (
        "# HELP mindproject_uploads_total uploads\n"
        'mindproject_uploads_total{outcome="stored"} 123.0\n'
        'mindproject_uploads_total{outcome="failed"} 4.0\n'
    )
    assert stats.uploads_stored(page) == 123
    assert stats.uploads_stored("") == 0


# -- the report ------------------------------------------------------------------------------


def row(mode: str, clients: int, window: int | None, **kw: Any) -> dict[str, Any]:
    base = {
        "backend": "s3",
        "scenario": "fleet upload_1k",
        "target": mode,
        "clients": clients,
        "window_ms": window,
        "uploads": 1000,
        "uploads_per_s": 500.0,
        "p50_ms": 60.0,
        "p99_ms": 120.0,
        "s3_per_upload": 2.0,
        "puts_per_upload": 2.0,
        "gets_per_upload": 0.0,
        "lists_per_upload": 0.0,
        "put_tier_per_upload": 2.0,
        "get_tier_per_upload": 0.0,
        "server_cpu_ms_per_upload": 1.2,
        "pg_cpu_ms_per_upload": None,
        "s3_server_cpu_ms_per_upload": 5.0,
        "proxy_cpu_ms_per_upload": 0.3,
        "loadgen_cpu_ms_per_upload": 0.1,
        "non_2xx": 0,
        "errors": 0,
    }
    return {**base, **kw}


def document() -> dict[str, Any]:
    return {
        "started_utc": "20261202T120000Z-fleet-scale",
        "command": "bench/fleet.py",
        "machine": {"cpus": 2, "kernel": "6", "python": "3.11.7"},
        "git_commit": "abc",
        "auth_on": True,
        "config": {
            "clients": [16, 512],
            "windows": [50],
            "main_clients": 512,
            "main_window": 50,
            "duration": 8,
            "warmup": 2,
            "size": 1024,
            "devices": 100000,
            "seed_concurrency": 512,
        },
        "rows": [
            row("s3-only", 16, None),
            row("s3-only", 512, None, p99_ms=2000.0),
            row(
                "index",
                16,
                50,
                s3_per_upload=0.13,
                puts_per_upload=0.125,
                put_tier_per_upload=0.125,
                server_cpu_ms_per_upload=0.6,
                pg_cpu_ms_per_upload=0.2,
                p50_ms=55.0,
            ),
            row(
                "index",
                512,
                50,
                s3_per_upload=0.008,
                puts_per_upload=0.008,
                put_tier_per_upload=0.008,
                server_cpu_ms_per_upload=0.45,
                pg_cpu_ms_per_upload=0.1,
                p99_ms=180.0,
            ),
            {
                "backend": "s3",
                "scenario": "fleet seed",
                "target": "index",
                "uploads": 110000,
                "seed_failed": 0,
                "seconds": 60.0,
                "uploads_per_s": 1833.0,
                "index_bytes_per_upload": 300.0,
            },
            {
                "backend": "s3",
                "scenario": "fleet read: device list first page (1000) of 100k",
                "target": "index",
                "clients": 2,
                "requests": 100,
                "rps": 50.0,
                "p50_ms": 20.0,
                "p99_ms": 60.0,
                "server_cpu_ms_per_req": 15.0,
                "pg_cpu_ms_per_req": 3.0,
                "s3_per_req": 0.0,
                "non_2xx": 0,
                "page_items": 1000,
            },
        ],
    }


def test_report_targets() -> None:
    verdicts = {t.split(" (")[0]: (m, v) for t, m, v in report.targets(document())}
    s3 = next(v for t, v in verdicts.items() if t.startswith("S3 requests per upload"))
    assert s3[1] == "met" and "S3-only: 2.00" in s3[0]
    cpu = verdicts["server CPU per 1 KiB upload <= 0.5 ms"]
    assert cpu[1] == "met" and "x0.38" in cpu[0]
    p99 = [v for t, v in verdicts.items() if t.startswith("p99")]
    assert p99 and all(v[1] == "MISSED" for v in p99)  # 120 and 180 ms against 150
    listing = next(v for t, v in verdicts.items() if t.startswith("device list"))
    assert listing == ("60.0 ms", "MISSED")


def test_report_renders_grid_and_tables() -> None:
    text = report.render(document())
    assert "| 16 | 2.0000 / 120 | 0.1300 / 120 |" in text
    assert "| 512 | 2.0000 / 2000 | 0.0080 / 180 |" in text
    assert "index growth 300 bytes per upload" in text
    assert "## Failed" not in text


# -- the cost model --------------------------------------------------------------------------


def test_cost_model_arithmetic() -> None:
    assert cost.uploads_per_second(1_000_000) == pytest.approx(16_666.7, rel=1e-4)
    # The issue's own figure: 1 PUT per upload for a million devices is ~$216,000 a month.
    uploads = 1_000_000 * cost.UPLOADS_PER_DEVICE
    assert uploads * cost.S3_PUT_TIER_PER_1000 / 1000 == pytest.approx(216_000)
    # 4 KiB a minute for a month, a million devices: ~177 TB, tiered S3 Standard pricing
    assert cost.s3_storage_usd(177_000) == pytest.approx(50_000 * 0.023 + 127_000 * 0.022)
    # Fargate: 1,000 uploads/s at 0.6 ms of CPU = 1 vCPU busy, sized at 60 % -> 2 tasks
    tasks, usd = cost.fargate(1000, 0.6)
    assert tasks == 2
    assert usd == pytest.approx(2 * 720 * (0.04048 + 2 * 0.004445))
    assert cost.fargate(10_000, 0.6)[0] == 10
    # Aurora: 1,000/s at 0.2 ms = 0.2 vCPU, 0.33 at 60 % -> 1.33 ACU -> 1.5 ACU (0.5 steps)
    acu, usd = cost.aurora(1000, 0.2, 0.0, 0.0)
    assert acu == 1.5
    assert usd == pytest.approx(1.5 * 2 * 720 * 0.12)
    # storage and write I/O of a month of index rows: 1e9 rows of 4096 bytes = 4,096 GB, 1e9 I/Os
    assert cost.aurora(1, 0.0, 4096.0, 1e9)[1] == pytest.approx(
        0.5 * 2 * 720 * 0.12 + 4096 * 0.10 + 1000 * 0.20
    )
    assert cost.aurora(1, 0.1, 0.0, 0.0)[0] == cost.MIN_ACU


def test_cost_model_picks_measured_point_conservatively() -> None:
    points = [cost.Measured(c, 1 / c, 0, 0.5, 0.1, 60) for c in (16, 64, 512)]
    assert cost.pick_point(points, 100).clients == 64
    assert cost.pick_point(points, 5000).clients == 512
    assert cost.pick_point(points, 3) is None
    # open loop: at 1 upload per window a replica writes ~0.63 segments per upload...
    assert cost.segment_puts_open_loop(20, 50) == pytest.approx(1 - math.exp(-1))
    # ... and at 100 per window, ~0.01
    assert cost.segment_puts_open_loop(2000, 50) == pytest.approx(0.01)
    small = cost.monthly(1_000, "index", points, 50, 300.0)
    assert "open-loop" in small.basis and small.s3_put_tier / small.uploads > 0.5
    big = cost.monthly(1_000_000, "index", points, 50, 300.0)
    assert big.basis == "measured at 512 clients"
    assert big.s3_put_tier / big.uploads == pytest.approx(1 / 512)


def test_cost_model_render() -> None:
    text = cost.render(document())
    assert "| 1,000,000 | s3-only |" in text and "| 1,000,000 | index |" in text
    assert "measured at 512 clients" in text
