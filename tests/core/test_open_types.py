"""The static types of ``open()``/``open_async()`` and the engine repositories.

mypy --strict runs over tests/ in CI, so each ``assert_type`` here fails the lint job
if an overload regresses (``codec="raw"`` no longer giving ``bytes`` values, a
``Codec[T]`` no longer giving ``T``). The same code also runs under pytest, so the
runtime behaviour the types describe is checked too.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, assert_type

import aurora_storage
from aurora_storage import AsyncRepository, Codec, Repository
from aurora_storage.codecs import get_codec
from aurora_storage_lmdb import LMDBRepository, create_lmdb_repository
from aurora_storage_rocksdb import RocksDBRepository


def _text_encode(value: str) -> bytes:
    return value.encode()


def _text_decode(data: bytes) -> str:
    return data.decode()


#: A user codec; its value type (str) is inferred from ``decode``.
TEXT = Codec("typing-text", _text_encode, _text_decode)


def test_raw_codec_gives_bytes_values() -> None:
    with aurora_storage.open("memory://", codec="raw") as repo:
        assert_type(repo, Repository[Any, bytes])
        repo.put("t", "k", b"v")
        value = repo.get("t", "k")
        assert_type(value, bytes | None)
        assert value == b"v"
        assert_type(list(repo.values("t")), list[bytes])
        assert list(repo.values("t")) == [b"v"]


def test_codec_object_gives_its_value_type() -> None:
    assert_type(TEXT, Codec[str])
    with aurora_storage.open("memory://", codec=TEXT) as repo:
        assert_type(repo, Repository[Any, str])
        repo.put("t", "k", "hello")
        assert repo.get("t", "k") == "hello"
        assert repo.codec.name == "typing-text"


def test_other_codecs_give_any_values() -> None:
    # json and msgpack values are whatever the codec reads back; a codec named in the
    # URL is not visible to a type checker.
    with aurora_storage.open("memory://") as repo:
        assert_type(repo, Repository[Any, Any])
        assert repo.codec.name == "json"
    with aurora_storage.open("memory://", codec="msgpack") as repo:
        assert_type(repo, Repository[Any, Any])
        assert repo.codec.name == "msgpack"
    with aurora_storage.open("memory://?codec=raw") as repo:
        assert_type(repo, Repository[Any, Any])
        assert repo.codec.name == "raw"
    codec = get_codec("raw")
    assert_type(codec, Codec[Any])
    with aurora_storage.open("memory://", codec=codec) as repo:
        assert_type(repo, Repository[Any, Any])


def test_caller_declares_the_key_type() -> None:
    # Keys are Any, so an annotation binds them (a union of every key type would not be
    # assignable: the key type of a repository is invariant).
    repo: Repository[str, bytes] = aurora_storage.open("memory://", codec="raw")
    with repo:
        repo.put("t", "k", b"v")
        keys = list(repo.keys("t"))
        assert_type(keys, list[str])
        assert keys == ["k"]


def test_open_async_follows_the_codec() -> None:
    async def main() -> None:
        raw = aurora_storage.open_async("memory://", codec="raw")
        assert_type(raw, AsyncRepository[Any, bytes])
        async with raw:
            await raw.put("t", "k", b"v")
            value = await raw.get("t", "k")
            assert_type(value, bytes | None)
            assert value == b"v"
        text = aurora_storage.open_async("memory://", codec=TEXT)
        assert_type(text, AsyncRepository[Any, str])
        async with text:
            await text.put("t", "k", "x")
            assert await text.get("t", "k") == "x"
        anything = aurora_storage.open_async("memory://")
        assert_type(anything, AsyncRepository[Any, Any])
        await anything.close()

    asyncio.run(main())


def test_engine_repositories_are_generic(tmp_path: Path) -> None:
    lmdb_repo: LMDBRepository[str, int] = LMDBRepository(tmp_path / "lmdb")
    with lmdb_repo:
        lmdb_repo.put("t", "k", 1)
        assert_type(lmdb_repo.get("t", "k"), int | None)
        assert lmdb_repo.get("t", "k") == 1
    created = create_lmdb_repository(tmp_path / "lmdb")
    assert_type(created, LMDBRepository[Any, Any])
    created.close()
    rocks: RocksDBRepository[str, int] = RocksDBRepository(tmp_path / "rocks")
    with rocks:
        rocks.put("t", "k", 2)
        assert_type(rocks.get("t", "k"), int | None)
        assert rocks.get("t", "k") == 2
