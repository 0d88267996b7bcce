"""Settings: defaults, environment, flags, clear refusals, and documentation of each one."""

from __future__ import annotations

import re

import pytest

from mindproject.config import Settings, load_settings
from mindproject.errors import ConfigurationError
from mindproject.storage import open_storage
from mindproject.storage.indexed import IndexedStorage
from tests.helpers import REPO, run_cli


def test_defaults_match_the_seed() -> None:
    settings = load_settings()
    assert settings.port == 5000
    assert settings.host == "127.0.0.1"
    assert settings.storage == "file://./data"
    assert settings.fsync is True


def test_environment_and_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MINDPROJECT_PORT", "6000")
    monkeypatch.setenv("MINDPROJECT_MAX_UPLOAD_BYTES", "1234")
    assert load_settings().port == 6000
    assert load_settings(port=7000).port == 7000
    assert load_settings().max_upload_bytes == 1234


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("MINDPROJECT_PORT", "eighty"),
        ("MINDPROJECT_PORT", "70000"),
        ("MINDPROJECT_WORKERS", "0"),
        ("MINDPROJECT_STORAGE", "ftp://somewhere"),
        ("MINDPROJECT_STORAGE", "s3://"),
        ("MINDPROJECT_MAX_UPLOAD_BYTES", "-1"),
        ("MINDPROJECT_LOG_LEVEL", "loud"),
        ("MINDPROJECT_INDEX", "mysql://db/telemetry"),
        ("MINDPROJECT_SEGMENT_WINDOW_MS", "0"),
        ("MINDPROJECT_COMPACTION_THRESHOLD", "1.5"),
    ],
)
def test_bad_settings_are_refused_by_name(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigurationError, match=name):
        load_settings()


@pytest.mark.server
def test_serve_stops_with_a_message_naming_the_setting() -> None:
    result = run_cli("serve", "--port", "0")
    assert result.returncode == 2
    assert "MINDPROJECT_PORT" in result.stderr


def test_every_setting_is_documented_in_the_readme() -> None:
    readme = (REPO / "README.md").read_text()
    for name in Settings.model_fields:
        variable = f"MINDPROJECT_{name.upper()}"
        assert re.search(rf"`{variable}`", readme), f"{variable} is not in the README's table"
        if name not in ("secret_key", "previous_secret_keys"):  # environment only, by design
            assert f"`--{name.replace('_', '-')}`" in readme, f"flag for {variable} not documented"


@pytest.mark.server
def test_every_setting_has_a_serve_flag() -> None:
    usage = run_cli("serve", "--help", check=True).stdout
    for name in set(Settings.model_fields) - {"secret_key", "previous_secret_keys"}:
        assert f"--{name.replace('_', '-')}" in usage


def test_the_fleet_mode_needs_object_storage_and_consistent_segment_sizes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MINDPROJECT_INDEX", "postgresql://postgres@127.0.0.1:5432/mindproject")
    with pytest.raises(ConfigurationError, match="MINDPROJECT_INDEX"):
        load_settings()  # file:// storage by default
    monkeypatch.setenv("MINDPROJECT_STORAGE", "s3://telemetry/uploads")
    assert load_settings().index == "postgresql://postgres@127.0.0.1:5432/mindproject"
    monkeypatch.setenv("MINDPROJECT_SEGMENT_MAX_UPLOAD_BYTES", str(16 * 1024 * 1024))
    with pytest.raises(ConfigurationError, match="MINDPROJECT_SEGMENT_MAX_UPLOAD_BYTES"):
        load_settings()


def test_the_index_pool_size_is_a_setting_of_at_least_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert load_settings().index_pool_size == 10
    monkeypatch.setenv("MINDPROJECT_INDEX_POOL_SIZE", "32")
    assert load_settings().index_pool_size == 32
    monkeypatch.setenv("MINDPROJECT_INDEX_POOL_SIZE", "0")
    with pytest.raises(ConfigurationError, match="MINDPROJECT_INDEX_POOL_SIZE"):
        load_settings()


@pytest.mark.anyio
@pytest.mark.pg
async def test_the_index_pool_size_reaches_the_pool(pg_index_url: str) -> None:
    storage = open_storage("memory://pool", index=pg_index_url, index_pool_size=3)
    assert isinstance(storage, IndexedStorage)
    try:
        async with storage.index.connection():
            pass  # the pool is made at first use
        pool = storage.index._pool
        assert pool is not None and pool.get_max_size() == 3
    finally:
        await storage.close()
