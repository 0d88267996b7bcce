"""The run's order: per backend, start its storage; per target, start it, run every chosen
scenario against it, stop it. Every target of a backend shares its storage and the client, so
each comparison is measured side by side in one invocation."""

from __future__ import annotations

import resource
from dataclasses import dataclass

from backends import Backend, backend
from paths import ROOT
from profiling import profile_uploads
from recorder import Recorder
from scenarios import LEAN_SCENARIOS, Config, Scenarios
from servers import ALL_TARGETS, start_server, stop_server

WORK = ROOT / ".cache" / "bench-work"  # storage folders, the S3 server, the big payload


@dataclass
class Choice:
    """What the command line chose, each list already checked against the known names."""

    backends: list[str]
    targets: list[str]
    scenarios: list[str]
    profile: bool


def run_all(cfg: Config, choice: Choice, rec: Recorder) -> None:
    # idle_1k holds 1,000 connections (and wrk its own): lift the soft limit on open files.
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    scenarios = Scenarios(cfg, rec, WORK, choice.scenarios)
    for name in choice.backends:
        with backend(name, WORK / name, rec.log) as be:
            for target in ALL_TARGETS:
                if target not in choice.targets:
                    continue
                if target == "direct":
                    scenarios.direct_ceilings(be)
                else:
                    _run_target(cfg, choice, rec, scenarios, be, target)


def _run_target(
    cfg: Config, choice: Choice, rec: Recorder, scenarios: Scenarios, be: Backend, target: str
) -> None:
    rec.log(f"== {be.name}: starting {target}")
    try:
        server = start_server(target, be, cfg.workers, rec.raw, rec.log)
    except RuntimeError as exc:
        rec.log(f"!! {exc}")
        rec.add(be.name, "start", target, failed=str(exc))
        return
    if target.startswith("mindproject"):
        rec.auth = server.auth
    try:
        for scenario in choice.scenarios:
            if target == "mindproject_lean" and scenario not in LEAN_SCENARIOS:
                continue
            scenarios.run(scenario, be, server)
        if choice.profile and target == "mindproject" and "upload_1k" in choice.scenarios:
            profile_uploads(cfg, rec, be, server)
    finally:
        stop_server(server)
