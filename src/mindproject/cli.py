"""The `mindproject` command.

    mindproject serve [--storage URL] [--port N] ...     serve the HTTP API
    mindproject token create --device ID | --role R       print a bearer token
    mindproject revoke ID / mindproject unrevoke ID       via the server's HTTP API

Every `serve` flag has a `MINDPROJECT_*` environment variable twin (flags win); the signing keys
are read from the environment or the key file only, never from flags (they would show in `ps`).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from typing import Any, get_args

from mindproject import __version__
from mindproject.config import Settings, load_settings
from mindproject.errors import ConfigurationError, MindProjectError

_ENV_ONLY = {"secret_key", "previous_secret_keys"}
_TTL = re.compile(r"([0-9]{1,9})([smhd]?)")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
ADMIN_BANNER_TTL = 24 * 3600
STAFF_TOKEN_TTL = 30 * 86400  # operators and admins, unless --ttl says otherwise
# --ttl not given: each role's default applies (None would mean "never", as `--ttl none` does).
_DEFAULT_TTL = object()


def parse_ttl(text: str) -> int | None:
    """Seconds, or a number with s/m/h/d; `none` or `never` for a token that never expires.

    0 is refused rather than read as "never": a lifetime of 0 reads like "expire at once".
    """
    word = text.strip().lower()
    if word in ("none", "never"):
        return None
    match = _TTL.fullmatch(word)
    if not match:
        raise argparse.ArgumentTypeError("use e.g. 3600, 15m, 12h, 30d, or none for no expiry")
    seconds = int(match.group(1)) * _UNITS[match.group(2)]
    if seconds == 0:
        raise argparse.ArgumentTypeError(
            "0 is not a lifetime; for a token that never expires, say none"
        )
    return seconds


def _add_setting_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per setting, generated from the settings model so they cannot drift apart."""
    for name, field in Settings.model_fields.items():
        if name in _ENV_ONLY:
            continue
        flag = "--" + name.replace("_", "-")
        help_text = f"{field.description} (env MINDPROJECT_{name.upper()})"
        if field.annotation is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, help=help_text)
        elif choices := get_args(field.annotation):
            parser.add_argument(
                flag, choices=[c for c in choices if isinstance(c, str)], help=help_text
            )
        else:
            parser.add_argument(flag, help=help_text)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mindproject", description="Telemetry upload service")
    parser.add_argument("--version", action="version", version=__version__)
    commands = parser.add_subparsers(dest="command", required=True)

    _add_setting_flags(commands.add_parser("serve", help="serve the HTTP API"))

    token = commands.add_parser("token", help="bearer tokens")
    token_commands = token.add_subparsers(dest="token_command", required=True)
    create = token_commands.add_parser("create", help="print a new signed token")
    who = create.add_mutually_exclusive_group(required=True)
    who.add_argument("--device", help="a device token for this device id")
    who.add_argument("--role", choices=["operator", "admin"])
    create.add_argument(
        "--ttl",
        type=parse_ttl,
        default=_DEFAULT_TTL,
        help="lifetime, e.g. 3600, 15m, 12h or 30d; none (or never) for no expiry "
        "(default: none for devices, 30d for operators and admins)",
    )
    create.add_argument("--storage", help="to find the default key file (MINDPROJECT_STORAGE)")
    create.add_argument("--secret-key-file", help="key file (MINDPROJECT_SECRET_KEY_FILE)")

    for name, text in (
        ("revoke", "revoke every token a device holds"),
        ("unrevoke", "undo a device's revocation"),
    ):
        command = commands.add_parser(name, help=text)
        command.add_argument("device_id")
        command.add_argument(
            "--url", default=os.environ.get("MINDPROJECT_URL", "http://127.0.0.1:5000")
        )
        command.add_argument(
            "--token",
            default=os.environ.get("MINDPROJECT_TOKEN"),
            help="an admin token (env MINDPROJECT_TOKEN)",
        )
    return parser


def _settings_from(args: argparse.Namespace, names: set[str]) -> Settings:
    options: dict[str, Any] = {name: getattr(args, name, None) for name in names}
    return load_settings(**options)


def _token_create(args: argparse.Namespace) -> int:
    from mindproject.auth.keys import default_key_file, ensure_key_file, load_keys
    from mindproject.auth.tokens import Role, issue_token

    settings = _settings_from(args, {"storage", "secret_key_file"})
    if settings.secret_key is None and settings.secret_key_file is None:
        path = default_key_file(settings)
        if path is not None:
            ensure_key_file(path)
    keys = load_keys(settings)
    role = Role.DEVICE if args.device else Role(args.role)
    ttl = args.ttl
    if ttl is _DEFAULT_TTL:
        ttl = None if role is Role.DEVICE else STAFF_TOKEN_TTL
    print(issue_token(keys, role, device_id=args.device, ttl_seconds=ttl))
    return 0


def _serve(args: argparse.Namespace) -> int:
    from mindproject.server import serve

    settings = _settings_from(args, set(Settings.model_fields) - _ENV_ONLY)
    if settings.auth == "token":
        settings = _prepare_keys(settings)
    serve(settings)
    return 0


def _prepare_keys(settings: Settings) -> Settings:
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
    if not created:
        print(
            f"MindProject: token auth is on; signing key {default}. "
            "An admin token: mindproject token create --role admin --ttl 24h",
            file=sys.stderr,
        )
        return settings
    token = issue_token(keys, Role.ADMIN, ttl_seconds=ADMIN_BANNER_TTL)
    url = f"http://{settings.host}:{settings.port}"
    print(
        f"\nMindProject: token auth is on. Signing key: {default} (created now, mode 0600)\n"
        f"Admin token, valid 24 h (shown once; make another with "
        f"`mindproject token create --role admin`):\n  export TOKEN={token}\n"
        f"Try:\n  curl -H \"Authorization: Bearer $TOKEN\" -X PUT -F 'file=@/etc/hostname' "
        f"{url}/api/devices/sensor-1\n"
        f'  curl -H "Authorization: Bearer $TOKEN" {url}/api/devices/\n'
        f"Device tokens: mindproject token create --device sensor-1\n",
        file=sys.stderr,
    )
    return settings


def _revocation(args: argparse.Namespace) -> int:
    from mindproject.client import Client, ClientError

    try:
        with Client(args.url, args.token) as client:
            result = (
                client.revoke(args.device_id)
                if args.command == "revoke"
                else client.unrevoke(args.device_id)
            )
    except ClientError as exc:  # the SDK's errors are its own, not the server's
        print(f"mindproject: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "serve":
            return _serve(args)
        if args.command == "token":
            return _token_create(args)
        return _revocation(args)
    except ConfigurationError as exc:
        print(f"mindproject: {exc.message}", file=sys.stderr)
        return 2
    except MindProjectError as exc:
        print(f"mindproject: {exc.message}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
