#!/usr/bin/env python3
"""Monthly AWS cost of a fleet uploading small files, from a fleet-scale run's measured figures
(bench/fleet.py): S3 requests, S3 storage, the database and Fargate, for S3-only mode and for the
PostgreSQL index mode. docs/storage.md ("Cost model") shows its tables and explains each line.

    python bench/costmodel.py bench/results/<run>-fleet-scale   # markdown tables

Standard library only, so the project's tests import it in-process.
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# List prices, AWS us-east-1 (N. Virginia), on-demand, as published on 2026-12-02 (the AWS
# pricing pages, read through the summaries that quote them: vantage.sh and wring.co for
# Fargate, c3x.dev and awsnegotiations.com for Aurora Serverless v2, AWS's S3 pricing page).
PRICES_DATE = "2026-12-02"
PRICES_REGION = "us-east-1"
S3_PUT_TIER_PER_1000 = 0.005  # PUT, COPY, POST, LIST (S3 Standard)
S3_GET_TIER_PER_1000 = 0.0004  # GET, SELECT and all other requests; DELETE is free
S3_STORAGE_GB_MONTH = 0.023  # S3 Standard, first 50 TB/month
S3_STORAGE_GB_MONTH_OVER_50TB = 0.022  # next 450 TB/month
FARGATE_VCPU_HOUR = 0.04048  # Linux/x86
FARGATE_GB_HOUR = 0.004445
AURORA_ACU_HOUR = 0.12  # Aurora PostgreSQL Serverless v2, Aurora Standard
AURORA_STORAGE_GB_MONTH = 0.10
AURORA_IO_PER_MILLION = 0.20

# The model's assumptions (docs/storage.md states each).
HOURS = 30 * 24  # a month of 30 days
UPLOADS_PER_DEVICE = 30 * 24 * 60  # one upload a minute
UPLOAD_BYTES = 4096
GB = 1e9  # AWS bills decimal GB for storage
FARGATE_TASK_VCPU = 1.0
FARGATE_TASK_GB = 2.0
FARGATE_MIN_TASKS = 2  # two replicas at least (two availability zones)
CPU_UTILISATION = 0.6  # size for 60 % busy: headroom for peaks and deploys
VCPU_PER_ACU = 0.25  # 1 ACU ~ 2 GiB and proportional CPU: db.r6g.large (2 vCPU, 16 GiB) ~ 8 ACU
MIN_ACU = 0.5
AURORA_INSTANCES = 2  # writer + a reader in a second AZ (Multi-AZ), both billed
IO_BYTES = 4096  # Aurora bills writes in 4 KiB units


@dataclass(frozen=True)
class Measured:
    """What one measured point says per upload (bench/fleet.py's row)."""

    clients: int
    put_tier: float  # S3 PUT-tier requests per upload
    get_tier: float  # S3 GET-tier requests per upload
    server_cpu_ms: float
    pg_cpu_ms: float = 0.0
    p50_ms: float = 0.0


@dataclass(frozen=True)
class Monthly:
    devices: int
    uploads: float
    s3_put_tier: float  # requests
    s3_get_tier: float
    s3_requests_usd: float
    s3_storage_usd: float
    db_usd: float
    fargate_usd: float
    fargate_tasks: int
    acu: float
    basis: str  # which measured point the request counts come from
    db_parts: tuple[float, float, float] = (0.0, 0.0, 0.0)  # compute, storage, I/O

    @property
    def total_usd(self) -> float:
        return self.s3_requests_usd + self.s3_storage_usd + self.db_usd + self.fargate_usd


def uploads_per_second(devices: int) -> float:
    return devices * UPLOADS_PER_DEVICE / (HOURS * 3600)


def s3_storage_usd(gb: float) -> float:
    first = min(gb, 50_000)
    return first * S3_STORAGE_GB_MONTH + max(gb - 50_000, 0) * S3_STORAGE_GB_MONTH_OVER_50TB


def in_flight(rate: float, latency_ms: float) -> float:
    """Little's law: uploads in flight across the fleet at `rate`/s, each taking latency_ms."""
    return rate * latency_ms / 1000


def pick_point(points: list[Measured], concurrency: float) -> Measured | None:
    """The measured point with the most clients not above `concurrency` (fewer clients share
    fewer segments, so this never understates the requests); None below the smallest."""
    below = [p for p in points if p.clients <= concurrency]
    return max(below, key=lambda p: p.clients) if below else None


def segment_puts_open_loop(rate_per_replica: float, window_ms: float) -> float:
    """Segment PUTs per upload when uploads arrive at random (Poisson) at `rate_per_replica`/s:
    a replica writes a segment for each window that received at least one upload."""
    w = window_ms / 1000
    if rate_per_replica <= 0:
        return 1.0
    segments_per_s = (1 - math.exp(-rate_per_replica * w)) / w
    return segments_per_s / rate_per_replica


def fargate(rate: float, cpu_ms: float) -> tuple[int, float]:
    vcpu = rate * cpu_ms / 1000 / CPU_UTILISATION
    tasks = max(FARGATE_MIN_TASKS, math.ceil(vcpu / FARGATE_TASK_VCPU))
    usd = (
        tasks * HOURS * (FARGATE_TASK_VCPU * FARGATE_VCPU_HOUR + FARGATE_TASK_GB * FARGATE_GB_HOUR)
    )
    return tasks, usd


def aurora_parts(
    rate: float, pg_cpu_ms: float, index_bytes_per_upload: float, uploads: float
) -> tuple[float, float, float, float]:
    """(ACUs per instance, compute USD, storage USD, I/O USD) for a month: the writer and a
    Multi-AZ reader, the month's index rows stored, and the write I/Os of the commits."""
    vcpu = rate * pg_cpu_ms / 1000 / CPU_UTILISATION
    acu = max(MIN_ACU, math.ceil(vcpu / VCPU_PER_ACU * 2) / 2)  # 0.5-ACU steps
    compute = acu * AURORA_INSTANCES * HOURS * AURORA_ACU_HOUR
    storage = uploads * index_bytes_per_upload / GB * AURORA_STORAGE_GB_MONTH
    ios = uploads * max(index_bytes_per_upload / IO_BYTES, 0.0)
    return acu, compute, storage, ios / 1e6 * AURORA_IO_PER_MILLION


def aurora(
    rate: float, pg_cpu_ms: float, index_bytes_per_upload: float, uploads: float
) -> tuple[float, float]:
    """(ACUs per instance, monthly USD in all)."""
    acu, compute, storage, io = aurora_parts(rate, pg_cpu_ms, index_bytes_per_upload, uploads)
    return acu, compute + storage + io


def monthly(
    devices: int,
    mode: str,
    points: list[Measured],
    window_ms: float = 50,
    index_bytes_per_upload: float = 0.0,
) -> Monthly:
    """One fleet size in one mode ("s3-only" or "index"), from that mode's measured points."""
    rate = uploads_per_second(devices)
    uploads = devices * UPLOADS_PER_DEVICE
    latency = max((p.p50_ms for p in points), default=0.0)
    point = pick_point(
        points, in_flight(rate, min(p.p50_ms for p in points) if points else latency)
    )
    if point is None:
        point = min(points, key=lambda p: p.clients)
        basis = f"below {point.clients} in flight"
        if mode == "index":
            tasks0, _ = fargate(rate, point.server_cpu_ms)
            put_tier = max(point.put_tier, segment_puts_open_loop(rate / tasks0, window_ms))
            basis += ": open-loop segment estimate"
        else:
            put_tier = point.put_tier
    else:
        put_tier = point.put_tier
        basis = f"measured at {point.clients} clients"
    get_tier = point.get_tier
    tasks, fargate_usd = fargate(rate, point.server_cpu_ms)
    requests_usd = (
        uploads * (put_tier * S3_PUT_TIER_PER_1000 + get_tier * S3_GET_TIER_PER_1000) / 1000
    )
    storage = s3_storage_usd(uploads * UPLOAD_BYTES / GB)
    acu, db_usd, db_parts = 0.0, 0.0, (0.0, 0.0, 0.0)
    if mode == "index":
        acu, *parts = aurora_parts(rate, point.pg_cpu_ms, index_bytes_per_upload, uploads)
        db_parts = (parts[0], parts[1], parts[2])
        db_usd = sum(db_parts)
    return Monthly(
        devices=devices,
        uploads=uploads,
        s3_put_tier=uploads * put_tier,
        s3_get_tier=uploads * get_tier,
        s3_requests_usd=requests_usd,
        s3_storage_usd=storage,
        db_usd=db_usd,
        fargate_usd=fargate_usd,
        fargate_tasks=tasks,
        acu=acu,
        basis=basis,
        db_parts=db_parts,
    )


def points_from_run(doc: dict[str, Any], mode: str, window: int | None) -> list[Measured]:
    out = []
    for r in doc["rows"]:
        if r["scenario"] != "fleet upload_1k" or "failed" in r or r["target"] != mode:
            continue
        if mode == "index" and r.get("window_ms") != window:
            continue
        out.append(
            Measured(
                clients=r["clients"],
                put_tier=r["put_tier_per_upload"],
                get_tier=r["get_tier_per_upload"],
                server_cpu_ms=r["server_cpu_ms_per_upload"],
                pg_cpu_ms=r.get("pg_cpu_ms_per_upload") or 0.0,
                p50_ms=r["p50_ms"],
            )
        )
    return sorted(out, key=lambda p: p.clients)


def _usd(v: float) -> str:
    return f"${v:,.0f}" if v >= 10 else f"${v:,.2f}"


def render(
    doc: dict[str, Any], window: int = 50, fleets: tuple[int, ...] = (1_000, 100_000, 1_000_000)
) -> str:
    index_bytes = next(
        (r.get("index_bytes_per_upload") for r in doc["rows"] if r["scenario"] == "fleet seed"),
        None,
    )
    index_bytes = index_bytes or 0.0
    lines = [
        f"Run {doc['started_utc']}, index mode at a {window} ms window; prices {PRICES_REGION}, "
        f"{PRICES_DATE}; index {index_bytes:.0f} bytes per upload (measured).",
        "",
        "| devices | mode | uploads/month | S3 PUT-tier req | S3 GET-tier req | S3 requests "
        "| S3 storage | database | Fargate (tasks) | total | request counts from |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for devices in fleets:
        for mode in ("s3-only", "index"):
            points = points_from_run(doc, mode, None if mode == "s3-only" else window)
            if not points:
                continue
            m = monthly(devices, mode, points, window, index_bytes)
            c, st, io = (_usd(x) for x in m.db_parts)
            db = (
                f"{_usd(m.db_usd)} ({m.acu:g} ACU x {AURORA_INSTANCES}: {c} + storage {st} + "
                f"I/O {io})"
                if mode == "index"
                else "-"
            )
            lines.append(
                f"| {devices:,} | {mode} | {m.uploads:.3g} | {m.s3_put_tier:.3g} | "
                f"{m.s3_get_tier:.3g} | "
                f"{_usd(m.s3_requests_usd)} | {_usd(m.s3_storage_usd)} | {db} | "
                f"{_usd(m.fargate_usd)} ({m.fargate_tasks}) | {_usd(m.total_usd)} | {m.basis} |"
            )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    run = Path(sys.argv[1])
    win = int(sys.argv[2]) if len(sys.argv) > 2 else 50
    print(render(json.loads((run / "results.json").read_text()), win))
