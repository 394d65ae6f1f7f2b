"""The change log and the tiers' bookkeeping records (I/O-free helpers).

Every tiered write puts, in the SAME atomic batch as the records it writes to the cold
tier, one change-log entry under ``LOG + seq`` (``seq``: 8-byte big-endian, so byte order
is sequence order). The hot tier stores, in the same batch as the updates it applies, the
sequence number it has applied up to (``POS``). Everything lives in the system namespace
(keys starting with ``0x00``), so user scans, counts and ``tenants()`` never see it.

An entry names what changed, never the values: replaying it reads the cold tier's current
value of each key. In cache mode that makes replay idempotent and order-safe (the latest
cold value always wins); in projection mode history records are immutable, so the value
read back is the value written.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Literal

from .._keys import MAX_KEY_SIZE
from ..errors import KeyTooLargeError

LOG = b"\x00tiered:log:"
LOG_END = b"\x00tiered:log;"
#: cold: the number (8 bytes big-endian) and nonce of the newest change-log entry,
#: written in every create-only cold batch, which is conditioned on it (see
#: Pair.cold_batch). Outside [LOG, LOG_END), so no trim deletes it and no log scan sees
#: it; it sorts right after the newest entry, so the batch's two writes usually touch one
#: page of a B-tree engine (LMDB).
HEAD = LOG_END + b"head"
#: hot: last applied sequence number (8 bytes big-endian), then the nonce of that
#: change-log entry (8 bytes; absent in stores written before nonces, see NONCED)
POS = b"\x00tiered:pos"
#: hot: which tiered pair (and mode) this hot store belongs to
PAIR = b"\x00tiered:pair"
#: hot, cache mode: a pair has this hot open for writing (written at open, removed in the
#: batch that records the exact position at a clean close). Found at open, the last run
#: ended uncleanly, and hot may hold writes past its lazily recorded POS: see
#: _recovery.prune_cache
RUNNING = b"\x00tiered:running"
#: hot: a rebuild in progress: phase (1 byte) + target seq (8 bytes) + scope (``*`` for
#: all tenants, else the tenant's encoded prefix); see _rebuild.py
REBUILD = b"\x00tiered:rebuild"
#: cold: the pair's identity and mode
COLD_META = b"\x00tiered:meta"
#: cold, for an instant: a random record an open writes and reads back through hot to
#: tell one store under two names from two stores (then deleted; see _recovery)
PROBE = b"\x00tiered:probe"
#: hot: parked history records, ``PARKED + full history key`` -> JSON (seq, reason, cause)
PARKED = b"\x00tiered:parked:"
PARKED_END = b"\x00tiered:parked;"
#: hot: stopped tenants (policy "stop"), ``STOPPED + tenant prefix`` -> JSON (key, cause)
STOPPED = b"\x00tiered:stopped:"
STOPPED_END = b"\x00tiered:stopped;"
#: hot: the shadow namespace a rebuild builds in; ``SHADOW + live hot key``
SHADOW = b"\x00tiered:shadow:"
SHADOW_END = b"\x00tiered:shadow;"

#: The longest stored key (encoded tenant + key) a projection puts in hot: a rebuild
#: builds it under SHADOW, and MAX_KEY_SIZE is every engine's limit (LMDB's). 496. (A
#: cache-mode pair builds no shadow: its keys are cold's, up to MAX_KEY_SIZE.)
HOT_KEY_LIMIT = MAX_KEY_SIZE - len(SHADOW)
#: The longest history key in projection mode: a record the projection cannot apply is
#: parked in hot under PARKED + its key, which a rebuild builds under SHADOW too. 481.
HISTORY_KEY_LIMIT = HOT_KEY_LIMIT - len(PARKED)


def key_too_long(
    full: bytes, what: Literal["history", "projection"], tenant: Any, key: Any
) -> KeyTooLargeError:
    """The error for a key longer than a projection-mode pair takes: a history key
    (:data:`HISTORY_KEY_LIMIT`) or a projected key (:data:`HOT_KEY_LIMIT`)."""
    shadow = (
        f"a rebuild builds its new projection under a {len(SHADOW)}-byte shadow prefix, "
        f"within the {MAX_KEY_SIZE} bytes every engine takes"
    )
    if what == "history":
        limit = HISTORY_KEY_LIMIT
        why = (
            f"a projection-mode tiered pair takes history keys of at most {limit} bytes: a "
            f"record its projection cannot apply is parked in hot under a {len(PARKED)}-"
            f"byte prefix, and {shadow}"
        )
    else:
        limit = HOT_KEY_LIMIT
        why = f"a tiered pair's projection holds keys of at most {limit} bytes: {shadow}"
    what_key = f"the projected key {key!r}: " if what == "projection" else ""
    outcome = "the update was refused" if what == "projection" else "nothing was written"
    return KeyTooLargeError(
        f"{what_key}encoded tenant + key is {len(full)} bytes; {why}. Use a shorter key "
        f"or tenant, or store long identifiers in the value; {outcome}",
        size=len(full),
        limit=limit,
        tenant=tenant,
        key=key,
        backend="tiered",
        stored_key=full,
    )


#: entry kinds
#: A nonce-carrying entry: ``N`` + 8 random bytes + the entry (one of the kinds below).
#: Hot records the nonce of the entry at its position (POS), so an open can tell that
#: cold's entry at that number is the one hot applied, and not another timeline's (cold
#: restored from an older backup and written on: the numbers restart). Entries of stores
#: written before have no nonce; they are read as before, without that check.
NONCED = 0x4E  # b"N"
NONCE_SIZE = 8
ONE = 0x6B  # b"k": one key
MANY = 0x4B  # b"K": several keys, each 2-byte length + key
DROP_INTENT = 0x44  # b"D": drop_tenant started in cold (prefix follows)
DROP_DONE = 0x64  # b"d": drop_tenant finished in cold (prefix follows)


def nonced(entry: bytes, nonce: bytes) -> bytes:
    """``entry`` carrying ``nonce`` (:data:`NONCED`)."""
    return b"N" + nonce + entry


def split(entry: bytes) -> tuple[bytes, bytes]:
    """``(nonce, entry)`` of a stored entry; the nonce is ``b""`` for an entry written
    before nonces (no check is possible then)."""
    if entry[0] == NONCED:
        return entry[1 : 1 + NONCE_SIZE], entry[1 + NONCE_SIZE :]
    return b"", entry


def position(raw: bytes | None) -> tuple[int, bytes]:
    """``(seq, nonce)`` of hot's POS record (``(0, b"")`` if absent; the nonce is
    ``b""`` in a record written before nonces: 8 bytes, no check)."""
    if raw is None:
        return 0, b""
    return int.from_bytes(raw[:8], "big"), raw[8:]


def seq_bytes(seq: int) -> bytes:
    """The 8-byte big-endian form of a sequence number."""
    return seq.to_bytes(8, "big")


def log_key(seq: int) -> bytes:
    """The cold key of change-log entry ``seq``."""
    return LOG + seq.to_bytes(8, "big")


def seq_of(log_key_: bytes) -> int:
    """The sequence number of a change-log key."""
    return int.from_bytes(log_key_[len(LOG) :], "big")


def one(full: bytes) -> bytes:
    """An entry naming one key."""
    return b"k" + full


def many(fulls: list[bytes]) -> bytes:
    """An entry naming several keys."""
    parts = [b"K"]
    for k in fulls:
        parts.append(len(k).to_bytes(2, "big"))
        parts.append(k)
    return b"".join(parts)


def drop_intent(prefix: bytes) -> bytes:
    """An entry recording that drop_tenant of ``prefix`` started in cold."""
    return b"D" + prefix


def drop_done(prefix: bytes) -> bytes:
    """An entry recording that drop_tenant of ``prefix`` finished in cold."""
    return b"d" + prefix


def keys_of(entry: bytes) -> Iterator[bytes]:
    """The keys a ONE or MANY entry names."""
    kind = entry[0]
    if kind == ONE:
        yield entry[1:]
        return
    pos, end = 1, len(entry)
    while pos < end:
        n = int.from_bytes(entry[pos : pos + 2], "big")
        yield entry[pos + 2 : pos + 2 + n]
        pos += 2 + n
