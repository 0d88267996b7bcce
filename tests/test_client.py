"""The Python SDK (also the CLI's HTTP layer) against a real server: it speaks urllib, so it
needs a socket."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mindproject.client import ApiError, Client
from tests.helpers import RunningServer, make_token


@pytest.mark.server
def test_upload_list_download_and_errors(live_server: RunningServer, tmp_path: Path) -> None:
    server = live_server
    admin = Client(server.url, make_token("admin"))
    telemetry = tmp_path / "reading.bin"
    telemetry.write_bytes(os.urandom(70_000))
    stored = admin.upload("sdk-1", telemetry)
    assert stored["size"] == 70_000 and stored["filename"] == "reading.bin"
    assert admin.list_devices() == ["sdk-1"]
    assert admin.download("sdk-1") == telemetry.read_bytes()
    assert admin.download("sdk-1", stored["version"]) == telemetry.read_bytes()
    with pytest.raises(ApiError) as missing:
        admin.download("nobody")
    assert (missing.value.status, missing.value.code) == (404, "device_not_found")
    with pytest.raises(ApiError) as forbidden:
        Client(server.url, make_token("device", "other")).download("sdk-1")
    assert forbidden.value.status == 403
    assert admin.revoke("sdk-1")["device_id"] == "sdk-1"
    assert admin.unrevoke("sdk-1")["revoked_at"] is None
