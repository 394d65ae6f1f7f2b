"""Values at the size limits of a NATS bucket, on a real server with a small
``max_payload`` (4096) and on a bucket with a ``max_value_size`` (1 KiB).

The server counts a message's headers with its value against both limits; batch
writes (``Nats-Batch-Id``/``-Sequence``/``-Commit``) and conditional ones
(``Nats-Expected-Last-Subject-Sequence``) carry headers, a plain put none. So each kind
of write takes values up to the limit less a fixed header allowance (see
docs/backends/nats.md): put 0, insert and compare_and_set 71, a write in an atomic
batch 126, a conditional write in an atomic batch (an append included) 185. A value
at its limit is
stored; one byte more raises ValueTooLargeError (with size, limit, tenant and key)
before anything is sent, and the repository stays usable (a value over
``max_payload`` once made the server close the connection for good).

Also: get_many and delete_many of many keys on the small server (their requests
packed up to 256 KiB of subjects, over its max_payload).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nats_servers import Server

import aurora_storage
from aurora_storage.errors import ValueTooLargeError
from conftest import delete_bucket

PAYLOAD = 4096
VALUE_SIZE = 1024
#: Header bytes allowed beside a value, per kind of write (docs/backends/nats.md).
PLAIN, CONDITIONAL, BATCH, BATCH_CONDITIONAL = 0, 71, 126, 185


@pytest.fixture(scope="module")
def small_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server with max_payload 4096."""
    server = Server(Path(tmp_path_factory.mktemp("nats-limits")), "limits")
    server.conf.write_text(f"max_payload: {PAYLOAD}\n" + server.conf.read_text())
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(params=["max_payload", "max_value_size"])
def limited(request: pytest.FixtureRequest, small_server: Server) -> Iterator[tuple[Any, int]]:
    """A repository (raw codec) on a fresh bucket and its message limit: the server's
    max_payload, or the bucket's max_value_size."""
    bucket = "v" + uuid.uuid4().hex[:16]
    url = f"nats://{small_server.address}/{bucket}?codec=raw&timeout=5"
    limit = PAYLOAD
    if request.param == "max_value_size":
        url += f"&max_value_size={VALUE_SIZE}"
        limit = VALUE_SIZE
    repo = aurora_storage.open(url)
    try:
        yield repo, limit
    finally:
        repo.close()
        delete_bucket(small_server.address, bucket)


def _put(repo: Any, key: str, value: bytes) -> None:
    repo.put("t", key, value)


def _insert(repo: Any, key: str, value: bytes) -> None:
    repo.insert("t", key, value)


def _cas_new(repo: Any, key: str, value: bytes) -> None:
    repo.compare_and_set("t", key, value, version=None)


def _cas_existing(repo: Any, key: str, value: bytes) -> None:
    repo.put("t", key, b"old")
    _, version = repo.get_versioned("t", key)
    repo.compare_and_set("t", key, value, version=version)


def _put_many(repo: Any, key: str, value: bytes) -> None:
    repo.put_many("t", {key: value, key + "-small": b"s"})


def _batch(repo: Any, key: str, value: bytes) -> None:
    with repo.batch() as b:
        b.put("t", key + "-small", b"s")
        b.put("t", key, value)


def _batch_insert(repo: Any, key: str, value: bytes) -> None:
    with repo.batch() as b:
        b.put("t", key + "-small", b"s")
        b.insert("t", key, value)


def _batch_cas(repo: Any, key: str, value: bytes) -> None:
    with repo.batch() as b:
        b.put("t", key + "-small", b"s")
        b.compare_and_set("t", key, value, version=None)


WRITES: dict[str, tuple[Callable[[Any, str, bytes], None], int]] = {
    "put": (_put, PLAIN),
    "insert": (_insert, CONDITIONAL),
    "compare_and_set new": (_cas_new, CONDITIONAL),
    "compare_and_set existing": (_cas_existing, CONDITIONAL),
    "put_many": (_put_many, BATCH),
    "batch put": (_batch, BATCH),
    "batch insert": (_batch_insert, BATCH_CONDITIONAL),
    "batch compare_and_set": (_batch_cas, BATCH_CONDITIONAL),
}


def _absent(repo: Any, key: str, write: Callable[[Any, str, bytes], None]) -> None:
    """Nothing of the refused write was stored (an existing key kept its old value)."""
    expected = b"old" if write is _cas_existing else None
    assert repo.get("t", key) == expected
    assert repo.get("t", key + "-small") is None


def _usable(repo: Any) -> None:
    """The repository still reads and writes (the connection was not closed)."""
    key = "after-" + uuid.uuid4().hex
    repo.put("t", key, b"ok")
    assert repo.get("t", key) == b"ok"


@pytest.mark.parametrize("name", list(WRITES))
def test_a_value_at_the_limit_is_stored_and_one_byte_more_is_refused(
    limited: tuple[Any, int], name: str
) -> None:
    repo, cap = limited
    write, overhead = WRITES[name]
    limit = cap - overhead

    at = b"a" * limit
    write(repo, "at", at)
    assert repo.get("t", "at") == at

    with pytest.raises(ValueTooLargeError) as caught:
        write(repo, "over", b"o" * (limit + 1))
    exc = caught.value
    assert exc.size == limit + 1
    assert exc.limit == limit
    assert exc.tenant == "t"
    assert exc.key == "over"
    assert f"{limit + 1:,} bytes" in str(exc)
    assert f"at most {limit:,} bytes" in str(exc)
    assert "Nothing was written" in str(exc)
    _absent(repo, "over", write)
    _usable(repo)


@pytest.mark.parametrize("name", [n for n, (_, over) in WRITES.items() if over])
def test_a_value_a_put_takes_is_refused_by_writes_with_headers(
    limited: tuple[Any, int], name: str
) -> None:
    # The breaker's case: the server counted the headers too and refused the message
    # (a generic "batch is incomplete" StorageError), or closed the connection for good
    # (over max_payload).
    repo, cap = limited
    write, overhead = WRITES[name]
    repo.put("t", "single", b"p" * cap)
    with pytest.raises(ValueTooLargeError) as caught:
        write(repo, "k", b"p" * cap)
    assert (caught.value.size, caught.value.limit) == (cap, cap - overhead)
    _absent(repo, "k", write)
    assert repo.get("t", "single") == b"p" * cap
    _usable(repo)


def test_a_put_over_max_payload_names_its_key_and_limit(limited: tuple[Any, int]) -> None:
    repo, cap = limited
    with pytest.raises(ValueTooLargeError) as caught:
        repo.put("t", ("k", 1), b"x" * (PAYLOAD + 1))
    exc = caught.value
    assert (exc.size, exc.limit, exc.tenant, exc.key) == (PAYLOAD + 1, cap, "t", ("k", 1))
    _usable(repo)


def test_one_value_over_the_limit_refuses_a_large_batch_whole(
    limited: tuple[Any, int],
) -> None:
    repo, cap = limited
    limit = cap - BATCH
    items = dict.fromkeys(range(300), b"v" * limit)
    items[150] = b"v" * (limit + 1)
    with pytest.raises(ValueTooLargeError) as caught:
        repo.put_many("t", items)
    assert caught.value.key == 150
    assert repo.count("t") == 0
    items[150] = b"v" * limit
    assert repo.put_many("t", items) == 300
    assert repo.get_many("t", [0, 150, 299]) == [b"v" * limit] * 3


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    name=st.sampled_from(list(WRITES)),
    delta=st.integers(min_value=-40, max_value=40),
)
def test_values_around_the_limit(limited: tuple[Any, int], name: str, delta: int) -> None:
    repo, cap = limited
    write, overhead = WRITES[name]
    limit = cap - overhead
    key = "h-" + uuid.uuid4().hex
    value = b"h" * (limit + delta)
    if delta <= 0:
        write(repo, key, value)
        assert repo.get("t", key) == value
    else:
        with pytest.raises(ValueTooLargeError) as caught:
            write(repo, key, value)
        assert (caught.value.size, caught.value.limit) == (limit + delta, limit)
        _absent(repo, key, write)
    _usable(repo)


def test_get_many_and_delete_many_of_many_keys_on_a_small_max_payload(
    small_server: Server,
) -> None:
    bucket = "m" + uuid.uuid4().hex[:16]
    url = f"nats://{small_server.address}/{bucket}?timeout=5"
    try:
        with aurora_storage.open(url) as repo:
            keys = [("key", i) for i in range(600)]
            for i in range(0, len(keys), 100):
                repo.put_many("t", {k: k[1] for k in keys[i : i + 100]})
            assert repo.get_many("t", keys) == list(range(600))
            assert repo.get_many("t", [*keys, ("key", 600)]) == [*range(600), None]
            assert repo.delete_many("t", keys[:400]) == 400
            assert repo.get_many("t", keys) == [None] * 400 + list(range(400, 600))
            assert repo.count("t") == 200
    finally:
        delete_bucket(small_server.address, bucket)


def test_an_append_takes_the_limit_of_a_conditional_write_in_a_batch(
    limited: tuple[Any, int],
) -> None:
    # docs/backends/nats.md put appends at the limit of a batch's puts (126 bytes of
    # headers); an append's record is written only if its number is still free, so it
    # carries the expected sequence too: 185, and the error says it is an append's.
    repo, cap = limited
    limit = cap - BATCH_CONDITIONAL
    with repo.batch() as b:
        b.append("t", "log", b"a" * limit)
    assert repo.get("t", ("log", 1)) == b"a" * limit
    with pytest.raises(ValueTooLargeError) as caught, repo.batch() as b:  # noqa: PT012 - raises at commit
        b.put("t", "side", b"s")
        b.append("t", "log", b"o" * (limit + 1))
    exc = caught.value
    assert (exc.size, exc.limit, exc.tenant, exc.key) == (limit + 1, limit, "t", ("log", 2))
    assert "append" in str(exc)
    assert repo.last_sequence("t", "log") == 1
    assert repo.get("t", "side") is None
    _usable(repo)
