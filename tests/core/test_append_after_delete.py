"""``Batch.append`` numbers stay gap-free when the same batch deletes keys of the
sequence: a key the batch deletes is not occupied at commit (unless the batch also puts
it), so an append takes its number. An append goes past a number only when a record
occupies it (one written at ``(sequence, n)`` without an append), and then past the
newest record; ``last_sequence`` is the number of the last record appended."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hypothesis.strategies as st
import pytest
from hypothesis import HealthCheck, given, settings

import aurora_storage
from aurora_storage import Repository

BACKENDS = ["memory", "rocksdb", "lmdb"]
_tenants = itertools.count()


@pytest.fixture(scope="module", params=BACKENDS)
def repo(request: pytest.FixtureRequest, tmp_path_factory: Any) -> Iterator[Repository[Any, Any]]:
    d: Path = tmp_path_factory.mktemp(request.param)
    url = {
        "memory": "memory://",
        "rocksdb": f"rocksdb://{d}/s",
        "lmdb": f"lmdb://{d}/s?sync=false",
    }[request.param]
    with aurora_storage.open(url) as r:
        yield r


def test_an_append_takes_the_number_its_batch_deletes(repo: Repository[Any, Any]) -> None:
    t = f"t{next(_tenants)}"
    with repo.batch() as b:
        b.delete(t, ("n", 1))  # a cleanup of a key that does not exist
        slot = b.append(t, "n", "first")
    assert slot.number == 1
    with repo.batch() as b:
        b.delete(t, ("n", 2))
        b.delete(t, ("n", 3))
        second = b.append(t, "n", "second")
        third = b.append(t, "n", "third")
    assert (second.number, third.number) == (2, 3)
    assert list(repo.items(t)) == [(("n", 1), "first"), (("n", 2), "second"), (("n", 3), "third")]
    assert repo.last_sequence(t, "n") == 3
    # A record put at (n, 5) without an append, then deleted by the batch that appends:
    # the append takes 4, then 5 (free at commit).
    repo.put(t, ("n", 5), "imported")
    with repo.batch() as b:
        b.delete(t, ("n", 5))
        slots = [b.append(t, "n", x) for x in ("a", "b")]
    assert [s.number for s in slots] == [4, 5]
    # Deleted then put again by the same batch: occupied, so the append goes past it.
    with repo.batch() as b:
        b.delete(t, ("n", 6))
        b.put(t, ("n", 6), "mine")
        slot = b.append(t, "n", "c")
    assert slot.number == 7
    assert repo.get(t, ("n", 6)) == "mine"
    # Put then deleted by the same batch: free.
    with repo.batch() as b:
        b.put(t, ("n", 8), "gone")
        b.delete(t, ("n", 8))
        slot = b.append(t, "n", "d")
    assert slot.number == 8
    assert repo.get(t, ("n", 8)) == "d"


op = st.one_of(
    st.tuples(st.just("delete"), st.integers(1, 12)),
    st.tuples(st.just("put"), st.integers(1, 12)),
    st.tuples(st.just("other"), st.integers(1, 3)),
    st.tuples(st.just("append"), st.just(0)),
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    batches=st.lists(st.lists(op, min_size=1, max_size=8), min_size=1, max_size=6),
    puts=st.booleans(),
)
def test_append_numbers_stay_gap_free_with_deletes(
    repo: Repository[Any, Any], batches: list[list[tuple[str, int]]], puts: bool
) -> None:
    t = f"t{next(_tenants)}"
    model: dict[int, Any] = {}  # number -> value of the records at ("n", number)
    counter = 0
    numbers: list[int] = []
    for bi, ops in enumerate(batches):
        slots = []
        appended: list[str] = []
        with repo.batch() as b:
            for i, (kind, n) in enumerate(ops):
                if kind == "delete":
                    b.delete(t, ("n", n))
                    model.pop(n, None)
                elif kind == "put" and puts:
                    b.put(t, ("n", n), f"put{bi}.{i}")
                    model[n] = f"put{bi}.{i}"
                elif kind == "other":
                    b.put(t, ("o", n), i)
                elif kind == "append":
                    appended.append(f"app{bi}.{i}")
                    slots.append(b.append(t, "n", appended[-1]))
        # The batch's ops apply first, then its appends: they take the numbers after
        # the counter when no record occupies them once the ops are applied, else the
        # numbers past the newest record - never a hole below it (a batch's numbers
        # are consecutive; docs/eventsourcing.md).
        if slots:
            start = counter + 1
            if any(start + j in model for j in range(len(slots))):
                start = max(counter, *model) + 1
            assert [slot.number for slot in slots] == list(range(start, start + len(slots)))
            for j, value in enumerate(appended):
                model[start + j] = value
            counter = start + len(slots) - 1
            numbers += range(start, counter + 1)
        assert repo.last_sequence(t, "n") == counter
        assert {k[1]: v for k, v in repo.items(t, prefix=("n",))} == model
    assert numbers == sorted(set(numbers))  # strictly increasing
    if not puts:
        # Nothing but appends writes the sequence's keys: gap-free from 1.
        assert numbers == list(range(1, len(numbers) + 1))
        assert repo.last_sequence(t, "n") == len(numbers)
