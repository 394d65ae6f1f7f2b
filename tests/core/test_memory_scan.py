"""memory:// scans read their key range a part at a time (no snapshot copy of the whole
range before the first item): a key present for the whole scan is returned exactly once
and in order, whatever other threads write meanwhile."""

from __future__ import annotations

import threading

import pytest

import aurora_storage

N = 5_000  # several internal parts of 1,024 keys


@pytest.mark.parametrize("reverse", [False, True])
def test_keys_present_throughout_a_scan_come_back_once_in_order(reverse: bool) -> None:
    repo = aurora_storage.open("memory://")
    stable = list(range(0, 2 * N, 2))  # even keys: never touched during the scan
    repo.put_many("t", ((k, k) for k in stable))
    stop = threading.Event()

    def churn() -> None:
        # Odd keys come and go while the scan runs.
        i = 0
        while not stop.is_set():
            k = 2 * (i % N) + 1
            repo.put("t", k, k)
            if i % 3 == 0:
                repo.delete("t", 2 * ((i * 7) % N) + 1)
            i += 1

    writer = threading.Thread(target=churn)
    writer.start()
    try:
        seen = [k for k, v in repo.items("t", reverse=reverse) if k == v]
    finally:
        stop.set()
        writer.join()
    assert seen == sorted(seen, reverse=reverse)
    assert len(seen) == len(set(seen))
    assert [k for k in seen if k % 2 == 0] == sorted(stable, reverse=reverse)


def test_a_key_written_ahead_of_the_scan_is_seen_and_one_behind_is_not() -> None:
    repo = aurora_storage.open("memory://")
    repo.put_many("t", ((k, k) for k in range(3 * 1024)))
    it = repo.keys("t")
    first = next(it)
    repo.put("t", -1, -1)  # behind the scan
    repo.put("t", 10**6, 0)  # ahead of it
    repo.delete("t", 3 * 1024 - 1)  # ahead of it, gone before the scan gets there
    rest = list(it)
    assert first == 0
    assert -1 not in rest
    assert rest[-1] == 10**6
    assert 3 * 1024 - 1 not in rest
    assert rest[:-1] == list(range(1, 3 * 1024 - 1))


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("limit", [1, 1023, 1024, 1025, 4000])
def test_limits_across_parts_match_a_full_scan(reverse: bool, limit: int) -> None:
    repo = aurora_storage.open("memory://")
    repo.put_many("t", ((k, k) for k in range(3000)))
    full = list(repo.keys("t", reverse=reverse))
    assert list(repo.keys("t", reverse=reverse, limit=limit)) == full[:limit]
    assert [k for k, _ in repo.items("t", reverse=reverse, limit=limit)] == full[:limit]
