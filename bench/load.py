"""Load drivers: each runs one kind of load against a target and measures the target meanwhile.

wrk with the Lua scripts in bench/lua for request rates, curl for big transfers, asyncio for
idle keep-alive connections, and bench/direct.py in a child process for the storage ceilings.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from accounting import Meter, MiB, cpu_seconds
from backends import Backend
from paths import BENCH, LUA


def wrk(
    port: int,
    script: str,
    env: dict[str, str],
    duration: float,
    connections: int,
    threads: int,
    server_roots: Callable[[], list[int]],
    storage_roots: Callable[[], list[int]],
    until_idle: bool = False,
) -> dict[str, Any]:
    """One wrk run; returns its report plus server and storage CPU and peak RSS.

    until_idle: for scripts whose threads stop themselves (populate.lua): wrk's main thread
    still sleeps for the whole -d, so it is interrupted (SIGINT: it then reports) once its
    threads stop using CPU.
    """
    secs = max(1, round(duration))
    argv = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{secs}s", "--timeout", "10s"]
    argv += ["-s", str(LUA / script), f"http://127.0.0.1:{port}"]
    full_env = {**os.environ, "BENCH_LUA_DIR": str(LUA), **env}
    with Meter(server_roots) as meter, Meter(storage_roots, interval=0.5) as smeter:
        proc = subprocess.Popen(
            argv, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        if until_idle:
            _interrupt_when_idle(proc, duration)
        try:
            stdout, stderr = proc.communicate(timeout=duration + 120)
        except subprocess.TimeoutExpired:
            proc.kill()
            stdout, stderr = proc.communicate()
    res = subprocess.CompletedProcess(argv, proc.returncode, stdout, stderr)
    report: dict[str, Any] = {}
    for line in res.stdout.splitlines():
        if line.startswith("WRKJSON "):
            report = json.loads(line[len("WRKJSON ") :])
        elif line.startswith("POPULATE_FAILED "):
            report["populate_failed"] = int(line.split()[1])
    if not report:
        raise RuntimeError(f"wrk failed: {res.stdout[-500:]} {res.stderr[-500:]}")
    n = max(report["requests"], 1)
    secs = report["duration_us"] / 1e6
    errs = report["errors"]
    return {
        "requests": report["requests"],
        "rps": report["requests"] / secs,
        "p50_ms": report["latency_us"]["p50"] / 1000,
        "p99_ms": report["latency_us"]["p99"] / 1000,
        "cpu_ms_per_req": meter.cpu * 1000 / n,
        "storage_cpu_ms_per_req": smeter.cpu * 1000 / n if storage_roots() else None,
        "peak_rss_mib": meter.peak / MiB,
        "rss_above_idle_mib": meter.peak_above_idle / MiB,
        "errors": errs["status"] + errs["connect"] + errs["read"] + errs["write"] + errs["timeout"],
        "non_2xx": errs["status"],
        "populate_failed": report.get("populate_failed"),
    }


def _interrupt_when_idle(proc: subprocess.Popen[str], limit: float) -> None:
    deadline = time.monotonic() + limit
    last, idle = -1.0, 0
    while proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.5)
        used = cpu_seconds([proc.pid])
        idle = idle + 1 if used == last else 0
        last = used
        if idle >= 4:  # two seconds without a tick of CPU: every thread has stopped
            proc.send_signal(signal.SIGINT)
            return


def curl_transfer(
    argv: list[str], server_roots: Callable[[], list[int]], timeout: float = 300
) -> dict[str, Any]:
    fmt = "%{http_code} %{size_download} %{size_upload} %{time_total}"
    full = ["curl", "-sS", "--max-time", str(int(timeout)), "-o", "/dev/null", "-w", fmt, *argv]
    with Meter(server_roots, interval=0.01) as meter:
        res = subprocess.run(
            full, capture_output=True, text=True, timeout=timeout + 30, check=False
        )
    code, down, up, secs = res.stdout.split()
    moved = max(float(down), float(up))
    return {
        "status": int(code),
        "bytes": int(moved),
        "seconds": float(secs),
        "mb_per_s": moved / 1e6 / max(float(secs), 1e-9),
        "cpu_ms": meter.cpu * 1000,
        "peak_rss_mib": meter.peak / MiB,
        "rss_above_idle_mib": meter.peak_above_idle / MiB,
    }


async def _hold_idle(port: int, n: int, headers: dict[str, str], hold: float) -> dict[str, int]:
    request = "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    request += "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
    conns: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    answered = refused = 0

    async def one() -> None:
        nonlocal answered, refused
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection("127.0.0.1", port), timeout=10
            )
            conns.append((reader, writer))
            writer.write(request.encode())
            await writer.drain()
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=10)
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            await asyncio.wait_for(reader.readexactly(length), timeout=5)
            answered += 1
        except (OSError, TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            refused += 1

    sem = asyncio.Semaphore(n)  # all at once: a server that cannot hold them shows it

    async def limited() -> None:
        async with sem:
            await one()

    await asyncio.gather(*(limited() for _ in range(n)))
    await asyncio.sleep(hold)

    async def is_open(reader: asyncio.StreamReader) -> bool:
        if reader.at_eof():
            return False
        try:
            return bool(await asyncio.wait_for(reader.read(1), timeout=0.2))
        except TimeoutError:
            return True  # nothing to read and not closed: the connection is held open
        except OSError:
            return False

    still_open = sum(await asyncio.gather(*(is_open(r) for r, _ in conns)))
    for _, writer in conns:
        writer.close()
    return {"answered": answered, "not_answered": refused, "open_after_hold": still_open}


def hold_idle(port: int, n: int, headers: dict[str, str], hold: float) -> dict[str, int]:
    """Open n connections at once, one keep-alive request on each, hold them for `hold` seconds
    and count how many were answered and how many the server still holds open."""
    return asyncio.run(_hold_idle(port, n, headers, hold))


def direct(
    op: str, be: Backend, seconds: float, threads: int, payload: Path | None
) -> dict[str, Any]:
    """Run a storage ceiling in a child process (so its CPU is measured like a server's)."""
    argv = [sys.executable, str(BENCH / "direct.py"), "--op", op, "--seconds", str(seconds)]
    where = "direct-list" if op in ("list", "populate") else "direct"
    argv += ["--threads", str(threads), "--storage", be.storage_for(where)]
    if payload is not None:
        argv += ["--payload", str(payload)]
    env = {**os.environ, **be.env}
    res = subprocess.run(
        argv, env=env, capture_output=True, text=True, timeout=seconds + 600, check=False
    )
    if res.returncode != 0:
        raise RuntimeError(f"direct {op} failed: {res.stderr[-800:]}")
    out: dict[str, Any] = json.loads(res.stdout.strip().splitlines()[-1])
    return out
