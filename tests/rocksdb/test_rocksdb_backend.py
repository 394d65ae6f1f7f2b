"""RocksDB-specific behaviour: real RocksDB directories in tmp_path, real processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
import rocksdict

import aurora_storage
from aurora_storage.errors import (
    ConfigurationError,
    CorruptionError,
    InvalidArgumentError,
    InvalidURLError,
    KeyExistsError,
    ReadOnlyError,
    RepositoryClosedError,
)
from aurora_storage_rocksdb import (
    InheritedHandleError,
    RocksDBConfig,
    RocksDBRepository,
    create_rocksdb_repository,
)

CHILD = str(Path(__file__).with_name("child_rocksdb.py"))


def _rocks(url: str) -> RocksDBRepository[Any, Any]:
    """``aurora_storage.open(url)`` for a rocksdb:// URL, typed as what it returns (the
    engine's repository, with flush(memtables=), compact, checkpoint, property)."""
    repo = aurora_storage.open(url)
    assert isinstance(repo, RocksDBRepository)
    return repo


def _child(*args: str, **kw: Any) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, CHILD, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kw,
    )


def _event(i: int) -> dict[str, Any]:
    # Realistic, compressible history: repeated field names and vocabulary.
    return {
        "type": "order.status_changed",
        "order_id": f"order-{i // 10:08d}",
        "sequence": i,
        "status": ["created", "paid", "packed", "shipped", "delivered"][i % 5],
        "actor": {"kind": "service", "name": "fulfilment-worker", "region": "eu-west-1"},
        "note": "status transition recorded by the fulfilment pipeline",
    }


# ---------------------------------------------------------------- URL, config, plugin


def test_open_returns_rocksdb_repository_with_every_option(tmp_path: Path) -> None:
    url = (
        f"rocksdb://{tmp_path}/s?create_if_missing=true&error_if_exists=false"
        "&compression=zstd&write_buffer_size=8MiB&max_write_buffer_number=3"
        "&max_open_files=100&bloom_filter=false&bloom_bits_per_key=12"
        "&block_cache_size=16MiB&max_background_jobs=2&sync=true&mode=read_write&codec=msgpack"
    )
    with aurora_storage.open(url) as repo:
        assert isinstance(repo, RocksDBRepository)
        cfg = repo.config
        assert cfg.path == str(tmp_path / "s")
        assert cfg.compression == "zstd"
        assert cfg.write_buffer_size == 8 * 1024**2
        assert cfg.max_write_buffer_number == 3
        assert cfg.max_open_files == 100
        assert cfg.bloom_filter is False
        assert cfg.bloom_bits_per_key == 12
        assert cfg.block_cache_size == 16 * 1024**2
        assert cfg.sync is True
        assert repo.codec.name == "msgpack"
        assert repo.capabilities.persistent
        assert not repo.capabilities.multi_process
        assert not repo.capabilities.read_only
        repo.put("t", 1, {"a": 1})
        assert repo.get("t", 1) == {"a": 1}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("true", "snappy"),
        ("false", "none"),
        ("none", "none"),
        ("snappy", "snappy"),
        ("zstd", "zstd"),
        ("LZ4", "lz4"),
        ("1", "snappy"),
    ],
)
def test_compression_values(tmp_path: Path, text: str, expected: str) -> None:
    cfg = RocksDBConfig.from_options(tmp_path / "s", {"compression": text})
    assert cfg.compression == expected


def test_defaults() -> None:
    cfg = RocksDBConfig(path="x")
    assert cfg.create_if_missing is True
    assert cfg.error_if_exists is False
    assert cfg.compression == "snappy"
    assert cfg.bloom_filter is True
    assert cfg.sync is False
    assert cfg.mode == "read_write"
    assert os.path.isabs(cfg.path)


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        ({"error_if_exists": "true", "create_if_missing": "false"}, "can never open"),
        ({"mode": "read_only", "error_if_exists": "true"}, "error_if_exists"),
        ({"mode": "secondary", "sync": "true"}, "sync=true"),
        ({"secondary_path": "/x"}, "secondary_path"),
        ({"write_buffer_size": "1KiB"}, "write_buffer_size"),
        ({"max_open_files": "0"}, "max_open_files"),
        ({"bloom_bits_per_key": "0"}, "bloom_bits_per_key"),
    ],
)
def test_conflicting_options_refused_when_config_is_built(
    tmp_path: Path, options: dict[str, Any], fragment: str
) -> None:
    with pytest.raises(ConfigurationError, match=fragment):
        RocksDBConfig.from_options(tmp_path / "s", options)
    # ... and through open(), before any directory is created.
    query = "&".join(f"{k}={v}" for k, v in options.items())
    with pytest.raises(ConfigurationError, match=fragment):
        aurora_storage.open(f"rocksdb://{tmp_path}/s?{query}")
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize(
    "url",
    [
        "rocksdb:///x?compression=gzip",
        "rocksdb:///x?mode=writer",
        "rocksdb:///x?write_buffer_size=lots",
        "rocksdb:///x?sync=maybe",
        "rocksdb:///x?colour=blue",
        "rocksdb://somehost/x",
        "rocksdb://",
    ],
)
def test_bad_urls(url: str) -> None:
    with pytest.raises(InvalidURLError):
        aurora_storage.open(url)


def test_unknown_option_lists_valid_ones(tmp_path: Path) -> None:
    with pytest.raises(InvalidURLError, match="compression") as info:
        aurora_storage.open(f"rocksdb://{tmp_path}/s?colour=blue")
    assert "sync" in str(info.value)
    assert "mode" in str(info.value)


def test_relative_path_form(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with aurora_storage.open("rocksdb:data/events") as repo:
        repo.put("t", "k", 1)
    assert (tmp_path / "data" / "events" / "CURRENT").exists()
    with aurora_storage.open("rocksdb://./data/events") as repo:
        assert repo.get("t", "k") == 1


def test_direct_construction_and_factory(tmp_path: Path) -> None:
    with RocksDBRepository[Any, Any](path=tmp_path / "a", compression=True, sync=False) as repo:
        assert repo.config.compression == "snappy"
        repo.put("t", 1, "x")
    with create_rocksdb_repository(RocksDBConfig(path=str(tmp_path / "a"))) as repo:
        assert repo.get("t", 1) == "x"
        assert isinstance(repo, RocksDBRepository)
    with create_rocksdb_repository(path=tmp_path / "b", compression="lz4") as repo:
        assert repo.config.compression == "lz4"
    with pytest.raises(ConfigurationError):
        create_rocksdb_repository()
    with pytest.raises(ConfigurationError):
        create_rocksdb_repository(RocksDBConfig(path="x"), sync=True)


def test_the_factory_takes_a_typescript_style_config_object(tmp_path: Path) -> None:
    # Breaker finding: create_rocksdb_repository({"path": ..., "compression": True}) - the
    # TypeScript package's createRocksDBRepository({...}) - raised a raw AttributeError
    # ('dict' object has no attribute 'path'), and so did a path given positionally.
    with create_rocksdb_repository({"path": tmp_path / "a", "compression": True}) as repo:
        assert repo.config.compression == "snappy"
        repo.put("t", 1, "x")
    with create_rocksdb_repository(str(tmp_path / "a")) as repo:
        assert repo.get("t", 1) == "x"
    with create_rocksdb_repository(tmp_path / "a", sync=False) as repo:
        assert repo.config.sync is False
    # A TypeScript option name is refused with the valid ones, nothing created.
    with pytest.raises(InvalidURLError, match="write_buffer_size"):
        create_rocksdb_repository({"path": tmp_path / "c", "writeBufferSize": 1 << 20})
    with pytest.raises(ConfigurationError, match="not both"):
        create_rocksdb_repository({"path": tmp_path / "c"}, sync=True)
    with pytest.raises(ConfigurationError, match="path"):
        create_rocksdb_repository({"compression": True})
    with pytest.raises(InvalidArgumentError, match="got int"):
        create_rocksdb_repository(42)  # type: ignore[arg-type]  # wrong on purpose
    assert not (tmp_path / "c").exists()


def test_entry_point_module_does_not_import_the_engine() -> None:
    code = (
        "import sys, aurora_storage_rocksdb._plugin as p;"
        "specs = p.aurora_storage_backends();"
        "assert specs[0].scheme == 'rocksdb';"
        "print('rocksdict' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# ---------------------------------------------------------------- files and compression


def test_store_is_a_real_rocksdb_directory(tmp_path: Path) -> None:
    path = tmp_path / "s"
    repo = _rocks(f"rocksdb://{path}?write_buffer_size=64KiB")
    repo.put("t", 0, _event(0))
    names = os.listdir(path)
    assert "CURRENT" in names
    assert any(n.startswith("MANIFEST-") for n in names)
    assert any(n.endswith(".log") for n in names)  # the write-ahead log
    assert not any(n.endswith(".sst") for n in names)
    # Well past the 64 KiB write buffer: RocksDB flushes memtables to table files.
    for start in range(0, 4000, 500):
        repo.put_many("t", [(i, _event(i)) for i in range(start, start + 500)])
    deadline = time.monotonic() + 20
    while not any(n.endswith(".sst") for n in os.listdir(path)):
        assert time.monotonic() < deadline, "no .sst file after passing the write buffer"
        time.sleep(0.05)
    stats = repo.stats()
    assert stats["sst_files"] >= 1
    assert stats["size_on_disk"] > 0
    assert stats["estimated_keys"] > 0
    assert "rocksdb.total-sst-files-size" in stats["properties"]
    assert stats["properties"]["rocksdb.num-files-at-level0"] is not None
    assert repo.property("rocksdb.stats")
    assert repo.count("t") == 4000
    repo.close()


def _sst_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.iterdir() if f.name.endswith(".sst"))


def test_compression_shrinks_history(tmp_path: Path) -> None:
    sizes = {}
    for comp in ("none", "snappy", "zstd"):
        path = tmp_path / comp
        with _rocks(f"rocksdb://{path}?compression={comp}") as repo:
            for start in range(0, 20_000, 2_000):
                repo.put_many("acme", [(i, _event(i)) for i in range(start, start + 2_000)])
            repo.flush(memtables=True)
            repo.compact()
            sizes[comp] = _sst_bytes(path)
    ratio_snappy = sizes["none"] / sizes["snappy"]
    ratio_zstd = sizes["none"] / sizes["zstd"]
    print(f"sst bytes {sizes}; ratio snappy {ratio_snappy:.1f}x, zstd {ratio_zstd:.1f}x")
    assert ratio_snappy > 2, sizes
    assert ratio_zstd > 3, sizes


# ---------------------------------------------------------------- persistence, maintenance


def test_persistence_across_reopen(tmp_path: Path) -> None:
    url = f"rocksdb://{tmp_path}/s?compression=zstd"
    with aurora_storage.open(url) as repo:
        repo.put_many("acme", [(i, _event(i)) for i in range(1000)])
        repo.delete("acme", 5)
        repo.put("other", ("a", 1), b"\x00bytes".hex())
    with aurora_storage.open(url) as repo:
        assert repo.count("acme") == 999
        assert repo.get("acme", 5) is None
        assert repo.get("acme", 6) == _event(6)
        assert list(repo.tenants()) == ["acme", "other"]
        assert repo.get("other", ("a", 1)) == b"\x00bytes".hex()


def test_sync_writes_persist(tmp_path: Path) -> None:
    with aurora_storage.open(f"rocksdb://{tmp_path}/s?sync=true") as repo:
        assert repo.capabilities.blocking_writes
        for i in range(20):
            repo.put("t", i, i)
        repo.flush()
    with aurora_storage.open(f"rocksdb://{tmp_path}/s") as repo:
        assert repo.list("t") == list(range(20))


def test_checkpoint_is_a_consistent_openable_copy(tmp_path: Path) -> None:
    with _rocks(f"rocksdb://{tmp_path}/s") as repo:
        repo.put_many("t", [(i, i) for i in range(500)])
        target = repo.checkpoint(tmp_path / "backup")
        repo.put("t", "after", 1)
        with pytest.raises(ConfigurationError, match="exists"):
            repo.checkpoint(tmp_path / "backup")
        with aurora_storage.open(f"rocksdb://{target}") as copy:
            assert copy.count("t") == 500
            assert copy.get("t", "after") is None
        assert repo.get("t", "after") == 1


def test_compact_and_drop_tenant_reclaim_space(tmp_path: Path) -> None:
    with _rocks(f"rocksdb://{tmp_path}/s") as repo:
        repo.put_many("big", [(i, _event(i)) for i in range(5000)])
        repo.put("small", 1, 1)
        repo.flush(memtables=True)
        before = repo.stats()["properties"]["rocksdb.total-sst-files-size"]
        assert repo.drop_tenant("big") == 5000
        assert repo.count("big") == 0
        assert repo.get("small", 1) == 1
        repo.compact()
        after = repo.stats()["properties"]["rocksdb.total-sst-files-size"]
        assert after < before / 10


def test_concurrent_inserts_one_winner_per_key(tmp_path: Path) -> None:
    wins: list[tuple[int, int]] = []
    lock = threading.Lock()
    with aurora_storage.open(f"rocksdb://{tmp_path}/s") as repo:
        barrier = threading.Barrier(6)

        def worker(w: int) -> None:
            barrier.wait()
            for k in range(300):
                try:
                    repo.insert("t", k, w)
                except KeyExistsError:
                    continue
                with lock:
                    wins.append((k, w))

        threads = [threading.Thread(target=worker, args=(w,)) for w in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(k for k, _ in wins) == list(range(300))
        assert all(repo.get("t", k) == w for k, w in wins)


def test_scans_cross_chunk_boundaries_both_ways(tmp_path: Path) -> None:
    with aurora_storage.open(f"rocksdb://{tmp_path}/s") as repo:
        n = 20_000  # many chunks (chunks grow from 64 to 4096 items)
        repo.put_many("t", [(i, i) for i in range(n)])
        repo.put_many("u", [(i, -i) for i in range(10)])
        assert list(repo.keys("t")) == list(range(n))
        assert list(repo.keys("t", reverse=True)) == list(range(n - 1, -1, -1))
        assert [v for _, v in repo.items("t", start=100, stop=9000)] == list(range(100, 9000))
        assert list(repo.values("t", start=100, stop=9000, reverse=True)) == list(
            range(8999, 99, -1)
        )
        assert repo.count("t") == n
        assert list(repo.keys("u", reverse=True)) == list(range(9, -1, -1))


# ---------------------------------------------------------------- lifecycle and locking


def test_close_releases_lock_while_iterators_are_referenced(tmp_path: Path) -> None:
    url = f"rocksdb://{tmp_path}/s"
    repo = _rocks(url)
    repo.put_many("t", [(i, i) for i in range(1000)])
    items = repo.items("t")
    keys = repo.keys("t", reverse=True)
    assert next(items) == (0, 0)
    assert next(keys) == 999
    repo.close()
    repo.close()  # idempotent
    with aurora_storage.open(url) as again:  # the LOCK is free although iterators live
        assert again.count("t") == 1000
    with pytest.raises(RepositoryClosedError):
        next(items)
    with pytest.raises(RepositoryClosedError):
        next(keys)
    for call in (
        lambda: repo.get("t", 1),
        lambda: repo.put("t", 1, 1),
        lambda: repo.flush(),
        lambda: repo.compact(),
        lambda: repo.checkpoint(tmp_path / "c"),
        lambda: repo.stats(),
    ):
        with pytest.raises(RepositoryClosedError):
            call()


def test_second_writer_in_same_process_shares_the_handle(tmp_path: Path) -> None:
    # One live handle per store per process (see test_rocksdb_shared.py for spellings).
    path = tmp_path / "s"
    with aurora_storage.open(f"rocksdb://{path}") as first:
        with aurora_storage.open(f"rocksdb://{path}") as second:
            assert second.backend is first.backend
            second.put("t", 1, "one")
            assert first.get("t", 1) == "one"
        first.put("t", 2, "two")  # the second close left the engine open
    with aurora_storage.open(f"rocksdb://{path}") as again:
        assert again.list("t") == [1, 2]


def test_second_writer_in_another_process_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "s"
    with aurora_storage.open(f"rocksdb://{path}"):
        out = subprocess.run(
            [sys.executable, CHILD, "try-open", f"rocksdb://{path}"],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
    assert out.stdout.startswith("StoreLockedError: "), out.stdout + out.stderr
    assert str(path) in out.stdout
    assert "read_only" in out.stdout
    # Once the writer is gone, the other process can open it.
    out = subprocess.run(
        [sys.executable, CHILD, "try-open", f"rocksdb://{path}"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert out.stdout.strip() == "opened"


def test_read_only_and_secondary_readers_in_other_processes(tmp_path: Path) -> None:
    path = tmp_path / "s"
    with aurora_storage.open(f"rocksdb://{path}") as primary:
        primary.put_many("t", [(i, f"v{i}") for i in range(5)])
        reader = _child("read", f"rocksdb://{path}?mode=read_only")
        follower = _child("read", f"rocksdb://{path}?mode=secondary")
        try:
            assert reader.stdout is not None
            assert follower.stdout is not None
            expected = [[i, f"v{i}"] for i in range(5)]
            assert json.loads(reader.stdout.readline()) == expected
            assert json.loads(follower.stdout.readline()) == expected
            primary.put("t", 5, "v5")
            assert follower.stdin is not None
            follower.stdin.write("catch_up\n")
            follower.stdin.flush()
            assert json.loads(follower.stdout.readline()) == [*expected, [5, "v5"]]
        finally:
            for p in (reader, follower):
                _, err = p.communicate("quit\n", timeout=60)
                assert p.returncode == 0, err
        primary.put("t", 6, "v6")  # the primary is unaffected by its readers


def test_read_only_in_process_refuses_writes(tmp_path: Path) -> None:
    path = tmp_path / "s"
    with aurora_storage.open(f"rocksdb://{path}") as repo:
        repo.put("t", 1, 1)
        with _rocks(f"rocksdb://{path}?mode=read_only") as ro:
            assert ro.capabilities.read_only
            assert ro.get("t", 1) == 1
            with pytest.raises(ReadOnlyError):
                ro.put("t", 2, 2)
            with pytest.raises(ReadOnlyError):
                ro.compact()
            with pytest.raises(ConfigurationError, match="secondary"):
                ro.catch_up()


@pytest.mark.parametrize("query", ["create_if_missing=false", "mode=read_only", "mode=secondary"])
def test_missing_store_is_refused_without_leaving_a_directory(tmp_path: Path, query: str) -> None:
    path = tmp_path / "deep" / "missing"
    with pytest.raises(ConfigurationError, match="no RocksDB store") as info:
        aurora_storage.open(f"rocksdb://{path}?{query}")
    assert str(path) in str(info.value)
    assert not (tmp_path / "deep").exists()


def test_error_if_exists(tmp_path: Path) -> None:
    aurora_storage.open(f"rocksdb://{tmp_path}/s").close()
    with pytest.raises(ConfigurationError, match="already exists"):
        aurora_storage.open(f"rocksdb://{tmp_path}/s?error_if_exists=true")
    aurora_storage.open(f"rocksdb://{tmp_path}/new?error_if_exists=true").close()


def test_open_below_a_file_raises_a_typed_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(aurora_storage.StorageError) as info:
        aurora_storage.open(f"rocksdb://{tmp_path}/file/sub/store")
    assert not isinstance(info.value, RepositoryClosedError)
    assert (tmp_path / "file").read_text() == "x"


def test_other_codec_and_newer_format_refused_at_open(tmp_path: Path) -> None:
    path = tmp_path / "s"
    with aurora_storage.open(f"rocksdb://{path}") as repo:
        repo.put("t", 1, {"a": 1})
    with pytest.raises(ConfigurationError, match="codec"):
        aurora_storage.open(f"rocksdb://{path}?codec=msgpack")
    db = rocksdict.Rdict(str(path), rocksdict.Options(raw_mode=True))
    db.put(b"\x00aurora:meta", orjson.dumps({"format": 99, "codec": "json"}))
    db.close()
    with pytest.raises(ConfigurationError, match="format version 99"):
        aurora_storage.open(f"rocksdb://{path}")


def test_pickle_mode_store_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "s"
    db = rocksdict.Rdict(str(path))
    db["k"] = 1
    db.close()
    with pytest.raises(ConfigurationError, match="pickle"):
        aurora_storage.open(f"rocksdb://{path}")


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork() exists on POSIX only")
def test_handle_inherited_across_fork_is_refused_in_child(tmp_path: Path) -> None:
    with aurora_storage.open(f"rocksdb://{tmp_path}/s") as repo:
        repo.put("t", "parent", 1)
        pid = os.fork()
        if pid == 0:  # the child: report through the exit status only
            code = 0
            try:
                repo.put("t", "child", 2)
                code = 1
            except InheritedHandleError as exc:
                if "fork" not in str(exc):
                    code = 2
            except BaseException:
                code = 3
            try:
                repo.get("t", "parent")
                code = code or 4
            except InheritedHandleError:
                pass
            except BaseException:
                code = code or 5
            os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        repo.put("t", "after", 3)  # the parent's handle still works
        assert repo.get("t", "parent") == 1
    with aurora_storage.open(f"rocksdb://{tmp_path}/s") as repo:
        assert repo.list("t") == ["after", "parent"]


# ---------------------------------------------------------------- corruption


def _corrupt_store(tmp_path: Path) -> Path:
    path = tmp_path / "s"
    with _rocks(f"rocksdb://{path}?compression=none") as repo:
        repo.put_many("t", [(i, f"payload-{i:06d}" * 8) for i in range(3000)])
        repo.flush(memtables=True)
        repo.compact()
    ssts = sorted(path.glob("*.sst"), key=lambda p: p.stat().st_size)
    assert ssts
    sst = ssts[-1]
    data = bytearray(sst.read_bytes())
    # Flip bytes in the data blocks (the start of the file), not the footer.
    mid = len(data) // 4
    for i in range(mid, mid + 16):
        data[i] ^= 0xFF
    sst.write_bytes(bytes(data))
    return path


def test_corrupt_table_detected_by_scan(tmp_path: Path) -> None:
    path = _corrupt_store(tmp_path)
    with aurora_storage.open(f"rocksdb://{path}") as repo:
        with pytest.raises(CorruptionError) as info:
            list(repo.items("t"))
        assert str(path) in str(info.value)
        with pytest.raises(CorruptionError):
            repo.count("t")
        with pytest.raises(CorruptionError):
            list(repo.keys("t", reverse=True))


def test_corrupt_table_detected_by_get(tmp_path: Path) -> None:
    path = _corrupt_store(tmp_path)
    with aurora_storage.open(f"rocksdb://{path}") as repo:
        errors = 0
        for i in range(3000):
            try:
                repo.get("t", i)
            except CorruptionError:
                errors += 1
        assert errors > 0
