"""Background writers for the NATS consistency tests (listings, get_many)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import aurora_storage


@contextmanager
def overwriting(url: str, write: Callable[[Any, int], None]) -> Iterator[None]:
    """A thread (with its own repository) calling ``write(repo, i)`` for i = 1, 2, ...
    until the block ends; its first error is raised at the end."""
    repo = aurora_storage.open(url)
    stop = threading.Event()
    failures: list[BaseException] = []
    written = threading.Event()

    def loop() -> None:
        i = 0
        try:
            while not stop.is_set():
                i += 1
                write(repo, i)
                written.set()
        except BaseException as exc:  # pragma: no cover - reported below
            failures.append(exc)
            written.set()

    thread = threading.Thread(target=loop)
    thread.start()
    try:
        written.wait(30)
        yield
    finally:
        stop.set()
        thread.join(60)
        repo.close()
    assert not failures, failures
