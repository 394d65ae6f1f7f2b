"""The direct path of an event save (``_eventstore.insert_append``): the keys it builds
are the general encoder's bytes, it stores what the equivalent batch stores, raises
what that batch raises for bad input, and writes nothing when one insert conflicts."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import hypothesis.strategies as st
import pytest
from hypothesis import HealthCheck, given, settings

import aurora_storage
from aurora_storage import _eventstore, encode_stored_key
from aurora_storage._keys import KEY_SPACE_END
from aurora_storage.errors import KeyExistsError, StorageError

PURE = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
STORES = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])


class _Tenant(str):
    """A str subclass whose own methods lie: keys are built from its str value."""

    def __str__(self) -> str:
        return "liar"

    def __hash__(self) -> int:
        return hash("t")

    def __eq__(self, other: object) -> bool:
        return True


#: Text with NULs and lone surrogates (both have escapes in the layout).
_text = st.text(st.characters(blacklist_categories=()), max_size=12)
_names = st.one_of(_text, st.text(max_size=200), st.text(alphabet="0123456789abcdef", min_size=32))
_tenants = st.one_of(_text, _text.map(_Tenant), st.integers(), st.none())
#: Key elements the layout takes, and some it refuses.
_elements = st.one_of(
    _text,
    st.integers(),
    st.floats(),
    st.booleans(),
    st.none(),
    st.binary(max_size=4),
    st.just([1]),
    st.just(object()),
)
_numbers = st.one_of(
    st.integers(min_value=1, max_value=300),
    st.integers(min_value=-3, max_value=1 << 66),
    st.sampled_from([True, False, 1.0, 2.5, float("nan")]),
)
_bases = st.one_of(
    st.tuples(_text, _text),
    st.tuples(),
    st.lists(_elements, max_size=3).map(tuple),
    st.just(["e", "events"]),
)


def _general(tenant: Any, key: Any) -> bytes | tuple[type, str]:
    """encode_stored_key's bytes for ``(tenant, key)``, or its error (type, message)."""
    try:
        return encode_stored_key(tenant, key)
    except Exception as exc:
        return type(exc), str(exc)


@PURE
@given(
    tenant=_tenants,
    base=_bases,
    name=st.one_of(_names, _elements),
    numbers=st.lists(_numbers, max_size=5),
)
def test_numbered_keys_are_the_general_encoders_bytes(
    tenant: Any, base: Any, name: Any, numbers: list[Any]
) -> None:
    repo: aurora_storage.Repository[Any, Any] = aurora_storage.open("memory://")
    for _ in range(2):  # the second call takes the remembered head
        got = repo._numbered_fulls(tenant, base, name, numbers)
        expected = [_general(tenant, (*base, name, n)) for n in numbers]
        if got is None:
            # Declined: then the caller takes _full, which gives encode_stored_key's
            # bytes or raises its error (the batch path's).
            for n, want in zip(numbers, expected, strict=True):
                if isinstance(want, bytes):
                    assert repo._full(tenant, (*base, name, n)) == want
                else:
                    with pytest.raises(want[0]):
                        repo._full(tenant, (*base, name, n))
            # It declines only what it does not take: a tenant it cannot key, a base
            # that is not a tuple of plain str, a name that is not a plain str, a
            # number outside 1 .. 2**64 - 1 or not an int, or a key too large.
            takes = (
                isinstance(tenant, str)
                and str.__str__(tenant) != ""
                and type(base) is tuple
                and all(type(e) is str for e in base)
                and type(name) is str
                and all(type(n) is int and 0 < n < 1 << 64 for n in numbers)
                and all(isinstance(w, bytes) for w in expected)
            )
            assert not takes
        else:
            assert got == expected


@PURE
@given(tenant=_text, base=st.tuples(_text), name=_names, numbers=st.lists(_numbers, max_size=4))
def test_equal_but_distinct_objects_get_their_own_keys(
    tenant: str, base: tuple[str], name: str, numbers: list[Any]
) -> None:
    # The head is remembered by identity: a base equal to the last one (or a tenant
    # equal to it) but of another object is checked again, never trusted.
    repo: aurora_storage.Repository[Any, Any] = aurora_storage.open("memory://")
    repo._numbered_fulls(tenant, base, name, [1])
    other = (1,) if base == ("\x01",) else (True,)
    for b in (base, tuple(base), other, (*base[:0], *base)):
        got = repo._numbered_fulls(tenant, b, name, numbers)
        if got is not None:
            assert got == [encode_stored_key(tenant, (*b, name, n)) for n in numbers]


# ---------------------------------------------------------------------------- stores


def _dump(repo: aurora_storage.Repository[Any, Any]) -> list[tuple[bytes, bytes]]:
    """Every record the backend holds, the store's own ones included (counters)."""
    return list(repo.backend.scan(b"", KEY_SPACE_END))


def _batch(
    repo: aurora_storage.Repository[Any, Any],
    tenant: Any,
    base: Any,
    runs: list[tuple[Any, list[Any]]],
    values: list[Any],
    sequence: Any,
    notes: list[Any] | None,
) -> list[int]:
    """The batch insert_append stands for (its docstring), spelled out."""
    slots = []
    with repo.batch() as b:
        i = 0
        for name, numbers in runs:
            for n in numbers:
                b.insert(tenant, (*base, name, n), values[i])
                if notes is not None:
                    slots.append(b.append(tenant, sequence, notes[i]))
                i += 1
    return [slot.number for slot in slots]


def _outcome(call: Any) -> Any:
    try:
        return "ok", call()
    except StorageError as exc:
        return type(exc), str(exc), exc.tenant, exc.key


_values = st.one_of(st.binary(max_size=8), st.text(max_size=3), st.integers(), st.just(b"x" * 3))
_runs = st.lists(
    st.tuples(
        st.one_of(st.sampled_from(["a", "b\x00"]), _names, _elements),
        st.lists(
            st.one_of(st.integers(min_value=1, max_value=4), _numbers), min_size=1, max_size=3
        ),
    ),
    min_size=1,
    max_size=3,
)


@STORES
@given(
    codec=st.sampled_from(["raw", "json"]),
    tenant=st.one_of(st.sampled_from(["t", "t\x00"]), _tenants),
    base=st.one_of(st.just(("e", "events")), _bases),
    runs=_runs,
    data=st.data(),
    sequence=st.one_of(st.just("n"), st.sampled_from(["", "s" * 600]), st.integers()),
    notify=st.booleans(),
    existing=st.lists(st.integers(min_value=1, max_value=4), max_size=2),
)
def test_insert_append_does_what_its_batch_does(
    codec: str,
    tenant: Any,
    base: Any,
    runs: list[tuple[Any, list[Any]]],
    data: st.DataObject,
    sequence: Any,
    notify: bool,
    existing: list[int],
) -> None:
    count = sum(len(numbers) for _, numbers in runs)
    values = data.draw(st.lists(_values, min_size=count, max_size=count))
    notes = data.draw(st.lists(_values, min_size=count, max_size=count)) if notify else None
    direct: aurora_storage.Repository[Any, Any] = aurora_storage.open(f"memory://?codec={codec}")
    batch: aurora_storage.Repository[Any, Any] = aurora_storage.open(f"memory://?codec={codec}")
    for repo in (direct, batch):
        # Records already there (some inserts then conflict) and a sequence in use.
        for n in existing:
            try:
                _batch(repo, tenant, base, [(runs[0][0], [n])], [b"old"], sequence, [b"o"])
            except StorageError:
                pass
    got = _outcome(
        lambda: _eventstore.insert_append(direct, tenant, base, runs, values, sequence, notes)
    )
    want = _outcome(lambda: _batch(batch, tenant, base, runs, values, sequence, notes))
    assert got == want
    assert _dump(direct) == _dump(batch)


# ------------------------------------------------------------- every backend, on disk


@pytest.fixture(params=["memory", "lmdb", "rocksdb"])
def store_url(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[str]:
    if request.param == "memory":
        yield "memory://?codec=raw"
    else:
        yield f"{request.param}://{tmp_path}/store?codec=raw"


def test_the_direct_path_writes_nothing_when_one_insert_conflicts(store_url: str) -> None:
    with aurora_storage.open(store_url) as repo:
        base = ("e", "events")
        assert _eventstore._direct(type(repo))
        first = _eventstore.insert_append(repo, "app", base, [("agg", [2])], [b"v2"], "n", [b"n2"])
        assert first == [1]
        before = _dump(repo)
        # Three events of which version 2 exists: the direct path itself refuses the
        # whole save (it does not decline to the batch: the commit found the conflict).
        with pytest.raises(KeyExistsError) as info:
            _eventstore._insert_append(
                repo, "app", base, [("agg", [1, 2, 3])], [b"a", b"b", b"c"], "n", [b"x"] * 3
            )
        assert info.value.keys == [("e", "events", "agg", 2)]
        assert info.value.tenant == "app"
        assert _dump(repo) == before
        assert repo.last_sequence("app", "n") == 1
        # And through the public entry (the recorder's): the same, nothing written.
        with pytest.raises(KeyExistsError):
            _eventstore.insert_append(
                repo, "app", base, [("agg", [1, 2, 3])], [b"a", b"b", b"c"], "n", [b"x"] * 3
            )
        assert _dump(repo) == before
        # The save without the conflicting version goes through, numbered after 1.
        assert _eventstore.insert_append(
            repo, "app", base, [("agg", [1, 3])], [b"a", b"c"], "n", [b"x", b"y"]
        ) == [2, 3]


def test_the_direct_path_stores_what_the_batch_stores(store_url: str, tmp_path: Any) -> None:
    other = store_url.replace("/store?", "/other?")
    with aurora_storage.open(store_url) as direct, aurora_storage.open(other) as batch:
        runs: list[tuple[Any, list[Any]]] = [("a" * 32, [1, 2, 3]), ("b", [7, 300, 1 << 40])]
        values = [b"v%d" % i for i in range(6)]
        notes = [b"n%d" % i for i in range(6)]
        for _ in range(2):
            runs = [(name, [n + 1000 * _ for n in ns]) for name, ns in runs]
            assert _eventstore._insert_append(
                direct, "app", ("e", "events"), runs, values, "n", notes
            ) == _batch(batch, "app", ("e", "events"), runs, values, "n", notes)
        assert _dump(direct) == _dump(batch)
        assert len(_dump(direct)) > 24
