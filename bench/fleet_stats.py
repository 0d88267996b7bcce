"""Pure arithmetic of the fleet benchmark (bench/fleet.py): wrk output, merged latency quantiles
of several wrk processes, and S3 requests per upload from the counting proxy's figures.
Standard library only, so the project's tests import it in-process."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

# S3 request kinds (bench/s3_proxy.py) by what S3 bills them as.
PUT_TIER = (
    "put_object",
    "copy_object",
    "multipart_create",
    "multipart_part",
    "multipart_complete",
    "list",
    "bucket_other",
)
GET_TIER = ("get_object", "get_ranged", "head", "other")
FREE = ("delete", "delete_multi", "multipart_abort")


@dataclass
class WrkRun:
    requests: int
    duration_s: float
    non_2xx: int
    errors: int
    p50_ms: float
    p99_ms: float
    grid: list[tuple[float, float]]  # (percentile 0-100, latency in ms), ascending


def parse_wrk(stdout: str) -> WrkRun:
    """One wrk process's report from bench/lua/fleet.lua (WRKJSON and WRKQ lines)."""
    report: dict[str, Any] | None = None
    grid: list[tuple[float, float]] = []
    for line in stdout.splitlines():
        if line.startswith("WRKJSON "):
            report = json.loads(line[len("WRKJSON ") :])
        elif line.startswith("WRKQ "):
            grid = [(float(p), v / 1000) for p, v in json.loads(line[len("WRKQ ") :])]
    if report is None:
        raise ValueError(f"no WRKJSON line in wrk's output: {stdout[-300:]!r}")
    errs = report["errors"]
    return WrkRun(
        requests=int(report["requests"]),
        duration_s=report["duration_us"] / 1e6,
        non_2xx=int(errs["status"]),
        errors=int(errs["connect"] + errs["read"] + errs["write"] + errs["timeout"]),
        p50_ms=report["latency_us"]["p50"] / 1000,
        p99_ms=report["latency_us"]["p99"] / 1000,
        grid=sorted(grid),
    )


def merged_percentile(runs: list[WrkRun], pct: float) -> float:
    """The pct-th latency percentile of several runs' requests taken together.

    Each run's grid is its latency at percentiles 1..99, 99.1..99.9 and 100; a run's share below
    a latency v is the highest grid percentile whose latency is <= v (a step function, so the
    answer never understates). The answer is the smallest grid latency at which the runs'
    request-weighted shares reach pct.
    """
    runs = [r for r in runs if r.requests > 0 and r.grid]
    if not runs:
        return float("nan")
    if len(runs) == 1:
        grid = runs[0].grid
        return next((v for p, v in grid if p >= pct), grid[-1][1])
    total = sum(r.requests for r in runs)
    for v in sorted({v for r in runs for _, v in r.grid}):
        below = 0.0
        for r in runs:
            share = max((p for p, lat in r.grid if lat <= v), default=0.0)
            below += r.requests * share / 100
        if below >= total * pct / 100 - 1e-9:
            return v
    return max(r.grid[-1][1] for r in runs)


def s3_per_upload(kinds: dict[str, int], uploads: int) -> dict[str, float]:
    """S3 requests per upload: in all, PUTs (object PUTs and multipart parts), GETs (ranged or
    not), LISTs, and the two billing tiers (bench/costmodel.py prices them)."""
    n = max(uploads, 1)

    def total(names: tuple[str, ...] | list[str]) -> int:
        return sum(kinds.get(k, 0) for k in names)

    return {
        "s3_per_upload": sum(kinds.values()) / n,
        "puts_per_upload": total(["put_object", "multipart_part", "copy_object"]) / n,
        "gets_per_upload": total(["get_object", "get_ranged"]) / n,
        "lists_per_upload": kinds.get("list", 0) / n,
        "heads_per_upload": kinds.get("head", 0) / n,
        "deletes_per_upload": total(FREE) / n,
        "put_tier_per_upload": total(PUT_TIER) / n,
        "get_tier_per_upload": total(GET_TIER) / n,
    }


def uploads_stored(metrics: str) -> int:
    """mindproject_uploads_total{outcome="stored"} from a Prometheus text page (0 if absent)."""
    total = 0.0
    for line in metrics.splitlines():
        if line.startswith("mindproject_uploads_total{") and 'outcome="stored"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return int(total)
