"""Conformance tests - lifecycle and persistence: close, reopen, options, metadata."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

import aurora_storage
from aurora_storage.errors import (
    ConfigurationError,
    RepositoryClosedError,
)

from ._base import (
    Base,
    Repo,
)
from ._common import HOSTILE_TENANTS, SAMPLE_KEYS, require, typed_list

__all__ = ["LifecycleTests", "PersistenceTests"]


def _every_operation(repo: Repo) -> list[tuple[str, Callable[[], Any]]]:
    return [
        ("put", lambda: repo.put("t", "k", 1)),
        ("get", lambda: repo.get("t", "k")),
        ("has", lambda: repo.has("t", "k")),
        ("delete", lambda: repo.delete("t", "k")),
        ("insert", lambda: repo.insert("t", "new", 1)),
        ("put_many", lambda: repo.put_many("t", {"k": 1})),
        ("get_many", lambda: repo.get_many("t", ["k"])),
        ("delete_many", lambda: repo.delete_many("t", ["k"])),
        ("keys", lambda: list(repo.keys("t"))),
        ("values", lambda: list(repo.values("t"))),
        ("items", lambda: list(repo.items("t"))),
        ("list", lambda: repo.list("t")),
        ("count", lambda: repo.count("t")),
        ("tenants", lambda: list(repo.tenants())),
        ("drop_tenant", lambda: repo.drop_tenant("t")),
        ("batch", lambda: repo.batch()),
        ("stats", lambda: repo.stats()),
        ("flush", lambda: repo.flush()),
        ("enter", lambda: repo.__enter__()),
        ("tenant", lambda: repo.tenant("t")),
    ]


class LifecycleTests(Base):
    """close(), context managers, and use after close."""

    def test_close_is_idempotent(self, repo: Repo) -> None:
        assert not repo.closed
        repo.close()
        repo.close()
        assert repo.closed

    def test_backend_close_is_idempotent(self, repo: Repo, store_url: str) -> None:
        """Backend.close() twice is harmless (the contract says idempotent): a failed
        open, a tiered pair and a repository may each close a backend that is already
        closed. The second call must neither raise nor release the store twice."""
        repo.put("t", "k", 1)
        backend = repo.backend
        repo.close()
        backend.close()
        backend.close()
        with aurora_storage.open(store_url) as again:
            again.put("t", "k2", 2)
            assert again.get("t", "k2") == 2
            if again.capabilities.persistent:
                assert again.get("t", "k") == 1

    def test_every_operation_refused_after_close(self, repo: Repo) -> None:
        repo.put("t", "k", 1)
        repo.close()
        for name, call in _every_operation(repo):
            try:
                call()
            except RepositoryClosedError:
                continue
            pytest.fail(f"{name}() worked on a closed repository")

    def test_iterators_made_before_close(self, repo: Repo) -> None:
        repo.put_many("t", {i: i for i in range(20)})
        repo.put("u", 0, 0)
        fresh: list[Iterator[Any]] = [
            repo.keys("t"),
            repo.values("t"),
            repo.items("t"),
            repo.tenants(),
        ]
        started: list[Iterator[Any]] = [
            repo.keys("t"),
            repo.values("t", reverse=True),
            repo.items("t"),
        ]
        for it in started:
            next(it)
        tenants_started = repo.tenants()
        next(tenants_started)
        repo.close()
        for it in [*fresh, *started, tenants_started]:
            with pytest.raises(RepositoryClosedError):
                list(it)

    def test_batch_and_view_made_before_close(self, repo: Repo) -> None:
        b = repo.batch()
        b.put("t", "k", 1)
        view = repo.tenant("t")
        repo.close()
        with pytest.raises(RepositoryClosedError):
            b.commit()
        for call in (view.list, lambda: view.get("k"), lambda: view.put("k", 1), view.drop):
            with pytest.raises(RepositoryClosedError):
                call()

    def test_with_block_closes(self, store_url: str) -> None:
        with aurora_storage.open(store_url) as r:
            r.put("t", "k", 1)
            assert r.get("t", "k") == 1
        assert r.closed
        with pytest.raises(RepositoryClosedError):
            r.get("t", "k")

    def test_closed_error_names_the_problem(self, repo: Repo) -> None:
        repo.close()
        with pytest.raises(RepositoryClosedError, match="closed") as info:
            repo.get("t", "k")
        assert isinstance(info.value, RuntimeError)

    def test_repr_does_not_fail(self, repo: Repo) -> None:
        assert "open" in repr(repo)
        repo.close()
        assert "closed" in repr(repo)


class PersistenceTests(Base):
    """Data survives close and reopen (backends declaring ``persistent``)."""

    def test_data_survives_reopen(self, repo: Repo, store_url: str) -> None:
        require(repo, "persistent", "reopen tests need a persistent store")
        for t in HOSTILE_TENANTS[:6]:
            repo.put_many(t, [(k, i) for i, k in enumerate(SAMPLE_KEYS)])
        repo.put("gone", "k", 1)
        repo.delete("gone", "k")
        repo.put("dropped", "k", 1)
        repo.drop_tenant("dropped")
        with repo.batch() as b:
            b.put("batch", "k", "v")
            b.delete(HOSTILE_TENANTS[0], None)
        expected = {t: list(repo.items(t)) for t in repo.tenants()}
        repo.close()
        with aurora_storage.open(store_url) as again:
            assert sorted(again.tenants()) == sorted(expected)
            for t, items in expected.items():
                got = list(again.items(t))
                assert typed_list(got) == typed_list(items), t
            assert not again.has("gone", "k")
            assert again.get("batch", "k") == "v"
            again.put("after", "k", 2)
        with aurora_storage.open(store_url) as third:
            assert third.get("after", "k") == 2

    def test_flush_then_reopen(self, repo: Repo, store_url: str) -> None:
        require(repo, "persistent", "reopen tests need a persistent store")
        repo.put("t", "k", {"v": 1})
        repo.flush()
        repo.close()
        with aurora_storage.open(store_url) as again:
            assert again.get("t", "k") == {"v": 1}

    def test_codec_is_recorded(self, repo: Repo, store_url: str) -> None:
        require(repo, "persistent", "the recorded codec matters only for a persistent store")
        repo.close()
        url = store_url  # the store now exists with its default codec
        with aurora_storage.open(url) as again:
            codec = again.codec.name
            again.put("t", "k", [1, 2])
        other = "msgpack" if codec != "msgpack" else "json"
        with pytest.raises(ConfigurationError, match=codec):
            aurora_storage.open(url, codec=other)
        with aurora_storage.open(url, codec=codec) as same:
            assert same.get("t", "k") == [1, 2]

    def test_new_store_with_other_codec(self, store_url: str) -> None:
        with aurora_storage.open(store_url, codec="msgpack") as r:
            require(r, "persistent", "the recorded codec matters only for a persistent store")
            r.put("t", "k", {"a": [1, 2]})
        with aurora_storage.open(store_url) as again:
            assert again.codec.name == "msgpack"
            assert again.get("t", "k") == {"a": [1, 2]}
