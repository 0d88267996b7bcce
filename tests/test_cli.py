"""The `mindproject` command's start-up: the admin token is shown once, when the key is made."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import jwt
import pytest

from mindproject.cli.main import build_parser, main, parse_ttl
from mindproject.cli.server import prepare_keys, self_command
from mindproject.config import load_settings
from tests.helpers import TEST_SECRET_KEY

JWT = re.compile(r"eyJ[\w-]+\.[\w-]+\.[\w-]+")


def test_admin_token_is_printed_only_when_the_key_is_created(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Nine starts printed nine live 24-hour admin tokens: a container's logs would collect
    one per restart."""
    settings = load_settings(storage=f"file://{tmp_path / 'data'}")
    prepare_keys(settings)
    first = capsys.readouterr().err
    assert JWT.search(first)
    assert "created now" in first
    for _ in range(3):
        prepare_keys(settings)
        later = capsys.readouterr().err
        assert "TOKEN=" not in later
        assert JWT.search(later) is None
        assert "token create --role admin" in later


@pytest.mark.parametrize(
    ("argv0", "on_path", "expected"),
    [
        (".venv/bin/mindproject", None, ".venv/bin/mindproject"),  # make run, venv not active
        ("mindproject", "SELF", "mindproject"),
        ("/usr/bin/pytest", None, "-m mindproject.cli"),
    ],
)
def test_banner_names_a_command_that_runs(
    argv0: str,
    on_path: str | None,
    expected: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The banner said `mindproject token create`, which is not on PATH after `make run`."""
    monkeypatch.chdir(tmp_path)
    script = tmp_path / argv0.lstrip("/")
    script.parent.mkdir(parents=True, exist_ok=True)
    script.touch()
    monkeypatch.setattr("sys.argv", [argv0])
    found = str(script) if on_path == "SELF" else None
    monkeypatch.setattr("shutil.which", lambda name: found)
    assert self_command().endswith(expected)


def test_every_setting_flag_takes_a_value() -> None:
    """`serve --secret-key-file PATH` was "invalid choice ... (choose from )": a `Path | None`
    annotation became choices=[]."""
    args = build_parser().parse_args(
        ["serve", "--secret-key-file", "/tmp/k", "--log-level", "debug"]
    )
    assert args.secret_key_file == "/tmp/k"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["serve", "--log-level", "loud"])


def test_token_create_refuses_to_make_a_key_unless_asked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Outside the project folder it used to make ./data/secret.key silently and print a token
    the running server rejects."""
    for name in ("MINDPROJECT_SECRET_KEY", "MINDPROJECT_SECRET_KEY_FILE", "MINDPROJECT_STORAGE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    assert main(["token", "create", "--role", "admin"]) == 2
    err = capsys.readouterr().err
    assert f"no signing key at {tmp_path / 'data' / 'secret.key'}" in err
    assert "--create-key" in err
    assert not (tmp_path / "data").exists()

    assert main(["token", "create", "--role", "admin", "--create-key"]) == 0
    out, err = capsys.readouterr()
    assert JWT.fullmatch(out.strip())
    assert f"signed with key file {tmp_path / 'data' / 'secret.key'} (created now)" in err
    # Next time the same key, found the way `serve` finds it, and no key is made.
    assert main(["token", "create", "--device", "d1"]) == 0
    out, err = capsys.readouterr()
    assert f"signed with key file {tmp_path / 'data' / 'secret.key'} (kid " in err
    assert "created" not in err


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("3600", 3600),
        ("15m", 900),
        ("12h", 43200),
        ("30d", 2592000),
        ("none", None),
        ("Never", None),
    ],
)
def test_ttl_values(text: str, seconds: int | None) -> None:
    assert parse_ttl(text) == seconds


@pytest.mark.parametrize("text", ["0", "0d", "", "-5", "1w", "forever"])
def test_ttl_refuses_zero_and_garbage(text: str) -> None:
    """`--ttl 0` used to mean "never expires", silently: "never" must be said."""
    with pytest.raises(argparse.ArgumentTypeError):
        parse_ttl(text)


@pytest.mark.parametrize(
    ("flags", "lifetime"),
    [
        (["--role", "admin"], 30 * 86400),
        (["--role", "admin", "--ttl", "none"], None),
        (["--role", "operator", "--ttl", "12h"], 12 * 3600),
        (["--device", "d1"], None),
        (["--device", "d1", "--ttl", "1d"], 86400),
    ],
)
def test_token_lifetimes(
    flags: list[str],
    lifetime: int | None,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("MINDPROJECT_SECRET_KEY", TEST_SECRET_KEY)
    assert main(["token", "create", *flags]) == 0
    claims = jwt.decode(capsys.readouterr().out.strip(), options={"verify_signature": False})
    assert claims.get("exp") == (None if lifetime is None else claims["iat"] + lifetime)
