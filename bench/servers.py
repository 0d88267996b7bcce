"""Starting and stopping the targets: MindProject (normal and lean) and the baseline servers.

Each runs as its own session (process group) on a free loopback port, logging to the run's raw/
folder, and counts as started once its health path answers 200.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import secrets
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from backends import Backend
from loopback import free_port, http_call
from paths import BENCH, BENCH_BIN, PROJECT_BIN

# In run order. "direct" is no server: the storage ceiling, run as a child by load.direct.
ALL_TARGETS = ["mindproject", "mindproject_lean", "seed", "conventional", "minimal_asgi", "direct"]
# The lean variant runs with the baselines' durability and logging (no fsync, warnings only).
LEAN_ARGS = ["--no-fsync", "--log-level", "warning"]


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


# The path that answers 200 once a target serves (the seed has no /healthz).
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
