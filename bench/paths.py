"""Where the benchmark finds things: the repository, its Lua scripts and both virtualenvs."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
LUA = BENCH / "lua"
# The baselines, wrk's helpers and py-spy run from the bench venv; MindProject from the project's.
BENCH_BIN = ROOT / ".cache" / "bench-venv" / "bin"
PROJECT_BIN = ROOT / ".venv" / "bin"
