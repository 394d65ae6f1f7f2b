"""The key layout: how a ``(tenant, key)`` pair becomes a stored key, and back (I/O-free).

This module is the one place that knows the layout; everything else (the repositories,
tiered, the command line, observability, engine plugins) calls it. A stored key is::

    NS_DATA | tenant | key-element

* ``NS_DATA`` (``0x01``) separates user data from the store's own records
  (``NS_SYSTEM``, ``0x00``: metadata, change logs, sequences), which therefore never
  show up in a tenant's scans.
* The tenant is a string element without its type code: UTF-8 with every ``0x00``
  written as ``0x00 ESCAPE`` (``0x00 0xFF``) and a terminating ``END`` (``0x00``). No
  element type code is ``0xFF``, so the range ``[P, P + TENANT_END)`` with ``P`` the
  encoded tenant holds exactly that tenant's records, whatever the tenant ids look like
  (``a`` vs ``a:b``, ``a`` vs ``a\\x00b``).
* The key is one element of :mod:`aurora_storage._element`, encoded so that byte order
  equals value order (its docstring gives the cross-type order).

The public face of the layout is :func:`encode_stored_key`, :func:`decode_stored_key`
and :func:`tenant_range` (re-exported by :mod:`aurora_storage`), for backend authors
and tests that look at the bytes a backend receives.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ._element import (
    _POS_HEAD,
    _SMALL,
    END,
    ESCAPE,
    POS,
    SEQ,
    STR,
    _esc,  # the element codec's escape rule, shared with the tenant encoding
    _utf8,
    decode_key,
    encode_key,
    encode_prefix,
    prefix_successor,
    read_escaped,
)
from .errors import (
    CorruptionError,
    InvalidKeyError,
    InvalidTenantError,
    KeyTooLargeError,
    StorageError,
)

__all__ = [
    "KEY_SPACE_END",
    "MAX_KEY_SIZE",
    "NS_DATA",
    "NS_DATA_END",
    "NS_SYSTEM",
    "TENANT_END",
    "TenantKeys",
    "add_context",
    "check_size",
    "decode_key",
    "decode_key_at",
    "decode_keys",
    "decode_stored_key",
    "decode_tenant_key",
    "encode_key",
    "encode_prefix",
    "encode_stored_key",
    "encode_str_keys",
    "encode_tenant",
    "in_tenant",
    "plain_tenant",
    "prefix_successor",
    "tenant_end",
    "tenant_range",
]

#: The one key-size rule shared by every backend: LMDB 0.9's limit on a stored key.
MAX_KEY_SIZE = 511

#: First byte of the store's own records (metadata, change logs, sequences).
NS_SYSTEM = b"\x00"
#: First byte of every user record.
NS_DATA = b"\x01"
#: Exclusive upper bound of the user records.
NS_DATA_END = b"\x02"
#: Appended to an encoded tenant: the exclusive upper bound of that tenant's records.
TENANT_END = bytes((ESCAPE,))
#: Upper bound of the whole key space: every stored key sorts below it.
KEY_SPACE_END = TENANT_END * (MAX_KEY_SIZE + 1)

_B_END = bytes((END,))
_B_STR = bytes((STR,))
_ESCAPED_NUL = bytes((END, ESCAPE))
_PREFIX_CACHE_MAX = 65_536
#: The stored tail of a numbered key ``(..., n)`` after ``n``'s predecessors, for each
#: one-byte ``n`` (index ``n``; index 0 is unused): POS, size 1, ``n``, ``n``'s END, the
#: tuple's END.
_NUMBER_TAILS = [b""] + [bytes((POS, 1, n, END, END)) for n in range(1, 256)]
#: The longest tail of a numbered key below 2**64: POS, size, 8 bytes, END, END.
_MAX_NUMBER_TAIL = 12
#: Batches from this many keys on build their stored keys as text (see encode_str_keys):
#: below it, decoding the head costs more than the text form saves.
_TEXT_HEAD_MIN = 8


def encode_tenant(tenant: str) -> bytes:
    """The encoded prefix ``NS_DATA | tenant`` shared by all of a tenant's records.

    Raises:
        InvalidTenantError: ``tenant`` is not a non-empty ``str``.
    """
    if type(tenant) is not str:
        if not isinstance(tenant, str):
            raise InvalidTenantError(
                f"tenant must be a non-empty str, got {type(tenant).__name__}",
            )
        tenant = str.__str__(tenant)  # its value, whatever the subclass's __str__ says
    if not tenant:
        raise InvalidTenantError("tenant must be a non-empty str, got ''")
    return NS_DATA + _esc(_utf8(tenant)) + _B_END


def tenant_range(tenant: str) -> tuple[bytes, bytes]:
    """The ``[start, stop)`` byte range holding exactly ``tenant``'s stored keys.

    Raises:
        InvalidTenantError: ``tenant`` is not a non-empty ``str``.
    """
    p = encode_tenant(tenant)
    return p, p + TENANT_END


def decode_tenant_key(full: bytes) -> tuple[str, int]:
    """Split a full stored key: return the tenant and the offset where the key starts.

    Raises:
        ValueError: ``full`` is not a data key, or its tenant is damaged.
    """
    if full[:1] != NS_DATA:
        raise ValueError("not a data key")
    try:
        raw, pos = read_escaped(full, 1)
        tenant = raw.decode("utf-8", "surrogatepass")
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"malformed tenant encoding: {exc}") from exc
    return tenant, pos


def tenant_end(full: bytes) -> int:
    """The offset just past the tenant's terminator in a stored data key (where the key
    element starts), or 0 if ``full`` is not a data key with a complete tenant. Does not
    decode the tenant's text."""
    if full[:1] != NS_DATA:
        return 0
    i = full.find(END, 1)
    n = len(full)
    while i != -1:
        if i + 1 == n or full[i + 1] != ESCAPE:
            return i + 1
        i = full.find(END, i + 2)
    return 0


def in_tenant(full: bytes, prefix: bytes) -> bool:
    """Whether the stored key ``full`` belongs to the tenant whose encoded prefix is
    ``prefix``. A key of another tenant may start with the prefix (``a`` vs ``a\\x00b``:
    the terminator of ``a`` is the escaped NUL's first byte); element type codes are
    never ``ESCAPE``, so the byte after the prefix tells them apart."""
    return full.startswith(prefix) and len(full) > len(prefix) and full[len(prefix)] != ESCAPE


def check_size(full: bytes, tenant: str, key: Any, backend: str | None = None) -> None:
    """Raise KeyTooLargeError if the full stored key exceeds :data:`MAX_KEY_SIZE`."""
    if len(full) > MAX_KEY_SIZE:
        raise KeyTooLargeError(
            f"encoded tenant + key is {len(full)} bytes; the limit on every backend is "
            f"{MAX_KEY_SIZE} bytes (LMDB's key limit). Use a shorter key or tenant, or "
            "store long identifiers in the value",
            size=len(full),
            limit=MAX_KEY_SIZE,
            tenant=tenant,
            key=key,
            backend=backend,
            stored_key=full,
        )


def add_context(exc: StorageError, tenant: Any, key: Any, backend: str | None) -> None:
    """Fill the context attributes ``exc`` lacks: the user's tenant (when it is a str)
    and key, and the backend's scheme."""
    if exc.tenant is None and isinstance(tenant, str):
        exc.tenant = str.__str__(tenant)
    if exc.key is None:
        exc.key = key
    if exc.backend is None:
        exc.backend = backend


def encode_stored_key(tenant: str, key: Any) -> bytes:
    """The bytes a backend stores for the record ``(tenant, key)``.

    The same bytes the repositories hand to :meth:`Backend.put`; use it to look at a
    backend's records, or to build scan bounds in backend tests, instead of writing the
    layout's bytes by hand. ``encode_stored_key(t, k)`` lies in ``tenant_range(t)``.

    Raises:
        InvalidTenantError: ``tenant`` is not a non-empty ``str``.
        InvalidKeyError: ``key`` is of an unsupported type, or NaN.
        KeyTooLargeError: the stored key would exceed :data:`MAX_KEY_SIZE` bytes.
    """
    full = encode_tenant(tenant) + encode_key(key)
    check_size(full, tenant, key)
    return full


def decode_stored_key(stored: bytes) -> tuple[str, Any]:
    """The ``(tenant, key)`` of a stored data key (the inverse of
    :func:`encode_stored_key`; integral numbers decode as ``int``, lists as tuples).

    Raises:
        InvalidKeyError: ``stored`` is not a valid stored data key (the store's own
            records, under ``NS_SYSTEM``, are not data keys).
    """
    try:
        tenant, offset = decode_tenant_key(stored)
        return tenant, decode_key(stored, offset)
    except ValueError as exc:
        raise InvalidKeyError(f"{stored[:64]!r} is not a stored data key: {exc}") from exc


def decode_key_at(full: bytes, offset: int) -> Any:
    """Decode the key element of a stored key that starts at ``offset``.

    Raises:
        CorruptionError: the bytes are not a valid encoding.
    """
    # Fast path for the common str key: type code, body without NUL, terminator.
    code = full[offset]
    if code == STR and full[-1] == END:
        body = full[offset + 1 : -1]
        if END not in body:
            try:
                return body.decode()
            except UnicodeDecodeError:
                pass
    elif code == SEQ and full[offset + 1] == STR:
        # Fast path for (str, positive int) keys - (aggregate id, version), (sequence, n):
        # SEQ STR <str without NUL> END POS <n> <n bytes> END END, nothing after.
        end = full.find(END, offset + 2)
        n = len(full) - end - 5
        if (
            end > 0
            and 0 < n <= 8
            and full[end + 1] == POS
            and full[end + 2] == n
            and full[-1] == END
            and full[-2] == END
        ):
            try:
                text = full[offset + 2 : end].decode()
            except UnicodeDecodeError:
                pass
            else:
                return (text, int.from_bytes(full[end + 3 : end + 3 + n], "big"))
    try:
        return decode_key(full, offset)
    except ValueError as exc:
        raise CorruptionError(f"a stored key is not a valid encoding: {exc}") from exc


def decode_keys(keys: list[bytes], plen: int) -> list[Any]:
    """Decode a chunk of stored keys that share one tenant prefix of ``plen`` bytes.

    The common chunk, all plain ``str`` keys, is decoded with a handful of C-level calls
    over the joined bytes instead of a Python call per key. With ``P`` the tenant prefix,
    ``z`` its zero bytes, ``n`` keys and ``sep = END P STR``, the joined bytes split into
    exactly the ``n`` key bodies when they start with ``P STR``, end with ``END``, hold
    exactly ``n * (z + 1)`` zero bytes and split into ``n`` parts at ``sep``: a str
    element holds one zero byte (its terminator) unless its body has an escaped NUL, and
    any other element type either starts no ``sep`` at its key boundary or pays two zero
    bytes for every ``sep`` inside it, so no mix of other keys passes both counts.
    Anything else (other key types, escaped NULs, lone surrogates) is decoded key by key.

    Raises:
        CorruptionError: a key is not a valid encoding.
    """
    n = len(keys)
    if n > 1:
        joined = b"".join(keys)
        head = keys[0][: plen + 1]
        if (
            joined[-1] == END
            and joined.startswith(head)
            and head[-1] == STR
            and joined.count(END) == n * head.count(END) + n
        ):
            try:
                text = joined.decode()
                lead = head.decode()
            except UnicodeDecodeError:
                pass
            else:
                # Offsets in characters: a non-ASCII tenant is longer in bytes.
                parts = text[len(lead) : -1].split("\x00" + lead)
                if len(parts) == n:
                    return parts
    return [decode_key_at(k, plen) for k in keys]


def encode_str_keys(head: bytes, keys: list[Any]) -> list[bytes] | None:
    """The stored keys of many plain ``str`` keys of one tenant, in one pass.

    ``head`` is the tenant's encoded prefix followed by the str type code
    (``encode_tenant(t) + STR``). The result holds, for each key, the bytes
    :func:`encode_stored_key` gives (``head``, the key's UTF-8, ``END``) - built with a
    list comprehension instead of a call per key - provided every key is an exact
    ``str`` without NUL or lone surrogate and no result exceeds :data:`MAX_KEY_SIZE`.
    Otherwise it returns ``None`` and the caller encodes key by key (which raises the
    precise error for a bad key, or escapes the NULs). Used by ``put_many``.
    """
    if not keys:
        return []
    types = set(map(type, keys))
    if len(types) != 1 or str not in types:
        return None
    if "\x00" in "".join(keys):
        return None
    text = None
    if len(keys) >= _TEXT_HEAD_MIN:
        try:
            # The head as text: UTF-8 encoding commutes with concatenation, so
            # ``(text + k + "\x00").encode()`` is ``head + k.encode() + END``. One string
            # build and one encode per key cost ~35 % less than an encode and two bytes
            # concatenations. A tenant with an escaped NUL or a lone surrogate has no
            # UTF-8 text form: its keys take the bytes form below.
            text = head.decode()
        except UnicodeDecodeError:
            pass
    try:
        if text is not None:
            fulls = [f"{text}{k}\x00".encode() for k in keys]
        else:
            end = _B_END
            fulls = [head + k.encode() + end for k in keys]
    except UnicodeEncodeError:  # a lone surrogate: encoded key by key (surrogatepass)
        return None
    # A UTF-8 character is at most 4 bytes: the exact lengths are needed only for long keys.
    if len(head) + 1 + 4 * max(map(len, keys)) > MAX_KEY_SIZE and (
        max(map(len, fulls)) > MAX_KEY_SIZE
    ):
        return None
    return fulls


def plain_tenant(tenant: Any, scheme: str | None = None) -> str:
    """``tenant`` as a plain ``str`` (a subclass's string value, read without calling
    anything it overrides), for the caches keyed by tenant.

    Raises:
        InvalidTenantError: ``tenant`` is not a ``str``.
    """
    if isinstance(tenant, str):
        return str.__str__(tenant)
    raise InvalidTenantError(
        f"tenant must be a non-empty str, got {type(tenant).__name__}", backend=scheme
    )


class TenantKeys:
    """The stored-key encoder of one repository, with its caches of encoded tenants.

    A mixin of :class:`~aurora_storage.Repository` (inherited, so the hot path pays no
    extra call): :meth:`_full` is called by every point operation.
    """

    _prefixes: dict[str, bytes]
    _str_prefixes: dict[str, bytes]
    _text_prefixes: dict[str, str]
    _stems: dict[tuple[str, tuple[str, ...]], bytes]
    _stem_memo: tuple[Any, Any, bytes]
    #: The backend's scheme, for the context of key and tenant errors.
    _scheme: str | None

    def _init_keys(self, scheme: str | None) -> None:
        self._scheme = scheme
        self._prefixes = {}
        # The tenant prefix with the str type code appended: the common key's head.
        self._str_prefixes = {}
        # The same head as text (its UTF-8 is the head), for the tenants that have one
        # (not those with an escaped NUL or a lone surrogate): get() builds a str key's
        # stored form as ``(text + key + "\x00").encode()``, one string build and one
        # encode instead of an encode and two bytes concatenations.
        self._text_prefixes = {}
        # (tenant, base) -> the stored head of the keys (*base, ...) for a tuple ``base``
        # of plain str (see _numbered_fulls).
        self._stems = {}
        self._stem_memo: tuple[Any, Any, bytes] = (None, None, b"")

    def _prefix(self, tenant: str) -> bytes:
        """Encoded, cached prefix of ``tenant`` (validates it).

        Raises:
            InvalidTenantError: ``tenant`` is not a non-empty str.
        """
        if type(tenant) is not str:
            tenant = plain_tenant(tenant, self._scheme)
        try:
            return self._prefixes[tenant]
        except KeyError:
            pass
        try:
            p = encode_tenant(tenant)
        except InvalidTenantError as exc:
            add_context(exc, tenant, None, self._scheme)
            raise
        if len(self._prefixes) >= _PREFIX_CACHE_MAX:
            self._prefixes.clear()
            self._str_prefixes.clear()
            self._text_prefixes.clear()
            self._stems.clear()
        self._prefixes[tenant] = p  # a plain str (see plain_tenant)
        return p

    def _full(self, tenant: str, key: Any) -> bytes:
        """The stored key of ``(tenant, key)``: validated, encoded, size-checked.

        This is the hot path of every point operation. Short ``str`` keys dominate real
        workloads, so their element encoding (the same bytes :func:`encode_key`
        produces: ``STR``, UTF-8 with NUL escaped, ``END``) is inlined here with the
        tenant prefix and type code cached as one bytes object: one call and one
        concatenation fewer.

        Raises:
            InvalidTenantError, InvalidKeyError, KeyTooLargeError: as
                :func:`encode_stored_key`.
        """
        if type(tenant) is not str:
            # The caches below are dicts: a str subclass lying in __eq__/__hash__ would
            # match another tenant's entry. They only ever see plain str.
            tenant = plain_tenant(tenant, self._scheme)
        if type(key) is str:
            try:
                ps = self._str_prefixes[tenant]
            except KeyError:
                ps = self._str_prefix(tenant, key)
            try:
                raw = key.encode()
            except UnicodeEncodeError:
                raw = key.encode("utf-8", "surrogatepass")
            if END in raw:  # `0 in b` is much faster than `b"\x00" in b` on CPython
                raw = raw.replace(_B_END, _ESCAPED_NUL)
            full = ps + raw + _B_END
        else:
            try:
                full = self._prefixes[tenant] + encode_key(key)
            except (KeyError, TypeError, StorageError):
                full = self._full_slow(tenant, key)
        if len(full) > MAX_KEY_SIZE:
            check_size(full, tenant, key, self._scheme)
        return full

    def _fulls(self, tenant: str, keys: list[Any]) -> list[bytes]:
        """The stored keys of ``keys`` under ``tenant`` (validates the tenant even with
        no keys): :func:`encode_str_keys` in one pass when all are plain ``str`` keys,
        else :meth:`_full` key by key.

        Raises:
            InvalidTenantError, InvalidKeyError, KeyTooLargeError: as :meth:`_full`.
        """
        if type(tenant) is not str:
            tenant = plain_tenant(tenant, self._scheme)
        try:
            head = self._str_prefixes[tenant]
        except KeyError:
            head = self._str_prefix(tenant, keys[0] if keys else None)
        fulls = encode_str_keys(head, keys)
        if fulls is None:
            full = self._full
            fulls = [full(tenant, k) for k in keys]
        return fulls

    def _numbered_fulls(
        self, tenant: Any, base: tuple[Any, ...], name: Any, numbers: Sequence[Any]
    ) -> list[bytes] | None:
        """The stored keys of ``(*base, name, n)`` for each ``n`` of ``numbers``, byte
        for byte ``[self._full(tenant, (*base, name, n)) for n in numbers]``, or
        ``None``: then the caller takes that general path (which raises the precise
        error for a bad tenant, element or size).

        The keys of one aggregate's events, ``("e", purpose, originator_id, version)``:
        the encoding of ``(tenant, base)`` is cached, ``name`` is encoded once per call,
        and each key is that head and ``n``'s tail. Returns ``None`` unless ``tenant``
        is a ``str``, ``base`` a tuple of plain ``str`` (equal ones encode alike, so
        they can key a cache: not so ``1``, ``1.0`` and ``True``), ``name`` a plain
        ``str`` and every ``n`` an ``int`` in ``1 .. 2**64 - 1``, with every key
        within :data:`MAX_KEY_SIZE`. Never raises.
        """
        if type(tenant) is not str:
            if not isinstance(tenant, str):
                return None
            tenant = str.__str__(tenant)  # as _full reads it (plain_tenant)
        if type(name) is not str:
            return None
        memo = self._stem_memo
        if memo[0] is tenant and memo[1] is base:
            head = memo[2]
        else:
            found = self._stem(tenant, base)
            if found is None:
                return None
            head = found
        try:
            raw = name.encode()
        except UnicodeEncodeError:
            raw = name.encode("utf-8", "surrogatepass")
        if END in raw:
            raw = raw.replace(_B_END, _ESCAPED_NUL)
        head += _B_STR + raw + _B_END
        tails = _NUMBER_TAILS
        out: list[bytes] = []
        add = out.append
        for n in numbers:
            if type(n) is not int:
                return None
            if 0 < n < 256:
                add(head + tails[n])
            elif 0 < n < _SMALL:
                nb = (n.bit_length() + 7) >> 3
                add(head + _POS_HEAD[nb] + n.to_bytes(nb, "big") + _B_END + _B_END)
            else:
                return None
        if len(head) + _MAX_NUMBER_TAIL > MAX_KEY_SIZE and any(
            len(full) > MAX_KEY_SIZE for full in out
        ):
            return None
        return out

    def _stem(self, tenant: str, base: tuple[Any, ...]) -> bytes | None:
        """:meth:`_numbered_fulls`' head of ``(tenant, base)``, cached (and remembered
        for the next call with these very objects); ``None`` if ``base`` is not a tuple
        of plain ``str`` or the tenant is invalid. ``tenant`` is a plain str."""
        if type(base) is not tuple:
            return None
        for e in base:
            if type(e) is not str:
                return None
        # Only plain str here: a dict key that no subclass's __eq__/__hash__ can fake.
        stem = (tenant, base)
        head = self._stems.get(stem)
        if head is None:
            try:
                head = self._prefix(tenant) + encode_prefix(base)
            except StorageError:
                return None
            if len(self._stems) >= _PREFIX_CACHE_MAX:
                self._stems.clear()
            self._stems[stem] = head
        # Identity, not equality, decides a hit (see _numbered_fulls); the memo holds
        # both objects, so their ids cannot be reused while it does.
        self._stem_memo = (tenant, base, head)
        return head

    def _str_prefix(self, tenant: str, key: Any) -> bytes:
        """:meth:`_full`'s first ``str`` key of a tenant: caches the tenant's head."""
        try:
            ps = self._prefix(tenant) + _B_STR
        except StorageError as exc:
            add_context(exc, tenant, key, self._scheme)
            raise
        self._str_prefixes[tenant] = ps  # a plain str: callers passed it through plain_tenant
        try:
            self._text_prefixes[tenant] = ps.decode()
        except UnicodeDecodeError:
            pass  # no text form: get() takes _full for this tenant's keys
        return ps

    def _full_slow(self, tenant: str, key: Any) -> bytes:
        """:meth:`_full` for a non-``str`` key of an uncached tenant, or one that fails:
        the error then carries the user's tenant, key and the backend."""
        try:
            return self._prefix(tenant) + encode_key(key)
        except StorageError as exc:
            add_context(exc, tenant, key, self._scheme)
            raise

    def _bounds(self, tenant: str, prefix: Any, start: Any, stop: Any) -> tuple[bytes, bytes, int]:
        """The stored-key range ``[lo, hi)`` of a scan, and the tenant prefix's length
        (where each key element starts).

        Raises:
            InvalidTenantError, InvalidKeyError: a bad tenant, prefix or bound.
        """
        p = self._prefix(tenant)
        lo, hi = p, p + TENANT_END
        if prefix is not None:
            pp = p + encode_prefix(prefix)
            lo, hi = max(lo, pp), min(hi, prefix_successor(pp))
        if start is not None:
            lo = max(lo, p + encode_key(start))
        if stop is not None:
            hi = min(hi, p + encode_key(stop))
        return lo, hi, len(p)
