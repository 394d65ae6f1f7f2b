"""One sync Watch iterated by several threads at once (found by a watch breaker: two
threads over one memory watch ended with StorageError "the change feed of the memory
backend answered position ... a bug in the backend", blaming the backend for the
watch's own race: one thread read after a position the other had already moved past).

The threads now take turns: each change is delivered to exactly one of them, in
commit order, and no error is raised. The race is forced, not hoped for: the feed's
first read is held until the second thread has had its chance to read."""

from __future__ import annotations

import threading
from typing import Any

import aurora_storage


def test_two_threads_share_one_watch_without_a_false_backend_error() -> None:
    with aurora_storage.open("memory://") as repo:
        start = repo.last_position()
        for i in range(50):
            repo.put("t", i, i)
        feed: Any = repo.backend.change_feed()
        read = feed.read
        first_read_entered = threading.Event()
        second_done = threading.Event()
        calls = [0]

        def held_read(after: int, limit: int) -> list[Any]:
            calls[0] += 1
            if calls[0] == 1:
                # The first reader pauses inside its read until the second thread
                # has finished iterating (or could not get a turn).
                first_read_entered.set()
                second_done.wait(10)
            return list(read(after, limit))

        feed.read = held_read
        w = repo.watch("t", after=start, timeout=0.3)
        got: dict[str, list[Any]] = {"a": [], "b": []}
        errors: list[BaseException] = []

        def consume(name: str) -> None:
            try:
                for change in w:
                    got[name].append(change.key)
            except BaseException as exc:  # reported below, in the test's thread
                errors.append(exc)

        a = threading.Thread(target=consume, args=("a",))
        a.start()
        assert first_read_entered.wait(10)
        b = threading.Thread(target=consume, args=("b",))
        b.start()
        b.join(10)
        second_done.set()
        a.join(10)
        assert not a.is_alive()
        assert not b.is_alive()
        assert errors == []
        # Every change exactly once, in commit order within each thread.
        assert sorted(got["a"] + got["b"]) == list(range(50))
        assert got["a"] == sorted(got["a"])
        assert got["b"] == sorted(got["b"])


def test_threads_taking_turns_deliver_each_change_once() -> None:
    """Many changes, two readers and a writer at full speed (the breaker's shape)."""
    with aurora_storage.open("memory://") as repo:
        w = repo.watch("t", after=repo.last_position(), timeout=2)
        seen: list[Any] = []
        errors: list[BaseException] = []
        lock = threading.Lock()

        def consume() -> None:
            try:
                for change in w:
                    with lock:
                        seen.append(change.position)
                    if change.key == "end":
                        w.close()
            except BaseException as exc:  # reported below, in the test's thread
                errors.append(exc)

        threads = [threading.Thread(target=consume) for _ in range(2)]
        for t in threads:
            t.start()
        for i in range(5000):
            repo.put("t", ("x", i % 10), i)
        repo.put("t", "end", 0)
        for t in threads:
            t.join(30)
        assert errors == []
        assert len(seen) == 5001
        assert len(set(seen)) == 5001
