"""The scenarios: what load each one puts on a running target, and which figures it records.

Scenario `name` is the method `s_<name>(backend, server)`; `direct_ceilings` runs the same
operations straight against the storage, with no HTTP, for the "direct storage" column.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from accounting import Meter, MiB
from backends import Backend
from load import curl_transfer, direct, hold_idle, wrk
from loopback import http_call, http_exchange, multipart
from recorder import Recorder
from servers import Server

ALL_SCENARIOS = [
    "upload_1k",
    "get_1k",
    "big_256m",
    "list_100k",
    "idle_1k",
    "resumable",
    "fleet",
]
# The fleet view (file backend, MindProject only): this many devices seeded into the index, a
# page of this many rows (the API's default), and the cursor this deep for the "deep" pages.
FLEET_DEVICES = 100_000
FLEET_PAGE = 100
FLEET_DEEP = 90_000
# A resumable (tus) upload of this many MiB, in each of these chunk sizes, against one streamed
# PUT of the same file (the baseline, measured in the same run).
RESUMABLE_MIB = 128
RESUMABLE_CHUNKS_MIB = (1, 8)
# The lean MindProject is compared on the request-rate scenarios only.
LEAN_SCENARIOS = {"upload_1k", "get_1k"}


@dataclass
class Config:
    duration: float
    warmup: float
    connections: int
    threads: int
    workers: int
    devices: int
    big_mib: int
    idle_connections: int
    list_connections: int


class Scenarios:
    def __init__(self, cfg: Config, rec: Recorder, work: Path, chosen: list[str]) -> None:
        self.cfg = cfg
        self.rec = rec
        self.work = work  # big payloads and the filesystem backend's folders
        self.chosen = chosen
        self._s3_baseline_populated = False

    def run(self, scenario: str, be: Backend, server: Server) -> None:
        """Run one scenario against a started target; a failure is recorded, not raised."""
        try:
            getattr(self, f"s_{scenario}")(be, server)
        except Exception as exc:
            self.rec.log(f"!! {be.name} {scenario} {server.target}: {exc!r}")
            self.rec.add(be.name, scenario, server.target, failed=repr(exc)[:300])

    def _wrk(
        self, be: Backend, server: Server, script: str, env: dict[str, str], conns: int
    ) -> dict[str, Any]:
        env = {**env, **({"BENCH_TOKEN": server.token} if server.token else {})}
        if self.cfg.warmup > 0:
            wrk(
                server.port,
                script,
                env,
                self.cfg.warmup,
                conns,
                self.cfg.threads,
                server.roots,
                be.storage_pids,
            )
        return wrk(
            server.port,
            script,
            env,
            self.cfg.duration,
            conns,
            self.cfg.threads,
            server.roots,
            be.storage_pids,
        )

    def s_upload_1k(self, be: Backend, server: Server) -> None:
        env = {"BENCH_SIZE": "1024", "BENCH_DEVICES": "1000", "BENCH_MODE": "multipart"}
        res = self._wrk(be, server, "upload.lua", env, self.cfg.connections)
        self.rec.add(be.name, "upload_1k multipart", server.target, **res)
        if server.target != "seed":  # the seed takes multipart only
            env = {**env, "BENCH_MODE": "raw"}
            res = self._wrk(be, server, "upload.lua", env, self.cfg.connections)
            self.rec.add(be.name, "upload_1k raw", server.target, **res)

    def _put(self, server: Server, device: str, payload: bytes) -> dict[str, Any]:
        body, ctype = multipart(payload)
        status, resp = http_call(
            server.port,
            "PUT",
            f"/api/devices/{device}",
            body,
            {**server.headers(), "Content-Type": ctype},
        )
        if status != 200:
            raise RuntimeError(f"PUT {device} answered {status}: {resp[:200]!r}")
        try:
            out: dict[str, Any] = json.loads(resp)
        except ValueError:
            out = {}
        return out

    def s_get_1k(self, be: Backend, server: Server) -> None:
        payload = bytes(range(256)) * 4
        if server.target != "minimal_asgi":
            self._put(server, "get-1k", payload)
        status, body = http_call(
            server.port, "GET", "/api/devices/get-1k", headers=server.headers()
        )
        if status != 200 or base64.b64decode(body) != payload:
            raise RuntimeError(f"GET get-1k answered {status} {body[:100]!r}")
        modes = [("base64", "/api/devices/get-1k")]
        if server.target != "seed":  # the seed has no raw download
            modes.append(("raw", "/api/devices/get-1k?encoding=raw"))
        for mode, path in modes:
            res = self._wrk(be, server, "get.lua", {"BENCH_PATH": path}, self.cfg.connections)
            self.rec.add(be.name, f"get_1k {mode}", server.target, **res)

    def s_big_256m(self, be: Backend, server: Server) -> None:
        if server.target == "minimal_asgi":
            return
        payload, digest = self.big_payload()
        size = payload.stat().st_size
        url = f"http://127.0.0.1:{server.port}/api/devices/big-file"
        auth = ["-H", f"Authorization: Bearer {server.token}"] if server.token else []
        put = curl_transfer(
            [*auth, "-X", "PUT", "-F", f"file=@{payload};type=application/octet-stream", url],
            server.roots,
        )
        self.rec.add(be.name, f"big PUT {size // MiB} MiB multipart", server.target, **put)
        b64 = curl_transfer([*auth, url], server.roots)
        b64["ok_size"] = b64["bytes"] == 4 * ((size + 2) // 3)
        self.rec.add(be.name, f"big GET {size // MiB} MiB base64", server.target, **b64)
        if server.target != "seed":
            raw = curl_transfer([*auth, url + "?encoding=raw"], server.roots)
            raw["ok_size"] = raw["bytes"] == size
            self.rec.add(be.name, f"big GET {size // MiB} MiB raw", server.target, **raw)
        # integrity of the stored copy, checked outside the measured transfers
        if server.target != "seed":
            path = "/api/devices/big-file?encoding=raw"
            status, body = http_call(
                server.port, "GET", path, headers=server.headers(), timeout=120
            )
            if status != 200 or hashlib.sha256(body).hexdigest() != digest:
                self.rec.log(f"!! {be.name} {server.target}: big-file download differs ({status})")
            del body

    def s_resumable(self, be: Backend, server: Server) -> None:
        """Server CPU per MiB: one streamed PUT, then tus uploads of the same bytes in chunks."""
        if not server.target.startswith("mindproject") or server.target == "mindproject_lean":
            return
        data = os.urandom(RESUMABLE_MIB * MiB)
        digest = hashlib.sha256(data).hexdigest()
        headers = server.headers()
        put_headers = {**headers, "Content-Type": "application/octet-stream"}
        with Meter(server.roots, interval=0.01) as meter:
            status, _ = http_call(
                server.port, "PUT", "/api/devices/resumable-put", data, put_headers, timeout=300
            )
        put_ms = meter.cpu * 1000 / RESUMABLE_MIB
        self.rec.add(
            be.name,
            f"streamed PUT {RESUMABLE_MIB} MiB (baseline)",
            server.target,
            status=status,
            cpu_ms_per_mib=put_ms,
            rss_above_idle_mib=meter.peak_above_idle / MiB,
        )
        tus = {**headers, "Tus-Resumable": "1.0.0"}
        for chunk_mib in RESUMABLE_CHUNKS_MIB:
            device = f"resumable-{chunk_mib}m"
            chunk = chunk_mib * MiB
            chunks = 0
            with Meter(server.roots, interval=0.01) as meter:
                status, answer, _ = http_exchange(
                    server.port,
                    "POST",
                    f"/api/devices/{device}/resumable",
                    headers={**tus, "Upload-Length": str(len(data))},
                )
                location = answer.get("location", "")
                for start in range(0, len(data), chunk):
                    status, _ = http_call(
                        server.port,
                        "PATCH",
                        location,
                        data[start : start + chunk],
                        {
                            **tus,
                            "Content-Type": "application/offset+octet-stream",
                            "Upload-Offset": str(start),
                        },
                        timeout=300,
                    )
                    chunks += 1
                    if status != 204:
                        break
            ms = meter.cpu * 1000 / RESUMABLE_MIB
            self.rec.add(
                be.name,
                f"resumable {RESUMABLE_MIB} MiB in {chunk_mib} MiB chunks",
                server.target,
                status=status,
                chunks=chunks,
                cpu_ms_per_mib=ms,
                cpu_ms_per_chunk=meter.cpu * 1000 / max(chunks, 1),
                overhead_vs_put=ms / put_ms - 1 if put_ms else None,
                rss_above_idle_mib=meter.peak_above_idle / MiB,
            )
            got_status, body = http_call(
                server.port,
                "GET",
                f"/api/devices/{device}?encoding=raw",
                headers=headers,
                timeout=300,
            )
            if got_status != 200 or hashlib.sha256(body).hexdigest() != digest:
                self.rec.log(f"!! {be.name} {server.target}: resumable {device} differs")

    def big_payload(self) -> tuple[Path, str]:
        path = self.work / f"payload-{self.cfg.big_mib}m.bin"
        digest_file = path.with_suffix(".sha256")
        if not path.exists() or path.stat().st_size != self.cfg.big_mib * MiB:
            h = hashlib.sha256()
            with path.open("wb") as f:
                for _ in range(self.cfg.big_mib):
                    chunk = os.urandom(MiB)
                    h.update(chunk)
                    f.write(chunk)
            digest_file.write_text(h.hexdigest())
        return path, digest_file.read_text().strip()

    def populate(self, be: Backend, server: Server) -> None:
        n = self.cfg.devices
        if server.target.startswith("mindproject"):
            t0 = time.monotonic()
            env = {"BENCH_COUNT": str(n), "BENCH_PREFIX": "dev-", "BENCH_THREADS": "2"}
            if server.token:
                env["BENCH_TOKEN"] = server.token
            res = wrk(
                server.port,
                "populate.lua",
                env,
                1800,
                64,
                2,
                server.roots,
                be.storage_pids,
                until_idle=True,
            )
            missing = self.top_up(server, n)
            self.rec.log(
                f"populated {n} devices through the API in {time.monotonic() - t0:.1f}s "
                f"({res['rps']:.0f} req/s, failed {res['populate_failed']}, "
                f"{missing} missed ids uploaded afterwards)"
            )
        elif server.target in ("seed", "conventional"):
            self.populate_baseline(be)

    def populate_baseline(self, be: Backend) -> None:
        """The one-object-per-device population that the seed, the conventional stack and the
        direct walk share, written straight into storage once per backend."""
        n = self.cfg.devices
        marker = self.work / be.name / "data" / f"baseline-populated-{n}"
        if self._s3_baseline_populated if be.name == "s3" else marker.exists():
            return
        t0 = time.monotonic()
        direct("populate", be, n, 32, None)
        self.rec.log(f"populated {n} baseline devices directly in {time.monotonic() - t0:.1f}s")
        if be.name == "s3":
            self._s3_baseline_populated = True
        else:
            marker.parent.mkdir(parents=True, exist_ok=True)
            marker.touch()

    def top_up(self, server: Server, n: int) -> int:
        """Upload the dev-NNNNNNN ids that the populate run missed (wrk can drop one)."""
        seen: set[str] = set()
        cursor: str | None = None
        for _ in range(n // 1000 + 10):
            path = "/api/devices/?prefix=dev-&limit=1000"
            if cursor:
                path += "&cursor=" + urllib.parse.quote(cursor)
            status, body = http_call(
                server.port, "GET", path, headers=server.headers(), timeout=120
            )
            if status != 200:
                raise RuntimeError(f"list answered {status}: {body[:200]!r}")
            doc = json.loads(body)
            for item in doc["TelemetryDataDownloads"]:
                seen.add(item if isinstance(item, str) else item.get("device_id", ""))
            cursor = doc.get("next_cursor")
            if not cursor:
                break
        missing = [f"dev-{i:07d}" for i in range(n) if f"dev-{i:07d}" not in seen]
        for device in missing:
            self._put(server, device, b"telemetry")
        return len(missing)

    def s_list_100k(self, be: Backend, server: Server) -> None:
        if server.target == "minimal_asgi":
            return
        self.populate(be, server)
        first = "/api/devices/" if server.target == "seed" else "/api/devices/?limit=1000"
        status, body = http_call(server.port, "GET", first, headers=server.headers(), timeout=120)
        page_len = len(json.loads(body).get("TelemetryDataDownloads", [])) if status == 200 else 0
        res = self._wrk(be, server, "get.lua", {"BENCH_PATH": first}, self.cfg.list_connections)
        self.rec.add(
            be.name,
            f"list first page of {self.cfg.devices}",
            server.target,
            page_devices=page_len,
            **res,
        )
        # full walk, one client following next_cursor
        t0 = time.monotonic()
        with Meter(server.roots) as meter:
            seen, pages, cursor = 0, 0, None
            while pages < 10000:
                path = (
                    first
                    if cursor is None
                    else ("/api/devices/?limit=1000&cursor=" + urllib.parse.quote(cursor))
                )
                status, body = http_call(
                    server.port, "GET", path, headers=server.headers(), timeout=120
                )
                if status != 200:
                    raise RuntimeError(f"walk page {pages} answered {status}: {body[:200]!r}")
                doc = json.loads(body)
                pages += 1
                seen += len(doc.get("TelemetryDataDownloads", []))
                cursor = doc.get("next_cursor")
                if not cursor:
                    break
        secs = time.monotonic() - t0
        self.rec.add(
            be.name,
            f"list full walk of {self.cfg.devices}",
            server.target,
            devices_seen=seen,
            pages=pages,
            seconds=secs,
            cpu_ms=meter.cpu * 1000,
            peak_rss_mib=meter.peak / MiB,
            rss_above_idle_mib=meter.peak_above_idle / MiB,
        )

    def s_fleet(self, be: Backend, server: Server) -> None:
        """Fleet pages, the summary and a device's activity over 100,000 devices, against the
        plain device list page (the baseline) in the same run, on the file backend."""
        if be.name != "file" or server.target != "mindproject":
            return
        data = Path(be.storage_for(server.target).removeprefix("file://"))
        seeded = seed_fleet_index(data / "index.sqlite3", FLEET_DEVICES)
        self.rec.log(f"fleet: {seeded}")
        deep = {
            sort: self._fleet_cursor(server, sort, FLEET_DEEP)
            for sort in ("device_id", "last_upload_at")
        }
        page = f"limit={FLEET_PAGE}"
        paths = [
            (f"device list page of {FLEET_PAGE} (baseline)", f"/api/devices/?{page}"),
            (f"fleet page of {FLEET_PAGE} by id", f"/api/fleet/devices?{page}"),
            (
                f"fleet page of {FLEET_PAGE} by last upload",
                f"/api/fleet/devices?{page}&sort=last_upload_at",
            ),
            (
                f"fleet page of {FLEET_PAGE} silent 7d, by last upload",
                f"/api/fleet/devices?{page}&sort=last_upload_at&silent_for=7d",
            ),
            (
                f"fleet page of {FLEET_PAGE} silent 7d, by id",
                f"/api/fleet/devices?{page}&silent_for=7d",
            ),
            (
                f"fleet page by id, cursor at {FLEET_DEEP}",
                f"/api/fleet/devices?{page}&cursor={deep['device_id']}",
            ),
            (
                f"fleet page by last upload, cursor at {FLEET_DEEP}",
                f"/api/fleet/devices?{page}&sort=last_upload_at&cursor={deep['last_upload_at']}",
            ),
            (
                f"fleet page of {FLEET_PAGE} by id, prefix",
                f"/api/fleet/devices?{page}&prefix=fleet-00012",
            ),
            ("fleet summary", "/api/fleet/summary?silent_for=24h"),
            ("device activity, 7 days of hours", "/api/devices/fleet-0000008/activity"),
        ]
        for label, path in paths:
            status, body = http_call(server.port, "GET", path, headers=server.headers())
            if status != 200:
                raise RuntimeError(f"{path} answered {status}: {body[:200]!r}")
            res = self._wrk(be, server, "get.lua", {"BENCH_PATH": path}, self.cfg.list_connections)
            # The machine's load beside each row: on a shared machine latency is mostly queueing,
            # and CPU ms per request is the figure that does not depend on it.
            load = round(os.getloadavg()[0], 1)
            self.rec.add(be.name, label, server.target, devices=FLEET_DEVICES, load_1m=load, **res)

    def _fleet_cursor(self, server: Server, sort: str, depth: int) -> str:
        """A real cursor `depth` rows deep, got by walking pages of 1,000 as a client would."""
        cursor = ""
        for _ in range(depth // 1000):
            path = f"/api/fleet/devices?limit=1000&sort={sort}"
            if cursor:
                path += f"&cursor={cursor}"
            status, body = http_call(server.port, "GET", path, headers=server.headers())
            if status != 200:
                raise RuntimeError(f"walk answered {status}: {body[:200]!r}")
            cursor = json.loads(body)["next_cursor"]
        return cursor

    def s_idle_1k(self, be: Backend, server: Server) -> None:
        n = self.cfg.idle_connections
        with Meter(server.roots, interval=0.1) as meter:
            res = hold_idle(server.port, n, server.headers(), 3.0)
        self.rec.add(
            be.name,
            f"idle {n} keep-alive conns",
            server.target,
            peak_rss_mib=meter.peak / MiB,
            rss_above_idle_mib=meter.peak_above_idle / MiB,
            rss_per_conn_kib=meter.peak_above_idle / 1024 / max(n, 1),
            cpu_ms=meter.cpu * 1000,
            **res,
        )

    def direct_ceilings(self, be: Backend) -> None:
        self.rec.log(f"== {be.name}: direct storage ceilings")
        ops: list[tuple[str, str, Path | None]] = []
        if "upload_1k" in self.chosen:
            ops.append(("put_1k", "upload_1k multipart", None))
        if "get_1k" in self.chosen:
            ops.append(("get_1k", "get_1k raw", None))
        if "big_256m" in self.chosen:
            big, _ = self.big_payload()
            size = big.stat().st_size // MiB
            ops.append(("put_big", f"big PUT {size} MiB multipart", big))
            ops.append(("get_big", f"big GET {size} MiB raw", big))
        if "list_100k" in self.chosen:
            ops.append(("list", f"list full walk of {self.cfg.devices}", None))
        for op, label, payload in ops:
            try:
                if op == "list":
                    self.populate_baseline(be)
                threads = 16 if be.name == "s3" else 2
                res = direct(op, be, self.cfg.duration, threads, payload)
                self.rec.add(be.name, label, "direct", **res)
            except Exception as exc:
                self.rec.log(f"!! direct {op}: {exc!r}")
                self.rec.add(be.name, label, "direct", failed=repr(exc)[:300])


def seed_fleet_index(index: Path, devices: int) -> str:
    """Write `devices` devices straight into a running file backend's SQLite index (the server
    made the schema; SQLite lets this process write beside it): each with its newest upload at a
    time spread over 30 days, one older upload, and one upload in the last day for a device in
    two, so the summary's day window holds 50,000 uploads. Seeding through the API would take
    minutes; the rows are the ones FileStorage._insert writes (storage/filesystem.py)."""
    import random
    import sqlite3

    rng = random.Random(13)
    now_us = int(time.time() * 1e6)
    day_us = 86_400_000_000
    epoch = 10**16
    uploads: list[tuple[str, str, int, str, None, None, bytes]] = []
    # In index order, so the inserts append to the b-trees instead of splitting pages.
    rows: list[tuple[str, int, int, int, int]] = []
    minutes: dict[int, int] = {}
    sha = hashlib.sha256(b"x" * 64).hexdigest()
    for i in range(devices):
        device = f"fleet-{i:07d}"
        times = [now_us - rng.randrange(30 * day_us), now_us - 31 * day_us - rng.randrange(day_us)]
        if i % 2 == 0:
            times.append(now_us - rng.randrange(day_us))
        for n, at in enumerate(times):
            version = f"{epoch - at:016d}-{i:06x}{n:02x}"[:25]
            uploads.append((device, version, 64, sha, None, None, b"x" * 64))
            minutes[at // 60_000_000] = minutes.get(at // 60_000_000, 0) + 1
        newest = max(times)
        rows.append((device, len(times), newest, 64 * len(times), 64))
    uploads.sort()
    db = sqlite3.connect(index, timeout=30)
    try:
        with db:
            db.executemany(
                "INSERT OR IGNORE INTO uploads (device_id, version, size, sha256, filename, "
                "content_type, data) VALUES (?, ?, ?, ?, ?, ?, ?)",
                uploads,
            )
            db.executemany(
                "INSERT OR REPLACE INTO devices (device_id, uploads, last_us, bytes, last_size) "
                "VALUES (?, ?, ?, ?, ?)",
                rows,
            )
            db.executemany(
                "INSERT INTO upload_minutes VALUES (?, ?, ?) ON CONFLICT (minute) DO UPDATE SET "
                "uploads = uploads + excluded.uploads, bytes = bytes + excluded.bytes",
                [(minute, count, 64 * count) for minute, count in minutes.items()],
            )
    finally:
        db.close()
    return f"seeded {devices} devices and {len(uploads)} uploads into {index}"
