"""Bad paths and options: a typed error that says what to fix, and a refused open leaves
nothing behind (rocksdict creates the directory before RocksDB checks anything)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import aurora_storage
from aurora_storage.errors import ConfigurationError, InvalidURLError, StorageError
from aurora_storage_rocksdb import RocksDBConfig, RocksDBRepository


def _listing(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.mark.parametrize(
    ("suffix", "error", "says"),
    [
        ("a%00b/s", InvalidURLError, "NUL"),
        ("n" * 300 + "/s", InvalidURLError, "300 bytes long"),
        ("deep/" + "€" * 100, InvalidURLError, "shorter name"),
    ],
    ids=["nul", "long-component", "long-multibyte"],
)
def test_bad_path_text_is_refused(tmp_path: Path, suffix: str, error: type, says: str) -> None:
    with pytest.raises(error, match=says):
        aurora_storage.open(f"rocksdb://{tmp_path}/{suffix}")
    with pytest.raises(error, match=says):
        RocksDBRepository(path=f"{tmp_path}/{suffix}".replace("%00", "\x00"))
    assert _listing(tmp_path) == []


def test_a_file_as_the_store_or_on_its_path_is_refused(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a store")
    for path in (tmp_path / "file", tmp_path / "file" / "below" / "s"):
        with pytest.raises(ConfigurationError, match="is a file, not a directory") as info:
            aurora_storage.open(f"rocksdb://{path}")
        assert "choose another path" in str(info.value)
    assert _listing(tmp_path) == ["file"]
    assert (tmp_path / "file").read_text() == "not a store"


def test_an_uncreatable_directory_is_refused() -> None:
    # /proc takes no new directories, even from root.
    with pytest.raises(ConfigurationError, match="cannot create") as info:
        aurora_storage.open("rocksdb:///proc/aurora-storage-test/s")
    assert "writable location" in str(info.value)
    assert isinstance(info.value.__cause__, OSError)


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("write_buffer_size", str(2**70)),
        ("write_buffer_size", "1PiB"),
        ("write_buffer_size", "1KiB"),
        ("max_open_files", str(2**40)),
        ("max_write_buffer_number", str(2**40)),
        ("block_cache_size", str(2**70)),
        ("block_cache_size", "1PiB"),
        ("max_background_jobs", str(10**9)),
        ("max_background_jobs", "0"),
        ("bloom_bits_per_key", "1000"),
    ],
)
def test_absurd_numbers_are_refused_naming_the_option(
    tmp_path: Path, option: str, value: str
) -> None:
    # max_background_jobs=10**9 used to abort the process inside RocksDB; the too-big
    # ints leaked raw OverflowError texts as plain StorageError.
    with pytest.raises(ConfigurationError) as info:
        aurora_storage.open(f"rocksdb://{tmp_path}/s?{option}={value}")
    assert option in str(info.value)
    assert " must be " in str(info.value)
    assert _listing(tmp_path) == []


@settings(max_examples=60, deadline=None)
@given(
    option=st.sampled_from(
        [
            "write_buffer_size",
            "max_open_files",
            "max_write_buffer_number",
            "block_cache_size",
            "max_background_jobs",
            "bloom_bits_per_key",
        ]
    ),
    value=st.integers(min_value=-(2**80), max_value=2**80),
)
def test_any_number_gives_a_config_or_a_configuration_error(option: str, value: int) -> None:
    try:
        config = RocksDBConfig.from_options("/nonexistent/s", {option: value})
    except ConfigurationError as exc:
        message = str(exc)
        config = None
    if config is None:
        assert option in message
        return
    # What is accepted fits the engine's integer types.
    assert 0 <= config.write_buffer_size <= 64 * 1024**3
    assert -1 <= config.max_open_files < 2**31
    assert config.max_background_jobs <= 256


def test_accepted_bounds_open(tmp_path: Path) -> None:
    url = (
        f"rocksdb://{tmp_path}/s?max_open_files={2**31 - 1}&max_background_jobs=256"
        "&max_write_buffer_number=1024&write_buffer_size=64KiB"
    )
    with aurora_storage.open(url) as repo:
        repo.put("t", 1, 1)


def test_tilde_is_the_home_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    with aurora_storage.open("rocksdb://~/a") as a:
        a.put("t", 1, 1)
    with aurora_storage.open("rocksdb:~/b") as b:
        b.put("t", 1, 1)
    with RocksDBRepository[Any, Any](path="~/c") as c:
        c.put("t", 1, 1)
    assert sorted(os.listdir(tmp_path)) == ["a", "b", "c"]  # no directory named "~"
    with aurora_storage.open(f"rocksdb://{tmp_path}/a") as again:
        assert again.get("t", 1) == 1


def test_tilde_user_is_that_users_home_in_every_url_form(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Reviewer finding: rocksdb://~user/x (the URL parser reads ~user as a host) was
    # refused as "take no host", though ~user means that user's home in every URL form.
    import pwd

    real = pwd.getpwnam

    def getpwnam(name: str) -> Any:
        if name == "aurora-i10-user":
            fields = list(real("root"))
            fields[5] = str(tmp_path / "home")  # pw_dir
            return pwd.struct_passwd(fields)
        return real(name)

    monkeypatch.setattr(pwd, "getpwnam", getpwnam)
    (tmp_path / "home").mkdir()
    with aurora_storage.open("rocksdb://~aurora-i10-user/a") as a:
        a.put("t", 1, 1)
    with aurora_storage.open("rocksdb:~aurora-i10-user/b") as b:
        b.put("t", 1, 1)
    assert sorted(os.listdir(tmp_path / "home")) == ["a", "b"]
    for url in ("rocksdb://~aurora-i10-user:1/a", "rocksdb://me@~aurora-i10-user/a"):
        with pytest.raises(InvalidURLError, match="take no host"):
            aurora_storage.open(url)


@pytest.mark.parametrize("path", [None, 123, 1.5, ["/x"]])
def test_a_path_argument_that_is_no_path_is_a_typed_error(path: Any) -> None:
    # Reviewer finding: RocksDBRepository(path=None) or path=123 raised a raw TypeError
    # from os.fspath.
    with pytest.raises(ConfigurationError):
        RocksDBRepository(path=path)


def test_every_refusal_is_a_storage_error(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("")
    for url in (
        f"rocksdb://{tmp_path}/x%00",
        f"rocksdb://{tmp_path}/f",
        f"rocksdb://{tmp_path}/s?max_open_files=x",
        "rocksdb://~no-such-user-aurora/s",
    ):
        with pytest.raises(StorageError):
            aurora_storage.open(url)
