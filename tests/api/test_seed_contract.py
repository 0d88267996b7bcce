"""The seed README's three curl commands, run literally against a real server process."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.helpers import RunningServer

pytestmark = pytest.mark.skipif(not shutil.which("curl"), reason="curl is not installed")


def curl(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["curl", "-sS", *args], capture_output=True, timeout=60, check=True)


def test_seed_readme_curl_commands(server: RunningServer, tmp_path: Path) -> None:
    api_url = server.url.rsplit(":", 1)[0]  # the README writes "<api_url>:5000"
    port = server.url.rsplit(":", 1)[1]
    upload = tmp_path / "telemetry.bin"
    upload.write_bytes(os.urandom(10_000) + b"\x00\xff" * 100)
    downloaded = tmp_path / "download.b64"

    # Upload File to Deviceid parameter
    put = curl("-X", "PUT", "-F", f"file=@{upload}", f"{api_url}:{port}/api/devices/sensor-42")
    body = json.loads(put.stdout)
    assert body["message"] == "File uploaded for Device ID - sensor-42"
    assert body["size"] == upload.stat().st_size

    # List files for download
    listed = json.loads(curl("-X", "GET", f"{api_url}:{port}/api/devices/").stdout)
    assert listed["TelemetryDataDownloads"] == ["sensor-42"]

    # Download binary data from deviceid as base64 then store to file locally
    curl("-X", "GET", f"{api_url}:{port}/api/devices/sensor-42", "--output", str(downloaded))
    assert base64.b64decode(downloaded.read_bytes(), validate=True) == upload.read_bytes()


def test_download_is_octet_stream_and_api_docs_served(server: RunningServer) -> None:
    curl("-X", "PUT", "-F", "file=@/etc/hostname", f"{server.url}/api/devices/d")
    headers = curl("-s", "-D", "-", "-o", "/dev/null", f"{server.url}/api/devices/d").stdout
    assert b"content-type: application/octet-stream" in headers.lower()
    page = curl(f"{server.url}/api/").stdout
    assert b"swagger-ui-bundle.js" in page
