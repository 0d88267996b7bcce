#!/usr/bin/env python3
"""Benchmark orchestrator: MindProject and its baselines, side by side, in one invocation.

For each storage backend (filesystem, local S3 server) it starts every target on loopback,
runs each scenario against it with the same client (wrk + Lua for request rates, curl for big
transfers, a small Python client for walks and idle connections), and records what the server
costs: req/s, latency percentiles, CPU milliseconds per request (utime+stime of the whole process
tree from /proc, before and after) and peak resident memory (sampled sum over the tree).

Targets: mindproject (this project), seed (a RECONSTRUCTION of the seed's design from its README),
conventional (Flask + shared boto3 client under gunicorn), minimal_asgi (uvicorn ceiling) and
direct (storage written straight from Python: files, or boto3 to the S3 server).

Usage: .cache/bench-venv/bin/python bench/run.py [--scenarios a,b] [--backends file,s3] ...
See docs/benchmarks.md for the method and how to read the figures.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import signal
import sys
from pathlib import Path

from backends import ALL_BACKENDS
from orchestrator import Choice, run_all
from paths import BENCH
from recorder import Recorder
from report import write_report
from scenarios import ALL_SCENARIOS, Config
from servers import ALL_TARGETS


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--scenarios", default=",".join(ALL_SCENARIOS))
    p.add_argument("--backends", default=",".join(ALL_BACKENDS))
    p.add_argument("--targets", default=",".join(ALL_TARGETS))
    p.add_argument("--duration", type=float, default=8.0, help="seconds per measured wrk run")
    p.add_argument("--warmup", type=float, default=2.0, help="seconds of unmeasured load first")
    p.add_argument("--connections", type=int, default=32)
    p.add_argument("--list-connections", type=int, default=2)
    p.add_argument("--threads", type=int, default=1, help="wrk threads")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    p.add_argument("--devices", type=int, default=100_000)
    p.add_argument("--big-mib", type=int, default=256)
    p.add_argument("--idle-connections", type=int, default=1000)
    p.add_argument("--out", default=str(BENCH / "results"))
    p.add_argument("--profile", action="store_true", help="py-spy profile of 1 KiB uploads")
    args = p.parse_args()
    for name, allowed in (
        ("scenarios", ALL_SCENARIOS),
        ("backends", ALL_BACKENDS),
        ("targets", ALL_TARGETS),
    ):
        chosen = [x.strip() for x in getattr(args, name).split(",") if x.strip()]
        unknown = sorted(set(chosen) - set(allowed))
        if unknown:
            p.error(f"unknown {name}: {', '.join(unknown)} (choose from {', '.join(allowed)})")
        setattr(args, name, chosen)
    return args


def main() -> int:
    args = parse_args()
    cfg = Config(
        duration=args.duration,
        warmup=args.warmup,
        connections=args.connections,
        threads=args.threads,
        workers=args.workers,
        devices=args.devices,
        big_mib=args.big_mib,
        idle_connections=args.idle_connections,
        list_connections=args.list_connections,
    )
    choice = Choice(args.backends, args.targets, args.scenarios, args.profile)
    # A TERM (e.g. from `timeout`) unwinds like Ctrl-C, so every server and the S3 server stop.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    rec = Recorder(Path(args.out), dataclasses.asdict(cfg))
    rec.log(f"results in {rec.out}")
    try:
        run_all(cfg, choice, rec)
    finally:
        write_report(rec.out, rec.document())
    return 0


if __name__ == "__main__":
    sys.exit(main())
