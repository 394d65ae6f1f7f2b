"""``put_many`` checks its items in one order on both surfaces: every item is a pair,
then every key, then the values. A call holding several faults raises the same error
type from ``Repository.put_many`` and ``AsyncRepository.put_many`` (it once raised the
first faulty item's error on the async side: ``[("k", 2**64), (nan, 1)]`` was a
SerializationError there and an InvalidKeyError in sync), and writes nothing on either.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import aurora_storage
from aurora_storage import AsyncRepository, Repository

GOOD_KEYS = st.one_of(st.text(max_size=8), st.integers(-(10**6), 10**6))
BAD_KEYS = st.sampled_from([math.nan, frozenset({1}), bytearray(b"x"), object()])
GOOD_VALUES = st.one_of(st.integers(-(10**6), 10**6), st.text(max_size=8))
#: Values the json codec refuses: an int past 64 bits, an object it cannot write.
BAD_VALUES = st.sampled_from([2**64, -(2**70), object()])
BAD_ITEMS = st.sampled_from([("a", 1, 2), "ab", 7, ("only",)])

ITEM = st.one_of(
    st.tuples(GOOD_KEYS, GOOD_VALUES),
    st.tuples(BAD_KEYS, GOOD_VALUES),
    st.tuples(GOOD_KEYS, BAD_VALUES),
    st.tuples(BAD_KEYS, BAD_VALUES),
    BAD_ITEMS,
)


@pytest.fixture(params=["memory", "rocksdb", "lmdb"])
def stores(
    request: Any, tmp_path: Path
) -> Iterator[tuple[Repository[Any, Any], AsyncRepository[Any, Any]]]:
    scheme = request.param
    url = "memory://" if scheme == "memory" else f"{scheme}://{tmp_path / 'store'}"
    repo: Repository[Any, Any] = aurora_storage.open(url)
    try:
        yield repo, repo.as_async()
    finally:
        repo.close()


def _outcome(call: Any) -> type[BaseException] | None:
    try:
        call()
    except aurora_storage.errors.StorageError as exc:
        return type(exc)
    return None


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(items=st.lists(ITEM, max_size=6))
def test_sync_and_async_put_many_raise_the_same_error(
    stores: tuple[Repository[Any, Any], AsyncRepository[Any, Any]], items: list[Any]
) -> None:
    repo, arepo = stores
    repo.drop_tenant("t")
    sync = _outcome(lambda: repo.put_many("t", items))
    sync_count = repo.count("t")
    repo.drop_tenant("t")
    asy = _outcome(lambda: asyncio.run(arepo.put_many("t", items)))
    assert asy is sync, (items, sync, asy)
    assert repo.count("t") == sync_count
    if sync is not None:
        assert sync_count == 0  # a call that raises wrote nothing


@pytest.mark.parametrize(
    ("items", "error"),
    [
        # A bad value before a bad key: the key is named (keys are checked first).
        ([("k1", 2**64), (math.nan, 1)], aurora_storage.errors.InvalidKeyError),
        # A bad key before an item that is no pair: the item is named (pairs first).
        ([(math.nan, 1), ("a", 1, 2)], aurora_storage.errors.InvalidArgumentError),
        # Only a bad value: its codec error.
        ([("k1", 1), ("k2", 2**64)], aurora_storage.errors.SerializationError),
    ],
)
def test_the_check_order_is_pairs_then_keys_then_values(
    stores: tuple[Repository[Any, Any], AsyncRepository[Any, Any]],
    items: list[Any],
    error: type[BaseException],
) -> None:
    repo, arepo = stores
    with pytest.raises(error):
        repo.put_many("t", items)
    with pytest.raises(error):
        asyncio.run(arepo.put_many("t", items))
    assert repo.count("t") == 0
