"""bootstrap.sh against stub `aws`, `terraform`, `docker` and `buildah` commands on PATH: `-a plan`
plans every stack of the environment and changes nothing; outside dev, `create` shows the plan
and applies nothing without a typed yes, and refuses the tfvars' example values. The stubs log
their arguments and answer the few questions the script asks (account id, state bucket)."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.deploy.tools import TERRAFORM_DIR, explain
from tests.helpers import REPO

pytestmark = pytest.mark.deploy

STUB = """#!/usr/bin/env bash
printf '%s\\n' "$(basename "$0") $*" >>"$STUB_LOG"
case "$(basename "$0") $*" in
  "aws sts get-caller-identity"*) echo 123456789012 ;;
  "aws s3api head-bucket"*) exit 0 ;;
  "aws "*) exit 0 ;;
  "terraform "*" plan"*) echo "Plan: 3 to add, 0 to change, 0 to destroy." ;;
  "terraform "*" output -raw "*) echo "stub-output" ;;
esac
exit 0
"""

MUTATING = ("apply", "destroy", "import", "state rm", "taint")
AWS_MUTATING = ("create-", "put-", "delete-", "restore-", "update-", "execute-command", "tag-")


@pytest.fixture
def stubs(tmp_path: Path) -> Iterator[tuple[dict[str, str], Path]]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("aws", "terraform", "docker", "buildah"):
        path = bin_dir / name
        path.write_text(STUB)
        path.chmod(0o755)
    log = tmp_path / "calls.log"
    log.touch()
    env = {
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "HOME": str(tmp_path),
        "STUB_LOG": str(log),
        "TMPDIR": str(tmp_path),
        "IMAGE_TAG": "0123456789ab",
    }
    yield env, log


def _run(args: list[str], env: dict[str, str], stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(REPO / "bootstrap.sh"), *args],
        cwd=REPO,
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _calls(log: Path) -> list[str]:
    return log.read_text().splitlines()


def _assert_changes_nothing(calls: list[str]) -> None:
    terraform = [c for c in calls if c.startswith("terraform ")]
    assert not [c for c in terraform if any(f" {m}" in c for m in MUTATING)], terraform
    aws = [c for c in calls if c.startswith("aws ")]
    assert not [c for c in aws if any(f" {m}" in c for m in AWS_MUTATING)], aws
    assert not [c for c in calls if c.startswith(("docker ", "buildah "))], calls


@pytest.mark.parametrize(
    ("environment", "stacks"),
    [
        ("dev", ["networking", "appinfra", "cicd"]),
        ("prod", ["networking", "appinfra", "cicd"]),
        ("dr", ["networking", "appinfra"]),
    ],
)
def test_plan_plans_every_stack_and_changes_nothing(
    stubs: tuple[dict[str, str], Path], environment: str, stacks: list[str]
) -> None:
    env, log = stubs
    result = _run(["-a", "plan", "-e", environment], env)
    assert result.returncode == 0, explain(result)
    calls = _calls(log)
    plans = [c for c in calls if c.startswith("terraform ") and " plan " in c]
    planned = [c.split("-chdir=")[1].split()[0].rsplit("/", 1)[1] for c in plans]
    assert planned == stacks, plans
    for call in plans:
        assert f"-var-file=vars/{environment}.tfvars" in call and "-lock=false" in call, call
        assert "-out=" not in call, call
    assert "-var=image_tag=0123456789ab" in next(c for c in plans if "/appinfra " in c)
    inits = [c for c in calls if " init " in c]
    assert all(f"-backend-config=backends/{environment}.backend" in c for c in inits), inits
    _assert_changes_nothing(calls)
    assert "nothing was applied" in result.stderr


def test_plan_never_creates_the_state_bucket(stubs: tuple[dict[str, str], Path]) -> None:
    env, log = stubs
    stub = Path(env["PATH"].split(":")[0]) / "aws"
    head_bucket = '"aws s3api head-bucket"*)'
    stub.write_text(STUB.replace(f"{head_bucket} exit 0 ;;", f"{head_bucket} exit 1 ;;"))
    result = _run(["-a", "plan"], env)
    assert result.returncode != 0
    assert "does not exist" in result.stderr, explain(result)
    _assert_changes_nothing(_calls(log))


def test_create_refuses_the_example_values_outside_dev(stubs: tuple[dict[str, str], Path]) -> None:
    env, log = stubs
    result = _run(["-a", "create", "-e", "prod"], env)
    assert result.returncode != 0
    assert "example values" in result.stderr, explain(result)
    _assert_changes_nothing(_calls(log))


@pytest.fixture
def qa_environment() -> Iterator[str]:
    """A throwaway non-dev environment without example values (files removed afterwards)."""
    created: list[Path] = []
    try:
        for stack in ("networking", "appinfra"):
            for kind, suffix in (("vars", "tfvars"), ("backends", "backend")):
                source = TERRAFORM_DIR / stack / kind / f"dev.{suffix}"
                target = TERRAFORM_DIR / stack / kind / f"qa.{suffix}"
                text = source.read_text().replace('"dev"', '"qa"').replace("/dev/", "/qa/")
                if stack == "appinfra" and kind == "vars":
                    text += '\nalarm_email = "oncall@qa.invalid"\n'
                target.write_text(text)
                created.append(target)
        yield "qa"
    finally:
        for path in created:
            path.unlink(missing_ok=True)


@pytest.mark.parametrize("answer", ["no\n", "", "y\n"])
def test_create_outside_dev_applies_nothing_without_a_yes(
    stubs: tuple[dict[str, str], Path], qa_environment: str, answer: str
) -> None:
    env, log = stubs
    result = _run(["-a", "create", "-e", qa_environment], env, stdin=answer)
    assert result.returncode != 0
    assert "Type yes to apply" in result.stderr and "not applied" in result.stderr, explain(result)
    calls = _calls(log)
    assert [c for c in calls if " plan " in c and "/networking " in c], calls
    _assert_changes_nothing(calls)


def test_create_outside_dev_applies_the_shown_plan_after_yes(
    stubs: tuple[dict[str, str], Path], qa_environment: str
) -> None:
    """After `yes`, exactly the saved plan file is applied (the stubbed run stops later, at the
    image push: the stub registry has no repository URL)."""
    env, log = stubs
    _run(["-a", "create", "-e", qa_environment], env, stdin="yes\nyes\nyes\nyes\n")
    calls = _calls(log)
    plan = next(c for c in calls if " plan " in c and "/networking " in c)
    plan_file = plan.split("-out=")[1].split()[0]
    apply = next(c for c in calls if " apply " in c and "/networking " in c)
    assert apply.endswith(f"apply -input=false {plan_file}"), apply
    assert "-auto-approve" not in "\n".join(calls)


def test_build_targets_the_tasks_architecture() -> None:
    text = (REPO / "bootstrap.sh").read_text()
    assert 'docker build --platform "$target_platform"' in text
    assert 'X86_64) echo "linux/amd64"' in text and 'ARM64) echo "linux/arm64"' in text
    assert shutil.which("bash")
