"""Fixtures that start and stop the local twin through scripts/cluster.sh.

Each cluster lives in its own temporary folder and is stopped (every process it started, by PID)
when its fixture ends. Every wait here is bounded; tests assert behaviour, never speed.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "cluster.sh"
MINDPROJECT = REPO / ".venv" / "bin" / "mindproject"


def _missing() -> str | None:
    for tool in ("haproxy", "curl"):
        if not shutil.which(tool):
            return f"{tool} is not installed (make test installs it)"
    if not MINDPROJECT.exists():
        return f"{MINDPROJECT} is missing (make install-test)"
    return None


def _read_env(path: Path) -> dict[str, str]:
    env: dict[str, str] = {}
    for line in path.read_text().splitlines():
        if "=" in line:
            key, value = line.split("=", 1)
            env[key] = value
    return env


def _environment() -> dict[str, str]:
    """This process' environment without MINDPROJECT_* settings from the caller's shell (module
    fixtures start before the per-test clean-up in tests/conftest.py)."""
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("MINDPROJECT_") or k.startswith("MINDPROJECT_TEST_")
    }


def admin_token(secret_key: str) -> str:
    """An admin bearer token signed with `secret_key`; the test fails if none can be made (the
    twin never falls back to open mode: its tests are about the service as deployed)."""
    env = {**_environment(), "MINDPROJECT_SECRET_KEY": secret_key, "MINDPROJECT_AUTH": "token"}
    res = subprocess.run(
        [str(MINDPROJECT), "token", "create", "--role", "admin"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    lines = [ln.strip() for ln in res.stdout.splitlines() if ln.strip()]
    if res.returncode != 0 or not lines:
        pytest.fail(f"`mindproject token create` failed ({res.returncode}):\n{res.stderr}")
    return lines[-1]


def _auth_env() -> tuple[dict[str, str], str]:
    """Access control on, with a fresh key and an admin token for it."""
    secret = uuid.uuid4().hex + uuid.uuid4().hex
    token = admin_token(secret)
    return {"MINDPROJECT_AUTH": "token", "MINDPROJECT_SECRET_KEY": secret}, token


@dataclass
class Cluster:
    """A running twin: balancer URL, replica URLs, and the script's fault controls."""

    dir: Path
    env: dict[str, str]
    token: str
    script_env: dict[str, str] = field(repr=False, default_factory=dict)

    @property
    def url(self) -> str:
        return self.env["CLUSTER_URL"]

    @property
    def replicas(self) -> int:
        return int(self.env["CLUSTER_REPLICAS"])

    def replica_url(self, n: int) -> str:
        return self.env[f"REPLICA_{n}_URL"]

    @property
    def replica_urls(self) -> list[str]:
        return [self.replica_url(n) for n in range(1, self.replicas + 1)]

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def readiness(self, url: str) -> int | None:
        """HTTP status of a replica's /readyz, None when nothing answers."""
        try:
            return httpx.get(f"{url}/readyz", headers=self.headers, timeout=5).status_code
        except httpx.HTTPError:
            return None

    def wait_ready(self, status: int, timeout: float, what: str) -> None:
        """Wait until every replica's /readyz answers `status`."""
        for url in self.replica_urls:

            def answers(url: str = url) -> bool:
                return self.readiness(url) == status

            wait_until(answers, timeout, f"{url} {what}")

    def client(self, base_url: str | None = None, timeout: float = 30) -> httpx.Client:
        return httpx.Client(base_url=base_url or self.url, headers=self.headers, timeout=timeout)

    def script(self, *args: str) -> None:
        subprocess.run(
            ["bash", str(SCRIPT), args[0], str(self.dir), *args[1:]],
            env=self.script_env,
            check=True,
            timeout=120,
            capture_output=True,
        )

    def replica_pid(self, n: int) -> int:
        return int((self.dir / "run" / f"replica-{n}.pid").read_text().split()[0])

    def signal_replica(self, n: int, sig: signal.Signals) -> None:
        self.script("replica-stop", str(n), sig.name.removeprefix("SIG"))

    def haproxy_stat(self) -> list[dict[str, str]]:
        """HAProxy's `show stat` rows (pxname, svname, status, lbtot, ...) from its socket."""
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(5)
            sock.connect(self.env["CLUSTER_HAPROXY_SOCKET"])
            sock.sendall(b"show stat\n")
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
        lines = data.decode().splitlines()
        header = lines[0].lstrip("# ").split(",")
        return [dict(zip(header, ln.split(","), strict=False)) for ln in lines[1:] if ln]

    def haproxy_servers(self) -> dict[str, str]:
        """replica name -> status (UP, DOWN, ...) as the balancer sees it."""
        return {
            row["svname"]: row["status"]
            for row in self.haproxy_stat()
            if row.get("pxname") == "replicas" and row.get("svname", "").startswith("replica-")
        }


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll predicate every 0.1 s; fail the test if it is not true within timeout seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for: {what}")


def process_gone(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat[stat.rindex(")") + 2] == "Z"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class ClusterFactory:
    """Starts clusters in fresh folders; stop_all() stops every one it started."""

    def __init__(self, tmp: pytest.TempPathFactory) -> None:
        self.tmp = tmp
        self.started: list[Cluster] = []

    def __call__(
        self,
        storage: str = "s3",
        replicas: int = 2,
        env: dict[str, str] | None = None,
        before_start: Callable[[Path], None] | None = None,
    ) -> Cluster:
        if reason := _missing():
            pytest.skip(f"the local twin needs: {reason}")
        if storage == "s3" and not shutil.which("radosgw"):
            pytest.skip("radosgw is not installed (make test installs it)")
        workdir = self.tmp.mktemp("cluster")
        if before_start is not None:
            before_start(workdir)
        auth_env, token = _auth_env()
        script_env = {
            **_environment(),
            "CLUSTER_STORAGE": storage,
            "CLUSTER_REPLICAS": str(replicas),
            "CLUSTER_CHECK_INTER_MS": "300",
            "CLUSTER_STOP_GRACE": "15",
            "MINDPROJECT_LOG_LEVEL": "warning",
            # No production drain on every stop; a test about the drain sets its own.
            "MINDPROJECT_SHUTDOWN_DRAIN_SECONDS": "0",
            **auth_env,
            **(env or {}),
        }
        cluster = Cluster(workdir, {}, token, script_env)
        self.started.append(cluster)
        res = subprocess.run(
            ["bash", str(SCRIPT), "start", str(workdir)],
            env=script_env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if res.returncode != 0:
            logs = "\n".join(
                f"--- {p.name}\n{p.read_text()[-2000:]}" for p in (workdir / "log").glob("*.log")
            )
            pytest.fail(f"cluster did not start:\n{res.stderr}\n{logs}")
        cluster.env = _read_env(workdir / "env")
        return cluster

    def stop_all(self) -> None:
        for cluster in self.started:
            subprocess.run(
                ["bash", str(SCRIPT), "stop", str(cluster.dir)],
                env=cluster.script_env,
                timeout=180,
                check=False,
            )
        self.started.clear()


@pytest.fixture
def start_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterFactory]:
    """start_cluster(storage="s3", replicas=2, env={...}, before_start=fn) -> a running Cluster."""
    factory = ClusterFactory(tmp_path_factory)
    try:
        yield factory
    finally:
        factory.stop_all()


@pytest.fixture(scope="module")
def twin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """One S3-backed cluster of three replicas shared by a module's read-mostly tests."""
    factory = ClusterFactory(tmp_path_factory)
    try:
        yield factory(storage="s3", replicas=3)
    finally:
        factory.stop_all()


FAULT_REPORT: list[str] = []


def report(line: str) -> None:
    """A figure for the end-of-run summary (e.g. the error rate while a replica was killed)."""
    FAULT_REPORT.append(line)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if FAULT_REPORT:
        terminalreporter.section("local twin: fault figures")
        for line in FAULT_REPORT:
            terminalreporter.write_line(line)
