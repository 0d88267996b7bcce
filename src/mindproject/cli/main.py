"""The parser and the dispatch. Client commands never import the server's modules: `serve` and
`token` load theirs (pydantic settings, keys) only when they run."""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable
from typing import Any

from mindproject import __version__

_TTL = re.compile(r"([0-9]{1,9})([smhd]?)")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
# --ttl not given: each role's default applies (None would mean "never", as `--ttl none` does).
DEFAULT_TTL = object()

EXIT_CODES = """exit codes: 0 ok, 1 the server said no, 2 usage, 3 the network gave up after
retries, 4 verification failed (sha256 or size)"""


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


def _target_options(parser: argparse.ArgumentParser, *, top: bool) -> None:
    """Which server: accepted before the command (`mindproject --profile lab devices`) and
    after it. The command's copies default to SUPPRESS, so they never blank a value given
    before the command."""
    unset: Any = None if top else argparse.SUPPRESS
    where = parser.add_argument_group("server")
    where.add_argument(
        "--url", default=unset, help="the server (env MINDPROJECT_URL; else the profile's)"
    )
    where.add_argument(
        "--token", default=unset, help="bearer token (env MINDPROJECT_TOKEN; else the profile's)"
    )
    where.add_argument(
        "--profile",
        default=unset,
        help="a profile saved by `mindproject login` (env MINDPROJECT_PROFILE)",
    )
    where.add_argument(
        "--tries",
        type=int,
        default=unset,
        help="tries per request before giving up (env MINDPROJECT_TRIES; default 5)",
    )


def _target_parent() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    _target_options(common, top=False)
    return common


def _format_options(structured: bool = True) -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    if structured:
        shape = common.add_mutually_exclusive_group()
        shape.add_argument("--json", action="store_true", help="one JSON document on stdout")
        shape.add_argument("--jsonl", action="store_true", help="JSON lines on stdout")
    common.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    return common


def build_parser(*, settings_flags: bool = True) -> argparse.ArgumentParser:
    """`settings_flags`: generate `serve`'s flags from the settings model (imports pydantic and
    the settings; skipped for the client commands, which do not need them)."""
    parser = argparse.ArgumentParser(
        prog="mindproject",
        description="Telemetry upload service: the server, and a client for it",
        epilog=EXIT_CODES,
    )
    parser.add_argument("--version", action="version", version=__version__)
    _target_options(parser, top=True)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    target = _target_parent()
    shapes = _format_options()

    serve = commands.add_parser("serve", help="serve the HTTP API")
    if settings_flags:
        from mindproject.cli.server import add_setting_flags

        add_setting_flags(serve)

    token = commands.add_parser("token", help="bearer tokens")
    token_commands = token.add_subparsers(dest="token_command", required=True)
    create = token_commands.add_parser("create", help="print a new signed token")
    who = create.add_mutually_exclusive_group(required=True)
    who.add_argument("--device", help="a device token for this device id")
    who.add_argument("--role", choices=["operator", "admin"])
    create.add_argument(
        "--ttl",
        type=parse_ttl,
        default=DEFAULT_TTL,
        help="lifetime, e.g. 3600, 15m, 12h or 30d; none (or never) for no expiry "
        "(default: none for devices, 30d for operators and admins)",
    )
    create.add_argument("--storage", help="to find the default key file (MINDPROJECT_STORAGE)")
    create.add_argument("--secret-key-file", help="key file (MINDPROJECT_SECRET_KEY_FILE)")
    create.add_argument(
        "--create-key",
        action="store_true",
        help="make the key file if it does not exist (otherwise that is an error)",
    )

    login = commands.add_parser(
        "login",
        help="save a server and token as a profile",
        description="Save --url and --token in ~/.config/mindproject/config.toml (mode 0600) "
        "as the profile --profile (default: default). --token - reads it from stdin.",
        parents=[target],
    )
    login.set_defaults(handler="login")

    upload = commands.add_parser(
        "upload",
        help="upload files as new versions of a device",
        parents=[target, shapes],
        epilog=EXIT_CODES,
    )
    upload.add_argument("device")
    upload.add_argument("files", nargs="+", metavar="FILE")
    upload.add_argument("-r", "--recursive", action="store_true", help="upload folders' files")
    upload.add_argument("-p", "--parallel", type=int, default=1, help="files at once (default 1)")

    download = commands.add_parser(
        "download",
        help="download a version (the latest by default), verified",
        parents=[target, shapes],
        epilog=EXIT_CODES,
    )
    download.add_argument("device")
    download.add_argument("--version", help="a version id (default: the latest)")
    download.add_argument(
        "-o", "--output", help="file to write, - for stdout (default: the uploaded file's name)"
    )

    devices = commands.add_parser("devices", help="list devices", parents=[target, shapes])
    devices.add_argument("--prefix", default="", help="only ids starting with this")

    history = commands.add_parser(
        "history", help="a device's versions, newest first", parents=[target, shapes]
    )
    history.add_argument("device")

    remove = commands.add_parser(
        "rm", help="delete a version, or a whole device", parents=[target, shapes]
    )
    remove.add_argument("device")
    remove.add_argument("--version", help="only this version")
    remove.add_argument("-y", "--yes", action="store_true", help="do not ask before a device")

    for name, text in (
        ("revoke", "revoke every token a device holds"),
        ("unrevoke", "undo a device's revocation"),
    ):
        command = commands.add_parser(name, help=text, parents=[target])
        command.add_argument("device")

    completion = commands.add_parser("completion", help="print a shell completion script")
    completion.add_argument("shell", choices=["bash", "zsh"])
    return parser


def _needs_settings(argv: list[str]) -> bool:
    return "serve" in argv or "completion" in argv


def _handler(command: str) -> Callable[[argparse.Namespace], int]:
    if command == "serve":
        from mindproject.cli.server import serve

        return serve
    if command == "token":
        from mindproject.cli.server import token_create

        return token_create
    if command == "completion":
        from mindproject.cli.completion import print_script

        return print_script
    from mindproject.cli import commands

    handlers: dict[str, Callable[[argparse.Namespace], int]] = {
        "login": commands.login,
        "upload": commands.upload,
        "download": commands.download,
        "devices": commands.devices,
        "history": commands.history,
        "rm": commands.remove,
        "revoke": commands.revocation,
        "unrevoke": commands.revocation,
    }
    return handlers[command]


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser(settings_flags=_needs_settings(argv)).parse_args(argv)
    try:
        from mindproject.cli.failures import quiet_broken_pipe, report
    except ImportError as exc:  # the SDK missing would otherwise be a traceback
        print(f"mindproject: {exc}", file=sys.stderr)
        return 1
    try:
        code = _handler(args.command)(args)
        sys.stdout.flush()  # a closed pipe shows here, inside the handling, not at exit
        return code
    except BrokenPipeError:
        return quiet_broken_pipe()
    except (Exception, KeyboardInterrupt) as exc:
        return report(exc)


if __name__ == "__main__":
    sys.exit(main())
