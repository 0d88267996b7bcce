#!/usr/bin/env python3
"""The fleet-scale benchmark (issue 12): small uploads over two replicas, S3-only mode (the
baseline) against the PostgreSQL index mode, side by side in one invocation.

One Ceph RGW (scripts/s3-server.sh) behind a counting proxy (bench/s3_proxy.py, its own
process), one throwaway PostgreSQL (scripts/postgres.sh), and per measured point two fresh
`mindproject serve --workers 1` replicas reaching S3 through the proxy. The clients are two wrk
processes (bench/lua/fleet.lua), each holding half the connections on one replica: every
connection is one client that sends a 1 KiB raw PUT and waits for its answer.

Per point: uploads/s, p50/p99 (the two wrk processes merged), S3 requests per upload by kind
(what the S3 server received during the measured run), server CPU per upload (both replicas'
process trees, utime+stime from /proc), PostgreSQL CPU per upload (the postmaster's tree), and,
apart, the CPU of the S3 server, of the proxy and of the load generator (wrk, reaped children's
rusage): none of those three is in the server figure.

Then the reads (index mode): a device with 10,000 versions (latest, first history page) and the
first page of a 100,000-device list, seeded through the API (the batch path, 512 in flight).

Usage: .cache/bench-venv/bin/python bench/fleet.py [--clients 16,64,512] [--windows 20,50,250]
See docs/benchmarks.md ("Fleet scale") for the method.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import glob
import json
import os
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from accounting import Meter, cpu_seconds
from backends import Backend, backend
from fleet_report import write_fleet_report
from fleet_stats import WrkRun, merged_percentile, parse_wrk, s3_per_upload, uploads_stored
from loopback import free_port, http_call
from paths import BENCH, BENCH_BIN, LUA, PROJECT_BIN, ROOT
from profile_summary import summarize
from recorder import Recorder
from servers import Server, mindproject_auth, stop_server

WORK = ROOT / ".cache" / "bench-work" / "fleet"
BUCKETS = {"s3-only": "fleet-s3only", "index": "fleet-index"}
MODES = list(BUCKETS)


@dataclasses.dataclass
class FleetConfig:
    clients: list[int]
    windows: list[int]
    main_clients: int
    main_window: int
    duration: float
    warmup: float
    size: int
    devices: int
    history_versions: int
    list_devices: int
    seed_concurrency: int
    modes: list[str]
    reads: bool
    profile: bool = False


# -- the parts: proxy, PostgreSQL, replicas --------------------------------------------------


@contextlib.contextmanager
def counting_proxy(upstream: str, logdir: Path) -> Iterator[tuple[int, int]]:
    """bench/s3_proxy.py in its own process: (its port, its pid)."""
    port_file = logdir / "s3-proxy.port"
    port_file.unlink(missing_ok=True)
    logf = (logdir / "s3-proxy.log").open("ab")
    argv = [sys.executable, str(BENCH / "s3_proxy.py"), "--upstream", upstream]
    proc = subprocess.Popen(
        [*argv, "--port-file", str(port_file)], stdout=logf, stderr=logf, start_new_session=True
    )
    try:
        deadline = time.monotonic() + 20
        while not port_file.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the counting proxy did not start; see s3-proxy.log")
            time.sleep(0.05)
        yield int(port_file.read_text()), proc.pid
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def proxy_counts(port: int, reset: bool = False) -> dict[str, Any]:
    status, body = http_call(
        port, "POST" if reset else "GET", "/__bench/reset" if reset else "/__bench/counts"
    )
    if status != 200:
        raise RuntimeError(f"counting proxy answered {status}")
    out: dict[str, Any] = json.loads(body)
    return out


@contextlib.contextmanager
def postgres(
    work: Path, log: Callable[[str], None]
) -> Iterator[tuple[str, Callable[[], list[int]]]]:
    """scripts/postgres.sh: (MINDPROJECT_INDEX, the server's pids)."""
    pg_dir = work / "postgres"
    script = ROOT / "scripts" / "postgres.sh"
    subprocess.run(["bash", str(script), "stop", str(pg_dir), "--purge"], timeout=60, check=False)
    out = subprocess.run(
        ["bash", str(script), "start", str(pg_dir)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    dsn = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)["MINDPROJECT_INDEX"]
    data = (
        (pg_dir / "pgdata").read_text().strip()
        if (pg_dir / "pgdata").exists()
        else str(pg_dir / "data")
    )
    log(f"PostgreSQL at {dsn} (data {data})")

    def pids() -> list[int]:
        for pidfile in glob.glob(f"{data}/db/postmaster.pid"):
            with contextlib.suppress(OSError, ValueError, IndexError):
                return [int(Path(pidfile).read_text().split()[0])]
        return []

    try:
        yield dsn, pids
    finally:
        subprocess.run(
            ["bash", str(script), "stop", str(pg_dir), "--purge"], timeout=60, check=False
        )


def pg_size(dsn: str) -> int | None:
    """Bytes of the index database (pg_database_size), or None without psql."""
    with contextlib.suppress(OSError, subprocess.SubprocessError, ValueError):
        out = subprocess.run(
            ["psql", dsn, "-Atc", "SELECT pg_database_size(current_database())"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout
        return int(out.strip())
    return None


def replica_env(
    be: Backend, proxy_port: int, mode: str, dsn: str | None, window: int | None
) -> dict[str, str]:
    env = {**os.environ, **be.env, "AWS_ENDPOINT_URL": f"http://127.0.0.1:{proxy_port}"}
    env["MINDPROJECT_STORAGE"] = f"s3://{BUCKETS[mode]}/data"
    env["MINDPROJECT_LOG_LEVEL"] = "warning"
    # A fleet's devices each upload rarely; the bench's ids are many, but the per-device guards
    # are per replica and would only measure themselves.
    env["MINDPROJECT_RATE_LIMIT_PER_MINUTE"] = "0"
    env["MINDPROJECT_MAX_CONCURRENT_UPLOADS_PER_DEVICE"] = "0"
    env.pop("MINDPROJECT_INDEX", None)
    if mode == "index":
        assert dsn is not None
        env["MINDPROJECT_INDEX"] = dsn
        if window is not None:
            env["MINDPROJECT_SEGMENT_WINDOW_MS"] = str(window)
    return env


def start_replicas(
    env: dict[str, str], n: int, logdir: Path, tag: str, log: Callable[[str], None]
) -> list[Server]:
    token = mindproject_auth(env, log)
    servers: list[Server] = []
    try:
        for i in range(n):
            port = free_port()
            argv = [str(PROJECT_BIN / "mindproject"), "serve", "--workers", "1"]
            env = {**env, "MINDPROJECT_HOST": "127.0.0.1", "MINDPROJECT_PORT": str(port)}
            logf = (logdir / f"{tag}-replica{i}.log").open("ab")
            proc = subprocess.Popen(argv, env=env, stdout=logf, stderr=logf, start_new_session=True)
            servers.append(Server(f"replica{i}", port, proc, token, token is not None))
        for s in servers:
            _wait_ready(s, logdir / f"{tag}-{s.target}.log")
    except BaseException:
        for s in servers:
            stop_server(s)
        raise
    return servers


def _wait_ready(server: Server, logname: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise RuntimeError(
                f"{server.target} exited with {server.proc.returncode}; see {logname}"
            )
        with contextlib.suppress(OSError):
            if http_call(server.port, "GET", "/readyz", timeout=2)[0] == 200:
                return
        time.sleep(0.2)
    raise RuntimeError(f"{server.target} did not become ready; see {logname}")


def stored_uploads(servers: list[Server]) -> int:
    """Uploads the replicas stored, from their metrics (mindproject_uploads_total)."""
    total = 0
    for s in servers:
        status, body = http_call(s.port, "GET", "/metrics", timeout=10)
        if status != 200:
            raise RuntimeError(f"/metrics answered {status}")
        total += uploads_stored(body.decode())
    return total


def drain(servers: list[Server], proxy_port: int, quiet: float = 1.0, limit: float = 60) -> int:
    """Wait until the replicas store no more uploads and S3 receives nothing for `quiet`
    seconds (uploads whose clients were cut off by wrk's end finish meanwhile); the stored
    count then."""
    last = (-1, -1)
    since = time.monotonic()
    deadline = since + limit
    while time.monotonic() < deadline:
        now = (stored_uploads(servers), int(proxy_counts(proxy_port)["total"]))
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet:
            break
        time.sleep(0.25)
    return last[0]


# -- load ------------------------------------------------------------------------------------


def run_wrk(
    servers: list[Server], conns: int, duration: float, env: dict[str, str], prefix: str
) -> tuple[list[WrkRun], float]:
    """One wrk per replica, conns split evenly, run at once; their reports and their CPU."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    procs = []
    per = [
        conns // len(servers) + (1 if i < conns % len(servers) else 0) for i in range(len(servers))
    ]
    for i, (s, c) in enumerate(zip(servers, per, strict=True)):
        argv = ["wrk", "-t1", f"-c{c}", f"-d{max(1, round(duration))}s", "--timeout", "10s"]
        argv += ["-s", str(LUA / "fleet.lua"), f"http://127.0.0.1:{s.port}"]
        full = {**os.environ, "BENCH_LUA_DIR": str(LUA), "BENCH_PREFIX": f"{prefix}{i}-", **env}
        if s.token:
            full["BENCH_TOKEN"] = s.token
        procs.append(
            subprocess.Popen(
                argv, env=full, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
            )
        )
    runs = []
    for p in procs:
        out, err = p.communicate(timeout=duration + 120)
        try:
            runs.append(parse_wrk(out))
        except ValueError as exc:
            raise RuntimeError(f"{exc}; stderr {err[-300:]!r}") from exc
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    wrk_cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return runs, wrk_cpu


class Fleet:
    def __init__(
        self, cfg: FleetConfig, rec: Recorder, be: Backend, proxy: tuple[int, int]
    ) -> None:
        self.cfg = cfg
        self.rec = rec
        self.be = be
        self.proxy_port, self.proxy_pid = proxy
        self.dsn: str | None = None
        self.pg_pids: Callable[[], list[int]] = list

    def point(self, mode: str, clients: int, window: int | None) -> None:
        label = f"{mode} c={clients}" + (f" w={window}ms" if window is not None else "")
        env = replica_env(self.be, self.proxy_port, mode, self.dsn, window)
        tag = f"{mode}-c{clients}-w{window}"
        try:
            servers = start_replicas(env, 2, self.rec.raw, tag, self.rec.log)
        except RuntimeError as exc:
            self.rec.log(f"!! {label}: {exc}")
            self.rec.add(
                "s3", "fleet upload_1k", mode, clients=clients, window_ms=window, failed=str(exc)
            )
            return
        try:
            load = {
                "BENCH_METHOD": "PUT",
                "BENCH_SIZE": str(self.cfg.size),
                "BENCH_DEVICES": str(self.cfg.devices),
            }
            prefix = f"f{mode[0]}{clients}w{window}r"
            if self.cfg.warmup > 0:
                run_wrk(servers, clients, self.cfg.warmup, load, prefix)
            # The warm-up's uploads still in flight when wrk stopped finish before the count starts.
            stored0 = drain(servers, self.proxy_port)
            roots = lambda: [s.proc.pid for s in servers]  # noqa: E731
            proxy_counts(self.proxy_port, reset=True)
            proxy_cpu0 = cpu_seconds([self.proxy_pid])
            with (
                Meter(roots) as meter,
                Meter(self.pg_pids, interval=0.5) as pg,
                Meter(self.be.storage_pids, interval=0.5) as s3m,
            ):
                runs, wrk_cpu = run_wrk(servers, clients, self.cfg.duration, load, prefix)
                # ... and the measured run's last ones are counted with it, their cost too.
                stored1 = drain(servers, self.proxy_port)
            counts = proxy_counts(self.proxy_port)
            proxy_cpu = cpu_seconds([self.proxy_pid]) - proxy_cpu0
        except Exception as exc:
            self.rec.log(f"!! {label}: {exc!r}")
            self.rec.add(
                "s3",
                "fleet upload_1k",
                mode,
                clients=clients,
                window_ms=window,
                failed=repr(exc)[:300],
            )
            return
        finally:
            for s in servers:
                stop_server(s)
        requests = sum(r.requests for r in runs)
        bad = sum(r.non_2xx + r.errors for r in runs)
        uploads = stored1 - stored0  # stored by the servers (their metrics), the tail included
        secs = max(r.duration_s for r in runs)
        n = max(uploads, 1)
        self.rec.add(
            "s3",
            "fleet upload_1k",
            mode,
            clients=clients,
            window_ms=window,
            uploads=uploads,
            answered_2xx=requests - sum(r.non_2xx for r in runs),
            uploads_per_s=(requests - sum(r.non_2xx for r in runs)) / secs,
            p50_ms=merged_percentile(runs, 50),
            p99_ms=merged_percentile(runs, 99),
            p99_max_of_wrks_ms=max(r.p99_ms for r in runs),
            **s3_per_upload(counts["kinds"], uploads),
            s3_kinds=counts["kinds"],
            server_cpu_ms_per_upload=meter.cpu * 1000 / n,
            pg_cpu_ms_per_upload=pg.cpu * 1000 / n if mode == "index" else None,
            s3_server_cpu_ms_per_upload=s3m.cpu * 1000 / n,
            proxy_cpu_ms_per_upload=proxy_cpu * 1000 / n,
            loadgen_cpu_ms_per_upload=wrk_cpu * 1000 / n,
            non_2xx=sum(r.non_2xx for r in runs),
            errors=bad,
        )

    def profile(self, mode: str) -> None:
        """py-spy (--gil: on-CPU Python frames) on one replica under the main point's load, after
        the measured runs (not one of them): profile-<mode>-upload_1k.txt in the run folder."""
        cfg = self.cfg
        window = cfg.main_window if mode == "index" else None
        env = replica_env(self.be, self.proxy_port, mode, self.dsn, window)
        servers = start_replicas(env, 2, self.rec.raw, f"profile-{mode}", self.rec.log)
        raw = self.rec.raw / f"profile-{mode}-upload_1k.raw"
        secs = max(5, round(cfg.duration))
        load = {"BENCH_METHOD": "PUT", "BENCH_SIZE": str(cfg.size)}
        try:
            run_wrk(servers, cfg.main_clients, 2, load, "p")
            spy = subprocess.Popen(
                [
                    *[str(BENCH_BIN / "py-spy"), "record", "--pid", str(servers[0].proc.pid)],
                    *["--subprocesses", "--gil", "-r", "200", "-d", str(secs), "-f", "raw"],
                    *["-o", str(raw)],
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            run_wrk(servers, cfg.main_clients, secs + 1, load, "p")
            spy.wait(timeout=secs + 60)
        finally:
            for s in servers:
                stop_server(s)
        if raw.exists():
            (self.rec.out / f"profile-{mode}-upload_1k.txt").write_text(
                f"py-spy --gil, one replica, 1 KiB raw uploads, {cfg.main_clients} clients over "
                f"two replicas, {mode} mode\n{summarize(raw, 30)}\n"
            )
            self.rec.log(f"profile written: profile-{mode}-upload_1k.txt")

    # -- reads (index mode) ------------------------------------------------------------------

    def reads(self) -> None:
        mode, window = "index", self.cfg.main_window
        env = replica_env(self.be, self.proxy_port, mode, self.dsn, window)
        servers = start_replicas(env, 2, self.rec.raw, "reads", self.rec.log)
        try:
            self._reads(servers)
        except Exception as exc:
            self.rec.log(f"!! reads: {exc!r}")
            self.rec.add("s3", "fleet reads", mode, failed=repr(exc)[:300])
        finally:
            for s in servers:
                stop_server(s)

    def _reads(self, servers: list[Server]) -> None:
        cfg = self.cfg
        size0 = pg_size(self.dsn or "")
        t0 = time.monotonic()
        hist = ["/api/devices/hist-0"] * cfg.history_versions
        devs = [f"/api/devices/dev-{i:07d}" for i in range(cfg.list_devices)]
        seeded = asyncio.run(seed_uploads(servers, hist + devs, cfg.seed_concurrency))
        secs = time.monotonic() - t0
        size1 = pg_size(self.dsn or "")
        self.rec.log(
            f"seeded {cfg.history_versions} versions of hist-0 and {cfg.list_devices} devices "
            f"through the API in {secs:.1f}s ({seeded['ok']} ok, {seeded['failed']} failed)"
        )
        self.rec.add(
            "s3",
            "fleet seed",
            "index",
            uploads=seeded["ok"],
            seed_failed=seeded["failed"],
            seconds=secs,
            uploads_per_s=seeded["ok"] / secs,
            index_bytes_per_upload=(size1 - size0) / max(seeded["ok"], 1)
            if size0 and size1
            else None,
        )
        s = servers[0]
        # sanity: what the pages hold
        status, body = http_call(
            s.port, "GET", "/api/devices/hist-0/uploads?limit=100", headers=s.headers()
        )
        page = json.loads(body) if status == 200 else {}
        status_l, body_l = http_call(s.port, "GET", "/api/devices/?limit=1000", headers=s.headers())
        listed = json.loads(body_l) if status_l == 200 else {}
        versions = count_history(s)
        self.rec.log(
            f"history page: {status} {len(page.get('uploads', []))} uploads; "
            f"walk {versions} versions; "
            f"device list first page: {status_l} {len(listed.get('TelemetryDataDownloads', []))}"
        )
        for name, path, conns in (
            ("latest of a 10k-version device", "/api/devices/hist-0?encoding=raw", 16),
            (
                "history page (100) of a 10k-version device",
                "/api/devices/hist-0/uploads?limit=100",
                16,
            ),
            ("device list first page (1000) of 100k", "/api/devices/?limit=1000", 2),
            ("device list first page (1000) of 100k, 16 clients", "/api/devices/?limit=1000", 16),
        ):
            load = {"BENCH_METHOD": "GET", "BENCH_PATH": path}
            run_wrk([s], conns, min(cfg.warmup, 2), load, "r")
            proxy_counts(self.proxy_port, reset=True)
            with Meter(lambda: [s.proc.pid]) as meter, Meter(self.pg_pids, interval=0.5) as pg:
                runs, _ = run_wrk([s], conns, cfg.duration, load, "r")
            counts = proxy_counts(self.proxy_port)
            n = max(sum(r.requests for r in runs), 1)
            self.rec.add(
                "s3",
                f"fleet read: {name}",
                "index",
                clients=conns,
                requests=n,
                rps=n / runs[0].duration_s,
                p50_ms=runs[0].p50_ms,
                p99_ms=runs[0].p99_ms,
                server_cpu_ms_per_req=meter.cpu * 1000 / n,
                pg_cpu_ms_per_req=pg.cpu * 1000 / n,
                s3_per_req=counts["total"] / n,
                s3_kinds=counts["kinds"],
                non_2xx=sum(r.non_2xx for r in runs),
                errors=sum(r.errors for r in runs),
                history_versions=versions,
                page_items=len(page.get("uploads", []))
                if "history" in name
                else len(listed.get("TelemetryDataDownloads", []))
                if "list" in name
                else None,
            )


def count_history(s: Server) -> int:
    total, cursor = 0, None
    for _ in range(1000):
        path = "/api/devices/hist-0/uploads?limit=1000" + (f"&cursor={cursor}" if cursor else "")
        status, body = http_call(s.port, "GET", path, headers=s.headers(), timeout=60)
        if status != 200:
            break
        doc = json.loads(body)
        total += len(doc.get("uploads", []))
        cursor = doc.get("next_cursor")
        if not cursor:
            break
    return total


async def seed_uploads(servers: list[Server], paths: list[str], concurrency: int) -> dict[str, int]:
    """PUT a small raw body to each path, `concurrency` at once spread over the replicas, over
    keep-alive connections; each path is retried up to 3 times."""
    todo = iter(paths)
    ok = failed = 0
    body = b"telemetry-seed"

    async def worker(server: Server) -> None:
        nonlocal ok, failed
        conn: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        auth = f"Authorization: Bearer {server.token}\r\n" if server.token else ""
        for path in todo:
            for _attempt in range(3):
                try:
                    if conn is None:
                        conn = await asyncio.open_connection("127.0.0.1", server.port)
                    r, w = conn
                    w.write(
                        (
                            f"PUT {path} HTTP/1.1\r\nHost: bench\r\n{auth}"
                            "Content-Type: application/octet-stream\r\n"
                            f"Content-Length: {len(body)}\r\n\r\n"
                        ).encode()
                        + body
                    )
                    await w.drain()
                    head = await asyncio.wait_for(r.readuntil(b"\r\n\r\n"), 60)
                    status = int(head.split(b" ", 2)[1])
                    length, close = 0, False
                    for line in head.split(b"\r\n")[1:]:
                        name, _, value = line.partition(b":")
                        if name.strip().lower() == b"content-length":
                            length = int(value)
                        elif name.strip().lower() == b"connection" and b"close" in value.lower():
                            close = True
                    await r.readexactly(length)
                    if close:
                        w.close()
                        conn = None
                    if status == 200:
                        ok += 1
                        break
                except (OSError, asyncio.IncompleteReadError, TimeoutError, ValueError):
                    if conn is not None:
                        conn[1].close()
                    conn = None
            else:
                failed += 1
        if conn is not None:
            conn[1].close()

    await asyncio.gather(*(worker(servers[i % len(servers)]) for i in range(concurrency)))
    return {"ok": ok, "failed": failed}


# -- the run ---------------------------------------------------------------------------------


def run(cfg: FleetConfig, rec: Recorder) -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    with backend("s3", WORK, rec.log) as be:
        client = be.s3_client()
        for bucket in BUCKETS.values():
            client.create_bucket(Bucket=bucket)
        with counting_proxy(be.env["AWS_ENDPOINT_URL"].removeprefix("http://"), rec.raw) as proxy:
            fleet = Fleet(cfg, rec, be, proxy)
            rec.log(f"counting proxy on port {proxy[0]}")
            verify_proxy(fleet)
            with contextlib.ExitStack() as stack:
                if "index" in cfg.modes:
                    fleet.dsn, fleet.pg_pids = stack.enter_context(postgres(WORK, rec.log))
                # Side by side: per client count, the baseline, then the index mode per window.
                for clients in cfg.clients:
                    if "s3-only" in cfg.modes:
                        fleet.point("s3-only", clients, None)
                    if "index" in cfg.modes:
                        for window in cfg.windows:
                            fleet.point("index", clients, window)
                if cfg.reads and "index" in cfg.modes:
                    fleet.reads()
                for mode in cfg.modes if cfg.profile else []:
                    fleet.profile(mode)


def verify_proxy(fleet: Fleet) -> None:
    """A known workload through the proxy: one S3-only upload is 2 PUTs (device marker and
    version object); one download of it is 1 GET after 1 LIST (the device's versions)."""
    env = replica_env(fleet.be, fleet.proxy_port, "s3-only", None, None)
    servers = start_replicas(env, 1, fleet.rec.raw, "verify", fleet.rec.log)
    s = servers[0]
    fleet.rec.auth = s.auth
    try:
        proxy_counts(fleet.proxy_port, reset=True)
        status, _ = http_call(
            s.port,
            "PUT",
            "/api/devices/verify-1",
            b"x" * 1024,
            {**s.headers(), "Content-Type": "application/octet-stream"},
        )
        upload = proxy_counts(fleet.proxy_port)
        proxy_counts(fleet.proxy_port, reset=True)
        got, _ = http_call(s.port, "GET", "/api/devices/verify-1?encoding=raw", headers=s.headers())
        download = proxy_counts(fleet.proxy_port)
    finally:
        stop_server(s)
    fleet.rec.log(
        f"proxy check: one upload ({status}) {upload['kinds']}; "
        f"one download ({got}) {download['kinds']}"
    )
    fleet.rec.add(
        "s3",
        "proxy check: one S3-only upload",
        "s3-only",
        status=status,
        s3_kinds=upload["kinds"],
        s3_total=upload["total"],
    )
    fleet.rec.add(
        "s3",
        "proxy check: one S3-only download",
        "s3-only",
        status=got,
        s3_kinds=download["kinds"],
        s3_total=download["total"],
    )


def parse_args() -> tuple[FleetConfig, Path]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ints = lambda s: [int(x) for x in s.split(",") if x.strip()]  # noqa: E731
    p.add_argument("--clients", type=ints, default=[16, 64, 512])
    p.add_argument("--windows", type=ints, default=[20, 50, 250], help="segment windows, ms")
    p.add_argument("--main-clients", type=int, default=512)
    p.add_argument("--main-window", type=int, default=50)
    p.add_argument("--duration", type=float, default=8.0)
    p.add_argument("--warmup", type=float, default=2.0)
    p.add_argument("--size", type=int, default=1024)
    p.add_argument("--devices", type=int, default=100_000, help="device ids per wrk process")
    p.add_argument("--history-versions", type=int, default=10_000)
    p.add_argument("--list-devices", type=int, default=100_000)
    p.add_argument("--seed-concurrency", type=int, default=512)
    p.add_argument("--modes", default=",".join(MODES))
    p.add_argument("--no-reads", action="store_true")
    p.add_argument("--profile", action="store_true", help="py-spy a replica after the runs")
    p.add_argument("--out", default=str(BENCH / "results"))
    a = p.parse_args()
    modes = [m for m in a.modes.split(",") if m]
    if set(modes) - set(MODES):
        p.error(f"--modes: choose from {', '.join(MODES)}")
    return FleetConfig(
        clients=a.clients,
        windows=a.windows,
        main_clients=a.main_clients,
        main_window=a.main_window,
        duration=a.duration,
        warmup=a.warmup,
        size=a.size,
        devices=a.devices,
        history_versions=a.history_versions,
        list_devices=a.list_devices,
        seed_concurrency=a.seed_concurrency,
        modes=modes,
        reads=not a.no_reads,
        profile=a.profile,
    ), Path(a.out)


def main() -> int:
    cfg, out = parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    rec = Recorder(out, dataclasses.asdict(cfg), suffix="-fleet-scale")
    rec.log(f"results in {rec.out}")
    try:
        run(cfg, rec)
    finally:
        write_fleet_report(rec.out, rec.document())
    return 0


if __name__ == "__main__":
    sys.exit(main())
