"""The synchronous Repository: tenancy, key encoding, codecs and validation over a Backend."""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Generic, Self, TypeVar

from . import _eventstore, _owners
from ._args import check_scan, key_list, split_pairs
from ._batch import Batch
from ._cancel import Aborted
from ._eventstore import Change, Slot, Version, Watch
from ._keys import (
    MAX_KEY_SIZE,
    NS_DATA,
    NS_DATA_END,
    TENANT_END,
    TenantKeys,
    add_context,
    decode_key_at,
    decode_keys,
    decode_stored_key,
    decode_tenant_key,
)
from ._metadata import FORMAT_VERSION, META_KEY, check_metadata
from ._ordering import ordered_chunks
from ._verify import verify_store
from ._view import TenantView
from .backend import (
    Append,
    AsyncBackend,
    Backend,
    Capabilities,
    Chunk,
    Condition,
    ConditionFailed,
    Op,
    VerifyReport,
    _raise_outside_range,
)
from .codecs import JSON, MSGPACK, RAW, Codec, locate_unencodable
from .errors import (
    CorruptionError,
    InvalidKeyError,
    KeyExistsError,
    ReadOnlyError,
    RepositoryClosedError,
    SerializationError,
    StorageError,
    StoreLockedError,
    VersionConflictError,
)

if TYPE_CHECKING:
    from ._async import AsyncRepository
    from .config import URL

__all__ = [
    "FORMAT_VERSION",
    "META_KEY",
    "Batch",
    "Change",
    "Repository",
    "Slot",
    "TenantView",
    "Version",
    "Watch",
]

K = TypeVar("K")
V = TypeVar("V")
T = TypeVar("T")

#: The codecs whose encode is known to return bytes (others are checked, see _bytes_out).
_BUILTIN_CODECS = (JSON, MSGPACK, RAW)
_BOUNDS_CACHE_MAX = 65_536
#: Scan bounds of recent ``(tenant, prefix)`` pairs for the newest-key lookup: a pure
#: function of the two (the key encoding), so one cache serves every repository.
_BOUNDS_CACHE: dict[tuple[str, Any], tuple[bytes, bytes, int, str | None]] = {}
#: The stored tail of a key ``(s, n)`` after its ``(s,)`` prefix, for each one-byte
#: ``n``: POS, size 1, n, END, the tuple's END (see _element) -> n. A fixed table
#: (255 entries), so the newest-key lookup decodes an aggregate's version with one
#: dictionary lookup.
_ONE_BYTE_TAILS: dict[bytes, int] = {bytes((0x13, 1, n, 0, 0)): n for n in range(1, 256)}


class Repository(TenantKeys, Generic[K, V]):
    """A tenant-scoped, ordered key-value repository over one backend.

    Every record lives under a ``(tenant, key)`` pair. Tenants are non-empty strings and
    are isolated absolutely. Keys are str, int, float, bool, None, bytes, and
    tuples/lists/dicts of these; they are stored with an order-preserving canonical
    encoding, so scans return keys in their natural order. Values go through the store's
    codec (``json`` by default).

    Open one with :func:`aurora_storage.open`, or construct a plugin's subclass directly
    (``RocksDBRepository(path=...)``). Repositories are thread-safe where the backend's
    ``capabilities.thread_safe`` says so, and are context managers.

    Args:
        backend: the bytes-level engine adapter; the repository owns and closes it.
        codec: codec name or object. ``None`` uses the codec recorded in the store, or
            ``json`` for a new store.
        url: the URL it was opened from, for messages.

    Raises:
        ConfigurationError: ``codec`` differs from the store's recorded codec, or the
            store's format version is newer than this library supports.
    """

    #: Whether the backend's scan_chunks takes ``limit`` (set per instance at open).
    _scan_limit = False
    #: Whether the engine returns keys in order (else the repository orders them).
    _ordered = True
    #: Why :meth:`close` is refused (``StoreLockedError``): set while the repository is
    #: a tier of an open tiered pair, which closes it (see _owners); ``None`` otherwise.
    _close_refused: str | None = None

    def __init__(
        self,
        backend: Backend,
        *,
        codec: str | Codec[Any] | None = None,
        url: URL | None = None,
    ) -> None:
        self._backend = backend
        self._url = url
        self._closed = False
        self._close_lock = threading.Lock()
        self._init_keys(backend.scheme)
        self._sequences: dict[tuple[str, str], _eventstore.SequenceKeys] = {}
        try:
            self._codec = check_metadata(backend, codec)
        except BaseException:
            backend.close()
            raise
        codec_ = self._codec
        self._encode: Callable[[Any], bytes] = codec_.encode
        # put_many and batches hold every encoded value until one write: see Codec.encode_held.
        self._encode_held: Callable[[Any], bytes] = codec_.encode_held or codec_.encode
        if codec_ not in _BUILTIN_CODECS:
            # Engines take bytes only: another codec's output is checked (a bytearray or
            # memoryview is copied to bytes; anything else is a SerializationError
            # through _value), the same on every write path.
            self._encode = _bytes_out(self._encode, codec_.name)
            self._encode_held = _bytes_out(self._encode_held, codec_.name)
        self._decode: Callable[[bytes], V] = self._codec.decode
        # Bound once: the hot paths call these without attribute lookups on the backend.
        self._bget = backend.get
        self._bput = backend.put
        self._bdelete = backend.delete
        self._binsert = backend.insert
        self._bcontains = backend.contains
        self._read_only = backend.capabilities.read_only
        #: why writes are refused when the backend is writable (its store belongs to a
        #: tiered pair, see _owners)
        self._read_only_why: str | None = None
        #: The writes through this repository in flight: one entry from before a write
        #: reads ``_read_only`` until its engine call has returned or raised (list
        #: append and pop are atomic). A claim of the store sets ``_read_only`` first and
        #: then waits until this is empty, so a write that passed the check before the
        #: claim has landed when the claim returns (see _owners). ``_awaiting``: the
        #: same for native-async writes, as the ident of the thread whose event loop
        #: awaits them (AsyncRepository).
        self._writing: list[None] = []
        self._awaiting: list[int] = []
        # An older third-party scan_chunks override may not take ``limit``: the
        # repository then cuts the stream itself (see Backend.scan_chunks).
        self._scan_limit = _accepts_limit(backend)
        self._ordered = backend.capabilities.ordered_scans
        #: the live store handle it was opened on (``_backend`` may later be a wrapper,
        #: see aurora_storage.observability): an owner of the handle refuses its writes
        self._store = backend
        _owners.register(self, backend)

    @classmethod
    def _from_backend(
        cls, backend: Backend, *, codec: str | Codec[Any] | None = None, url: URL | None = None
    ) -> Repository[K, V]:
        """Wrap an opened backend (used by :func:`aurora_storage.open`); subclasses with
        their own constructor signature are built through here too."""
        repo = cls.__new__(cls)
        Repository.__init__(repo, backend, codec=codec, url=url)
        return repo

    # ------------------------------------------------------------------ helpers

    def _value(self, value: Any, tenant: str, key: Any, *, held: bool = False) -> bytes:
        try:
            return (self._encode_held if held else self._encode)(value)
        except Exception as exc:
            path, reason = locate_unencodable(self._codec, value, exc)
            raise SerializationError(
                f"the {self._codec.name} codec cannot store the value for key {key!r} "
                f"(tenant {tenant!r}): {path}: {reason}; nothing was written",
                tenant=tenant,
                key=key,
                backend=self._backend.scheme,
                value_path=path,
            ) from exc

    def _load(self, raw: bytes, tenant: str, key: Any) -> V:
        try:
            return self._decode(raw)
        except Exception as exc:
            raise CorruptionError(
                f"the stored value of key {key!r} (tenant {tenant!r}) cannot be decoded "
                f"by the {self._codec.name} codec: {exc}",
                tenant=tenant,
                key=key,
                backend=self._backend.scheme,
            ) from exc

    def _check_open(self) -> None:
        if self._closed:
            raise RepositoryClosedError(
                f"the repository {self._describe()} is closed; open it again",
                backend=self._backend.scheme,
            )

    def _check_writable(self) -> None:
        """Raise if writes are refused. A write that goes on to its engine call calls
        this with the write already recorded in ``_writing`` (or ``_awaiting``), until
        that call is done: a claim of the store waits for it (see _owners). Called
        unrecorded only to refuse early (``batch()``, ``compare_and_set()``), before the
        recorded commit."""
        self._check_open()
        if self._read_only:
            raise ReadOnlyError(
                self._read_only_why or f"the repository {self._describe()} was opened read-only",
                backend=self._backend.scheme,
            )

    def _refuse_writes(self, why: str) -> None:
        """Refuse every write through this repository until :meth:`_allow_writes`
        (``ReadOnlyError`` saying ``why``); its backend stays writable for the owner that
        holds it (a tiered pair writes its tiers through their backends). Called by
        :mod:`aurora_storage._owners` for every repository over a claimed store."""
        self._read_only = True
        self._read_only_why = why

    def _allow_writes(self) -> None:
        """Undo :meth:`_refuse_writes`: writable again, unless the store is read-only."""
        self._read_only = self._store.capabilities.read_only
        self._read_only_why = None

    def _describe(self) -> str:
        return str(self._url) if self._url is not None else self._backend.describe()

    @classmethod
    def _overrides(cls, name: str) -> bool:
        """Whether this class replaces Repository's method ``name`` (the async twin
        then runs the replacement as one step instead of the core's cancellable one)."""
        return getattr(cls, name) is not getattr(Repository, name)

    # ------------------------------------------------------------------ properties

    @property
    def backend(self) -> Backend:
        """The bytes-level backend (for plugins and advanced use)."""
        return self._backend

    @property
    def codec(self) -> Codec[Any]:
        """The value codec of this store."""
        return self._codec

    @property
    def capabilities(self) -> Capabilities:
        """What the backend supports (ordered scans, atomic batches, multi-process ...)."""
        return self._backend.capabilities

    @property
    def url(self) -> URL | None:
        """The URL this repository was opened from, if any (secrets hidden when printed)."""
        return self._url

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    # ------------------------------------------------------------------ point ops

    def put(self, tenant: str, key: K, value: V) -> None:
        """Store ``value`` under ``(tenant, key)``, replacing any previous value.

        Raises:
            InvalidTenantError, InvalidKeyError, KeyTooLargeError: bad tenant or key.
            SerializationError: the codec cannot encode ``value``; nothing was written.
            ReadOnlyError, RepositoryClosedError.
        """
        writing = self._writing
        writing.append(None)  # before the check: see _writing
        try:
            if self._closed or self._read_only:
                self._check_writable()
            full = self._full(tenant, key)
            try:
                data = self._encode(value)
            except Exception:
                data = self._value(value, tenant, key)
            self._bput(full, data)
        finally:
            writing.pop()

    def get(self, tenant: str, key: K, default: V | None = None) -> V | None:
        """The value under ``(tenant, key)``, or ``default`` when absent."""
        if self._closed:
            self._check_open()
        # _full's str path inlined (one Python frame fewer on the hottest read), built
        # from the tenant's text head (see TenantKeys._text_prefixes); any other key,
        # an uncached tenant or one without a text head, a NUL to escape or a long key
        # go through _full.
        if type(key) is str and type(tenant) is str:
            try:
                full = f"{self._text_prefixes[tenant]}{key}\x00".encode()
            except (KeyError, UnicodeEncodeError):
                full = self._full(tenant, key)
            else:
                if "\x00" in key or len(full) > MAX_KEY_SIZE:  # type: ignore[operator]  # K is str here
                    full = self._full(tenant, key)
        else:
            full = self._full(tenant, key)
        backend = self._backend
        fget = backend.fast_get
        if fget is not None:
            # The engine's own read, untranslated: an error of any kind is translated by
            # asking the backend's get() the same question (see Backend.fast_get).
            try:
                raw = fget(full)
            except Exception:
                raw = self._get_slow(full, tenant, key)
        else:
            try:
                raw = self._bget(full)
            except StorageError as exc:
                _locate_error(exc, backend.scheme, tenant, key)
                raise
        if raw is None:
            return default
        try:
            return self._decode(raw)
        except Exception:
            return self._load(raw, tenant, key)

    def _get_slow(self, full: bytes, tenant: str, key: Any) -> bytes | None:
        """get() after the engine's fast read raised: the backend's own get() for the
        typed error (named with the user's tenant and key), or the value if the failure
        has passed."""
        try:
            return self._bget(full)
        except StorageError as exc:
            _locate_error(exc, self._backend.scheme, tenant, key)
            raise

    def has(self, tenant: str, key: K) -> bool:
        """Whether ``(tenant, key)`` holds a value."""
        if self._closed:
            self._check_open()
        full = self._full(tenant, key)
        try:
            return self._bcontains(full)
        except StorageError as exc:
            _locate_error(exc, self._backend.scheme, tenant, key)
            raise

    def delete(self, tenant: str, key: K) -> bool:
        """Remove ``(tenant, key)``; return whether it existed."""
        writing = self._writing
        writing.append(None)
        try:
            if self._closed or self._read_only:
                self._check_writable()
            return self._bdelete(self._full(tenant, key))
        finally:
            writing.pop()

    def insert(self, tenant: str, key: K, value: V) -> None:
        """Store ``value`` only if ``(tenant, key)`` is absent.

        Raises:
            KeyExistsError: the key exists; nothing was written.
        """
        writing = self._writing
        writing.append(None)
        try:
            if self._closed or self._read_only:
                self._check_writable()
            full = self._full(tenant, key)
            try:
                data = self._encode(value)
            except Exception:
                data = self._value(value, tenant, key)
            inserted = self._binsert(full, data)
        finally:
            writing.pop()
        if not inserted:
            raise KeyExistsError(
                f"key {key!r} already exists for tenant {tenant!r}; use put() to overwrite",
                tenant=tenant,
                key=key,
                backend=self._backend.scheme,
            )

    # ------------------------------------------------------------------ batches

    def put_many(self, tenant: str, items: Mapping[K, V] | Iterable[tuple[K, V]]) -> int:
        """Store many values atomically (all or nothing); return how many.

        Args:
            tenant: the tenant.
            items: a mapping, or an iterable of ``(key, value)`` pairs.

        Returns:
            The number of items stored.

        Raises:
            InvalidArgumentError: an item is not a pair. InvalidTenantError,
            InvalidKeyError, KeyTooLargeError: a key (or the tenant) the store cannot
            hold. SerializationError: a value the codec cannot store. Nothing is written.
            With several faults, the first check that fails decides the error, in this
            order on every path (sync, async): every item a pair, then every key, then
            the values.
        """
        return self._put_many(tenant, items, None)

    def _put_many(
        self,
        tenant: str,
        items: Mapping[K, V] | Iterable[tuple[K, V]],
        abort: Callable[[], bool] | None,
    ) -> int:
        """put_many; ``abort`` (the async twin's cancellation) is asked before the commit
        point and makes the whole call write nothing (:class:`~aurora_storage._cancel.Aborted`)."""
        writing = self._writing
        writing.append(None)  # before the check: see _writing
        try:
            self._check_writable()
            backend = self._backend
            enc = self._encode if backend.streams_writes else self._encode_held
            if abort is not None:
                # The async twin: values encoded item by item, so a cancellation is seen
                # between items (the pairs and keys are checked first, as below).
                return backend.write_iter(self._encoded(tenant, items, enc, abort))
            # The batch path: every key encoded in one pass (validating the tenant even
            # with no items), then the engine gets the ready keys and the values as they
            # are encoded (Backend.write_puts), without a Python frame per item.
            keys, values = split_pairs(items, "put_many")
            fulls = self._fulls(tenant, keys)
            if not fulls:
                return 0
            try:
                return backend.write_puts(fulls, map(enc, values))
            except StorageError:
                raise
            except Exception:
                # The codec refused a value (nothing was written): find which, for the
                # typed error with the value's path.
                for key, value in zip(keys, values, strict=True):
                    try:
                        enc(value)
                    except Exception:
                        self._value(value, tenant, key, held=not backend.streams_writes)
                raise  # pragma: no cover - a codec that failed once and not again
        finally:
            writing.pop()

    def _encoded(
        self,
        tenant: str,
        items: Mapping[K, V] | Iterable[tuple[K, V]],
        enc: Callable[[Any], bytes],
        abort: Callable[[], bool] | None = None,
    ) -> Iterator[tuple[bytes, bytes]]:
        """``put_many``'s stored pairs, each value encoded as it is taken. The items are
        checked in the order the batch path checks them - every item a pair, then every
        key (and the tenant, even with no items), then the values - so a call holding
        several faults raises the same error on every path (sync, async, native async).

        Raises (when first advanced):
            InvalidArgumentError, InvalidTenantError, InvalidKeyError, KeyTooLargeError,
            SerializationError: as :meth:`put_many`.
        """
        keys, values = split_pairs(items, "put_many")
        fulls = self._fulls(tenant, keys)
        for k, key, value in zip(fulls, keys, values, strict=True):
            try:
                v = enc(value)
            except Exception:
                v = self._value(value, tenant, key)
            if abort is not None and abort():
                raise Aborted
            yield k, v
        # The last chance to write nothing: the backend commits after this generator ends.
        if abort is not None and abort():
            raise Aborted

    def get_many(self, tenant: str, keys: Iterable[K], default: V | None = None) -> list[V | None]:
        """Values for ``keys`` in order; ``default`` for absent ones."""
        self._check_open()
        self._prefix(tenant)  # a bad tenant fails even with no keys
        wanted = key_list(keys, "get_many")
        try:
            raws = self._backend.get_many([self._full(tenant, k) for k in wanted])
        except StorageError as exc:
            _locate_error(exc, self._backend.scheme)
            raise
        out: list[V | None] = []
        for key, raw in zip(wanted, raws, strict=True):
            out.append(default if raw is None else self._load(raw, tenant, key))
        return out

    def delete_many(self, tenant: str, keys: Iterable[K]) -> int:
        """Remove ``keys`` in one atomic batch; return how many existed."""
        return self._delete_many(tenant, keys, None)

    def _delete_many(self, tenant: str, keys: Iterable[K], abort: Callable[[], bool] | None) -> int:
        writing = self._writing
        writing.append(None)  # before the check: see _writing
        try:
            self._check_writable()
            self._prefix(tenant)  # a bad tenant fails even with no keys
            wanted = key_list(keys, "delete_many")
            fulls = list(dict.fromkeys(self._full(tenant, k) for k in wanted))
            if not fulls:
                return 0
            present = sum(1 for raw in self._backend.get_many(fulls) if raw is not None)
            if abort is not None and abort():
                raise Aborted
            self._backend.write([(k, None) for k in fulls])
            return present
        finally:
            writing.pop()

    def batch(self) -> Batch[K, V]:
        """A batch of puts and deletes across tenants, committed atomically when the
        ``with`` block ends and discarded if it raises::

            with repo.batch() as b:
                b.put("acme", "order-1", {...})
                b.delete("acme", "order-0")
        """
        self._check_writable()
        return Batch(self)

    def _write(self, ops: list[Op]) -> None:
        """A batch's plain commit (see Batch)."""
        writing = self._writing
        writing.append(None)  # before the check: see _writing
        try:
            self._check_writable()
            if ops:
                self._backend.write(ops)
        finally:
            writing.pop()

    # ------------------------------------------------------------------ scans

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
        """Stream the tenant's keys in key order (``start`` inclusive, ``stop`` exclusive).

        Args:
            prefix: a str/bytes prefix of str/bytes keys, or a tuple of leading elements
                of tuple keys.
            reverse: descending order.
            limit: at most this many keys.
        """
        if (
            limit == 1
            and type(limit) is int
            and start is None
            and stop is None
            and (reverse is True or reverse is False)
        ):
            # The first or newest key of a prefix ("the aggregate's current version",
            # "the highest notification id"): one engine seek, inlined here (a hot path
            # whose cost is mostly the calls around the seek).
            if self._closed:
                self._check_open()
            # Cached for plain str tenants and str / (str,) prefixes only: a subclass
            # lying in __eq__/__hash__ must not match another prefix's bounds.
            tp = type(prefix)
            if type(tenant) is str and (
                tp is str or (tp is tuple and len(prefix) == 1 and type(prefix[0]) is str)
            ):
                try:
                    lo, hi, plen, first = _BOUNDS_CACHE[(tenant, prefix)]
                except KeyError:
                    lo, hi, plen, first = self._one_key_bounds(tenant, prefix)
            else:
                lo, hi, plen, first = self._one_key_bounds(tenant, prefix)
            backend = self._backend
            k = backend.last_key(lo, hi) if reverse else backend.first_key(lo, hi)
            if k is None:
                return iter(())
            if first is not None:
                # A key (first, n) with a small positive n - an aggregate's version, a
                # sequence's number - is lo, then 0x13 <size> <n: size bytes> 0x00 0x00
                # (see _keys); decoded from those bytes, the first element is the
                # prefix's own str. Any other key goes to the decoder.
                i = len(lo)
                n = _ONE_BYTE_TAILS.get(k[i:])  # n < 256: most aggregates' versions
                if n is not None:
                    return iter(((first, n),))  # type: ignore[arg-type]  # K is this tuple key
                size = len(k) - i - 4
                if 0 < size <= 8 and k[i] == 0x13 and k[i + 1] == size and k[-2:] == b"\x00\x00":
                    return iter(((first, int.from_bytes(k[i + 2 : -2], "big")),))  # type: ignore[arg-type]  # K is this tuple key
            return iter((decode_key_at(k, plen),))
        self._check_open()
        lo, hi, plen = self._bounds(tenant, prefix, start, stop)
        check_scan(reverse, limit)
        return self._iter(self._chunks(lo, hi, reverse, False, limit), limit, plen, 0, tenant)

    def _one_key_bounds(self, tenant: str, prefix: Any) -> tuple[bytes, bytes, int, str | None]:
        """The bounds of ``prefix`` for ``keys(..., limit=1)`` (validating it), and the
        str ``s`` of a ``(s,)`` prefix; cached for ``str`` and ``(str,)`` prefixes."""
        lo, hi, plen = self._bounds(tenant, prefix, None, None)
        t = type(prefix)
        if type(tenant) is str and (
            t is str or (t is tuple and len(prefix) == 1 and type(prefix[0]) is str)
        ):
            got = (lo, hi, plen, prefix[0] if t is tuple else None)
            if len(_BOUNDS_CACHE) >= _BOUNDS_CACHE_MAX:
                _BOUNDS_CACHE.clear()
            _BOUNDS_CACHE[(tenant, prefix)] = got
            return got
        return lo, hi, plen, None

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
        """Stream the tenant's values in key order (same arguments as :meth:`keys`)."""
        self._check_open()
        lo, hi, plen = self._bounds(tenant, prefix, start, stop)
        check_scan(reverse, limit)
        return self._iter(self._chunks(lo, hi, reverse, True, limit), limit, plen, 1, tenant)

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
        """Stream ``(key, value)`` pairs in key order (same arguments as :meth:`keys`)."""
        self._check_open()
        lo, hi, plen = self._bounds(tenant, prefix, start, stop)
        check_scan(reverse, limit)
        return self._iter(self._chunks(lo, hi, reverse, True, limit), limit, plen, 2, tenant)

    def _chunks(
        self, lo: bytes, hi: bytes, reverse: bool, values: bool, limit: int | None
    ) -> Iterator[Chunk]:
        # The one read path of every scan: Backend.scan_chunks, put in key order here
        # when the engine does not keep it (see aurora_storage._ordering for the cost).
        if not self._ordered:
            return ordered_chunks(
                functools.partial(self._backend.scan_chunks, values=values),
                lo,
                hi,
                reverse=reverse,
                values=values,
                limit=limit,
            )
        if limit is not None and self._scan_limit:
            return self._backend.scan_chunks(lo, hi, reverse=reverse, values=values, limit=limit)
        return self._backend.scan_chunks(lo, hi, reverse=reverse, values=values)

    def _iter(
        self, chunks: Iterator[Chunk], limit: int | None, plen: int, mode: int, tenant: str
    ) -> Iterator[Any]:
        # Per item, only the closed check, the value decode and the yield remain in
        # Python: keys are decoded a chunk at a time (decode_keys).
        decode = self._decode
        left = limit
        try:
            if left == 0:
                return
            for keys, raws in chunks:
                if left is not None:
                    if len(keys) > left:
                        keys = keys[:left]
                        if raws is not None:
                            raws = raws[:left]
                    left -= len(keys)
                if mode == 0:
                    for key in decode_keys(keys, plen):
                        if self._closed:
                            self._check_open()
                        yield key
                elif mode == 1:
                    assert raws is not None
                    for k, raw in zip(keys, raws, strict=True):
                        if self._closed:
                            self._check_open()
                        try:
                            value = decode(raw)
                        except Exception:
                            value = self._load(raw, tenant, decode_key_at(k, plen))
                        yield value
                else:
                    assert raws is not None
                    for key, raw in zip(decode_keys(keys, plen), raws, strict=True):
                        if self._closed:
                            self._check_open()
                        try:
                            value = decode(raw)
                        except Exception:
                            value = self._load(raw, tenant, key)
                        yield key, value
                if left == 0:
                    return
        except StorageError as exc:
            _locate_error(exc, self._backend.scheme)
            raise
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()

    def list(self, tenant: str, prefix: Any = None) -> list[K]:
        """All of the tenant's keys (optionally under ``prefix``), in key order."""
        return list(self.keys(tenant, prefix=prefix))

    def count(self, tenant: str, *, prefix: Any = None) -> int:
        """Number of the tenant's keys (optionally under ``prefix``)."""
        self._check_open()
        lo, hi, _ = self._bounds(tenant, prefix, None, None)
        return self._backend.count_range(lo, hi)

    def tenants(self) -> Iterator[str]:
        """Stream the ids of the tenants that hold data, in tenant order."""
        self._check_open()
        return self._tenants()

    def _tenants(self) -> Iterator[str]:
        lo = NS_DATA
        while True:
            self._check_open()
            first = self._backend.first_key(lo, NS_DATA_END)
            if first is None:
                return
            if not lo <= first < NS_DATA_END:
                # Looping on it would yield one tenant forever (a plugin whose scans
                # ignored part of ``start`` did exactly that).
                _raise_outside_range(self._backend, "first_key", first, lo, NS_DATA_END)
            try:
                tenant, end = decode_tenant_key(first)
            except ValueError as exc:
                raise CorruptionError(f"a stored key has a damaged tenant: {exc}") from exc
            yield tenant
            lo = first[:end] + TENANT_END

    def drop_tenant(self, tenant: str) -> int:
        """Delete every record of ``tenant``; return how many there were."""
        writing = self._writing
        writing.append(None)  # before the check: see _writing
        try:
            self._check_writable()
            p = self._prefix(tenant)
            return self._backend.delete_range(p, p + TENANT_END)
        finally:
            writing.pop()

    def as_async(self) -> AsyncRepository[K, V]:
        """The asynchronous twin over this repository (what :func:`open_async` returns).
        Subclasses with extra operations return their own async class."""
        # Imported here: `import aurora_storage` loads no asyncio until async is used.
        from ._async import AsyncRepository

        return AsyncRepository(self)

    def _native_async(self) -> AsyncBackend | None:
        """The native-async form :class:`AsyncRepository` may await *instead of* this
        repository's methods: its backend's (:meth:`Backend.native_async`), or ``None``
        (then every call goes through this repository's own methods). A subclass that
        replaces a method on that path behaves otherwise than its backend (a tiered pair
        writes a change log and projects), so it never gets it."""
        if any(map(type(self)._overrides, _NATIVE_PATH)):
            return None
        return self._backend.native_async()

    def _blocking_reads(self) -> bool:
        """Whether this repository's own reads may wait on a network round trip (its
        backend has a native-async form): :class:`AsyncRepository` then runs them in a
        worker thread when it does not await that form itself."""
        return self._backend.native_async() is not None

    def tenant(self, tenant: str) -> TenantView[K, V]:
        """A view bound to one tenant: the same methods without the tenant argument.

        Raises:
            InvalidTenantError: ``tenant`` is not a non-empty str.
        """
        self._check_open()
        self._prefix(tenant)
        return TenantView(self, str.__str__(tenant))

    # ------------------------------------------------------------------ event store

    def get_versioned(self, tenant: str, key: K) -> tuple[V | None, Version | None]:
        """The value under ``(tenant, key)`` and its :class:`Version`, for
        :meth:`compare_and_set`; ``(None, None)`` when absent.

        A version is a digest of the stored value only (no key, tenant or store
        identity): an equal value elsewhere, or the same value again after a change
        (A -> B -> A, a delete and put), has the same version; keep a counter in the
        value where that matters (docs/eventsourcing.md).

        Raises:
            NotSupportedError: the backend does not declare ``conditional_writes``
                (versions exist for compare-and-set).
            InvalidTenantError, InvalidKeyError, RepositoryClosedError.
        """
        if self._closed:
            self._check_open()
        _eventstore.require(self, "conditional_writes", "get_versioned()")
        got = self._backend.get_versioned(self._full(tenant, key))
        if got is None:
            return None, None
        raw, version = got
        return self._load(raw, tenant, key), Version(version)

    def compare_and_set(self, tenant: str, key: K, value: V, *, version: Version | None) -> Version:
        """Store ``value`` only if the record's current version is ``version``
        (``None``: only if the key is absent), atomically in the engine.

        A version is a digest of the stored value only (no key, tenant or store
        identity): an equal value elsewhere, or the same value again after a change
        (A -> B -> A, a delete and put), has the same version; keep a counter in the
        value where that matters (docs/eventsourcing.md).

        Returns:
            The record's new version (hand it to the next ``compare_and_set``).

        Raises:
            VersionConflictError: the current version differs; nothing was written.
            NotSupportedError: the backend does not declare ``conditional_writes``.
            SerializationError, InvalidTenantError, InvalidKeyError, ReadOnlyError,
            RepositoryClosedError.
        """
        self._check_writable()
        _eventstore.require(self, "conditional_writes", "compare_and_set()")
        with self.batch() as b:
            b.compare_and_set(tenant, key, value, version=version)
        return b._version(0)

    def last_sequence(self, tenant: str, sequence: str) -> int:
        """The last number :meth:`Batch.append` assigned in ``(tenant, sequence)``; 0 if
        nothing was appended yet. Numbers are never reused (not even after
        :meth:`drop_tenant` or deleting records).

        Raises:
            NotSupportedError: the backend does not declare ``sequences``.
        """
        self._check_open()
        _eventstore.require(self, "sequences", "last_sequence()")
        name = _eventstore.check_sequence(sequence)
        key = _eventstore.counter_key(_eventstore.sequence_prefix(self._prefix(tenant), name))
        from .backend import decode_counter

        return decode_counter(self._backend.get(key), key)

    def last_position(self) -> int:
        """The change feed's newest position: ``watch(t, after=repo.last_position())``
        sees exactly the changes committed after this call.

        Raises:
            NotSupportedError: the backend does not declare ``change_feed``.
        """
        self._check_open()
        _eventstore.require(self, "change_feed", "last_position()")
        return self._backend.change_feed().last_position()

    def watch(
        self,
        tenant: str,
        *,
        prefix: Any = None,
        after: int | None = None,
        timeout: float | None = None,
    ) -> Watch[K, V]:
        """The committed changes of ``tenant`` (optionally only keys under ``prefix``),
        in commit order, as an iterator that waits for new ones::

            with repo.watch("acme", prefix=("order",), timeout=5) as changes:
                for change in changes:
                    print(change.position, change.key, change.value)

        Args:
            after: ``None``: only changes committed after this call. ``N``: every change
                with position > N (resume with the last position seen, or
                :attr:`Watch.position`: nothing missed, nothing repeated).
            timeout: seconds to wait for the next change before the iteration ends
                (``None``: wait forever; close the watch from another thread to stop).
                ``float("inf")``, or any value past ``threading.TIMEOUT_MAX`` (about
                292 years), waits forever too; NaN is refused.

        Which changes a feed sees: every change committed through this repository's
        backend; with ``capabilities.multi_process_change_feed`` also those of other
        processes. A batch's changes come in the order it applies them: its puts and
        deletes in call order, then its appends (:meth:`Batch.append`).

        Raises:
            NotSupportedError: the backend does not declare ``change_feed``.
            PositionExpiredError: (when iterating) ``after`` is older than the feed keeps.
            InvalidTenantError, InvalidKeyError (bad prefix), InvalidArgumentError (bad
            ``after``/``timeout``), RepositoryClosedError.
        """
        self._check_open()
        _eventstore.require(self, "change_feed", "watch()")
        lo, hi, plen = self._bounds(tenant, prefix, None, None)
        after, timeout = _eventstore.watch_arguments(after, timeout)
        feed = self._backend.change_feed().scoped(lo, hi)
        start = feed.last_position() if after is None else after
        # Change.tenant is the plain str value, as tenants() gives it (a str subclass or
        # enum member passed here is read as its value, never through its own methods).
        plain = tenant if type(tenant) is str else str.__str__(tenant)
        return Watch(self, plain, lo, hi, plen, feed, start, timeout)

    def _commit(
        self,
        ops: Sequence[Op],
        conditions: Sequence[Condition],
        kinds: Sequence[tuple[str, Any, Version | None]],
        appends: Sequence[Append],
    ) -> Sequence[int]:
        """A conditional commit, with the backend's condition failures translated."""
        writing = self._writing
        writing.append(None)  # before the check: see _writing
        try:
            self._check_writable()
            return list(self._backend.commit(ops, conditions=conditions, appends=appends))
        except ConditionFailed as exc:
            failed = exc.failed
            # Drop the backend's frames: the user's error must not keep engine objects
            # (and the store) alive for as long as it is held.
            exc.__traceback__ = None
        finally:
            writing.pop()
        raise self._conflict(kinds, failed) from None

    def _conflict(
        self,
        kinds: Sequence[tuple[str, Any, Version | None]],
        failed: Sequence[tuple[int, bytes | None]],
    ) -> StorageError:
        existing = [kinds[i] for i, _ in failed if kinds[i][0] == "insert"]
        if existing:
            keys = [key for _, (tenant, key), _ in existing]
            tenant = existing[0][1][0]
            return KeyExistsError(
                f"{len(keys)} key(s) inserted by the batch already exist: "
                f"{', '.join(f'{k!r} (tenant {t!r})' for _, (t, k), _ in existing[:5])}"
                f"{' ...' if len(keys) > 5 else ''}; nothing of the batch was written",
                tenant=tenant,
                key=keys[0],
                keys=keys,
                backend=self._backend.scheme,
            )
        i, actual = failed[0]
        _, (tenant, key), expected = kinds[i]
        got = None if actual is None else Version(actual)
        return VersionConflictError(
            f"compare_and_set of key {key!r} (tenant {tenant!r}) expected "
            f"{'absence' if expected is None else expected} but found "
            f"{'absence' if got is None else got}; nothing was written. Read it again "
            "with get_versioned() and retry",
            tenant=tenant,
            key=key,
            expected=expected,
            actual=got,
            backend=self._backend.scheme,
        )

    # ------------------------------------------------------------------ lifecycle

    def stats(self) -> dict[str, Any]:
        """Engine figures (size on disk, key counts, engine properties) plus the codec."""
        self._check_open()
        out: dict[str, Any] = {"backend": self._backend.scheme, "codec": self._codec.name}
        out.update(self._backend.stats())
        return out

    def flush(self) -> None:
        """Make every acknowledged write durable against an OS crash."""
        self._check_open()
        self._backend.flush()

    def verify(self) -> VerifyReport:
        """Check the whole store now: the engine's own structure where the backend can
        check it (LMDB: its structural verifier), every record's integrity check (LMDB:
        the envelope checksum), and that every key and value decodes. Reads everything,
        so it takes time in proportion to the store's size (see the backend's page).

        Returns:
            A frozen :class:`~aurora_storage.backend.VerifyReport`: ``records``
            checked (the user's records; the store's own records are checked but not
            counted), and ``problems`` with the tenant and key of each damaged record
            where they can be told. ``report.ok`` for a healthy store.

        Raises:
            RepositoryClosedError: the repository is closed. Damage is reported in
                the result, not raised.
        """
        self._check_open()
        return verify_store(self._backend, self._decode, self._codec.name)

    def close(self) -> None:
        """Close the repository and its backend. Idempotent; any later use (including
        iterators created before) raises :class:`RepositoryClosedError`.

        Raises:
            StoreLockedError: the repository is a tier of an open tiered pair (the
                message names it): close that pair, which closes its tiers. Nothing
                changes.
        """
        with self._close_lock:
            if self._closed:
                return
            self._check_closable()
            self._closed = True
            self._backend.close()

    def _check_closable(self) -> None:
        """Raise ``StoreLockedError`` if :meth:`close` is refused (see
        ``_close_refused``); an already closed repository may be closed again."""
        why = self._close_refused
        if why is not None and not self._closed:
            raise StoreLockedError(why, backend=self._backend.scheme)

    def __enter__(self) -> Self:
        self._check_open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<{type(self).__name__} {self._describe()} codec={self._codec.name} {state}>"


#: The Repository methods AsyncRepository does itself when it awaits a native-async
#: form (so a subclass replacing one of them must not get that form: _native_async).
_NATIVE_PATH = (
    "get",
    "has",
    "put",
    "delete",
    "insert",
    "put_many",
    "_put_many",
    "get_many",
    "batch",
    "_write",
    "keys",
    "values",
    "items",
    "_iter",
    "_chunks",
)


def _bytes_out(encode: Callable[[Any], Any], name: str) -> Callable[[Any], bytes]:
    """``encode`` made to return ``bytes``: bytes-like results are copied, others refused
    with a ``TypeError`` naming the codec (which the caller turns into a
    :class:`SerializationError`)."""

    def checked(value: Any) -> bytes:
        data = encode(value)
        if type(data) is bytes:
            return data
        if isinstance(data, bytes | bytearray | memoryview):
            return bytes(data)
        raise TypeError(
            f"the codec {name!r} returned {type(data).__name__}, not bytes: a codec's "
            "encode must return bytes"
        )

    return checked


def _accepts_limit(backend: Backend) -> bool:
    import inspect

    try:
        params = inspect.signature(backend.scan_chunks).parameters
    except (TypeError, ValueError):  # pragma: no cover - builtins without a signature
        return False
    return "limit" in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


def _locate_error(exc: StorageError, scheme: str, tenant: Any = None, key: Any = None) -> None:
    """Name the record of an error a backend raised with only its stored key: fill in
    the user's tenant and key (given, or decoded from the stored key) and the backend's
    scheme where it lacks them."""
    if exc.stored_key is None and exc.tenant is None and isinstance(exc.key, bytes):
        # A backend written before stored_key existed names the record by its stored
        # bytes in ``key`` (a backend never sees the user's key): move them.
        exc.stored_key, exc.key = exc.key, None
    stored = exc.stored_key
    if key is None and exc.key is None and isinstance(stored, bytes) and stored[:1] == NS_DATA:
        try:
            tenant, key = decode_stored_key(stored)
        except InvalidKeyError:
            pass  # undecodable bytes: stored_key still names the record
    add_context(exc, tenant, key, scheme)


def _check_limit(limit: int | None) -> None:
    check_scan(False, limit)
