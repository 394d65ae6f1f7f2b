"""LMDB-specific behaviour: options, map growth, processes, reader slots, integrity, fork."""

from __future__ import annotations

import json
import os
import random
import signal
import struct
import subprocess
import sys
import zlib
from pathlib import Path
from typing import Any

import lmdb
import pytest

import aurora_storage
from aurora_storage.errors import (
    ConfigurationError,
    CorruptionError,
    InvalidArgumentError,
    InvalidURLError,
    ReadOnlyError,
    RepositoryClosedError,
    StorageError,
    StorageFullError,
)
from aurora_storage_lmdb import (
    LMDBBackend,
    LMDBConfig,
    LMDBRepository,
    create_lmdb_repository,
)

CHILD = str(Path(__file__).with_name("lmdb_child.py"))


def child(*args: str, **kw: Any) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, CHILD, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kw,
    )


# ---------------------------------------------------------------------- URLs and options


def test_open_returns_lmdb_repository_with_parsed_options(tmp_path: Path) -> None:
    url = f"lmdb://{tmp_path}/s?map_size=2MiB&max_readers=20&sync=false&metasync=0"
    with aurora_storage.open(url) as repo:
        assert isinstance(repo, LMDBRepository)
        cfg = repo.lmdb_backend.config
        assert (cfg.map_size, cfg.max_readers, cfg.sync, cfg.metasync) == (
            2 << 20,
            20,
            False,
            False,
        )
        assert repo.capabilities.multi_process
        assert repo.capabilities.persistent
        assert not repo.capabilities.blocking_writes  # sync=false: no fsync per write
        st = repo.stats()
        assert st["map_size"] == 2 << 20
        assert st["max_readers"] == 20
        assert st["lmdb_version"].startswith("0.9")
        assert st["lmdb_data_format"] == 1


def test_relative_path_form(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with aurora_storage.open("lmdb:data/proj") as repo:
        repo.put("t", 1, "x")
    assert (tmp_path / "data" / "proj" / "data.mdb").exists()


@pytest.mark.parametrize(
    "url",
    [
        "lmdb://host/abs/path",
        "lmdb://",
        "lmdb:///x?bogus=1",
        "lmdb:///x?map_size=huge",
        "lmdb:///x?sync=maybe",
    ],
)
def test_bad_urls(url: str) -> None:
    with pytest.raises(InvalidURLError):
        aurora_storage.open(url)


def test_unknown_option_lists_valid_ones(tmp_path: Path) -> None:
    with pytest.raises(InvalidURLError, match="max_readers"):
        aurora_storage.open(f"lmdb://{tmp_path}/s?mapsize=1")


def test_conflicting_options(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="max_map_size"):
        LMDBRepository(tmp_path / "s", map_size="4MiB", max_map_size="1MiB")
    with pytest.raises(ConfigurationError, match="map_size"):
        LMDBRepository(tmp_path / "s", map_size=100)


def test_direct_construction_and_factory(tmp_path: Path) -> None:
    with LMDBRepository[Any, Any](path=tmp_path / "a", map_size="1MiB", sync=False) as repo:
        repo.put("t", "k", {"v": 1})
    with create_lmdb_repository(tmp_path / "a") as repo:
        assert repo.get("t", "k") == {"v": 1}
    backend = LMDBBackend(LMDBConfig(path=str(tmp_path / "b")))
    backend.put(b"\x01k", b"v")
    assert backend.get(b"\x01k") == b"v"
    backend.close()


def test_the_factory_takes_a_typescript_style_config_object(tmp_path: Path) -> None:
    # Breaker finding: a TypeScript-style config object ({"path": ..., ...}) raised a raw
    # TypeError ("expected str, bytes or os.PathLike object, not dict").
    with create_lmdb_repository({"path": tmp_path / "a", "sync": False}) as repo:
        assert repo.lmdb_backend.config.sync is False
        repo.put("t", "k", 1)
    with create_lmdb_repository(tmp_path / "a") as repo:
        assert repo.get("t", "k") == 1
    with pytest.raises(InvalidURLError, match="map_size"):
        create_lmdb_repository({"path": tmp_path / "c", "mapSize": 1 << 20})
    with pytest.raises(ConfigurationError, match="not both"):
        create_lmdb_repository({"path": tmp_path / "c"}, sync=False)
    with pytest.raises(ConfigurationError, match="needs 'path'"):
        create_lmdb_repository({"sync": False})
    with pytest.raises(InvalidArgumentError, match="got int"):
        create_lmdb_repository(42)  # type: ignore[arg-type]  # wrong on purpose
    assert not (tmp_path / "c").exists()


def test_missing_store_with_create_false_or_read_only(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="no LMDB store"):
        aurora_storage.open(f"lmdb://{tmp_path}/nope?create=false")
    with pytest.raises(ConfigurationError, match="read-only"):
        aurora_storage.open(f"lmdb://{tmp_path}/nope?read_only=true")
    assert not (tmp_path / "nope").exists()


def test_second_open_in_one_process_shares_the_handle(tmp_path: Path) -> None:
    # (More spellings and the reference counting: test_lmdb_shared.py.)
    with (
        aurora_storage.open(f"lmdb://{tmp_path}/s") as a,
        aurora_storage.open(f"lmdb://{tmp_path}/s") as b,
    ):
        assert a.backend is b.backend


def test_subdir_false_uses_a_single_file(tmp_path: Path) -> None:
    with aurora_storage.open(f"lmdb://{tmp_path}/file.lmdb?subdir=false") as repo:
        repo.put("t", "k", 1)
    assert (tmp_path / "file.lmdb").is_file()
    with aurora_storage.open(f"lmdb://{tmp_path}/file.lmdb?subdir=false") as repo:
        assert repo.get("t", "k") == 1


# ---------------------------------------------------------------------- map growth


@pytest.mark.timeout(120)
def test_growth_from_64kib_to_hundreds_of_mb(tmp_path: Path) -> None:
    value = "x" * 100_000
    with aurora_storage.open(f"lmdb://{tmp_path}/s?map_size=64KiB&sync=false") as repo:
        assert repo.stats()["map_size"] == 64 * 1024
        # Single puts first (each may hit the full map), then large atomic batches.
        for i in range(50):
            repo.put("t", i, value)
        for start in range(50, 2550, 250):
            repo.put_many("t", dict.fromkeys(range(start, start + 250), value))
        st = repo.stats()
        assert st["map_size"] >= 250 * 2**20
        assert st["used_bytes"] >= 240 * 2**20
        assert repo.count("t") == 2550
    with aurora_storage.open(f"lmdb://{tmp_path}/s?map_size=64KiB") as repo:
        assert repo.count("t") == 2550
        assert repo.get("t", 2549) == value
        assert repo.get("t", 0) == value


def test_growth_stops_at_max_map_size(tmp_path: Path) -> None:
    url = f"lmdb://{tmp_path}/s?map_size=64KiB&max_map_size=1MiB&sync=false"
    with aurora_storage.open(url) as repo:
        repo.put("t", "small", 1)
        with pytest.raises(StorageFullError, match="max_map_size"):
            repo.put_many("t", dict.fromkeys(range(200), "y" * 10000))
        # The failed batch left nothing behind and the store still works.
        assert repo.count("t") == 1
        repo.put("t", "after", 2)
        assert repo.get("t", "after") == 2


# ---------------------------------------------------------------------- processes


@pytest.mark.timeout(120)
def test_several_processes_write_one_environment(tmp_path: Path) -> None:
    path = str(tmp_path / "s")
    with aurora_storage.open(f"lmdb://{path}?map_size=64KiB"):
        pass  # created with a tiny map: every process has to grow it
    workers, count = 4, 1500
    procs = [child("write", path, str(w), str(count)) for w in range(workers)]
    for p in procs:
        out, err = p.communicate(timeout=100)
        assert p.returncode == 0, err
        assert out.strip() == "done"
    with aurora_storage.open(f"lmdb://{path}") as repo:
        for w in range(workers):
            assert repo.list(f"w{w}") == list(range(count))
        assert repo.get("w3", count - 1) == "v" * 300


def test_reader_in_another_process_sees_committed_writes(tmp_path: Path) -> None:
    path = str(tmp_path / "s")
    with aurora_storage.open(f"lmdb://{path}?map_size=64KiB&sync=false") as repo:
        repo.put("t", "other", 0)
        reader = child("wait-read", path, "k")
        assert reader.stdout is not None
        assert reader.stdin is not None
        assert reader.stdout.readline().strip() == "ready"
        # Grow the map well past the reader's 64 KiB map: its next read must adopt it.
        repo.put_many("u", dict.fromkeys(range(2000), "w" * 2000))
        repo.put("t", "k", {"seen": True})
        assert repo.stats()["map_size"] > 4 << 20
        out, err = reader.communicate("go\n", timeout=30)
        assert reader.returncode == 0, err
        assert json.loads(out) == {"seen": True}


def test_read_only_process_next_to_a_writer(tmp_path: Path) -> None:
    path = str(tmp_path / "s")
    with aurora_storage.open(f"lmdb://{path}") as repo:
        repo.put_many("t", {i: i for i in range(10)})
        p = child("read-only", path)
        out, err = p.communicate(timeout=30)
        assert p.returncode == 0, err
        assert json.loads(out) == {"count": 10, "refused": True}


def _fill_reader_slots(path: str, n: int) -> list[subprocess.Popen[str]]:
    holders = [child("hold-reader", path) for _ in range(n)]
    for h in holders:
        assert h.stdout is not None
        assert h.stdout.readline().strip() == "ready"
    return holders


def _kill(procs: list[subprocess.Popen[str]]) -> None:
    for p in procs:
        p.send_signal(signal.SIGKILL)
        p.communicate(timeout=30)
        assert p.returncode == -signal.SIGKILL


@pytest.mark.timeout(60)
def test_reader_slots_of_killed_processes_are_reclaimed_at_open(tmp_path: Path) -> None:
    path = str(tmp_path / "s")
    with aurora_storage.open(f"lmdb://{path}") as repo:
        repo.put("t", "k", 1)
    # The reader table is reset when the last process closes the environment, so a live
    # process (holding one slot) keeps it while three readers are SIGKILLed.
    (keeper,) = _fill_reader_slots(path, 1)
    try:
        dead = _fill_reader_slots(path, 3)
        pids = [str(p.pid) for p in dead]
        _kill(dead)
        with aurora_storage.open(f"lmdb://{path}") as repo:
            assert isinstance(repo, LMDBRepository)
            table = repo.lmdb_backend._env.readers()
            assert not any(pid in table for pid in pids)
            assert str(keeper.pid) in table
            assert repo.get("t", "k") == 1
            assert repo.stats()["readers_active"] == 2  # the keeper and this process
    finally:
        _kill([keeper])


def test_reader_table_full_at_open_is_a_clear_error(tmp_path: Path) -> None:
    path = str(tmp_path / "s")
    with aurora_storage.open(f"lmdb://{path}") as repo:
        repo.put("t", "k", 1)
    # (LMDB never shrinks an existing lock file: start from a fresh one, as is allowed
    # while no process has the environment open.)
    os.unlink(os.path.join(path, "lock.mdb"))
    env = lmdb.open(path, lib_version=0, max_spare_txns=0, max_readers=3)
    holders = _fill_reader_slots(path, 3)
    try:
        with pytest.raises(lmdb.ReadersFullError):
            env.begin()
        env.close()
        with pytest.raises(StorageFullError, match="reader slots"):
            aurora_storage.open(f"lmdb://{path}")
    finally:
        _kill(holders)


@pytest.mark.timeout(60)
def test_reader_slots_exhausted_while_open_are_recovered(tmp_path: Path) -> None:
    path = str(tmp_path / "s")
    url = f"lmdb://{path}?max_readers=4&reader_cache=false"
    with aurora_storage.open(url) as repo:
        repo.put("t", "k", 1)
        holders = _fill_reader_slots(path, 4)
        _kill(holders)
        # Every slot is held by a dead process: the read reclaims them and succeeds.
        assert repo.get("t", "k") == 1
        assert list(repo.items("t")) == [("k", 1)]


# ---------------------------------------------------------------------- integrity


def _flip_in_data_file(path: Path, needle: bytes) -> None:
    data = bytearray((path / "data.mdb").read_bytes())
    at = data.find(needle)
    assert at >= 0
    data[at + len(needle) // 2] ^= 0x01
    (path / "data.mdb").write_bytes(bytes(data))


def test_flipped_byte_in_a_value_raises_corruption(tmp_path: Path) -> None:
    path = tmp_path / "s"
    with aurora_storage.open(f"lmdb://{path}") as repo:
        repo.put("t", "victim", "UNIQUE-PAYLOAD-0123456789")
        repo.put("t", "zz-after", "fine")
    _flip_in_data_file(path, b"UNIQUE-PAYLOAD-0123456789")
    with aurora_storage.open(f"lmdb://{path}") as repo:
        with pytest.raises(CorruptionError, match="checksum"):
            repo.get("t", "victim")
        with pytest.raises(CorruptionError):
            list(repo.items("t"))
        with pytest.raises(CorruptionError):
            repo.get_many("t", ["victim"])
        assert repo.get("t", "zz-after") == "fine"
        assert repo.list("t") == ["victim", "zz-after"]  # keys alone are still listed


def test_truncated_data_file_is_a_clear_error_not_a_crash(tmp_path: Path) -> None:
    path = tmp_path / "s"
    with aurora_storage.open(f"lmdb://{path}?sync=false") as repo:
        repo.put_many("t", dict.fromkeys(range(2000), "z" * 500))
    data = path / "data.mdb"
    data.write_bytes(data.read_bytes()[: 8 * 4096])
    # In a child process too, so a SIGBUS would show as a signal exit rather than
    # killing the test run.
    code = (
        "import aurora_storage, sys\n"
        "from aurora_storage.errors import CorruptionError\n"
        "try:\n"
        f"    r = aurora_storage.open('lmdb://{path}'); print(len(list(r.items('t'))))\n"
        "except CorruptionError as e:\n"
        "    print('corruption:', e); sys.exit(3)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 3, (proc.returncode, proc.stdout, proc.stderr)
    assert "truncated" in proc.stdout
    with pytest.raises(CorruptionError, match="truncated"):
        aurora_storage.open(f"lmdb://{path}")


def _meta_last_page(data_file: Path) -> int:
    """The last page in use that the newer of the two meta pages names."""
    head = data_file.read_bytes()[: 2 * 4096]
    metas = [struct.unpack_from("<QQ", head, off + 136) for off in (0, 4096)]
    last_pgno, _txnid = max(metas, key=lambda m: int(m[1]))
    return int(last_pgno)


def test_a_healthy_file_shorter_than_its_last_page_opens(tmp_path: Path) -> None:
    """liblmdb does not write a loose page (allocated at the end, then freed, in one
    transaction) although its meta page counts it, so a healthy file can end short of its
    last page. Such a store opens with every record (the structural walk finds every
    reachable page inside the file); it used to be refused as truncated."""

    for seed in range(200):
        path = tmp_path / f"s{seed}"
        with aurora_storage.open(f"lmdb://{path}?sync=false") as repo:
            repo.put("t", "kept", {"n": seed})
        rnd = random.Random(seed)
        env = lmdb.open(str(path), map_size=1 << 26, sync=False)
        keys: list[bytes] = []
        for _ in range(rnd.randint(1, 6)):
            with env.begin(write=True) as txn:
                for _ in range(rnd.randint(1, 300)):
                    if keys and rnd.random() < 0.45:
                        txn.delete(keys.pop(rnd.randrange(len(keys))))
                    else:
                        key = b"~raw%08d" % rnd.randrange(10**8)  # outside aurora's keys
                        keys.append(key)
                        txn.put(key, b"v" * rnd.choice([10, 300, 3000, 9000]))
        env.close()
        data = path / "data.mdb"
        if data.stat().st_size < (_meta_last_page(data) + 1) * 4096:
            break
    else:
        pytest.fail("no seed left a data file shorter than its last page")
    with aurora_storage.open(f"lmdb://{path}") as repo:
        assert repo.get("t", "kept") == {"n": seed}


def test_garbage_data_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "s"
    path.mkdir()
    (path / "data.mdb").write_bytes(os.urandom(3 * 4096))
    with pytest.raises(CorruptionError, match="not an LMDB data file"):
        aurora_storage.open(f"lmdb://{path}")


def test_verify_option_runs_the_structural_verifier(tmp_path: Path) -> None:
    path = tmp_path / "s"
    with aurora_storage.open(f"lmdb://{path}") as repo:
        repo.put_many("t", {i: i for i in range(300)})
    with aurora_storage.open(f"lmdb://{path}?verify=true") as repo:
        assert repo.count("t") == 300
    # Damage a B-tree page's header (page 3 onwards holds tree pages): the meta pages
    # still look fine, the verifier does not.
    data = bytearray((path / "data.mdb").read_bytes())
    for page in range(2, len(data) // 4096):
        data[page * 4096 : page * 4096 + 16] = b"\xff" * 16
    (path / "data.mdb").write_bytes(bytes(data))
    with pytest.raises(CorruptionError, match="verification"):
        aurora_storage.open(f"lmdb://{path}?verify=true")


def test_other_lmdb_format_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "s"
    env = lmdb.open(str(path), lib_version=1)  # LMDB 1.0, data format v3
    with env.begin(write=True) as txn:
        txn.put(b"k", b"v")
    env.close()
    with pytest.raises(ConfigurationError, match="format v3"):
        aurora_storage.open(f"lmdb://{path}")


def test_other_codec_is_refused(tmp_path: Path) -> None:
    with aurora_storage.open(f"lmdb://{tmp_path}/s", codec="msgpack") as repo:
        repo.put("t", "k", 1)
    with pytest.raises(ConfigurationError, match="msgpack"):
        aurora_storage.open(f"lmdb://{tmp_path}/s?codec=json")
    with aurora_storage.open(f"lmdb://{tmp_path}/s") as repo:
        assert repo.codec.name == "msgpack"


def test_other_envelope_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "s"
    with aurora_storage.open(f"lmdb://{path}") as repo:
        repo.put("t", "k", 1)
    env = lmdb.open(str(path), lib_version=0)
    record = b'{"envelope":99}'
    with env.begin(write=True) as txn:
        txn.put(b"\x00aurora:lmdb", record + zlib.crc32(record).to_bytes(4, "little"))
    env.close()
    with pytest.raises(ConfigurationError, match="envelope v99"):
        aurora_storage.open(f"lmdb://{path}")


# ---------------------------------------------------------------------- fork, copy, close


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
@pytest.mark.parametrize("reader_cache", [True, False])
def test_repository_inherited_across_fork_is_refused_in_the_child(
    tmp_path: Path, reader_cache: bool
) -> None:
    url = f"lmdb://{tmp_path}/s?reader_cache={str(reader_cache).lower()}"
    repo = aurora_storage.open(url)
    repo.put("t", "k", 1)
    assert repo.get("t", "k") == 1
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        code = 1
        try:
            repo.get("t", "k")
        except StorageError as exc:
            code = 10 if "fork" in str(exc) else 2
        if code == 10 and not reader_cache:
            # Without the reader cache the child may open the store afresh.
            try:
                with aurora_storage.open(url) as fresh:
                    code = 11 if fresh.get("t", "k") == 1 else 3
            except Exception:
                code = 4
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == (10 if reader_cache else 11)
    # The parent is unaffected.
    repo.put("t", "k2", 2)
    assert repo.get("t", "k") == 1
    assert repo.get("t", "k2") == 2
    repo.close()


def test_copy_makes_a_consistent_backup(tmp_path: Path) -> None:
    with aurora_storage.open(f"lmdb://{tmp_path}/s") as repo:
        assert isinstance(repo, LMDBRepository)
        repo.put_many("t", {i: {"n": i} for i in range(1000)})
        repo.drop_tenant("t")
        repo.put_many("u", {i: i for i in range(10)})
        target = repo.copy(tmp_path / "backup", compact=True)
        with pytest.raises(ConfigurationError, match="already holds"):
            repo.copy(tmp_path / "backup")
    with aurora_storage.open(f"lmdb://{target}") as copy:
        assert copy.list("u") == list(range(10))
        assert copy.count("t") == 0


def test_use_after_close_and_read_only(tmp_path: Path) -> None:
    path = tmp_path / "s"
    repo = aurora_storage.open(f"lmdb://{path}")
    repo.put_many("t", {i: i for i in range(100)})
    it = repo.items("t")
    next(it)
    repo.close()
    with pytest.raises(RepositoryClosedError):
        list(it)
    with pytest.raises(RepositoryClosedError):
        repo.backend.get(b"\x01x")
    with aurora_storage.open(f"lmdb://{path}?read_only=true") as ro:
        assert ro.count("t") == 100
        with pytest.raises(ReadOnlyError):
            ro.put("t", 1, 2)
        with pytest.raises(ReadOnlyError):
            ro.backend.put(b"\x01x", b"y")


def test_drop_tenant_deletes_only_its_range(tmp_path: Path) -> None:
    with aurora_storage.open(f"lmdb://{tmp_path}/s?sync=false") as repo:
        repo.put_many("a", {i: i for i in range(120_000)})
        repo.put_many("a:b", {i: i for i in range(5)})
        repo.put_many("b", {i: i for i in range(5)})
        assert repo.drop_tenant("a") == 120_000
        assert sorted(repo.tenants()) == ["a:b", "b"]
        assert repo.count("a:b") == 5
        assert repo.count("b") == 5
        assert repo.stats()["entries"] == 12  # 10 records + 2 metadata records


def test_asyncio_writes_from_worker_threads_and_reads_inline(tmp_path: Path) -> None:
    import asyncio

    arepo = aurora_storage.open_async(f"lmdb://{tmp_path}/s?sync=true&map_size=64KiB")
    assert arepo.capabilities.blocking_writes  # sync=true: writes leave the event loop

    async def main() -> None:
        # Concurrent writes land on different worker threads; each write transaction
        # begins and commits on one of them, and the map grows meanwhile.
        await asyncio.gather(*(arepo.put("t", i, "v" * 2000) for i in range(60)))
        await arepo.put_many("t", {i: i for i in range(60, 100)})
        assert await arepo.get("t", 5) == "v" * 2000
        assert await arepo.count("t") == 100
        assert [k async for k in arepo.keys("t", limit=3)] == [0, 1, 2]
        await arepo.close()

    asyncio.run(main())
