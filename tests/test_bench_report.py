"""The README's benchmark table is what `bench/report.py <run> --readme` prints for the latest run.

The latest run is the one bench/results/latest.md shows. report.py is loaded from its file (bench/
is scripts, not a package); rendering the table needs only the standard library.
"""

import importlib.util
import json
import re
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
REGENERATE = ".venv/bin/python bench/report.py bench/results/{run} --readme"


def load_report() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_report", ROOT / "bench" / "report.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def latest_run() -> str:
    heading = (RESULTS / "latest.md").read_text().splitlines()[0]
    match = re.fullmatch(r"# Benchmark run (\S+)", heading)
    assert match, f"bench/results/latest.md starts with {heading!r}"
    return match.group(1)


def readme_benchmark_table() -> str:
    lines = (ROOT / "README.md").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| figure |"))
    end = start
    while end < len(lines) and lines[end].startswith("|"):
        end += 1
    return "\n".join(lines[start:end])


def test_readme_names_the_latest_run() -> None:
    run = latest_run()
    assert (RESULTS / run / "results.json").is_file()
    assert f"`bench/results/{run}`" in (ROOT / "README.md").read_text()


def test_readme_table_is_the_latest_runs() -> None:
    run = latest_run()
    document = json.loads((RESULTS / run / "results.json").read_text())
    expected = load_report().readme_table(document)
    assert readme_benchmark_table() == expected, (
        f"README's benchmark table differs from `{REGENERATE.format(run=run)}`"
    )
