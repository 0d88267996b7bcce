"""Shared fixtures: a clean environment, the local S3 server (Ceph RADOS Gateway), storage
backends, the app in-process (`server`) and a real server process shared per module
(`live_server`)."""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.deploy.tools import STACKS
from tests.helpers import (
    CURRENT_TEST,
    REPO,
    AppServer,
    RunningServer,
    app_server,
    free_port,
    run_server,
    s3_client,
)

S3_SCRIPT = REPO / "scripts" / "s3-server.sh"
PG_SCRIPT = REPO / "scripts" / "postgres.sh"


@pytest.fixture(autouse=True)
def _clean_mindproject_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No MINDPROJECT_* setting from the developer's shell reaches a test (MINDPROJECT_TEST_*
    variables configure the test harness itself, e.g. an external S3 endpoint, and stay)."""
    for name in list(os.environ):
        if name.startswith("MINDPROJECT_") and not name.startswith("MINDPROJECT_TEST_"):
            monkeypatch.delenv(name)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Iterator[None]:
    CURRENT_TEST.append(item)  # read by run_server and run_cli (tests/helpers.py)
    try:
        return (yield)
    finally:
        CURRENT_TEST.pop()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    CURRENT_TEST.append(item)
    try:
        return (yield)
    finally:
        CURRENT_TEST.pop()


# Under xdist, tests run in groups, each on one worker: a module (its module-scoped servers are
# started once), except that the Terraform module is a group per stack (each stack's data dir is
# initialised by one worker, and appinfra's minutes of `terraform test` overlap the other stacks').
# The longest groups are collected first and handed out in that order, so that none of them
# starts last and becomes the tail of the run.
_LONG_GROUPS = ("container", "terraform-appinfra", "cluster", "terraform-cicd")


def _group_of(nodeid: str) -> str:
    path = nodeid.split("::", 1)[0]
    if path == "tests/deploy/test_container.py":
        return "container"
    if path == "tests/deploy/test_terraform.py":
        # The stack is the first part of the test's parameter id: test_validate[appinfra],
        # test_environment_tfvars_plan[cicd-prod]; the stack-less checks are a small group.
        stack = re.search(r"\[([a-z]+)", nodeid)
        return f"terraform-{stack.group(1)}" if stack and stack.group(1) in STACKS else "terraform"
    return path


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    # pytest-xdist's own --dist loadgroup marks a test's group in its node id, which pytest 9
    # no longer lets it change; grouping by node id here needs no marker.
    from xdist.scheduler import LoadScopeScheduling

    class GroupScheduling(LoadScopeScheduling):  # type: ignore[misc]
        def _split_scope(self, nodeid: str) -> str:
            return _group_of(nodeid)

    # By default the scheduler sorts the groups by their number of tests, which would undo the
    # collection order (the seven container tests would start near the end).
    config.option.loadscopereorder = False
    return GroupScheduling(config, log)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """`-m "not s3"` must mean no S3 server, `-m "not pg"` no PostgreSQL: a test that asks for
    one must say so. The longest groups first (see pytest_xdist_make_scheduler)."""

    def rank(item: pytest.Item) -> int:
        group = _group_of(item.nodeid)
        if group.startswith("tests/cluster/"):
            group = "cluster"
        return _LONG_GROUPS.index(group) if group in _LONG_GROUPS else len(_LONG_GROUPS)

    items.sort(key=rank)  # stable: the order inside each rank stays the collection's
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        wants_s3 = {"s3_env", "s3_bucket"} & fixtures
        if wants_s3 and item.get_closest_marker("s3") is None:
            raise pytest.UsageError(f"{item.nodeid} uses {sorted(wants_s3)} but is not marked s3")
        wants_pg = {"pg_env", "pg_index_url"} & fixtures
        if wants_pg and item.get_closest_marker("pg") is None:
            raise pytest.UsageError(f"{item.nodeid} uses {sorted(wants_pg)} but is not marked pg")


def _s3_unavailable_reason() -> str | None:
    if not S3_SCRIPT.exists():
        return f"{S3_SCRIPT} is missing"
    if not shutil.which("radosgw"):
        return (
            "radosgw is not installed (make test installs it: scripts/install-system-packages.sh)"
        )
    return None


# One S3 server for the whole run, whichever xdist worker needs it first: the process that
# configures pytest (the controller, or the only process) makes a folder the workers inherit
# through this variable, and stops the server at the end.
SHARED_DIR_VARIABLE = "MINDPROJECT_TEST_SHARED_DIR"


def pytest_configure(config: pytest.Config) -> None:
    if not hasattr(config, "workerinput") and SHARED_DIR_VARIABLE not in os.environ:
        os.environ[SHARED_DIR_VARIABLE] = tempfile.mkdtemp(prefix="mindproject-test-")
        config.stash[_OWNED_SHARED_DIR] = Path(os.environ[SHARED_DIR_VARIABLE])


def pytest_unconfigure(config: pytest.Config) -> None:
    shared = config.stash.get(_OWNED_SHARED_DIR, None)
    if shared is None:
        return
    if (shared / "ceph" / "env").exists():
        subprocess.run(["bash", str(S3_SCRIPT), "stop", str(shared / "ceph")], timeout=60)
    if (shared / "postgres" / "env").exists():
        subprocess.run(
            ["bash", str(PG_SCRIPT), "stop", str(shared / "postgres"), "--purge"], timeout=60
        )
    shutil.rmtree(shared, ignore_errors=True)
    del os.environ[SHARED_DIR_VARIABLE]


_OWNED_SHARED_DIR = pytest.StashKey[Path]()


def _start_shared_s3_server() -> dict[str, str]:
    """Start the run's S3 server unless a worker already did; its AWS_* settings."""
    shared = Path(os.environ[SHARED_DIR_VARIABLE])
    workdir = shared / "ceph"
    with (shared / "ceph.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # the other workers wait for the first one's start
        if not (workdir / "env").exists():
            workdir.mkdir(exist_ok=True)
            started = subprocess.run(
                ["bash", str(S3_SCRIPT), "start", str(workdir), str(free_port())],
                capture_output=True,
                text=True,
                timeout=300,
                check=False,
            )
            if started.returncode != 0:
                pytest.fail(f"could not start the S3 server:\n{started.stdout}\n{started.stderr}")
        text = (workdir / "env").read_text()
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


@pytest.fixture(scope="session")
def s3_env() -> dict[str, str]:
    """A real S3 server on loopback, started once for this test run by scripts/s3-server.sh
    (shared by every xdist worker; each test gets its own bucket)."""
    if external := os.environ.get("MINDPROJECT_TEST_S3_ENDPOINT"):
        # Reuse a server someone already started (e.g. `make cluster`); keys from the env.
        return {
            "AWS_ENDPOINT_URL": external,
            "AWS_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": os.environ["AWS_ACCESS_KEY_ID"],
            "AWS_SECRET_ACCESS_KEY": os.environ["AWS_SECRET_ACCESS_KEY"],
        }
    reason = _s3_unavailable_reason()
    if reason:
        pytest.skip(f"S3 tests need the local Ceph S3 server: {reason}")
    return _start_shared_s3_server()


@pytest.fixture
def s3_bucket(
    s3_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> str:
    """A fresh, empty bucket; the AWS variables point at the local S3 server."""
    if request.node.get_closest_marker("s3") is None:  # e.g. through getfixturevalue
        pytest.fail(f"{request.node.nodeid} uses the S3 server but is not marked s3")
    for key, value in s3_env.items():
        monkeypatch.setenv(key, value)
    name = f"test-{uuid.uuid4().hex[:12]}"
    s3_client(s3_env).create_bucket(Bucket=name)
    return name


def _pg_unavailable_reason() -> str | None:
    if not PG_SCRIPT.exists():
        return f"{PG_SCRIPT} is missing"
    if not list(Path("/usr/lib/postgresql").glob("*/bin/initdb")) and not shutil.which("initdb"):
        return "PostgreSQL is not installed (make test installs Debian's postgresql package)"
    return None


def _start_shared_pg_server() -> str:
    """Start the run's PostgreSQL unless a worker already did (as the S3 server); its URL."""
    shared = Path(os.environ[SHARED_DIR_VARIABLE])
    workdir = shared / "postgres"
    with (shared / "postgres.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (workdir / "env").exists():
            started = subprocess.run(
                ["bash", str(PG_SCRIPT), "start", str(workdir)],
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
            if started.returncode != 0:
                pytest.fail(f"could not start PostgreSQL:\n{started.stdout}\n{started.stderr}")
        text = (workdir / "env").read_text()
    return text.strip().split("=", 1)[1]


@pytest.fixture(scope="session")
def pg_env() -> str:
    """A real PostgreSQL on loopback (scripts/postgres.sh), started once for this test run and
    shared by every xdist worker; its URL (each test gets a schema of its own)."""
    if external := os.environ.get("MINDPROJECT_TEST_INDEX"):
        return external  # a server someone already started (e.g. `make cluster`)
    reason = _pg_unavailable_reason()
    if reason:
        pytest.skip(f"PostgreSQL tests need the local server: {reason}")
    return _start_shared_pg_server()


@pytest.fixture
def pg_index_url(pg_env: str, request: pytest.FixtureRequest) -> str:
    """An index URL whose tables live in a fresh schema of their own (asyncpg hands the URL's
    `search_path` to the server). Schemas are not dropped (about a second each with fsync on,
    on this machine): the server and its data go at the end of the run."""
    if request.node.get_closest_marker("pg") is None:  # e.g. through getfixturevalue
        pytest.fail(f"{request.node.nodeid} uses PostgreSQL but is not marked pg")
    schema = f"t_{uuid.uuid4().hex[:12]}"
    subprocess.run(
        ["psql", "-q", "-v", "ON_ERROR_STOP=1", pg_env, "-c", f"CREATE SCHEMA {schema}"],
        check=True,
        timeout=30,
    )
    return f"{pg_env}?search_path={schema}"


@pytest.fixture(
    params=[
        "memory",
        "file",
        pytest.param("s3", marks=pytest.mark.s3),
        pytest.param("fleet", marks=[pytest.mark.s3, pytest.mark.pg]),
    ]
)
def storage_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A storage URL for each backend: the same tests run against all of them ("fleet": S3
    with the PostgreSQL index of `storage_index`)."""
    if request.param == "memory":
        return "memory://"
    if request.param == "file":
        return f"file://{tmp_path / 'data'}"
    bucket = request.getfixturevalue("s3_bucket")
    return f"s3://{bucket}/telemetry"


@pytest.fixture
def storage_index(storage_url: str, request: pytest.FixtureRequest) -> str | None:
    """The index URL (MINDPROJECT_INDEX) that goes with `storage_url`: only the fleet mode's."""
    if request.node.callspec.params.get("storage_url") != "fleet":
        return None
    url: str = request.getfixturevalue("pg_index_url")
    return url


@pytest.fixture
def server(tmp_path: Path) -> Iterator[AppServer]:
    """The app in this process on the file backend, token auth on: for route and behaviour
    tests, which need no socket."""
    with app_server(f"file://{tmp_path / 'data'}") as running:
        yield running


@pytest.fixture(scope="module")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """A real `mindproject serve` process on the file backend, shared by a module's tests that
    need a socket (raw bytes on the wire, curl, the SDK): each test uses its own device ids."""
    tmp_path = tmp_path_factory.mktemp("live")
    with run_server(tmp_path, f"file://{tmp_path / 'data'}") as running:
        yield running


@pytest.fixture
def anyio_backend() -> tuple[str, dict[str, bool]]:
    # uvloop, as the server runs: obstore under the default asyncio loop aborts the process at
    # interpreter exit in about one run of five (SIGABRT), which uvloop does not show.
    return ("asyncio", {"use_uvloop": True})
