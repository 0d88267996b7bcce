"""Where the deployment checks find their tools, and why they skip when one is missing.

Terraform, checkov, hadolint, shellcheck, buildah and podman are looked up here; a test skips
only when its tool is truly absent, naming the tool and how `make test` installs it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.helpers import REPO

TERRAFORM_DIR = REPO / "deploy" / "terraform"
STACKS = ("networking", "appinfra", "cicd")
ENVIRONMENTS = ("dev", "prod", "dr")
# The dr environment (second region) has no pipeline of its own: prod's delivers to it.
STACK_ENVIRONMENTS = {
    "networking": ENVIRONMENTS,
    "appinfra": ENVIRONMENTS,
    "cicd": ("dev", "prod"),
}
CACHE = REPO / ".cache" / "deploy"
CHECKOV_VENV = REPO / ".cache" / "checkov-venv"

# Where a local filesystem mirror of registry.terraform.io providers may live.
PROVIDER_MIRROR_CANDIDATES = (
    os.environ.get("MINDPROJECT_TF_PLUGIN_DIR", ""),
    "/opt/tf-plugins",
    "/usr/share/terraform/plugins",
    str(Path.home() / ".terraform.d" / "plugins"),
)


def require(tool: str, hint: str) -> str:
    """Path of `tool`, or skip the test saying that it is absent and how to get it."""
    path = shutil.which(tool)
    if path is None:
        pytest.skip(f"{tool} is not installed: {hint}")
    return path


def venv_tool(name: str) -> str:
    path = CHECKOV_VENV / "bin" / name
    if not path.exists():
        pytest.skip(f"{path} is missing: `make deploy-tools` creates checkov's own venv")
    return str(path)


def provider_mirror() -> Path | None:
    for candidate in PROVIDER_MIRROR_CANDIDATES:
        if candidate and (Path(candidate) / "registry.terraform.io" / "hashicorp" / "aws").is_dir():
            return Path(candidate)
    return None


def terraform_env(tmp_root: Path) -> dict[str, str]:
    """Environment for offline Terraform: a CLI config that installs providers only from the
    local mirror, plugin cache and data dirs outside the work tree."""
    terraform = require("terraform", "install Terraform >= 1.10 (docs/deploy.md)")
    version = subprocess.run(
        [terraform, "version", "-json"], capture_output=True, text=True, check=False
    ).stdout
    mirror = provider_mirror()
    if mirror is None:
        pytest.skip(
            "no local mirror of the hashicorp/aws provider (looked in "
            + ", ".join(c for c in PROVIDER_MIRROR_CANDIDATES if c)
            + "); set MINDPROJECT_TF_PLUGIN_DIR to one, the registry is unreachable here"
        )
    tmp_root.mkdir(parents=True, exist_ok=True)
    cli_config = tmp_root / "terraform.tfrc"
    # Written whole, then renamed: several xdist workers write it while others' Terraform reads it.
    partial = cli_config.with_name(f"{cli_config.name}.{os.getpid()}")
    partial.write_text(
        "provider_installation {\n"
        f'  filesystem_mirror {{\n    path    = "{mirror}"\n'
        '    include = ["registry.terraform.io/*/*"]\n  }\n'
        '  direct {\n    exclude = ["registry.terraform.io/*/*"]\n  }\n'
        "}\n"
    )
    partial.replace(cli_config)
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("TF_", "AWS_")) or k == "TF_LOG"
    }
    env.update(
        TF_CLI_CONFIG_FILE=str(cli_config),
        TF_IN_AUTOMATION="1",
        TF_INPUT="0",
        CHECKPOINT_DISABLE="1",
        # Never reach a real account, whatever the caller's environment holds.
        AWS_ACCESS_KEY_ID="AKIAMOCKMOCKMOCKMOCK",
        AWS_SECRET_ACCESS_KEY="mock",
        AWS_EC2_METADATA_DISABLED="true",
    )
    env["MINDPROJECT_TERRAFORM_VERSION_JSON"] = version
    return env


def run(
    cmd: list[str], *, cwd: Path | None = None, env: dict[str, str] | None = None, timeout: float
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def explain(result: subprocess.CompletedProcess[str]) -> str:
    return f"$ {' '.join(result.args)}\nexit {result.returncode}\n{result.stdout}\n{result.stderr}"
