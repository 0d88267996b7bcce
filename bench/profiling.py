"""`run.py --profile`: where MindProject's CPU goes under 1 KiB multipart uploads.

py-spy records every worker (--gil: on-CPU Python frames only) while wrk uploads; this run is
not a measured one. The top frames go to profile-<backend>-upload_1k.txt in the run folder.
"""

from __future__ import annotations

import subprocess

from backends import Backend
from load import wrk
from paths import BENCH_BIN
from profile_summary import summarize
from recorder import Recorder
from scenarios import Config
from servers import Server


def profile_uploads(cfg: Config, rec: Recorder, be: Backend, server: Server) -> None:
    raw = rec.raw / f"profile-{be.name}-upload_1k.txt"
    env = {"BENCH_SIZE": "1024", "BENCH_DEVICES": "1000", "BENCH_MODE": "multipart"}
    if server.token:
        env["BENCH_TOKEN"] = server.token
    secs = max(5, round(cfg.duration))
    spy = subprocess.Popen(
        [
            str(BENCH_BIN / "py-spy"),
            "record",
            "--pid",
            str(server.proc.pid),
            "--subprocesses",
            "--gil",
            "-r",
            "200",
            "-d",
            str(secs),
            "-f",
            "raw",
            "-o",
            str(raw),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wrk(
            server.port,
            "upload.lua",
            env,
            secs + 1,
            cfg.connections,
            cfg.threads,
            server.roots,
            lambda: [],
        )
    finally:
        spy.wait(timeout=secs + 60)
    if raw.exists():
        text = summarize(raw, 30)
        (rec.out / f"profile-{be.name}-upload_1k.txt").write_text(
            f"py-spy --gil, 1 KiB multipart uploads, {be.name} backend\n{text}\n"
        )
        rec.log(f"profile written: profile-{be.name}-upload_1k.txt")
