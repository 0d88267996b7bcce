"""Access control over HTTP: roles, revocation across replicas, open mode, the first-run banner."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.helpers import (
    TEST_SECRET_KEY,
    AppServer,
    app_server,
    assert_error,
    free_port,
    make_token,
    run_cli,
    run_server,
    wait_for,
)


def test_roles_over_http(server: AppServer) -> None:
    sensor = make_token("device", "sensor-1")
    operator = make_token("operator")
    with server.client(sensor) as device, server.client(operator) as ops, server.client() as admin:
        assert (
            device.put("/api/devices/sensor-1", files={"file": ("f", b"mine")}).status_code == 200
        )
        assert device.get("/api/devices/sensor-1").status_code == 200
        assert device.get("/api/devices/sensor-1/uploads").status_code == 200
        assert_error(
            device.put("/api/devices/sensor-2", files={"file": ("f", b"x")}), 403, "forbidden"
        )
        assert_error(device.get("/api/devices/sensor-2"), 403, "forbidden")
        assert_error(device.get("/api/devices/"), 403, "forbidden")
        assert_error(device.delete("/api/devices/sensor-1"), 403, "forbidden")

        assert ops.get("/api/devices/").json()["TelemetryDataDownloads"] == ["sensor-1"]
        assert ops.get("/api/devices/sensor-1", params={"encoding": "raw"}).content == b"mine"
        assert_error(
            ops.put("/api/devices/sensor-1", files={"file": ("f", b"x")}), 403, "forbidden"
        )
        assert_error(ops.delete("/api/devices/sensor-1"), 403, "forbidden")
        assert_error(ops.put("/api/revocations/sensor-1"), 403, "forbidden")

        assert admin.delete("/api/devices/sensor-1").status_code == 200
    assert server.data is not None
    assert not (server.data / "blobs" / "sensor-1").exists()


def test_missing_and_bad_tokens_are_401_with_a_challenge(server: AppServer) -> None:
    with server.client(None) as anonymous:
        missing = anonymous.get("/api/devices/")
        assert_error(missing, 401, "unauthorized")
        assert missing.headers["www-authenticate"] == 'Bearer realm="mindproject"'
        bad = anonymous.get("/api/devices/", headers={"Authorization": "Bearer nope"})
        assert_error(bad, 401, "unauthorized")
        assert 'error="invalid_token"' in bad.headers["www-authenticate"]
        basic = anonymous.get("/api/devices/", headers={"Authorization": "Basic dXNlcjpwYXNz"})
        assert_error(basic, 401, "unauthorized")
        expired = anonymous.get(
            "/api/devices/", headers={"Authorization": f"Bearer {make_token('admin', ttl=-300)}"}
        )
        assert_error(expired, 401, "unauthorized")
        assert "expired" in expired.json()["error"]["message"]
        # Liveness, readiness and the documentation stay open: load balancers call them.
        assert anonymous.get("/healthz").status_code == 200
        assert anonymous.get("/readyz").status_code == 200
        assert anonymous.get("/api/").status_code == 200


@pytest.mark.server
def test_revocation_reaches_every_replica_within_seconds(tmp_path: Path) -> None:
    storage = f"file://{tmp_path / 'data'}"
    env = {"MINDPROJECT_REVOCATION_REFRESH_SECONDS": "1"}
    sensor = make_token("device", "sensor-9")
    with (
        run_server(tmp_path, storage, env=env) as first,
        run_server(tmp_path, storage, env=env) as second,
    ):
        with second.client(sensor) as on_second:
            assert (
                on_second.put("/api/devices/sensor-9", files={"file": ("f", b"1")}).status_code
                == 200
            )
        # Revoke through the CLI, which speaks HTTP to the first replica.
        revoke = run_cli(
            "revoke", "sensor-9", "--url", first.url, env={"MINDPROJECT_TOKEN": make_token("admin")}
        )
        assert revoke.returncode == 0, revoke.stderr
        with first.client(sensor) as on_first:
            assert_error(on_first.get("/api/devices/sensor-9"), 401, "unauthorized")
        with second.client(sensor) as on_second:  # the refresh is 1 s: poll, bounded
            wait_for(
                lambda: on_second.get("/api/devices/sensor-9").status_code == 401,
                "the revocation to reach the second replica",
                timeout=15,
            )
        # Tokens carry whole seconds: one issued in a later second than the revocation works.
        time.sleep(1.1)
        with second.client(make_token("device", "sensor-9")) as renewed:
            assert renewed.get("/api/devices/sensor-9").status_code == 200
        with first.client() as admin:
            listed = admin.get("/api/revocations/").json()["revocations"]
            assert [r["device_id"] for r in listed] == ["sensor-9"]
            assert admin.delete("/api/revocations/sensor-9").json()["revoked_at"] is None
        with first.client(sensor) as old_token_again:
            assert old_token_again.get("/api/devices/sensor-9").status_code == 200


@pytest.mark.server
def test_open_mode_warns_and_works_without_tokens(tmp_path: Path) -> None:
    with run_server(tmp_path, f"file://{tmp_path}/d", env={"MINDPROJECT_AUTH": "off"}) as server:
        with httpx.Client(base_url=server.url) as client:
            assert client.put("/api/devices/x", files={"file": ("f", b"1")}).status_code == 200
        assert "AUTH IS OFF" in server.log()


@pytest.mark.server
def test_open_mode_refuses_a_public_address_at_start() -> None:
    result = run_cli("serve", "--auth", "off", "--host", "0.0.0.0", "--port", str(free_port()))
    assert result.returncode == 2
    assert "MINDPROJECT_AUTH=off" in result.stderr


@pytest.mark.server
def test_first_run_makes_a_private_key_and_prints_a_working_admin_token(tmp_path: Path) -> None:
    # No key anywhere (run_server would set one): this test is about the first run.
    env = {k: v for k, v in os.environ.items() if not k.startswith("MINDPROJECT_")}
    env["MINDPROJECT_SHUTDOWN_DRAIN_SECONDS"] = "0"  # this test is not about the drain
    port = free_port()
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "mindproject.cli",
                "serve",
                "--port",
                str(port),
                "--storage",
                f"file://{tmp_path}/data",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=tmp_path,
        )
    try:

        def started() -> bool:
            assert process.poll() is None, log.read_text()
            if "export TOKEN=" not in log.read_text():
                return False
            # "app started" is logged by the lifespan, before uvicorn binds the socket.
            try:
                return httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200
            except httpx.TransportError:
                return False

        wait_for(started, "the first-run banner and the server ready", timeout=30)
        key_file = tmp_path / "data" / "secret.key"
        assert key_file.stat().st_mode & 0o777 == 0o600
        token = re.search(r"export TOKEN=(\S+)", log.read_text())
        assert token is not None
        assert "curl -H" in log.read_text()
        headers = {"Authorization": f"Bearer {token.group(1)}"}
        listed = httpx.get(f"http://127.0.0.1:{port}/api/devices/", headers=headers)
        assert listed.status_code == 200
        # `mindproject token create` signs with the same key file.
        device_token = run_cli(
            *("token", "create", "--device", "s1", "--storage", f"file://{tmp_path}/data"),
            clean_env=True,
            check=True,
        ).stdout.strip()
        put = httpx.put(
            f"http://127.0.0.1:{port}/api/devices/s1",
            files={"file": ("f", b"x")},
            headers={"Authorization": f"Bearer {device_token}"},
        )
        assert put.status_code == 200
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.mark.server
def test_token_create_refuses_without_a_usable_key() -> None:
    result = run_cli(
        "token", "create", "--role", "admin", "--storage", "s3://bucket/x", clean_env=True
    )
    assert result.returncode == 2
    assert "MINDPROJECT_SECRET_KEY" in result.stderr
    assert TEST_SECRET_KEY not in result.stdout


@pytest.mark.parametrize("origin", ["https://console.example.com"])
def test_cors_is_off_by_default_and_follows_the_allowlist(tmp_path: Path, origin: str) -> None:
    storage = f"file://{tmp_path}/d"
    with app_server(storage) as closed, closed.client() as client:
        response = client.get("/api/devices/", headers={"Origin": origin})
        assert "access-control-allow-origin" not in response.headers
    with app_server(storage, cors_origins=origin) as opened, opened.client() as client:
        allowed = client.get("/api/devices/", headers={"Origin": origin})
        assert allowed.headers["access-control-allow-origin"] == origin
        other = client.get("/api/devices/", headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in other.headers
        preflight = client.options(
            "/api/devices/x",
            headers={
                "Origin": origin,
                "Access-Control-Request-Method": "PUT",
                "Access-Control-Request-Headers": "authorization",
            },
        )
        assert preflight.status_code == 200


def test_security_headers_on_every_response(server: AppServer) -> None:
    with server.client() as client:
        for response in (client.get("/healthz"), client.get("/api/devices/nope"), client.get("/x")):
            assert response.headers["x-content-type-options"] == "nosniff"
            assert response.headers["x-frame-options"] == "DENY"
            assert "default-src 'self'" in response.headers["content-security-policy"]
