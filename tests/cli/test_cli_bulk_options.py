"""Bulk targets (copy, import) open RocksDB with bounded memtables and block cache,
unless the URL sets them: the commands' memory stays bounded (benchmarks/cli_throughput.py
measures it; before the cache bound a 1M-record copy grew by 58 MiB, after by 37-40)."""

from __future__ import annotations

from pathlib import Path

from aurora_storage.cli._common import open_write


def test_bulk_rocksdb_target_gets_small_memtables_and_block_cache(tmp_path: Path) -> None:
    repo = open_write(f"rocksdb://{tmp_path / 's'}", bulk=True)
    try:
        config = repo.backend.config
        assert config.write_buffer_size == 16 * 2**20
        assert config.block_cache_size == 8 * 2**20
    finally:
        repo.close()


def test_the_url_overrides_the_bulk_options(tmp_path: Path) -> None:
    url = f"rocksdb://{tmp_path / 's'}?block_cache_size=64MiB&write_buffer_size=32MiB"
    repo = open_write(url, bulk=True)
    try:
        config = repo.backend.config
        assert config.write_buffer_size == 32 * 2**20
        assert config.block_cache_size == 64 * 2**20
    finally:
        repo.close()


def test_a_plain_write_keeps_the_engine_defaults(tmp_path: Path) -> None:
    repo = open_write(f"rocksdb://{tmp_path / 's'}")
    try:
        assert repo.backend.config.block_cache_size == 32 * 2**20
    finally:
        repo.close()
