"""Conformance tests - tenants: isolation whatever the ids look like, listing and dropping them."""

from __future__ import annotations

from ._base import (
    Base,
    Repo,
)
from ._common import HOSTILE_TENANTS, typed_list

__all__ = ["TenantTests"]


class TenantTests(Base):
    """Isolation of tenants, whatever their ids look like."""

    def test_hostile_tenants_are_isolated(self, repo: Repo) -> None:
        keys = ["", "b", ":b", "b:c", "\x00", ("a", "b"), 1, b"\xff"]
        for t in HOSTILE_TENANTS:
            for k in keys:
                repo.put(t, k, [t, repr(k)])
        for t in HOSTILE_TENANTS:
            assert repo.count(t) == len(keys), t
            assert sorted(map(repr, typed_list(repo.list(t)))) == sorted(
                map(repr, typed_list(keys))
            )
            for _, v in repo.items(t):
                assert v[0] == t
            for k in keys:
                assert repo.get(t, k) == [t, repr(k)]
        assert sorted(repo.tenants()) == sorted(HOSTILE_TENANTS)

    def test_tenants_in_order(self, repo: Repo) -> None:
        for t in HOSTILE_TENANTS:
            repo.put(t, "k", 0)
        assert list(repo.tenants()) == sorted(HOSTILE_TENANTS)

    def test_drop_tenant_leaves_others(self, repo: Repo) -> None:
        for t in HOSTILE_TENANTS:
            repo.put_many(t, dict.fromkeys(range(5), t))
        for i, t in enumerate(HOSTILE_TENANTS):
            assert repo.drop_tenant(t) == 5
            assert repo.count(t) == 0
            for other in HOSTILE_TENANTS[i + 1 :]:
                assert repo.count(other) == 5, (t, other)
                assert set(repo.values(other)) == {other}
        assert list(repo.tenants()) == []

    def test_drop_absent_tenant(self, repo: Repo) -> None:
        repo.put("a:b", "k", 1)
        assert repo.drop_tenant("a") == 0
        assert repo.drop_tenant("nobody") == 0
        assert repo.get("a:b", "k") == 1

    def test_tenant_prefix_key_confusion(self, repo: Repo) -> None:
        # The seed's "tenant:key" layout made these two the same record.
        repo.put("a", "b:c", "tenant a")
        repo.put("a:b", "c", "tenant a:b")
        assert repo.get("a", "b:c") == "tenant a"
        assert repo.get("a:b", "c") == "tenant a:b"
        assert repo.list("a") == ["b:c"]
        assert repo.list("a:b") == ["c"]
        assert repo.list("a", prefix="b") == ["b:c"]

    def test_emptied_tenant_disappears(self, repo: Repo) -> None:
        repo.put("acme", "k", 1)
        repo.put("acme-corp", "k", 1)
        repo.delete("acme", "k")
        assert list(repo.tenants()) == ["acme-corp"]

    def test_tenants_iterator_is_lazy_and_complete(self, repo: Repo) -> None:
        names = [f"tenant-{i:03d}" for i in range(60)]
        for n in names:
            repo.put(n, 0, 0)
            repo.put(n, 1, 1)
        assert sorted(repo.tenants()) == names
