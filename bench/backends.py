"""The storage each benchmark run uses: a fresh folder, or a fresh Ceph RGW on loopback.

Every target of one backend shares it; the seed and the conventional stack share one layout (one
object per device), so they share one folder or bucket and one 100,000-device population.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loopback import free_port
from paths import ROOT

ALL_BACKENDS = ["file", "s3"]


@dataclass
class Backend:
    name: str
    work: Path
    env: dict[str, str] = field(default_factory=dict)
    s3_dir: Path | None = None

    def storage_for(self, target: str) -> str:
        # seed and conventional share one layout (one object per device), so they share storage.
        group = "baseline" if target in ("seed", "conventional", "direct-list") else target
        if self.name == "file":
            path = self.work / "data" / group
            path.mkdir(parents=True, exist_ok=True)
            return f"file://{path}"
        bucket = f"bench-{group}".replace("_", "-")
        return f"s3://{bucket}" + ("/data" if target.startswith("mindproject") else "")

    def storage_pids(self) -> list[int]:
        if self.s3_dir is None:
            return []
        pids = []
        for name in ("radosgw", "ceph-osd", "ceph-mon"):
            with contextlib.suppress(OSError, ValueError):
                pids.append(int((self.s3_dir / "run" / f"{name}.pid").read_text().strip()))
        return [p for p in pids if Path(f"/proc/{p}").exists()]

    def s3_client(self) -> Any:
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.env["AWS_ENDPOINT_URL"],
            aws_access_key_id=self.env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=self.env["AWS_SECRET_ACCESS_KEY"],
            region_name=self.env.get("AWS_REGION", "us-east-1"),
            config=Config(max_pool_connections=64, s3={"addressing_style": "path"}),
        )


@contextlib.contextmanager
def backend(name: str, work: Path, log: Callable[[str], None]) -> Iterator[Backend]:
    work.mkdir(parents=True, exist_ok=True)
    if name == "file":
        shutil.rmtree(work / "data", ignore_errors=True)
        yield Backend(name, work)
        return
    s3_dir = work / "s3-server"
    shutil.rmtree(s3_dir, ignore_errors=True)
    port = free_port()
    log(f"starting the S3 server in {s3_dir} on port {port}")
    out = subprocess.run(
        ["bash", str(ROOT / "scripts" / "s3-server.sh"), "start", str(s3_dir), str(port)],
        capture_output=True,
        text=True,
        timeout=180,
        check=True,
    ).stdout
    env = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
    be = Backend(name, work, env, s3_dir)
    try:
        client = be.s3_client()
        for group in ("mindproject", "mindproject-lean", "baseline", "direct"):
            client.create_bucket(Bucket=f"bench-{group}")
        yield be
    finally:
        subprocess.run(
            ["bash", str(ROOT / "scripts" / "s3-server.sh"), "stop", str(s3_dir), "--purge"],
            timeout=60,
            check=False,
        )
