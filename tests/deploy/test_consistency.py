"""The deployment and the app agree: health path, port, shutdown grace and settings names.

Plain file checks plus the app's own settings and routes; no tools needed.
"""

from __future__ import annotations

import re

import pytest

from mindproject.api.health import routes as health_routes
from mindproject.config import Settings
from tests.deploy.tools import TERRAFORM_DIR
from tests.helpers import REPO

pytestmark = pytest.mark.deploy

DOCKERFILE = (REPO / "Dockerfile").read_text()
APPINFRA = TERRAFORM_DIR / "appinfra"


def _tf_default(variable: str) -> str:
    text = (APPINFRA / "variables.tf").read_text()
    block = re.search(rf'^variable "{variable}" \{{\n(.*?)^\}}', text, re.M | re.S)
    assert block, variable
    default = re.search(r"^\s+default\s+=\s+(.+)$", block.group(1), re.M)
    assert default, f"{variable} has no default"
    return default.group(1).strip().strip('"')


def test_health_check_path_is_the_apps_liveness_route() -> None:
    paths = {getattr(route, "path", None) for route in health_routes}
    assert "/healthz" in paths
    assert _tf_default("health_check_path") == "/healthz"
    healthcheck = re.search(r"^HEALTHCHECK .*?CMD (\[.*\])$", DOCKERFILE, re.M | re.S)
    assert healthcheck, "the Dockerfile has no exec-form HEALTHCHECK"
    assert "/healthz" in healthcheck.group(1)


def test_port_matches_the_apps_default() -> None:
    port = Settings.model_fields["port"].default
    assert port == 5000
    assert _tf_default("container_port") == str(port)
    assert re.search(rf"^EXPOSE {port}$", DOCKERFILE, re.M)
    assert f"MINDPROJECT_PORT={port}" in DOCKERFILE


def test_stop_timeout_covers_the_apps_shutdown_grace() -> None:
    grace = Settings.model_fields["shutdown_grace_seconds"].default
    assert float(_tf_default("shutdown_grace_seconds")) >= grace
    assert "stopTimeout = var.shutdown_grace_seconds + 10" in (APPINFRA / "ecs.tf").read_text()


def test_every_setting_the_deployment_passes_exists_in_the_app() -> None:
    """The app ignores unknown MINDPROJECT_* variables, so a typo would pass silently."""
    known = {f"MINDPROJECT_{name.upper()}" for name in Settings.model_fields}
    passed = set(re.findall(r"\b(MINDPROJECT_[A-Z_]+)\s*=", (APPINFRA / "ecs.tf").read_text()))
    passed |= set(
        re.findall(r'name\s+=\s+"(MINDPROJECT_[A-Z_]+)"', (APPINFRA / "ecs.tf").read_text())
    )
    passed |= set(re.findall(r"\b(MINDPROJECT_[A-Z_]+)=", DOCKERFILE))
    assert {"MINDPROJECT_HOST", "MINDPROJECT_STORAGE", "MINDPROJECT_SECRET_KEY"} <= passed
    assert passed <= known, f"settings the app does not know: {sorted(passed - known)}"


def test_host_is_all_interfaces_in_container_and_task() -> None:
    assert "MINDPROJECT_HOST=0.0.0.0" in DOCKERFILE
    assert 'MINDPROJECT_HOST                   = "0.0.0.0"' in (APPINFRA / "ecs.tf").read_text()
    assert Settings.model_fields["host"].default == "127.0.0.1"


def test_image_runs_as_a_numeric_non_root_user() -> None:
    users = re.findall(r"^USER (\S+)$", DOCKERFILE, re.M)
    assert users and re.fullmatch(r"[1-9][0-9]{3,}:[1-9][0-9]{3,}", users[-1]), users
    assert 'user                   = "10001:10001"' in (APPINFRA / "ecs.tf").read_text()
    assert users[-1] == "10001:10001"


def test_dockerfile_shape() -> None:
    stages = re.findall(r"^FROM \S+ AS (\w+)$", DOCKERFILE, re.M)
    assert stages == ["build", "runtime"], stages
    assert re.search(r"^ARG PYTHON_IMAGE=python:3\.11-slim-\w+$", DOCKERFILE, re.M)
    assert re.search(r'^ENTRYPOINT \["mindproject"\]$', DOCKERFILE, re.M)
    ignore = (REPO / ".dockerignore").read_text().split()
    assert ignore[0:1] == ["*"] or "*" in ignore, "the .dockerignore should allow-list"


def test_settings_passed_anywhere_in_appinfra_exist_in_the_app() -> None:
    """Every MINDPROJECT_* name in any appinfra file (secrets, the fleet index) is a setting."""
    known = {f"MINDPROJECT_{name.upper()}" for name in Settings.model_fields}
    passed: set[str] = set()
    for path in APPINFRA.glob("*.tf"):
        text = path.read_text()
        passed |= set(re.findall(r"\b(MINDPROJECT_[A-Z_]+)\s*=\s*\"", text))
        passed |= set(re.findall(r'name\s+=\s+"(MINDPROJECT_[A-Z_]+)"', text))
    expected = {"MINDPROJECT_SECRET_KEY", "MINDPROJECT_PREVIOUS_SECRET_KEYS", "MINDPROJECT_INDEX"}
    assert expected <= passed
    assert passed <= known, f"settings the app does not know: {sorted(passed - known)}"
