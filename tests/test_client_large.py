"""The SDK with big files and faults, against real `mindproject serve` processes: round trips
on the file backend and on the local S3 server, and a server killed (SIGKILL) in the middle of
a 1 GiB upload and of its download, restarted on the same data folder while the client (a
separate process, so its memory is its own) keeps going. A counting TCP relay between them
measures the bytes that crossed the wire."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from mindproject.client import Client, RetryPolicy
from tests.helpers import REPO, make_token, run_server, wait_for

MiB = 1024 * 1024
GiB = 1024 * MiB
SERVER_ENV = {"MINDPROJECT_RATE_LIMIT_PER_MINUTE": "0", "MINDPROJECT_SHUTDOWN_DRAIN_SECONDS": "0"}


def random_file(path: Path, size: int) -> str:
    """`size` random bytes at `path`, written a piece at a time; answers their sha256."""
    digest = hashlib.sha256()
    with path.open("wb") as handle:
        left = size
        while left:
            piece = os.urandom(min(8 * MiB, left))
            digest.update(piece)
            handle.write(piece)
            left -= len(piece)
    return digest.hexdigest()


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for piece in iter(lambda: handle.read(8 * MiB), b""):
            digest.update(piece)
    return digest.hexdigest()


def round_trips(url: str, tmp_path: Path, sizes: list[int]) -> None:
    with Client(url, make_token(), state_dir=tmp_path / "state") as client:
        for size in sizes:
            source = tmp_path / f"in-{size}.bin"
            sha = random_file(source, size)
            stored = client.upload(f"big-{size}", source)
            assert (stored.size, stored.sha256) == (size, sha)
            target = tmp_path / f"out-{size}.bin"
            assert client.download(f"big-{size}", target) == stored
            assert file_sha256(target) == sha
            source.unlink()
            target.unlink()


@pytest.mark.server
@pytest.mark.s3
def test_small_round_trips_on_s3(s3_bucket: str, tmp_path: Path) -> None:
    with run_server(tmp_path, f"s3://{s3_bucket}/telemetry", env=SERVER_ENV) as server:
        round_trips(server.url, tmp_path, [0, 1, MiB])


@pytest.mark.server
@pytest.mark.slow
@pytest.mark.parametrize("backend", ["file", pytest.param("s3", marks=pytest.mark.s3)])
def test_300_mib_round_trip(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """Above the threshold: tus up in 8 MiB chunks, a streamed raw download back."""
    if backend == "s3":
        storage = f"s3://{request.getfixturevalue('s3_bucket')}/telemetry"
    else:
        storage = f"file://{tmp_path / 'data'}"
    with run_server(tmp_path, storage, env=SERVER_ENV) as server:
        round_trips(server.url, tmp_path, [300 * MiB])


class CountingRelay:
    """A TCP relay on 127.0.0.1 that counts the bytes it forwards each way. Its upstream port
    can change, so a server restarted elsewhere is behind the same address."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.up = 0  # client to server
        self.down = 0  # server to client
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._threads: list[threading.Thread] = []
        self._sockets: list[socket.socket] = []
        self.connections = 0
        self.on_connect: Callable[[], None] | None = None  # called as each connection comes in
        self._accepting = threading.Thread(target=self._accept, daemon=True)
        self._accepting.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # closed
            self._sockets.append(client)
            thread = threading.Thread(target=self._serve, args=(client,), daemon=True)
            thread.start()
            self._threads.append(thread)

    def _serve(self, client: socket.socket) -> None:
        self.connections += 1
        if self.on_connect is not None:
            self.on_connect()
        try:
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
        except OSError:
            client.close()  # the server is down: the client sees a cut connection
            return
        self._sockets.append(upstream)
        back = threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True)
        back.start()
        self._pump(client, upstream, True)
        back.join()
        client.close()
        upstream.close()

    def _pump(self, source: socket.socket, sink: socket.socket, up: bool) -> None:
        try:
            while data := source.recv(256 * 1024):
                sink.sendall(data)
                with self._lock:
                    if up:
                        self.up += len(data)
                    else:
                        self.down += len(data)
        except OSError:
            pass
        for sock in (source, sink):  # one side gone: cut the other too, as a network would
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        # shutdown(), not just close(), wakes a thread blocked in accept() or recv().
        for sock in [self._listener, *self._sockets]:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        self._accepting.join()
        for thread in self._threads:
            thread.join()


CLIENT_SCRIPT = """
import contextlib, io, json, sys
from pathlib import Path
from mindproject.cli import main

url, token, source, target = sys.argv[1:5]
# The CLI as a device runs it, patient enough to outlast a server restart twice over; its
# resumable state goes to XDG_CACHE_HOME (set by the test).
common = ["--url", url, "--token", token, "--tries", "40", "--quiet", "--json"]

def run(*argv):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main([*argv])
    assert code == 0, (argv, code)
    return json.loads(out.getvalue())

up = run("upload", *common, "killed-1", source)
print("uploaded", flush=True)
down = run("download", *common, "killed-1", "-o", target)
status = Path("/proc/self/status").read_text()
peak = next(int(l.split()[1]) * 1024 for l in status.splitlines() if l.startswith("VmHWM:"))
server_modules = [m for m in sys.modules if m.split(".")[0] in ("starlette", "uvicorn", "obstore")]
print(json.dumps({"up": up, "down": down, "peak_rss": peak, "server_modules": server_modules}),
      flush=True)
"""


@pytest.mark.server
@pytest.mark.slow
def test_server_killed_mid_upload_and_mid_download_of_1_gib(tmp_path: Path) -> None:
    """SIGKILL at about 40 % of the upload, then again at about 40 % of the download; a new
    server on the same data folder takes over. The client process finishes both from where the
    server stopped: fewer than 2 GiB cross the wire each way, the sha256 match, and its peak
    RSS stays under 64 MiB. The client is the CLI (`mindproject upload`, then `download`), run
    by its own `main` in a process of its own, as a device would run the command."""
    source = tmp_path / "one-gib.bin"
    sha = random_file(source, GiB)
    storage = f"file://{tmp_path / 'data'}"
    with contextlib.ExitStack() as servers:
        server = servers.enter_context(run_server(tmp_path, storage, env=SERVER_ENV))
        relay = CountingRelay(int(server.url.rsplit(":", 1)[1]))
        servers.callback(relay.close)
        client = subprocess.Popen(
            [
                sys.executable,
                "-c",
                CLIENT_SCRIPT,
                relay.url,
                make_token("device", "killed-1"),
                str(source),
                str(tmp_path / "back.bin"),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=REPO,
            env={**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")},
        )
        servers.callback(client.kill)  # a no-op once it has exited

        def kill_and_restart() -> None:
            nonlocal server
            os.kill(server.pid, signal.SIGKILL)
            server.process.wait()
            server = servers.enter_context(run_server(tmp_path, storage, env=SERVER_ENV))
            relay.upstream_port = int(server.url.rsplit(":", 1)[1])

        # Bounds on the waits (a hang guard), not a claim about speed.
        wait_for(lambda: relay.up > 400 * MiB, "400 MiB of the upload", timeout=900)
        kill_and_restart()
        wait_for(lambda: relay.down > 400 * MiB, "400 MiB of the download", timeout=900)
        kill_and_restart()
        stdout, stderr = client.communicate(timeout=900)
        assert client.returncode == 0, stderr
        result = json.loads(stdout.splitlines()[-1])
        with Client(server.url, make_token()) as admin:
            stored = admin.latest("killed-1")
            assert len(list(admin.history("killed-1"))) == 1
    [uploaded] = result["up"]  # `upload --json`: one record per file
    assert (uploaded["sha256"], result["down"]["sha256"], stored.sha256) == (sha, sha, sha)
    assert file_sha256(tmp_path / "back.bin") == sha
    assert result["server_modules"] == []
    print(
        f"\nbytes up {relay.up / MiB:.0f} MiB, down {relay.down / MiB:.0f} MiB, "
        f"client peak RSS {result['peak_rss'] / MiB:.1f} MiB"
    )
    assert relay.up < 2 * GiB and relay.down < 2 * GiB
    assert relay.up > GiB and relay.down > GiB  # it went through the relay
    assert result["peak_rss"] < 64 * MiB


@pytest.mark.server
def test_retry_policy_outlasts_a_short_outage(tmp_path: Path) -> None:
    """No server behind the address at first: the client retries connection errors with
    backoff, and the call succeeds once a server is there."""
    relay = CountingRelay(1)  # port 1: nothing listens, connections are cut at once
    try:
        storage = f"file://{tmp_path / 'data'}"
        with run_server(tmp_path, storage, env=SERVER_ENV) as server:
            client = Client(
                relay.url,
                make_token(),
                retry=RetryPolicy(attempts=10, base_delay=0.05, max_delay=0.2),
                state_dir=tmp_path,
            )

            def server_back_at_the_third_try() -> None:
                if relay.connections == 3:
                    relay.upstream_port = int(server.url.rsplit(":", 1)[1])

            relay.on_connect = server_back_at_the_third_try
            assert client.devices_page().devices == []
            assert relay.connections >= 3
    finally:
        relay.close()


RESTARTED_CLIENT_SCRIPT = """
import json, sys
from pathlib import Path
from mindproject.client import Client, RetryPolicy

url, token, source, state = sys.argv[1:5]
first: list[int] = []

def note_first(done, total):
    if not first:
        first.append(done)

with Client(url, token, resumable_threshold=1 << 20, chunk_size=1 << 20,
            state_dir=Path(state)) as client:
    stored = client.upload("rebooted-1", source, progress=note_first)
print(json.dumps({"sha256": stored.sha256, "first_progress": first[0]}), flush=True)
"""


@pytest.mark.server
def test_client_process_killed_mid_upload_resumes_from_the_state_file(tmp_path: Path) -> None:
    """SIGKILL the uploading process (a device losing power), start a new one: it finds the
    upload's URL in the state file and sends only what the server does not have."""
    source = tmp_path / "sixty-four.bin"
    sha = random_file(source, 64 * MiB)
    with run_server(tmp_path, f"file://{tmp_path / 'data'}", env=SERVER_ENV) as server:
        relay = CountingRelay(int(server.url.rsplit(":", 1)[1]))
        try:
            args = [
                sys.executable,
                "-c",
                RESTARTED_CLIENT_SCRIPT,
                relay.url,
                make_token("device", "rebooted-1"),
                str(source),
                str(tmp_path / "state"),
            ]
            first = subprocess.Popen(args, stdout=subprocess.PIPE, cwd=REPO)
            wait_for(lambda: relay.up > 20 * MiB, "20 MiB of the first try", timeout=300)
            first.kill()
            first.wait()
            second = subprocess.run(
                args, capture_output=True, text=True, cwd=REPO, timeout=300, check=True
            )
            result = json.loads(second.stdout.splitlines()[-1])
        finally:
            relay.close()
    print(
        f"\nbytes up {relay.up / MiB:.1f} MiB, second process started at {result['first_progress']}"
    )
    assert result["sha256"] == sha
    assert result["first_progress"] > 10 * MiB  # resumed, not restarted
    assert relay.up < 64 * MiB + 24 * MiB  # the file once, plus what the first try lost
