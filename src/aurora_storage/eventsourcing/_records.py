"""How eventsourcing's records are laid out in an aurora-storage tenant.

One application (one eventsourcing ``Environment`` name, or the ``AURORA_TENANT``
setting) owns one tenant. Inside it, tuple keys whose first element names the kind of
record keep the kinds apart and give each one its natural order:

=============================================  =========================================
key                                            value
=============================================  =========================================
``("e", purpose, originator_id, version)``     ``[topic, state]`` - an aggregate event
                                               (``purpose`` is ``"events"`` or
                                               ``"snapshots"``, as eventsourcing names
                                               its aggregate recorders)
``("n", notification_id)``                     ``[originator_id, version, topic, state]``
                                               - the application sequence, written with
                                               ``Batch.append(tenant, "n", ...)``
``("t", application_name)``                    the highest notification id of
                                               ``application_name`` processed (tracking)
``("th", sha256 digest)``                      the same, for an ``application_name``
                                               whose plain key would not fit (see
                                               :func:`tracking_key`)
``("v", key)``                                 a materialised view's record, written by
                                               ``AuroraTrackingRecorder.track()``
``("vs",)``                                    the view's stamp: a random number every
                                               ``track()`` that writes view records
                                               changes, so that an update can be
                                               conditioned on records it only read
=============================================  =========================================

``originator_id`` is a UUID's 32-digit hex text or the str id itself, as in
eventsourcing's SQLite and PostgreSQL recorders (so both spellings of one UUID name one
aggregate), and the ``ORIGINATOR_ID_TYPE`` setting (``uuid``, the default, or ``text``)
says which type reads return. With ``uuid`` a str id is written only if it is that
hex text (:func:`uuid_id_text`): any other str could not be read back as a UUID, and
another spelling of a UUID would name a second aggregate.

Values go through the store's codec. ``state`` is bytes, which not every codec holds:
:func:`value_layout` probes the codec once and picks the cheapest layout that round-trips
(``msgpack``: plain lists; ``raw``: lists packed with msgpack here; ``json`` and other
text codecs: ``state`` as base64 text).
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal
from uuid import UUID

import msgpack
from eventsourcing.persistence import DataError

from aurora_storage import encode_key, encode_stored_key
from aurora_storage.codecs import Codec
from aurora_storage.errors import InvalidKeyError, KeyTooLargeError

__all__ = [
    "EVENT",
    "SEQUENCE",
    "TRACKING",
    "TRACKING_DIGEST",
    "VIEW",
    "VIEW_STAMP",
    "OriginatorIdType",
    "ValueLayout",
    "id_text",
    "tracking_key",
    "uuid_id_text",
    "value_layout",
]

EVENT = "e"
SEQUENCE = "n"
TRACKING = "t"
TRACKING_DIGEST = "th"
VIEW = "v"
VIEW_STAMP = "vs"

OriginatorIdType = Literal["uuid", "text"]


def id_text(originator_id: UUID | str) -> str:
    """The key element of an originator id: a UUID's hex text, or the str itself (a
    subclass's str value).

    Raises:
        InvalidKeyError: ``originator_id`` is neither a UUID nor a str.
    """
    if isinstance(originator_id, UUID):
        return originator_id.hex
    if type(originator_id) is str:
        return originator_id
    if isinstance(originator_id, str):
        return str.__str__(originator_id)
    raise InvalidKeyError(
        f"an originator id must be a UUID or a str, got {type(originator_id).__name__} "
        f"{originator_id!r:.80}; eventsourcing's aggregates have UUID ids (str ids with "
        "ORIGINATOR_ID_TYPE=text)"
    )


def uuid_id_text(originator_id: UUID | str) -> str:
    """:func:`id_text` for a writer whose ids are read back as UUIDs
    (``ORIGINATOR_ID_TYPE=uuid``): a str id must be a UUID's 32-digit lower-case hex, the
    spelling :func:`id_text` stores for the UUID itself.

    Raises:
        InvalidKeyError: ``originator_id`` is a str of any other form (not a UUID: no
            read could turn it back into one; another spelling of a UUID - with hyphens,
            braces or upper-case digits - would be a second aggregate beside the
            UUID's), or neither a UUID nor a str.
    """
    text = id_text(originator_id)
    if not isinstance(originator_id, UUID):
        try:
            canonical = UUID(text).hex == text
        except ValueError:
            canonical = False
        if not canonical:
            raise InvalidKeyError(
                f"originator id {text!r:.80} is not a UUID's 32-digit lower-case hex: this "
                "application reads ids back as UUIDs (ORIGINATOR_ID_TYPE=uuid, the "
                "default), so it could not read this event back, and another spelling of "
                "a UUID would name a second aggregate; pass the UUID itself (or its .hex), "
                "or set ORIGINATOR_ID_TYPE=text for applications whose aggregates have str "
                "ids"
            )
    return text


def tracking_key(
    tenant: str, application_name: Any, full: Callable[[str, Any], bytes] = encode_stored_key
) -> tuple[str, Any]:
    """The key of the tracking record of ``application_name`` in ``tenant``:
    ``("t", application_name)``, or ``("th", <SHA-256 of its key encoding>)`` when that
    key would not fit the key limit with this tenant. ``full`` encodes a stored key and
    raises KeyTooLargeError past the limit (the repository's own check: a tiered pair's
    limit is lower than the engines').

    A follower's tenant is its own name (or ``AURORA_TENANT``), but its tracking keys
    hold the *upstream* application's name, which nothing bounds: a follower of the
    longest documented tenant (448 bytes) could record no upstream name longer than a
    few characters. The digest (32 bytes) fits beside any tenant the factory accepts; a
    name whose plain key fits keeps it, so records written before read the same.

    Raises:
        InvalidKeyError: ``application_name`` is not an aurora-storage key element.
    """
    key = (TRACKING, application_name)
    try:
        full(tenant, key)
    except KeyTooLargeError:
        return (TRACKING_DIGEST, hashlib.sha256(encode_key(application_name)).digest())
    return key


def id_reader(kind: OriginatorIdType) -> Callable[[str], UUID | str]:
    """The function turning a stored id back into the type ``kind`` names."""
    if kind == "text":
        return _as_text

    def as_uuid(text: str) -> UUID | str:
        try:
            return UUID(text)
        except ValueError as exc:
            raise DataError(
                f"originator id {text!r} is not a UUID; set ORIGINATOR_ID_TYPE=text for "
                "applications whose aggregates have str ids"
            ) from exc

    return as_uuid


def _as_text(text: str) -> UUID | str:
    return text


@dataclass(frozen=True, slots=True)
class ValueLayout:
    """Turns event records into values the store's codec holds exactly, and back.

    Attributes:
        name: ``"native"``, ``"packed"`` or ``"text"`` (see the module docstring).
        pack: a record (a list of str/int values ending with the bytes ``state``) ->
            the value handed to the repository.
        unpack: the value read back -> the same list.
        pack_int: a tracking record's notification id (int) -> the value stored.
        unpack_int: the value read back -> the int.
        packer: returns a ``pack`` for one call's records (the same values as
            ``pack``); one thread uses it, for one call, so it may keep state (the
            packed layout reuses one msgpack ``Packer``: a third of ``packb``'s cost).
    """

    name: str
    pack: Callable[[list[Any]], Any]
    unpack: Callable[[Any], list[Any]]
    pack_int: Callable[[int], Any]
    unpack_int: Callable[[Any], int]
    packer: Callable[[], Callable[[list[Any]], Any]]


def _same(value: list[Any]) -> Any:
    return value


def _same_list(value: Any) -> list[Any]:
    return value  # type: ignore[no-any-return]  # the codec returns what was stored: a list


def _msgpack_pack(value: list[Any]) -> bytes:
    out: bytes = msgpack.packb(value, use_bin_type=True)
    return out


def _msgpack_packer() -> Callable[[list[Any]], Any]:
    # The bytes msgpack.packb(value, use_bin_type=True) returns (Packer's defaults).
    pack: Callable[[list[Any]], Any] = msgpack.Packer(use_bin_type=True).pack
    return pack


def _msgpack_unpack(data: Any) -> list[Any]:
    out: list[Any] = msgpack.unpackb(data, raw=False)
    return out


def _text_pack(value: list[Any]) -> Any:
    # The state is the last element of every record layout; only it is bytes.
    return [*value[:-1], base64.b64encode(value[-1]).decode("ascii")]


def _text_unpack(value: Any) -> list[Any]:
    return [*value[:-1], base64.b64decode(value[-1])]


def _int(value: Any) -> int:
    # Exactly an int: int() would turn a foreign 2.5, "7" or True into an id.
    if type(value) is not int:
        raise TypeError(f"a notification id is an int, not {type(value).__name__}")
    return value


def _int_pack(value: int) -> bytes:
    out: bytes = msgpack.packb(value)
    return out


def _int_unpack(data: Any) -> int:
    return _int(msgpack.unpackb(data))


def _native_packer() -> Callable[[list[Any]], Any]:
    return _same


def _text_packer() -> Callable[[list[Any]], Any]:
    return _text_pack


NATIVE = ValueLayout("native", _same, _same_list, _int, _int, _native_packer)
PACKED = ValueLayout(
    "packed", _msgpack_pack, _msgpack_unpack, _int_pack, _int_unpack, _msgpack_packer
)
TEXT = ValueLayout("text", _text_pack, _text_unpack, _int, _int, _text_packer)

_PROBE: list[Any] = ["a-topic", 1, "\u00e9", b"\x00\xff state"]


def _round_trips(codec: Codec[Any], value: Any) -> bool:
    try:
        back = codec.decode(codec.encode(value))
    except Exception:  # any failure means "not this layout"; the probe is ours
        return False
    return type(back) is type(value) and bool(back == value)


def value_layout(codec: Codec[Any]) -> ValueLayout:
    """The cheapest :class:`ValueLayout` that ``codec`` round-trips exactly."""
    if _round_trips(codec, _PROBE):
        return NATIVE
    if _round_trips(codec, _msgpack_pack(_PROBE)):
        return PACKED
    return TEXT
