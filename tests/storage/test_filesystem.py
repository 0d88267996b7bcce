"""File backend specifics: where bytes live, durability settings, a full disk (507)."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from mindproject.errors import InsufficientStorage
from mindproject.identifiers import new_version_id
from mindproject.storage.filesystem import INLINE_MAX, FileStorage
from tests.helpers import measured
from tests.storage.test_contract import read_all

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
