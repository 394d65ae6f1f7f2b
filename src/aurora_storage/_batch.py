"""The atomic batch of :meth:`Repository.batch`: puts, deletes, create-only inserts,
compare-and-set conditions and sequence appends, committed in one engine step."""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from . import _eventstore
from ._cancel import Aborted
from ._element import _POS_HEAD as _POS_HEADS
from ._element import _SMALL as _SMALL_INT
from ._eventstore import Slot, Version
from ._keys import MAX_KEY_SIZE
from .backend import (
    Append,
    Condition,
    Op,
)
from .errors import (
    InvalidArgumentError,
    KeyExistsError,
    StorageError,
    VersionConflictError,
)

if TYPE_CHECKING:
    from ._repository import Repository

__all__ = ["Batch"]

K = TypeVar("K")
V = TypeVar("V")


class Batch(Generic[K, V]):
    """Writes collected for one atomic commit (see :meth:`Repository.batch`): puts and
    deletes on any backend; create-only inserts, compare-and-set conditions and
    sequence appends where the backend declares ``conditional_writes`` / ``sequences``
    (all evaluated and assigned atomically with the writes, in the engine).

    Keys and values are validated and encoded as they are added, so a bad one raises at
    the call and the whole batch is discarded when the ``with`` block exits by exception.
    Reads through the repository do not see a batch's writes before it commits.
    """

    def __init__(self, repo: Repository[K, V]) -> None:
        self._repo = repo
        self._ops: list[Op] = []
        self._done = False
        # Conditions (insert, compare_and_set), what each means for the error, the
        # conditioned writes' values (for the returned versions), and the appends.
        self._conditions: list[Condition] = []
        self._kinds: list[tuple[str, Any, Version | None]] = []
        self._cvalues: list[bytes] = []
        self._appends: dict[bytes, tuple[Append, list[Slot], list[bytes]]] = {}
        # The last tuple key ending in a small positive int, for _tuple_full.
        self._memo: tuple[str, int, tuple[Any, ...], bytes] | None = None
        # Read once: insert/append test a flag per call, not the capabilities object.
        caps = repo.capabilities
        self._conditional = caps.conditional_writes
        self._sequential = caps.sequences

    def put(self, tenant: str, key: K, value: V) -> None:
        """Add a put."""
        self._check()
        full = self._repo._full(tenant, key)
        self._ops.append((full, self._repo._value(value, tenant, key, held=True)))

    def delete(self, tenant: str, key: K) -> None:
        """Add a delete (of a key that may or may not exist)."""
        self._check()
        self._ops.append((self._repo._full(tenant, key), None))

    def insert(self, tenant: str, key: K, value: V) -> None:
        """Add a create-only put: at commit, if the key exists (or the batch inserts it
        twice), the whole batch fails with :class:`KeyExistsError` naming every such key
        and nothing is written.

        Raises:
            NotSupportedError: the backend does not declare ``conditional_writes``.
            InvalidTenantError, InvalidKeyError, SerializationError (at this call).
        """
        self._condition("insert", tenant, key, value, None)

    def compare_and_set(self, tenant: str, key: K, value: V, *, version: Version | None) -> None:
        """Add a conditional put: at commit, the record must still have ``version``
        (``None``: be absent), else the whole batch fails with
        :class:`VersionConflictError` and nothing is written. Conditions are checked
        against the state before the batch.

        A version is a digest of the stored value only (no key, tenant or store
        identity): an equal value elsewhere, or the same value again after a change
        (A -> B -> A, a delete and put), has the same version; keep a counter in the
        value where that matters (docs/eventsourcing.md).

        Raises:
            NotSupportedError: the backend does not declare ``conditional_writes``.
            InvalidArgumentError: ``version`` is not a :class:`Version` or ``None``.
            InvalidTenantError, InvalidKeyError, SerializationError (at this call).
        """
        if version is not None and not isinstance(version, Version):
            raise InvalidArgumentError(
                f"version must be a Version (from get_versioned()) or None, got {version!r}"
            )
        self._condition("cas", tenant, key, value, version)

    def _condition(self, kind: str, tenant: str, key: K, value: V, version: Version | None) -> None:
        if self._done:
            self._check()
        repo = self._repo
        if not self._conditional:
            # "cas" is the condition's kind; the method is compare_and_set.
            name = "compare_and_set" if kind == "cas" else kind
            _eventstore.require(repo, "conditional_writes", f"Batch.{name}()")
        k: Any = key
        full = self._tuple_full(tenant, k) if type(k) is tuple else repo._full(tenant, key)
        try:
            data = repo._encode_held(value)
        except Exception:  # the typed error, with the value's path (re-encodes once)
            data = repo._value(value, tenant, key, held=True)
        self._ops.append((full, data))
        self._conditions.append((full, None if version is None else version.token))
        self._kinds.append((kind, (tenant, key), version))
        self._cvalues.append(data)

    def _tuple_full(self, tenant: str, key: tuple[Any, ...]) -> bytes:
        """``repo._full(tenant, key)`` for a tuple key, with the encoded head of the
        batch's last key ``(a, b, ..., n)`` (``n`` a small positive int) remembered:
        a batch's keys are usually one aggregate's ``(..., version)`` keys, which differ
        in their last element only. The head is reused when every other element is the
        *same object* as before (identity, not equality: ``1 == 1.0 == True`` encode
        differently), and so is the tenant."""
        memo = self._memo
        n = key[-1] if key else None
        if type(n) is not int or not 0 < n < _SMALL_INT:
            return self._repo._full(tenant, key)
        nb = (n.bit_length() + 7) >> 3
        if (
            memo is not None
            and tenant is memo[0]
            and len(key) == memo[1]
            and all(map(operator.is_, key, memo[2]))
        ):
            full = memo[3] + _POS_HEADS[nb] + n.to_bytes(nb, "big") + b"\x00\x00"
            if len(full) <= MAX_KEY_SIZE:
                return full
        full = self._repo._full(tenant, key)
        # The element of n is POS, nb, n's nb bytes, END; then the tuple's END.
        self._memo = (tenant, len(key), key[:-1], full[: -(nb + 4)])
        return full

    def append(self, tenant: str, sequence: str, value: V) -> Slot:
        """Add a record numbered by the gap-free sequence ``(tenant, sequence)``: it is
        stored under the key ``(sequence, n)`` with ``n = last + 1`` (the batch's appends
        to one sequence get consecutive numbers in call order), atomically with the rest
        of the batch. Read them back in order with ``items(tenant, prefix=(sequence,))``.

        Appends are applied after all the batch's puts, deletes and conditional writes,
        whatever the call order: a put or delete of a key this batch appends acts before
        the append (a delete of it does not remove the appended record). A number that a
        record written without an append occupies (a ``put``, an import of an export
        without counters) sends the numbers past the sequence's newest record, never
        into a hole below it (docs/eventsourcing.md, "Gap-free sequences").

        Returns:
            A :class:`Slot`; its ``number`` is readable after the commit.

        Raises:
            NotSupportedError: the backend does not declare ``sequences``.
            InvalidTenantError, InvalidKeyError (``sequence`` not a non-empty str, or too
            long; a ``str`` subclass is read as its plain value), SerializationError (at
            this call, naming the sequence).
        """
        if self._done:
            self._check()
        repo = self._repo
        if not self._sequential:
            _eventstore.require(repo, "sequences", "Batch.append()")
        seq = _eventstore.sequence_keys(repo, tenant, sequence)
        if type(sequence) is not str:
            sequence = _eventstore.check_sequence(sequence)  # its plain str value
        try:
            data = repo._encode_held(value)
        except Exception as exc:  # the typed error, with the value's path
            raise _eventstore.append_value_error(repo, tenant, sequence, value, exc) from exc
        entry = self._appends.get(seq.prefix)
        if entry is None:
            values: list[bytes] = []
            entry = self._appends[seq.prefix] = (
                Append(seq.counter, seq.key, values, seq.span),
                [],
                values,
            )
        entry[2].append(data)
        slot = Slot(tenant, sequence)
        entry[1].append(slot)
        return slot

    def __len__(self) -> int:
        return len(self._ops) + sum(len(v) for _, _, v in self._appends.values())

    def _check(self) -> None:
        if self._done:
            raise StorageError("this batch was already committed or discarded; start a new one")

    def commit(self) -> None:
        """Write everything atomically now (the ``with`` block does this for you)."""
        self._commit(None)

    def _commit(self, abort: Callable[[], bool] | None) -> None:
        self._check()
        if abort is not None and abort():
            # Cancelled (async twin) before the commit point: discard it whole.
            self.discard()
            raise Aborted
        self._done = True
        if not self._conditions and not self._appends:
            self._repo._write(self._ops)
            return
        self._check_duplicates()
        appends = list(self._appends.values())
        firsts = self._repo._commit(
            self._ops, self._conditions, self._kinds, [a for a, _, _ in appends]
        )
        for first, (_, slots, _) in zip(firsts, appends, strict=True):
            for slot in slots:
                slot._number = first
                first += 1

    def _version(self, i: int) -> Version:
        """The version of the ``i``-th conditioned write after the commit (computed on
        demand: a batch of inserts never pays for the digests)."""
        return Version(self._repo._backend.version_of(self._cvalues[i]))

    def _check_duplicates(self) -> None:
        """A key conditioned twice in one batch cannot satisfy both conditions (they are
        checked against the state before the batch): fail saying that the key is
        repeated (it need not exist). A pair with an insert (in either order) raises
        ``KeyExistsError``, as docs/eventsourcing.md says; a key given two
        ``compare_and_set`` raises ``VersionConflictError``, as the second would."""
        conditions = self._conditions
        if len({full for full, _ in conditions}) == len(conditions):
            return
        kinds = self._kinds
        first: dict[bytes, int] = {}
        repeats: list[tuple[int, int]] = []  # (first condition, the repeat) per repeat
        for i, (full, _) in enumerate(conditions):
            j = first.setdefault(full, i)
            if j != i:
                repeats.append((j, i))
        scheme = self._repo._backend.scheme
        for j, i in repeats:
            if kinds[i][0] != "insert" and kinds[j][0] != "insert":
                _, (tenant, key), expected = kinds[i]
                raise VersionConflictError(
                    f"key {key!r} (tenant {tenant!r}) is conditioned twice in one batch "
                    f"({_pair(kinds[j], kinds[i])}); both conditions are checked against "
                    "the state before the batch, so the second cannot hold once the first "
                    "is written. Condition each key once per batch; nothing was written",
                    tenant=tenant,
                    key=key,
                    expected=expected,
                    actual=None,
                    backend=scheme,
                )
        # Every repeat involves an insert. The batch fails anyway; for a complete error
        # also name the inserted keys that exist already (a plain read: nothing is
        # written either way).
        repeated = {i for _, i in repeats}
        firsts = [
            i for i in range(len(conditions)) if kinds[i][0] == "insert" and i not in repeated
        ]
        present = self._repo._backend.get_many([conditions[i][0] for i in firsts])
        existing = [i for i, raw in zip(firsts, present, strict=True) if raw is not None]
        named = ", ".join(
            f"{kinds[i][1][1]!r} (tenant {kinds[i][1][0]!r}, {_pair(kinds[j], kinds[i])})"
            for j, i in repeats[:5]
        )
        more = " ..." if len(repeats) > 5 else ""
        if all(kinds[j][0] == kinds[i][0] == "insert" for j, i in repeats):
            why = "the second insert cannot succeed once the first is written. Insert each key"
        else:
            why = (
                "the second condition cannot hold once the first write is applied. "
                "Condition each key"
            )
        message = (
            f"{len(repeats)} key(s) conditioned twice in one batch: {named}{more}; a batch "
            f"checks every condition against the state before it, so {why} once per batch"
        )
        if existing:
            message += (
                f". Also, {len(existing)} key(s) inserted by the batch already exist: "
                + ", ".join(f"{kinds[i][1][1]!r} (tenant {kinds[i][1][0]!r})" for i in existing[:5])
                + (" ..." if len(existing) > 5 else "")
            )
        # A repeated key that also exists is named once (by its first condition).
        once: dict[bytes, int] = {}
        for i in sorted(existing + [i for _, i in repeats]):
            once.setdefault(conditions[i][0], i)
        failed = list(once.values())
        keys = [kinds[i][1][1] for i in failed]
        tenant = kinds[failed[0]][1][0]
        raise KeyExistsError(
            message + "; nothing of the batch was written",
            tenant=tenant,
            key=keys[0],
            keys=keys,
            backend=scheme,
        )

    def discard(self) -> None:
        """Drop everything collected."""
        self._done = True
        self._ops.clear()
        self._conditions.clear()
        self._appends.clear()

    def __enter__(self) -> Batch[K, V]:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            if not self._done:
                self.commit()
        else:
            self.discard()


def _pair(first: tuple[str, Any, Version | None], second: tuple[str, Any, Version | None]) -> str:
    """How a key was conditioned twice: "inserted twice", "compare_and_set(version=None),
    then insert", ..."""

    def name(kind: tuple[str, Any, Version | None]) -> str:
        if kind[0] == "insert":
            return "insert"
        return "compare_and_set(version=None)" if kind[2] is None else "compare_and_set"

    a, b = name(first), name(second)
    if a == b == "insert":
        return "inserted twice"
    return f"{a}, then {b}"
