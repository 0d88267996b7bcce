#!/usr/bin/env python3
"""Pick the HTTP stack (ASGI server + framework + multipart parser) by measurement.

Each candidate server runs as a subprocess on its own loopback port. For each
candidate and each round the script:

1. starts the server and waits until a 1 KiB upload answers correctly;
2. warms up with a short wrk run, then runs wrk (``lua/put.lua``: 1 KiB
   multipart PUT, field ``file``) and records requests/s, p50/p99 latency and
   the server's CPU per request (utime+stime of the server process tree from
   /proc/PID/stat, before vs after, divided by completed requests);
3. streams one large multipart upload (default 256 MiB, random bytes from a
   1 MiB in-memory buffer) with httpx and records MiB/s, server CPU seconds,
   peak RSS growth (VmHWM after the upload minus VmRSS before it, having
   reset VmHWM through /proc/PID/clear_refs) and bytes the server wrote
   (wchar from /proc/PID/io: shows temp-file spooling);
4. stops the server.

Rounds are interleaved across candidates so drift on a shared machine hits
them all alike; the table shows the median of the rounds.

Run it from a venv holding the candidates (bench/choices/requirements.txt), not the
project's: ``make bench-choices`` creates .cache/choices-venv, installs wrk and runs it::

    make bench-choices CHOICES=asgi_stack ASGI_STACK_ARGS="--rounds 3"

Only 127.0.0.1 is ever contacted.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
LUA = HERE / "lua" / "put.lua"
HOST = "127.0.0.1"
BASE_PORT = 18300
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024
BOUNDARY = "----mindproject-bench-big-5e2b7a"


# --------------------------------------------------------------------------- candidates


@dataclass
class Candidate:
    key: str
    label: str
    argv: list[str]
    checks_size: bool = True  # the bare ceiling answers a constant JSON
    notes: str = ""


def uvicorn_argv(py: str, target: str, port: int, http: str = "httptools") -> list[str]:
    return [
        py,
        "-m",
        "uvicorn",
        target,
        "--host",
        HOST,
        "--port",
        str(port),
        "--loop",
        "uvloop",
        "--http",
        http,
        "--no-access-log",
        "--log-level",
        "warning",
    ]


def granian_argv(py: str, target: str, port: int) -> list[str]:
    return [
        py,
        "-m",
        "granian",
        target,
        "--interface",
        "asgi",
        "--host",
        HOST,
        "--port",
        str(port),
        "--workers",
        "1",
        "--loop",
        "uvloop",
        "--http",
        "1",
        "--no-ws",
        "--log-level",
        "warning",
    ]


def candidates(py: str) -> list[Candidate]:
    p = BASE_PORT
    return [
        Candidate(
            "pm",
            "Starlette + uvicorn/httptools + python-multipart push parser",
            uvicorn_argv(py, "asgi_stack_pm:app", p + 1),
        ),
        Candidate(
            "sfd",
            "Starlette + uvicorn/httptools + streaming-form-data",
            uvicorn_argv(py, "asgi_stack_sfd:app", p + 2),
        ),
        Candidate(
            "fastapi",
            "FastAPI UploadFile (spooled) + uvicorn/httptools",
            uvicorn_argv(py, "asgi_stack_fastapi:app", p + 3),
        ),
        Candidate(
            "granian",
            "Starlette + granian (ASGI) + python-multipart push parser",
            granian_argv(py, "asgi_stack_pm:app", p + 4),
        ),
        Candidate(
            "bare",
            "Bare ASGI (no framework, no parsing) + uvicorn/httptools [ceiling]",
            uvicorn_argv(py, "asgi_stack_bare:app", p + 5),
            checks_size=False,
        ),
        Candidate(
            "pm-h11",
            "Starlette + uvicorn/h11 + python-multipart push parser",
            uvicorn_argv(py, "asgi_stack_pm:app", p + 6, http="h11"),
        ),
    ]


def port_of(c: Candidate) -> int:
    return int(c.argv[c.argv.index("--port") + 1])


# --------------------------------------------------------------------------- /proc helpers


def tree_pids(root: int) -> list[int]:
    """root and all its live descendants."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def cpu_seconds(root: int) -> float:
    """utime+stime (+ reaped children's) summed over the live process tree."""
    ticks = 0
    for pid in tree_pids(root):
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        f = stat[stat.rindex(")") + 2 :].split()
        # fields after ')' start at field 3 (state): utime=14, stime=15, cutime=16, cstime=17
        ticks += int(f[11]) + int(f[12]) + int(f[13]) + int(f[14])
    return ticks / CLK_TCK


def status_kib(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def reset_hwm(root: int) -> int:
    """Reset VmHWM of every process in the tree; return summed VmRSS (KiB)."""
    total = 0
    for pid in tree_pids(root):
        try:
            Path(f"/proc/{pid}/clear_refs").write_text("5")
            total += status_kib(pid, "VmRSS")
        except OSError:
            pass
    return total


def hwm_kib(root: int) -> int:
    total = 0
    for pid in tree_pids(root):
        with contextlib.suppress(OSError):
            total += status_kib(pid, "VmHWM")
    return total


def wchar(root: int) -> int:
    total = 0
    for pid in tree_pids(root):
        try:
            for line in Path(f"/proc/{pid}/io").read_text().splitlines():
                if line.startswith("wchar:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total


# --------------------------------------------------------------------------- server lifecycle


def small_body() -> tuple[bytes, str]:
    b = "----mindproject-bench-small"
    payload = bytes(range(33, 127)) * 11
    payload = payload[:1024]
    body = (
        (
            f'--{b}\r\nContent-Disposition: form-data; name="file"; filename="t.bin"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        + payload
        + f"\r\n--{b}--\r\n".encode()
    )
    return body, f"multipart/form-data; boundary={b}"


def start(c: Candidate, log: Path) -> subprocess.Popen[bytes]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(HERE)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    fh = log.open("ab")
    proc = subprocess.Popen(
        c.argv,
        cwd=HERE,
        env=env,
        stdout=fh,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    fh.close()
    import httpx  # from the candidate venv

    body, ctype = small_body()
    deadline = time.monotonic() + 30
    last: Exception | None = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{c.key}: server exited with {proc.returncode}, see {log}")
        try:
            with socket.create_connection((HOST, port_of(c)), timeout=0.5):
                pass
            r = httpx.put(
                f"http://{HOST}:{port_of(c)}/upload",
                content=body,
                headers={"content-type": ctype},
                timeout=5,
            )
            r.raise_for_status()
            got = r.json()
            if c.checks_size and got != {"size": 1024}:
                raise RuntimeError(f"{c.key}: wrong answer {got!r}")
            return proc
        except (OSError, httpx.HTTPError) as e:
            last = e
            time.sleep(0.2)
    stop(proc)
    raise RuntimeError(f"{c.key}: not ready in 30 s ({last!r}), see {log}")


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # our own session only
            proc.wait()


# --------------------------------------------------------------------------- measurements


def run_wrk(port: int, seconds: int, threads: int, conns: int) -> dict[str, Any]:
    out = subprocess.run(
        [
            "wrk",
            f"-t{threads}",
            f"-c{conns}",
            f"-d{seconds}s",
            "--timeout",
            "10s",
            "-s",
            str(LUA),
            f"http://{HOST}:{port}/upload",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for line in out.splitlines():
        if line.startswith("WRKJSON "):
            report: dict[str, Any] = json.loads(line[len("WRKJSON ") :])
            return report
    raise RuntimeError("wrk printed no WRKJSON line:\n" + out)


def small_run(
    c: Candidate, proc: subprocess.Popen[bytes], args: argparse.Namespace
) -> dict[str, Any]:
    run_wrk(port_of(c), args.warmup, args.wrk_threads, args.wrk_conns)
    cpu0 = cpu_seconds(proc.pid)
    w = run_wrk(port_of(c), args.duration, args.wrk_threads, args.wrk_conns)
    cpu1 = cpu_seconds(proc.pid)
    errors = w["err_connect"] + w["err_read"] + w["err_write"] + w["err_status"] + w["err_timeout"]
    ok = w["requests"] - w["err_status"]
    return {
        "rps": w["requests"] / (w["duration_us"] / 1e6),
        "p50_ms": w["p50_us"] / 1000,
        "p99_ms": w["p99_us"] / 1000,
        "cpu_ms_per_req": (cpu1 - cpu0) * 1000 / max(ok, 1),
        "cpu_util": (cpu1 - cpu0) / (w["duration_us"] / 1e6),
        "requests": w["requests"],
        "errors": errors,
    }


def big_run(c: Candidate, proc: subprocess.Popen[bytes], mib: int) -> dict[str, Any]:
    import httpx

    chunk = os.urandom(1 << 20)
    head = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="big.bin"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    tail = f"\r\n--{BOUNDARY}--\r\n".encode()
    total = len(head) + mib * len(chunk) + len(tail)

    def gen() -> Iterator[bytes]:
        yield head
        for _ in range(mib):
            yield chunk
        yield tail

    time.sleep(0.5)
    rss0 = reset_hwm(proc.pid)
    cpu0 = cpu_seconds(proc.pid)
    w0 = wchar(proc.pid)
    t0 = time.perf_counter()
    with httpx.Client(timeout=600) as client:
        r = client.put(
            f"http://{HOST}:{port_of(c)}/upload",
            content=gen(),
            headers={
                "content-type": f"multipart/form-data; boundary={BOUNDARY}",
                "content-length": str(total),
            },
        )
    dt = time.perf_counter() - t0
    cpu1 = cpu_seconds(proc.pid)
    hwm = hwm_kib(proc.pid)
    w1 = wchar(proc.pid)
    r.raise_for_status()
    if c.checks_size and r.json() != {"size": mib << 20}:
        raise RuntimeError(f"{c.key}: big upload answered {r.text!r}")
    return {
        "mib_s": mib / dt,
        "cpu_s": cpu1 - cpu0,
        "rss_growth_mib": (hwm - rss0) / 1024,
        "written_mib": (w1 - w0) / (1 << 20),
        "seconds": dt,
    }


# --------------------------------------------------------------------------- report


def med(rows: list[dict[str, Any]], k: str) -> float:
    return float(statistics.median(r[k] for r in rows))


def spread(rows: list[dict[str, Any]], k: str, fmt: str) -> str:
    vals = [r[k] for r in rows]
    return f"{min(vals):{fmt}}..{max(vals):{fmt}}"


def table(
    results: dict[str, dict[str, list[dict[str, Any]]]], cands: list[Candidate], mib: int
) -> str:
    lines = [
        "| # | stack | 1 KiB req/s | p50 ms | p99 ms | **server CPU ms/req** | (min..max) "
        f"| errors | {mib} MiB MiB/s | {mib} MiB server CPU s | (min..max) "
        "| peak RSS growth MiB | written to disk MiB |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for i, c in enumerate(cands, 1):
        s, b = results[c.key]["small"], results[c.key]["big"]
        if not s or not b:
            lines.append(f"| {i} | {c.label} | failed |" + " |" * 10)
            continue
        lines.append(
            f"| {i} | {c.label} | {med(s, 'rps'):,.0f} | {med(s, 'p50_ms'):.2f} "
            f"| {med(s, 'p99_ms'):.2f} | **{med(s, 'cpu_ms_per_req'):.3f}** "
            f"| {spread(s, 'cpu_ms_per_req', '.3f')} "
            f"| {sum(r['errors'] for r in s)} | {med(b, 'mib_s'):,.0f} | {med(b, 'cpu_s'):.2f} "
            f"| {spread(b, 'cpu_s', '.2f')} "
            f"| {med(b, 'rss_growth_mib'):.1f} | {med(b, 'written_mib'):.0f} |"
        )
    return "\n".join(lines)


def versions() -> str:
    pk = [
        "starlette",
        "fastapi",
        "uvicorn",
        "uvloop",
        "httptools",
        "h11",
        "granian",
        "python-multipart",
        "streaming-form-data",
    ]
    got = []
    for p in pk:
        try:
            got.append(f"{p} {metadata.version(p)}")
        except metadata.PackageNotFoundError:
            got.append(f"{p} (missing)")
    wrk = subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout.split("\n")[0]
    return f"Python {sys.version.split()[0]}; " + ", ".join(got) + f"; {wrk.strip()}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=int, default=10, help="wrk seconds per measured run")
    ap.add_argument("--warmup", type=int, default=2, help="wrk warm-up seconds")
    ap.add_argument("--wrk-threads", type=int, default=1)
    ap.add_argument("--wrk-conns", type=int, default=32)
    ap.add_argument("--big-mib", type=int, default=256)
    ap.add_argument("--only", default="", help="comma-separated candidate keys")
    ap.add_argument("--json", type=Path, help="also write raw per-round results here")
    ap.add_argument("--log", type=Path, default=Path("/tmp/asgi_stack_servers.log"))
    args = ap.parse_args()

    cands = candidates(sys.executable)
    if args.only:
        keep = set(args.only.split(","))
        cands = [c for c in cands if c.key in keep]
    results: dict[str, dict[str, list[dict[str, Any]]]] = {
        c.key: {"small": [], "big": []} for c in cands
    }
    for rnd in range(1, args.rounds + 1):
        for c in cands:
            print(
                f"[round {rnd}/{args.rounds}] {c.key}: {' '.join(c.argv[1:])}",
                file=sys.stderr,
                flush=True,
            )
            try:
                proc = start(c, args.log)
            except Exception as e:
                print(f"  start failed: {e}", file=sys.stderr)
                continue
            try:
                npids = len(tree_pids(proc.pid))
                s = small_run(c, proc, args)
                s["processes"] = npids
                results[c.key]["small"].append(s)
                print(
                    f"  1 KiB: {s['rps']:.0f} req/s, {s['cpu_ms_per_req']:.3f} CPU ms/req, "
                    f"server CPU {s['cpu_util']:.2f} cores, p99 {s['p99_ms']:.1f} ms, "
                    f"{s['errors']} errors, {npids} process(es)",
                    file=sys.stderr,
                    flush=True,
                )
                b = big_run(c, proc, args.big_mib)
                results[c.key]["big"].append(b)
                print(
                    f"  {args.big_mib} MiB: {b['mib_s']:.0f} MiB/s, CPU {b['cpu_s']:.2f} s, "
                    f"RSS +{b['rss_growth_mib']:.1f} MiB, wrote {b['written_mib']:.0f} MiB",
                    file=sys.stderr,
                    flush=True,
                )
            except Exception as e:
                print(f"  measurement failed: {e!r}", file=sys.stderr)
            finally:
                stop(proc)

    print(
        f"Median of {args.rounds} rounds. 1 KiB: wrk -t{args.wrk_threads} -c{args.wrk_conns} "
        f"-d{args.duration}s (after {args.warmup}s warm-up). {args.big_mib} MiB: one streamed "
        "PUT from httpx. CPU = utime+stime of the server process tree (/proc/PID/stat).\n"
    )
    print(table(results, cands, args.big_mib))
    print(f"\n{versions()}; {os.cpu_count()} CPUs")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
