"""A tiered pair answers like every other repository where the contract says so (found by
a differential fuzz across memory, RocksDB, LMDB and tiered): a put_many with both a bad
key and a bad value raises what the core raises (every key is checked before any value),
and a tenant view holds the plain ``str`` of a ``str`` subclass."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import aurora_storage
from aurora_storage import Repository
from aurora_storage.errors import InvalidKeyError
from aurora_storage.tiered import TieredRepository


def _count(record: Any, state: Any) -> None:
    state.put("n", state.get("n", 0) + 1)


@pytest.fixture(params=["cache", "projection"])
def pair(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    projection = _count if request.param == "projection" else None
    repo: TieredRepository[Any, Any] = TieredRepository(
        hot=aurora_storage.open("memory://"),
        cold=aurora_storage.open(f"rocksdb://{tmp_path}/cold"),
        projection=projection,
    )
    yield repo
    repo.close()


def _error_of(repo: Repository[Any, Any] | TieredRepository[Any, Any], items: Any) -> type:
    with pytest.raises(Exception) as info:  # the type is what is compared
        repo.put_many("acme", items)
    return type(info.value)


@pytest.mark.parametrize(
    "items",
    [
        [("ok-key", float("nan")), (frozenset(), 1)],
        [("ok-key", {1, 2}), ("k2", 1), (object(), 1)],
    ],
)
def test_put_many_raises_the_cores_error(pair: Any, items: Any) -> None:
    with aurora_storage.open("memory://") as core:
        expected = _error_of(core, items)
    assert expected is InvalidKeyError
    assert _error_of(pair, items) is expected
    assert pair.count("acme") == 0
    assert list(pair.history.keys("acme")) == []


class _Loud(str):
    def __str__(self) -> str:
        return "LOUD"

    def __hash__(self) -> int:
        return 12345

    def __eq__(self, other: object) -> bool:
        return self is other


def test_tenant_view_holds_the_plain_str(pair: Any) -> None:
    view = pair.tenant(_Loud("acme"))
    assert type(view.tenant) is str
    assert view.tenant == "acme"
    view.put("k", 1)
    assert list(pair.tenants()) == ["acme"]
