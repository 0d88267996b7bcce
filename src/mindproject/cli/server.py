"""`mindproject serve` and `mindproject token create`: the commands that need the server's own
modules (settings, keys). Imported only when one of them runs, so the client commands start
fast and small.

Every `serve` flag has a `MINDPROJECT_*` environment variable twin (flags win); the signing keys
are read from the environment or the key file only, never from flags (they would show in `ps`).
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

from mindproject.cli.main import DEFAULT_TTL
from mindproject.config import Settings, load_settings
from mindproject.errors import ConfigurationError

_ENV_ONLY = {"secret_key", "previous_secret_keys"}
ADMIN_BANNER_TTL = 24 * 3600
STAFF_TOKEN_TTL = 30 * 86400  # operators and admins, unless --ttl says otherwise


def _literal_choices(annotation: object) -> list[str]:
    """A Literal's values; [] for any other type. `Path | None` has arguments too, and turning
    them into `choices=[]` made `--secret-key-file PATH` an "invalid choice"."""
    if get_origin(annotation) is not Literal:
        return []
    return [value for value in get_args(annotation) if isinstance(value, str)]


def add_setting_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per setting, generated from the settings model so they cannot drift apart."""
    for name, field in Settings.model_fields.items():
        if name in _ENV_ONLY:
            continue
        flag = "--" + name.replace("_", "-")
        help_text = f"{field.description} (env MINDPROJECT_{name.upper()})"
        if field.annotation is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, help=help_text)
        elif choices := _literal_choices(field.annotation):
            parser.add_argument(flag, choices=choices, help=help_text)
        else:
            parser.add_argument(flag, help=help_text)


def _settings_from(args: argparse.Namespace, names: set[str]) -> Settings:
    options: dict[str, Any] = {name: getattr(args, name, None) for name in names}
    return load_settings(**options)


def token_create(args: argparse.Namespace) -> int:
    """Sign with the key `serve` would use (same settings, same default file); never make a key
    by surprise: a token signed by a fresh key in the wrong folder is one the server rejects."""
    from mindproject.auth.keys import default_key_file, ensure_key_file, key_id, load_keys
    from mindproject.auth.tokens import Role, issue_token

    settings = _settings_from(args, {"storage", "secret_key_file"})
    source = "MINDPROJECT_SECRET_KEY"
    if settings.secret_key is None:
        path = settings.secret_key_file or default_key_file(settings)
        if path is not None:
            path = path.resolve()
            source = f"key file {path}"
            if not path.exists():
                if not args.create_key:
                    raise ConfigurationError(
                        f"no signing key at {path}: run this where the server runs, or say "
                        "where its key is (--storage, --secret-key-file, or MINDPROJECT_STORAGE "
                        "/ MINDPROJECT_SECRET_KEY_FILE); --create-key makes a new key there"
                    )
                ensure_key_file(path)
                source += " (created now)"
            settings = settings.model_copy(update={"secret_key_file": path})
    keys = load_keys(settings)
    role = Role.DEVICE if args.device else Role(args.role)
    ttl = args.ttl
    if ttl is DEFAULT_TTL:
        ttl = None if role is Role.DEVICE else STAFF_TOKEN_TTL
    print(issue_token(keys, role, device_id=args.device, ttl_seconds=ttl))
    # stderr: `export TOKEN=$(mindproject token create ...)` keeps working.
    print(f"mindproject: signed with {source} (kid {key_id(keys.signing_key)})", file=sys.stderr)
    return 0


def serve(args: argparse.Namespace) -> int:
    from mindproject.server import serve as run_server

    settings = _settings_from(args, set(Settings.model_fields) - _ENV_ONLY)
    if settings.auth == "token":
        settings = prepare_keys(settings)
    run_server(settings)
    return 0


def self_command() -> str:
    """How to run this very command again from the current shell: `mindproject` only when that
    is what PATH finds (`make run` starts .venv/bin/mindproject, which is usually not on PATH)."""
    argv0 = Path(sys.argv[0])
    if argv0.name != "mindproject":  # python -m mindproject.cli, or a test runner
        return f"{sys.executable} -m mindproject.cli"
    found = shutil.which("mindproject")
    if found and Path(found).resolve() == argv0.resolve():
        return "mindproject"
    # As typed (.venv/bin/mindproject from `make run`), else where it is.
    return str(argv0) if "/" in sys.argv[0] else str(argv0.resolve())


def prepare_keys(settings: Settings) -> Settings:
    """Check the keys before any worker starts. With no key configured and files on local disk,
    make the key file; only when it is new, print an admin token and curl lines to get going
    (a restart must not put a fresh live token into the logs)."""
    from mindproject.auth.keys import default_key_file, ensure_key_file, load_keys
    from mindproject.auth.tokens import Role, issue_token

    default = default_key_file(settings)
    uses_default = settings.secret_key is None and settings.secret_key_file is None
    if not (uses_default and default is not None):
        load_keys(settings)
        return settings
    created = ensure_key_file(default)
    settings = settings.model_copy(update={"secret_key_file": default})
    keys = load_keys(settings)
    command = self_command()
    if not created:
        print(
            f"MindProject: token auth is on; signing key {default}. "
            f"An admin token: {command} token create --role admin --ttl 24h",
            file=sys.stderr,
        )
        return settings
    token = issue_token(keys, Role.ADMIN, ttl_seconds=ADMIN_BANNER_TTL)
    url = f"http://{settings.host}:{settings.port}"
    print(
        f"\nMindProject: token auth is on. Signing key: {default} (created now, mode 0600)\n"
        f"Admin token, valid 24 h (shown once; make another with "
        f"`{command} token create --role admin`):\n  export TOKEN={token}\n"
        f"Try:\n  curl -H \"Authorization: Bearer $TOKEN\" -X PUT -F 'file=@/etc/hostname' "
        f"{url}/api/devices/sensor-1\n"
        f'  curl -H "Authorization: Bearer $TOKEN" {url}/api/devices/\n'
        f"Device tokens: {command} token create --device sensor-1\n",
        file=sys.stderr,
    )
    return settings
