"""The seed README's three curl commands, run literally against a real server process: as
written in open mode (MINDPROJECT_AUTH=off, the seed's behaviour), and with a bearer token."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import RunningServer, run_server

# curl needs a socket: these run against real server processes.
pytestmark = [
    pytest.mark.server,
    pytest.mark.skipif(not shutil.which("curl"), reason="curl is not installed"),
]


def curl(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["curl", "-sS", *args], capture_output=True, timeout=60, check=True)


@pytest.fixture
def open_server(tmp_path: Path) -> Iterator[RunningServer]:
    with run_server(tmp_path, f"file://{tmp_path / 'data'}", env={"MINDPROJECT_AUTH": "off"}) as s:
        yield s


def test_seed_readme_curl_commands(open_server: RunningServer, tmp_path: Path) -> None:
    api_url = open_server.url.rsplit(":", 1)[0]  # the README writes "<api_url>:5000"
    port = open_server.url.rsplit(":", 1)[1]
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


def test_seed_calls_with_a_bearer_token(live_server: RunningServer, tmp_path: Path) -> None:
    server = live_server
    auth = f"Authorization: {server.auth_headers['Authorization']}"
    upload = tmp_path / "t.bin"
    upload.write_bytes(os.urandom(4096))
    put = curl("-H", auth, "-X", "PUT", "-F", f"file=@{upload}", f"{server.url}/api/devices/d")
    assert json.loads(put.stdout)["message"] == "File uploaded for Device ID - d"
    listed = json.loads(curl("-H", auth, f"{server.url}/api/devices/").stdout)
    assert listed["TelemetryDataDownloads"] == ["d"]
    headers = curl("-H", auth, "-D", "-", "-o", "/dev/null", f"{server.url}/api/devices/d").stdout
    assert b"content-type: application/octet-stream" in headers.lower()
    denied = curl("-o", "/dev/null", "-w", "%{http_code}", f"{server.url}/api/devices/")
    assert denied.stdout == b"401"
    page = curl(f"{server.url}/api/").stdout
    assert b"swagger-ui-bundle.js" in page
