"""A store belongs to at most one open tiered pair in a process, and only that pair writes
it, from the moment the pair starts opening until it is closed.

The pair's exactly-once guarantee (each history record applied to hot exactly once) rests
on one change log and one position per pair, written only by the pair. A reviewer found
three ways around it, all in one process, where every open of a store shares its one live
engine handle:

1. a second pair on the same stores (the same tier objects, or a second
   ``aurora_storage.open`` of the same ``tiered://`` URL) was accepted: each pair kept its
   own lock and change-log counter, so they overwrote each other's log entries and hot's
   position (records projected twice);
4. a plain repository opened on a tier's path wrote around the pair (the refusal was set
   only on the tier objects the pair was given);
5. the tiers were writable while the pair was opening: a projection run by the open's
   catch-up or fresh build could write a history record no change-log entry announced.

Now every repository over a store the pair owns refuses writes (``ReadOnlyError`` naming
the pair; reads stay free), a second pair over such a store raises ``StoreLockedError``
naming the store and the fix (nothing written), and a failed open or ``close()`` gives
the stores back. Real LMDB (hot) and RocksDB (cold) stores throughout.

A second review found that ``pair.hot.close()`` (or cold, history; also from a projection
or a progress callback) closed the shared handle under the open pair, so the next open of
the path got a new, unclaimed handle and wrote around it: the pair's tiers now refuse
``close()`` (``StoreLockedError``) while it is open. And a pair dropped without
``close()`` locked its stores for the life of the process: it now gives them back when it
is garbage-collected (never waiting on the ownership table's lock, which the collector
may be running inside). The NATS variant is tests/nats/test_nats_tiered_ownership.py.
"""

from __future__ import annotations

import asyncio
import gc
import shutil
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from tiered_helpers import dump, event, fold_orders, orders

import aurora_storage
from aurora_storage import Repository, _owners
from aurora_storage.backend import Backend, chunk_items
from aurora_storage.errors import ConfigurationError, ReadOnlyError, StoreLockedError
from aurora_storage.tiered import (
    HistoryRecord,
    ProjectionError,
    ProjectionState,
    TieredRepository,
)

Tiered = TieredRepository[Any, Any]

_KINDS = ("OrderCreated", "OrderPaid", "OrderShipped")


def _hot_url(tmp: Path) -> str:
    return f"lmdb://{tmp}/hot"


def _cold_url(tmp: Path) -> str:
    return f"rocksdb://{tmp}/cold"


def _url(tmp: Path) -> str:
    return (
        f"tiered://?hot={quote(_hot_url(tmp), safe='')}"
        f"&cold={quote(_cold_url(tmp), safe='')}&projection=orders"
    )


def _pair(tmp: Path, projection: Any = orders) -> Tiered:
    return TieredRepository(
        hot=aurora_storage.open(_hot_url(tmp)),
        cold=aurora_storage.open(_cold_url(tmp)),
        projection=projection,
    )


def _put(repo: Any, n: int, start: int = 0) -> None:
    for i in range(start, start + n):
        repo.put("acme", (i, "e"), event(_KINDS[i % 3], f"o-{i % 2}", i))


def _raw(backend: Backend) -> dict[bytes, bytes]:
    """Every record of a store, its bookkeeping included (``nothing written`` checks)."""
    return dict(chunk_items(backend.scan_chunks(b"", b"\xff" * 32)))


def _assert_replayed(repo: Tiered) -> None:
    """Hot holds exactly what history implies: the fold of history from scratch, which
    is also what ``rebuild()`` derives again."""
    assert repo.lag == 0
    expected = fold_orders(repo.history)
    assert dump(repo.hot) == expected
    repo.rebuild()
    assert dump(repo.hot) == expected


# ---------------------------------------------------------------------- a second pair


def test_a_second_pair_by_url_is_refused_and_the_first_goes_on(tmp_path: Path) -> None:
    # The reviewer's case: u2 was accepted, and u1's and u2's writes overwrote each
    # other's change-log entries (6 projected for 4 events).
    first = aurora_storage.open(_url(tmp_path))
    assert isinstance(first, TieredRepository)
    _put(first, 3)
    hot_before, cold_before = _raw(first.hot.backend), _raw(first.cold.backend)
    with pytest.raises(StoreLockedError) as info:
        aurora_storage.open(_url(tmp_path))
    message = str(info.value)
    assert "already belongs to the open tiered repository" in message
    assert f"the hot tier lmdb://{tmp_path}/hot already belongs" in message  # the store
    assert "close it first" in message  # and the fix
    assert _raw(first.hot.backend) == hot_before
    assert _raw(first.cold.backend) == cold_before
    # The refused open took nothing from the first pair: its tiers still refuse writes.
    with pytest.raises(ReadOnlyError):
        first.history.put("acme", "sneak", {})
    _put(first, 1, start=3)
    _assert_replayed(first)
    first.close()
    with aurora_storage.open(_url(tmp_path)) as again:  # closed: the stores are free
        assert isinstance(again, TieredRepository)
        assert again.history.count("acme") == 4
        assert again.get("acme", "o-1") == fold_orders(again.history)[("acme", "o-1")]
        _assert_replayed(again)


@pytest.mark.parametrize("tiers", ["the same objects", "the first pair's tiers", "new opens"])
def test_a_second_pair_over_the_same_stores_is_refused(tmp_path: Path, tiers: str) -> None:
    hot, cold = aurora_storage.open(_hot_url(tmp_path)), aurora_storage.open(_cold_url(tmp_path))
    first: Tiered = TieredRepository(hot=hot, cold=cold, projection=orders)
    _put(first, 2)
    hot_before, cold_before = _raw(first.hot.backend), _raw(first.cold.backend)
    if tiers == "the same objects":
        hot2, cold2 = hot, cold
    elif tiers == "the first pair's tiers":
        hot2, cold2 = first.hot, first.cold
    else:
        hot2 = aurora_storage.open(_hot_url(tmp_path))
        cold2 = aurora_storage.open(_cold_url(tmp_path))
    with pytest.raises(StoreLockedError, match="already belongs to the open tiered"):
        TieredRepository(hot=hot2, cold=cold2, projection=orders)
    assert _raw(first.hot.backend) == hot_before
    assert _raw(first.cold.backend) == cold_before
    _put(first, 2, start=2)
    _assert_replayed(first)
    first.close()
    if tiers == "new opens":
        hot2.close()
        cold2.close()


@pytest.mark.parametrize("shared", ["hot", "cold"])
def test_a_second_pair_sharing_one_store_is_refused_and_writes_nothing(
    tmp_path: Path, shared: str
) -> None:
    first = _pair(tmp_path / "a")
    _put(first, 2)
    other_hot = aurora_storage.open(_hot_url(tmp_path / "b"))
    other_cold = aurora_storage.open(_cold_url(tmp_path / "b"))
    other = other_hot if shared == "cold" else other_cold
    other_before = _raw(other.backend)
    first_before = _raw(getattr(first, shared).backend)
    hot, cold = (first.hot, other_cold) if shared == "hot" else (other_hot, first.cold)
    with pytest.raises(StoreLockedError) as info:
        TieredRepository(hot=hot, cold=cold, projection=orders)
    assert f"the {shared} tier" in str(info.value)
    assert str(tmp_path / "a" / shared) in str(info.value)
    assert _raw(other.backend) == other_before  # no pair metadata, no position
    assert _raw(getattr(first, shared).backend) == first_before
    other.put("acme", "mine", 1)  # the refused pair did not keep the other store
    _assert_replayed(first)
    first.close()
    other_hot.close()
    other_cold.close()


def test_a_projection_opening_a_second_pair_on_its_stores_is_refused(tmp_path: Path) -> None:
    # The reviewer's variant: pair A's projection called a helper that wrote through a
    # pair B on the same stores; hot was left wrong with lag 0.
    caught: list[BaseException] = []

    def helper_writes(record: HistoryRecord, state: ProjectionState) -> None:
        if record.key == "trigger":
            try:
                with aurora_storage.open(_url(tmp_path)) as other:
                    _put(other, 1, start=100)
            except StoreLockedError as exc:
                caught.append(exc)
                raise
            return
        orders(record, state)

    first = _pair(tmp_path, helper_writes)
    _put(first, 2)
    hot_before, cold_before = _raw(first.hot.backend), _raw(first.cold.backend)
    with pytest.raises(ProjectionError) as info:
        first.put("acme", "trigger", event("OrderCreated", "o-9"))
    assert not info.value.durable
    (inner,) = caught
    assert isinstance(info.value.__cause__, StoreLockedError)
    assert "already belongs to the open tiered repository" in str(inner)
    assert _raw(first.hot.backend) == hot_before
    assert _raw(first.cold.backend) == cold_before
    _assert_replayed(first)
    first.close()


# ---------------------------------------------------------------------- plain repositories


_WRITES: dict[str, Callable[[Any], Any]] = {
    "put": lambda r: r.put("acme", "sneak", 1),
    "insert": lambda r: r.insert("acme", "sneak", 1),
    "put_many": lambda r: r.put_many("acme", [("sneak", 1), ("sneak2", 2)]),
    "delete": lambda r: r.delete("acme", (0, "e")),
    "delete_many": lambda r: r.delete_many("acme", [(0, "e"), "o-0"]),
    "batch": lambda r: _batch_put(r),
    "drop_tenant": lambda r: r.drop_tenant("acme"),
    "tenant view": lambda r: r.tenant("acme").put("sneak", 1),
    "compare_and_set": lambda r: r.compare_and_set("acme", "sneak", 1, version=None),
}


def _batch_put(repo: Any) -> None:
    with repo.batch() as b:
        b.put("acme", "sneak", 1)


@pytest.mark.parametrize("name", sorted(_WRITES))
@pytest.mark.parametrize("tier", ["hot", "cold"])
def test_a_plain_repository_on_a_tier_store_is_refused_and_reads(
    tmp_path: Path, tier: str, name: str
) -> None:
    url = _hot_url(tmp_path) if tier == "hot" else _cold_url(tmp_path)
    before_pair = aurora_storage.open(url)  # opened before the pair: refused from its open
    repo = _pair(tmp_path)
    _put(repo, 2)
    after_pair = aurora_storage.open(url)  # opened while the pair is open
    raw = _raw(after_pair.backend)
    for plain in (before_pair, after_pair):
        with pytest.raises(ReadOnlyError) as info:
            _WRITES[name](plain)
        message = str(info.value)
        assert f"is the {tier} tier of the tiered repository" in message
        assert str(tmp_path / "cold") in message  # the pair, by its cold tier
        assert _raw(plain.backend) == raw
    # Reads stay free.
    if tier == "cold":
        assert after_pair.count("acme") == 2
    else:
        assert after_pair.get("acme", "o-0") == repo.get("acme", "o-0")
    _assert_replayed(repo)
    repo.close()
    # Closed: the stores are the user's again.
    after_pair.put("other", "mine", 1)
    before_pair.put("other", "mine2", 2)
    assert after_pair.get("other", "mine2") == 2
    before_pair.close()
    after_pair.close()


def test_the_reviewers_plain_writes_beside_the_pair_are_refused(tmp_path: Path) -> None:
    repo = _pair(tmp_path)
    _put(repo, 1)
    with aurora_storage.open(_cold_url(tmp_path)) as cold, pytest.raises(ReadOnlyError):
        cold.put("acme", (1, "e"), event("OrderPaid", "o-1"))
    with aurora_storage.open(_hot_url(tmp_path)) as hot, pytest.raises(ReadOnlyError):
        hot.put("acme", "o-0", {"events": 100, "total": 0, "status": "paid"})
    assert repo.history.count("acme") == 1
    _assert_replayed(repo)
    repo.close()


# ---------------------------------------------------------------------- while opening


def _leaky(cold: Repository[Any, Any], refused: list[ReadOnlyError]) -> Any:
    """The reviewer's projection: projects, then writes a derived record straight into
    history (the cold tier object it was given), catching the refusal."""

    def leaky(record: HistoryRecord, state: ProjectionState) -> None:
        orders(record, state)
        if not isinstance(record.key, str):
            try:
                cold.put(record.tenant, "x" + str(record.key[0]), event("OrderCreated", "x"))
            except ReadOnlyError as exc:
                refused.append(exc)

    return leaky


@pytest.mark.parametrize("how", ["fresh build", "catch-up"])
def test_the_tiers_refuse_writes_while_the_pair_opens(tmp_path: Path, how: str) -> None:
    first = _pair(tmp_path)
    _put(first, 2)
    if how == "catch-up":
        # The hot store goes away under the writer (its engine handle closes; the pair's
        # tiers themselves refuse close()): the next open catches up.
        first.hot.backend.close()
        with pytest.raises(aurora_storage.tiered.HotTierError):
            _put(first, 1, start=2)
    first.close()
    if how == "fresh build":
        shutil.rmtree(tmp_path / "hot")
    hot = aurora_storage.open(_hot_url(tmp_path))
    cold = aurora_storage.open(_cold_url(tmp_path))
    history_before = _raw(cold.backend)
    refused: list[ReadOnlyError] = []
    repo: Tiered = TieredRepository(hot=hot, cold=cold, projection=_leaky(cold, refused))
    assert refused  # the projection ran during the open, and its writes were refused
    assert "tier of the tiered repository" in str(refused[0])
    if how == "catch-up":
        assert repo.recovered_on_open == 1
    assert _raw(cold.backend) == history_before  # no history record without a log entry
    assert all(isinstance(k, tuple) for k in repo.history.keys("acme"))
    _assert_replayed(repo)
    repo.close()


def test_a_failed_open_gives_the_stores_back(tmp_path: Path) -> None:
    # The user's tier repositories stay open when construction fails, as before: they
    # must be writable again too, and a corrected open must not find the stores taken.
    _pair(tmp_path).close()  # a projection-mode store
    hot = aurora_storage.open(_hot_url(tmp_path))
    cold = aurora_storage.open(_cold_url(tmp_path))
    with pytest.raises(ConfigurationError, match="created in projection mode"):
        TieredRepository(hot=hot, cold=cold)  # no projection: refused by the open
    assert not hot.closed
    assert not cold.closed
    with aurora_storage.open(_cold_url(tmp_path)) as plain:
        plain.put("scratch", "k", 1)  # the refusal was lifted with the failed open
        assert plain.delete("scratch", "k")
    repo: Tiered = TieredRepository(hot=hot, cold=cold, projection=orders)
    _put(repo, 2)
    with pytest.raises(ReadOnlyError):  # and this open owns them again
        cold.put("acme", "sneak", 1)
    _assert_replayed(repo)
    repo.close()


# ---------------------------------------------------------------------- closing a tier


def _count(record: HistoryRecord, state: ProjectionState) -> None:
    state.put("n", state.get("n", 0) + 1)


def _close_directly(tier: Repository[Any, Any]) -> None:
    tier.close()


def _close_by_with(tier: Repository[Any, Any]) -> None:
    with tier:
        pass


def _close_async(tier: Repository[Any, Any]) -> None:
    asyncio.run(tier.as_async().close())


_CLOSES: dict[str, Callable[[Repository[Any, Any]], None]] = {
    "close()": _close_directly,
    "with": _close_by_with,
    "async close()": _close_async,
}


def _assert_close_refused(
    info: pytest.ExceptionInfo[StoreLockedError], tmp: Path, tier: str
) -> None:
    message = str(info.value)
    assert "held by the open tiered repository" in message
    assert str(tmp / "cold") in message  # the pair, by its cold tier
    assert "close that pair, which closes its tiers" in message  # the fix
    assert f"{tier} tier" in message


@pytest.mark.parametrize("how", sorted(_CLOSES))
@pytest.mark.parametrize("tier", ["hot", "cold", "history"])
def test_closing_a_tier_of_an_open_pair_is_refused(tmp_path: Path, tier: str, how: str) -> None:
    # The reviewer's case: pair.hot.close() closed the shared live handle, the next
    # open of the path got a new unclaimed handle and wrote around the pair (hot n=101
    # for 2 history records at lag 0), and the pair's reads said "open it again".
    repo = _pair(tmp_path, _count)
    repo.put("t", "e1", {})
    target = getattr(repo, tier)
    name = "hot" if tier == "hot" else "cold"
    hot_before, cold_before = _raw(repo.hot.backend), _raw(repo.cold.backend)
    with pytest.raises(StoreLockedError) as info:
        _CLOSES[how](target)
    _assert_close_refused(info, tmp_path, name)
    assert not target.closed  # nothing changed
    url = _hot_url(tmp_path) if name == "hot" else _cold_url(tmp_path)
    with aurora_storage.open(url) as plain, pytest.raises(ReadOnlyError):
        plain.put("t", "n", 100)  # still the pair's handle: still refused
    assert _raw(repo.hot.backend) == hot_before
    assert _raw(repo.cold.backend) == cold_before
    repo.put("t", "e2", {})
    assert repo.get("t", "n") == 2
    repo.close()  # closes its tiers, as documented
    assert repo.hot.closed
    assert repo.cold.closed
    with _pair(tmp_path, _count) as again:
        assert (again.get("t", "n"), again.history.count("t"), again.lag) == (2, 2, 0)


@pytest.mark.parametrize("where", ["projection", "rebuild progress"])
@pytest.mark.parametrize("tier", ["hot", "cold"])
def test_closing_a_tier_from_the_pairs_own_callbacks_is_refused(
    tmp_path: Path, tier: str, where: str
) -> None:
    holder: list[Tiered] = []
    refused: list[StoreLockedError] = []

    def close_tier() -> None:
        try:
            getattr(holder[0], tier).close()
        except StoreLockedError as exc:
            refused.append(exc)
            raise

    def projection(record: HistoryRecord, state: ProjectionState) -> None:
        if where == "projection" and record.key == "trigger":
            close_tier()
        _count(record, state)

    repo = _pair(tmp_path, projection)
    holder.append(repo)
    repo.put("t", "e1", {})
    hot_before, cold_before = _raw(repo.hot.backend), _raw(repo.cold.backend)
    if where == "projection":
        with pytest.raises(ProjectionError) as info:
            repo.put("t", "trigger", {})
        assert not info.value.durable
        assert isinstance(info.value.__cause__, StoreLockedError)
        assert _raw(repo.cold.backend) == cold_before  # rejected: nothing written
        assert _raw(repo.hot.backend) == hot_before
    else:
        with pytest.raises(StoreLockedError):
            repo.rebuild(progress=lambda _progress: close_tier())
        assert repo.get("t", "n") == 1  # the old projection is still served
    (exc,) = refused
    assert "close that pair, which closes its tiers" in str(exc)
    assert not repo.hot.closed
    assert not repo.cold.closed
    repo.put("t", "e2", {})
    assert (repo.get("t", "n"), repo.lag) == (2, 0)
    repo.close()


def test_a_read_only_pair_refuses_closing_its_tiers_too(tmp_path: Path) -> None:
    _pair(tmp_path, _count).close()
    hot = aurora_storage.open(_hot_url(tmp_path) + "?read_only=true")
    cold = aurora_storage.open(_cold_url(tmp_path))
    repo: Tiered = TieredRepository(hot=hot, cold=cold, projection=_count)
    assert repo.capabilities.read_only
    for tier in (hot, cold):
        with pytest.raises(StoreLockedError, match="close that pair"):
            tier.close()
    cold.put("scratch", "k", 1)  # a read-only pair owns no store: writes are free
    assert cold.delete("scratch", "k")
    assert repo.get("t", "n") is None
    repo.close()
    assert hot.closed
    assert cold.closed


# ---------------------------------------------------------------------- dropped pairs


def _drop_and_collect(make: Callable[[], None]) -> None:
    make()
    gc.collect()


@pytest.mark.parametrize("cycle", [False, True], ids=["plain", "projection refers to the pair"])
def test_a_pair_dropped_without_close_frees_its_stores_when_collected(
    tmp_path: Path, cycle: bool
) -> None:
    # The reviewer's case: _owners kept the pair's state as owner, so after
    # ``del p; gc.collect()`` the stores stayed locked for the life of the process,
    # and the messages said "close it first", which was impossible.
    def make() -> None:
        holder: list[Tiered] = []

        def projection(record: HistoryRecord, state: ProjectionState) -> None:
            assert holder or not cycle
            _count(record, state)

        repo = _pair(tmp_path, projection)
        if cycle:
            holder.append(repo)  # repo -> projection -> holder -> repo
        repo.put("t", "e1", {})

    _drop_and_collect(make)
    with aurora_storage.open(_cold_url(tmp_path)) as plain:
        plain.put("scratch", "k", 1)  # writable again
        assert plain.delete("scratch", "k")
    with _pair(tmp_path, _count) as again:  # a new pair opens
        again.put("t", "e2", {})
        assert (again.get("t", "n"), again.lag) == (2, 0)


def test_a_live_pair_keeps_its_stores_through_garbage_collection(tmp_path: Path) -> None:
    repo = _pair(tmp_path, _count)
    repo.put("t", "e1", {})
    for _ in range(3):
        gc.collect()
    with aurora_storage.open(_hot_url(tmp_path)) as plain, pytest.raises(ReadOnlyError) as info:
        plain.put("t", "n", 100)
    assert "garbage-collected" in str(info.value)
    with pytest.raises(StoreLockedError, match="until it is garbage-collected"):
        _pair(tmp_path, _count)
    with pytest.raises(StoreLockedError, match="close that pair"):
        repo.hot.close()
    assert (repo.get("t", "n"), repo.lag) == (1, 0)
    repo.close()


def _drop_a_pair_in_a_cycle(tmp: Path) -> None:
    holder: list[Tiered] = []

    def projection(record: HistoryRecord, state: ProjectionState) -> None:
        assert holder
        _count(record, state)

    repo = _pair(tmp, projection)
    holder.append(repo)  # only the cycle collector frees it
    repo.put("t", "e1", {})


@pytest.mark.timeout(60)  # the bug was a deadlock: fail rather than hang
@pytest.mark.parametrize("where", ["this thread", "another thread"])
def test_a_pair_collected_while_the_ownership_table_is_busy_is_released_after(
    tmp_path: Path, where: str
) -> None:
    # The collector may run the dropped pair's finaliser at any allocation - inside
    # the ownership table's own lock (a repository being registered, a claim) in this
    # thread, or in another thread while this one holds it. It must not wait for the
    # lock (a deadlock in the first case); the stores are given back when the holder
    # lets the lock go.
    _drop_a_pair_in_a_cycle(tmp_path)
    with _owners._locked():
        if where == "this thread":
            gc.collect()
        else:
            collector = threading.Thread(target=gc.collect)
            collector.start()
            collector.join()
    with aurora_storage.open(_hot_url(tmp_path)) as plain:
        plain.put("scratch", "k", 1)  # given back
    with _pair(tmp_path, _count) as again:
        assert (again.get("t", "n"), again.lag) == (1, 0)
