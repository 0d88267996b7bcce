"""Shared fixtures: the local S3 server (Ceph RADOS Gateway), storage backends, a live server."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import REPO, RunningServer, free_port, run_server

S3_SCRIPT = REPO / "scripts" / "s3-server.sh"


def _s3_unavailable_reason() -> str | None:
    if not S3_SCRIPT.exists():
        return f"{S3_SCRIPT} is missing"
    if not shutil.which("radosgw"):
        return (
            "radosgw is not installed (make test installs it: scripts/install-system-packages.sh)"
        )
    return None


@pytest.fixture(scope="session")
def s3_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A real S3 server on loopback, started for this test session by scripts/s3-server.sh."""
    if external := os.environ.get("MINDPROJECT_TEST_S3_ENDPOINT"):
        # Reuse a server someone already started (e.g. `make cluster`); keys from the env.
        yield {
            "AWS_ENDPOINT_URL": external,
            "AWS_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": os.environ["AWS_ACCESS_KEY_ID"],
            "AWS_SECRET_ACCESS_KEY": os.environ["AWS_SECRET_ACCESS_KEY"],
        }
        return
    reason = _s3_unavailable_reason()
    if reason:
        pytest.skip(f"S3 tests need the local Ceph S3 server: {reason}")
    workdir = tmp_path_factory.mktemp("ceph")
    port = free_port()
    started = subprocess.run(
        ["bash", str(S3_SCRIPT), "start", str(workdir), str(port)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if started.returncode != 0:
        pytest.fail(f"could not start the S3 server:\n{started.stdout}\n{started.stderr}")
    env = dict(line.split("=", 1) for line in started.stdout.splitlines() if "=" in line)
    try:
        yield env
    finally:
        subprocess.run(["bash", str(S3_SCRIPT), "stop", str(workdir)], timeout=60, check=False)


@pytest.fixture
def s3_bucket(s3_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh, empty bucket; the AWS variables point at the local S3 server."""
    for key, value in s3_env.items():
        monkeypatch.setenv(key, value)
    name = f"test-{uuid.uuid4().hex[:12]}"
    s3_client(s3_env).create_bucket(Bucket=name)
    return name


def s3_client(env: dict[str, str]) -> Any:
    """boto3, used only to inspect the S3 server from outside the service."""
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=env["AWS_ENDPOINT_URL"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        region_name=env.get("AWS_REGION", "us-east-1"),
        config=Config(s3={"addressing_style": "path"}),
    )


@pytest.fixture(params=["memory", "file", "s3"])
def storage_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A storage URL for each backend: the same tests run against all three."""
    if request.param == "memory":
        return "memory://"
    if request.param == "file":
        return f"file://{tmp_path / 'data'}"
    bucket = request.getfixturevalue("s3_bucket")
    return f"s3://{bucket}/telemetry"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RunningServer]:
    """A real `mindproject serve` process on the file backend."""
    with run_server(tmp_path, f"file://{tmp_path / 'data'}") as running:
        yield running


@pytest.fixture
def anyio_backend() -> tuple[str, dict[str, bool]]:
    # uvloop, as the server runs: obstore under the default asyncio loop aborts the process at
    # interpreter exit in about one run of five (SIGABRT), which uvloop does not show.
    return ("asyncio", {"use_uvloop": True})
