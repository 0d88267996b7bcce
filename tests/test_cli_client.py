"""The `mindproject` client commands as a user runs them: a real CLI process against a real
server (file backend, and the local S3 server), a hostile stand-in, a terminal (tmux)."""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from mindproject.cli.completion import bash_script, zsh_script
from mindproject.cli.profiles import read_profiles, render
from tests.cli_fakes import fake_server
from tests.helpers import RunningServer, make_token, run_cli, run_server, wait_for

MiB = 1024 * 1024


def cli(
    server_url: str, *args: str, token: str | None = None, home: Path | None = None, **kw: str
) -> subprocess.CompletedProcess[str]:
    """The CLI with the server given by the environment (as a script would), one try per
    request unless told otherwise (a refused connection is then quick)."""
    env = {
        "MINDPROJECT_URL": server_url,
        "MINDPROJECT_TOKEN": token or make_token(),
        "MINDPROJECT_TRIES": kw.pop("tries", "2"),
    }
    if home is not None:
        env["XDG_CONFIG_HOME"] = str(home)
    return run_cli(*args, env=env, clean_env=True)


def no_traceback(result: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("mindproject: ")
    return lines[0]


@pytest.fixture(params=["file", pytest.param("s3", marks=pytest.mark.s3)])
def backend_server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RunningServer]:
    if request.param == "file":
        storage = f"file://{tmp_path / 'data'}"
    else:
        storage = f"s3://{request.getfixturevalue('s3_bucket')}/telemetry"
    with run_server(tmp_path, storage) as running:
        yield running


@pytest.mark.server
def test_round_trips_and_every_json_output(backend_server: RunningServer, tmp_path: Path) -> None:
    url = backend_server.url
    device = f"cli-{uuid.uuid4().hex[:8]}"
    files = {}
    for size in (0, 1, MiB):
        path = tmp_path / f"f{size}.bin"
        path.write_bytes(os.urandom(size))
        files[size] = path
    uploaded = cli(url, "upload", device, *map(str, files.values()), "--json")
    assert uploaded.returncode == 0, uploaded.stderr
    versions = json.loads(uploaded.stdout)
    assert [v["size"] for v in versions] == [0, 1, MiB]
    assert not any(v["replayed"] for v in versions)
    assert {v["filename"] for v in versions} == {p.name for p in files.values()}
    for record in versions:
        assert set(record) >= {"device_id", "version", "size", "sha256", "uploaded_at", "path"}

    for record in versions:
        target = tmp_path / f"back-{record['size']}"
        got = cli(url, "download", device, "--version", record["version"], "-o", str(target))
        assert got.returncode == 0, got.stderr
        assert target.read_bytes() == files[record["size"]].read_bytes()
        as_json = cli(
            url, "download", device, "--version", record["version"], "--json", "-o", str(target)
        )
        assert json.loads(as_json.stdout) == {**record, "path": str(target)}
    both = cli(url, "download", device, "-o", "-", "--json")  # stdout cannot hold both
    assert both.returncode == 2
    no_traceback(both)

    streamed = subprocess.run(  # the latest (the 1 MiB file) to stdout, as bytes
        [sys.executable, "-m", "mindproject.cli", "download", device, "-o", "-"],
        env={**os.environ, "MINDPROJECT_URL": url, "MINDPROJECT_TOKEN": make_token()},
        capture_output=True,
        timeout=60,
        check=True,
    )
    assert streamed.stdout == files[MiB].read_bytes()

    devices = cli(url, "devices", "--prefix", device, "--json")
    assert json.loads(devices.stdout) == [device]
    lines = cli(url, "devices", "--prefix", device, "--jsonl").stdout.splitlines()
    assert [json.loads(line) for line in lines] == [device]

    history = json.loads(cli(url, "history", device, "--json").stdout)
    assert sorted(v["version"] for v in history) == sorted(v["version"] for v in versions)
    history_lines = cli(url, "history", device, "--jsonl").stdout.splitlines()
    assert len(history_lines) == 3
    plain = cli(url, "history", device)  # not a terminal: tab-separated lines
    assert len(plain.stdout.splitlines()) == 3 and "\t" in plain.stdout

    one = versions[0]["version"]
    removed = cli(url, "rm", device, "--version", one, "--json")
    assert json.loads(removed.stdout) == {"device_id": device, "version": one, "deleted": True}
    refused = cli(url, "rm", device)  # stdin is not a terminal: no question, no deletion
    assert refused.returncode == 2
    assert "--yes" in no_traceback(refused)
    gone = cli(url, "rm", device, "--yes", "--json")
    assert json.loads(gone.stdout) == {"device_id": device, "deleted_uploads": 2}

    revoked = cli(url, "revoke", device)
    assert json.loads(revoked.stdout)["device_id"] == device
    assert cli(url, "unrevoke", device).returncode == 0


@pytest.mark.server
def test_upload_a_folder_in_parallel_prints_each_version(
    live_server: RunningServer, tmp_path: Path
) -> None:
    folder = tmp_path / "logs"
    (folder / "deep").mkdir(parents=True)
    for index in range(5):
        (folder / ("deep" if index % 2 else "") / f"log{index}.txt").write_text(f"line {index}\n")
    refused = cli(live_server.url, "upload", "fold-1", str(folder))
    assert refused.returncode == 2
    assert "--recursive" in no_traceback(refused)
    result = cli(live_server.url, "upload", "fold-1", str(folder), "-r", "--parallel", "3")
    assert result.returncode == 0, result.stderr
    printed = result.stdout.splitlines()
    assert len(printed) == 5
    assert all(
        re.search(r"-> fold-1 version \S+ \(\d+ B, sha256 [0-9a-f]{12}\)", p) for p in printed
    )
    assert "━" not in result.stderr  # not a terminal: no bars


@pytest.mark.server
def test_login_profiles_and_overrides(live_server: RunningServer, tmp_path: Path) -> None:
    home = tmp_path / "config"
    env = {"XDG_CONFIG_HOME": str(home), "MINDPROJECT_TRIES": "1"}
    token = make_token()
    saved = run_cli("login", "--url", live_server.url, "--token", token, env=env, clean_env=True)
    assert saved.returncode == 0, saved.stderr
    config = home / "mindproject" / "config.toml"
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    assert token in config.read_text()
    # A second server as another profile; the default stays.
    other = run_cli(
        "login", "--profile", "lab", "--url", "http://127.0.0.1:9", "--token", "x", env=env
    )
    assert other.returncode == 0
    assert set(read_profiles(config)) == {"default", "lab"}

    run_cli("upload", "prof-1", str(config), env=env, clean_env=True, check=True)
    listed = run_cli("devices", "--prefix", "prof-", "--json", env=env, clean_env=True)
    assert json.loads(listed.stdout) == ["prof-1"]
    # --profile lab points at a closed port: the network gives up, exit 3, one line.
    lab = run_cli("devices", "--profile", "lab", env=env, clean_env=True)
    assert lab.returncode == 3
    no_traceback(lab)
    # The environment wins over the profile, the flag over the environment.
    bad_env = {**env, "MINDPROJECT_URL": "http://127.0.0.1:9"}
    assert run_cli("devices", env=bad_env, clean_env=True).returncode == 3
    flagged = run_cli("devices", "--url", live_server.url, env=bad_env, clean_env=True)
    assert flagged.returncode == 0, flagged.stderr
    before = run_cli("--url", live_server.url, "devices", env=bad_env, clean_env=True)
    assert before.returncode == 0, before.stderr  # before the command works too
    lab_first = run_cli("--profile", "lab", "devices", env=env, clean_env=True)
    assert lab_first.returncode == 3
    missing = run_cli("devices", "--profile", "nope", env=env, clean_env=True)
    assert missing.returncode == 2
    assert "no profile 'nope'" in no_traceback(missing)


@pytest.mark.server
def test_client_commands_import_no_server_module(live_server: RunningServer) -> None:
    """A device or a laptop runs the client commands without the server's stack (Starlette,
    pydantic, obstore, the settings) being loaded."""
    program = (
        "import sys\n"
        "from mindproject.cli.main import main\n"
        "code = main(sys.argv[1:])\n"
        "server = ('starlette', 'uvicorn', 'pydantic', 'obstore', 'mindproject.config',"
        " 'mindproject.app', 'mindproject.storage', 'mindproject.auth')\n"
        "print(sorted(m for m in sys.modules if m.startswith(server)), file=sys.stderr)\n"
        "sys.exit(code)\n"
    )
    run_cli("--version")  # marks the test as one that runs the CLI (see helpers.run_cli)
    result = subprocess.run(
        [sys.executable, "-c", program, "devices", "--json"],
        env={**os.environ, "MINDPROJECT_URL": live_server.url, "MINDPROJECT_TOKEN": make_token()},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == "[]"


@pytest.mark.parametrize(
    ("filename", "expected"),
    [
        ("run-7.csv", "run-7.csv"),
        ("../../etc/passwd", "passwd"),
        ("..", "d-v1"),
        ("C:\\logs\\a.bin", "a.bin"),
        (None, "d-v1"),
    ],
)
def test_download_names_the_file_safely(filename: str | None, expected: str) -> None:
    from mindproject.cli.commands import default_name
    from mindproject.client import Version

    version = Version("d", "v1", 1, "0" * 64, "2026-12-02T08:00:00Z", filename, None)
    assert default_name(version) == expected


def test_profiles_file_round_trips_awkward_values(tmp_path: Path) -> None:
    import tomllib

    profiles = {'we"ird\\name': {"url": "http://h:1/ä", "token": 'to"k\\en\n'}}
    assert tomllib.loads(render(profiles)) == profiles


@pytest.mark.server
def test_errors_are_one_line_with_exit_codes(live_server: RunningServer, tmp_path: Path) -> None:
    url = live_server.url
    missing = cli(url, "download", "nobody", "-o", str(tmp_path / "x"))
    assert missing.returncode == 1
    line = no_traceback(missing)
    assert "404 device_not_found" in line
    assert re.search(r"request id \w+", line)
    assert not (tmp_path / "x").exists()

    forbidden = cli(url, "devices", token=make_token("device", "d1"))
    assert forbidden.returncode == 1
    assert "403 forbidden" in no_traceback(forbidden)

    refused = cli("http://127.0.0.1:9", "devices")
    assert refused.returncode == 3
    assert "Connection refused" in no_traceback(refused) or "refused" in refused.stderr

    dns = cli("http://no-such-host.invalid:9", "devices")
    assert dns.returncode == 3
    no_traceback(dns)

    nofile = cli(url, "upload", "d1", str(tmp_path / "absent.bin"))
    assert nofile.returncode == 2
    assert "absent.bin" in no_traceback(nofile)

    usage = run_cli("upload", env={}, clean_env=True)
    assert usage.returncode == 2


@pytest.mark.server
def test_a_closed_pipe_is_quiet(live_server: RunningServer, tmp_path: Path) -> None:
    """`mindproject devices | head -1` with more devices than a pipe's buffer holds."""
    with live_server.client() as http:
        for index in range(3):
            http.put(f"/api/devices/pipe-{index}", content=b"x").raise_for_status()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("MINDPROJECT_")},
        "MINDPROJECT_URL": live_server.url,
        "MINDPROJECT_TOKEN": make_token(),
    }
    command = f"{sys.executable} -m mindproject.cli devices --jsonl --prefix pipe- | head -1"
    run_cli("--version")  # marks the test as one that runs the CLI (see helpers.run_cli)
    result = subprocess.run(
        ["bash", "-o", "pipefail", "-c", command],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.stdout == '"pipe-0"\n'
    assert result.stderr == ""
    assert result.returncode == 0


@pytest.mark.server
@pytest.mark.parametrize(
    ("mode", "code", "says"),
    [
        ("html", 1, "502 http_502"),
        ("truncated", 3, "stopped at byte"),
        ("wrong-sha", 4, "verification failed"),
    ],
)
def test_a_hostile_server_gives_a_clean_error(
    mode: str, code: int, says: str, tmp_path: Path
) -> None:
    target = tmp_path / "out.bin"
    with fake_server(mode) as fake:
        result = cli(fake.url, "download", "d", "-o", str(target))
    assert result.returncode == code, result.stderr
    assert says in no_traceback(result)
    assert not target.exists()  # nothing that looks like a finished file
    assert list(tmp_path.iterdir()) == []


TMUX = shutil.which("tmux")


@pytest.mark.server
@pytest.mark.skipif(TMUX is None, reason="tmux is not installed (make test installs it)")
def test_progress_bar_on_a_terminal(tmp_path: Path) -> None:
    """What a person sees: the CLI in a tmux pane, the pane read while the bytes still come (a
    slow stand-in server trickles 16 MiB): a bar with bytes done of total, the rate, time left."""
    assert TMUX is not None
    run_cli("--version")  # marks the test as one that runs the CLI (see helpers.run_cli)
    socket = f"mp-test-{uuid.uuid4().hex[:8]}"
    data = os.urandom(16 * MiB)
    tmux = [TMUX, "-L", socket, "-f", "/dev/null"]
    seen: list[str] = []
    with fake_server("ok", data, piece=64 * 1024, pause=0.02) as fake:
        command = (
            f"env MINDPROJECT_URL={fake.url} MINDPROJECT_TOKEN=t COLUMNS=120 "
            f"{sys.executable} -m mindproject.cli download d -o {tmp_path / 'out.bin'}"
        )
        subprocess.run(
            [*tmux, "new-session", "-d", "-x", "120", "-y", "10", "-s", "cli", command],
            check=True,
            timeout=30,
        )
        subprocess.run([*tmux, "set-option", "-t", "cli", "remain-on-exit", "on"], timeout=30)
        try:

            def mid_transfer() -> bool:
                pane = subprocess.run(
                    [*tmux, "capture-pane", "-p", "-t", "cli"],
                    capture_output=True,
                    text=True,
                    timeout=30,
                ).stdout
                seen[:] = [pane]
                done = re.search(r"([\d.]+)/([\d.]+) MiB", pane)
                moving = done and 0 < float(done.group(1)) < float(done.group(2))
                # The rate and time left show once rich has a few samples.
                return bool(moving and re.search(r"B/s", pane))

            wait_for(mid_transfer, "a bar part-way through in the tmux pane", timeout=60)
            pane = seen[0]
            assert "━" in pane  # the bar itself
            assert re.search(r"/16\.0 MiB", pane)
            assert re.search(r"[\d.]+ [kMG]?B/s", pane)  # the rate
            assert re.search(r"\d+:\d\d:\d\d", pane)  # the time left
            assert "out.bin" in pane

            def finished() -> bool:
                return (tmp_path / "out.bin").exists()

            wait_for(finished, "the download to finish", timeout=120)
        finally:
            subprocess.run([*tmux, "kill-server"], timeout=30, check=False)
    assert (tmp_path / "out.bin").read_bytes() == data


@pytest.mark.server
@pytest.mark.skipif(TMUX is None, reason="tmux is not installed (make test installs it)")
def test_upload_bar_stays_and_quiet_draws_none(live_server: RunningServer, tmp_path: Path) -> None:
    """An upload on a terminal leaves its finished bar and the version line; `--quiet` draws
    nothing but the version line."""
    assert TMUX is not None
    run_cli("--version")  # marks the test as one that runs the CLI (see helpers.run_cli)
    socket = f"mp-test-{uuid.uuid4().hex[:8]}"
    tmux = [TMUX, "-L", socket, "-f", "/dev/null"]
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(12 * MiB))  # above the 8 MiB threshold: resumable
    base = (
        f"env MINDPROJECT_URL={live_server.url} MINDPROJECT_TOKEN={make_token()} "
        f"XDG_CACHE_HOME={tmp_path / 'cache'} {sys.executable} -m mindproject.cli upload tmux-1"
    )
    panes = {}
    # The shell echoes the command line: the marker is split there, whole only in the output.
    try:
        for name, extra in (("loud", ""), ("quiet", " --quiet")):
            subprocess.run(
                [*tmux, "new-session", "-d", "-x", "150", "-y", "10", "-s", name],
                check=True,
                timeout=30,
            )
            subprocess.run(
                [*tmux, "send-keys", "-t", name, f'{base} {big}{extra}; echo "EX""IT=$?"', "Enter"],
                check=True,
                timeout=30,
            )

            def done(name: str = name) -> bool:
                pane = subprocess.run(
                    [*tmux, "capture-pane", "-p", "-J", "-t", name],
                    capture_output=True,
                    text=True,
                    timeout=30,
                ).stdout
                panes[name] = pane
                return "EXIT=" in pane

            wait_for(done, f"the {name} upload to finish in tmux", timeout=120)
    finally:
        subprocess.run([*tmux, "kill-server"], timeout=30, check=False)
    assert "EXIT=0" in panes["loud"]
    assert "━" in panes["loud"] and "12.0/12.0 MiB" in panes["loud"]
    assert re.search(r"big\.bin -> tmux-1 version \S+ \(12\.0 MiB", panes["loud"])
    assert "EXIT=0" in panes["quiet"]
    assert "━" not in panes["quiet"] and "MiB/" not in panes["quiet"]
    assert "-> tmux-1 version" in panes["quiet"]


def _bash_complete(script: str, words: list[str]) -> list[str]:
    line = " ".join(f"'{w}'" for w in words)
    program = (
        f"{script}\nCOMP_WORDS=({line}); COMP_CWORD={len(words) - 1}; _mindproject; "
        'printf "%s\\n" "${COMPREPLY[@]}"'
    )
    result = subprocess.run(
        ["bash", "--norc", "-c", program], capture_output=True, text=True, timeout=30, check=True
    )
    return result.stdout.split()


def test_bash_completion_from_the_parser() -> None:
    script = bash_script()
    assert _bash_complete(script, ["mindproject", "up"]) == ["upload"]
    assert set(_bash_complete(script, ["mindproject", "d"])) == {"download", "devices"}
    assert "--parallel" in _bash_complete(script, ["mindproject", "upload", "--p"])
    assert "--secret-key-file" in _bash_complete(script, ["mindproject", "serve", "--sec"])
    assert _bash_complete(script, ["mindproject", "completion", "z"]) == ["zsh"]


@pytest.mark.skipif(shutil.which("zsh") is None, reason="zsh is not installed")
def test_zsh_completion_loads() -> None:
    zsh = shutil.which("zsh")
    assert zsh is not None
    result = subprocess.run(
        [zsh, "-f", "-c", zsh_script() + "\ncomplete -p mindproject"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "_mindproject" in result.stdout


# The peak RSS of a command, from a small parent's wait4 (ru_maxrss, KiB). Not from pytest's own
# wait4: a child forked from this big process counts the parent's pages until it execs.
PEAK_RSS = """
import os, subprocess, sys
child = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL)
_, status, usage = os.wait4(child.pid, 0)
code = os.waitstatus_to_exitcode(status)
print(usage.ru_maxrss)
sys.exit(code)
"""


@pytest.mark.server
@pytest.mark.slow
def test_peak_memory_of_a_1_gib_upload_and_download(tmp_path: Path) -> None:
    """The CLI streams: 1 GiB up (resumable, in chunks) and down stays under 64 MiB of RSS."""
    run_cli("--version")  # marks the test as one that runs the CLI (see helpers.run_cli)
    big = tmp_path / "big.bin"
    block = os.urandom(MiB)
    with big.open("wb") as handle:
        for _ in range(1024):
            handle.write(block)
    with run_server(tmp_path, f"file://{tmp_path / 'data'}", args=("--no-fsync",)) as server:
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("MINDPROJECT_")},
            "MINDPROJECT_URL": server.url,
            "MINDPROJECT_TOKEN": make_token(),
            "XDG_CACHE_HOME": str(tmp_path / "cache"),  # the SDK's resumable state
        }
        for args in (
            ["upload", "big-1", str(big)],
            ["download", "big-1", "-o", str(tmp_path / "back.bin")],
        ):
            command = [sys.executable, "-m", "mindproject.cli", *args]
            result = subprocess.run(
                [sys.executable, "-c", PEAK_RSS, *command],
                env=env,
                capture_output=True,
                text=True,
                timeout=900,  # a hang guard: 2 GiB through loopback takes seconds
                check=False,
            )
            assert result.returncode == 0, result.stderr
            peak = int(result.stdout.split()[-1]) * 1024
            assert peak < 64 * MiB, f"{args[0]}: peak RSS {peak / MiB:.1f} MiB"
    assert (tmp_path / "back.bin").stat().st_size == 1024 * MiB
