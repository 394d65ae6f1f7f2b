"""Conformance tests - batches: put_many, get_many, delete_many and ``batch()``, all or nothing."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from aurora_storage.errors import (
    BatchTooLargeError,
    InvalidKeyError,
    InvalidTenantError,
    KeyTooLargeError,
    SerializationError,
    StorageError,
)

from ._base import (
    Base,
    Boom,
    Repo,
    assert_empty,
)
from ._common import require

__all__ = ["BatchTests"]


class BatchTests(Base):
    """batch() and the all-or-nothing batch calls."""

    def test_batch_commits_puts_and_deletes_across_tenants(self, repo: Repo) -> None:
        repo.put("a", "old", 0)
        with repo.batch() as b:
            b.delete("a", "never-existed")
            b.put("a", "k", 1)
            b.delete("a", "old")
            b.put("b", "k", 2)
            assert len(b) == 4
        assert repo.get("a", "k") == 1
        assert repo.get("b", "k") == 2
        assert not repo.has("a", "old")

    def test_batch_applies_in_order(self, repo: Repo) -> None:
        with repo.batch() as b:
            b.put("t", "x", 1)
            b.delete("t", "x")
            b.delete("t", "y")
            b.put("t", "y", 2)
            b.put("t", "z", 1)
            b.put("t", "z", 3)
        assert not repo.has("t", "x")
        assert repo.get("t", "y") == 2
        assert repo.get("t", "z") == 3

    def test_batch_not_visible_before_commit(self, repo: Repo) -> None:
        with repo.batch() as b:
            b.put("t", "k", 1)
            assert not repo.has("t", "k")
            assert repo.count("t") == 0
        assert repo.has("t", "k")

    def test_batch_discarded_when_block_raises(self, repo: Repo) -> None:
        repo.put("t", "keep", 1)

        def failing_block() -> None:
            with repo.batch() as b:
                b.put("t", "k", 1)
                b.delete("t", "keep")
                raise Boom

        with pytest.raises(Boom):
            failing_block()
        assert not repo.has("t", "k")
        assert repo.get("t", "keep") == 1

    def test_batch_bad_key_raises_and_discards(self, repo: Repo) -> None:
        def block(tenant: Any, key: Any, value: Any) -> None:
            with repo.batch() as b:
                b.put("t", "good", 1)
                b.delete("t", "other")
                b.put(tenant, key, value)

        with pytest.raises(InvalidKeyError):
            block("t", float("nan"), 2)
        with pytest.raises(InvalidTenantError):
            block("", "x", 2)
        with pytest.raises(SerializationError):
            block("t", "bad", object())
        assert_empty(repo)

    def test_batch_explicit_commit_and_reuse(self, repo: Repo) -> None:
        b = repo.batch()
        b.put("t", "k", 1)
        b.commit()
        assert repo.get("t", "k") == 1
        with pytest.raises(StorageError):
            b.put("t", "j", 2)
        with pytest.raises(StorageError):
            b.commit()
        b2 = repo.batch()
        b2.put("t", "j", 2)
        b2.discard()
        with pytest.raises(StorageError):
            b2.commit()
        assert not repo.has("t", "j")

    def test_empty_batch(self, repo: Repo) -> None:
        with repo.batch():
            pass
        assert_empty(repo)

    def test_put_many_bad_value_writes_nothing(self, repo: Repo) -> None:
        repo.put("t", "a", "old")
        with pytest.raises(SerializationError):
            repo.put_many("t", [("a", "new"), ("b", 2), ("c", object()), ("d", 4)])
        assert repo.get("t", "a") == "old"
        assert repo.list("t") == ["a"]

    def test_put_many_bad_key_writes_nothing(self, repo: Repo) -> None:
        with pytest.raises(InvalidKeyError):
            repo.put_many("t", [("a", 1), (object(), 2)])
        with pytest.raises(KeyTooLargeError):
            repo.put_many("t", [("a", 1), ("x" * 1000, 2)])
        assert_empty(repo)

    def test_put_many_failing_iterable_writes_nothing(self, repo: Repo) -> None:
        def gen() -> Iterator[tuple[str, int]]:
            yield ("a", 1)
            yield ("b", 2)
            raise Boom

        with pytest.raises(Boom):
            repo.put_many("t", gen())
        assert_empty(repo)

    def test_delete_many_bad_key_deletes_nothing(self, repo: Repo) -> None:
        repo.put_many("t", {"a": 1, "b": 2})
        with pytest.raises(InvalidKeyError):
            repo.delete_many("t", ["a", {1, 2}, "b"])
        assert list(repo.list("t")) == ["a", "b"]

    def test_large_batch(self, repo: Repo) -> None:
        with repo.batch() as b:
            for i in range(2000):
                b.put(f"t{i % 3}", i, {"i": i})
        assert repo.count("t0") + repo.count("t1") + repo.count("t2") == 2000
        assert repo.get("t2", 1997) == {"i": 1997}

    #: The largest ``capabilities.max_batch_ops`` checked by writing a batch of that
    #: size (a larger bound is skipped, with the reason: the check would take long).
    max_batch_checked = 100_000

    def test_batch_of_max_batch_ops_commits_and_one_more_is_refused(self, repo: Repo) -> None:
        require(repo, "max_batch_ops", "its atomic batches are unbounded")
        bound = repo.capabilities.max_batch_ops
        assert type(bound) is int, bound
        assert bound >= 1, bound
        if bound > self.max_batch_checked:
            pytest.skip(
                f"capabilities.max_batch_ops is {bound}, over max_batch_checked="
                f"{self.max_batch_checked}: a batch that large is not written here"
            )
        with repo.batch() as b:
            for i in range(bound):
                b.put("full", i, i)
        assert repo.count("full") == bound

        def one_more() -> None:
            with repo.batch() as b:
                for i in range(bound + 1):
                    b.put("over", i, i)

        with pytest.raises(BatchTooLargeError):
            one_more()
        with pytest.raises(BatchTooLargeError):
            repo.put_many("over", ((i, i) for i in range(bound + 1)))
        assert repo.count("over") == 0, "a refused batch wrote records"
        assert list(repo.tenants()) == ["full"]
        assert repo.get("full", bound - 1) == bound - 1
