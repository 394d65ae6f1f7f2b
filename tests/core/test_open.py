"""aurora_storage.open / open_async: what they return for plain and composite schemes."""

from __future__ import annotations

import asyncio
from pathlib import Path
from urllib.parse import quote

from aurora_storage import AsyncRepository, open, open_async
from aurora_storage.tiered import AsyncTieredRepository, TieredRepository


def _tiered(hot: str, cold: str) -> str:
    return f"tiered://?hot={quote(hot, safe='')}&cold={quote(cold, safe='')}"


def test_open_async_wraps_plain_repositories_in_async_repository() -> None:
    arepo = open_async("memory://")
    assert type(arepo) is AsyncRepository

    async def run() -> object:
        await arepo.put("acme", "k", {"v": 1})
        value = await arepo.get("acme", "k")
        await arepo.close()
        return value

    assert asyncio.run(run()) == {"v": 1}


def test_open_async_gives_the_tiered_twin_with_its_extra_operations() -> None:
    arepo = open_async(_tiered("memory://", "memory://"))
    assert isinstance(arepo, AsyncTieredRepository)

    async def run() -> object:
        await arepo.put("acme", "k", 1)
        await arepo.catch_up()
        value = await arepo.get("acme", "k")
        await arepo.close()
        return value

    assert asyncio.run(run()) == 1


def test_open_passes_codec_to_a_composite_scheme_for_both_tiers(tmp_path: Path) -> None:
    url = _tiered(f"lmdb://{tmp_path}/hot", f"rocksdb://{tmp_path}/cold")
    repo = open(url, codec="msgpack")
    assert isinstance(repo, TieredRepository)
    repo.put("acme", "k", b"bytes survive msgpack")
    repo.close()
    # Each tier recorded msgpack: opened alone without a codec, they use it.
    with open(f"lmdb://{tmp_path}/hot") as hot, open(f"rocksdb://{tmp_path}/cold") as cold:
        assert hot.codec.name == "msgpack"
        assert cold.codec.name == "msgpack"
        assert cold.get("acme", "k") == b"bytes survive msgpack"
