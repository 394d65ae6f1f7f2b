"""Each history record is applied to hot exactly once, whatever fails, with NATS tiers.

A breaker found (2026-12-02, night):

1. A cold commit whose answer is lost (a proxy drops the server's answers; the batch did
   commit): the pair could not read the log either and kept its sequence number, so the
   next write reused change-log entry N and overwrote it. That event was never projected
   (lag 0, and reopen did not repair it); in cache mode the pair served the old value for
   good. Now the sequence is marked unknown and the next cold write re-reads it; and each
   change-log entry is written create-only on a cold that other processes (or a late
   batch) may write, so a late landing or a second writer is a typed error
   (VersionConflictError), never an overwrite.
2. The same bucket spelled twice (``localhost`` hot, ``127.0.0.1`` cold) was accepted as
   a pair, and rebuild() then deleted all history.
4. The NATS hot bucket deleted and re-created under a running pair: the pair kept its
   in-memory position (lag 0, events never projected), and reopen blamed foreign data.
5. Two processes writing one pair (LMDB hot, NATS cold) silently overwrote each other's
   change-log entries.

Real nats-server, real LMDB stores; answers are lost through a TCP proxy on loopback
that forwards everything until told to drop the server's answers.
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from nats_servers import MAX_BATCH, Server

import aurora_storage
from aurora_storage.errors import (
    ConfigurationError,
    HotTierError,
    StorageError,
    VersionConflictError,
)
from aurora_storage.tiered import (
    HistoryRecord,
    ProjectionState,
    TieredRepository,
    register_projection,
)
from aurora_storage.tiered._log import HEAD, LOG, LOG_END, split


def count(record: HistoryRecord, state: ProjectionState) -> None:
    """Counts every application: ``n`` in total, ``seen:<key>`` per record."""
    state.put("n", state.get("n", 0) + 1)
    k = f"seen:{record.key}"
    state.put(k, state.get(k, 0) + 1)


register_projection("exactly_once_count", count)


class AnswerDropper:
    """A loopback TCP proxy to a nats-server. Armed, it waits for the next atomic batch
    commit from the client and from then on swallows every byte the server sends, until
    :meth:`release`: the server did the work, the client never hears of it. Dropped
    connections are closed on release, so the client reconnects cleanly."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.srv = socket.socket()
        self.srv.bind(("127.0.0.1", 0))
        self.srv.listen(50)
        self.port = int(self.srv.getsockname()[1])
        self.armed = False
        self.dropping = threading.Event()
        self.fired = 0
        self.conns: list[socket.socket] = []
        self.lock = threading.Lock()
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.closed:
            try:
                c, _ = self.srv.accept()
            except OSError:
                return
            s = socket.create_connection(("127.0.0.1", self.target))
            with self.lock:
                self.conns += [c, s]
            threading.Thread(target=self._pump, args=(c, s, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(s, c, False), daemon=True).start()

    def _pump(self, a: socket.socket, b: socket.socket, to_server: bool) -> None:
        try:
            while True:
                data = a.recv(65536)
                if not data:
                    break
                if to_server and self.armed and b"Nats-Batch-Commit" in data:
                    self.armed = False
                    self.fired += 1
                    self.dropping.set()
                if not to_server and self.dropping.is_set():
                    continue
                b.sendall(data)
        except OSError:
            pass
        finally:
            for x in (a, b):
                try:
                    x.close()
                except OSError:
                    pass

    def release(self) -> None:
        """Stop dropping; cut the connections whose answers were dropped (a half-sent
        message must not reach the client)."""
        with self.lock:
            conns, self.conns = self.conns, []
        for x in conns:
            try:
                x.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self.dropping.clear()

    def settle(self, repo: Any) -> None:
        """After :meth:`release`: wait (bounded) until ``repo``'s client reconnected
        through the proxy and answers again."""
        for _ in range(100):
            try:
                repo.backend.last_key(b"", b"\xff")
                return
            except StorageError:
                time.sleep(0.1)
        raise AssertionError("the NATS client did not reconnect through the proxy")

    def close(self) -> None:
        self.closed = True
        self.release()
        self.srv.close()


@pytest.fixture
def dropper(nats_server: Server) -> Iterator[AnswerDropper]:
    px = AnswerDropper(nats_server.port)
    try:
        yield px
    finally:
        px.close()


def _log_keys(cold_url: str) -> list[bytes]:
    """The change-log entries (without their nonces), in log order."""
    with aurora_storage.open(cold_url) as cold:
        return [split(v)[1] for _, v in cold.backend.scan(LOG, LOG_END)]


def _write_in_other_process(url: str, ops: list[tuple[bytes, bytes]]) -> None:
    """One atomic batch of raw operations, written by another process."""
    code = (
        "import sys, aurora_storage\n"
        "ops = [(bytes.fromhex(k), bytes.fromhex(v)) for k, v in "
        "(a.split(':') for a in sys.argv[2:])]\n"
        "with aurora_storage.open(sys.argv[1]) as r:\n"
        "    r.backend.write(ops)\n"
    )
    args = [f"{k.hex()}:{v.hex()}" for k, v in ops]
    subprocess.run([sys.executable, "-c", code, url, *args], check=True, timeout=60)


def _check_exactly_once(r: TieredRepository[Any, Any], tenant: str) -> None:
    history = [str(k) for k, _ in r.history.items(tenant)]
    assert r.lag == 0
    assert {k: r.get(tenant, f"seen:{k}", 0) for k in history} == dict.fromkeys(history, 1)
    assert r.get(tenant, "n") == len(history)


def test_lost_commit_answer_is_projected_once(
    dropper: AnswerDropper, bucket: str, tmp_path: Path
) -> None:
    hot = f"lmdb://{tmp_path}/hot"
    cold_px = f"nats://127.0.0.1:{dropper.port}/{bucket}?timeout=1&max_batch={MAX_BATCH}"
    r: TieredRepository[Any, Any] = TieredRepository(
        hot=aurora_storage.open(hot), cold=aurora_storage.open(cold_px), projection=count
    )
    try:
        r.put("acme", "e1", {})
        dropper.armed = True
        with pytest.raises(StorageError):
            r.put("acme", "e2", {})  # committed in cold; the answer is lost
        assert dropper.fired == 1
        dropper.release()
        dropper.settle(r.cold)
        r.put("acme", "e3", {})
        assert [k for k, _ in r.history.items("acme")] == ["e1", "e2", "e3"]
        _check_exactly_once(r, "acme")
    finally:
        r.close()
    r = TieredRepository(
        hot=aurora_storage.open(hot), cold=aurora_storage.open(cold_px), projection=count
    )
    try:
        _check_exactly_once(r, "acme")
        r.rebuild()
        _check_exactly_once(r, "acme")
    finally:
        r.close()


def test_lost_commit_answer_cache_mode_serves_cold(
    dropper: AnswerDropper, bucket: str, tmp_path: Path
) -> None:
    hot = f"lmdb://{tmp_path}/hot"
    cold_px = f"nats://127.0.0.1:{dropper.port}/{bucket}?timeout=1&max_batch={MAX_BATCH}"
    r: TieredRepository[Any, Any] = TieredRepository(
        hot=aurora_storage.open(hot), cold=aurora_storage.open(cold_px)
    )
    try:
        r.put("acme", "k", "v1")
        dropper.armed = True
        with pytest.raises(StorageError):
            r.put("acme", "k", "v2")
        dropper.release()
        dropper.settle(r.cold)
        r.put("acme", "j", "x")
        assert r.cold.get("acme", "k") == "v2"
        assert r.get("acme", "k") == "v2"
        assert r.lag == 0
    finally:
        r.close()
    r = TieredRepository(hot=aurora_storage.open(hot), cold=aurora_storage.open(cold_px))
    try:
        assert r.get("acme", "k") == "v2"
        assert r.get("acme", "j") == "x"
    finally:
        r.close()


def test_late_landing_of_a_lost_batch_is_a_typed_error(
    dropper: AnswerDropper, nats_server: Server, bucket: str, tmp_path: Path
) -> None:
    """The kind of 1b: the pair re-read the log while the lost batch had not landed yet
    (here: another writer takes the entry meanwhile, which is the same to the pair).
    The next write's create-only entry is refused, nothing written, typed error; the
    write after it succeeds and every record is projected once."""
    hot = f"lmdb://{tmp_path}/hot"
    cold_url = f"nats://{nats_server.address}/{bucket}?max_batch={MAX_BATCH}"
    r: TieredRepository[Any, Any] = TieredRepository(
        hot=aurora_storage.open(hot), cold=aurora_storage.open(cold_url), projection=count
    )
    try:
        r.put("acme", "e1", {})
        # The entry the pair will take next appears behind its back (a late landing),
        # written by another process, as a pair's batch is: the record, the entry and
        # cold's HEAD (which names the newest entry).
        full = r.cold._full("acme", "late")
        nonce = bytes(range(8))
        _write_in_other_process(
            cold_url,
            [
                (full, r.cold._encode({})),
                (LOG + (2).to_bytes(8, "big"), b"N" + nonce + b"k" + full),
                (HEAD, (2).to_bytes(8, "big") + nonce),
            ],
        )
        with pytest.raises(VersionConflictError, match=r"change-log entry 2 .* already taken"):
            r.put("acme", "e2", {})
        assert r.history.get("acme", "e2") is None  # nothing of it was written
        r.put("acme", "e2", {})
        assert [k for k, _ in r.history.items("acme")] == ["e1", "e2", "late"]
        _check_exactly_once(r, "acme")
    finally:
        r.close()


# ---------------------------------------------------------------- one bucket, two names


@pytest.mark.parametrize("via", ["constructor", "url"])
@pytest.mark.parametrize("used", [False, True], ids=["new-bucket", "used-bucket"])
def test_one_bucket_under_two_names_is_refused(
    nats_server: Server, bucket: str, tmp_path: Path, via: str, used: bool
) -> None:
    port = nats_server.port
    hot_url = f"nats://localhost:{port}/{bucket}?max_batch={MAX_BATCH}"
    cold_url = f"nats://127.0.0.1:{port}/{bucket}?max_batch={MAX_BATCH}"
    if used:  # the bucket is the cold tier of a pair with a hot store of its own
        r: TieredRepository[Any, Any] = TieredRepository(
            hot=aurora_storage.open(f"lmdb://{tmp_path}/hot"),
            cold=aurora_storage.open(cold_url),
            projection=count,
        )
        r.put("acme", "e1", {})
        r.close()
    with aurora_storage.open(cold_url) as raw:
        before = sorted(raw.backend.scan(b"", b"\xff"))
    if via == "constructor":
        hot, cold = aurora_storage.open(hot_url), aurora_storage.open(cold_url)
        with pytest.raises(ConfigurationError, match="must be two different stores"):
            TieredRepository(hot=hot, cold=cold, projection=count)
        hot.close()
        cold.close()
    else:
        url = (
            f"tiered://?hot={quote(hot_url, safe='')}&cold={quote(cold_url, safe='')}"
            "&projection=exactly_once_count"
        )
        with pytest.raises(ConfigurationError, match="must be two different stores"):
            aurora_storage.open(url)
    with aurora_storage.open(cold_url) as raw:
        assert sorted(raw.backend.scan(b"", b"\xff")) == before  # nothing left written
    if used:  # the history is whole
        r = TieredRepository(
            hot=aurora_storage.open(f"lmdb://{tmp_path}/hot"),
            cold=aurora_storage.open(cold_url),
            projection=count,
        )
        try:
            assert [k for k, _ in r.history.items("acme")] == ["e1"]
            _check_exactly_once(r, "acme")
        finally:
            r.close()


# ---------------------------------------------------------------- hot lost under the pair


def _delete_stream(address: str, bucket: str) -> None:
    import nats

    async def main() -> None:
        nc = await nats.connect(f"nats://{address}", connect_timeout=2, max_reconnect_attempts=0)
        try:
            await nc.jetstream().delete_stream(f"KV_{bucket}")
        finally:
            await nc.close()

    asyncio.run(main())


@pytest.mark.parametrize("trim_every", [1, 1024])
def test_hot_bucket_recreated_under_a_running_pair(
    nats_server: Server, bucket: str, tmp_path: Path, trim_every: int
) -> None:
    hot_url = f"nats://{nats_server.address}/{bucket}?timeout=1&max_batch={MAX_BATCH}"
    cold_url = f"rocksdb://{tmp_path}/cold"

    def pair() -> TieredRepository[Any, Any]:
        return TieredRepository(
            hot=aurora_storage.open(hot_url),
            cold=aurora_storage.open(cold_url),
            projection=count,
            trim_every=trim_every,
        )

    r = pair()
    try:
        for i in range(10):
            r.put("t", f"a{i:03d}", {})
        _delete_stream(nats_server.address, bucket)
        with pytest.raises(HotTierError):
            r.put("t", "b000", {})  # durable in history; hot is gone
        aurora_storage.open(hot_url).close()  # someone creates the bucket again, empty
        r.put("t", "b001", {})
        r.put("t", "b002", {})
        assert r.history.count("t") == 13
        _check_exactly_once(r, "t")
    finally:
        r.close()
    r = pair()
    try:
        _check_exactly_once(r, "t")
    finally:
        r.close()


# ---------------------------------------------------------------- two writing processes

_WRITER = """
import sys
import aurora_storage
from aurora_storage.tiered import TieredRepository

def count(record, state):
    state.put("n", state.get("n", 0) + 1)
    k = f"seen:{record.key}"
    state.put(k, state.get(k, 0) + 1)

r = TieredRepository(
    hot=aurora_storage.open(sys.argv[1]), cold=aurora_storage.open(sys.argv[2]),
    projection=count, trim_every=1_000_000,
)
print("ready", flush=True)
for line in sys.stdin:
    key = line.strip()
    try:
        r.put("t", key, {})
        print("ok", flush=True)
    except Exception as exc:
        print(type(exc).__name__, str(exc).replace("\\n", " "), flush=True)
r.close()
"""


class Writer:
    """A pair in another process, writing one event per call."""

    def __init__(self, hot: str, cold: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _WRITER, hot, cold],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self._answer() == "ready"

    def _answer(self) -> str:
        assert self.proc.stdout is not None
        return self.proc.stdout.readline().strip()

    def put(self, key: str) -> str:
        assert self.proc.stdin is not None
        self.proc.stdin.write(key + "\n")
        self.proc.stdin.flush()
        return self._answer()

    def close(self) -> None:
        assert self.proc.stdin is not None
        assert self.proc.stdout is not None
        self.proc.stdin.close()
        code = self.proc.wait(timeout=60)
        self.proc.stdout.close()
        assert code == 0


def test_second_writing_process_gets_a_typed_error(
    nats_server: Server, bucket: str, tmp_path: Path
) -> None:
    """LMDB hot + NATS cold, both shared by two processes. The writes are interleaved
    one at a time, so only the change log is contended: each process's entry number is
    stale after the other wrote. The stale write is refused (VersionConflictError,
    nothing written) instead of overwriting the other's change-log entry; written again,
    it goes through. Every acknowledged write is in history and named by exactly one
    change-log entry, and projected once."""
    hot = f"lmdb://{tmp_path}/hot"
    cold = f"nats://{nats_server.address}/{bucket}?max_batch={MAX_BATCH}"
    a, b = Writer(hot, cold), Writer(hot, cold)
    acked: list[str] = []
    try:
        for i in range(4):
            for w, name in ((a, f"a{i}"), (b, f"b{i}")):
                answer = w.put(name)
                if answer != "ok":
                    assert answer.startswith("VersionConflictError change-log entry")
                    assert "already taken by another writer" in answer
                    assert w.put(name) == "ok"  # nothing was written: write it again
                acked.append(name)
    finally:
        a.close()
        b.close()
    entries = _log_keys(cold)
    r: TieredRepository[Any, Any] = TieredRepository(
        hot=aurora_storage.open(hot), cold=aurora_storage.open(cold), projection=count
    )
    try:
        history = [k for k, _ in r.history.items("t")]
        assert sorted(history) == sorted(acked)
        assert sorted(entries) == sorted(b"k" + r.cold._full("t", k) for k in acked)
        _check_exactly_once(r, "t")
    finally:
        r.close()
