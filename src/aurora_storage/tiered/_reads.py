"""The reads of a tiered pair (a mixin of :class:`TieredRepository`).

Projection mode reads the projection (hot): also a read-only pair opened without the
projection of a store recorded in projection mode (``Pair.mode`` is the store's, see
``_recovery.open_pair``; ``Pair.projection`` is then None). Cache mode reads hot and
falls back to cold for point reads (filling hot when ``fill="read"``); scans, counts and
``tenants()`` read cold, which holds every record.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any, Generic, TypeVar, cast

from .. import _args
from .._repository import Repository, TenantView
from ..errors import CorruptionError, RepositoryClosedError
from . import _cache
from ._core import Pair
from ._types import _MISSING

__all__ = ["TieredReads"]

K = TypeVar("K")
V = TypeVar("V")
T = TypeVar("T")


class TieredReads(Generic[K, V]):
    """Read methods over the pair ``self._p`` (see :class:`TieredRepository`)."""

    _p: Pair
    _decode: Callable[[bytes], V]

    def _describe(self) -> str:
        return self._p.describe()

    def _check_open(self) -> None:
        if self._p.closed:
            raise RepositoryClosedError(
                f"the repository {self._describe()} is closed; open it again",
                backend="tiered",
            )

    def _prefix(self, tenant: str) -> bytes:
        return self._p.cold._prefix(tenant)

    # ------------------------------------------------------------------ reads

    def get(self, tenant: str, key: K, default: V | None = None) -> V | None:
        """Projection mode: the projected value. Cache mode: hot, else cold (filling hot
        when ``fill="read"``)."""
        p = self._p
        if p.closed:
            self._check_open()
        if p.mode == "projection":
            try:
                return p.hot.get(tenant, key, default)
            except CorruptionError as exc:
                raise p.damage_error(exc, tenant) from exc
        full = p.cold._full(tenant, key)
        raw = _cache.read(p, full)
        if raw is None:
            return default
        try:
            return self._decode(raw)
        except Exception:
            return p.cold._load(raw, tenant, key)  # type: ignore[no-any-return]  # cold holds V values: cache mode keeps one codec for both tiers

    def has(self, tenant: str, key: K) -> bool:
        """Whether ``(tenant, key)`` holds a value (projection mode: in the projection)."""
        self._check_open()
        p = self._p
        if p.mode == "projection":
            try:
                return p.hot.has(tenant, key)
            except CorruptionError as exc:
                raise p.damage_error(exc, tenant) from exc
        try:
            if p.hot.has(tenant, key):
                return True
        except CorruptionError:
            pass  # a damaged cache record: cold has the answer
        return p.cold.has(tenant, key)

    def get_many(self, tenant: str, keys: Iterable[K], default: V | None = None) -> list[V | None]:
        """Values for ``keys`` in order; cache mode fills hot with cold hits."""
        self._check_open()
        p = self._p
        if p.mode == "projection":
            try:
                return p.hot.get_many(tenant, keys, default)
            except CorruptionError as exc:
                raise p.damage_error(exc, tenant) from exc
        key_list = _args.key_list(keys, "get_many")
        try:
            out: list[Any] = p.hot.get_many(tenant, key_list, _MISSING)
        except CorruptionError:
            # A damaged cache record among them: each key alone (see _cache.read).
            out = []
            for k in key_list:
                raw = _cache.read(p, p.cold._full(tenant, k))
                out.append(default if raw is None else p.cold._load(raw, tenant, k))
            return out
        for i, v in enumerate(out):
            if v is _MISSING:
                raw = _cache.miss(p, p.cold._full(tenant, key_list[i]))
                out[i] = default if raw is None else p.cold._load(raw, tenant, key_list[i])
        return out

    def _checked(self, it: Iterator[T], tenant: str) -> Iterator[T]:
        """``it`` (a scan, already started so that its argument errors are raised
        now); in projection mode, a damaged hot record it meets raises the pair's
        ``CorruptionError``, which names the remedy (see :meth:`Pair.damage_error`)."""
        if self._p.mode == "cache":
            return it  # cache mode scans read cold
        return self._damage_checked(it, tenant)

    def _damage_checked(self, it: Iterator[T], tenant: str) -> Iterator[T]:
        try:
            yield from it
        except CorruptionError as exc:
            raise self._p.damage_error(exc, tenant) from exc

    def _reader(self) -> Repository[Any, Any]:
        self._check_open()
        # Cache mode: cold holds every record, hot only a subset.
        return self._p.cold if self._p.mode == "cache" else self._p.hot

    def keys(
        self,
        tenant: str,
        *,
        prefix: Any = None,
        start: K | None = None,
        stop: K | None = None,
        reverse: bool = False,
        limit: int | None = None,
    ) -> Iterator[K]:
        """See :meth:`Repository.keys` (cache mode reads cold, projection mode hot)."""
        return self._reader().keys(
            tenant, prefix=prefix, start=start, stop=stop, reverse=reverse, limit=limit
        )

    def values(
        self,
        tenant: str,
        *,
        prefix: Any = None,
        start: K | None = None,
        stop: K | None = None,
        reverse: bool = False,
        limit: int | None = None,
    ) -> Iterator[V]:
        """See :meth:`Repository.values`."""
        return self._checked(
            self._reader().values(
                tenant, prefix=prefix, start=start, stop=stop, reverse=reverse, limit=limit
            ),
            tenant,
        )

    def items(
        self,
        tenant: str,
        *,
        prefix: Any = None,
        start: K | None = None,
        stop: K | None = None,
        reverse: bool = False,
        limit: int | None = None,
    ) -> Iterator[tuple[K, V]]:
        """See :meth:`Repository.items`."""
        return self._checked(
            self._reader().items(
                tenant, prefix=prefix, start=start, stop=stop, reverse=reverse, limit=limit
            ),
            tenant,
        )

    def list(self, tenant: str, prefix: Any = None) -> list[K]:
        """See :meth:`Repository.list`."""
        return self._reader().list(tenant, prefix)

    def count(self, tenant: str, *, prefix: Any = None) -> int:
        """See :meth:`Repository.count`."""
        return self._reader().count(tenant, prefix=prefix)

    def tenants(self) -> Iterator[str]:
        """See :meth:`Repository.tenants` (projection mode: tenants with projected data)."""
        return self._reader().tenants()

    def tenant(self, tenant: str) -> TenantView[K, V]:
        """A view bound to one tenant: the same methods without the tenant argument."""
        self._check_open()
        self._prefix(tenant)
        return TenantView(cast("Repository[K, V]", self), str.__str__(tenant))
