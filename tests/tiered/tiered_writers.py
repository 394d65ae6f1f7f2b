"""Two (or three) processes writing one tiered pair, one command at a time: the writer
processes (tiered_writer_child.py), and the scenarios run on LMDB cold
(test_tiered_trimmed_log_reuse.py) and on NATS cold (tests/nats/
test_nats_tiered_trimmed_log.py)."""

from __future__ import annotations

import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import aurora_storage
from aurora_storage.errors import VersionConflictError
from aurora_storage.tiered import TieredRepository
from aurora_storage.tiered._log import HEAD, LOG, LOG_END, POS, position, seq_of

CHILD = Path(__file__).with_name("tiered_writer_child.py")


class Writer:
    """A pair in another process, writing one record (or dropping a tenant) per call."""

    def __init__(self, hot: str, cold: str, mode: str, trim_every: int) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(CHILD), hot, cold, mode, str(trim_every)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self._answer() == "ready"

    def _answer(self) -> str:
        assert self.proc.stdout is not None
        return self.proc.stdout.readline().strip()

    def send(self, command: str) -> str:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return self._answer()

    def put(self, key: str) -> str:
        return self.send(f"put {key}")

    def kill(self) -> None:
        """SIGKILL: the pair is not closed (nothing of a clean close is written)."""
        self.proc.kill()
        self.proc.wait(timeout=60)
        for f in (self.proc.stdin, self.proc.stdout):
            if f is not None:
                f.close()

    def close(self) -> None:
        assert self.proc.stdin is not None
        assert self.proc.stdout is not None
        self.proc.stdin.close()
        code = self.proc.wait(timeout=120)
        self.proc.stdout.close()
        assert code == 0


def conflicted(answer: str) -> bool:
    """Whether ``answer`` is the stale writer's refusal (anything else but ``ok`` fails)."""
    if answer == "ok":
        return False
    assert answer.startswith("VersionConflictError change-log entry"), answer
    assert "another process writes this tiered pair" in answer
    return True


def write(w: Writer, command: str) -> bool:
    """``command`` through ``w``, written again once if refused as stale (nothing was
    written then); returns whether it was refused first."""
    first = conflicted(w.send(command))
    if first:
        assert w.send(command) == "ok"  # the pair re-read the log: it goes through
    return first


def log_seqs(cold: str) -> list[int]:
    with aurora_storage.open(cold) as c:
        return [seq_of(k) for k, _ in c.backend.scan(LOG, LOG_END)]


def check_applied_once(hot: str, cold: str, mode: str, acked: list[str]) -> None:
    """Hot as the writers left it (read directly, before any pair's open repairs it) holds
    every acknowledged record exactly once, at cold's last change-log entry; then a pair
    opened on the stores agrees (lag 0)."""
    with aurora_storage.open(cold) as c, aurora_storage.open(hot) as h:
        history = sorted(str(k) for k in c.keys("t"))
        assert history == sorted(acked)
        last = seq_of(c.backend.last_key(LOG, LOG_END) or LOG + bytes(8))
        head = c.backend.get(HEAD)
        assert head is not None
        assert int.from_bytes(head[:8], "big") == last
        if mode == "projection":
            seen = {k[len("seen:") :]: h.get("t", k) for k in h.keys("t") if k != "n"}
            assert seen == dict.fromkeys(history, 1)
            assert h.get("t", "n") == len(history)
            assert position(h.backend.get(POS))[0] == last
        else:
            assert dict(h.items("t")) == dict(c.items("t"))
    r: TieredRepository[Any, Any] = TieredRepository(
        hot=aurora_storage.open(hot),
        cold=aurora_storage.open(cold),
        projection=_count if mode == "projection" else None,
    )
    try:
        assert r.lag == 0
        if mode == "projection":
            # (cache mode records hot's position lazily, each writer its own at close:
            # its open may replay entries, which copies cold's values again)
            assert r.recovered_on_open == 0
            assert r.get("t", "n") == len(history)
        else:
            assert {k: r.get("t", k) for k in history} == {k: k for k in history}
    finally:
        r.close()


def _count(record: Any, state: Any) -> None:
    state.put("n", state.get("n", 0) + 1)
    k = f"seen:{record.key}"
    state.put(k, state.get(k, 0) + 1)


def stale_writer_after_trim(hot: str, cold: str, mode: str) -> None:
    """The breaker's case: A's next entry number was written by B and trimmed away."""
    a = Writer(hot, cold, mode, trim_every=2)
    b: Writer | None = None
    acked: list[str] = []
    try:
        assert a.put("a0") == "ok"  # entry 1; A's sequence number stays at 1
        acked.append("a0")
        b = Writer(hot, cold, mode, trim_every=2)  # opened after it: current
        for i in range(8):
            assert b.put(f"b{i}") == "ok"  # entries 2..9, applied and trimmed
            acked.append(f"b{i}")
        assert 2 not in log_seqs(cold)  # A's next number is free in the log again
        answer = a.put("a1")
        assert conflicted(answer)
        assert "change-log entry 2 " in answer
        with aurora_storage.open(cold) as c:
            assert c.get("t", "a1") is None  # nothing of it was written
        assert a.put("a1") == "ok"  # the pair re-read the log: entry 10
        acked.append("a1")
        # B is stale now (its entry 10 was taken), and so is a drop_tenant.
        assert write(b, "drop gone")
        assert write(a, "put a2")
        acked.append("a2")
        assert write(b, "put b8")
        acked.append("b8")
    finally:
        a.close()
        if b is not None:
            b.close()
    check_applied_once(hot, cold, mode, acked)


def interleaved_writers(hot: str, cold: str, mode: str, seed: int) -> None:
    """Three writers, writes and drops interleaved at random (one at a time), the log
    trimmed often: every acknowledged record is applied exactly once."""
    rnd = random.Random(seed)
    writers = [Writer(hot, cold, mode, trim_every=rnd.choice([1, 2, 3])) for _ in range(3)]
    acked: list[str] = []
    refused = 0
    try:
        for i in range(30):
            w = rnd.choice(writers)
            if rnd.random() < 0.1:
                refused += write(w, "drop gone")
            else:
                refused += write(w, f"put k{i:02d}")
                acked.append(f"k{i:02d}")
    finally:
        for w in writers:
            w.close()
    assert refused > 0  # the writers did go stale
    check_applied_once(hot, cold, mode, acked)


def write_raw_in_other_process(url: str, ops: list[tuple[bytes, bytes | None]]) -> None:
    """One atomic batch of raw operations, written by another process (as a writer of an
    earlier version wrote its change-log entries: without HEAD)."""
    code = (
        "import sys, aurora_storage\n"
        "ops = [(bytes.fromhex(k), bytes.fromhex(v) if v != '-' else None) for k, v in "
        "(a.split(':') for a in sys.argv[2:])]\n"
        "with aurora_storage.open(sys.argv[1]) as r:\n"
        "    r.backend.write(ops)\n"
    )
    args = [f"{k.hex()}:{'-' if v is None else v.hex()}" for k, v in ops]
    subprocess.run([sys.executable, "-c", code, url, *args], check=True, timeout=60)


def store_without_head(hot: str, cold: str) -> None:
    """A store written before HEAD existed: its first write is conditioned on HEAD being
    absent and on its entry being absent, so an entry another process wrote meanwhile
    (without HEAD) is refused, not overwritten; the write after it creates HEAD."""
    r: TieredRepository[Any, Any] = TieredRepository(
        hot=aurora_storage.open(hot), cold=aurora_storage.open(cold), projection=_count
    )
    r.put("t", "e1", {})
    r.put("t", "e2", {})
    r.close()
    write_raw_in_other_process(cold, [(HEAD, None)])  # as an earlier version left it
    r = TieredRepository(
        hot=aurora_storage.open(hot), cold=aurora_storage.open(cold), projection=_count
    )
    try:
        full = r.cold._full("t", "late")
        write_raw_in_other_process(
            cold, [(full, r.cold._encode({})), (LOG + (3).to_bytes(8, "big"), b"k" + full)]
        )
        with aurora_storage.open(cold) as c:
            assert c.backend.get(HEAD) is None
        with pytest.raises(VersionConflictError, match="change-log entry 3 "):
            r.put("t", "e3", {})  # (before: the taken entry 3 was overwritten)
        assert r.history.get("t", "e3") is None  # nothing of it was written
        r.put("t", "e3", {})  # entry 4, with HEAD
        history = sorted(str(k) for k, _ in r.history.items("t"))
        assert history == ["e1", "e2", "e3", "late"]
        assert r.lag == 0
        assert r.get("t", "n") == 4
        assert {k: r.get("t", f"seen:{k}") for k in history} == dict.fromkeys(history, 1)
    finally:
        r.close()
    with aurora_storage.open(cold) as c:
        head = c.backend.get(HEAD)
        assert head is not None
        assert head[:8] == (4).to_bytes(8, "big")


# ---------------------------------------------------------------------- a shared hot


def _release(w: Writer) -> None:
    """Let ``w``'s paused hot write go on; its command must then succeed."""
    assert w.send("go") == "ok"


def live_write_against_catch_up(hot: str, cold: str, mode: str) -> None:
    """The breaker's case: B, stale, learns of entry 2 (durable in cold, A's write held
    before its hot batch), reads hot's position (1) and is held there; A applies entry
    2; B goes on and must not apply entry 2 again (before: it projected it on A's result
    and committed position 2 again - a count of 2 for one record)."""
    a = Writer(hot, cold, mode, trim_every=2)
    b: Writer | None = None
    acked: list[str] = []
    try:
        assert a.put("a0") == "ok"  # entry 1
        acked.append("a0")
        b = Writer(hot, cold, mode, trim_every=2)  # current: position 1
        assert a.send("pause write") == "armed"
        assert a.put("a1") == "paused"  # entry 2 in cold; hot still at 1
        acked.append("a1")
        assert conflicted(b.put("b0"))  # stale: B re-reads both positions next
        assert b.send("pause pos") == "armed"
        assert b.send("catchup") == "paused"  # B read seq 2 and hot's position 1
        _release(a)  # entry 2 applied by A
        _release(b)  # ... and not again by B
        assert b.put("b0") == "ok"  # entry 3
        acked.append("b0")
        write(a, "put a2")  # stale: refused once, then written
        acked.append("a2")
    finally:
        a.close()
        if b is not None:
            b.close()
    check_applied_once(hot, cold, mode, acked)


def catch_up_against_catch_up(hot: str, cold: str, mode: str) -> None:
    """Two stale processes catch up the same entry, both having read hot's position
    before the entry's writer (held before its hot batch) applied it: the entry is
    applied once, by its writer."""
    a = Writer(hot, cold, mode, trim_every=2)
    b: Writer | None = None
    c: Writer | None = None
    acked: list[str] = []
    try:
        assert a.put("a0") == "ok"
        acked.append("a0")
        b = Writer(hot, cold, mode, trim_every=2)
        c = Writer(hot, cold, mode, trim_every=2)
        assert a.send("pause write") == "armed"
        assert a.put("a1") == "paused"  # entry 2 in cold, held before hot
        acked.append("a1")
        for stale in (b, c):
            assert conflicted(stale.put("x"))
            assert stale.send("pause pos") == "armed"
            assert stale.send("catchup") == "paused"  # read hot's position: 1
        _release(a)  # A applies entry 2
        _release(c)  # C must not
        _release(b)  # nor B
        for w, key in ((b, "b0"), (c, "c0"), (a, "a2")):
            write(w, f"put {key}")
            acked.append(key)
    finally:
        for left in (a, b, c):
            if left is not None:
                left.close()
    check_applied_once(hot, cold, mode, acked)


def cache_write_against_newer(hot: str, cold: str) -> None:
    """Cache mode: A's write of ``k=v1`` is durable in cold and held before hot; B writes
    ``k=v2`` after it (cold's value now) and brings hot to it. A's held hot write must
    not put the older ``v1`` over it (before: hot served v1 while cold held v2, until
    ``k`` was written again)."""
    a = Writer(hot, cold, "cache", trim_every=2)
    b: Writer | None = None
    try:
        assert a.put("k0") == "ok"
        b = Writer(hot, cold, "cache", trim_every=2)
        assert a.send("pause write") == "armed"
        assert a.send("put k v1") == "paused"
        write(b, "put k v2")
        _release(a)
    finally:
        a.close()
        if b is not None:
            b.close()
    with aurora_storage.open(cold) as c, aurora_storage.open(hot) as h:
        assert c.get("t", "k") == "v2"
        assert dict(h.items("t")) == dict(c.items("t"))


def concurrent_bursts(hot: str, cold: str, mode: str, rounds: int, steps: int) -> None:
    """Three processes write and catch up at the same time (real races, no pauses),
    ``rounds`` times ``steps`` random steps each: every record is applied exactly once."""
    writers = [Writer(hot, cold, mode, trim_every=2) for _ in range(3)]
    acked: list[str] = []
    try:
        for r in range(rounds):
            for i, w in enumerate(writers):
                assert w.proc.stdin is not None
                w.proc.stdin.write(f"burst {steps} {r * 3 + i}\n")
                w.proc.stdin.flush()
            for w in writers:
                answer = w._answer().split()
                assert answer[:1] == ["ok"], answer
                acked += answer[1:]
    finally:
        for w in writers:
            w.close()
    check_applied_once(hot, cold, mode, acked)
