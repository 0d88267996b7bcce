"""The SDK (mindproject.client) against a real `mindproject serve` on the file backend: one
server per module, each test on its own device ids."""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from mindproject.client import (
    ApiError,
    AsyncClient,
    Client,
    RetryPolicy,
    Version,
)
from tests.helpers import RunningServer, make_token, run_server

MiB = 1024 * 1024


@pytest.fixture(scope="module")
def sdk_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """Rate limiting off: resumable tests send many small chunks from one device token."""
    tmp_path = tmp_path_factory.mktemp("sdk")
    env = {"MINDPROJECT_RATE_LIMIT_PER_MINUTE": "0", "MINDPROJECT_SHUTDOWN_DRAIN_SECONDS": "0"}
    with run_server(tmp_path, f"file://{tmp_path / 'data'}", env=env) as running:
        yield running


def admin(server: RunningServer, tmp_path: Path, **kwargs: object) -> Client:
    return Client(server.url, make_token("admin"), state_dir=tmp_path / "state", **kwargs)  # type: ignore[arg-type]


@pytest.mark.server
@pytest.mark.parametrize("size", [0, 1, MiB])
def test_round_trip_small(sdk_server: RunningServer, tmp_path: Path, size: int) -> None:
    data = os.urandom(size)
    source = tmp_path / "reading.bin"
    source.write_bytes(data)
    device = f"rt-{size}"
    with admin(sdk_server, tmp_path) as client:
        stored = client.upload(device, source)
        assert (stored.size, stored.filename, stored.replayed) == (size, "reading.bin", False)
        assert stored.sha256 == hashlib.sha256(data).hexdigest()
        target = tmp_path / "back.bin"
        assert client.download(device, target) == stored
        assert target.read_bytes() == data
        assert b"".join(client.iter_bytes(device, version=stored.version)) == data
        assert client.latest(device) == stored
        assert client.get(device, stored.version) == stored


@pytest.mark.server
def test_resumable_upload_and_download_to_file_objects(
    sdk_server: RunningServer, tmp_path: Path
) -> None:
    """Above the threshold the upload goes through tus, in chunks; progress reaches the total."""
    data = os.urandom(5 * MiB + 123)
    seen: list[tuple[int, int]] = []
    with admin(sdk_server, tmp_path, resumable_threshold=MiB, chunk_size=MiB) as client:
        stored = client.upload(
            "tus-1",
            io.BytesIO(data),
            filename="big.bin",
            content_type="text/csv",
            progress=lambda done, total: seen.append((done, total)),
        )
        assert (stored.size, stored.filename, stored.content_type) == (
            len(data),
            "big.bin",
            "text/csv",
        )
        assert stored.sha256 == hashlib.sha256(data).hexdigest()
        assert seen[-1] == (len(data), len(data)) and len(seen) > 6
        sink = io.BytesIO()
        down: list[int] = []
        assert client.download("tus-1", sink, progress=lambda d, t: down.append(d)) == stored
        assert sink.getvalue() == data and down[-1] == len(data)
    assert not any((tmp_path / "state").glob("*.tmp"))


@pytest.mark.server
def test_resumable_upload_survives_a_restart_of_the_calling_process(
    sdk_server: RunningServer, tmp_path: Path
) -> None:
    """The first client dies after two chunks (its progress callback raises, as a reboot would
    stop it); a new client with the same state folder resumes at the server's offset."""
    source = tmp_path / "telemetry.bin"
    source.write_bytes(os.urandom(6 * MiB))

    class Reboot(Exception):
        pass

    def die_after_two_chunks(done: int, total: int) -> None:
        if done >= 2 * MiB:
            raise Reboot

    first = admin(sdk_server, tmp_path, resumable_threshold=MiB, chunk_size=MiB)
    with first, pytest.raises(Reboot):
        first.upload("tus-2", source, progress=die_after_two_chunks)
    state_file = tmp_path / "state" / "resumable-uploads.json"
    assert state_file.stat().st_mode & 0o777 == 0o600
    starts: list[int] = []
    with admin(sdk_server, tmp_path, resumable_threshold=MiB, chunk_size=MiB) as second:
        stored = second.upload("tus-2", source, progress=lambda d, t: starts.append(d))
    # The first chunk was stored durably before the callback raised during the second one.
    assert starts[0] > MiB
    assert stored.sha256 == hashlib.sha256(source.read_bytes()).hexdigest()
    assert "tus-2" not in state_file.read_text()  # forgotten once complete
    assert len(list(Client(sdk_server.url, make_token()).history("tus-2"))) == 1


@pytest.mark.server
def test_non_seekable_source_is_spooled(sdk_server: RunningServer, tmp_path: Path) -> None:
    data = os.urandom(3 * MiB)
    reader, writer = os.pipe()
    os.write(writer, b"")
    feeder = subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.stdout.buffer.write(sys.stdin.buffer.read())"],
        stdin=subprocess.PIPE,
        stdout=writer,
    )
    os.close(writer)
    assert feeder.stdin is not None
    feeder.stdin.write(data)
    feeder.stdin.close()
    with os.fdopen(reader, "rb") as pipe, admin(sdk_server, tmp_path, resumable_threshold=MiB) as c:
        stored = c.upload("pipe-1", pipe, filename="stdin")
    feeder.wait()
    assert stored.sha256 == hashlib.sha256(data).hexdigest()


@pytest.mark.server
def test_paging_listing_and_deleting(sdk_server: RunningServer, tmp_path: Path) -> None:
    with admin(sdk_server, tmp_path) as client:
        versions = [client.upload(f"page-{i % 3}", io.BytesIO(b"x" * i)) for i in range(7)]
        page = client.devices_page(prefix="page-", limit=2)
        assert page.devices == ["page-0", "page-1"] and page.next_cursor
        assert list(client.devices(prefix="page-")) == ["page-0", "page-1", "page-2"]
        first = client.history_page("page-0", limit=1)
        assert len(first.versions) == 1 and first.next_cursor
        history = list(client.history("page-0"))
        assert history == [versions[6], versions[3], versions[0]]  # newest first
        oldest = history[-1]
        assert client.get("page-0", oldest.version) == oldest
        client.delete_version("page-0", oldest.version)
        with pytest.raises(ApiError) as gone:
            client.get("page-0", oldest.version)
        assert (gone.value.status, gone.value.code) == (404, "upload_not_found")
        assert client.delete_device("page-1") == 2
        assert list(client.devices(prefix="page-")) == ["page-0", "page-2"]


@pytest.mark.server
def test_api_errors_carry_the_servers_code_and_request_id(
    sdk_server: RunningServer, tmp_path: Path
) -> None:
    with admin(sdk_server, tmp_path) as client:
        client.upload("err-1", io.BytesIO(b"reading"))
        with pytest.raises(ApiError) as missing:
            client.download("nobody", tmp_path / "x")
        assert (missing.value.status, missing.value.code) == (404, "device_not_found")
        assert missing.value.request_id
        assert not (tmp_path / "x").exists() and not list(tmp_path.glob(".x.*"))
    device = Client(sdk_server.url, make_token("device", "other"), state_dir=tmp_path)
    with pytest.raises(ApiError) as forbidden:
        device.download("err-1", io.BytesIO())
    assert forbidden.value.status == 403
    with pytest.raises(ApiError) as upload_forbidden:
        device.upload("err-1", io.BytesIO(os.urandom(MiB)))
    assert upload_forbidden.value.status == 403
    no_retry = Client(sdk_server.url, None, retry=RetryPolicy(attempts=1), state_dir=tmp_path)
    with pytest.raises(ApiError) as anonymous:
        no_retry.latest("err-1")
    assert (anonymous.value.status, anonymous.value.code) == (401, "unauthorized")


@pytest.mark.server
def test_revoke_and_unrevoke(sdk_server: RunningServer, tmp_path: Path) -> None:
    with admin(sdk_server, tmp_path) as client:
        assert client.revoke("rev-1")["device_id"] == "rev-1"
        assert client.unrevoke("rev-1")["revoked_at"] is None


@pytest.mark.server
@pytest.mark.anyio
async def test_async_client_round_trip(sdk_server: RunningServer, tmp_path: Path) -> None:
    small, large = os.urandom(1000), os.urandom(3 * MiB + 5)
    async with AsyncClient(
        sdk_server.url,
        make_token("device", "async-1"),
        resumable_threshold=MiB,
        chunk_size=MiB,
        state_dir=tmp_path,
    ) as client:
        first = await client.upload("async-1", io.BytesIO(small), filename="a")
        second = await client.upload("async-1", io.BytesIO(large), filename="b")
        assert isinstance(second, Version) and second.size == len(large)
        assert [v.version async for v in client.history("async-1")] == [
            second.version,
            first.version,
        ]
    async with AsyncClient(sdk_server.url, make_token(), state_dir=tmp_path) as client:
        assert [d async for d in client.devices(prefix="async-")] == ["async-1"]
        target = tmp_path / "out.bin"
        assert await client.download("async-1", target) == second
        assert target.read_bytes() == large
        pieces = [p async for p in client.iter_bytes("async-1", version=first.version)]
        assert b"".join(pieces) == small
        assert await client.get("async-1", first.version) == first


class LoseFirstAnswer(httpx.HTTPTransport):
    """A real transport that drops the answer to the first PUT after the server stored it, as a
    cut connection would."""

    def __init__(self) -> None:
        super().__init__()
        self.lost = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = super().handle_request(request)
        if request.method == "PUT" and not self.lost:
            self.lost += 1
            response.read()
            response.close()
            raise httpx.ReadTimeout("the answer was lost", request=request)
        return response


@pytest.mark.server
def test_a_lost_answer_is_retried_without_storing_twice(
    sdk_server: RunningServer, tmp_path: Path
) -> None:
    transport = LoseFirstAnswer()
    policy = RetryPolicy(base_delay=0)
    with admin(sdk_server, tmp_path, transport=transport, retry=policy) as client:
        stored = client.upload("idem-1", io.BytesIO(b"reading 7"), filename="r7")
        assert transport.lost == 1 and stored.replayed
        assert [v.version for v in client.history("idem-1")] == [stored.version]


@pytest.mark.server
def test_small_upload_with_a_content_type_or_a_non_ascii_name_is_multipart(
    sdk_server: RunningServer, tmp_path: Path
) -> None:
    with admin(sdk_server, tmp_path) as client:
        typed = client.upload(
            "mp-1", io.BytesIO(b"a,b\n"), filename="r.csv", content_type="text/csv"
        )
        assert (typed.filename, typed.content_type) == ("r.csv", "text/csv")
        named = client.upload("mp-1", io.BytesIO(b"x"), filename='mesure "été".bin')
        assert named.filename == 'mesure "été".bin' and named.size == 1
        assert client.latest("mp-1") == named


@pytest.mark.server
def test_iter_bytes_stopped_early_frees_the_connection(
    sdk_server: RunningServer, tmp_path: Path
) -> None:
    data = os.urandom(3 * MiB)
    with admin(sdk_server, tmp_path) as client:
        client.upload("iter-1", io.BytesIO(data))
        for _ in range(3):  # more than once: a leaked connection would show up as a hang
            pieces = client.iter_bytes("iter-1")
            first = next(pieces)
            pieces.close()  # type: ignore[attr-defined]
            assert data.startswith(first) and 0 < len(first) < len(data)
        assert b"".join(client.iter_bytes("iter-1")) == data
