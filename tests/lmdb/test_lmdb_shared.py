"""One live handle per store per process on LMDB, the store marker, and the ``~`` rule
(the core mechanisms of issue #10, applied to LMDB)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import lmdb
import pytest

import aurora_storage
from aurora_storage.backend import open_stores
from aurora_storage.errors import ConfigurationError, CorruptionError, RepositoryClosedError
from aurora_storage_lmdb import LMDBRepository


def spellings(tmp_path: Path) -> list[str]:
    """Several spellings of the store directory ``tmp_path/data/events``."""
    (tmp_path / "data" / "other").mkdir(parents=True)
    (tmp_path / "link").symlink_to(tmp_path / "data" / "events")
    return [
        f"{tmp_path}/data/events",
        f"{tmp_path}/link",
        f"{tmp_path}/data/other/../events",
        f"{tmp_path}/data/events/",
        f"{tmp_path}//data/./events",
    ]


def test_every_spelling_of_one_store_shares_one_handle(tmp_path: Path) -> None:
    names = spellings(tmp_path)
    repos = [aurora_storage.open(f"lmdb://{names[0]}")]
    repos += [aurora_storage.open(f"lmdb://{name}") for name in names[1:]]
    backend = repos[0].backend
    assert all(r.backend is backend for r in repos)
    assert open_stores.users(names[0]) == len(names)
    for n, repo in enumerate(repos):
        repo.put_many("t", {(n, i): i for i in range(1000)})
    # Closing some users leaves the others working on the same environment.
    for repo in repos[:-1]:
        repo.close()
        with pytest.raises(RepositoryClosedError):
            repo.get("t", (0, 0))
    last = repos[-1]
    assert last.count("t") == 1000 * len(names)
    assert open_stores.users(names[0]) == 1
    last.close()
    assert open_stores.users(names[0]) == 0
    with pytest.raises(RepositoryClosedError):
        last.backend.get(b"\x01x")
    # Reopened (LMDB would refuse a second environment if the first were still open):
    # every write through every spelling is there, and the structure is sound.
    with aurora_storage.open(f"lmdb://{names[1]}") as repo:
        assert repo.count("t") == 1000 * len(names)
        assert repo.verify().ok


def test_relative_path_and_direct_construction_share_the_handle(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with (
        aurora_storage.open("lmdb:proj") as a,
        LMDBRepository[Any, Any](tmp_path / "proj") as b,
        aurora_storage.open(f"lmdb://{tmp_path}/proj") as c,
    ):
        assert a.backend is b.backend is c.backend
        b.put("t", "k", 1)
        assert a.get("t", "k") == c.get("t", "k") == 1


def test_other_options_on_an_open_store_are_refused_naming_them(tmp_path: Path) -> None:
    with aurora_storage.open(f"lmdb://{tmp_path}/s?sync=false") as repo:
        repo.put("t", "k", 1)
        with pytest.raises(ConfigurationError, match=r"sync=True \(open: False\)"):
            aurora_storage.open(f"lmdb://{tmp_path}/s?sync=true")
        with pytest.raises(ConfigurationError, match="max_readers"):
            LMDBRepository(tmp_path / "s", sync=False, max_readers=50)
        # Options that only matter while opening may differ.
        with aurora_storage.open(f"lmdb://{tmp_path}/s?sync=false&verify=true") as again:
            assert again.backend is repo.backend
        assert repo.get("t", "k") == 1  # the other user's close left it open


def test_an_initialised_store_whose_metadata_vanished_is_damaged(tmp_path: Path) -> None:
    path = tmp_path / "s"
    with aurora_storage.open(f"lmdb://{path}") as repo:
        repo.put_many("t", {i: i for i in range(100)})
    assert (path / "aurora-store.json").exists()
    # The core's metadata record vanished (written around the library).
    env = lmdb.open(str(path), lib_version=0)
    with env.begin(write=True) as txn:
        assert txn.delete(b"\x00aurora:meta")
    env.close()
    with pytest.raises(CorruptionError, match="initialised"):
        aurora_storage.open(f"lmdb://{path}")
    # Never silently re-initialised: still refused, and the records are still there.
    with pytest.raises(CorruptionError):
        aurora_storage.open(f"lmdb://{path}")
    env = lmdb.open(str(path), lib_version=0)
    assert env.stat()["entries"] == 101  # 100 records and the plugin's record
    env.close()


def test_an_initialised_store_whose_data_file_vanished_is_damaged(tmp_path: Path) -> None:
    path = tmp_path / "s"
    with aurora_storage.open(f"lmdb://{path}") as repo:
        repo.put("t", "k", 1)
    (path / "data.mdb").unlink()
    before = sorted(p.name for p in path.iterdir())
    with pytest.raises(CorruptionError, match=r"data file .* is missing"):
        aurora_storage.open(f"lmdb://{path}")
    # Nothing was created in its place.
    assert sorted(p.name for p in path.iterdir()) == before


def test_tilde_is_the_home_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(tmp_path)
    with aurora_storage.open("lmdb:~/x") as repo:
        repo.put("t", "k", 1)
    with aurora_storage.open("lmdb://~/y") as repo:
        repo.put("t", "k", 2)
    with LMDBRepository[Any, Any]("~/z") as repo:
        repo.put("t", "k", 3)
    assert sorted(p.name for p in home.iterdir()) == ["x", "y", "z"]
    assert not (tmp_path / "~").exists()
    # A ~ that is not the first character is an ordinary name.
    with aurora_storage.open(f"lmdb://{tmp_path}/a~b") as repo:
        repo.put("t", "k", 4)
    assert (tmp_path / "a~b" / "data.mdb").exists()
    assert os.path.isdir(home / "x")
