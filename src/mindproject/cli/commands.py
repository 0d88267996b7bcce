"""The client commands, over the SDK only (no server module is imported here)."""

from __future__ import annotations

import argparse
import os
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from mindproject.cli import output
from mindproject.cli.failures import UsageError, describe
from mindproject.cli.profiles import resolve, save_profile
from mindproject.cli.progress import bars
from mindproject.client import Client, RetryPolicy, Version


def _retry(args: argparse.Namespace) -> RetryPolicy | None:
    tries = args.tries or int(os.environ.get("MINDPROJECT_TRIES") or 0)
    if tries < 0:
        raise UsageError("--tries needs 1 or more")
    return RetryPolicy(attempts=tries) if tries else None


def client_for(args: argparse.Namespace) -> Client:
    target = resolve(args.url, args.token, args.profile)
    return Client(target.url, target.token, retry=_retry(args))


def login(args: argparse.Namespace) -> int:
    token = args.token
    if token == "-":  # noqa: S105 - not a password: read it from stdin, so the token stays out of `ps` and the shell's history
        token = sys.stdin.readline().strip()
    token = token or os.environ.get("MINDPROJECT_TOKEN")
    url = args.url or os.environ.get("MINDPROJECT_URL")
    if not url:
        raise UsageError("login needs --url (or MINDPROJECT_URL)")
    name = args.profile or os.environ.get("MINDPROJECT_PROFILE") or "default"
    path = save_profile(name, url.rstrip("/"), token)
    print(f"mindproject: profile {name!r} saved in {path} ({url})", file=sys.stderr)
    return 0


def _files(sources: list[str], recursive: bool) -> list[Path]:
    files: list[Path] = []
    for source in sources:
        path = Path(source)
        if path.is_dir():
            if not recursive:
                raise UsageError(f"{path} is a folder: add --recursive to upload what it holds")
            files.extend(sorted(p for p in path.rglob("*") if p.is_file()))
        elif path.is_file():
            files.append(path)
        else:
            raise UsageError(f"no such file: {path}")
    return files


def upload(args: argparse.Namespace) -> int:
    files = _files(args.files, args.recursive)
    if args.parallel < 1:
        raise UsageError("--parallel needs 1 or more")
    target = resolve(args.url, args.token, args.profile)
    retry = _retry(args)
    # One client per thread: each keeps its own connection.
    local = threading.local()
    made: list[Client] = []

    def client() -> Client:
        if not hasattr(local, "client"):
            local.client = Client(target.url, target.token, retry=retry)
            made.append(local.client)
        mine: Client = local.client
        return mine

    results: list[dict[str, Any]] = []
    failures: list[tuple[int, str]] = []
    with bars(args.quiet) as progress:

        def one(path: Path) -> None:
            try:
                version = client().upload(args.device, path, progress=progress.callback(path.name))
            except Exception as exc:  # one file's failure does not stop the others
                code, line = describe(exc)
                failures.append((code, f"{path}: {line}"))
                return
            record = output.version_dict(version) | {"path": str(path)}
            results.append(record)
            if args.jsonl:
                output.emit_jsonl([record])
            elif not args.json:
                replayed = " (replayed)" if record["replayed"] else ""
                progress.say(
                    f"{path} -> {record['device_id']} version {record['version']} "
                    f"({output.human_size(record['size'])}, sha256 "
                    f"{str(record['sha256'])[:12]}){replayed}"
                )

        if args.parallel == 1 or len(files) <= 1:
            for path in files:
                one(path)
        else:
            with ThreadPoolExecutor(max_workers=args.parallel) as pool:
                list(pool.map(one, files))
    for each in made:
        each.close()
    if args.json:
        output.emit_json(results)
    for _, line in failures:
        print(f"mindproject: {line}", file=sys.stderr)
    return max((code for code, _ in failures), default=0)


def default_name(version: Version) -> str:
    """The uploaded file's base name (the server's word: never a path, never `..`)."""
    name = Path((version.filename or "").replace("\\", "/")).name
    if name in ("", ".", ".."):
        return f"{version.device_id}-{version.version}"
    return name


def download(args: argparse.Namespace) -> int:
    if args.output == "-" and (args.json or args.jsonl):
        raise UsageError("-o - puts the file on stdout: no room for --json there")
    with client_for(args) as client:
        # The version first: it names the file, and the bytes then come from that version.
        known = client.get(args.device, args.version) if args.version else None
        version = known or client.latest(args.device)
        destination = args.output or default_name(version)
        with bars(args.quiet) as progress:
            label = args.device if destination == "-" else Path(destination).name
            callback = progress.callback(label)
            # A path: the SDK writes beside it and renames once verified (never a wrong file).
            sink = sys.stdout.buffer if destination == "-" else Path(destination)
            stored = client.download(args.device, sink, version=version.version, progress=callback)
        if destination == "-":
            sys.stdout.buffer.flush()
    record = output.version_dict(stored) | {"path": destination}
    if args.json or args.jsonl:
        output.emit_json(record)
    elif destination != "-":
        print(
            f"{destination} <- {stored.device_id} version {stored.version} "
            f"({output.human_size(stored.size)}, sha256 verified)",
            file=sys.stderr,
        )
    return 0


def devices(args: argparse.Namespace) -> int:
    with client_for(args) as client:
        names: Iterator[str] = client.devices(prefix=args.prefix)
        if args.jsonl:
            output.emit_jsonl(names)  # page by page, as they come
        elif args.json:
            output.emit_json(list(names))
        else:
            output.table(["device"], ([name] for name in names))
    return 0


def history(args: argparse.Namespace) -> int:
    with client_for(args) as client:
        versions = (output.version_dict(v) for v in client.history(args.device))
        if args.jsonl:
            output.emit_jsonl(versions)
        elif args.json:
            output.emit_json(list(versions))
        else:
            output.table(output.VERSION_COLUMNS, (output.version_row(v) for v in versions))
    return 0


def remove(args: argparse.Namespace) -> int:
    with client_for(args) as client:
        return _remove(client, args)


def _remove(client: Client, args: argparse.Namespace) -> int:
    if args.version:
        client.delete_version(args.device, args.version)
        result: dict[str, Any] = {"device_id": args.device, "version": args.version}
        result["deleted"] = True
    else:
        if not args.yes:
            if not sys.stdin.isatty():
                raise UsageError(f"deleting every upload of {args.device}: add --yes to confirm")
            answer = input(f"Delete every upload of {args.device}? [y/N] ")
            if answer.strip().lower() not in ("y", "yes"):
                raise UsageError("not deleted")
        result = {"device_id": args.device, "deleted_uploads": client.delete_device(args.device)}
    if args.json or args.jsonl:
        output.emit_json(result)
    elif args.version:
        print(f"deleted {args.device} version {args.version}", file=sys.stderr)
    else:
        print(f"deleted {result['deleted_uploads']} uploads of {args.device}", file=sys.stderr)
    return 0


def revocation(args: argparse.Namespace) -> int:
    client = client_for(args)
    result = (
        client.revoke(args.device) if args.command == "revoke" else client.unrevoke(args.device)
    )
    output.emit_json(result)
    return 0
