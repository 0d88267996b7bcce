"""Container smoke test: build the image with buildah on a stand-in Debian base (no registry is
reachable here), run it read-only as its non-root user with podman, then upload and download
through it with bootstrap.sh's `test` action (the seed's three calls) and compare bytes.

Run alone: `make container-test` (or `pytest -m container tests/deploy`).
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.deploy.tools import CACHE, explain, require, run
from tests.helpers import REPO, free_port

pytestmark = [pytest.mark.deploy, pytest.mark.container]

BASE_TAG = "docker.io/library/python:3.11-slim-bookworm"
IMAGE = "localhost/mindproject:smoke"
STORAGE = CACHE / "containers"
# overlay where the kernel has it: vfs copies every layer whole (a cold build took minutes and
# 5 GB here, overlay about a minute and 0.4 GB). A storage keeps the driver it was made with,
# so each driver has its own.
DRIVER = "overlay" if "\toverlay\n" in Path("/proc/filesystems").read_text() else "vfs"
# Separate storage and run dirs: nothing touches the machine's default container storage. The
# run dir is per checkout (podman ties a storage to the run dir it was created with).
RUNROOT = f"/tmp/mindproject-podman-{hashlib.sha256(str(REPO).encode()).hexdigest()[:12]}-{DRIVER}"
STORAGE_OPTS = [
    "--root",
    str(STORAGE / f"storage-{DRIVER}"),
    "--runroot",
    RUNROOT,
    "--storage-driver",
    DRIVER,
]
# What podman needs on this kind of machine (no systemd, no cgroup delegation).
RUN_OPTS = [
    "--runtime",
    "runc",
    "--cgroup-manager",
    "cgroupfs",
    "--ulimit",
    "nofile=20000:20000",
    "--ulimit",
    "nproc=32768:32768",
]
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"


def _podman(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return run(["podman", *STORAGE_OPTS, *args], timeout=timeout)


CONTEXT_LABEL = "org.mindproject.build-context"


def _build_inputs_digest() -> str:
    """sha256 over everything the image is built from: the base image, the Dockerfile, the
    .dockerignore and the files it lets into the context (pyproject.toml, README.md, src/)."""
    base = _podman("image", "inspect", "--format", "{{.Id}}", BASE_TAG)
    assert base.returncode == 0, explain(base)
    digest = hashlib.sha256(base.stdout.strip().encode())
    sources = [p for p in sorted((REPO / "src").rglob("*")) if p.is_file()]
    sources = [
        p
        for p in sources
        if "__pycache__" not in p.parts and p.suffix != ".pyc" and ".egg-info" not in str(p)
    ]
    for path in [REPO / n for n in ("Dockerfile", ".dockerignore", "pyproject.toml", "README.md")]:
        sources.append(path)
    for path in sources:
        digest.update(str(path.relative_to(REPO)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def _built_from(image: str) -> str | None:
    labels = _podman("image", "inspect", "--format", "{{json .Labels}}", image)
    if labels.returncode != 0:
        return None
    found: dict[str, str] = json.loads(labels.stdout or "null") or {}
    return found.get(CONTEXT_LABEL)


@pytest.fixture(scope="module")
def image() -> str:
    for tool in ("buildah", "podman", "runc"):
        require(tool, "make test installs it (APT_PACKAGES in mk/deploy.mk)")
    require("debootstrap", "make test installs it (APT_PACKAGES in mk/deploy.mk)")
    require("jq", "make test installs it (APT_PACKAGES in mk/deploy.mk)")
    if os.geteuid() != 0:
        pytest.skip("the container smoke test builds with buildah as root (chroot isolation)")
    base = run(
        [
            "bash",
            str(REPO / "deploy" / "container" / "stand-in-base.sh"),
            str(CACHE),
            BASE_TAG,
            *STORAGE_OPTS,
        ],
        timeout=600,
    )
    assert base.returncode == 0, explain(base)
    # Even with every layer cached a build takes a while (and minutes on vfs): an image built
    # from exactly these inputs is reused; any change rebuilds it.
    inputs = _build_inputs_digest()
    if _built_from(IMAGE) == inputs:
        return IMAGE
    mounts = ["--volume", f"{CA_BUNDLE}:{CA_BUNDLE}:ro"] if Path(CA_BUNDLE).exists() else []
    build = run(
        [
            "buildah",
            *STORAGE_OPTS,
            "bud",
            "--isolation",
            "chroot",
            "--format",
            "docker",
            "--layers",
            *mounts,
            "--label",
            f"{CONTEXT_LABEL}={inputs}",
            "--tag",
            IMAGE,
            str(REPO),
        ],
        timeout=900,
    )
    assert build.returncode == 0, explain(build)
    return IMAGE


def _config(image: str) -> dict[str, object]:
    result = _podman("image", "inspect", image)
    assert result.returncode == 0, explain(result)
    inspected = json.loads(result.stdout)[0]
    config: dict[str, object] = inspected["Config"]
    # podman reports the (docker-format) HEALTHCHECK beside Config, not in it.
    config["Healthcheck"] = inspected.get("Healthcheck") or config.get("Healthcheck")
    return config


def test_image_config(image: str) -> None:
    config = _config(image)
    assert config["User"] == "10001:10001"
    assert "5000/tcp" in config["ExposedPorts"]  # type: ignore[operator]
    healthcheck = config["Healthcheck"]
    assert isinstance(healthcheck, dict)
    assert healthcheck["Test"][0] == "CMD", "HEALTHCHECK must be exec form"
    assert any("/healthz" in part for part in healthcheck["Test"])
    assert config["Entrypoint"] == ["mindproject"] and config["Cmd"] == ["serve"]
    assert "MINDPROJECT_HOST=0.0.0.0" in config["Env"]  # type: ignore[operator]


@pytest.fixture(scope="module")
def container(image: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    data = tmp_path_factory.mktemp("container-data")
    os.chown(data, 10001, 10001)
    key = secrets.token_urlsafe(48)
    token = _podman(
        "run", "--rm", *RUN_OPTS, "--env", f"MINDPROJECT_SECRET_KEY={key}",
        image, "token", "create", "--role", "admin",
    )  # fmt: skip
    assert token.returncode == 0, explain(token)
    port = free_port()
    name = f"mindproject-smoke-{port}"
    started = _podman(
        "run", "--detach", "--name", name, *RUN_OPTS,
        "--read-only", "--tmpfs", "/tmp",
        "--volume", f"{data}:/data",
        "--publish", f"127.0.0.1:{port}:5000",
        "--env", f"MINDPROJECT_SECRET_KEY={key}",
        "--env", "MINDPROJECT_SHUTDOWN_GRACE_SECONDS=10",
        image,
    )  # fmt: skip
    assert started.returncode == 0, explain(started)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"{url}/healthz", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                logs = _podman("logs", name)
                pytest.fail(f"the container did not answer /healthz in 30 s:\n{explain(logs)}")
            time.sleep(0.3)
        yield {"name": name, "url": url, "token": token.stdout.strip(), "data": str(data)}
    finally:
        _podman("rm", "--force", "--time", "2", name)


def _bootstrap_test(container: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, MINDPROJECT_URL=container["url"], MINDPROJECT_TOKEN=container["token"])
    return subprocess.run(
        ["bash", str(REPO / "bootstrap.sh"), "-a", "test", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_seed_calls_through_the_container(container: dict[str, str], tmp_path: Path) -> None:
    """bootstrap.sh -a test: PUT (seed's curl -F form), list, base64 and raw GET, byte compare."""
    upload = tmp_path / "telemetry.bin"
    upload.write_bytes(os.urandom(3 * 1024 * 1024 + 17))
    result = _bootstrap_test(container, "-i", "smoke-device-1", "-f", str(upload))
    assert result.returncode == 0, explain(result)
    assert "File uploaded for Device ID - smoke-device-1" in result.stdout
    assert "returned the uploaded bytes (base64)" in result.stdout
    assert "?encoding=raw returned the uploaded bytes" in result.stdout
    assert result.stdout.rstrip().endswith(container["url"])


def test_default_test_action_and_auth_required(container: dict[str, str]) -> None:
    result = _bootstrap_test(container)
    assert result.returncode == 0, explain(result)
    # Without the token the same call is refused: the image runs with auth on by default.
    anonymous = run(
        ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", f"{container['url']}/api/devices/"],
        timeout=30,
    )
    assert anonymous.stdout == "401", explain(anonymous)


def test_healthcheck_command_passes_inside_the_container(
    image: str, container: dict[str, str]
) -> None:
    test = _config(image)["Healthcheck"]["Test"]  # type: ignore[index]
    result = _podman("exec", container["name"], *test[1:])
    assert result.returncode == 0, explain(result)


def test_root_filesystem_is_read_only_and_user_is_not_root(container: dict[str, str]) -> None:
    result = _podman(
        "exec", container["name"], "python3", "-c",
        "import os; print(os.getuid()); open('/opt/venv/x', 'w')",
    )  # fmt: skip
    assert result.returncode != 0 and "Read-only file system" in result.stderr, explain(result)
    assert result.stdout.strip() == "10001"


def test_sigterm_stops_cleanly(image: str, tmp_path: Path) -> None:
    """SIGTERM (what ECS sends) ends the server with exit code 0 well within the grace period."""
    data = tmp_path / "data"
    data.mkdir()
    os.chown(data, 10001, 10001)
    name = f"mindproject-sigterm-{free_port()}"
    started = _podman(
        "run", "--detach", "--name", name, *RUN_OPTS, "--read-only", "--tmpfs", "/tmp",
        "--volume", f"{data}:/data", "--env", f"MINDPROJECT_SECRET_KEY={secrets.token_urlsafe(48)}",
        image,
    )  # fmt: skip
    assert started.returncode == 0, explain(started)
    try:
        time.sleep(3)
        began = time.monotonic()
        stopped = _podman("stop", "--time", "20", name)
        assert stopped.returncode == 0, explain(stopped)
        assert time.monotonic() - began < 15
        code = _podman("inspect", name, "--format", "{{.State.ExitCode}}")
        assert code.stdout.strip() == "0", explain(_podman("logs", name))
    finally:
        _podman("rm", "--force", name)


def test_tools_are_real(image: str) -> None:
    assert shutil.which("buildah") and shutil.which("podman")
