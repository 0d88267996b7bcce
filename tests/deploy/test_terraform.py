"""Terraform: formatting, offline init + validate per stack, and `terraform test` with a mocked
AWS provider (each stack's tests/*.tftest.hcl asserts what matters), plus a plan of every stack
with each environment's tfvars."""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.deploy.tools import (
    CACHE,
    STACK_ENVIRONMENTS,
    STACKS,
    TERRAFORM_DIR,
    explain,
    run,
    terraform_env,
)

pytestmark = pytest.mark.deploy


@pytest.fixture(scope="module")
def tf_env() -> dict[str, str]:
    return terraform_env(CACHE / "terraform")


@pytest.fixture(scope="module")
def initialise(tf_env: dict[str, str]) -> Iterator[Callable[[str], dict[str, str]]]:
    """`terraform init -backend=false` of a stack when its first test asks, data dir under
    .cache/deploy/terraform/<stack>; its environment for the stack's later tests. Under xdist a
    stack's tests are a group of their own (tests/conftest.py), so only one worker initialises
    (and uses) a data dir, and the stacks run in parallel.

    init writes .terraform.lock.hcl beside the code (TF_DATA_DIR does not move it); the lock
    files this fixture creates are removed again, so the tree stays as it was."""
    envs: dict[str, dict[str, str]] = {}
    created: list[Path] = []

    def init(stack: str) -> dict[str, str]:
        if stack not in envs:
            lock_file = TERRAFORM_DIR / stack / ".terraform.lock.hcl"
            if not lock_file.exists():
                created.append(lock_file)
            env = dict(tf_env, TF_DATA_DIR=str(CACHE / "terraform" / stack))
            result = run(
                ["terraform", "init", "-backend=false", "-input=false", "-no-color"],
                cwd=TERRAFORM_DIR / stack,
                env=env,
                timeout=180,
            )
            assert result.returncode == 0, explain(result)
            envs[stack] = env
        return envs[stack]

    try:
        yield init
    finally:
        for lock_file in created:
            lock_file.unlink(missing_ok=True)


@pytest.fixture
def stack_env(stack: str, initialise: Callable[[str], dict[str, str]]) -> dict[str, str]:
    """The environment for Terraform commands in the test's (initialised) stack."""
    return initialise(stack)


def test_terraform_fmt(tf_env: dict[str, str]) -> None:
    result = run(
        ["terraform", "fmt", "-check", "-diff", "-recursive", "-no-color", str(TERRAFORM_DIR)],
        env=tf_env,
        timeout=60,
    )
    assert result.returncode == 0, "terraform fmt would change files:\n" + explain(result)


@pytest.mark.parametrize("stack", STACKS)
def test_validate(stack: str, stack_env: dict[str, str]) -> None:
    result = run(
        ["terraform", "validate", "-no-color"],
        cwd=TERRAFORM_DIR / stack,
        env=stack_env,
        timeout=120,
    )
    assert result.returncode == 0, explain(result)
    assert "Success!" in result.stdout


@pytest.mark.parametrize("stack", STACKS)
def test_terraform_test(stack: str, stack_env: dict[str, str]) -> None:
    """Runs the stack's tests/*.tftest.hcl (mock_provider "aws"); every run must pass. A
    `terraform test` per file, all at once: each file has its own state anyway, and appinfra's
    two take minutes one after the other."""
    files = sorted((TERRAFORM_DIR / stack / "tests").glob("*.tftest.hcl"))
    assert files, f"{stack} has no tests"
    with ThreadPoolExecutor(len(files)) as pool:
        results = list(
            pool.map(
                lambda path: run(
                    ["terraform", "test", "-no-color", f"-filter=tests/{path.name}"],
                    cwd=TERRAFORM_DIR / stack,
                    env=stack_env,
                    timeout=600,
                ),
                files,
            )
        )
    passed = 0
    for result in results:
        assert result.returncode == 0, explain(result)
        summary = re.search(r"Success! (\d+) passed, 0 failed", result.stdout)
        assert summary, explain(result)
        assert " skip" not in result.stdout, "a terraform test run was skipped:\n" + explain(result)
        passed += int(summary.group(1))
    assert passed >= 5, "\n".join(explain(result) for result in results)


@pytest.mark.parametrize(
    ("stack", "environment"),
    [(stack, env) for stack in STACKS for env in STACK_ENVIRONMENTS[stack]],
)
def test_environment_tfvars_plan(stack: str, environment: str, stack_env: dict[str, str]) -> None:
    """Each environment's tfvars pass the variables' validations and plan (mocked provider)."""
    var_file = TERRAFORM_DIR / stack / "vars" / f"{environment}.tfvars"
    assert var_file.exists()
    assert (TERRAFORM_DIR / stack / "backends" / f"{environment}.backend").exists()
    result = run(
        [
            "terraform",
            "test",
            "-no-color",
            "-test-directory=tests/tfvars",
            f"-var-file=vars/{environment}.tfvars",
        ],
        cwd=TERRAFORM_DIR / stack,
        env=stack_env,
        timeout=300,
    )
    assert result.returncode == 0, explain(result)
    assert re.search(r"Success! [1-9]\d* passed, 0 failed", result.stdout), explain(result)


def _blocks(text: str, kind: str) -> dict[str, str]:
    """Top-level `kind "name" { ... }` blocks of a Terraform file, by name."""
    blocks: dict[str, str] = {}
    for match in re.finditer(rf'^{kind} "([^"]+)" \{{\n(.*?)^\}}', text, re.M | re.S):
        blocks[match.group(1)] = match.group(2)
    return blocks


@pytest.mark.parametrize("stack", STACKS)
def test_variables_and_outputs_are_described(stack: str) -> None:
    for kind in ("variable", "output"):
        for path in sorted((TERRAFORM_DIR / stack).glob("*.tf")):
            for name, body in _blocks(path.read_text(), kind).items():
                assert re.search(r"^\s+description\s+=\s+\"\S", body, re.M), (
                    f"{stack}/{path.name}: {kind} {name} has no description"
                )
                if kind == "variable":
                    assert re.search(r"^\s+type\s+=", body, re.M), f"{stack}: {name} has no type"


@pytest.mark.parametrize("stack", STACKS)
def test_backends_are_remote_and_locked(stack: str) -> None:
    for environment in STACK_ENVIRONMENTS[stack]:
        text = (TERRAFORM_DIR / stack / "backends" / f"{environment}.backend").read_text()
        assert f'key          = "mindproject/{environment}/{stack}.tfstate"' in text
        assert "encrypt      = true" in text and "use_lockfile = true" in text


def test_no_hard_coded_account_ids() -> None:
    """Account IDs come from aws_caller_identity; only tests and comments may show examples."""
    offenders = []
    for path in TERRAFORM_DIR.rglob("*"):
        if path.suffix not in {".tf", ".tfvars", ".backend"} or ".terraform" in path.parts:
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split("#", 1)[0]
            if re.search(r"(?<![0-9])[0-9]{12}(?![0-9])", code):
                offenders.append(f"{path.relative_to(TERRAFORM_DIR)}:{number}: {line.strip()}")
    assert not offenders, "hard-coded account IDs:\n" + "\n".join(offenders)


def test_tree_stays_clean() -> None:
    """Offline runs must leave no .terraform folder or state in the tree. (Lock files are not
    checked here: other workers' stacks hold theirs while this runs; the init fixture removes
    the ones it created.)"""
    leftovers = [
        p
        for p in TERRAFORM_DIR.rglob("*")
        if p.name in {".terraform", "terraform.tfstate"} or p.suffix == ".tfstate"
    ]
    assert not leftovers, leftovers


def test_terraform_binary_is_recent_enough(tf_env: dict[str, str]) -> None:
    """S3 lock files (use_lockfile) need Terraform >= 1.10."""
    version = re.search(
        r'"terraform_version":\s*"(\d+)\.(\d+)', tf_env["MINDPROJECT_TERRAFORM_VERSION_JSON"]
    )
    assert version, tf_env["MINDPROJECT_TERRAFORM_VERSION_JSON"]
    assert (int(version.group(1)), int(version.group(2))) >= (1, 10)
    assert shutil.which("terraform")
    assert Path(tf_env["TF_CLI_CONFIG_FILE"]).exists()


@pytest.mark.parametrize(
    ("stack", "environment"),
    [(stack, env) for stack in STACKS for env in STACK_ENVIRONMENTS[stack]],
)
def test_environment_tfvars_name_only_declared_variables(stack: str, environment: str) -> None:
    """`terraform test -var-file` (the plan above) accepts a tfvars key no variable declares
    (a typo such as `min_task = 2` would be dropped silently, the default kept): checked here."""
    declared: set[str] = set()
    for path in (TERRAFORM_DIR / stack).glob("*.tf"):
        declared |= set(_blocks(path.read_text(), "variable"))
    text = (TERRAFORM_DIR / stack / "vars" / f"{environment}.tfvars").read_text()
    keys = set(re.findall(r"^([A-Za-z_][A-Za-z0-9_-]*)\s*=", text, re.M))
    assert keys, f"{stack}/{environment}.tfvars sets nothing"
    assert keys <= declared, f"{stack}/{environment}.tfvars: undeclared {sorted(keys - declared)}"
