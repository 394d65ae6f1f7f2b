"""Feed positions are ``(transaction id << 32) + i``: past 2**32 write transactions a
store's positions pass 2**64, and ``watch(after=...)`` must still take every position
the store itself gives (it refused them: its bound was 2**64 - 1). The transaction ids
of a real store are raised by editing both meta pages (``mm_txnid``, byte 144 of each
4 KiB meta page in liblmdb 0.9's layout; checked against the engine before it is
touched)."""

from __future__ import annotations

import os
import struct
from pathlib import Path

import pytest

import aurora_storage

_TXNID = 144  # page header (16) + magic, version, address, mapsize, two MDB_db, last_pg
_PAGE = 4096


def _raise_txnids(path: Path, by: int) -> None:
    url = f"lmdb://{path}?change_log=true"
    with aurora_storage.open(url) as repo:
        repo.put("t", "before", 0)
        last = repo._backend._env.info()["last_txnid"]  # type: ignore[attr-defined]  # the LMDB backend
    data = path / "data.mdb"
    with open(data, "r+b") as f:
        head = bytearray(f.read(2 * _PAGE))
        ids = [struct.unpack_from("<Q", head, pg * _PAGE + _TXNID)[0] for pg in (0, 1)]
        if max(ids) != last or os.sysconf("SC_PAGE_SIZE") != _PAGE:
            pytest.skip("the data file's meta pages are not in the layout this test edits")
        for pg in (0, 1):
            struct.pack_into("<Q", head, pg * _PAGE + _TXNID, ids[pg] + by)
        f.seek(0)
        f.write(head)
    (path / "lock.mdb").unlink()  # it caches the old transaction id


@pytest.mark.parametrize("change_log", [True, False], ids=["change-log", "in-process"])
def test_positions_past_2_64_are_taken_back(tmp_path: Path, change_log: bool) -> None:
    path = tmp_path / "s"
    _raise_txnids(path, 2**32)
    url = f"lmdb://{path}" + ("?change_log=true" if change_log else "")
    with aurora_storage.open(url) as repo:
        start = repo.last_position()
        repo.put("t", "k1", 1)
        last = repo.last_position()
        assert last > 2**64 - 1
        with repo.watch("t", after=start, timeout=0.2) as w:
            got = [(c.key, c.position) for c in w]
        assert [k for k, _ in got] == ["k1"]
        assert got[-1][1] == last
        repo.put("t", "k2", 2)
        # Every position the store gave resumes: last_position(), Change.position and
        # Watch.position.
        assert [c.key for c in repo.watch("t", after=last, timeout=0.2)] == ["k2"]
        assert [c.key for c in repo.watch("t", after=w.position, timeout=0.2)] == ["k2"]
