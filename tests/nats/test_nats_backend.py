"""The NATS plugin beyond the shared suite: key encoding, scan order identical to
RocksDB, configuration and secrets, errors at the boundary, atomic-batch limits, the
private loop thread, and the native-async path. Real servers throughout."""

from __future__ import annotations

import asyncio
import base64
import multiprocessing
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

import hypothesis.strategies as st
import pytest
from hypothesis import given, settings
from nats_servers import MAX_BATCH, Server

import aurora_storage
from aurora_storage import Repository
from aurora_storage.errors import (
    ConfigurationError,
    InheritedHandleError,
    InvalidURLError,
    KeyExistsError,
    ReadOnlyError,
    StorageError,
)
from aurora_storage_nats import (
    BatchTooLargeError,
    NATSBackend,
    NATSConfig,
    NATSConnectionError,
    NATSRepository,
    NATSTimeoutError,
    ValueTooLargeError,
)
from aurora_storage_nats._subjects import (
    ALPHABET,
    decode_key,
    encode_key,
    scan_filter,
    tenant_token,
    token_decode,
    token_encode,
)
from conftest import delete_bucket

_STD_B64 = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
KV_KEY_CHARS = set("-/_=.ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")

# ---------------------------------------------------------------------------- encoding


@given(st.binary(max_size=64), st.binary(max_size=64))
def test_token_encoding_is_injective_and_order_preserving(a: bytes, b: bytes) -> None:
    ta, tb = token_encode(a), token_encode(b)
    assert token_decode(ta) == a
    assert (ta == tb) == (a == b)
    assert (ta < tb) == (a < b)
    assert set(ta) <= set(ALPHABET.decode())


@given(st.text(alphabet=ALPHABET.decode(), max_size=24))
def test_token_decode_accepts_exactly_the_encoder_s_texts(text: str) -> None:
    # Any text of the alphabet: decoded only if the encoder writes exactly it (no
    # non-zero padding bits, no impossible length), so the mapping stays injective.
    try:
        raw = token_decode(text)
    except ValueError:
        if len(text) % 4 != 1:
            raw = base64.b64decode(
                text.encode().translate(bytes.maketrans(ALPHABET, _STD_B64))
                + b"=" * (-len(text) % 4)
            )
            assert token_encode(raw) != text
        return
    assert token_encode(raw) == text


@given(st.binary(min_size=1, max_size=511))
def test_any_stored_key_round_trips_as_a_valid_kv_key(key: bytes) -> None:
    kv = encode_key(key)
    assert decode_key(kv) == key
    tokens = kv.split(".")
    assert len(tokens) >= 2, kv
    assert all(tokens), kv  # no empty token (those time out)
    assert set(kv) <= KV_KEY_CHARS


def _matches(filt: str, subject: str) -> bool:
    """NATS subject matching: literal tokens, ``>`` matching one or more tokens."""
    f, s = filt.split("."), subject.split(".")
    if f[-1] == ">":
        return len(s) > len(f) - 1 and s[: len(f) - 1] == f[:-1]
    return f == s


@settings(max_examples=200)
@given(
    st.sampled_from(["a", "b", "ab"]),
    st.lists(
        st.one_of(st.text(max_size=30), st.tuples(st.text(max_size=20), st.integers())), max_size=20
    ),
    st.one_of(st.text(max_size=30), st.tuples(st.text(max_size=20))),
)
def test_scan_filter_holds_every_key_of_the_range(
    tenant: str, keys: list[str | tuple[str, int]], prefix: str | tuple[str]
) -> None:
    from aurora_storage._keys import encode_key as ek
    from aurora_storage._keys import encode_prefix, encode_tenant, prefix_successor

    p = encode_tenant(tenant)
    lo = p + encode_prefix(prefix)
    hi = min(p + b"\xff", prefix_successor(lo))
    filt = scan_filter(lo, hi)
    token = tenant_token(p, p + b"\xff")
    assert token is not None
    assert filt.startswith(token + ".")
    for k in keys:
        full = p + ek(k)
        if lo <= full < hi:
            assert _matches(filt, encode_key(full)), (k, filt)
    assert scan_filter(b"\x01", b"\x02") == ">"


@given(
    st.text(min_size=1, max_size=8),
    st.lists(st.one_of(st.text(max_size=6), st.integers(), st.binary(max_size=4)), max_size=6),
)
def test_a_tenants_keys_share_its_token_and_no_other_tenants_do(
    tenant: str, keys: list[str | int | bytes]
) -> None:
    from aurora_storage._keys import encode_key as ek
    from aurora_storage._keys import encode_tenant

    p = encode_tenant(tenant)
    token = tenant_token(p, p + b"\xff")
    assert token is not None
    for k in keys:
        assert encode_key(p + ek(k)).split(".")[0] == token
    other = encode_tenant(tenant + "x")
    assert encode_key(other + ek("k")).split(".")[0] != token


def test_decode_refuses_foreign_keys() -> None:
    for bad in [
        "plain",
        "a.b",
        "t.k",
        "s.zAA.x",
        "tA.z-",
        "tA.k-.z",
        "s.z" + token_encode(b"\x01a\x00z"),
    ]:
        with pytest.raises(ValueError):
            decode_key(bad)


_TOKEN_CHARS = "".join(sorted(KV_KEY_CHARS - {"."}))
_FOREIGN_TOKEN = st.one_of(
    st.text(_TOKEN_CHARS, min_size=1, max_size=20),
    # Tokens shaped like ours (a z/k type letter, then base64 text): the ones that decode.
    st.builds(lambda c, raw: c + token_encode(raw), st.sampled_from("zk"), st.binary(max_size=14)),
    st.builds(lambda c, t: c + t, st.sampled_from("zk"), st.text(ALPHABET.decode(), max_size=6)),
)


@given(st.lists(_FOREIGN_TOKEN, min_size=1, max_size=3))
def test_decode_of_any_key_under_a_tenant_token_is_total(tokens: list[str]) -> None:
    # Another application's key under a tenant's token either decodes to a stored key
    # that the key codec reads back (and that encodes to the same KV key), or raises
    # ValueError - which every scan, count, drop_tenant and watch skips. Never another
    # exception, and never a key the codec then refuses (found: "<t>.z" raised
    # IndexError, "<t>.zZZZZ" CorruptionError, and both were counted).
    from aurora_storage._keys import decode_stored_key, encode_tenant

    p = encode_tenant("acme")
    token = tenant_token(p, p + b"\xff")
    kv = ".".join([str(token), *tokens])
    try:
        stored = decode_key(kv)
    except ValueError:
        return
    assert decode_stored_key(stored)[0] == "acme"
    assert encode_key(stored) == kv


def test_foreign_keys_under_a_tenant_are_skipped_everywhere(
    nats_server: Server, bucket: str, nats_url: str
) -> None:
    import nats

    from aurora_storage._keys import encode_tenant

    foreign = ["z", "zZZZZ", "kAAAA", "q123", "zAA.zBB", "zAAA", "zAA", "z-.x"]
    with aurora_storage.open(nats_url) as repo:
        repo.put("acme", "real", 1)
        after = repo.last_position()
        token = str(tenant_token(encode_tenant("acme"), encode_tenant("acme") + b"\xff"))

        async def write_raw() -> None:
            nc = await nats.connect(f"nats://{nats_server.address}")
            kv = await nc.jetstream().key_value(bucket)
            for suffix in foreign:
                await kv.put(f"{token}.{suffix}", b'"v"')
            await nc.close()

        asyncio.run(write_raw())
        repo.put("acme", "later", 2)
        assert repo.list("acme") == ["later", "real"]
        assert dict(repo.items("acme")) == {"later": 2, "real": 1}
        assert repo.list("acme", prefix="r") == ["real"]
        assert repo.count("acme") == 2
        with repo.watch("acme", after=after, timeout=0.3) as w:
            assert [c.key for c in w] == ["later"]
        assert repo.drop_tenant("acme") == 2
        assert repo.count("acme") == 0


# ---------------------------------------------------------------------------- ordering


_KEYS = st.one_of(
    st.text(max_size=5),
    st.integers(-1000, 1000),
    st.floats(allow_nan=False, width=32),
    st.binary(max_size=4),
    st.tuples(st.sampled_from(["a", "b"]), st.integers(0, 20)),
)


@pytest.fixture(scope="module")
def twins(
    nats_server: Server, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Repository[Any, Any], Repository[Any, Any]]]:
    """A NATS bucket and a RocksDB store holding the same data."""
    bucket = "ord" + uuid.uuid4().hex[:10]
    n = aurora_storage.open(f"nats://{nats_server.address}/{bucket}?max_batch={MAX_BATCH}")
    r = aurora_storage.open(f"rocksdb://{tmp_path_factory.mktemp('rocks')}/store")
    yield n, r
    n.close()
    r.close()


@settings(max_examples=30, deadline=None)
@given(
    data=st.lists(st.tuples(_KEYS, st.integers(-1000, 1000)), max_size=40),
    prefix=st.one_of(st.none(), st.sampled_from(["", "a", ("a",), ("b",), b"\x00"])),
    start=st.one_of(st.none(), _KEYS),
    stop=st.one_of(st.none(), _KEYS),
    reverse=st.booleans(),
    limit=st.one_of(st.none(), st.integers(0, 10)),
)
def test_scans_return_exactly_what_rocksdb_returns(
    twins: tuple[Repository[Any, Any], Repository[Any, Any]],
    data: list[tuple[Any, int]],
    prefix: Any,
    start: Any,
    stop: Any,
    reverse: bool,
    limit: int | None,
) -> None:
    n, r = twins
    tenant = "t" + uuid.uuid4().hex[:6]
    for repo in (n, r):
        repo.put_many(tenant, data)
        repo.put_many(tenant + "\x00", [("z", 1)])  # a neighbouring tenant
    scan = {"prefix": prefix, "start": start, "stop": stop, "reverse": reverse, "limit": limit}
    try:
        expected = list(r.items(tenant, **scan))
    except StorageError as exc:
        with pytest.raises(type(exc)):
            list(n.items(tenant, **scan))
        return
    assert list(n.items(tenant, **scan)) == expected
    assert list(n.keys(tenant, **scan)) == [k for k, _ in expected]
    assert n.count(tenant, prefix=prefix) == r.count(tenant, prefix=prefix)
    assert list(n.tenants()) == list(r.tenants())


# ---------------------------------------------------------------------------- config


def test_secrets_are_hidden_everywhere() -> None:
    cfg = NATSConfig.from_options("h:1", "b", {"token": "tok-123"})
    assert "tok-123" not in repr(cfg)
    assert "tok-123" not in str(cfg.to_url())
    cfg = NATSConfig.from_options("h:1", "b", {"user": "alice", "password": "s3cret-pw"})
    for text in (repr(cfg), str(cfg), cfg.describe(), str(cfg.to_url()), repr(cfg.to_url())):
        assert "s3cret-pw" not in text
    # No server there: the error names the servers and the user, never the password.
    url = "nats://alice:s3cret-pw@127.0.0.1:1,127.0.0.1:2/b?connect_timeout=0.5"
    with pytest.raises(NATSConnectionError) as info:
        aurora_storage.open(url)
    assert "s3cret-pw" not in str(info.value)
    assert "s3cret-pw" not in repr(info.value)
    assert "alice:***@127.0.0.1:1,127.0.0.1:2" in str(info.value)


def test_url_forms_and_options() -> None:
    from aurora_storage.config import URL
    from aurora_storage_nats._config import config_from_url

    url = URL.parse("nats://a:4223,b/bk-1?replicas=3&storage=memory&max_bytes=1GiB")
    cfg = config_from_url(url, {**url.options, "history": 5})
    assert cfg.servers == ("a:4223", "b:4222")
    assert (cfg.bucket, cfg.replicas, cfg.storage, cfg.max_bytes, cfg.history) == (
        "bk-1",
        3,
        "memory",
        1 << 30,
        5,
    )
    with pytest.raises(InvalidURLError):
        config_from_url(URL.parse("nats://a/b"), {"nope": "1"})
    with pytest.raises(ConfigurationError):
        config_from_url(URL.parse("nats://a/bad.name"), {})
    with pytest.raises(ConfigurationError):
        config_from_url(URL.parse("nats://a/b"), {"history": 65})
    with pytest.raises(ConfigurationError):
        config_from_url(URL.parse("nats://u:p@a/b"), {"token": "t"})
    with pytest.raises(InvalidURLError):
        config_from_url(URL.parse("nats:///b"), {})


def test_bucket_names_up_to_nats_servers_stream_name_limit(nats_server: Server) -> None:
    # nats-server refuses a stream name over 255 characters (err_code 10052) and the
    # stream is KV_<bucket>: 252 characters work, 253 are refused at open, before any
    # connection (the server here would have answered with a generic refusal).
    name = uuid.uuid4().hex
    longest = (name * 20)[:252]
    try:
        with aurora_storage.open(f"nats://{nats_server.address}/{longest}") as repo:
            repo.put("t", "k", 1)
            assert repo.get("t", "k") == 1
    finally:
        delete_bucket(nats_server.address, longest)
    with pytest.raises(InvalidURLError, match="253 characters; nats-server takes at most 252"):
        aurora_storage.open(f"nats://{nats_server.address}/{longest}x")


# ---------------------------------------------------------------------------- errors


def test_unreachable_servers_fail_fast_with_a_typed_error() -> None:
    t0 = time.monotonic()
    with pytest.raises(NATSConnectionError) as info:
        aurora_storage.open("nats://127.0.0.1:1,127.0.0.1:2/b?connect_timeout=0.5")
    # Bounded by connect_timeout plus the bound's margin (not the client's retries).
    assert time.monotonic() - t0 < 5
    assert "127.0.0.1:1,127.0.0.1:2" in str(info.value)
    assert isinstance(info.value, ConnectionError)


def test_missing_bucket_and_read_only(nats_server: Server, bucket: str) -> None:
    base = f"nats://{nats_server.address}/{bucket}"
    with pytest.raises(ConfigurationError, match="does not exist"):
        aurora_storage.open(base + "?create_if_missing=false")
    with aurora_storage.open(base) as repo:
        repo.put("t", "k", 1)
    with aurora_storage.open(base + "?read_only=true") as ro:
        assert ro.get("t", "k") == 1
        with pytest.raises(ReadOnlyError):
            ro.put("t", "k", 2)
        with pytest.raises(ReadOnlyError):
            ro.drop_tenant("t")
    with aurora_storage.open(base) as repo:
        assert repo.get("t", "k") == 1


def test_replicas_beyond_a_single_server_is_a_configuration_error(
    nats_server: Server, bucket: str
) -> None:
    with pytest.raises(ConfigurationError, match="replicas"):
        aurora_storage.open(f"nats://{nats_server.address}/{bucket}?replicas=3")


def test_batch_larger_than_max_batch_writes_nothing(nats_server: Server, bucket: str) -> None:
    with aurora_storage.open(f"nats://{nats_server.address}/{bucket}?max_batch=5") as repo:
        repo.put_many("t", [(i, i) for i in range(5)])
        with pytest.raises(BatchTooLargeError) as info:
            repo.put_many("t", [(i, -i) for i in range(10, 16)])
        assert (info.value.size, info.value.internal, info.value.limit) == (6, 0, 5)
        assert "of 6 operations" in str(info.value)
        assert "max_batch=5" in str(info.value)
        assert "internal" not in str(info.value)
        b = repo.batch()
        for i in range(6):
            b.put("u", i, i)
        with pytest.raises(BatchTooLargeError) as info:
            b.commit()
        assert (info.value.size, info.value.internal, info.value.limit) == (6, 0, 5)
        # put_many and delete_many are one atomic batch whatever their size: never split
        # into several (a cut between two would leave part of the call written).
        with pytest.raises(BatchTooLargeError):
            repo.delete_many("t", range(6))
        assert repo.list("t") == [0, 1, 2, 3, 4]
        assert list(repo.tenants()) == ["t"]

    async def native() -> None:
        async with aurora_storage.open_async(
            f"nats://{nats_server.address}/{bucket}?max_batch=5"
        ) as ar:
            with pytest.raises(BatchTooLargeError):
                await ar.put_many("t", [(i, -i) for i in range(10, 16)])
            with pytest.raises(BatchTooLargeError):
                await ar.delete_many("t", range(6))
            assert await ar.list("t") == [0, 1, 2, 3, 4]

    asyncio.run(native())


def test_batch_too_large_names_the_callers_operations_and_the_sequence_counters(
    nats_server: Server, bucket: str
) -> None:
    """Appends add one internal record per sequence (its counter): the error counts the
    caller's operations and names the counters apart, so the caller can size a batch.
    (A reviewer saw 1000 appends reported as "1001 operations".)"""
    with aurora_storage.open(f"nats://{nats_server.address}/{bucket}?max_batch=5") as repo:
        # Five appends to one sequence: 5 operations + 1 counter, over 5.
        b = repo.batch()
        for i in range(5):
            b.append("t", "s", i)
        with pytest.raises(BatchTooLargeError) as info:
            b.commit()
        err = info.value
        assert (err.size, err.internal, err.limit) == (5, 1, 5)
        text = str(err)
        assert "of 5 operations plus 1 internal record (the sequence counter" in text
        assert "max_batch=5" in text
        assert "at most 4 operations" in text
        # What the message says fits does fit.
        with repo.batch() as b:
            slots = [b.append("t", "s", i) for i in range(4)]
        assert [s.number for s in slots] == [1, 2, 3, 4]
        # Two sequences and a put: 1 + 2 appends + 2 counters = 5 fits; one more does not.
        with repo.batch() as b:
            b.put("t", "k", 0)
            b.append("t", "a", 0)
            b.append("t", "b", 0)
        b = repo.batch()
        b.put("t", "k", 1)
        b.append("t", "a", 1)
        b.append("t", "b", 1)
        b.append("t", "b", 2)
        with pytest.raises(BatchTooLargeError) as info:
            b.commit()
        assert (info.value.size, info.value.internal) == (4, 2)
        assert "of 4 operations plus 2 internal records (the sequence counters" in str(info.value)
        assert repo.get("t", "k") == 0
        assert repo.count("t", prefix=("b",)) == 1


def test_the_servers_batch_limit_is_a_typed_error_too(nats_server: Server, bucket: str) -> None:
    # max_batch above the server's limit: the server refuses; nothing is written.
    url = f"nats://{nats_server.address}/{bucket}?max_batch={MAX_BATCH + 10}"
    with aurora_storage.open(url) as repo:
        with pytest.raises(BatchTooLargeError) as info:
            repo.put_many("t", [(i, i) for i in range(MAX_BATCH + 1)])
        # The caller's count, and the server's own limit (from its answer).
        assert (info.value.size, info.value.internal) == (MAX_BATCH + 1, 0)
        assert info.value.limit == MAX_BATCH
        assert f"of {MAX_BATCH + 1} operations" in str(info.value)
        assert f"allows {MAX_BATCH} messages" in str(info.value)
        assert repo.count("t") == 0
        # With appends, the server's refusal names the counters too.
        b = repo.batch()
        for i in range(MAX_BATCH):
            b.append("t", "s", i)
        with pytest.raises(BatchTooLargeError) as info:
            b.commit()
        assert (info.value.size, info.value.internal, info.value.limit) == (MAX_BATCH, 1, MAX_BATCH)
        assert "plus 1 internal record" in str(info.value)
        assert repo.count("t") == 0


def test_value_larger_than_the_bucket_allows(nats_server: Server, bucket: str) -> None:
    url = f"nats://{nats_server.address}/{bucket}?max_value_size=1KiB"
    with aurora_storage.open(url) as repo:
        with pytest.raises(ValueTooLargeError):
            repo.put("t", "big", "x" * 2000)
        assert repo.get("t", "big") is None


def test_server_lost_raises_a_typed_error(tmp_path: Path) -> None:
    server = Server(tmp_path, "lost")
    server.start()
    url = (
        f"nats://{server.address}/b?timeout=1&connect_timeout=1"
        "&max_reconnect_attempts=1&reconnect_time_wait=0.1"
    )
    repo = aurora_storage.open(url)
    try:
        repo.put("t", "k", 1)
        server.kill()
        with pytest.raises((NATSConnectionError, NATSTimeoutError)):
            repo.put("t", "k", 2)
    finally:
        repo.close()
        server.stop()


def test_bucket_made_by_other_tools_gets_atomic_batches(nats_server: Server, bucket: str) -> None:
    import nats

    async def make() -> None:
        nc = await nats.connect(f"nats://{nats_server.address}")
        await nc.jetstream().create_key_value(bucket=bucket)
        await nc.close()

    asyncio.run(make())
    with aurora_storage.open(f"nats://{nats_server.address}/{bucket}") as repo:
        assert repo.stats()["atomic_batches"] is True
        repo.put_many("t", {"a": 1, "b": 2})
        assert repo.list("t") == ["a", "b"]


# ---------------------------------------------------------------------------- loop thread


def test_sync_call_from_inside_the_private_loop_is_refused(nats_url: str) -> None:
    with aurora_storage.open(nats_url) as repo:
        assert isinstance(repo.backend, NATSBackend)
        lt = repo.backend._lt

        async def inside() -> None:
            repo.get("t", "k")

        with pytest.raises(StorageError, match="deadlock"):
            asyncio.run_coroutine_threadsafe(inside(), lt.loop).result(timeout=10)
        repo.put("t", "k", 1)  # the loop is still healthy
        assert repo.get("t", "k") == 1


def test_one_loop_thread_per_process_stopped_by_the_last_close(nats_url: str) -> None:
    import threading

    from aurora_storage_nats import _loop

    def loops() -> list[threading.Thread]:
        return [t for t in threading.enumerate() if t.name == "aurora-storage-nats"]

    # Other tests of this module may hold a repository open (module fixtures).
    before = 0 if _loop._current is None else _loop._current.users
    a = aurora_storage.open(nats_url)
    b = aurora_storage.open(nats_url)
    assert len(loops()) == 1
    assert _loop._current is not None
    assert _loop._current.users == before + 2
    a.close()
    assert b.get("t", "k") is None
    b.close()
    if before == 0:
        assert loops() == []
    else:
        assert len(loops()) == 1
        assert _loop._current.users == before


def test_a_stopping_loop_ends_its_pending_tasks() -> None:
    """Tasks still pending when the private loop stops (the client's own: a consumer's
    heartbeat check, a fire-and-forget consumer re-creation) are cancelled and run to
    their end, not destroyed pending (which prints "Task was destroyed but it is
    pending!" at interpreter exit)."""
    from aurora_storage_nats import _loop

    lt = _loop.LoopThread()
    cleaned: list[str] = []

    async def client_task() -> None:
        try:
            await asyncio.sleep(3600)
        finally:
            cleaned.append("finally ran")

    async def spawn() -> asyncio.Task[None]:
        return asyncio.get_running_loop().create_task(client_task())

    task = lt.submit(spawn()).result()
    lt.stop()
    assert lt.loop.is_closed()
    assert task.cancelled()
    assert cleaned == ["finally ran"]


def _child_uses_inherited(
    repo: NATSRepository[Any, Any], url: str, q: multiprocessing.Queue[object]
) -> None:
    try:
        repo.get("t", "k")
        q.put("no error")
    except InheritedHandleError as exc:  # as on LMDB and RocksDB (the core's fork guard)
        q.put("refused" if "after fork" in str(exc) else repr(exc))
    except StorageError as exc:
        q.put(repr(exc))
    # close() is idempotent and releases nothing of the parent's: in the child it must
    # neither raise nor touch the parent's connection (the parent checks it still works).
    try:
        repo.close()
        repo.close()
        q.put("closed")
    except Exception as exc:
        q.put(repr(exc))
    with aurora_storage.open(url) as fresh:
        q.put(fresh.get("t", "k"))


# The point of the test is forking a process that runs the loop thread; Python 3.12+
# warns about any fork of a multi-threaded process.
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_fork_child_reopens_instead_of_sharing_the_loop(nats_url: str) -> None:
    with aurora_storage.open(nats_url) as repo:
        repo.put("t", "k", 7)
        ctx = multiprocessing.get_context("fork")
        q = ctx.Queue()
        p = ctx.Process(target=_child_uses_inherited, args=(repo, nats_url, q))
        p.start()
        got = [q.get(timeout=30), q.get(timeout=30), q.get(timeout=30)]
        p.join(30)
        assert got == ["refused", "closed", 7]
        assert repo.get("t", "k") == 7


# ---------------------------------------------------------------------------- native async


def test_open_async_awaits_the_client_without_thread_hops(
    nats_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    arepo = aurora_storage.open_async(nats_url)

    def no_threads(*args: Any, **kwargs: Any) -> NoReturn:
        raise AssertionError("a native-async call hopped to a worker thread")

    async def main() -> None:
        assert arepo._native is not None
        monkeypatch.setattr(asyncio, "to_thread", no_threads)
        await arepo.put("t", "a", 1)
        await arepo.insert("t", "b", 2)
        with pytest.raises(KeyExistsError):
            await arepo.insert("t", "b", 3)
        assert await arepo.put_many("t", {"c": 3, "d": 4}) == 2
        assert await arepo.get("t", "a") == 1
        assert await arepo.has("t", "b")
        assert await arepo.get_many("t", ["a", "zz", "d"]) == [1, None, 4]
        assert [k async for k in arepo.keys("t", reverse=True, limit=2)] == ["d", "c"]
        assert [kv async for kv in arepo.items("t", start="b", stop="d")] == [("b", 2), ("c", 3)]
        async with arepo.batch() as b:
            b.put("t", "e", 5)
            b.delete("t", "a")
        assert await arepo.delete("t", "b")
        assert [v async for v in arepo.values("t")] == [3, 4, 5]
        monkeypatch.undo()
        assert await arepo.count("t") == 3  # the rest goes through a worker thread
        await arepo.close()

    asyncio.run(main())
    assert arepo.closed


def test_wrong_credentials_are_named_fast_and_secret_free(tmp_path: Path) -> None:
    # A server with an authorization block: a wrong password is an authorization error
    # (the server's "Authorization Violation"), raised without waiting out
    # connect_timeout, with the password hidden; the right one opens.
    server = Server(tmp_path, "auth")
    server.conf.write_text(
        server.conf.read_text() + 'authorization { user: "app", password: "right-pw" }\n'
    )
    server.start()
    try:
        bucket = "t" + uuid.uuid4().hex[:12]
        url = f"nats://app:wrong-pw@{server.address}/{bucket}?connect_timeout=20"
        started = time.monotonic()
        with pytest.raises(NATSConnectionError, match=r"(?i)authorization") as err:
            aurora_storage.open(url)
        # Functional bound only: far below the 20 s connect_timeout it must not wait out.
        assert time.monotonic() - started < 15
        assert "wrong-pw" not in str(err.value)
        assert "timed out" not in str(err.value)
        with aurora_storage.open(f"nats://app:right-pw@{server.address}/{bucket}") as repo:
            repo.put("t", "k", 1)
    finally:
        server.stop()
