"""The store-ownership table stays consistent when the garbage collector drops a backend
while the table is being walked.

A handle's entry is removed by a weakref callback when its backend is collected; the
collector runs at any allocation, also while ``_sweep`` or ``_release`` build their list
of entries, so that callback changed the table under them: ``RuntimeError: dictionary
changed size during iteration`` from a tiered pair's ``close()`` (seen once in CI)."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from aurora_storage import _owners


class _Cyclic:
    """A stand-in for a backend that only the collector frees (it is in a cycle)."""

    def __init__(self) -> None:
        self.me = self


@pytest.fixture
def collect_often() -> Iterator[None]:
    threshold = gc.get_threshold()
    gc.collect()
    gc.set_threshold(1, 1, 1)  # a collection at nearly every allocation
    try:
        yield
    finally:
        gc.set_threshold(*threshold)
        gc.collect()


@pytest.mark.usefixtures("collect_often")
@pytest.mark.parametrize("walk", ["sweep", "release"])
def test_entries_dropped_by_the_collector_during_a_walk(walk: str) -> None:
    owner = _owners.Owner("test")
    for _ in range(50):
        with _owners._locked():
            for _ in range(200):
                _owners._entry(_Cyclic())  # type: ignore[arg-type]  # only its id and a weakref are used
            # Each entry's backend is garbage now, freed by the collector at some
            # allocation of the walk below.
            if walk == "sweep":
                _owners._sweep()
            else:
                _owners._release(owner)  # holds nothing: walks every entry
    gc.collect()
    assert all(e.ref is None or e.ref() is not None for e in list(_owners._entries.values()))
