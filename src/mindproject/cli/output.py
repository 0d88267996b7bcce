"""What the commands print: a table on a terminal, plain lines in a pipe, one JSON document with
`--json`, JSON lines with `--jsonl`. Data goes to stdout, everything else to stderr."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

VERSION_FIELDS = (
    "device_id",
    "version",
    "size",
    "sha256",
    "uploaded_at",
    "filename",
    "content_type",
    "replayed",
)


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    return value


def version_dict(version: Any) -> dict[str, Any]:
    return {name: _plain(getattr(version, name, None)) for name in VERSION_FIELDS}


def emit_json(document: Any) -> None:
    sys.stdout.write(json.dumps(document, default=str) + "\n")


def emit_jsonl(records: Iterable[Any]) -> None:
    for record in records:
        sys.stdout.write(json.dumps(record, default=str) + "\n")


def human_size(size: int | None) -> str:
    if size is None:
        return ""
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return str(size)  # not reached


def table(columns: Sequence[str], rows: Iterable[Sequence[str]]) -> None:
    """A rich table on a terminal; tab-separated lines otherwise (for cut and awk)."""
    if sys.stdout.isatty():
        from rich.console import Console
        from rich.table import Table

        grid = Table(*columns, box=None, header_style="bold", pad_edge=False)
        for row in rows:
            grid.add_row(*row)
        Console().print(grid)
        return
    for row in rows:
        sys.stdout.write("\t".join(row) + "\n")


def version_row(record: dict[str, Any]) -> list[str]:
    return [
        str(record["version"]),
        str(record["uploaded_at"] or ""),
        human_size(record["size"]),
        str(record["sha256"] or "")[:12],
        str(record["filename"] or ""),
        str(record["content_type"] or ""),
    ]


VERSION_COLUMNS = ("version", "uploaded", "size", "sha256", "filename", "type")
