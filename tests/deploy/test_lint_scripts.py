"""hadolint on the Dockerfile, shellcheck on every shell script, and bootstrap.sh's interface."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.deploy.tools import explain, require, run, venv_tool
from tests.helpers import REPO

pytestmark = pytest.mark.deploy


def shell_scripts() -> list[Path]:
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "*.sh"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    scripts = {REPO / p for p in listed if (REPO / p).exists()}
    scripts.add(REPO / "bootstrap.sh")
    return sorted(scripts)


def test_hadolint_dockerfile() -> None:
    hadolint = venv_tool("hadolint")
    result = run([hadolint, "--failure-threshold", "style", str(REPO / "Dockerfile")], timeout=60)
    assert result.returncode == 0, explain(result)


def test_shellcheck_every_script() -> None:
    shellcheck = require("shellcheck", "make test installs it (APT_PACKAGES in mk/deploy.mk)")
    scripts = shell_scripts()
    assert REPO / "bootstrap.sh" in scripts and len(scripts) >= 2
    result = run(
        [shellcheck, "--external-sources", "--severity=style", *map(str, scripts)],
        cwd=REPO,
        timeout=120,
    )
    assert result.returncode == 0, explain(result)


def test_bootstrap_is_strict_bash() -> None:
    text = (REPO / "bootstrap.sh").read_text()
    assert text.startswith("#!/usr/bin/env bash\n")
    assert "\nset -euo pipefail\n" in text
    assert (REPO / "bootstrap.sh").stat().st_mode & 0o111


def _bootstrap(*args: str) -> subprocess.CompletedProcess[str]:
    return run(["bash", str(REPO / "bootstrap.sh"), *args], cwd=REPO, timeout=30)


def test_bootstrap_help_names_the_seed_options() -> None:
    result = _bootstrap("-h")
    assert result.returncode == 0, explain(result)
    for option in ("a", "t", "e", "i", "f", "h"):
        assert f"\n{option}     " in result.stdout, f"-{option} is not documented"
    assert "create|plan|test|destroy" in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-a", "bogus"], "unknown action"),
        (["-e", "Prod!", "-a", "test"], "invalid environment"),
        (["-a"], "needs a value"),
        (["-x"], "unknown option"),
        (["-a", "test", "extra"], "unexpected arguments"),
    ],
)
def test_bootstrap_rejects_bad_usage(args: list[str], message: str) -> None:
    result = _bootstrap(*args)
    assert result.returncode != 0
    assert message in result.stderr, explain(result)


def test_bootstrap_without_action_prints_usage() -> None:
    result = _bootstrap()
    assert result.returncode == 2
    assert "Syntax:" in result.stderr


def test_buildspec_is_valid_yaml_with_the_pipeline_steps() -> None:
    """Parsed with the PyYAML that checkov's venv brings along."""
    python = venv_tool("python")
    script = "import json, sys, yaml; print(json.dumps(yaml.safe_load(open(sys.argv[1]))))"
    result = run([python, "-c", script, str(REPO / "deploy" / "buildspec.yml")], timeout=60)
    assert result.returncode == 0, explain(result)
    import json

    spec = json.loads(result.stdout)
    assert spec["version"] == 0.2
    commands = "\n".join(c for phase in spec["phases"].values() for c in phase.get("commands", []))
    assert "make test" in commands, "the build must run the tests"
    assert 'docker push "$IMAGE_URI"' in commands and "COMMIT_ID:0:12" in commands
    assert set(spec["artifacts"]["files"]) == {
        "imagedefinitions.json",
        "imageDetail.json",
        "taskdef.json",
        "appspec.yaml",
    }


def _buildspec(name: str) -> dict[str, Any]:
    import json

    python = venv_tool("python")
    script = "import json, sys, yaml; print(json.dumps(yaml.safe_load(open(sys.argv[1]))))"
    result = run([python, "-c", script, str(REPO / "deploy" / name)], timeout=60)
    assert result.returncode == 0, explain(result)
    spec: dict[str, Any] = json.loads(result.stdout)
    return spec


def _commands(spec: dict[str, Any]) -> str:
    return "\n".join(c for phase in spec["phases"].values() for c in phase.get("commands", []))


def test_build_gates_on_the_image_scan_and_pins_the_digest() -> None:
    spec = _buildspec("buildspec.yml")
    commands = _commands(spec)
    assert "aws ecr wait image-scan-complete" in commands
    assert "describe-image-scan-findings" in commands and "$SCAN_FAIL_SEVERITY" in commands
    assert commands.index("image-scan-complete") < commands.index("imagedefinitions.json")
    assert 'IMAGE_REF="$ECR_REPOSITORY_URL@$IMAGE_DIGEST"' in commands
    assert '"$CONTAINER_NAME" "$IMAGE_REF" > imagedefinitions.json' in commands
    assert '--platform "$IMAGE_PLATFORM"' in commands
    assert spec["env"]["exported-variables"] == ["IMAGE_URI", "IMAGE_DIGEST"]


def test_promotion_copies_the_tested_digest_and_checks_it() -> None:
    spec = _buildspec("buildspec-promote.yml")
    commands = _commands(spec)
    assert "docker build" not in commands, "promotion must not rebuild"
    assert "skopeo copy --preserve-digests" in commands
    assert '[ "$PROMOTED" = "$DIGEST" ]' in commands
    assert 'IMAGE_REF="$ECR_REPOSITORY_URL@$DIGEST"' in commands
    assert set(spec["artifacts"]["files"]) == {
        "imagedefinitions.json",
        "imageDetail.json",
        "taskdef.json",
        "appspec.yaml",
    }


def test_smoke_test_checks_health_auth_and_the_seed_calls() -> None:
    commands = _commands(_buildspec("buildspec-smoke.yml"))
    for needle in ("/healthz", "/readyz", '"401"', "./bootstrap.sh -a test -i pipeline-smoke"):
        assert needle in commands, needle
