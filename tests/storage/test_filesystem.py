"""File backend specifics: where bytes live, durability settings, a full disk (507)."""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from mindproject.errors import InsufficientStorage, ResumableNotFound, UploadBusy
from mindproject.identifiers import new_upload_id, new_version_id
from mindproject.storage.filesystem import INLINE_MAX, ORPHAN_GRACE_SECONDS, FileStorage
from tests.helpers import measured
from tests.storage.test_contract import EXPIRY, append, new_resumable, read_all

pytestmark = pytest.mark.anyio


async def test_small_uploads_live_in_the_index_large_ones_in_blob_files(tmp_path: Path) -> None:
    storage = FileStorage(tmp_path)
    small = await storage.save(
        "d", new_version_id(), measured(b"s" * INLINE_MAX), filename=None, content_type=None
    )
    large_data = os.urandom(INLINE_MAX + 1)
    large = await storage.save(
        "d", new_version_id(), measured(large_data), filename=None, content_type=None
    )
    assert not (tmp_path / "blobs" / "d" / small.version).exists()
    assert (tmp_path / "blobs" / "d" / large.version).read_bytes() == large_data
    assert await read_all(storage, small) == b"s" * INLINE_MAX
    assert await read_all(storage, small, 10, 20) == b"s" * 10
    assert await read_all(storage, large) == large_data
    assert list((tmp_path / "tmp").iterdir()) == []
    await storage.delete_upload("d", large.version)
    assert not (tmp_path / "blobs" / "d").exists()
    await storage.close()


async def test_index_survives_a_reopen(tmp_path: Path) -> None:
    first = FileStorage(tmp_path)
    info = await first.save(
        "d", new_version_id(), measured(b"kept"), filename="a", content_type=None
    )
    await first.close()
    again = FileStorage(tmp_path, fsync=False)
    assert await again.latest("d") == info
    assert await read_all(again, info) == b"kept"
    await again.close()


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs: a real full disk, not a mock."""
    mount = tmp_path / "tiny"
    mount.mkdir()
    if os.geteuid() != 0 or not shutil.which("mount"):
        pytest.skip("mounting a tmpfs needs root and mount(8); the full-disk case is not tested")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


async def test_full_disk_is_507_and_leaves_no_partial_file(tiny_disk: Path) -> None:
    storage = FileStorage(tiny_disk)
    with pytest.raises(InsufficientStorage):
        await storage.save(
            "d",
            new_version_id(),
            measured(os.urandom(8 * 1024 * 1024)),
            filename=None,
            content_type=None,
        )
    assert list((tiny_disk / "tmp").iterdir()) == []
    assert not (tiny_disk / "blobs" / "d").exists() or not list(
        (tiny_disk / "blobs" / "d").iterdir()
    )
    # Space comes back once the failed upload is gone: smaller uploads still work.
    info = await storage.save(
        "d", new_version_id(), measured(b"ok"), filename=None, content_type=None
    )
    assert await read_all(storage, info) == b"ok"
    await storage.close()


# --- private data at rest ----------------------------------------------------------------------
def mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


async def test_data_folder_is_private_whoever_creates_it_first(tmp_path: Path) -> None:
    """With the default key file, key set-up created the folder with the umask (0755) before the
    storage did, and the index (inline uploads' bytes) was 0644."""
    from mindproject.auth.keys import ensure_key_file

    root = tmp_path / "data"
    old_umask = os.umask(0o022)
    try:
        ensure_key_file(root / "secret.key")
        storage = FileStorage(root)
        await storage.save(
            "d", new_version_id(), measured(b"secret bytes"), filename=None, content_type=None
        )
    finally:
        os.umask(old_umask)
    assert mode(root) == 0o700
    for name in ("index.sqlite3", "index.sqlite3-wal", "index.sqlite3-shm", "secret.key"):
        assert mode(root / name) == 0o600, name
    if os.geteuid() == 0 and shutil.which("setpriv"):
        # Another local user cannot read the index, even knowing its path.
        denied = await anyio.to_thread.run_sync(
            functools.partial(
                subprocess.run,
                [
                    "setpriv",
                    "--reuid=nobody",
                    "--regid=nogroup",
                    "--clear-groups",
                    "cat",
                    str(root / "index.sqlite3"),
                ],
                capture_output=True,
                text=True,
                check=False,
            )
        )
        assert denied.returncode != 0
        assert "Permission denied" in denied.stderr
    await storage.close()


async def test_a_folder_open_to_others_is_tightened_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = tmp_path / "data"
    root.mkdir(mode=0o755)
    root.chmod(0o755)
    (root / "index.sqlite3").touch(mode=0o644)
    (root / "index.sqlite3").chmod(0o644)
    with caplog.at_level("WARNING", logger="mindproject.storage"):
        storage = FileStorage(root)
    assert mode(root) == 0o700
    assert mode(root / "index.sqlite3") == 0o600
    assert "tightened to 0700" in caplog.text
    await storage.close()


# --- leftovers of dead processes ---------------------------------------------------------------
HOLD_TEMP = """
import sys, time
from pathlib import Path
from mindproject.storage.filesystem import FileStorage
fd = FileStorage._open_temp(Path(sys.argv[1]))
print("locked", flush=True)
time.sleep(120)
"""


def hold_temp_file(path: Path) -> subprocess.Popen[str]:
    """A process writing a temp file, as an upload in progress does (it holds the lock)."""
    process = subprocess.Popen(
        [sys.executable, "-c", HOLD_TEMP, str(path)], stdout=subprocess.PIPE, text=True
    )
    assert process.stdout is not None and process.stdout.readline() == "locked\n"
    return process


async def test_temp_files_of_dead_processes_go_live_ones_stay(tmp_path: Path) -> None:
    """Each kill -9 mid-upload left its .part file until it was a day old (458 MiB after four)."""
    storage = FileStorage(tmp_path)
    await storage.close()
    dead_path = tmp_path / "tmp" / "v1.dead-device.part"
    live_path = tmp_path / "tmp" / "v2.live-device.part"
    dead = hold_temp_file(dead_path)
    live = hold_temp_file(live_path)
    try:
        dead.send_signal(signal.SIGKILL)
        dead.wait()
        assert dead_path.exists() and live_path.exists()
        restarted = FileStorage(tmp_path)  # start-up sweeps
        assert not dead_path.exists()
        assert live_path.exists()  # another worker's upload in progress
        assert restarted.remove_dead_temp_files() == 0  # the periodic sweep finds nothing more
        await restarted.close()
    finally:
        live.kill()
        live.wait()
    swept = FileStorage(tmp_path)
    assert not live_path.exists()
    await swept.close()


# Resumable uploads: where their state lives, and what a dead worker leaves behind.


def _rows(root: Path) -> list[tuple[object, ...]]:
    with contextlib.closing(sqlite3.connect(root / "index.sqlite3")) as db:
        return db.execute("SELECT upload_id, received, version FROM resumable").fetchall()


async def test_resumable_bytes_live_in_a_private_part_file_until_complete(tmp_path: Path) -> None:
    storage = FileStorage(tmp_path)
    data = os.urandom(INLINE_MAX + 10)
    upload = new_resumable(length=len(data))
    await storage.create_resumable(upload, max_per_device=0)
    part = tmp_path / "resumable" / f"{upload.upload_id}.part"
    assert part.stat().st_mode & 0o777 == 0o600
    await append(storage, upload, 0, data[:1000])
    assert part.read_bytes() == data[:1000]
    assert _rows(tmp_path) == [(upload.upload_id, 1000, None)]
    done = await append(storage, upload, 1000, data[1000:])
    assert not part.exists()
    assert (tmp_path / "blobs" / "tus-1" / str(done.version)).read_bytes() == data
    assert _rows(tmp_path) == [(upload.upload_id, len(data), done.version)]
    await storage.close()


async def test_bytes_of_an_append_that_died_are_dropped(tmp_path: Path) -> None:
    """A worker killed mid-append leaves bytes past the committed offset: the next append,
    in another process or after a restart, starts from the committed offset."""
    storage = FileStorage(tmp_path)
    upload = new_resumable(length=3000)
    await storage.create_resumable(upload, max_per_device=0)
    await append(storage, upload, 0, b"a" * 1000)
    await storage.close()
    part = tmp_path / "resumable" / f"{upload.upload_id}.part"
    with part.open("ab") as torn:
        torn.write(b"never committed" * 50)
    again = FileStorage(tmp_path)
    assert (await again.resumable("tus-1", upload.upload_id)).offset == 1000
    done = await append(again, upload, 1000, b"b" * 2000)
    info = await again.get("tus-1", str(done.version))
    assert await read_all(again, info) == b"a" * 1000 + b"b" * 2000
    await again.close()


async def test_a_lock_held_by_another_process_is_busy_until_that_process_dies(
    tmp_path: Path,
) -> None:
    storage = FileStorage(tmp_path)
    upload = new_resumable(length=100)
    await storage.create_resumable(upload, max_per_device=0)
    part = tmp_path / "resumable" / f"{upload.upload_id}.part"
    holder = subprocess.Popen(  # noqa: ASYNC220 - the lock must be another process's
        [
            sys.executable,
            "-c",
            "import fcntl, os, sys; fd = os.open(sys.argv[1], os.O_RDWR); "
            "fcntl.flock(fd, fcntl.LOCK_EX); print('locked', flush=True); sys.stdin.read()",
            str(part),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline() == b"locked\n"
        with pytest.raises(UploadBusy):
            await append(storage, upload, 0, b"x" * 10)
    finally:
        holder.kill()  # as kill -9: the kernel releases its lock
        holder.wait()
    assert (await append(storage, upload, 0, b"x" * 10)).offset == 10
    await storage.close()


async def test_two_storages_on_one_folder_serve_one_upload(tmp_path: Path) -> None:
    """Worker processes share nothing but the folder: each serves any request of an upload."""
    one, two = FileStorage(tmp_path), FileStorage(tmp_path)
    data = os.urandom(500_000)
    upload = new_resumable(length=len(data))
    await one.create_resumable(upload, max_per_device=0)
    await append(one, upload, 0, data[:200_000])
    assert (await two.resumable("tus-1", upload.upload_id)).offset == 200_000
    done = await append(two, upload, 200_000, data[200_000:])
    assert (await one.resumable("tus-1", upload.upload_id)).version == done.version
    assert await read_all(one, await one.latest("tus-1")) == data
    await one.close()
    await two.close()


async def test_expired_and_terminated_uploads_leave_nothing_on_disk(tmp_path: Path) -> None:
    storage = FileStorage(tmp_path)
    expiring, terminated = new_resumable(length=1000), new_resumable(length=1000)
    for upload in (expiring, terminated):
        await storage.create_resumable(upload, max_per_device=0)
        await append(storage, upload, 0, b"a" * 500)
    await storage.delete_resumable("tus-1", terminated.upload_id)
    assert [row[0] for row in _rows(tmp_path)] == [expiring.upload_id]
    assert await storage.remove_expired_resumable(time.time() + 2 * EXPIRY) == 1
    assert _rows(tmp_path) == []
    assert list((tmp_path / "resumable").iterdir()) == []
    await storage.close()


async def test_orphan_part_files_are_swept_after_a_grace(tmp_path: Path) -> None:
    storage = FileStorage(tmp_path)
    fresh = tmp_path / "resumable" / f"{new_upload_id()}.part"
    old = tmp_path / "resumable" / f"{new_upload_id()}.part"
    fresh.write_bytes(b"a creation between its file and its row")
    old.write_bytes(b"left by a crash")
    past = time.time() - ORPHAN_GRACE_SECONDS - 1
    os.utime(old, (past, past))
    await storage.remove_expired_resumable(time.time())
    assert fresh.exists() and not old.exists()
    await storage.close()


async def test_an_upload_whose_part_file_was_removed_by_hand_is_gone(tmp_path: Path) -> None:
    """Not busy forever: the bytes are lost, so the client is told to start again (404)."""
    storage = FileStorage(tmp_path)
    upload = new_resumable(length=100)
    await storage.create_resumable(upload, max_per_device=0)
    await append(storage, upload, 0, b"a" * 10)
    (tmp_path / "resumable" / f"{upload.upload_id}.part").unlink()
    with pytest.raises(ResumableNotFound):
        await append(storage, upload, 10, b"b" * 10)
    await storage.close()
