"""An outside author's view: plugins found the real way, then the shipped suite on them.

* ``aurora_tinykv`` (a sqlite3 file backend in ``thirdparty/``) is "installed" as pip
  would: copied into a temporary directory on ``sys.path`` next to an
  ``aurora_tinykv-0.1.dist-info`` whose ``entry_points.txt`` names it in the
  ``aurora_storage`` group. After ``refresh_plugins()`` it opens by URL.
* ``DictKVBackend`` (below) joins through the runtime API, ``register_backend``. It
  declares neither ordered scans nor thread safety, so those tests skip with the reason.
"""

from __future__ import annotations

import importlib
import shutil
import sys
import threading
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

import aurora_storage
from aurora_storage.backend import Backend, Capabilities, Op
from aurora_storage.config import URL
from aurora_storage.errors import (
    BackendNotFoundError,
    ConfigurationError,
    InvalidURLError,
    RepositoryClosedError,
)
from aurora_storage.plugins import (
    BackendSpec,
    installed_schemes,
    plugin_failures,
    refresh_plugins,
    register_backend,
    unregister_backend,
)
from aurora_storage.testing import RepositoryTestSuite

HERE = Path(__file__).parent / "thirdparty"

_METADATA = "Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n"


def _install(site: Path, dist: str, entry_points: dict[str, str]) -> None:
    """Write the ``.dist-info`` pip would write for a distribution with these entry points."""
    info = site / f"{dist}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(_METADATA.format(name=dist.replace("_", "-")))
    lines = "".join(f"{name} = {target}\n" for name, target in entry_points.items())
    (info / "entry_points.txt").write_text(f"[aurora_storage]\n{lines}")


@pytest.fixture(scope="module")
def site_packages(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A temporary site-packages holding aurora-tinykv and a deliberately broken plugin."""
    site = tmp_path_factory.mktemp("site-packages")
    shutil.copytree(HERE / "aurora_tinykv", site / "aurora_tinykv")
    _install(site, "aurora_tinykv", {"tinykv": "aurora_tinykv._plugin"})
    (site / "aurora_broken_plugin.py").write_text("raise ImportError('needs libbroken.so')\n")
    _install(site, "aurora_broken", {"brokenkv": "aurora_broken_plugin"})
    sys.path.insert(0, str(site))
    importlib.invalidate_caches()
    refresh_plugins()
    try:
        yield site
    finally:
        sys.path.remove(str(site))
        for name in [m for m in sys.modules if m.startswith(("aurora_tinykv", "aurora_broken"))]:
            del sys.modules[name]
        unregister_backend("tinykv")
        importlib.invalidate_caches()
        refresh_plugins()


class TestTinyKVConformance(RepositoryTestSuite):
    """The whole suite against the entry-point plugin (persistent: reopen tests run)."""

    @pytest.fixture
    def store_url(self, site_packages: Path, tmp_path: Path) -> str:
        return f"tinykv://{tmp_path}/store.db"


def test_entry_point_plugin_is_discovered(site_packages: Path, tmp_path: Path) -> None:
    assert "tinykv" in installed_schemes()
    with aurora_storage.open(f"tinykv://{tmp_path}/x.db", timeout="2.5") as repo:
        assert type(repo.backend).__module__ == "aurora_tinykv._backend"
        assert repo.backend.config.timeout == 2.5  # type: ignore[attr-defined]  # the plugin's backend
        # Loaded from the temporary site-packages, not from the source tree.
        assert Path(sys.modules["aurora_tinykv"].__file__ or "").is_relative_to(site_packages)


def test_plugin_options_are_checked(site_packages: Path, tmp_path: Path) -> None:
    with pytest.raises(InvalidURLError, match="synchronous"):
        aurora_storage.open(f"tinykv://{tmp_path}/x.db?synchronous=sometimes")
    with pytest.raises(InvalidURLError, match="timeout"):
        aurora_storage.open(f"tinykv://{tmp_path}/x.db?bogus=1")
    with pytest.raises(InvalidURLError, match="path"):
        aurora_storage.open(f"tinykv://{tmp_path}/x.db?path=/elsewhere.db")


def test_broken_plugin_does_not_break_others(site_packages: Path, tmp_path: Path) -> None:
    with pytest.raises(BackendNotFoundError, match="libbroken") as info:
        aurora_storage.open("brokenkv://x")
    assert isinstance(info.value.__cause__, ImportError)
    assert "brokenkv" in plugin_failures()
    with aurora_storage.open(f"tinykv://{tmp_path}/y.db") as repo:
        repo.put("t", "k", 1)
    with aurora_storage.open("memory://") as mem:
        mem.put("t", "k", 1)


# ----------------------------------------------------------------- runtime registration


class DictKVBackend(Backend):
    """A deliberately minimal backend: a dict, scans in insertion order (not sorted)."""

    scheme = "dictkv"
    capabilities = Capabilities(ordered_scans=False, thread_safe=False, persistent=False)

    def __init__(self) -> None:
        super().__init__()
        self._data: dict[bytes, bytes] | None = {}

    def _d(self) -> dict[bytes, bytes]:
        if self._data is None:
            raise RepositoryClosedError("dictkv store is closed", backend="dictkv")
        return self._data

    def get(self, key: bytes) -> bytes | None:
        return self._d().get(key)

    def put(self, key: bytes, value: bytes) -> None:
        self._d()[key] = value

    def delete(self, key: bytes) -> bool:
        return self._d().pop(key, None) is not None

    def write(self, ops: Sequence[Op]) -> None:
        data = dict(self._d())  # apply to a copy, then swap: all or nothing
        for k, v in ops:
            if v is None:
                data.pop(k, None)
            else:
                data[k] = v
        self._data = data

    def scan(
        self, start: bytes, stop: bytes, *, reverse: bool = False
    ) -> Iterator[tuple[bytes, bytes]]:
        picked = [(k, v) for k, v in self._d().items() if start <= k < stop]
        for item in reversed(picked) if reverse else picked:
            self._d()
            yield item

    def first_key(self, start: bytes, stop: bytes) -> bytes | None:
        # Unordered scans: the smallest key must be searched for (tenants() relies on it).
        return min((k for k in self._d() if start <= k < stop), default=None)

    def close(self) -> None:
        self._data = None


def _open_dictkv(url: URL, options: Mapping[str, Any]) -> Backend:
    if options:
        raise InvalidURLError(f"dictkv takes no options, got {sorted(options)}")
    return DictKVBackend()


_DICTKV = BackendSpec(scheme="dictkv", open=_open_dictkv, package="dictkv-example")


@pytest.fixture
def dictkv() -> Iterator[None]:
    register_backend(_DICTKV)
    try:
        yield
    finally:
        unregister_backend("dictkv")


class TestDictKVConformance(RepositoryTestSuite):
    """The whole suite against a runtime-registered, unordered, single-threaded backend."""

    @pytest.fixture
    def store_url(self, dictkv: None) -> str:
        return "dictkv://"


def test_runtime_registration_lifecycle() -> None:
    with pytest.raises(BackendNotFoundError, match="dictkv"):
        aurora_storage.open("dictkv://")
    register_backend(_DICTKV)
    try:
        assert "dictkv" in installed_schemes()
        register_backend(_DICTKV)  # the same spec again is harmless
        other = BackendSpec(scheme="dictkv", open=_open_dictkv, package="someone-else")
        with pytest.raises(ConfigurationError, match="dictkv"):
            register_backend(other)
        register_backend(other, replace=True)
        with aurora_storage.open("dictkv://") as repo:
            assert isinstance(repo.backend, DictKVBackend)
        with pytest.raises(ConfigurationError, match="memory"):
            register_backend(BackendSpec(scheme="memory", open=_open_dictkv))
    finally:
        unregister_backend("dictkv")
    assert "dictkv" not in installed_schemes()
    with pytest.raises(BackendNotFoundError):
        aurora_storage.open("dictkv://")


def test_unordered_backend_still_lists_every_tenant(dictkv: None) -> None:
    lock = threading.Lock()  # the backend is not thread-safe: callers serialise
    with lock, aurora_storage.open("dictkv://") as repo:
        for t in ["zeta", "alpha", "mid", "a", "a:b"]:
            repo.put(t, "k", 1)
        assert sorted(repo.tenants()) == ["a", "a:b", "alpha", "mid", "zeta"]


def test_default_delete_range_deletes_across_chunks() -> None:
    """Backend.delete_range's default works in chunks of 10,000 keys; a range larger than
    one chunk is deleted whole and counted exactly."""
    from aurora_storage.backend import Backend
    from aurora_storage.memory import MemoryBackend

    backend = MemoryBackend()
    backend.write([(b"k%06d" % i, b"v") for i in range(25_001)])
    backend.write([(b"z", b"outside")])
    assert Backend.delete_range(backend, b"k", b"l") == 25_001
    assert backend.count_range(b"k", b"l") == 0
    assert backend.get(b"z") == b"outside"
