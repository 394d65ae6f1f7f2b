"""get_many on NATS is one consistent cut, as on LMDB: against a writer that keeps
overwriting every key of a tenant in atomic batches, each answer holds the values of
one batch - never two - and never misses a key that exists. Real server, real
concurrent writer; bounded rounds, zero wrong answers allowed."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from nats_load import overwriting
from nats_servers import MAX_BATCH, Server

import aurora_storage

ROUNDS = 8


def _mixed(values: list[Any]) -> str | None:
    if None in values:
        return f"{values.count(None)} of {len(values)} keys missing"
    if len(set(values)) != 1:
        return f"values of the batches {sorted(set(values))}"
    return None


def test_get_many_never_mixes_two_batches(nats_url: str) -> None:
    # 600 keys used to take three rounds of 256 gets: a batch stored between two rounds
    # (or between two gets of one) gave values of two batches.
    keys = [("k", j) for j in range(600)]
    with aurora_storage.open(nats_url) as repo:
        repo.put_many("t", [(k, 0) for k in keys])
        wrong: list[str] = []
        with overwriting(nats_url, lambda r, i: r.put_many("t", [(k, i) for k in keys])):
            for _ in range(ROUNDS):
                # Each key twice, and two keys that do not exist, in the middle.
                asked = [*keys[:300], ("absent", 1), *keys[300:], ("absent", 2), *keys]
                got = repo.get_many("t", asked)
                assert got[300] is None
                assert got[601] is None
                problem = _mixed(got[:300] + got[301:601] + got[602:])
                if problem:
                    wrong.append(problem)
        assert not wrong, wrong


def test_async_get_many_never_mixes_two_batches(nats_url: str) -> None:
    keys = [("k", j) for j in range(600)]

    async def rounds() -> list[str]:
        wrong: list[str] = []
        async with aurora_storage.open_async(nats_url) as arepo:
            for _ in range(ROUNDS):
                problem = _mixed(await arepo.get_many("t", keys))
                if problem:
                    wrong.append(problem)
        return wrong

    with aurora_storage.open(nats_url) as repo:
        repo.put_many("t", [(k, 0) for k in keys])
        with overwriting(nats_url, lambda r, i: r.put_many("t", [(k, i) for k in keys])):
            wrong = asyncio.run(rounds())
        assert not wrong, wrong


def test_get_many_beyond_one_request_is_one_cut(nats_url: str) -> None:
    # More keys than one request reads (1,024) are read in parts, the later ones bound
    # to the point the first part was read at.
    keys = [("k", j) for j in range(1500)]
    with aurora_storage.open(nats_url) as repo:
        repo.put_many("t", [(k, 0) for k in keys])
        wrong: list[str] = []
        absent = [("absent", j) for j in range(3)]
        with overwriting(nats_url, lambda r, i: r.put_many("t", [(k, i) for k in keys])):
            for _ in range(ROUNDS):
                got = repo.get_many("t", [absent[0], *keys[:1000], absent[1], *keys[1000:]])
                if got[0] is not None or got[1001] is not None:
                    wrong.append("an absent key read as present")
                problem = _mixed(got[1:1001] + got[1002:])
                if problem:
                    wrong.append(problem)
        assert not wrong, wrong
        # Absent keys only: every part finds nothing.
        assert repo.get_many("t", [("absent", j) for j in range(2500)]) == [None] * 2500
        assert repo.get_many("t", []) == []


def test_get_many_does_not_take_a_key_replaced_since_its_point_as_absent(
    nats_server: Server, bucket: str
) -> None:
    # A part bound to an earlier point reads each key's last message at or before it.
    # With history=1 every write of a key removes its previous message: a key written
    # after the point has nothing left there and looked absent.
    url = f"nats://{nats_server.address}/{bucket}?max_batch={MAX_BATCH}&history=1"
    keys = [("k", j) for j in range(1500)]
    with aurora_storage.open(url) as repo:
        repo.put_many("t", [(k, 0) for k in keys])
        wrong: list[str] = []

        def hot(r: Any, i: int) -> None:
            r.put("t", ("k", 1400), i)  # in the second part
            time.sleep(0.01)  # (room for a read between two writes)

        with overwriting(url, hot):
            for _ in range(ROUNDS):
                got = repo.get_many("t", keys)
                if None in got:
                    wrong.append(f"{got.count(None)} existing keys read as absent")
        assert not wrong, wrong


def test_get_many_of_more_than_the_servers_pending_limit(nats_url: str) -> None:
    """One ``multi_last`` answer of 96 values of 1 MiB: the server queued it all for the
    client at once, past its per-client pending limit (64 MiB), cut the client off as a
    slow consumer, and the read raised NATSTimeoutError blaming a leader election. Each
    answer is now bounded (``max_bytes``) and the rest read on, as a cut answer is."""
    size = 1024 * 1024 - 200
    n = 96
    # In memory: the server sends as fast as the socket takes it.
    with aurora_storage.open(nats_url + "&codec=raw&timeout=10&storage=memory") as repo:
        for s in range(0, n, 16):
            repo.put_many("big", [(i, bytes([i]) * size) for i in range(s, s + 16)])
        for _ in range(4):
            got = repo.get_many("big", list(range(n)))
            assert [(len(v), v[:1]) if v is not None else None for v in got] == [
                (size, bytes([i])) for i in range(n)
            ]
        repo.drop_tenant("big")
