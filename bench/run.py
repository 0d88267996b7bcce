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
import asyncio
import base64
import contextlib
import datetime as dt
import hashlib
import http.client
import json
import os
import platform
import resource
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
LUA = BENCH / "lua"
BENCH_BIN = ROOT / ".cache" / "bench-venv" / "bin"
PROJECT_BIN = ROOT / ".venv" / "bin"
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
MiB = 1024 * 1024

ALL_SCENARIOS = ["upload_1k", "get_1k", "big_256m", "list_100k", "idle_1k"]
ALL_BACKENDS = ["file", "s3"]
ALL_TARGETS = ["mindproject", "mindproject_lean", "seed", "conventional", "minimal_asgi", "direct"]
# The lean variant runs with the baselines' durability and logging (no fsync, warnings only),
# on the request-rate scenarios only.
LEAN_ARGS = ["--no-fsync", "--log-level", "warning"]
LEAN_SCENARIOS = {"upload_1k", "get_1k"}

LABELS = {
    "mindproject": "MindProject",
    "mindproject_lean": "MindProject --no-fsync, log warning",
    "seed": "seed design (reconstruction)",
    "conventional": "Flask+boto3 done well",
    "minimal_asgi": "minimal ASGI (ceiling)",
    "direct": "direct storage (ceiling)",
}


# --------------------------------------------------------------------------- /proc accounting


def _children_map() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        kids.setdefault(ppid, []).append(int(entry))
    return kids


def tree_pids(roots: list[int]) -> list[int]:
    kids = _children_map()
    out: list[int] = []
    todo = list(roots)
    while todo:
        pid = todo.pop()
        if Path(f"/proc/{pid}").exists():
            out.append(pid)
        todo.extend(kids.get(pid, []))
    return out


def cpu_seconds(pids: list[int]) -> float:
    """utime+stime (+ reaped children's) of the given processes, in seconds."""
    ticks = 0
    for pid in pids:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        ticks += sum(int(x) for x in fields[11:15])  # utime stime cutime cstime
    return ticks / CLK_TCK


def rss_bytes(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        try:
            total += int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE
        except OSError:
            continue
    return total


class Meter:
    """CPU and memory of a set of process trees over a measured interval."""

    def __init__(self, roots: Callable[[], list[int]], interval: float = 0.02) -> None:
        self.roots = roots
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.idle_rss = 0
        self.cpu0 = 0.0
        self.cpu = 0.0

    def __enter__(self) -> Meter:
        pids = tree_pids(self.roots())
        self.idle_rss = rss_bytes(pids)
        self.peak = self.idle_rss
        self.cpu0 = cpu_seconds(pids)
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        n = 0
        pids = tree_pids(self.roots())
        while not self._stop.wait(self.interval):
            n += 1
            if n % 25 == 0:
                pids = tree_pids(self.roots())
            self.peak = max(self.peak, rss_bytes(pids))

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join()
        pids = tree_pids(self.roots())
        self.peak = max(self.peak, rss_bytes(pids))
        self.cpu = cpu_seconds(pids) - self.cpu0

    @property
    def peak_above_idle(self) -> int:
        return self.peak - self.idle_rss


# --------------------------------------------------------------------------- HTTP helpers


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http_call(
    port: int,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 30,
) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def multipart(payload: bytes, boundary: str = "mindprojectbench") -> tuple[bytes, str]:
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
        f'filename="telemetry.bin"\r\nContent-Type: application/octet-stream\r\n\r\n'
    ).encode()
    return head + payload + f"\r\n--{boundary}--\r\n".encode(), (
        f"multipart/form-data; boundary={boundary}"
    )


# --------------------------------------------------------------------------- storage backends


@dataclass
class Backend:
    name: str
    work: Path
    env: dict[str, str] = field(default_factory=dict)
    s3_dir: Path | None = None

    def storage_for(self, target: str) -> str:
        # seed and conventional share one layout (one object per device), so they share storage.
        group = "baseline" if target in ("seed", "conventional", "direct-list") else target
        if self.name == "file":
            path = self.work / "data" / group
            path.mkdir(parents=True, exist_ok=True)
            return f"file://{path}"
        bucket = f"bench-{group}".replace("_", "-")
        return f"s3://{bucket}" + ("/data" if target.startswith("mindproject") else "")

    def storage_pids(self) -> list[int]:
        if self.s3_dir is None:
            return []
        pids = []
        for name in ("radosgw", "ceph-osd", "ceph-mon"):
            with contextlib.suppress(OSError, ValueError):
                pids.append(int((self.s3_dir / "run" / f"{name}.pid").read_text().strip()))
        return [p for p in pids if Path(f"/proc/{p}").exists()]

    def s3_client(self) -> Any:
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.env["AWS_ENDPOINT_URL"],
            aws_access_key_id=self.env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=self.env["AWS_SECRET_ACCESS_KEY"],
            region_name=self.env.get("AWS_REGION", "us-east-1"),
            config=Config(max_pool_connections=64, s3={"addressing_style": "path"}),
        )


@contextlib.contextmanager
def backend(name: str, work: Path, log: Callable[[str], None]) -> Iterator[Backend]:
    work.mkdir(parents=True, exist_ok=True)
    if name == "file":
        shutil.rmtree(work / "data", ignore_errors=True)
        yield Backend(name, work)
        return
    s3_dir = work / "s3-server"
    shutil.rmtree(s3_dir, ignore_errors=True)
    port = free_port()
    log(f"starting the S3 server in {s3_dir} on port {port}")
    out = subprocess.run(
        ["bash", str(ROOT / "scripts" / "s3-server.sh"), "start", str(s3_dir), str(port)],
        capture_output=True,
        text=True,
        timeout=180,
        check=True,
    ).stdout
    env = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
    be = Backend(name, work, env, s3_dir)
    try:
        client = be.s3_client()
        for group in ("mindproject", "mindproject-lean", "baseline", "direct"):
            client.create_bucket(Bucket=f"bench-{group}")
        yield be
    finally:
        subprocess.run(
            ["bash", str(ROOT / "scripts" / "s3-server.sh"), "stop", str(s3_dir), "--purge"],
            timeout=60,
            check=False,
        )


# --------------------------------------------------------------------------- targets


@dataclass
class Server:
    target: str
    port: int
    proc: subprocess.Popen[bytes]
    token: str | None
    auth: bool

    def roots(self) -> list[int]:
        return [self.proc.pid]

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}


HEALTH = {"seed": "/api/"}
HEALTH_DEFAULT = "/healthz"


def mindproject_auth(env: dict[str, str], log: Callable[[str], None]) -> str | None:
    """Turn access control on and mint an admin token, if this version of the app has auth."""
    env["MINDPROJECT_AUTH"] = "token"
    env["MINDPROJECT_SECRET_KEY"] = secrets.token_urlsafe(40)
    try:
        res = subprocess.run(
            [str(PROJECT_BIN / "mindproject"), "token", "create", "--role", "admin"],
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except OSError as exc:
        res = subprocess.CompletedProcess([], 1, "", str(exc))
    lines = [ln.strip() for ln in res.stdout.splitlines() if ln.strip()]
    if res.returncode == 0 and lines:
        return lines[-1]
    log(f"no auth token ({(res.stderr or '').strip()[-200:]}); benchmarking in open mode")
    env.pop("MINDPROJECT_SECRET_KEY")
    env["MINDPROJECT_AUTH"] = "off"
    return None


def start_server(
    target: str, be: Backend, workers: int, logdir: Path, log: Callable[[str], None]
) -> Server:
    port = free_port()
    env = {**os.environ, **be.env}
    storage = be.storage_for(target)
    token = None
    if target.startswith("mindproject"):
        token = mindproject_auth(env, log)
        env["MINDPROJECT_STORAGE"] = storage
        argv = [str(PROJECT_BIN / "mindproject"), "serve", "--host", "127.0.0.1"]
        argv += ["--port", str(port), "--workers", str(workers), "--storage", storage]
        if target == "mindproject_lean":
            argv += LEAN_ARGS
    elif target == "seed":
        # The seed Dockerfile's settings: gunicorn with its defaults, i.e. ONE sync worker.
        env["BENCH_STORAGE"] = storage
        argv = [str(BENCH_BIN / "gunicorn"), "--chdir", str(BENCH / "baselines")]
        argv += ["--bind", f"127.0.0.1:{port}", "seed_app:app"]
    elif target == "conventional":
        env["BENCH_STORAGE"] = storage
        argv = [str(BENCH_BIN / "gunicorn"), "--chdir", str(BENCH / "baselines")]
        argv += ["--bind", f"127.0.0.1:{port}", "--workers", str(workers)]
        argv += ["--worker-class", "gthread", "--threads", "8", "--keep-alive", "75"]
        argv += ["--backlog", "2048", "--log-level", "warning", "conventional_app:app"]
    elif target == "minimal_asgi":
        argv = [str(BENCH_BIN / "uvicorn"), "--app-dir", str(BENCH / "baselines")]
        argv += ["--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)]
        argv += ["--loop", "uvloop", "--http", "httptools", "--no-access-log"]
        argv += ["--log-level", "warning", "--backlog", "2048", "minimal_asgi:app"]
    else:
        raise ValueError(target)
    logf = (logdir / f"{be.name}-{target}.log").open("ab")
    proc = subprocess.Popen(argv, env=env, stdout=logf, stderr=logf, start_new_session=True)
    server = Server(target, port, proc, token, token is not None)
    deadline = time.monotonic() + 60
    path = HEALTH.get(target, HEALTH_DEFAULT)
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{target} exited with {proc.returncode}; see {logf.name}")
        with contextlib.suppress(OSError, http.client.HTTPException):
            if http_call(port, "GET", path, timeout=2)[0] == 200:
                time.sleep(0.5)  # let every worker finish starting
                return server
        time.sleep(0.2)
    stop_server(server)
    raise RuntimeError(f"{target} did not become healthy on port {port}; see {logf.name}")


def stop_server(server: Server) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(server.proc.pid, signal.SIGTERM)
    try:
        server.proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.proc.pid, signal.SIGKILL)
        server.proc.wait(timeout=10)


# --------------------------------------------------------------------------- load drivers


@dataclass
class Config:
    duration: float
    warmup: float
    connections: int
    threads: int
    workers: int
    devices: int
    big_mib: int
    idle_connections: int
    list_connections: int


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


# --------------------------------------------------------------------------- the run


class Run:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.cfg = Config(
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
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
        self.out = Path(args.out) / stamp
        self.raw = self.out / "raw"
        self.raw.mkdir(parents=True, exist_ok=True)
        self.work = ROOT / ".cache" / "bench-work"
        self.rows: list[dict[str, Any]] = []
        self.auth: bool | None = None
        self.started = time.monotonic()
        self.logf = (self.raw / "run.log").open("a")

    def log(self, msg: str) -> None:
        line = f"[{time.monotonic() - self.started:7.1f}s] {msg}"
        print(line, flush=True)
        self.logf.write(line + "\n")
        self.logf.flush()

    def add(self, backend: str, scenario: str, target: str, **figures: Any) -> None:
        row = {"backend": backend, "scenario": scenario, "target": target, **figures}
        self.rows.append(row)
        shown = {k: round(v, 3) if isinstance(v, float) else v for k, v in figures.items()}
        self.log(f"{backend:4} {scenario:22} {target:13} {shown}")
        (self.out / "results.json").write_text(json.dumps(self.document(), indent=1))

    def document(self) -> dict[str, Any]:
        return {
            "started_utc": self.out.name,
            "command": " ".join(sys.argv),
            "machine": {
                "cpus": os.cpu_count(),
                "kernel": platform.release(),
                "python": platform.python_version(),
            },
            "git_commit": _git_commit(),
            "auth_on": self.auth,
            "config": self.cfg.__dict__,
            "rows": self.rows,
        }

    # ------------------------------------------------------------------ scenario bodies

    def targets(self) -> list[str]:
        return [t for t in ALL_TARGETS if t in self.args.targets]

    def execute(self) -> None:
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        for name in self.args.backends:
            with backend(name, self.work / name, self.log) as be:
                for target in self.targets():
                    if target == "direct":
                        self.run_direct(be)
                    else:
                        self.run_target(be, target)

    def run_target(self, be: Backend, target: str) -> None:
        self.log(f"== {be.name}: starting {target}")
        try:
            server = start_server(target, be, self.cfg.workers, self.raw, self.log)
        except RuntimeError as exc:
            self.log(f"!! {exc}")
            self.add(be.name, "start", target, failed=str(exc))
            return
        if target.startswith("mindproject"):
            self.auth = server.auth
        try:
            for scenario in self.args.scenarios:
                if target == "mindproject_lean" and scenario not in LEAN_SCENARIOS:
                    continue
                try:
                    getattr(self, f"s_{scenario}")(be, server)
                except Exception as exc:
                    self.log(f"!! {be.name} {scenario} {target}: {exc!r}")
                    self.add(be.name, scenario, target, failed=repr(exc)[:300])
            if self.args.profile and target == "mindproject" and "upload_1k" in self.args.scenarios:
                self.profile(be, server)
        finally:
            stop_server(server)

    def profile(self, be: Backend, server: Server) -> None:
        """py-spy (--gil: on-CPU Python only) over a 1 KiB upload run; not a measured run."""
        raw = self.raw / f"profile-{be.name}-upload_1k.txt"
        env = {"BENCH_SIZE": "1024", "BENCH_DEVICES": "1000", "BENCH_MODE": "multipart"}
        if server.token:
            env["BENCH_TOKEN"] = server.token
        secs = max(5, round(self.cfg.duration))
        spy = subprocess.Popen(
            [
                str(BENCH_BIN / "py-spy"),
                "record",
                "--pid",
                str(server.proc.pid),
                "--subprocesses",
                "--gil",
                "-r",
                "200",
                "-d",
                str(secs),
                "-f",
                "raw",
                "-o",
                str(raw),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wrk(
                server.port,
                "upload.lua",
                env,
                secs + 1,
                self.cfg.connections,
                self.cfg.threads,
                server.roots,
                lambda: [],
            )
        finally:
            spy.wait(timeout=secs + 60)
        from profile_summary import summarize

        if raw.exists():
            text = summarize(raw, 30)
            (self.out / f"profile-{be.name}-upload_1k.txt").write_text(
                f"py-spy --gil, 1 KiB multipart uploads, {be.name} backend\n{text}\n"
            )
            self.log(f"profile written: profile-{be.name}-upload_1k.txt")

    def _wrk(
        self, be: Backend, server: Server, script: str, env: dict[str, str], conns: int
    ) -> dict[str, Any]:
        env = {**env, **({"BENCH_TOKEN": server.token} if server.token else {})}
        if self.cfg.warmup > 0:
            wrk(
                server.port,
                script,
                env,
                self.cfg.warmup,
                conns,
                self.cfg.threads,
                server.roots,
                be.storage_pids,
            )
        return wrk(
            server.port,
            script,
            env,
            self.cfg.duration,
            conns,
            self.cfg.threads,
            server.roots,
            be.storage_pids,
        )

    def s_upload_1k(self, be: Backend, server: Server) -> None:
        env = {"BENCH_SIZE": "1024", "BENCH_DEVICES": "1000", "BENCH_MODE": "multipart"}
        res = self._wrk(be, server, "upload.lua", env, self.cfg.connections)
        self.add(be.name, "upload_1k multipart", server.target, **res)
        if server.target != "seed":  # the seed takes multipart only
            env = {**env, "BENCH_MODE": "raw"}
            res = self._wrk(be, server, "upload.lua", env, self.cfg.connections)
            self.add(be.name, "upload_1k raw", server.target, **res)

    def _put(self, server: Server, device: str, payload: bytes) -> dict[str, Any]:
        body, ctype = multipart(payload)
        status, resp = http_call(
            server.port,
            "PUT",
            f"/api/devices/{device}",
            body,
            {**server.headers(), "Content-Type": ctype},
        )
        if status != 200:
            raise RuntimeError(f"PUT {device} answered {status}: {resp[:200]!r}")
        try:
            out: dict[str, Any] = json.loads(resp)
        except ValueError:
            out = {}
        return out

    def s_get_1k(self, be: Backend, server: Server) -> None:
        payload = bytes(range(256)) * 4
        if server.target != "minimal_asgi":
            self._put(server, "get-1k", payload)
        status, body = http_call(
            server.port, "GET", "/api/devices/get-1k", headers=server.headers()
        )
        if status != 200 or base64.b64decode(body) != payload:
            raise RuntimeError(f"GET get-1k answered {status} {body[:100]!r}")
        modes = [("base64", "/api/devices/get-1k")]
        if server.target != "seed":  # the seed has no raw download
            modes.append(("raw", "/api/devices/get-1k?encoding=raw"))
        for mode, path in modes:
            res = self._wrk(be, server, "get.lua", {"BENCH_PATH": path}, self.cfg.connections)
            self.add(be.name, f"get_1k {mode}", server.target, **res)

    def s_big_256m(self, be: Backend, server: Server) -> None:
        if server.target == "minimal_asgi":
            return
        payload, digest = self.big_payload()
        size = payload.stat().st_size
        url = f"http://127.0.0.1:{server.port}/api/devices/big-file"
        auth = ["-H", f"Authorization: Bearer {server.token}"] if server.token else []
        put = curl_transfer(
            [*auth, "-X", "PUT", "-F", f"file=@{payload};type=application/octet-stream", url],
            server.roots,
        )
        self.add(be.name, f"big PUT {size // MiB} MiB multipart", server.target, **put)
        b64 = curl_transfer([*auth, url], server.roots)
        b64["ok_size"] = b64["bytes"] == 4 * ((size + 2) // 3)
        self.add(be.name, f"big GET {size // MiB} MiB base64", server.target, **b64)
        if server.target != "seed":
            raw = curl_transfer([*auth, url + "?encoding=raw"], server.roots)
            raw["ok_size"] = raw["bytes"] == size
            self.add(be.name, f"big GET {size // MiB} MiB raw", server.target, **raw)
        # integrity of the stored copy, checked outside the measured transfers
        if server.target != "seed":
            path = "/api/devices/big-file?encoding=raw"
            status, body = http_call(
                server.port, "GET", path, headers=server.headers(), timeout=120
            )
            if status != 200 or hashlib.sha256(body).hexdigest() != digest:
                self.log(f"!! {be.name} {server.target}: big-file download differs ({status})")
            del body

    def big_payload(self) -> tuple[Path, str]:
        path = self.work / f"payload-{self.cfg.big_mib}m.bin"
        digest_file = path.with_suffix(".sha256")
        if not path.exists() or path.stat().st_size != self.cfg.big_mib * MiB:
            h = hashlib.sha256()
            with path.open("wb") as f:
                for _ in range(self.cfg.big_mib):
                    chunk = os.urandom(MiB)
                    h.update(chunk)
                    f.write(chunk)
            digest_file.write_text(h.hexdigest())
        return path, digest_file.read_text().strip()

    def populate(self, be: Backend, server: Server) -> None:
        n = self.cfg.devices
        if server.target.startswith("mindproject"):
            t0 = time.monotonic()
            env = {"BENCH_COUNT": str(n), "BENCH_PREFIX": "dev-", "BENCH_THREADS": "2"}
            if server.token:
                env["BENCH_TOKEN"] = server.token
            res = wrk(
                server.port,
                "populate.lua",
                env,
                1800,
                64,
                2,
                server.roots,
                be.storage_pids,
                until_idle=True,
            )
            missing = self.top_up(server, n)
            self.log(
                f"populated {n} devices through the API in {time.monotonic() - t0:.1f}s "
                f"({res['rps']:.0f} req/s, failed {res['populate_failed']}, "
                f"{missing} missed ids uploaded afterwards)"
            )
        elif server.target in ("seed", "conventional"):
            marker = self.work / be.name / "data" / f"baseline-populated-{n}"
            if be.name == "s3" or not marker.exists():
                if be.name == "s3" and getattr(self, "_s3_baseline_populated", False):
                    return
                t0 = time.monotonic()
                direct("populate", be, n, 32, None)
                self.log(f"populated {n} baseline devices directly in {time.monotonic() - t0:.1f}s")
                if be.name == "s3":
                    self._s3_baseline_populated = True
                else:
                    marker.parent.mkdir(parents=True, exist_ok=True)
                    marker.touch()

    def top_up(self, server: Server, n: int) -> int:
        """Upload the dev-NNNNNNN ids that the populate run missed (wrk can drop one)."""
        seen: set[str] = set()
        cursor: str | None = None
        for _ in range(n // 1000 + 10):
            path = "/api/devices/?prefix=dev-&limit=1000"
            if cursor:
                path += "&cursor=" + urllib.parse.quote(cursor)
            status, body = http_call(
                server.port, "GET", path, headers=server.headers(), timeout=120
            )
            if status != 200:
                raise RuntimeError(f"list answered {status}: {body[:200]!r}")
            doc = json.loads(body)
            for item in doc["TelemetryDataDownloads"]:
                seen.add(item if isinstance(item, str) else item.get("device_id", ""))
            cursor = doc.get("next_cursor")
            if not cursor:
                break
        missing = [f"dev-{i:07d}" for i in range(n) if f"dev-{i:07d}" not in seen]
        for device in missing:
            self._put(server, device, b"telemetry")
        return len(missing)

    def s_list_100k(self, be: Backend, server: Server) -> None:
        if server.target == "minimal_asgi":
            return
        self.populate(be, server)
        first = "/api/devices/" if server.target == "seed" else "/api/devices/?limit=1000"
        status, body = http_call(server.port, "GET", first, headers=server.headers(), timeout=120)
        page_len = len(json.loads(body).get("TelemetryDataDownloads", [])) if status == 200 else 0
        res = self._wrk(be, server, "get.lua", {"BENCH_PATH": first}, self.cfg.list_connections)
        self.add(
            be.name,
            f"list first page of {self.cfg.devices}",
            server.target,
            page_devices=page_len,
            **res,
        )
        # full walk, one client following next_cursor
        t0 = time.monotonic()
        with Meter(server.roots) as meter:
            seen, pages, cursor = 0, 0, None
            while pages < 10000:
                path = (
                    first
                    if cursor is None
                    else ("/api/devices/?limit=1000&cursor=" + urllib.parse.quote(cursor))
                )
                status, body = http_call(
                    server.port, "GET", path, headers=server.headers(), timeout=120
                )
                if status != 200:
                    raise RuntimeError(f"walk page {pages} answered {status}: {body[:200]!r}")
                doc = json.loads(body)
                pages += 1
                seen += len(doc.get("TelemetryDataDownloads", []))
                cursor = doc.get("next_cursor")
                if not cursor:
                    break
        secs = time.monotonic() - t0
        self.add(
            be.name,
            f"list full walk of {self.cfg.devices}",
            server.target,
            devices_seen=seen,
            pages=pages,
            seconds=secs,
            cpu_ms=meter.cpu * 1000,
            peak_rss_mib=meter.peak / MiB,
            rss_above_idle_mib=meter.peak_above_idle / MiB,
        )

    def s_idle_1k(self, be: Backend, server: Server) -> None:
        n = self.cfg.idle_connections
        with Meter(server.roots, interval=0.1) as meter:
            res = asyncio.run(_hold_idle(server.port, n, server.headers(), 3.0))
        self.add(
            be.name,
            f"idle {n} keep-alive conns",
            server.target,
            peak_rss_mib=meter.peak / MiB,
            rss_above_idle_mib=meter.peak_above_idle / MiB,
            rss_per_conn_kib=meter.peak_above_idle / 1024 / max(n, 1),
            cpu_ms=meter.cpu * 1000,
            **res,
        )

    def run_direct(self, be: Backend) -> None:
        self.log(f"== {be.name}: direct storage ceilings")
        ops: list[tuple[str, str, Path | None]] = []
        if "upload_1k" in self.args.scenarios:
            ops.append(("put_1k", "upload_1k multipart", None))
        if "get_1k" in self.args.scenarios:
            ops.append(("get_1k", "get_1k raw", None))
        if "big_256m" in self.args.scenarios:
            payload, _ = self.big_payload()
            size = payload.stat().st_size // MiB
            ops.append(("put_big", f"big PUT {size} MiB multipart", payload))
            ops.append(("get_big", f"big GET {size} MiB raw", payload))
        if "list_100k" in self.args.scenarios:
            ops.append(("list", f"list full walk of {self.cfg.devices}", None))
        for op, label, payload in ops:
            try:
                if op == "list":
                    n = self.cfg.devices
                    marker = self.work / be.name / "data" / f"baseline-populated-{n}"
                    if not (marker.exists() or getattr(self, "_s3_baseline_populated", False)):
                        direct("populate", be, n, 32, None)
                        if be.name == "s3":
                            self._s3_baseline_populated = True
                        else:
                            marker.touch()
                threads = 16 if be.name == "s3" else 2
                res = direct(op, be, self.cfg.duration, threads, payload)
                self.add(be.name, label, "direct", **res)
            except Exception as exc:
                self.log(f"!! direct {op}: {exc!r}")
                self.add(be.name, label, "direct", failed=repr(exc)[:300])


def _git_commit() -> str:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        return subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    return "unknown"


def main() -> int:
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
    # A TERM (e.g. from `timeout`) unwinds like Ctrl-C, so every server and the S3 server stop.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    run = Run(args)
    run.log(f"results in {run.out}")
    try:
        run.execute()
    finally:
        from report import write_report  # bench/report.py

        write_report(run.out, run.document())
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(BENCH))
    sys.exit(main())
