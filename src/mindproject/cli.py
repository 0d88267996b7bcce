"""The `mindproject` command: `mindproject serve [flags]`.

Every flag has a `MINDPROJECT_*` environment variable twin; flags win.
"""

from __future__ import annotations

import argparse
import sys

from mindproject import __version__
from mindproject.config import load_settings
from mindproject.errors import ConfigurationError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mindproject", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=__version__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="serve the HTTP API")
    serve.add_argument("--storage", help="file:///path, s3://bucket/prefix or memory://")
    serve.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="TCP port (default 5000)")
    serve.add_argument("--workers", type=int, help="worker processes (default 1)")
    serve.add_argument("--max-upload-bytes", type=int, help="largest accepted upload")
    serve.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    serve.add_argument(
        "--no-fsync",
        dest="fsync",
        action="store_const",
        const=False,
        help="file backend: do not flush uploads to disk before answering",
    )
    serve.add_argument(
        "--shutdown-grace-seconds",
        type=float,
        help="how long in-flight requests may finish on SIGTERM",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    options = {k: v for k, v in vars(args).items() if k != "command"}
    try:
        settings = load_settings(**options)
    except ConfigurationError as exc:
        print(f"mindproject: {exc.message}", file=sys.stderr)
        return 2
    if args.command == "serve":
        from mindproject.server import serve

        serve(settings)
    return 0


if __name__ == "__main__":
    sys.exit(main())
