"""Storage ceilings: the same work as a request, done straight from Python with no HTTP at all.

Files: write a temporary file and rename it into place (what an atomic upload needs at least,
without fsync), read a file, copy a big file. S3: boto3 with one shared client and a thread pool
(put_object, get_object, upload_file/download_fileobj, list_objects_v2 pages). Prints one JSON
line with ops/s and this process's own CPU milliseconds per op, so run.py can put it in the
table beside the servers. Also `--op populate`: create N one-object devices for the list scenario.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

MiB = 1024 * 1024
PAYLOAD = bytes(range(256)) * 4


def rss_now() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def rss_peak() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


class Store:
    def __init__(self, url: str) -> None:
        self.s3: Any = None
        if url.startswith("s3://"):
            import boto3
            from botocore.config import Config

            self.bucket = url[len("s3://") :].split("/", 1)[0]
            self.s3 = boto3.client(
                "s3", config=Config(max_pool_connections=64, s3={"addressing_style": "path"})
            )
        else:
            self.root = Path(url[len("file://") :])
            self.root.mkdir(parents=True, exist_ok=True)

    def put(self, key: str, data: bytes) -> None:
        if self.s3 is not None:
            self.s3.put_object(Bucket=self.bucket, Key=key, Body=data)
            return
        fd, tmp = tempfile.mkstemp(dir=self.root, prefix=".tmp-")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, self.root / key)

    def get(self, key: str) -> bytes:
        if self.s3 is not None:
            return bytes(self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read())
        return (self.root / key).read_bytes()

    def put_file(self, key: str, path: Path) -> None:
        if self.s3 is not None:
            self.s3.upload_file(str(path), self.bucket, key)
            return
        fd, tmp = tempfile.mkstemp(dir=self.root, prefix=".tmp-")
        with os.fdopen(fd, "wb") as out, path.open("rb") as src:
            while chunk := src.read(MiB):
                out.write(chunk)
        os.replace(tmp, self.root / key)

    def get_file(self, key: str) -> int:
        n = 0
        if self.s3 is not None:
            body = self.s3.get_object(Bucket=self.bucket, Key=key)["Body"]
            for chunk in body.iter_chunks(MiB):
                n += len(chunk)
            return n
        with (self.root / key).open("rb") as f:
            while chunk := f.read(MiB):
                n += len(chunk)
        return n

    def walk(self) -> tuple[int, int]:
        if self.s3 is not None:
            pages = seen = 0
            for page in self.s3.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, PaginationConfig={"PageSize": 1000}
            ):
                pages += 1
                seen += len(page.get("Contents", []))
            return seen, pages
        names = sorted(n for n in os.listdir(self.root) if not n.startswith("."))
        return len(names), 1


def timed_loop(threads: int, seconds: float, op: Any) -> int:
    count = 0
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def worker(tid: int) -> None:
        nonlocal count
        i = 0
        while time.monotonic() < deadline:
            op(tid, i)
            i += 1
        with lock:
            count += i

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(worker, range(threads)))
    return count


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--op", required=True)
    p.add_argument("--storage", required=True)
    p.add_argument("--seconds", type=float, default=10)
    p.add_argument("--threads", type=int, default=4)
    p.add_argument("--payload")
    a = p.parse_args()
    store = Store(a.storage)
    idle = rss_now()
    t0, c0 = time.monotonic(), os.times()
    out: dict[str, Any] = {}
    if a.op == "put_1k":
        n = timed_loop(
            a.threads, a.seconds, lambda t, i: store.put(f"direct-{t}-{i % 1000}", PAYLOAD)
        )
        out = {"requests": n}
    elif a.op == "get_1k":
        store.put("direct-get-1k", PAYLOAD)
        t0, c0 = time.monotonic(), os.times()
        n = timed_loop(a.threads, a.seconds, lambda t, i: store.get("direct-get-1k"))
        out = {"requests": n}
    elif a.op == "put_big":
        path = Path(a.payload)
        store.put_file("direct-big", path)
        out = {"bytes": path.stat().st_size}
    elif a.op == "get_big":
        out = {"bytes": store.get_file("direct-big")}
    elif a.op == "list":
        seen, pages = store.walk()
        out = {"devices_seen": seen, "pages": pages}
    elif a.op == "populate":
        count = int(a.seconds)
        with ThreadPoolExecutor(a.threads) as pool:
            list(pool.map(lambda i: store.put(f"dev-{i:07d}", b"telemetry"), range(count)))
        out = {"devices": count}
    else:
        raise SystemExit(f"unknown op {a.op}")
    secs = time.monotonic() - t0
    c1 = os.times()
    cpu = (c1.user - c0.user) + (c1.system - c0.system)
    out["seconds"] = secs
    if "requests" in out:
        out["rps"] = out["requests"] / secs
        out["cpu_ms_per_req"] = cpu * 1000 / max(out["requests"], 1)
    else:
        out["cpu_ms"] = cpu * 1000
    if "bytes" in out:
        out["mb_per_s"] = out["bytes"] / 1e6 / secs
    out["peak_rss_mib"] = rss_peak() / MiB
    out["rss_above_idle_mib"] = (rss_peak() - idle) / MiB
    print(json.dumps(out))


if __name__ == "__main__":
    main()
