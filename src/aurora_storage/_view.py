"""A repository bound to one tenant (:meth:`Repository.tenant`)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Generic, TypeVar, overload

from ._eventstore import Version, Watch

if TYPE_CHECKING:
    from ._repository import Repository

__all__ = ["TenantView"]

K = TypeVar("K")
V = TypeVar("V")


class TenantView(Generic[K, V]):
    """A repository bound to one tenant (see :meth:`Repository.tenant`)."""

    def __init__(self, repo: Repository[K, V], tenant: str) -> None:
        self.repository = repo
        self.tenant = tenant

    def put(self, key: K, value: V) -> None:
        """See :meth:`Repository.put`."""
        self.repository.put(self.tenant, key, value)

    @overload
    def get(self, key: K) -> V | None: ...
    @overload
    def get(self, key: K, default: V) -> V: ...
    def get(self, key: K, default: V | None = None) -> V | None:
        """See :meth:`Repository.get`."""
        return self.repository.get(self.tenant, key, default)

    def has(self, key: K) -> bool:
        """See :meth:`Repository.has`."""
        return self.repository.has(self.tenant, key)

    def delete(self, key: K) -> bool:
        """See :meth:`Repository.delete`."""
        return self.repository.delete(self.tenant, key)

    def insert(self, key: K, value: V) -> None:
        """See :meth:`Repository.insert`."""
        self.repository.insert(self.tenant, key, value)

    def put_many(self, items: Mapping[K, V] | Iterable[tuple[K, V]]) -> int:
        """See :meth:`Repository.put_many`."""
        return self.repository.put_many(self.tenant, items)

    def get_many(self, keys: Iterable[K], default: V | None = None) -> list[V | None]:
        """See :meth:`Repository.get_many`."""
        return self.repository.get_many(self.tenant, keys, default)

    def delete_many(self, keys: Iterable[K]) -> int:
        """See :meth:`Repository.delete_many`."""
        return self.repository.delete_many(self.tenant, keys)

    def keys(
        self,
        *,
        prefix: Any = None,
        start: K | None = None,
        stop: K | None = None,
        reverse: bool = False,
        limit: int | None = None,
    ) -> Iterator[K]:
        """See :meth:`Repository.keys`."""
        return self.repository.keys(
            self.tenant, prefix=prefix, start=start, stop=stop, reverse=reverse, limit=limit
        )

    def values(
        self,
        *,
        prefix: Any = None,
        start: K | None = None,
        stop: K | None = None,
        reverse: bool = False,
        limit: int | None = None,
    ) -> Iterator[V]:
        """See :meth:`Repository.values`."""
        return self.repository.values(
            self.tenant, prefix=prefix, start=start, stop=stop, reverse=reverse, limit=limit
        )

    def items(
        self,
        *,
        prefix: Any = None,
        start: K | None = None,
        stop: K | None = None,
        reverse: bool = False,
        limit: int | None = None,
    ) -> Iterator[tuple[K, V]]:
        """See :meth:`Repository.items`."""
        return self.repository.items(
            self.tenant, prefix=prefix, start=start, stop=stop, reverse=reverse, limit=limit
        )

    def list(self, prefix: Any = None) -> list[K]:
        """See :meth:`Repository.list`."""
        return self.repository.list(self.tenant, prefix)

    def count(self, *, prefix: Any = None) -> int:
        """See :meth:`Repository.count`."""
        return self.repository.count(self.tenant, prefix=prefix)

    def drop(self) -> int:
        """Delete all of this tenant's records (see :meth:`Repository.drop_tenant`)."""
        return self.repository.drop_tenant(self.tenant)

    def get_versioned(self, key: K) -> tuple[V | None, Version | None]:
        """See :meth:`Repository.get_versioned`."""
        return self.repository.get_versioned(self.tenant, key)

    def compare_and_set(self, key: K, value: V, *, version: Version | None) -> Version:
        """See :meth:`Repository.compare_and_set`."""
        return self.repository.compare_and_set(self.tenant, key, value, version=version)

    def last_sequence(self, sequence: str) -> int:
        """See :meth:`Repository.last_sequence`."""
        return self.repository.last_sequence(self.tenant, sequence)

    def watch(
        self, *, prefix: Any = None, after: int | None = None, timeout: float | None = None
    ) -> Watch[K, V]:
        """See :meth:`Repository.watch`."""
        return self.repository.watch(self.tenant, prefix=prefix, after=after, timeout=timeout)

    def __repr__(self) -> str:
        return f"<TenantView {self.tenant!r} of {self.repository!r}>"
