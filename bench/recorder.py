"""What a run records as it goes: the run log and results.json (every figure, with the command,
the machine, the git commit and the load settings). bench/report.py renders results.json."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from paths import ROOT


class Recorder:
    """One run's folder, bench/results/<UTC time>/, with raw/ for logs that are not committed."""

    def __init__(self, results_dir: Path, config: dict[str, Any], suffix: str = "") -> None:
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
        self.out = results_dir / (stamp + suffix)
        self.raw = self.out / "raw"
        self.raw.mkdir(parents=True, exist_ok=True)
        self.config = config
        self.rows: list[dict[str, Any]] = []
        self.auth: bool | None = None  # set once MindProject has started: was access control on
        self.git_commit = _git_commit()
        self.started = time.monotonic()
        self.logf = (self.raw / "run.log").open("a")

    def log(self, msg: str) -> None:
        line = f"[{time.monotonic() - self.started:7.1f}s] {msg}"
        print(line, flush=True)
        self.logf.write(line + "\n")
        self.logf.flush()

    def add(self, backend: str, scenario: str, target: str, **figures: Any) -> None:
        row = {"backend": backend, "scenario": scenario, "target": target, **figures}
        self.rows.append(row)
        shown = {k: round(v, 3) if isinstance(v, float) else v for k, v in figures.items()}
        self.log(f"{backend:4} {scenario:22} {target:13} {shown}")
        # Rewritten after every row, so an interrupted run keeps what it measured.
        (self.out / "results.json").write_text(json.dumps(self.document(), indent=1))

    def document(self) -> dict[str, Any]:
        return {
            "started_utc": self.out.name,
            "command": " ".join(sys.argv),
            "machine": {
                "cpus": os.cpu_count(),
                "kernel": platform.release(),
                "python": platform.python_version(),
            },
            "git_commit": self.git_commit,
            "auth_on": self.auth,
            "config": self.config,
            "rows": self.rows,
        }


def _git_commit() -> str:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        return subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    return "unknown"
