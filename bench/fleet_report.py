"""summary.md of a fleet-scale run (bench/fleet.py) from its results.json: the side-by-side
table, the clients x windows grid, the reads, and the issue's targets with met/MISSED.
Standard library only: `python bench/fleet_report.py <run dir>` redraws a summary."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

# Issue 12's targets.
TARGET_S3_PER_UPLOAD = 0.01  # at 512 clients over two replicas
TARGET_SERVER_CPU_MS = 0.5  # per 1 KiB upload
TARGET_P99_MARGIN_MS = 100  # p99 <= window + this
TARGET_READ_CPU_MS = 5.0  # latest and a history page of a 10,000-version device
TARGET_LIST_P99_MS = 50.0  # first page of 100,000 devices


def _f(v: Any, digits: int = 2) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        if v != v:  # NaN
            return ""
        return f"{v:.{digits}f}"
    return str(v)


def upload_rows(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return [r for r in doc["rows"] if r["scenario"] == "fleet upload_1k" and "failed" not in r]


def find_point(
    rows: list[dict[str, Any]], mode: str, clients: int, window: int | None
) -> dict[str, Any] | None:
    for r in rows:
        if r["target"] == mode and r["clients"] == clients and r.get("window_ms") == window:
            return r
    return None


def targets(doc: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(target, measured, met/MISSED) for the issue's targets, from the run's rows."""
    cfg = doc["config"]
    rows = upload_rows(doc)
    main = find_point(rows, "index", cfg["main_clients"], cfg["main_window"])
    base = find_point(rows, "s3-only", cfg["main_clients"], None)
    out: list[tuple[str, str, str]] = []

    def verdict(ok: bool) -> str:
        return "met" if ok else "MISSED"

    if main is not None:
        s3 = main["s3_per_upload"]
        ratio = f" (S3-only: {base['s3_per_upload']:.2f})" if base else ""
        out.append(
            (
                f"S3 requests per upload <= {TARGET_S3_PER_UPLOAD} at "
                f"{cfg['main_clients']} clients, "
                f"2 replicas, window {cfg['main_window']} ms",
                f"{s3:.4f} ({main['puts_per_upload']:.4f} PUT, "
                f"{main['gets_per_upload']:.4f} GET){ratio}",
                verdict(s3 <= TARGET_S3_PER_UPLOAD),
            )
        )
        cpu = main["server_cpu_ms_per_upload"]
        ratio = (
            f" (S3-only: {base['server_cpu_ms_per_upload']:.2f}, "
            f"x{cpu / base['server_cpu_ms_per_upload']:.2f})"
            if base
            else ""
        )
        out.append(
            (
                f"server CPU per 1 KiB upload <= {TARGET_SERVER_CPU_MS} ms",
                f"{cpu:.3f} ms{ratio}; PostgreSQL "
                f"{_f(main.get('pg_cpu_ms_per_upload'), 3)} ms beside it",
                verdict(cpu <= TARGET_SERVER_CPU_MS),
            )
        )
    for r in rows:
        if r["target"] != "index":
            continue
        limit = r["window_ms"] + TARGET_P99_MARGIN_MS
        out.append(
            (
                f"p99 <= window + {TARGET_P99_MARGIN_MS} ms "
                f"({r['clients']} clients, window {r['window_ms']} ms)",
                f"{r['p99_ms']:.0f} ms (limit {limit})",
                verdict(r["p99_ms"] <= limit),
            )
        )
    for r in doc["rows"]:
        if not r["scenario"].startswith("fleet read: ") or "failed" in r:
            continue
        name = r["scenario"].removeprefix("fleet read: ")
        if name.startswith("device list"):
            out.append(
                (
                    f"{name}: p99 < {TARGET_LIST_P99_MS:.0f} ms ({r['clients']} clients)",
                    f"{r['p99_ms']:.1f} ms",
                    verdict(r["p99_ms"] < TARGET_LIST_P99_MS),
                )
            )
        else:
            out.append(
                (
                    f"{name}: <= {TARGET_READ_CPU_MS:.0f} ms server CPU",
                    f"{r['server_cpu_ms_per_req']:.2f} ms",
                    verdict(r["server_cpu_ms_per_req"] <= TARGET_READ_CPU_MS),
                )
            )
    return out


UPLOAD_COLUMNS: list[tuple[str, str, int]] = [
    # (heading, row key, decimals)
    ("mode", "target", -1),
    ("clients", "clients", -1),
    ("window ms", "window_ms", -1),
    ("uploads/s", "uploads_per_s", 0),
    ("p50 ms", "p50_ms", 1),
    ("p99 ms", "p99_ms", 1),
    ("S3 req/upload", "s3_per_upload", 4),
    ("PUT/upload", "puts_per_upload", 4),
    ("GET/upload", "gets_per_upload", 4),
    ("LIST/upload", "lists_per_upload", 4),
    ("server CPU ms/upload", "server_cpu_ms_per_upload", 3),
    ("PG CPU ms/upload", "pg_cpu_ms_per_upload", 3),
    ("Ceph CPU ms/upload", "s3_server_cpu_ms_per_upload", 3),
    ("proxy CPU ms/upload", "proxy_cpu_ms_per_upload", 3),
    ("wrk CPU ms/upload", "loadgen_cpu_ms_per_upload", 3),
    ("stored", "uploads", -1),
    ("non-2xx", "non_2xx", -1),
    ("errors", "errors", -1),
]
READ_COLUMNS: list[tuple[str, str, int]] = [
    ("read", "read", -1),
    ("clients", "clients", -1),
    ("req/s", "rps", 0),
    ("p50 ms", "p50_ms", 1),
    ("p99 ms", "p99_ms", 1),
    ("server CPU ms/req", "server_cpu_ms_per_req", 3),
    ("PG CPU ms/req", "pg_cpu_ms_per_req", 3),
    ("S3 req/req", "s3_per_req", 3),
    ("items", "page_items", -1),
    ("non-2xx", "non_2xx", -1),
]


def table(columns: list[tuple[str, str, int]], rows: list[dict[str, Any]]) -> list[str]:
    out = ["| " + " | ".join(c[0] for c in columns) + " |", "|" + "---|" * len(columns)]
    for r in rows:
        cells = [
            _f(r.get(key), digits) if digits >= 0 else _f(r.get(key)) for _, key, digits in columns
        ]
        out.append("| " + " | ".join(cells) + " |")
    return out


def render(doc: dict[str, Any]) -> str:
    cfg = doc["config"]
    auth = "ON (admin bearer token sent)" if doc.get("auth_on") else "off"
    lines = [
        f"# Fleet-scale benchmark run {doc['started_utc']}",
        "",
        f"Command: `{doc['command']}`  ",
        f"Machine: {doc['machine']['cpus']} CPUs, Linux {doc['machine']['kernel']}, Python "
        f"{doc['machine']['python']}; git {doc['git_commit']}  ",
        f"MindProject access control: {auth}  ",
        "Load: two `mindproject serve --workers 1` replicas on one Ceph RGW (through a "
        "counting proxy) and one PostgreSQL; one wrk per replica holding half the clients; each "
        f"client sends a {cfg['size']}-byte raw PUT and waits for its answer; device ids cycle "
        f"over {cfg['devices']} per wrk. {cfg['duration']:g} s measured after {cfg['warmup']:g} "
        "s warm-up, fresh replicas per point.  ",
        "Uploads = stored by the replicas (their mindproject_uploads_total) from the start of the "
        "measured run until the replicas and S3 fall quiet after it; uploads/s and latency are "
        "wrk's. Server CPU = utime+stime of both replicas' process trees over the same span / "
        "uploads. PostgreSQL, the S3 server (Ceph), the counting proxy and the load generator "
        "(wrk) are measured apart and are not in it. S3 requests = what the S3 server received "
        "over that span, background work (sweepers) included.",
        "",
    ]
    checks = [r for r in doc["rows"] if r["scenario"].startswith("proxy check")]
    if checks:
        lines += ["## Counting proxy check", ""]
        for r in checks:
            lines.append(
                f"- {r['scenario']}: {r['s3_total']} requests {r['s3_kinds']} "
                f"(status {r['status']})"
            )
        lines.append("")
    targets_ = targets(doc)
    if targets_:
        lines += ["## Targets (issue 12)", "", "| target | measured | |", "|---|---|---|"]
        lines += [f"| {t} | {m} | {v} |" for t, m, v in targets_]
        lines.append("")
    lines += ["## 1 KiB uploads, side by side", ""]
    lines += table(UPLOAD_COLUMNS, upload_rows(doc))
    lines.append("")
    lines += grid(doc)
    reads = [
        {**r, "read": r["scenario"].removeprefix("fleet read: ")}
        for r in doc["rows"]
        if r["scenario"].startswith("fleet read: ") and "failed" not in r
    ]
    seeds = [r for r in doc["rows"] if r["scenario"] == "fleet seed"]
    if reads or seeds:
        lines += ["## Reads (index mode)", ""]
        for r in seeds:
            lines.append(
                f"Seeded through the API (raw PUTs, {cfg['seed_concurrency']} in flight over both "
                f"replicas): {r['uploads']} uploads in {r['seconds']:.1f} s "
                f"({r['uploads_per_s']:.0f}/s), {r['seed_failed']} failed; index growth "
                f"{_f(r.get('index_bytes_per_upload'), 0)} bytes per upload (pg_database_size)."
            )
        lines.append("")
        lines += table(READ_COLUMNS, reads)
        lines.append("")
    failed = [r for r in doc["rows"] if "failed" in r and r["scenario"] != "fleet seed"]
    if failed:
        lines += ["## Failed", ""]
        lines += [
            f"- {r['scenario']} {r['target']} {r.get('clients', '')}: {r['failed']}" for r in failed
        ]
        lines.append("")
    return "\n".join(lines) + "\n"


def grid(doc: dict[str, Any]) -> list[str]:
    """S3 requests per upload and p99 across clients x windows (index mode), S3-only beside."""
    cfg = doc["config"]
    rows = upload_rows(doc)
    head = ["clients", "S3-only"] + [f"index, {w} ms" for w in cfg["windows"]]
    out = [
        "## S3 requests per upload / p99 ms, clients x window",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for c in cfg["clients"]:
        cells = [str(c)]
        for mode, w in [("s3-only", None)] + [("index", w) for w in cfg["windows"]]:
            r = find_point(rows, mode, c, w)
            cells.append(f"{r['s3_per_upload']:.4f} / {r['p99_ms']:.0f}" if r else "")
        out.append("| " + " | ".join(cells) + " |")
    out.append("")
    return out


def write_fleet_report(out: Path, doc: dict[str, Any]) -> None:
    (out / "results.json").write_text(json.dumps(doc, indent=1))
    (out / "summary.md").write_text(render(doc))


if __name__ == "__main__":
    run = Path(sys.argv[1])
    document = json.loads((run / "results.json").read_text())
    (run / "summary.md").write_text(render(document))
    print((run / "summary.md").read_text())
