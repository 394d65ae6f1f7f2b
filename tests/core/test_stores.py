"""The core pieces every file-based backend shares: the one-handle-per-store table, the
initialisation marker, and the one rule for store paths (``~``, NUL, long names, files
in the way)."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aurora_storage import _stores
from aurora_storage.backend import (
    StoreHandles,
    config_signature,
    create_store_dir,
    marker_path,
    plan_store_dir,
)
from aurora_storage.config import URL, expand_store_path, local_path
from aurora_storage.errors import ConfigurationError, CorruptionError, InvalidURLError

# ---------------------------------------------------------------- `~` and path rules


@pytest.mark.parametrize(
    "text", ["x://~/data/s", "x:~/data/s", "x://~/data/s/"], ids=["slashes", "bare", "trailing"]
)
def test_tilde_means_the_home_directory_in_every_url_form(text: str) -> None:
    path = local_path(URL.parse(text), backend="x")
    assert path.rstrip("/") == os.path.join(os.path.expanduser("~"), "data", "s")


def test_tilde_inside_a_path_is_an_ordinary_name() -> None:
    assert local_path(URL.parse("x:///srv/~/s"), backend="x") == "/srv/~/s"
    assert expand_store_path("data/~", backend="x") == "data/~"


def test_tilde_of_an_unknown_user_is_refused() -> None:
    with pytest.raises(InvalidURLError, match="home directory") as info:
        expand_store_path("~no-such-user-aurora-test/s", backend="x")
    assert "in full" in str(info.value)


def test_tilde_without_home_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HOME", raising=False)
    import pwd

    def no_entry(uid: int) -> None:
        raise KeyError(uid)

    monkeypatch.setattr(pwd, "getpwuid", no_entry)
    with pytest.raises(InvalidURLError, match="HOME is not set"):
        expand_store_path("~/s", backend="x")


def test_nul_in_a_path_is_refused() -> None:
    with pytest.raises(InvalidURLError, match="NUL"):
        local_path(URL.parse("x:///tmp/a%00b"), backend="x")
    with pytest.raises(InvalidURLError, match="NUL"):
        expand_store_path("a\x00b", backend="x")


def test_over_long_component_and_path_are_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidURLError, match="300 bytes long") as info:
        expand_store_path(str(tmp_path / ("n" * 300)), backend="x")
    assert "shorter name" in str(info.value)
    # Multi-byte characters count in bytes: 100 x 3 bytes.
    with pytest.raises(InvalidURLError, match="300 bytes"):
        expand_store_path(str(tmp_path / ("€" * 100)), backend="x")
    with pytest.raises(InvalidURLError, match="shorter path"):
        expand_store_path("/" + "/".join(["d" * 200] * 30), backend="x")
    assert not any(tmp_path.iterdir())


@given(st.text(min_size=1, max_size=40))
def test_any_path_text_is_accepted_or_refused_with_a_typed_error(text: str) -> None:
    try:
        out = expand_store_path(text, backend="x")
    except InvalidURLError:
        return
    assert isinstance(out, str)
    assert "\x00" not in out


def test_plan_store_dir_refuses_a_file_on_the_path(tmp_path: Path) -> None:
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(ConfigurationError, match="is a file, not a directory"):
        plan_store_dir(str(f), backend="x")
    with pytest.raises(ConfigurationError, match="is a file"):
        plan_store_dir(str(f / "below" / "s"), backend="x")
    assert plan_store_dir(str(tmp_path / "a" / "b"), backend="x") == [
        str(tmp_path / "a"),
        str(tmp_path / "a" / "b"),
    ]
    assert plan_store_dir(str(tmp_path), backend="x") == []


def test_create_store_dir_refuses_an_uncreatable_directory() -> None:
    # /proc refuses new directories even to root.
    with pytest.raises(ConfigurationError, match="cannot create") as info:
        create_store_dir("/proc/aurora-storage-test/s", backend="x")
    assert "writable location" in str(info.value)
    assert not os.path.exists("/proc/aurora-storage-test")


# ---------------------------------------------------------------- one handle per store


class _Handle:
    def __init__(self) -> None:
        self.closed = 0


def _spellings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    store = tmp_path / "events"
    store.mkdir()
    (tmp_path / "link").symlink_to(store)
    (tmp_path / "other").mkdir()
    monkeypatch.chdir(tmp_path)
    return [
        str(store),
        str(store) + "/",
        str(store) + "//",
        str(tmp_path / "other" / ".." / "events"),
        str(tmp_path / "link"),
        str(tmp_path / "link") + "/.",
        "events",
        "./link/",
    ]


def test_every_spelling_of_one_directory_shares_one_handle(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    table = StoreHandles()
    opened: list[_Handle] = []

    def opener() -> _Handle:
        opened.append(_Handle())
        return opened[-1]

    names = _spellings(tmp_path, monkeypatch)
    handles = [table.acquire(p, {"a": 1}, opener, backend="x") for p in names]
    assert len(opened) == 1
    assert all(h is opened[0] for h in handles)
    assert table.users(names[0]) == len(names)
    closes: list[int] = []
    for h in handles[:-1]:
        assert not table.release(h, lambda: closes.append(1))
    assert closes == []
    assert table.release(handles[-1], lambda: closes.append(1))
    assert closes == [1]
    assert table.users(names[0]) == 0
    # Gone from the table: the next open opens anew.
    table.acquire(names[3], {"a": 1}, opener, backend="x")
    assert len(opened) == 2


def test_other_options_are_refused_naming_them(tmp_path: Path) -> None:
    table = StoreHandles()
    table.acquire(str(tmp_path), {"a": 1, "b": "x"}, _Handle, backend="x")
    with pytest.raises(ConfigurationError) as info:
        table.acquire(str(tmp_path) + "/.", {"a": 2, "b": "x"}, _Handle, backend="x")
    msg = str(info.value)
    assert "a=2 (open: 1)" in msg
    assert "b=" not in msg
    assert "already open in this process" in msg
    assert table.users(str(tmp_path)) == 1


def test_a_failed_open_registers_nothing(tmp_path: Path) -> None:
    table = StoreHandles()

    def broken() -> _Handle:
        raise ConfigurationError("nope")

    with pytest.raises(ConfigurationError):
        table.acquire(str(tmp_path), {}, broken, backend="x")
    assert table.users(str(tmp_path)) == 0


def test_concurrent_opens_of_one_store_open_it_once(tmp_path: Path) -> None:
    table = StoreHandles()
    count = []
    store = tmp_path / "s"

    def opener() -> _Handle:
        store.mkdir(exist_ok=True)  # as an engine creating its directory
        count.append(1)
        return _Handle()

    got: list[object] = []
    barrier = threading.Barrier(8)

    def worker() -> None:
        barrier.wait()
        got.append(table.acquire(str(store), {}, opener, backend="x"))

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(count) == 1
    assert all(h is got[0] for h in got)


def test_config_signature_leaves_out_the_path_and_open_only_options() -> None:
    from dataclasses import dataclass

    @dataclass(frozen=True)
    class C:
        path: str
        create: bool
        size: int

    assert config_signature(C("p", True, 3), ignore=("create",)) == {"size": 3}


# ---------------------------------------------------------------- marker


def test_marker_round_trip_and_damage(tmp_path: Path) -> None:
    m = marker_path(str(tmp_path))
    assert m == str(tmp_path / _stores.MARKER_NAME)
    assert _stores.read_marker(m) is None
    _stores.write_marker(m, {"backend": "x"})
    assert _stores.read_marker(m) == {"backend": "x"}
    assert [p.name for p in tmp_path.iterdir()] == [_stores.MARKER_NAME]  # no temp left
    Path(m).write_bytes(b"{not json")
    with pytest.raises(CorruptionError, match="marker"):
        _stores.read_marker(m)


def test_marker_of_a_single_file_store_sits_beside_it(tmp_path: Path) -> None:
    f = tmp_path / "data"
    f.write_bytes(b"")
    assert marker_path(str(f)) == f"{f}-{_stores.MARKER_NAME}"
