"""The contenders: the same work done through aurora-storage, the raw engines, the
libraries a Python user might pick instead, and a plain dict.

Every contender runs each operation as a tight loop over prepared keys, so the harness
times one call per operation and loop overhead is the same for all of them. What counts
as "the same work" (see docs/performance.md):

* Keys reach every contender as ``str``; the raw engines turn them into bytes with
  ``tenant_prefix + key.encode()``. The framework's tenant validation and
  order-preserving key encoding are therefore part of its measured overhead.
* Values are the same event dicts; the raw engines encode them with ``orjson`` (the
  framework's default codec). The alternatives store the dict the way their users do
  (they pickle it).
* Semantics match the framework's API: ``delete`` reports whether the key existed,
  ``insert`` writes only when absent, ``put_many`` is one atomic batch, scans are of one
  tenant's key range in key order (the dict contenders and the alternatives filter
  instead, they have no ordered range scan).
* Durability matches the plugins' defaults: RocksDB writes with ``sync=False`` and the WAL
  on; LMDB commits with ``sync=True, metasync=True``.
"""

from __future__ import annotations

import asyncio
import os
import shelve
from collections.abc import Callable, Iterator, Sequence
from typing import Any, cast

import orjson

from workload import TENANT

Items = Sequence[tuple[str, Any]]

#: Tenant prefix of the raw engines' keys (a user's simplest tenant scoping).
RAW_PREFIX = TENANT.encode() + b"\x00"
RAW_END = TENANT.encode() + b"\x01"


class Contender:
    """One way of doing the work. Subclasses implement the loops they support."""

    #: Short name shown in tables.
    name = "?"
    #: Which engine it is compared with ("memory", "rocksdb", "lmdb") or "alt".
    family = "alt"
    #: "framework", "raw", "alt" or "ceiling".
    role = "alt"
    #: Fraction of the op count used for writes (fsync per write is slow by design).
    write_scale = 1.0
    #: Fraction of the op count used for reads.
    read_scale = 1.0
    #: Per-operation fractions overriding the two above.
    op_scale: dict[str, float] = {}  # noqa: RUF012 - read-only class default
    #: Rounds in which its scans run (the slow alternatives scan once or twice).
    scan_rounds = 1_000
    #: Whether it has an async API to compare with its sync one.
    has_async = False

    #: Whether it keeps data on disk (its directory's size is reported).
    on_disk = True
    #: Its directory (set by the runner before ``open``).
    dir: str

    def open(self, workdir: str) -> None:
        """Create or open the store in ``workdir``, a directory of its own."""
        raise NotImplementedError

    def close(self) -> None:
        """Close the store (and flush what the engine flushes at close)."""

    def load(self, tenant: str, items: Items) -> None:
        """Preload (untimed): put ``items`` in batches."""
        for i in range(0, len(items), 10_000):
            self.put_many(tenant, items[i : i + 10_000])

    # the timed loops
    def put(self, keys: Sequence[str], values: Sequence[Any]) -> None:
        raise NotImplementedError

    def get(self, keys: Sequence[str]) -> None:
        raise NotImplementedError

    def has(self, keys: Sequence[str]) -> None:
        raise NotImplementedError

    def delete(self, keys: Sequence[str]) -> None:
        raise NotImplementedError

    def insert(self, keys: Sequence[str], values: Sequence[Any]) -> None:
        raise NotImplementedError

    def put_many(self, tenant: str, items: Items) -> None:
        raise NotImplementedError

    def scan_keys(self) -> int:
        raise NotImplementedError

    def scan_items(self) -> int:
        raise NotImplementedError

    def aget(self, keys: Sequence[str]) -> None:
        raise NotImplementedError

    def aput(self, keys: Sequence[str], values: Sequence[Any]) -> None:
        raise NotImplementedError


# --------------------------------------------------------------------------- framework


class Framework(Contender):
    """aurora-storage through ``aurora_storage.open(url)``."""

    role = "framework"
    has_async = True

    def __init__(self, name: str, family: str, url_of: Callable[[str], str], **kw: Any):
        self.name = name
        self.family = family
        self._url_of = url_of
        self.on_disk = family != "memory"
        self.write_scale = kw.get("write_scale", 1.0)

    def open(self, workdir: str) -> None:
        import aurora_storage
        from aurora_storage import AsyncRepository

        self.url = self._url_of(os.path.join(workdir, "store"))
        self.repo: Any = aurora_storage.open(self.url)
        self.arepo: Any = AsyncRepository(self.repo)
        self._loop = asyncio.new_event_loop()

    def close(self) -> None:
        self.repo.close()
        self._loop.close()

    def put(self, keys: Sequence[str], values: Sequence[Any]) -> None:
        put, t = self.repo.put, TENANT
        for k, v in zip(keys, values, strict=True):
            put(t, k, v)

    def get(self, keys: Sequence[str]) -> None:
        get, t = self.repo.get, TENANT
        for k in keys:
            get(t, k)

    def has(self, keys: Sequence[str]) -> None:
        has, t = self.repo.has, TENANT
        for k in keys:
            has(t, k)

    def delete(self, keys: Sequence[str]) -> None:
        delete, t = self.repo.delete, TENANT
        for k in keys:
            delete(t, k)

    def insert(self, keys: Sequence[str], values: Sequence[Any]) -> None:
        insert, t = self.repo.insert, TENANT
        for k, v in zip(keys, values, strict=True):
            insert(t, k, v)

    def put_many(self, tenant: str, items: Items) -> None:
        self.repo.put_many(tenant, items)

    def scan_keys(self) -> int:
        n = 0
        for _ in self.repo.keys(TENANT):
            n += 1
        return n

    def scan_items(self) -> int:
        n = 0
        for _ in self.repo.items(TENANT):
            n += 1
        return n

    def aget(self, keys: Sequence[str]) -> None:
        async def run() -> None:
            get, t = self.arepo.get, TENANT
            for k in keys:
                await get(t, k)

        self._loop.run_until_complete(run())

    def aput(self, keys: Sequence[str], values: Sequence[Any]) -> None:
        async def run() -> None:
            put, t = self.arepo.put, TENANT
            for k, v in zip(keys, values, strict=True):
                await put(t, k, v)

        self._loop.run_until_complete(run())


# --------------------------------------------------------------------------- raw engines


class DictOrjson(Contender):
    """A dict of bytes keys to orjson bytes: the raw baseline of ``memory://``."""

    name = "dict+orjson"
    family = "memory"
    role = "raw"
    on_disk = False

    def open(self, workdir: str) -> None:
        self.d: dict[bytes, bytes] = {}

    def put(self, keys: Sequence[str], values: Sequence[Any]) -> None:
        d, p, dumps = self.d, RAW_PREFIX, orjson.dumps
        for k, v in zip(keys, values, strict=True):
            d[p + k.encode()] = dumps(v)

    def get(self, keys: Sequence[str]) -> None:
        g, p, loads = self.d.get, RAW_PREFIX, orjson.loads
        for k in keys:
            raw = g(p + k.encode())
            if raw is not None:
                loads(raw)

    def has(self, keys: Sequence[str]) -> None:
        d, p = self.d, RAW_PREFIX
        for k in keys:
            _ = (p + k.encode()) in d

    def delete(self, keys: Sequence[str]) -> None:
        pop, p = self.d.pop, RAW_PREFIX
        for k in keys:
            _ = pop(p + k.encode(), None) is not None

    def insert(self, keys: Sequence[str], values: Sequence[Any]) -> None:
        d, p, dumps = self.d, RAW_PREFIX, orjson.dumps
        for k, v in zip(keys, values, strict=True):
            kb = p + k.encode()
            if kb not in d:
                d[kb] = dumps(v)

    def put_many(self, tenant: str, items: Items) -> None:
        p, dumps = tenant.encode() + b"\x00", orjson.dumps
        self.d.update([(p + k.encode(), dumps(v)) for k, v in items])

    def scan_keys(self) -> int:
        n, p = 0, RAW_PREFIX
        for k in self.d:
            if k.startswith(p):
                k[len(p) :].decode()
                n += 1
        return n

    def scan_items(self) -> int:
        n, p, loads = 0, RAW_PREFIX, orjson.loads
        for k, v in self.d.items():
            if k.startswith(p):
                k[len(p) :].decode()
                loads(v)
                n += 1
        return n


class PlainDict(Contender):
    """A dict of dicts holding the objects: the in-memory ceiling (no encoding at all)."""

    name = "plain dict"
    family = "alt"
    role = "ceiling"
    on_disk = False

    def open(self, workdir: str) -> None:
        self.d: dict[str, dict[str, Any]] = {}

    def _t(self) -> dict[str, Any]:
        return self.d.setdefault(TENANT, {})

    def put(self, keys: Sequence[str], values: Sequence[Any]) -> None:
        d = self._t()
        for k, v in zip(keys, values, strict=True):
            d[k] = v

    def get(self, keys: Sequence[str]) -> None:
        g = self._t().get
        for k in keys:
            g(k)

    def has(self, keys: Sequence[str]) -> None:
        d = self._t()
        for k in keys:
            _ = k in d

    def delete(self, keys: Sequence[str]) -> None:
        pop = self._t().pop
        for k in keys:
            pop(k, None)

    def insert(self, keys: Sequence[str], values: Sequence[Any]) -> None:
        d = self._t()
        for k, v in zip(keys, values, strict=True):
            if k not in d:
                d[k] = v

    def put_many(self, tenant: str, items: Items) -> None:
        self.d.setdefault(tenant, {}).update(items)

    def scan_keys(self) -> int:
        return sum(1 for _ in self._t())

    def scan_items(self) -> int:
        return sum(1 for _ in self._t().items())


class RawRocksDB(Contender):
    """rocksdict in raw mode + orjson, with the plugin's default options."""

    name = "raw rocksdict"
    family = "rocksdb"
    role = "raw"

    def __init__(self, compression: str = "snappy") -> None:
        self.compression = compression

    def open(self, workdir: str) -> None:
        from rocksdict import (
            BlockBasedOptions,
            Cache,
            DBCompressionType,
            Options,
            Rdict,
            ReadOptions,
            WriteOptions,
        )

        opts = Options(raw_mode=True)
        opts.create_if_missing(True)
        opts.set_compression_type(getattr(DBCompressionType, self.compression)())
        opts.set_write_buffer_size(64 * 1024**2)
        opts.set_max_write_buffer_number(2)
        opts.set_max_open_files(-1)
        opts.set_max_background_jobs(2)
        bbo = BlockBasedOptions()
        bbo.set_bloom_filter(10, False)
        bbo.set_block_cache(Cache(32 * 1024**2))
        opts.set_block_based_table_factory(bbo)
        self.db = Rdict(os.path.join(workdir, "store"), options=opts)
        wo = WriteOptions()
        wo.sync = False  # WAL on, no fsync per write: the plugin's default durability
        self.wo = wo
        self.db.set_write_options(wo)
        self._ReadOptions = ReadOptions

    def close(self) -> None:
        self.db.close()

    def put(self, keys: Sequence[str], values: Sequence[Any]) -> None:
        put, p, dumps = self.db.put, RAW_PREFIX, orjson.dumps
        for k, v in zip(keys, values, strict=True):
            put(p + k.encode(), dumps(v))

    def get(self, keys: Sequence[str]) -> None:
        g, p, loads = self.db.get, RAW_PREFIX, orjson.loads
        for k in keys:
            raw = g(p + k.encode())
            if raw is not None:
                loads(raw)

    def has(self, keys: Sequence[str]) -> None:
        g, p = self.db.get, RAW_PREFIX
        for k in keys:
            _ = g(p + k.encode()) is not None

    def delete(self, keys: Sequence[str]) -> None:
        # The API returns whether the key existed, so the raw equivalent reads first.
        g, d, p = self.db.get, self.db.delete, RAW_PREFIX
        for k in keys:
            kb = p + k.encode()
            if g(kb) is not None:
                d(kb)

    def insert(self, keys: Sequence[str], values: Sequence[Any]) -> None:
        g, put, p, dumps = self.db.get, self.db.put, RAW_PREFIX, orjson.dumps
        for k, v in zip(keys, values, strict=True):
            kb = p + k.encode()
            if g(kb) is None:
                put(kb, dumps(v))

    def put_many(self, tenant: str, items: Items) -> None:
        from rocksdict import WriteBatch

        wb = WriteBatch(raw_mode=True)
        p, dumps, put = tenant.encode() + b"\x00", orjson.dumps, wb.put
        for k, v in items:
            put(p + k.encode(), dumps(v))
        self.db.write(wb, self.wo)

    def _ro(self) -> Any:
        ro = self._ReadOptions()
        ro.set_iterate_upper_bound(RAW_END)
        return ro

    def scan_keys(self) -> int:
        n, plen = 0, len(RAW_PREFIX)
        # raw mode: every key is bytes (rocksdict's stubs type a key as any it may hold)
        keys = cast("Iterator[bytes]", self.db.keys(from_key=RAW_PREFIX, read_opt=self._ro()))
        for k in keys:
            k[plen:].decode()
            n += 1
        return n

    def scan_items(self) -> int:
        n, plen, loads = 0, len(RAW_PREFIX), orjson.loads
        items = self.db.items(from_key=RAW_PREFIX, read_opt=self._ro())
        for k, v in cast("Iterator[tuple[bytes, bytes]]", items):  # raw mode: bytes
            k[plen:].decode()
            loads(v)
            n += 1
        return n


class RawLMDB(Contender):
    """py-lmdb + orjson: one read transaction per get, one write transaction per put,
    commits with the plugin's default ``sync=True, metasync=True``."""

    name = "raw lmdb"
    family = "lmdb"
    role = "raw"

    def __init__(self, write_scale: float = 1.0) -> None:
        self.write_scale = write_scale

    def open(self, workdir: str) -> None:
        import lmdb

        self.env = lmdb.open(
            os.path.join(workdir, "store"),
            map_size=8 * 1024**3,
            sync=True,
            metasync=True,
            max_dbs=4,
        )

    def close(self) -> None:
        self.env.close()

    def put(self, keys: Sequence[str], values: Sequence[Any]) -> None:
        begin, p, dumps = self.env.begin, RAW_PREFIX, orjson.dumps
        for k, v in zip(keys, values, strict=True):
            with begin(write=True) as txn:
                txn.put(p + k.encode(), dumps(v))

    def get(self, keys: Sequence[str]) -> None:
        begin, p, loads = self.env.begin, RAW_PREFIX, orjson.loads
        for k in keys:
            with begin() as txn:
                raw = txn.get(p + k.encode())
            if raw is not None:
                loads(raw)

    def has(self, keys: Sequence[str]) -> None:
        begin, p = self.env.begin, RAW_PREFIX
        for k in keys:
            with begin() as txn:
                _ = txn.get(p + k.encode()) is not None

    def delete(self, keys: Sequence[str]) -> None:
        begin, p = self.env.begin, RAW_PREFIX
        for k in keys:
            with begin(write=True) as txn:
                txn.delete(p + k.encode())

    def insert(self, keys: Sequence[str], values: Sequence[Any]) -> None:
        begin, p, dumps = self.env.begin, RAW_PREFIX, orjson.dumps
        for k, v in zip(keys, values, strict=True):
            with begin(write=True) as txn:
                txn.put(p + k.encode(), dumps(v), overwrite=False)

    def put_many(self, tenant: str, items: Items) -> None:
        p, dumps = tenant.encode() + b"\x00", orjson.dumps
        with self.env.begin(write=True) as txn:
            put = txn.put
            for k, v in items:
                put(p + k.encode(), dumps(v))

    def scan_keys(self) -> int:
        n, plen = 0, len(RAW_PREFIX)
        with self.env.begin() as txn:
            cur = txn.cursor()
            if cur.set_range(RAW_PREFIX):
                for k in cur.iternext(keys=True, values=False):
                    if k >= RAW_END:
                        break
                    k[plen:].decode()
                    n += 1
        return n

    def scan_items(self) -> int:
        n, plen, loads = 0, len(RAW_PREFIX), orjson.loads
        with self.env.begin() as txn:
            cur = txn.cursor()
            if cur.set_range(RAW_PREFIX):
                for k, v in cur:
                    if k >= RAW_END:
                        break
                    k[plen:].decode()
                    loads(v)
                    n += 1
        return n


# --------------------------------------------------------------------------- alternatives


class _MappingAlt(Contender):
    """Shared loops of the dict-like alternatives (keys ``tenant/key``)."""

    family = "alt"
    role = "alt"
    store: Any

    def put(self, keys: Sequence[str], values: Sequence[Any]) -> None:
        s, p = self.store, TENANT + "/"
        for k, v in zip(keys, values, strict=True):
            s[p + k] = v

    def get(self, keys: Sequence[str]) -> None:
        g, p = self.store.get, TENANT + "/"
        for k in keys:
            g(p + k)

    def has(self, keys: Sequence[str]) -> None:
        s, p = self.store, TENANT + "/"
        for k in keys:
            _ = (p + k) in s

    def delete(self, keys: Sequence[str]) -> None:
        s, p = self.store, TENANT + "/"
        for k in keys:
            try:
                del s[p + k]
            except KeyError:
                pass

    def insert(self, keys: Sequence[str], values: Sequence[Any]) -> None:
        s, p = self.store, TENANT + "/"
        for k, v in zip(keys, values, strict=True):
            if (p + k) not in s:
                s[p + k] = v

    def put_many(self, tenant: str, items: Items) -> None:
        p = tenant + "/"
        self.store.update([(p + k, v) for k, v in items])

    def scan_keys(self) -> int:
        p = TENANT + "/"
        return sum(1 for k in self.store if k.startswith(p))

    def scan_items(self) -> int:
        p = TENANT + "/"
        return sum(1 for k, _ in self.store.items() if k.startswith(p))


class DiskCache(_MappingAlt):
    """diskcache.Cache with its defaults (SQLite, WAL, synchronous=NORMAL)."""

    name = "diskcache"
    scan_rounds = 1  # ~15 s per scan of 100k: one round is enough to rank it

    def __init__(self, write_scale: float = 1.0) -> None:
        self.write_scale = write_scale

    def open(self, workdir: str) -> None:
        import diskcache

        self.store = diskcache.Cache(workdir, size_limit=2**40, eviction_policy="none")

    def close(self) -> None:
        self.store.close()

    def delete(self, keys: Sequence[str]) -> None:
        d, p = self.store.delete, TENANT + "/"
        for k in keys:
            d(p + k)

    def insert(self, keys: Sequence[str], values: Sequence[Any]) -> None:
        add, p = self.store.add, TENANT + "/"
        for k, v in zip(keys, values, strict=True):
            add(p + k, v)

    def put_many(self, tenant: str, items: Items) -> None:
        s, p = self.store, tenant + "/"
        with s.transact():
            for k, v in items:
                s.set(p + k, v)

    def scan_keys(self) -> int:
        p = TENANT + "/"
        return sum(1 for k in self.store.iterkeys() if k.startswith(p))

    def scan_items(self) -> int:
        s, p = self.store, TENANT + "/"
        return sum(1 for k in s.iterkeys() if k.startswith(p) and s.get(k) is not None)


class SqliteDictAlt(_MappingAlt):
    """sqlitedict with autocommit (each write committed, as a durable store needs)."""

    name = "sqlitedict"
    scan_rounds = 2

    def __init__(self, write_scale: float = 1.0, read_scale: float = 1.0) -> None:
        self.write_scale = write_scale
        self.read_scale = read_scale

    def open(self, workdir: str) -> None:
        from sqlitedict import SqliteDict

        self._file = os.path.join(workdir, "store.sqlite")
        self.store = SqliteDict(self._file, autocommit=True)

    def load(self, tenant: str, items: Items) -> None:
        # With autocommit every row of a batch is its own transaction (minutes for 100k
        # rows); the untimed preload goes through one plain transaction instead.
        from sqlitedict import SqliteDict

        self.store.close()
        with SqliteDict(self._file, autocommit=False) as bulk:
            p = tenant + "/"
            bulk.update([(p + k, v) for k, v in items])
            bulk.commit()
        self.store = SqliteDict(self._file, autocommit=True)

    def close(self) -> None:
        self.store.close()


class Shelve(_MappingAlt):
    """The standard library's shelve (dbm.dumb here: no gdbm/ndbm in this Python)."""

    name = "shelve"
    scan_rounds = 2

    def __init__(self, write_scale: float = 1.0, read_scale: float = 1.0) -> None:
        self.write_scale = write_scale
        self.read_scale = read_scale
        # dbm.dumb rewrites its whole index file on every delete: O(records) each.
        # insert adds the keys delete then removes: the two must match.
        self.op_scale = {"delete": 0.0005, "insert": 0.0005}

    def open(self, workdir: str) -> None:
        # Closed in close(): the store outlives this method.
        self.store = shelve.open(os.path.join(workdir, "store"))  # noqa: SIM115

    def close(self) -> None:
        self.store.close()

    def put_many(self, tenant: str, items: Items) -> None:
        s, p = self.store, tenant + "/"
        for k, v in items:
            s[p + k] = v


# --------------------------------------------------------------------------- same key bytes


class _StoredKeys:
    """Keys exactly as aurora-storage stores them (``aurora_storage.encode_stored_key``):
    the tenant's prefix and the str type code, the key's UTF-8, the END byte. A raw side
    using it writes and reads the very same key bytes as the framework; what it skips is
    the framework's validation, NUL escaping, dispatch and value envelope.

    The benchmark's keys hold no NUL byte, so ``head + key.encode() + b"\\x00"`` is the
    stored key (checked against ``encode_stored_key`` when a tenant is first seen).
    """

    _heads: dict[str, bytes]

    def _head(self, tenant: str) -> bytes:
        try:
            return self._heads[tenant]
        except AttributeError:
            self._heads = {}
        except KeyError:
            pass
        from aurora_storage import encode_stored_key

        head = encode_stored_key(tenant, "")[:-1]
        if encode_stored_key(tenant, "k-1") != head + b"k-1\x00":
            raise RuntimeError("aurora-storage's str key layout changed: update _StoredKeys")
        self._heads[tenant] = head
        return head

    @staticmethod
    def _bounds(tenant: str) -> tuple[bytes, bytes]:
        from aurora_storage import tenant_range

        return tenant_range(tenant)


class StoredKeysRocksDB(_StoredKeys, RawRocksDB):
    """:class:`RawRocksDB` (the plugin's default options and durability) writing and
    reading aurora-storage's own key bytes: the raw side of benchmarks/workloads.py and
    benchmarks/scaling.py."""

    name = "raw rocksdict"

    def put(self, keys: Sequence[str], values: Sequence[Any]) -> None:
        put, h, dumps = self.db.put, self._head(TENANT), orjson.dumps
        for k, v in zip(keys, values, strict=True):
            put(h + k.encode() + b"\x00", dumps(v))

    def get(self, keys: Sequence[str]) -> None:
        g, h, loads = self.db.get, self._head(TENANT), orjson.loads
        for k in keys:
            raw = g(h + k.encode() + b"\x00")
            if raw is not None:
                loads(raw)

    def put_many(self, tenant: str, items: Items) -> None:
        from rocksdict import WriteBatch

        wb = WriteBatch(raw_mode=True)
        h, dumps, put = self._head(tenant), orjson.dumps, wb.put
        for k, v in items:
            put(h + k.encode() + b"\x00", dumps(v))
        self.db.write(wb, self.wo)

    def scan_items(self) -> int:
        return self.scan_from(None, None)

    def scan_from(self, start: str | None, limit: int | None) -> int:
        """Decode keys and values of the tenant in key order from ``start``; return how
        many (at most ``limit``)."""
        lo, hi = self._bounds(TENANT)
        h = self._head(TENANT)
        if start is not None:
            lo = h + start.encode() + b"\x00"
        ro = self._ReadOptions()
        ro.set_iterate_upper_bound(hi)
        n, plen, loads = 0, len(h), orjson.loads
        items = self.db.items(from_key=lo, read_opt=ro)
        for k, v in cast("Iterator[tuple[bytes, bytes]]", items):  # raw mode: bytes
            k[plen:-1].decode()
            loads(v)
            n += 1
            if n == limit:
                break
        return n


class StoredKeysLMDB(_StoredKeys, RawLMDB):
    """:class:`RawLMDB` (``sync=True, metasync=True`` unless told otherwise) writing and
    reading aurora-storage's own key bytes in the main database, as the plugin does."""

    name = "raw lmdb"

    def __init__(self, write_scale: float = 1.0, sync: bool = True) -> None:
        super().__init__(write_scale)
        self.sync = sync

    def open(self, workdir: str) -> None:
        import lmdb

        self.env = lmdb.open(
            os.path.join(workdir, "store"),
            map_size=64 * 1024**3,  # address space only; the file grows with the data
            sync=self.sync,
            metasync=self.sync,
            max_dbs=0,
        )

    def put(self, keys: Sequence[str], values: Sequence[Any]) -> None:
        begin, h, dumps = self.env.begin, self._head(TENANT), orjson.dumps
        for k, v in zip(keys, values, strict=True):
            with begin(write=True) as txn:
                txn.put(h + k.encode() + b"\x00", dumps(v))

    def get(self, keys: Sequence[str]) -> None:
        begin, h, loads = self.env.begin, self._head(TENANT), orjson.loads
        for k in keys:
            with begin() as txn:
                raw = txn.get(h + k.encode() + b"\x00")
            if raw is not None:
                loads(raw)

    def put_many(self, tenant: str, items: Items) -> None:
        h, dumps = self._head(tenant), orjson.dumps
        with self.env.begin(write=True) as txn:
            put = txn.put
            for k, v in items:
                put(h + k.encode() + b"\x00", dumps(v))

    def scan_items(self) -> int:
        return self.scan_from(None, None)

    def scan_from(self, start: str | None, limit: int | None) -> int:
        """As :meth:`StoredKeysRocksDB.scan_from`."""
        lo, hi = self._bounds(TENANT)
        h = self._head(TENANT)
        if start is not None:
            lo = h + start.encode() + b"\x00"
        n, plen, loads = 0, len(h), orjson.loads
        with self.env.begin() as txn:
            cur = txn.cursor()
            if cur.set_range(lo):
                for k, v in cur:
                    if k >= hi:
                        break
                    k[plen:-1].decode()
                    loads(v)
                    n += 1
                    if n == limit:
                        break
        return n
