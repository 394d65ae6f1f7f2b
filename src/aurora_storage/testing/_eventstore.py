"""Conformance tests of the event-store primitives, one mixin per primitive.

Each test is gated on the capability it exercises (``conditional_writes``,
``sequences``, ``change_feed``, ``multi_process_change_feed``, ``multi_process``) and
skipped with the reason when the backend does not declare it; a backend that does not
declare a primitive is checked to refuse it with ``NotSupportedError`` instead.
"""

from __future__ import annotations

import asyncio
import itertools
import multiprocessing
import threading
import time
from collections.abc import Iterator
from typing import Any, ClassVar

import hypothesis.strategies as st
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

import aurora_storage
from aurora_storage import Change, Repository, Version
from aurora_storage.errors import (
    InvalidKeyError,
    KeyExistsError,
    NotSupportedError,
    PositionExpiredError,
    RepositoryClosedError,
    StorageError,
    VersionConflictError,
)

from ._common import require

__all__ = [
    "ChangeFeedTests",
    "ConditionalWriteStateMachine",
    "ConditionalWriteTests",
    "EventStoreTests",
    "MultiProcessAppendTests",
    "MultiProcessChangeFeedTests",
    "PushDownTests",
    "SequenceTests",
]

Repo = Repository[Any, Any]


class _Boom(Exception):
    pass


class _Base:
    @pytest.fixture
    def store_url(self) -> str:
        """Override in the subclass (see :class:`~aurora_storage.testing.RepositoryTestSuite`)."""
        pytest.fail(f"{type(self).__name__} must define a `store_url` fixture")

    @pytest.fixture
    def repo(self, store_url: str) -> Iterator[Repo]:
        """The store at ``store_url``."""
        r = aurora_storage.open(store_url)
        try:
            yield r
        finally:
            r.close()


def _run_threads(n: int, target: Any) -> None:
    errors: list[BaseException] = []

    def wrapped(i: int) -> None:
        try:
            target(i)
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=wrapped, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]


# ---------------------------------------------------------------------------- conditions


class ConditionalWriteTests(_Base):
    """``Batch.insert``, ``compare_and_set`` and ``get_versioned``."""

    def test_undeclared_conditional_writes_are_refused(self, repo: Repo) -> None:
        if repo.capabilities.conditional_writes:
            pytest.skip("the backend declares conditional_writes; tested below")
        with pytest.raises(NotSupportedError):
            repo.compare_and_set("t", "k", 1, version=None)
        with pytest.raises(NotSupportedError), repo.batch() as b:
            b.insert("t", "k", 1)
        assert not repo.has("t", "k")

    def test_get_versioned(self, repo: Repo) -> None:
        require(repo, "conditional_writes", "versions exist for compare-and-set")
        assert repo.get_versioned("t", "k") == (None, None)
        repo.put("t", "k", {"a": 1})
        value, version = repo.get_versioned("t", "k")
        assert value == {"a": 1}
        assert isinstance(version, Version)
        assert hash(version) == hash(repo.get_versioned("t", "k")[1])
        repo.put("t", "k", {"a": 2})
        assert repo.get_versioned("t", "k")[1] != version

    def test_compare_and_set_moves_forward(self, repo: Repo) -> None:
        require(repo, "conditional_writes", "compare-and-set needs conditional writes")
        v1 = repo.compare_and_set("t", "pos", 1, version=None)
        assert repo.get_versioned("t", "pos") == (1, v1)
        v2 = repo.compare_and_set("t", "pos", 2, version=v1)
        assert repo.get_versioned("t", "pos") == (2, v2)
        assert v2 != v1
        with pytest.raises(VersionConflictError) as info:
            repo.compare_and_set("t", "pos", 3, version=v1)
        err = info.value
        assert isinstance(err, StorageError)
        assert (err.tenant, err.key, err.expected, err.actual) == ("t", "pos", v1, v2)
        with pytest.raises(VersionConflictError) as info:
            repo.compare_and_set("t", "pos", 3, version=None)
        assert (info.value.expected, info.value.actual) == (None, v2)
        assert repo.get("t", "pos") == 2
        repo.delete("t", "pos")
        with pytest.raises(VersionConflictError) as info:
            repo.compare_and_set("t", "pos", 3, version=v2)
        assert info.value.actual is None
        assert not repo.has("t", "pos")

    def test_compare_and_set_in_tenant_view(self, repo: Repo) -> None:
        require(repo, "conditional_writes", "compare-and-set needs conditional writes")
        view = repo.tenant("acme")
        v = view.compare_and_set("k", "a", version=None)
        assert view.get_versioned("k") == ("a", v)
        with pytest.raises(VersionConflictError):
            repo.tenant("other").compare_and_set("k", "b", version=v)

    def test_batch_insert_conflict_writes_nothing(self, repo: Repo) -> None:
        require(repo, "conditional_writes", "Batch.insert needs conditional writes")
        repo.put("t", ("agg", 2), "existing-2")
        repo.put("t", ("agg", 4), "existing-4")
        with pytest.raises(KeyExistsError) as info, repo.batch() as b:  # noqa: PT012 - the batch raises at commit
            b.put("t", "side-effect", 1)
            b.delete("t", ("agg", 2))
            for n in range(1, 6):
                b.insert("t", ("agg", n), f"new-{n}")
        assert isinstance(info.value, KeyError)
        assert info.value.keys == [("agg", 2), ("agg", 4)]
        assert info.value.key == ("agg", 2)
        assert list(repo.items("t")) == [(("agg", 2), "existing-2"), (("agg", 4), "existing-4")]

    def test_batch_insert_commits_when_all_absent(self, repo: Repo) -> None:
        require(repo, "conditional_writes", "Batch.insert needs conditional writes")
        with repo.batch() as b:
            for n in range(1, 4):
                b.insert("t", ("agg", n), n)
            b.put("u", "x", "y")
        assert list(repo.items("t")) == [(("agg", n), n) for n in range(1, 4)]
        assert repo.get("u", "x") == "y"

    def test_batch_inserting_a_key_twice_fails(self, repo: Repo) -> None:
        require(repo, "conditional_writes", "Batch.insert needs conditional writes")
        repo.put("t", "old", 0)
        with pytest.raises(KeyExistsError) as info, repo.batch() as b:  # noqa: PT012 - the batch raises at commit
            b.insert("t", "old", 1)
            b.insert("t", "k", 1)
            b.insert("t", "k", 2)
        assert info.value.keys == ["old", "k"]
        assert not repo.has("t", "k")

    def test_failed_compare_and_set_fails_whole_batch(self, repo: Repo) -> None:
        require(repo, "conditional_writes", "compare-and-set needs conditional writes")
        v = repo.compare_and_set("t", "tracking", 10, version=None)
        repo.put("t", "tracking", 11)  # someone else moved it
        with pytest.raises(VersionConflictError), repo.batch() as b:  # noqa: PT012 - the batch raises at commit
            b.insert("t", "event", "e")
            b.compare_and_set("t", "tracking", 12, version=v)
        assert repo.get("t", "tracking") == 11
        assert not repo.has("t", "event")
        _, current = repo.get_versioned("t", "tracking")
        with repo.batch() as b:
            b.insert("t", "event", "e")
            b.compare_and_set("t", "tracking", 12, version=current)
        assert repo.get("t", "tracking") == 12
        assert repo.get("t", "event") == "e"

    def test_bad_version_argument(self, repo: Repo) -> None:
        require(repo, "conditional_writes", "compare-and-set needs conditional writes")
        with pytest.raises(ValueError, match="Version"):
            repo.compare_and_set("t", "k", 1, version=b"raw")  # type: ignore[arg-type]  # wrong on purpose
        assert not repo.has("t", "k")

    def test_concurrent_compare_and_set_loses_no_update(self, repo: Repo) -> None:
        require(repo, "conditional_writes", "compare-and-set needs conditional writes")
        require(repo, "thread_safe", "several threads share the repository")
        repo.compare_and_set("t", "counter", 0, version=None)
        wins = [0] * 4

        def work(i: int) -> None:
            for _ in range(50):
                while True:
                    value, version = repo.get_versioned("t", "counter")
                    assert isinstance(value, int)
                    try:
                        repo.compare_and_set("t", "counter", value + 1, version=version)
                    except VersionConflictError:
                        continue
                    wins[i] += 1
                    break

        _run_threads(4, work)
        assert repo.get("t", "counter") == sum(wins) == 200

    def test_concurrent_batch_inserts_single_winner(self, repo: Repo) -> None:
        require(repo, "conditional_writes", "Batch.insert needs conditional writes")
        require(repo, "thread_safe", "several threads share the repository")
        winners: list[tuple[int, int]] = []

        def work(i: int) -> None:
            for version in range(20):
                try:
                    with repo.batch() as b:
                        b.insert("t", ("agg", version), i)
                        b.insert("t", ("agg-copy", version), i)
                except KeyExistsError:
                    continue
                winners.append((version, i))

        _run_threads(4, work)
        assert sorted(v for v, _ in winners) == list(range(20))
        for version, i in winners:
            assert repo.get("t", ("agg", version)) == i
            assert repo.get("t", ("agg-copy", version)) == i


# ---------------------------------------------------------------------------- sequences


class SequenceTests(_Base):
    """``Batch.append`` and ``last_sequence``: gap-free numbers assigned at commit."""

    #: Examples of the hypothesis test of appends over records put at random numbers.
    sequence_hole_examples: ClassVar[int] = 25

    def test_undeclared_sequences_are_refused(self, repo: Repo) -> None:
        if repo.capabilities.sequences:
            pytest.skip("the backend declares sequences; tested below")
        with pytest.raises(NotSupportedError), repo.batch() as b:
            b.append("t", "log", 1)
        with pytest.raises(NotSupportedError):
            repo.last_sequence("t", "log")

    def test_append_numbers_and_keys(self, repo: Repo) -> None:
        require(repo, "sequences", "appends need sequences")
        assert repo.last_sequence("t", "log") == 0
        with repo.batch() as b:
            s1 = b.append("t", "log", "a")
            s2 = b.append("t", "log", "b")
            other = b.append("t", "other", "x")
            with pytest.raises(StorageError, match="commit"):
                _ = s1.number
        assert (s1.number, s2.number, other.number) == (1, 2, 1)
        with repo.batch() as b:
            s3 = b.append("t", "log", "c")
        assert s3.number == 3
        assert repo.last_sequence("t", "log") == 3
        assert list(repo.items("t", prefix=("log",))) == [
            (("log", 1), "a"),
            (("log", 2), "b"),
            (("log", 3), "c"),
        ]
        assert list(repo.keys("t", prefix=("log",), reverse=True, limit=1)) == [("log", 3)]
        assert repo.last_sequence("u", "log") == 0

    def test_failed_batch_leaves_no_gap(self, repo: Repo) -> None:
        require(repo, "sequences", "appends need sequences")
        require(repo, "conditional_writes", "the batch fails through a condition")
        repo.put("t", "taken", 1)
        with pytest.raises(KeyExistsError), repo.batch() as b:  # noqa: PT012 - the batch raises at commit
            slot = b.append("t", "log", "lost")
            b.insert("t", "taken", 2)
        with pytest.raises(StorageError):
            _ = slot.number
        with pytest.raises(_Boom), repo.batch() as b:  # noqa: PT012 - the batch raises at commit
            b.append("t", "log", "discarded")
            raise _Boom
        assert repo.last_sequence("t", "log") == 0
        with repo.batch() as b:
            slot = b.append("t", "log", "kept")
        assert slot.number == 1
        assert list(repo.items("t", prefix=("log",))) == [(("log", 1), "kept")]

    def test_numbers_are_never_reused(self, repo: Repo) -> None:
        require(repo, "sequences", "appends need sequences")
        with repo.batch() as b:
            b.append("t", "log", 1)
            b.append("t", "log", 2)
        repo.drop_tenant("t")
        with repo.batch() as b:
            slot = b.append("t", "log", 3)
        assert slot.number == 3

    def test_append_never_overwrites_existing_records(self, repo: Repo) -> None:
        # Records at (sequence, n) written without append (an `aurora-storage import`
        # of an older export, a put_many restoring a tenant) leave the counter behind:
        # an append never replaces a record, and goes past the newest one.
        require(repo, "sequences", "appends need sequences")
        repo.put_many("t", {("log", 1): "old1", ("log", 2): "old2"})
        with repo.batch() as b:
            first = b.append("t", "log", "new-a")
        assert first.number == 3
        with repo.batch() as b:
            b.put("t", ("log", 5), "put-in-batch")
            slots = [b.append("t", "log", v) for v in ("new-b", "new-c")]
        assert [s.number for s in slots] == [6, 7]  # slot 5 is taken: past the newest
        assert repo.last_sequence("t", "log") == 7
        assert list(repo.items("t", prefix=("log",))) == [
            (("log", 1), "old1"),
            (("log", 2), "old2"),
            (("log", 3), "new-a"),
            (("log", 5), "put-in-batch"),
            (("log", 6), "new-b"),
            (("log", 7), "new-c"),
        ]

    def test_append_goes_past_the_newest_record_never_into_a_hole(self, repo: Repo) -> None:
        # An exported log whose record 3 was deleted, imported without its counter:
        # the next append is past record 4, never 3 (a follower that read up to 4 would
        # never see it, and the newest key would no longer be the last number).
        require(repo, "sequences", "appends need sequences")
        repo.put_many("t", {("n", 1): "a", ("n", 2): "b", ("n", 4): "d"})
        with repo.batch() as b:
            slot = b.append("t", "n", "new")
        assert slot.number == 5
        assert repo.last_sequence("t", "n") == 5
        assert list(repo.keys("t", prefix=("n",), reverse=True, limit=1)) == [("n", 5)]
        assert repo.get("t", ("n", 3)) is None
        # The batch deleting the newest record frees it; keys of other shapes above
        # the newest record occupy no number.
        repo.put_many("t", {("n", 6): "f", ("n", 9, "x"): "long", ("n", 8.5): "frac"})
        with repo.batch() as b:
            b.delete("t", ("n", 6))
            b.put("t", ("n", 6, "y"), "long")
            b.put("t", ("n", 7), "put-in-batch")
            b.delete("t", ("n", 7))  # the last op of a key decides: free
            slots = [b.append("t", "n", v) for v in ("x", "y")]
        assert [s.number for s in slots] == [6, 7]
        repo.put("t", ("n", 12), "far")
        with repo.batch() as b:
            b.delete("t", ("n", 12))
            b.put("t", ("n", 10), "in-batch")
            slot = b.append("t", "n", "z")  # slot 8 is free: taken (the counter's next)
        assert slot.number == 8
        repo.put("t", ("n", 9), "i")
        with repo.batch() as b:
            slot = b.append("t", "n", "w")  # slot 9 taken: past the newest (10)
        assert slot.number == 11
        assert repo.last_sequence("t", "n") == 11

    def test_appends_number_past_every_record_when_the_counter_is_behind(self, repo: Repo) -> None:
        # Records put at random numbers (with keys of other shapes), then batches of
        # appends: whenever the number after the counter is taken, the batch's numbers
        # are past every numbered record; always consecutive, past the counter, and no
        # record is replaced.
        require(repo, "sequences", "appends need sequences")
        tenants = itertools.count()

        @settings(
            max_examples=self.sequence_hole_examples,
            deadline=None,
            database=None,
            suppress_health_check=[HealthCheck.too_slow],
        )
        @given(
            numbers=st.sets(st.integers(1, 40), max_size=8),
            others=st.sets(st.integers(1, 40), max_size=3),
            first=st.booleans(),
            batches=st.lists(
                st.tuples(st.integers(1, 3), st.sets(st.integers(1, 40), max_size=2)),
                min_size=1,
                max_size=4,
            ),
        )
        def run(
            numbers: set[int],
            others: set[int],
            first: bool,
            batches: list[tuple[int, set[int]]],
        ) -> None:
            t = f"holes-{next(tenants)}"
            if first:
                numbers.add(1)  # an imported log whose first record exists
            model: dict[int, str] = {m: f"put{m}" for m in numbers}
            seed: dict[Any, str] = {("s", m): v for m, v in model.items()}
            seed.update({("s", m, "x"): "other" for m in others})
            if seed:
                repo.put_many(t, seed)
            counter = repo.last_sequence(t, "s")
            for size, deletes in batches:
                with repo.batch() as b:
                    for m in sorted(deletes):
                        b.delete(t, ("s", m))
                    slots = [b.append(t, "s", f"a{i}") for i in range(size)]
                for m in deletes:
                    model.pop(m, None)
                got = [s.number for s in slots]
                start = got[0]
                assert got == list(range(start, start + size))
                assert start > counter
                taken = any(counter + j in model for j in range(1, size + 1))
                if taken:
                    assert start > max(model), (got, sorted(model), counter)
                else:
                    assert start == counter + 1
                for m in model:
                    assert m not in got
                model.update({m: f"a{i}" for i, m in enumerate(got)})
                counter = got[-1]
                assert repo.last_sequence(t, "s") == counter
                stored = {k[1]: v for k, v in repo.items(t, prefix=("s",)) if len(k) == 2}
                assert stored == model
            repo.drop_tenant(t)

        run()

    def test_append_sees_records_numbered_past_64_bits(self, repo: Repo) -> None:
        # A record put by hand at (sequence, n) with n of any size (2**64, 2**2000, an
        # integral float such as 1e300, which is the same key as its int) is a numbered
        # record too: the numbers go past it or, past the largest number a 64-bit
        # counter holds, the append is refused naming the sequence - never into the
        # hole below it.
        require(repo, "sequences", "appends need sequences")
        tenants = itertools.count()

        @settings(
            max_examples=self.sequence_hole_examples,
            deadline=None,
            database=None,
            suppress_health_check=[HealthCheck.too_slow],
        )
        @given(
            top=st.one_of(
                st.integers(2, (1 << 64) - 3),
                st.integers((1 << 64) - 4, (1 << 64) + 4),
                st.integers(1 << 64, (1 << 2040) - 1),
                st.sampled_from([(1 << 64) - 2, (1 << 64) - 1, 1 << 64, 1 << 100, 1e19, 1e300]),
            ),
            size=st.integers(1, 3),
        )
        def run(top: int | float, size: int) -> None:
            t = f"big-{next(tenants)}"
            repo.put_many(t, {("s", 1): "first", ("s", top): "by hand"})
            n = int(top)
            if n + size <= (1 << 64) - 1:
                with repo.batch() as b:
                    slots = [b.append(t, "s", i) for i in range(size)]
                assert [s.number for s in slots] == list(range(n + 1, n + 1 + size))
                assert repo.last_sequence(t, "s") == n + size
            else:
                with pytest.raises(InvalidKeyError) as info, repo.batch() as b:  # noqa: PT012 - the batch raises at commit
                    for i in range(size):
                        b.append(t, "s", i)
                message = str(info.value)
                for part in (repr(t), "'s'", "64-bit", "delete"):
                    assert part in message, message
                assert repo.last_sequence(t, "s") == 0
                assert repo.get(t, ("s", 2)) is None
            repo.drop_tenant(t)

        run()

    def test_append_numbers_past_other_keys_under_the_sequence(self, repo: Repo) -> None:
        # Keys of other shapes under the sequence's prefix (longer tuples, other element
        # types) and a neighbouring sequence occupy no slot, and are never replaced.
        require(repo, "sequences", "appends need sequences")
        others = {("log", 3, "x"): "long", ("log", "z"): "str", ("logs", 9): "next"}
        repo.put_many("t", {("log", 1): "old", **others})
        with repo.batch() as b:
            slots = [b.append("t", "log", v) for v in ("a", "b", "c")]
        assert [s.number for s in slots] == [2, 3, 4]
        with repo.batch() as b:
            slots = [b.append("t", "log", v) for v in ("d", "e")]
        assert [s.number for s in slots] == [5, 6]
        assert [repo.get("t", ("log", n)) for n in range(1, 7)] == ["old", *"abcde"]
        assert {k: repo.get("t", k) for k in others} == others

    def test_bad_sequence_name(self, repo: Repo) -> None:
        require(repo, "sequences", "appends need sequences")
        for bad in ("", 1, None, ("a",)):
            with pytest.raises(ValueError), repo.batch() as b:  # noqa: PT011 - any ValueError subclass is right here
                b.append("t", bad, 1)  # type: ignore[arg-type]  # wrong on purpose
        assert repo.last_sequence("t", "x") == 0

    def test_concurrent_appends_are_gap_free(self, repo: Repo) -> None:
        require(repo, "sequences", "appends need sequences")
        require(repo, "thread_safe", "several threads share the repository")
        got: list[int] = []
        lock = threading.Lock()

        def work(i: int) -> None:
            for j in range(25):
                with repo.batch() as b:
                    slots = [b.append("t", "log", (i, j, n)) for n in range(2)]
                with lock:
                    got.extend(s.number for s in slots)
                assert slots[1].number == slots[0].number + 1

        _run_threads(4, work)
        assert sorted(got) == list(range(1, 201))
        assert repo.last_sequence("t", "log") == 200
        assert [k[1] for k in repo.keys("t", prefix=("log",))] == list(range(1, 201))

    def test_sequence_survives_reopen(self, repo: Repo, store_url: str) -> None:
        require(repo, "sequences", "appends need sequences")
        require(repo, "persistent", "reopen tests need a persistent store")
        with repo.batch() as b:
            b.append("t", "log", "a")
        repo.close()
        with aurora_storage.open(store_url) as again:
            assert again.last_sequence("t", "log") == 1
            with again.batch() as b:
                slot = b.append("t", "log", "b")
            assert slot.number == 2

    def test_async_batch_appends(self, repo: Repo) -> None:
        require(repo, "sequences", "appends need sequences")
        require(repo, "conditional_writes", "the batch also inserts")

        async def main() -> None:
            arepo = repo.as_async()
            async with arepo.batch() as b:
                slot = b.append("t", "log", "a")
                b.insert("t", "agg", 1)
                b.compare_and_set("t", "pos", 1, version=None)
            assert slot.number == 1
            assert await arepo.last_sequence("t", "log") == 1
            value, version = await arepo.get_versioned("t", "pos")
            assert value == 1
            await arepo.compare_and_set("t", "pos", 2, version=version)
            assert await arepo.tenant("t").last_sequence("log") == 1

        asyncio.run(main())
        assert repo.get("t", "pos") == 2


# ---------------------------------------------------------------------------- change feed


def _collect(watch: Any, n: int) -> list[Change[Any, Any]]:
    out = []
    for change in watch:
        out.append(change)
        if len(out) == n:
            break
    return out


class ChangeFeedTests(_Base):
    """``watch()`` (sync and async) and ``last_position``."""

    def test_undeclared_change_feed_is_refused(self, repo: Repo) -> None:
        if repo.capabilities.change_feed:
            pytest.skip("the backend declares change_feed; tested below")
        with pytest.raises(NotSupportedError):
            repo.watch("t")

    def test_watch_sees_later_changes_in_commit_order(self, repo: Repo) -> None:
        require(repo, "change_feed", "watch() needs a change feed")
        repo.put("t", "before", 0)
        with repo.watch("t", timeout=5) as w:
            repo.put("t", "a", 1)
            repo.put("other", "a", "not mine")
            with repo.batch() as b:
                b.put("t", "b", 2)
                b.delete("t", "a")
            repo.put("t", ("tuple", 1), None)
            got = _collect(w, 4)
        assert [(c.key, c.value, c.deleted) for c in got] == [
            ("a", 1, False),
            ("b", 2, False),
            ("a", None, True),
            (("tuple", 1), None, False),
        ]
        assert all(c.tenant == "t" for c in got)
        positions = [c.position for c in got]
        assert positions == sorted(set(positions))

    def test_watch_prefix_and_hostile_tenants(self, repo: Repo) -> None:
        require(repo, "change_feed", "watch() needs a change feed")
        with repo.watch("a", prefix=("ev",), timeout=5) as w:
            repo.put("a:b", ("ev", 1), "other tenant")
            repo.put("a", ("other", 1), "other prefix")
            repo.put("a", ("ev", 1), "mine")
            got = _collect(w, 1)
        assert [(c.tenant, c.key, c.value) for c in got] == [("a", ("ev", 1), "mine")]

    def test_watch_times_out(self, repo: Repo) -> None:
        require(repo, "change_feed", "watch() needs a change feed")
        with repo.watch("t", timeout=0.05) as w:
            assert list(w) == []

    def test_resume_misses_and_repeats_nothing(self, repo: Repo) -> None:
        require(repo, "change_feed", "watch() needs a change feed")
        start = repo.last_position()
        seen: list[Any] = []
        after = start
        for round_ in range(5):
            for i in range(7):
                repo.put("t", (round_, i), i)
            # Read a few, then "crash" and resume from the last position seen.
            with repo.watch("t", after=after, timeout=0.05) as w:
                for change in w:
                    seen.append(change.key)
                    after = change.position
                    if len(seen) % 5 == 0:
                        break
        with repo.watch("t", after=after, timeout=0.05) as w:
            seen += [c.key for c in w]
        assert seen == [(r, i) for r in range(5) for i in range(7)]

    def test_watch_position_property_resumes(self, repo: Repo) -> None:
        require(repo, "change_feed", "watch() needs a change feed")
        w = repo.watch("t", prefix="x", timeout=0.05)
        repo.put("t", "y1", 1)  # filtered out, but examined
        repo.put("t", "x1", 1)
        assert [c.key for c in w] == ["x1"]
        pos = w.position
        repo.put("t", "x2", 2)
        assert [c.key for c in repo.watch("t", prefix="x", after=pos, timeout=0.05)] == ["x2"]

    def test_failed_batch_is_not_a_change(self, repo: Repo) -> None:
        require(repo, "change_feed", "watch() needs a change feed")
        require(repo, "conditional_writes", "the batch fails through a condition")
        repo.put("t", "taken", 1)
        with repo.watch("t", timeout=0.05) as w:
            with pytest.raises(KeyExistsError), repo.batch() as b:  # noqa: PT012 - the batch raises at commit
                b.put("t", "x", 1)
                b.insert("t", "taken", 2)
            assert list(w) == []

    def test_deleting_a_missing_key_is_not_a_change(self, repo: Repo) -> None:
        """The feed reports only changes that happened: deleting a key that does not
        exist - with delete, delete_many, a batch's delete, alone or next to a real
        change - changes nothing and is not seen by a watch."""
        require(repo, "change_feed", "watch() needs a change feed")
        repo.put("t", "present", 1)
        with repo.watch("t", timeout=5) as w:
            assert repo.delete("t", "missing") is False
            assert repo.delete_many("t", ["missing", "absent"]) == 0
            with repo.batch() as b:
                b.delete("t", "missing")
            with repo.batch() as b:
                b.delete("t", "absent")
                b.put("t", "new", 2)
            assert repo.delete_many("t", ["missing", "present"]) == 1
            expected = [("new", 2, False), ("present", None, True)]
            if repo.capabilities.conditional_writes:
                # A conditional batch (the engines' other commit path).
                with repo.batch() as b:
                    b.insert("t", "fresh", 4)
                    b.delete("t", "missing")
                expected.append(("fresh", 4, False))
            repo.put("t", "last", 3)  # the end mark: everything before it was read
            expected.append(("last", 3, False))
            got = _collect(w, len(expected))
        assert [(c.key, c.value, c.deleted) for c in got] == expected
        positions = [c.position for c in got]
        assert positions == sorted(set(positions))

    def test_every_write_path_is_a_change(self, repo: Repo) -> None:
        """Every write path the backend contract names (put, insert, delete, write,
        write_iter, write_puts, delete_range, commit) reaches the feed: a backend that
        records some of them leaves a watcher silently behind the store."""
        require(repo, "change_feed", "watch() needs a change feed")
        repo.put_many("t", {"x": 0, "y": 0})
        # (changes in order, or a set of them in any order: one drop_tenant)
        expected: list[Any] = []
        with repo.watch("t", timeout=5) as w:
            repo.put("t", "put", 1)  # Backend.put
            expected.append(("put", 1, False))
            repo.insert("t", "insert", 2)  # Backend.insert
            expected.append(("insert", 2, False))
            assert repo.delete("t", "put") is True  # Backend.delete
            expected.append(("put", None, True))
            repo.put_many("t", {"pm1": 3, "pm2": 4})  # Backend.write_puts
            expected += [("pm1", 3, False), ("pm2", 4, False)]
            with repo.batch() as b:  # Backend.write
                b.put("t", "batch", 5)
                b.delete("t", "pm1")
            expected += [("batch", 5, False), ("pm1", None, True)]
            assert repo.delete_many("t", ["pm2"]) == 1  # Backend.write
            expected.append(("pm2", None, True))

            async def put_many_async() -> None:  # Backend.write_iter
                await repo.as_async().put_many("t", {"async": 6})

            asyncio.run(put_many_async())
            expected.append(("async", 6, False))
            if repo.capabilities.conditional_writes:  # Backend.commit
                repo.compare_and_set("t", "cas", 7, version=None)
                expected.append(("cas", 7, False))
                with repo.batch() as b:
                    b.insert("t", "cond", 8)
                    b.delete("t", "batch")
                expected += [("cond", 8, False), ("batch", None, True)]
            if repo.capabilities.sequences:
                with repo.batch() as b:
                    b.append("t", "seq", 9)
                expected.append((("seq", 1), 9, False))
            # Backend.delete_range: one deletion per record the tenant held.
            held = set(repo.keys("t"))
            assert repo.drop_tenant("t") == len(held)
            expected.append({(k, None, True) for k in held})
            repo.put("t", "last", 10)  # the end mark: everything before it was read
            expected.append(("last", 10, False))
            n = sum(len(e) if isinstance(e, set) else 1 for e in expected)
            got = [(c.key, c.value, c.deleted) for c in _collect(w, n)]
        i = 0
        for e in expected:
            if isinstance(e, set):
                part = got[i : i + len(e)]
                assert len(part) == len(e), f"drop_tenant recorded {part}"
                assert set(part) == e, (
                    f"drop_tenant (Backend.delete_range) recorded {part}, expected one "
                    f"deletion of each record: {sorted(e, key=repr)}"
                )
                i += len(e)
            else:
                assert got[i : i + 1] == [e], (
                    f"change {i}: expected {e}, the feed gave "
                    f"{got[i] if i < len(got) else 'nothing'} (every write path must "
                    "record its changes)"
                )
                i += 1
        assert i == len(got)

    def test_positions_keep_increasing_across_reopen(self, repo: Repo, store_url: str) -> None:
        """A persistent store's positions outlive the repository: a watch resumed after
        a reopen from a position saved before it delivers every later change, or raises
        PositionExpiredError (an in-process feed that starts anew) - never skips. A feed
        numbering from the start again at each open would take the saved position as
        one of the new session's and silently skip the changes up to it."""
        require(repo, "change_feed", "watch() needs a change feed")
        require(repo, "persistent", "only a persistent store is reopened with its data")
        for i in range(3):
            repo.put("t", ("old", i), i)
        saved = repo.last_position()
        repo.close()
        with aurora_storage.open(store_url) as again:
            assert again.last_position() >= saved, (
                f"last_position() after a reopen is {again.last_position()}, below the "
                f"{saved} of the earlier open: a persistent store's positions must keep "
                "increasing across reopens (start the feed's numbering from the "
                "engine's own persistent commit counter)"
            )
            new = [("new", i) for i in range(12)]
            for i, key in enumerate(new):
                again.put("t", key, i)
            try:
                with again.watch("t", after=saved, timeout=0.2) as w:
                    got = [c for c in w if c.key[0] == "new"]
            except PositionExpiredError:
                return  # an in-process feed: it says so, and skips nothing
            assert [c.key for c in got] == new, (
                f"a watch resumed from position {saved} (saved before a reopen) "
                f"delivered {[c.key for c in got]}, not every change made since"
            )
            assert all(c.position > saved for c in got)

    def test_close_wakes_a_blocked_watch(self, repo: Repo) -> None:
        require(repo, "change_feed", "watch() needs a change feed")
        w = repo.watch("t")
        done = threading.Event()
        got: list[Any] = []

        def consume() -> None:
            got.extend(w)
            done.set()

        t = threading.Thread(target=consume)
        t.start()
        time.sleep(0.05)
        w.close()
        t.join(10)
        assert done.is_set()
        assert got == []

    def test_watch_after_repository_close(self, repo: Repo) -> None:
        require(repo, "change_feed", "watch() needs a change feed")
        w = repo.watch("t", timeout=1)
        repo.close()
        with pytest.raises(RepositoryClosedError):
            next(w)

    def test_async_watch(self, repo: Repo) -> None:
        require(repo, "change_feed", "watch() needs a change feed")

        async def main() -> list[Any]:
            arepo = repo.as_async()
            got: list[Any] = []
            async with arepo.watch("t", timeout=5) as w:

                async def produce() -> None:
                    for i in range(3):
                        await asyncio.sleep(0.01)
                        await arepo.put("t", i, i)

                task = asyncio.create_task(produce())
                # The loop stays free while the watch waits: the producer runs.
                async for change in w:
                    got.append((change.key, change.value))
                    if len(got) == 3:
                        break
                await task
            async with arepo.tenant("t").watch(timeout=0.05) as w2:
                assert [c async for c in w2] == []
            return got

        assert asyncio.run(main()) == [(0, 0), (1, 1), (2, 2)]

    def test_watch_bad_arguments(self, repo: Repo) -> None:
        require(repo, "change_feed", "watch() needs a change feed")
        for kwargs in ({"after": -1}, {"after": "1"}, {"timeout": -1}, {"timeout": "x"}):
            with pytest.raises(ValueError):  # noqa: PT011 - any ValueError subclass is right here
                repo.watch("t", **kwargs)


# ---------------------------------------------------------------------------- push-down


class PushDownTests(_Base):
    """``limit`` and ``reverse`` reach the backend: a limited scan reads only what it
    returns (checked through the backend's own ``scan_chunks``)."""

    def test_backend_scan_chunks_honours_limit(self, repo: Repo) -> None:
        require(repo, "ordered_scans", "limits take the first keys in order")
        repo.put_many("t", ((("log", n), n) for n in range(1, 300)))
        lo, hi, _ = repo._bounds("t", ("log",), None, None)
        be = repo.backend
        for reverse in (False, True):
            for limit in (0, 1, 5, 299, 400):
                for values in (True, False):
                    chunks = list(
                        be.scan_chunks(lo, hi, reverse=reverse, values=values, limit=limit)
                    )
                    keys = [k for ks, _ in chunks for k in ks]
                    assert len(keys) == min(limit, 299)
                    full = [k for ks, _ in be.scan_chunks(lo, hi, reverse=reverse) for k in ks]
                    assert keys == full[:limit]
        assert list(repo.keys("t", prefix=("log",), reverse=True, limit=1)) == [("log", 299)]
        assert list(repo.keys("t", prefix=("log",), limit=2)) == [("log", 1), ("log", 2)]


# ---------------------------------------------------------------------------- state machine


_T = ("t1", "t2")
_K = st.sampled_from(["a", "b", "c", ("agg", 1), ("agg", 2)])


class ConditionalWriteStateMachine(RuleBasedStateMachine):
    """Random conditional batches, compare-and-sets and appends against a dict model
    (versions tracked as the repository hands them out)."""

    repo: Repo

    def __init__(self) -> None:
        super().__init__()
        for t in _T:
            self.repo.drop_tenant(t)
        self.model: dict[tuple[str, Any], Any] = {}
        self.versions: dict[tuple[str, Any], Version] = {}
        self.seq_base = {t: self.repo.last_sequence(t, "s") for t in _T}
        self.seqs: dict[str, list[Any]] = {t: [] for t in _T}

    @classmethod
    def for_repository(cls, repo: Repo) -> type[ConditionalWriteStateMachine]:
        """A subclass of the machine bound to ``repo``."""
        return type("BoundConditionalWriteStateMachine", (cls,), {"repo": repo})

    def _version(self, tk: tuple[str, Any]) -> Version | None:
        if tk not in self.model:
            return None
        v = self.versions.get(tk)
        if v is None:
            v = self.repo.get_versioned(*tk)[1]
            assert v is not None
            self.versions[tk] = v
        return v

    @rule(t=st.sampled_from(_T), k=_K, v=st.integers(0, 3))
    def put(self, t: str, k: Any, v: int) -> None:
        self.repo.put(t, k, v)
        self.model[(t, k)] = v
        self.versions.pop((t, k), None)

    @rule(t=st.sampled_from(_T), k=_K)
    def delete(self, t: str, k: Any) -> None:
        self.repo.delete(t, k)
        self.model.pop((t, k), None)
        self.versions.pop((t, k), None)

    @rule(t=st.sampled_from(_T), k=_K, v=st.integers(0, 3), stale=st.booleans())
    def compare_and_set(self, t: str, k: Any, v: int, stale: bool) -> None:
        tk = (t, k)
        current = self._version(tk)
        # A stale expectation: "absent" while the record exists.
        expected = None if stale else current
        if expected == current:
            new = self.repo.compare_and_set(t, k, v, version=expected)
            self.model[tk] = v
            self.versions[tk] = new
            assert self.repo.get_versioned(t, k) == (v, new)
        else:
            with pytest.raises(VersionConflictError):
                self.repo.compare_and_set(t, k, v, version=expected)

    @rule(
        ops=st.lists(
            st.tuples(
                st.sampled_from(["insert", "cas", "put", "delete", "append"]),
                st.sampled_from(_T),
                _K,
                st.integers(0, 3),
                st.booleans(),
            ),
            min_size=1,
            max_size=6,
        )
    )
    def conditional_batch(self, ops: list[tuple[str, str, Any, int, bool]]) -> None:
        failed = False
        conditioned: set[tuple[str, Any]] = set()
        inserted: set[tuple[str, Any]] = set()
        inserted_existing = False
        cas_failed = False
        try:
            with self.repo.batch() as b:
                for kind, t, k, v, stale in ops:
                    tk = (t, k)
                    if kind == "insert":
                        if tk in self.model or tk in conditioned:
                            inserted_existing = True
                        b.insert(t, k, v)
                        conditioned.add(tk)
                        inserted.add(tk)
                    elif kind == "cas":
                        current = self._version(tk)
                        expected = None if stale else current
                        if expected != current or tk in conditioned:
                            cas_failed = True
                        if tk in inserted:
                            # A key conditioned twice with an insert (either order) is
                            # a KeyExistsError (docs/eventsourcing.md).
                            inserted_existing = True
                        b.compare_and_set(t, k, v, version=expected)
                        conditioned.add(tk)
                    elif kind == "put":
                        b.put(t, k, v)
                    elif kind == "delete":
                        b.delete(t, k)
                    else:
                        b.append(t, "s", v)
        except KeyExistsError:
            assert inserted_existing
            failed = True
        except VersionConflictError:
            assert cas_failed
            failed = True
        if not failed:
            assert not inserted_existing
            assert not cas_failed
            for kind, t, k, v, _ in ops:
                if kind in ("insert", "cas", "put"):
                    self.model[(t, k)] = v
                    self.versions.pop((t, k), None)
                elif kind == "delete":
                    self.model.pop((t, k), None)
                    self.versions.pop((t, k), None)
                else:
                    self.seqs[t].append(v)

    @invariant()
    def matches_model(self) -> None:
        for t in _T:
            got = {
                (t, k): v for k, v in self.repo.items(t) if not (type(k) is tuple and k[0] == "s")
            }
            assert got == {tk: v for tk, v in self.model.items() if tk[0] == t}
            assert self.repo.last_sequence(t, "s") == self.seq_base[t] + len(self.seqs[t])
            numbered = list(self.repo.items(t, prefix=("s",)))
            base = self.seq_base[t]
            assert numbered == [(("s", base + i + 1), v) for i, v in enumerate(self.seqs[t])]


# ---------------------------------------------------------------------------- processes


def _appender(url: str, worker: int, batches: int, per_batch: int) -> None:
    """One writer process: aggregate events inserted at expected versions plus a
    notification per event, in one conditional batch; retries on conflicts."""
    with aurora_storage.open(url) as repo:
        for i in range(batches):
            agg = f"agg-{i % 3}"
            while True:
                last = list(repo.keys("app", prefix=(agg,), reverse=True, limit=1))
                version = last[0][1] if last else 0
                try:
                    with repo.batch() as b:
                        for j in range(per_batch):
                            b.insert("app", (agg, version + 1 + j), [worker, i, j])
                            b.append("app", "notifications", [agg, version + 1 + j])
                except KeyExistsError:
                    continue  # another process wrote this version: re-read and retry
                break


class MultiProcessAppendTests(_Base):
    """Several processes append conditionally to one store (backends declaring
    ``multi_process`` writes): 0 lost, 0 gaps, 0 duplicates."""

    processes: ClassVar[int] = 4
    batches_per_process: ClassVar[int] = 40

    def test_multi_process_conditional_appends(self, store_url: str) -> None:
        repo = aurora_storage.open(store_url)
        try:
            require(repo, "multi_process", "several processes write one store")
            require(repo, "conditional_writes", "the writers insert at expected versions")
            require(repo, "sequences", "the writers number notifications")
        finally:
            repo.close()
        ctx = multiprocessing.get_context("spawn")
        procs = [
            ctx.Process(target=_appender, args=(store_url, w, self.batches_per_process, 2))
            for w in range(self.processes)
        ]
        for p in procs:
            p.start()
        for p in procs:
            p.join(300)
        assert [p.exitcode for p in procs] == [0] * self.processes
        total = self.processes * self.batches_per_process * 2
        with aurora_storage.open(store_url) as repo:
            notes = list(repo.items("app", prefix=("notifications",)))
            numbers = [k[1] for k, _ in notes]
            assert numbers == list(range(1, total + 1)), "gaps or duplicates"
            assert repo.last_sequence("app", "notifications") == total
            events = [(k, v) for k, v in repo.items("app") if k[0] != "notifications"]
            assert len(events) == total, "lost events"
            # Every aggregate's versions are 1..n without gaps, each noted exactly once.
            for agg in ("agg-0", "agg-1", "agg-2"):
                versions = [k[1] for k, _ in events if k[0] == agg]
                assert versions == list(range(1, len(versions) + 1))
            assert sorted(tuple(v) for _, v in notes) == sorted(k for k, _ in events)


def _feed_writer(url: str, n: int) -> None:
    """A writer process for the cross-process feed test."""
    with aurora_storage.open(url) as repo:
        for i in range(n):
            if i % 3 == 2:
                with repo.batch() as b:
                    b.put("t", ("w", i), i)
                    b.delete("t", ("w", i - 1))
            else:
                repo.put("t", ("w", i), i)
            time.sleep(0.001)


class MultiProcessChangeFeedTests(_Base):
    """``watch()`` sees another process's commits (``multi_process_change_feed``)."""

    def test_watch_sees_other_processes(self, repo: Repo, store_url: str) -> None:
        require(repo, "multi_process_change_feed", "the feed must see other processes")
        n = 60
        expected: list[Any] = []
        for i in range(n):
            expected.append((("w", i), i, False))
            if i % 3 == 2:
                expected.append((("w", i - 1), None, True))
        start = repo.last_position()
        proc = multiprocessing.get_context("spawn").Process(
            target=_feed_writer, args=(store_url, n)
        )
        proc.start()
        got: list[Any] = []
        try:
            with repo.watch("t", after=start, timeout=60) as w:
                for c in w:
                    got.append((c.key, c.value, c.deleted))
                    if len(got) == len(expected):
                        break
        finally:
            proc.join(60)
        assert proc.exitcode == 0
        assert got == expected
        # Resuming from the start replays the same changes, in the same order.
        with repo.watch("t", after=start, timeout=0.2) as w:
            assert [(c.key, c.value, c.deleted) for c in w] == expected

    def test_async_watch_sees_other_processes(self, repo: Repo, store_url: str) -> None:
        require(repo, "multi_process_change_feed", "the feed must see other processes")
        n = 15

        async def main() -> list[Any]:
            arepo = repo.as_async()
            got: list[Any] = []
            proc = multiprocessing.get_context("spawn").Process(
                target=_feed_writer, args=(store_url, n)
            )
            async with arepo.watch("t", timeout=60) as w:
                proc.start()
                async for c in w:
                    if not c.deleted:
                        got.append(c.key)
                    if len(got) == n:
                        break
            await asyncio.to_thread(proc.join, 60)
            assert proc.exitcode == 0
            return got

        assert asyncio.run(main()) == [("w", i) for i in range(n)]


class EventStoreTests(
    ConditionalWriteTests,
    SequenceTests,
    ChangeFeedTests,
    PushDownTests,
    MultiProcessAppendTests,
    MultiProcessChangeFeedTests,
):
    """Every event-store conformance test, plus the conditional-write state machine."""

    conditional_state_machine_settings: ClassVar[settings] = settings(
        max_examples=25,
        stateful_step_count=25,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        database=None,
    )

    def test_conditional_state_machine(self, repo: Repo) -> None:
        require(repo, "conditional_writes", "the machine runs conditional batches")
        require(repo, "sequences", "the machine appends")
        machine = ConditionalWriteStateMachine.for_repository(repo)
        run_state_machine_as_test(machine, settings=self.conditional_state_machine_settings)
