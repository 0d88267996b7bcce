#!/usr/bin/env python3
"""Pick the S3 client for the asyncio service by measurement: obstore, aiobotocore, boto3.

The script starts its own throwaway Ceph RADOS Gateway (``scripts/s3-server.sh``) on a
loopback port of its own, runs every (client, test) pair in a fresh subprocess (so peak RSS
and interpreter state do not leak between them), prints a markdown table and stops Ceph.

Tests, per client:

- ``put1k``: 3000 PUTs of 1 KiB with 16 concurrent tasks (threads for boto3), after a
  warm-up of 100; CPU ms per PUT is the client process's CPU time (``time.process_time``:
  all threads, including obstore's Rust runtime) divided by the count; PUT/s is wall-clock.
- ``get1k``: the same for GETs of those objects (body read fully).
- ``put256m``: one 256 MiB object from an async iterator of 1 MiB chunks (a sync
  generator for boto3), multipart with 8 MiB parts, 4 in flight. MB/s, CPU s and peak
  RSS growth (VmHWM after the operation minus VmRSS before it, VmHWM reset through
  /proc/self/clear_refs).
- ``get256m``: streaming GET of that object in ~1 MiB chunks, discarded; same figures.

Clients: obstore ``S3Store`` (one store), aiobotocore (one client), boto3 (one shared
client, 16 threads). The async clients run on uvloop. botocore's default CRC32 request
checksums are switched off (``when_required``): Ceph ignores them anyway, so the service
would not send them.

Run it from a venv holding the candidates (bench/choices/requirements.txt), not the
project's: ``make bench-choices`` creates .cache/choices-venv, installs the Debian packages
radosgw ceph-mon ceph-osd curl and runs it::

    make bench-choices CHOICES=s3_client S3_CLIENT_ARGS="[--port 7600] [--small 3000]"

Only 127.0.0.1 is contacted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
S3_SERVER = ROOT / "scripts" / "s3-server.sh"
BUCKET = "bench"
CLIENTS = ("obstore", "aiobotocore", "boto3")
TESTS = ("put1k", "get1k", "put256m", "get256m")
MIB = 1024 * 1024
PART = 8 * MIB
PART_CONCURRENCY = 4
CONCURRENCY = 16
WARMUP = 100


# ---------------------------------------------------------------- measurement helpers


def rss_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(field)


def reset_peak() -> None:
    Path("/proc/self/clear_refs").write_text("5")


class Meter:
    """Wall time, process CPU time and peak RSS growth around a block."""

    def __enter__(self) -> Meter:
        reset_peak()
        self.rss0 = rss_kib("VmRSS")
        self.cpu0 = time.process_time()
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self.t0
        self.cpu = time.process_time() - self.cpu0
        self.peak_growth_mib = (rss_kib("VmHWM") - self.rss0) / 1024


# Each chunk is a new bytes object (as a request body read from the network would be), so a
# client that keeps references to chunks instead of copying them shows its real memory use.


async def aiter_chunks(total: int) -> AsyncIterator[bytes]:
    base = bytearray(os.urandom(MIB))
    for _ in range(total // MIB):
        yield bytes(base)


def iter_chunks(total: int) -> Iterator[bytes]:
    base = bytearray(os.urandom(MIB))
    for _ in range(total // MIB):
        yield bytes(base)


async def bounded(n: int, start: int, op: Any) -> None:
    """Run op(i) for i in [start, start+n) with CONCURRENCY tasks."""
    counter = iter(range(start, start + n))

    async def worker() -> None:
        for i in counter:
            await op(i)

    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))


def small_result(n: int, m: Meter) -> dict[str, float]:
    return {"ops_per_s": n / m.wall, "cpu_ms_per_op": 1000 * m.cpu / n}


def big_result(size: int, m: Meter) -> dict[str, float]:
    return {"mb_per_s": size / 1e6 / m.wall, "cpu_s": m.cpu, "peak_rss_mib": m.peak_growth_mib}


# ---------------------------------------------------------------- obstore


async def run_obstore(test: str, env: dict[str, str], n: int, size: int) -> dict[str, float]:
    import obstore
    from obstore.store import S3Store

    store = S3Store(
        BUCKET,
        endpoint=env["AWS_ENDPOINT_URL"],
        region=env["AWS_REGION"],
        access_key_id=env["AWS_ACCESS_KEY_ID"],
        secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        virtual_hosted_style_request=False,
        client_options={"allow_http": True},
    )
    body = os.urandom(1024)
    key = "obstore/small/{:06d}".format

    async def put(i: int) -> None:
        await obstore.put_async(store, key(i), body)

    async def get(i: int) -> None:
        r = await obstore.get_async(store, key(i % n))
        await r.bytes_async()

    if test in ("put1k", "get1k"):
        op = put if test == "put1k" else get
        await bounded(WARMUP, n if test == "put1k" else 0, op)
        with Meter() as m:
            await bounded(n, 0, op)
        return small_result(n, m)
    if test == "put256m":
        await obstore.put_async(store, "obstore/warm", body)
        with Meter() as m:
            await obstore.put_async(
                store,
                "obstore/big",
                aiter_chunks(size),
                chunk_size=PART,
                max_concurrency=PART_CONCURRENCY,
            )
        return big_result(size, m)
    await (await obstore.get_async(store, "obstore/warm")).bytes_async()
    with Meter() as m:
        r = await obstore.get_async(store, "obstore/big")
        got = 0
        async for chunk in r.stream(min_chunk_size=MIB):
            got += len(chunk)
    assert got == size, got
    return big_result(size, m)


# ---------------------------------------------------------------- aiobotocore


def boto_kwargs(env: dict[str, str]) -> dict[str, Any]:
    return {
        "endpoint_url": env["AWS_ENDPOINT_URL"],
        "region_name": env["AWS_REGION"],
        "aws_access_key_id": env["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": env["AWS_SECRET_ACCESS_KEY"],
    }


def boto_config_kwargs() -> dict[str, Any]:
    return {
        "s3": {"addressing_style": "path"},
        "max_pool_connections": CONCURRENCY,
        "request_checksum_calculation": "when_required",
        "response_checksum_validation": "when_required",
        "retries": {"max_attempts": 3, "mode": "standard"},
    }


async def run_aiobotocore(test: str, env: dict[str, str], n: int, size: int) -> dict[str, float]:
    from aiobotocore.config import AioConfig
    from aiobotocore.session import get_session

    session = get_session()
    async with session.create_client(
        "s3", config=AioConfig(**boto_config_kwargs()), **boto_kwargs(env)
    ) as s3:
        body = os.urandom(1024)
        key = "aiobotocore/small/{:06d}".format

        async def put(i: int) -> None:
            await s3.put_object(Bucket=BUCKET, Key=key(i), Body=body)

        async def get(i: int) -> None:
            r = await s3.get_object(Bucket=BUCKET, Key=key(i % n))
            async with r["Body"] as stream:
                await stream.read()

        if test in ("put1k", "get1k"):
            op = put if test == "put1k" else get
            await bounded(WARMUP, n if test == "put1k" else 0, op)
            with Meter() as m:
                await bounded(n, 0, op)
            return small_result(n, m)
        if test == "put256m":
            await s3.put_object(Bucket=BUCKET, Key="aiobotocore/warm", Body=body)
            with Meter() as m:
                await aiobotocore_multipart(s3, "aiobotocore/big", aiter_chunks(size))
            return big_result(size, m)
        await get(0)
        with Meter() as m:
            r = await s3.get_object(Bucket=BUCKET, Key="aiobotocore/big")
            got = 0
            async with r["Body"] as stream:
                async for chunk in stream.iter_chunks(MIB):
                    got += len(chunk)
        assert got == size, got
        return big_result(size, m)


async def aiobotocore_multipart(s3: Any, key: str, chunks: AsyncIterator[bytes]) -> None:
    """Multipart upload: 8 MiB parts, up to 4 in flight, abort on any failure."""
    upload_id = (await s3.create_multipart_upload(Bucket=BUCKET, Key=key))["UploadId"]
    slots = asyncio.Semaphore(PART_CONCURRENCY)
    parts: dict[int, str] = {}
    tasks: list[asyncio.Task[None]] = []

    async def send(number: int, data: bytes) -> None:
        try:
            r = await s3.upload_part(
                Bucket=BUCKET, Key=key, UploadId=upload_id, PartNumber=number, Body=data
            )
            parts[number] = r["ETag"]
        finally:
            slots.release()

    try:
        buf = bytearray()
        number = 0
        async for chunk in chunks:
            buf += chunk
            if len(buf) >= PART:
                number += 1
                await slots.acquire()
                tasks.append(asyncio.create_task(send(number, bytes(buf))))
                buf.clear()
        if buf or number == 0:
            number += 1
            await slots.acquire()
            tasks.append(asyncio.create_task(send(number, bytes(buf))))
        await asyncio.gather(*tasks)
        await s3.complete_multipart_upload(
            Bucket=BUCKET,
            Key=key,
            UploadId=upload_id,
            MultipartUpload={
                "Parts": [{"PartNumber": k, "ETag": v} for k, v in sorted(parts.items())]
            },
        )
    except BaseException:
        for t in tasks:
            t.cancel()
        await s3.abort_multipart_upload(Bucket=BUCKET, Key=key, UploadId=upload_id)
        raise


# ---------------------------------------------------------------- boto3 (sync, threads)


def run_boto3(test: str, env: dict[str, str], n: int, size: int) -> dict[str, float]:
    from concurrent.futures import ThreadPoolExecutor

    import boto3
    from botocore.config import Config

    s3 = boto3.client("s3", config=Config(**boto_config_kwargs()), **boto_kwargs(env))
    body = os.urandom(1024)
    key = "boto3/small/{:06d}".format

    def put(i: int) -> None:
        s3.put_object(Bucket=BUCKET, Key=key(i), Body=body)

    def get(i: int) -> None:
        s3.get_object(Bucket=BUCKET, Key=key(i % n))["Body"].read()

    if test in ("put1k", "get1k"):
        op = put if test == "put1k" else get
        with ThreadPoolExecutor(CONCURRENCY) as pool:
            list(pool.map(op, range(n, n + WARMUP) if test == "put1k" else range(WARMUP)))
            with Meter() as m:
                list(pool.map(op, range(n)))
        return small_result(n, m)
    if test == "put256m":
        s3.put_object(Bucket=BUCKET, Key="boto3/warm", Body=body)
        with Meter() as m:
            boto3_multipart(s3, "boto3/big", iter_chunks(size))
        return big_result(size, m)
    get(0)
    with Meter() as m:
        got = 0
        for chunk in s3.get_object(Bucket=BUCKET, Key="boto3/big")["Body"].iter_chunks(MIB):
            got += len(chunk)
    assert got == size, got
    return big_result(size, m)


def boto3_multipart(s3: Any, key: str, chunks: Iterator[bytes]) -> None:
    """Multipart upload: 8 MiB parts, up to 4 in flight (threads), abort on any failure."""
    from concurrent.futures import Future, ThreadPoolExecutor

    upload_id = s3.create_multipart_upload(Bucket=BUCKET, Key=key)["UploadId"]

    def send(number: int, data: bytes) -> dict[str, Any]:
        r = s3.upload_part(Bucket=BUCKET, Key=key, UploadId=upload_id, PartNumber=number, Body=data)
        return {"PartNumber": number, "ETag": r["ETag"]}

    try:
        with ThreadPoolExecutor(PART_CONCURRENCY) as pool:
            futures: list[Future[dict[str, Any]]] = []
            buf = bytearray()
            for chunk in chunks:
                buf += chunk
                if len(buf) >= PART:
                    # Bound the in-flight parts (memory) like the async versions do.
                    while sum(not f.done() for f in futures) >= PART_CONCURRENCY:
                        time.sleep(0.001)
                    futures.append(pool.submit(send, len(futures) + 1, bytes(buf)))
                    buf.clear()
            if buf or not futures:
                futures.append(pool.submit(send, len(futures) + 1, bytes(buf)))
            parts = [f.result() for f in futures]
        s3.complete_multipart_upload(
            Bucket=BUCKET, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}
        )
    except BaseException:
        s3.abort_multipart_upload(Bucket=BUCKET, Key=key, UploadId=upload_id)
        raise


# ---------------------------------------------------------------- driver


def worker(client: str, test: str, n: int, size: int) -> None:
    env = {k: os.environ[k] for k in os.environ if k.startswith("AWS_")}
    if client == "boto3":
        result = run_boto3(test, env, n, size)
    else:
        import uvloop

        fn = run_obstore if client == "obstore" else run_aiobotocore
        result = uvloop.run(fn(test, env, n, size))
    result["maxrss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(result), flush=True)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def versions() -> str:
    from importlib.metadata import version

    return ", ".join(f"{p} {version(p)}" for p in ("obstore", "aiobotocore", "botocore", "boto3"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--port", type=int, default=0, help="S3 port (default: a free one)")
    ap.add_argument("--small", type=int, default=3000, help="number of 1 KiB PUTs/GETs")
    ap.add_argument("--big-mib", type=int, default=256, help="size of the large object")
    ap.add_argument("--clients", default=",".join(CLIENTS))
    ap.add_argument("--json", type=Path, help="also write the raw figures here")
    ap.add_argument("--worker", nargs=2, metavar=("CLIENT", "TEST"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    size = args.big_mib * MIB
    if args.worker:
        worker(args.worker[0], args.worker[1], args.small, size)
        return

    clients = args.clients.split(",")
    port = args.port or free_port()
    tmp = Path(tempfile.mkdtemp(prefix="s3bench-"))
    s3dir = tmp / "ceph"
    env_memstore = {"S3_MEMSTORE_BYTES": str(max(2 << 30, 2 * size * len(clients)))}
    t0 = time.perf_counter()
    out = subprocess.run(
        ["bash", str(S3_SERVER), "start", str(s3dir), str(port)],
        env={**os.environ, **env_memstore},
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0:
        sys.exit(f"s3-server.sh start failed:\n{out.stderr}")
    print(f"Ceph up on port {port} in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    env = dict(os.environ)
    env.update(dict(line.split("=", 1) for line in out.stdout.splitlines() if "=" in line))
    results: dict[str, dict[str, dict[str, float]]] = {c: {} for c in clients}
    try:
        import boto3
        from botocore.config import Config

        s3 = boto3.client("s3", config=Config(**boto_config_kwargs()), **boto_kwargs(env))
        s3.create_bucket(Bucket=BUCKET)
        for test in TESTS:  # interleave clients within each test
            for client in clients:
                cmd = [sys.executable, __file__, "--worker", client, test]
                cmd += ["--small", str(args.small), "--big-mib", str(args.big_mib)]
                r = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
                if r.returncode != 0:
                    sys.exit(f"{client} {test} failed:\n{r.stderr[-3000:]}")
                results[client][test] = json.loads(r.stdout.strip().splitlines()[-1])
                print(f"{client:12} {test:8} {results[client][test]}", file=sys.stderr)
        left = s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads", [])
        if left:
            print(f"WARNING: {len(left)} unfinished multipart uploads left", file=sys.stderr)
    finally:
        subprocess.run(["bash", str(S3_SERVER), "stop", str(s3dir), "--purge"], check=False)
        shutil.rmtree(tmp, ignore_errors=True)

    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    big = f"{args.big_mib} MiB"
    print(f"\n{versions()}; Python {sys.version.split()[0]}; {os.cpu_count()} cores")
    print(f"1 KiB: {args.small} ops, {CONCURRENCY} concurrent; {big}: 1 MiB chunks, 8 MiB parts\n")
    print(
        "| client | PUT 1 KiB /s | CPU ms/PUT | GET 1 KiB /s | CPU ms/GET "
        f"| PUT {big} MB/s | CPU s | peak RSS +MiB "
        f"| GET {big} MB/s | CPU s | peak RSS +MiB |"
    )
    print("|---" * 11 + "|")
    for c in clients:
        fig = results[c]
        print(
            f"| {c} | {fig['put1k']['ops_per_s']:.0f} | {fig['put1k']['cpu_ms_per_op']:.3f} "
            f"| {fig['get1k']['ops_per_s']:.0f} | {fig['get1k']['cpu_ms_per_op']:.3f} "
            f"| {fig['put256m']['mb_per_s']:.0f} | {fig['put256m']['cpu_s']:.2f} "
            f"| {fig['put256m']['peak_rss_mib']:.0f} "
            f"| {fig['get256m']['mb_per_s']:.0f} | {fig['get256m']['cpu_s']:.2f} "
            f"| {fig['get256m']['peak_rss_mib']:.0f} |"
        )


if __name__ == "__main__":
    main()
